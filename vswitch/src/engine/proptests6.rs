//! Property tests of the IPv6 paths on the reference world of
//! `fixtures6` (V6-3, V6-4, PUB-4): random TCP/UDP/ICMPv6 sequences
//! between its addresses never panic, never leak IPv6 across networks
//! with `ip6tables` on, keep every valid checksum valid through NAT66, and
//! every ICMPv6 message the engine emits goes back out of the ingress port
//! with a right checksum and within the minimum MTU. Packet too big
//! carries the egress MTU for any size above it.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use etherparse::{Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use proptest::prelude::*;

use super::fixtures6::*;
use super::*;

/// Addresses a frame can use, each with the MAC its owner sends from.
fn pool() -> [(Ipv6Addr, [u8; 6]); 7] {
    [
        (a6(A6), A_MAC.0),
        (a6(B6), B_MAC.0),
        (a6(WWW), EXT_MAC.0),
        (a6(ME), UP_MAC.0),
        (a6("fd00:30::1"), GW1_MAC.0),
        (a6("fd00:31::1"), GW2_MAC.0),
        (a6("2001:db8::9"), [0x02, 0, 0, 0, 0, 9]),
    ]
}

/// The port each pool entry sends from (the machine's own addresses from
/// the external's port, as spoofed lan traffic).
fn port_of(i: usize) -> PortId {
    [A, B, EXT, EXT, HOST1, HOST2, EXT][i]
}

/// Whether the frame's L4 checksum is right, as etherparse computes it.
fn l4_ok(frame: &[u8]) -> Option<bool> {
    let s = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(NetSlice::Ipv6(ip)) = s.net else {
        return None;
    };
    let h = ip.header();
    let (src, dst) = (h.source(), h.destination());
    Some(match s.transport? {
        TransportSlice::Tcp(t) => {
            t.to_header()
                .calc_checksum_ipv6_raw(src, dst, t.payload())
                .ok()?
                == t.checksum()
        }
        TransportSlice::Udp(u) => {
            u.to_header()
                .calc_checksum_ipv6_raw(src, dst, u.payload())
                .ok()?
                == u.checksum()
        }
        TransportSlice::Icmpv6(i) => {
            i.icmp_type().calc_checksum(src, dst, i.payload()).ok()? == i.checksum()
        }
        _ => return None,
    })
}

/// (from, to, kind, sport, dport, syn, via gateway, hop limit, payload)
type Step = (usize, usize, u8, u16, u16, bool, bool, u8, usize);

fn step() -> impl Strategy<Value = Step> {
    let port = prop_oneof![Just(80u16), Just(8080), Just(40000), 1u16..64];
    (
        0usize..7,
        0usize..7,
        0u8..3,
        port.clone(),
        port,
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(64u8), 0u8..3],
        0usize..64,
    )
}

fn build(&(s, d, kind, sp, dp, syn, via_gw, hop, n): &Step) -> Vec<u8> {
    let pool = pool();
    let (src, smac) = pool[s];
    let (dst, dmac) = pool[d];
    let dmac = match (via_gw, s) {
        (true, 0) => GW1_MAC.0,
        (true, 1) => GW2_MAC.0,
        (true, _) => UP_MAC.0,
        _ => dmac,
    };
    let b = PacketBuilder::ethernet2(smac, dmac).ipv6(src.octets(), dst.octets(), hop);
    let payload = vec![0x5a; n];
    let mut v = Vec::new();
    let _ = match kind {
        0 => {
            let t = b.tcp(sp, dp, 1, 64240);
            let t = if syn { t.syn() } else { t.ack(1) };
            t.write(&mut v, &payload)
        }
        1 => b.udp(sp, dp).write(&mut v, &payload),
        _ => b.icmpv6_echo_request(sp, dp).write(&mut v, &payload),
    };
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// V6-3/V6-4/PUB-2: with ip6tables on nothing of A reaches B or back,
    /// and the lan reaches a container only as a tracked reply or through
    /// the published port; checksums survive NAT66; emitted ICMPv6 is
    /// well formed and goes back where the frame came from.
    #[test]
    fn nat66_sequences_keep_isolation_and_checksums(
        ip6tables in any::<bool>(),
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let mut e = Engine::new(nat6_cfg(ip6tables, false)).unwrap();
        let mut now = Instant::now();
        let mut out = Vec::new();
        let mut started_by = [false; 2]; // A, B sent something out
        for st in &steps {
            now += Duration::from_millis(10);
            let frame = build(st);
            let ingress = port_of(st.0);
            let valid_in = l4_ok(&frame) == Some(true);
            let mut p = Packet::from_frame(VnetHdr::default(), &frame);
            out.clear();
            e.handle_frame(now, ingress, &mut p, &mut out);
            let drops = out.iter().filter(|a| matches!(a, Action::Drop(_))).count();
            prop_assert!(drops == 0 || out.len() == 1, "drop plus others: {:?}", out);
            for a in &out {
                match a {
                    Action::Forward(to) => {
                        if ip6tables {
                            prop_assert!(
                                !matches!((ingress, *to), (A, B) | (B, A)),
                                "IPv6 crossed networks: {:?} → {:?}", ingress, to
                            );
                            if ingress == EXT && (*to == A || *to == B) {
                                let published = *to == A && st.1 == 3 && st.4 == 8080 && st.2 == 0;
                                let k = usize::from(*to == B);
                                prop_assert!(published || started_by[k],
                                    "the lan reached container {:?} unasked", to);
                            }
                        }
                        if *to == EXT && (ingress == A || ingress == B) {
                            started_by[usize::from(ingress == B)] = true;
                        }
                        if valid_in && e.port_domain(*to) != e.port_domain(ingress) {
                            prop_assert_eq!(l4_ok(p.frame()), Some(true), "checksum after NAT66");
                        }
                    }
                    Action::Emit(to, q) => {
                        prop_assert_eq!(*to, ingress);
                        if l4_ok(q.frame()).is_some() {
                            prop_assert_eq!(l4_ok(q.frame()), Some(true));
                        }
                        prop_assert!(q.len() <= 14 + icmp6::MIN_MTU);
                    }
                    _ => {}
                }
            }
        }
    }

    /// RFC 4443 §3: any packet routed into a network whose MTU it exceeds
    /// is answered with packet too big carrying exactly that MTU, from the
    /// sender's gateway6, quoting the start of the packet; one that fits
    /// is forwarded.
    #[test]
    fn packet_too_big_for_any_size_above_the_mtu(mtu in 1280u16..1500, n in 0usize..3000) {
        let mut cfg = nat6_cfg(false, false);
        cfg.l3.v6.networks[1].mtu = mtu;
        let mut e = Engine::new(cfg).unwrap();
        let st: Step = (0, 1, 1, 5000, 53, false, true, 64, n);
        let frame = build(&st);
        let mut p = Packet::from_frame(VnetHdr::default(), &frame);
        let mut out = Vec::new();
        e.handle_frame(Instant::now(), A, &mut p, &mut out);
        if frame.len() - 14 <= usize::from(mtu) {
            prop_assert!(matches!(out[..], [Action::Forward(B)]), "{:?}", out);
        } else {
            let [Action::Emit(A, q)] = &out[..] else {
                return Err(TestCaseError::fail(format!("{out:?}")));
            };
            prop_assert_eq!(l4_ok(q.frame()), Some(true));
            let s = SlicedPacket::from_ethernet(q.frame()).unwrap();
            let Some(TransportSlice::Icmpv6(m)) = &s.transport else {
                return Err(TestCaseError::fail("not ICMPv6"));
            };
            prop_assert_eq!(m.icmp_type(), Icmpv6Type::PacketTooBig { mtu: u32::from(mtu) });
            let quote = m.payload();
            prop_assert_eq!(quote, &frame[14..14 + quote.len()]);
            prop_assert_eq!(quote.len(), (frame.len() - 14).min(1232));
        }
    }
}
