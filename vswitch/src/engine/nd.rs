//! The gateway's IPv6 answers (V6-1): Neighbour Advertisements for the
//! gateway6 address (RFC 4861 §7.2.4) and ICMPv6 echo replies (RFC 4443
//! §4.2). Like [`super::gateway`], these run only for frames that already
//! look like they are for the gateway, so they may allocate the reply.
//!
//! A Neighbour Solicitation is answered only when it is well formed as
//! RFC 4861 §7.1.1 requires (hop limit 255, code 0, a valid checksum, a
//! target that is not multicast); a Duplicate Address Detection probe
//! (unspecified source) is answered to all-nodes without the solicited
//! flag, so a container probing the gateway's address learns it is taken.

use std::net::Ipv6Addr;

use super::Gateway;
use super::packet::{Packet, VnetHdr};
use crate::wire::ethernet::{self, EtherType, HEADER_LEN as ETH_HDR_LEN};
use crate::wire::icmpv6::types::{ECHO_REPLY, ECHO_REQUEST};
use crate::wire::ndp::{self, na_flags, option};
use crate::wire::{IpProtocol, icmpv6, ip::checksum, ipv6};

/// IPv6's EtherType.
pub(crate) const ETHERTYPE_IPV6: u16 = EtherType::IPV6;
/// The fixed IPv6 header.
const IPV6_HDR_LEN: usize = ipv6::HEADER_LEN;
/// ICMPv6's next-header number.
const IPPROTO_ICMPV6: u8 = IpProtocol::ICMPV6;
/// The hop limit of the gateway's own packets (Linux's default).
const HOP_LIMIT: u8 = 64;

/// An IPv6 packet's fixed header and payload, lengths checked.
struct Ip6<'a> {
    src: [u8; 16],
    dst: [u8; 16],
    next: u8,
    hop_limit: u8,
    traffic_class: u8,
    payload: &'a [u8],
}

impl<'a> Ip6<'a> {
    fn parse(frame: &'a [u8]) -> Option<Ip6<'a>> {
        let eth = ethernet::Frame::new_checked(frame).ok()?;
        if eth.ethertype_raw() != ETHERTYPE_IPV6 {
            return None;
        }
        let h = ipv6::Packet::new_checked(&frame[ETH_HDR_LEN..]).ok()?;
        Some(Ip6 {
            src: h.src(),
            dst: h.dst(),
            next: h.next_header(),
            hop_limit: h.hop_limit(),
            traffic_class: h.traffic_class(),
            payload: h.into_payload(),
        })
    }
}

/// The ICMPv6 checksum over the pseudo-header (RFC 8200 §8.1) and `msg`
/// (whose checksum field holds whatever it holds: 0 to compute, the sent
/// value to verify — a correct one sums to 0).
pub(crate) fn icmpv6_checksum(src: &[u8; 16], dst: &[u8; 16], msg: &[u8]) -> u16 {
    checksum::l4_checksum6(src, dst, IPPROTO_ICMPV6, msg)
}

/// The solicited-node multicast address of `a` (RFC 4291 §2.7.1).
#[cfg(test)]
pub(crate) fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// Builds an Ethernet/IPv6/ICMPv6 frame; the checksum is filled in.
pub(crate) fn icmpv6_frame(
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    traffic_class: u8,
    hop_limit: u8,
    msg: &[u8],
) -> Packet {
    let mut p = Packet::zeroed(VnetHdr::default(), ETH_HDR_LEN + IPV6_HDR_LEN + msg.len());
    let b = p.frame_mut();
    ethernet::emit(b, eth_dst, eth_src, ETHERTYPE_IPV6);
    let rep = ipv6::Repr {
        src,
        dst,
        next_header: IPPROTO_ICMPV6,
        payload_len: msg.len(),
        hop_limit,
        traffic_class,
    };
    rep.emit(&mut b[ETH_HDR_LEN..]);
    let m = &mut b[ETH_HDR_LEN + IPV6_HDR_LEN..];
    m.copy_from_slice(msg);
    icmpv6::Packet::new_unchecked(m).fill_checksum(&src, &dst);
    p
}

fn asker(frame: &[u8]) -> [u8; 6] {
    ethernet::Frame::new_unchecked(frame).src()
}

/// The Neighbour Advertisement answering `frame` if it is a valid
/// Neighbour Solicitation for the gateway's IPv6 address; `None` for
/// anything else (the caller switches it).
pub(crate) fn na_reply(frame: &[u8], gw: &Gateway) -> Option<Packet> {
    na_as(frame, gw.ip6?, gw.mac, true)
}

/// The Neighbour Advertisement of `target` at `mac` answering `frame` if
/// it is a valid Neighbour Solicitation for `target`; `router` sets the R
/// flag (a gateway's answer; not an ipvlan sibling's).
pub(crate) fn na_as(
    frame: &[u8],
    target: Ipv6Addr,
    mac: super::MacAddr,
    router: bool,
) -> Option<Packet> {
    let gw = Gateway {
        ip: std::net::Ipv4Addr::UNSPECIFIED,
        ip6: Some(target),
        mac,
    };
    let gw6 = target;
    let ip = Ip6::parse(frame)?;
    let m = icmpv6::Packet::new_unchecked(ip.payload);
    let ns = ndp::Packet::new_checked(ip.payload).ok()?;
    if ip.next != IPPROTO_ICMPV6
        || ip.hop_limit != 255
        || !ns.is_solicitation()
        || m.code() != 0
        || ns.target() != gw6.octets()
        || !m.verify_checksum(&ip.src, &ip.dst)
    {
        return None;
    }
    let dad = ip.src == [0; 16];
    // A DAD probe carries no source link-layer option (§7.1.1).
    if dad && ns.has_option(option::SOURCE_LL) {
        return None;
    }
    let router = if router { na_flags::ROUTER } else { 0 };
    let solicited = if dad { 0 } else { na_flags::SOLICITED };
    let rep = ndp::AdvertRepr {
        flags: router | na_flags::OVERRIDE | solicited,
        target: gw6.octets(),
        target_mac: gw.mac.0,
    };
    let mut na = [0u8; ndp::HEADER_LEN + ndp::LL_OPTION_LEN];
    rep.emit(&mut na);
    let (dst, eth_dst) = if dad {
        (
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets(),
            [0x33, 0x33, 0, 0, 0, 1],
        )
    } else {
        (ip.src, asker(frame))
    };
    Some(icmpv6_frame(
        eth_dst,
        gw.mac.0,
        gw6.octets(),
        dst,
        0,
        255,
        &na,
    ))
}

/// The target address of `frame` if it is a Neighbour Solicitation (not
/// verified: for demultiplexing only).
pub(crate) fn ns_target(frame: &[u8]) -> Option<Ipv6Addr> {
    let ip = Ip6::parse(frame)?;
    let ns = ndp::Packet::new_checked(ip.payload).ok()?;
    if ip.next != IPPROTO_ICMPV6 || !ns.is_solicitation() {
        return None;
    }
    Some(ns.target_addr())
}

/// The destination address of an IPv6 frame.
pub(crate) fn dst6(frame: &[u8]) -> Option<Ipv6Addr> {
    Some(Ipv6Addr::from(Ip6::parse(frame)?.dst))
}

/// What the gateway makes of an IPv6 frame sent to its MAC.
#[derive(Debug)]
pub(crate) enum Echo6 {
    /// Not an echo request for gateway6: the host stack's.
    NotMine,
    /// An echo request for gateway6 with a wrong checksum.
    BadChecksum,
    /// The echo reply to emit.
    Reply(Packet),
}

/// Answers an ICMPv6 echo request for the gateway's IPv6 address. The
/// checksum is verified unless the vnet header says it is partial or
/// already verified; the reply keeps identifier, sequence and data.
pub(crate) fn echo6(frame: &[u8], hdr: &VnetHdr, gw: &Gateway) -> Echo6 {
    let Some(gw6) = gw.ip6 else {
        return Echo6::NotMine;
    };
    let Some(ip) = Ip6::parse(frame) else {
        return Echo6::NotMine;
    };
    let Ok(m) = icmpv6::Packet::new_checked(ip.payload) else {
        return Echo6::NotMine;
    };
    if ip.next != IPPROTO_ICMPV6
        || ip.dst != gw6.octets()
        || m.msg_type() != ECHO_REQUEST
        || m.code() != 0
    {
        return Echo6::NotMine;
    }
    let unverified = hdr.flags & (VnetHdr::F_NEEDS_CSUM | VnetHdr::F_DATA_VALID) == 0;
    if unverified && !m.verify_checksum(&ip.src, &ip.dst) {
        return Echo6::BadChecksum;
    }
    let mut reply = ip.payload.to_vec();
    icmpv6::Packet::new_unchecked(&mut reply[..]).set_msg_type(ECHO_REPLY);
    Echo6::Reply(icmpv6_frame(
        asker(frame),
        gw.mac.0,
        gw6.octets(),
        ip.src,
        ip.traffic_class,
        HOP_LIMIT,
        &reply,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MacAddr;
    use crate::wire::icmpv6::types::{
        NEIGHBOUR_ADVERT as NEIGHBOUR_ADVERTISEMENT, NEIGHBOUR_SOLICIT as NEIGHBOUR_SOLICITATION,
    };
    use crate::wire::ndp::na_flags::{
        OVERRIDE as NA_OVERRIDE, ROUTER as NA_ROUTER, SOLICITED as NA_SOLICITED,
    };
    use crate::wire::ndp::option::{SOURCE_LL as OPT_SOURCE_LL, TARGET_LL as OPT_TARGET_LL};
    use etherparse::{Icmpv6Type, PacketBuilder, SlicedPacket, TransportSlice};

    const GW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5653, 0, 1, 0, 0, 0, 1);
    const C6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5653, 0, 1, 0, 0, 0, 2);
    const CMAC: [u8; 6] = [0x02, 0x42, 0x0a, 0, 0, 2];

    fn gw() -> Gateway {
        Gateway {
            ip: "10.0.0.1".parse().unwrap(),
            ip6: Some(GW6),
            mac: MacAddr([0x02, 0x42, 0x0a, 0, 0, 1]),
        }
    }

    /// A Neighbour Solicitation built by etherparse (checksum included).
    fn ns(src: Ipv6Addr, target: Ipv6Addr, hop: u8, with_sll: bool) -> Vec<u8> {
        let dst = solicited_node(target);
        let mut body = target.octets().to_vec();
        if with_sll {
            body.extend_from_slice(&[OPT_SOURCE_LL, 1]);
            body.extend_from_slice(&CMAC);
        }
        let o = dst.octets();
        let b = PacketBuilder::ethernet2(CMAC, [0x33, 0x33, o[12], o[13], o[14], o[15]])
            .ipv6(src.octets(), dst.octets(), hop)
            .icmpv6(Icmpv6Type::Unknown {
                type_u8: NEIGHBOUR_SOLICITATION,
                code_u8: 0,
                bytes5to8: [0; 4],
            });
        let mut out = Vec::new();
        b.write(&mut out, &body).unwrap();
        out
    }

    fn icmpv6_ok(frame: &[u8]) -> (Ipv6Addr, Ipv6Addr, u8, Vec<u8>) {
        let s = SlicedPacket::from_ethernet(frame).unwrap();
        let ip = match s.net.unwrap() {
            etherparse::NetSlice::Ipv6(v) => v,
            n => panic!("{n:?}"),
        };
        let h = ip.header();
        let Some(TransportSlice::Icmpv6(icmp)) = s.transport else {
            panic!("no icmpv6");
        };
        let want = icmp
            .icmp_type()
            .calc_checksum(h.source(), h.destination(), icmp.payload())
            .unwrap();
        assert_eq!(icmp.checksum(), want, "ICMPv6 checksum");
        (
            h.source_addr(),
            h.destination_addr(),
            h.hop_limit(),
            icmp.slice().to_vec(),
        )
    }

    #[test]
    fn gateway_answers_its_solicitation_with_its_mac() {
        let req = ns(C6, GW6, 255, true);
        let na = na_reply(&req, &gw()).expect("answered");
        let f = na.frame();
        assert_eq!(&f[0..6], &CMAC, "unicast to the asker");
        assert_eq!(&f[6..12], &gw().mac.0);
        let (src, dst, hop, msg) = icmpv6_ok(f);
        assert_eq!((src, dst, hop), (GW6, C6, 255));
        assert_eq!(msg[0], NEIGHBOUR_ADVERTISEMENT);
        assert_eq!(msg[4], NA_ROUTER | NA_SOLICITED | NA_OVERRIDE);
        assert_eq!(&msg[8..24], &GW6.octets());
        assert_eq!(&msg[24..32], &[OPT_TARGET_LL, 1, 2, 0x42, 0x0a, 0, 0, 1]);
    }

    #[test]
    fn dad_probe_is_answered_to_all_nodes_unsolicited() {
        let req = ns(Ipv6Addr::UNSPECIFIED, GW6, 255, false);
        let na = na_reply(&req, &gw()).expect("answered");
        let (src, dst, _, msg) = icmpv6_ok(na.frame());
        assert_eq!((src, dst), (GW6, "ff02::1".parse().unwrap()));
        assert_eq!(&na.frame()[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(msg[4] & NA_SOLICITED, 0);
    }

    #[test]
    fn invalid_or_foreign_solicitations_are_not_answered() {
        let g = gw();
        assert!(na_reply(&ns(C6, GW6, 64, true), &g).is_none(), "hop limit");
        assert!(
            na_reply(&ns(C6, C6, 255, true), &g).is_none(),
            "other target"
        );
        assert!(
            na_reply(&ns(Ipv6Addr::UNSPECIFIED, GW6, 255, true), &g).is_none(),
            "DAD with a source option"
        );
        let mut bad = ns(C6, GW6, 255, true);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(na_reply(&bad, &g).is_none(), "checksum");
        let no_v6 = Gateway { ip6: None, ..g };
        assert!(na_reply(&ns(C6, GW6, 255, true), &no_v6).is_none());
        // Every truncation of a valid one is refused, never a panic.
        let ok = ns(C6, GW6, 255, true);
        for n in 0..ok.len() {
            assert!(na_reply(&ok[..n], &g).is_none(), "length {n}");
        }
    }

    fn echo_request(dst: Ipv6Addr, data: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(CMAC, gw().mac.0)
            .ipv6(C6.octets(), dst.octets(), 64)
            .icmpv6_echo_request(0x1234, 7);
        let mut out = Vec::new();
        b.write(&mut out, data).unwrap();
        out
    }

    #[test]
    fn gateway_answers_ping6() {
        let req = echo_request(GW6, b"hello v6");
        let Echo6::Reply(r) = echo6(&req, &VnetHdr::default(), &gw()) else {
            panic!("no reply");
        };
        assert_eq!(&r.frame()[0..6], &CMAC);
        let (src, dst, hop, msg) = icmpv6_ok(r.frame());
        assert_eq!((src, dst, hop), (GW6, C6, HOP_LIMIT));
        assert_eq!(msg[0], ECHO_REPLY);
        assert_eq!(&msg[4..8], &[0x12, 0x34, 0, 7]);
        assert_eq!(&msg[8..], b"hello v6");
    }

    #[test]
    fn echo_for_others_or_corrupt_is_not_answered() {
        let g = gw();
        let h = VnetHdr::default();
        assert!(matches!(
            echo6(&echo_request(C6, b"x"), &h, &g),
            Echo6::NotMine
        ));
        let mut bad = echo_request(GW6, b"x");
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(echo6(&bad, &h, &g), Echo6::BadChecksum));
        let ok = echo_request(GW6, b"abc");
        for n in 0..ok.len() {
            assert!(
                matches!(echo6(&ok[..n], &h, &g), Echo6::NotMine),
                "length {n}"
            );
        }
    }

    #[test]
    fn solicited_node_addresses() {
        assert_eq!(
            solicited_node("fd00::1:2:3".parse().unwrap()),
            "ff02::1:ff02:3".parse::<Ipv6Addr>().unwrap()
        );
    }
}
