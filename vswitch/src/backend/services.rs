//! What each backend cannot build of a scenario's swarm services
//! (`[[service]]`), said by name before anything is built (exit 3).
//!
//! The userspace engine is the reference implementation of VIPs, the
//! routing mesh and host-mode publishing (docker-semantics SVC-3: this
//! kernel has no IP_VS, so Docker here cannot build VIPs either). The
//! kernel backend builds them with nftables (`kernel::services`). The
//! docker backend refuses every scenario with services until it builds
//! them; its tasks would otherwise come up as plain containers without
//! VIPs or published ports, and checks would fail for the wrong reason.

use crate::scenario::plan::{BackendKind, Plan};

/// One reason per service that `backend` cannot build.
pub(crate) fn refusals(plan: &Plan, backend: BackendKind) -> Vec<String> {
    let why = match backend {
        BackendKind::Userspace => return userspace(plan),
        BackendKind::Kernel => return Vec::new(),
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

    /// Docker refuses services by name; userspace and kernel build them.
    #[test]
    fn docker_refuses_services_by_name() {
        let p = parse_str(
            Path::new("s.toml"),
            "name = \"s\"\n[[network]]\nname = \"o\"\ndriver = \"overlay\"\n[[service]]\nname = \"web\"\nnetworks = [\"o\"]\n",
        )
        .unwrap();
        assert!(refusals(&p, BackendKind::Userspace).is_empty());
        assert!(refusals(&p, BackendKind::Kernel).is_empty());
        let r = crate::backend::unsupported(&p, BackendKind::Docker);
        assert!(
            r.iter()
                .any(|s| s.contains("swarm services") && s.contains("`web`")),
            "docker: {r:?}"
        );
    }
}
