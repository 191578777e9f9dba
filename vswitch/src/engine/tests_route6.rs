//! IPv6 routed between links (`route6.rs`), on a virtual clock: NAT66
//! masquerade and its replies, published ports over IPv6 (PUB-4), isolation
//! (V6-3), internal networks (BR-15), ingress deny (PUB-2), `ip6tables =
//! false` routing (V6-4), hop limits, the router's ICMPv6 errors (packet
//! too big, time exceeded, no route) and checksums verified by etherparse.

use std::net::Ipv6Addr;
use std::time::Instant;

use etherparse::{Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use super::fixtures6::*;
use super::*;

fn engine(ip6tables: bool, n2_internal: bool) -> Engine {
    Engine::new(nat6_cfg(ip6tables, n2_internal)).unwrap()
}

fn tcp(
    smac: MacAddr,
    dmac: MacAddr,
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
    syn: bool,
) -> Packet {
    let b = PacketBuilder::ethernet2(smac.0, dmac.0)
        .ipv6(a6(src).octets(), a6(dst).octets(), 64)
        .tcp(sport, dport, 1, 64240);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut v = Vec::new();
    b.write(&mut v, b"hello").unwrap();
    Packet::from_frame(VnetHdr::default(), &v)
}

fn run(e: &mut Engine, p: PortId, pkt: &mut Packet) -> Vec<Action> {
    let mut out = Vec::new();
    e.handle_frame(Instant::now(), p, pkt, &mut out);
    out
}

/// (src, dst, sport, dport, hop limit, macs) of a forwarded frame, with
/// the TCP checksum verified.
fn seen(pkt: &Packet) -> (Ipv6Addr, Ipv6Addr, u16, u16, u8, [u8; 6], [u8; 6]) {
    let f = pkt.frame();
    let s = SlicedPacket::from_ethernet(f).unwrap();
    let Some(NetSlice::Ipv6(ip)) = s.net else {
        panic!("not IPv6");
    };
    let h = ip.header();
    let Some(TransportSlice::Tcp(t)) = s.transport else {
        panic!("not TCP");
    };
    let want = t
        .to_header()
        .calc_checksum_ipv6_raw(h.source(), h.destination(), t.payload())
        .unwrap();
    assert_eq!(t.checksum(), want, "TCP checksum after rewrite");
    (
        h.source_addr(),
        h.destination_addr(),
        t.source_port(),
        t.destination_port(),
        h.hop_limit(),
        f[0..6].try_into().unwrap(),
        f[6..12].try_into().unwrap(),
    )
}

fn forwarded(out: &[Action]) -> PortId {
    match out {
        [Action::Forward(p)] => *p,
        o => panic!("expected one Forward, got {o:?}"),
    }
}

fn dropped(out: &[Action]) -> DropReason {
    match out {
        [Action::Drop(r)] => *r,
        o => panic!("expected one Drop, got {o:?}"),
    }
}

/// V6-4 with ip6tables: a container's flow leaves with the machine's ip6,
/// its reply comes back to the container; MACs and hop limits as a router's.
#[test]
fn masquerade_out_and_reply_back() {
    let mut e = engine(true, false);
    let mut p = tcp(A_MAC, GW1_MAC, A6, WWW, 40000, 80, true);
    assert_eq!(forwarded(&run(&mut e, A, &mut p)), EXT);
    let (src, dst, sport, dport, hop, dmac, smac) = seen(&p);
    assert_eq!((src, dst, dport, hop), (a6(ME), a6(WWW), 80, 63));
    assert_eq!((dmac, smac), (EXT_MAC.0, UP_MAC.0));
    let mut r = tcp(EXT_MAC, UP_MAC, WWW, ME, 80, sport, false);
    assert_eq!(forwarded(&run(&mut e, EXT, &mut r)), A);
    let (src, dst, sport, dport, _, dmac, smac) = seen(&r);
    assert_eq!((src, dst, sport, dport), (a6(WWW), a6(A6), 80, 40000));
    assert_eq!((dmac, smac), (A_MAC.0, GW1_MAC.0));
    assert_eq!(e.conntrack_len(), 1);
}

/// PUB-4/PUB-3: `8080:80` over IPv6 reaches the container with the client's
/// own address; the reply leaves from the published address.
#[test]
fn published_port_over_ipv6_keeps_the_client() {
    let mut e = engine(true, false);
    let mut p = tcp(EXT_MAC, UP_MAC, WWW, ME, 51000, 8080, true);
    assert_eq!(forwarded(&run(&mut e, EXT, &mut p)), A);
    let (src, dst, sport, dport, ..) = seen(&p);
    assert_eq!((src, dst, sport, dport), (a6(WWW), a6(A6), 51000, 80));
    let mut r = tcp(A_MAC, GW1_MAC, A6, WWW, 80, 51000, false);
    assert_eq!(forwarded(&run(&mut e, A, &mut r)), EXT);
    let (src, _, sport, ..) = seen(&r);
    assert_eq!((src, sport), (a6(ME), 8080));
}

/// PUB-2, V6-3, BR-15 with ip6tables: no way in to a container address,
/// none between networks, none out of an internal one.
#[test]
fn ip6tables_filters_like_iptables() {
    let mut e = engine(true, true);
    let mut p = tcp(EXT_MAC, UP_MAC, WWW, A6, 51000, 80, true);
    assert_eq!(
        dropped(&run(&mut e, EXT, &mut p)),
        DropReason::IngressDenied
    );
    let mut p = tcp(A_MAC, GW1_MAC, A6, B6, 40000, 80, true);
    assert_eq!(dropped(&run(&mut e, A, &mut p)), DropReason::Isolation);
    let mut p = tcp(B_MAC, GW2_MAC, B6, WWW, 40000, 80, true);
    assert_eq!(
        dropped(&run(&mut e, B, &mut p)),
        DropReason::InternalNetwork
    );
    // A mid-stream segment of no flow is conntrack's INVALID.
    let mut p = tcp(A_MAC, GW1_MAC, A6, WWW, 40001, 80, false);
    assert_eq!(dropped(&run(&mut e, A, &mut p)), DropReason::InvalidState);
}

/// V6-4 without ip6tables: routed both ways with the container's own
/// address, and between networks.
#[test]
fn without_ip6tables_ipv6_is_routed_unfiltered() {
    let mut e = engine(false, false);
    let mut p = tcp(A_MAC, GW1_MAC, A6, WWW, 40000, 80, true);
    assert_eq!(forwarded(&run(&mut e, A, &mut p)), EXT);
    assert_eq!(seen(&p).0, a6(A6), "no masquerade");
    let mut p = tcp(EXT_MAC, UP_MAC, WWW, A6, 51000, 80, true);
    assert_eq!(forwarded(&run(&mut e, EXT, &mut p)), A);
    let mut p = tcp(A_MAC, GW1_MAC, A6, B6, 40002, 80, true);
    assert_eq!(forwarded(&run(&mut e, A, &mut p)), B);
    let (.., dmac, smac) = seen(&p);
    assert_eq!((dmac, smac), (B_MAC.0, GW2_MAC.0));
}

/// What is not the router's stays on L2: the machine's own addresses,
/// link-local destinations; a hop limit of 1 is answered with time
/// exceeded from gateway6 when routed.
#[test]
fn local_link_local_and_hop_limit() {
    let mut e = engine(true, false);
    let mut p = tcp(A_MAC, GW1_MAC, A6, "fd00:30::1", 40000, 22, true);
    assert_eq!(
        forwarded(&run(&mut e, A, &mut p)),
        HOST1,
        "gateway6 is the host's"
    );
    let mut p = tcp(A_MAC, GW1_MAC, A6, ME, 40000, 22, true);
    assert_eq!(
        forwarded(&run(&mut e, A, &mut p)),
        HOST1,
        "the machine's ip6 too"
    );
    let mut p = tcp(A_MAC, GW1_MAC, "fe80::2", "fe80::1", 40000, 22, true);
    assert_eq!(forwarded(&run(&mut e, A, &mut p)), HOST1);
    let b = PacketBuilder::ethernet2(A_MAC.0, GW1_MAC.0)
        .ipv6(a6(A6).octets(), a6(WWW).octets(), 1)
        .tcp(40000, 80, 1, 64240)
        .syn();
    let mut v = Vec::new();
    b.write(&mut v, b"").unwrap();
    let mut p = Packet::from_frame(VnetHdr::default(), &v);
    let (to, t, src, dst) = icmp_error(&run(&mut e, A, &mut p));
    assert_eq!(to, A);
    assert!(matches!(t, Icmpv6Type::TimeExceeded(_)), "{t:?}");
    assert_eq!((src, dst), (a6("fd00:30::1"), a6(A6)));
    assert_eq!(e.conntrack_len(), 0, "no flow behind an error");
}

/// The one ICMPv6 error emitted (port, type, source, destination), its
/// checksum verified and the offending packet's header quoted.
fn icmp_error(out: &[Action]) -> (PortId, Icmpv6Type, Ipv6Addr, Ipv6Addr) {
    let [Action::Emit(port, e)] = out else {
        panic!("expected one Emit, got {out:?}");
    };
    let s = SlicedPacket::from_ethernet(e.frame()).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &s.net else {
        panic!("not IPv6")
    };
    let h = ip.header();
    let Some(TransportSlice::Icmpv6(m)) = &s.transport else {
        panic!("not ICMPv6")
    };
    let want = m
        .header()
        .icmp_type
        .calc_checksum(h.source(), h.destination(), m.payload())
        .unwrap();
    assert_eq!(m.checksum(), want, "ICMPv6 checksum");
    assert_eq!(m.payload()[0] >> 4, 6, "quotes the IPv6 packet");
    (*port, m.icmp_type(), h.source_addr(), h.destination_addr())
}

fn big_tcp(smac: MacAddr, dmac: MacAddr, src: &str, dst: &str, payload: usize) -> Packet {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(smac.0, dmac.0)
        .ipv6(a6(src).octets(), a6(dst).octets(), 64)
        .tcp(40000, 80, 1, 64240)
        .syn()
        .write(&mut v, &vec![0u8; payload])
        .unwrap();
    Packet::from_frame(VnetHdr::default(), &v)
}

/// V6-4, BR-6: IPv6 routers never fragment: a packet above the egress
/// network's MTU is answered with packet too big carrying that MTU, from
/// the gateway6 on the sender's side; one that fits passes.
#[test]
fn packet_too_big_for_a_network_mtu() {
    let mut cfg = nat6_cfg(false, false);
    cfg.l3.v6.networks[1].mtu = 1400;
    let mut e = Engine::new(cfg).unwrap();
    let mut p = big_tcp(A_MAC, GW1_MAC, A6, B6, 1400 - 60 + 1);
    let (to, t, src, dst) = icmp_error(&run(&mut e, A, &mut p));
    assert_eq!(to, A);
    assert_eq!(t, Icmpv6Type::PacketTooBig { mtu: 1400 });
    assert_eq!((src, dst), (a6("fd00:30::1"), a6(A6)));
    let mut p = big_tcp(A_MAC, GW1_MAC, A6, B6, 1400 - 60);
    assert_eq!(forwarded(&run(&mut e, A, &mut p)), B);
}

/// A link fault's MTU on the uplink is the router's egress MTU there (as
/// for IPv4's frag-needed); a GSO frame is measured per segment; the error
/// to a lan client comes from the machine's ip6; no flow is left behind.
#[test]
fn packet_too_big_on_the_uplink_and_for_gso() {
    let mut e = engine(true, false);
    e.set_fault(
        UPLINK,
        Some(crate::engine::fault::LinkFault {
            mtu: Some(1300),
            ..Default::default()
        }),
    );
    let mut p = big_tcp(A_MAC, GW1_MAC, A6, WWW, 1300);
    let (_, t, ..) = icmp_error(&run(&mut e, A, &mut p));
    assert_eq!(t, Icmpv6Type::PacketTooBig { mtu: 1300 });
    assert_eq!(e.conntrack_len(), 0, "no flow behind an error");
    // A TSO6 super-frame whose segments fit passes whole.
    let mut p = big_tcp(A_MAC, GW1_MAC, A6, WWW, 8000);
    p.hdr.gso_type = VnetHdr::GSO_TCPV6;
    p.hdr.gso_size = 1200;
    assert_eq!(forwarded(&run(&mut e, A, &mut p)), EXT);
    let mut p = big_tcp(A_MAC, GW1_MAC, A6, WWW, 8000);
    p.hdr.gso_type = VnetHdr::GSO_TCPV6;
    p.hdr.gso_size = 1300;
    let (_, t, ..) = icmp_error(&run(&mut e, A, &mut p));
    assert_eq!(t, Icmpv6Type::PacketTooBig { mtu: 1300 });
    // From lan into a network: the error comes from the machine's ip6.
    let mut cfg = nat6_cfg(false, false);
    cfg.l3.v6.networks[0].mtu = 1280;
    let mut e = Engine::new(cfg).unwrap();
    let mut p = big_tcp(EXT_MAC, UP_MAC, WWW, A6, 1300);
    let (to, t, src, dst) = icmp_error(&run(&mut e, EXT, &mut p));
    assert_eq!((to, t), (EXT, Icmpv6Type::PacketTooBig { mtu: 1280 }));
    assert_eq!((src, dst), (a6(ME), a6(WWW)));
}

/// No route beyond the lan (no IPv6 gateway on it): destination
/// unreachable, no route, from gateway6; never an error about an error.
#[test]
fn no_route_is_destination_unreachable() {
    let mut e = engine(true, false);
    let mut p = tcp(A_MAC, GW1_MAC, A6, "2001:db8:99::1", 40000, 80, true);
    let (to, t, src, _) = icmp_error(&run(&mut e, A, &mut p));
    assert_eq!(to, A);
    assert_eq!(
        t,
        Icmpv6Type::DestinationUnreachable(etherparse::icmpv6::DestUnreachableCode::NoRoute)
    );
    assert_eq!(src, a6("fd00:30::1"));
    assert_eq!(e.conntrack_len(), 0);
}

/// Every truncation of a routed frame is refused or left to L2, never a
/// panic; a partial checksum (TSO from a TAP) is updated without
/// complementing and ports left to the device.
#[test]
fn truncations_and_partial_checksums() {
    let full = tcp(A_MAC, GW1_MAC, A6, WWW, 40000, 80, true);
    for n in 0..full.frame().len() {
        let mut e = engine(true, false);
        let mut p = Packet::from_frame(VnetHdr::default(), &full.frame()[..n]);
        let _ = run(&mut e, A, &mut p);
    }
    // A partial checksum: the pseudo-header sum over the old addresses.
    let mut e = engine(true, false);
    let mut p = tcp(A_MAC, GW1_MAC, A6, WWW, 40000, 80, true);
    let l4 = 14 + 40;
    let pseudo = |src: Ipv6Addr, dst: Ipv6Addr, len: u32| {
        let mut s: u32 = len + 6;
        for w in src.segments().into_iter().chain(dst.segments()) {
            s += u32::from(w);
        }
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    };
    let len = (p.frame().len() - l4) as u32;
    p.frame_mut()[l4 + 16..l4 + 18].copy_from_slice(&pseudo(a6(A6), a6(WWW), len).to_be_bytes());
    p.hdr.flags = VnetHdr::F_NEEDS_CSUM;
    p.hdr.csum_start = l4 as u16;
    p.hdr.csum_offset = 16;
    assert_eq!(forwarded(&run(&mut e, A, &mut p)), EXT);
    let got = u16::from_be_bytes([p.frame()[l4 + 16], p.frame()[l4 + 17]]);
    assert_eq!(
        got,
        pseudo(a6(ME), a6(WWW), len),
        "partial sum over the new addresses"
    );
}

/// n2 on a second machine (uplink port 6, `2001:2::20`) publishing
/// `9090:80` for B: two Docker hosts on one lan, each with its conntrack.
fn two_machines() -> Engine {
    let mut cfg = nat6_cfg(true, false);
    cfg.ports.push(PortConfig {
        name: "lan/uplink2".into(),
        domain: DomainId(0),
        role: PortRole::Plain,
    });
    let up2 = PortId(6);
    let m2_mac = MacAddr([0x02, 0x56, 198, 18, 0, 3]);
    let mut m2 = cfg.l3.v6.machines[0].clone();
    m2.uplink = up2;
    m2.mac = m2_mac;
    m2.ip6 = Some(a6("2001:2::20"));
    cfg.l3.v6.machines.push(m2);
    cfg.l3.v6.networks[1].machine = 1;
    cfg.l3.v6.publish.push(route6::Publish6 {
        machine: 1,
        host_ip: None,
        host_port: 9090,
        proto: 6,
        container_ip: a6(B6),
        container_port: 80,
    });
    cfg.l3.v6.neighbours.push((a6("2001:2::20"), m2_mac, up2));
    cfg.l3.v6.neighbours.push((a6(ME), UP_MAC, UPLINK));
    Engine::new(cfg).unwrap()
}

/// PUB-4 across machines, as Docker does it: a container of m1 reaching
/// m2's published IPv6 port is masqueraded by m1 (V6-4), then DNATed by
/// m2's own inbound path (not handed to m2's host stack, where only the
/// proxy would answer), so B sees m1's address; the reply comes back
/// through both translations.
#[test]
fn a_published_port_of_another_machine_goes_through_its_dnat() {
    let mut e = two_machines();
    let mut p = tcp(A_MAC, GW1_MAC, A6, "2001:2::20", 40000, 9090, true);
    assert_eq!(forwarded(&run(&mut e, A, &mut p)), B);
    let (src, dst, sport, dport, hop, dmac, smac) = seen(&p);
    assert_eq!((src, dst, dport, hop), (a6(ME), a6(B6), 80, 62));
    assert_eq!((dmac, smac), (B_MAC.0, GW2_MAC.0));
    assert_eq!(e.conntrack_len(), 2, "one flow on each machine");
    let mut r = tcp(B_MAC, GW2_MAC, B6, ME, 80, sport, false);
    assert_eq!(forwarded(&run(&mut e, B, &mut r)), A);
    let (src, dst, sport, dport, ..) = seen(&r);
    assert_eq!(
        (src, dst, sport, dport),
        (a6("2001:2::20"), a6(A6), 9090, 40000)
    );
    // An unpublished port of m2 is its host stack's: handed to its uplink.
    let mut p = tcp(A_MAC, GW1_MAC, A6, "2001:2::20", 40001, 22, true);
    assert_eq!(forwarded(&run(&mut e, A, &mut p)), PortId(6));
}

/// RFC 4443 §2.4 through NAT66 (path MTU discovery of a masqueraded
/// flow): a packet too big from the lan quoting the translated packet is
/// translated back, outer destination and quoted source with their
/// checksums, and delivered to the container that sent it.
#[test]
fn an_error_about_a_masqueraded_flow_reaches_its_container() {
    let mut e = engine(true, false);
    let mut p = tcp(A_MAC, GW1_MAC, A6, WWW, 40000, 80, true);
    assert_eq!(forwarded(&run(&mut e, A, &mut p)), EXT);
    let quoted = p.frame()[14..].to_vec();
    let (_, _, sport, ..) = seen(&p);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(EXT_MAC.0, UP_MAC.0)
        .ipv6(a6(WWW).octets(), a6(ME).octets(), 64)
        .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1400 })
        .write(&mut v, &quoted)
        .unwrap();
    let mut err = Packet::from_frame(VnetHdr::default(), &v);
    assert_eq!(forwarded(&run(&mut e, EXT, &mut err)), A);
    let s = SlicedPacket::from_ethernet(err.frame()).unwrap();
    let (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(m))) = (&s.net, &s.transport) else {
        panic!("not ICMPv6")
    };
    let h = ip.header();
    assert_eq!(h.destination_addr(), a6(A6));
    let want = m
        .icmp_type()
        .calc_checksum(h.source(), h.destination(), m.payload())
        .unwrap();
    assert_eq!(m.checksum(), want, "outer ICMPv6 checksum");
    assert_eq!(m.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1400 });
    // The quoted packet is A's own again, its TCP checksum right.
    let mut inner = vec![0u8; 14];
    inner[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    inner.extend_from_slice(m.payload());
    let q = Packet::from_frame(VnetHdr::default(), &inner);
    let (src, dst, qs, qd, ..) = seen(&q);
    assert_eq!((src, dst, qs, qd), (a6(A6), a6(WWW), 40000, 80));
    assert_ne!(sport, 0);
    // An error about no flow is left to the host stack.
    let mut v = Vec::new();
    let other = tcp(UP_MAC, EXT_MAC, ME, WWW, 1234, 80, true);
    PacketBuilder::ethernet2(EXT_MAC.0, UP_MAC.0)
        .ipv6(a6(WWW).octets(), a6(ME).octets(), 64)
        .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1400 })
        .write(&mut v, &other.frame()[14..])
        .unwrap();
    let mut err = Packet::from_frame(VnetHdr::default(), &v);
    assert_eq!(forwarded(&run(&mut e, EXT, &mut err)), UPLINK);
}
