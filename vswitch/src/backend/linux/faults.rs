//! Link faults with what this kernel has (no netem), set on an interface
//! inside a network namespace handle: the kernel backend's namespaces, and
//! on the docker backend the containers' (adopted from their PIDs), the
//! externals' and the machine's (`backend::docker::faults`): this module is
//! the one implementation of both.
//! - `down`: nftables drops everything in both directions on the
//!   interface (a netdev ingress and egress chain). An admin-down link
//!   would flush the container's routes, which a `clear` could not bring
//!   back as Docker's would not come back either.
//! - `loss`: nftables `numgen random` in both directions. That is the
//!   kernel's own generator and nftables cannot seed it: the scenario's
//!   `seed` does not apply, so which packets a partial loss drops (and so a
//!   marginal check's outcome) does not repeat run to run on the kernel and
//!   docker backends, unlike the userspace engine's seeded loss
//!   ([`LOSS_NOT_SEEDED`] says so in the report).
//! - `rate_mbit`: a tbf qdisc shapes what the node sends; nftables
//!   `limit rate over … drop` polices what it receives (no ifb here).
//! - `mtu`: the interface's MTU.
//!
//! Delay, jitter, reorder, duplicate and corrupt need netem and are refused
//! before anything is built (see `backend::steps`).

use std::collections::HashMap;
use std::net::IpAddr;

use crate::backend::common::{BuildError, Namespaces};
use crate::netns::NetNs;
use crate::scenario::plan::{LinkFault, LinkRef, Node, Plan};
use crate::sys::netlink::Netlink;

use super::{LinuxError, in_ns, nlerr, run_tool};

/// One interface a link stands for: its node, planned name (`ethK`: the
/// K-th endpoint), normal MTU and, for a container's, its address (the
/// interface is found by it: Docker numbers a restarted container's
/// interfaces in its own order).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Iface {
    node: Node,
    name: String,
    mtu: u16,
    addr: Option<IpAddr>,
}

/// Interfaces of a link (`lan`: every machine's and external's `eth0`).
fn ifaces(plan: &Plan, link: LinkRef) -> Vec<Iface> {
    let lan_port = |node| Iface {
        node,
        name: "eth0".into(),
        mtu: 1500,
        addr: None,
    };
    match link {
        LinkRef::Lan => (0..plan.machines.len())
            .map(Node::Machine)
            .chain((0..plan.externals.len()).map(Node::External))
            .map(lan_port)
            .collect(),
        LinkRef::Uplink(m) => vec![lan_port(Node::Machine(m))],
        LinkRef::External(x) => vec![lan_port(Node::External(x))],
        LinkRef::Endpoint { container, network } => {
            let c = &plan.containers[container];
            c.endpoints
                .iter()
                .position(|e| e.network == network)
                .map(|k| Iface {
                    node: Node::Container(container),
                    name: format!("eth{k}"),
                    mtu: plan.networks[network].mtu,
                    addr: c.endpoints[k]
                        .ip
                        .map(IpAddr::V4)
                        .or(c.endpoints[k].ip6.map(IpAddr::V6)),
                })
                .into_iter()
                .collect()
        }
    }
}

/// The fault in force on an interface: its own link's, else `lan`'s for a
/// lan port.
fn effective(plan: &Plan, faults: &HashMap<LinkRef, LinkFault>, i: &Iface) -> Option<LinkFault> {
    let own = match i.node {
        Node::Machine(m) => LinkRef::Uplink(m),
        Node::External(x) => LinkRef::External(x),
        Node::Container(c) => {
            let k: usize = i.name.trim_start_matches("eth").parse().ok()?;
            LinkRef::Endpoint {
                container: c,
                network: plan.containers[c].endpoints.get(k)?.network,
            }
        }
    };
    let lan = !matches!(i.node, Node::Container(_));
    faults
        .get(&own)
        .or_else(|| lan.then(|| faults.get(&LinkRef::Lan)).flatten())
        .copied()
}

/// The nftables rules of a fault (empty: none needed).
fn nft_rules(dev: &str, f: &LinkFault) -> String {
    let mut rules: Vec<(&str, String)> = Vec::new();
    if f.down {
        rules.push(("both", "drop".into()));
    }
    if f.loss >= 1.0 {
        rules.push(("both", "drop".into()));
    } else if f.loss > 0.0 {
        let n = ((f.loss * 1_000_000.0).round() as u64).max(1);
        rules.push(("both", format!("numgen random mod 1000000 < {n} drop")));
    }
    if let Some(bps) = f.rate_bps {
        let kbytes = (bps / 8 / 1000).max(1);
        rules.push((
            "ingress",
            format!("limit rate over {kbytes} kbytes/second burst 32 kbytes drop"),
        ));
    }
    if rules.is_empty() {
        return String::new();
    }
    let table = table_name(dev);
    let mut s = format!("table netdev {table} {{\n");
    for hook in ["ingress", "egress"] {
        s.push_str(&format!(
            " chain {hook} {{\n  type filter hook {hook} device \"{dev}\" priority 0;\n"
        ));
        for (when, r) in &rules {
            if *when == "both" || *when == hook {
                s.push_str(&format!("  {r}\n"));
            }
        }
        s.push_str(" }\n");
    }
    s.push_str("}\n");
    s
}

fn table_name(dev: &str) -> String {
    format!("vswitch_fault_{dev}")
}

/// Puts the interface back as built, then sets `fault` on it.
fn apply_one(dev: &str, mtu: u16, fault: Option<LinkFault>) -> Result<(), LinuxError> {
    let table = table_name(dev);
    // Absent when there was no fault: errors here are expected.
    let _ = run_tool("nft", &["delete", "table", "netdev", &table], "");
    let _ = run_tool("tc", &["qdisc", "del", "dev", dev, "root"], "");
    let mut nl = Netlink::new().map_err(nlerr(dev))?;
    let want_mtu = fault.and_then(|f| f.mtu).unwrap_or(mtu);
    nl.link_set_mtu(dev, u32::from(want_mtu))
        .map_err(nlerr(dev))?;
    let Some(f) = fault else { return Ok(()) };
    if let Some(bps) = f.rate_bps {
        let rate = format!("{bps}bit");
        run_tool(
            "tc",
            &[
                "qdisc", "replace", "dev", dev, "root", "tbf", "rate", &rate, "burst", "32kb",
                "latency", "100ms",
            ],
            "",
        )?;
    }
    let rules = nft_rules(dev, &f);
    if !rules.is_empty() {
        run_tool("nft", &["-f", "-"], &rules)?;
    }
    Ok(())
}

/// What a check's detail says of a partial loss on the kernel and docker
/// backends.
pub(crate) const LOSS_NOT_SEEDED: &str =
    "loss by nftables numgen (kernel generator, not seeded: not repeatable run to run)";

/// Sets on every interface of `link` the fault now in force there, each in
/// its node's namespace in `world`.
pub(crate) fn apply(
    world: &Namespaces,
    plan: &Plan,
    faults: &HashMap<LinkRef, LinkFault>,
    link: LinkRef,
) -> Result<(), BuildError> {
    for i in ifaces(plan, link) {
        let fault = effective(plan, faults, &i);
        let step = format!("fault on {} {}", plan.node_name(i.node), i.name);
        let (dev, mtu, addr) = (i.name.clone(), i.mtu, i.addr);
        in_ns(world.ns(i.node), step, move || {
            let dev = match addr {
                Some(a) => dev_with(a)?.unwrap_or(dev),
                None => dev,
            };
            apply_one(&dev, mtu, fault)
        })?;
    }
    Ok(())
}

/// The interface of this namespace that carries `addr`, if any.
fn dev_with(addr: IpAddr) -> Result<Option<String>, LinuxError> {
    let mut nl = Netlink::new().map_err(nlerr("netlink"))?;
    for name in nl.link_names().map_err(nlerr("links"))? {
        let addrs = nl.addr_list(&name).map_err(nlerr(&name))?;
        if addrs.iter().any(|(a, _)| *a == addr) {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Removes the fault table of interface `dev` in `ns` (absent is fine):
/// for a namespace that outlives the run (the shared Docker daemon's).
pub(crate) fn remove_table(ns: &NetNs, dev: &str) -> Result<(), BuildError> {
    let table = table_name(dev);
    in_ns(ns, format!("removing nft table {table}"), move || {
        let _ = run_tool("nft", &["delete", "table", "netdev", &table], "");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_rules_cover_both_directions() {
        let f = LinkFault {
            loss: 0.01,
            rate_bps: Some(10_000_000),
            ..LinkFault::default()
        };
        let r = nft_rules("eth0", &f);
        assert!(r.contains("table netdev vswitch_fault_eth0"));
        assert_eq!(
            r.matches("numgen random mod 1000000 < 10000 drop").count(),
            2
        );
        assert_eq!(r.matches("limit rate over 1250 kbytes/second").count(), 1);
        let down = nft_rules(
            "eth1",
            &LinkFault {
                down: true,
                ..LinkFault::default()
            },
        );
        assert_eq!(down.matches("  drop\n").count(), 2);
        assert!(nft_rules("eth0", &LinkFault::default()).is_empty());
    }
}
