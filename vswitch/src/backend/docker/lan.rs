//! Wiring around the daemon: the run's lan bridge in its own namespace,
//! veths into the externals and into the daemon's namespace (the machine
//! uplink), and containers' namespaces adopted under `/run/netns`.

use std::fs::File;
use std::net::IpAddr;
use std::path::Path;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{BoxError, DAEMON_NETNS, UPLINK};
use crate::backend::topology::lan_mac;
use crate::netns::{self, NetNs};
use crate::scenario::plan::MacAddr;
use crate::sys::netlink::Netlink;

/// How `eth0` of a lan host looks: its MAC, addresses (IPv4 on `lan`,
/// IPv6 on `lan6`) and default routes (one per family at most).
pub(super) struct Uplink {
    /// Hardware address.
    pub mac: MacAddr,
    /// Addresses with prefix lengths.
    pub addrs: Vec<(IpAddr, u8)>,
    /// Default-route next hops.
    pub gateways: Vec<IpAddr>,
    /// Further routes (an external's to IPv6 subnets a machine routes
    /// without NAT, `ip6tables = false`, as the other backends give it).
    pub routes: Vec<(IpNet, IpAddr)>,
}

impl Uplink {
    /// A machine's uplink as every backend wires it: its lan MAC, its lan
    /// (and lan6) address, a default route per family via the `gateway =
    /// true` external.
    pub(super) fn of_machine(plan: &crate::scenario::plan::Plan, m: usize) -> Uplink {
        let mach = &plan.machines[m];
        let gateway = plan.externals.iter().find(|x| x.gateway);
        let mut up = Uplink {
            mac: lan_mac(mach.ip),
            addrs: vec![(IpAddr::V4(mach.ip), plan.lan.prefix_len())],
            gateways: gateway
                .and_then(|x| x.ip4())
                .map(IpAddr::V4)
                .into_iter()
                .collect(),
            routes: Vec::new(),
        };
        if let Some(a6) = mach.ip6 {
            let prefix6 = plan.lan6.map_or(64, |n| n.prefix_len());
            up.addrs.push((IpAddr::V6(a6), prefix6));
            up.gateways
                .extend(gateway.and_then(|x| x.ip6).map(IpAddr::V6));
        }
        up
    }
}

/// A veth from the lan bridge (`port` there) to `eth0` in `target`,
/// configured as `up` says.
pub(super) fn plug(lan: &NetNs, port: &str, target: &NetNs, up: Uplink) -> Result<(), BoxError> {
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
        nl.link_set_mac(UPLINK, up.mac.0)?;
        for (a, p) in &up.addrs {
            nl.addr_add(UPLINK, *a, *p)?;
        }
        nl.link_set_up(UPLINK)?;
        for gw in &up.gateways {
            let default = match gw {
                IpAddr::V4(_) => IpNet::V4(Ipv4Net::default()),
                IpAddr::V6(_) => IpNet::V6(Ipv6Net::default()),
            };
            nl.route_add(default, Some(*gw), Some(UPLINK))?;
        }
        for (net, via) in &up.routes {
            nl.route_add(*net, Some(*via), Some(UPLINK))?;
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
