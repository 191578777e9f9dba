//! Instructions per frame, for comparisons a loaded machine cannot spoil:
//! runs N frames of one case through the engine (no criterion, no timing),
//! so that `valgrind --tool=callgrind` (or `perf stat -e instructions`)
//! over two counts gives the cost of one frame as the difference.
//!
//! ```text
//! cargo bench -p vswitch-benches --bench icount --no-run
//! for n in 100000 200000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/deps/icount-* unicast64 $n 2>&1 | grep refs
//! done   # (refs(200000) - refs(100000)) / 100000 = instructions per frame
//! ```
//!
//! Cases: `unicast64`, `unicast1500`, `flood64`, `flood1500` (the
//! `l2_forward` bench's).

use std::hint::black_box;
use std::time::Instant;

use vswitch::engine::{Action, PortId};

mod common;
use common::{frame, l2_engine, port_mac};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; the case and count follow it or stand alone.
    let rest: Vec<&String> = args
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let case = rest.first().map_or("unicast64", |s| s.as_str());
    let n: u64 = rest.get(1).and_then(|s| s.parse().ok()).unwrap_or(1_000);
    let (dst, len) = match case {
        "unicast64" => (port_mac(2), 64),
        "unicast1500" => (port_mac(2), 1500),
        "flood64" => ([0xff; 6], 64),
        "flood1500" => ([0xff; 6], 1500),
        other => {
            eprintln!(
                "icount: unknown case {other:?} (unicast64, unicast1500, flood64, flood1500)"
            );
            std::process::exit(2);
        }
    };
    let now = Instant::now();
    let mut e = l2_engine(now);
    let mut p = frame(dst, port_mac(1), len);
    let mut out: Vec<Action> = Vec::with_capacity(8);
    for _ in 0..n {
        out.clear();
        e.handle_frame(now, PortId(1), black_box(&mut p), &mut out);
        black_box(&out);
    }
    println!(
        "icount: {case} x {n}: {} actions from the last frame",
        out.len()
    );
}
