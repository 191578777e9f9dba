//! Carrying conntrack into a rebuilt engine ([`Engine::take_conntrack`],
//! [`Engine::restore_conntrack`]) minus what Docker deletes when an
//! endpoint leaves ([`ConntrackState::forget_endpoint`]), on the topology
//! of `tests_l3.rs` and a virtual clock.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::tests_l3::*;
use super::*;

/// A's UDP flow out (masqueraded) and X's UDP flow to the published port
/// 8080 (DNAT to A:80); returns the masqueraded flow's port on the lan.
fn two_flows(e: &mut Engine, now: Instant) -> u16 {
    let out_udp = udp(dmac(A_IP), dmac(GW1), A_IP, X_IP, 40000, 53, b"q");
    let (out, p) = step(e, now, A, &out_udp);
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, X);
    let s = verified(&f);
    assert_eq!(addrs(&s).0, M_IP, "masqueraded");
    let in_udp = udp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 6000, 8080, b"q");
    let (out, p) = step(e, now, X, &in_udp);
    let (port, _) = one_out(&out, &p);
    assert_eq!(port, A, "DNAT to A");
    assert_eq!(e.conntrack_len(), 2);
    ports(&s).0
}

/// X answers the masqueraded flow: where does the answer go?
fn reply_from_x(e: &mut Engine, now: Instant, to_port: u16) -> (Vec<Action>, Packet) {
    let r = udp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 53, to_port, b"a");
    step(e, now, X, &r)
}

#[test]
fn take_empties_the_engine_and_restore_brings_the_translations_back() {
    let t0 = Instant::now();
    let mut old = nat_engine(Knobs::default(), t0);
    let seen = two_flows(&mut old, t0);
    let st = old.take_conntrack();
    assert_eq!(st.len(), 2);
    assert_eq!(old.conntrack_len(), 0, "taken out");
    assert_eq!(st.v4.len(), 1, "one machine, by name");

    // A fresh engine knows nothing of the flow: X's answer goes to the
    // machine's host stack.
    let mut fresh = nat_engine(Knobs::default(), t0);
    assert!(matches!(
        reply_from_x(&mut fresh, t0, seen).0[..],
        [Action::Forward(UPLINK)]
    ));

    let mut new = nat_engine(Knobs::default(), t0);
    let t1 = t0 + Duration::from_secs(5);
    assert_eq!(new.restore_conntrack(st.clone(), t1), 2);
    assert_eq!(new.conntrack_len(), 2);
    assert_eq!(new.conntrack_counters().created, 0, "restored, not created");
    let (out, p) = reply_from_x(&mut new, t1, seen);
    let (port, f) = one_out(&out, &p);
    assert_eq!(port, A, "the kept NAT binding translates the answer back");
    assert_eq!(addrs(&verified(&f)).1, A_IP);
    // Restoring the same flows again collides with them: nothing added.
    assert_eq!(new.restore_conntrack(st, t1), 0);
    assert_eq!(new.conntrack_len(), 2);
}

#[test]
fn forget_endpoint_deletes_what_docker_deletes_and_keeps_the_rest() {
    let t0 = Instant::now();
    let mut old = nat_engine(Knobs::default(), t0);
    two_flows(&mut old, t0);
    let mut st = old.take_conntrack();
    // Reply tuples: DNAT A:80 -> X (A's address: deleted), masquerade
    // X:53 -> M (the machine's: kept, although A sent it).
    assert_eq!(st.forget_endpoint(IpAddr::V4(A_IP)), 1);
    assert_eq!(st.len(), 1);
    assert_eq!(st.v4[0].1[0].kind, Kind::Masquerade);
    // An address no flow has: nothing goes.
    assert_eq!(st.forget_endpoint(IpAddr::V4(G_IP)), 0);
    let mut new = nat_engine(Knobs::default(), t0);
    assert_eq!(new.restore_conntrack(st, t0), 1);
    assert_eq!(new.conntrack()[0].kind, Kind::Masquerade);
}

#[test]
fn expired_flows_and_unknown_machines_are_not_restored() {
    let t0 = Instant::now();
    let mut old = nat_engine(Knobs::default(), t0);
    two_flows(&mut old, t0);
    let st = old.take_conntrack();
    let mut new = nat_engine(Knobs::default(), t0);
    // Unreplied UDP lives 30 s.
    assert_eq!(
        new.restore_conntrack(st.clone(), t0 + Duration::from_secs(31)),
        0
    );
    let mut other = st;
    for (name, _) in &mut other.v4 {
        *name = "no-such-machine".into();
    }
    assert_eq!(new.restore_conntrack(other, t0), 0);
    assert_eq!(new.conntrack_len(), 0);
}
