//! Reassembly of fragmented outer IPv4 packets at a VTEP.
//!
//! Linux's vxlan leaves the outer DF bit clear, so an encapsulated packet
//! larger than the underlay MTU (an inner packet without DF that
//! [`super::pmtu`] does not answer) is fragmented by IP on its way out and
//! put back together by the receiving host before its VXLAN socket sees
//! it. The engine does both ends: [`super::icmp::fragment`] on the way
//! out, [`Reassembly`] on the way in (RFC 791 with RFC 815's hole
//! bookkeeping reduced to sorted, non-overlapping pieces; overlapping
//! fragments are refused as Linux refuses them, RFC 5722).
//!
//! Bounded: at most [`MAX_PENDING`] packets wait at once, each at most
//! [`TIMEOUT`] (Linux's `ipfrag_time`, 30 s); the oldest is given up first.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::packet::{Packet, VnetHdr};
use crate::wire::ethernet::{self, EtherType, HEADER_LEN as ETH_HDR_LEN};
use crate::wire::ipv4;

/// Packets waiting for their fragments at once.
pub(crate) const MAX_PENDING: usize = 64;
/// How long a packet waits for its missing fragments.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest IPv4 packet.
const MAX_PACKET: usize = 65535;

type Key = (Ipv4Addr, Ipv4Addr, u16, u8);

#[derive(Debug)]
struct Pending {
    since: Instant,
    /// Ethernet and IPv4 header of the first fragment.
    head: Option<Vec<u8>>,
    /// (offset, payload), sorted by offset, not overlapping.
    pieces: Vec<(usize, Vec<u8>)>,
    /// The payload length, once the last fragment is in.
    total: Option<usize>,
}

/// Outcome of offering a frame to the reassembly.
#[derive(Debug)]
pub(crate) enum Offer {
    /// Not a fragment: use the frame as it is.
    Whole,
    /// A fragment, kept; the packet is not complete yet.
    Kept,
    /// The last missing fragment: the whole packet.
    Complete(Packet),
    /// A fragment that cannot be used (overlapping, too long, malformed).
    Refused,
}

/// Fragments of outer packets being put together.
#[derive(Debug, Default)]
pub(crate) struct Reassembly {
    pending: HashMap<Key, Pending>,
    /// Packets given up (timeout or table full).
    pub(crate) expired: u64,
}

/// Whether the IPv4 frame `f` is a fragment (MF set or an offset).
pub(crate) fn is_fragment(f: &[u8]) -> bool {
    f.len() >= ETH_HDR_LEN + ipv4::HEADER_LEN
        && ethernet::ethertype(f) == EtherType::IPV4
        && ipv4::Packet::new_unchecked(&f[ETH_HDR_LEN..]).is_fragment()
}

impl Reassembly {
    /// Offers the IPv4 frame `f` received at `now`.
    pub(crate) fn offer(&mut self, now: Instant, f: &[u8]) -> Offer {
        if !is_fragment(f) {
            return Offer::Whole;
        }
        let ip = ipv4::Packet::new_unchecked(&f[ETH_HDR_LEN..]);
        let ihl = ip.header_len();
        let total = usize::from(ip.total_len());
        // The version is not checked: the EtherType said IPv4.
        if ihl < ipv4::HEADER_LEN || total < ihl || ip.into_inner().len() < total {
            return Offer::Refused;
        }
        let off = ip.frag_offset();
        let more = ip.more_frags();
        let data = &ip.into_inner()[ihl..total];
        if off + data.len() > MAX_PACKET - ihl || (more && !data.len().is_multiple_of(8)) {
            return Offer::Refused;
        }
        let key = (ip.src_addr(), ip.dst_addr(), ip.ident(), ip.protocol());
        self.expire(now);
        if !self.pending.contains_key(&key) && self.pending.len() >= MAX_PENDING {
            self.give_up_oldest();
        }
        let p = self.pending.entry(key).or_insert_with(|| Pending {
            since: now,
            head: None,
            pieces: Vec::new(),
            total: None,
        });
        let at = p.pieces.partition_point(|(o, _)| *o < off);
        let overlaps_before = at > 0 && {
            let (o, d) = &p.pieces[at - 1];
            o + d.len() > off
        };
        let overlaps_after = p.pieces.get(at).is_some_and(|(o, _)| *o < off + data.len());
        let end = off + data.len();
        let bad_end = match (more, p.total) {
            (false, Some(t)) => t != end,
            (false, None) => p.pieces.last().is_some_and(|(o, d)| o + d.len() > end),
            (true, Some(t)) => end > t,
            (true, None) => false,
        };
        if overlaps_before || overlaps_after || bad_end {
            self.pending.remove(&key);
            return Offer::Refused;
        }
        p.pieces.insert(at, (off, data.to_vec()));
        if !more {
            p.total = Some(end);
        }
        if off == 0 {
            p.head = Some(f[..ETH_HDR_LEN + ihl].to_vec());
        }
        let complete = p.total.is_some_and(|t| {
            p.head.is_some()
                && p.pieces
                    .iter()
                    .try_fold(0, |next, (o, d)| (*o == next).then(|| o + d.len()))
                    == Some(t)
        });
        if !complete {
            return Offer::Kept;
        }
        let Some(p) = self.pending.remove(&key) else {
            return Offer::Refused;
        };
        Offer::Complete(join(p))
    }

    /// Gives up every packet that waited longer than [`TIMEOUT`].
    pub(crate) fn expire(&mut self, now: Instant) {
        let before = self.pending.len();
        self.pending
            .retain(|_, p| now.saturating_duration_since(p.since) < TIMEOUT);
        self.expired += (before - self.pending.len()) as u64;
    }

    fn give_up_oldest(&mut self) {
        if let Some(k) = self
            .pending
            .iter()
            .min_by_key(|(_, p)| p.since)
            .map(|(k, _)| *k)
        {
            self.pending.remove(&k);
            self.expired += 1;
        }
    }

    /// Packets waiting for fragments.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// The whole packet: the first fragment's headers (fragment field cleared,
/// total length and checksum set) and every payload in order.
fn join(p: Pending) -> Packet {
    let head = p.head.unwrap_or_default();
    let len: usize = p.pieces.iter().map(|(_, d)| d.len()).sum();
    let mut out = Packet::zeroed(VnetHdr::default(), head.len() + len);
    let b = out.frame_mut();
    b[..head.len()].copy_from_slice(&head);
    let mut at = head.len();
    for (_, d) in &p.pieces {
        b[at..at + d.len()].copy_from_slice(d);
        at += d.len();
    }
    let ihl = head.len() - ETH_HDR_LEN;
    let mut ip = ipv4::Packet::new_unchecked(&mut b[ETH_HDR_LEN..ETH_HDR_LEN + ihl]);
    ip.set_total_len((ihl + len) as u16);
    ip.set_frag_field(0);
    ip.fill_checksum();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::flow::Ip4;
    use etherparse::{PacketBuilder, SlicedPacket};
    use proptest::prelude::*;

    fn udp(len: usize) -> Packet {
        let mut h = etherparse::Ipv4Header::new(
            0,
            64,
            etherparse::IpNumber::UDP,
            [192, 168, 0, 2],
            [192, 168, 0, 3],
        )
        .expect("header");
        h.dont_fragment = false;
        h.identification = 77;
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ip(etherparse::IpHeaders::Ipv4(h, Default::default()))
            .udp(50000, 4789);
        let payload: Vec<u8> = (0..len - 28).map(|i| i as u8).collect();
        let mut f = Vec::new();
        b.write(&mut f, &payload).expect("build");
        Packet::from_frame(VnetHdr::default(), &f)
    }

    fn pieces(p: &Packet, mtu: usize) -> Vec<Packet> {
        let ip = Ip4::parse(p.frame()).expect("ipv4");
        crate::engine::icmp::fragment(Packet::from_frame(p.hdr, p.frame()), &ip, mtu)
            .expect("fragments")
    }

    #[test]
    fn fragments_in_any_order_give_the_packet_back() {
        let whole = udp(1550);
        let mut parts = pieces(&whole, 1400);
        assert_eq!(parts.len(), 2);
        parts.reverse();
        let mut r = Reassembly::default();
        let now = Instant::now();
        assert!(matches!(r.offer(now, parts[0].frame()), Offer::Kept));
        let Offer::Complete(p) = r.offer(now, parts[1].frame()) else {
            panic!("not complete");
        };
        assert_eq!(p.frame(), whole.frame());
        assert_eq!(r.pending(), 0);
        SlicedPacket::from_ethernet(p.frame()).expect("parses");
    }

    #[test]
    fn a_whole_packet_passes_and_overlaps_are_refused() {
        let mut r = Reassembly::default();
        let now = Instant::now();
        assert!(matches!(r.offer(now, udp(200).frame()), Offer::Whole));
        let parts = pieces(&udp(3000), 1400);
        assert!(matches!(r.offer(now, parts[0].frame()), Offer::Kept));
        assert!(matches!(r.offer(now, parts[0].frame()), Offer::Refused));
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn waiting_is_bounded_in_time_and_number() {
        let mut r = Reassembly::default();
        let t0 = Instant::now();
        let parts = pieces(&udp(3000), 1400);
        r.offer(t0, parts[0].frame());
        r.expire(t0 + TIMEOUT);
        assert_eq!((r.pending(), r.expired), (0, 1));
        for id in 0..(MAX_PENDING as u16 + 5) {
            let mut f = parts[0].frame().to_vec();
            let mut ip = ipv4::Packet::new_unchecked(&mut f[ETH_HDR_LEN..]);
            ip.set_ident(id);
            ip.set_checksum(0);
            r.offer(t0, &f);
        }
        assert_eq!(r.pending(), MAX_PENDING);
    }

    proptest! {
        #[test]
        fn any_split_any_order_round_trips(len in 29usize..9000, mtu in 68usize..1500, seed in any::<u64>()) {
            let whole = udp(len);
            let mut parts = pieces(&whole, mtu);
            // A deterministic shuffle.
            let mut s = seed;
            for i in (1..parts.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                parts.swap(i, (s >> 33) as usize % (i + 1));
            }
            let mut r = Reassembly::default();
            let now = Instant::now();
            let mut got = None;
            for p in &parts {
                match r.offer(now, p.frame()) {
                    Offer::Complete(w) => got = Some(w),
                    Offer::Whole => got = Some(Packet::from_frame(p.hdr, p.frame())),
                    Offer::Kept => {}
                    Offer::Refused => prop_assert!(false, "refused"),
                }
            }
            let got = got.expect("complete");
            prop_assert_eq!(got.frame(), whole.frame());
        }
    }
}
