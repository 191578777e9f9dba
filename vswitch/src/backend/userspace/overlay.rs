//! Overlay networks on the userspace backend (issue 8): one engine domain
//! per overlay network per machine that runs a container of it (OV-4: the
//! overlay's namespace exists only where a task runs), each with a virtual
//! VTEP port; the engine's [`crate::engine::vxlan`] carries frames between
//! them in VXLAN over `lan`.
//!
//! What is not built yet is refused by name ([`refusals`], shared with the
//! kernel backend so both refuse alike): north–south traffic from a
//! container whose only networks are overlays (Docker gives it a
//! `docker_gwbridge` interface and default route, OV-8) and publishing from
//! such a container (ingress/host-mode publishing, OV-10).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::engine::{
    DomainConfig, DomainId, EngineConfig, PortConfig, PortId, PortRole, VtepConfig,
};
use crate::scenario::plan::{BackendKind, CheckKind, Driver, MacAddr, Node, Plan};

/// Machines that run a container attached to network `net`, in order.
pub fn machines_of(plan: &Plan, net: usize) -> Vec<usize> {
    let mut v: Vec<usize> = plan
        .containers
        .iter()
        .filter(|c| c.endpoints.iter().any(|e| e.network == net))
        .map(|c| c.machine)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// True when a container has a default route on this backend: an endpoint
/// on a non-internal, non-overlay network with a gateway (OV-8's
/// `docker_gwbridge` is not built yet).
fn has_default_route(plan: &Plan, container: usize) -> bool {
    plan.containers[container].endpoints.iter().any(|e| {
        let n = &plan.networks[e.network];
        n.driver != Driver::Overlay && !n.internal && n.primary().and_then(|s| s.gateway).is_some()
    })
}

fn on_overlay(plan: &Plan, container: usize) -> bool {
    plan.containers[container]
        .endpoints
        .iter()
        .any(|e| plan.networks[e.network].driver == Driver::Overlay)
}

/// What neither the userspace nor the kernel backend builds of overlay
/// networks yet, one reason per item (without the `backend X: ` prefix).
pub fn refusals(plan: &Plan) -> Vec<String> {
    let mut why = Vec::new();
    for (ci, c) in plan.containers.iter().enumerate() {
        if on_overlay(plan, ci) && !has_default_route(plan, ci) && !c.publish.is_empty() {
            why.push(format!(
                "publishing from an overlay-only container (ingress or host-mode publish, OV-10) not supported yet (container[{ci}] `{}`)",
                c.name
            ));
        }
    }
    for chk in &plan.checks {
        for &from in &chk.from {
            let Node::Container(ci) = from else { continue };
            if !on_overlay(plan, ci) || has_default_route(plan, ci) {
                continue;
            }
            let targets: Vec<IpAddr> = match &chk.kind {
                CheckKind::Ping { to, .. }
                | CheckKind::Tcp { to, .. }
                | CheckKind::Udp { to, .. }
                | CheckKind::Throughput { to, .. } => vec![to.addr],
                CheckKind::Reach { to } => to.iter().map(|t| t.addr).collect(),
                CheckKind::Dns { .. } => Vec::new(),
            };
            // East–west: its own networks, or another overlay (unreachable
            // with or without docker_gwbridge: no machine routes to it).
            let local = |a: &IpAddr| {
                a.is_loopback()
                    || plan.networks.iter().enumerate().any(|(ni, n)| {
                        let mine = plan.containers[ci]
                            .endpoints
                            .iter()
                            .any(|e| e.network == ni);
                        (mine || n.driver == Driver::Overlay)
                            && n.subnets
                                .iter()
                                .any(|s| matches!(a, IpAddr::V4(v) if s.net.contains(v)))
                    })
            };
            if targets.iter().any(|a| !local(a)) {
                why.push(format!(
                    "north–south traffic from an overlay-only container needs docker_gwbridge (OV-8), not supported yet (check[{}] ({}) from `{}`)",
                    chk.index,
                    chk.kind.name(),
                    plan.containers[ci].name
                ));
            }
        }
    }
    why
}

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

/// Adds each overlay domain's virtual VTEP port (after every real port, so
/// no TAP is behind its index) and its VTEP. `uplinks[m]` is machine `m`'s
/// lan port; `lan_mac` gives a machine's uplink MAC from its address.
pub fn add_vteps(
    plan: &Plan,
    cfg: &mut EngineConfig,
    domains: &Domains,
    uplinks: &[PortId],
    lan_mac: fn(Ipv4Addr) -> MacAddr,
    capture: bool,
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

/// What a mixed run (some machines `backend = "kernel"`) cannot build: the
/// kernel backend's own refusals (it builds those machines), re-labelled.
pub fn mixed_refusals(plan: &Plan) -> Vec<String> {
    if !plan
        .machines
        .iter()
        .any(|m| m.backend == Some(BackendKind::Kernel))
    {
        return Vec::new();
    }
    crate::backend::kernel::unsupported(plan)
        .into_iter()
        .map(|r| {
            let r = r.strip_prefix("backend kernel: ").unwrap_or(&r).to_string();
            format!("mixed run, kernel machines: {r}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use crate::backend::BuildOptions;
    use crate::run::execute::{RunOptions, execute_plan};
    use crate::scenario::plan::{BackendKind, Plan};
    use crate::world::RunId;

    fn plan(text: &str) -> Plan {
        crate::scenario::parse_str(Path::new("overlay-test.toml"), text).expect("valid scenario")
    }

    const TWO: &str = r#"
name = "t"
[[machine]]
name = "h1"
[[machine]]
name = "h2"
[[network]]
name = "ov"
driver = "overlay"
vni = 4242
[[container]]
name = "a"
machine = "h1"
networks = ["ov"]
[[container]]
name = "b"
machine = "h2"
networks = ["ov"]
[[container]]
name = "out"
machine = "h2"
networks = ["ov"]
[[external]]
name = "x"
ip = "198.18.0.100"
[[check]]
kind = "ping"
from = "a"
to = "b"
expect = "ok"
"#;

    #[test]
    fn refusals_name_north_south_and_publish() {
        let mut t = TWO.to_string();
        t.push_str("[[check]]\nkind = \"ping\"\nfrom = \"out\"\nto = \"x\"\nexpect = \"ok\"\n");
        let why = super::refusals(&plan(&t));
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(why[0].contains("docker_gwbridge (OV-8)"), "{why:?}");
        assert!(super::refusals(&plan(TWO)).is_empty());
    }

    #[test]
    fn engine_machines_skip_kernel_ones() {
        let t = TWO.replace("name = \"h1\"\n", "name = \"h1\"\nbackend = \"kernel\"\n");
        assert_eq!(super::engine_machines(&plan(&t)), vec![None, Some(0)]);
    }

    /// A capture on the lan port that tshark decodes as VXLAN, VNI 4242.
    #[test]
    fn lan_pcap_decodes_as_vxlan_with_the_vni() {
        if !crate::sys::require_root("lan_pcap_decodes_as_vxlan_with_the_vni") {
            return;
        }
        if Command::new("tshark").arg("-v").output().is_err() {
            eprintln!("skip lan_pcap_decodes_as_vxlan_with_the_vni: tshark not installed");
            return;
        }
        let dir = std::env::temp_dir().join(format!("vswitch-ovpcap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ex = execute_plan(
            Path::new("overlay-pcap"),
            &plan(TWO),
            &RunOptions {
                backend: BackendKind::Userspace,
                build: BuildOptions {
                    pcap_dir: Some(dir.clone()),
                },
                keep: false,
                progress: false,
                run_id: Some(RunId::new()),
            },
        );
        assert_eq!(ex.code, 0, "{:?}", ex.report.map(|r| r.table()));
        let out = Command::new("tshark")
            .arg("-r")
            .arg(dir.join("lan-h1-eth0.pcap"))
            .args([
                "-Y",
                "vxlan",
                "-T",
                "fields",
                "-e",
                "vxlan.vni",
                "-e",
                "udp.dstport",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let _ = std::fs::remove_dir_all(&dir);
        let lines: Vec<&str> = text.lines().collect();
        assert!(!lines.is_empty(), "no VXLAN in the lan capture");
        assert!(lines.iter().all(|l| *l == "4242\t4789"), "{text}");
    }
}
