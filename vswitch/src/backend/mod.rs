//! Backends: the IO that turns a [`Plan`] into a running world.
//!
//! What every backend shares lives here: one network namespace per machine,
//! external and container (named by the run id), Docker's resolv.conf and
//! hosts files, the echo and DNS services, and teardown. The data path
//! between those namespaces is the backend's: [`userspace`] puts TAP devices
//! behind the vswitch engine; [`docker`] has a real Docker daemon build it,
//! and provides the machine's and containers' namespaces itself (World only
//! ever deletes namespaces named with its run id).

pub mod capture;
pub mod common;
pub mod docker;
pub mod hosted;
pub mod kernel;
pub(crate) mod linux;
pub mod parallel;
pub mod pcap;
mod services;
pub mod sim;
pub mod steps;
pub mod topology;
pub mod userspace;

use std::collections::HashMap;
use std::net::IpAddr;

use crate::netns::NetNs;
use crate::probe;
use crate::run_id::RunId;
use crate::scenario::plan::{BackendKind, LinkFault, LinkRef, Node, Plan, StepAction};

use common::on_host_network;
pub use common::{BuildError, BuildOptions, Namespaces};

/// The address of Docker's embedded DNS inside a container.
pub const EMBEDDED_DNS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 11));

/// What a mixed run (some machines `backend = "kernel"`, the rest the
/// userspace engine's) cannot build: the kernel backend's own refusals (it
/// builds those machines), labelled for the userspace run.
fn mixed_refusals(plan: &Plan) -> Vec<String> {
    if !plan
        .machines
        .iter()
        .any(|m| m.backend == Some(BackendKind::Kernel))
    {
        return Vec::new();
    }
    kernel::unsupported(plan)
        .into_iter()
        .map(|r| {
            let r = r.strip_prefix("backend kernel: ").unwrap_or(&r).to_string();
            format!("backend userspace: mixed run, kernel machines: {r}")
        })
        .collect()
}

/// Builds the `backend = "kernel"` machines of a mixed run (the userspace
/// data path has given each its uplink TAP on the engine's lan), from the
/// plan the engine was configured from: with the tasks' host-mode ports and
/// the OV-8 gwbridge endpoints.
fn build_kernel_machines(world: &Namespaces, plan: &Plan) -> Result<(), BuildError> {
    let plan = &*hosted::services::with_host_ports(plan);
    let plan = &*topology::with_gwbridge(plan);
    for (m, mach) in plan.machines.iter().enumerate() {
        if mach.backend == Some(BackendKind::Kernel) {
            kernel::build_mixed_machine(world, plan, m)?;
        }
    }
    Ok(())
}

/// What a backend cannot build of this plan, one reason per line
/// ("backend userspace: driver ipvlan not supported yet (network `v`)").
pub fn unsupported(plan: &Plan, backend: BackendKind) -> Vec<String> {
    let of = |p: &Plan| match backend {
        BackendKind::Userspace => {
            let mut why = mixed_refusals(p);
            why.extend(hosted::unsupported(p));
            why
        }
        BackendKind::Kernel => kernel::unsupported(p),
        BackendKind::Docker => docker::unsupported(p),
        BackendKind::Sim => sim::unsupported(p),
    };
    let mut why = of(plan);
    why.extend(services::refusals(plan, backend));
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

/// The kernel features `plan` says it `requires` that this kernel lacks
/// (probed for real in a throwaway namespace).
pub fn absent_requirements(plan: &Plan) -> Vec<String> {
    plan.requires
        .iter()
        .filter(|k| !crate::sys::link_kind_supported(k))
        .cloned()
        .collect()
}

/// The data path of a world.
#[derive(Debug)]
enum Dataplane {
    Userspace(userspace::Dataplane),
    Kernel(kernel::Dataplane),
    Docker(Box<docker::Dataplane>),
}

impl Dataplane {
    fn stop(self) -> serde_json::Value {
        match self {
            Dataplane::Userspace(d) => d.stop(),
            Dataplane::Kernel(d) => d.stop(),
            Dataplane::Docker(d) => d.stop(),
        }
    }

    /// Stops a data path that a step builds again in the same namespaces;
    /// the engine's tracked flows come back with its counters.
    fn stop_for_rebuild(self) -> (serde_json::Value, crate::engine::ConntrackState) {
        match self {
            Dataplane::Userspace(d) => d.stop_for_rebuild(),
            other => (other.stop(), crate::engine::ConntrackState::default()),
        }
    }
}

/// A built world: namespaces, data path and services. Dropping it tears
/// everything down (services, data path, then namespaces).
#[derive(Debug)]
pub struct World {
    nodes: Namespaces,
    dataplane: Option<Dataplane>,
    /// `--pcap` captures of a kernel data path (stopped before it).
    captures: Option<capture::Captures>,
    echo: Vec<probe::EchoServices>,
    dns: Vec<probe::DnsServer>,
    /// Docker's embedded DNS (127.0.0.11) of each container that has one.
    embedded_dns: Vec<crate::dns::EmbeddedDns>,
    /// Its kernel fast path: one program and map for the world, attached
    /// to each of those containers' `lo` until their namespaces go.
    dns_fast_path: Option<std::sync::Arc<crate::dns::fastpath::WorldFastPath>>,
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
    /// The sim backend's whole world (no namespaces, no threads).
    sim: Option<std::sync::Mutex<sim::SimWorld>>,
}

/// Node name → namespace name, for `vswitch exec` and the run record. On
/// `docker` the machine is the daemon's namespace.
pub fn namespace_names(run: &RunId, plan: &Plan, backend: BackendKind) -> Vec<(String, String)> {
    let machines_in = match backend {
        BackendKind::Docker => docker::machines_netns(plan),
        _ => None,
    };
    common::namespace_names(run, plan, machines_in)
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
        let _span = tracing::info_span!("world", run = %run, backend = %backend).entered();
        let mut world = World {
            nodes: Namespaces::new(run),
            dataplane: None,
            captures: None,
            echo: Vec::new(),
            dns: Vec::new(),
            embedded_dns: Vec::new(),
            dns_fast_path: None,
            backend,
            opts: opts.clone(),
            dns_table: None,
            container_echo: HashMap::new(),
            faults: HashMap::new(),
            earlier_metrics: Vec::new(),
            sim: None,
        };
        if backend == BackendKind::Sim {
            progress("building the world in memory");
            let w = sim::SimWorld::build(plan, run.as_str(), opts)?;
            world.sim = Some(std::sync::Mutex::new(w));
            return Ok(world);
        }
        progress(&format!(
            "creating {} namespaces",
            plan.machines.len() + plan.externals.len() + plan.containers.len()
        ));
        let t = std::time::Instant::now();
        world.create_namespaces(plan, backend)?;
        tracing::debug!(
            ms = t.elapsed().as_millis() as u64,
            "setup: namespaces created, /etc files written"
        );
        progress("wiring the data path");
        let t = std::time::Instant::now();
        world.dataplane = Some(match backend {
            BackendKind::Userspace => {
                Dataplane::Userspace(userspace::Dataplane::build(&world.nodes, plan, opts)?)
            }
            BackendKind::Kernel => {
                Dataplane::Kernel(kernel::Dataplane::build(&world.nodes, plan, opts)?)
            }
            BackendKind::Docker => Dataplane::Docker(Box::new(docker::Dataplane::build(
                &mut world.nodes,
                plan,
                opts,
                progress,
            )?)),
            // Built above, without namespaces.
            BackendKind::Sim => return Ok(world),
        });
        if backend == BackendKind::Userspace {
            // The data path is in place, so a failure here removes it too.
            build_kernel_machines(&world.nodes, plan)?;
        }
        if backend == BackendKind::Docker {
            // Container namespaces exist only now.
            world.write_etc_files(plan)?;
        }
        tracing::debug!(
            ms = t.elapsed().as_millis() as u64,
            "setup: data path wired"
        );
        if let (Some(dir), true) = (&opts.pcap_dir, backend != BackendKind::Userspace) {
            progress("starting captures");
            let renames = match &world.dataplane {
                Some(Dataplane::Docker(d)) => d.capture_names().iter().cloned().collect(),
                _ => HashMap::new(),
            };
            world.captures = Some(capture::Captures::start(&world.nodes, plan, dir, &renames)?);
        }
        progress("starting services");
        world.start_services(plan, backend)?;
        Ok(world)
    }

    /// The run id.
    pub fn run(&self) -> &RunId {
        self.nodes.run()
    }

    /// The in-memory world of the sim backend.
    pub fn sim(&self) -> Option<&std::sync::Mutex<sim::SimWorld>> {
        self.sim.as_ref()
    }

    /// The namespace a node lives in.
    pub fn ns(&self, node: Node) -> &NetNs {
        self.nodes.ns(node)
    }

    /// Puts `ns` in place of `node`'s namespace handle, returning the old
    /// one (tests: a probe whose namespace is gone).
    #[cfg(test)]
    pub(crate) fn swap_ns(&mut self, node: Node, ns: NetNs) -> NetNs {
        self.nodes.replace(node, ns)
    }

    /// Creates the world's namespaces with their `/etc` files (written by
    /// the thread that creates each, while the others wait in the kernel).
    fn create_namespaces(&mut self, plan: &Plan, backend: BackendKind) -> Result<(), BuildError> {
        let names = namespace_names(self.nodes.run(), plan, backend);
        let provided = |node| backend == BackendKind::Docker && !docker::world_creates(plan, node);
        let etc = if backend == BackendKind::Docker {
            HashMap::new()
        } else {
            etc_files(plan)
        };
        self.nodes.create(plan, names, provided, etc)
    }

    /// Writes [`etc_files`] into the namespaces of a world whose backend
    /// made them (Docker's containers), not the machines' it borrows.
    fn write_etc_files(&self, plan: &Plan) -> Result<(), BuildError> {
        for (node, files) in etc_files(plan) {
            let ns = self.ns(node);
            let what = match node {
                Node::Machine(_) if !self.nodes.owns(ns) => continue,
                Node::Machine(i) => format!("machine {}", plan.machines[i].name),
                Node::Container(i) => format!("container {}", plan.containers[i].name),
                Node::External(i) => format!("external {}", plan.externals[i].name),
            };
            for (file, content) in files {
                ns.write_etc(file, &content)
                    .map_err(BuildError::at(what.clone()))?;
            }
        }
        Ok(())
    }

    fn start_services(&mut self, plan: &Plan, backend: BackendKind) -> Result<(), BuildError> {
        for (i, c) in plan.containers.iter().enumerate() {
            // A task that a later scale step starts is not running yet.
            if !c.serve.is_empty() && c.running {
                let s = probe::start_echo(self.ns(Node::Container(i)), &c.serve, &c.name)
                    .map_err(BuildError::at(format!("services of {}", c.name)))?;
                self.container_echo.insert(i, s);
            }
        }
        for (i, x) in plan.externals.iter().enumerate() {
            if !x.serve.is_empty() {
                let s = probe::start_echo(self.ns(Node::External(i)), &x.serve, &x.name)
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
        let t = std::time::Instant::now();
        let live = std::sync::Arc::new(crate::dns::LiveTable::new(
            crate::dns::NameTable::from_plan(plan),
        ));
        self.dns_table = Some(live.clone());
        let table = live.get();
        // Every task of a service too, running or not: a scale step may start
        // it later, and its namespace is there from the start (DNS-1).
        let task = |i: usize| plan.services.iter().any(|s| s.tasks.contains(&i));
        let served: Vec<usize> = (0..plan.containers.len())
            .filter(|&i| {
                task(i) || (!on_host_network(plan, i) && table.view(i).is_some_and(|v| v.embedded))
            })
            .collect();
        // The fast path first: attaching is quicker before the servers'
        // threads exist. Its answers are fixed at load: not for a world
        // whose names change (topology steps).
        let fast = if steps::has_topology_steps(plan) {
            None
        } else {
            crate::dns::fastpath::WorldFastPath::load(&table)
        };
        if let Some(fast) = fast {
            tracing::debug!(
                ms = t.elapsed().as_millis() as u64,
                "setup: DNS fast path loaded"
            );
            let fast = std::sync::Arc::new(fast);
            fast.attach_in(served.iter().map(|&i| (i, self.ns(Node::Container(i)))));
            self.dns_fast_path = Some(fast);
        }
        tracing::debug!(
            ms = t.elapsed().as_millis() as u64,
            "setup: DNS fast path attached"
        );
        let t = std::time::Instant::now();
        // One server per container, each started on its own (parallel) thread.
        let jobs: Vec<_> = served
            .iter()
            .map(|&i| {
                let c = &plan.containers[i];
                let (cns, mns) = (
                    self.ns(Node::Container(i)),
                    self.ns(Node::Machine(c.machine)),
                );
                (i, &c.name, cns, mns, live.clone())
            })
            .collect();
        let started = parallel::map(jobs, parallel::WIDTH, |(i, name, cns, mns, table)| {
            crate::dns::start_embedded_dns(table, i, cns, mns, crate::dns::ForwardConfig::default())
                .map_err(BuildError::at(format!("embedded DNS of {name}")))
        });
        let mut first_error = None;
        for s in started {
            match s {
                Ok(s) => self.embedded_dns.push(s),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        tracing::debug!(
            ms = t.elapsed().as_millis() as u64,
            "setup: embedded DNS started"
        );
        Ok(())
    }

    /// Queries answered by the embedded DNS's kernel fast path, all
    /// containers together; `None` when it is not loaded.
    pub fn dns_fast_path_hits(&self) -> Option<u64> {
        self.dns_fast_path.as_ref().map(|f| f.hits())
    }

    /// Tears the world down and returns the data path's counters.
    pub fn teardown(mut self) -> serde_json::Value {
        if let Some(c) = self.captures.take() {
            c.stop();
        }
        self.stop_services();
        let t = std::time::Instant::now();
        let mut metrics = self
            .dataplane
            .take()
            .map_or(serde_json::Value::Null, Dataplane::stop);
        if let Some(s) = self.sim.take() {
            metrics = s.into_inner().unwrap_or_else(|p| p.into_inner()).metrics();
        }
        tracing::debug!(
            ms = t.elapsed().as_millis() as u64,
            "teardown: data path stopped"
        );
        let earlier = std::mem::take(&mut self.earlier_metrics);
        if let (false, Some(o)) = (earlier.is_empty(), metrics.as_object_mut()) {
            o.insert("before_steps".into(), earlier.into());
        }
        drop(self);
        metrics
    }

    /// Stops the embedded DNS, echo and DNS services (all at once: each
    /// thread notices within its poll interval).
    fn stop_services(&mut self) {
        let t = std::time::Instant::now();
        crate::dns::stop_all(&mut self.embedded_dns);
        self.echo.clear();
        self.container_echo.clear();
        self.dns.clear();
        tracing::debug!(
            ms = t.elapsed().as_millis() as u64,
            "teardown: services stopped"
        );
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.captures.take();
        self.stop_services();
        if let Some(d) = self.dataplane.take() {
            let _ = d.stop();
        }
        let t = std::time::Instant::now();
        self.nodes.delete_owned();
        tracing::debug!(
            ms = t.elapsed().as_millis() as u64,
            "teardown: namespaces deleted"
        );
    }
}

/// The IPv6 lines Docker writes into a container's `/etc/hosts` when the
/// container has IPv6 (DNS-20, moby etchosts defaultContent).
pub const HOSTS_IPV6_LINES: &str = "::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
ff00::0\tip6-mcastprefix\n\
ff02::1\tip6-allnodes\n\
ff02::2\tip6-allrouters\n";

/// A container's `/etc/hosts` (DNS-20): localhost, the IPv6 localhost and
/// multicast lines when it has an IPv6 address, then the `extra_hosts`
/// lines, the legacy links' lines (BR-20: `IP ALIAS HOSTNAME NAME` for each
/// address of the linked container on the default bridge), and one line per
/// address of each endpoint (IPv4 first, then IPv6) with the hostname, in
/// the order Docker 20.10 writes them. A container sharing another's
/// namespace (NH-7) has that one's file.
pub fn hosts_file(plan: &Plan, container: usize) -> String {
    let c = &plan.containers[plan.containers[container].netns_of.unwrap_or(container)];
    let mut hosts = String::from("127.0.0.1\tlocalhost\n");
    if c.endpoints.iter().any(|e| e.ip6.is_some()) {
        hosts.push_str(HOSTS_IPV6_LINES);
    }
    for (name, ip) in &c.extra_hosts {
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    for l in &c.links {
        let t = &plan.containers[l.container];
        let mut names = vec![l.alias.as_str()];
        for n in [t.host_name(), t.name.as_str()] {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        let names = names.join(" ");
        for e in t
            .endpoints
            .iter()
            .filter(|e| plan.networks[e.network].default)
        {
            if let Some(ip) = e.ip {
                hosts.push_str(&format!("{ip}\t{names}\n"));
            }
            if let Some(ip) = e.ip6 {
                hosts.push_str(&format!("{ip}\t{names}\n"));
            }
        }
    }
    for e in &c.endpoints {
        if let Some(ip) = e.ip {
            hosts.push_str(&format!("{ip}\t{}\n", c.host_name()));
        }
        if let Some(ip) = e.ip6 {
            hosts.push_str(&format!("{ip}\t{}\n", c.host_name()));
        }
    }
    hosts
}

/// The environment Docker 20.10 gives a container for each legacy link
/// (BR-20): `ALIAS_NAME=/NAME/ALIAS` and, for each port the linked
/// container exposes (its published container ports, lowest first, TCP
/// before UDP), `ALIAS_PORT_P_PROTO=proto://IP:P` with `_ADDR`, `_PORT`,
/// `_PROTO`, and `ALIAS_PORT` for the first; ALIAS upper case with `-` as
/// `_`. IP is the linked container's default-bridge address. Docker's
/// `_START`/`_END` variables for runs of consecutive ports are not written.
pub fn link_env(plan: &Plan, container: usize) -> Vec<(String, String)> {
    let c = &plan.containers[container];
    let mut env = Vec::new();
    for l in &c.links {
        let t = &plan.containers[l.container];
        let a = l.alias.to_uppercase().replace('-', "_");
        env.push((format!("{a}_NAME"), format!("/{}/{}", c.name, l.alias)));
        let Some(ip) = t
            .endpoints
            .iter()
            .find(|e| plan.networks[e.network].default)
            .and_then(|e| e.ip)
        else {
            continue;
        };
        let mut ports: Vec<(u16, String)> = t
            .publish
            .iter()
            .map(|p| (p.container_port, p.proto.to_string()))
            .collect();
        ports.sort();
        ports.dedup();
        if let Some((p, proto)) = ports.first() {
            env.push((format!("{a}_PORT"), format!("{proto}://{ip}:{p}")));
        }
        for (p, proto) in &ports {
            let k = format!("{a}_PORT_{p}_{}", proto.to_uppercase());
            env.push((k.clone(), format!("{proto}://{ip}:{p}")));
            env.push((format!("{k}_ADDR"), ip.to_string()));
            env.push((format!("{k}_PORT"), p.to_string()));
            env.push((format!("{k}_PROTO"), proto.clone()));
        }
    }
    env
}

/// `/etc/hostname`: the container's hostname (NH-7: the shared one's).
pub fn hostname_file(plan: &Plan, container: usize) -> String {
    let c = &plan.containers[plan.containers[container].netns_of.unwrap_or(container)];
    format!("{}\n", c.host_name())
}

/// resolv.conf, hosts and hostname as Docker writes them (DNS-2, DNS-20,
/// DNS-21), for `/etc/netns/NS/` where `ip netns exec` and `vswitch exec`
/// bind them: every container with a namespace of its own, and each
/// machine's resolv.conf (its resolvers).
fn etc_files(plan: &Plan) -> HashMap<Node, common::EtcFiles> {
    let mut etc = HashMap::new();
    for (i, c) in plan.containers.iter().enumerate() {
        // A container sharing another's namespace shares its files too.
        if on_host_network(plan, i) || c.netns_of.is_some() {
            continue;
        }
        let files = vec![
            ("resolv.conf", resolv_conf(plan, i)),
            ("hosts", hosts_file(plan, i)),
            ("hostname", hostname_file(plan, i)),
        ];
        etc.insert(Node::Container(i), files);
    }
    for (i, m) in plan.machines.iter().enumerate() {
        let r: String = m
            .resolvers
            .iter()
            .map(|ip| format!("nameserver {ip}\n"))
            .collect();
        etc.insert(Node::Machine(i), vec![("resolv.conf", r)]);
    }
    etc
}

/// A container's resolv.conf: the embedded DNS on user-defined networks
/// (DNS-2), the machine's resolvers (or the container's `dns`) on the
/// default bridge (DNS-21). vswitch never writes public resolvers.
///
/// `dns_search` makes the `search` line and `dns_opt` the `options` line;
/// with the embedded DNS, `ndots:0` is appended unless an `ndots` option is
/// given (DNS-2). Lines come in Docker's order: search, nameserver, options.
pub fn resolv_conf(plan: &Plan, container: usize) -> String {
    let c = &plan.containers[plan.containers[container].netns_of.unwrap_or(container)];
    let search = if c.dns_search.is_empty() {
        String::new()
    } else {
        format!("search {}\n", c.dns_search.join(" "))
    };
    let embedded = c
        .endpoints
        .iter()
        .any(|e| plan.networks[e.network].has_embedded_dns());
    if embedded {
        let mut opts = c.dns_opt.clone();
        if !opts.iter().any(|o| o.starts_with("ndots:")) {
            opts.push("ndots:0".to_string());
        }
        return format!(
            "{search}nameserver 127.0.0.11\noptions {}\n",
            opts.join(" ")
        );
    }
    // DNS-21: the machine's loopback nameservers are dropped, and its IPv6
    // ones too for a container without IPv6; `dns` values are literal.
    let has_v6 = c.endpoints.iter().any(|e| e.ip6.is_some());
    let servers: Vec<IpAddr> = if c.dns.is_empty() {
        plan.machines[c.machine]
            .resolvers
            .iter()
            .copied()
            .filter(|ip| !ip.is_loopback() && (has_v6 || ip.is_ipv4()))
            .collect()
    } else {
        c.dns.clone()
    };
    let mut s = search;
    if servers.is_empty() {
        s.push_str("# no resolvers in the scenario (vswitch never adds public ones)\n");
    }
    for ip in servers {
        s.push_str(&format!("nameserver {ip}\n"));
    }
    if !c.dns_opt.is_empty() {
        s.push_str(&format!("options {}\n", c.dns_opt.join(" ")));
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

#[cfg(test)]
mod etc_tests {
    use std::path::Path;

    use super::{default_dns_server, hosts_file, resolv_conf};

    const WORLD: &str = r#"
name = "etc files"
[[machine]]
name = "host"
resolvers = ["198.18.0.53", "2001:2::53"]
[[network]]
name = "bridge"
default = true
[[network]]
name = "dual"
ipv6 = true
subnet = "10.9.0.0/24"
[[network]]
name = "four"
subnet = "10.8.0.0/24"
[[container]]
name = "web"
networks = ["dual", "four"]
[[container]]
name = "old"
networks = ["bridge"]
[[container]]
name = "v4"
networks = ["four"]
"#;

    /// DNS-20: the IPv6 localhost lines and every address of the container,
    /// only for a container with IPv6.
    #[test]
    fn dns20_hosts_with_and_without_ipv6() {
        let plan = crate::scenario::parse_str(Path::new("t.toml"), WORLD).unwrap();
        assert_eq!(
            hosts_file(&plan, 0),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
ff02::2\tip6-allrouters\n10.9.0.2\tweb\nfd00:5653::2\tweb\n10.8.0.2\tweb\n"
        );
        assert_eq!(hosts_file(&plan, 2), "127.0.0.1\tlocalhost\n10.8.0.3\tv4\n");
    }

    /// DNS-21: a default-bridge container without IPv6 gets the machine's
    /// IPv4 nameservers only.
    #[test]
    fn dns21_ipv6_nameservers_need_ipv6() {
        let plan = crate::scenario::parse_str(Path::new("t.toml"), WORLD).unwrap();
        assert_eq!(resolv_conf(&plan, 1), "nameserver 198.18.0.53\n");
        assert_eq!(
            default_dns_server(&plan, crate::scenario::plan::Node::Container(1)),
            Some("198.18.0.53".parse().unwrap())
        );
    }
}
