//! The docker backend: the same scenario built by a real Docker daemon, so
//! `vswitch compare --backends userspace,kernel,docker` shows where either
//! of the project's data paths departs from Docker (the oracle).
//!
//! # The daemons
//!
//! A world with several machines, an overlay, or a machine with
//! `userland_proxy = false` or `ip6tables = false` runs on daemons of its
//! own, one per machine, started in the machines' namespaces with the
//! machine's options ([`daemon`], and `own.rs`: Swarm for overlays; swarm
//! services, `dnsrr` mode, in `services.rs`); the rest of this page is
//! about the shared daemon the other worlds use.
//!
//! vswitch never starts or configures the shared daemon itself; the project's own one
//! is started by `ci/docker-daemon.sh start`, which runs, inside a network
//! namespace of its own named `oracle-dockerd`:
//!
//! ```text
//! ip netns add oracle-dockerd && ip -n oracle-dockerd link set lo up
//! nsenter --net=/run/netns/oracle-dockerd dockerd --config-file /run/vswitch-docker.json \
//!   -H unix:///run/vswitch-docker.sock --data-root /var/lib/vswitch-docker \
//!   --exec-root /run/vswitch-docker --pidfile /run/vswitch-docker.pid \
//!   --storage-driver vfs --iptables=true --bip 172.17.0.1/16 --userland-proxy=true \
//!   --ipv6 --fixed-cidr-v6 fd00:dead:beef::/48 --experimental --ip6tables
//! ```
//!
//! IPv6 (format 1.1): networks are created with `EnableIPv6` and their
//! `subnet6`/`gateway6` as a second IPAM config, containers get their
//! planned `IPv6Address`, the uplink and externals their `lan6` addresses.
//! `ip6tables` is daemon-wide and on there: `ip6tables = false` gets a daemon of its own.
//!
//! Its bridges, iptables rules and forwarding sysctls therefore live in that
//! namespace, never in the one vswitch started in. The daemon's namespace
//! *is* the scenario's machine: `from = "host"` checks run there.
//!
//! # A run
//!
//! Runs share the daemon, so they are serialized by an exclusive `flock` on
//! [`LOCK_FILE`], held for the world's lifetime. Under it, a run:
//!
//! 1. creates `<run>-l-lan`, a namespace holding the Linux bridge `lan`,
//!    with a veth `eth0` into each external's namespace and one into the
//!    daemon's namespace, named `eth0` there (the machine uplink: the
//!    machine address, and a default route via the `gateway = true` external);
//! 2. imports the image `vswitch/busybox:1` once (Debian's busybox-static,
//!    see [`image`]); no registry is used;
//! 3. creates the networks under their scenario names (bridge: subnet, gateway,
//!    ip_range, aux addresses, internal, ICC, masquerade, MTU; macvlan on
//!    parent `eth0`); the default bridge is the daemon's `bridge`, `none` and
//!    `host` its built-in ones;
//! 4. creates, starts and connects each container under its scenario name in
//!    file order, passing every planned address explicitly (Docker refuses that on
//!    the default bridge, BR-19, where its own IPAM must and is checked to
//!    agree with the plan). DNS servers are always explicit: the container's
//!    `dns`, else the machine's resolvers, else an address of the scenario
//!    that answers nothing, so the embedded DNS never forwards anywhere
//!    outside the scenario (and 20.10's fallback to public resolvers never
//!    applies);
//! 5. bind-mounts each container's network namespace (from its PID) at
//!    `/run/netns/<run>-c-<name>`, so probes, echo services and `vswitch
//!    exec` work exactly as on the other backends, and checks that each
//!    interface `ethN` carries the planned address.
//!
//! Names are the scenario's, not prefixed with the run id: Docker derives
//! its DNS names from them (a container's name on each network, PTR answers
//! `<container>.<network>.`, DNS-4/7/11), so prefixed names would make every
//! name lookup differ from the scenario by construction. Where Docker refuses
//! a name (one character: it wants `[a-zA-Z0-9][a-zA-Z0-9_.-]+`; a network
//! named like a built-in one) the object is named `<run>-<name>` and a
//! container also gets its plain name as an alias on each user-defined
//! network (A lookups then agree; its PTR answer does not).
//!
//! Everything a run creates in the daemon carries the label
//! `vswitch.run=<run id>`; the lock makes sure no two runs' names meet.
//! Everything is removed by [`Dataplane::stop`] (also
//! on drop, on a failed build, and from the signal path via [`remove_run`]);
//! `vswitch cleanup` removes what dead runs left ([`leftover_runs`]).

pub mod api;
mod cleanup;
pub mod daemon;
pub(crate) mod faults;
pub mod hosts;
pub mod image;
mod lan;
mod own;
mod services;
mod spec;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::backend::common::{BuildError, BuildOptions, Namespaces, namespace_names};
use crate::netns::{self, NetNs};
use crate::run_id::RunId;
use crate::scenario::plan::{BackendKind, Driver, Endpoint, Node, Plan};
use crate::sys::netlink::Netlink;
use crate::sys::sysctl::sysctl_set;

use crate::backend::linux::in_ns_boxed;
use crate::backend::topology::features::{Env, features, refusals_of};
use crate::backend::topology::{Interface, Topology};
use api::{ApiError, Client};
use cleanup::{acquire_lock, remove_dead_leftovers, remove_objects};
pub use cleanup::{leftover_runs, remove_run, traces};
use lan::{adopt_pid_netns, plug, uplink_guard};
#[cfg(test)]
use spec::docker_accepts_container_name;
use spec::{
    container_body, container_name, endpoint_config, network_body, network_name, silent_resolver,
};

/// The daemon's API socket.
pub const SOCKET: &str = "/run/vswitch-docker.sock";
/// The daemon's network namespace: the scenario's machine.
pub const DAEMON_NETNS: &str = "oracle-dockerd";
/// Serializes runs on the shared daemon.
pub const LOCK_FILE: &str = "/run/vswitch/docker.lock";
/// Which run owns the daemon-side uplink `eth0` right now.
pub const UPLINK_OWNER: &str = "/run/vswitch/docker-uplink";
/// The label that marks a container or network as a run's.
pub const LABEL_RUN: &str = "vswitch.run";
/// What starts the daemon.
pub const START_COMMAND: &str = "ci/docker-daemon.sh start";
/// The machine uplink's name inside the daemon's namespace.
const UPLINK: &str = "eth0";
/// How long a run waits for another docker run to finish.
const LOCK_WAIT: Duration = Duration::from_secs(600);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The daemon's API socket for this process: [`SOCKET`], unless
/// `VSWITCH_DOCKER_SOCKET` names another (tests of a machine without one).
pub fn socket() -> String {
    std::env::var("VSWITCH_DOCKER_SOCKET").unwrap_or_else(|_| SOCKET.to_string())
}

/// A client for the project's daemon.
pub fn client() -> Client {
    Client::new(socket())
}

/// Whether the world runs on daemons of its own, one per machine, started
/// by the backend ([`daemon`]): several machines, overlays (Swarm), or a
/// machine whose daemon-wide settings are not the shared daemon's.
pub fn own_daemons(plan: &Plan) -> bool {
    !mapped()
        && (plan.machines.len() > 1
            || plan
                .machines
                .iter()
                .any(|m| !m.userland_proxy || !m.ip6tables)
            || plan.networks.iter().any(|n| n.driver == Driver::Overlay))
}

/// Whether machines are mapped to existing daemons (`--docker-host`, [`hosts`]).
pub fn mapped() -> bool {
    hosts::mapping().is_some()
}

/// The backend's own namespaces for machines (started or mapped daemons),
/// not the shared daemon's.
pub fn per_machine_namespaces(plan: &Plan) -> bool {
    mapped() || own_daemons(plan)
}

/// The one namespace every machine is, on the shared daemon (its own);
/// `None` when each machine has its own.
pub fn machines_netns(plan: &Plan) -> Option<&'static str> {
    (!per_machine_namespaces(plan)).then_some(DAEMON_NETNS)
}

/// What this backend cannot build, one reason per item. Includes an
/// unreachable daemon (with the command that starts one).
pub fn unsupported(plan: &Plan) -> Vec<String> {
    let mut why = Vec::new();
    let own = own_daemons(plan);
    let mapped = mapped();
    why.extend(hosts::unsupported(plan));
    let mut say = |s: String| why.push(format!("backend docker: {s}"));
    if own {
        for tool in ["dockerd", "nsenter", "containerd"] {
            if crate::tools::find(tool).is_none() {
                say(format!(
                    "{} (the run starts one dockerd per machine)",
                    crate::tools::missing(tool)
                ));
            }
        }
    }
    let has_kind = |kind: &str| match kind {
        "esp" => crate::sys::probe::esp_supported(),
        k => crate::sys::probe::link_kind_supported(k),
    };
    let env = Env {
        has_kind: &has_kind,
    };
    let f = features(plan);
    let sections = [&f.machines, &f.networks, &f.externals, &f.containers];
    for r in refusals_of(
        BackendKind::Docker,
        sections.into_iter().flatten(),
        plan,
        &env,
    ) {
        say(r);
    }
    why.dedup();
    if why.is_empty()
        && !own
        && !mapped
        && let Err(e) = client().version()
    {
        why.push(match e {
            ApiError::Connect { .. } => format!("backend docker: {e}"),
            _ => format!(
                "backend docker: the daemon at {} does not answer as expected: {e}",
                socket()
            ),
        });
    }
    if why.is_empty()
        && !own
        && !mapped
        && plan.lan6.is_some()
        && let Some(r) = daemon_lacks_ipv6()
    {
        why.push(format!("backend docker: {r}"));
    }
    why
}

/// Why the daemon cannot build IPv6 worlds, if it cannot: it was started
/// without `--ipv6` (its default bridge has no IPv6).
fn daemon_lacks_ipv6() -> Option<String> {
    match client().network_inspect("bridge") {
        Ok(v) if v["EnableIPv6"].as_bool() == Some(true) => None,
        Ok(_) => Some(format!(
            "the daemon at {} runs without IPv6: restart it with `bash ci/docker-daemon.sh stop; {START_COMMAND}` (--ipv6 --ip6tables)",
            socket()
        )),
        Err(e) => Some(format!("the daemon's default bridge: {e}")),
    }
}

/// Whether World creates this node's namespace (false: this backend
/// provides it): externals, and machines of a world on its own daemons.
pub fn world_creates(plan: &Plan, node: Node) -> bool {
    match node {
        Node::External(_) => true,
        Node::Machine(_) => own_daemons(plan),
        Node::Container(_) => false,
    }
}

/// The addresses container `ci`'s interfaces must carry, by name (IPv4
/// first), as the topology has them.
fn expected_addrs(topology: &Topology, ci: usize) -> Vec<(String, Option<IpAddr>)> {
    topology
        .interfaces
        .iter()
        .filter(|i| i.node == Node::Container(ci))
        .flat_map(|i| i.addrs.iter().map(|(a, _)| (i.name.clone(), Some(*a))))
        .collect()
}

/// Machine `m`'s uplink `eth0` in the topology.
fn lan_interface(topology: &Topology, m: usize) -> Result<&Interface, BuildError> {
    topology.lan(Node::Machine(m)).ok_or_else(|| BuildError {
        step: format!("uplink of machine {m}"),
        source: "the topology has no lan interface for it".into(),
    })
}

/// The docker data path of a world: what it created in the daemon and
/// around it. [`Dataplane::stop`] (or drop) removes all of it.
#[derive(Debug)]
pub struct Dataplane {
    /// Each machine's daemon (the shared one: one machine).
    clients: Vec<Client>,
    /// The daemons this run started (empty on the shared daemon).
    daemons: Vec<daemon::OwnDaemon>,
    /// Machines are mapped to existing daemons (`--docker-host`).
    mapped: bool,
    run: RunId,
    lock: Option<File>,
    lan: Option<netns::OwnedNs>,
    uplink: Option<netns::DeleteOnDrop>,
    engine_version: String,
    containers: Vec<String>,
    /// Networks created, with the machine whose daemon holds each.
    networks: Vec<(usize, String)>,
    /// The daemon's name of each plan network (`bridge`, `none`, `<run>-x`).
    net_names: Vec<String>,
    /// Each user-defined bridge's device (`br-<id>`, BR-1) with the name
    /// the userspace backend gives its host port (`br-<network>`).
    bridge_devices: Vec<(String, String)>,
    /// What the world is made of, as every backend builds it: the lan
    /// interfaces plugged here and the container interfaces Docker must
    /// have made.
    topology: Topology,
}

impl Dataplane {
    /// Builds the world's data path in the daemon and adopts the machine's
    /// and containers' namespaces into `world`. On error, everything it
    /// created is removed before returning.
    pub fn build(
        world: &mut Namespaces,
        plan: &Plan,
        opts: &BuildOptions,
        progress: &dyn Fn(&str),
    ) -> Result<Dataplane, BuildError> {
        if opts.pcap_dir.is_some() {
            progress("backend docker writes no pcaps (--pcap ignored)");
        }
        let mut dp = Dataplane {
            clients: vec![client()],
            daemons: Vec::new(),
            mapped: false,
            run: world.run().clone(),
            lock: None,
            lan: None,
            uplink: None,
            engine_version: String::new(),
            containers: Vec::new(),
            networks: Vec::new(),
            net_names: Vec::new(),
            bridge_devices: Vec::new(),
            topology: Topology::of(plan),
        };
        match dp.build_inner(world, plan, progress) {
            Ok(()) => Ok(dp),
            Err(e) => {
                dp.shutdown();
                Err(e)
            }
        }
    }

    fn build_inner(
        &mut self,
        world: &mut Namespaces,
        plan: &Plan,
        progress: &dyn Fn(&str),
    ) -> Result<(), BuildError> {
        if own_daemons(plan) {
            return self.build_own(world, plan, progress);
        }
        if mapped() {
            return self.build_mapped(world, plan, progress);
        }
        progress("waiting for the docker lock");
        self.lock = Some(acquire_lock(LOCK_WAIT)?);
        let v = self.clients[0]
            .version()
            .map_err(BuildError::at("docker daemon"))?;
        self.engine_version = v.version;
        // Holding the lock, no other docker run is live: what a dead one
        // left (networks whose subnets would clash, the uplink) goes now.
        remove_dead_leftovers(&self.run);
        ensure_image(&self.clients[0])?;
        progress("wiring lan and the machine uplink");
        self.build_lan(world, plan)?;
        // The machine is the daemon's namespace (never deleted by World: it
        // does not carry the run id).
        let daemon_ns = NetNs::open(DAEMON_NETNS).map_err(BuildError::at("daemon namespace"))?;
        world.adopt(Node::Machine(0), daemon_ns);
        self.networks_and_containers(world, plan, progress)
    }

    /// Creates the networks, then the containers (adopting their namespaces).
    fn networks_and_containers(
        &mut self,
        world: &mut Namespaces,
        plan: &Plan,
        progress: &dyn Fn(&str),
    ) -> Result<(), BuildError> {
        progress("creating networks");
        let nets = self.create_networks(plan)?;
        self.net_names = nets.clone();
        progress("creating containers");
        let names: BTreeMap<String, String> =
            namespace_names(&self.run, plan, machines_netns(plan))
                .into_iter()
                .collect();
        let silent = silent_resolver(plan);
        if !plan.services.is_empty() {
            progress("priming the services' overlays");
            self.prime_service_networks(plan, &nets, silent)?;
        }
        let bar = crate::progress::Progress::start("containers", plan.containers.len() as u64);
        for (ci, c) in plan.containers.iter().enumerate() {
            bar.inc();
            if services::is_task(plan, ci) {
                // Tasks are the services' (below), after every container.
                continue;
            }
            let pid = self.create_container(plan, ci, &nets, silent)?;
            if let Some(o) = c.netns_of {
                // NH-7: the namespace adopted for the shared container.
                world.share_ns(Node::Container(ci), Node::Container(o));
                continue;
            }
            let ns_name = &names[&c.name];
            let ns = if ns_name == &names[&plan.machines[c.machine].name] {
                world
                    .ns(Node::Machine(c.machine))
                    .try_clone()
                    .map_err(BuildError::at(format!("container {}", c.name)))?
            } else {
                adopt_pid_netns(pid, ns_name).map_err(|source| BuildError {
                    step: format!("container {}: namespace of pid {pid}", c.name),
                    source,
                })?
            };
            world.adopt(Node::Container(ci), ns);
            self.verify_interfaces(world, plan, ci)?;
        }
        bar.finish();
        if !plan.services.is_empty() {
            progress("creating services");
            self.create_services(world, plan, &nets, &names, silent)?;
        }
        Ok(())
    }

    /// The lan bridge in its own namespace, the externals' `eth0`, and the
    /// machine uplink `eth0` in the daemon's namespace.
    fn build_lan(&mut self, world: &Namespaces, plan: &Plan) -> Result<(), BuildError> {
        let lan_name = format!("{}-l-lan", self.run);
        let lan = NetNs::create(&lan_name).map_err(BuildError::at("lan namespace"))?;
        let lan = self
            .lan
            .insert(netns::OwnedNs::new(lan))
            .ns()
            .expect("just created");
        in_ns_boxed(lan, "lan bridge", || {
            crate::backend::common::prepare_namespace(false, false)?;
            let mut nl = Netlink::new()?;
            nl.link_add_bridge("lan")?;
            nl.link_set_up("lan")?;
            Ok(())
        })?;
        // Externals (IPv6-only ones too).
        for (i, x) in plan.externals.iter().enumerate() {
            let Some(up) = self.topology.lan(Node::External(i)) else {
                continue;
            };
            let target = world
                .ns(Node::External(i))
                .try_clone()
                .map_err(BuildError::at(format!("external {}", x.name)))?;
            plug(lan, &format!("x{i}"), &target, up).map_err(|source| BuildError {
                step: format!("lan port of external {}", x.name),
                source,
            })?;
        }
        if own_daemons(plan) {
            return self.plug_machines(world, plan);
        }
        // The machine uplink in the daemon's namespace.
        let daemon = NetNs::open(DAEMON_NETNS).map_err(BuildError::at("daemon namespace"))?;
        let stale = in_ns_boxed(&daemon, "daemon uplink", || {
            Ok(Netlink::new()?.link_exists(UPLINK)?)
        })?;
        if stale {
            // The lock is ours, so no live run owns it.
            uplink_guard()
                .delete()
                .map_err(BuildError::at("removing a stale daemon uplink"))?;
        }
        if plan.lan6.is_some() {
            // The bridges the daemon creates for this run, and the uplink,
            // hold their IPv6 addresses at once: without this, Docker's
            // gateway6 stays tentative (DAD) for a second after the network
            // is created, and the first checks find no router.
            in_ns_boxed(&daemon, "daemon namespace: IPv6 DAD off", || {
                for scope in ["all", "default"] {
                    sysctl_set(&format!("net.ipv6.conf.{scope}.accept_dad"), "0")?;
                }
                Ok(())
            })?;
        }
        // A killed run's uplink faults (a netdev table outlives its device).
        faults::remove_uplink_faults()?;
        std::fs::write(UPLINK_OWNER, self.run.as_str())
            .map_err(BuildError::at(format!("writing {UPLINK_OWNER}")))?;
        self.uplink = Some(uplink_guard());
        let m = &plan.machines[0];
        let up = lan_interface(&self.topology, 0)?;
        plug(lan, "m0", &daemon, up).map_err(|source| BuildError {
            step: format!("uplink {UPLINK} of machine {} in {DAEMON_NETNS}", m.name),
            source,
        })?;
        Ok(())
    }

    /// Creates the scenario's networks; returns each one's Docker name.
    fn create_networks(&mut self, plan: &Plan) -> Result<Vec<String>, BuildError> {
        let mut names = Vec::new();
        for (k, n) in plan.networks.iter().enumerate() {
            let name = match n.driver {
                Driver::None => "none".to_string(),
                Driver::Host => "host".to_string(),
                // Docker's swarm has its own routing-mesh overlay.
                Driver::Overlay if services::is_ingress(plan, k) => "ingress".to_string(),
                Driver::Bridge if n.default => {
                    self.check_default_bridge(n.machine.unwrap_or(0))?;
                    "bridge".to_string()
                }
                _ => {
                    // Overlays are swarm-scoped: created on the manager.
                    let m = n.machine.unwrap_or(0);
                    let name = network_name(&self.run, &n.name);
                    let mut body = network_body(&name, &self.run, n);
                    let primed = services::prime(plan, k).filter(|_| {
                        plan.services
                            .iter()
                            .any(|s| s.networks.iter().any(|x| x.network == k))
                    });
                    if let Some(p) = primed {
                        body["IPAM"]["Config"][0]["IPRange"] = json!(p.range.to_string());
                    } else if n.driver == Driver::Overlay
                        && let Some(r) = own::overlay_lb_range(plan, k)
                    {
                        body["IPAM"]["Config"][0]["IPRange"] = json!(r.to_string());
                    }
                    let id = self.clients[m]
                        .network_create(&body)
                        .map_err(BuildError::at(format!("network {}", n.name)))?;
                    if n.driver == Driver::Bridge
                        && let Some(short) = id.get(..12)
                    {
                        self.bridge_devices
                            .push((format!("br-{short}"), format!("br-{}", n.name)));
                    }
                    self.networks.push((m, id));
                    name
                }
            };
            names.push(name);
        }
        Ok(names)
    }

    /// Interface names a capture files under the userspace backend's name
    /// (device, name).
    pub fn capture_names(&self) -> &[(String, String)] {
        &self.bridge_devices
    }

    /// The daemon's `bridge` must be what the plan assumes (BR-21).
    fn check_default_bridge(&self, machine: usize) -> Result<(), BuildError> {
        let v = self.clients[machine]
            .network_inspect("bridge")
            .map_err(BuildError::at("the daemon's default bridge"))?;
        let cfg = &v["IPAM"]["Config"][0];
        let (subnet, gw) = (cfg["Subnet"].as_str(), cfg["Gateway"].as_str());
        if subnet != Some("172.17.0.0/16") || gw.is_some_and(|g| g != "172.17.0.1") {
            return Err(BuildError {
                step: "the daemon's default bridge".into(),
                source: format!(
                    "is {} gateway {}, not 172.17.0.0/16 gateway 172.17.0.1: start the daemon with `{START_COMMAND}` (--bip 172.17.0.1/16)",
                    subnet.unwrap_or("?"),
                    gw.unwrap_or("?")
                )
                .into(),
            });
        }
        Ok(())
    }

    /// Creates, starts and connects one container; returns its PID.
    fn create_container(
        &mut self,
        plan: &Plan,
        ci: usize,
        nets: &[String],
        silent: Ipv4Addr,
    ) -> Result<u32, BuildError> {
        let c = &plan.containers[ci];
        let step = |what: &str| format!("container {}: {what}", c.name);
        let name = container_name(&self.run, &c.name);
        let body = container_body(plan, &self.topology, ci, nets, &self.run, silent);
        let client = self.clients[c.machine].clone();
        let id = client
            .container_create(&name, &body)
            .map_err(BuildError::at(step("create")))?;
        self.containers.push(id.clone());
        client
            .container_start(&id)
            .map_err(BuildError::at(step("start")))?;
        // Further networks after start, in file order, so that ethN follows
        // the file and default-bridge addresses are taken in file order.
        for e in c.endpoints.iter().skip(1) {
            let net = &nets[e.network];
            client
                .network_connect(net, &id, &endpoint_config(plan, ci, e))
                .map_err(BuildError::at(step(&format!(
                    "connect to {}",
                    plan.networks[e.network].name
                ))))?;
        }
        let v = client
            .container_inspect(&id)
            .map_err(BuildError::at(step("inspect")))?;
        let pid = v["State"]["Pid"].as_u64().unwrap_or(0) as u32;
        if pid == 0 {
            return Err(BuildError {
                step: step("start"),
                source: format!("not running after start: {}", v["State"]).into(),
            });
        }
        // Docker's addresses and MACs must be the plan's (checks target the plan's).
        for e in &c.endpoints {
            let Some(ip) = e.ip else { continue };
            let net = &nets[e.network];
            let got = &v["NetworkSettings"]["Networks"][net];
            let got_ip = got["IPAddress"].as_str().unwrap_or("");
            let got_mac = got["MacAddress"].as_str().unwrap_or("");
            let got_ip6 = got["GlobalIPv6Address"].as_str().unwrap_or("");
            if let Some(ip6) = e.ip6
                && got_ip6.parse::<std::net::Ipv6Addr>().ok() != Some(ip6)
            {
                return Err(BuildError {
                    step: step(&format!(
                        "IPv6 address on {}",
                        plan.networks[e.network].name
                    )),
                    source: format!("Docker gave {got_ip6:?}, the plan says {ip6}").into(),
                });
            }
            if got_ip != ip.to_string() || got_mac != e.mac.to_string() {
                return Err(BuildError {
                    step: step(&format!("address on {}", plan.networks[e.network].name)),
                    source: format!(
                        "Docker gave {got_ip} {got_mac}, the plan says {ip} {}",
                        e.mac
                    )
                    .into(),
                });
            }
        }
        Ok(pid)
    }

    /// `docker network connect`: the plan's address and aliases for
    /// container `ci` (as `plan`, the world after the step, has them),
    /// checked against what Docker then reports.
    pub(crate) fn connect(&self, plan: &Plan, ci: usize, e: &Endpoint) -> Result<(), BuildError> {
        let c = &plan.containers[ci];
        let net = &self.net_names[e.network];
        let step = format!(
            "container {}: connect to {}",
            c.name, plan.networks[e.network].name
        );
        let client = &self.clients[c.machine];
        client
            .network_connect(net, &self.containers[ci], &endpoint_config(plan, ci, e))
            .map_err(BuildError::at(step.clone()))?;
        let v = client
            .container_inspect(&self.containers[ci])
            .map_err(BuildError::at(step.clone()))?;
        let got = v["NetworkSettings"]["Networks"][net]["IPAddress"]
            .as_str()
            .unwrap_or("")
            .to_string();
        match e.ip {
            Some(ip) if got != ip.to_string() => Err(BuildError {
                step,
                source: format!("Docker gave {got}, the plan says {ip}").into(),
            }),
            _ => Ok(()),
        }
    }

    /// `docker stop`.
    pub(crate) fn stop_container(&self, plan: &Plan, ci: usize) -> Result<(), BuildError> {
        self.clients[plan.containers[ci].machine]
            .container_stop(&self.containers[ci])
            .map_err(BuildError::at(format!(
                "container {}: stop",
                plan.containers[ci].name
            )))
    }

    /// `docker start`: Docker gives the container a new network namespace,
    /// which replaces the old one under the same name; its addresses must
    /// still be the plan's.
    pub(crate) fn start_container(&self, plan: &Plan, ci: usize) -> Result<NetNs, BuildError> {
        let c = &plan.containers[ci];
        let step = |what: &str| format!("container {}: {what}", c.name);
        let id = &self.containers[ci];
        let client = &self.clients[c.machine];
        client
            .container_start(id)
            .map_err(BuildError::at(step("start")))?;
        let v = client
            .container_inspect(id)
            .map_err(BuildError::at(step("inspect")))?;
        let pid = v["State"]["Pid"].as_u64().unwrap_or(0) as u32;
        if pid == 0 {
            return Err(BuildError {
                step: step("start"),
                source: format!("not running after start: {}", v["State"]).into(),
            });
        }
        for e in &c.endpoints {
            let Some(ip) = e.ip else { continue };
            let net = &self.net_names[e.network];
            let got = v["NetworkSettings"]["Networks"][net]["IPAddress"]
                .as_str()
                .unwrap_or("");
            if got != ip.to_string() {
                return Err(BuildError {
                    step: step("address after start"),
                    source: format!("Docker gave {got}, the plan says {ip}").into(),
                });
            }
        }
        let name = self
            .run
            .netns_name(crate::run_id::NodeKind::Container, &c.name);
        crate::netns::delete(&name).map_err(BuildError::at(step("old namespace")))?;
        adopt_pid_netns(pid, &name).map_err(|source| BuildError {
            step: step(&format!("namespace of pid {pid}")),
            source,
        })
    }

    /// `docker network disconnect`.
    pub(crate) fn disconnect(
        &self,
        plan: &Plan,
        ci: usize,
        network: usize,
    ) -> Result<(), BuildError> {
        let step = format!(
            "container {}: disconnect from {}",
            plan.containers[ci].name, plan.networks[network].name
        );
        self.clients[plan.containers[ci].machine]
            .network_disconnect(&self.net_names[network], &self.containers[ci])
            .map_err(BuildError::at(step))
    }

    /// Each `ethN` of the container carries the plan's address for its Nth network.
    fn verify_interfaces(
        &self,
        world: &Namespaces,
        plan: &Plan,
        ci: usize,
    ) -> Result<(), BuildError> {
        let c = &plan.containers[ci];
        if c.endpoints
            .iter()
            .any(|e| matches!(plan.networks[e.network].driver, Driver::Host | Driver::None))
        {
            return Ok(());
        }
        let want = expected_addrs(&self.topology, ci);
        // On an overlay Docker adds docker_gwbridge as the next interface
        // (OV-8) when the container starts, so the Nth network is not
        // always `ethN`: there, any `ethK` may carry the address.
        let overlay = c
            .endpoints
            .iter()
            .any(|e| plan.networks[e.network].driver == Driver::Overlay);
        let count = c.endpoints.len() + 1;
        let ns = world.ns(Node::Container(ci));
        in_ns_boxed(ns, format!("container {}: interfaces", c.name), move || {
            let mut nl = Netlink::new()?;
            for (ifname, ip) in &want {
                let addrs = if overlay {
                    let mut all = Vec::new();
                    for k in 0..count {
                        all.extend(nl.addr_list(&format!("eth{k}")).unwrap_or_default());
                    }
                    all
                } else {
                    nl.addr_list(ifname)?
                };
                if let Some(ip) = ip
                    && !addrs.iter().any(|(a, _)| a == ip)
                {
                    return Err(format!("{ifname} has {addrs:?}, the plan says {ip}").into());
                }
            }
            Ok(())
        })
    }

    /// Tears the data path down and returns what it removed.
    pub fn stop(mut self) -> Value {
        self.shutdown()
    }

    /// Idempotent teardown: containers, networks, the uplink, the lan
    /// namespace, then the lock.
    fn shutdown(&mut self) -> Value {
        if self.lock.is_none()
            && self.lan.is_none()
            && self.uplink.is_none()
            && self.daemons.is_empty()
            && !self.mapped
        {
            return Value::Null;
        }
        let mut removed;
        if self.mapped {
            self.mapped = false;
            removed = hosts::remove(&self.run);
            for c in &self.clients {
                removed.extend(remove_objects(c, &self.run));
            }
            self.containers.clear();
            self.networks.clear();
        } else if self.daemons.is_empty() {
            removed = remove_objects(&self.clients[0], &self.run);
            // Objects whose names were not listed (a failed create) by id.
            for id in self.containers.drain(..) {
                let _ = self.clients[0].container_remove(&id);
            }
            for (_, id) in self.networks.drain(..) {
                let _ = self.clients[0].network_remove(&id);
            }
        } else {
            // The run's own daemons: killed with their containers, their
            // directories, mounts and cgroups removed (swarm state with them).
            removed = daemon::remove(&self.run);
            for d in &mut self.daemons {
                d.reap();
            }
            self.daemons.clear();
            self.containers.clear();
            self.networks.clear();
        }
        if let Some(uplink) = self.uplink.take() {
            cleanup::remove_uplink(uplink, &mut removed);
        }
        // The lan namespace goes now, after the daemons that used it.
        drop(self.lan.take());
        self.lock = None;
        json!({ "engine": self.engine_version, "removed": removed })
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Imports the image unless the daemon has it.
fn ensure_image(client: &Client) -> Result<(), BuildError> {
    let reference = format!("{}:{}", image::IMAGE_REPO, image::IMAGE_TAG);
    if client
        .image_exists(&reference)
        .map_err(BuildError::at(format!("image {reference}")))?
    {
        return Ok(());
    }
    let tar = image::rootfs_tar(Path::new(image::BUSYBOX))
        .map_err(BuildError::at(format!("image {reference}")))?;
    client
        .image_import(image::IMAGE_REPO, image::IMAGE_TAG, &tar)
        .map_err(BuildError::at(format!("image {reference}")))
}

/// Whether the daemon answers (tests and `vswitch check`).
pub fn daemon_reachable() -> Result<api::Version, ApiError> {
    client().version()
}
