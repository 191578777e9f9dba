//! Software segmentation of IPv6/TCP GSO super-frames (TSO6), the IPv6
//! counterpart of [`super::vxlan::segment_tcp4`]: where a frame must leave
//! on a port that cannot take GSO (a foreign VTEP behind a TAP without
//! UDP-tunnel GSO), it is cut into MSS-sized segments with full checksums.
//! Both families cut with [`cut_tcp`]; what differs is the IP header each
//! segment gets and the pseudo-header its checksum covers.

use super::packet::{Packet, VnetHdr};
use crate::wire::ethernet::{self, EtherType, HEADER_LEN as ETH_HDR_LEN};
use crate::wire::ip::checksum;
use crate::wire::{IpProtocol, ipv6, tcp};

const IPV6_HDR: usize = ipv6::HEADER_LEN;
const IPPROTO_TCP: u8 = IpProtocol::TCP;

/// TCP/UDP checksum over the IPv6 pseudo-header (RFC 8200 §8.1) and `seg`
/// (whose checksum field must be zero).
pub fn l4_checksum6(src: [u8; 16], dst: [u8; 16], proto: u8, seg: &[u8]) -> u16 {
    checksum::l4_checksum6(&src, &dst, proto, seg)
}

/// Cuts an inner IPv6/TCP GSO super-frame (`hdr.gso_type` TCPV6, TCP right
/// after the fixed header) into frames of at most `gso_size` payload bytes,
/// each with its own payload length, TCP sequence number and full TCP
/// checksum (FIN/PSH only on the last, CWR only on the first). Anything
/// else comes back as one frame without vnet metadata.
pub fn segment_tcp6(pkt: &Packet) -> Vec<Packet> {
    let f = pkt.frame();
    let h = pkt.hdr;
    let l4 = ETH_HDR_LEN + IPV6_HDR;
    let is_tcp6 = h.gso_type & !VnetHdr::GSO_ECN == VnetHdr::GSO_TCPV6;
    let ok = is_tcp6
        && h.gso_size != 0
        && f.len() >= l4 + tcp::HEADER_LEN
        && ethernet::ethertype(f) == EtherType::IPV6
        && ipv6::Packet::new_unchecked(&f[ETH_HDR_LEN..]).version() == 6
        && ipv6::Packet::new_unchecked(&f[ETH_HDR_LEN..]).next_header() == IPPROTO_TCP;
    let thl = if ok {
        tcp::Packet::new_unchecked(&f[l4..]).header_len()
    } else {
        0
    };
    let hlen = l4 + thl;
    if thl < tcp::HEADER_LEN || f.len() < hlen {
        return vec![Packet::from_frame(VnetHdr::default(), f)];
    }
    let ip = ipv6::Packet::new_unchecked(&f[ETH_HDR_LEN..]);
    // The payload the IPv6 header claims (the frame may carry padding).
    let plen = usize::from(ip.payload_len());
    let end = (l4 + plen).clamp(hlen, f.len());
    let payload = &f[hlen..end];
    let (src, dst) = (ip.src(), ip.dst());
    cut_tcp(
        f,
        l4,
        payload,
        usize::from(h.gso_size),
        |b, _, n| {
            ipv6::Packet::new_unchecked(&mut b[ETH_HDR_LEN..]).set_payload_len((thl + n) as u16)
        },
        |seg| l4_checksum6(src, dst, IPPROTO_TCP, seg),
    )
}

/// Cuts the TCP `payload` of the super-frame `f` (TCP header at `l4`, its
/// payload right after) into segments of at most `mss` bytes. Each gets
/// `f`'s headers, its chunk, its own sequence number and flags (FIN/PSH
/// only on the last, CWR only on the first) and a full TCP checksum from
/// `csum` (given the segment from its TCP header on, checksum zero);
/// `fix_ip(frame, index, chunk_len)` sets the IP header's lengths (and
/// whatever else the family numbers per segment). An empty payload gives
/// one segment.
pub(super) fn cut_tcp(
    f: &[u8],
    l4: usize,
    payload: &[u8],
    mss: usize,
    mut fix_ip: impl FnMut(&mut [u8], usize, usize),
    csum: impl Fn(&[u8]) -> u16,
) -> Vec<Packet> {
    let t0 = tcp::Packet::new_unchecked(&f[l4..]);
    let hlen = l4 + t0.header_len();
    let seq0 = t0.seq_number();
    let flags0 = t0.flags();
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![payload]
    } else {
        payload.chunks(mss).collect()
    };
    let last = chunks.len() - 1;
    let mut out = Vec::with_capacity(chunks.len());
    let mut off = 0u32;
    for (i, c) in chunks.iter().enumerate() {
        let mut s = Packet::zeroed(VnetHdr::default(), hlen + c.len());
        let b = s.frame_mut();
        b[..hlen].copy_from_slice(&f[..hlen]);
        b[hlen..].copy_from_slice(c);
        fix_ip(b, i, c.len());
        let mut t = tcp::Packet::new_unchecked(&mut b[l4..]);
        t.set_seq_number(seq0.wrapping_add(off));
        let mut fl = flags0;
        if i != last {
            fl &= !(tcp::flags::FIN | tcp::flags::PSH);
        }
        if i != 0 {
            fl &= !tcp::flags::CWR;
        }
        t.set_flags(fl);
        t.set_checksum(0);
        let ck = csum(t.into_inner());
        tcp::Packet::new_unchecked(&mut b[l4..]).set_checksum(ck);
        off = off.wrapping_add(c.len() as u32);
        out.push(s);
    }
    out
}

/// Segments a GSO super-frame of either family (TSO4 or TSO6); a frame
/// that is neither comes back whole with its checksum completed.
pub fn segment_tcp(pkt: &Packet) -> Vec<Packet> {
    if pkt.hdr.gso_type & !VnetHdr::GSO_ECN == VnetHdr::GSO_TCPV6 {
        segment_tcp6(pkt)
    } else {
        super::vxlan::segment_tcp4(pkt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use proptest::prelude::*;

    const SRC: [u8; 16] = [0xfd, 0, 0, 0x30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const DST: [u8; 16] = [0xfd, 0, 0, 0x30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];

    /// An IPv6/TCP GSO frame with `n` payload bytes and MSS `mss`, its
    /// checksum partial as a TAP hands it over (pseudo-header sum only).
    fn tcp6_gso(n: usize, mss: u16, flags: u8) -> Packet {
        let mut f = vec![0u8; ETH_HDR_LEN + 60];
        ethernet::emit(&mut f, [2; 6], [4; 6], EtherType::IPV6);
        f.extend((0..n).map(|i| i as u8));
        let ip = &mut f[14..54];
        ip[0] = 0x60;
        ip[1] = 0x0a; // a flow label, kept on every segment
        ip[4..6].copy_from_slice(&((20 + n) as u16).to_be_bytes());
        ip[6] = IPPROTO_TCP;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&SRC);
        ip[24..40].copy_from_slice(&DST);
        let t = &mut f[54..74];
        t[0..2].copy_from_slice(&1234u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[4..8].copy_from_slice(&1000u32.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        Packet::from_frame(
            VnetHdr {
                flags: VnetHdr::F_NEEDS_CSUM,
                gso_type: VnetHdr::GSO_TCPV6,
                hdr_len: 74,
                gso_size: mss,
                csum_start: 54,
                csum_offset: 16,
            },
            &f,
        )
    }

    /// The last of a PSH|FIN super-frame keeps both; CWR only on the first;
    /// etherparse agrees with every segment's checksum.
    #[test]
    fn flags_and_checksums_as_etherparse_sees_them() {
        let segs = segment_tcp6(&tcp6_gso(3000, 1400, 0x80 | 0x18 | 0x01));
        assert_eq!(segs.len(), 3);
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(s.hdr, VnetHdr::default());
            let p = SlicedPacket::from_ethernet(s.frame()).unwrap();
            let Some(NetSlice::Ipv6(ip)) = &p.net else {
                panic!("not IPv6")
            };
            let Some(TransportSlice::Tcp(t)) = &p.transport else {
                panic!("not TCP")
            };
            let h = ip.header();
            let want = t
                .to_header()
                .calc_checksum_ipv6_raw(h.source(), h.destination(), t.payload())
                .unwrap();
            assert_eq!(t.checksum(), want);
            assert_eq!(h.flow_label().value(), 0xa0000);
            assert_eq!(t.cwr(), i == 0);
            assert_eq!(t.fin(), i == 2);
            assert_eq!(t.psh(), i == 2);
            assert!(t.ack());
        }
    }

    /// Not TSO6 (or not TCP): one frame back, unchanged.
    #[test]
    fn other_frames_come_back_whole() {
        let mut p = tcp6_gso(100, 40, 0x10);
        p.hdr.gso_type = VnetHdr::GSO_NONE;
        assert_eq!(segment_tcp6(&p).len(), 1);
        let mut p = tcp6_gso(100, 40, 0x10);
        p.frame_mut()[14 + 6] = 17;
        let s = segment_tcp6(&p);
        assert_eq!((s.len(), s[0].frame()), (1, p.frame()));
        for n in 0..74 {
            let p = Packet::from_frame(
                tcp6_gso(100, 40, 0x10).hdr,
                &tcp6_gso(100, 40, 0x10).frame()[..n],
            );
            assert_eq!(segment_tcp6(&p).len(), 1);
        }
    }

    proptest! {
        /// As segment_tcp4's: sizes, sequence numbers, payload lengths and
        /// checksums of every segment; the payload survives in order.
        #[test]
        fn segmentation_sizes_and_checksums(n in 1usize..20000, mss in 500u16..1500) {
            let p = tcp6_gso(n, mss, 0x18);
            let segs = segment_tcp(&p);
            prop_assert_eq!(segs.len(), n.div_ceil(usize::from(mss)));
            let mut seq = 1000u32;
            let mut data = Vec::new();
            for (i, s) in segs.iter().enumerate() {
                let f = s.frame();
                let pl = f.len() - 74;
                if i + 1 < segs.len() {
                    prop_assert_eq!(pl, usize::from(mss));
                    prop_assert_eq!(f[67] & 0x08, 0);
                }
                prop_assert_eq!(u16::from_be_bytes([f[18], f[19]]) as usize, 20 + pl);
                prop_assert_eq!(u32::from_be_bytes([f[58], f[59], f[60], f[61]]), seq);
                prop_assert_eq!(l4_checksum6(SRC, DST, 6, &f[54..]), 0);
                seq = seq.wrapping_add(pl as u32);
                data.extend_from_slice(&f[74..]);
            }
            prop_assert_eq!(&data[..], &p.frame()[74..]);
        }
    }
}
