//! The fault stage on a virtual clock: bounds for delay and jitter, counts
//! for loss, reorder and duplicate, the rate limit against a token bucket,
//! repeatability for a seed, named drops in the engine's counters, and a
//! cleared link that behaves exactly like a never-faulted one.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::fault::{Direction, Due, FaultStage, Verdict};
use super::tests::{eth, mac, topo};
use super::*;
use crate::engine::fault::LinkFault;

const P: PortId = PortId(1);

/// A frame of `len` bytes carrying `n` in its payload.
fn numbered(n: u32, len: usize) -> Packet {
    let mut payload = vec![0u8; len.saturating_sub(14)];
    payload[..4].copy_from_slice(&n.to_be_bytes());
    eth(mac(1, 12), mac(1, 11), 0x0800, &payload)
}

fn number(p: &Packet) -> u32 {
    let f = p.frame();
    u32::from_be_bytes([f[14], f[15], f[16], f[17]])
}

/// Sends `n` frames, one every `gap`, through `st` towards the node, and
/// returns (number, sent at, left at) for every frame that left, in the
/// order they left, plus the count of drops.
fn drive(
    st: &mut FaultStage,
    t0: Instant,
    n: u32,
    gap: Duration,
    len: usize,
) -> (Vec<(u32, Duration, Duration)>, u64) {
    let mut left = Vec::new();
    let mut drops = 0;
    let mut sent_at = std::collections::HashMap::new();
    let drain = |st: &mut FaultStage,
                 now: Instant,
                 left: &mut Vec<_>,
                 sent: &std::collections::HashMap<u32, Duration>| {
        while let Some(d) = st.poll_due(now) {
            let Due::Egress(_, p) = d else {
                panic!("ingress")
            };
            let k = number(&p);
            // A corrupted number may name no frame sent.
            left.push((k, sent.get(&k).copied().unwrap_or_default(), now - t0));
        }
    };
    for i in 0..n {
        let now = t0 + gap * i;
        // Release what is due before this frame arrives (the IO loop's
        // timeout does this at each due time; here, at each next_due).
        while let Some(due) = st.next_due().filter(|&d| d <= now) {
            drain(st, due, &mut left, &sent_at);
        }
        let mut p = numbered(i, len);
        sent_at.insert(i, now - t0);
        match st.judge(now, P, Direction::ToNode, &mut p) {
            Verdict::Pass => left.push((i, now - t0, now - t0)),
            Verdict::Held => {}
            Verdict::Drop(_) => drops += 1,
        }
    }
    while let Some(due) = st.next_due() {
        drain(st, due, &mut left, &sent_at);
    }
    (left, drops)
}

fn stage(seed: u64, f: LinkFault) -> FaultStage {
    let mut st = FaultStage::new(seed);
    st.set(P, Some(f));
    st
}

#[test]
fn delay_and_jitter_stay_within_bounds() {
    let f = LinkFault {
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
        ..LinkFault::default()
    };
    let (left, drops) = drive(
        &mut stage(1, f),
        Instant::now(),
        2000,
        Duration::from_micros(500),
        100,
    );
    assert_eq!((left.len(), drops), (2000, 0));
    let mut sum = 0.0;
    for &(_, sent, out) in &left {
        let d = out - sent;
        assert!(
            d >= Duration::from_millis(15) && d <= Duration::from_millis(25),
            "{d:?}"
        );
        sum += d.as_secs_f64();
    }
    let mean_ms = sum / left.len() as f64 * 1000.0;
    assert!((19.5..20.5).contains(&mean_ms), "mean {mean_ms}");
    // Jitter larger than the gap reorders frames, as netem does.
    assert!(left.windows(2).any(|w| w[0].0 > w[1].0));
}

#[test]
fn fixed_delay_keeps_order() {
    let f = LinkFault {
        delay: Duration::from_millis(40),
        ..LinkFault::default()
    };
    let (left, _) = drive(
        &mut stage(3, f),
        Instant::now(),
        500,
        Duration::from_micros(100),
        100,
    );
    assert!(left.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(
        left.iter()
            .all(|&(_, s, o)| o - s == Duration::from_millis(40))
    );
}

#[test]
fn loss_reorder_and_duplicate_counts_follow_their_probabilities() {
    let n = 20_000;
    let f = LinkFault {
        loss: 0.1,
        ..LinkFault::default()
    };
    let (left, drops) = drive(
        &mut stage(5, f),
        Instant::now(),
        n,
        Duration::from_micros(10),
        100,
    );
    assert_eq!(left.len() as u64 + drops, u64::from(n));
    assert!((1800..2200).contains(&drops), "{drops}");

    let f = LinkFault {
        delay: Duration::from_millis(10),
        reorder: 0.25,
        duplicate: 0.05,
        ..LinkFault::default()
    };
    let mut st = stage(5, f);
    let (left, _) = drive(&mut st, Instant::now(), n, Duration::from_micros(10), 100);
    let c = *st.counters();
    assert!((4600..5400).contains(&c.reordered), "{c:?}");
    assert!((850..1150).contains(&c.duplicated), "{c:?}");
    assert_eq!(left.len() as u64, u64::from(n) + c.duplicated);
    // A reordered frame leaves at once, ahead of earlier delayed ones.
    let immediate = left.iter().filter(|&&(_, s, o)| s == o).count() as u64;
    assert!(immediate >= c.reordered);
}

#[test]
fn identical_seeds_give_identical_runs() {
    let f = LinkFault {
        loss: 0.2,
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(8),
        duplicate: 0.1,
        reorder: 0.1,
        corrupt: 0.05,
        ..LinkFault::default()
    };
    let t0 = Instant::now();
    let a = drive(&mut stage(42, f), t0, 3000, Duration::from_micros(50), 200);
    let b = drive(&mut stage(42, f), t0, 3000, Duration::from_micros(50), 200);
    assert_eq!(a, b);
    let c = drive(&mut stage(43, f), t0, 3000, Duration::from_micros(50), 200);
    assert_ne!(a, c);
}

/// Departure times of a token bucket of `depth` bits refilled at `bps`,
/// frames of `bits` all offered at 0 (the reference model).
fn token_bucket(n: u32, bits: u64, bps: u64, depth: u64) -> Vec<Option<Duration>> {
    let mut out = Vec::new();
    let mut tokens = depth as f64;
    let mut t = 0.0f64;
    for _ in 0..n {
        let need = bits as f64;
        if tokens < need {
            t += (need - tokens) / bps as f64;
            tokens = need;
        }
        tokens -= need;
        let d = Duration::from_secs_f64(t);
        out.push((d <= fault::RATE_QUEUE_LIMIT).then_some(d));
        if d > fault::RATE_QUEUE_LIMIT {
            // The dropped frame took no tokens.
            tokens += need;
        }
    }
    out
}

#[test]
fn rate_limit_paces_like_a_token_bucket() {
    let bps = 10_000_000;
    let len = 1250; // 10 000 bits: 1 ms each at 10 Mbit/s
    let f = LinkFault {
        rate_bps: Some(bps),
        ..LinkFault::default()
    };
    let mut st = stage(0, f);
    let t0 = Instant::now();
    let mut got = Vec::new();
    for i in 0..200 {
        let mut p = numbered(i, len);
        got.push(match st.judge(t0, P, Direction::ToNode, &mut p) {
            Verdict::Pass => Some(Duration::ZERO),
            Verdict::Held => None, // filled in below
            Verdict::Drop(r) => {
                assert_eq!(r, DropReason::FaultRate);
                Some(Duration::MAX)
            }
        });
    }
    while let Some(due) = st.next_due() {
        while let Some(Due::Egress(_, p)) = st.poll_due(due) {
            got[number(&p) as usize] = Some(due - t0);
        }
    }
    // GCRA with burst tolerance tau is a bucket of depth tau·rate + one frame.
    let depth = fault::RATE_BURST * 8 + len as u64 * 8;
    let want = token_bucket(200, len as u64 * 8, bps, depth);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let g = g.unwrap();
        match w {
            None => assert_eq!(g, Duration::MAX, "frame {i} should be dropped"),
            Some(w) => {
                let diff = g.abs_diff(*w);
                assert!(diff < Duration::from_micros(2), "frame {i}: {g:?} vs {w:?}");
            }
        }
    }
    // The burst passes at once, then one frame per millisecond.
    assert_eq!(got[0], Some(Duration::ZERO));
    assert!(got.contains(&Some(Duration::MAX)));
}

#[test]
fn mtu_down_and_loss_are_named_drops_in_the_engine() {
    let mut e = topo(true);
    let t = Instant::now();
    let mut out = Vec::new();
    // Teach the FDB where a and b are.
    for (port, src) in [(PortId(1), mac(1, 11)), (PortId(2), mac(1, 12))] {
        let mut p = eth(BCAST_MAC, src, 0x0800, &[0; 50]);
        e.handle_frame(t, port, &mut p, &mut out);
        out.clear();
    }
    let send = |e: &mut Engine, len: usize, out: &mut Vec<Action>| {
        out.clear();
        let mut p = eth(mac(1, 12), mac(1, 11), 0x0800, &vec![0; len]);
        e.handle_frame(t, PortId(1), &mut p, out);
    };
    send(&mut e, 200, &mut out);
    assert!(matches!(out[..], [Action::Forward(PortId(2))]), "{out:?}");
    let cases = [
        (
            LinkFault {
                mtu: Some(100),
                ..LinkFault::default()
            },
            DropReason::FaultMtu,
        ),
        (
            LinkFault {
                down: true,
                ..LinkFault::default()
            },
            DropReason::LinkDown,
        ),
        (
            LinkFault {
                loss: 1.0,
                ..LinkFault::default()
            },
            DropReason::FaultLoss,
        ),
    ];
    for (f, reason) in cases {
        // On the egress port …
        e.set_fault(PortId(2), Some(f));
        send(&mut e, 200, &mut out);
        assert!(
            matches!(out[..], [Action::Drop(r)] if r == reason),
            "{out:?}"
        );
        e.set_fault(PortId(2), None);
        // … and on the ingress port.
        e.set_fault(PortId(1), Some(f));
        send(&mut e, 200, &mut out);
        assert!(
            matches!(out[..], [Action::Drop(r)] if r == reason),
            "{out:?}"
        );
        e.set_fault(PortId(1), None);
        assert_eq!(e.metrics().total_drops().get(reason), 2, "{reason}");
    }
    // A frame within the MTU passes.
    e.set_fault(
        PortId(2),
        Some(LinkFault {
            mtu: Some(1000),
            ..LinkFault::default()
        }),
    );
    send(&mut e, 200, &mut out);
    assert!(matches!(out[..], [Action::Emit(PortId(2), _)]), "{out:?}");
}

#[test]
fn delayed_frames_are_held_by_the_engine_and_released_by_time() {
    let mut e = topo(true);
    let t = Instant::now();
    let mut out = Vec::new();
    let mut p = eth(BCAST_MAC, mac(1, 12), 0x0800, &[0; 50]);
    e.handle_frame(t, PortId(2), &mut p, &mut out);
    let f = LinkFault {
        delay: Duration::from_millis(30),
        ..LinkFault::default()
    };
    e.set_fault(PortId(1), Some(f));
    out.clear();
    let mut p = eth(mac(1, 12), mac(1, 11), 0x0800, &[7; 60]);
    e.handle_frame(t, PortId(1), &mut p, &mut out);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(e.poll_timeout(), Some(t + Duration::from_millis(30)));
    assert!(e.poll_due(t + Duration::from_millis(29)).is_none());
    let Some(Due::Ingress(port, mut held)) = e.poll_due(t + Duration::from_millis(30)) else {
        panic!("not due")
    };
    assert_eq!(port, PortId(1));
    e.handle_past_fault(t + Duration::from_millis(30), port, &mut held, &mut out);
    assert!(matches!(out[..], [Action::Forward(PortId(2))]), "{out:?}");
}

const BCAST_MAC: [u8; 6] = [0xff; 6];

/// (port, ms to advance, frame length, destination index).
fn traffic() -> impl Strategy<Value = Vec<(u16, u16, usize, u8)>> {
    proptest::collection::vec((0u16..8, 0u16..50, 14usize..300, 0u8..6), 1..80)
}

fn run(e: &mut Engine, t0: Instant, traffic: &[(u16, u16, usize, u8)]) -> Vec<String> {
    let mut now = t0;
    let mut log = Vec::new();
    let mut out = Vec::new();
    for &(port, adv, len, dst) in traffic {
        now += Duration::from_millis(u64::from(adv));
        let mut p = eth(
            mac(0, dst),
            mac(0, port as u8 % 5 + 1),
            0x0800,
            &vec![dst; len - 14],
        );
        out.clear();
        e.handle_frame(now, PortId(port), &mut p, &mut out);
        for a in &out {
            log.push(match a {
                Action::Forward(q) => format!("fwd {} {:?}", q.0, p.frame()),
                Action::Emit(q, b) => format!("fwd {} {:?}", q.0, b.frame()),
                Action::Drop(r) => format!("drop {r}"),
                Action::Capture(q, _) => format!("cap {}", q.0),
            });
        }
    }
    log.push(format!("{:?}", e.metrics().total_drops()));
    log
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A link whose fault was set and cleared (with what it held drained)
    /// behaves exactly like one that was never faulted.
    #[test]
    fn a_cleared_link_behaves_like_a_never_faulted_one(
        port in 0u16..8,
        loss in 0.0f64..1.0,
        delay_ms in 0u64..50,
        traffic in traffic(),
    ) {
        let t0 = Instant::now();
        let mut faulted = topo(true);
        faulted.set_fault_seed(9);
        let mut plain = topo(true);
        let f = LinkFault { loss, delay: Duration::from_millis(delay_ms), ..LinkFault::default() };
        faulted.set_fault(PortId(port), Some(f));
        faulted.set_fault(PortId(port), None);
        let a = run(&mut faulted, t0, &traffic);
        let b = run(&mut plain, t0, &traffic);
        prop_assert_eq!(a, b);
    }
}

/// A frame too short for an Ethernet header, on an engine with faults in
/// force, is dropped as malformed, not a panic (found by `fault_steps`).
#[test]
fn a_short_frame_with_faults_in_force_is_malformed() {
    let mut e = Engine::new(super::fixtures::nat_cfg(super::fixtures::Knobs::default())).unwrap();
    let f = LinkFault {
        delay: Duration::from_millis(20),
        ..LinkFault::default()
    };
    e.set_fault(super::fixtures::A, Some(f));
    e.set_fault(super::fixtures::UPLINK, Some(f));
    for len in [0, 5, 13] {
        let mut p = Packet::from_frame(VnetHdr::default(), &vec![0u8; len]);
        let mut out = Vec::new();
        e.handle_frame(Instant::now(), super::fixtures::X, &mut p, &mut out);
        assert!(
            matches!(out.as_slice(), [Action::Drop(DropReason::Malformed)] | []),
            "{len}: {out:?}"
        );
    }
}
