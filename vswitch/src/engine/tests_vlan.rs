//! 802.1Q, macvlan and ipvlan on the engine's VLAN-aware lan (issue 7):
//! unit tests, property tests (tag round trips, no VLAN leak) and a pcap
//! of a trunk read back by tshark.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::tests::{BCAST, arp_request, eth, icmp_echo};
use super::vlan::{pop_tag, push_tag};
use super::*;

const M_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const M_MAC: [u8; 6] = [0x02, 0x56, 198, 18, 0, 2];

/// Ports of [`lan`] (all in domain 0, `lan`):
const UP: PortId = PortId(0); // machine uplink: trunk, parent of group 0
const X10: PortId = PortId(1); // external, VLAN 10
const X20: PortId = PortId(2); // external, VLAN 20
const X0: PortId = PortId(3); // external, untagged lan
const MB1: PortId = PortId(4); // macvlan bridge child, VLAN 10
const MB2: PortId = PortId(5); // macvlan bridge child, VLAN 10
const MP1: PortId = PortId(6); // macvlan private child, untagged
const MP2: PortId = PortId(7); // macvlan private child, untagged
const IV1: PortId = PortId(8); // ipvlan l2 child 198.18.0.130, untagged
const IV2: PortId = PortId(9); // ipvlan l3 child 10.1.0.5, untagged
const IV3: PortId = PortId(10); // ipvlan l3 child 10.2.0.5, untagged
const NPORTS: u16 = 11;
const IV1_6: &str = "2001:2::130"; // IV1's IPv6 address (on lan6)
const IV2_6: &str = "fd00:1::5"; // IV2's (l3 subnet6 A)
const IV3_6: &str = "fd00:2::5"; // IV3's (l3 subnet6 B)

fn xmac(n: u8) -> [u8; 6] {
    [0x02, 0x56, 0xaa, 0, 0, n]
}

fn vlan_cfg() -> VlanConfig {
    let child = |g, mode, vid| VlanPort {
        mode: VlanMode::Access(vid),
        attach: Attachment::Macvlan { group: g, mode },
    };
    let ipv = |ip, ip6: &str, l3| VlanPort {
        mode: VlanMode::Access(0),
        attach: Attachment::Ipvlan {
            group: 0,
            ip,
            ip6: Some(ip6.parse().unwrap()),
            l3,
            flag: Siblings::Bridge,
        },
    };
    VlanConfig {
        domain: DomainId(0),
        ports: vec![
            (
                UP,
                VlanPort {
                    mode: VlanMode::Trunk { native: 0 },
                    attach: Attachment::Parent {
                        group: 0,
                        mac: MacAddr(M_MAC),
                        ip: M_IP,
                    },
                },
            ),
            (
                X10,
                VlanPort {
                    mode: VlanMode::Access(10),
                    attach: Attachment::None,
                },
            ),
            (
                X20,
                VlanPort {
                    mode: VlanMode::Access(20),
                    attach: Attachment::None,
                },
            ),
            (MB1, child(0, Siblings::Bridge, 10)),
            (MB2, child(0, Siblings::Bridge, 10)),
            (MP1, child(0, Siblings::Private, 0)),
            (MP2, child(0, Siblings::Private, 0)),
            (IV1, ipv(Ipv4Addr::new(198, 18, 0, 130), IV1_6, false)),
            (IV2, ipv(Ipv4Addr::new(10, 1, 0, 5), IV2_6, true)),
            (IV3, ipv(Ipv4Addr::new(10, 2, 0, 5), IV3_6, true)),
        ],
        vids: Vec::new(),
    }
}

fn lan() -> Engine {
    let cfg = EngineConfig {
        domains: vec![DomainConfig {
            name: "lan".into(),
            gateway: None,
            icc: true,
        }],
        ports: (0..NPORTS)
            .map(|i| PortConfig {
                name: format!("p{i}"),
                domain: DomainId(0),
                role: PortRole::Plain,
            })
            .collect(),
        ..EngineConfig::default()
    };
    let mut e = Engine::new(cfg).unwrap();
    e.set_vlans(&vlan_cfg()).unwrap();
    e
}

fn run(e: &mut Engine, now: Instant, port: PortId, p: &mut Packet) -> Vec<Action> {
    let mut out = Vec::new();
    e.handle_frame(now, port, p, &mut out);
    out
}

fn dropped(out: &[Action]) -> Option<DropReason> {
    match out {
        [Action::Drop(r)] => Some(*r),
        _ => None,
    }
}

fn targets(out: &[Action]) -> Vec<PortId> {
    let mut v: Vec<PortId> = out
        .iter()
        .filter_map(|a| match a {
            Action::Forward(p) | Action::Emit(p, _) => Some(*p),
            Action::Drop(_) | Action::Capture(..) => None,
        })
        .collect();
    v.sort();
    v
}

fn tagged(frame: &[u8], vid: u16) -> Vec<u8> {
    let mut v = frame[..12].to_vec();
    v.extend_from_slice(&0x8100u16.to_be_bytes());
    v.extend_from_slice(&vid.to_be_bytes());
    v.extend_from_slice(&frame[12..]);
    v
}

fn csum_hdr() -> VnetHdr {
    VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        gso_type: VnetHdr::GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    }
}

#[test]
fn push_and_pop_move_the_vnet_offsets_and_keep_gso() {
    let f = eth(xmac(2), xmac(1), 0x0800, &[0x45; 60]);
    let mut p = Packet::from_frame(csum_hdr(), f.frame());
    assert!(push_tag(&mut p, 10));
    assert_eq!(p.frame(), &tagged(f.frame(), 10)[..]);
    assert_eq!((p.hdr.csum_start, p.hdr.hdr_len), (38, 58));
    assert_eq!(
        (p.hdr.gso_type, p.hdr.gso_size, p.hdr.csum_offset),
        (1, 1448, 16)
    );
    assert_eq!(pop_tag(&mut p), Some(10));
    assert_eq!(p.frame(), f.frame());
    assert_eq!(p.hdr, csum_hdr());
    // Not tagged, or too short: untouched.
    assert_eq!(pop_tag(&mut p), None);
    let mut short = Packet::from_frame(VnetHdr::default(), &tagged(f.frame(), 5)[..16]);
    assert_eq!(pop_tag(&mut short), None);
}

#[test]
fn access_ports_only_reach_their_vlan_and_trunks_get_tags() {
    let mut e = lan();
    let t = Instant::now();
    // A broadcast from the VLAN 10 external: both VLAN 10 children
    // untagged, the trunk tagged with VID 10; nothing on VLAN 20 or 0.
    let req = arp_request(xmac(10), [10, 30, 0, 50], Ipv4Addr::new(10, 30, 0, 99));
    let mut p = Packet::from_frame(csum_hdr(), &req);
    let out = run(&mut e, t, X10, &mut p);
    assert_eq!(targets(&out), vec![UP, MB1, MB2]);
    for a in &out {
        match a {
            Action::Emit(to, q) => {
                assert_eq!(*to, UP);
                assert_eq!(q.frame(), &tagged(&req, 10)[..]);
                assert_eq!(q.hdr.csum_start, 38, "tag push moves csum_start");
                assert_eq!(q.hdr.gso_size, 1448);
            }
            Action::Forward(to) => assert!(*to == MB1 || *to == MB2),
            Action::Drop(r) => panic!("dropped: {r}"),
            Action::Capture(..) => panic!("no VXLAN in this world"),
        }
    }
    // The learned MAC is per VLAN: unicast to it from VLAN 20 floods VLAN
    // 20 only (trunk tagged 20), never reaching X10.
    let mut p = eth(xmac(10), xmac(20), 0x0800, &[0; 46]);
    let out = run(&mut e, t, X20, &mut p);
    assert_eq!(targets(&out), vec![UP]);
    let Action::Emit(_, q) = &out[0] else {
        panic!("expected a tagged emit")
    };
    assert_eq!(&q.frame()[12..16], &[0x81, 0x00, 0, 20]);
    // From VLAN 10 it goes straight to the learned port.
    let mut p = eth(xmac(10), [0x02, 0x42, 10, 30, 0, 130], 0x0800, &[0; 46]);
    assert_eq!(targets(&run(&mut e, t, MB1, &mut p)), vec![X10]);
    assert_eq!(
        e.fdb_port(DomainId(0), MacAddr(xmac(10))),
        None,
        "VLAN 10 entries are not VLAN 0 entries"
    );
}

#[test]
fn tagged_frames_on_a_trunk_are_popped_unknown_vids_dropped() {
    let mut e = lan();
    let t = Instant::now();
    let f = eth(BCAST, M_MAC, 0x0800, &[0x45; 46]);
    // VID 10 from the trunk: popped, offsets moved back.
    let mut hdr = csum_hdr();
    hdr.shift(4);
    let mut p = Packet::from_frame(hdr, &tagged(f.frame(), 10));
    let out = run(&mut e, t, UP, &mut p);
    assert_eq!(targets(&out), vec![X10]);
    assert_eq!(p.frame(), f.frame());
    assert_eq!(p.hdr, csum_hdr());
    // VID 30: no port of the lan carries it.
    let mut p = Packet::from_frame(hdr, &tagged(f.frame(), 30));
    assert_eq!(
        dropped(&run(&mut e, t, UP, &mut p)),
        Some(DropReason::VlanUnknown)
    );
    // A tag on an access port, a QinQ tag, a double tag.
    let mut p = Packet::from_frame(
        hdr,
        &tagged(eth(BCAST, xmac(1), 0x0800, &[0; 46]).frame(), 10),
    );
    assert_eq!(
        dropped(&run(&mut e, t, X0, &mut p)),
        Some(DropReason::VlanNotConfigured)
    );
    let mut p = eth(BCAST, M_MAC, 0x88a8, &[0, 10, 8, 0, 0, 0]);
    assert_eq!(
        dropped(&run(&mut e, t, UP, &mut p)),
        Some(DropReason::VlanNotConfigured)
    );
    let mut p = Packet::from_frame(hdr, &tagged(&tagged(f.frame(), 20), 10));
    assert_eq!(
        dropped(&run(&mut e, t, UP, &mut p)),
        Some(DropReason::VlanNotConfigured)
    );
    assert_eq!(e.metrics().port(UP).drops.get(DropReason::VlanUnknown), 1);
}

#[test]
fn macvlan_children_never_reach_their_host_and_private_siblings_are_apart() {
    let mut e = lan();
    let t = Instant::now();
    let c1 = [0x02, 0x42, 198, 18, 0, 140];
    let c2 = [0x02, 0x42, 198, 18, 0, 141];
    // Learn both private children and the host.
    for (port, m) in [(MP1, c1), (MP2, c2), (UP, M_MAC)] {
        let mut p = eth(BCAST, m, 0x0806, &[0; 28]);
        run(&mut e, t, port, &mut p);
    }
    // MV-7: child → its machine, machine → child.
    let mut p = eth(M_MAC, c1, 0x0800, &[0x45; 46]);
    assert_eq!(
        dropped(&run(&mut e, t, MP1, &mut p)),
        Some(DropReason::ParentIsolation)
    );
    let mut p = eth(c1, M_MAC, 0x0800, &[0x45; 46]);
    assert_eq!(
        dropped(&run(&mut e, t, UP, &mut p)),
        Some(DropReason::ParentIsolation)
    );
    // MV-3 private: no sibling delivery; a broadcast reaches the lan only.
    let mut p = eth(c2, c1, 0x0800, &[0x45; 46]);
    assert_eq!(
        dropped(&run(&mut e, t, MP1, &mut p)),
        Some(DropReason::SiblingIsolation)
    );
    let mut p = eth(BCAST, c1, 0x0806, &[0; 28]);
    assert_eq!(targets(&run(&mut e, t, MP1, &mut p)), vec![X0]);
    // The untagged lan host reaches a private child.
    let mut p = eth(c1, xmac(1), 0x0800, &[0x45; 46]);
    assert_eq!(targets(&run(&mut e, t, X0, &mut p)), vec![MP1]);
    // Bridge siblings (VLAN 10) talk.
    let b1 = [0x02, 0x42, 10, 30, 0, 1];
    let b2 = [0x02, 0x42, 10, 30, 0, 2];
    let mut p = eth(BCAST, b2, 0x0806, &[0; 28]);
    run(&mut e, t, MB2, &mut p);
    let mut p = eth(b2, b1, 0x0800, &[0x45; 46]);
    assert_eq!(targets(&run(&mut e, t, MB1, &mut p)), vec![MB2]);
}

#[test]
fn ipvlan_children_are_found_by_address_behind_the_parent_mac() {
    let mut e = lan();
    let t = Instant::now();
    let peer = xmac(50);
    // l2: a lan host's ARP for the child reaches only that child.
    let req = arp_request(peer, [198, 18, 0, 50], Ipv4Addr::new(198, 18, 0, 130));
    let mut p = Packet::from_frame(VnetHdr::default(), &req);
    let out = run(&mut e, t, X0, &mut p);
    assert!(targets(&out).contains(&IV1));
    assert!(!targets(&out).contains(&IV2) && !targets(&out).contains(&IV3));
    // IP for the parent MAC and the child's address: the child.
    let ping = icmp_echo(
        peer,
        M_MAC,
        [198, 18, 0, 50],
        Ipv4Addr::new(198, 18, 0, 130),
        b"x",
    );
    let mut p = Packet::from_frame(VnetHdr::default(), &ping);
    assert_eq!(targets(&run(&mut e, t, X0, &mut p)), vec![IV1]);
    // l3: every ARP of a child is answered with the parent MAC.
    let req = arp_request(M_MAC, [10, 1, 0, 5], Ipv4Addr::new(10, 2, 0, 5));
    let mut p = Packet::from_frame(VnetHdr::default(), &req);
    let out = run(&mut e, t, IV2, &mut p);
    let [Action::Emit(to, rep)] = &out[..] else {
        panic!("expected an ARP reply: {out:?}")
    };
    assert_eq!(*to, IV2);
    assert_eq!(&rep.frame()[6..12], &M_MAC);
    // l3 routes between subnets by address …
    let ping = icmp_echo(
        M_MAC,
        M_MAC,
        [10, 1, 0, 5],
        Ipv4Addr::new(10, 2, 0, 5),
        b"x",
    );
    let mut p = Packet::from_frame(VnetHdr::default(), &ping);
    assert_eq!(targets(&run(&mut e, t, IV2, &mut p)), vec![IV3]);
    // … but never to the host, never broadcasts, never off the network.
    let ping = icmp_echo(M_MAC, M_MAC, [10, 1, 0, 5], M_IP, b"x");
    let mut p = Packet::from_frame(VnetHdr::default(), &ping);
    assert_eq!(
        dropped(&run(&mut e, t, IV2, &mut p)),
        Some(DropReason::ParentIsolation)
    );
    let mut p = eth(BCAST, M_MAC, 0x0800, &[0x45; 46]);
    assert_eq!(
        dropped(&run(&mut e, t, IV2, &mut p)),
        Some(DropReason::IpvlanL3Broadcast)
    );
    let ping = icmp_echo(
        M_MAC,
        M_MAC,
        [10, 1, 0, 5],
        Ipv4Addr::new(198, 18, 0, 50),
        b"x",
    );
    let mut p = Packet::from_frame(VnetHdr::default(), &ping);
    assert_eq!(
        dropped(&run(&mut e, t, IV2, &mut p)),
        Some(DropReason::IpvlanL3Egress)
    );
    // BUG-13 with the route: a lan host that routes the l3 subnet via the
    // machine (dst MAC: the machine's) reaches the child.
    let ping = icmp_echo(
        peer,
        M_MAC,
        [198, 18, 0, 50],
        Ipv4Addr::new(10, 1, 0, 5),
        b"x",
    );
    let mut p = Packet::from_frame(VnetHdr::default(), &ping);
    assert_eq!(targets(&run(&mut e, t, X0, &mut p)), vec![IV2]);
    // The shared MAC is never learned from a child.
    assert_eq!(e.fdb_port(DomainId(0), MacAddr(M_MAC)), None);
}

#[test]
fn bad_vlan_configurations_are_refused() {
    let mut e = lan();
    let mut cfg = vlan_cfg();
    cfg.ports.push((PortId(99), VlanPort::PLAIN));
    assert!(matches!(
        e.set_vlans(&cfg),
        Err(EngineError::BadVlan { .. })
    ));
    let mut cfg = vlan_cfg();
    cfg.vids.push(4095);
    assert!(matches!(
        e.set_vlans(&cfg),
        Err(EngineError::BadVlan { .. })
    ));
}

/// The trunk's pcap shows the VLAN ids (tshark reads them), when tshark
/// is installed.
#[test]
fn a_trunk_pcap_shows_the_vids_to_tshark() {
    let Some(tshark) =
        crate::prereq::tool("a_trunk_pcap_shows_the_vids_to_tshark", "tshark").or_panic()
    else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("vswitch-vlan-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lan-m-eth0.pcap");
    let mut w = crate::backend::pcap::PcapWriter::create(&path).unwrap();
    let mut e = lan();
    let t = Instant::now();
    for (port, vid) in [(X10, 10u16), (X20, 20)] {
        let req = arp_request(
            xmac(vid as u8),
            [10, 30, 0, vid as u8],
            Ipv4Addr::new(10, 30, 0, 1),
        );
        let mut p = Packet::from_frame(VnetHdr::default(), &req);
        for a in run(&mut e, t, port, &mut p) {
            if let Action::Emit(UP, q) = a {
                w.write(q.frame()).unwrap();
            }
        }
    }
    w.flush().unwrap();
    drop(w);
    let out = std::process::Command::new(tshark)
        .args([
            "-r",
            path.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "vlan.id",
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids, vec!["10", "20"]);
}

fn port_vid(p: PortId) -> Option<u16> {
    match p {
        UP => None,
        X10 | MB1 | MB2 => Some(10),
        X20 => Some(20),
        _ => Some(0),
    }
}

proptest! {
    /// push then pop gives back the frame and the header, for any frame
    /// of at least 14 bytes, any VID and any offsets.
    #[test]
    fn tag_push_pop_round_trip(
        body in proptest::collection::vec(any::<u8>(), 14..200),
        vid in 0u16..4096,
        flags in 0u8..4,
        csum_start in 0u16..1000,
        hdr_len in 0u16..1000,
    ) {
        let hdr = VnetHdr { flags, gso_type: 1, hdr_len, gso_size: 1448, csum_start, csum_offset: 16 };
        let mut p = Packet::from_frame(hdr, &body);
        prop_assert!(push_tag(&mut p, vid));
        prop_assert_eq!(p.len(), body.len() + 4);
        prop_assert_eq!(&p.frame()[12..14], &[0x81, 0x00]);
        prop_assert_eq!(pop_tag(&mut p), Some(vid & 0x0fff));
        prop_assert_eq!(p.frame(), &body[..]);
        prop_assert_eq!(p.hdr, hdr);
    }

    /// Whatever arrives where, nothing leaves on another VLAN than the one
    /// it came in on: access ports get frames of their VLAN, untagged; the
    /// trunk gets other VLANs' frames tagged with their VID.
    #[test]
    fn no_vlan_leaks(frames in proptest::collection::vec(
        (0u16..NPORTS, 0u8..6, 0u8..6, prop_oneof![Just(None), Just(Some(0u16)), Just(Some(10)), Just(Some(20)), Just(Some(30))], any::<bool>()),
        1..60,
    )) {
        let mut e = lan();
        let t = Instant::now();
        let pool = |n: u8| if n == 5 { BCAST } else if n == 4 { M_MAC } else { xmac(n) };
        for (k, (port, s, d, tag, arp)) in frames.into_iter().enumerate() {
            let ingress = PortId(port);
            let src = if s == 5 { xmac(9) } else { pool(s) };
            let mut f = eth(pool(d), src, if arp { 0x0806 } else { 0x0800 }, &[0x45; 46]).frame().to_vec();
            if let Some(v) = tag {
                f = tagged(&f, v);
            }
            let vid_in = match (port_vid(ingress), tag) {
                (Some(v), None) => v,
                (None, None) => 0,
                (None, Some(v)) => v,
                (Some(_), Some(_)) => u16::MAX, // must be dropped
            };
            let mut p = Packet::from_frame(VnetHdr::default(), &f);
            let out = run(&mut e, t + Duration::from_millis(k as u64), ingress, &mut p);
            for a in &out {
                match a {
                    Action::Forward(to) => {
                        prop_assert_ne!(vid_in, u16::MAX);
                        prop_assert_eq!(port_vid(*to).unwrap_or(0), vid_in, "forward {:?}→{:?}", ingress, to);
                        prop_assert!(p.len() < 16 || p.frame()[12..14] != [0x81, 0x00]);
                    }
                    Action::Emit(to, q) => {
                        prop_assert_ne!(vid_in, u16::MAX);
                        let et = u16::from_be_bytes([q.frame()[12], q.frame()[13]]);
                        if *to == UP && et == 0x8100 {
                            let v = u16::from_be_bytes([q.frame()[14], q.frame()[15]]) & 0xfff;
                            prop_assert_eq!(v, vid_in);
                        } else {
                            // Engine answers (ARP replies) go back where asked.
                            prop_assert_eq!(port_vid(*to).unwrap_or(0), vid_in);
                        }
                    }
                    Action::Drop(_) | Action::Capture(..) => {}
                }
            }
        }
    }
}

/// A Neighbour Solicitation for `target` from `src` (solicited-node
/// multicast, source link-layer option), checksum by etherparse.
fn ns6(smac: [u8; 6], src: &str, target: &str) -> Packet {
    use etherparse::{Icmpv6Type, PacketBuilder};
    let t: std::net::Ipv6Addr = target.parse().unwrap();
    let o = t.octets();
    let snm = [
        0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ];
    let mut body = o.to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&smac);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(smac, [0x33, 0x33, 0xff, o[13], o[14], o[15]])
        .ipv6(
            src.parse::<std::net::Ipv6Addr>().unwrap().octets(),
            snm,
            255,
        )
        .icmpv6(Icmpv6Type::Unknown {
            type_u8: 135,
            code_u8: 0,
            bytes5to8: [0; 4],
        })
        .write(&mut v, &body)
        .unwrap();
    Packet::from_frame(VnetHdr::default(), &v)
}

/// A UDP datagram over IPv6.
fn udp6(smac: [u8; 6], dmac: [u8; 6], src: &str, dst: &str) -> Packet {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(smac, dmac)
        .ipv6(
            src.parse::<std::net::Ipv6Addr>().unwrap().octets(),
            dst.parse::<std::net::Ipv6Addr>().unwrap().octets(),
            64,
        )
        .udp(5000, 53)
        .write(&mut v, b"x")
        .unwrap();
    Packet::from_frame(VnetHdr::default(), &v)
}

/// The Neighbour Advertisement emitted to `to`: its target and the MAC
/// it advertises, checksum verified.
fn na6(out: &[Action], to: PortId) -> (std::net::Ipv6Addr, [u8; 6]) {
    let [Action::Emit(p, na)] = out else {
        panic!("expected one NA: {out:?}")
    };
    assert_eq!(*p, to);
    let s = etherparse::SlicedPacket::from_ethernet(na.frame()).unwrap();
    let (Some(etherparse::NetSlice::Ipv6(ip)), Some(etherparse::TransportSlice::Icmpv6(m))) =
        (&s.net, &s.transport)
    else {
        panic!("not ICMPv6")
    };
    let h = ip.header();
    let want = m
        .header()
        .icmp_type
        .calc_checksum(h.source(), h.destination(), m.payload())
        .unwrap();
    assert_eq!(m.checksum(), want);
    assert_eq!(m.type_u8(), 136);
    let b = m.payload();
    let target = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&b[0..16]).unwrap());
    (target, b[18..24].try_into().unwrap())
}

/// IV-12, IV-2 over IPv6 (l2): a lan host's NS for a child's IPv6
/// address reaches only that child; IPv6 for the parent MAC goes to the
/// child by destination address; a child's NS for a sibling is answered
/// with the parent MAC (not as a router); its NS for a lan host goes out.
#[test]
fn ipvlan_l2_does_nd_like_arp() {
    let mut e = lan();
    let t = Instant::now();
    let peer = xmac(50);
    let mut p = ns6(peer, "2001:2::50", IV1_6);
    let out = run(&mut e, t, X0, &mut p);
    assert!(targets(&out).contains(&IV1), "{out:?}");
    assert!(!targets(&out).contains(&IV2) && !targets(&out).contains(&IV3));
    let mut p = udp6(peer, M_MAC, "2001:2::50", IV1_6);
    assert_eq!(targets(&run(&mut e, t, X0, &mut p)), vec![IV1]);
    // The l3 children are siblings of IV1 too: NS from IV1 for IV2's
    // address is answered with the parent MAC.
    let mut p = ns6(M_MAC, IV1_6, IV2_6);
    let (target, mac) = na6(&run(&mut e, t, IV1, &mut p), IV1);
    assert_eq!((target, mac), (IV2_6.parse().unwrap(), M_MAC));
    let mut p = ns6(M_MAC, IV1_6, "2001:2::50");
    let out = run(&mut e, t, IV1, &mut p);
    assert!(targets(&out).contains(&X0), "{out:?}");
    assert_eq!(e.fdb_port(DomainId(0), MacAddr(M_MAC)), None);
}

/// IV-5, IV-12 over IPv6 (l3): no ND on the wire (every NS answered with
/// the parent MAC, none for its own address), no multicast, routing
/// between the network's subnets by address, nothing off the network.
#[test]
fn ipvlan_l3_has_no_nd_and_routes_between_subnets() {
    let mut e = lan();
    let t = Instant::now();
    let mut p = ns6(M_MAC, IV2_6, IV3_6);
    let (target, mac) = na6(&run(&mut e, t, IV2, &mut p), IV2);
    assert_eq!((target, mac), (IV3_6.parse().unwrap(), M_MAC));
    let mut p = ns6(M_MAC, "::", IV2_6); // DAD for its own address
    assert_eq!(
        dropped(&run(&mut e, t, IV2, &mut p)),
        Some(DropReason::IpvlanL3Broadcast)
    );
    let mut p = udp6(M_MAC, M_MAC, IV2_6, IV3_6);
    assert_eq!(targets(&run(&mut e, t, IV2, &mut p)), vec![IV3]);
    let mut p = udp6(M_MAC, [0x33, 0x33, 0, 0, 0, 1], IV2_6, "ff02::1");
    assert_eq!(
        dropped(&run(&mut e, t, IV2, &mut p)),
        Some(DropReason::IpvlanL3Broadcast)
    );
    let mut p = udp6(M_MAC, M_MAC, IV2_6, "2001:2::50");
    assert_eq!(
        dropped(&run(&mut e, t, IV2, &mut p)),
        Some(DropReason::IpvlanL3Egress)
    );
    // A lan host routing the l3 subnet6 via the machine reaches the child.
    let mut p = udp6(xmac(50), M_MAC, "2001:2::50", IV3_6);
    assert_eq!(targets(&run(&mut e, t, X0, &mut p)), vec![IV3]);
}
