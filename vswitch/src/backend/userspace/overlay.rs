//! Overlay networks on the userspace backend (issue 8): one engine domain
//! per overlay network per machine that runs a container of it (OV-4: the
//! overlay's namespace exists only where a task runs), each with a virtual
//! VTEP port; the engine's [`crate::engine::vxlan`] carries frames between
//! them in VXLAN over `lan`.
//!
//! Overlay-only containers get an endpoint on their machine's
//! `docker_gwbridge` ([`with_gwbridge`], OV-8), shared with the kernel
//! backend: the plan both backends build carries it, so north–south traffic
//! and published ports work as on Docker. What cannot be built is refused
//! by name ([`refusals`]): only when no 172.18-31.0.0/16 is free for that
//! bridge.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::engine::esp::{self, SaConfig};
use crate::engine::{
    DomainConfig, DomainId, EngineConfig, PortConfig, PortId, PortRole, VtepConfig,
};
use ipnet::Ipv4Net;

use crate::scenario::plan::{
    BackendKind, CheckKind, Driver, Endpoint, MacAddr, Network, Node, Plan, Subnet4,
};

/// Machines that run a container attached to network `net`, in order;
/// for the swarm's `ingress`, every machine (its sandbox is there, SVC-4).
pub fn machines_of(plan: &Plan, net: usize) -> Vec<usize> {
    if plan.ingress.as_ref().is_some_and(|i| i.network == net) {
        return (0..plan.machines.len()).collect();
    }
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
        if on_overlay(plan, ci)
            && !has_default_route(plan, ci)
            && !c.publish.is_empty()
            && gwbridge_subnet(plan).is_none()
        {
            why.push(format!(
                "publishing from an overlay-only container (ingress or host-mode publish, OV-10) not supported yet (container[{ci}] `{}`)",
                c.name
            ));
        }
    }
    for chk in &plan.checks {
        for &from in &chk.from {
            let Node::Container(ci) = from else { continue };
            if !on_overlay(plan, ci)
                || has_default_route(plan, ci)
                || gwbridge_subnet(plan).is_some()
            {
                continue;
            }
            let targets: Vec<IpAddr> = match &chk.kind {
                CheckKind::Ping { to, .. }
                | CheckKind::Tcp { to, .. }
                | CheckKind::Udp { to, .. }
                | CheckKind::Throughput { to, .. }
                | CheckKind::Spread { to, .. } => vec![to.addr],
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
                    "north–south traffic from an overlay-only container needs docker_gwbridge (OV-8), and no 172.18-31.0.0/16 is free for it (check[{}] ({}) from `{}`)",
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

/// Name of the implicit gateway bridge network (OV-8).
pub const GWBRIDGE: &str = "docker_gwbridge";

/// The subnet Docker's `docker_gwbridge` would get: the first /16 of
/// 172.18-31 overlapping no network of the plan and not `lan`.
fn gwbridge_subnet(plan: &Plan) -> Option<Ipv4Net> {
    (18..=31u8).find_map(|b| {
        let net = Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).ok()?;
        let clash = |o: &Ipv4Net| o.contains(&net.network()) || net.contains(&o.network());
        let used = plan
            .networks
            .iter()
            .flat_map(|n| n.subnets.iter().map(|s| s.net))
            .any(|o| clash(&o))
            || clash(&plan.lan);
        (!used).then_some(net)
    })
}

/// The plan the backends build (OV-8): every container whose only routed
/// networks are overlays gets one more endpoint, on its machine's
/// `docker_gwbridge` (a bridge network, ICC off, masquerade on, one per
/// machine, as Docker creates it), which carries its default route.
/// Names are not registered on it (no embedded DNS records come from this
/// plan). Unchanged when no container needs it.
pub fn with_gwbridge(plan: &Plan) -> std::borrow::Cow<'_, Plan> {
    use std::borrow::Cow;
    let needy: Vec<usize> = (0..plan.containers.len())
        .filter(|&ci| on_overlay(plan, ci) && !has_default_route(plan, ci))
        .collect();
    let Some(net) = (!needy.is_empty()).then(|| gwbridge_subnet(plan)).flatten() else {
        return Cow::Borrowed(plan);
    };
    let mut out = plan.clone();
    let gw = Ipv4Addr::from(u32::from(net.network()) + 1);
    let mut per_machine: BTreeMap<usize, (usize, u32)> = BTreeMap::new();
    for &ci in &needy {
        let m = plan.containers[ci].machine;
        let entry = per_machine.entry(m).or_insert_with(|| {
            out.networks.push(Network {
                name: GWBRIDGE.to_string(),
                driver: Driver::Bridge,
                machine: Some(m),
                default: false,
                subnets: vec![Subnet4 {
                    net,
                    gateway: Some(gw),
                    ip_range: net,
                }],
                aux_addresses: BTreeMap::new(),
                ipv6: false,
                subnet6: None,
                gateway6: None,
                internal: false,
                icc: false,
                masquerade: true,
                mtu: 1500,
                parent: None,
                mode: None,
                flag: None,
                vni: None,
                mtu_explicit: false,
                encrypted: false,
            });
            (out.networks.len() - 1, 1)
        });
        entry.1 += 1;
        let ip = Ipv4Addr::from(u32::from(net.network()) + entry.1);
        out.containers[ci].endpoints.push(Endpoint {
            network: entry.0,
            ip: Some(ip),
            ip6: None,
            aliases: Vec::new(),
            mac: MacAddr::docker_from_ipv4(ip),
        });
    }
    Cow::Owned(out)
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
    fn nothing_refused_while_docker_gwbridge_has_a_subnet() {
        let mut t = TWO.to_string();
        t.push_str("[[check]]\nkind = \"ping\"\nfrom = \"out\"\nto = \"x\"\nexpect = \"ok\"\n");
        assert!(super::refusals(&plan(&t)).is_empty());
        let p = t.replace(
            "name = \"out\"\n",
            "name = \"out\"\npublish = [\"8080:80\"]\n",
        );
        // Published through docker_gwbridge.
        assert!(super::refusals(&plan(&p)).is_empty());
    }

    #[test]
    fn gwbridge_per_machine_for_overlay_only_containers() {
        let p = plan(TWO);
        let g = super::with_gwbridge(&p);
        let gw: Vec<_> = g
            .networks
            .iter()
            .filter(|n| n.name == super::GWBRIDGE)
            .collect();
        assert_eq!(gw.len(), 2);
        assert!(
            gw.iter()
                .all(|n| !n.icc && n.masquerade && n.subnets[0].net.to_string() == "172.18.0.0/16")
        );
        // b and out share h2's: distinct addresses.
        let last = |c: usize| {
            g.containers[c]
                .endpoints
                .last()
                .unwrap()
                .ip
                .unwrap()
                .to_string()
        };
        assert_eq!(
            (last(0), last(1), last(2)),
            (
                "172.18.0.2".into(),
                "172.18.0.2".into(),
                "172.18.0.3".into()
            )
        );
        assert_eq!(g.containers[1].endpoints.len(), 2);
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
        let test = "lan_pcap_decodes_as_vxlan_with_the_vni";
        let Some(tshark) = crate::prereq::tool(test, "tshark").or_panic() else {
            return;
        };
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
        let out = Command::new(tshark)
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
