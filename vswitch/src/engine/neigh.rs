//! Neighbours of one engine-owned address (an uplink on `lan`, a gateway on
//! a bridge network): IPv4 → (MAC, port), learned from every ARP packet seen
//! on the segment or configured statically, and a small bounded queue of
//! packets waiting for a resolution.
//!
//! Keeping the port beside the MAC lets the routed path deliver without an
//! FDB lookup; an ARP packet refreshes both.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::packet::{Packet, VnetHdr};
use super::{MacAddr, PortId};
use crate::wire::arp::{self, ArpRepr};
use crate::wire::ethernet::{self, EtherType, HEADER_LEN as ETH_HDR_LEN};

/// How long a learned neighbour is trusted without a new ARP packet.
pub(crate) const NEIGH_TTL: Duration = Duration::from_secs(300);
/// How long a packet may wait for a resolution.
pub(crate) const PENDING_TTL: Duration = Duration::from_secs(3);
/// Least time between two ARP requests for one address.
pub(crate) const REQUEST_EVERY: Duration = Duration::from_secs(1);
/// Most learned neighbours per address.
const MAX_NEIGHBOURS: usize = 1024;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub(crate) mac: MacAddr,
    pub(crate) port: PortId,
    /// When last confirmed; `None` for a static entry (never ages).
    seen: Option<Instant>,
}

/// True for a static entry or a learned one younger than [`NEIGH_TTL`].
fn fresh(e: &Entry, now: Instant) -> bool {
    e.seen
        .is_none_or(|t| now.saturating_duration_since(t) < NEIGH_TTL)
}

/// A packet waiting for its next hop's MAC.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) next_hop: Ipv4Addr,
    pub(crate) pkt: Packet,
    pub(crate) ingress: PortId,
    since: Instant,
}

/// What queueing a packet did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Queued; an ARP request must be sent now.
    Request,
    /// Queued behind an earlier request.
    Waiting,
    /// The queue is full: dropped.
    Full,
}

/// One address's neighbour table.
#[derive(Debug)]
pub(crate) struct Neighbours {
    /// The address and MAC the engine speaks with.
    pub(crate) ip: Ipv4Addr,
    pub(crate) mac: MacAddr,
    entries: HashMap<Ipv4Addr, Entry>,
    pending: VecDeque<Pending>,
    asked: HashMap<Ipv4Addr, Instant>,
    queue_cap: usize,
}

impl Neighbours {
    pub(crate) fn new(ip: Ipv4Addr, mac: MacAddr, queue_cap: usize) -> Neighbours {
        Neighbours {
            ip,
            mac,
            entries: HashMap::new(),
            pending: VecDeque::new(),
            asked: HashMap::new(),
            queue_cap,
        }
    }

    /// A static entry (a container's own address and port).
    pub(crate) fn add_static(&mut self, ip: Ipv4Addr, mac: MacAddr, port: PortId) {
        self.entries.insert(
            ip,
            Entry {
                mac,
                port,
                seen: None,
            },
        );
    }

    /// The MAC and port of `ip`, if known and fresh.
    #[inline]
    pub(crate) fn lookup(&self, ip: Ipv4Addr, now: Instant) -> Option<Entry> {
        let e = self.entries.get(&ip)?;
        fresh(e, now).then_some(*e)
    }

    /// Learns `ip` at `mac` behind `port`; returns the packets that were
    /// waiting for it (their Ethernet destination is not yet set).
    pub(crate) fn learn(
        &mut self,
        ip: Ipv4Addr,
        mac: MacAddr,
        port: PortId,
        now: Instant,
    ) -> Vec<Pending> {
        if ip == self.ip || ip.is_unspecified() || mac.is_multicast() {
            return Vec::new();
        }
        let room = self.entries.len() < MAX_NEIGHBOURS;
        match self.entries.get_mut(&ip) {
            Some(Entry { seen: None, .. }) => {}
            Some(e) => {
                e.mac = mac;
                e.port = port;
                e.seen = Some(now);
            }
            None if room => {
                self.entries.insert(
                    ip,
                    Entry {
                        mac,
                        port,
                        seen: Some(now),
                    },
                );
            }
            None => {}
        }
        self.asked.remove(&ip);
        if !self.pending.iter().any(|p| p.next_hop == ip) {
            return Vec::new();
        }
        let (ready, rest): (VecDeque<_>, VecDeque<_>) =
            self.pending.drain(..).partition(|p| p.next_hop == ip);
        self.pending = rest;
        ready.into()
    }

    /// Queues a packet for `next_hop`.
    pub(crate) fn queue(
        &mut self,
        next_hop: Ipv4Addr,
        pkt: Packet,
        ingress: PortId,
        now: Instant,
    ) -> Queued {
        if self.pending.len() >= self.queue_cap {
            return Queued::Full;
        }
        self.pending.push_back(Pending {
            next_hop,
            pkt,
            ingress,
            since: now,
        });
        match self.asked.get(&next_hop) {
            Some(&t) if now.saturating_duration_since(t) < REQUEST_EVERY => Queued::Waiting,
            _ => {
                self.asked.insert(next_hop, now);
                Queued::Request
            }
        }
    }

    /// Packets that waited too long (dropped by the caller, reason
    /// `neighbour-unresolved`), and stale learned entries forgotten.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Pending> {
        self.entries.retain(|_, e| fresh(e, now));
        self.asked
            .retain(|_, t| now.saturating_duration_since(*t) < PENDING_TTL);
        if !self
            .pending
            .iter()
            .any(|p| now.saturating_duration_since(p.since) >= PENDING_TTL)
        {
            return Vec::new();
        }
        let (old, rest): (VecDeque<_>, VecDeque<_>) = self
            .pending
            .drain(..)
            .partition(|p| now.saturating_duration_since(p.since) >= PENDING_TTL);
        self.pending = rest;
        old.into()
    }

    /// When [`Neighbours::expire`] next has a packet to drop.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.pending.front().map(|p| p.since + PENDING_TTL)
    }

    /// A broadcast ARP request for `target` from this address.
    pub(crate) fn request(&self, target: Ipv4Addr) -> Packet {
        let mut p = Packet::zeroed(VnetHdr::default(), ETH_HDR_LEN + arp::PACKET_LEN);
        let b = p.frame_mut();
        ethernet::emit(b, [0xff; 6], self.mac.0, EtherType::ARP);
        ArpRepr {
            op: arp::REQUEST,
            sha: self.mac.0,
            spa: self.ip.octets(),
            tha: [0; 6],
            tpa: target.octets(),
        }
        .emit(&mut b[ETH_HDR_LEN..]);
        p
    }
}
