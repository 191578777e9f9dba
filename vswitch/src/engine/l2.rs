//! One L2 domain: learning, forwarding, flooding, `icc`, and the hand-off
//! to the gateway.
//!
//! A frame's way through a domain (the ingress port is already known and
//! counted, and the frame is at least an Ethernet header long):
//!
//! 1. source checks: group or zero source, VLAN tag, gateway MAC spoofing;
//! 2. learn the source;
//! 3. destination: the gateway MAC (answer ICMP/ARP, else the host port),
//!    a known unicast (one port), or anything else (flood; ARP requests for
//!    the gateway from containers are answered instead).
//!
//! Every port a frame can go to is a member of the ingress port's domain,
//! so frames never cross domains (BR-12).

use std::time::Instant;

use tracing::trace;

use super::fdb::{Fdb, Learned, mac_key};
use super::gateway::{self, Echo};
use super::metrics::Metrics;
use super::nd;
use super::pipeline::FrameCx;
use super::trace::TraceEvent;
use super::{Action, DomainId, DropReason, Gateway, Packet, PortId, PortRole};
use crate::wire::ethernet::{self, EtherType};

/// A key no MAC can have (MACs use 48 bits): "this domain has no gateway".
const NO_KEY: u64 = u64::MAX;

/// A port as the forwarding path needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Port {
    pub(crate) domain: DomainId,
    pub(crate) role: PortRole,
}

/// One L2 domain's state.
#[derive(Debug)]
pub(crate) struct Domain {
    pub(crate) id: DomainId,
    pub(crate) gateway: Option<Gateway>,
    gw_key: u64,
    pub(crate) host_port: Option<PortId>,
    pub(crate) icc: bool,
    /// Member ports with their roles, in port order (the flood order).
    pub(crate) members: Vec<(PortId, PortRole)>,
    pub(crate) fdb: Fdb,
    /// The last MAC that moved to another port, until the engine takes it.
    pub(crate) moved: Option<u64>,
}

impl Domain {
    pub(crate) fn new(id: DomainId, gateway: Option<Gateway>, icc: bool, fdb: Fdb) -> Domain {
        Domain {
            id,
            gateway,
            gw_key: gateway.map_or(NO_KEY, |g| mac_key(&g.mac.0)),
            host_port: None,
            icc,
            members: Vec::new(),
            fdb,
            moved: None,
        }
    }

    /// The port a MAC maps to: the gateway's static entry or a learned one
    /// (without aging it out).
    pub(crate) fn peek(&self, key: u64) -> Option<PortId> {
        if key == self.gw_key {
            return self.host_port;
        }
        self.fdb.peek(key)
    }

    /// True when `icc = false` forbids delivery from `from` to `to`.
    #[inline]
    fn icc_blocks(&self, from: PortRole, to: PortRole) -> bool {
        !self.icc && from == PortRole::Container && to == PortRole::Container
    }
}

/// Records a drop: one reason, one counter, one action.
#[inline]
pub(crate) fn drop_frame(
    metrics: &mut Metrics,
    ingress: PortId,
    reason: DropReason,
    out: &mut Vec<Action>,
) {
    trace!(port = ingress.0, reason = reason.as_str(), "drop");
    metrics.drop(ingress, reason);
    out.push(Action::Drop(reason));
}

#[inline]
fn forward(metrics: &mut Metrics, to: PortId, len: usize, out: &mut Vec<Action>) {
    metrics.tx(to, len);
    out.push(Action::Forward(to));
}

fn emit(metrics: &mut Metrics, to: PortId, p: Packet, out: &mut Vec<Action>) {
    metrics.tx(to, p.len());
    out.push(Action::Emit(to, p));
}

/// Steps 1 and 2 for one frame (at least 14 bytes) received on
/// `cx.ingress`, a member of `d`: the source checks (false: dropped, with its reason in
/// `out`) and learning. Every frame passes here, routed or switched.
#[inline]
pub(crate) fn admit(d: &mut Domain, metrics: &mut Metrics, cx: &mut FrameCx<'_>) -> bool {
    let (now, ingress, role) = (cx.now, cx.ingress, cx.port.role);
    let out = &mut *cx.out;
    // The engine checked the frame holds an Ethernet header.
    let eth = ethernet::Frame::new_unchecked(cx.pkt.frame());

    // 1. Source checks.
    let src_key = mac_key(&eth.src());
    let et = eth.ethertype_raw();
    let reason = if eth.src_is_multicast() {
        Some(DropReason::MulticastSource)
    } else if src_key == 0 {
        Some(DropReason::ZeroSource)
    } else if et == EtherType::VLAN || et == EtherType::QINQ {
        Some(DropReason::VlanNotConfigured)
    } else if src_key == d.gw_key && role != PortRole::Host {
        Some(DropReason::SpoofedGatewayMac)
    } else {
        None
    };
    if let Some(r) = reason {
        drop_frame(metrics, ingress, r, out);
        return false;
    }

    // 2. Learn (the gateway MAC is static: never learned).
    if src_key != d.gw_key {
        let learned = learn(d, metrics, src_key, ingress, now);
        metrics.note(|| TraceEvent::Admit {
            domain: d.id,
            learned: matches!(learned, Learned::New | Learned::Moved),
        });
    }
    true
}

/// Learns MAC `key` on `port` at `now`, counting what changed. A MAC that
/// moved is kept in [`Domain::moved`] for the engine to read.
#[inline]
pub(crate) fn learn(
    d: &mut Domain,
    metrics: &mut Metrics,
    key: u64,
    port: PortId,
    now: Instant,
) -> Learned {
    let (learned, expired) = d.fdb.learn(key, port, now);
    if learned != Learned::Refreshed {
        let c = metrics.fdb_mut(d.id);
        c.expired += expired as u64;
        match learned {
            Learned::New => c.learned += 1,
            Learned::Moved => {
                c.moved += 1;
                d.moved = Some(key);
            }
            Learned::Full => c.full += 1,
            Learned::Refreshed => {}
        }
    }
    learned
}

/// Step 3 for a frame that [`admit`] let in: where it goes. `ports` is the
/// engine's port table (for egress roles). Returns the port when the frame
/// went to the one port its destination was learned on.
#[inline]
pub(crate) fn switch(
    d: &mut Domain,
    ports: &[Port],
    metrics: &mut Metrics,
    cx: &mut FrameCx<'_>,
) -> Option<PortId> {
    let (now, ingress, role) = (cx.now, cx.ingress, cx.port.role);
    let (pkt, out) = (&*cx.pkt, &mut *cx.out);
    let frame = pkt.frame();
    let len = frame.len();
    let eth = ethernet::Frame::new_unchecked(frame);
    let et = eth.ethertype_raw();

    // 3. Destination.
    let dst_key = mac_key(&eth.dst());
    if dst_key == d.gw_key {
        metrics.note(|| TraceEvent::Gateway { domain: d.id });
        to_gateway(d, metrics, ingress, role, pkt, out);
        return None;
    }
    if !eth.dst_is_multicast() {
        let (found, expired) = d.fdb.lookup(dst_key, now);
        if expired {
            metrics.fdb_mut(d.id).expired += 1;
        }
        if let Some(to) = found {
            metrics.note(|| TraceEvent::FdbHit {
                domain: d.id,
                port: to,
            });
            if to == ingress {
                drop_frame(metrics, ingress, DropReason::SamePort, out);
                return None;
            }
            if d.icc_blocks(role, ports[usize::from(to.0)].role) {
                drop_frame(metrics, ingress, DropReason::IccDisabled, out);
                return None;
            }
            forward(metrics, to, len, out);
            return Some(to);
        }
    } else if (et == EtherType::ARP || et == EtherType::IPV6)
        && role == PortRole::Container
        && let Some(gw) = d.gateway.as_ref()
        && let Some(reply) = if et == EtherType::ARP {
            gateway::arp_reply(frame, gw)
        } else {
            nd::na_reply(frame, gw)
        }
    {
        // A container resolving the gateway: answered here, not flooded.
        emit(metrics, ingress, reply, out);
        return None;
    }
    metrics.note(|| TraceEvent::Flood { domain: d.id });
    flood(d, metrics, ingress, role, len, out);
    None
}

/// A frame for the gateway MAC: ICMP echo and ARP for the gateway address
/// are answered; everything else belongs to the host stack (BR-16).
fn to_gateway(
    d: &Domain,
    metrics: &mut Metrics,
    ingress: PortId,
    role: PortRole,
    pkt: &Packet,
    out: &mut Vec<Action>,
) {
    let frame = pkt.frame();
    if role != PortRole::Host
        && let Some(gw) = d.gateway
    {
        match gateway::icmp_echo(frame, &pkt.hdr, &gw) {
            Echo::Reply(p) => return emit(metrics, ingress, p, out),
            Echo::BadChecksum => {
                return drop_frame(metrics, ingress, DropReason::BadChecksum, out);
            }
            Echo::NotMine => {}
        }
        if let Some(p) = gateway::arp_reply(frame, &gw) {
            return emit(metrics, ingress, p, out);
        }
        match nd::echo6(frame, &pkt.hdr, &gw) {
            nd::Echo6::Reply(p) => return emit(metrics, ingress, p, out),
            nd::Echo6::BadChecksum => {
                return drop_frame(metrics, ingress, DropReason::BadChecksum, out);
            }
            nd::Echo6::NotMine => {}
        }
        // A unicast solicitation (reachability confirmation) for gateway6.
        if let Some(p) = nd::na_reply(frame, &gw) {
            return emit(metrics, ingress, p, out);
        }
    }
    match d.host_port {
        None => drop_frame(metrics, ingress, DropReason::NoHostPort, out),
        Some(h) if h == ingress => drop_frame(metrics, ingress, DropReason::SamePort, out),
        Some(h) => forward(metrics, h, frame.len(), out),
    }
}

/// Sends the frame out of every other member port that `icc` allows.
#[inline]
fn flood(
    d: &Domain,
    metrics: &mut Metrics,
    ingress: PortId,
    role: PortRole,
    len: usize,
    out: &mut Vec<Action>,
) {
    let mut sent = false;
    let mut icc_skipped = false;
    out.reserve(d.members.len());
    for &(p, prole) in &d.members {
        if p == ingress {
            continue;
        }
        if d.icc_blocks(role, prole) {
            icc_skipped = true;
            continue;
        }
        forward(metrics, p, len, out);
        sent = true;
    }
    if !sent {
        let reason = if icc_skipped {
            DropReason::IccDisabled
        } else {
            DropReason::NoEgressPort
        };
        drop_frame(metrics, ingress, reason, out);
    }
}
