//! macvlan and ipvlan networks, and VLANs on `lan`, for the userspace
//! backend (issue 7).
//!
//! - `lan` is the engine's 802.1Q-aware domain: machine uplinks are trunks
//!   (native: the untagged lan), externals with `vlan = N` access ports of
//!   VLAN N.
//! - A macvlan/ipvlan network with `parent = eth0` or `eth0.N` puts its
//!   containers' interfaces on `lan` as access ports of VLAN 0 or N, as
//!   children of their machine's uplink (the engine's sibling and host
//!   isolation rules, MV-3/MV-7/IV-7/IV-8). macvlan children keep their own
//!   MACs (MV-1); ipvlan children take the uplink's MAC (IV-2).
//! - A parent-less network is an engine domain of its own with nothing
//!   else on it: internal (MV-6, IV-10).
//!
//! Container routes follow the kernel backend: `default via <gateway>` on
//! the first non-internal network with a gateway; ipvlan `l3`/`l3s` with a
//! parent: `default dev ethN` with no next hop, for IPv4 and IPv6 (IV-5,
//! IV-12).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::backend::topology::{is_child_driver, is_ipvlan_l3};
use crate::engine::{Attachment, Siblings, VlanMode, VlanPort};
use crate::scenario::plan::{Driver, IpvlanFlag, Mode, Network, Plan};

/// Whether the plan needs the engine's VLAN layer on `lan`.
pub(super) fn needs_vlans(plan: &Plan) -> bool {
    plan.externals.iter().any(|x| x.vlan.is_some())
        || plan
            .networks
            .iter()
            .any(|n| is_child_driver(n) && n.parent.is_some())
}

/// The VLAN port of a child of machine `machine` on network `n` (which has
/// a parent), with addresses `ip` and `ip6`.
pub(super) fn child_port(
    n: &Network,
    machine: usize,
    ip: Ipv4Addr,
    ip6: Option<Ipv6Addr>,
) -> VlanPort {
    let vid = n.parent.as_ref().and_then(|p| p.vlan).unwrap_or(0);
    let group = machine as u16;
    let attach = match n.driver {
        Driver::Ipvlan => Attachment::Ipvlan {
            group,
            ip,
            ip6: ip6.filter(|_| n.ipv6),
            l3: is_ipvlan_l3(n),
            flag: match n.flag {
                Some(IpvlanFlag::Private) => Siblings::Private,
                Some(IpvlanFlag::Vepa) => Siblings::Vepa,
                _ => Siblings::Bridge,
            },
        },
        _ => Attachment::Macvlan {
            group,
            mode: match n.mode {
                Some(Mode::Private) => Siblings::Private,
                Some(Mode::Vepa) => Siblings::Vepa,
                Some(Mode::Passthru) => Siblings::Passthru,
                _ => Siblings::Bridge,
            },
        },
    };
    VlanPort {
        mode: VlanMode::Access(vid),
        attach,
    }
}
