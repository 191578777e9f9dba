//! Helpers shared by the benches (each bench is its own crate and uses a
//! part of them).
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::Criterion;
use vswitch::engine::{
    DomainConfig, DomainId, Engine, EngineConfig, Gateway, Packet, PortConfig, PortId, PortRole,
    VnetHdr,
};
use vswitch::scenario::plan::MacAddr;

/// Criterion as the engine and DNS benches run it: 2 s per case after
/// 0.5 s of warm-up, command-line options applied.
pub fn criterion() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .configure_from_args()
}

/// Whether this is a real `cargo bench` run, so the self-timed pass that
/// prints ratios is wanted (cargo also runs benches as tests and lists them).
pub fn self_timed_pass() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list")
}

/// Nanoseconds per call of `f`, over roughly `budget` (after a warm-up):
/// the self-timed figures the benches print as ratios against a baseline
/// measured in the same run.
pub fn time_per_call(budget: Duration, mut f: impl FnMut()) -> f64 {
    for _ in 0..10_000 {
        f();
    }
    let mut n: u64 = 0;
    let start = Instant::now();
    while start.elapsed() < budget {
        for _ in 0..10_000 {
            f();
        }
        n += 10_000;
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Ports of [`l2_engine`]'s domain: a host port and three containers.
pub const PORTS: u16 = 4;
/// The gateway MAC of [`l2_engine`]'s domain.
pub const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 0, 1];

/// The MAC of port `i` of [`l2_engine`].
pub fn port_mac(i: u16) -> [u8; 6] {
    [0x02, 0x42, 10, 0, 0, 2 + i as u8]
}

/// An Ethernet frame of `len` bytes (an IPv4 EtherType, zero payload).
pub fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Packet {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    Packet::from_frame(VnetHdr::default(), &f)
}

/// The plain L2 world of the L2 and fault benches: one domain, a host port
/// and three containers, icc on, every MAC learned.
pub fn l2_engine(now: Instant) -> Engine {
    let mut cfg = EngineConfig {
        domains: vec![DomainConfig {
            name: "bench".into(),
            gateway: Some(Gateway {
                ip: Ipv4Addr::new(10, 0, 0, 1),
                ip6: None,
                mac: MacAddr(GW_MAC),
            }),
            icc: true,
        }],
        ..EngineConfig::default()
    };
    for i in 0..PORTS {
        cfg.ports.push(PortConfig {
            name: format!("p{i}"),
            domain: DomainId(0),
            role: if i == 0 {
                PortRole::Host
            } else {
                PortRole::Container
            },
        });
    }
    let mut e = Engine::new(cfg).expect("bench config");
    let mut out = Vec::new();
    for i in 1..PORTS {
        let mut p = frame([0xff; 6], port_mac(i), 64);
        e.handle_frame(now, PortId(i), &mut p, &mut out);
    }
    e
}
