//! Rewriting a frame in place for NAT and routing: addresses, ports or echo
//! ids, TTL, and every checksum they touch, updated incrementally (RFC
//! 1624). Lengths never change here, so `csum_start`, `hdr_len` and the GSO
//! fields of the virtio-net header stay valid as they are.
//!
//! A frame with `F_NEEDS_CSUM` carries a partial checksum in its L4 field
//! (the uncomplemented pseudo-header sum): an address change updates it
//! without complementing, and a port change leaves it alone, because the
//! device (or the receiving kernel) will sum the new port itself.

use std::net::Ipv4Addr;

use super::checksum::{sum, update16, update32, update32_partial};
use super::flow::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Inner, Ip4, L4, Tuple};
use super::packet::{Packet, VnetHdr};
use crate::wire::ethernet::{self, HEADER_LEN as ETH_HDR_LEN};
use crate::wire::{be16, set_be16};
use crate::wire::{icmpv4, ipv4, tcp, udp};

/// Where the L4 checksum of a (first-fragment) packet lives, relative to
/// its L4 header, and whether it covers a pseudo-header.
fn l4_csum_at(proto: u8) -> Option<(usize, bool)> {
    match proto {
        IPPROTO_TCP => Some((tcp::field::CHECKSUM, true)),
        IPPROTO_UDP => Some((udp::field::CHECKSUM, true)),
        IPPROTO_ICMP => Some((icmpv4::field::CHECKSUM, false)),
        _ => None,
    }
}

/// True when the frame's L4 checksum is partial (left for the device).
fn partial_l4(hdr: &VnetHdr, l4_off: usize) -> bool {
    hdr.flags & VnetHdr::F_NEEDS_CSUM != 0 && usize::from(hdr.csum_start) == l4_off
}

/// Rewrites the addresses and ports of one IPv4 header (at `l3`) and its
/// L4 header (at `l4`, `l4_len` bytes available) from `from` to `to`.
/// `partial` says the L4 checksum is a partial sum; `l4_present` is false
/// for non-first fragments (no L4 header to touch).
fn rewrite_headers(
    b: &mut [u8],
    (l3, l4, l4_len): (usize, usize, usize),
    from: &Tuple,
    to: &Tuple,
    partial: bool,
    l4_present: bool,
) {
    let mut ip = ipv4::Packet::new_unchecked(&mut b[l3..]);
    let mut ipc = ip.checksum();
    let (os, ns) = (from.src.to_bits(), to.src.to_bits());
    let (od, nd) = (from.dst.to_bits(), to.dst.to_bits());
    if os != ns {
        ipc = update32(ipc, os, ns);
        ip.set_src(to.src.octets());
    }
    if od != nd {
        ipc = update32(ipc, od, nd);
        ip.set_dst(to.dst.octets());
    }
    ip.set_checksum(ipc);
    if !l4_present {
        return;
    }
    let Some((at, pseudo)) = l4_csum_at(from.proto) else {
        return;
    };
    let has_csum = l4_len >= at + 2;
    let mut c = if has_csum { be16(b, l4 + at) } else { 0 };
    // UDP checksum 0 means "none" (unless the device fills it in).
    let udp_none = from.proto == IPPROTO_UDP && c == 0 && !partial;
    let touch = has_csum && !udp_none;
    if pseudo && touch {
        for (o, n) in [(os, ns), (od, nd)] {
            if o != n {
                c = if partial {
                    update32_partial(c, o, n)
                } else {
                    update32(c, o, n)
                };
            }
        }
    }
    match from.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let ports = [
                (udp::field::SRC_PORT, from.sport, to.sport),
                (udp::field::DST_PORT, from.dport, to.dport),
            ];
            for (field, o, n) in ports {
                if o != n && l4_len >= field + 2 {
                    if touch && !partial {
                        c = update16(c, o, n);
                    }
                    set_be16(b, l4 + field, n);
                }
            }
        }
        IPPROTO_ICMP if from.sport != to.sport && l4_len >= icmpv4::field::ECHO_IDENT + 2 => {
            if touch && !partial {
                c = update16(c, from.sport, to.sport);
            }
            set_be16(b, l4 + icmpv4::field::ECHO_IDENT, to.sport);
        }
        _ => {}
    }
    if touch {
        if from.proto == IPPROTO_UDP && c == 0 && !partial {
            c = 0xffff;
        }
        set_be16(b, l4 + at, c);
    }
}

/// Rewrites a packet whose tuple is `from` so that it carries `to`.
pub(crate) fn translate(pkt: &mut Packet, ip: &Ip4, from: &Tuple, to: &Tuple) {
    if from == to {
        return;
    }
    let l4 = ip.l4_off();
    let partial = partial_l4(&pkt.hdr, l4);
    let l4_len = ETH_HDR_LEN + ip.total - l4;
    let first = !matches!(ip.l4, L4::Fragment);
    rewrite_headers(
        pkt.frame_mut(),
        (ETH_HDR_LEN, l4, l4_len),
        from,
        to,
        partial,
        first,
    );
}

/// Rewrites an ICMP error: the quoted packet from its tuple to `inner_to`,
/// the outer addresses to `outer_src`/`outer_dst`, then the ICMP checksum
/// recomputed over the whole message (errors are small; the quote may have
/// been cut anywhere, so incremental updates cannot be trusted there).
pub(crate) fn translate_icmp_error(
    pkt: &mut Packet,
    ip: &Ip4,
    inner: &Inner,
    inner_to: &Tuple,
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
) {
    let l4 = ip.l4_off();
    let end = ETH_HDR_LEN + ip.total;
    {
        let b = pkt.frame_mut();
        let il4 = inner.off + inner.ihl;
        let il4_len = end.saturating_sub(il4);
        // The quoted L4 checksum is a complete one (the packet was sent).
        rewrite_headers(
            b,
            (inner.off, il4, il4_len),
            &inner.tuple,
            inner_to,
            false,
            true,
        );
        let outer = ipv4::Packet::new_unchecked(&b[ETH_HDR_LEN..]);
        let outer_from = Tuple {
            src: outer.src_addr(),
            dst: outer.dst_addr(),
            sport: 0,
            dport: 0,
            proto: 0,
            icmp_reply: false,
        };
        let outer_to = Tuple {
            src: outer_src,
            dst: outer_dst,
            ..outer_from
        };
        rewrite_headers(
            b,
            (ETH_HDR_LEN, l4, 0),
            &outer_from,
            &outer_to,
            false,
            false,
        );
        icmpv4::Packet::new_unchecked(&mut b[l4..end]).fill_checksum();
    }
    if partial_l4(&pkt.hdr, l4) {
        pkt.hdr.flags &= !VnetHdr::F_NEEDS_CSUM;
    }
}

/// Decrements the TTL (the caller checked it is above 1).
#[inline]
pub(crate) fn dec_ttl(pkt: &mut Packet) {
    let mut ip = ipv4::Packet::new_unchecked(&mut pkt.frame_mut()[ETH_HDR_LEN..]);
    let ttl = ip.ttl();
    // TTL and protocol share one checksummed 16-bit word.
    let old = u16::from_be_bytes([ttl, ip.protocol()]);
    ip.set_ttl(ttl - 1);
    let c = update16(ip.checksum(), old, old - 0x0100);
    ip.set_checksum(c);
}

/// Sets the Ethernet addresses.
#[inline]
pub(crate) fn set_macs(pkt: &mut Packet, dst: [u8; 6], src: [u8; 6]) {
    let mut f = ethernet::Frame::new_unchecked(pkt.frame_mut());
    f.set_dst(dst);
    f.set_src(src);
}

/// Completes a partial L4 checksum in software over `start..end` (before
/// fragmenting). Returns false when the offsets lie.
pub(crate) fn finish_checksum(pkt: &mut Packet, end: usize) -> bool {
    if pkt.hdr.flags & VnetHdr::F_NEEDS_CSUM == 0 {
        return true;
    }
    let start = usize::from(pkt.hdr.csum_start);
    let at = start + usize::from(pkt.hdr.csum_offset);
    let b = pkt.frame_mut();
    if end > b.len() || at + 2 > end || start >= end {
        return false;
    }
    let mut c = !sum(&b[start..end], 0);
    if c == 0 {
        c = 0xffff;
    }
    set_be16(b, at, c);
    pkt.hdr.flags &= !VnetHdr::F_NEEDS_CSUM;
    true
}
