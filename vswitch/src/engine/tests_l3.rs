//! Router tests on a virtual clock: routing, ARP on lan, ICMP errors, TTL,
//! MTU, internal networks, isolation, ingress deny. Statement ids refer to
//! docker-semantics.md. NAT itself is in `tests_nat.rs`; both use the
//! reference topology of [`super::fixtures`].

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use etherparse::{
    ArpEthIpv4Packet, ArpOperation, Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket,
    TransportSlice,
};

use super::*;

pub(super) use super::fixtures::*;

/// An engine with X and G already known on lan (as if they had ARPed).
pub(super) fn nat_engine(k: Knobs, now: Instant) -> Engine {
    let mut e = Engine::new(nat_cfg(k)).unwrap();
    for (ip, port) in [(X_IP, X), (G_IP, G)] {
        let mut p = Packet::from_frame(
            VnetHdr::default(),
            &arp(ArpOperation::REQUEST, lmac(ip), ip, M_IP),
        );
        let mut out = Vec::new();
        e.handle_frame(now, port, &mut p, &mut out);
    }
    e
}

pub(super) fn arp(op: ArpOperation, src: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let a = ArpEthIpv4Packet {
        operation: op,
        sender_mac: src,
        sender_ipv4: spa.octets(),
        target_mac: [0; 6],
        target_ipv4: tpa.octets(),
    };
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src, [0xff; 6])
        .arp(a.into())
        .write(&mut v)
        .unwrap();
    v
}

/// A TCP segment with TTL 64; `flags`: "S", "SA", "A", "F", "R".
pub(super) fn tcp(
    smac: [u8; 6],
    dmac: [u8; 6],
    sip: Ipv4Addr,
    dip: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: &str,
) -> Vec<u8> {
    tcp_ttl((smac, dmac), sip, dip, sport, dport, flags, 64)
}

/// [`tcp`] with another TTL.
pub(super) fn tcp_ttl(
    (smac, dmac): ([u8; 6], [u8; 6]),
    sip: Ipv4Addr,
    dip: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: &str,
    ttl: u8,
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(smac, dmac)
        .ipv4(sip.octets(), dip.octets(), ttl)
        .tcp(sport, dport, 1000, 64240);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            'F' => b.fin(),
            'R' => b.rst(),
            _ => b,
        };
    }
    let mut v = Vec::new();
    b.write(&mut v, b"hello").unwrap();
    v
}

/// A UDP datagram with TTL 64.
pub(super) fn udp(
    smac: [u8; 6],
    dmac: [u8; 6],
    sip: Ipv4Addr,
    dip: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(smac, dmac)
        .ipv4(sip.octets(), dip.octets(), 64)
        .udp(sport, dport)
        .write(&mut v, payload)
        .unwrap();
    v
}

pub(super) fn step(
    e: &mut Engine,
    now: Instant,
    port: PortId,
    bytes: &[u8],
) -> (Vec<Action>, Packet) {
    let mut p = Packet::from_frame(VnetHdr::default(), bytes);
    let mut out = Vec::new();
    e.handle_frame(now, port, &mut p, &mut out);
    (out, p)
}

/// The one frame that left and where: a forwarded ingress frame or an emit.
pub(super) fn one_out(out: &[Action], p: &Packet) -> (PortId, Vec<u8>) {
    match out {
        [Action::Forward(to)] => (*to, p.frame().to_vec()),
        [Action::Emit(to, q)] => (*to, q.frame().to_vec()),
        other => panic!("expected one frame out, got {other:?}"),
    }
}

/// Parses a frame and checks every checksum (IPv4, TCP/UDP/ICMP).
pub(super) fn verified(frame: &[u8]) -> SlicedPacket<'_> {
    let s = SlicedPacket::from_ethernet(frame).expect("parses");
    let Some(NetSlice::Ipv4(ip)) = &s.net else {
        panic!("not IPv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
    match &s.transport {
        Some(TransportSlice::Tcp(t)) => {
            let want = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
            assert_eq!(t.checksum(), want, "TCP checksum");
        }
        Some(TransportSlice::Udp(u)) => {
            let want = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
            assert_eq!(u.checksum(), want, "UDP checksum");
        }
        Some(TransportSlice::Icmpv4(i)) => {
            assert_eq!(
                crate::wire::ip::checksum::checksum(i.slice()),
                0,
                "ICMP checksum"
            );
        }
        _ => {}
    }
    s
}

pub(super) fn addrs(s: &SlicedPacket<'_>) -> (Ipv4Addr, Ipv4Addr, u8) {
    let Some(NetSlice::Ipv4(ip)) = &s.net else {
        panic!("not IPv4")
    };
    let h = ip.header();
    (h.source_addr(), h.destination_addr(), h.ttl())
}

pub(super) fn ports(s: &SlicedPacket<'_>) -> (u16, u16) {
    match &s.transport {
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        other => panic!("no ports: {other:?}"),
    }
}

fn icmp_of(s: &SlicedPacket<'_>) -> Icmpv4Type {
    match &s.transport {
        Some(TransportSlice::Icmpv4(i)) => i.icmp_type(),
        other => panic!("not ICMP: {other:?}"),
    }
}

/// Sets or clears DF, with the header checksum recomputed.
pub(super) fn set_df(mut f: Vec<u8>, df: bool) -> Vec<u8> {
    if df {
        f[14 + 6] |= 0x40;
    } else {
        f[14 + 6] &= !0x40;
    }
    f[24..26].fill(0);
    let c = crate::wire::ip::checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

fn drops(e: &Engine, p: PortId, r: DropReason) -> u64 {
    e.metrics().port(p).drops.get(r)
}

#[test]
fn routes_out_of_the_uplink_after_arp_and_learns_from_it() {
    let t0 = Instant::now();
    let mut e = Engine::new(nat_cfg(Knobs::default())).unwrap();
    let syn = tcp(dmac(A_IP), dmac(GW1), A_IP, X_IP, 40000, 80, "S");
    let (out, _) = step(&mut e, t0, A, &syn);
    // Nothing known on lan: an ARP request from the machine's address out
    // of every lan port but the machine's own, the packet queued.
    let mut asked = Vec::new();
    for a in &out {
        let Action::Emit(p, q) = a else {
            panic!("{a:?}")
        };
        let arp = crate::wire::arp::ArpRepr::parse(&q.frame()[14..]).unwrap();
        assert_eq!(arp.spa, M_IP.octets());
        assert_eq!(arp.tpa, X_IP.octets());
        assert_eq!(&q.frame()[6..12], &lmac(M_IP));
        asked.push(*p);
    }
    assert_eq!(asked, vec![X, G]);
    // The reply releases the packet towards X, masqueraded, TTL 63.
    let mut rep = arp(ArpOperation::REPLY, lmac(X_IP), X_IP, M_IP);
    rep[0..6].copy_from_slice(&lmac(M_IP));
    let (out, _) = step(&mut e, t0, X, &rep);
    let sent: Vec<_> = out
        .iter()
        .filter_map(|a| match a {
            Action::Emit(p, q) => Some((*p, q.frame().to_vec())),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1);
    let (port, f) = &sent[0];
    assert_eq!(*port, X);
    assert_eq!((&f[0..6], &f[6..12]), (&lmac(X_IP)[..], &lmac(M_IP)[..]));
    let s = verified(f);
    assert_eq!(addrs(&s), (M_IP, X_IP, 63));
    assert_eq!(ports(&s), (40000, 80), "PUB-9: the source port is kept");
    // The ARP reply itself still reaches the host stack.
    assert!(out.iter().any(|a| matches!(a, Action::Forward(UPLINK))));
}

#[test]
fn next_hop_off_lan_is_the_gateway_external_and_none_is_net_unreachable() {
    let t0 = Instant::now();
    let far = Ipv4Addr::new(203, 0, 113, 9);
    let mut e = nat_engine(Knobs::default(), t0);
    let (out, p) = step(
        &mut e,
        t0,
        A,
        &tcp(dmac(A_IP), dmac(GW1), A_IP, far, 1, 2, "S"),
    );
    let (port, f) = one_out(&out, &p);
    assert_eq!((port, &f[0..6]), (G, &lmac(G_IP)[..]));
    assert_eq!(addrs(&verified(&f)).1, far);

    let mut e = nat_engine(
        Knobs {
            lan_gateway: false,
            ..Knobs::default()
        },
        t0,
    );
    let (out, p) = step(
        &mut e,
        t0,
        A,
        &tcp(dmac(A_IP), dmac(GW1), A_IP, far, 1, 2, "S"),
    );
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, A);
    let s = verified(&f);
    assert_eq!(addrs(&s).0, GW1, "the gateway answers");
    assert!(matches!(
        icmp_of(&s),
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Network)
    ));
    assert_eq!(drops(&e, A, DropReason::NoRoute), 1);
    assert_eq!(e.conntrack_len(), 0, "a rejected packet leaves no flow");
}

#[test]
fn ttl_one_gets_time_exceeded_and_is_not_forwarded() {
    let t0 = Instant::now();
    let mut e = nat_engine(Knobs::default(), t0);
    let (out, p) = step(
        &mut e,
        t0,
        A,
        &tcp_ttl((dmac(A_IP), dmac(GW1)), A_IP, X_IP, 1, 2, "S", 1),
    );
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, A);
    let s = verified(&f);
    assert_eq!(addrs(&s).0, GW1);
    assert!(matches!(icmp_of(&s), Icmpv4Type::TimeExceeded(_)));
    assert_eq!(drops(&e, A, DropReason::TtlExceeded), 1);
}

#[test]
fn df_over_the_egress_mtu_gets_frag_needed_and_without_df_is_fragmented() {
    let t0 = Instant::now();
    let k = Knobs {
        lan_mtu: 1400,
        ..Knobs::default()
    };
    let mut e = nat_engine(k, t0);
    let big = vec![7u8; 1450];
    let f = set_df(udp(dmac(A_IP), dmac(GW1), A_IP, X_IP, 5000, 53, &big), true);
    let (out, p) = step(&mut e, t0, A, &f);
    let (port, g) = one_out(&out, &p);
    assert_eq!(port, A);
    let s = verified(&g);
    match icmp_of(&s) {
        Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu },
        ) => assert_eq!(next_hop_mtu, 1400),
        other => panic!("{other:?}"),
    }
    assert_eq!(drops(&e, A, DropReason::FragNeeded), 1);

    // Without DF: fragments that fit, masqueraded, offsets in order.
    let f = set_df(
        udp(dmac(A_IP), dmac(GW1), A_IP, X_IP, 5000, 53, &big),
        false,
    );
    let (out, _) = step(&mut e, t0, A, &f);
    let frags: Vec<Vec<u8>> = out
        .iter()
        .map(|a| match a {
            Action::Emit(p, q) => {
                assert_eq!(*p, X);
                q.frame().to_vec()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(frags.len(), 2);
    let mut data = Vec::new();
    for fr in &frags {
        let ip = etherparse::Ipv4Slice::from_slice(&fr[14..]).unwrap();
        let h = ip.header().to_header();
        assert!(usize::from(h.total_len) <= 1400);
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(h.source, M_IP.octets());
        data.extend_from_slice(ip.payload().payload);
    }
    // The reassembled UDP datagram verifies.
    let mut whole = Vec::new();
    PacketBuilder::ipv4(M_IP.octets(), X_IP.octets(), 63)
        .udp(5000, 53)
        .write(&mut whole, &big)
        .unwrap();
    assert_eq!(&data[..], &whole[20..]);
}

#[test]
fn isolation_internal_and_own_subnet() {
    let t0 = Instant::now();
    let mut e = nat_engine(Knobs::default(), t0);
    // BR-12: n1 → n2 through the gateway.
    let (out, _) = step(
        &mut e,
        t0,
        A,
        &tcp(dmac(A_IP), dmac(GW1), A_IP, C_IP, 1, 80, "S"),
    );
    assert!(matches!(out[..], [Action::Drop(DropReason::Isolation)]));
    // BR-15: the internal network routes nowhere (even with a route set by hand).
    let (out, _) = step(
        &mut e,
        t0,
        D,
        &tcp(dmac(D_IP), dmac(GW3), D_IP, X_IP, 1, 80, "S"),
    );
    assert!(matches!(
        out[..],
        [Action::Drop(DropReason::InternalNetwork)]
    ));
    // BR-16: its gateway address is the host stack's, as before.
    let (out, _) = step(
        &mut e,
        t0,
        D,
        &tcp(dmac(D_IP), dmac(GW3), D_IP, GW3, 1, 80, "S"),
    );
    assert!(matches!(out[..], [Action::Forward(PortId(8))]));
    // BR-14: another network's gateway and the uplink address are local.
    let (out, _) = step(
        &mut e,
        t0,
        A,
        &tcp(dmac(A_IP), dmac(GW1), A_IP, GW3, 1, 80, "S"),
    );
    assert!(matches!(out[..], [Action::Forward(H1)]));
    let (out, _) = step(
        &mut e,
        t0,
        A,
        &tcp(dmac(A_IP), dmac(GW1), A_IP, M_IP, 1, 80, "S"),
    );
    assert!(matches!(out[..], [Action::Forward(H1)]));
    assert_eq!(e.conntrack_len(), 0);
}

#[test]
fn ingress_deny_for_container_addresses_from_the_lan() {
    let t0 = Instant::now();
    let mut e = nat_engine(Knobs::default(), t0);
    let to_a = |dport| tcp(lmac(X_IP), lmac(M_IP), X_IP, A_IP, 5555, dport, "S");
    // PUB-2: an unpublished port of a container address: dropped.
    let (out, _) = step(&mut e, t0, X, &to_a(81));
    assert!(matches!(out[..], [Action::Drop(DropReason::IngressDenied)]));
    // The published container port itself is accepted.
    let (out, p) = step(&mut e, t0, X, &to_a(80));
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, A);
    assert_eq!(addrs(&verified(&f)), (X_IP, A_IP, 63));
    // Internal networks: never.
    let (out, _) = step(
        &mut e,
        t0,
        X,
        &tcp(lmac(X_IP), lmac(M_IP), X_IP, D_IP, 1, 80, "S"),
    );
    assert!(matches!(out[..], [Action::Drop(DropReason::IngressDenied)]));
    // BR-11: a reply to a flow that left without masquerade comes back.
    let gw2 = dmac(Ipv4Addr::new(172, 21, 0, 1));
    let (out, p) = step(
        &mut e,
        t0,
        C,
        &tcp(dmac(C_IP), gw2, C_IP, X_IP, 4000, 80, "S"),
    );
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, X);
    assert_eq!(
        addrs(&verified(&f)).0,
        C_IP,
        "BR-11: the container's own address"
    );
    let (out, p) = step(
        &mut e,
        t0,
        X,
        &tcp(lmac(X_IP), lmac(M_IP), X_IP, C_IP, 80, 4000, "SA"),
    );
    assert_eq!(one_out(&out, &p).0, C);
    // …but an unsolicited one to the same container does not.
    let (out, _) = step(
        &mut e,
        t0,
        X,
        &tcp(lmac(X_IP), lmac(M_IP), X_IP, C_IP, 81, 4000, "S"),
    );
    assert!(matches!(out[..], [Action::Drop(DropReason::IngressDenied)]));
    assert_eq!(drops(&e, X, DropReason::IngressDenied), 3);
}

#[test]
fn lan_traffic_to_the_host_stack_is_tracked_and_delivered() {
    let t0 = Instant::now();
    let mut e = nat_engine(Knobs::default(), t0);
    let (out, _) = step(
        &mut e,
        t0,
        X,
        &tcp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 5000, 22, "S"),
    );
    assert!(matches!(out[..], [Action::Forward(UPLINK)]));
    let c = e.conntrack();
    assert_eq!((c.len(), c[0].kind), (1, Kind::Host));
    // Externals among themselves stay on L2.
    let (out, _) = step(
        &mut e,
        t0,
        X,
        &tcp(lmac(X_IP), lmac(G_IP), X_IP, G_IP, 1, 2, "S"),
    );
    assert!(matches!(out[..], [Action::Forward(G)]));
    assert_eq!(e.conntrack_len(), 1);
}

#[test]
fn unanswered_arp_queue_is_bounded_and_times_out() {
    let t0 = Instant::now();
    let mut cfg = nat_cfg(Knobs::default());
    cfg.l3.neighbour_queue = 2;
    let mut e = Engine::new(cfg).unwrap();
    let ghost = Ipv4Addr::new(198, 18, 0, 99);
    let f = |sport| tcp(dmac(A_IP), dmac(GW1), A_IP, ghost, sport, 80, "S");
    let (out, _) = step(&mut e, t0, A, &f(1));
    assert_eq!(out.len(), 2, "one ARP request per lan port");
    let (out, _) = step(&mut e, t0, A, &f(2));
    assert!(out.is_empty(), "queued behind the first request");
    let (out, _) = step(&mut e, t0, A, &f(3));
    assert!(matches!(
        out[..],
        [Action::Drop(DropReason::NeighbourQueueFull)]
    ));
    e.expire(t0 + Duration::from_secs(4));
    assert_eq!(drops(&e, A, DropReason::NeighbourUnresolved), 2);
    assert!(e.poll_timeout().is_none_or(|t| t > t0));
}

#[test]
fn gateway_still_answers_arp_and_ping_with_routing_on() {
    let t0 = Instant::now();
    let mut e = nat_engine(Knobs::default(), t0);
    let req = arp(ArpOperation::REQUEST, dmac(A_IP), A_IP, GW1);
    let (out, _) = step(&mut e, t0, A, &req);
    assert!(matches!(&out[..], [Action::Emit(A, _)]));
    let echo = super::tests::icmp_echo(dmac(A_IP), dmac(GW1), A_IP.octets(), GW1, b"x");
    let (out, _) = step(&mut e, t0, A, &echo);
    assert!(matches!(&out[..], [Action::Emit(A, _)]));
}

#[test]
fn a_faulted_uplink_applies_to_what_the_router_sends_and_receives_there() {
    use crate::engine::fault::LinkFault;
    let t0 = Instant::now();
    let mut e = nat_engine(Knobs::default(), t0);
    let ping = |e: &mut Engine, df: bool, len: usize| {
        let f = set_df(
            udp(dmac(A_IP), dmac(GW1), A_IP, X_IP, 5000, 53, &vec![1u8; len]),
            df,
        );
        step(e, t0, A, &f)
    };
    // Routed out of the uplink: the uplink's loss applies.
    e.set_fault(
        UPLINK,
        Some(LinkFault {
            loss: 1.0,
            ..LinkFault::default()
        }),
    );
    let (out, _) = ping(&mut e, false, 100);
    assert!(
        matches!(out[..], [Action::Drop(DropReason::FaultLoss)]),
        "{out:?}"
    );
    // A reply from X to the machine's address crosses the uplink inwards.
    let back = udp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 53, 5000, b"r");
    let (out, _) = step(&mut e, t0, X, &back);
    assert!(
        matches!(out[..], [Action::Drop(DropReason::FaultLoss)]),
        "{out:?}"
    );
    // The uplink's MTU is the router's egress MTU: frag needed for DF.
    e.set_fault(
        UPLINK,
        Some(LinkFault {
            mtu: Some(1400),
            ..LinkFault::default()
        }),
    );
    let (out, p) = ping(&mut e, true, 1450);
    let (port, g) = one_out(&out, &p);
    assert_eq!(port, A);
    match icmp_of(&verified(&g)) {
        Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu },
        ) => assert_eq!(next_hop_mtu, 1400),
        other => panic!("{other:?}"),
    }
    // Cleared: routed as before, nothing held.
    e.set_fault(UPLINK, None);
    let (out, p) = ping(&mut e, true, 1450);
    assert_eq!(one_out(&out, &p).0, X);
    assert_eq!(e.faults().held(), 0);
}
