//! Engine tests of the VTEPs (issue 8): three machines on lan, one overlay
//! domain on each of m1 and m2 with VNI 4097 (m3 has none), plus a second
//! overlay (VNI 5000) on m1 only. Nothing sleeps; nothing does IO.

use std::net::Ipv4Addr;
use std::time::Instant;

use super::vxlan::{OVERHEAD, encap, parse_outer};
use super::*;

const LAN: DomainId = DomainId(0);
// Ports: 0..3 uplinks m1..m3; 3 a (m1, ov), 4 b (m2, ov), 5 c (m1, ov),
// 6 z (m1, ov2); 7 vtep m1/ov, 8 vtep m2/ov, 9 vtep m1/ov2.
const U1: PortId = PortId(0);
const U2: PortId = PortId(1);
const A: PortId = PortId(3);
const B: PortId = PortId(4);
const C: PortId = PortId(5);

fn mip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, n)
}
fn mmac(n: u8) -> MacAddr {
    MacAddr([2, 0x56, 198, 18, 0, n])
}
fn cmac(n: u8) -> MacAddr {
    MacAddr([2, 0x42, 10, 0, 0, n])
}
fn cip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

fn cfg() -> EngineConfig {
    let dom = |n: &str| DomainConfig {
        name: n.into(),
        gateway: None,
        icc: true,
    };
    let port = |n: &str, d: u16, role| PortConfig {
        name: n.into(),
        domain: DomainId(d),
        role,
    };
    let vtep = |m: u8, d: u16, port: u16, vni, peers: Vec<u8>, bindings| VtepConfig {
        name: "ov".into(),
        vni,
        domain: DomainId(d),
        port: PortId(port),
        uplink: PortId(u16::from(m) - 1),
        local_ip: mip(m),
        local_mac: mmac(m),
        peers: peers.into_iter().map(|p| (mip(p), mmac(p))).collect(),
        bindings,
        capture: true,
        esp: Vec::new(),
    };
    EngineConfig {
        domains: vec![dom("lan"), dom("ov@m1"), dom("ov@m2"), dom("ov2@m1")],
        ports: vec![
            port("m1", 0, PortRole::Plain),
            port("m2", 0, PortRole::Plain),
            port("m3", 0, PortRole::Plain),
            port("a", 1, PortRole::Container),
            port("b", 2, PortRole::Container),
            port("c", 1, PortRole::Container),
            port("z", 3, PortRole::Container),
            port("vtep1", 1, PortRole::Plain),
            port("vtep2", 2, PortRole::Plain),
            port("vtep1b", 3, PortRole::Plain),
        ],
        overlay: vec![
            vtep(1, 1, 7, 4097, vec![2], vec![(cip(3), cmac(3), mip(2))]),
            vtep(2, 2, 8, 4097, vec![1], vec![(cip(2), cmac(2), mip(1))]),
            vtep(1, 3, 9, 5000, vec![2], vec![]),
        ],
        ..EngineConfig::default()
    }
}

fn eth(dst: MacAddr, src: MacAddr, et: u16, body: &[u8]) -> Packet {
    let mut f = vec![0u8; 14];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&et.to_be_bytes());
    f.extend_from_slice(body);
    Packet::from_frame(VnetHdr::default(), &f)
}

fn arp_request(from: u8, target: u8) -> Packet {
    let mut b = vec![0, 1, 8, 0, 6, 4, 0, 1];
    b.extend_from_slice(&cmac(from).0);
    b.extend_from_slice(&cip(from).octets());
    b.extend_from_slice(&[0; 6]);
    b.extend_from_slice(&cip(target).octets());
    eth(MacAddr::BROADCAST, cmac(from), 0x0806, &b)
}

fn run(e: &mut Engine, port: PortId, p: &mut Packet) -> Vec<Action> {
    let mut out = Vec::new();
    e.handle_frame(Instant::now(), port, p, &mut out);
    out
}

#[test]
fn unicast_crosses_machines_and_is_captured_on_the_sender_uplink() {
    let mut e = Engine::new(cfg()).unwrap();
    let mut p = eth(cmac(3), cmac(2), 0x0800, &[0x45; 40]);
    let out = run(&mut e, A, &mut p);
    let mut delivered = 0;
    let mut captured = 0;
    for a in &out {
        match a {
            Action::Emit(to, pk) if *to == B => {
                assert_eq!(pk.frame(), p.frame());
                delivered += 1;
            }
            Action::Capture(to, pk) => {
                assert_eq!(*to, U1);
                let o = parse_outer(pk.frame()).unwrap().unwrap();
                assert_eq!((o.vni, o.src, o.dst), (4097, mip(1), mip(2)));
                assert_eq!(&pk.frame()[OVERHEAD..], p.frame());
                captured += 1;
            }
            // Not learned locally yet: the domain floods to c too.
            Action::Forward(to) if *to == C => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((delivered, captured), (1, 1));
    assert_eq!(e.overlay_stats().unwrap().decapsulated, 1);
}

#[test]
fn arp_for_a_known_remote_binding_is_answered_locally() {
    let mut e = Engine::new(cfg()).unwrap();
    let mut p = arp_request(2, 3);
    let out = run(&mut e, A, &mut p);
    assert_eq!(out.len(), 1);
    let Action::Emit(to, r) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(*to, A);
    let f = r.frame();
    assert_eq!(&f[6..12], &cmac(3).0);
    assert_eq!(&f[20..22], &[0, 2]);
    assert_eq!(&f[22..28], &cmac(3).0);
    assert_eq!(&f[28..32], &cip(3).octets());
}

#[test]
fn broadcast_is_flooded_locally_and_replicated_to_peers() {
    let mut e = Engine::new(cfg()).unwrap();
    // ARP for an unknown address: not answered, flooded.
    let mut p = arp_request(2, 99);
    let out = run(&mut e, A, &mut p);
    let to: Vec<PortId> = out
        .iter()
        .filter_map(|a| match a {
            Action::Forward(p) | Action::Emit(p, _) => Some(*p),
            _ => None,
        })
        .collect();
    assert!(to.contains(&C), "{out:?}");
    assert!(to.contains(&B), "{out:?}");
    assert!(
        !to.contains(&PortId(6)),
        "leaked into the other VNI: {out:?}"
    );
    assert_eq!(
        out.iter()
            .filter(|a| matches!(a, Action::Capture(..)))
            .count(),
        1
    );
}

#[test]
fn remote_macs_are_learned_from_decapsulated_frames() {
    let mut e = Engine::new(cfg()).unwrap();
    // A frame from an unknown MAC behind m2 arrives for m1's VNI 4097.
    let new = MacAddr([2, 0x42, 10, 0, 0, 77]);
    let inner = eth(cmac(2), new, 0x0800, &[0x45; 30]);
    let mut x = encap(&inner, 4097, mmac(2), mip(2), mmac(1), mip(1), 50000);
    let out = run(&mut e, U2, &mut x);
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::Forward(p) if *p == A)),
        "{out:?}"
    );
    // a answers: unicast to the learned MAC goes to m2 only.
    let mut r = eth(new, cmac(2), 0x0800, &[0x45; 30]);
    let out = run(&mut e, A, &mut r);
    assert_eq!(
        out.iter()
            .filter(|a| matches!(a, Action::Capture(..)))
            .count(),
        1
    );
    assert!(e.overlay_stats().unwrap().learned >= 1);
}

#[test]
fn wrong_vni_is_dropped_with_its_reason() {
    let mut e = Engine::new(cfg()).unwrap();
    let inner = eth(cmac(2), cmac(3), 0x0800, &[0x45; 30]);
    let mut x = encap(&inner, 999, mmac(2), mip(2), mmac(1), mip(1), 50000);
    let out = run(&mut e, U2, &mut x);
    assert!(
        matches!(out[..], [Action::Drop(DropReason::VxlanUnknownVni)]),
        "{out:?}"
    );
    assert_eq!(e.overlay_stats().unwrap().unknown_vni, 1);
    // m3 has no VTEP: VXLAN to it is plain lan traffic.
    let mut y = encap(&inner, 4097, mmac(2), mip(2), mmac(3), mip(3), 50000);
    let out = run(&mut e, U2, &mut y);
    assert!(!out.iter().any(|a| matches!(a, Action::Drop(_))), "{out:?}");
}

#[test]
fn gso_metadata_survives_the_tunnel() {
    let mut e = Engine::new(cfg()).unwrap();
    let mut p = eth(cmac(3), cmac(2), 0x0800, &[0x45; 60]);
    p.hdr = VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        gso_type: VnetHdr::GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1398,
        csum_start: 34,
        csum_offset: 16,
    };
    let out = run(&mut e, A, &mut p);
    let got = out
        .iter()
        .find_map(|a| match a {
            Action::Emit(to, pk) if *to == B => Some(pk.hdr),
            _ => None,
        })
        .unwrap();
    assert_eq!(got, p.hdr);
    let _ = LAN;
}

/// An inner IPv4/UDP frame from a to b of `len` IP bytes, DF as given.
fn udp_a_to_b(len: usize, df: bool) -> Packet {
    let mut h = etherparse::Ipv4Header::new(
        0,
        64,
        etherparse::IpNumber::UDP,
        cip(2).octets(),
        cip(3).octets(),
    )
    .unwrap();
    h.dont_fragment = df;
    let b = etherparse::PacketBuilder::ethernet2(cmac(2).0, cmac(3).0)
        .ip(etherparse::IpHeaders::Ipv4(h, Default::default()))
        .udp(40000, 7);
    let mut f = Vec::new();
    b.write(&mut f, &vec![9u8; len - 28]).unwrap();
    Packet::from_frame(VnetHdr::default(), &f)
}

/// m1's uplink narrowed to 1400 bytes: the overlay carries inner packets
/// of at most 1350.
fn narrowed() -> Engine {
    let mut e = Engine::new(cfg()).unwrap();
    let f = crate::engine::fault::LinkFault {
        mtu: Some(1400),
        ..Default::default()
    };
    e.set_fault(U1, Some(f));
    e
}

/// BUG-7 on a kernel with vxlan PMTU (Linux ≥ 5.9): a DF packet that no
/// longer fits once encapsulated comes back as "fragmentation needed" with
/// the inner MTU, from its destination; nothing crosses.
#[test]
fn df_too_big_for_the_narrowed_underlay_gets_frag_needed() {
    let mut e = narrowed();
    let mut p = udp_a_to_b(1351, true);
    let out = run(&mut e, A, &mut p);
    let errs: Vec<&Packet> = out
        .iter()
        .filter_map(|a| match a {
            Action::Emit(to, pk) if *to == A => Some(pk),
            _ => None,
        })
        .collect();
    assert_eq!(errs.len(), 1, "{out:?}");
    assert!(
        !out.iter()
            .any(|a| matches!(a, Action::Emit(to, _) if *to == B))
    );
    let s = etherparse::SlicedPacket::from_ethernet(errs[0].frame()).unwrap();
    let Some(etherparse::TransportSlice::Icmpv4(icmp)) = s.transport else {
        panic!("not icmp");
    };
    assert_eq!(
        icmp.icmp_type(),
        etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1350 }
        )
    );
    assert_eq!(e.overlay_stats().unwrap().too_big, 1);
    // One byte less fits and crosses whole.
    let mut p = udp_a_to_b(1350, true);
    let out = run(&mut e, A, &mut p);
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::Emit(to, _) if *to == B))
    );
}

/// Without DF the outer packet is fragmented on the narrowed underlay (two
/// fragments of at most 1400 bytes, as captured on m1's uplink) and the
/// receiving VTEP puts it back together: b gets the frame as sent.
#[test]
fn without_df_the_outer_packet_is_fragmented_and_reassembled() {
    let mut e = narrowed();
    let mut p = udp_a_to_b(1450, false);
    let sent = p.frame().to_vec();
    let out = run(&mut e, A, &mut p);
    let to_b: Vec<&Packet> = out
        .iter()
        .filter_map(|a| match a {
            Action::Emit(to, pk) if *to == B => Some(pk),
            _ => None,
        })
        .collect();
    assert_eq!(to_b.len(), 1, "{out:?}");
    assert_eq!(to_b[0].frame(), &sent[..]);
    let captured: Vec<usize> = out
        .iter()
        .filter_map(|a| match a {
            Action::Capture(_, pk) => Some(pk.len() - 14),
            _ => None,
        })
        .collect();
    assert_eq!(captured.len(), 2, "{captured:?}");
    assert!(captured.iter().all(|&n| n <= 1400));
    let st = e.overlay_stats().unwrap();
    assert_eq!((st.fragmented, st.reassembled, st.too_big), (1, 1, 0));
}

/// IPv6 has no DF: a packet too big for the overlay always gets ICMPv6
/// "packet too big" with the inner MTU (RFC 8201 sender behaviour follows).
#[test]
fn ipv6_too_big_for_the_overlay_gets_packet_too_big() {
    let mut e = narrowed();
    let b = etherparse::PacketBuilder::ethernet2(cmac(2).0, cmac(3).0)
        .ipv6(
            [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3],
            64,
        )
        .udp(40000, 7);
    let mut f = Vec::new();
    b.write(&mut f, &vec![9u8; 1400 - 48]).unwrap();
    let mut p = Packet::from_frame(VnetHdr::default(), &f);
    let out = run(&mut e, A, &mut p);
    let err = out
        .iter()
        .find_map(|a| match a {
            Action::Emit(to, pk) if *to == A => Some(pk),
            _ => None,
        })
        .expect("an error back to a");
    let s = etherparse::SlicedPacket::from_ethernet(err.frame()).unwrap();
    let Some(etherparse::TransportSlice::Icmpv6(icmp)) = s.transport else {
        panic!("not icmpv6");
    };
    assert_eq!(
        icmp.icmp_type(),
        etherparse::Icmpv6Type::PacketTooBig { mtu: 1350 }
    );
}

/// The tunnel offers of the kernel fast path (`super::offload`): `cfg()`
/// with the VTEPs' frames not captured and offload on.
mod tunnel_offers {
    use std::time::{Duration, Instant};

    use super::super::vxlan::OuterEnds;
    use super::*;

    const VTEP1: PortId = PortId(7);
    const VTEP2: PortId = PortId(8);

    fn engine(capture: bool) -> Engine {
        let mut c = cfg();
        for v in &mut c.overlay {
            v.capture = capture;
        }
        let mut e = Engine::new(c).unwrap();
        e.set_offload(true);
        e
    }

    fn at(e: &mut Engine, now: Instant, port: PortId, p: &mut Packet) -> Vec<Action> {
        let mut out = Vec::new();
        e.handle_frame(now, port, p, &mut out);
        out
    }

    /// A UDP datagram from container `from` to `to` (`cmac`, `cip`).
    fn udp(from: u8, to: u8) -> Packet {
        let b = etherparse::PacketBuilder::ethernet2(cmac(from).0, cmac(to).0)
            .ipv4(cip(from).octets(), cip(to).octets(), 64)
            .udp(40000, 7);
        let mut f = Vec::new();
        b.write(&mut f, b"through the tunnel").unwrap();
        Packet::from_frame(VnetHdr::default(), &f)
    }

    /// a (port A, `cmac(2)`, on m1) to b (port B, `cmac(3)`, on m2).
    fn a_to_b() -> Packet {
        udp(2, 3)
    }

    fn b_to_a() -> Packet {
        udp(3, 2)
    }

    fn tunnel(from: (PortId, u8), to: (PortId, u8), vtep: PortId) -> OffloadEvent {
        let m = |p: PortId| if p == A { 1 } else { 2 };
        OffloadEvent::Tunnel {
            ingress: from.0,
            egress: to.0,
            src: cmac(from.1),
            dst: cmac(to.1),
            ends: OuterEnds {
                vni: 4097,
                src: (mmac(m(from.0)), mip(m(from.0))),
                dst: (mmac(m(to.0)), mip(m(to.0))),
            },
            vtep,
            mtu: 1450,
        }
    }

    /// OV-2/OV-3: once both MACs are learned on their sides, a container's
    /// unicast across machines is offered as a VXLAN tunnel of its VNI,
    /// from its machine's VTEP to the other's, one direction at a time;
    /// a frame flooded on either side is not.
    #[test]
    fn a_learned_unicast_across_machines_is_offered_as_a_tunnel() {
        let t = Instant::now();
        let mut e = engine(false);
        // a → b: flooded on m1 (to c too) and on m2 (b not learned yet).
        at(&mut e, t, A, &mut a_to_b());
        assert!(e.take_offload_events().is_empty());
        // b → a: a learned behind m1's VTEP on m2 and on port A on m1.
        let out = at(&mut e, t, B, &mut b_to_a());
        assert!(matches!(out[..], [Action::Emit(A, _)]), "{out:?}");
        assert_eq!(e.take_offload_events(), vec![tunnel((B, 3), (A, 2), VTEP1)]);
        at(&mut e, t, A, &mut a_to_b());
        assert_eq!(e.take_offload_events(), vec![tunnel((A, 2), (B, 3), VTEP2)]);
    }

    /// Never offered: with the VTEPs' frames captured (the capture must
    /// see each), with offload off, broadcast, and while a fault holds.
    #[test]
    fn captured_broadcast_faulted_or_offload_off_is_never_offered() {
        let t = Instant::now();
        for (what, mut e) in [
            ("captured", engine(true)),
            ("offload off", {
                let mut e = engine(false);
                e.set_offload(false);
                e
            }),
        ] {
            at(&mut e, t, A, &mut a_to_b());
            at(&mut e, t, B, &mut b_to_a());
            at(&mut e, t, A, &mut a_to_b());
            assert!(e.take_offload_events().is_empty(), "{what}");
        }
        let mut e = engine(false);
        at(&mut e, t, A, &mut a_to_b());
        at(&mut e, t, B, &mut b_to_a());
        e.take_offload_events();
        at(&mut e, t, A, &mut arp_request(2, 3));
        let mut bcast = a_to_b();
        bcast.frame_mut()[..6].copy_from_slice(&MacAddr::BROADCAST.0);
        at(&mut e, t, A, &mut bcast);
        assert!(e.take_offload_events().is_empty(), "broadcast");
        // (The same frame to b is offered: what kept the others back is
        // what they are.)
        at(&mut e, t, A, &mut a_to_b());
        assert_eq!(e.take_offload_events().len(), 1, "unicast");
        e.set_fault(U2, Some(super::super::fault::LinkFault::default()));
        assert_eq!(e.take_offload_events(), vec![OffloadEvent::ForgetAll]);
        at(&mut e, t, A, &mut a_to_b());
        assert!(e.take_offload_events().is_empty(), "under a fault");
    }

    /// A MAC learned behind another peer address (it moved machines) is
    /// retracted.
    #[test]
    fn a_remote_mac_that_moves_machines_is_retracted() {
        let t = Instant::now();
        let mut e = engine(false);
        at(&mut e, t, A, &mut a_to_b());
        at(&mut e, t, B, &mut b_to_a());
        e.take_offload_events();
        // b's MAC now arrives at m1 from m3's address.
        let inner = b_to_a();
        let mut x = encap(
            &inner,
            4097,
            mmac(3),
            Ipv4Addr::new(198, 18, 0, 3),
            mmac(1),
            mip(1),
            50000,
        );
        at(&mut e, t, U1, &mut x);
        assert!(
            e.take_offload_events()
                .contains(&OffloadEvent::ForgetMac(cmac(3))),
        );
    }

    /// What the fast path carries keeps the sender learned on its port
    /// and behind the receiving VTEP, past the ageing time.
    #[test]
    fn frames_a_tunnel_carried_keep_the_sender_learned_on_both_sides() {
        let t = Instant::now();
        let mut e = engine(false);
        at(&mut e, t, A, &mut a_to_b());
        at(&mut e, t, B, &mut b_to_a());
        let aging = Duration::from_secs(300);
        e.offload_tunnel_seen(A, VTEP2, cmac(2), t + aging - Duration::from_secs(1));
        e.expire(t + aging + Duration::from_secs(10));
        assert_eq!(e.fdb_port(DomainId(1), cmac(2)), Some(A));
        assert_eq!(e.fdb_port(DomainId(2), cmac(2)), Some(VTEP2));
        assert_eq!(e.fdb_port(DomainId(2), cmac(3)), None, "b was not carried");
    }
}
