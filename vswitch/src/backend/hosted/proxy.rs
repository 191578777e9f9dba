//! What the userland proxy of each machine relays (PUB-7): its mappings,
//! computed from the engine configuration. The userspace backend runs them
//! with sockets in the machine's namespace (`userspace::proxy`), the sim
//! on the machine's smoltcp stack.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::engine::EngineConfig;
use crate::scenario::plan::{Plan, Proto};

/// One published port to relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Where to listen (in the machine namespace): an IPv6 wildcard
    /// listens on IPv6 only, beside the IPv4 one (docker-proxy's two sides,
    /// PUB-4).
    pub listen: SocketAddr,
    /// The container's address and port (IPv4 for a container without
    /// IPv6, whatever the client's family: V6-5).
    pub target: SocketAddr,
    /// Protocol.
    pub proto: Proto,
}

/// The userland proxy's listeners per machine (PUB-7): TCP on the mapping's
/// host address (all addresses when it has none); UDP on each
/// machine-local address (and loopback), so that a reply leaves from the
/// address the client talked to. Kept with `userland_proxy = false` too,
/// for connections from the machine itself (the engine DNATs the rest).
///
/// On a machine with IPv6 the same mappings listen on IPv6 too (PUB-4,
/// docker-proxy's IPv6 side): towards the container's IPv6 address when it
/// has one, else its IPv4 one (V6-5); `[v6]:H:C` mappings listen there only.
pub(crate) fn proxy_mappings(
    plan: &Plan,
    cfg: &EngineConfig,
    plan_of: &[usize],
) -> Vec<Vec<Mapping>> {
    let mut per = vec![Vec::new(); plan.machines.len()];
    let proto_of = |p: u8| if p == 6 { Proto::Tcp } else { Proto::Udp };
    for p in &cfg.l3.publish {
        let l3_machine = p.machine;
        let machine = plan_of[l3_machine];
        let target = SocketAddr::from((p.container_ip, p.container_port));
        let proto = proto_of(p.proto);
        let listen: Vec<IpAddr> = match (p.host_ip, proto) {
            (Some(h), _) if !h.is_unspecified() => vec![IpAddr::V4(h)],
            (_, Proto::Tcp) => vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
            (_, Proto::Udp) => {
                let mut a = vec![Ipv4Addr::LOCALHOST, plan.machines[machine].ip];
                for n in cfg.l3.networks.iter().filter(|n| n.machine == l3_machine) {
                    a.extend(n.gateways.iter().copied());
                }
                a.into_iter().map(IpAddr::V4).collect()
            }
        };
        for ip in listen {
            per[machine].push(Mapping {
                listen: SocketAddr::new(ip, p.host_port),
                target,
                proto,
            });
        }
        // The IPv6 side of `H:C`.
        if p.host_ip.is_none() && plan.machines[machine].ip6.is_some() {
            let six = cfg.l3.v6.publish.iter().find(|q| {
                q.machine == l3_machine && q.host_port == p.host_port && q.proto == p.proto
            });
            let target6 = six.map_or(target, |q| {
                SocketAddr::from((q.container_ip, q.container_port))
            });
            for ip in proxy_v6_listen(plan, cfg, machine, l3_machine, proto) {
                per[machine].push(Mapping {
                    listen: SocketAddr::new(IpAddr::V6(ip), p.host_port),
                    target: target6,
                    proto,
                });
            }
        }
    }
    // `[v6]:H:C`: IPv6 only.
    for q in cfg.l3.v6.publish.iter().filter(|q| q.host_ip.is_some()) {
        per[plan_of[q.machine]].push(Mapping {
            listen: SocketAddr::from((q.host_ip.unwrap_or(Ipv6Addr::UNSPECIFIED), q.host_port)),
            target: SocketAddr::from((q.container_ip, q.container_port)),
            proto: proto_of(q.proto),
        });
    }
    per
}

/// Where the IPv6 side of a wildcard mapping listens: `[::]` for TCP; each
/// machine-local IPv6 address (and `::1`) for UDP.
fn proxy_v6_listen(
    plan: &Plan,
    cfg: &EngineConfig,
    machine: usize,
    l3_machine: usize,
    proto: Proto,
) -> Vec<Ipv6Addr> {
    match proto {
        Proto::Tcp => vec![Ipv6Addr::UNSPECIFIED],
        Proto::Udp => {
            let mut a = vec![Ipv6Addr::LOCALHOST];
            a.extend(plan.machines[machine].ip6);
            a.extend(
                cfg.l3
                    .v6
                    .networks
                    .iter()
                    .filter(|n| n.machine == l3_machine)
                    .map(|n| n.gateway6),
            );
            a
        }
    }
}
