//! The userspace backend: every interface of the world is a TAP device
//! (virtio-net header, CSUM/TSO offloads) born inside its namespace, and one
//! engine switches between them.
//!
//! Layout: domain 0 is `lan` (machine uplinks `eth0` and externals' `eth0`).
//! Each bridge network is a domain with the containers' `ethN` and one host
//! port in the machine namespace (`br-<name>`, or `docker0` for the default
//! bridge) that holds the gateway address and MAC, as docker0 does.

pub mod io;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};

use crate::backend::pcap::{self, PcapWriter};
use crate::backend::{BuildError, BuildOptions, World};
use crate::engine::{
    DomainConfig, DomainId, Engine, EngineConfig, Gateway, PortConfig, PortId, PortRole,
};
use crate::scenario::plan::{BackendKind, CheckKind, Driver, MacAddr, Node, Plan};
use crate::sys::netlink::Netlink;
use crate::sys::tap::{Tap, TapOptions};

use io::{EngineLoop, PortIo};

/// What this backend cannot build yet, one reason per item.
pub fn unsupported(plan: &Plan) -> Vec<String> {
    let mut why = Vec::new();
    let mut say = |s: String| why.push(format!("backend userspace: {s}"));
    for (i, m) in plan.machines.iter().enumerate() {
        if m.backend == Some(BackendKind::Kernel) {
            say(format!(
                "mixed backends (machine[{i}] `{}` backend = kernel) not supported yet",
                m.name
            ));
        }
    }
    for (i, n) in plan.networks.iter().enumerate() {
        if matches!(n.driver, Driver::Macvlan | Driver::Ipvlan | Driver::Overlay) {
            say(format!(
                "driver {} not supported yet (network[{i}] `{}`)",
                n.driver, n.name
            ));
        }
        if n.ipv6 {
            say(format!(
                "IPv6 not supported yet (network[{i}] `{}`)",
                n.name
            ));
        }
    }
    for (i, x) in plan.externals.iter().enumerate() {
        if x.vlan.is_some() {
            say(format!(
                "VLANs on lan not supported yet (external[{i}] `{}` vlan)",
                x.name
            ));
        }
        if x.ip.is_ipv6() {
            say(format!(
                "IPv6 not supported yet (external[{i}] `{}`)",
                x.name
            ));
        }
    }
    for (i, c) in plan.containers.iter().enumerate() {
        if !c.publish.is_empty() {
            say(format!(
                "published ports (NAT) not supported yet (container[{i}] `{}` publish)",
                c.name
            ));
        }
    }
    for c in &plan.checks {
        let what = format!("check[{}] ({})", c.index, c.kind.name());
        for &from in &c.from {
            for addr in check_addresses(plan, &c.kind, from) {
                if !reachable_without_routing(plan, from, addr) {
                    say(format!(
                        "routing/NAT between {} and {addr} not supported yet ({what})",
                        plan.node_name(from)
                    ));
                }
            }
            if let CheckKind::Ping { ipv6: true, .. } = c.kind {
                say(format!("IPv6 not supported yet ({what})"));
            }
        }
    }
    why.dedup();
    why
}

fn check_addresses(plan: &Plan, kind: &CheckKind, from: Node) -> Vec<IpAddr> {
    match kind {
        CheckKind::Ping { to, .. }
        | CheckKind::Tcp { to, .. }
        | CheckKind::Udp { to, .. }
        | CheckKind::Throughput { to, .. } => vec![to.addr],
        CheckKind::Reach { to } => to.iter().map(|t| t.addr).collect(),
        CheckKind::Dns { server, .. } => server
            .or_else(|| crate::backend::default_dns_server(plan, from))
            .into_iter()
            .filter(|ip| !ip.is_loopback())
            .collect(),
    }
}

/// Where an address lives: inside machine `m` (its networks or its own
/// uplink), or on `lan`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Place {
    Machine(usize),
    Lan,
}

fn place_of(plan: &Plan, addr: IpAddr) -> Place {
    let IpAddr::V4(v4) = addr else {
        return Place::Lan;
    };
    for n in &plan.networks {
        if let Some(m) = n.machine
            && n.subnets.iter().any(|s| s.net.contains(&v4))
        {
            return Place::Machine(m);
        }
    }
    Place::Lan
}

/// Traffic that this backend carries today: within a machine (containers,
/// their gateways, the host stack) and on `lan` (machines and externals).
/// Anything between a container and the world outside its machine needs the
/// routing/NAT layer.
fn reachable_without_routing(plan: &Plan, from: Node, to: IpAddr) -> bool {
    let target = place_of(plan, to);
    match from {
        Node::Container(c) => {
            let m = plan.containers[c].machine;
            target == Place::Machine(m) || IpAddr::V4(plan.machines[m].ip) == to
        }
        Node::Machine(m) => target == Place::Machine(m) || target == Place::Lan,
        Node::External(_) => target == Place::Lan,
    }
}

/// A TAP to create inside a namespace and how to configure it.
#[derive(Clone, Debug)]
struct IfaceSpec {
    name: String,
    mac: MacAddr,
    mtu: u16,
    addrs: Vec<(IpAddr, u8)>,
    routes: Vec<(IpNet, Option<IpAddr>)>,
}

fn create_tap(spec: IfaceSpec) -> Result<Tap, Box<dyn std::error::Error + Send + Sync>> {
    let tap = Tap::create(&spec.name, TapOptions::default())?;
    let mut nl = Netlink::new()?;
    nl.link_set_mac(&spec.name, spec.mac.0)?;
    nl.link_set_mtu(&spec.name, u32::from(spec.mtu))?;
    for (a, p) in &spec.addrs {
        nl.addr_add(&spec.name, *a, *p)?;
    }
    nl.link_set_up(&spec.name)?;
    for (dst, via) in &spec.routes {
        nl.route_add(*dst, *via, Some(&spec.name))?;
    }
    Ok(tap)
}

/// A MAC for a lan interface: locally administered `02:56:` + its IPv4.
fn lan_mac(ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x02, 0x56, o[0], o[1], o[2], o[3]])
}

/// Name of a network's host port in the machine namespace.
fn host_port_name(plan: &Plan, net: usize) -> String {
    let n = &plan.networks[net];
    if n.default {
        return "docker0".to_string();
    }
    let mut name: String = format!("br-{}", n.name).chars().take(15).collect();
    // Two long names can cut to the same prefix: fall back to the index.
    let clash = plan.networks.iter().enumerate().any(|(j, o)| {
        j != net && o.machine == n.machine && format!("br-{}", o.name).starts_with(&name)
    });
    if clash {
        name = format!("br{net}");
    }
    name
}

/// The userspace data path of a world.
#[derive(Debug)]
pub struct Dataplane {
    engine: Option<EngineLoop>,
    port_names: Vec<String>,
}

impl Dataplane {
    /// Creates every TAP in its namespace, configures it, and starts the
    /// engine loop over them.
    pub fn build(world: &World, plan: &Plan, opts: &BuildOptions) -> Result<Dataplane, BuildError> {
        let mut cfg = EngineConfig::default();
        let mut ports: Vec<PortIo> = Vec::new();
        let mut port_names = Vec::new();
        let mut add_port = |cfg: &mut EngineConfig,
                            node: Node,
                            domain: DomainId,
                            role: PortRole,
                            port_name: String,
                            spec: IfaceSpec|
         -> Result<PortId, BuildError> {
            let step = format!("interface {port_name}");
            let tap = world
                .ns(node)
                .run(move || create_tap(spec))
                .map_err(BuildError::at(step.clone()))?
                .map_err(|source| BuildError {
                    step: step.clone(),
                    source,
                })?;
            let pcap = match &opts.pcap_dir {
                Some(dir) => Some(
                    PcapWriter::create(&dir.join(pcap::file_name(&port_name)))
                        .map_err(BuildError::at(format!("pcap for {port_name}")))?,
                ),
                None => None,
            };
            cfg.ports.push(PortConfig {
                name: port_name.clone(),
                domain,
                role,
            });
            port_names.push(port_name);
            ports.push(PortIo { tap, pcap });
            Ok(PortId((cfg.ports.len() - 1) as u16))
        };

        // lan: machine uplinks and externals.
        cfg.domains.push(DomainConfig {
            name: "lan".into(),
            gateway: None,
            icc: true,
        });
        let lan = DomainId(0);
        let lan_prefix = plan.lan.prefix_len();
        let lan_gateway = plan.externals.iter().find(|x| x.gateway).map(|x| x.ip);
        for (i, m) in plan.machines.iter().enumerate() {
            let mut routes = Vec::new();
            if let Some(gw) = lan_gateway {
                routes.push((IpNet::V4(Ipv4Net::default()), Some(gw)));
            }
            let spec = IfaceSpec {
                name: "eth0".into(),
                mac: lan_mac(m.ip),
                mtu: 1500,
                addrs: vec![(IpAddr::V4(m.ip), lan_prefix)],
                routes,
            };
            add_port(
                &mut cfg,
                Node::Machine(i),
                lan,
                PortRole::Plain,
                format!("lan-{}-eth0", m.name),
                spec,
            )?;
        }
        for (i, x) in plan.externals.iter().enumerate() {
            let IpAddr::V4(ip) = x.ip else { continue };
            let spec = IfaceSpec {
                name: "eth0".into(),
                mac: lan_mac(ip),
                mtu: 1500,
                addrs: vec![(x.ip, lan_prefix)],
                routes: Vec::new(),
            };
            add_port(
                &mut cfg,
                Node::External(i),
                lan,
                PortRole::Plain,
                format!("lan-{}-eth0", x.name),
                spec,
            )?;
        }

        // One domain per bridge network, with its host port.
        let mut domain_of = vec![None; plan.networks.len()];
        for (ni, n) in plan.networks.iter().enumerate() {
            if n.driver != Driver::Bridge {
                continue;
            }
            let (Some(machine), Some(primary)) = (n.machine, n.primary()) else {
                continue;
            };
            let gateway = primary.gateway.map(|ip| Gateway {
                ip,
                mac: MacAddr::docker_from_ipv4(ip),
            });
            cfg.domains.push(DomainConfig {
                name: n.name.clone(),
                gateway,
                icc: n.icc,
            });
            let domain = DomainId((cfg.domains.len() - 1) as u16);
            domain_of[ni] = Some(domain);
            let Some(gw) = gateway else { continue };
            let addrs = n
                .subnets
                .iter()
                .filter_map(|s| s.gateway.map(|g| (IpAddr::V4(g), s.net.prefix_len())))
                .collect();
            let name = host_port_name(plan, ni);
            let spec = IfaceSpec {
                name: name.clone(),
                mac: gw.mac,
                mtu: n.mtu,
                addrs,
                routes: Vec::new(),
            };
            let label = format!("{}-{}", plan.machines[machine].name, name);
            add_port(
                &mut cfg,
                Node::Machine(machine),
                domain,
                PortRole::Host,
                label,
                spec,
            )?;
        }

        // Containers: one ethN per attachment, default route via the first
        // non-internal network with a gateway (BR-3, BR-15).
        for (ci, c) in plan.containers.iter().enumerate() {
            let default_net = c.endpoints.iter().position(|e| {
                let n = &plan.networks[e.network];
                !n.internal && n.primary().and_then(|s| s.gateway).is_some()
            });
            for (k, e) in c.endpoints.iter().enumerate() {
                let n = &plan.networks[e.network];
                let Some(domain) = domain_of[e.network] else {
                    continue;
                };
                let Some(ip) = e.ip else { continue };
                let prefix = n
                    .subnets
                    .iter()
                    .find(|s| s.net.contains(&ip))
                    .map_or(32, |s| s.net.prefix_len());
                let mut routes = Vec::new();
                if default_net == Some(k)
                    && let Some(gw) = n
                        .subnets
                        .iter()
                        .find(|s| s.net.contains(&ip))
                        .and_then(|s| s.gateway)
                {
                    routes.push((IpNet::V4(Ipv4Net::default()), Some(IpAddr::V4(gw))));
                }
                let ifname = format!("eth{k}");
                let spec = IfaceSpec {
                    name: ifname.clone(),
                    mac: e.mac,
                    mtu: n.mtu,
                    addrs: vec![(IpAddr::V4(ip), prefix)],
                    routes,
                };
                add_port(
                    &mut cfg,
                    Node::Container(ci),
                    domain,
                    PortRole::Container,
                    format!("{}-{ifname}", c.name),
                    spec,
                )?;
            }
        }

        let engine = Engine::new(cfg).map_err(BuildError::at("engine configuration"))?;
        let engine = EngineLoop::spawn(engine, ports).map_err(BuildError::at("engine thread"))?;
        Ok(Dataplane {
            engine: Some(engine),
            port_names,
        })
    }

    /// Stops the engine and returns its counters as JSON.
    pub fn stop(mut self) -> serde_json::Value {
        let Some(engine) = self.engine.take() else {
            return serde_json::Value::Null;
        };
        match engine.stop() {
            Ok((engine, io)) => serde_json::json!({
                "ports": self.port_names,
                "engine": engine.metrics_json(),
                "io": io,
            }),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        }
    }
}

/// How long a world may take to settle before checks; kept for symmetry
/// with the kernel backend (userspace interfaces are ready once configured).
pub const SETTLE: Duration = Duration::ZERO;
