//! Overlay networks on the kernel backend (issue 8), built as Docker builds
//! them on Linux (OV-4), minus the hidden namespace: per overlay network, on
//! each machine running one of its containers, a bridge `ov-<vni hex>` with
//! a vxlan device `vx-<vni hex>` (VNI, UDP 4789, local = the machine's
//! uplink address, over `eth0`) enslaved to it, and one static all-zeros
//! FDB entry per peer machine (`bridge fdb append 00:00:00:00:00:00 dev vx…
//! dst <peer>`): head-end replication of broadcast and unknown unicast, as
//! the userspace VTEP does. Container veths hang off the bridge with the
//! network's MTU (underlay − 50, OV-5). The bridge holds no address: the
//! machine's host stack is not on the overlay.

use std::net::Ipv4Addr;

use crate::backend::common::{BuildError, Namespaces};
use crate::scenario::plan::{Driver, Node, Plan};
use crate::sys::netlink::Netlink;

use crate::backend::linux::{LinuxError, in_ns, nlerr, run_tool};

/// UDP port of VXLAN (OV-2).
const VXLAN_PORT: u16 = 4789;

/// The bridge of overlay network `net` in a machine namespace.
pub(super) fn bridge_name(plan: &Plan, net: usize) -> String {
    format!("ov-{:06x}", plan.networks[net].vni.unwrap_or(0))
}

fn vxlan_name(plan: &Plan, net: usize) -> String {
    format!("vx-{:06x}", plan.networks[net].vni.unwrap_or(0))
}

/// One overlay network on one machine.
#[derive(Clone, Debug)]
struct OverlayDev {
    bridge: String,
    vxlan: String,
    vni: u32,
    mtu: u16,
    peers: Vec<Ipv4Addr>,
}

/// The overlay devices of machine `m`.
fn devices(plan: &Plan, m: usize) -> Vec<OverlayDev> {
    let mut v = Vec::new();
    for (ni, n) in plan.networks.iter().enumerate() {
        if n.driver != Driver::Overlay {
            continue;
        }
        let machines = super::services::overlay_machines(plan, ni);
        if !machines.contains(&m) {
            continue;
        }
        let Some(vni) = n.vni else { continue };
        v.push(OverlayDev {
            bridge: bridge_name(plan, ni),
            vxlan: vxlan_name(plan, ni),
            vni,
            mtu: n.mtu,
            peers: machines
                .into_iter()
                .filter(|&p| p != m)
                .map(|p| plan.machines[p].ip)
                .collect(),
        });
    }
    v
}

/// Builds machine `m`'s overlay bridges and vxlan devices (before the
/// container veths are enslaved to them).
pub(super) fn build(world: &Namespaces, plan: &Plan, m: usize) -> Result<(), BuildError> {
    let devs = devices(plan, m);
    if devs.is_empty() {
        return Ok(());
    }
    let local = plan.machines[m].ip;
    in_ns(
        world.ns(Node::Machine(m)),
        format!("machine {}: overlay", plan.machines[m].name),
        move || -> Result<(), LinuxError> {
            let mut nl = Netlink::new().map_err(nlerr("netlink socket"))?;
            for d in &devs {
                nl.link_add_bridge(&d.bridge).map_err(nlerr(&d.bridge))?;
                nl.link_add_vxlan(&d.vxlan, d.vni, local, "eth0", VXLAN_PORT)
                    .map_err(nlerr(&d.vxlan))?;
                nl.link_set_mtu(&d.vxlan, u32::from(d.mtu))
                    .map_err(nlerr(&d.vxlan))?;
                nl.link_set_master(&d.vxlan, &d.bridge)
                    .map_err(nlerr(&d.vxlan))?;
                nl.link_set_up(&d.vxlan).map_err(nlerr(&d.vxlan))?;
                nl.link_set_up(&d.bridge).map_err(nlerr(&d.bridge))?;
                for p in &d.peers {
                    let dst = p.to_string();
                    let args = [
                        "fdb",
                        "append",
                        "00:00:00:00:00:00",
                        "dev",
                        d.vxlan.as_str(),
                        "dst",
                        dst.as_str(),
                    ];
                    run_tool("bridge", &args, "")?;
                }
            }
            Ok(())
        },
    )
}

/// Sets each overlay bridge's MTU once its ports are in (a bridge follows
/// its smallest port otherwise).
pub(super) fn finish(world: &Namespaces, plan: &Plan, m: usize) -> Result<(), BuildError> {
    let devs = devices(plan, m);
    if devs.is_empty() {
        return Ok(());
    }
    in_ns(
        world.ns(Node::Machine(m)),
        format!("machine {}: overlay MTU", plan.machines[m].name),
        move || -> Result<(), LinuxError> {
            let mut nl = Netlink::new().map_err(nlerr("netlink socket"))?;
            for d in &devs {
                nl.link_set_mtu(&d.bridge, u32::from(d.mtu))
                    .map_err(nlerr(&d.bridge))?;
            }
            Ok(())
        },
    )
}
