//! Engine tests on a virtual clock (a base `Instant` plus offsets; nothing
//! sleeps). Statement ids (BR-*) refer to docs/docker-semantics.md §1.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use etherparse::{
    ArpEthIpv4Packet, ArpOperation, Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket,
    TransportSlice,
};

use super::*;
use crate::wire::ip::checksum::checksum;

pub(super) const AGING: Duration = Duration::from_secs(300);
pub(super) const GW_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub(super) const GW_MAC: MacAddr = MacAddr([0x02, 0x42, 10, 0, 0, 1]);
pub(super) const BCAST: [u8; 6] = [0xff; 6];

/// Container MAC on net 10.0.d.0/24 (BR-5 style).
pub(super) fn mac(d: u8, n: u8) -> [u8; 6] {
    [0x02, 0x42, 10, 0, d, n]
}

/// Ports of [`topo`]:
/// - domain 0 `n1` (gateway, icc as given): 0 host, 1 a, 2 b, 3 c (containers);
/// - domain 1 `n2` (no gateway, icc on): 4 d, 5 e (containers);
/// - domain 2 `lan` (no gateway): 6 x, 7 y (plain).
pub(super) const HOST: PortId = PortId(0);
pub(super) const A: PortId = PortId(1);
pub(super) const B: PortId = PortId(2);
pub(super) const C: PortId = PortId(3);
pub(super) const D: PortId = PortId(4);
pub(super) const E: PortId = PortId(5);
pub(super) const X: PortId = PortId(6);
pub(super) const Y: PortId = PortId(7);

pub(super) fn topo_cfg(icc: bool, capacity: usize) -> EngineConfig {
    let port = |name: &str, d: u16, role| PortConfig {
        name: name.into(),
        domain: DomainId(d),
        role,
    };
    EngineConfig {
        domains: vec![
            DomainConfig {
                name: "n1".into(),
                gateway: Some(Gateway {
                    ip: GW_IP,
                    ip6: None,
                    mac: GW_MAC,
                }),
                icc,
            },
            DomainConfig {
                name: "n2".into(),
                gateway: None,
                icc: true,
            },
            DomainConfig {
                name: "lan".into(),
                gateway: None,
                icc: true,
            },
        ],
        ports: vec![
            port("n1/host", 0, PortRole::Host),
            port("a/eth0", 0, PortRole::Container),
            port("b/eth0", 0, PortRole::Container),
            port("c/eth0", 0, PortRole::Container),
            port("d/eth0", 1, PortRole::Container),
            port("e/eth0", 1, PortRole::Container),
            port("x/eth0", 2, PortRole::Plain),
            port("y/eth0", 2, PortRole::Plain),
        ],
        fdb_capacity: capacity,
        fdb_aging: AGING,
        l3: L3Config::default(),
        overlay: Vec::new(),
    }
}

pub(super) fn topo(icc: bool) -> Engine {
    Engine::new(topo_cfg(icc, 64)).unwrap()
}

pub(super) fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Packet {
    let mut v = Vec::with_capacity(14 + payload.len());
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    Packet::from_frame(VnetHdr::default(), &v)
}

pub(super) fn arp_request(src: [u8; 6], spa: [u8; 4], tpa: Ipv4Addr) -> Vec<u8> {
    let arp = ArpEthIpv4Packet {
        operation: ArpOperation::REQUEST,
        sender_mac: src,
        sender_ipv4: spa,
        target_mac: [0; 6],
        target_ipv4: tpa.octets(),
    };
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src, BCAST)
        .arp(arp.into())
        .write(&mut v)
        .unwrap();
    v
}

pub(super) fn icmp_echo(
    src: [u8; 6],
    dst: [u8; 6],
    sip: [u8; 4],
    dip: Ipv4Addr,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src, dst)
        .ipv4(sip, dip.octets(), 63)
        .icmpv4_echo_request(0x1234, 7)
        .write(&mut v, payload)
        .unwrap();
    v
}

pub(super) fn tcp_syn(src: [u8; 6], dst: [u8; 6], sip: [u8; 4], dip: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src, dst)
        .ipv4(sip, dip, 64)
        .tcp(40000, 80, 1, 64240)
        .syn()
        .write(&mut v, &[])
        .unwrap();
    v
}

fn pkt(bytes: &[u8]) -> Packet {
    Packet::from_frame(VnetHdr::default(), bytes)
}

/// Runs one frame, returns its actions.
fn run(e: &mut Engine, now: Instant, port: PortId, mut p: Packet) -> Vec<Action> {
    let mut out = Vec::new();
    e.handle_frame(now, port, &mut p, &mut out);
    out
}

fn forwards(out: &[Action]) -> Vec<PortId> {
    out.iter()
        .filter_map(|a| match a {
            Action::Forward(p) => Some(*p),
            _ => None,
        })
        .collect()
}

fn dropped(out: &[Action]) -> Option<DropReason> {
    match out {
        [Action::Drop(r)] => Some(*r),
        _ => None,
    }
}

fn emitted(out: &[Action]) -> (PortId, &Packet) {
    match out {
        [Action::Emit(p, pk)] => (*p, pk),
        other => panic!("expected one Emit, got {other:?}"),
    }
}

#[test]
fn new_validates_indices_host_ports_and_gateway_mac() {
    let mut cfg = topo_cfg(true, 8);
    cfg.ports[4].domain = DomainId(9);
    let err = Engine::new(cfg).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::UnknownDomain {
                port: 4,
                domain: 9,
                ..
            }
        ),
        "{err}"
    );

    let mut cfg = topo_cfg(true, 8);
    cfg.ports[2].role = PortRole::Host;
    let err = Engine::new(cfg).unwrap_err();
    assert!(
        matches!(err, EngineError::SecondHostPort { domain: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("n1/host") && err.to_string().contains("b/eth0"));

    let mut cfg = topo_cfg(true, 8);
    cfg.domains[0].gateway.as_mut().unwrap().mac = MacAddr::BROADCAST;
    assert!(matches!(
        Engine::new(cfg),
        Err(EngineError::BadGatewayMac { .. })
    ));
}

#[test]
fn unknown_port_short_frame_and_bad_sources_are_dropped_with_reasons() {
    let t = Instant::now();
    let mut e = topo(true);
    let f = eth(mac(0, 2), mac(0, 3), 0x0800, &[0; 46]);
    assert_eq!(
        dropped(&run(&mut e, t, PortId(99), f)),
        Some(DropReason::UnknownPort)
    );
    assert_eq!(e.metrics().unknown_port_drops(), 1);

    assert_eq!(
        dropped(&run(&mut e, t, A, pkt(&[0; 13]))),
        Some(DropReason::Malformed)
    );
    let mcast_src = eth(BCAST, [0x01, 0, 0x5e, 0, 0, 1], 0x0800, &[0; 46]);
    assert_eq!(
        dropped(&run(&mut e, t, A, mcast_src)),
        Some(DropReason::MulticastSource)
    );
    let zero_src = eth(BCAST, [0; 6], 0x0800, &[0; 46]);
    assert_eq!(
        dropped(&run(&mut e, t, A, zero_src)),
        Some(DropReason::ZeroSource)
    );
    for tpid in [0x8100, 0x88a8] {
        let tagged = eth(BCAST, mac(0, 2), tpid, &[0, 5, 8, 0, 0, 0]);
        assert_eq!(
            dropped(&run(&mut e, t, A, tagged)),
            Some(DropReason::VlanNotConfigured)
        );
    }
    // None of these taught the FDB anything.
    assert_eq!(e.fdb_len(DomainId(0)), 0);
    let c = e.metrics().port(A);
    assert_eq!(c.rx_frames, 5);
    assert_eq!(c.drops.total(), 5);
    assert_eq!(c.drops.get(DropReason::VlanNotConfigured), 2);
}

#[test]
fn learns_floods_unknown_then_forwards_known_unicast() {
    let t = Instant::now();
    let mut e = topo(true);
    // a → b, b unknown: flood to every other port of n1 only.
    let out = run(&mut e, t, A, eth(mac(0, 3), mac(0, 2), 0x0800, &[0; 46]));
    assert_eq!(forwards(&out), vec![HOST, B, C]);
    assert_eq!(e.fdb_port(DomainId(0), MacAddr(mac(0, 2))), Some(A));
    // b → a: a is known now.
    let out = run(&mut e, t, B, eth(mac(0, 2), mac(0, 3), 0x0800, &[0; 46]));
    assert_eq!(forwards(&out), vec![A]);
    // a → b: both known.
    let out = run(&mut e, t, A, eth(mac(0, 3), mac(0, 2), 0x0800, &[0; 46]));
    assert_eq!(forwards(&out), vec![B]);
    assert_eq!(e.fdb_len(DomainId(0)), 2);
    assert_eq!(e.metrics().fdb(DomainId(0)).learned, 2);
    let (a, b) = (e.metrics().port(A), e.metrics().port(B));
    assert_eq!((a.rx_frames, a.tx_frames, a.rx_bytes), (2, 1, 120));
    assert_eq!((b.rx_frames, b.tx_frames, b.tx_bytes), (1, 2, 120));
}

#[test]
fn broadcast_and_multicast_flood_to_every_other_port_of_the_domain() {
    let t = Instant::now();
    let mut e = topo(true);
    let out = run(&mut e, t, B, eth(BCAST, mac(0, 3), 0x0800, &[0; 46]));
    assert_eq!(forwards(&out), vec![HOST, A, C]);
    let out = run(
        &mut e,
        t,
        X,
        eth([0x33, 0x33, 0, 0, 0, 1], mac(9, 1), 0x86dd, &[0; 46]),
    );
    assert_eq!(forwards(&out), vec![Y]);
}

#[test]
fn unicast_to_a_mac_behind_the_ingress_port_is_dropped() {
    let t = Instant::now();
    let mut e = topo(true);
    run(&mut e, t, A, eth(BCAST, mac(0, 2), 0x0800, &[0; 46]));
    let out = run(&mut e, t, A, eth(mac(0, 2), mac(0, 9), 0x0800, &[0; 46]));
    assert_eq!(dropped(&out), Some(DropReason::SamePort));
}

#[test]
fn learned_macs_age_out_lazily_and_in_expire() {
    let t = Instant::now();
    let mut e = topo(true);
    assert_eq!(e.poll_timeout(), None);
    run(&mut e, t, A, eth(BCAST, mac(0, 2), 0x0800, &[0; 46]));
    run(
        &mut e,
        t + Duration::from_secs(100),
        B,
        eth(BCAST, mac(0, 3), 0x0800, &[0; 46]),
    );
    assert_eq!(e.poll_timeout(), Some(t + AGING));

    // Just at the aging time a is still known; one second later it is not.
    let to_a = || eth(mac(0, 2), mac(0, 4), 0x0800, &[0; 46]);
    assert_eq!(forwards(&run(&mut e, t + AGING, C, to_a())), vec![A]);
    let late = t + AGING + Duration::from_secs(1);
    assert_eq!(forwards(&run(&mut e, late, C, to_a())), vec![HOST, A, B]);
    assert_eq!(e.metrics().fdb(DomainId(0)).expired, 1);

    // b (seen at +100 s) and c (seen at `late`) expire on the sweep in turn.
    assert_eq!(e.expire(t + Duration::from_secs(401)), 1);
    assert_eq!(e.fdb_port(DomainId(0), MacAddr(mac(0, 3))), None);
    assert_eq!(e.poll_timeout(), Some(late + AGING));
    assert_eq!(e.expire(late + AGING + Duration::from_secs(1)), 1);
    assert_eq!(e.fdb_len(DomainId(0)), 0);
    assert_eq!(e.poll_timeout(), None);
    assert_eq!(e.metrics().fdb(DomainId(0)).expired, 3);
}

#[test]
fn a_full_table_learns_nothing_more_but_still_forwards() {
    let t = Instant::now();
    let mut e = Engine::new(topo_cfg(true, 2)).unwrap();
    run(&mut e, t, A, eth(BCAST, mac(0, 2), 0x0800, &[0; 46]));
    run(&mut e, t, B, eth(BCAST, mac(0, 3), 0x0800, &[0; 46]));
    let out = run(&mut e, t, C, eth(mac(0, 2), mac(0, 4), 0x0800, &[0; 46]));
    assert_eq!(forwards(&out), vec![A]);
    assert_eq!(e.fdb_len(DomainId(0)), 2);
    assert_eq!(e.metrics().fdb(DomainId(0)).full, 1);
    // c is unknown, so frames to it flood.
    let out = run(&mut e, t, A, eth(mac(0, 4), mac(0, 2), 0x0800, &[0; 46]));
    assert_eq!(forwards(&out), vec![HOST, B, C]);
    // The capacity is per domain: n2 still learns.
    run(&mut e, t, D, eth(BCAST, mac(1, 2), 0x0800, &[0; 46]));
    assert_eq!(e.fdb_len(DomainId(1)), 1);
}

#[test]
fn a_mac_moving_to_another_port_follows() {
    let t = Instant::now();
    let mut e = topo(true);
    run(&mut e, t, A, eth(BCAST, mac(0, 2), 0x0800, &[0; 46]));
    run(&mut e, t, C, eth(BCAST, mac(0, 2), 0x0800, &[0; 46]));
    assert_eq!(e.fdb_port(DomainId(0), MacAddr(mac(0, 2))), Some(C));
    let out = run(&mut e, t, B, eth(mac(0, 2), mac(0, 3), 0x0800, &[0; 46]));
    assert_eq!(forwards(&out), vec![C]);
    assert_eq!(e.metrics().fdb(DomainId(0)).moved, 1);
    assert_eq!(e.fdb_len(DomainId(0)), 2);
}

#[test]
fn icc_off_drops_container_to_container_unicast_but_not_host() {
    // BR-8: container↔container dropped; container↔gateway/host allowed.
    let t = Instant::now();
    let mut e = topo(false);
    run(&mut e, t, B, eth(GW_MAC.0, mac(0, 3), 0x0800, &[0; 46]));
    let out = run(&mut e, t, A, eth(mac(0, 3), mac(0, 2), 0x0800, &[0; 46]));
    assert_eq!(dropped(&out), Some(DropReason::IccDisabled));
    let out = run(&mut e, t, HOST, eth(mac(0, 3), GW_MAC.0, 0x0800, &[0; 46]));
    assert_eq!(forwards(&out), vec![B]);
    let out = run(&mut e, t, A, eth(GW_MAC.0, mac(0, 2), 0x0800, &[0; 46]));
    assert_eq!(forwards(&out), vec![HOST]);
    assert_eq!(e.metrics().port(A).drops.get(DropReason::IccDisabled), 1);
}

#[test]
fn icc_off_floods_from_a_container_reach_only_the_host_port() {
    let t = Instant::now();
    let mut e = topo(false);
    let out = run(&mut e, t, A, eth(BCAST, mac(0, 2), 0x0800, &[0; 46]));
    assert_eq!(forwards(&out), vec![HOST]);
    // Unknown unicast too.
    let out = run(&mut e, t, A, eth(mac(0, 7), mac(0, 2), 0x0800, &[0; 46]));
    assert_eq!(forwards(&out), vec![HOST]);
    // The host's floods reach every container.
    let out = run(&mut e, t, HOST, eth(BCAST, GW_MAC.0, 0x0800, &[0; 46]));
    assert_eq!(forwards(&out), vec![A, B, C]);

    // Without a host port, a container's flood has nowhere to go.
    let mut cfg = topo_cfg(false, 8);
    cfg.ports[0].role = PortRole::Container;
    let mut e = Engine::new(cfg).unwrap();
    let out = run(&mut e, t, A, eth(BCAST, mac(0, 2), 0x0800, &[0; 46]));
    assert_eq!(dropped(&out), Some(DropReason::IccDisabled));
}

#[test]
fn domains_are_isolated() {
    // BR-12: the same MAC learned in n2 is unknown in n1, and no frame
    // leaves its domain.
    let t = Instant::now();
    let mut e = topo(true);
    run(&mut e, t, D, eth(BCAST, mac(0, 3), 0x0800, &[0; 46]));
    assert_eq!(e.fdb_port(DomainId(1), MacAddr(mac(0, 3))), Some(D));
    assert_eq!(e.fdb_port(DomainId(0), MacAddr(mac(0, 3))), None);
    let out = run(&mut e, t, A, eth(mac(0, 3), mac(0, 2), 0x0800, &[0; 46]));
    assert_eq!(forwards(&out), vec![HOST, B, C]);
    let out = run(&mut e, t, E, eth(mac(0, 2), mac(1, 5), 0x0800, &[0; 46]));
    assert_eq!(forwards(&out), vec![D]);
    // A one-port domain's broadcast has no egress.
    let mut cfg = topo_cfg(true, 8);
    cfg.ports.truncate(5);
    let mut e = Engine::new(cfg).unwrap();
    let out = run(&mut e, t, D, eth(BCAST, mac(1, 2), 0x0800, &[0; 46]));
    assert_eq!(dropped(&out), Some(DropReason::NoEgressPort));
}

#[test]
fn gateway_answers_arp_for_its_address_from_containers() {
    let t = Instant::now();
    let mut e = topo(false);
    let req = arp_request(mac(0, 2), [10, 0, 0, 2], GW_IP);
    let out = run(&mut e, t, A, pkt(&req));
    let (port, reply) = emitted(&out);
    assert_eq!(port, A);
    assert_eq!(reply.hdr, VnetHdr::default());
    let s = SlicedPacket::from_ethernet(reply.frame()).unwrap();
    let Some(etherparse::LinkSlice::Ethernet2(l)) = &s.link else {
        panic!("no ethernet")
    };
    assert_eq!((l.destination(), l.source()), (mac(0, 2), GW_MAC.0));
    let Some(NetSlice::Arp(arp)) = &s.net else {
        panic!("no arp")
    };
    let arp = arp.to_packet().try_eth_ipv4().unwrap();
    assert_eq!(arp.operation, ArpOperation::REPLY);
    assert_eq!(
        (arp.sender_mac, arp.sender_ipv4),
        (GW_MAC.0, GW_IP.octets())
    );
    assert_eq!(
        (arp.target_mac, arp.target_ipv4),
        (mac(0, 2), [10, 0, 0, 2])
    );
    assert_eq!(e.metrics().port(A).tx_frames, 1);
    // The requester was learned.
    assert_eq!(e.fdb_port(DomainId(0), MacAddr(mac(0, 2))), Some(A));

    // A unicast ARP refresh to the gateway MAC is answered too.
    let mut refresh = req.clone();
    refresh[..6].copy_from_slice(&GW_MAC.0);
    assert_eq!(emitted(&run(&mut e, t, A, pkt(&refresh))).0, A);
}

#[test]
fn other_arp_requests_flood() {
    let t = Instant::now();
    let mut e = topo(true);
    // A container resolving a peer.
    let req = arp_request(mac(0, 2), [10, 0, 0, 2], Ipv4Addr::new(10, 0, 0, 3));
    assert_eq!(forwards(&run(&mut e, t, A, pkt(&req))), vec![HOST, B, C]);
    // The machine's kernel resolving a container.
    let req = arp_request(GW_MAC.0, GW_IP.octets(), Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(forwards(&run(&mut e, t, HOST, pkt(&req))), vec![A, B, C]);
    // A truncated ARP for the gateway is just a broadcast frame.
    let req = arp_request(mac(0, 2), [10, 0, 0, 2], GW_IP);
    assert_eq!(
        forwards(&run(&mut e, t, A, pkt(&req[..30]))),
        vec![HOST, B, C]
    );
}

fn check_echo_reply(reply: &Packet, to_mac: [u8; 6], to_ip: [u8; 4], payload: &[u8]) {
    assert_eq!(reply.hdr, VnetHdr::default());
    let f = reply.frame();
    // Full checksums: both fold to zero.
    assert_eq!(checksum(&f[14..34]), 0, "ipv4 header checksum");
    assert_eq!(checksum(&f[34..]), 0, "icmp checksum");
    let s = SlicedPacket::from_ethernet(f).unwrap();
    let Some(etherparse::LinkSlice::Ethernet2(l)) = &s.link else {
        panic!("no ethernet")
    };
    assert_eq!((l.destination(), l.source()), (to_mac, GW_MAC.0));
    let Some(NetSlice::Ipv4(ip)) = &s.net else {
        panic!("no ipv4")
    };
    let h = ip.header();
    assert_eq!(
        (h.source(), h.destination(), h.ttl()),
        (GW_IP.octets(), to_ip, 64)
    );
    let Some(TransportSlice::Icmpv4(icmp)) = &s.transport else {
        panic!("no icmp")
    };
    match icmp.icmp_type() {
        Icmpv4Type::EchoReply(h) => assert_eq!((h.id, h.seq), (0x1234, 7)),
        t => panic!("not an echo reply: {t:?}"),
    }
    assert_eq!(icmp.payload(), payload);
}

#[test]
fn gateway_answers_icmp_echo_even_with_icc_off() {
    let t = Instant::now();
    let mut e = topo(false);
    let payload: Vec<u8> = (0..56).collect();
    let req = icmp_echo(mac(0, 2), GW_MAC.0, [10, 0, 0, 2], GW_IP, &payload);
    let out = run(&mut e, t, A, pkt(&req));
    let (port, reply) = emitted(&out);
    assert_eq!(port, A);
    check_echo_reply(reply, mac(0, 2), [10, 0, 0, 2], &payload);

    // Odd payload length, and a partial checksum (NEEDS_CSUM) in the request.
    let req = icmp_echo(mac(0, 2), GW_MAC.0, [10, 0, 0, 2], GW_IP, b"odd");
    let mut p = pkt(&req);
    p.hdr.flags = VnetHdr::F_NEEDS_CSUM;
    p.frame_mut()[36] ^= 0xff; // checksum field garbage, as with offload
    let out = run(&mut e, t, A, p);
    check_echo_reply(emitted(&out).1, mac(0, 2), [10, 0, 0, 2], b"odd");
}

#[test]
fn echo_with_a_bad_checksum_is_dropped() {
    let t = Instant::now();
    let mut e = topo(true);
    let mut req = icmp_echo(mac(0, 2), GW_MAC.0, [10, 0, 0, 2], GW_IP, b"ping");
    req[36] ^= 0xff;
    let out = run(&mut e, t, A, pkt(&req));
    assert_eq!(dropped(&out), Some(DropReason::BadChecksum));
}

#[test]
fn other_traffic_to_the_gateway_mac_goes_to_the_host_port() {
    // BR-16: the host stack owns the gateway address for everything else.
    let t = Instant::now();
    let mut e = topo(false);
    let syn = tcp_syn(mac(0, 2), GW_MAC.0, [10, 0, 0, 2], GW_IP.octets());
    assert_eq!(forwards(&run(&mut e, t, A, pkt(&syn))), vec![HOST]);
    // An echo for another address via the gateway MAC is routed traffic.
    let ping = icmp_echo(
        mac(0, 2),
        GW_MAC.0,
        [10, 0, 0, 2],
        Ipv4Addr::new(1, 1, 1, 1),
        b"x",
    );
    assert_eq!(forwards(&run(&mut e, t, A, pkt(&ping))), vec![HOST]);

    let mut cfg = topo_cfg(true, 8);
    cfg.ports[0].role = PortRole::Container;
    let mut e = Engine::new(cfg).unwrap();
    let out = run(&mut e, t, A, pkt(&syn));
    assert_eq!(dropped(&out), Some(DropReason::NoHostPort));
    // ...but echo and ARP are still answered.
    let req = icmp_echo(mac(0, 2), GW_MAC.0, [10, 0, 0, 2], GW_IP, b"x");
    assert_eq!(emitted(&run(&mut e, t, A, pkt(&req))).0, A);
}

#[test]
fn the_gateway_mac_is_static_and_cannot_be_spoofed() {
    let t = Instant::now();
    let mut e = topo(true);
    let spoof = eth(BCAST, GW_MAC.0, 0x0800, &[0; 46]);
    assert_eq!(
        dropped(&run(&mut e, t, B, spoof)),
        Some(DropReason::SpoofedGatewayMac)
    );
    assert_eq!(e.fdb_port(DomainId(0), GW_MAC), Some(HOST));
    // The host port sends with it; it is not learned (static, not counted).
    run(&mut e, t, HOST, eth(BCAST, GW_MAC.0, 0x0800, &[0; 46]));
    assert_eq!(e.fdb_len(DomainId(0)), 0);
    // A frame from the host to its own MAC would go back where it came from.
    let out = run(&mut e, t, HOST, eth(GW_MAC.0, GW_MAC.0, 0x0800, &[0; 46]));
    assert_eq!(dropped(&out), Some(DropReason::SamePort));
}

#[test]
fn forwarded_frames_keep_their_gso_header_and_bytes() {
    let t = Instant::now();
    let mut e = topo(true);
    run(&mut e, t, B, eth(BCAST, mac(0, 3), 0x0800, &[0; 46]));
    let hdr = VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        gso_type: VnetHdr::GSO_TCPV4,
        hdr_len: 66,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    };
    let mut frame = tcp_syn(mac(0, 2), mac(0, 3), [10, 0, 0, 2], [10, 0, 0, 3]);
    frame.resize(60_000, 0xab);
    let mut p = Packet::from_frame(hdr, &frame);
    let mut out = Vec::new();
    e.handle_frame(t, A, &mut p, &mut out);
    assert_eq!(forwards(&out), vec![B]);
    assert_eq!(p.hdr, hdr);
    assert_eq!(p.frame(), &frame[..]);
    assert_eq!(e.metrics().port(B).tx_bytes, 60_000);
}

#[test]
fn every_drop_has_one_reason_counted_once() {
    let t = Instant::now();
    let mut e = topo(false);
    let frames: Vec<(PortId, Packet)> = vec![
        (A, pkt(&[1; 5])),
        (A, eth(BCAST, GW_MAC.0, 0x0800, &[])),
        (B, eth(BCAST, mac(0, 3), 0x0800, &[])),
        (A, eth(mac(0, 3), mac(0, 2), 0x0800, &[])),
        (HOST, eth(mac(0, 3), GW_MAC.0, 0x0800, &[])),
    ];
    let mut drops = 0;
    for (port, mut p) in frames {
        let mut out = Vec::new();
        e.handle_frame(t, port, &mut p, &mut out);
        let n = out.iter().filter(|a| matches!(a, Action::Drop(_))).count();
        assert!(n <= 1 && (n == 0 || out.len() == 1), "{out:?}");
        drops += n as u64;
    }
    assert_eq!(e.metrics().total_drops().total(), drops);
    assert_eq!(drops, 3);
    let j = e.metrics_json();
    assert_eq!(j["ports"]["a/eth0"]["drops"]["icc-disabled"], 1);
    assert_eq!(j["ports"]["a/eth0"]["drops"]["malformed"], 1);
    assert_eq!(j["domains"]["n1"]["fdb"]["learned"], 2);
}

// ------------------------------------------------------------------ IPv6

const GW6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xfd00, 0x5653, 0, 1, 0, 0, 0, 1);

fn v6(n: u16) -> std::net::Ipv6Addr {
    std::net::Ipv6Addr::new(0xfd00, 0x5653, 0, 1, 0, 0, 0, n)
}

fn topo6(icc: bool) -> Engine {
    let mut cfg = topo_cfg(icc, 64);
    if let Some(g) = cfg.domains[0].gateway.as_mut() {
        g.ip6 = Some(GW6);
    }
    Engine::new(cfg).unwrap()
}

/// A Neighbour Solicitation from `src` (MAC `smac`) for `target`, to its
/// solicited-node group.
fn ns6(smac: [u8; 6], src: std::net::Ipv6Addr, target: std::net::Ipv6Addr) -> Packet {
    let t = target.octets();
    let group = std::net::Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let g = group.octets();
    let mut body = t.to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&smac);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(smac, [0x33, 0x33, g[12], g[13], g[14], g[15]])
        .ipv6(src.octets(), g, 255)
        .icmpv6(etherparse::Icmpv6Type::Unknown {
            type_u8: 135,
            code_u8: 0,
            bytes5to8: [0; 4],
        })
        .write(&mut v, &body)
        .unwrap();
    Packet::from_frame(VnetHdr::default(), &v)
}

fn ping6(smac: [u8; 6], dmac: [u8; 6], src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr) -> Packet {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(smac, dmac)
        .ipv6(src.octets(), dst.octets(), 64)
        .icmpv6_echo_request(9, 1)
        .write(&mut v, b"v6")
        .unwrap();
    Packet::from_frame(VnetHdr::default(), &v)
}

fn emits6(out: &[Action]) -> Vec<(PortId, Vec<u8>)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Emit(p, pkt) => Some((*p, pkt.frame().to_vec())),
            _ => None,
        })
        .collect()
}

/// V6-1: a container resolves gateway6 (answered by the engine, not
/// flooded) and pings it; with `icc = false` too (BR-8's IPv6 side).
#[test]
fn gateway6_answers_neighbour_solicitation_and_ping6_even_without_icc() {
    for icc in [true, false] {
        let mut e = topo6(icc);
        let t = Instant::now();
        let out = run(&mut e, t, A, ns6(mac(0, 2), v6(2), GW6));
        let em = emits6(&out);
        assert_eq!(em.len(), 1, "{out:?}");
        assert!(forwards(&out).is_empty(), "not flooded: {out:?}");
        let (port, na) = &em[0];
        assert_eq!(*port, A);
        let s = SlicedPacket::from_ethernet(na).unwrap();
        let Some(TransportSlice::Icmpv6(icmp)) = s.transport else {
            panic!("{s:?}");
        };
        assert_eq!(icmp.type_u8(), 136);
        assert_eq!(&na[6..12], &GW_MAC.0, "from the gateway MAC");

        let out = run(&mut e, t, A, ping6(mac(0, 2), GW_MAC.0, v6(2), GW6));
        let em = emits6(&out);
        assert_eq!(em.len(), 1, "{out:?}");
        let s = SlicedPacket::from_ethernet(&em[0].1).unwrap();
        let Some(TransportSlice::Icmpv6(icmp)) = s.transport else {
            panic!("{s:?}");
        };
        assert!(matches!(
            icmp.icmp_type(),
            etherparse::Icmpv6Type::EchoReply(_)
        ));
    }
}

/// V6-1: containers of one network reach each other over IPv6 on L2 (NS
/// to the solicited-node group is flooded, the echo is unicast); other
/// addresses of the network are not answered by the gateway.
#[test]
fn containers_reach_each_other_over_ipv6() {
    let mut e = topo6(true);
    let t = Instant::now();
    let out = run(&mut e, t, A, ns6(mac(0, 2), v6(2), v6(3)));
    let mut f = forwards(&out);
    f.sort();
    assert_eq!(f, vec![HOST, B, C], "flooded to the group: {out:?}");
    assert!(emits6(&out).is_empty());
    let out = run(&mut e, t, B, ping6(mac(0, 3), mac(0, 2), v6(3), v6(2)));
    assert_eq!(forwards(&out), vec![A]);
}

/// V6-3: IPv6 never crosses from one network's domain to another's.
#[test]
fn ipv6_stays_in_its_network() {
    let mut e = topo6(true);
    let t = Instant::now();
    let out = run(&mut e, t, D, ns6(mac(1, 2), v6(9), GW6));
    let f = forwards(&out);
    assert!(f.iter().all(|p| *p == E), "{out:?}");
    assert!(emits6(&out).is_empty(), "n2 has no gateway6: {out:?}");
}
