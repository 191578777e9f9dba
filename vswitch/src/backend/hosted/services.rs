//! Swarm services on the userspace backend: the engine's service stage
//! ([`crate::engine::service`]) configured from the plan.
//!
//! - VIPs: one [`VipConfig`] per service and overlay (`vip` mode), in that
//!   overlay's domain on every machine, over the running tasks there.
//! - Routing mesh: the `ingress` overlay has a domain on every machine
//!   ([`crate::backend::topology::machines_of`]), each with its ingress sandbox as a virtual
//!   port (after every real port, like the VTEP ports); every ingress-mode
//!   port balances over the running tasks' `ingress` addresses.
//! - Host mode (SVC-5): each running task publishes `H:C` on its machine as
//!   `-p` does ([`with_host_ports`]); the router and the userland proxy do
//!   the rest, so the client address is kept.
//!
//! Tasks themselves are containers of the plan: their TAPs, addresses and
//! echo services come with the rest.

use std::borrow::Cow;

use crate::engine::{
    Backend, DomainId, EngineConfig, MeshConfig, PortConfig, PortId, PortRole, SandboxConfig,
    ServiceConfig, VipConfig,
};
use crate::scenario::plan::{MacAddr, Plan, PortMapping, Proto, PublishMode};

use super::overlay::Domains;
use super::proxy::Mapping;

/// The ingress-mode ports of the plan: (published, target, protocol).
fn mesh_ports(plan: &Plan) -> Vec<(u16, Proto)> {
    plan.services
        .iter()
        .flat_map(|s| &s.publish)
        .filter(|p| p.mode == PublishMode::Ingress)
        .map(|p| (p.published, p.proto))
        .collect()
}

/// Machine `m`'s ingress-sandbox address, when the plan publishes through
/// the mesh: the machine's host stack reaches its own published ports
/// there (Docker DNATs them to its ingress-sbox; here the userland proxy
/// connects to the sandbox address, routed on the uplink, and the engine
/// takes it from there).
pub fn local_entry(plan: &Plan, m: usize) -> Option<std::net::Ipv4Addr> {
    let ing = plan.ingress.as_ref()?;
    (!mesh_ports(plan).is_empty()).then(|| ing.sandboxes[m])
}

/// Proxy mappings in machine `m` for its own connections to its ingress
/// ports (SVC-4 from the machine itself: the task sees `m`'s sandbox).
pub fn local_proxies(plan: &Plan, m: usize) -> Vec<Mapping> {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    let Some(sb) = local_entry(plan, m) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (port, proto) in mesh_ports(plan) {
        let listen: Vec<Ipv4Addr> = match proto {
            Proto::Tcp => vec![Ipv4Addr::UNSPECIFIED],
            Proto::Udp => vec![Ipv4Addr::LOCALHOST, plan.machines[m].ip],
        };
        for ip in listen {
            out.push(Mapping {
                listen: SocketAddr::new(IpAddr::V4(ip), port),
                target: SocketAddr::new(IpAddr::V4(sb), port),
                proto,
            });
        }
    }
    out
}

/// The plan with every running task of a service publishing its host-mode
/// ports on its machine (docker-semantics SVC-5). Unchanged without any.
pub fn with_host_ports(plan: &Plan) -> Cow<'_, Plan> {
    let host = |p: &&crate::scenario::plan::ServicePort| p.mode == PublishMode::Host;
    if !plan
        .services
        .iter()
        .any(|s| s.publish.iter().any(|p| host(&p)))
    {
        return Cow::Borrowed(plan);
    }
    let mut out = plan.clone();
    for s in &plan.services {
        for &c in s.running_tasks() {
            for p in s.publish.iter().filter(host) {
                out.containers[c].publish.push(PortMapping {
                    host_ip: None,
                    host_port: p.published,
                    container_port: p.target,
                    proto: p.proto,
                    auto: None,
                });
            }
        }
    }
    Cow::Owned(out)
}

/// The running tasks' (address, MAC) on network `net`.
fn backends(plan: &Plan, tasks: &[usize], net: usize) -> Vec<Backend> {
    tasks
        .iter()
        .flat_map(|&c| &plan.containers[c].endpoints)
        .filter(|e| e.network == net)
        .filter_map(|e| e.ip.map(|ip| Backend { ip, mac: e.mac }))
        .collect()
}

/// Adds the sandbox ports to `cfg` (call after every other port) and
/// returns the service stage's configuration, or `None` when the plan has
/// no VIP and no ingress port. `uplinks[m]` is machine `m`'s lan port.
pub fn configure(
    plan: &Plan,
    cfg: &mut EngineConfig,
    domains: &Domains,
    uplinks: &[PortId],
    lan_mac: fn(std::net::Ipv4Addr) -> MacAddr,
) -> Option<ServiceConfig> {
    let mut sc = ServiceConfig::default();
    for s in &plan.services {
        for sn in &s.networks {
            let Some(vip) = sn.vip else { continue };
            let in_domains: Vec<DomainId> = domains
                .iter()
                .filter(|((n, _), _)| *n == sn.network)
                .map(|(_, d)| *d)
                .collect();
            sc.vips.push(VipConfig {
                name: format!("{}@{}", s.name, plan.networks[sn.network].name),
                vip,
                mac: MacAddr::docker_from_ipv4(vip),
                domains: in_domains,
                backends: backends(plan, s.running_tasks(), sn.network),
            });
        }
    }
    if let Some(ing) = &plan.ingress {
        for s in &plan.services {
            for p in s.publish.iter().filter(|p| p.mode == PublishMode::Ingress) {
                sc.mesh.push(MeshConfig {
                    name: s.name.clone(),
                    proto: match p.proto {
                        Proto::Tcp => 6,
                        Proto::Udp => 17,
                    },
                    published: p.published,
                    target: p.target,
                    backends: backends(plan, s.running_tasks(), ing.network),
                });
            }
        }
        if !sc.mesh.is_empty() {
            for (m, mach) in plan.machines.iter().enumerate() {
                let Some(&domain) = domains.get(&(ing.network, m)) else {
                    continue;
                };
                cfg.ports.push(PortConfig {
                    name: format!("{}-ingress-sbox", mach.name),
                    domain,
                    role: PortRole::Plain,
                });
                let ip = ing.sandboxes[m];
                sc.sandboxes.push(SandboxConfig {
                    machine_ip: mach.ip,
                    machine_mac: lan_mac(mach.ip),
                    uplink: uplinks[m],
                    port: PortId((cfg.ports.len() - 1) as u16),
                    ip,
                    mac: MacAddr::docker_from_ipv4(ip),
                });
            }
        }
    }
    (!sc.vips.is_empty() || !sc.mesh.is_empty()).then_some(sc)
}
