//! 802.1Q on a VLAN-aware domain (`lan`), and the macvlan and ipvlan
//! children that hang off machine uplinks.
//!
//! The domain's ports are either *access* ports of one VLAN (untagged
//! towards the port; VLAN 0 is the untagged lan itself) or *trunks* (machine
//! uplinks): untagged frames there are on the trunk's native VLAN (0), and
//! tagged frames carry any VLAN the lan knows. A tagged frame for a VLAN the
//! lan does not carry is dropped (`vlan-unknown`); a tagged frame on an
//! access port is dropped (`vlan-not-configured`). The tag is popped on
//! ingress and pushed again on egress to a trunk, moving the virtio-net
//! offsets by 4 bytes (`VnetHdr::shift`); GSO fields are kept.
//!
//! The FDB key is the MAC with the VLAN id in bits 48..60, so one MAC on
//! two VLANs is two entries and no frame ever leaves its VLAN.
//!
//! macvlan children (MV-1) are access ports of the parent's VLAN with their
//! own MACs. Delivery between ports of one machine follows the kernel: two
//! `bridge` children talk directly; `private`, `vepa` and `passthru`
//! children never reach a sibling (the lan does not hairpin, so vepa has no
//! reflective relay, as on the kernel backend); a child and its machine's
//! host stack never reach each other (MV-7, BUG-11: `parent-isolation`).
//!
//! ipvlan children (IV-2) share the machine's uplink MAC. The engine does
//! not learn their source; frames for the parent MAC on a child's VLAN whose
//! IPv4 destination (or ARP target) is a child's address go to that child
//! (demultiplexed by IP). `l2` children ARP on the lan like any host, and
//! the engine answers a child's ARP for a sibling with the parent MAC (the
//! sibling would answer the same). `l3`/`l3s` children send no broadcast
//! (`ipvlan-no-broadcast`): the engine answers every ARP they send with the
//! parent MAC, routes between the network's children (any subnet, IV-5),
//! and never puts their frames on the lan (`ipvlan-no-route-back`: no lan host
//! has a route back to an l3 subnet, BUG-13, so nothing could answer).
//! Flags `private`/`vepa` stop child↔child traffic (IV-7).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tracing::trace;

use super::fdb::{Learned, mac_key};
use super::l2::Domain;
use super::metrics::Metrics;
use super::pipeline::FrameCx;
use super::route::Router;
use super::route6::Router6;
use super::{Action, DomainId, DropReason, EngineError, Gateway, MacAddr, Packet, PortId};
use crate::wire::arp::{self, ArpRepr};
use crate::wire::ethernet::{self, EtherType, HEADER_LEN as ETH_HDR_LEN};
use crate::wire::{ipv4, vlan};

/// Length of an 802.1Q tag.
pub const TAG_LEN: usize = vlan::TAG_LEN;
/// Highest VLAN id.
pub const MAX_VID: u16 = 4094;

/// How a port of the VLAN-aware domain carries VLANs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VlanMode {
    /// Untagged towards the port, on this VLAN (0: the untagged lan).
    Access(u16),
    /// Tagged for every VLAN the lan carries, untagged for `native`.
    Trunk {
        /// The VLAN of untagged frames (0: the untagged lan).
        native: u16,
    },
}

/// How a macvlan child or ipvlan flag treats its siblings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Siblings {
    /// Direct delivery between bridge-mode siblings (macvlan `bridge`,
    /// ipvlan flag `bridge`).
    Bridge,
    /// No delivery between siblings (macvlan `private`, ipvlan `private`).
    Private,
    /// Siblings only through an external hairpin, which `lan` does not do
    /// (macvlan `vepa`, ipvlan `vepa`).
    Vepa,
    /// macvlan `passthru`: the child owns the parent (one child).
    Passthru,
}

/// What hangs off a machine's parent link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// Nothing special (externals).
    None,
    /// A machine's host stack: the parent of `group`'s children.
    Parent {
        /// The machine (sibling group).
        group: u16,
        /// Its uplink MAC (shared by its ipvlan children).
        mac: MacAddr,
        /// Its uplink address.
        ip: Ipv4Addr,
    },
    /// A macvlan child of `group`'s parent.
    Macvlan {
        /// The machine (sibling group).
        group: u16,
        /// Its mode.
        mode: Siblings,
    },
    /// An ipvlan child of `group`'s parent, with the parent's MAC.
    Ipvlan {
        /// The machine (sibling group).
        group: u16,
        /// The child's address.
        ip: Ipv4Addr,
        /// Its IPv6 address (IV-12: dual stack in l2 and l3).
        ip6: Option<Ipv6Addr>,
        /// `l3`/`l3s` (else `l2`).
        l3: bool,
        /// Its flag.
        flag: Siblings,
    },
}

/// One port of the VLAN-aware domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanPort {
    /// Access or trunk.
    pub mode: VlanMode,
    /// Parent, child or neither.
    pub attach: Attachment,
}

impl VlanPort {
    /// An untagged lan port with nothing attached.
    pub const PLAIN: VlanPort = VlanPort {
        mode: VlanMode::Access(0),
        attach: Attachment::None,
    };

    fn untagged_vid(&self) -> u16 {
        match self.mode {
            VlanMode::Access(v) | VlanMode::Trunk { native: v } => v,
        }
    }
}

/// The VLAN, macvlan and ipvlan configuration of one domain (`lan`).
#[derive(Clone, Debug)]
pub struct VlanConfig {
    /// The VLAN-aware domain.
    pub domain: DomainId,
    /// Its ports that are not plain untagged access ports.
    pub ports: Vec<(PortId, VlanPort)>,
    /// VLANs the lan carries besides those of its access ports.
    pub vids: Vec<u16>,
}

impl Default for VlanConfig {
    /// Domain 0 (the userspace backend's `lan`), no ports, no VLANs.
    fn default() -> Self {
        VlanConfig {
            domain: DomainId(0),
            ports: Vec::new(),
            vids: Vec::new(),
        }
    }
}

/// The data-path state built from a [`VlanConfig`].
#[derive(Debug)]
pub(crate) struct VlanState {
    pub(crate) domain: DomainId,
    ports: Vec<VlanPort>,
    known: Box<[u64; 64]>,
    /// Parents: (group, MAC key, port, address).
    parents: Vec<(u16, u64, PortId, Ipv4Addr)>,
    /// ipvlan children: (group, VLAN, address, port), one entry per
    /// address family.
    ipvlan: Vec<(u16, u16, IpAddr, PortId)>,
}

impl VlanState {
    pub(crate) fn new(
        cfg: &VlanConfig,
        nports: usize,
        port_domain: impl Fn(PortId) -> Option<DomainId>,
    ) -> Result<VlanState, EngineError> {
        let mut st = VlanState {
            domain: cfg.domain,
            ports: vec![VlanPort::PLAIN; nports],
            known: Box::new([0; 64]),
            parents: Vec::new(),
            ipvlan: Vec::new(),
        };
        let bad = |port: PortId, why: String| EngineError::BadVlan { port: port.0, why };
        for &v in &cfg.vids {
            if v == 0 || v > MAX_VID {
                return Err(bad(PortId(0), format!("VLAN id {v} is not in 1..=4094")));
            }
            st.set_known(v);
        }
        for &(p, vp) in &cfg.ports {
            if port_domain(p) != Some(cfg.domain) {
                return Err(bad(p, format!("not a port of domain {}", cfg.domain.0)));
            }
            let v = vp.untagged_vid();
            if v > MAX_VID {
                return Err(bad(p, format!("VLAN id {v} is not in 0..=4094")));
            }
            if let VlanMode::Access(v) = vp.mode
                && v != 0
            {
                st.set_known(v);
            }
            match vp.attach {
                Attachment::Parent { group, mac, ip } => {
                    st.parents.push((group, mac_key(&mac.0), p, ip));
                }
                Attachment::Ipvlan { group, ip, ip6, .. } => {
                    st.ipvlan.push((group, v, IpAddr::V4(ip), p));
                    if let Some(a) = ip6 {
                        st.ipvlan.push((group, v, IpAddr::V6(a), p));
                    }
                }
                _ => {}
            }
            st.ports[usize::from(p.0)] = vp;
        }
        Ok(st)
    }

    fn set_known(&mut self, v: u16) {
        self.known[usize::from(v / 64)] |= 1 << (v % 64);
    }

    /// Whether the lan carries VLAN `v` (0, the untagged lan, always).
    pub(crate) fn is_known(&self, v: u16) -> bool {
        v == 0 || (v <= MAX_VID && self.known[usize::from(v / 64)] & (1 << (v % 64)) != 0)
    }

    fn port(&self, p: PortId) -> VlanPort {
        self.ports
            .get(usize::from(p.0))
            .copied()
            .unwrap_or(VlanPort::PLAIN)
    }

    /// Whether port `p` is on VLAN `v`.
    fn carries(&self, p: PortId, v: u16) -> bool {
        match self.port(p).mode {
            VlanMode::Access(a) => a == v,
            VlanMode::Trunk { native } => v == native || self.is_known(v),
        }
    }

    /// Whether the router's ARP requests (untagged lan) may go to `p`.
    pub(crate) fn takes_router_arp(&self, p: PortId) -> bool {
        let vp = self.port(p);
        vp.untagged_vid() == 0 && !matches!(vp.attach, Attachment::Ipvlan { .. })
    }

    /// The group whose parent owns `key`.
    fn parent_group(&self, key: u64) -> Option<(u16, PortId)> {
        self.parents
            .iter()
            .find(|&&(_, k, _, _)| k == key)
            .map(|&(g, _, p, _)| (g, p))
    }

    /// The ipvlan child of `group` on VLAN `vid` with address `ip`.
    fn ipvlan_child(&self, group: u16, vid: u16, ip: IpAddr) -> Option<PortId> {
        self.ipvlan
            .iter()
            .find(|&&(g, v, a, _)| g == group && v == vid && a == ip)
            .map(|&(.., p)| p)
    }
}

/// FDB key of `mac` on VLAN `vid`.
#[inline]
pub(crate) fn vlan_key(mac: &[u8], vid: u16) -> u64 {
    mac_key(mac) | (u64::from(vid & 0x0fff) << 48)
}

/// Inserts an 802.1Q tag with VLAN `vid` (priority 0) after the MACs and
/// moves the virtio-net offsets by 4 bytes. False when there is no
/// headroom or no Ethernet header (the packet is unchanged).
pub fn push_tag(pkt: &mut Packet, vid: u16) -> bool {
    if pkt.len() < ethernet::MACS_LEN || pkt.push_front(TAG_LEN).is_none() {
        return false;
    }
    let f = pkt.frame_mut();
    f.copy_within(TAG_LEN..TAG_LEN + ethernet::MACS_LEN, 0);
    vlan::Frame::new_unchecked(f).set_tag(vid);
    pkt.hdr.shift(TAG_LEN as i32);
    true
}

/// Removes the outer 802.1Q tag and returns its VLAN id, moving the
/// virtio-net offsets back by 4 bytes; `None` (packet unchanged) when the
/// frame is not 802.1Q-tagged or too short to hold the tag and a type.
pub fn pop_tag(pkt: &mut Packet) -> Option<u16> {
    let f = pkt.frame_mut();
    let tagged = vlan::Frame::new_checked(&*f)
        .ok()
        .filter(|t| t.is_tagged())?;
    let vid = tagged.vid();
    f.copy_within(0..ethernet::MACS_LEN, TAG_LEN);
    pkt.pull_front(TAG_LEN);
    pkt.hdr.shift(-(TAG_LEN as i32));
    Some(vid)
}

fn drop_frame(metrics: &mut Metrics, ingress: PortId, r: DropReason, out: &mut Vec<Action>) {
    trace!(port = ingress.0, reason = r.as_str(), "drop");
    metrics.drop(ingress, r);
    out.push(Action::Drop(r));
}

/// Why delivery from `a` to `b` (ports of one VLAN) is refused, if it is.
fn blocked(a: Attachment, b: Attachment) -> Option<DropReason> {
    use Attachment as A;
    let group = |x: A| match x {
        A::Parent { group, .. } | A::Macvlan { group, .. } | A::Ipvlan { group, .. } => Some(group),
        A::None => None,
    };
    let (Some(ga), Some(gb)) = (group(a), group(b)) else {
        return None;
    };
    if ga != gb {
        return None;
    }
    match (a, b) {
        (A::Parent { .. }, A::Parent { .. }) => None,
        (A::Parent { .. }, _) | (_, A::Parent { .. }) => Some(DropReason::ParentIsolation),
        (A::Macvlan { mode: m1, .. }, A::Macvlan { mode: m2, .. }) => (m1 != Siblings::Bridge
            || m2 != Siblings::Bridge)
            .then_some(DropReason::SiblingIsolation),
        (A::Ipvlan { flag, .. }, A::Ipvlan { .. }) => {
            (flag != Siblings::Bridge).then_some(DropReason::SiblingIsolation)
        }
        // A macvlan child and an ipvlan child of one link cannot coexist;
        // treat them as strangers on the wire (no hairpin).
        _ => Some(DropReason::SiblingIsolation),
    }
}

/// Sends the frame (untagged in `pkt`, on VLAN `vid`) out of `to`: as is
/// when `to` takes it untagged, else a tagged copy.
fn egress(
    st: &VlanState,
    metrics: &mut Metrics,
    to: PortId,
    vid: u16,
    pkt: &Packet,
    out: &mut Vec<Action>,
) {
    if st.port(to).untagged_vid() == vid {
        metrics.tx(to, pkt.len());
        out.push(Action::Forward(to));
        return;
    }
    let mut p = Packet::from_frame(pkt.hdr, pkt.frame());
    if push_tag(&mut p, vid) {
        metrics.tx(to, p.len());
        out.push(Action::Emit(to, p));
    }
}

/// The IPv4 destination or ARP target address of an untagged frame.
fn l3_target(frame: &[u8]) -> Option<(IpAddr, bool)> {
    match ethernet::ethertype(frame) {
        EtherType::IPV4 if frame.len() >= ETH_HDR_LEN + ipv4::HEADER_LEN => {
            let ip = ipv4::Packet::new_unchecked(&frame[ETH_HDR_LEN..]);
            Some((IpAddr::V4(ip.dst_addr()), false))
        }
        EtherType::ARP => {
            let a = ArpRepr::parse(frame.get(ETH_HDR_LEN..)?)?;
            Some((IpAddr::V4(Ipv4Addr::from(a.tpa)), true))
        }
        // IPv6: a Neighbour Solicitation is ND's ARP request (its target),
        // anything else goes by destination address.
        EtherType::IPV6 => match super::nd::ns_target(frame) {
            Some(t) => Some((IpAddr::V6(t), true)),
            None => super::nd::dst6(frame).map(|d| (IpAddr::V6(d), false)),
        },
        _ => None,
    }
}

/// The machines' routers, offered the frames of the untagged lan.
#[derive(Debug)]
pub(crate) struct Routers<'a> {
    /// IPv4.
    pub(crate) v4: Option<&'a mut Router>,
    /// IPv6.
    pub(crate) v6: Option<&'a mut Router6>,
}

/// An ipvlan child, as [`Attachment::Ipvlan`] describes it.
#[derive(Clone, Copy, Debug)]
struct IpvlanChild {
    group: u16,
    ip: Ipv4Addr,
    ip6: Option<Ipv6Addr>,
    l3: bool,
    flag: Siblings,
}

/// One frame on the VLAN-aware domain `d` (its length already checked
/// against an Ethernet header); sets `cx.vid`.
pub(crate) fn handle(
    st: &VlanState,
    d: &mut Domain,
    metrics: &mut Metrics,
    mut routers: Routers<'_>,
    cx: &mut FrameCx<'_>,
) {
    let (now, ingress) = (cx.now, cx.ingress);
    let (pkt, out) = (&mut *cx.pkt, &mut *cx.out);
    let vp = st.port(ingress);
    // 1. Classify: which VLAN, tag popped.
    let et = ethernet::ethertype(pkt.frame());
    let vid = if et == EtherType::VLAN {
        let VlanMode::Trunk { native } = vp.mode else {
            return drop_frame(metrics, ingress, DropReason::VlanNotConfigured, out);
        };
        let Some(vid) = pop_tag(pkt) else {
            return drop_frame(metrics, ingress, DropReason::Malformed, out);
        };
        if vid != native && (vid == 0 || !st.is_known(vid)) {
            return drop_frame(metrics, ingress, DropReason::VlanUnknown, out);
        }
        vid
    } else if et == EtherType::QINQ {
        return drop_frame(metrics, ingress, DropReason::VlanNotConfigured, out);
    } else {
        vp.untagged_vid()
    };
    cx.vid = vid;
    metrics.note(|| {
        super::trace::TraceEvent::Note(format!(
            "vlan: on VLAN {vid} ({})",
            if et == EtherType::VLAN {
                "tag popped"
            } else {
                "untagged port"
            }
        ))
    });
    let frame = pkt.frame();
    let inner = ethernet::ethertype(frame);
    if inner == EtherType::VLAN || inner == EtherType::QINQ {
        return drop_frame(metrics, ingress, DropReason::VlanNotConfigured, out);
    }
    // 2. Source checks and learning (ipvlan children share the parent MAC:
    // never learned).
    let eth = ethernet::Frame::new_unchecked(frame);
    let src = eth.src();
    if eth.src_is_multicast() {
        return drop_frame(metrics, ingress, DropReason::MulticastSource, out);
    }
    if mac_key(&src) == 0 {
        return drop_frame(metrics, ingress, DropReason::ZeroSource, out);
    }
    if let Attachment::Ipvlan {
        group,
        ip,
        ip6,
        l3,
        flag,
    } = vp.attach
    {
        let child = IpvlanChild {
            group,
            ip,
            ip6,
            l3,
            flag,
        };
        return from_ipvlan(st, d, metrics, routers, cx, child);
    }
    let (learned, expired) = d.fdb.learn(vlan_key(&src, vid), ingress, now);
    if learned != Learned::Refreshed {
        let c = metrics.fdb_mut(d.id);
        c.expired += expired as u64;
        match learned {
            Learned::New => c.learned += 1,
            Learned::Moved => c.moved += 1,
            Learned::Full => c.full += 1,
            Learned::Refreshed => {}
        }
    }

    // 3. Destination.
    let dst = eth.dst();
    let unicast = !eth.dst_is_multicast();
    let mut found = None;
    if unicast {
        let dkey = mac_key(&dst);
        if let Some((g, parent)) = st.parent_group(dkey) {
            // For a machine's MAC: one of its ipvlan children (by IP) …
            if let Some((ip, _)) = l3_target(frame)
                && let Some(child) = st.ipvlan_child(g, vid, ip)
            {
                if let Some(r) = blocked(vp.attach, st.port(child).attach) {
                    return drop_frame(metrics, ingress, r, out);
                }
                return egress(st, metrics, child, vid, pkt, out);
            }
            // … or its host stack, which its own children never reach.
            if vid == st.port(parent).untagged_vid()
                && let Some(r) = blocked(vp.attach, st.port(parent).attach)
            {
                return drop_frame(metrics, ingress, r, out);
            }
        }
        let (to, expired) = d.fdb.lookup(vlan_key(&dst, vid), now);
        if expired {
            metrics.fdb_mut(d.id).expired += 1;
        }
        if let Some(to) = to
            && let Some(r) = blocked(vp.attach, st.port(to).attach)
        {
            return drop_frame(metrics, ingress, r, out);
        }
        found = to;
    }
    // Routing and NAT live on the untagged lan only.
    if vid == 0 && route_both(&mut routers, cx, metrics) {
        return;
    }
    let (pkt, out) = (&*cx.pkt, &mut *cx.out);
    if let Some(to) = found {
        if to == ingress {
            return drop_frame(metrics, ingress, DropReason::SamePort, out);
        }
        return egress(st, metrics, to, vid, pkt, out);
    }
    flood(st, d, metrics, ingress, vid, pkt, out);
}

/// Floods a frame of VLAN `vid` to every other port of that VLAN that may
/// have it. ipvlan children only take broadcasts (`l2`), and of ARP only a
/// request for their own address.
fn flood(
    st: &VlanState,
    d: &Domain,
    metrics: &mut Metrics,
    ingress: PortId,
    vid: u16,
    pkt: &Packet,
    out: &mut Vec<Action>,
) {
    let from = st.port(ingress).attach;
    let frame = pkt.frame();
    let bcast = ethernet::Frame::new_unchecked(frame).dst_is_multicast();
    let target = l3_target(frame);
    let mut sent = false;
    let mut isolated = None;
    for &(p, _) in &d.members {
        if p == ingress || !st.carries(p, vid) {
            continue;
        }
        let to = st.port(p).attach;
        if let Some(r) = blocked(from, to) {
            isolated = Some(r);
            continue;
        }
        if let Attachment::Ipvlan { ip, ip6, l3, .. } = to {
            let wanted = !l3
                && bcast
                && match target {
                    Some((t, true)) => t == IpAddr::V4(ip) || ip6.is_some_and(|a| t == a),
                    _ => true,
                };
            if !wanted {
                continue;
            }
        }
        egress(st, metrics, p, vid, pkt, out);
        sent = true;
    }
    if !sent {
        drop_frame(
            metrics,
            ingress,
            isolated.unwrap_or(DropReason::NoEgressPort),
            out,
        );
    }
}

/// A frame from an ipvlan child (source MAC: its parent's), on VLAN
/// `cx.vid`.
fn from_ipvlan(
    st: &VlanState,
    d: &mut Domain,
    metrics: &mut Metrics,
    mut routers: Routers<'_>,
    cx: &mut FrameCx<'_>,
    child: IpvlanChild,
) {
    let (now, ingress, vid) = (cx.now, cx.ingress, cx.vid);
    let IpvlanChild {
        group,
        ip: own_ip,
        ip6: own_ip6,
        l3,
        flag,
    } = child;
    let (pkt, out) = (&*cx.pkt, &mut *cx.out);
    let frame = pkt.frame();
    let eth = ethernet::Frame::new_unchecked(frame);
    let dst = eth.dst();
    let target = l3_target(frame);
    let parent_key = mac_key(&eth.src());
    // ARP requests and Neighbour Solicitations: l3 children get the parent
    // MAC for any address (they never resolve on the wire, IV-5); l2
    // children for a sibling (what the sibling would answer).
    if let Some((tpa, true)) = target {
        let sibling = st.ipvlan_child(group, vid, tpa).filter(|&p| p != ingress);
        let own = tpa == IpAddr::V4(own_ip) || own_ip6.is_some_and(|a| tpa == a);
        let answer = if l3 {
            !own
        } else {
            sibling.is_some() && flag == Siblings::Bridge
        };
        let mac = eth.src();
        let reply = match tpa {
            _ if !answer => None,
            IpAddr::V4(t) => ArpRepr::parse(&frame[ETH_HDR_LEN..])
                .filter(|r| r.op == arp::REQUEST && frame.len() >= ETH_HDR_LEN + arp::PACKET_LEN)
                .and_then(|_| {
                    let gw = Gateway {
                        ip: t,
                        ip6: None,
                        mac: MacAddr(mac),
                    };
                    super::gateway::arp_reply(frame, &gw)
                }),
            IpAddr::V6(t) => super::nd::na_as(frame, t, MacAddr(mac), false),
        };
        if let Some(p) = reply {
            metrics.tx(ingress, p.len());
            out.push(Action::Emit(ingress, p));
            return;
        }
        if l3 {
            return drop_frame(metrics, ingress, DropReason::IpvlanL3Broadcast, out);
        }
    }
    if eth.dst_is_multicast() {
        if l3 {
            return drop_frame(metrics, ingress, DropReason::IpvlanL3Broadcast, out);
        }
        return flood(st, d, metrics, ingress, vid, pkt, out);
    }
    if mac_key(&dst) == parent_key {
        // To a sibling (demultiplexed by IP), else the host stack (IV-8).
        if let Some((ip, _)) = target
            && let Some(sib) = st.ipvlan_child(group, vid, ip)
            && sib != ingress
        {
            if flag != Siblings::Bridge {
                return drop_frame(metrics, ingress, DropReason::SiblingIsolation, out);
            }
            return egress(st, metrics, sib, vid, pkt, out);
        }
        if l3 && target.is_some_and(|(ip, _)| !st.parents_own(group, ip)) {
            return drop_frame(metrics, ingress, DropReason::IpvlanL3Egress, out);
        }
        return drop_frame(metrics, ingress, DropReason::ParentIsolation, out);
    }
    if l3 {
        return drop_frame(metrics, ingress, DropReason::IpvlanL3Egress, out);
    }
    // Another machine's host stack: its inbound path (published ports,
    // conntrack), as for any lan host.
    if vid == 0 && route_both(&mut routers, cx, metrics) {
        return;
    }
    let (pkt, out) = (&*cx.pkt, &mut *cx.out);
    let frame = pkt.frame();
    let dst = ethernet::Frame::new_unchecked(frame).dst();
    let (to, expired) = d.fdb.lookup(vlan_key(&dst, vid), now);
    if expired {
        metrics.fdb_mut(d.id).expired += 1;
    }
    match to {
        Some(to) if to == ingress => drop_frame(metrics, ingress, DropReason::SamePort, out),
        Some(to) => match blocked(st.port(ingress).attach, st.port(to).attach) {
            Some(r) => drop_frame(metrics, ingress, r, out),
            None => egress(st, metrics, to, vid, pkt, out),
        },
        None => flood(st, d, metrics, ingress, vid, pkt, out),
    }
}

impl VlanState {
    /// Whether `ip` is the uplink address of `group`'s host stack.
    fn parents_own(&self, group: u16, ip: IpAddr) -> bool {
        self.parents
            .iter()
            .any(|&(g, _, _, a)| g == group && ip == a)
    }
}

/// Offers the frame to the IPv4 router, then the IPv6 one; true when one
/// took it.
fn route_both(routers: &mut Routers<'_>, cx: &mut FrameCx<'_>, metrics: &mut Metrics) -> bool {
    if let Some(r) = routers.v4.as_deref_mut()
        && r.intercept(cx, metrics)
    {
        return true;
    }
    routers
        .v6
        .as_deref_mut()
        .is_some_and(|r| r.intercept(cx, metrics))
}
