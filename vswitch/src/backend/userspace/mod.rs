//! The userspace backend: every interface of the world is a TAP device
//! (virtio-net header, CSUM/TSO offloads) born inside its namespace, and one
//! engine switches between them.
//!
//! Layout: domain 0 is `lan` (machine uplinks `eth0` and externals' `eth0`).
//! Each bridge network is a domain with the containers' `ethN` and one host
//! port in the machine namespace (`br-<name>`, or `docker0` for the default
//! bridge) that holds the gateway address and MAC, as docker0 does.
//!
//! macvlan and ipvlan networks with a parent put their containers on `lan`
//! as children of the machine's uplink, and `lan` is 802.1Q-aware (uplinks
//! are trunks, externals with `vlan` access ports): see `l2nets` and
//! `engine::vlan`. Parent-less ones are domains of their own (internal).
//!
//! Routing and NAT (issue 9) are the engine's: machine namespaces keep
//! `ip_forward = 0`, so nothing routes but the engine, which owns each
//! machine's uplink address on `lan` together with its host stack. The
//! userland proxy ([`proxy`]) runs in each machine namespace for its
//! published ports.
//!
//! Overlay networks (issue 8, [`overlay`]): one domain per network per
//! machine, joined by the engine's VTEPs. A mixed run's `backend = "kernel"`
//! machines get only their uplink TAP here; the kernel backend builds the
//! rest of them.

pub mod io;
mod l2nets;
pub mod overlay;
pub mod proxy;

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use ipnet::{IpNet, Ipv4Net};

use crate::backend::pcap::{self, PcapWriter};
use crate::backend::{BuildError, BuildOptions, World};
use crate::engine::{
    Attachment, DomainConfig, DomainId, Engine, EngineConfig, Gateway, MachineConfig,
    NetworkConfig, PortConfig, PortId, PortRole, PublishConfig, VlanConfig, VlanMode, VlanPort,
};
use crate::scenario::plan::{CheckKind, Driver, LinkFault, LinkRef, MacAddr, Node, Plan, Proto};
use crate::sys::netlink::Netlink;
use crate::sys::tap::{Tap, TapOptions};

use io::{EngineLoop, PortIo};
use proxy::{Mapping, Proxy};

/// MTU of `lan`.
const LAN_MTU: u16 = 1500;

/// What this backend cannot build yet, one reason per item.
pub fn unsupported(plan: &Plan) -> Vec<String> {
    let mut why = Vec::new();
    let mut say = |s: String| why.push(format!("backend userspace: {s}"));
    for r in overlay::mixed_refusals(plan) {
        say(r);
    }
    for (i, n) in plan.networks.iter().enumerate() {
        if n.ipv6 {
            say(format!(
                "IPv6 not supported yet (network[{i}] `{}`)",
                n.name
            ));
        }
    }
    l2nets::unsupported(plan, &mut say);
    for r in overlay::refusals(plan) {
        say(r);
    }
    for (i, x) in plan.externals.iter().enumerate() {
        if x.ip.is_ipv6() {
            say(format!(
                "IPv6 not supported yet (external[{i}] `{}`)",
                x.name
            ));
        }
    }
    for (i, c) in plan.containers.iter().enumerate() {
        for p in &c.publish {
            if p.host_ip.is_some_and(|h| h.is_ipv6()) {
                say(format!(
                    "IPv6 not supported yet (container[{i}] `{}` publish {}:{})",
                    c.name,
                    p.host_ip.map_or_else(String::new, |h| h.to_string()),
                    p.host_port
                ));
            }
        }
    }
    for c in &plan.checks {
        let what = format!("check[{}] ({})", c.index, c.kind.name());
        for &from in &c.from {
            for addr in check_addresses(plan, &c.kind, from) {
                if addr.is_ipv6() {
                    say(format!("IPv6 not supported yet ({what})"));
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

/// The userspace data path of a world.
#[derive(Debug)]
pub struct Dataplane {
    engine: Option<EngineLoop>,
    port_names: Vec<String>,
    /// The domain of each port (`lan` is domain 0).
    port_domains: Vec<DomainId>,
    proxies: Vec<Proxy>,
}

impl Dataplane {
    /// Creates every TAP in its namespace, configures it, and starts the
    /// engine loop over them.
    pub fn build(world: &World, plan: &Plan, opts: &BuildOptions) -> Result<Dataplane, BuildError> {
        // OV-8: overlay-only containers get a docker_gwbridge endpoint.
        let plan = &*overlay::with_gwbridge(plan);
        let mut cfg = EngineConfig::default();
        let mut ports: Vec<PortIo> = Vec::new();
        let mut port_names = Vec::new();
        let mut port_domains = Vec::new();
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
            port_domains.push(domain);
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
        let mut vlans = VlanConfig {
            domain: lan,
            ..VlanConfig::default()
        };
        let lan_prefix = plan.lan.prefix_len();
        let lan_gateway = plan.externals.iter().find(|x| x.gateway).map(|x| x.ip);
        let mut uplinks = Vec::new();
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
            let up = add_port(
                &mut cfg,
                Node::Machine(i),
                lan,
                PortRole::Plain,
                format!("lan-{}-eth0", m.name),
                spec,
            )?;
            uplinks.push(up);
            vlans.ports.push((
                up,
                VlanPort {
                    mode: VlanMode::Trunk { native: 0 },
                    attach: Attachment::Parent {
                        group: i as u16,
                        mac: lan_mac(m.ip),
                        ip: m.ip,
                    },
                },
            ));
        }
        for (i, x) in plan.externals.iter().enumerate() {
            let IpAddr::V4(ip) = x.ip else { continue };
            let spec = IfaceSpec {
                name: "eth0".into(),
                mac: lan_mac(ip),
                mtu: LAN_MTU,
                addrs: vec![(x.ip, lan_prefix)],
                // No route back to container subnets: with `masquerade =
                // false` no reply returns (BR-11, BUG-5), as on Docker.
                routes: Vec::new(),
            };
            let p = add_port(
                &mut cfg,
                Node::External(i),
                lan,
                PortRole::Plain,
                format!("lan-{}-eth0", x.name),
                spec,
            )?;
            if let Some(v) = x.vlan {
                vlans.ports.push((
                    p,
                    VlanPort {
                        mode: VlanMode::Access(v),
                        attach: Attachment::None,
                    },
                ));
            }
        }

        // Machines whose data path is the engine's (mixed runs: not the
        // `backend = kernel` ones), and their index among the router's.
        let l3_of = overlay::engine_machines(plan);

        // One domain per bridge network, with its host port.
        let mut domain_of = vec![None; plan.networks.len()];
        let mut l3_net_of = vec![None; plan.networks.len()];
        for (ni, n) in plan.networks.iter().enumerate() {
            if l2nets::is_child_driver(n) {
                // With a parent: on lan. Without: a domain of its own.
                domain_of[ni] = Some(if n.parent.is_some() {
                    lan
                } else {
                    cfg.domains.push(DomainConfig {
                        name: n.name.clone(),
                        gateway: None,
                        icc: true,
                    });
                    DomainId((cfg.domains.len() - 1) as u16)
                });
                continue;
            }
            if n.driver != Driver::Bridge {
                continue;
            }
            let (Some(machine), Some(primary)) = (n.machine, n.primary()) else {
                continue;
            };
            // A kernel machine of a mixed run builds its own networks.
            let Some(l3_machine) = l3_of[machine] else {
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
            l3_net_of[ni] = Some(cfg.l3.networks.len());
            cfg.l3.networks.push(NetworkConfig {
                domain,
                machine: l3_machine,
                subnets: n.subnets.iter().map(|s| s.net).collect(),
                gateways: n.subnets.iter().filter_map(|s| s.gateway).collect(),
                internal: n.internal,
                masquerade: n.masquerade && !n.internal,
                mtu: n.mtu,
                neighbours: Vec::new(),
            });
            let addrs = n
                .subnets
                .iter()
                .filter_map(|s| s.gateway.map(|g| (IpAddr::V4(g), s.net.prefix_len())))
                .collect();
            let name = crate::backend::bridge_device_name(plan, ni);
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

        let ov_domains = overlay::add_domains(plan, &mut cfg);

        // Containers: one ethN per attachment, default route via the first
        // non-internal network with a gateway (BR-3, BR-15).
        for (ci, c) in plan.containers.iter().enumerate() {
            let Some(l3_machine) = l3_of[c.machine] else {
                continue;
            };
            let default_net = c.endpoints.iter().position(|e| {
                let n = &plan.networks[e.network];
                n.driver != Driver::Overlay && l2nets::carries_default(n)
            });
            for (k, e) in c.endpoints.iter().enumerate() {
                let n = &plan.networks[e.network];
                let Some(domain) = domain_of[e.network]
                    .or_else(|| ov_domains.get(&(e.network, c.machine)).copied())
                else {
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
                } else if default_net == Some(k) && l2nets::is_ipvlan_l3(n) {
                    // IV-5: `default dev eth0`, no next hop.
                    routes.push((IpNet::V4(Ipv4Net::default()), None));
                }
                let on_lan = l2nets::is_child_driver(n) && n.parent.is_some();
                let mut mac = e.mac;
                if on_lan && n.driver == Driver::Ipvlan {
                    // IV-2: the parent's MAC.
                    mac = lan_mac(plan.machines[c.machine].ip);
                }
                let ifname = format!("eth{k}");
                let spec = IfaceSpec {
                    name: ifname.clone(),
                    mac,
                    mtu: n.mtu,
                    addrs: vec![(IpAddr::V4(ip), prefix)],
                    routes,
                };
                let port = add_port(
                    &mut cfg,
                    Node::Container(ci),
                    domain,
                    if on_lan {
                        PortRole::Plain
                    } else {
                        PortRole::Container
                    },
                    format!("{}-{ifname}", c.name),
                    spec,
                )?;
                if on_lan {
                    vlans
                        .ports
                        .push((port, l2nets::child_port(n, c.machine, ip)));
                }
                if let Some(l3) = l3_net_of[e.network] {
                    cfg.l3.networks[l3].neighbours.push((ip, e.mac, port));
                }
                // BR-17: ports are published on the default-gateway network.
                if default_net == Some(k)
                    && let Some(l3) = l3_net_of[e.network]
                {
                    for p in &c.publish {
                        let host_ip = match p.host_ip {
                            None => None,
                            Some(IpAddr::V4(h)) => Some(h),
                            Some(IpAddr::V6(_)) => continue,
                        };
                        cfg.l3.publish.push(PublishConfig {
                            machine: l3_machine,
                            host_ip,
                            host_port: p.host_port,
                            proto: ip_proto(p.proto),
                            container_ip: ip,
                            container_port: p.container_port,
                            network: l3,
                        });
                    }
                }
            }
        }

        overlay::add_vteps(
            plan,
            &mut cfg,
            &ov_domains,
            &uplinks,
            lan_mac,
            opts.pcap_dir.is_some(),
        );
        for (i, m) in plan.machines.iter().enumerate() {
            if l3_of[i].is_none() {
                continue;
            }
            cfg.l3.machines.push(MachineConfig {
                name: m.name.clone(),
                uplink: uplinks[i],
                ip: m.ip,
                mac: lan_mac(m.ip),
                lan: plan.lan,
                lan_gateway: lan_gateway.and_then(|g| match g {
                    IpAddr::V4(g) => Some(g),
                    IpAddr::V6(_) => None,
                }),
                lan_mtu: LAN_MTU,
                userland_proxy: m.userland_proxy,
            });
        }
        let plan_of: Vec<usize> = (0..plan.machines.len())
            .filter(|&m| l3_of[m].is_some())
            .collect();
        let proxy_maps = proxy_mappings(plan, &cfg, &plan_of);
        for m in (0..plan.machines.len()).filter(|&m| l3_of[m].is_none()) {
            crate::backend::kernel::build_mixed_machine(world, plan, m)?;
        }

        let mut engine = Engine::new(cfg).map_err(BuildError::at("engine configuration"))?;
        engine.set_fault_seed(plan.seed);
        if l2nets::needs_vlans(plan) {
            engine
                .set_vlans(&vlans)
                .map_err(BuildError::at("engine VLAN configuration"))?;
        }
        let engine = EngineLoop::spawn(engine, ports).map_err(BuildError::at("engine thread"))?;
        let mut dp = Dataplane {
            engine: Some(engine),
            port_names,
            port_domains,
            proxies: Vec::new(),
        };
        for (m, maps) in proxy_maps.iter().enumerate() {
            if maps.is_empty() {
                continue;
            }
            let p = Proxy::start(world.ns(Node::Machine(m)), maps)
                .map_err(BuildError::at(format!("machine {}", plan.machines[m].name)))?;
            dp.proxies.push(p);
        }
        Ok(dp)
    }

    /// Puts the faults in force on the engine's ports, clearing every
    /// other port's (`plan` is the world as it stands, to find each link's
    /// ports). `lan` faults every port of the lan segment; a fault on one
    /// link of it takes precedence there.
    pub fn set_faults(
        &mut self,
        plan: &Plan,
        faults: &[(LinkRef, LinkFault)],
    ) -> Result<(), String> {
        let mut want: Vec<Option<LinkFault>> = vec![None; self.port_names.len()];
        let mut ordered: Vec<&(LinkRef, LinkFault)> = faults.iter().collect();
        ordered.sort_by_key(|(l, _)| *l != LinkRef::Lan);
        for (link, fault) in ordered {
            let ports = self.link_ports(plan, *link)?;
            for p in ports {
                want[usize::from(p.0)] = Some(*fault);
            }
        }
        let list = want
            .into_iter()
            .enumerate()
            .map(|(i, f)| (PortId(i as u16), f))
            .collect();
        let Some(engine) = self.engine.as_ref() else {
            return Err("the engine is not running".into());
        };
        engine.set_faults(list).map_err(|e| e.to_string())
    }

    /// The engine ports of a link.
    fn link_ports(&self, plan: &Plan, link: LinkRef) -> Result<Vec<PortId>, String> {
        let by_name = |name: String| -> Result<Vec<PortId>, String> {
            match self.port_names.iter().position(|n| *n == name) {
                Some(i) => Ok(vec![PortId(i as u16)]),
                None => Err(format!("no engine port {name} for this link")),
            }
        };
        match link {
            LinkRef::Lan => Ok(self
                .port_domains
                .iter()
                .enumerate()
                .filter(|(_, d)| **d == DomainId(0))
                .map(|(i, _)| PortId(i as u16))
                .collect()),
            LinkRef::Uplink(m) => by_name(format!("lan-{}-eth0", plan.machines[m].name)),
            LinkRef::External(x) => by_name(format!("lan-{}-eth0", plan.externals[x].name)),
            LinkRef::Endpoint { container, network } => {
                let c = &plan.containers[container];
                match c.endpoints.iter().position(|e| e.network == network) {
                    Some(k) => by_name(format!("{}-eth{k}", c.name)),
                    // Disconnected or stopped: the fault waits for nothing.
                    None => Ok(Vec::new()),
                }
            }
        }
    }

    /// Stops the proxies and the engine and returns its counters as JSON.
    pub fn stop(mut self) -> serde_json::Value {
        for p in self.proxies.drain(..) {
            p.stop();
        }
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

/// IP protocol number of a mapping's protocol.
fn ip_proto(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
    }
}

/// The userland proxy's listeners per machine (PUB-7): TCP on the mapping's
/// host address (all addresses when it has none); UDP on each
/// machine-local address (and loopback), so that a reply leaves from the
/// address the client talked to. Kept with `userland_proxy = false` too,
/// for connections from the machine itself (the engine DNATs the rest).
fn proxy_mappings(plan: &Plan, cfg: &EngineConfig, plan_of: &[usize]) -> Vec<Vec<Mapping>> {
    let mut per = vec![Vec::new(); plan.machines.len()];
    for p in &cfg.l3.publish {
        let l3_machine = p.machine;
        let machine = plan_of[l3_machine];
        let target = SocketAddrV4::new(p.container_ip, p.container_port);
        let proto = match p.proto {
            6 => Proto::Tcp,
            _ => Proto::Udp,
        };
        let listen: Vec<Ipv4Addr> = match (p.host_ip, proto) {
            (Some(h), _) if !h.is_unspecified() => vec![h],
            (_, Proto::Tcp) => vec![Ipv4Addr::UNSPECIFIED],
            (_, Proto::Udp) => {
                let mut a = vec![Ipv4Addr::LOCALHOST, plan.machines[machine].ip];
                for n in cfg.l3.networks.iter().filter(|n| n.machine == l3_machine) {
                    a.extend(n.gateways.iter().copied());
                }
                a
            }
        };
        for ip in listen {
            per[machine].push(Mapping {
                listen: SocketAddrV4::new(ip, p.host_port),
                target,
                proto,
            });
        }
    }
    per
}
