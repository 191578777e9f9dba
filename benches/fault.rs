//! The fault stage's cost per frame. Goal: under 2 ns when no fault is set
//! (issue 15). Cases, on a 64-byte frame:
//! - `stage/idle`: the stage with no fault (what every frame pays: one flag);
//! - `stage/other-port`: a fault set on another port (the stage is active,
//!   the frame's port is looked up and passes);
//! - `engine/no-fault` and `engine/fault-elsewhere`: the engine's learned
//!   unicast path without a fault and with one on an unrelated port.
//!
//! ```text
//! cargo bench -p vswitch-benches --bench fault            # full
//! cargo bench -p vswitch-benches --bench fault -- --quick # smoke
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Throughput;
use vswitch::engine::fault::{Direction, FaultStage, Verdict};
use vswitch::engine::{Action, Packet, PortId};
use vswitch::scenario::plan::LinkFault;

mod common;
use common::{criterion, frame, l2_engine as engine, port_mac, self_timed_pass, time_per_call};

fn elsewhere() -> Option<LinkFault> {
    Some(LinkFault {
        loss: 0.5,
        ..LinkFault::default()
    })
}

fn stage_idle(st: &mut FaultStage, now: Instant, p: &mut Packet) -> bool {
    if st.active() {
        return st.judge(now, PortId(1), Direction::FromNode, p) == Verdict::Pass;
    }
    true
}

type Case = (&'static str, Box<dyn FnMut()>);

fn cases() -> Vec<Case> {
    let now = Instant::now();
    let mut v: Vec<Case> = Vec::new();
    let mut p = frame(port_mac(2), port_mac(1), 64);
    v.push((
        "baseline/call",
        Box::new(move || {
            black_box(!black_box(&mut p).is_empty());
        }),
    ));
    let mut st = FaultStage::new(1);
    let mut p = frame(port_mac(2), port_mac(1), 64);
    v.push((
        "stage/idle",
        Box::new(move || {
            black_box(stage_idle(&mut st, now, black_box(&mut p)));
        }),
    ));
    let mut st = FaultStage::new(1);
    st.set(PortId(3), elsewhere());
    let mut p = frame(port_mac(2), port_mac(1), 64);
    v.push((
        "stage/other-port",
        Box::new(move || {
            black_box(stage_idle(&mut st, now, black_box(&mut p)));
        }),
    ));
    for (name, fault) in [
        ("engine/no-fault", None),
        ("engine/fault-elsewhere", elsewhere()),
    ] {
        let mut e = engine(now);
        e.set_fault(PortId(3), fault);
        let mut p = frame(port_mac(2), port_mac(1), 64);
        let mut out: Vec<Action> = Vec::with_capacity(8);
        v.push((
            name,
            Box::new(move || {
                out.clear();
                e.handle_frame(now, PortId(1), black_box(&mut p), &mut out);
                assert_eq!(out.len(), 1);
                black_box(&out);
            }),
        ));
    }
    v
}

fn main() {
    let mut c = criterion();
    {
        let mut g = c.benchmark_group("fault");
        g.throughput(Throughput::Elements(1));
        for (name, mut f) in cases() {
            g.bench_function(name, |b| b.iter(&mut f));
        }
        g.finish();
    }
    c.final_summary();
    if self_timed_pass() {
        let budget = Duration::from_millis(300);
        println!("\nfault stage per frame (self-timed, {budget:?} per case, 64-byte frames):");
        let (mut call, mut engine) = (None, None);
        for (name, mut f) in cases() {
            let ns = time_per_call(budget, &mut f);
            let vs = match name {
                "baseline/call" => {
                    call = Some(ns);
                    String::new()
                }
                "engine/no-fault" => {
                    engine = Some(ns);
                    String::new()
                }
                n if n.starts_with("stage/") => call.map_or(String::new(), |b| {
                    format!("  (stage: {:.2} ns over the bare call)", ns - b)
                }),
                _ => engine.map_or(String::new(), |b| {
                    format!("  ({:+.2} ns vs no-fault)", ns - b)
                }),
            };
            println!("{name:>24} {ns:>8.2} ns{vs}");
        }
    }
}
