//! Random sequences of steps applied to a live engine: faults set and
//! cleared on ports (loss, delay, jitter, duplicate, reorder, corrupt,
//! rate, MTU, down), frames through the reference NAT world, and the clock
//! moving on with held frames released as the IO loop releases them.
//! Checks: no panic; a drop is alone; nothing held is lost — once every
//! fault is cleared and time has passed, every held frame has come out.
//!
//! Input format, repeated until the data runs out:
//!
//! ```text
//! op: u8        0-3 frame, 4 fault, 5 clear, 6 time passes
//! port: u8      (mod the world's port count)
//! a, b, c: u8   frame: length (a, up to 255) and the frame bytes follow;
//!               fault: loss = a/255, delay = b ms, jitter = c/4 ms and
//!               the next byte's bits: duplicate, reorder, corrupt, rate,
//!               mtu, down; time: a * 10 ms
//! ```
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use vswitch::engine::fault::Due;
use vswitch::engine::fixtures::{Knobs, nat_cfg};
use vswitch::engine::{Action, Engine, Packet, PortId, VnetHdr};
use vswitch::scenario::plan::LinkFault;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn fault(a: u8, b: u8, c: u8, bits: u8) -> LinkFault {
    let p = |x: u8| f64::from(x) / 255.0;
    LinkFault {
        loss: p(a),
        delay: Duration::from_millis(u64::from(b)),
        jitter: Duration::from_micros(u64::from(c) * 250),
        duplicate: if bits & 1 != 0 { 0.3 } else { 0.0 },
        reorder: if bits & 2 != 0 { 0.3 } else { 0.0 },
        corrupt: if bits & 4 != 0 { 0.3 } else { 0.0 },
        rate_bps: (bits & 8 != 0).then_some(1_000_000),
        mtu: (bits & 16 != 0).then_some(576 + u16::from(c)),
        down: bits & 32 != 0,
    }
}

/// Releases every held frame due at `now` as the IO loop does.
fn release(e: &mut Engine, now: Instant, out: &mut Vec<Action>) {
    while let Some(due) = e.poll_due(now) {
        if let Due::Ingress(p, mut pkt) = due {
            out.clear();
            e.handle_past_fault(now, p, &mut pkt, out);
            check(out);
        }
    }
}

fn check(out: &[Action]) {
    let drops = out.iter().filter(|a| matches!(a, Action::Drop(_))).count();
    assert!(
        drops == 0 || out.len() == 1,
        "drop plus other actions: {out:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let cfg = nat_cfg(Knobs::default());
    let nports = cfg.ports.len();
    let mut e = Engine::new(cfg).expect("valid config");
    let mut now = base();
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 5 {
        let (op, port, a, b, c) = (rest[0] % 7, rest[1], rest[2], rest[3], rest[4]);
        rest = &rest[5..];
        let port = PortId(u16::from(port) % nports as u16);
        match op {
            0..=3 => {
                let n = usize::from(a).min(rest.len());
                let mut p = Packet::from_frame(VnetHdr::default(), &rest[..n]);
                rest = &rest[n..];
                out.clear();
                e.handle_frame(now, port, &mut p, &mut out);
                check(&out);
            }
            4 => {
                let bits = rest.first().copied().unwrap_or(0);
                rest = rest.get(1..).unwrap_or(&[]);
                e.set_fault(port, Some(fault(a, b, c, bits)));
            }
            5 => e.set_fault(port, None),
            _ => {
                now += Duration::from_millis(u64::from(a) * 10);
                release(&mut e, now, &mut out);
            }
        }
    }
    // Cleared links and time enough: nothing stays held.
    for p in 0..nports {
        e.set_fault(PortId(p as u16), None);
    }
    now += Duration::from_secs(3600);
    release(&mut e, now, &mut out);
    assert_eq!(
        e.faults().held(),
        0,
        "frames held after every fault cleared"
    );
});
