//! Plan-level facts every backend builds from, computed once here rather
//! than inside one backend: the backend-neutral [`Topology`] (every
//! interface, segment, overlay and service), which machines an overlay
//! spans, the lan MACs, the implicit `docker_gwbridge` network (OV-8) and
//! what no backend can build of overlays yet.
//!
//! Overlay-only containers get an endpoint on their machine's
//! `docker_gwbridge` ([`with_gwbridge`], OV-8): the plan the backends build
//! carries it, so north–south traffic and published ports work as on
//! Docker. What cannot be built is refused by name ([`refusals`]): only when
//! no 172.18-31.0.0/16 is free for that bridge.

pub mod features;
#[cfg(test)]
mod golden;
mod model;

pub use model::{GatewayBridge, Interface, LAN_MTU, Overlay, Role, Segment, Service, Topology};
pub(crate) use model::{carries_default, is_child_driver, is_ipvlan_l3};

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::Ipv4Net;

use crate::scenario::plan::{CheckKind, Driver, Endpoint, MacAddr, Network, Node, Plan, Subnet4};

/// The MAC of a lan interface (a machine's or external's `eth0`) on every
/// backend: locally administered `02:56:` + its IPv4 address.
pub fn lan_mac(ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x02, 0x56, o[0], o[1], o[2], o[3]])
}

/// The MAC of an IPv6-only lan host's interface: `02:57:` + the last four
/// bytes of its address.
pub fn lan_mac6(ip: Ipv6Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x02, 0x57, o[12], o[13], o[14], o[15]])
}

/// Name of a bridge network's device in its machine namespace, the same on
/// every backend (the userspace host port, the kernel bridge): `docker0` for
/// the default bridge, else `br-<name>` cut to 15 characters, `br<index>`
/// when two cut names clash.
pub(crate) fn bridge_device_name(plan: &Plan, net: usize) -> String {
    let n = &plan.networks[net];
    if n.default {
        return "docker0".to_string();
    }
    let mut name: String = format!("br-{}", n.name).chars().take(15).collect();
    let clash = plan.networks.iter().enumerate().any(|(j, o)| {
        j != net && o.machine == n.machine && format!("br-{}", o.name).starts_with(&name)
    });
    if clash {
        name = format!("br{net}");
    }
    name
}

/// The IPv6 subnets routed without NAT behind machine `m` (`ip6tables =
/// false`, V6-4): those of its non-internal bridge networks. Every backend
/// gives lan hosts with IPv6 a route to them via the machine, as the admin
/// of such a network configures it: without one, replies to un-NATed
/// container addresses have no way back.
pub(crate) fn routed_subnets6(plan: &Plan, m: usize) -> Vec<ipnet::Ipv6Net> {
    if plan.machines[m].ip6tables {
        return Vec::new();
    }
    plan.networks
        .iter()
        .filter(|n| n.machine == Some(m) && n.driver == Driver::Bridge && !n.internal)
        .filter_map(|n| n.subnet6)
        .collect()
}

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

    use crate::scenario::plan::Plan;

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
        let dir = crate::run::execute::run_captured("ovpcap", &plan(TWO));
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
