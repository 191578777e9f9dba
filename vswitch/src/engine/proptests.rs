//! Property tests: random sequences of (port, frame) on the test topology
//! never panic and never break the switch's invariants.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::tests::{BCAST, GW_IP, GW_MAC, arp_request, icmp_echo, mac, tcp_syn, topo_cfg};
use super::*;

/// A small MAC pool so that learning, moves and hits actually happen.
fn mac_pool() -> impl Strategy<Value = [u8; 6]> {
    prop_oneof![
        4 => (0u8..2, 2u8..6).prop_map(|(d, n)| mac(d, n)),
        1 => Just(GW_MAC.0),
        1 => Just(BCAST),
        1 => Just([0x01, 0x00, 0x5e, 0, 0, 1]),
        1 => Just([0; 6]),
        1 => any::<[u8; 6]>(),
    ]
}

/// A frame: raw bytes, or a real ARP/ICMP/TCP frame from the pool; then
/// optionally truncated.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    let raw = (
        mac_pool(),
        mac_pool(),
        prop_oneof![
            Just(0x0800u16),
            Just(0x0806),
            Just(0x8100),
            Just(0x88a8),
            any::<u16>()
        ],
        proptest::collection::vec(any::<u8>(), 0..80),
    )
        .prop_map(|(d, s, t, p)| {
            let mut v = Vec::with_capacity(14 + p.len());
            v.extend_from_slice(&d);
            v.extend_from_slice(&s);
            v.extend_from_slice(&t.to_be_bytes());
            v.extend_from_slice(&p);
            v
        });
    let built = (mac_pool(), mac_pool(), 0u8..4).prop_map(|(s, d, k)| match k {
        0 => arp_request(s, [10, 0, 0, 2], GW_IP),
        1 => icmp_echo(s, d, [10, 0, 0, 2], GW_IP, b"payload"),
        2 => tcp_syn(s, d, [10, 0, 0, 2], GW_IP.octets()),
        _ => arp_request(s, [10, 0, 0, 2], std::net::Ipv4Addr::new(10, 0, 0, 3)),
    });
    (prop_oneof![raw, built], any::<Option<usize>>()).prop_map(|(mut v, cut)| {
        if let Some(c) = cut {
            v.truncate(c % (v.len() + 1));
        }
        v
    })
}

/// (ingress port incl. two unknown ones, seconds to advance, frame).
fn steps() -> impl Strategy<Value = Vec<(u16, u16, Vec<u8>)>> {
    proptest::collection::vec((0u16..10, 0u16..200, frame()), 1..120)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_frames_keep_the_invariants(
        icc in any::<bool>(),
        capacity in 0usize..6,
        steps in steps(),
    ) {
        let mut e = Engine::new(topo_cfg(icc, capacity)).unwrap();
        let mut now = Instant::now();
        let mut out = Vec::new();
        for (port, adv, bytes) in steps {
            now += Duration::from_secs(u64::from(adv));
            let ingress = PortId(port);
            let mut p = Packet::from_frame(VnetHdr::default(), &bytes);
            out.clear();
            e.handle_frame(now, ingress, &mut p, &mut out);
            prop_assert!(!out.is_empty());
            let drops = out.iter().filter(|a| matches!(a, Action::Drop(_))).count();
            prop_assert!(drops == 0 || out.len() == 1, "drop plus other actions: {:?}", out);
            prop_assert_eq!(p.frame(), &bytes[..], "the ingress frame was modified");
            for a in &out {
                match a {
                    Action::Forward(to) => {
                        prop_assert_ne!(*to, ingress);
                        prop_assert_eq!(e.port_domain(*to), e.port_domain(ingress));
                        if !icc && e.port_domain(ingress) == Some(DomainId(0)) {
                            prop_assert!(
                                !(e.port_role(ingress) == Some(PortRole::Container)
                                    && e.port_role(*to) == Some(PortRole::Container)),
                                "icc=false delivered container {:?} → container {:?}", ingress, to
                            );
                        }
                    }
                    Action::Emit(to, pk) => {
                        prop_assert_eq!(*to, ingress);
                        prop_assert_eq!(pk.hdr, VnetHdr::default());
                        prop_assert_eq!(&pk.frame()[6..12], &GW_MAC.0[..]);
                    }
                    Action::Drop(_) => {}
                    Action::Capture(..) => prop_assert!(false, "capture without overlay"),
                }
            }
            for d in 0..3 {
                prop_assert!(e.fdb_len(DomainId(d)) <= capacity);
            }
        }
        e.expire(now);
        prop_assert!(e.poll_timeout().is_none_or(|t| t >= now));
        let m = e.metrics();
        let rx: u64 = (0..8).map(|i| m.port(PortId(i)).rx_frames).sum();
        let drops = m.total_drops().total() - m.unknown_port_drops();
        prop_assert!(drops <= rx);
    }
}

/// Frames for the NAT topology of `tests_l3.rs`: TCP, UDP, ICMP echo and
/// errors and ARP between its addresses and MACs, with random ports, TTLs
/// and flags, sometimes truncated or with a byte flipped.
pub(super) fn nat_frame() -> impl Strategy<Value = Vec<u8>> {
    use super::tests_l3::{
        A_IP, B_IP, C_IP, D_IP, G_IP, GW1, GW3, M_IP, X_IP, arp, dmac, lmac, tcp, tcp_ttl, udp,
    };
    let ip = prop_oneof![
        Just(A_IP),
        Just(B_IP),
        Just(C_IP),
        Just(D_IP),
        Just(M_IP),
        Just(X_IP),
        Just(G_IP),
        Just(GW1),
        Just(GW3),
        Just(std::net::Ipv4Addr::new(8, 8, 8, 8)),
    ];
    let macs = prop_oneof![
        Just(dmac(A_IP)),
        Just(dmac(GW1)),
        Just(dmac(GW3)),
        Just(lmac(M_IP)),
        Just(lmac(X_IP)),
        Just([0xff; 6]),
    ];
    let port = prop_oneof![Just(80u16), Just(8080), Just(40000), 1u16..64];
    (
        macs.clone(),
        macs,
        ip.clone(),
        ip,
        port.clone(),
        port,
        0u8..6,
        0u8..3,
        any::<Option<(usize, u8)>>(),
    )
        .prop_map(|(sm, dm, si, di, sp, dp, kind, ttl, mangle)| {
            let mut v = match kind {
                0 => tcp_ttl((sm, dm), si, di, sp, dp, "S", ttl),
                1 => tcp(sm, dm, si, di, sp, dp, "SA"),
                2 => udp(sm, dm, si, di, sp, dp, b"data"),
                3 => icmp_echo(sm, dm, si.octets(), di, b"ping"),
                4 => arp(etherparse::ArpOperation::REPLY, sm, si, di),
                _ => {
                    let mut q = Vec::new();
                    etherparse::PacketBuilder::ipv4(di.octets(), si.octets(), 1)
                        .udp(dp, sp)
                        .write(&mut q, b"x")
                        .unwrap();
                    let mut v = Vec::new();
                    etherparse::PacketBuilder::ethernet2(sm, dm)
                        .ipv4(si.octets(), di.octets(), 64)
                        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                            etherparse::icmpv4::DestUnreachableHeader::Port,
                        ))
                        .write(&mut v, &q)
                        .unwrap();
                    v
                }
            };
            if let Some((at, b)) = mangle {
                if b & 1 == 0 {
                    v.truncate(at % (v.len() + 1));
                } else {
                    let i = at % v.len();
                    v[i] ^= b;
                }
            }
            v
        })
}
