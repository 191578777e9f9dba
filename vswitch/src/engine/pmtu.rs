//! Path MTU of the overlay's own encapsulation, as Linux's vxlan does it on
//! a bridged VTEP since 5.9 (`skb_tunnel_check_pmtu`, commit "vxlan:
//! Support for PMTU discovery on directly bridged links"): an inner packet
//! that no longer fits the underlay once the 50 bytes of VXLAN are added
//! (a smaller lan MTU, an MTU fault on the machine's uplink, BUG-7) is
//! answered, towards its sender and in the name of its destination, with
//! ICMP "fragmentation needed" (IPv4 with DF) or ICMPv6 "packet too big",
//! so the sender's TCP lowers its segment size instead of stalling. The
//! packet itself is dropped (`frag-needed`).
//!
//! What Linux answers is mirrored exactly (`iptunnel_pmtud_check_icmp{,v6}`
//! and `iptunnel_pmtud_build_icmp{,v6}` in net/ipv4/ip_tunnel_core.c): for
//! IPv4 only a packet whose fragment field is exactly DF, an inner MTU of
//! at least 576 and answerable addresses, quoting up to 548 bytes, TTL of
//! the offending packet, DF set, id and TOS 0; for IPv6 an inner MTU of at
//! least 1280, quoting up to 1232 bytes, hop limit of the offending packet.
//! Ethernet addresses are the offending frame's, swapped. Anything else
//! (no DF, a fragment, an MTU below the minimum) is sent on and the outer
//! packet is fragmented on the underlay ([`super::vxlan`]).

use super::nd::icmpv6_frame;
use super::packet::{Packet, VnetHdr};
use crate::wire::ethernet::{self, EtherType, HEADER_LEN as ETH_HDR_LEN};
use crate::wire::{IpProtocol, icmpv4, icmpv6, ipv4, ipv6, tcp, udp};

/// What the VTEP does with an inner frame, given the inner MTU.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// It fits (or is not IP): encapsulate it.
    Fits,
    /// Too big, and Linux would answer: send this error back, drop the frame.
    Answer(Packet),
    /// Too big, not answerable: encapsulate it; the outer packet is
    /// fragmented on the underlay.
    Oversize,
}

const IPPROTO_ICMP: u8 = IpProtocol::ICMP;
const IPPROTO_TCP: u8 = IpProtocol::TCP;
const IPV6_HDR: usize = ipv6::HEADER_LEN;
const IPV6_MIN_MTU: usize = 1280;
/// Linux trims the offending packet to 576 − 20 − 8 bytes.
const QUOTE4: usize = 576 - ipv4::HEADER_LEN - icmpv4::HEADER_LEN;
/// ... and an IPv6 one to 1280 − 40 − 8 bytes.
const QUOTE6: usize = IPV6_MIN_MTU - IPV6_HDR - icmpv6::HEADER_LEN;

/// Judges the inner frame `pkt` against `mtu`, the largest inner IP packet
/// the underlay carries.
pub(crate) fn check(pkt: &Packet, mtu: usize) -> Verdict {
    let f = pkt.frame();
    if f.len() < ETH_HDR_LEN + ipv4::HEADER_LEN {
        return Verdict::Fits;
    }
    match ethernet::ethertype(f) {
        EtherType::IPV4 => check4(pkt, mtu),
        EtherType::IPV6 if f.len() >= ETH_HDR_LEN + IPV6_HDR => check6(pkt, mtu),
        _ => Verdict::Fits,
    }
}

/// The network length of one segment of a GSO frame, or of the packet.
fn segment_len(pkt: &Packet, whole: usize, l4: usize, tcp: bool) -> usize {
    if !pkt.hdr.is_gso() {
        return whole;
    }
    let f = pkt.frame();
    // The data offset is read whenever the frame holds its byte.
    let l4_hdr = match f.get(l4..) {
        Some(t) if tcp && t.len() > 12 => tcp::Packet::new_unchecked(t).header_len(),
        _ => udp::HEADER_LEN,
    };
    (l4 - ETH_HDR_LEN + l4_hdr + usize::from(pkt.hdr.gso_size)).min(whole)
}

fn check4(pkt: &Packet, mtu: usize) -> Verdict {
    let f = pkt.frame();
    let ip = ipv4::Packet::new_unchecked(&f[ETH_HDR_LEN..]);
    if ip.check_header().is_err() {
        return Verdict::Fits;
    }
    let ihl = ip.header_len();
    let total = usize::from(ip.total_len());
    // GSO super-frames may carry a total length of 0 or of one segment.
    let whole = if pkt.hdr.is_gso() {
        ip.into_inner().len()
    } else {
        total
    };
    if segment_len(pkt, whole, ETH_HDR_LEN + ihl, ip.protocol() == IPPROTO_TCP) <= mtu {
        return Verdict::Fits;
    }
    let src = ip.src_addr();
    let dst = ip.dst_addr();
    let unanswerable = mtu < 576
        || ip.frag_field() != ipv4::FLAG_DF
        || dst.is_broadcast()
        || dst.is_multicast()
        || src.is_unspecified()
        || src.is_loopback()
        || src.is_broadcast()
        || src.is_multicast()
        || (ip.protocol() == IPPROTO_ICMP
            && ip.into_inner().get(ihl).is_some_and(|&t| is_icmp_error(t)));
    if unanswerable {
        return Verdict::Oversize;
    }
    Verdict::Answer(frag_needed(f, mtu as u16))
}

/// ICMP types that are errors (Linux's `icmp_is_err`).
fn is_icmp_error(t: u8) -> bool {
    icmpv4::is_error(t)
}

/// The "fragmentation needed" Linux builds about the IPv4 frame `f`.
fn frag_needed(f: &[u8], mtu: u16) -> Packet {
    let ipb = &f[ETH_HDR_LEN..];
    let ip = ipv4::Packet::new_unchecked(ipb);
    let quote = ipb.len().min(QUOTE4);
    let icmp_len = icmpv4::HEADER_LEN + quote;
    let mut p = Packet::zeroed(
        VnetHdr::default(),
        ETH_HDR_LEN + ipv4::HEADER_LEN + icmp_len,
    );
    let eth = ethernet::Frame::new_unchecked(f);
    let b = p.frame_mut();
    ethernet::emit(b, eth.src(), eth.dst(), EtherType::IPV4);
    let rep = ipv4::Repr {
        src: ip.dst(),
        dst: ip.src(),
        protocol: IPPROTO_ICMP,
        payload_len: icmp_len,
        ttl: ip.ttl(),
        tos: 0,
        dont_frag: true,
    };
    rep.emit(&mut b[ETH_HDR_LEN..]);
    let mut m = icmpv4::Packet::new_unchecked(&mut b[ETH_HDR_LEN + ipv4::HEADER_LEN..]);
    m.set_msg_type(icmpv4::types::DEST_UNREACH);
    m.set_code(icmpv4::unreach::FRAG_NEEDED);
    m.set_next_hop_mtu(mtu);
    m.data_mut().copy_from_slice(&ipb[..quote]);
    m.fill_checksum();
    p
}

fn check6(pkt: &Packet, mtu: usize) -> Verdict {
    let f = pkt.frame();
    let ipb = &f[ETH_HDR_LEN..];
    let ip = ipv6::Packet::new_unchecked(ipb);
    if ip.check_header().is_err() {
        return Verdict::Fits;
    }
    let whole = if pkt.hdr.is_gso() {
        ipb.len()
    } else {
        IPV6_HDR + usize::from(ip.payload_len())
    };
    let tcp = ip.next_header() == IPPROTO_TCP;
    if segment_len(pkt, whole, ETH_HDR_LEN + IPV6_HDR, tcp) <= mtu {
        return Verdict::Fits;
    }
    // Linux answers what an IPv6 router may answer (no error about an
    // error, an answerable source): the router's own rule.
    if mtu < IPV6_MIN_MTU || !super::icmp6::may_answer(f) {
        return Verdict::Oversize;
    }
    let quote = ipb.len().min(QUOTE6);
    let mut msg = vec![0u8; icmpv6::HEADER_LEN + quote];
    let mut m = icmpv6::Packet::new_unchecked(&mut msg[..]);
    m.set_msg_type(icmpv6::types::PACKET_TOO_BIG);
    m.set_mtu(mtu as u32);
    m.data_mut().copy_from_slice(&ipb[..quote]);
    let eth = ethernet::Frame::new_unchecked(f);
    let (src, dst) = (ip.src(), ip.dst());
    Verdict::Answer(icmpv6_frame(
        eth.src(),
        eth.dst(),
        dst,
        src,
        0,
        ip.hop_limit(),
        &msg,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{
        Icmpv4Type, Icmpv6Type, IpNumber, NetSlice, PacketBuilder, SlicedPacket, TransportSlice,
    };

    const A_MAC: [u8; 6] = [2, 0x42, 10, 0, 30, 2];
    const B_MAC: [u8; 6] = [2, 0x42, 10, 0, 30, 3];

    fn udp4(len: usize, df: bool) -> Packet {
        let b = PacketBuilder::ethernet2(A_MAC, B_MAC).ipv4([10, 0, 30, 2], [10, 0, 30, 3], 61);
        let b = if df {
            b
        } else {
            // etherparse sets DF by default; clear it through the header.
            let mut h =
                etherparse::Ipv4Header::new(0, 61, IpNumber::UDP, [10, 0, 30, 2], [10, 0, 30, 3])
                    .expect("header");
            h.dont_fragment = false;
            PacketBuilder::ethernet2(A_MAC, B_MAC)
                .ip(etherparse::IpHeaders::Ipv4(h, Default::default()))
        };
        let payload = vec![7u8; len - 28];
        let mut f = Vec::new();
        b.udp(40000, 7).write(&mut f, &payload).expect("build");
        Packet::from_frame(VnetHdr::default(), &f)
    }

    fn tcp6(len: usize) -> Packet {
        let b = PacketBuilder::ethernet2(A_MAC, B_MAC)
            .ipv6([0xfd; 16], [0xfe; 16], 63)
            .tcp(40000, 80, 1, 1000);
        let payload = vec![7u8; len - 60];
        let mut f = Vec::new();
        b.write(&mut f, &payload).expect("build");
        Packet::from_frame(VnetHdr::default(), &f)
    }

    #[test]
    fn a_fitting_packet_is_encapsulated() {
        assert!(matches!(check(&udp4(1350, true), 1350), Verdict::Fits));
        assert!(matches!(check(&tcp6(1350), 1350), Verdict::Fits));
    }

    /// BUG-7: the 1450-byte packet of a container at MTU 1450 over a
    /// 1400-byte underlay gets "fragmentation needed, mtu 1350" back, from
    /// its destination, TTL kept, as Linux's vxlan builds it.
    #[test]
    fn df_too_big_gets_frag_needed_from_the_destination() {
        let Verdict::Answer(e) = check(&udp4(1450, true), 1350) else {
            panic!("no answer");
        };
        let s = SlicedPacket::from_ethernet(e.frame()).expect("parse");
        let eth = s.link.as_ref().and_then(|l| l.to_header()).expect("eth");
        let eth = match eth {
            etherparse::LinkHeader::Ethernet2(h) => h,
            _ => panic!("not ethernet"),
        };
        assert_eq!((eth.source, eth.destination), (B_MAC, A_MAC));
        let Some(NetSlice::Ipv4(ip)) = s.net else {
            panic!("not ipv4")
        };
        let h = ip.header();
        assert_eq!(h.source(), [10, 0, 30, 3]);
        assert_eq!(h.destination(), [10, 0, 30, 2]);
        assert_eq!(h.ttl(), 61);
        assert!(h.dont_fragment());
        assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
        let Some(TransportSlice::Icmpv4(icmp)) = s.transport else {
            panic!("not icmp")
        };
        assert_eq!(
            icmp.icmp_type(),
            Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1350
                }
            )
        );
        assert_eq!(icmp.payload().len(), QUOTE4);
        assert_eq!(
            icmp.header().icmp_type.calc_checksum(icmp.payload()),
            icmp.checksum()
        );
    }

    #[test]
    fn without_df_or_below_576_it_goes_on_oversize() {
        assert!(matches!(check(&udp4(1450, false), 1350), Verdict::Oversize));
        assert!(matches!(check(&udp4(1450, true), 560), Verdict::Oversize));
    }

    #[test]
    fn ipv6_too_big_gets_packet_too_big_with_the_hop_limit() {
        let Verdict::Answer(e) = check(&tcp6(1450), 1350) else {
            panic!("no answer");
        };
        let s = SlicedPacket::from_ethernet(e.frame()).expect("parse");
        let Some(NetSlice::Ipv6(ip)) = &s.net else {
            panic!("not ipv6")
        };
        assert_eq!(ip.header().source(), [0xfe; 16]);
        assert_eq!(ip.header().destination(), [0xfd; 16]);
        assert_eq!(ip.header().hop_limit(), 63);
        let Some(TransportSlice::Icmpv6(icmp)) = &s.transport else {
            panic!("not icmpv6")
        };
        assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1350 });
        assert_eq!(icmp.payload().len(), 1350.min(QUOTE6));
        let want = icmp
            .icmp_type()
            .calc_checksum(
                ip.header().source(),
                ip.header().destination(),
                icmp.payload(),
            )
            .expect("checksum");
        assert_eq!(want, icmp.checksum());
        assert!(matches!(check(&tcp6(1450), 1200), Verdict::Oversize));
    }

    /// A GSO super-frame is judged by its segments (gso_size), as
    /// `skb_gso_validate_network_len` does.
    #[test]
    fn gso_is_judged_per_segment() {
        let mut p = tcp6(1450);
        let mut f = p.frame().to_vec();
        f.extend(std::iter::repeat_n(0u8, 20000));
        p = Packet::from_frame(
            VnetHdr {
                gso_type: VnetHdr::GSO_TCPV6,
                gso_size: 1290,
                ..VnetHdr::default()
            },
            &f,
        );
        assert!(matches!(check(&p, 1350), Verdict::Fits));
        p.hdr.gso_size = 1300;
        assert!(matches!(check(&p, 1350), Verdict::Answer(_)));
    }
}
