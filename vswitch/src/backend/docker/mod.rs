//! The docker backend: the same scenario built by a real Docker daemon, so
//! `vswitch compare --backends userspace,kernel,docker` shows where either
//! of the project's data paths departs from Docker (the oracle).
//!
//! # The daemon
//!
//! vswitch never starts or configures a daemon itself; the project's own one
//! is started by `ci/docker-daemon.sh start`, which runs, inside a network
//! namespace of its own named `oracle-dockerd`:
//!
//! ```text
//! ip netns add oracle-dockerd && ip -n oracle-dockerd link set lo up
//! nsenter --net=/run/netns/oracle-dockerd dockerd --config-file /run/vswitch-docker.json \
//!   -H unix:///run/vswitch-docker.sock --data-root /var/lib/vswitch-docker \
//!   --exec-root /run/vswitch-docker --pidfile /run/vswitch-docker.pid \
//!   --storage-driver vfs --iptables=true --bip 172.17.0.1/16 --userland-proxy=true
//! ```
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
pub mod image;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use serde_json::{Value, json};

use crate::backend::{BuildError, BuildOptions, World, namespace_names};
use crate::netns::{self, NetNs};
use crate::scenario::plan::{BackendKind, CheckKind, Driver, MacAddr, Node, Plan};
use crate::sys::netlink::Netlink;
use crate::world::{RunId, RunRecord};

use api::{ApiError, Client};

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

/// A client for the project's daemon.
pub fn client() -> Client {
    Client::new(SOCKET)
}

/// The message when no daemon answers.
pub fn no_daemon_message() -> String {
    format!("no Docker daemon at {SOCKET}: start one with `{START_COMMAND}`")
}

/// What this backend cannot build, one reason per item. Includes an
/// unreachable daemon (with the command that starts one).
pub fn unsupported(plan: &Plan) -> Vec<String> {
    let mut why = Vec::new();
    let mut say = |s: String| why.push(format!("backend docker: {s}"));
    if plan.machines.len() > 1 {
        say(format!(
            "one machine per scenario (the daemon's namespace is the machine); machine[1] `{}` would need a second daemon",
            plan.machines[1].name
        ));
    }
    for (i, m) in plan.machines.iter().enumerate() {
        if let Some(b) = m.backend {
            say(format!(
                "mixed backends (machine[{i}] `{}` backend = {b}) not supported",
                m.name
            ));
        }
        if !m.userland_proxy {
            say(format!(
                "userland_proxy = false (machine[{i}] `{}`): the daemon's userland proxy is a daemon-wide setting and is on",
                m.name
            ));
        }
        for r in &m.resolvers {
            if r.is_loopback() {
                say(format!(
                    "loopback resolver {r} (machine[{i}] `{}`): the daemon's own resolv.conf is not the scenario's",
                    m.name
                ));
            }
        }
    }
    for (i, n) in plan.networks.iter().enumerate() {
        let what = format!("network[{i}] `{}`", n.name);
        match n.driver {
            Driver::Overlay => say(format!("driver overlay needs Swarm ({what})")),
            Driver::Ipvlan => say(format!("driver ipvlan not supported ({what})")),
            Driver::Macvlan => {
                if let Some(p) = &n.parent {
                    if p.vlan.is_some() {
                        say(format!("802.1Q parent `{}` not supported ({what})", p.name));
                    } else if p.name != UPLINK {
                        say(format!(
                            "parent `{}` not supported: only `{UPLINK}` ({what})",
                            p.name
                        ));
                    }
                }
                if n.mtu_explicit {
                    say(format!("mtu on macvlan not supported ({what})"));
                }
            }
            _ => {}
        }
        if n.ipv6 || n.subnet6.is_some() {
            say(format!("IPv6 not supported ({what})"));
        }
        if n.default && n.driver == Driver::Bridge {
            let expected = Ipv4Net::new(Ipv4Addr::new(172, 17, 0, 0), 16).expect("valid");
            let ok = n.subnets.len() == 1
                && n.subnets[0].net == expected
                && n.subnets[0].gateway == Some(Ipv4Addr::new(172, 17, 0, 1))
                && n.subnets[0].ip_range == expected
                && n.aux_addresses.is_empty()
                && !n.internal
                && n.icc
                && n.masquerade
                && n.mtu == 1500;
            if !ok {
                say(format!(
                    "the default bridge is the daemon's (172.17.0.0/16, gateway .1, ICC and masquerade on, MTU 1500): other settings are daemon-wide ({what})"
                ));
            }
        }
    }
    for (i, x) in plan.externals.iter().enumerate() {
        if x.vlan.is_some() {
            say(format!(
                "VLANs on lan not supported (external[{i}] `{}`)",
                x.name
            ));
        }
        if x.ip.is_ipv6() {
            say(format!("IPv6 not supported (external[{i}] `{}`)", x.name));
        }
    }
    for (i, c) in plan.containers.iter().enumerate() {
        for (k, e) in c.endpoints.iter().enumerate() {
            if e.ip6.is_some() {
                say(format!("IPv6 not supported (container[{i}] `{}`)", c.name));
            }
            if k > 0
                && let Some(ip) = e.ip
                && e.mac != MacAddr::docker_from_ipv4(ip)
            {
                say(format!(
                    "a MAC address on a second network needs Engine API 1.44 (container[{i}] `{}` network `{}`)",
                    c.name, plan.networks[e.network].name
                ));
            }
        }
    }
    for c in &plan.checks {
        if let CheckKind::Ping { ipv6: true, .. } = c.kind {
            say(format!("IPv6 not supported (check[{}])", c.index));
        }
    }
    why.dedup();
    if why.is_empty()
        && let Err(e) = client().version()
    {
        why.push(format!("backend docker: {} ({e})", no_daemon_message()));
    }
    why
}

/// Whether World creates this node's namespace (false: this backend provides it).
pub fn world_creates(node: Node) -> bool {
    matches!(node, Node::External(_))
}

/// The docker data path of a world: what it created in the daemon and
/// around it. [`Dataplane::stop`] (or drop) removes all of it.
#[derive(Debug)]
pub struct Dataplane {
    client: Client,
    run: RunId,
    lock: Option<File>,
    lan: Option<NetNs>,
    uplink: bool,
    engine_version: String,
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Dataplane {
    /// Builds the world's data path in the daemon and adopts the machine's
    /// and containers' namespaces into `world`. On error, everything it
    /// created is removed before returning.
    pub fn build(
        world: &mut World,
        plan: &Plan,
        opts: &BuildOptions,
        progress: &dyn Fn(&str),
    ) -> Result<Dataplane, BuildError> {
        if opts.pcap_dir.is_some() {
            progress("backend docker writes no pcaps (--pcap ignored)");
        }
        let mut dp = Dataplane {
            client: client(),
            run: world.run.clone(),
            lock: None,
            lan: None,
            uplink: false,
            engine_version: String::new(),
            containers: Vec::new(),
            networks: Vec::new(),
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
        world: &mut World,
        plan: &Plan,
        progress: &dyn Fn(&str),
    ) -> Result<(), BuildError> {
        progress("waiting for the docker lock");
        self.lock = Some(acquire_lock(LOCK_WAIT)?);
        let v = self
            .client
            .version()
            .map_err(BuildError::at("docker daemon"))?;
        self.engine_version = v.version;
        // Holding the lock, no other docker run is live: what a dead one
        // left (networks whose subnets would clash, the uplink) goes now.
        remove_dead_leftovers(&self.run);
        ensure_image(&self.client)?;
        progress("wiring lan and the machine uplink");
        self.build_lan(world, plan)?;
        // The machine is the daemon's namespace (never deleted by World: it
        // does not carry the run id).
        let daemon_ns = NetNs::open(DAEMON_NETNS).map_err(BuildError::at("daemon namespace"))?;
        world.adopt(Node::Machine(0), daemon_ns);
        progress("creating networks");
        let nets = self.create_networks(plan)?;
        progress("creating containers");
        let names: BTreeMap<String, String> = namespace_names(&self.run, plan, BackendKind::Docker)
            .into_iter()
            .collect();
        let silent = silent_resolver(plan);
        for (ci, c) in plan.containers.iter().enumerate() {
            let pid = self.create_container(plan, ci, &nets, silent)?;
            let ns_name = &names[&c.name];
            let ns = if ns_name == DAEMON_NETNS {
                NetNs::open(DAEMON_NETNS)
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
        Ok(())
    }

    /// The lan bridge in its own namespace, the externals' `eth0`, and the
    /// machine uplink `eth0` in the daemon's namespace.
    fn build_lan(&mut self, world: &World, plan: &Plan) -> Result<(), BuildError> {
        let lan_name = format!("{}-l-lan", self.run);
        let lan = NetNs::create(&lan_name).map_err(BuildError::at("lan namespace"))?;
        let lan = self.lan.insert(lan);
        in_ns(lan, "lan bridge", || {
            crate::backend::prepare_namespace()?;
            let mut nl = Netlink::new()?;
            nl.link_add_bridge("lan")?;
            nl.link_set_up("lan")?;
            Ok(())
        })?;
        let prefix = plan.lan.prefix_len();
        // Externals.
        for (i, x) in plan.externals.iter().enumerate() {
            let IpAddr::V4(ip) = x.ip else { continue };
            let target = world
                .ns(Node::External(i))
                .try_clone()
                .map_err(BuildError::at(format!("external {}", x.name)))?;
            plug(
                lan,
                &format!("x{i}"),
                &target,
                lan_mac(ip),
                ip,
                prefix,
                None,
            )
            .map_err(|source| BuildError {
                step: format!("lan port of external {}", x.name),
                source,
            })?;
        }
        // The machine uplink in the daemon's namespace.
        let daemon = NetNs::open(DAEMON_NETNS).map_err(BuildError::at("daemon namespace"))?;
        let stale = in_ns(&daemon, "daemon uplink", || {
            Ok(Netlink::new()?.link_exists(UPLINK)?)
        })?;
        if stale {
            // The lock is ours, so no live run owns it.
            delete_uplink().map_err(|source| BuildError {
                step: "removing a stale daemon uplink".into(),
                source,
            })?;
        }
        std::fs::write(UPLINK_OWNER, self.run.as_str())
            .map_err(BuildError::at(format!("writing {UPLINK_OWNER}")))?;
        self.uplink = true;
        let m = &plan.machines[0];
        let gateway = plan
            .externals
            .iter()
            .find(|x| x.gateway)
            .and_then(|x| match x.ip {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            });
        plug(lan, "m0", &daemon, lan_mac(m.ip), m.ip, prefix, gateway).map_err(|source| {
            BuildError {
                step: format!("uplink {UPLINK} of machine {} in {DAEMON_NETNS}", m.name),
                source,
            }
        })?;
        Ok(())
    }

    /// Creates the scenario's networks; returns each one's Docker name.
    fn create_networks(&mut self, plan: &Plan) -> Result<Vec<String>, BuildError> {
        let mut names = Vec::new();
        for n in &plan.networks {
            let name = match n.driver {
                Driver::None => "none".to_string(),
                Driver::Host => "host".to_string(),
                Driver::Bridge if n.default => {
                    self.check_default_bridge()?;
                    "bridge".to_string()
                }
                _ => {
                    let name = network_name(&self.run, &n.name);
                    let body = network_body(&name, &self.run, n);
                    let id = self
                        .client
                        .network_create(&body)
                        .map_err(BuildError::at(format!("network {}", n.name)))?;
                    self.networks.push(id);
                    name
                }
            };
            names.push(name);
        }
        Ok(names)
    }

    /// The daemon's `bridge` must be what the plan assumes (BR-21).
    fn check_default_bridge(&self) -> Result<(), BuildError> {
        let v = self
            .client
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
        let body = container_body(plan, ci, nets, &self.run, silent);
        let id = self
            .client
            .container_create(&name, &body)
            .map_err(BuildError::at(step("create")))?;
        self.containers.push(id.clone());
        self.client
            .container_start(&id)
            .map_err(BuildError::at(step("start")))?;
        // Further networks after start, in file order, so that ethN follows
        // the file and default-bridge addresses are taken in file order.
        for e in c.endpoints.iter().skip(1) {
            let net = &nets[e.network];
            self.client
                .network_connect(net, &id, &endpoint_config(plan, ci, e))
                .map_err(BuildError::at(step(&format!(
                    "connect to {}",
                    plan.networks[e.network].name
                ))))?;
        }
        let v = self
            .client
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

    /// Each `ethN` of the container carries the plan's address for its Nth network.
    fn verify_interfaces(&self, world: &World, plan: &Plan, ci: usize) -> Result<(), BuildError> {
        let c = &plan.containers[ci];
        if c.endpoints
            .iter()
            .any(|e| matches!(plan.networks[e.network].driver, Driver::Host | Driver::None))
        {
            return Ok(());
        }
        let want: Vec<(String, Option<Ipv4Addr>)> = c
            .endpoints
            .iter()
            .enumerate()
            .map(|(k, e)| (format!("eth{k}"), e.ip))
            .collect();
        let ns = world.ns(Node::Container(ci));
        in_ns(
            ns,
            &format!("container {}: interfaces", c.name),
            move || {
                let mut nl = Netlink::new()?;
                for (ifname, ip) in &want {
                    let addrs = nl.addr_list(ifname)?;
                    if let Some(ip) = ip
                        && !addrs.iter().any(|(a, _)| *a == IpAddr::V4(*ip))
                    {
                        return Err(format!("{ifname} has {addrs:?}, the plan says {ip}").into());
                    }
                }
                Ok(())
            },
        )
    }

    /// Tears the data path down and returns what it removed.
    pub fn stop(mut self) -> Value {
        self.shutdown()
    }

    /// Idempotent teardown: containers, networks, the uplink, the lan
    /// namespace, then the lock.
    fn shutdown(&mut self) -> Value {
        if self.lock.is_none() && self.lan.is_none() && !self.uplink {
            return Value::Null;
        }
        let mut removed = remove_objects(&self.client, &self.run);
        // Objects whose names were not listed (a failed create) by id.
        for id in self.containers.drain(..) {
            let _ = self.client.container_remove(&id);
        }
        for id in self.networks.drain(..) {
            let _ = self.client.network_remove(&id);
        }
        if self.uplink {
            self.uplink = false;
            match delete_uplink() {
                Ok(()) => removed.push(format!("{DAEMON_NETNS}/{UPLINK}")),
                Err(e) => eprintln!("vswitch: cannot remove {UPLINK} in {DAEMON_NETNS}: {e}"),
            }
            let _ = std::fs::remove_file(UPLINK_OWNER);
        }
        if let Some(lan) = self.lan.take() {
            let name = lan.name().to_string();
            drop(lan);
            if let Err(e) = netns::delete(&name) {
                eprintln!("vswitch: cannot delete namespace {name}: {e}");
            }
        }
        self.lock = None;
        json!({ "engine": self.engine_version, "removed": removed })
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs `f` inside `ns`, folding both error layers into a [`BuildError`].
fn in_ns<R: Send + 'static>(
    ns: &NetNs,
    step: &str,
    f: impl FnOnce() -> Result<R, BoxError> + Send + 'static,
) -> Result<R, BuildError> {
    ns.run(f)
        .map_err(BuildError::at(step.to_string()))?
        .map_err(|source| BuildError {
            step: step.to_string(),
            source,
        })
}

/// A veth from the lan bridge (`port` there) to `eth0` in `target`, with
/// an address and optionally a default route.
fn plug(
    lan: &NetNs,
    port: &str,
    target: &NetNs,
    mac: MacAddr,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
) -> Result<(), BoxError> {
    let (port, peer) = (port.to_string(), format!("p-{port}"));
    let target_fd = target.try_clone()?;
    let peer2 = peer.clone();
    lan.run(move || -> Result<(), BoxError> {
        let mut nl = Netlink::new()?;
        nl.link_add_veth(&port, &peer2)?;
        nl.link_set_master(&port, "lan")?;
        nl.link_set_up(&port)?;
        nl.link_set_netns(&peer2, std::os::fd::AsFd::as_fd(&target_fd))?;
        Ok(())
    })??;
    target.run(move || -> Result<(), BoxError> {
        let mut nl = Netlink::new()?;
        nl.link_rename(&peer, UPLINK)?;
        nl.link_set_mac(UPLINK, mac.0)?;
        nl.addr_add(UPLINK, IpAddr::V4(ip), prefix)?;
        nl.link_set_up(UPLINK)?;
        if let Some(gw) = gateway {
            nl.route_add(
                IpNet::V4(Ipv4Net::default()),
                Some(IpAddr::V4(gw)),
                Some(UPLINK),
            )?;
        }
        Ok(())
    })??;
    Ok(())
}

/// The MAC of a lan interface, as the userspace backend gives it (`02:56:` + IPv4).
fn lan_mac(ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x02, 0x56, o[0], o[1], o[2], o[3]])
}

/// Deletes the uplink in the daemon's namespace (absent is fine). Its
/// routes go with it; its peer goes with the lan namespace.
fn delete_uplink() -> Result<(), BoxError> {
    let daemon = NetNs::open(DAEMON_NETNS)?;
    daemon.run(|| -> Result<(), BoxError> {
        let mut nl = Netlink::new()?;
        if nl.link_exists(UPLINK)? {
            nl.link_del(UPLINK)?;
        }
        Ok(())
    })?
}

/// Bind-mounts `/proc/PID/ns/net` at `/run/netns/NAME` (as `ip netns attach`).
fn adopt_pid_netns(pid: u32, name: &str) -> Result<NetNs, BoxError> {
    use nix::mount::{MsFlags, mount};
    let target = Path::new(netns::NETNS_RUN_DIR).join(name);
    std::fs::create_dir_all(netns::NETNS_RUN_DIR)?;
    File::options().write(true).create_new(true).open(&target)?;
    let source = format!("/proc/{pid}/ns/net");
    if let Err(e) = mount(
        Some(source.as_str()),
        &target,
        Some("none"),
        MsFlags::MS_BIND,
        None::<&str>,
    ) {
        let _ = std::fs::remove_file(&target);
        return Err(format!("bind {source} at {}: {e}", target.display()).into());
    }
    Ok(NetNs::open(name)?)
}

/// Takes the docker lock, waiting for another run to finish.
fn acquire_lock(wait: Duration) -> Result<File, BuildError> {
    let err = BuildError::at(format!("lock {LOCK_FILE}"));
    if let Some(dir) = Path::new(LOCK_FILE).parent() {
        std::fs::create_dir_all(dir).map_err(BuildError::at(format!("lock {LOCK_FILE}")))?;
    }
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .map_err(err)?;
    let end = std::time::Instant::now() + wait;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(BuildError {
                    step: format!("lock {LOCK_FILE}"),
                    source: format!(
                        "another docker run held it for {} s (a world kept up with `vswitch up --backend docker`?)",
                        wait.as_secs()
                    )
                    .into(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(BuildError {
                    step: format!("lock {LOCK_FILE}"),
                    source: Box::new(e),
                });
            }
        }
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

/// `POST /networks/create` body of a bridge or macvlan network.
fn network_body(name: &str, run: &RunId, n: &crate::scenario::plan::Network) -> Value {
    let config: Vec<Value> = n
        .subnets
        .iter()
        .map(|s| {
            let mut c = json!({ "Subnet": s.net.to_string() });
            if let Some(g) = s.gateway {
                c["Gateway"] = json!(g.to_string());
            }
            if s.ip_range != s.net {
                c["IPRange"] = json!(s.ip_range.to_string());
            }
            let aux: serde_json::Map<String, Value> = n
                .aux_addresses
                .iter()
                .filter(|(_, ip)| match ip {
                    IpAddr::V4(v4) => s.net.contains(v4),
                    IpAddr::V6(_) => false,
                })
                .map(|(k, ip)| (k.clone(), json!(ip.to_string())))
                .collect();
            if !aux.is_empty() {
                c["AuxiliaryAddresses"] = Value::Object(aux);
            }
            c
        })
        .collect();
    let mut options = serde_json::Map::new();
    let driver = match n.driver {
        Driver::Macvlan => {
            if let Some(p) = &n.parent {
                options.insert("parent".into(), json!(p.name));
            }
            if let Some(m) = n.mode {
                let mode = serde_json::to_value(m).unwrap_or(Value::Null);
                options.insert("macvlan_mode".into(), mode);
            }
            "macvlan"
        }
        _ => {
            let flag = |b: bool| json!(if b { "true" } else { "false" });
            options.insert("com.docker.network.bridge.enable_icc".into(), flag(n.icc));
            options.insert(
                "com.docker.network.bridge.enable_ip_masquerade".into(),
                flag(n.masquerade),
            );
            options.insert(
                "com.docker.network.driver.mtu".into(),
                json!(n.mtu.to_string()),
            );
            "bridge"
        }
    };
    json!({
        "Name": name,
        "CheckDuplicate": true,
        "Driver": driver,
        "Internal": n.internal,
        "EnableIPv6": false,
        "Attachable": true,
        "IPAM": { "Driver": "default", "Config": config },
        "Options": options,
        "Labels": { LABEL_RUN: run.as_str(), "vswitch.network": n.name },
    })
}

/// An endpoint's settings: the planned address and aliases on user-defined
/// networks; nothing on the default bridge, where Docker refuses both (BR-19).
fn endpoint_config(plan: &Plan, ci: usize, e: &crate::scenario::plan::Endpoint) -> Value {
    let n = &plan.networks[e.network];
    if n.default || matches!(n.driver, Driver::None | Driver::Host) {
        return json!({});
    }
    let mut v = json!({});
    if let Some(ip) = e.ip {
        v["IPAMConfig"] = json!({ "IPv4Address": ip.to_string() });
    }
    let mut aliases = e.aliases.clone();
    let name = &plan.containers[ci].name;
    if !docker_accepts_container_name(name) {
        // Named `<run>-<name>` in the daemon: the plain name as an alias.
        aliases.insert(0, name.clone());
    }
    if !aliases.is_empty() {
        v["Aliases"] = json!(aliases);
    }
    v
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn docker_accepts_container_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

/// A container's name in the daemon: the scenario's where Docker accepts it.
fn container_name(run: &RunId, name: &str) -> String {
    if docker_accepts_container_name(name) {
        name.to_string()
    } else {
        format!("{run}-{name}")
    }
}

/// A network's name in the daemon: the scenario's unless it is a built-in one.
fn network_name(run: &RunId, name: &str) -> String {
    if matches!(name, "bridge" | "host" | "none") {
        format!("{run}-{name}")
    } else {
        name.to_string()
    }
}

/// `POST /containers/create` body: the first network, its endpoint, DNS,
/// published ports.
fn container_body(plan: &Plan, ci: usize, nets: &[String], run: &RunId, silent: Ipv4Addr) -> Value {
    let c = &plan.containers[ci];
    let first = &c.endpoints[0];
    let first_net = &plan.networks[first.network];
    let mode = nets[first.network].clone();
    let mut host = json!({ "NetworkMode": mode });
    let mut body = json!({
        "Image": format!("{}:{}", image::IMAGE_REPO, image::IMAGE_TAG),
        "Cmd": ["sleep", "2000000000"],
        "Labels": { LABEL_RUN: run.as_str(), "vswitch.container": c.name },
        "NetworkingConfig": { "EndpointsConfig": { mode.clone(): endpoint_config(plan, ci, first) } },
    });
    if first_net.driver != Driver::Host {
        let dns: Vec<String> = if !c.dns.is_empty() {
            c.dns.iter().map(IpAddr::to_string).collect()
        } else if !plan.machines[c.machine].resolvers.is_empty() {
            plan.machines[c.machine]
                .resolvers
                .iter()
                .map(IpAddr::to_string)
                .collect()
        } else {
            vec![silent.to_string()]
        };
        host["Dns"] = json!(dns);
    }
    if first.ip.is_some() && !matches!(first_net.driver, Driver::None | Driver::Host) {
        body["MacAddress"] = json!(first.mac.to_string());
    }
    if !c.publish.is_empty() {
        let mut bindings = serde_json::Map::new();
        let mut exposed = serde_json::Map::new();
        for p in &c.publish {
            let key = format!("{}/{}", p.container_port, p.proto);
            exposed.insert(key.clone(), json!({}));
            let b = json!({
                "HostIp": p.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                "HostPort": p.host_port.to_string(),
            });
            match bindings.get_mut(&key).and_then(Value::as_array_mut) {
                Some(list) => list.push(b),
                None => {
                    bindings.insert(key, json!([b]));
                }
            }
        }
        host["PortBindings"] = Value::Object(bindings);
        body["ExposedPorts"] = Value::Object(exposed);
    }
    body["HostConfig"] = host;
    body
}

/// An address of `lan` that nothing in the scenario holds: the DNS server
/// given to containers when the scenario names none, so that the embedded
/// DNS forwards nowhere outside the scenario and unknown names fail.
fn silent_resolver(plan: &Plan) -> Ipv4Addr {
    let mut used: Vec<Ipv4Addr> = plan.machines.iter().map(|m| m.ip).collect();
    used.extend(plan.externals.iter().filter_map(|x| match x.ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }));
    let in_networks = |ip: &Ipv4Addr| {
        plan.networks
            .iter()
            .any(|n| n.subnets.iter().any(|s| s.net.contains(ip)))
    };
    plan.lan
        .hosts()
        .rev()
        .find(|ip| !used.contains(ip) && !in_networks(ip))
        .unwrap_or(plan.lan.broadcast())
}

/// Removes the containers and networks labelled as run `run`'s; returns
/// their names.
fn remove_objects(client: &Client, run: &RunId) -> Vec<String> {
    let mut removed = Vec::new();
    if let Ok(list) = client.containers_labeled(LABEL_RUN) {
        for c in list.into_iter().filter(|c| c.label == run.as_str()) {
            match client.container_remove(&c.id) {
                Ok(()) => removed.push(format!("docker container {}", c.name)),
                Err(e) => eprintln!("vswitch: cannot remove docker container {}: {e}", c.name),
            }
        }
    }
    if let Ok(list) = client.networks_labeled(LABEL_RUN) {
        for n in list.into_iter().filter(|n| n.label == run.as_str()) {
            match client.network_remove(&n.id) {
                Ok(()) => removed.push(format!("docker network {}", n.name)),
                Err(e) => eprintln!("vswitch: cannot remove docker network {}: {e}", n.name),
            }
        }
    }
    removed
}

/// Removes what run `id` has in the daemon: its containers and networks,
/// and the daemon-side uplink when that run owns it. Quiet when no daemon
/// runs. Used by the signal path and `vswitch cleanup` (its lan namespace
/// carries the run id and goes with the run's other namespaces).
pub fn remove_run(id: &RunId) -> Vec<String> {
    let mut removed = Vec::new();
    if Path::new(SOCKET).exists() {
        removed = remove_objects(&client(), id);
    }
    if uplink_owner().as_ref() == Some(id) {
        match delete_uplink() {
            Ok(()) => removed.push(format!("{DAEMON_NETNS}/{UPLINK}")),
            Err(e) => eprintln!("vswitch: cannot remove {UPLINK} in {DAEMON_NETNS}: {e}"),
        }
        let _ = std::fs::remove_file(UPLINK_OWNER);
    }
    removed
}

fn uplink_owner() -> Option<RunId> {
    RunId::parse(std::fs::read_to_string(UPLINK_OWNER).ok()?.trim())
}

/// Run ids that own something in the daemon (containers, networks, the
/// uplink), live or not.
pub fn leftover_runs() -> Vec<RunId> {
    let mut ids: Vec<RunId> = uplink_owner().into_iter().collect();
    if Path::new(SOCKET).exists() {
        let c = client();
        let labels = c
            .containers_labeled(LABEL_RUN)
            .unwrap_or_default()
            .into_iter()
            .chain(c.networks_labeled(LABEL_RUN).unwrap_or_default())
            .map(|o| o.label);
        ids.extend(labels.filter_map(|l| RunId::parse(&l)));
    }
    ids.sort();
    ids.dedup();
    ids
}

/// Under the lock: removes what runs that are no longer live left in the
/// daemon (never `me`, never a live run's).
fn remove_dead_leftovers(me: &RunId) {
    let live: Vec<RunId> = RunRecord::all()
        .into_iter()
        .filter(RunRecord::is_live)
        .map(|r| r.id)
        .collect();
    for id in leftover_runs() {
        if &id != me && !live.contains(&id) {
            let removed = remove_run(&id);
            if !removed.is_empty() {
                eprintln!(
                    "vswitch: removed leftovers of dead run {id}: {}",
                    removed.join(", ")
                );
            }
        }
    }
}

/// What run `id` still has on the docker side: daemon objects labelled as
/// its, its namespaces, the uplink (tests look for leaks with this).
pub fn traces(id: &RunId) -> Vec<String> {
    let mut v = Vec::new();
    if Path::new(SOCKET).exists() {
        let c = client();
        v.extend(
            c.containers_labeled(LABEL_RUN)
                .unwrap_or_default()
                .into_iter()
                .chain(c.networks_labeled(LABEL_RUN).unwrap_or_default())
                .filter(|o| o.label == id.as_str())
                .map(|o| format!("docker object {}", o.name)),
        );
    }
    v.extend(netns::list(&format!("{id}-")));
    if uplink_owner().as_ref() == Some(id) {
        v.push(UPLINK_OWNER.into());
    }
    v
}

/// Whether the daemon answers (tests and `vswitch check`).
pub fn daemon_reachable() -> Result<api::Version, ApiError> {
    client().version()
}
