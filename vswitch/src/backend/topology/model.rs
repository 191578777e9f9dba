//! The backend-neutral [`Topology`] of a plan: what every backend builds,
//! computed once, without IO. Every interface with its namespace (node),
//! name, MAC, addresses, MTU and routes; the L2 segments (the lan, bridge
//! networks, macvlan/ipvlan networks, each overlay's per-machine segment);
//! the implicit gateway bridges (OV-8); overlay membership and VNIs; swarm
//! services and their VIPs. The backends read interfaces from it instead of
//! each deriving them again from the plan: the userspace wiring
//! (`hosted::wiring`), the kernel layout (`kernel::layout`) and the docker
//! backend (the lan veths it plugs, the MAC it asks for, the addresses it
//! checks Docker gave).
//!
//! Built from the plan a backend builds: after [`super::with_gwbridge`].

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Serialize, Serializer};

use super::{GWBRIDGE, lan_mac, lan_mac6, machines_of};
use crate::scenario::plan::{Driver, MacAddr, Mode, Network, Node, Plan};

/// What an interface is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Role {
    /// A machine's or external's `eth0` on the lan.
    Lan,
    /// A bridge network's device in its machine namespace, holding the
    /// gateway address(es) (BR-1, BR-3): `docker0`, `br-<name>`.
    Bridge {
        /// Index into `Plan::networks`.
        #[serde(skip)]
        network: usize,
    },
    /// Container endpoint `ethK` (the K-th endpoint).
    Endpoint {
        /// Index into `Plan::networks`.
        #[serde(skip)]
        network: usize,
        /// K.
        #[serde(skip)]
        index: usize,
        /// Whether it carries the container's default route(s) (BR-3).
        default: bool,
    },
}

/// One interface as every backend configures it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interface {
    /// The node whose namespace holds it.
    #[serde(serialize_with = "node_ser")]
    pub node: Node,
    /// The node's name (machine, external or container).
    pub node_name: String,
    /// Interface name in that namespace.
    pub name: String,
    /// What it is for.
    pub role: Role,
    /// The network it is on (`None`: the lan).
    pub network: Option<String>,
    /// Hardware address.
    #[serde(serialize_with = "display_ser")]
    pub mac: MacAddr,
    /// MTU.
    pub mtu: u16,
    /// Addresses with prefix lengths (IPv4 first).
    #[serde(serialize_with = "addrs_ser")]
    pub addrs: Vec<(IpAddr, u8)>,
    /// Routes on it: destination and next hop (`None`: on-link).
    #[serde(serialize_with = "routes_ser")]
    pub routes: Vec<(IpNet, Option<IpAddr>)>,
}

/// An L2 segment: the lan, a bridge network, a macvlan/ipvlan network (on
/// the lan with a parent, else its own), an overlay on one machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// `lan` or the network's name.
    pub name: String,
    /// The network's driver (`None`: the lan).
    pub driver: Option<String>,
    /// The machine it is on (`None`: the lan, or on the lan by its parent).
    pub machine: Option<String>,
    /// Whether it is carried on the lan (macvlan/ipvlan with a parent).
    pub on_lan: bool,
    /// Inter-container communication.
    pub icc: bool,
}

/// A machine's implicit `docker_gwbridge` network (OV-8).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GatewayBridge {
    /// Machine name.
    pub machine: String,
    /// Its subnet.
    pub subnet: Ipv4Net,
    /// The containers given an endpoint on it.
    pub containers: Vec<String>,
}

/// An overlay network: its VNI and the machines that carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Overlay {
    /// Network name.
    pub name: String,
    /// VXLAN network identifier (`None`: the backend's choice).
    pub vni: Option<u32>,
    /// IPsec ESP between machines (OV-9).
    pub encrypted: bool,
    /// Machines that run one of its containers (every machine for `ingress`).
    pub machines: Vec<String>,
    /// Containers attached.
    pub members: Vec<String>,
}

/// A swarm service, its VIPs and tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Service {
    /// Name.
    pub name: String,
    /// `vip` or `dnsrr`.
    pub mode: crate::scenario::plan::EndpointMode,
    /// `(network, VIP)` per attached network (`None`: dnsrr).
    pub vips: Vec<(String, Option<Ipv4Addr>)>,
    /// VIP on `ingress` (routing mesh).
    pub ingress_vip: Option<Ipv4Addr>,
    /// Task containers, running ones first.
    pub tasks: Vec<String>,
    /// Replicas running.
    pub replicas: usize,
}

/// What every backend builds of a plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Topology {
    /// Every interface: lan ports (machines, then externals), bridge
    /// devices, container endpoints.
    pub interfaces: Vec<Interface>,
    /// L2 segments.
    pub segments: Vec<Segment>,
    /// Implicit gateway bridges.
    pub gateway_bridges: Vec<GatewayBridge>,
    /// Overlay networks.
    pub overlays: Vec<Overlay>,
    /// Swarm services.
    pub services: Vec<Service>,
    /// Each machine's ingress-sandbox address (swarm `ingress`, SVC-4).
    pub ingress_sandboxes: Vec<(String, Ipv4Addr)>,
}

impl Topology {
    /// The topology of `plan` (the plan a backend builds).
    pub fn of(plan: &Plan) -> Topology {
        let mut t = Topology::default();
        for m in 0..plan.machines.len() {
            t.interfaces.extend(lan_interface(plan, Node::Machine(m)));
        }
        for x in 0..plan.externals.len() {
            t.interfaces.extend(lan_interface(plan, Node::External(x)));
        }
        for ni in 0..plan.networks.len() {
            t.interfaces.extend(bridge_interface(plan, ni));
        }
        for ci in 0..plan.containers.len() {
            t.interfaces.extend(endpoint_interfaces(plan, ci));
        }
        t.segments = segments(plan);
        t.gateway_bridges = gateway_bridges(plan);
        t.overlays = overlays(plan);
        t.services = services(plan);
        if let Some(ing) = &plan.ingress {
            t.ingress_sandboxes = plan
                .machines
                .iter()
                .zip(&ing.sandboxes)
                .map(|(m, ip)| (m.name.clone(), *ip))
                .collect();
        }
        t
    }

    /// The lan interface (`eth0`) of a machine or external.
    pub fn lan(&self, node: Node) -> Option<&Interface> {
        self.interfaces
            .iter()
            .find(|i| i.node == node && i.role == Role::Lan)
    }

    /// The device of bridge network `network`.
    pub fn bridge(&self, network: usize) -> Option<&Interface> {
        self.interfaces
            .iter()
            .find(|i| matches!(i.role, Role::Bridge { network: n } if n == network))
    }

    /// Container `container`'s endpoint `index` (`eth<index>`).
    pub fn endpoint(&self, container: usize, index: usize) -> Option<&Interface> {
        self.interfaces.iter().find(|i| {
            i.node == Node::Container(container)
                && matches!(i.role, Role::Endpoint { index: k, .. } if k == index)
        })
    }

    /// The topology as JSON, keys sorted (the golden files' form).
    pub fn to_json(&self) -> String {
        let v = serde_json::to_value(self).expect("a topology serialises");
        let mut s = serde_json::to_string_pretty(&sorted(v)).expect("a value serialises");
        s.push('\n');
        s
    }
}

fn sorted(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut kv: Vec<_> = m.into_iter().collect();
            kv.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(kv.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The `eth0` of a machine or external on the lan: its IPv4 address on
/// `lan` and IPv6 address on `lan6`, a default route per family via the
/// lan's gateway external when there is one. An external also gets a
/// route to every IPv6 subnet a machine routes without NAT (`ip6tables =
/// false`) via that machine, as the admin of such a network configures
/// it: without one, replies to un-NATed container addresses have no way
/// back. An external with no address has none.
fn lan_interface(plan: &Plan, node: Node) -> Option<Interface> {
    let gateway = plan.externals.iter().find(|x| x.gateway);
    let l6 = plan.lan6.map_or(64, |n| n.prefix_len());
    let l4 = plan.lan.prefix_len();
    let mut addrs = Vec::new();
    let mut routes = Vec::new();
    let mac = match node {
        Node::Machine(i) => {
            let m = &plan.machines[i];
            addrs.push((IpAddr::V4(m.ip), l4));
            if let Some(gw) = gateway.and_then(|g| g.ip4()) {
                routes.push((IpNet::V4(Ipv4Net::default()), Some(IpAddr::V4(gw))));
            }
            if let Some(a) = m.ip6 {
                addrs.push((IpAddr::V6(a), l6));
                if let Some(gw) = gateway.and_then(|g| g.ip6) {
                    routes.push((IpNet::V6(Ipv6Net::default()), Some(IpAddr::V6(gw))));
                }
            }
            lan_mac(m.ip)
        }
        Node::External(i) => {
            let x = &plan.externals[i];
            if let Some(a) = x.ip4() {
                addrs.push((IpAddr::V4(a), l4));
            }
            if let Some(a) = x.ip6 {
                addrs.push((IpAddr::V6(a), l6));
                for (m, mach) in plan.machines.iter().enumerate() {
                    let Some(via) = mach.ip6 else { continue };
                    for net in super::routed_subnets6(plan, m) {
                        routes.push((IpNet::V6(net), Some(IpAddr::V6(via))));
                    }
                }
            }
            match (x.ip4(), x.ip6) {
                (Some(a), _) => lan_mac(a),
                (None, Some(a)) => lan_mac6(a),
                (None, None) => return None,
            }
        }
        Node::Container(_) => return None,
    };
    Some(Interface {
        node,
        node_name: plan.node_name(node).to_string(),
        name: "eth0".into(),
        role: Role::Lan,
        network: None,
        mac,
        mtu: LAN_MTU,
        addrs,
        routes,
    })
}

/// MTU of the lan.
pub const LAN_MTU: u16 = 1500;

/// A bridge network's device: the gateway addresses, MAC `02:42:<gw>`
/// (none without a primary gateway).
fn bridge_interface(plan: &Plan, ni: usize) -> Option<Interface> {
    let n = &plan.networks[ni];
    let machine = n.machine?;
    let gw = n.primary().and_then(|s| s.gateway)?;
    if n.driver != Driver::Bridge {
        return None;
    }
    let mut addrs: Vec<(IpAddr, u8)> = n
        .subnets
        .iter()
        .filter_map(|s| s.gateway.map(|g| (IpAddr::V4(g), s.net.prefix_len())))
        .collect();
    // V6-1: the bridge holds gateway6 as docker0 does.
    if let (true, Some(g6), Some(s6)) = (n.ipv6, n.gateway6, n.subnet6) {
        addrs.push((IpAddr::V6(g6), s6.prefix_len()));
    }
    Some(Interface {
        node: Node::Machine(machine),
        node_name: plan.machines[machine].name.clone(),
        name: super::bridge_device_name(plan, ni),
        role: Role::Bridge { network: ni },
        network: Some(n.name.clone()),
        mac: MacAddr::docker_from_ipv4(gw),
        mtu: n.mtu,
        addrs,
        routes: Vec::new(),
    })
}

/// macvlan or ipvlan.
pub(crate) fn is_child_driver(n: &Network) -> bool {
    matches!(n.driver, Driver::Macvlan | Driver::Ipvlan)
}

/// ipvlan `l3`/`l3s`.
pub(crate) fn is_ipvlan_l3(n: &Network) -> bool {
    n.driver == Driver::Ipvlan && matches!(n.mode, Some(Mode::L3 | Mode::L3s))
}

/// Whether an endpoint on `n` can carry the container's default route:
/// not an overlay (OV-8: docker_gwbridge carries it), not internal, and a
/// gateway (or ipvlan l3 with a parent: `dev eth0`).
pub(crate) fn carries_default(n: &Network) -> bool {
    n.driver != Driver::Overlay
        && !n.internal
        && (n.primary().and_then(|s| s.gateway).is_some()
            || (is_ipvlan_l3(n) && n.parent.is_some()))
}

/// Container `ci`'s endpoints with an IPv4 address on a network with a
/// data path (bridge, macvlan, ipvlan, overlay): `ethK`, the default
/// route on the first that can carry it (BR-3, BR-15; IV-5: ipvlan l3's
/// is `default dev ethK`), IPv6 beside IPv4 on an IPv6 network (V6-1).
fn endpoint_interfaces(plan: &Plan, ci: usize) -> Vec<Interface> {
    let c = &plan.containers[ci];
    let default_ep = c
        .endpoints
        .iter()
        .position(|e| carries_default(&plan.networks[e.network]));
    let mut out = Vec::new();
    for (k, e) in c.endpoints.iter().enumerate() {
        let n = &plan.networks[e.network];
        if matches!(n.driver, Driver::None | Driver::Host) {
            continue;
        }
        let Some(ip) = e.ip else { continue };
        let default = default_ep == Some(k);
        let subnet = n.subnets.iter().find(|s| s.net.contains(&ip));
        let mut routes = Vec::new();
        if default && let Some(gw) = subnet.and_then(|s| s.gateway) {
            routes.push((IpNet::V4(Ipv4Net::default()), Some(IpAddr::V4(gw))));
        } else if default && is_ipvlan_l3(n) {
            routes.push((IpNet::V4(Ipv4Net::default()), None));
        }
        let mut mac = e.mac;
        if is_child_driver(n) && n.parent.is_some() && n.driver == Driver::Ipvlan {
            // IV-2: an ipvlan child has its parent's MAC.
            mac = lan_mac(plan.machines[c.machine].ip);
        }
        let mut addrs = vec![(IpAddr::V4(ip), subnet.map_or(32, |s| s.net.prefix_len()))];
        if let (true, Some(ip6), Some(s6)) = (n.ipv6, e.ip6, n.subnet6) {
            addrs.push((IpAddr::V6(ip6), s6.prefix_len()));
            if default && is_ipvlan_l3(n) {
                routes.push((IpNet::V6(Ipv6Net::default()), None));
            } else if default && let Some(g6) = n.gateway6 {
                routes.push((IpNet::V6(Ipv6Net::default()), Some(IpAddr::V6(g6))));
            }
        }
        out.push(Interface {
            node: Node::Container(ci),
            node_name: c.name.clone(),
            name: format!("eth{k}"),
            role: Role::Endpoint {
                network: e.network,
                index: k,
                default,
            },
            network: Some(n.name.clone()),
            mac,
            mtu: n.mtu,
            addrs,
            routes,
        });
    }
    out
}

fn segments(plan: &Plan) -> Vec<Segment> {
    let mut out = vec![Segment {
        name: "lan".into(),
        driver: None,
        machine: None,
        on_lan: true,
        icc: true,
    }];
    for (ni, n) in plan.networks.iter().enumerate() {
        let seg = |machine: Option<usize>, on_lan: bool, icc: bool| Segment {
            name: n.name.clone(),
            driver: Some(n.driver.to_string()),
            machine: machine.map(|m| plan.machines[m].name.clone()),
            on_lan,
            icc,
        };
        match n.driver {
            Driver::Bridge => out.push(seg(n.machine, false, n.icc)),
            Driver::Macvlan | Driver::Ipvlan => {
                let on_lan = n.parent.is_some();
                out.push(seg((!on_lan).then_some(n.machine).flatten(), on_lan, true));
            }
            Driver::Overlay => {
                for m in machines_of(plan, ni) {
                    out.push(seg(Some(m), false, true));
                }
            }
            Driver::None | Driver::Host => {}
        }
    }
    out
}

fn gateway_bridges(plan: &Plan) -> Vec<GatewayBridge> {
    plan.networks
        .iter()
        .enumerate()
        .filter(|(_, n)| n.name == GWBRIDGE && n.driver == Driver::Bridge)
        .filter_map(|(ni, n)| {
            Some(GatewayBridge {
                machine: plan.machines[n.machine?].name.clone(),
                subnet: n.primary()?.net,
                containers: plan
                    .containers
                    .iter()
                    .filter(|c| c.endpoints.iter().any(|e| e.network == ni))
                    .map(|c| c.name.clone())
                    .collect(),
            })
        })
        .collect()
}

fn overlays(plan: &Plan) -> Vec<Overlay> {
    plan.networks
        .iter()
        .enumerate()
        .filter(|(_, n)| n.driver == Driver::Overlay)
        .map(|(ni, n)| Overlay {
            name: n.name.clone(),
            vni: n.vni,
            encrypted: n.encrypted,
            machines: machines_of(plan, ni)
                .into_iter()
                .map(|m| plan.machines[m].name.clone())
                .collect(),
            members: plan
                .containers
                .iter()
                .filter(|c| c.endpoints.iter().any(|e| e.network == ni))
                .map(|c| c.name.clone())
                .collect(),
        })
        .collect()
}

fn services(plan: &Plan) -> Vec<Service> {
    plan.services
        .iter()
        .map(|s| Service {
            name: s.name.clone(),
            mode: s.mode,
            vips: s
                .networks
                .iter()
                .map(|n| (plan.networks[n.network].name.clone(), n.vip))
                .collect(),
            ingress_vip: s.ingress_vip,
            tasks: s
                .tasks
                .iter()
                .map(|&t| plan.containers[t].name.clone())
                .collect(),
            replicas: s.replicas,
        })
        .collect()
}

fn node_ser<S: Serializer>(n: &Node, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match n {
        Node::Machine(_) => "machine",
        Node::External(_) => "external",
        Node::Container(_) => "container",
    })
}

fn display_ser<T: std::fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn addrs_ser<S: Serializer>(v: &[(IpAddr, u8)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|(a, p)| format!("{a}/{p}")))
}

fn routes_ser<S: Serializer>(v: &[(IpNet, Option<IpAddr>)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|(d, via)| match via {
        Some(g) => format!("{d} via {g}"),
        None => format!("{d} dev"),
    }))
}
