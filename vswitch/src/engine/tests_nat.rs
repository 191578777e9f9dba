//! NAT and conntrack tests on a virtual clock, on the topology of
//! `tests_l3.rs`, and property tests over random flows and frames.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use proptest::prelude::*;

use super::conntrack::{Conntrack, NAT_PORT_MAX, NAT_PORT_MIN, State};
use super::tests_l3::*;
use super::*;

fn gw1() -> [u8; 6] {
    dmac(GW1)
}

/// A container SYN out and the SYN-ACK back; returns the port seen on the lan.
fn masq_round_trip(e: &mut Engine, now: Instant, sport: u16) -> u16 {
    let (out, p) = step(
        e,
        now,
        A,
        &tcp(dmac(A_IP), gw1(), A_IP, X_IP, sport, 80, "S"),
    );
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, X);
    let s = verified(&f);
    assert_eq!(addrs(&s).0, M_IP, "BR-10: the machine's address");
    let seen = ports(&s).0;
    let (out, p) = step(
        e,
        now,
        X,
        &tcp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 80, seen, "SA"),
    );
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, A, "the reply goes back to the container");
    assert_eq!(&f[0..6], &dmac(A_IP), "to its MAC");
    assert_eq!(&f[6..12], &gw1(), "from the gateway");
    let s = verified(&f);
    assert_eq!(addrs(&s), (X_IP, A_IP, 63));
    assert_eq!(ports(&s), (80, sport));
    seen
}

#[test]
fn masquerade_keeps_the_port_and_translates_replies() {
    let t0 = Instant::now();
    let mut e = nat_engine(Knobs::default(), t0);
    assert_eq!(masq_round_trip(&mut e, t0, 40000), 40000);
    let c = e.conntrack();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].kind, Kind::Masquerade);
    assert_eq!(c[0].state, State::Tcp(TcpState::SynRecv, [false; 2]));
    // The handshake's last ACK establishes it.
    let (out, _) = step(
        &mut e,
        t0,
        A,
        &tcp(dmac(A_IP), gw1(), A_IP, X_IP, 40000, 80, "A"),
    );
    assert!(matches!(out[..], [Action::Forward(X)]));
    assert_eq!(
        e.conntrack()[0].state,
        State::Tcp(TcpState::Established, [false; 2])
    );
}

#[test]
fn nat_port_avoids_a_host_stack_flow() {
    let t0 = Instant::now();
    let mut e = nat_engine(Knobs::default(), t0);
    // The host stack talks from 40000 to X:80 first …
    let host = tcp(lmac(M_IP), lmac(X_IP), M_IP, X_IP, 40000, 80, "S");
    let (out, p) = step(&mut e, t0, UPLINK, &host);
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, X);
    assert_eq!(
        ports(&verified(&f)),
        (40000, 80),
        "host flows keep their port"
    );
    // … so the container's flow with the same port gets another one.
    let p2 = masq_round_trip(&mut e, t0, 40000);
    assert_ne!(p2, 40000);
    assert!((NAT_PORT_MIN..=NAT_PORT_MAX).contains(&p2));
    assert_eq!(e.conntrack_counters().port_remapped, 1);
    // X's reply to 40000 still reaches the host stack, untouched.
    let (out, p) = step(
        &mut e,
        t0,
        X,
        &tcp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 80, 40000, "SA"),
    );
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, UPLINK);
    assert_eq!(addrs(&verified(&f)).1, M_IP);
}

#[test]
fn host_flow_colliding_with_a_nat_flow_is_remapped() {
    let t0 = Instant::now();
    let mut e = nat_engine(Knobs::default(), t0);
    masq_round_trip(&mut e, t0, 40000);
    // Now the host stack picks 40000 towards the same peer: it must not
    // steal the container's replies, so it is the one translated.
    let host = tcp(lmac(M_IP), lmac(X_IP), M_IP, X_IP, 40000, 80, "S");
    let (out, p) = step(&mut e, t0, UPLINK, &host);
    let (_, f) = one_out(&out, &p);
    let hp = ports(&verified(&f)).0;
    assert_ne!(hp, 40000);
    let (out, p) = step(
        &mut e,
        t0,
        X,
        &tcp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 80, hp, "SA"),
    );
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, UPLINK);
    assert_eq!(ports(&verified(&f)), (80, 40000));
}

#[test]
fn published_port_dnat_keeps_the_client_and_replies_come_from_the_host_port() {
    let t0 = Instant::now();
    let mut e = nat_engine(Knobs::default(), t0);
    let (out, p) = step(
        &mut e,
        t0,
        X,
        &tcp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 5555, 8080, "S"),
    );
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, A);
    let s = verified(&f);
    assert_eq!(
        addrs(&s),
        (X_IP, A_IP, 63),
        "PUB-3: the client's own address"
    );
    assert_eq!(ports(&s), (5555, 80));
    let (out, p) = step(
        &mut e,
        t0,
        A,
        &tcp(dmac(A_IP), gw1(), A_IP, X_IP, 80, 5555, "SA"),
    );
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, X);
    let s = verified(&f);
    assert_eq!(addrs(&s).0, M_IP);
    assert_eq!(ports(&s), (8080, 5555));
    // PUB-11: UDP on the same number is its own mapping.
    let (out, p) = step(
        &mut e,
        t0,
        X,
        &udp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 6000, 8080, b"q"),
    );
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, A);
    assert_eq!(ports(&verified(&f)), (6000, 80));
    assert_eq!(
        e.conntrack()
            .iter()
            .filter(|c| c.kind == Kind::Dnat)
            .count(),
        2
    );
    // A port nobody published goes to the host stack.
    let (out, _) = step(
        &mut e,
        t0,
        X,
        &tcp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 5555, 8081, "S"),
    );
    assert!(matches!(out[..], [Action::Forward(UPLINK)]));
}

#[test]
fn hairpin_without_the_proxy() {
    let t0 = Instant::now();
    let k = Knobs {
        proxy: false,
        ..Knobs::default()
    };
    let mut e = nat_engine(k, t0);
    // PUB-8: A to its own published port: DNAT + masquerade to the gateway.
    let (out, p) = step(
        &mut e,
        t0,
        A,
        &tcp(dmac(A_IP), gw1(), A_IP, M_IP, 41000, 8080, "S"),
    );
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, A);
    let s = verified(&f);
    assert_eq!(addrs(&s), (GW1, A_IP, 63));
    assert_eq!(ports(&s), (41000, 80));
    let (out, p) = step(
        &mut e,
        t0,
        A,
        &tcp(dmac(A_IP), gw1(), A_IP, GW1, 80, 41000, "SA"),
    );
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, A);
    let s = verified(&f);
    assert_eq!(addrs(&s).0, M_IP);
    assert_eq!(ports(&s), (8080, 41000));
    // A peer of the same bridge keeps its address; the answer goes to the
    // peer's MAC directly and is translated back on the L2 path.
    let (out, p) = step(
        &mut e,
        t0,
        B,
        &tcp(dmac(B_IP), gw1(), B_IP, M_IP, 42000, 8080, "S"),
    );
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, A);
    assert_eq!(addrs(&verified(&f)).0, B_IP);
    let (out, p) = step(
        &mut e,
        t0,
        A,
        &tcp(dmac(A_IP), dmac(B_IP), A_IP, B_IP, 80, 42000, "SA"),
    );
    assert!(matches!(out[..], [Action::Forward(B)]), "{out:?}");
    let s = verified(p.frame());
    assert_eq!(addrs(&s), (M_IP, B_IP, 64), "bridged: TTL untouched");
    assert_eq!(ports(&s), (8080, 42000));
    // Another network is isolated (BR-12), even through DNAT.
    let gw2 = dmac(Ipv4Addr::new(172, 21, 0, 1));
    let (out, _) = step(
        &mut e,
        t0,
        C,
        &tcp(dmac(C_IP), gw2, C_IP, M_IP, 1, 8080, "S"),
    );
    assert!(matches!(out[..], [Action::Drop(DropReason::Isolation)]));
}

#[test]
fn with_the_proxy_hairpin_goes_to_the_host_stack() {
    let t0 = Instant::now();
    let mut e = nat_engine(Knobs::default(), t0);
    let f = tcp(dmac(A_IP), gw1(), A_IP, M_IP, 41000, 8080, "S");
    let (out, p) = step(&mut e, t0, A, &f);
    assert!(matches!(out[..], [Action::Forward(H1)]));
    assert_eq!(p.frame(), &f[..], "untouched: the userland proxy answers");
}

#[test]
fn icmp_errors_quoting_a_translated_packet_are_translated() {
    let t0 = Instant::now();
    let mut e = nat_engine(Knobs::default(), t0);
    let sent = masq_round_trip(&mut e, t0, 40000);
    // A router on the way reports the packet the machine sent.
    let mut quoted = Vec::new();
    PacketBuilder::ipv4(M_IP.octets(), X_IP.octets(), 1)
        .tcp(sent, 80, 1000, 64240)
        .write(&mut quoted, b"hello")
        .unwrap();
    let mut err = Vec::new();
    PacketBuilder::ethernet2(lmac(G_IP), lmac(M_IP))
        .ipv4(G_IP.octets(), M_IP.octets(), 64)
        .icmpv4(etherparse::Icmpv4Type::TimeExceeded(
            etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
        ))
        .write(&mut err, &quoted[..28])
        .unwrap();
    let (out, p) = step(&mut e, t0, G, &err);
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, A);
    let s = verified(&f);
    assert_eq!(addrs(&s), (G_IP, A_IP, 63), "the router's address is kept");
    let inner = etherparse::Ipv4HeaderSlice::from_slice(&f[14 + 20 + 8..]).unwrap();
    assert_eq!(inner.source_addr(), A_IP);
    assert_eq!(inner.destination_addr(), X_IP);
    assert_eq!(
        inner.to_header().calc_header_checksum(),
        inner.header_checksum()
    );
    let l4 = &f[14 + 20 + 8 + 20..];
    assert_eq!(u16::from_be_bytes([l4[0], l4[1]]), 40000);

    // The container answering a DNATed UDP packet with port unreachable:
    // the error leaves from the machine and quotes the published port.
    let (out, _) = step(
        &mut e,
        t0,
        X,
        &udp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 6000, 8080, b"q"),
    );
    assert!(matches!(out[..], [Action::Forward(A)]));
    let mut quoted = Vec::new();
    PacketBuilder::ipv4(X_IP.octets(), A_IP.octets(), 63)
        .udp(6000, 80)
        .write(&mut quoted, b"q")
        .unwrap();
    let mut err = Vec::new();
    PacketBuilder::ethernet2(dmac(A_IP), gw1())
        .ipv4(A_IP.octets(), X_IP.octets(), 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut err, &quoted)
        .unwrap();
    let (out, p) = step(&mut e, t0, A, &err);
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, X);
    let s = verified(&f);
    assert_eq!(addrs(&s).0, M_IP);
    let inner = etherparse::Ipv4Slice::from_slice(&f[14 + 20 + 8..]).unwrap();
    assert_eq!(inner.header().destination_addr(), M_IP);
    let u = etherparse::UdpSlice::from_slice(inner.payload().payload).unwrap();
    assert_eq!((u.source_port(), u.destination_port()), (6000, 8080));
    let want = u
        .to_header()
        .calc_checksum_ipv4(&inner.header().to_header(), u.payload())
        .unwrap();
    assert_eq!(u.checksum(), want, "quoted UDP checksum updated");
}

#[test]
fn ping_through_nat_uses_the_echo_id() {
    let t0 = Instant::now();
    let mut e = nat_engine(Knobs::default(), t0);
    let req = super::tests::icmp_echo(dmac(A_IP), gw1(), A_IP.octets(), X_IP, b"ping");
    let (out, p) = step(&mut e, t0, A, &req);
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, X);
    assert_eq!(addrs(&verified(&f)).0, M_IP);
    // The reply (same id 0x1234) comes back to A.
    let mut rep = Vec::new();
    PacketBuilder::ethernet2(lmac(X_IP), lmac(M_IP))
        .ipv4(X_IP.octets(), M_IP.octets(), 64)
        .icmpv4_echo_reply(0x1234, 7)
        .write(&mut rep, b"ping")
        .unwrap();
    let (out, p) = step(&mut e, t0, X, &rep);
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, A);
    assert_eq!(addrs(&verified(&f)).1, A_IP);
    // An echo *request* from X to the machine is the host stack's.
    let req = super::tests::icmp_echo(lmac(X_IP), lmac(M_IP), X_IP.octets(), M_IP, b"p");
    let (out, _) = step(&mut e, t0, X, &req);
    assert!(matches!(out[..], [Action::Forward(UPLINK)]));
}

#[test]
fn full_table_refuses_new_flows_until_they_expire() {
    let t0 = Instant::now();
    let k = Knobs {
        capacity: 2,
        ..Knobs::default()
    };
    let mut e = nat_engine(k, t0);
    let syn = |sport| tcp(dmac(A_IP), gw1(), A_IP, X_IP, sport, 80, "S");
    for sp in [1, 2] {
        let (out, _) = step(&mut e, t0, A, &syn(sp));
        assert!(matches!(out[..], [Action::Forward(X)]));
    }
    let (out, _) = step(&mut e, t0, A, &syn(3));
    assert!(matches!(out[..], [Action::Drop(DropReason::ConntrackFull)]));
    assert_eq!(e.metrics().port(A).drops.get(DropReason::ConntrackFull), 1);
    assert_eq!(e.conntrack_counters().full, 1);
    // Existing flows keep working.
    let (out, _) = step(&mut e, t0, A, &syn(1));
    assert!(matches!(out[..], [Action::Forward(X)]));
    // SYN_SENT times out after 120 s; then there is room again.
    let later = t0 + Duration::from_secs(121);
    let (out, _) = step(&mut e, later, A, &syn(3));
    assert!(matches!(out[..], [Action::Forward(X)]));
    assert!(e.conntrack_len() <= 2);
}

#[test]
fn conntrack_states_and_timeouts() {
    let t0 = Instant::now();
    let tuple = |proto, sp, dp| Tuple {
        src: A_IP,
        dst: X_IP,
        sport: sp,
        dport: dp,
        proto,
        icmp_reply: false,
    };
    let mut ct = Conntrack::new(8, Timeouts::default());
    let o = tuple(6, 1, 80);
    let id = ct
        .insert(o, o.inverse(), Kind::Routed, Some(0x02), t0)
        .unwrap();
    let st = |ct: &Conntrack| ct.get(id).unwrap().state;
    assert_eq!(st(&ct), State::Tcp(TcpState::SynSent, [false; 2]));
    ct.update(id, Dir::Reply, Some(0x12), t0);
    assert_eq!(st(&ct), State::Tcp(TcpState::SynRecv, [false; 2]));
    ct.update(id, Dir::Orig, Some(0x10), t0);
    assert_eq!(st(&ct), State::Tcp(TcpState::Established, [false; 2]));
    assert_eq!(
        ct.get(id).unwrap().expires,
        t0 + Duration::from_secs(432_000)
    );
    ct.update(id, Dir::Orig, Some(0x11), t0);
    assert_eq!(st(&ct), State::Tcp(TcpState::FinWait, [true, false]));
    ct.update(id, Dir::Reply, Some(0x11), t0);
    assert_eq!(st(&ct), State::Tcp(TcpState::LastAck, [true, true]));
    ct.update(id, Dir::Orig, Some(0x10), t0);
    assert_eq!(st(&ct), State::Tcp(TcpState::TimeWait, [true, true]));
    assert!(ct.lookup(&o, t0 + Duration::from_secs(119)).is_some());
    assert!(ct.lookup(&o, t0 + Duration::from_secs(120)).is_none());
    assert!(ct.is_empty());

    // RST closes within 10 s.
    let id = ct
        .insert(o, o.inverse(), Kind::Routed, Some(0x02), t0)
        .unwrap();
    ct.update(id, Dir::Reply, Some(0x04), t0);
    assert_eq!(ct.get(id).unwrap().expires, t0 + Duration::from_secs(10));
    ct.remove(id);

    // UDP: 30 s unreplied, 180 s once a reply was seen.
    let u = tuple(17, 5, 53);
    let id = ct.insert(u, u.inverse(), Kind::Routed, None, t0).unwrap();
    assert_eq!(ct.get(id).unwrap().expires, t0 + Duration::from_secs(30));
    ct.update(id, Dir::Reply, None, t0);
    assert_eq!(ct.get(id).unwrap().expires, t0 + Duration::from_secs(180));
    // ICMP echo: 30 s.
    let i = tuple(1, 9, 9);
    let id = ct.insert(i, i.inverse(), Kind::Routed, None, t0).unwrap();
    assert_eq!(ct.get(id).unwrap().expires, t0 + Duration::from_secs(30));
    assert_eq!(ct.expire(t0 + Duration::from_secs(200)), 2);
    assert!(ct.is_empty());
}

/// A TCP frame as a TAP with offloads hands it over: `F_NEEDS_CSUM`, the
/// L4 checksum field holding the uncomplemented pseudo-header sum, and GSO.
fn offloaded_tcp(sip: Ipv4Addr, dip: Ipv4Addr, sport: u16, dport: u16, payload: usize) -> Packet {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(dmac(A_IP), gw1())
        .ipv4(sip.octets(), dip.octets(), 64)
        .tcp(sport, dport, 1, 64240)
        .ack(1)
        .write(&mut v, &vec![0x5a; payload])
        .unwrap();
    let l4 = 14 + 20;
    let p = super::checksum::sum(
        &[],
        super::checksum::pseudo(sip.to_bits(), dip.to_bits(), 6, v.len() - l4),
    );
    v[l4 + 16..l4 + 18].copy_from_slice(&p.to_be_bytes());
    let hdr = VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        gso_type: VnetHdr::GSO_TCPV4,
        hdr_len: 66,
        gso_size: 1448,
        csum_start: l4 as u16,
        csum_offset: 16,
    };
    Packet::from_frame(hdr, &v)
}

#[test]
fn partial_checksums_and_gso_metadata_survive_nat() {
    let t0 = Instant::now();
    let mut e = nat_engine(Knobs::default(), t0);
    let mut p = offloaded_tcp(A_IP, X_IP, 40000, 80, 20000);
    let hdr = p.hdr;
    let mut out = Vec::new();
    e.handle_frame(t0, A, &mut p, &mut out);
    assert!(matches!(out[..], [Action::Forward(X)]));
    assert_eq!(
        p.hdr, hdr,
        "gso_type, gso_size, hdr_len, csum_start/offset unchanged"
    );
    let f = p.frame();
    let l4 = 14 + 20;
    let want = super::checksum::sum(
        &[],
        super::checksum::pseudo(M_IP.to_bits(), X_IP.to_bits(), 6, f.len() - l4),
    );
    let got = u16::from_be_bytes([f[l4 + 16], f[l4 + 17]]);
    assert!(
        got == want || (got ^ want) == 0xffff && (got == 0 || want == 0),
        "{got:#x} vs {want:#x}"
    );
    // Finishing it as the device would gives a valid checksum.
    let mut q = p.clone();
    let end = q.len();
    assert!(super::nat::finish_checksum(&mut q, end));
    verified(q.frame());
    // The same through a published port with a port change (reply of DNAT).
    let (out, _) = step(
        &mut e,
        t0,
        X,
        &tcp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 5555, 8080, "S"),
    );
    assert!(matches!(out[..], [Action::Forward(A)]));
    let mut p = offloaded_tcp(A_IP, X_IP, 80, 5555, 3000);
    e.handle_frame(t0, A, &mut p, &mut { Vec::new() });
    let end = p.len();
    assert!(super::nat::finish_checksum(&mut p, end));
    let s = verified(p.frame());
    assert_eq!(ports(&s), (8080, 5555));
}

fn flows() -> impl Strategy<Value = Vec<(u8, u16, u16)>> {
    // (who: 0..2 container A/B, 2 host stack; source port; destination port)
    proptest::collection::vec(
        (0u8..3, 1000u16..1010, prop_oneof![Just(80u16), Just(81)]),
        1..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Over random container and host-stack flows sharing few ports: every
    /// live flow's two tuples are distinct from every other's (the
    /// translation is a bijection), and each flow's reply on the wire is
    /// delivered back to its sender with its original tuple.
    #[test]
    fn translation_is_a_bijection_and_replies_map_back(fl in flows(), cap in 1usize..40) {
        let t0 = Instant::now();
        let k = Knobs { capacity: cap, ..Knobs::default() };
        let mut e = nat_engine(k, t0);
        for (who, sport, dport) in fl {
            let (port, f) = match who {
                0 => (A, tcp(dmac(A_IP), gw1(), A_IP, X_IP, sport, dport, "S")),
                1 => (B, tcp(dmac(B_IP), gw1(), B_IP, X_IP, sport, dport, "S")),
                _ => (UPLINK, tcp(lmac(M_IP), lmac(X_IP), M_IP, X_IP, sport, dport, "S")),
            };
            let (out, _) = step(&mut e, t0, port, &f);
            prop_assert_eq!(out.len(), 1);
            prop_assert!(e.conntrack_len() <= cap);
        }
        let conns = e.conntrack();
        let mut seen = HashSet::new();
        for c in &conns {
            prop_assert!(seen.insert(c.orig), "orig tuple twice");
            prop_assert!(seen.insert(c.reply), "reply tuple twice");
        }
        for c in &conns {
            let r = c.reply;
            let (out, p) = step(&mut e, t0, X, &tcp(lmac(X_IP), lmac(M_IP), r.src, r.dst, r.sport, r.dport, "SA"));
            let (port, f) = one_out(&out, &p);
            let want_port = if c.orig.src == A_IP { A } else if c.orig.src == B_IP { B } else { UPLINK };
            prop_assert_eq!(port, want_port);
            let s = verified(&f);
            prop_assert_eq!(addrs(&s).1, c.orig.src);
            prop_assert_eq!(ports(&s), (c.orig.dport, c.orig.sport));
        }
    }

    /// Random frames on every port of the NAT topology never panic, never
    /// grow the tables past their bounds, and every drop has a reason.
    #[test]
    fn random_frames_on_the_nat_topology(steps in proptest::collection::vec((0u16..11, 0u16..300, super::proptests::nat_frame()), 1..80), cap in 0usize..8) {
        let t0 = Instant::now();
        let k = Knobs { capacity: cap, proxy: cap % 2 == 0, ..Knobs::default() };
        let mut cfg = nat_cfg(k);
        cfg.l3.neighbour_queue = 3;
        let mut e = Engine::new(cfg).unwrap();
        let mut now = t0;
        let mut out = Vec::new();
        for (port, adv, bytes) in steps {
            now += Duration::from_secs(u64::from(adv));
            let mut p = Packet::from_frame(VnetHdr::default(), &bytes);
            out.clear();
            e.handle_frame(now, PortId(port), &mut p, &mut out);
            let drops = out.iter().filter(|a| matches!(a, Action::Drop(_))).count();
            prop_assert!(drops == 0 || out.len() == 1);
            prop_assert!(e.conntrack_len() <= cap);
            if bytes.len() >= 14 && p.len() != bytes.len() {
                prop_assert!(false, "length changed");
            }
        }
        e.expire(now);
        prop_assert!(e.poll_timeout().is_none_or(|t| t >= now));
    }
}
