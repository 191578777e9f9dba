//! Helpers shared by the benches (each bench is its own crate and uses a
//! part of them).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use criterion::Criterion;

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
