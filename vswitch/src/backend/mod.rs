//! Backends: the IO that turns a [`Plan`] into a running world.
//!
//! What every backend shares lives here: one network namespace per machine,
//! external and container (named by the run id), Docker's resolv.conf and
//! hosts files, the echo and DNS services, and teardown. The data path
//! between those namespaces is the backend's: [`userspace`] puts TAP devices
//! behind the vswitch engine; [`docker`] has a real Docker daemon build it,
//! and provides the machine's and containers' namespaces itself (World only
//! ever deletes namespaces named with its run id).

pub mod docker;
pub mod kernel;
pub mod pcap;
pub mod steps;
pub mod userspace;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::netns::NetNs;
use crate::probe;
use crate::scenario::plan::{BackendKind, Driver, LinkFault, LinkRef, Node, Plan, StepAction};
use crate::sys::netlink::Netlink;
use crate::world::{NodeKind, RunId};

/// The address of Docker's embedded DNS inside a container.
pub const EMBEDDED_DNS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 11));

/// Options of a build.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Write one pcap per engine port here.
    pub pcap_dir: Option<PathBuf>,
}

/// A build step that failed.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct BuildError {
    /// What was being done.
    pub step: String,
    /// Why it failed.
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl BuildError {
    fn at<E: std::error::Error + Send + Sync + 'static>(
        step: impl Into<String>,
    ) -> impl FnOnce(E) -> BuildError {
        let step = step.into();
        move |e| BuildError {
            step,
            source: Box::new(e),
        }
    }
}

/// What a backend cannot build of this plan, one reason per line
/// ("backend userspace: driver ipvlan not supported yet (network `v`)").
pub fn unsupported(plan: &Plan, backend: BackendKind) -> Vec<String> {
    let of = |p: &Plan| match backend {
        BackendKind::Userspace => userspace::unsupported(p),
        BackendKind::Kernel => kernel::unsupported(p),
        BackendKind::Docker => docker::unsupported(p),
    };
    let mut why = of(plan);
    // What a connect step brings in must be buildable too.
    for k in 1..=plan.steps.len() {
        if matches!(plan.steps[k - 1].action, StepAction::Connect { .. }) {
            for r in of(&plan.after_steps(k)) {
                if !why.contains(&r) {
                    why.push(r);
                }
            }
        }
    }
    why.extend(steps::refusals(plan, backend));
    why
}

/// What a backend cannot honour of the run's options (never ignored).
pub fn unsupported_options(opts: &BuildOptions, backend: BackendKind) -> Vec<String> {
    let mut why = Vec::new();
    if opts.pcap_dir.is_some() && backend != BackendKind::Userspace {
        why.push(format!(
            "backend {backend}: --pcap not supported (captures are written by the engine's ports)"
        ));
    }
    why
}

/// The data path of a world.
#[derive(Debug)]
enum Dataplane {
    Userspace(userspace::Dataplane),
    Kernel(kernel::Dataplane),
    Docker(docker::Dataplane),
}

impl Dataplane {
    fn stop(self) -> serde_json::Value {
        match self {
            Dataplane::Userspace(d) => d.stop(),
            Dataplane::Kernel(d) => d.stop(),
            Dataplane::Docker(d) => d.stop(),
        }
    }
}

/// A built world: namespaces, data path and services. Dropping it tears
/// everything down (services, data path, then namespaces).
#[derive(Debug)]
pub struct World {
    run: RunId,
    namespaces: Vec<NetNs>,
    node_ns: HashMap<Node, usize>,
    dataplane: Option<Dataplane>,
    echo: Vec<probe::EchoServices>,
    dns: Vec<probe::DnsServer>,
    /// Docker's embedded DNS (127.0.0.11) of each container that has one.
    embedded_dns: Vec<crate::dns::EmbeddedDns>,
    /// Its kernel fast path: one program and map for the world …
    dns_fast_path: Option<std::sync::Arc<crate::dns::fastpath::WorldFastPath>>,
    /// … attached to each of those containers' `lo`. Declared last and
    /// never cleared by hand, so the links close after the namespaces are
    /// gone (a live detach waits for an RCU grace period; a dead one does not).
    dns_fast_links: Vec<crate::sys::bpf::TcxLink>,
    /// The backend that built it.
    backend: BackendKind,
    /// The options it was built with (a step may rebuild the data path).
    opts: BuildOptions,
    /// The embedded DNS's records, replaced when a step changes them.
    dns_table: Option<std::sync::Arc<crate::dns::LiveTable>>,
    /// Each container's echo services (stopped and restarted by steps).
    container_echo: HashMap<usize, probe::EchoServices>,
    /// Faults in force, per link.
    faults: HashMap<LinkRef, LinkFault>,
    /// Counters of data paths a step replaced.
    earlier_metrics: Vec<serde_json::Value>,
}

/// Node name → namespace name, for `vswitch exec` and the run record. On
/// `docker` the machine is the daemon's namespace.
pub fn namespace_names(run: &RunId, plan: &Plan, backend: BackendKind) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for m in &plan.machines {
        let ns = match backend {
            BackendKind::Docker => docker::DAEMON_NETNS.to_string(),
            _ => run.netns_name(NodeKind::Machine, &m.name),
        };
        v.push((m.name.clone(), ns));
    }
    for x in &plan.externals {
        v.push((x.name.clone(), run.netns_name(NodeKind::External, &x.name)));
    }
    for (i, c) in plan.containers.iter().enumerate() {
        let ns = if on_host_network(plan, i) {
            v[c.machine].1.clone()
        } else {
            run.netns_name(NodeKind::Container, &c.name)
        };
        v.push((c.name.clone(), ns));
    }
    v
}

/// Name of a bridge network's device in its machine namespace, the same on
/// every backend (the userspace host port, the kernel bridge): `docker0` for
/// the default bridge, else `br-<name>` cut to 15 characters, `br<index>`
/// when two cut names clash.
pub(crate) fn bridge_device_name(plan: &Plan, net: usize) -> String {
    let n = &plan.networks[net];
    if n.default {
        return "docker0".to_string();
    }
    let mut name: String = format!("br-{}", n.name).chars().take(15).collect();
    let clash = plan.networks.iter().enumerate().any(|(j, o)| {
        j != net && o.machine == n.machine && format!("br-{}", o.name).starts_with(&name)
    });
    if clash {
        name = format!("br{net}");
    }
    name
}

/// A container on the `host` network shares its machine's namespace (NH-3).
fn on_host_network(plan: &Plan, container: usize) -> bool {
    plan.containers[container]
        .endpoints
        .iter()
        .any(|e| plan.networks[e.network].driver == Driver::Host)
}

impl World {
    /// Builds `plan` with `backend`. On error everything built so far is
    /// removed before returning.
    pub fn build(
        run: &RunId,
        plan: &Plan,
        backend: BackendKind,
        opts: &BuildOptions,
        progress: &dyn Fn(&str),
    ) -> Result<World, BuildError> {
        let mut world = World {
            run: run.clone(),
            namespaces: Vec::new(),
            node_ns: HashMap::new(),
            dataplane: None,
            echo: Vec::new(),
            dns: Vec::new(),
            embedded_dns: Vec::new(),
            dns_fast_path: None,
            dns_fast_links: Vec::new(),
            backend,
            opts: opts.clone(),
            dns_table: None,
            container_echo: HashMap::new(),
            faults: HashMap::new(),
            earlier_metrics: Vec::new(),
        };
        progress(&format!(
            "creating {} namespaces",
            plan.machines.len() + plan.externals.len() + plan.containers.len()
        ));
        world.create_namespaces(plan, backend)?;
        if backend != BackendKind::Docker {
            world.write_etc_files(plan)?;
        }
        progress("wiring the data path");
        world.dataplane = Some(match backend {
            BackendKind::Userspace => {
                Dataplane::Userspace(userspace::Dataplane::build(&world, plan, opts)?)
            }
            BackendKind::Kernel => Dataplane::Kernel(kernel::Dataplane::build(&world, plan, opts)?),
            BackendKind::Docker => {
                Dataplane::Docker(docker::Dataplane::build(&mut world, plan, opts, progress)?)
            }
        });
        if backend == BackendKind::Docker {
            // Container namespaces exist only now.
            world.write_etc_files(plan)?;
        }
        progress("starting services");
        world.start_services(plan, backend)?;
        Ok(world)
    }

    /// The run id.
    pub fn run(&self) -> &RunId {
        &self.run
    }

    /// The namespace a node lives in.
    pub fn ns(&self, node: Node) -> &NetNs {
        &self.namespaces[self.node_ns[&node]]
    }

    /// Whether this world created (and so deletes) a namespace: those named
    /// with its run id. A backend's borrowed ones (the Docker daemon's) are not.
    fn owns(&self, ns: &NetNs) -> bool {
        ns.name().starts_with(&format!("{}-", self.run))
    }

    /// Gives `node` a namespace the backend provides (it must be named
    /// as [`namespace_names`] says); one already held under that name is shared.
    fn adopt(&mut self, node: Node, ns: NetNs) {
        let idx = match self.namespaces.iter().position(|n| n.name() == ns.name()) {
            Some(i) => i,
            None => {
                self.namespaces.push(ns);
                self.namespaces.len() - 1
            }
        };
        self.node_ns.insert(node, idx);
    }

    fn create_namespaces(&mut self, plan: &Plan, backend: BackendKind) -> Result<(), BuildError> {
        let names = namespace_names(&self.run, plan, backend);
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let nodes = plan
            .machines
            .iter()
            .enumerate()
            .map(|(i, _)| Node::Machine(i))
            .chain((0..plan.externals.len()).map(Node::External))
            .chain((0..plan.containers.len()).map(Node::Container));
        for (node, (_, ns_name)) in nodes.zip(names) {
            if backend == BackendKind::Docker && !docker::world_creates(node) {
                continue;
            }
            let idx = match by_name.get(&ns_name) {
                Some(&i) => i,
                None => {
                    let ns = NetNs::create(&ns_name)
                        .map_err(BuildError::at(format!("namespace {ns_name}")))?;
                    ns.run(prepare_namespace)
                        .map_err(BuildError::at(format!("namespace {ns_name}")))?
                        .map_err(|e| BuildError {
                            step: format!("namespace {ns_name}: loopback"),
                            source: e,
                        })?;
                    self.namespaces.push(ns);
                    by_name.insert(ns_name, self.namespaces.len() - 1);
                    self.namespaces.len() - 1
                }
            };
            self.node_ns.insert(node, idx);
        }
        Ok(())
    }

    /// resolv.conf and hosts as Docker writes them (DNS-2, DNS-20, DNS-21),
    /// where `ip netns exec` and `vswitch exec` bind them.
    fn write_etc_files(&self, plan: &Plan) -> Result<(), BuildError> {
        for (i, c) in plan.containers.iter().enumerate() {
            if on_host_network(plan, i) {
                continue;
            }
            let ns = self.ns(Node::Container(i));
            ns.write_etc("resolv.conf", &resolv_conf(plan, i))
                .map_err(BuildError::at(format!("container {}", c.name)))?;
            let mut hosts = String::from("127.0.0.1\tlocalhost\n");
            for e in &c.endpoints {
                if let Some(ip) = e.ip {
                    hosts.push_str(&format!("{ip}\t{}\n", c.name));
                }
            }
            ns.write_etc("hosts", &hosts)
                .map_err(BuildError::at(format!("container {}", c.name)))?;
        }
        for (i, m) in plan.machines.iter().enumerate() {
            let ns = self.ns(Node::Machine(i));
            if !self.owns(ns) {
                continue;
            }
            let mut r = String::new();
            for ip in &m.resolvers {
                r.push_str(&format!("nameserver {ip}\n"));
            }
            ns.write_etc("resolv.conf", &r)
                .map_err(BuildError::at(format!("machine {}", m.name)))?;
        }
        Ok(())
    }

    fn start_services(&mut self, plan: &Plan, backend: BackendKind) -> Result<(), BuildError> {
        for (i, c) in plan.containers.iter().enumerate() {
            if !c.serve.is_empty() {
                let s = probe::start_echo(self.ns(Node::Container(i)), &c.serve)
                    .map_err(BuildError::at(format!("services of {}", c.name)))?;
                self.container_echo.insert(i, s);
            }
        }
        for (i, x) in plan.externals.iter().enumerate() {
            if !x.serve.is_empty() {
                let s = probe::start_echo(self.ns(Node::External(i)), &x.serve)
                    .map_err(BuildError::at(format!("services of {}", x.name)))?;
                self.echo.push(s);
            }
            if !x.dns.is_empty() {
                let s = probe::start_dns_server(self.ns(Node::External(i)), &x.dns)
                    .map_err(BuildError::at(format!("DNS server of {}", x.name)))?;
                self.dns.push(s);
            }
        }
        // Docker's embedded DNS in every container with an endpoint on a
        // network that has it (DNS-1); forwarding leaves from the machine.
        // On the docker backend the daemon's own resolver is the one to test.
        if backend == BackendKind::Docker {
            return Ok(());
        }
        let live = std::sync::Arc::new(crate::dns::LiveTable::new(
            crate::dns::NameTable::from_plan(plan),
        ));
        self.dns_table = Some(live.clone());
        let table = live.get();
        let mut served = Vec::new();
        for (i, c) in plan.containers.iter().enumerate() {
            if on_host_network(plan, i) || !table.view(i).is_some_and(|v| v.embedded) {
                continue;
            }
            let s = crate::dns::start_embedded_dns(
                live.clone(),
                i,
                self.ns(Node::Container(i)),
                self.ns(Node::Machine(c.machine)),
                crate::dns::ForwardConfig::default(),
            )
            .map_err(BuildError::at(format!("embedded DNS of {}", c.name)))?;
            self.embedded_dns.push(s);
            served.push(i);
        }
        // Its answers are fixed at load: not for a world whose names change.
        if steps::has_topology_steps(plan) {
            return Ok(());
        }
        if let Some(fast) = crate::dns::fastpath::WorldFastPath::load(&table) {
            let fast = std::sync::Arc::new(fast);
            self.dns_fast_links =
                fast.attach_in(served.iter().map(|&i| (i, self.ns(Node::Container(i)))));
            self.dns_fast_path = Some(fast);
        }
        Ok(())
    }

    /// Queries answered by the embedded DNS's kernel fast path, all
    /// containers together; `None` when it is not loaded.
    pub fn dns_fast_path_hits(&self) -> Option<u64> {
        self.dns_fast_path.as_ref().map(|f| f.hits())
    }

    /// Tears the world down and returns the data path's counters.
    pub fn teardown(mut self) -> serde_json::Value {
        crate::dns::stop_all(&mut self.embedded_dns);
        self.echo.clear();
        self.container_echo.clear();
        self.dns.clear();
        let mut metrics = self
            .dataplane
            .take()
            .map_or(serde_json::Value::Null, Dataplane::stop);
        let earlier = std::mem::take(&mut self.earlier_metrics);
        if let (false, Some(o)) = (earlier.is_empty(), metrics.as_object_mut()) {
            o.insert("before_steps".into(), earlier.into());
        }
        drop(self);
        metrics
    }
}

impl Drop for World {
    fn drop(&mut self) {
        crate::dns::stop_all(&mut self.embedded_dns);
        self.echo.clear();
        self.container_echo.clear();
        self.dns.clear();
        if let Some(d) = self.dataplane.take() {
            let _ = d.stop();
        }
        let namespaces = std::mem::take(&mut self.namespaces);
        let names: Vec<String> = namespaces
            .iter()
            .filter(|n| self.owns(n))
            .map(|n| n.name().to_string())
            .collect();
        drop(namespaces);
        for n in names {
            if let Err(e) = crate::netns::delete(&n) {
                eprintln!("vswitch: cannot delete namespace {n}: {e}");
            }
        }
    }
}

/// Loopback up; IPv6 off unless an interface asks for it later (no router
/// solicitations or MLD reports cluttering captures).
fn prepare_namespace() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut nl = Netlink::new()?;
    nl.link_set_up("lo")?;
    crate::sys::sysctl::sysctl_set("net.ipv6.conf.default.disable_ipv6", "1")?;
    crate::sys::sysctl::sysctl_set("net.ipv6.conf.all.disable_ipv6", "1")?;
    Ok(())
}

/// A container's resolv.conf: the embedded DNS on user-defined networks
/// (DNS-2), the machine's resolvers (or the container's `dns`) on the
/// default bridge (DNS-21). vswitch never writes public resolvers.
pub fn resolv_conf(plan: &Plan, container: usize) -> String {
    let c = &plan.containers[container];
    let embedded = c
        .endpoints
        .iter()
        .any(|e| plan.networks[e.network].has_embedded_dns());
    if embedded {
        return "nameserver 127.0.0.11\noptions ndots:0\n".to_string();
    }
    let servers: Vec<IpAddr> = if c.dns.is_empty() {
        plan.machines[c.machine]
            .resolvers
            .iter()
            .copied()
            .filter(|ip| !ip.is_loopback())
            .collect()
    } else {
        c.dns.clone()
    };
    let mut s = String::new();
    if servers.is_empty() {
        s.push_str("# no resolvers in the scenario (vswitch never adds public ones)\n");
    }
    for ip in servers {
        s.push_str(&format!("nameserver {ip}\n"));
    }
    s
}

/// The DNS server a `dns` check asks when it names none: the first
/// nameserver of `from`'s resolv.conf.
pub fn default_dns_server(plan: &Plan, from: Node) -> Option<IpAddr> {
    match from {
        Node::Container(i) => {
            let text = resolv_conf(plan, i);
            text.lines()
                .filter_map(|l| l.strip_prefix("nameserver "))
                .find_map(|s| s.trim().parse().ok())
        }
        Node::Machine(i) => plan.machines[i].resolvers.first().copied(),
        Node::External(_) => None,
    }
}
