//! Helpers shared by the benches.

use std::time::{Duration, Instant};

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
