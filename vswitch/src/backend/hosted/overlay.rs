//! Overlay networks on the userspace backend (issue 8): one engine domain
//! per overlay network per machine that runs a container of it (OV-4: the
//! overlay's namespace exists only where a task runs), each with a virtual
//! VTEP port; the engine's [`crate::engine::vxlan`] carries frames between
//! them in VXLAN over `lan`.
//!
//! The plan-level parts both backends share (`docker_gwbridge`, which
//! machines an overlay spans, what cannot be built) are in
//! [`crate::backend::topology`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::backend::topology::machines_of;

use crate::engine::esp::{self, SaConfig};
use crate::engine::{
    DomainConfig, DomainId, EngineConfig, PortConfig, PortId, PortRole, VtepConfig,
};

use crate::scenario::plan::{BackendKind, Driver, MacAddr, Plan};

/// The overlay domains of a world: (network, machine) → domain.
pub type Domains = BTreeMap<(usize, usize), DomainId>;

/// Adds one domain per overlay network per machine running one of its
/// containers. Overlay networks have no gateway the engine answers: the
/// subnet's gateway lives in Docker's hidden overlay namespace (OV-4),
/// which nothing routes through here.
pub fn add_domains(plan: &Plan, cfg: &mut EngineConfig) -> Domains {
    let mut out = Domains::new();
    for (ni, n) in plan.networks.iter().enumerate() {
        if n.driver != Driver::Overlay {
            continue;
        }
        for m in machines_of(plan, ni) {
            if plan.machines[m].backend == Some(BackendKind::Kernel) {
                continue;
            }
            cfg.domains.push(DomainConfig {
                name: format!("{}@{}", n.name, plan.machines[m].name),
                gateway: None,
                icc: n.icc,
            });
            out.insert((ni, m), DomainId((cfg.domains.len() - 1) as u16));
        }
    }
    out
}

/// The ESP SAs of a world's encrypted overlays (OV-9): every ordered pair
/// of machines, derived from the run id and the scenario's name
/// ([`esp::derive_sas`]), so a run's keys are fixed when it is built and
/// can be handed to tshark.
pub fn world_sas(run: &str, plan: &Plan) -> Vec<SaConfig> {
    if !plan
        .networks
        .iter()
        .any(|n| n.driver == Driver::Overlay && n.encrypted)
    {
        return Vec::new();
    }
    let seed = format!("{run}\0{}", plan.name);
    let ips: Vec<Ipv4Addr> = plan.machines.iter().map(|m| m.ip).collect();
    esp::derive_sas(seed.as_bytes(), &ips)
}

/// The SAs the VTEPs of `cfg` use (each once, in order): what the
/// `esp_sa` file beside the pcaps lists.
pub fn used_sas(cfg: &EngineConfig) -> Vec<SaConfig> {
    let mut out: Vec<SaConfig> = Vec::new();
    for v in &cfg.overlay {
        for sa in &v.esp {
            if !out.contains(sa) {
                out.push(sa.clone());
            }
        }
    }
    out
}

/// Adds each overlay domain's virtual VTEP port (after every real port, so
/// no TAP is behind its index) and its VTEP. `uplinks[m]` is machine `m`'s
/// lan port; `lan_mac` gives a machine's uplink MAC from its address;
/// `sas` are the world's ESP SAs ([`world_sas`]), of which an encrypted
/// overlay's VTEP takes those between its machine and its peers.
pub fn add_vteps(
    plan: &Plan,
    cfg: &mut EngineConfig,
    domains: &Domains,
    uplinks: &[PortId],
    lan_mac: fn(Ipv4Addr) -> MacAddr,
    capture: bool,
    sas: &[SaConfig],
) {
    for (&(ni, m), &domain) in domains {
        let n = &plan.networks[ni];
        let Some(vni) = n.vni else { continue };
        cfg.ports.push(PortConfig {
            name: format!("{}-vtep-{}", plan.machines[m].name, n.name),
            domain,
            role: PortRole::Plain,
        });
        let port = PortId((cfg.ports.len() - 1) as u16);
        let peers: Vec<(Ipv4Addr, MacAddr)> = machines_of(plan, ni)
            .into_iter()
            .filter(|&p| p != m)
            .map(|p| (plan.machines[p].ip, lan_mac(plan.machines[p].ip)))
            .collect();
        let mut bindings = Vec::new();
        for c in plan.containers.iter().filter(|c| c.machine != m) {
            for e in c.endpoints.iter().filter(|e| e.network == ni) {
                if let Some(ip) = e.ip {
                    bindings.push((ip, e.mac, plan.machines[c.machine].ip));
                }
            }
        }
        let ip = plan.machines[m].ip;
        let esp: Vec<SaConfig> = if n.encrypted {
            let peer = |a: Ipv4Addr| peers.iter().any(|&(p, _)| p == a);
            sas.iter()
                .filter(|s| (s.src == ip && peer(s.dst)) || (s.dst == ip && peer(s.src)))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        cfg.overlay.push(VtepConfig {
            name: n.name.clone(),
            vni,
            domain,
            port,
            uplink: uplinks[m],
            local_ip: ip,
            local_mac: lan_mac(ip),
            peers,
            bindings,
            capture,
            esp,
        });
    }
}

/// For each machine of the plan, its index among the engine's machines, or
/// None for a `backend = "kernel"` machine of a mixed run (the kernel
/// backend builds it; only its uplink is a TAP on the engine's lan).
pub fn engine_machines(plan: &Plan) -> Vec<Option<usize>> {
    let mut next = 0;
    plan.machines
        .iter()
        .map(|m| {
            if m.backend == Some(BackendKind::Kernel) {
                None
            } else {
                next += 1;
                Some(next - 1)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn engine_machines_skip_kernel_ones() {
        let t = r#"
name = "t"
[[machine]]
name = "h1"
backend = "kernel"
[[machine]]
name = "h2"
[[network]]
name = "ov"
driver = "overlay"
[[container]]
name = "a"
machine = "h1"
networks = ["ov"]
[[container]]
name = "b"
machine = "h2"
networks = ["ov"]
"#;
        let plan = crate::scenario::parse_str(std::path::Path::new("t.toml"), t).unwrap();
        assert_eq!(super::engine_machines(&plan), vec![None, Some(0)]);
    }
}
