//! TSO6 super-frames through every path: NAT66 (the partial checksum
//! updated for the new addresses, GSO metadata kept), a VLAN tag pushed
//! and popped, VXLAN to a peer VTEP of this engine (offsets shifted by the
//! outer headers) and software segmentation where GSO cannot go. Every
//! checksum is completed as a device would and verified by etherparse.

use std::time::Instant;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use super::fixtures6::*;
use super::*;

const L4: usize = 14 + 40;

/// A TSO6 super-frame as a TAP hands it over: `n` payload bytes, MSS
/// `mss`, the TCP checksum field holding the pseudo-header sum only.
fn tso6(smac: MacAddr, dmac: MacAddr, src: &str, dst: &str, n: usize, mss: u16) -> Packet {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(smac.0, dmac.0)
        .ipv6(a6(src).octets(), a6(dst).octets(), 64)
        .tcp(40000, 80, 1, 64240)
        .ack(1)
        .write(&mut v, &vec![0x5a; n])
        .unwrap();
    let mut p = Packet::from_frame(
        VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            gso_type: VnetHdr::GSO_TCPV6,
            hdr_len: (L4 + 20) as u16,
            gso_size: mss,
            csum_start: L4 as u16,
            csum_offset: 16,
        },
        &v,
    );
    let len = (p.frame().len() - L4) as u32;
    let ps = pseudo(a6(src), a6(dst), len);
    p.frame_mut()[L4 + 16..L4 + 18].copy_from_slice(&ps.to_be_bytes());
    p
}

/// The folded, uncomplemented IPv6 pseudo-header sum for TCP.
fn pseudo(src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr, len: u32) -> u16 {
    let mut s: u32 = len + 6;
    for w in src.segments().into_iter().chain(dst.segments()) {
        s += u32::from(w);
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Completes the partial checksum at `start` as the device does, then
/// checks the TCP checksum with etherparse; returns (src, dst).
fn device_checksum_ok(p: &Packet, start: usize) -> (std::net::Ipv6Addr, std::net::Ipv6Addr) {
    let mut f = p.frame().to_vec();
    let c = !checksum::sum(&f[start..], 0);
    f[start + 16..start + 18].copy_from_slice(&c.to_be_bytes());
    let s = SlicedPacket::from_ethernet(&f[start - L4..]).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &s.net else {
        panic!("not IPv6")
    };
    let Some(TransportSlice::Tcp(t)) = &s.transport else {
        panic!("not TCP")
    };
    let h = ip.header();
    let want = t
        .to_header()
        .calc_checksum_ipv6_raw(h.source(), h.destination(), t.payload())
        .unwrap();
    assert_eq!(t.checksum(), want, "completed TCP checksum");
    (h.source_addr(), h.destination_addr())
}

/// V6-4 NAT66: a TSO6 super-frame is masqueraded whole, GSO metadata and
/// offsets unchanged, its partial checksum right for the new source; cut
/// in software, every segment carries a full checksum.
#[test]
fn tso6_through_nat66_keeps_gso_and_a_right_partial_sum() {
    let mut e = Engine::new(nat6_cfg(true, false)).unwrap();
    let mut v = Vec::new();
    PacketBuilder::ethernet2(A_MAC.0, GW1_MAC.0)
        .ipv6(a6(A6).octets(), a6(WWW).octets(), 64)
        .tcp(40000, 80, 0, 64240)
        .syn()
        .write(&mut v, &[])
        .unwrap();
    let mut syn = Packet::from_frame(VnetHdr::default(), &v);
    let mut out = Vec::new();
    e.handle_frame(Instant::now(), A, &mut syn, &mut out);
    assert!(matches!(out[..], [Action::Forward(EXT)]), "{out:?}");
    let mut p = tso6(A_MAC, GW1_MAC, A6, WWW, 20000, 1428);
    let hdr = p.hdr;
    out.clear();
    e.handle_frame(Instant::now(), A, &mut p, &mut out);
    assert!(matches!(out[..], [Action::Forward(EXT)]), "{out:?}");
    assert_eq!(p.hdr, hdr, "GSO metadata kept");
    assert_eq!(device_checksum_ok(&p, L4), (a6(ME), a6(WWW)));
    let segs = gso6::segment_tcp6(&p);
    assert_eq!(segs.len(), 20000usize.div_ceil(1428));
    for s in &segs {
        assert_eq!(s.hdr, VnetHdr::default());
        let sl = SlicedPacket::from_ethernet(s.frame()).unwrap();
        let (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Tcp(t))) = (&sl.net, &sl.transport)
        else {
            panic!("not IPv6/TCP")
        };
        let h = ip.header();
        assert_eq!(h.source_addr(), a6(ME));
        let want = t
            .to_header()
            .calc_checksum_ipv6_raw(h.source(), h.destination(), t.payload())
            .unwrap();
        assert_eq!(t.checksum(), want);
    }
}

/// A VLAN tag pushed on a TSO6 frame moves csum_start and hdr_len by 4;
/// popped, the frame and its metadata are as before.
#[test]
fn tso6_through_a_vlan_tag() {
    let p0 = tso6(A_MAC, GW1_MAC, A6, WWW, 5000, 1400);
    let mut p = Packet::from_frame(p0.hdr, p0.frame());
    assert!(vlan::push_tag(&mut p, 10));
    assert_eq!(
        (p.hdr.csum_start, p.hdr.hdr_len),
        (L4 as u16 + 4, L4 as u16 + 24)
    );
    assert_eq!((p.hdr.gso_type, p.hdr.gso_size), (VnetHdr::GSO_TCPV6, 1400));
    device_checksum_ok(&p, L4 + 4);
    assert_eq!(vlan::pop_tag(&mut p), Some(10));
    assert_eq!((p.frame(), p.hdr), (p0.frame(), p0.hdr));
}

/// VXLAN: the inner TSO6 frame's offsets shift with the outer headers and
/// come back exact on decapsulation.
#[test]
fn tso6_through_vxlan_encap_and_decap() {
    let p0 = tso6(A_MAC, GW1_MAC, A6, WWW, 9000, 1398);
    let m = MacAddr([2; 6]);
    let e = vxlan::encap(
        &p0,
        4097,
        m,
        "198.18.0.2".parse().unwrap(),
        m,
        "198.18.0.3".parse().unwrap(),
        50000,
    );
    let inner = usize::from(e.hdr.csum_start) - L4;
    assert_eq!(inner, vxlan::OVERHEAD);
    assert_eq!((e.hdr.gso_type, e.hdr.gso_size), (VnetHdr::GSO_TCPV6, 1398));
    device_checksum_ok(&e, L4 + inner);
    let o = vxlan::parse_outer(e.frame()).unwrap().unwrap();
    let mut d = e;
    vxlan::decap_in_place(&mut d, o.inner);
    assert_eq!((d.frame(), d.hdr), (p0.frame(), p0.hdr));
}
