//! What each backend cannot build of a scenario's swarm services
//! (`[[service]]`), said by name before anything is built (exit 3).
//!
//! The userspace engine is the reference implementation of VIPs, the
//! routing mesh and host-mode publishing (docker-semantics SVC-3: this
//! kernel has no IP_VS, so Docker here cannot build VIPs either). The
//! kernel and docker backends refuse every scenario with services until
//! they build them; their tasks would otherwise come up as plain
//! containers without VIPs or published ports, and checks would fail for
//! the wrong reason.

use crate::scenario::plan::{BackendKind, Plan};

/// One reason per service that `backend` cannot build.
pub(crate) fn refusals(plan: &Plan, backend: BackendKind) -> Vec<String> {
    let why = match backend {
        BackendKind::Userspace => return userspace(plan),
        BackendKind::Kernel => {
            "swarm services not supported yet (VIPs and the routing mesh need nftables dnat maps; this kernel has no IP_VS)"
        }
        BackendKind::Docker => {
            "swarm services not supported yet (no swarm on the project's daemon)"
        }
    };
    plan.services
        .iter()
        .enumerate()
        .map(|(i, s)| format!("backend {backend}: {why} (service[{i}] `{}`)", s.name))
        .collect()
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

    /// Kernel and docker refuse services by name; userspace builds them.
    #[test]
    fn kernel_and_docker_refuse_services_by_name() {
        let p = parse_str(
            Path::new("s.toml"),
            "name = \"s\"\n[[network]]\nname = \"o\"\ndriver = \"overlay\"\n[[service]]\nname = \"web\"\nnetworks = [\"o\"]\n",
        )
        .unwrap();
        assert!(refusals(&p, BackendKind::Userspace).is_empty());
        for b in [BackendKind::Kernel, BackendKind::Docker] {
            let r = crate::backend::unsupported(&p, b);
            assert!(
                r.iter()
                    .any(|s| s.contains("swarm services") && s.contains("`web`")),
                "{b}: {r:?}"
            );
        }
    }
}
