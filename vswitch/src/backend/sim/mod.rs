//! The sim backend (`--backend sim`): the whole world in one process,
//! rootless, in virtual time.
//!
//! The engine is the userspace backend's own, configured from the Plan by
//! [`hosted::configure`](crate::backend::hosted::configure); every TAP
//! of that backend becomes an in-memory smoltcp interface ([`stack`]) with
//! the same name, MAC, addresses, routes and MTU, and every node gets a
//! loopback interface holding `127.0.0.1`, `::1` and its own addresses.
//! One virtual clock ([`clock`]) drives the engine and every stack: the
//! world only ever advances it to the next deadline (a stack's timer, the
//! engine's, a fault's held frame, a probe's retry), never sleeps.
//!
//! Services ([`services`]): the echo services, the externals' DNS servers,
//! the userland proxy of each machine ([`proxy`]) and Docker's embedded
//! DNS, answered by the project's own [`NameTable`](crate::dns::NameTable)
//! and forwarded from the machine's stack. Probes ([`probes`]) answer the
//! same check kinds as the kernel-socket probes with the same outcomes.

pub mod clock;
mod frag;
mod neigh;
mod net;
mod pmtu;
pub mod probes;
mod proxy;
mod services;
mod stack;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::backend::common::{BuildError, BuildOptions};
use crate::backend::hosted::configure;
use crate::backend::pcap::PcapWriter;
use crate::engine::{ConntrackState, Engine, PortId};
use crate::scenario::plan::{LinkFault, LinkRef, Node, Plan, StepAction};

use clock::Clock;
use stack::{Stack, StackSpec};

pub use clock::VIRTUAL_EPOCH_US;

/// What the sim cannot build of `plan`, one reason per item: its verdicts
/// in the refusal table ([`refusal`](crate::backend::topology::features::refusal):
/// mixed runs, iperf3), then what the userspace engine refuses.
pub fn unsupported(plan: &Plan) -> Vec<String> {
    use crate::backend::topology::features::{Env, features, refusals_of};
    use crate::scenario::plan::BackendKind;
    let f = features(plan);
    // Nothing the sim builds depends on this machine's kernel.
    let any = |_: &str| true;
    let env = Env { has_kind: &any };
    let ours = refusals_of(
        BackendKind::Sim,
        f.machines.iter().chain(&f.checks),
        plan,
        &env,
    );
    let engine = crate::backend::hosted::unsupported(plan);
    let engine = engine
        .iter()
        .map(|r| r.strip_prefix("backend userspace: ").unwrap_or(r));
    let mut why: Vec<String> = ours
        .iter()
        .map(String::as_str)
        .chain(engine)
        .map(|r| format!("backend sim: {r}"))
        .collect();
    why.dedup();
    why
}

/// A world in memory.
#[derive(Debug)]
pub struct SimWorld {
    clock: Clock,
    engine: Engine,
    stacks: Vec<Stack>,
    /// Stack of each engine port.
    port_stack: Vec<usize>,
    /// Each node's stacks (its loopback first).
    nodes: HashMap<Node, Vec<usize>>,
    pcaps: Vec<Option<PcapWriter>>,
    port_names: Vec<String>,
    /// Stacks to poll now.
    dirty: BTreeSet<usize>,
    /// The embedded DNS's records (replaced by steps).
    table: Arc<crate::dns::NameTable>,
    rng: rand::rngs::StdRng,
    next_port: u16,
    next_ident: u16,
    proxy: proxy::Proxy,
    /// Frames the engine moved, for the report's metrics.
    frames: u64,
    seed: u64,
    faults: HashMap<LinkRef, LinkFault>,
    /// Each container's machine.
    container_machine: Vec<usize>,
    /// The path MTUs the nodes learned ([`pmtu`]).
    pmtu: pmtu::PathMtus,
    /// Pings under way, to hand them the ICMP errors their stacks receive.
    pings: Vec<probes::PingWatch>,
}

/// The node whose interfaces `n` uses: a container sharing another's
/// namespace (NH-7) uses that one's, a container on the host network its
/// machine's (NH-3).
pub(crate) fn owner(plan: &Plan, n: Node) -> Node {
    match n {
        Node::Container(i) => {
            let c = &plan.containers[i];
            let base = c.netns_of.unwrap_or(i);
            let host = plan.containers[base]
                .endpoints
                .iter()
                .any(|e| plan.networks[e.network].driver == crate::scenario::plan::Driver::Host);
            if host {
                Node::Machine(c.machine)
            } else {
                Node::Container(base)
            }
        }
        other => other,
    }
}

impl SimWorld {
    /// Builds `plan` in memory.
    pub fn build(plan: &Plan, run: &str, opts: &BuildOptions) -> Result<SimWorld, BuildError> {
        Self::build_carrying(plan, run, opts, ConntrackState::default(), None)
    }

    fn build_carrying(
        plan: &Plan,
        run: &str,
        opts: &BuildOptions,
        carried: ConntrackState,
        clock: Option<Clock>,
    ) -> Result<SimWorld, BuildError> {
        let setup = configure(plan, run, opts)?;
        let clock = clock.unwrap_or_default();
        let mut engine = setup.engine()?;
        if !carried.is_empty() {
            engine.restore_conntrack(carried, clock.instant());
        }
        if let Some(dir) = &opts.pcap_dir {
            // The keys of the encrypted overlays, for Wireshark (OV-9), as
            // the userspace backend writes them.
            let sas = crate::backend::hosted::overlay::used_sas(&setup.cfg);
            if !sas.is_empty() {
                let path = dir.join(crate::backend::hosted::ESP_SA_FILE);
                std::fs::write(&path, crate::engine::esp::esp_sa_uat(&sas))
                    .map_err(BuildError::at(format!("writing {}", path.display())))?;
            }
        }
        let mut pcaps = Vec::new();
        for (path, name) in setup.pcap_paths().iter().zip(&setup.port_names) {
            pcaps.push(match path {
                Some(p) => Some(
                    PcapWriter::create(p).map_err(BuildError::at(format!("pcap for {name}")))?,
                ),
                None => None,
            });
        }
        let mut w = SimWorld {
            clock,
            engine,
            stacks: Vec::new(),
            port_stack: Vec::new(),
            nodes: HashMap::new(),
            pcaps,
            port_names: setup.port_names.clone(),
            dirty: BTreeSet::new(),
            table: Arc::new(crate::dns::NameTable::from_plan(plan)),
            rng: crate::dns::seeded_rng(plan.seed),
            next_port: EPHEMERAL_FIRST,
            next_ident: 1,
            proxy: proxy::Proxy::default(),
            frames: 0,
            seed: plan.seed,
            faults: HashMap::new(),
            container_machine: plan.containers.iter().map(|c| c.machine).collect(),
            pmtu: pmtu::PathMtus::default(),
            pings: Vec::new(),
        };
        w.make_stacks(plan, &setup);
        w.start_services(plan);
        w.proxy = proxy::Proxy::new(setup.proxy_maps());
        w.proxy.bind(&mut w.stacks, &w.nodes, plan);
        Ok(w)
    }

    /// One stack per engine port, and a loopback per node.
    fn make_stacks(&mut self, plan: &Plan, setup: &crate::backend::hosted::Setup) {
        let mut by_node: HashMap<Node, Vec<(PortId, &crate::backend::hosted::IfaceSpec)>> =
            HashMap::new();
        let mut order: Vec<Node> = Vec::new();
        for n in (0..plan.machines.len())
            .map(Node::Machine)
            .chain((0..plan.externals.len()).map(Node::External))
            .chain((0..plan.containers.len()).map(Node::Container))
        {
            if owner(plan, n) == n {
                order.push(n);
            }
        }
        for (p, node, spec) in setup.interfaces() {
            by_node.entry(node).or_default().push((p, spec));
        }
        self.port_stack = vec![usize::MAX; setup.port_names.len()];
        let now = self.clock.smol();
        for node in order {
            let ifs = by_node.remove(&node).unwrap_or_default();
            let all: Vec<IpAddr> = ifs
                .iter()
                .flat_map(|(_, s)| s.addrs.iter().map(|(a, _)| *a))
                .collect();
            let mut lo_addrs = vec![
                (IpAddr::V4(Ipv4Addr::LOCALHOST), 8),
                (IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
            ];
            if matches!(node, Node::Container(_)) {
                lo_addrs.push((IpAddr::V4(crate::dns::EMBEDDED_DNS_ADDR), 32));
            }
            let mut mine = vec![self.stacks.len()];
            let seed = self.seed ^ (self.stacks.len() as u64).wrapping_mul(0x9e37_79b9);
            self.stacks.push(Stack::new(
                StackSpec {
                    node,
                    port: None,
                    name: "lo".into(),
                    mac: None,
                    mtu: 65535,
                    addrs: lo_addrs,
                    extra: all.clone(),
                    routes: Vec::new(),
                    seed,
                },
                now,
            ));
            for (p, spec) in ifs {
                let idx = self.stacks.len();
                self.port_stack[usize::from(p.0)] = idx;
                let seed = self.seed ^ (idx as u64).wrapping_mul(0x9e37_79b9);
                self.stacks.push(Stack::new(
                    StackSpec {
                        node,
                        port: Some(p),
                        name: spec.name.clone(),
                        mac: Some(spec.mac),
                        mtu: spec.mtu,
                        addrs: spec.addrs.clone(),
                        extra: all.clone(),
                        routes: spec.routes.clone(),
                        seed,
                    },
                    now,
                ));
                mine.push(idx);
            }
            self.nodes.insert(node, mine);
        }
        // A node sharing another's interfaces (NH-3, NH-7) probes from them.
        for n in (0..plan.containers.len()).map(Node::Container) {
            let o = owner(plan, n);
            if o != n
                && let Some(v) = self.nodes.get(&o).cloned()
            {
                self.nodes.insert(n, v);
            }
        }
        self.dirty.extend(0..self.stacks.len());
    }

    /// The echo services of running containers and externals, and the
    /// externals' DNS servers, on every interface of their node.
    fn start_services(&mut self, plan: &Plan) {
        for (i, c) in plan.containers.iter().enumerate() {
            if c.running {
                self.start_echo(plan, Node::Container(i));
            }
        }
        for (i, x) in plan.externals.iter().enumerate() {
            self.start_echo(plan, Node::External(i));
            if !x.dns.is_empty() {
                let table = Arc::new(x.dns.clone());
                for proto in [
                    crate::scenario::plan::Proto::Udp,
                    crate::scenario::plan::Proto::Tcp,
                ] {
                    for &s in self.nodes.get(&Node::External(i)).into_iter().flatten() {
                        services::bind(
                            &mut self.stacks[s],
                            proto,
                            53,
                            services::TcpRole::Dns(table.clone()),
                        );
                    }
                }
            }
        }
    }

    fn start_echo(&mut self, plan: &Plan, n: Node) {
        let serve = match n {
            Node::Container(i) => &plan.containers[i].serve,
            Node::External(i) => &plan.externals[i].serve,
            Node::Machine(_) => return,
        };
        let name: Arc<str> = Arc::from(plan.node_name(n));
        let node = owner(plan, n);
        for svc in serve {
            for &s in self.nodes.get(&node).into_iter().flatten() {
                services::bind(
                    &mut self.stacks[s],
                    svc.proto,
                    svc.port,
                    services::TcpRole::Echo(name.clone()),
                );
                self.dirty.insert(s);
            }
        }
    }

    /// Virtual time since the world was built.
    pub fn elapsed(&self) -> std::time::Duration {
        self.clock.elapsed()
    }

    /// The data path's counters, as the report's `metrics`.
    pub fn metrics(&mut self) -> serde_json::Value {
        for w in self.pcaps.iter_mut().flatten() {
            let _ = w.flush();
        }
        serde_json::json!({
            "ports": self.port_names,
            "engine": self.engine.metrics_json(),
            "sim": {
                "virtual_ms": self.clock.elapsed().as_millis() as u64,
                "frames": self.frames,
                "stacks": self.stacks.len(),
            },
        })
    }

    /// Carries out a step. `after` is the world as it must stand.
    pub fn apply_step(
        &mut self,
        plan_after: &Plan,
        action: &StepAction,
        run: &str,
        opts: &BuildOptions,
        leaving: &[IpAddr],
    ) -> Result<(), String> {
        match action {
            StepAction::Wait(d) => {
                let until = self.clock.now_us() + d.as_micros() as u64;
                self.run_until(until);
                Ok(())
            }
            StepAction::Fault { .. } | StepAction::Clear(_) => {
                crate::backend::common::steps::track_faults(&mut self.faults, action);
                self.push_faults(plan_after)
            }
            _ => {
                let mut carried = self.engine.take_conntrack();
                for ip in leaving {
                    carried.forget_endpoint(*ip);
                }
                let view = crate::backend::common::steps::running_view(plan_after);
                let mut next =
                    SimWorld::build_carrying(&view, run, opts, carried, Some(self.clock.clone()))
                        .map_err(|e| e.to_string())?;
                next.table = Arc::new(crate::dns::NameTable::from_plan(plan_after));
                next.rng = std::mem::replace(&mut self.rng, crate::dns::seeded_rng(0));
                next.next_port = self.next_port;
                next.next_ident = self.next_ident;
                next.frames = self.frames;
                next.faults = std::mem::take(&mut self.faults);
                // The namespaces stay, and with them what they learned.
                next.pmtu = std::mem::take(&mut self.pmtu);
                // The old captures end here; the new world writes its own.
                for w in self.pcaps.iter_mut().flatten() {
                    let _ = w.flush();
                }
                *self = next;
                self.push_faults(plan_after)
            }
        }
    }

    /// Hands the faults in force to the engine (`lan` first, a link's own
    /// fault taking precedence).
    fn push_faults(&mut self, plan: &Plan) -> Result<(), String> {
        let plan = crate::backend::common::steps::running_view(plan);
        let mut want: Vec<Option<LinkFault>> = vec![None; self.port_names.len()];
        let mut ordered: Vec<(LinkRef, LinkFault)> =
            self.faults.iter().map(|(l, f)| (*l, *f)).collect();
        ordered.sort_by_key(|(l, _)| *l != LinkRef::Lan);
        for (link, fault) in ordered {
            for p in self.link_ports(&plan, link)? {
                want[usize::from(p.0)] = Some(fault);
            }
        }
        for (i, f) in want.into_iter().enumerate() {
            self.engine.set_fault(PortId(i as u16), f);
        }
        Ok(())
    }

    fn link_ports(&self, plan: &Plan, link: LinkRef) -> Result<Vec<PortId>, String> {
        let lan = (0..self.port_stack.len())
            .filter(|&i| self.port_stack[i] != usize::MAX)
            .map(|i| PortId(i as u16))
            .filter(|&p| self.engine.port_domain(p).map(|d| d.0) == Some(0));
        crate::backend::hosted::link_ports(plan, &self.port_names, lan, link)
    }

    /// The userland proxy's relaying after stack `s` was polled; whether
    /// `s` needs polling again.
    fn proxy_step(&mut self, s: usize) -> bool {
        self.proxy.step(s, &mut self.stacks, &mut self.dirty);
        for (us, dst) in std::mem::take(&mut self.proxy.sent) {
            self.expect(us, dst);
        }
        self.dirty.remove(&s)
    }
}

/// The first ephemeral port the sim's clients use (Linux's default range).
const EPHEMERAL_FIRST: u16 = 32768;
