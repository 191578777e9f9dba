//! What a machine's kernel data path is made of, computed from the plan with
//! no IO: its bridges, the container links (veth pairs or macvlan children)
//! and the parents they hang from. Names, MACs, MTUs, addresses and routes
//! are the [`Topology`]'s, as on the userspace backend, so both backends
//! look the same from inside.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

use crate::backend::topology::{Interface, Topology};
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

/// The `eth0` of a machine or external on the lan, as the topology has it
/// (none for an external on a lan VLAN, which this backend refuses).
pub(super) fn lan_iface(plan: &Plan, node: Node) -> Option<Iface> {
    if let Node::External(i) = node
        && plan.externals[i].vlan.is_some()
    {
        return None;
    }
    Topology::of(plan).lan(node).map(Iface::from)
}

impl From<&Interface> for Iface {
    fn from(i: &Interface) -> Iface {
        Iface {
            name: i.name.clone(),
            mac: i.mac,
            mtu: i.mtu,
            addrs: i.addrs.clone(),
            routes: i.routes.clone(),
        }
    }
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
    let topo = Topology::of(plan);
    let mut out = MachineLayout::default();
    for (ni, n) in plan.networks.iter().enumerate() {
        if n.machine != Some(m) {
            continue;
        }
        match n.driver {
            Driver::Bridge => {
                let Some(dev) = topo.bridge(ni) else {
                    continue;
                };
                out.bridges.push(BridgeDev {
                    network: ni,
                    iface: Iface::from(dev),
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
            let Some(iface) = topo.endpoint(ci, k).map(Iface::from) else {
                continue;
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
