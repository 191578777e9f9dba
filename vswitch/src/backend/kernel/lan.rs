//! The `lan` segment: a Linux bridge in its own namespace
//! (`<run id>-l-lan`); each machine's and each external's `eth0` is a veth
//! whose peer is a port of that bridge.

use super::configure;
use super::layout::lan_iface;
use crate::backend::common::{BuildError, Namespaces};
use crate::backend::linux::{LinuxError, in_ns, nlerr};
use crate::netns::NetNs;
use crate::scenario::plan::{Node, Plan};
use crate::sys::netlink::Netlink;

/// Name of the bridge inside the lan namespace.
const BRIDGE: &str = "lan";

/// The lan namespace; deleted when dropped.
pub(super) type LanNs = crate::netns::OwnedNs;

/// Creates the lan namespace and bridge, and every uplink.
pub(super) fn build(world: &Namespaces, plan: &Plan) -> Result<LanNs, BuildError> {
    let name = format!("{}-l-lan", world.run());
    let ns = NetNs::create(&name).map_err(BuildError::at(format!("namespace {name}")))?;
    let lan = LanNs::new(ns);
    let ns = lan.ns().expect("just created");

    // Ports: (port name in lan, temporary peer name, node it goes to).
    let mut ends = Vec::new();
    for i in 0..plan.machines.len() {
        ends.push((format!("m{i}"), format!("tm{i}"), Node::Machine(i)));
    }
    for i in 0..plan.externals.len() {
        ends.push((format!("x{i}"), format!("tx{i}"), Node::External(i)));
    }
    let mut moves = Vec::new();
    for (port, tmp, node) in &ends {
        let target = world.ns(*node).try_clone().map_err(BuildError::at(format!(
            "namespace of {}",
            plan.node_name(*node)
        )))?;
        moves.push((port.clone(), tmp.clone(), target));
    }
    in_ns(ns, "lan bridge", move || {
        let mut nl = Netlink::new().map_err(nlerr("netlink socket"))?;
        nl.link_set_up("lo").map_err(nlerr("lo"))?;
        // No rules live here: keep bridged lan frames out of netfilter.
        let _ = crate::sys::sysctl::sysctl_set("net.bridge.bridge-nf-call-iptables", "0");
        let _ = crate::sys::sysctl::sysctl_set("net.ipv6.conf.all.disable_ipv6", "1");
        let _ = crate::sys::sysctl::sysctl_set("net.ipv6.conf.default.disable_ipv6", "1");
        nl.link_add_bridge(BRIDGE).map_err(nlerr("lan bridge"))?;
        nl.link_set_up(BRIDGE).map_err(nlerr("lan bridge"))?;
        for (port, tmp, target) in &moves {
            nl.link_add_veth(port, tmp).map_err(nlerr("lan port"))?;
            nl.link_set_master(port, BRIDGE)
                .map_err(nlerr("lan port"))?;
            nl.link_set_up(port).map_err(nlerr("lan port"))?;
            nl.link_set_netns(tmp, std::os::fd::AsFd::as_fd(target))
                .map_err(nlerr("lan port"))?;
        }
        Ok::<(), LinuxError>(())
    })?;

    for (_, tmp, node) in ends {
        let Some(iface) = lan_iface(plan, node) else {
            continue;
        };
        let step = format!("eth0 of {}", plan.node_name(node));
        in_ns(world.ns(node), step, move || {
            let mut nl = Netlink::new().map_err(nlerr("netlink socket"))?;
            configure(&mut nl, &tmp, &iface)
        })?;
    }
    Ok(lan)
}
