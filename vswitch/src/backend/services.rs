//! What each backend cannot build of a scenario's swarm services
//! (`[[service]]`), said by name before anything is built (exit 3).
//!
//! The userspace engine is the reference implementation of VIPs, the
//! routing mesh and host-mode publishing (docker-semantics SVC-3: this
//! kernel has no IP_VS, so Docker here cannot build VIPs either). The
//! kernel backend builds them with nftables (`kernel::services`).
//!
//! The docker backend builds `dnsrr` services (SVC-1, DNS-25) with their
//! host-mode ports (SVC-5) on the run's own daemons (`docker::services`).
//! What needs IP_VS it refuses by name when the kernel lacks it (SVC-3):
//! measured on Engine 20.10 here, a `vip` service is created, its tasks
//! run and its name answers the VIP, but a connection to the VIP hangs
//! (dockerd: "Could not get ipvs family information from the kernel"), so
//! every check through it would fail for the wrong reason.

use crate::scenario::plan::{BackendKind, EndpointMode, Plan, PublishMode, StepAction};

/// One reason per service that `backend` cannot build.
pub(crate) fn refusals(plan: &Plan, backend: BackendKind) -> Vec<String> {
    match backend {
        BackendKind::Userspace => userspace(plan),
        BackendKind::Sim => userspace(plan)
            .into_iter()
            .map(|r| r.replacen("backend userspace:", "backend sim:", 1))
            .collect(),
        BackendKind::Kernel => Vec::new(),
        BackendKind::Docker => docker(plan, ipvs_present()),
    }
}

/// Whether the kernel has IP_VS (its sysctls exist in every namespace once
/// the module is in).
fn ipvs_present() -> bool {
    std::path::Path::new("/proc/sys/net/ipv4/vs").exists()
}

/// What the docker backend does not build of services (`ipvs`: whether
/// the kernel has IP_VS).
pub(crate) fn docker(plan: &Plan, ipvs: bool) -> Vec<String> {
    let mut why = Vec::new();
    let Some(first) = plan.services.first() else {
        return why;
    };
    let mut say = |s: String| why.push(format!("backend docker: {s}"));
    if crate::backend::docker::mapped() {
        say(format!(
            "swarm services on --docker-host daemons not supported yet (service[0] `{}`)",
            first.name
        ));
    }
    for (i, s) in plan.services.iter().enumerate() {
        if s.mode == EndpointMode::Vip {
            say(if ipvs {
                format!("VIP mode not supported yet (service[{i}] `{}`)", s.name)
            } else {
                format!(
                    "VIP load balancing needs the kernel's IP_VS, which this kernel lacks (service[{i}] `{}`): use endpoint_mode = \"dnsrr\"",
                    s.name
                )
            });
        }
        for (j, p) in s.publish.iter().enumerate() {
            if p.mode == PublishMode::Ingress {
                say(if ipvs {
                    format!(
                        "the ingress routing mesh not supported yet (service[{i}] `{}` publish[{j}] {}/{})",
                        s.name, p.published, p.proto
                    )
                } else {
                    format!(
                        "the ingress routing mesh needs the kernel's IP_VS, which this kernel lacks (service[{i}] `{}` publish[{j}] {}/{})",
                        s.name, p.published, p.proto
                    )
                });
            }
        }
    }
    let task = |c: usize| plan.services.iter().any(|s| s.tasks.contains(&c));
    for (k, st) in plan.steps.iter().enumerate() {
        match &st.action {
            StepAction::Scale { .. } => say(format!(
                "scale steps not supported yet: Engine 20.10's swarm allocator gives a new task the next address after the last it gave (serially), not the lowest free one the plan gives (step[{k}] `{}`)",
                st.name
            )),
            StepAction::Restart(c) | StepAction::Stop(c) | StepAction::Start(c) if task(*c) => {
                say(format!(
                    "stop, start and restart of a service's task not supported yet (step[{k}] `{}`)",
                    st.name
                ))
            }
            StepAction::Connect { container, .. } | StepAction::Disconnect { container, .. }
                if task(*container) =>
            {
                say(format!(
                    "connect and disconnect of a service's task not supported yet (step[{k}] `{}`)",
                    st.name
                ))
            }
            _ => {}
        }
    }
    why
}

/// What the userspace backend does not build of services: mixed runs
/// (a kernel machine would need the service stage's tables) and a
/// VLAN-aware lan (the mesh's entry is before the VLAN stage, not in it).
fn userspace(plan: &Plan) -> Vec<String> {
    let Some(first) = plan.services.first() else {
        return Vec::new();
    };
    let mut why = Vec::new();
    if let Some(m) = plan.machines.iter().find(|m| m.backend.is_some()) {
        why.push(format!(
            "backend userspace: swarm services in a mixed run (machine `{}` sets backend) not supported yet (service[0] `{}`)",
            m.name, first.name
        ));
    }
    if plan.externals.iter().any(|x| x.vlan.is_some())
        || plan
            .networks
            .iter()
            .any(|n| n.parent.as_ref().is_some_and(|p| p.vlan.is_some()))
    {
        why.push(format!(
            "backend userspace: swarm services with VLANs on lan not supported yet (service[0] `{}`)",
            first.name
        ));
    }
    why
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::refusals;
    use crate::scenario::parse_str;
    use crate::scenario::plan::BackendKind;

    fn plan(text: &str) -> crate::scenario::plan::Plan {
        parse_str(Path::new("s.toml"), text).unwrap()
    }

    const TWO: &str = "name = \"s\"\n[[machine]]\nname = \"m1\"\n[[machine]]\nname = \"m2\"\n[[network]]\nname = \"o\"\ndriver = \"overlay\"\n";

    /// SVC-3: without IP_VS a VIP service is refused by name on docker
    /// (userspace and kernel build it); with IP_VS it is "not supported yet".
    #[test]
    fn docker_refuses_vip_services_by_name() {
        let p = plan(&format!(
            "{TWO}[[service]]\nname = \"web\"\nnetworks = [\"o\"]\n"
        ));
        assert!(refusals(&p, BackendKind::Userspace).is_empty());
        assert!(refusals(&p, BackendKind::Kernel).is_empty());
        let r = super::docker(&p, false);
        assert_eq!(
            r,
            vec![
                "backend docker: VIP load balancing needs the kernel's IP_VS, which this kernel lacks (service[0] `web`): use endpoint_mode = \"dnsrr\"".to_string()
            ]
        );
        let r = super::docker(&p, true);
        assert!(r[0].contains("VIP mode not supported yet"), "{r:?}");
    }

    /// SVC-1, SVC-5: a dnsrr service with a host-mode port is built by
    /// docker; SVC-4: an ingress-mode port (VIP mode) is refused by name.
    #[test]
    fn docker_builds_dnsrr_and_refuses_the_mesh() {
        let p = plan(&format!(
            "{TWO}[[service]]\nname = \"web\"\nreplicas = 2\nendpoint_mode = \"dnsrr\"\nnetworks = [\"o\"]\npublish = [\"published=9090,target=80,mode=host\"]\n"
        ));
        assert!(
            super::docker(&p, false).is_empty(),
            "{:?}",
            super::docker(&p, false)
        );
        let p = plan(&format!(
            "{TWO}[[service]]\nname = \"web\"\nnetworks = [\"o\"]\npublish = [\"8080:80\"]\n"
        ));
        let r = super::docker(&p, false);
        assert!(
            r.iter().any(
                |s| s.contains("ingress routing mesh needs the kernel's IP_VS")
                    && s.contains("publish[0] 8080/tcp")
            ),
            "{r:?}"
        );
    }

    /// SVC-6: scale steps are refused by name on docker (its allocator is serial).
    #[test]
    fn docker_refuses_scale_steps_by_name() {
        let p = plan(&format!(
            "{TWO}[[service]]\nname = \"web\"\nendpoint_mode = \"dnsrr\"\nnetworks = [\"o\"]\n[[step]]\nname = \"up\"\nscale = {{ service = \"web\", replicas = 2 }}\n"
        ));
        let r = super::docker(&p, false);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].contains("scale steps") && r[0].contains("step[0] `up`"),
            "{r:?}"
        );
        let r = crate::backend::unsupported(&p, BackendKind::Docker);
        assert!(r.iter().any(|s| s.contains("scale steps")), "{r:?}");
    }
}
