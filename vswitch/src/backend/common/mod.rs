//! What every backend shares and nothing else: the options and error of a
//! build, the world's namespaces by node ([`Namespaces`], all a backend
//! sees of the world), how a namespace is prepared, and what a step does
//! to the plan a data path is built from ([`steps`]).
//!
//! A leaf of `backend/`: it imports no backend (userspace, kernel, docker,
//! sim) and no file that does, so every backend can import it while
//! `backend/mod.rs` dispatches to them without a circle.

pub mod steps;

use std::collections::HashMap;
use std::path::PathBuf;

use crate::netns::NetNs;
use crate::run_id::{NodeKind, RunId};
use crate::scenario::plan::{Driver, Node, Plan};
use crate::sys::netlink::Netlink;

/// Options of a build.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Write one pcap per engine port here.
    pub pcap_dir: Option<PathBuf>,
    /// Threads the userspace engine serves its ports with; `None` for the
    /// default (`VSWITCH_ENGINE_THREADS`, else one per two CPUs).
    pub engine_workers: Option<usize>,
    /// Whether the userspace engine hands plain container-to-container
    /// forwarding to a kernel fast path (`backend::userspace::offload`);
    /// `None` for the default (`VSWITCH_OFFLOAD`: `off`, `tc`, else on
    /// where the kernel runs it).
    pub offload: Option<bool>,
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
    pub(crate) fn at<E: std::error::Error + Send + Sync + 'static>(
        step: impl Into<String>,
    ) -> impl FnOnce(E) -> BuildError {
        let step = step.into();
        move |e| BuildError {
            step,
            source: Box::new(e),
        }
    }
}

/// The namespaces of a world, by node: what a backend builds its data path
/// in. The world creates the ones named with its run id and deletes them
/// ([`Namespaces::delete_owned`]); a backend may hand it others (the
/// Docker daemon's), which it never deletes.
#[derive(Debug)]
pub struct Namespaces {
    run: RunId,
    namespaces: Vec<NetNs>,
    node_ns: HashMap<Node, usize>,
}

impl Namespaces {
    /// No namespaces yet, for run `run`.
    pub(crate) fn new(run: &RunId) -> Namespaces {
        Namespaces {
            run: run.clone(),
            namespaces: Vec::new(),
            node_ns: HashMap::new(),
        }
    }

    /// The run id.
    pub fn run(&self) -> &RunId {
        &self.run
    }

    /// The namespace a node lives in.
    pub fn ns(&self, node: Node) -> &NetNs {
        &self.namespaces[self.node_ns[&node]]
    }

    /// Puts `ns` in place of `node`'s namespace handle, returning the old
    /// one (a started container's new namespace, adopted under its old
    /// name; tests: a probe whose namespace is gone).
    pub(crate) fn replace(&mut self, node: Node, ns: NetNs) -> NetNs {
        std::mem::replace(&mut self.namespaces[self.node_ns[&node]], ns)
    }

    /// Whether this world created (and so deletes) a namespace: those named
    /// with its run id. A backend's borrowed ones (the Docker daemon's) are not.
    pub(crate) fn owns(&self, ns: &NetNs) -> bool {
        ns.name().starts_with(&format!("{}-", self.run))
    }

    /// Gives `node` a namespace the backend provides (it must be named
    /// as [`namespace_names`] says); one already held under that name is shared.
    pub(crate) fn adopt(&mut self, node: Node, ns: NetNs) {
        let idx = match self.namespaces.iter().position(|n| n.name() == ns.name()) {
            Some(i) => i,
            None => {
                self.namespaces.push(ns);
                self.namespaces.len() - 1
            }
        };
        self.node_ns.insert(node, idx);
    }

    /// Gives `node` the namespace `other` already has (NH-7).
    pub(crate) fn share_ns(&mut self, node: Node, other: Node) {
        let idx = self.node_ns[&other];
        self.node_ns.insert(node, idx);
    }

    /// Creates the namespaces `names` gives the plan's nodes (in
    /// [`namespace_names`]' order), but not those of nodes for which
    /// `provided` says the backend provides them; nodes whose names are the
    /// same share one. Each created namespace gets the `/etc/netns` files
    /// `etc` lists for its nodes, written by the thread that creates it.
    pub(crate) fn create(
        &mut self,
        plan: &Plan,
        names: Vec<(String, String)>,
        provided: impl Fn(Node) -> bool,
        mut etc: HashMap<Node, EtcFiles>,
    ) -> Result<(), BuildError> {
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut unique: Vec<(String, bool, EtcFiles)> = Vec::new();
        let nodes = plan
            .machines
            .iter()
            .enumerate()
            .map(|(i, _)| Node::Machine(i))
            .chain((0..plan.externals.len()).map(Node::External))
            .chain((0..plan.containers.len()).map(Node::Container));
        for (node, (_, ns_name)) in nodes.zip(names) {
            if provided(node) {
                continue;
            }
            let container = matches!(node, Node::Container(_));
            let idx = *by_name.entry(ns_name.clone()).or_insert_with(|| {
                unique.push((ns_name, container, Vec::new()));
                unique.len() - 1
            });
            unique[idx].2.extend(etc.remove(&node).unwrap_or_default());
            self.node_ns.insert(node, self.namespaces.len() + idx);
        }
        // Independent of one another and mostly waiting in the kernel:
        // made on parallel threads. Each is prepared (loopback up, IPv6
        // as the world needs it, its /etc files) on the thread that
        // creates it: the files cost CPU (ext4 inodes, 0.5 s for 1000
        // containers) that the others' waits leave idle.
        let fast_path = crate::dns::fastpath::enabled();
        let ipv6 = plan.lan6.is_some();
        let bar = crate::progress::Progress::start("namespaces", unique.len() as u64);
        let made = crate::backend::parallel::map(
            unique,
            crate::backend::parallel::WIDTH,
            |(ns_name, container, files)| {
                let clsact = container && fast_path;
                let name = ns_name.clone();
                let init = move || {
                    for (file, content) in &files {
                        crate::netns::write_etc(&name, file, content)?;
                    }
                    prepare_namespace(clsact, ipv6)
                };
                let r = NetNs::create_with(&ns_name, init)
                    .map_err(BuildError::at(format!("namespace {ns_name}")));
                bar.inc();
                r
            },
        );
        bar.finish();
        let mut first_error = None;
        for r in made {
            match r {
                // Kept even after an error, so that dropping the world
                // deletes it.
                Ok(ns) => self.namespaces.push(ns),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Deletes the namespaces this world created (in parallel), and lets
    /// go of the others.
    pub(crate) fn delete_owned(&mut self) {
        let namespaces = std::mem::take(&mut self.namespaces);
        let guards: Vec<crate::netns::DeleteOnDrop> = namespaces
            .iter()
            .filter(|n| self.owns(n))
            .map(|n| crate::netns::DeleteOnDrop::namespace(n.name()))
            .collect();
        drop(namespaces);
        // Each guard deletes its namespace as it is dropped, in parallel.
        crate::backend::parallel::map(guards, crate::backend::parallel::WIDTH, drop);
    }
}

/// The files of a namespace's `/etc/netns/NAME/`: (file name, content).
pub(crate) type EtcFiles = Vec<(&'static str, String)>;

/// Node name → namespace name, in plan order (machines, externals,
/// containers). `machines_in`: the one namespace every machine is (the
/// shared Docker daemon's), else each machine has its own.
pub fn namespace_names(
    run: &RunId,
    plan: &Plan,
    machines_in: Option<&str>,
) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for m in &plan.machines {
        let ns = match machines_in {
            Some(ns) => ns.to_string(),
            None => run.netns_name(NodeKind::Machine, &m.name),
        };
        v.push((m.name.clone(), ns));
    }
    for x in &plan.externals {
        v.push((x.name.clone(), run.netns_name(NodeKind::External, &x.name)));
    }
    let first_container = v.len();
    for (i, c) in plan.containers.iter().enumerate() {
        let ns = if let Some(o) = c.netns_of {
            // NH-7: the other container's namespace (it comes first).
            v[first_container + o].1.clone()
        } else if on_host_network(plan, i) {
            v[c.machine].1.clone()
        } else {
            run.netns_name(NodeKind::Container, &c.name)
        };
        v.push((c.name.clone(), ns));
    }
    v
}

/// A container on the `host` network shares its machine's namespace (NH-3).
pub(crate) fn on_host_network(plan: &Plan, container: usize) -> bool {
    let c = &plan.containers[container];
    plan.containers[c.netns_of.unwrap_or(container)]
        .endpoints
        .iter()
        .any(|e| plan.networks[e.network].driver == Driver::Host)
}

/// Loopback up. In an IPv4-only world IPv6 is off (no router
/// solicitations or MLD reports cluttering captures). In a world with
/// IPv6 (`Plan::lan6`) it is on, without duplicate address detection (the
/// scenario's addresses are unique and usable at once), router
/// advertisements or solicitations: every address and route is static.
/// With `clsact`, `lo` gets the clsact qdisc the embedded DNS's fast path
/// attaches to, while it is still down: adding one to an interface that is
/// up deactivates it and waits for an RCU grace period under RTNL (~2 ms),
/// and a classifier added later, more than a grace period after the qdisc,
/// needs no `rcu_barrier` either.
pub(crate) fn prepare_namespace(
    clsact: bool,
    ipv6: bool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut nl = Netlink::new()?;
    if clsact {
        // `lo` is interface 1 in every network namespace.
        nl.qdisc_add_clsact(1)?;
    }
    nl.link_set_up("lo")?;
    let set = crate::sys::sysctl::sysctl_set;
    if !ipv6 {
        set("net.ipv6.conf.default.disable_ipv6", "1")?;
        set("net.ipv6.conf.all.disable_ipv6", "1")?;
        return Ok(());
    }
    for scope in ["all", "default"] {
        set(&format!("net.ipv6.conf.{scope}.accept_dad"), "0")?;
        set(&format!("net.ipv6.conf.{scope}.accept_ra"), "0")?;
        set(&format!("net.ipv6.conf.{scope}.router_solicitations"), "0")?;
        set(&format!("net.ipv6.conf.{scope}.disable_ipv6"), "0")?;
    }
    Ok(())
}
