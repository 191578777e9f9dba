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
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::Throughput;
use vswitch::engine::fault::{Direction, FaultStage, Verdict};
use vswitch::engine::{
    Action, DomainConfig, DomainId, Engine, EngineConfig, Gateway, Packet, PortConfig, PortId,
    PortRole, VnetHdr,
};
use vswitch::scenario::plan::{LinkFault, MacAddr};

mod common;
use common::{criterion, self_timed_pass, time_per_call};

const PORTS: u16 = 4;

fn port_mac(i: u16) -> [u8; 6] {
    [0x02, 0x42, 10, 0, 0, 2 + i as u8]
}

fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Packet {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    Packet::from_frame(VnetHdr::default(), &f)
}

/// One domain of 4 ports, every MAC learned.
fn engine(now: Instant) -> Engine {
    let mut cfg = EngineConfig {
        domains: vec![DomainConfig {
            name: "bench".into(),
            gateway: Some(Gateway {
                ip: Ipv4Addr::new(10, 0, 0, 1),
                ip6: None,
                mac: MacAddr([0x02, 0x42, 10, 0, 0, 1]),
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
