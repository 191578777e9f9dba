//! ICMP errors the router sends (time exceeded, destination unreachable,
//! fragmentation needed) and IPv4 fragmentation for packets without DF.

use std::net::Ipv4Addr;

use super::flow::{IPPROTO_ICMP, Ip4, L4};
use super::gateway::GATEWAY_TTL;
use super::packet::{Packet, VnetHdr};
use crate::wire::ethernet::{self, EtherType, HEADER_LEN as ETH_HDR_LEN};
use crate::wire::{icmpv4, ipv4, tcp, udp};

/// Destination unreachable codes.
pub(crate) mod code {
    /// Network unreachable.
    pub(crate) const NET_UNREACH: u8 = crate::wire::icmpv4::unreach::NET;
    /// Fragmentation needed and DF set.
    pub(crate) const FRAG_NEEDED: u8 = crate::wire::icmpv4::unreach::FRAG_NEEDED;
}

/// Most bytes of an error datagram (RFC 1812 §4.3.2.3: up to 576).
const MAX_ERROR_LEN: usize = 576;
/// Linux's TOS for ICMP errors (IPTOS_PREC_INTERNETCONTROL).
const ERROR_TOS: u8 = 0xc0;

/// True when the router may answer this packet with an error (RFC 1122
/// §3.2.2: never about an ICMP error, a non-first fragment, or a packet
/// from an address that cannot be answered).
pub(crate) fn may_answer(ip: &Ip4) -> bool {
    let s = ip.tuple.src;
    !matches!(ip.l4, L4::IcmpError { .. } | L4::Fragment)
        && !s.is_unspecified()
        && !s.is_broadcast()
        && !s.is_multicast()
        && !s.is_loopback()
}

/// An ICMP error of `typ`/`code` about the packet in `frame`, from
/// `src_ip`/`src_mac` back to the frame's Ethernet source. `mtu` goes in
/// the next-hop MTU field (fragmentation needed only).
pub(crate) fn error(
    frame: &[u8],
    ip: &Ip4,
    typ: u8,
    code: u8,
    mtu: u16,
    src_ip: Ipv4Addr,
    src_mac: [u8; 6],
) -> Packet {
    let quote_len = ip
        .total
        .min(MAX_ERROR_LEN - ipv4::HEADER_LEN - icmpv4::HEADER_LEN)
        .min(frame.len() - ETH_HDR_LEN);
    let icmp_len = icmpv4::HEADER_LEN + quote_len;
    let mut p = Packet::zeroed(
        VnetHdr::default(),
        ETH_HDR_LEN + ipv4::HEADER_LEN + icmp_len,
    );
    let asker = ethernet::Frame::new_unchecked(frame).src();
    let b = p.frame_mut();
    ethernet::emit(b, asker, src_mac, EtherType::IPV4);
    let rep = ipv4::Repr {
        src: src_ip.octets(),
        dst: ip.tuple.src.octets(),
        protocol: IPPROTO_ICMP,
        payload_len: icmp_len,
        ttl: GATEWAY_TTL,
        tos: ERROR_TOS,
        dont_frag: false,
    };
    rep.emit(&mut b[ETH_HDR_LEN..]);
    let mut m = icmpv4::Packet::new_unchecked(&mut b[ETH_HDR_LEN + ipv4::HEADER_LEN..]);
    m.set_msg_type(typ);
    m.set_code(code);
    if code == self::code::FRAG_NEEDED {
        m.set_next_hop_mtu(mtu);
    }
    m.data_mut()
        .copy_from_slice(&frame[ETH_HDR_LEN..ETH_HDR_LEN + quote_len]);
    m.fill_checksum();
    p
}

/// The network-layer length of one segment of a GSO frame (or the whole
/// packet when it is not one): what must fit the egress MTU.
pub(crate) fn wire_len(pkt: &Packet, ip: &Ip4) -> usize {
    if !pkt.hdr.is_gso() {
        return ip.total;
    }
    let l4 = ip.l4_off();
    let f = pkt.frame();
    let l4_hdr = match ip.l4 {
        L4::Tcp { .. } => {
            tcp::Packet::new_checked(&f[l4..]).map_or(udp::HEADER_LEN, |t| t.header_len())
        }
        _ => udp::HEADER_LEN,
    };
    ip.ihl + l4_hdr + usize::from(pkt.hdr.gso_size)
}

/// Splits a packet without DF into fragments that fit `mtu` (RFC 791),
/// keeping its Ethernet header. A partial checksum is completed first.
/// `None` when the header leaves no room for 8 bytes of payload or the
/// checksum offsets are inconsistent.
pub(crate) fn fragment(mut pkt: Packet, ip: &Ip4, mtu: usize) -> Option<Vec<Packet>> {
    let end = ETH_HDR_LEN + ip.total;
    if !super::nat::finish_checksum(&mut pkt, end) {
        return None;
    }
    let per = (mtu.checked_sub(ip.ihl)? / 8) * 8;
    if per == 0 {
        return None;
    }
    let f = pkt.frame();
    let l3 = ETH_HDR_LEN;
    let orig = ipv4::Packet::new_unchecked(&f[l3..]);
    let base = orig.frag_offset();
    let more = orig.more_frags();
    let data = &f[l3 + ip.ihl..end];
    let mut out = Vec::with_capacity(data.len().div_ceil(per));
    let mut off = 0;
    while off < data.len() {
        let n = per.min(data.len() - off);
        let last = off + n == data.len();
        let mut q = Packet::zeroed(VnetHdr::default(), l3 + ip.ihl + n);
        let b = q.frame_mut();
        b[..l3 + ip.ihl].copy_from_slice(&f[..l3 + ip.ihl]);
        b[l3 + ip.ihl..].copy_from_slice(&data[off..off + n]);
        let mut h = ipv4::Packet::new_unchecked(&mut b[l3..]);
        h.set_total_len((ip.ihl + n) as u16);
        let mf = if last && !more { 0 } else { ipv4::FLAG_MF };
        h.set_frag_field(mf | (((base + off) / 8) as u16 & ipv4::OFFSET_MASK));
        h.fill_checksum();
        out.push(q);
        off += n;
    }
    Some(out)
}
