//! What a machine's kernel data path is made of, computed from the plan with
//! no IO: its bridges, the container links (veth pairs or macvlan children)
//! and the parents they hang from. Names, MACs, MTUs, addresses and routes
//! are the userspace backend's, so both backends look the same from inside.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::backend::topology::{lan_mac, lan_mac6};
use crate::scenario::plan::{Driver, MacAddr, Mode, Node, Plan};
use crate::sys::netlink::MacvlanMode;

/// An interface as it must look once configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Iface {
    /// Final name (`eth0`, `br-net`, …).
    pub name: String,
    /// Hardware address.
    pub mac: MacAddr,
    /// MTU.
    pub mtu: u16,
    /// Addresses with prefix length.
    pub addrs: Vec<(IpAddr, u8)>,
    /// Routes: destination and optional next hop, on this interface.
    pub routes: Vec<(IpNet, Option<IpAddr>)>,
}

/// A bridge network's Linux bridge in the machine namespace (BR-1, BR-3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct BridgeDev {
    /// Index into `Plan::networks`.
    pub network: usize,
    /// The bridge itself, holding the gateway address(es).
    pub iface: Iface,
    /// Subnets of the network.
    pub subnets: Vec<Ipv4Net>,
    /// Host ends of the container veths enslaved to it.
    pub ports: Vec<String>,
}

/// How a container interface hangs off the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Attach {
    /// A veth pair whose host end `host` is a port of `bridge` (BR-2).
    Veth {
        /// Host end, stays in the machine namespace.
        host: String,
        /// Bridge it is enslaved to.
        bridge: String,
        /// Hairpin mode on the port: a container reaching its own published
        /// port has its DNATed frames bridged back out of the port they came
        /// in by br_netfilter (Docker sets it for the same reason, PUB-8).
        hairpin: bool,
    },
    /// A macvlan child of `parent` (MV-1).
    Macvlan {
        /// Parent link in the machine namespace.
        parent: String,
        /// macvlan mode.
        mode: MacvlanMode,
    },
}

/// One container interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Link {
    /// Index into `Plan::containers`.
    pub container: usize,
    /// Name while it is created in the machine namespace (unique there).
    pub tmp: String,
    /// How it attaches.
    pub attach: Attach,
    /// What it looks like inside the container.
    pub iface: Iface,
}

/// Everything built in one machine namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct MachineLayout {
    /// Parent-less macvlan networks' stand-in parents: veth pairs
    /// `(parent, peer)` (MV-6 wants a dummy link; this kernel has none).
    pub stubs: Vec<(String, String)>,
    /// Bridges, one per bridge network of the machine.
    pub bridges: Vec<BridgeDev>,
    /// Container interfaces.
    pub links: Vec<Link>,
}

/// The `eth0` of a machine or external on the lan: its IPv4 address on
/// `lan` and IPv6 address on `lan6`, a default route per family via the
/// lan's gateway external when there is one. An external also gets a
/// route to every IPv6 subnet a machine routes without NAT (`ip6tables =
/// false`) via that machine, as the admin of such a network configures
/// it: without one, replies to un-NATed container addresses have no way
/// back.
pub(super) fn lan_iface(plan: &Plan, node: Node) -> Option<Iface> {
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
            if x.vlan.is_some() {
                return None;
            }
            if let Some(a) = x.ip4() {
                addrs.push((IpAddr::V4(a), l4));
            }
            if let Some(a) = x.ip6 {
                addrs.push((IpAddr::V6(a), l6));
                for (m, mach) in plan.machines.iter().enumerate() {
                    let Some(via) = mach.ip6 else { continue };
                    for net in crate::backend::routed_subnets6(plan, m) {
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
    Some(Iface {
        name: "eth0".into(),
        mac,
        mtu: 1500,
        addrs,
        routes,
    })
}

/// The endpoint that carries a container's default route (and its published
/// ports, BR-17): the first on a non-internal network with a gateway.
pub(super) fn gateway_endpoint(plan: &Plan, container: usize) -> Option<usize> {
    plan.containers[container].endpoints.iter().position(|e| {
        let n = &plan.networks[e.network];
        // Overlay: the default route is docker_gwbridge's (OV-8), not built.
        n.driver != Driver::Overlay && !n.internal && n.primary().and_then(|s| s.gateway).is_some()
    })
}

/// A bridge's IPv6 gateway address with its prefix (V6-1).
fn gateway6(n: &crate::scenario::plan::Network) -> Option<(IpAddr, u8)> {
    Some((IpAddr::V6(n.gateway6?), n.subnet6?.prefix_len()))
}

fn macvlan_mode(mode: Option<Mode>) -> MacvlanMode {
    match mode {
        Some(Mode::Private) => MacvlanMode::Private,
        Some(Mode::Vepa) => MacvlanMode::Vepa,
        Some(Mode::Passthru) => MacvlanMode::Passthru,
        _ => MacvlanMode::Bridge,
    }
}

/// The layout of machine `m`.
pub(super) fn machine_layout(plan: &Plan, m: usize) -> MachineLayout {
    let mut out = MachineLayout::default();
    for (ni, n) in plan.networks.iter().enumerate() {
        if n.machine != Some(m) {
            continue;
        }
        match n.driver {
            Driver::Bridge => {
                let Some(gw) = n.primary().and_then(|s| s.gateway) else {
                    continue;
                };
                out.bridges.push(BridgeDev {
                    network: ni,
                    iface: Iface {
                        name: crate::backend::bridge_device_name(plan, ni),
                        mac: MacAddr::docker_from_ipv4(gw),
                        mtu: n.mtu,
                        addrs: n
                            .subnets
                            .iter()
                            .filter_map(|s| s.gateway.map(|g| (IpAddr::V4(g), s.net.prefix_len())))
                            .chain(gateway6(n))
                            .collect(),
                        routes: Vec::new(),
                    },
                    subnets: n.subnets.iter().map(|s| s.net).collect(),
                    ports: Vec::new(),
                });
            }
            Driver::Macvlan if n.parent.is_none() => {
                out.stubs.push((format!("dm{ni}"), format!("dmp{ni}")));
            }
            _ => {}
        }
    }
    for (ci, c) in plan.containers.iter().enumerate() {
        if c.machine != m {
            continue;
        }
        let default_ep = gateway_endpoint(plan, ci);
        for (k, e) in c.endpoints.iter().enumerate() {
            let n = &plan.networks[e.network];
            let Some(ip) = e.ip else { continue };
            let subnet = n.subnets.iter().find(|s| s.net.contains(&ip));
            let mut routes = Vec::new();
            if default_ep == Some(k)
                && let Some(gw) = subnet.and_then(|s| s.gateway)
            {
                routes.push((IpNet::V4(Ipv4Net::default()), Some(IpAddr::V4(gw))));
            }
            let mut addrs = vec![(IpAddr::V4(ip), subnet.map_or(32, |s| s.net.prefix_len()))];
            if let (Some(a6), Some(net6)) = (e.ip6, n.subnet6) {
                addrs.push((IpAddr::V6(a6), net6.prefix_len()));
                // V6-1: the default IPv6 route via gateway6, on the
                // endpoint that carries the IPv4 one (none when internal).
                if default_ep == Some(k)
                    && let Some(gw6) = n.gateway6
                {
                    routes.push((IpNet::V6(Ipv6Net::default()), Some(IpAddr::V6(gw6))));
                }
            }
            let iface = Iface {
                name: format!("eth{k}"),
                mac: e.mac,
                mtu: n.mtu,
                addrs,
                routes,
            };
            let attach = match n.driver {
                Driver::Bridge => {
                    let Some(b) = out.bridges.iter_mut().find(|b| b.network == e.network) else {
                        continue;
                    };
                    let host = format!("veth{ci}_{k}");
                    b.ports.push(host.clone());
                    Attach::Veth {
                        host,
                        bridge: b.iface.name.clone(),
                        hairpin: default_ep == Some(k) && !c.publish.is_empty(),
                    }
                }
                Driver::Overlay => Attach::Veth {
                    host: format!("veth{ci}_{k}"),
                    bridge: super::overlay::bridge_name(plan, e.network),
                    hairpin: false,
                },
                Driver::Macvlan => Attach::Macvlan {
                    parent: match &n.parent {
                        Some(p) => p.name.clone(),
                        None => format!("dm{}", e.network),
                    },
                    mode: macvlan_mode(n.mode),
                },
                _ => continue,
            };
            out.links.push(Link {
                container: ci,
                tmp: format!("c{ci}_{k}"),
                attach,
                iface,
            });
        }
    }
    out
}
