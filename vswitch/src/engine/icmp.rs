//! ICMP errors the router sends (time exceeded, destination unreachable,
//! fragmentation needed) and IPv4 fragmentation for packets without DF.

use std::net::Ipv4Addr;

use super::checksum::{get16, put16, sum};
use super::flow::{IPPROTO_ICMP, Ip4, L4};
use super::gateway::GATEWAY_TTL;
use super::packet::{Packet, VnetHdr};
use super::wire::{ETH_HDR_LEN, ETH_SRC, ETHERTYPE_IPV4, emit_eth, emit_ipv4};

/// Destination unreachable codes.
pub(crate) mod code {
    /// Network unreachable.
    pub(crate) const NET_UNREACH: u8 = 0;
    /// Fragmentation needed and DF set.
    pub(crate) const FRAG_NEEDED: u8 = 4;
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
        .min(MAX_ERROR_LEN - 20 - 8)
        .min(frame.len() - ETH_HDR_LEN);
    let icmp_len = 8 + quote_len;
    let mut p = Packet::zeroed(VnetHdr::default(), ETH_HDR_LEN + 20 + icmp_len);
    let mut asker = [0u8; 6];
    asker.copy_from_slice(&frame[ETH_SRC..ETH_SRC + 6]);
    let b = p.frame_mut();
    emit_eth(b, asker, src_mac, ETHERTYPE_IPV4);
    emit_ipv4(
        &mut b[ETH_HDR_LEN..],
        ERROR_TOS,
        icmp_len,
        GATEWAY_TTL,
        IPPROTO_ICMP,
        src_ip.octets(),
        ip.tuple.src.octets(),
    );
    let m = &mut b[ETH_HDR_LEN + 20..];
    m[0] = typ;
    m[1] = code;
    if code == self::code::FRAG_NEEDED {
        put16(m, 6, mtu);
    }
    m[8..].copy_from_slice(&frame[ETH_HDR_LEN..ETH_HDR_LEN + quote_len]);
    let c = !sum(m, 0);
    put16(m, 2, c);
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
        L4::Tcp { .. } if f.len() > l4 + 12 => usize::from(f[l4 + 12] >> 4) * 4,
        _ => 8,
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
    let frag_field = get16(f, l3 + 6);
    let base = usize::from(frag_field & 0x1fff) * 8;
    let more = frag_field & 0x2000 != 0;
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
        put16(b, l3 + 2, (ip.ihl + n) as u16);
        let mf = if last && !more { 0 } else { 0x2000 };
        put16(b, l3 + 6, mf | (((base + off) / 8) as u16 & 0x1fff));
        put16(b, l3 + 10, 0);
        let c = !sum(&b[l3..l3 + ip.ihl], 0);
        put16(b, l3 + 10, c);
        out.push(q);
        off += n;
    }
    Some(out)
}
