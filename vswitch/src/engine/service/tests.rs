//! The service stage on a virtual clock: the VIP scheduler (SVC-3), UDP
//! stickiness, a task taken out (SVC-6), and the routing mesh's SNAT to the
//! receiving machine's sandbox (SVC-4).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use etherparse::{ArpOperation, NetSlice, SlicedPacket, TransportSlice};

use super::super::tests_l3::{arp, step, tcp, udp};
use super::super::*;
use super::*;

const CLIENT: PortId = PortId(0);
const T2: PortId = PortId(2);
const T3: PortId = PortId(3);
const EXT: PortId = PortId(4);
const UPLINK: PortId = PortId(5);
const SBOX: PortId = PortId(6);

const VIP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
const C_IP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 9);
const EXT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
const M_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SB_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn task_ip(k: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 10, 0, 2 + k)
}

fn ing_ip(k: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 5 + k)
}

fn mac(ip: Ipv4Addr) -> [u8; 6] {
    MacAddr::docker_from_ipv4(ip).0
}

/// Domain 0: the overlay `front` (client and three tasks); 1: `lan`
/// (an external and the machine's uplink); 2: `ingress` (task 3's second
/// interface is not modelled: tasks 1 and 2 are on it through T1/T2 of
/// domain 0 for the VIP, and the mesh targets the task on T3 in domain 2).
fn engine() -> Engine {
    let port = |name: &str, d: u16, role| PortConfig {
        name: name.into(),
        domain: DomainId(d),
        role,
    };
    let cfg = EngineConfig {
        domains: ["front", "lan", "ingress"]
            .iter()
            .map(|n| DomainConfig {
                name: (*n).into(),
                gateway: None,
                icc: true,
            })
            .collect(),
        ports: vec![
            port("client", 0, PortRole::Container),
            port("t1", 0, PortRole::Container),
            port("t2", 0, PortRole::Container),
            port("t3", 2, PortRole::Container),
            port("ext", 1, PortRole::Plain),
            port("m1-eth0", 1, PortRole::Plain),
            port("m1-ingress-sbox", 2, PortRole::Plain),
        ],
        ..EngineConfig::default()
    };
    let mut e = Engine::new(cfg).unwrap();
    let b = |ip: Ipv4Addr| Backend {
        ip,
        mac: MacAddr(mac(ip)),
    };
    e.set_services(ServiceConfig {
        vips: vec![VipConfig {
            name: "web@front".into(),
            vip: VIP,
            mac: MacAddr(mac(VIP)),
            domains: vec![DomainId(0)],
            backends: vec![b(task_ip(1)), b(task_ip(2)), b(task_ip(3))],
        }],
        sandboxes: vec![SandboxConfig {
            machine_ip: M_IP,
            machine_mac: MacAddr([2, 0x56, 198, 18, 0, 1]),
            uplink: UPLINK,
            port: SBOX,
            ip: SB_IP,
            mac: MacAddr(mac(SB_IP)),
        }],
        mesh: vec![MeshConfig {
            name: "web".into(),
            proto: 6,
            published: 8080,
            target: 80,
            backends: vec![b(ing_ip(3))],
        }],
    });
    e
}

/// (src, dst, sport, dport) of an IPv4 TCP/UDP frame, with its IPv4 and L4
/// checksums verified.
fn tuple(frame: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16, u16) {
    let s = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(NetSlice::Ipv4(ip)) = s.net else {
        panic!("not IPv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
    let (sp, dp) = match s.transport {
        Some(TransportSlice::Tcp(t)) => {
            let want = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
            assert_eq!(t.checksum(), want, "TCP checksum");
            (t.source_port(), t.destination_port())
        }
        Some(TransportSlice::Udp(u)) => {
            let want = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
            assert_eq!(u.checksum(), want, "UDP checksum");
            (u.source_port(), u.destination_port())
        }
        _ => panic!("not TCP/UDP"),
    };
    (h.source.into(), h.destination.into(), sp, dp)
}

fn syn(sport: u16) -> Vec<u8> {
    tcp(mac(C_IP), mac(VIP), C_IP, VIP, sport, 80, "S")
}

/// SVC-3: per-connection round robin over the tasks; the task sees the
/// client's own address; the destination MAC is the task's.
#[test]
fn svc3_vip_round_robin_per_connection() {
    let mut e = engine();
    let now = Instant::now();
    let mut seen = Vec::new();
    for k in 0..6u16 {
        let (_, p) = step(&mut e, now, CLIENT, &syn(40000 + k));
        let (src, dst, _, dport) = tuple(p.frame());
        assert_eq!((src, dport), (C_IP, 80), "client address kept");
        assert_eq!(p.frame()[0..6], mac(dst), "to the task's MAC");
        seen.push(dst);
    }
    let want: Vec<Ipv4Addr> = [1, 2, 3, 1, 2, 3].iter().map(|&k| task_ip(k)).collect();
    assert_eq!(seen, want);
    // The same connection stays on its task.
    let (_, p) = step(
        &mut e,
        now,
        CLIENT,
        &tcp(mac(C_IP), mac(VIP), C_IP, VIP, 40001, 80, "A"),
    );
    assert_eq!(tuple(p.frame()).1, task_ip(2));
    // The task's reply comes back from the VIP.
    let (_, p) = step(
        &mut e,
        now,
        T2,
        &tcp(
            mac(task_ip(2)),
            mac(C_IP),
            task_ip(2),
            C_IP,
            80,
            40001,
            "SA",
        ),
    );
    assert_eq!(tuple(p.frame()), (VIP, C_IP, 80, 40001));
    assert_eq!(p.frame()[6..12], mac(VIP));
    assert_eq!(e.service_stats().unwrap().vip_connections, 6);
}

/// ARP for the VIP is answered with its MAC; a non-SYN without a flow is
/// dropped.
/// SVC-3: IPVS runs in each client's sandbox, so each client has a round
/// robin of its own: two clients taking turns each meet every task.
#[test]
fn svc3_each_client_has_its_own_round_robin() {
    let mut e = engine();
    let now = Instant::now();
    let other = Ipv4Addr::new(10, 10, 0, 10);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for k in 0..3u16 {
        let (_, p) = step(&mut e, now, CLIENT, &syn(41000 + k));
        a.push(tuple(p.frame()).1);
        let frame = tcp(mac(other), mac(VIP), other, VIP, 42000 + k, 80, "S");
        let (_, p) = step(&mut e, now, CLIENT, &frame);
        let (src, dst, _, _) = tuple(p.frame());
        assert_eq!(src, other, "the second client's address kept");
        b.push(dst);
    }
    let every: Vec<Ipv4Addr> = [1, 2, 3].iter().map(|&k| task_ip(k)).collect();
    assert_eq!(a, every);
    assert_eq!(b, every);
}

#[test]
fn vip_arp_and_invalid_state() {
    let mut e = engine();
    let now = Instant::now();
    let (out, _) = step(
        &mut e,
        now,
        CLIENT,
        &arp(ArpOperation::REQUEST, mac(C_IP), C_IP, VIP),
    );
    match &out[..] {
        [Action::Emit(p, r)] => {
            assert_eq!(*p, CLIENT);
            assert_eq!(r.frame()[6..12], mac(VIP));
        }
        o => panic!("{o:?}"),
    }
    let (out, _) = step(
        &mut e,
        now,
        CLIENT,
        &tcp(mac(C_IP), mac(VIP), C_IP, VIP, 50000, 80, "A"),
    );
    assert!(
        matches!(out[..], [Action::Drop(DropReason::InvalidState)]),
        "{out:?}"
    );
}

/// UDP flows are sticky for their conntrack lifetime, then scheduled anew.
#[test]
fn udp_sticky_for_its_lifetime() {
    let mut e = engine();
    let t0 = Instant::now();
    let dgram = udp(mac(C_IP), mac(VIP), C_IP, VIP, 5353, 53, b"q");
    let dst = |e: &mut Engine, at| tuple(step(e, at, CLIENT, &dgram).1.frame()).1;
    assert_eq!(dst(&mut e, t0), task_ip(1));
    for s in [1, 100, 250] {
        assert_eq!(
            dst(&mut e, t0 + Duration::from_secs(s)),
            task_ip(1),
            "at {s} s"
        );
    }
    // Another flow goes to the next task meanwhile.
    let other = udp(mac(C_IP), mac(VIP), C_IP, VIP, 5354, 53, b"q");
    assert_eq!(
        tuple(step(&mut e, t0, CLIENT, &other).1.frame()).1,
        task_ip(2)
    );
    // 300 s idle after its last datagram (at 250 s): a new flow.
    assert_eq!(dst(&mut e, t0 + Duration::from_secs(551)), task_ip(3));
    assert!(e.expire(t0 + Duration::from_secs(2000)) > 0);
    assert_eq!(e.service_flows(), 0);
}

/// SVC-6: a task taken out loses its flows; new connections go to the rest.
#[test]
fn svc6_removed_task_is_taken_out() {
    let mut e = engine();
    let now = Instant::now();
    let _ = step(&mut e, now, CLIENT, &syn(41000)); // task 1
    e.remove_service_backend(task_ip(1));
    let (out, _) = step(
        &mut e,
        now,
        CLIENT,
        &tcp(mac(C_IP), mac(VIP), C_IP, VIP, 41000, 80, "A"),
    );
    assert!(
        matches!(out[..], [Action::Drop(DropReason::InvalidState)]),
        "{out:?}"
    );
    for k in 0..4u16 {
        let (_, p) = step(&mut e, now, CLIENT, &syn(42000 + k));
        assert_ne!(tuple(p.frame()).1, task_ip(1));
    }
    e.remove_service_backend(task_ip(2));
    e.remove_service_backend(task_ip(3));
    let (out, _) = step(&mut e, now, CLIENT, &syn(43000));
    assert!(
        matches!(out[..], [Action::Drop(DropReason::NoRoute)]),
        "{out:?}"
    );
    assert_eq!(e.service_stats().unwrap().no_backend, 1);
}

/// SVC-4: a connection to the machine's published port reaches a task on
/// ingress from the machine's sandbox address; the reply leaves on lan from
/// the machine's address and port, to the client's MAC.
#[test]
fn svc4_mesh_snats_to_the_receiving_sandbox() {
    let mut e = engine();
    let now = Instant::now();
    let m_mac = [2, 0x56, 198, 18, 0, 1];
    let ext_mac = [2, 0x56, 198, 18, 0, 50];
    let (out, p) = step(
        &mut e,
        now,
        EXT,
        &tcp(ext_mac, m_mac, EXT_IP, M_IP, 33000, 8080, "S"),
    );
    // Unknown task MAC in the ingress domain: flooded to its ports.
    assert!(
        out.iter().any(|a| matches!(a, Action::Forward(T3))),
        "{out:?}"
    );
    assert!(
        !out.iter().any(|a| matches!(a, Action::Forward(SBOX))),
        "{out:?}"
    );
    assert_eq!(tuple(p.frame()), (SB_IP, ing_ip(3), 33000, 80));
    assert_eq!(p.frame()[0..6], mac(ing_ip(3)));
    assert_eq!(p.frame()[6..12], mac(SB_IP));
    // The task ARPs for the sandbox: answered.
    let (out, _) = step(
        &mut e,
        now,
        T3,
        &arp(ArpOperation::REQUEST, mac(ing_ip(3)), ing_ip(3), SB_IP),
    );
    let reply = out
        .iter()
        .find_map(|a| match a {
            Action::Emit(T3, r) => Some(r),
            _ => None,
        })
        .expect("ARP reply to the task");
    assert_eq!(reply.frame()[6..12], mac(SB_IP));
    // The task's SYN-ACK to the sandbox goes back to the external.
    let (out, _) = step(
        &mut e,
        now,
        T3,
        &tcp(
            mac(ing_ip(3)),
            mac(SB_IP),
            ing_ip(3),
            SB_IP,
            80,
            33000,
            "SA",
        ),
    );
    let back = out
        .iter()
        .find_map(|a| match a {
            Action::Emit(EXT, r) => Some(r),
            _ => None,
        })
        .unwrap_or_else(|| panic!("nothing to the external: {out:?}"));
    assert_eq!(tuple(back.frame()), (M_IP, EXT_IP, 8080, 33000));
    assert_eq!(back.frame()[0..6], ext_mac);
    assert_eq!(back.frame()[6..12], m_mac);
    // Another port of the machine is not the mesh's.
    let (_, p) = step(
        &mut e,
        now,
        EXT,
        &tcp(ext_mac, m_mac, EXT_IP, M_IP, 33001, 22, "S"),
    );
    assert_eq!(tuple(p.frame()).1, M_IP);
    assert_eq!(e.service_stats().unwrap().mesh_connections, 1);
}
