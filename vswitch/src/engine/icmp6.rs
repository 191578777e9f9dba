//! ICMPv6 errors the IPv6 router sends (RFC 4443): destination unreachable
//! (no route), packet too big (a link's or the overlay's MTU: IPv6 routers
//! never fragment) and time exceeded (hop limit), the counterparts of
//! [`super::icmp`]'s IPv4 errors.
//!
//! An error goes back to the offending frame's Ethernet source from the
//! router's address on that side, quoting as much of the packet as fits in
//! the minimum MTU (RFC 4443 §2.4 (c)).

use std::net::Ipv6Addr;

use super::gateway::GATEWAY_TTL;
use super::nd::icmpv6_frame;
use super::packet::Packet;
use crate::wire::ethernet::{self, EtherType, HEADER_LEN as ETH_HDR_LEN};
use crate::wire::{IpProtocol, icmpv6, ipv6, tcp, udp};

/// Destination unreachable (code 0: no route to destination).
pub(crate) const DEST_UNREACH: u8 = icmpv6::types::DEST_UNREACH;
/// Packet too big (the MTU in the 32-bit parameter).
pub(crate) const PACKET_TOO_BIG: u8 = icmpv6::types::PACKET_TOO_BIG;
/// Time exceeded (code 0: hop limit exceeded in transit).
pub(crate) const TIME_EXCEEDED: u8 = icmpv6::types::TIME_EXCEEDED;
/// Destination unreachable code: no route to destination.
pub(crate) const NO_ROUTE: u8 = 0;

/// IPv6's minimum link MTU: an error datagram never exceeds it.
pub(crate) const MIN_MTU: usize = 1280;
const IPV6_HDR: usize = ipv6::HEADER_LEN;

/// True when the router may answer the IPv6 packet in `frame` with an
/// error (RFC 4443 §2.4 (e)): never about an ICMPv6 error, nor a packet
/// from an unspecified, multicast or loopback source.
pub(crate) fn may_answer(frame: &[u8]) -> bool {
    if frame.len() < ETH_HDR_LEN + IPV6_HDR || ethernet::ethertype(frame) != EtherType::IPV6 {
        return false;
    }
    let h = ipv6::Packet::new_unchecked(&frame[ETH_HDR_LEN..]);
    let src = h.src_addr();
    let is_error = h.next_header() == IpProtocol::ICMPV6
        // The type byte alone decides (a message cut after it is still one).
        && h.into_inner()
            .get(IPV6_HDR)
            .is_some_and(|&t| icmpv6::is_error(t));
    !is_error && !src.is_unspecified() && !src.is_multicast() && !src.is_loopback()
}

/// The ICMPv6 error `typ`/`code` (with `param`: the MTU of a packet too
/// big) about the IPv6 packet in `frame`, from `src_ip`/`src_mac` back to
/// the frame's Ethernet source and the packet's source address.
pub(crate) fn error(
    frame: &[u8],
    typ: u8,
    code: u8,
    param: u32,
    src_ip: Ipv6Addr,
    src_mac: [u8; 6],
) -> Packet {
    let l3 = &frame[ETH_HDR_LEN..];
    let ip = ipv6::Packet::new_unchecked(l3);
    let total = (IPV6_HDR + usize::from(ip.payload_len())).min(l3.len());
    let quote = total.min(MIN_MTU - IPV6_HDR - icmpv6::HEADER_LEN);
    let mut msg = vec![0u8; icmpv6::HEADER_LEN + quote];
    let mut m = icmpv6::Packet::new_unchecked(&mut msg[..]);
    m.set_msg_type(typ);
    m.set_code(code);
    m.set_mtu(param);
    m.data_mut().copy_from_slice(&l3[..quote]);
    let asker = ethernet::Frame::new_unchecked(frame).src();
    icmpv6_frame(
        asker,
        src_mac,
        src_ip.octets(),
        ip.src(),
        0,
        GATEWAY_TTL,
        &msg,
    )
}

/// The network-layer length of one segment of a GSO IPv6 frame (or of the
/// whole packet when it is not one): what must fit the egress MTU.
pub(crate) fn wire_len(pkt: &Packet) -> usize {
    let f = pkt.frame();
    let Some(l3) = f.get(ETH_HDR_LEN..ETH_HDR_LEN + IPV6_HDR) else {
        return 0;
    };
    let l3 = ipv6::Packet::new_unchecked(l3);
    let whole = IPV6_HDR + usize::from(l3.payload_len());
    if !pkt.hdr.is_gso() {
        return whole;
    }
    let l4 = &f[ETH_HDR_LEN + IPV6_HDR..];
    // The data offset is read whenever the frame holds its byte.
    let l4_hdr = match l3.next_header() {
        IpProtocol::TCP if l4.len() > 12 => tcp::Packet::new_unchecked(l4).header_len(),
        _ => udp::HEADER_LEN,
    };
    whole.min(IPV6_HDR + l4_hdr + usize::from(pkt.hdr.gso_size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::packet::VnetHdr;
    use etherparse::{Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

    const SRC_MAC: [u8; 6] = [2, 0x42, 0xac, 0x1e, 0, 2];
    const GW_MAC: [u8; 6] = [2, 0x42, 0xac, 0x1e, 0, 1];

    fn udp6(src: &str, payload: usize) -> Vec<u8> {
        let a: Ipv6Addr = src.parse().unwrap();
        let b: Ipv6Addr = "2001:db8::80".parse().unwrap();
        let mut v = Vec::new();
        PacketBuilder::ethernet2(SRC_MAC, GW_MAC)
            .ipv6(a.octets(), b.octets(), 1)
            .udp(5000, 53)
            .write(&mut v, &vec![7u8; payload])
            .unwrap();
        v
    }

    /// The error as etherparse reads it, its checksum verified.
    fn parsed(p: &Packet) -> (Icmpv6Type, Vec<u8>, Ipv6Addr, Ipv6Addr, [u8; 6]) {
        let s = SlicedPacket::from_ethernet(p.frame()).unwrap();
        let Some(NetSlice::Ipv6(ip)) = &s.net else {
            panic!("not IPv6")
        };
        let h = ip.header();
        let Some(TransportSlice::Icmpv6(m)) = &s.transport else {
            panic!("not ICMPv6")
        };
        let want = m
            .header()
            .icmp_type
            .calc_checksum(h.source(), h.destination(), m.payload())
            .unwrap();
        assert_eq!(m.checksum(), want, "ICMPv6 checksum");
        assert!(p.len() - ETH_HDR_LEN <= MIN_MTU, "error fits 1280");
        (
            m.icmp_type(),
            m.payload().to_vec(),
            h.source_addr(),
            h.destination_addr(),
            p.frame()[0..6].try_into().unwrap(),
        )
    }

    /// V6-3's router answers as Linux's: a packet too big carries the MTU
    /// and quotes the packet from its IPv6 header on.
    #[test]
    fn packet_too_big_carries_mtu_and_quote() {
        let f = udp6("fd00:30::2", 100);
        let gw: Ipv6Addr = "fd00:30::1".parse().unwrap();
        let e = error(&f, PACKET_TOO_BIG, 0, 1400, gw, GW_MAC);
        let (t, quote, src, dst, dmac) = parsed(&e);
        assert_eq!(t, Icmpv6Type::PacketTooBig { mtu: 1400 });
        assert_eq!(quote, f[ETH_HDR_LEN..]);
        assert_eq!((src, dst), (gw, "fd00:30::2".parse().unwrap()));
        assert_eq!(dmac, SRC_MAC);
    }

    /// A large packet is quoted only as far as 1280 bytes allow.
    #[test]
    fn quote_is_cut_at_the_minimum_mtu() {
        let f = udp6("fd00:30::2", 4000);
        let gw: Ipv6Addr = "fd00:30::1".parse().unwrap();
        let e = error(&f, TIME_EXCEEDED, 0, 0, gw, GW_MAC);
        let (t, quote, ..) = parsed(&e);
        assert!(matches!(t, Icmpv6Type::TimeExceeded(_)));
        assert_eq!(quote.len(), MIN_MTU - 48);
        assert_eq!(e.len(), ETH_HDR_LEN + MIN_MTU);
    }

    /// No error about an error, nor to an unspecified or multicast source.
    #[test]
    fn never_about_errors_or_unanswerable_sources() {
        assert!(may_answer(&udp6("fd00:30::2", 10)));
        assert!(!may_answer(&udp6("::", 10)));
        assert!(!may_answer(&udp6("ff02::1", 10)));
        let gw: Ipv6Addr = "fd00:30::1".parse().unwrap();
        let e = error(
            &udp6("fd00:30::2", 10),
            DEST_UNREACH,
            NO_ROUTE,
            0,
            gw,
            GW_MAC,
        );
        assert!(!may_answer(e.frame()));
    }

    /// A GSO frame is measured by one segment, not the super-frame.
    #[test]
    fn gso_wire_len_is_one_segment() {
        let a: Ipv6Addr = "fd00:30::2".parse().unwrap();
        let mut v = Vec::new();
        PacketBuilder::ethernet2(SRC_MAC, GW_MAC)
            .ipv6(a.octets(), a.octets(), 64)
            .tcp(1, 2, 3, 4)
            .write(&mut v, &[0u8; 9000])
            .unwrap();
        let hdr = VnetHdr {
            gso_type: VnetHdr::GSO_TCPV6,
            gso_size: 1428,
            ..VnetHdr::default()
        };
        let p = Packet::from_frame(hdr, &v);
        assert_eq!(wire_len(&p), 40 + 20 + 1428);
        assert_eq!(wire_len(&Packet::from_frame(VnetHdr::default(), &v)), 9060);
    }
}
