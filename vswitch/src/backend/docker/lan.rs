//! Wiring around the daemon: the run's lan bridge in its own namespace,
//! veths into the externals and into the daemon's namespace (the machine
//! uplink), and containers' namespaces adopted under `/run/netns`.

use std::fs::File;
use std::path::Path;

use super::{BoxError, DAEMON_NETNS, UPLINK};
use crate::backend::topology::Interface;
use crate::netns::{self, NetNs};
use crate::sys::netlink::Netlink;

/// A veth from the lan bridge (`port` there) to `eth0` in `target`,
/// configured as the topology's lan interface `up` says (MAC, addresses,
/// routes).
pub(super) fn plug(
    lan: &NetNs,
    port: &str,
    target: &NetNs,
    up: &Interface,
) -> Result<(), BoxError> {
    let (port, peer) = (port.to_string(), format!("p-{port}"));
    let target_fd = target.try_clone()?;
    let peer2 = peer.clone();
    let up = up.clone();
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
        nl.link_set_mac(UPLINK, up.mac.0)?;
        for (a, p) in &up.addrs {
            nl.addr_add(UPLINK, *a, *p)?;
        }
        nl.link_set_up(UPLINK)?;
        for (net, via) in &up.routes {
            nl.route_add(*net, *via, Some(UPLINK))?;
        }
        Ok(())
    })??;
    Ok(())
}

/// The uplink in the daemon's namespace, deleted (absent is fine) when the
/// guard goes. Its routes go with it; its peer goes with the lan namespace.
pub(super) fn uplink_guard() -> netns::DeleteOnDrop {
    netns::DeleteOnDrop::link(DAEMON_NETNS, UPLINK)
}

/// Bind-mounts `/proc/PID/ns/net` at `/run/netns/NAME` (as `ip netns attach`).
pub(super) fn adopt_pid_netns(pid: u32, name: &str) -> Result<NetNs, BoxError> {
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
