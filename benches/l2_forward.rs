//! The engine's forwarding path per frame: learned unicast and flood (one
//! domain of 4 ports), on 64- and 1500-byte frames, beside a baseline that
//! only copies the frame once (what the IO layer would pay for a copy the
//! engine does not make).
//!
//! `Throughput::Elements(1)`: criterion reports frames/s. After criterion's
//! groups, a short self-timed pass prints engine cost against the copy
//! baseline from the same run.
//!
//! ```text
//! cargo bench -p vswitch-benches --bench l2_forward            # full (~2 s per case)
//! cargo bench -p vswitch-benches --bench l2_forward -- --quick # smoke
//! ```

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use vswitch::engine::{
    Action, DomainConfig, DomainId, Engine, EngineConfig, Gateway, Packet, PortConfig, PortId,
    PortRole, VnetHdr,
};
use vswitch::scenario::plan::MacAddr;

mod common;
use common::{criterion, self_timed_pass, time_per_call};

const SIZES: [usize; 2] = [64, 1500];
const PORTS: u16 = 4;
const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 0, 1];

fn port_mac(i: u16) -> [u8; 6] {
    [0x02, 0x42, 10, 0, 0, 2 + i as u8]
}

/// One domain, a host port and three containers, icc on, every MAC learned.
fn engine(now: Instant) -> Engine {
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

fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Packet {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    Packet::from_frame(VnetHdr::default(), &f)
}

/// A case: a frame from port 1, to port 2's MAC (learned unicast) or to
/// broadcast (flood to the 3 other ports).
#[derive(Clone, Copy)]
enum Case {
    Unicast,
    Flood,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Unicast => "unicast",
            Case::Flood => "flood4",
        }
    }

    fn setup(self, len: usize) -> (Engine, Packet, Instant) {
        let now = Instant::now();
        let e = engine(now);
        let dst = match self {
            Case::Unicast => port_mac(2),
            Case::Flood => [0xff; 6],
        };
        (e, frame(dst, port_mac(1), len), now)
    }
}

fn bench_engine(c: &mut Criterion) {
    let mut g = c.benchmark_group("l2_forward");
    g.throughput(Throughput::Elements(1));
    for len in SIZES {
        for case in [Case::Unicast, Case::Flood] {
            let (mut e, mut p, now) = case.setup(len);
            let mut out: Vec<Action> = Vec::with_capacity(8);
            g.bench_function(BenchmarkId::new(case.name(), len), |b| {
                b.iter(|| {
                    out.clear();
                    e.handle_frame(now, PortId(1), black_box(&mut p), &mut out);
                    black_box(&out);
                })
            });
            assert_eq!(
                out.len(),
                match case {
                    Case::Unicast => 1,
                    Case::Flood => 3,
                }
            );
        }
        let src = frame([0xff; 6], port_mac(1), len);
        let mut dst = vec![0u8; len];
        g.bench_function(BenchmarkId::new("memcpy", len), |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(src.frame()));
                black_box(&dst);
            })
        });
    }
    g.finish();
}

/// Engine cost against copying the frame, measured back to back.
fn print_ratios(budget: Duration) {
    println!("\nengine vs copying the frame once (self-timed, {budget:?} per case):");
    println!(
        "{:>8} {:>6} {:>10} {:>12} {:>10} {:>9}",
        "case", "bytes", "ns/frame", "Mframes/s", "memcpy ns", "x memcpy"
    );
    for len in SIZES {
        let src = frame([0xff; 6], port_mac(1), len);
        let mut dst = vec![0u8; len];
        let copy = time_per_call(budget, || {
            dst.copy_from_slice(black_box(src.frame()));
            black_box(&dst);
        });
        for case in [Case::Unicast, Case::Flood] {
            let (mut e, mut p, now) = case.setup(len);
            let mut out: Vec<Action> = Vec::with_capacity(8);
            let ns = time_per_call(budget, || {
                out.clear();
                e.handle_frame(now, PortId(1), black_box(&mut p), &mut out);
                black_box(&out);
            });
            println!(
                "{:>8} {:>6} {:>10.2} {:>12.1} {:>10.2} {:>9.2}",
                case.name(),
                len,
                ns,
                1e3 / ns,
                copy,
                ns / copy
            );
        }
    }
}

fn main() {
    let mut c = criterion();
    bench_engine(&mut c);
    c.final_summary();
    if self_timed_pass() {
        print_ratios(Duration::from_millis(300));
    }
}
