//! Wiring around the daemon: the run's lan bridge in its own namespace,
//! veths into the externals and into the daemon's namespace (the machine
//! uplink), and containers' namespaces adopted under `/run/netns`.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::{IpNet, Ipv4Net};

use super::{BoxError, DAEMON_NETNS, UPLINK};
use crate::backend::BuildError;
use crate::netns::{self, NetNs};
use crate::scenario::plan::MacAddr;
use crate::sys::netlink::Netlink;

/// Runs `f` inside `ns`, folding both error layers into a [`BuildError`].
pub(super) fn in_ns<R: Send + 'static>(
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
pub(super) fn plug(
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
pub(super) fn lan_mac(ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x02, 0x56, o[0], o[1], o[2], o[3]])
}

/// Deletes the uplink in the daemon's namespace (absent is fine). Its
/// routes go with it; its peer goes with the lan namespace.
pub(super) fn delete_uplink() -> Result<(), BoxError> {
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
