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
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use vswitch::engine::{Action, Engine, Packet, PortId};

mod common;
use common::{criterion, frame, l2_engine as engine, port_mac, self_timed_pass, time_per_call};

const SIZES: [usize; 2] = [64, 1500];

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
