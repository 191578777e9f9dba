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
pub mod services;
mod wiring;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

use crate::backend::common::{BuildError, BuildOptions, Namespaces};
use crate::backend::pcap::PcapWriter;
use crate::backend::topology::LAN_MTU;
use crate::backend::topology::features::{Env, features, refusals_of};
use crate::engine::{ConntrackState, DomainId, Engine, EngineConfig, PortId, VlanConfig};
use crate::scenario::plan::{BackendKind, LinkFault, LinkRef, MacAddr, Node, Plan, Proto};
use crate::sys::netlink::Netlink;
use crate::sys::tap::{Tap, TapOptions};

use io::{EngineLoop, PortIo};
use proxy::{Mapping, Proxy};
pub use wiring::configure;

/// The file beside the pcaps holding the ESP SAs of encrypted overlays, in
/// Wireshark's `esp_sa` UAT format (copy it into a tshark profile, or pass
/// its lines as `-o uat:esp_sa:…`).
pub const ESP_SA_FILE: &str = "esp_sa";

/// What this backend cannot build yet, one reason per item.
pub fn unsupported(plan: &Plan) -> Vec<String> {
    let mut why = Vec::new();
    let mut say = |s: String| why.push(format!("backend userspace: {s}"));
    // IPv6 is built on every link (bridge, the default bridge, macvlan,
    // ipvlan, overlay, lan6 and its VLANs) and routed between them
    // (route6.rs, the proxy's IPv6 side).
    let no_probe = |_: &str| true;
    let env = Env {
        has_kind: &no_probe,
    };
    let f = features(plan);
    for r in refusals_of(BackendKind::Userspace, &f.networks, plan, &env) {
        say(r);
    }
    for r in crate::backend::topology::refusals(plan) {
        say(r);
    }
    why.dedup();
    why
}

/// A TAP to create inside a namespace and how to configure it.
#[derive(Clone, Debug)]
pub struct IfaceSpec {
    /// Interface name in its namespace (`eth0`, `br-front`, …).
    pub name: String,
    /// Its MAC address.
    pub mac: MacAddr,
    /// Its MTU.
    pub mtu: u16,
    /// Its addresses with prefix lengths.
    pub addrs: Vec<(IpAddr, u8)>,
    /// Routes through it (`None`: on-link).
    pub routes: Vec<(IpNet, Option<IpAddr>)>,
}

fn create_tap(spec: IfaceSpec) -> Result<Tap, Box<dyn std::error::Error + Send + Sync>> {
    let tap = Tap::create(&spec.name, TapOptions::default())?;
    let mut nl = Netlink::new()?;
    nl.link_set_mac(&spec.name, spec.mac.0)?;
    nl.link_set_mtu(&spec.name, u32::from(spec.mtu))?;
    if spec.addrs.iter().any(|(a, _)| a.is_ipv6()) {
        enable_ipv6(&spec.name)?;
    }
    for (a, p) in &spec.addrs {
        nl.addr_add(&spec.name, *a, *p)?;
    }
    nl.link_set_up(&spec.name)?;
    for (dst, via) in &spec.routes {
        nl.route_add(*dst, *via, Some(&spec.name))?;
    }
    Ok(tap)
}

/// Turns IPv6 on for one interface of a namespace that has it off (see
/// `prepare_namespace`): static addresses usable at once (no DAD, as
/// Docker's veths behave once up), no router advertisements or
/// solicitations, no SLAAC.
fn enable_ipv6(ifname: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use crate::sys::sysctl::sysctl_set;
    for (key, value) in [
        ("accept_dad", "0"),
        ("accept_ra", "0"),
        ("autoconf", "0"),
        ("router_solicitations", "0"),
        ("disable_ipv6", "0"),
    ] {
        sysctl_set(&format!("net.ipv6.conf.{ifname}.{key}"), value)?;
    }
    Ok(())
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

/// What the engine is for a plan, and what IO must make for it: computed
/// without root or IO ([`configure`]), so that `vswitch trace` and tests can
/// build the very engine a world would run.
#[derive(Debug)]
pub struct Setup {
    /// The engine's configuration.
    pub cfg: EngineConfig,
    /// The lan's 802.1Q configuration, when the world needs VLANs.
    pub vlans: Option<VlanConfig>,
    /// The fault stage's seed.
    pub seed: u64,
    /// Each port's name (`lan-m1-eth0`, `web-eth0`, …), by port id.
    pub port_names: Vec<String>,
    /// Each port's node, by port id.
    pub port_nodes: Vec<Node>,
    /// The domain of each port (`lan` is domain 0).
    port_domains: Vec<DomainId>,
    /// The TAP of each port, by port id.
    pending: Vec<(Node, String, IfaceSpec)>,
    /// Each port's capture file, when captures were asked for.
    pcap_paths: Vec<Option<std::path::PathBuf>>,
    proxy_maps: Vec<Vec<Mapping>>,
    /// The engine's swarm service stage, when the world has services.
    services: Option<crate::engine::service::ServiceConfig>,
}

impl Setup {
    /// The interface behind each port, by port id, with its node.
    pub fn interfaces(&self) -> impl Iterator<Item = (PortId, Node, &IfaceSpec)> {
        self.pending
            .iter()
            .enumerate()
            .map(|(i, (node, _, spec))| (PortId(i as u16), *node, spec))
    }

    /// Each port's capture file, when captures were asked for, by port id.
    pub(crate) fn pcap_paths(&self) -> &[Option<std::path::PathBuf>] {
        &self.pcap_paths
    }

    /// The userland proxy's mappings, per machine.
    pub(crate) fn proxy_maps(&self) -> &[Vec<Mapping>] {
        &self.proxy_maps
    }

    /// A fresh engine of this configuration (seeded, with its VLANs).
    pub fn engine(&self) -> Result<Engine, BuildError> {
        let mut engine =
            Engine::new(self.cfg.clone()).map_err(BuildError::at("engine configuration"))?;
        engine.set_fault_seed(self.seed);
        if let Some(s) = &self.services {
            engine.set_services(s.clone());
        }
        if let Some(v) = &self.vlans {
            engine
                .set_vlans(v)
                .map_err(BuildError::at("engine VLAN configuration"))?;
        }
        Ok(engine)
    }
}

impl Dataplane {
    /// Creates every TAP in its namespace, configures it, and starts the
    /// engine loop over them.
    pub fn build(
        world: &Namespaces,
        plan: &Plan,
        opts: &BuildOptions,
    ) -> Result<Dataplane, BuildError> {
        Self::build_carrying(world, plan, opts, ConntrackState::default())
    }

    /// [`Dataplane::build`] for a step: the new engine starts with the
    /// flows `carried` from the one it replaces (see
    /// [`Dataplane::stop_for_rebuild`]), as the host's conntrack outlives
    /// a topology change on Docker.
    pub fn build_carrying(
        world: &Namespaces,
        plan: &Plan,
        opts: &BuildOptions,
        carried: ConntrackState,
    ) -> Result<Dataplane, BuildError> {
        let setup = configure(plan, world.run().as_str(), opts)?;
        let mut engine = setup.engine()?;
        if !carried.is_empty() {
            engine.restore_conntrack(carried, std::time::Instant::now());
        }
        if let Some(dir) = &opts.pcap_dir {
            // The keys of the encrypted overlays, for Wireshark (OV-9).
            let sas = overlay::used_sas(&setup.cfg);
            if !sas.is_empty() {
                let path = dir.join(ESP_SA_FILE);
                std::fs::write(&path, crate::engine::esp::esp_sa_uat(&sas))
                    .map_err(BuildError::at(format!("writing {}", path.display())))?;
            }
        }
        let mut pcaps = Vec::with_capacity(setup.pcap_paths.len());
        for (path, name) in setup.pcap_paths.iter().zip(&setup.port_names) {
            pcaps.push(match path {
                Some(p) => Some(
                    PcapWriter::create(p).map_err(BuildError::at(format!("pcap for {name}")))?,
                ),
                None => None,
            });
        }
        let ports = create_taps(world, setup.pending, pcaps)?;
        // A mixed run's kernel machines are the kernel backend's, built
        // next by `World::build`.
        let engine = EngineLoop::spawn(engine, ports).map_err(BuildError::at("engine thread"))?;
        let mut dp = Dataplane {
            engine: Some(engine),
            port_names: setup.port_names,
            port_domains: setup.port_domains,
            proxies: Vec::new(),
        };
        for (m, maps) in setup.proxy_maps.iter().enumerate() {
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
        let lan = (0..self.port_domains.len())
            .filter(|&i| self.port_domains[i] == DomainId(0))
            .map(|i| PortId(i as u16));
        link_ports(plan, &self.port_names, lan, link)
    }

    /// Stops the proxies and the engine and returns its counters as JSON;
    /// the TAP devices go with their namespaces.
    pub fn stop(self) -> serde_json::Value {
        self.stop_releasing(true).0
    }

    /// [`Dataplane::stop`] for a data path that is built again in the same
    /// namespaces (a step): the TAP devices are removed now, and the
    /// engine's tracked flows (with their NAT bindings) are returned for
    /// the next engine ([`Dataplane::build_carrying`]).
    pub fn stop_for_rebuild(self) -> (serde_json::Value, ConntrackState) {
        self.stop_releasing(false)
    }

    fn stop_releasing(mut self, release: bool) -> (serde_json::Value, ConntrackState) {
        for p in self.proxies.drain(..) {
            p.stop();
        }
        let Some(engine) = self.engine.take() else {
            return (serde_json::Value::Null, ConntrackState::default());
        };
        let stopped = if release {
            engine.stop()
        } else {
            engine.stop_closing()
        };
        match stopped {
            Ok((mut engine, io)) => {
                let metrics = serde_json::json!({
                    "ports": self.port_names,
                    "engine": engine.metrics_json(),
                    "io": io,
                });
                (metrics, engine.take_conntrack())
            }
            Err(e) => (
                serde_json::json!({ "error": e.to_string() }),
                ConntrackState::default(),
            ),
        }
    }
}

/// Creates and configures every TAP in its namespace. Independent of one
/// another and mostly waiting on RTNL, so on parallel threads.
fn create_taps(
    world: &Namespaces,
    pending: Vec<(Node, String, IfaceSpec)>,
    pcaps: Vec<Option<PcapWriter>>,
) -> Result<Vec<PortIo>, BuildError> {
    let jobs: Vec<_> = pending
        .into_iter()
        .map(|(node, name, spec)| (world.ns(node), name, spec))
        .collect();
    let taps = crate::backend::parallel::map(
        jobs,
        crate::backend::parallel::WIDTH,
        |(ns, port_name, spec)| {
            let step = format!("interface {port_name}");
            ns.run(move || create_tap(spec))
                .map_err(BuildError::at(step.clone()))?
                .map_err(|source| BuildError { step, source })
        },
    );
    let mut ports = Vec::with_capacity(taps.len());
    for (tap, pcap) in taps.into_iter().zip(pcaps) {
        ports.push(PortIo { tap: tap?, pcap });
    }
    Ok(ports)
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
///
/// On a machine with IPv6 the same mappings listen on IPv6 too (PUB-4,
/// docker-proxy's IPv6 side): towards the container's IPv6 address when it
/// has one, else its IPv4 one (V6-5); `[v6]:H:C` mappings listen there only.
fn proxy_mappings(plan: &Plan, cfg: &EngineConfig, plan_of: &[usize]) -> Vec<Vec<Mapping>> {
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

/// The engine ports of `link`, found by the port names [`configure`] gives
/// (`lan`: the ports on domain 0, given). The sim backend's too.
pub(crate) fn link_ports(
    plan: &Plan,
    port_names: &[String],
    lan: impl Iterator<Item = PortId>,
    link: LinkRef,
) -> Result<Vec<PortId>, String> {
    let by_name = |name: String| -> Result<Vec<PortId>, String> {
        match port_names.iter().position(|n| *n == name) {
            Some(i) => Ok(vec![PortId(i as u16)]),
            None => Err(format!("no engine port {name} for this link")),
        }
    };
    match link {
        LinkRef::Lan => Ok(lan.collect()),
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
