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
