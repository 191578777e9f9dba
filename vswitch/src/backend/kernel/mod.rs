//! The kernel backend: the same scenario built the way Docker builds it on
//! Linux — bridges, veths, macvlan, nftables — inside the scenario's
//! namespaces. It is the oracle the userspace engine is compared with.
//!
//! Layout (names, MACs, addresses and routes as the userspace backend's):
//! - `lan` ([`lan`]): a Linux bridge in namespace `<run id>-l-lan`; every
//!   machine's and external's `eth0` is a veth whose peer is a port there.
//! - bridge networks: a Linux bridge per network in the machine namespace
//!   (`br-<name>`, `docker0`), holding the gateway address(es) and MAC
//!   `02:42:<gw>`; a veth pair per container endpoint, the container end
//!   renamed `ethN` (BR-1..3); nftables for isolation, ICC, internal
//!   networks, masquerade and published ports ([`nft`]).
//! - macvlan networks: kernel macvlan children of the machine's `eth0`
//!   moved into the container as `ethN` (MV-1). A parent-less network gets
//!   a veth stub as parent: Docker uses a dummy link (MV-6), which this
//!   kernel lacks; a veth end with nothing behind it behaves the same for
//!   the children (no uplink, no host address on it).
//! - overlay networks (`overlay`): a bridge and a vxlan device per
//!   network in each machine namespace running one of its containers, with
//!   head-end replication FDB entries toward the other machines; overlay-only
//!   containers also get a `docker_gwbridge` bridge endpoint (OV-8).
//!
//! Observable consequences of the kernel's own behaviour, kept on purpose:
//! the lan bridge does not hairpin, so `vepa` children on one machine cannot
//! talk (MV-3 needs a reflective-relay switch) and the machine cannot reach
//! its macvlan children nor they it (MV-7, BUG-11).

pub(crate) mod conntrack;
mod features;
mod lan;
mod layout;
mod nft;
mod overlay;
mod services;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_services;
#[cfg(test)]
mod tests_v6;
pub(crate) mod topology;

use std::os::fd::AsFd;

use crate::backend::common::{BuildError, BuildOptions, Namespaces};
use crate::backend::linux::{LinuxError, in_ns, nlerr, run_tool};
use crate::netns::NetNs;
use crate::scenario::plan::{Node, Plan};
use crate::sys::netlink::Netlink;
use crate::sys::sysctl::sysctl_set;

use layout::{Attach, Iface};

/// What this backend cannot build on this machine, one reason per item.
pub fn unsupported(plan: &Plan) -> Vec<String> {
    features::unsupported(plan)
}

/// Gives link `name` (down, e.g. just moved here) its final name, MAC, MTU
/// and addresses, brings it up and adds its routes.
fn configure(nl: &mut Netlink, name: &str, iface: &Iface) -> Result<(), LinuxError> {
    let what = iface.name.as_str();
    if name != iface.name {
        nl.link_rename(name, &iface.name).map_err(nlerr(what))?;
    }
    nl.link_set_mac(&iface.name, iface.mac.0)
        .map_err(nlerr(what))?;
    nl.link_set_mtu(&iface.name, u32::from(iface.mtu))
        .map_err(nlerr(what))?;
    for (a, p) in &iface.addrs {
        nl.addr_add(&iface.name, *a, *p).map_err(nlerr(what))?;
    }
    nl.link_set_up(&iface.name).map_err(nlerr(what))?;
    for (dst, via) in &iface.routes {
        nl.route_add(*dst, *via, Some(&iface.name))
            .map_err(nlerr(what))?;
    }
    Ok(())
}

/// The kernel data path of a world.
#[derive(Debug)]
pub struct Dataplane {
    lan: lan::LanNs,
    /// Handles on the machine namespaces, for the counters at stop.
    machines: Vec<NetNs>,
    /// Each machine's ingress sandbox (worlds with swarm services).
    sandboxes: Vec<services::Sandbox>,
}

impl Dataplane {
    /// Builds the kernel data path between the world's namespaces. On error
    /// the lan namespace is removed here; the world removes its own.
    pub fn build(
        world: &Namespaces,
        plan: &Plan,
        _opts: &BuildOptions,
    ) -> Result<Dataplane, BuildError> {
        // OV-8: overlay-only containers get a docker_gwbridge endpoint.
        let plan = &services::with_gwbridge(plan);
        let lan = lan::build(world, plan)?;
        let mut dp = Dataplane {
            lan,
            machines: Vec::new(),
            sandboxes: Vec::new(),
        };
        for m in 0..plan.machines.len() {
            dp.machines.push(
                world
                    .ns(Node::Machine(m))
                    .try_clone()
                    .map_err(BuildError::at(format!("machine {}", plan.machines[m].name)))?,
            );
            build_machine(world, plan, m)?;
            if let Some(sb) = services::build_sandbox(world, plan, m)? {
                dp.sandboxes.push(sb);
            }
            services::build_machine(world, plan, m)?;
        }
        Ok(dp)
    }

    /// Tears the data path down (the lan namespace; everything else goes
    /// with the world's namespaces) and returns per-namespace link counters.
    pub fn stop(self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        let all = self
            .lan
            .ns()
            .into_iter()
            .chain(self.machines.iter())
            .chain(self.sandboxes.iter().filter_map(|s| s.ns()));
        for ns in all {
            let counters = ns.run(link_counters).unwrap_or(serde_json::Value::Null);
            out.insert(ns.name().to_string(), counters);
        }
        serde_json::json!({ "links": out })
    }
}

/// Machine `m` of a mixed run (`backend = "kernel"` beside userspace
/// machines): everything but its uplink, which the userspace backend made a
/// TAP on the engine's lan (design notes, "Mixed runs").
pub(crate) fn build_mixed_machine(
    world: &Namespaces,
    plan: &Plan,
    m: usize,
) -> Result<(), BuildError> {
    build_machine(world, plan, m)
}

/// Machine `m`: sysctls, bridges, container links, their configuration in
/// each container, and the nftables ruleset.
fn build_machine(world: &Namespaces, plan: &Plan, m: usize) -> Result<(), BuildError> {
    let layout = layout::machine_layout(plan, m);
    let machine = &plan.machines[m].name;
    overlay::build(world, plan, m)?;
    let mut moves = Vec::new();
    for l in &layout.links {
        let target = world
            .ns(Node::Container(l.container))
            .try_clone()
            .map_err(BuildError::at(format!(
                "container {}",
                plan.containers[l.container].name
            )))?;
        moves.push((l.clone(), target));
    }
    let built = layout.clone();
    let ipv6 = plan.lan6.is_some();
    let br_netfilter = in_ns(
        world.ns(Node::Machine(m)),
        format!("machine {machine}: links"),
        move || {
            let mut nl = Netlink::new().map_err(nlerr("netlink socket"))?;
            sysctl_set("net.ipv4.ip_forward", "1")?;
            // BR-9: Docker has bridged IPv4 go through iptables.
            let br_netfilter = sysctl_set("net.bridge.bridge-nf-call-iptables", "1").is_ok();
            if ipv6 {
                // A Docker host routes IPv6 between its bridges and uplink
                // (V6-1); bridged IPv6 meets the same rules as IPv4 (V6-4).
                sysctl_set("net.ipv6.conf.all.forwarding", "1")?;
                if br_netfilter {
                    sysctl_set("net.bridge.bridge-nf-call-ip6tables", "1")?;
                }
            }
            for (a, b) in &built.stubs {
                nl.link_add_veth(a, b).map_err(nlerr(a))?;
                nl.link_set_up(b).map_err(nlerr(b))?;
                nl.link_set_up(a).map_err(nlerr(a))?;
            }
            for b in &built.bridges {
                let name = &b.iface.name;
                nl.link_add_bridge(name).map_err(nlerr(name))?;
                nl.link_set_mac(name, b.iface.mac.0).map_err(nlerr(name))?;
                for (a, p) in &b.iface.addrs {
                    nl.addr_add(name, *a, *p).map_err(nlerr(name))?;
                }
                nl.link_set_up(name).map_err(nlerr(name))?;
                // Published ports answer on 127.0.0.1 too (PUB-7/8).
                sysctl_set(&format!("net.ipv4.conf.{name}.route_localnet"), "1")?;
            }
            Ok(br_netfilter)
        },
    )?;
    // Each container's veth (or macvlan), made here and moved into its
    // namespace: a move waits for RCU grace periods, so the links are made
    // by several threads of the machine's namespace at once.
    let width = crate::backend::parallel::WIDTH.min(8);
    let chunk = moves.len().div_ceil(width).max(1);
    let mut chunks: Vec<Vec<_>> = Vec::new();
    let mut moves = moves.into_iter().peekable();
    while moves.peek().is_some() {
        chunks.push(moves.by_ref().take(chunk).collect());
    }
    let made = crate::backend::parallel::map(chunks, width, |moves| {
        in_ns(
            world.ns(Node::Machine(m)),
            format!("machine {machine}: links"),
            move || {
                let mut nl = Netlink::new().map_err(nlerr("netlink socket"))?;
                for (l, target) in &moves {
                    add_link(&mut nl, l, target)?;
                }
                Ok(())
            },
        )
    });
    made.into_iter().collect::<Result<Vec<()>, _>>()?;
    let bridges = layout.bridges.clone();
    in_ns(
        world.ns(Node::Machine(m)),
        format!("machine {machine}: bridge MTUs"),
        move || {
            let mut nl = Netlink::new().map_err(nlerr("netlink socket"))?;
            // After the ports: a bridge follows its smallest port's MTU
            // unless told otherwise (BR-6).
            for b in &bridges {
                nl.link_set_mtu(&b.iface.name, u32::from(b.iface.mtu))
                    .map_err(nlerr(&b.iface.name))?;
            }
            Ok(())
        },
    )?;

    // Each container's interfaces, configured in its namespace: independent
    // of one another, so on parallel threads.
    let mut per_container: Vec<Vec<_>> = vec![Vec::new(); plan.containers.len()];
    for l in &layout.links {
        per_container[l.container].push(l.clone());
    }
    let jobs: Vec<_> = per_container
        .into_iter()
        .enumerate()
        .filter(|(_, links)| !links.is_empty())
        .map(|(ci, links)| {
            (
                world.ns(Node::Container(ci)),
                &plan.containers[ci].name,
                links,
            )
        })
        .collect();
    let configured = crate::backend::parallel::map(
        jobs,
        crate::backend::parallel::WIDTH,
        |(ns, name, links)| {
            in_ns(ns, format!("container {name}: interfaces"), move || {
                let mut nl = Netlink::new().map_err(nlerr("netlink socket"))?;
                for l in &links {
                    configure(&mut nl, &l.tmp, &l.iface)?;
                }
                Ok(())
            })
        },
    );
    configured.into_iter().collect::<Result<Vec<()>, _>>()?;

    overlay::finish(world, plan, m)?;
    let table = world.run().to_string();
    if let Some(rules) = nft::machine_ruleset(plan, m, &layout, &table, br_netfilter) {
        in_ns(
            world.ns(Node::Machine(m)),
            format!("machine {machine}: nftables"),
            move || nft::apply(&rules),
        )?;
    }
    Ok(())
}

/// Creates a container interface in the machine namespace (the calling
/// thread's) and moves it into the container's, `target`.
fn add_link(nl: &mut Netlink, l: &layout::Link, target: &NetNs) -> Result<(), LinuxError> {
    match &l.attach {
        Attach::Veth {
            host,
            bridge,
            hairpin,
        } => {
            // The container's end is born in its namespace (a move would
            // wait for RCU grace periods).
            nl.link_add_veth_peer_in(host, &l.tmp, target.as_fd())
                .map_err(nlerr(host))?;
            nl.link_set_mtu(host, u32::from(l.iface.mtu))
                .map_err(nlerr(host))?;
            nl.link_set_master(host, bridge).map_err(nlerr(host))?;
            if *hairpin {
                let args = ["link", "set", "dev", host, "type", "bridge_slave"];
                run_tool("ip", &[&args[..], &["hairpin", "on"]].concat(), "")?;
            }
            nl.link_set_up(host).map_err(nlerr(host))
        }
        Attach::Macvlan { parent, mode } => {
            nl.link_add_macvlan(&l.tmp, parent, *mode)
                .map_err(nlerr(&l.tmp))?;
            nl.link_set_netns(&l.tmp, target.as_fd())
                .map_err(nlerr(&l.tmp))
        }
    }
}

/// rx/tx counters of every link of the calling thread's namespace, from
/// `/proc/thread-self/net/dev` (procfs answers for the thread's namespace).
fn link_counters() -> serde_json::Value {
    let Ok(text) = std::fs::read_to_string("/proc/thread-self/net/dev") else {
        return serde_json::Value::Null;
    };
    let mut links = serde_json::Map::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() < 16 || name.trim() == "lo" {
            continue;
        }
        links.insert(
            name.trim().to_string(),
            serde_json::json!({
                "rx_bytes": f[0], "rx_packets": f[1], "rx_dropped": f[3],
                "tx_bytes": f[8], "tx_packets": f[9], "tx_dropped": f[11],
            }),
        );
    }
    serde_json::Value::Object(links)
}
