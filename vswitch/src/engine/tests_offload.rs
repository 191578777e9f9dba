//! Offers to the kernel fast path ([`super::offload`]): what is offered,
//! what is never offered, and what makes an offer stale.

use std::time::{Duration, Instant};

use super::fault::LinkFault;
use super::tests::{A, AGING, B, C, GW_MAC, X, Y, eth, mac, tcp_syn, topo};
use super::*;
use crate::wire::ethernet::EtherType;

fn run(e: &mut Engine, now: Instant, port: PortId, frame: &[u8]) -> Vec<Action> {
    let mut p = Packet::from_frame(VnetHdr::default(), frame);
    let mut out = Vec::new();
    e.handle_frame(now, port, &mut p, &mut out);
    out
}

fn syn(from: u8, to: u8) -> Vec<u8> {
    tcp_syn(mac(0, from), mac(0, to), [10, 0, 0, from], [10, 0, 0, to])
}

/// `a` (port A, 10.0.0.2) and `b` (port B, .3) learned on an engine with
/// offload on and no events left.
fn learned(now: Instant) -> Engine {
    let mut e = topo(true);
    e.set_offload(true);
    run(&mut e, now, A, &syn(2, 3));
    run(&mut e, now, B, &syn(3, 2));
    e.take_offload_events();
    e
}

fn flow(ingress: PortId, egress: PortId, src: u8, dst: u8) -> OffloadEvent {
    OffloadEvent::Flow {
        ingress,
        egress,
        src: MacAddr(mac(0, src)),
        dst: MacAddr(mac(0, dst)),
    }
}

#[test]
fn a_learned_unicast_between_containers_is_offered_once_per_frame() {
    let t = Instant::now();
    let mut e = learned(t);
    let out = run(&mut e, t, A, &syn(2, 3));
    assert!(matches!(out[..], [Action::Forward(B)]), "{out:?}");
    assert_eq!(e.take_offload_events(), vec![flow(A, B, 2, 3)]);
    assert!(!e.has_offload_events());
}

#[test]
fn nothing_is_offered_with_offload_off() {
    let t = Instant::now();
    let mut e = topo(true);
    run(&mut e, t, A, &syn(2, 3));
    run(&mut e, t, B, &syn(3, 2));
    run(&mut e, t, A, &syn(2, 3));
    assert!(e.take_offload_events().is_empty());
}

#[test]
fn floods_arp_the_gateway_and_plain_ports_are_never_offered() {
    let t = Instant::now();
    let mut e = learned(t);
    // Unknown destination: flooded.
    run(&mut e, t, A, &syn(2, 9));
    // ARP between two learned containers (the routers snoop it).
    run(
        &mut e,
        t,
        A,
        eth(mac(0, 3), mac(0, 2), EtherType::ARP, &[0; 28]).frame(),
    );
    // ICMPv6 between them (neighbour discovery).
    let mut v6 = vec![0u8; 40];
    v6[0] = 0x60;
    v6[6] = 58;
    run(
        &mut e,
        t,
        A,
        eth(mac(0, 3), mac(0, 2), EtherType::IPV6, &v6).frame(),
    );
    // To the gateway's MAC (the host port).
    run(
        &mut e,
        t,
        A,
        &tcp_syn(mac(0, 2), GW_MAC.0, [10, 0, 0, 2], [10, 0, 0, 1]),
    );
    // Between two plain lan ports.
    let (x, y) = ([2, 0, 0, 0, 0, 7], [2, 0, 0, 0, 0, 8]);
    run(
        &mut e,
        t,
        X,
        &tcp_syn(x, y, [192, 168, 0, 7], [192, 168, 0, 8]),
    );
    run(
        &mut e,
        t,
        Y,
        &tcp_syn(y, x, [192, 168, 0, 8], [192, 168, 0, 7]),
    );
    run(
        &mut e,
        t,
        X,
        &tcp_syn(x, y, [192, 168, 0, 7], [192, 168, 0, 8]),
    );
    assert_eq!(e.take_offload_events(), vec![]);
    // IPv6 that is not ICMPv6 is offered.
    v6[6] = 6;
    run(
        &mut e,
        t,
        A,
        eth(mac(0, 3), mac(0, 2), EtherType::IPV6, &v6).frame(),
    );
    assert_eq!(e.take_offload_events(), vec![flow(A, B, 2, 3)]);
}

#[test]
fn icc_disabled_drops_are_not_offered() {
    let t = Instant::now();
    let mut e = topo(false);
    e.set_offload(true);
    run(&mut e, t, A, &syn(2, 3));
    run(&mut e, t, B, &syn(3, 2));
    let out = run(&mut e, t, A, &syn(2, 3));
    assert!(matches!(out[..], [Action::Drop(DropReason::IccDisabled)]));
    assert!(e.take_offload_events().is_empty());
}

#[test]
fn a_mac_that_moves_is_forgotten_before_its_new_flow_is_offered() {
    let t = Instant::now();
    let mut e = learned(t);
    // b's MAC now speaks from port C.
    run(&mut e, t, C, &syn(3, 2));
    run(&mut e, t, A, &syn(2, 3));
    assert_eq!(
        e.take_offload_events(),
        vec![
            OffloadEvent::ForgetMac(MacAddr(mac(0, 3))),
            flow(C, A, 3, 2),
            flow(A, C, 2, 3),
        ]
    );
}

#[test]
fn a_fault_forgets_every_flow_and_stops_the_offers_while_it_holds() {
    let t = Instant::now();
    let mut e = learned(t);
    e.set_fault(
        C,
        Some(LinkFault {
            loss: 0.0,
            ..LinkFault::default()
        }),
    );
    assert_eq!(e.take_offload_events(), vec![OffloadEvent::ForgetAll]);
    run(&mut e, t, A, &syn(2, 3));
    assert!(e.take_offload_events().is_empty());
    e.set_fault(C, None);
    run(&mut e, t, A, &syn(2, 3));
    assert_eq!(e.take_offload_events(), vec![flow(A, B, 2, 3)]);
}

#[test]
fn frames_the_fast_path_carried_keep_their_source_learned() {
    let t = Instant::now();
    let mut e = learned(t);
    // Only the fast path hears b for longer than the ageing time…
    let later = t + AGING - Duration::from_secs(1);
    e.offload_seen(B, MacAddr(mac(0, 3)), later);
    let much_later = t + AGING + Duration::from_secs(10);
    e.expire(much_later);
    // …so a frame to b from c is not flooded.
    let out = run(&mut e, much_later, C, &syn(4, 3));
    assert!(matches!(out[..], [Action::Forward(B)]), "{out:?}");
    assert_eq!(e.fdb_port(DomainId(0), MacAddr(mac(0, 2))), None);
}

/// Routed connections: the reference topology of `tests_l3.rs`, container
/// `a` (port A) masquerading to the external `x` (port X) on lan.
mod conns {
    use std::net::Ipv4Addr;
    use std::time::{Duration, Instant};

    use super::super::conntrack::{Dir, State};
    use super::super::fault::LinkFault;
    use super::super::flow::Tuple;
    use super::super::offload::ConnRef;
    use super::super::tests_l3::*;
    use super::super::*;

    fn t4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Tuple {
        Tuple {
            src,
            dst,
            sport,
            dport,
            proto: 6,
            icmp_reply: false,
        }
    }

    /// A segment from `a` (`out`) or from `x` back, with these flags.
    fn seg(out: bool, flags: &str) -> (PortId, Vec<u8>) {
        let gw = dmac(GW1);
        if out {
            (A, tcp(dmac(A_IP), gw, A_IP, X_IP, 40000, 80, flags))
        } else {
            (X, tcp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 80, 40000, flags))
        }
    }

    fn send(e: &mut Engine, now: Instant, out: bool, flags: &str) -> Vec<Action> {
        let (port, f) = seg(out, flags);
        step(e, now, port, &f).0
    }

    /// The handshake done, with offload on and nothing offered yet.
    fn established(now: Instant) -> Engine {
        let mut e = nat_engine(Knobs::default(), now);
        e.set_offload(true);
        send(&mut e, now, true, "S");
        send(&mut e, now, false, "SA");
        assert!(
            e.take_offload_events().is_empty(),
            "nothing before ESTABLISHED"
        );
        e
    }

    fn orig() -> OffloadEvent {
        OffloadEvent::Nat {
            ingress: A,
            in_dst: MacAddr(dmac(GW1)),
            from: t4(A_IP, 40000, X_IP, 80),
            egress: X,
            to: t4(M_IP, 40000, X_IP, 80),
            dst: MacAddr(lmac(X_IP)),
            src: MacAddr(lmac(M_IP)),
            conn: ConnRef {
                machine: 0,
                id: 0,
                dir: Dir::Orig,
            },
        }
    }

    fn reply() -> OffloadEvent {
        OffloadEvent::Nat {
            ingress: X,
            in_dst: MacAddr(lmac(M_IP)),
            from: t4(X_IP, 80, M_IP, 40000),
            egress: A,
            to: t4(X_IP, 80, A_IP, 40000),
            dst: MacAddr(dmac(A_IP)),
            src: MacAddr(dmac(GW1)),
            conn: ConnRef {
                machine: 0,
                id: 0,
                dir: Dir::Reply,
            },
        }
    }

    /// BR-10: the offer is the masquerade the engine applied, one per
    /// direction, once.
    #[test]
    fn an_established_masqueraded_connection_is_offered_once_per_direction() {
        let t = Instant::now();
        let mut e = established(t);
        let out = send(&mut e, t, true, "A");
        assert!(matches!(out[..], [Action::Forward(X)]), "{out:?}");
        assert_eq!(e.take_offload_events(), vec![orig()]);
        send(&mut e, t, true, "PA");
        assert!(e.take_offload_events().is_empty(), "offered once");
        send(&mut e, t, false, "A");
        assert_eq!(e.take_offload_events(), vec![reply()]);
        send(&mut e, t, false, "PA");
        assert!(!e.has_offload_events());
    }

    #[test]
    fn a_fin_or_rst_retracts_the_connection_before_anything_else_is_offered() {
        for flags in ["FA", "R"] {
            let t = Instant::now();
            let mut e = established(t);
            send(&mut e, t, true, "A");
            send(&mut e, t, false, "A");
            e.take_offload_events();
            send(&mut e, t, true, flags);
            assert_eq!(
                e.take_offload_events(),
                vec![OffloadEvent::ForgetConn { machine: 0, id: 0 }],
                "{flags}"
            );
            send(&mut e, t, false, "A");
            assert!(e.take_offload_events().is_empty(), "{flags}: not again");
        }
    }

    #[test]
    fn nothing_routed_is_offered_with_offload_off_or_while_a_fault_holds() {
        let t = Instant::now();
        let mut e = nat_engine(Knobs::default(), t);
        for (out, flags) in [(true, "S"), (false, "SA"), (true, "A"), (false, "A")] {
            send(&mut e, t, out, flags);
        }
        assert!(e.take_offload_events().is_empty());
        let mut e = established(t);
        e.set_fault(X, Some(LinkFault::default()));
        assert_eq!(e.take_offload_events(), vec![OffloadEvent::ForgetAll]);
        send(&mut e, t, true, "A");
        assert!(e.take_offload_events().is_empty());
        e.set_fault(X, None);
        send(&mut e, t, true, "A");
        assert_eq!(e.take_offload_events(), vec![orig()], "offered again");
    }

    /// A fast path may not skip the router's ICMP "fragmentation needed"
    /// for a smaller MTU (BR-6's MTU on the way back is the larger one):
    /// a path to a smaller MTU is never offered.
    #[test]
    fn a_path_to_a_smaller_mtu_is_not_offered() {
        let t = Instant::now();
        let k = Knobs {
            lan_mtu: 1400,
            ..Knobs::default()
        };
        let mut e = nat_engine(k, t);
        e.set_offload(true);
        for (out, flags) in [(true, "S"), (false, "SA"), (true, "A")] {
            send(&mut e, t, out, flags);
        }
        assert!(e.take_offload_events().is_empty(), "1500 → 1400");
        send(&mut e, t, false, "A");
        assert_eq!(e.take_offload_events(), vec![reply()], "1400 → 1500");
    }

    #[test]
    fn frames_the_fast_path_carried_keep_the_connection_tracked() {
        let t = Instant::now();
        let mut e = established(t);
        send(&mut e, t, true, "A");
        let conn = ConnRef {
            machine: 0,
            id: 0,
            dir: Dir::Orig,
        };
        let before = e.conntrack()[0].expires;
        e.offload_conn_seen(conn, t + Duration::from_secs(60));
        assert_eq!(e.conntrack()[0].expires, before + Duration::from_secs(60));
        assert_eq!(
            e.conntrack()[0].state,
            State::Tcp(TcpState::Established, [false; 2])
        );
    }

    /// UDP is offered once a reply was seen (conntrack's assured flow, as
    /// a flowtable takes it), both directions.
    #[test]
    fn a_udp_flow_is_offered_once_it_had_a_reply() {
        let t = Instant::now();
        let mut e = nat_engine(Knobs::default(), t);
        e.set_offload(true);
        let out = |e: &mut Engine| {
            let f = udp(dmac(A_IP), dmac(GW1), A_IP, X_IP, 5000, 53, b"q");
            step(e, t, A, &f).0
        };
        let back = |e: &mut Engine| {
            let f = udp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 53, 5000, b"a");
            step(e, t, X, &f).0
        };
        out(&mut e);
        out(&mut e);
        assert!(e.take_offload_events().is_empty(), "no reply yet");
        assert!(matches!(back(&mut e)[..], [Action::Forward(A)]));
        let mut from = t4(X_IP, 53, M_IP, 5000);
        from.proto = 17;
        let events = e.take_offload_events();
        assert!(
            matches!(&events[..], [OffloadEvent::Nat { from: f, egress: A, .. }] if *f == from),
            "{events:?}"
        );
        out(&mut e);
        let events = e.take_offload_events();
        let mut to = t4(M_IP, 5000, X_IP, 80);
        to.dport = 53;
        to.proto = 17;
        assert!(
            matches!(&events[..], [OffloadEvent::Nat { to: t, egress: X, .. }] if *t == to),
            "{events:?}"
        );
        out(&mut e);
        back(&mut e);
        assert!(!e.has_offload_events(), "once per direction");
    }
}
