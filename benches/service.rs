//! The service stage's per-packet cost (issue 14, SVC-3): a TCP segment of
//! an established connection from a client to a task on one overlay
//! domain, sent to the task's own address ("direct") and to the service's
//! VIP (DNAT to the task, IPVS-like), and the task's reply on each path
//! (the VIP path rewrites its source back). Also a new connection through
//! the VIP (the round-robin scheduler and two table inserts).
//!
//! The acceptance figure is TCP through a VIP within 10 % of a direct task
//! connection; the self-timed pass at the end prints the ratio.
//!
//! `Throughput::Elements(1)`: criterion reports packets/s.
//!
//! ```text
//! cargo bench -p vswitch-benches --bench service            # full
//! cargo bench -p vswitch-benches --bench service -- --quick # smoke
//! ```

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use criterion::Throughput;
use vswitch::engine::{
    Action, Backend, DomainConfig, DomainId, Engine, EngineConfig, Packet, PortConfig, PortId,
    PortRole, ServiceConfig, VipConfig, VnetHdr,
};
use vswitch::wire::MacAddr;
use vswitch::wire::ethernet::{self, EtherType};
use vswitch::wire::ip::checksum;
use vswitch::wire::{IpProtocol, ipv4, tcp};

mod common;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 9);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
const TASK: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 3);

fn mac(ip: Ipv4Addr) -> MacAddr {
    MacAddr::docker_from_ipv4(ip)
}

/// An Ethernet/IPv4/TCP segment with `payload` bytes, valid checksums.
#[allow(clippy::too_many_arguments)]
fn segment(
    dmac: MacAddr,
    smac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: usize,
) -> Packet {
    let (l3, l4) = (
        ethernet::HEADER_LEN,
        ethernet::HEADER_LEN + ipv4::HEADER_LEN,
    );
    let mut f = vec![0u8; l4 + tcp::HEADER_LEN + payload];
    ethernet::emit(&mut f, dmac.0, smac.0, EtherType::IPV4);
    let ip = ipv4::Repr {
        src: src.octets(),
        dst: dst.octets(),
        protocol: IpProtocol::TCP,
        payload_len: tcp::HEADER_LEN + payload,
        ttl: 64,
        tos: 0,
        dont_frag: false,
    };
    ip.emit(&mut f[l3..]);
    let mut t = tcp::Packet::new_unchecked(&mut f[l4..]);
    t.set_src_port(sport);
    t.set_dst_port(dport);
    t.set_header_len(tcp::HEADER_LEN);
    t.set_flags(flags);
    t.set_window(64240);
    let c = checksum::l4_checksum4(src.octets(), dst.octets(), IpProtocol::TCP, &f[l4..]);
    tcp::Packet::new_unchecked(&mut f[l4..]).set_checksum(c);
    Packet::from_frame(VnetHdr::default(), &f)
}

/// One overlay domain: the client (port 0) and one task (port 1), the
/// service's VIP over that task.
fn engine() -> Engine {
    let port = |n: &str| PortConfig {
        name: n.into(),
        domain: DomainId(0),
        role: PortRole::Container,
    };
    let mut e = Engine::new(EngineConfig {
        domains: vec![DomainConfig {
            name: "front".into(),
            gateway: None,
            icc: true,
        }],
        ports: vec![port("client"), port("web.1")],
        ..EngineConfig::default()
    })
    .expect("valid configuration");
    e.set_services(ServiceConfig {
        vips: vec![VipConfig {
            name: "web@front".into(),
            vip: VIP,
            mac: mac(VIP),
            domains: vec![DomainId(0)],
            backends: vec![Backend {
                ip: TASK,
                mac: mac(TASK),
            }],
        }],
        ..ServiceConfig::default()
    });
    e
}

fn run(e: &mut Engine, now: Instant, port: u16, p: &Packet, out: &mut Vec<Action>) {
    let mut p = p.clone();
    e.handle_frame(now, PortId(port), &mut p, out);
    black_box((out.len(), p.len()));
    out.clear();
}

const SYN: u8 = 0x02;
const SYNACK: u8 = 0x12;
const ACK: u8 = 0x10;

fn main() {
    let mut c = common::criterion();
    let mut e = engine();
    let now = Instant::now();
    let mut out = Vec::new();
    // MACs learned and the VIP flow established, as after a handshake.
    for (port, p) in [
        (
            0,
            segment(mac(VIP), mac(CLIENT), CLIENT, VIP, 40000, 80, SYN, 0),
        ),
        (
            1,
            segment(mac(CLIENT), mac(TASK), TASK, CLIENT, 80, 40000, SYNACK, 0),
        ),
        (
            0,
            segment(mac(TASK), mac(CLIENT), CLIENT, TASK, 40001, 80, SYN, 0),
        ),
    ] {
        run(&mut e, now, port, &p, &mut out);
    }
    let payload = 1448;
    let direct = segment(
        mac(TASK),
        mac(CLIENT),
        CLIENT,
        TASK,
        40001,
        80,
        ACK,
        payload,
    );
    let direct_back = segment(
        mac(CLIENT),
        mac(TASK),
        TASK,
        CLIENT,
        80,
        40001,
        ACK,
        payload,
    );
    let vip = segment(mac(VIP), mac(CLIENT), CLIENT, VIP, 40000, 80, ACK, payload);
    let vip_back = segment(
        mac(CLIENT),
        mac(TASK),
        TASK,
        CLIENT,
        80,
        40000,
        ACK,
        payload,
    );
    let mut g = c.benchmark_group(format!("service/{payload}B"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("direct client → task", |b| {
        b.iter(|| run(&mut e, now, 0, &direct, &mut out))
    });
    g.bench_function("vip client → VIP → task", |b| {
        b.iter(|| run(&mut e, now, 0, &vip, &mut out))
    });
    g.bench_function("direct task → client", |b| {
        b.iter(|| run(&mut e, now, 1, &direct_back, &mut out))
    });
    g.bench_function("vip task → client (from the VIP)", |b| {
        b.iter(|| run(&mut e, now, 1, &vip_back, &mut out))
    });
    let mut sport = 1024u16;
    g.bench_function("vip new connection (SYN)", |b| {
        b.iter(|| {
            sport = sport.wrapping_add(1).max(1024);
            let syn = segment(mac(VIP), mac(CLIENT), CLIENT, VIP, sport, 80, SYN, 0);
            run(&mut e, now, 0, &syn, &mut out)
        })
    });
    g.finish();
    c.final_summary();
    if common::self_timed_pass() {
        let time = |e: &mut Engine, p: &Packet, out: &mut Vec<Action>| {
            let n = 200_000;
            let t = Instant::now();
            for _ in 0..n {
                run(e, now, 0, p, out);
            }
            t.elapsed().as_secs_f64() / f64::from(n)
        };
        let d = time(&mut e, &direct, &mut out);
        let v = time(&mut e, &vip, &mut out);
        println!(
            "service: direct {:.0} ns/packet, through the VIP {:.0} ns/packet ({:+.1} %)",
            d * 1e9,
            v * 1e9,
            (v / d - 1.0) * 100.0
        );
    }
}
