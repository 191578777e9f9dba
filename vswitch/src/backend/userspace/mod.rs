//! The userspace backend: every interface of the world is a TAP device
//! (virtio-net header, CSUM/TSO offloads) born inside its namespace, and one
//! engine switches between them; a bridge network's container interface is
//! a veth instead, whose other end in the machine's namespace feeds the
//! engine's TAP for the port and carries the flows the engine hands to the
//! kernel fast path ([`offload`]).
//!
//! Layout: domain 0 is `lan` (machine uplinks `eth0` and externals' `eth0`).
//! Each bridge network is a domain with the containers' `ethN` and one host
//! port in the machine namespace (`br-<name>`, or `docker0` for the default
//! bridge) that holds the gateway address and MAC, as docker0 does.
//!
//! macvlan and ipvlan networks with a parent put their containers on `lan`
//! as children of the machine's uplink, and `lan` is 802.1Q-aware (uplinks
//! are trunks, externals with `vlan` access ports): see `hosted::l2nets` and
//! `engine::vlan`. Parent-less ones are domains of their own (internal).
//!
//! Routing and NAT (issue 9) are the engine's: machine namespaces keep
//! `ip_forward = 0`, so nothing routes but the engine, which owns each
//! machine's uplink address on `lan` together with its host stack. The
//! userland proxy ([`proxy`]) runs in each machine namespace for its
//! published ports.
//!
//! Overlay networks (issue 8, [`overlay`]): one domain per network per
//! machine, joined by the engine's VTEPs. Their containers' ports are the
//! fast path's veths, and every two machines with such ports are joined
//! by an underlay veth (`ul<machine>`) that carries the tunnels the
//! engine hands to the kernel ([`offload::tunnel`]). A mixed run's `backend = "kernel"`
//! machines get only their uplink TAP here; the kernel backend builds the
//! rest of them.

pub mod io;
pub mod offload;
pub mod proxy;

use crate::backend::common::{BuildError, BuildOptions, Namespaces};
use crate::backend::hosted::{ESP_SA_FILE, IfaceSpec, configure, overlay};
use crate::backend::pcap::PcapWriter;
use crate::engine::{ConntrackState, DomainId, PortId};
use crate::scenario::plan::{LinkFault, LinkRef, Node, Plan};
use crate::sys::netlink::{LinkSettings, Netlink};
use crate::sys::tap::{Tap, TapOptions};

use io::{EngineLoop, PortIo};
use proxy::Proxy;

type DynError = Box<dyn std::error::Error + Send + Sync>;

fn create_tap(spec: IfaceSpec) -> Result<Tap, DynError> {
    let tap = Tap::create(&spec.name, TapOptions::default())?;
    configure_iface(&spec)?;
    Ok(tap)
}

/// Gives the interface `spec` names (in the calling thread's namespace)
/// its MAC and MTU and brings it up (one request), then its addresses and
/// routes.
fn configure_iface(spec: &IfaceSpec) -> Result<(), DynError> {
    let mut nl = Netlink::new()?;
    if spec.addrs.iter().any(|(a, _)| a.is_ipv6()) {
        enable_ipv6(&spec.name)?;
    }
    // (One lookup of the index for every request after it.)
    let index = nl.link_index(&spec.name)?;
    nl.link_configure_at(
        index,
        &spec.name,
        LinkSettings {
            mac: Some(spec.mac.0),
            mtu: Some(u32::from(spec.mtu)),
            up: true,
        },
    )?;
    for (a, p) in &spec.addrs {
        nl.addr_add_at(index, &spec.name, *a, *p)?;
    }
    for (dst, via) in &spec.routes {
        nl.route_add_oif(*dst, *via, Some(index))?;
    }
    Ok(())
}

/// The fast path's port `port` ([`offload`]), made from its machine's
/// namespace (the calling thread's): the veth pair (the container's end,
/// `spec.name`, born in `container`), the engine's TAP beside the other
/// end, and the program on both, wired while they are down. `ipv6`: the
/// world has IPv6 (`Plan::lan6`), so new interfaces of the machine's
/// namespace have it on. Returns the TAP and the veth end's ifindex.
fn create_fast_port(
    port: usize,
    spec: &IfaceSpec,
    container: &crate::netns::NetNs,
    path: &offload::MachinePath,
    ipv6: bool,
) -> Result<(Tap, u32), DynError> {
    use std::os::fd::AsFd;
    let (host, tap_name) = (host_end(port), format!("vt{port}"));
    let mut nl = Netlink::new()?;
    let mtu = u32::from(spec.mtu);
    nl.link_add_veth_peer_in_with(&host, &spec.name, container.as_fd(), Some(mtu))?;
    let tap = Tap::create(&tap_name, TapOptions::default())?;
    // Nothing of the machine's own (router solicitations, MLD) may reach
    // the container this way. Without IPv6 in the world new interfaces
    // have it off already (`prepare_namespace`).
    if ipv6 {
        for name in [&host, &tap_name] {
            let key = format!("net.ipv6.conf.{name}.disable_ipv6");
            crate::sys::sysctl::sysctl_set(&key, "1")?;
        }
    }
    let (h, t) = (nl.link_index(&host)?, nl.link_index(&tap_name)?);
    path.attach(&mut nl, h, t)?;
    // Up once wired; the TAP's MTU in the same request.
    for (index, name, mtu) in [(h, &host, None), (t, &tap_name, Some(mtu))] {
        let up = LinkSettings {
            mac: None,
            mtu,
            up: true,
        };
        nl.link_configure_at(index, name, up)?;
    }
    Ok((tap, h))
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
    /// The fast path's veths ([`offload`]): each machine namespace with the
    /// host ends there, removed when a step rebuilds the data path.
    veths: Vec<(crate::netns::NetNs, Vec<String>)>,
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
        let mode = opts
            .offload
            .map_or_else(offload::Mode::from_env, offload::Mode::from);
        let mut fast_ports = if mode == offload::Mode::Off {
            vec![None; setup.pending.len()]
        } else {
            fast_ports(plan, &setup, &pcaps)
        };
        let machines = match offload::machine_paths(&fast_ports) {
            Ok(m) => m,
            Err(e) if mode == offload::Mode::Auto => {
                tracing::info!("forwarding offload off: {e}");
                fast_ports.fill(None);
                Vec::new()
            }
            Err(source) => {
                return Err(BuildError {
                    step: "forwarding offload (VSWITCH_OFFLOAD=tc)".into(),
                    source,
                });
            }
        };
        let ipv6 = plan.lan6.is_some();
        let pairs = underlay_pairs(&setup, &fast_ports);
        let (ports, fast) = create_ports(
            world,
            setup.pending,
            pcaps,
            (&fast_ports, &pairs),
            machines,
            ipv6,
        )?;
        let veths = fast_veths(world, &fast_ports, &pairs)?;
        // A mixed run's kernel machines are the kernel backend's, built
        // next by `World::build`.
        let workers = opts.engine_workers.unwrap_or_else(io::workers);
        let engine = EngineLoop::spawn(engine, ports, workers, fast)
            .map_err(BuildError::at("engine thread"))?;
        let mut dp = Dataplane {
            engine: Some(engine),
            port_names: setup.port_names,
            port_domains: setup.port_domains,
            proxies: Vec::new(),
            veths,
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
        crate::backend::hosted::link_ports(plan, &self.port_names, lan, link)
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
        if !release {
            // The veths stay with their namespaces otherwise; a step
            // builds them again.
            for (ns, names) in self.veths.drain(..) {
                let removed = ns.run(move || -> Result<(), DynError> {
                    let mut nl = Netlink::new()?;
                    for n in names {
                        nl.link_del(&n)?;
                    }
                    Ok(())
                });
                if let Err(e) = removed.map_err(DynError::from).and_then(|r| r) {
                    tracing::warn!("removing the fast path's veths in {}: {e}", ns.name());
                }
            }
        }
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

/// The machine of each port the kernel fast path may serve, in a world
/// without services (whose frames the engine must see; see
/// [`crate::engine::offload`]), none of them captured. Without overlays:
/// a container's port on a bridge network, and in a world of one
/// userspace machine an untagged external's port on `lan` (its veth end in
/// the machine's namespace, so that connections routed between the two
/// can be redirected there). With overlays (whose VTEPs' frames are not
/// captured): a container's port on an unencrypted overlay network, for
/// the tunnels the engine offers (`offload::tunnel`).
fn fast_ports(
    plan: &Plan,
    setup: &crate::backend::hosted::Setup,
    pcaps: &[Option<PcapWriter>],
) -> Vec<Option<usize>> {
    use crate::engine::PortRole;
    use crate::scenario::plan::BackendKind;
    use crate::scenario::plan::Driver;
    let overlays = &setup.cfg.overlay;
    let whole_world = setup.services.is_none() && overlays.is_empty();
    let tunnels =
        setup.services.is_none() && !overlays.is_empty() && overlays.iter().all(|v| !v.capture);
    let tunnelled = |d: DomainId| overlays.iter().any(|v| v.domain == d && v.esp.is_empty());
    let one_machine = matches!(
        plan.machines.as_slice(),
        [m] if m.backend.is_none_or(|b| b == BackendKind::Userspace)
    );
    let bridge = |d: DomainId| {
        d != DomainId(0)
            && setup.cfg.domains.get(usize::from(d.0)).is_some_and(|dc| {
                plan.networks
                    .iter()
                    .any(|n| n.name == dc.name && n.driver == Driver::Bridge)
            })
    };
    setup
        .pending
        .iter()
        .enumerate()
        .map(|(i, (node, _, _))| match node {
            _ if pcaps[i].is_some() => None,
            Node::Container(c)
                if tunnels
                    && setup.cfg.ports[i].role == PortRole::Container
                    && tunnelled(setup.port_domains[i]) =>
            {
                Some(plan.containers[*c].machine)
            }
            _ if !whole_world => None,
            Node::Container(c)
                if setup.cfg.ports[i].role == PortRole::Container
                    && bridge(setup.port_domains[i]) =>
            {
                Some(plan.containers[*c].machine)
            }
            Node::External(e)
                if one_machine
                    && setup.port_domains[i] == DomainId(0)
                    && plan.externals[*e].vlan.is_none() =>
            {
                Some(0)
            }
            _ => None,
        })
        .collect()
}

/// The pairs of machines (lower index first) that an underlay veth joins
/// for the fast path's tunnels: in a world with overlays, every two
/// machines with fast ports.
fn underlay_pairs(
    setup: &crate::backend::hosted::Setup,
    fast: &[Option<usize>],
) -> Vec<(usize, usize)> {
    if setup.cfg.overlay.is_empty() {
        return Vec::new();
    }
    let machines: std::collections::BTreeSet<usize> = fast.iter().flatten().copied().collect();
    let machines: Vec<usize> = machines.into_iter().collect();
    let mut pairs = Vec::new();
    for (i, &a) in machines.iter().enumerate() {
        for &b in &machines[i + 1..] {
            pairs.push((a, b));
        }
    }
    pairs
}

/// The name of the underlay veth end towards machine `peer`.
fn underlay_end(peer: usize) -> String {
    format!("ul{peer}")
}

/// The veth names of the fast ports' host ends, and of the underlay
/// (each pair once), by machine namespace.
fn fast_veths(
    world: &Namespaces,
    fast: &[Option<usize>],
    pairs: &[(usize, usize)],
) -> Result<Vec<(crate::netns::NetNs, Vec<String>)>, BuildError> {
    let mut by_machine: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
    for (port, m) in fast.iter().enumerate() {
        if let Some(m) = m {
            by_machine.entry(*m).or_default().push(host_end(port));
        }
    }
    for &(a, b) in pairs {
        by_machine.entry(a).or_default().push(underlay_end(b));
    }
    by_machine
        .into_iter()
        .map(|(m, names)| {
            let ns = world
                .ns(Node::Machine(m))
                .try_clone()
                .map_err(BuildError::at(format!("machine {m} namespace")))?;
            Ok((ns, names))
        })
        .collect()
}

/// The name of port `port`'s veth end in its machine's namespace.
fn host_end(port: usize) -> String {
    format!("vh{port}")
}

/// Creates and configures every port's interfaces in their namespaces:
/// a TAP, or for a port `fast` gives a machine, the fast path's veth and
/// TAP ([`create_fast_port`]). Independent of one another and mostly
/// waiting on RTNL, so on parallel threads.
fn create_ports(
    world: &Namespaces,
    pending: Vec<(Node, String, IfaceSpec)>,
    pcaps: Vec<Option<PcapWriter>>,
    (fast, pairs): (&[Option<usize>], &[(usize, usize)]),
    machines: Vec<Option<offload::MachinePath>>,
    ipv6: bool,
) -> Result<(Vec<PortIo>, Option<offload::FastPath>), BuildError> {
    let machines: Vec<_> = machines
        .into_iter()
        .map(|m| m.map(std::sync::Arc::new))
        .collect();
    let jobs: Vec<_> = pending
        .into_iter()
        .enumerate()
        .map(|(i, (node, name, spec))| (i, world.ns(node), fast[i], name, spec))
        .collect();
    let machines_ref = &machines;
    let made = crate::backend::parallel::map(
        jobs,
        crate::backend::parallel::WIDTH,
        |(i, ns, machine, port_name, spec)| {
            let step = format!("interface {port_name}");
            let fail = |source| BuildError {
                step: step.clone(),
                source,
            };
            let Some(m) = machine else {
                let tap = ns
                    .run(move || create_tap(spec))
                    .map_err(BuildError::at(step.clone()))?
                    .map_err(fail)?;
                return Ok((tap, None));
            };
            let Some(path) = machines_ref.get(m).cloned().flatten() else {
                return Err(BuildError {
                    step,
                    source: format!("no offload program for machine {m}").into(),
                });
            };
            let container = ns.try_clone().map_err(BuildError::at(step.clone()))?;
            let (for_veth, mtu) = (spec.clone(), spec.mtu);
            let (tap, host) = world
                .ns(Node::Machine(m))
                .run(move || create_fast_port(i, &for_veth, &container, &path, ipv6))
                .map_err(BuildError::at(step.clone()))?
                .map_err(fail)?;
            ns.run(move || configure_iface(&spec))
                .map_err(BuildError::at(step.clone()))?
                .map_err(fail)?;
            Ok((tap, Some((m, host, mtu))))
        },
    );
    let mut ports = Vec::with_capacity(made.len());
    let mut fast_ports = Vec::with_capacity(made.len());
    for (r, pcap) in made.into_iter().zip(pcaps) {
        let (tap, fast) = r?;
        ports.push(PortIo { tap, pcap });
        fast_ports.push(fast.map(|(machine, host_ifindex, mtu)| offload::FastPort {
            machine,
            host_ifindex,
            mtu,
        }));
    }
    if fast_ports.iter().all(Option::is_none) {
        return Ok((ports, None));
    }
    let mut underlays = std::collections::HashMap::new();
    for &(a, b) in pairs {
        let paths = (machines[a].clone(), machines[b].clone());
        let (Some(pa), Some(pb)) = paths else {
            continue;
        };
        let (here, there) = create_underlay(world, (a, pa), (b, pb), ipv6)?;
        underlays.insert((a, b), (here, there));
        underlays.insert((b, a), (there, here));
    }
    let machines = machines
        .into_iter()
        .map(|m| m.and_then(std::sync::Arc::into_inner))
        .collect();
    let fast = offload::FastPath::new(machines, fast_ports, underlays);
    Ok((ports, Some(fast)))
}

/// The underlay veth between machines `a` and `b` (`offload::tunnel`):
/// `ul<b>` in `a`'s namespace, `ul<a>` in `b`'s, each wired to its
/// machine's programs while down, then up. Returns the two ifindexes.
fn create_underlay(
    world: &Namespaces,
    (a, path_a): (usize, std::sync::Arc<offload::MachinePath>),
    (b, path_b): (usize, std::sync::Arc<offload::MachinePath>),
    ipv6: bool,
) -> Result<(u32, u32), BuildError> {
    use std::os::fd::AsFd;
    let step = format!("underlay between machines {a} and {b}");
    let fail = |source| BuildError {
        step: step.clone(),
        source,
    };
    let peer_ns = world
        .ns(Node::Machine(b))
        .try_clone()
        .map_err(BuildError::at(step.clone()))?;
    let here = world
        .ns(Node::Machine(a))
        .run(move || -> Result<u32, DynError> {
            let mut nl = Netlink::new()?;
            let name = underlay_end(b);
            nl.link_add_veth_peer_in_with(&name, &underlay_end(a), peer_ns.as_fd(), None)?;
            wire_underlay(&mut nl, &name, &path_a, ipv6)
        })
        .map_err(BuildError::at(step.clone()))?
        .map_err(fail)?;
    let there = world
        .ns(Node::Machine(b))
        .run(move || -> Result<u32, DynError> {
            wire_underlay(&mut Netlink::new()?, &underlay_end(a), &path_b, ipv6)
        })
        .map_err(BuildError::at(step.clone()))?
        .map_err(fail)?;
    Ok((here, there))
}

/// Wires the underlay end `name` of the calling thread's namespace to
/// `path` and brings it up; returns its ifindex.
fn wire_underlay(
    nl: &mut Netlink,
    name: &str,
    path: &offload::MachinePath,
    ipv6: bool,
) -> Result<u32, DynError> {
    if ipv6 {
        let key = format!("net.ipv6.conf.{name}.disable_ipv6");
        crate::sys::sysctl::sysctl_set(&key, "1")?;
    }
    let index = nl.link_index(name)?;
    path.attach_underlay(nl, index)?;
    let up = LinkSettings {
        mac: None,
        mtu: None,
        up: true,
    };
    nl.link_configure_at(index, name, up)?;
    Ok(index)
}
