//! The fault stage: deterministic link impairments (netem-like) on engine
//! ports, in both directions. Sans-IO like the rest of the engine: random
//! choices come from a per-link generator seeded from the world's seed and
//! the port, time from the caller's `now`, and delayed frames are held here
//! until [`FaultStage::poll_due`] releases them — the IO loop asks
//! [`FaultStage::next_due`] for its next timeout; nothing sleeps.
//!
//! Per frame and direction, in netem's order: `down` drops (`link-down`);
//! a frame whose IP packet exceeds the link MTU is dropped (`fault-mtu`);
//! `loss` drops (`fault-loss`); `corrupt` flips one bit past the Ethernet
//! header; `duplicate` sends a second copy; the frame is then delayed by
//! `delay ± jitter` unless `reorder` lets it skip the delay, and finally
//! paced by the rate limit (a token bucket, GCRA form; a frame that would
//! wait past [`RATE_QUEUE_LIMIT`] is dropped, `fault-rate`).
//!
//! A port without a fault costs one branch on a flag per frame.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::PortId;
use super::metrics::DropReason;
use super::packet::Packet;
use crate::wire::ethernet::{self, EtherType};

/// An impairment of a link, in both directions. Probabilities are 0..=1.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct LinkFault {
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Added one-way delay.
    pub delay: Duration,
    /// Uniform jitter around the delay (delay ± jitter, never below 0).
    pub jitter: Duration,
    /// Probability that a frame is sent twice.
    pub duplicate: f64,
    /// Probability that a frame skips the delay (and so overtakes others).
    pub reorder: f64,
    /// Probability that one bit of a frame is flipped.
    pub corrupt: f64,
    /// Rate limit in bits per second (token bucket).
    pub rate_bps: Option<u64>,
    /// Link MTU (IP packet size) smaller than the interface's.
    pub mtu: Option<u16>,
    /// The link is down: nothing passes.
    pub down: bool,
}

impl LinkFault {
    /// Whether the fault needs a delay line (netem-like).
    pub fn delays(&self) -> bool {
        !self.delay.is_zero() || !self.jitter.is_zero() || self.reorder > 0.0
    }

    /// The format's keys this fault sets, for refusals ("delay_ms, reorder").
    pub fn keys(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let set = [
            ("loss", self.loss > 0.0),
            ("delay_ms", !self.delay.is_zero()),
            ("jitter_ms", !self.jitter.is_zero()),
            ("duplicate", self.duplicate > 0.0),
            ("reorder", self.reorder > 0.0),
            ("corrupt", self.corrupt > 0.0),
            ("rate_mbit", self.rate_bps.is_some()),
            ("mtu", self.mtu.is_some()),
            ("down", self.down),
        ];
        for (k, on) in set {
            if on {
                v.push(k);
            }
        }
        v
    }
}

/// Longest a rate-limited frame may wait for its turn before it is dropped
/// (tbf's `latency`).
pub const RATE_QUEUE_LIMIT: Duration = Duration::from_millis(100);

/// Burst a rate limit lets through at line rate (tbf's `burst`), in bytes.
pub const RATE_BURST: u64 = 16 * 1514;

/// Which way a frame crosses the faulted link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Out of the node, into the engine (the port's ingress).
    FromNode = 0,
    /// Out of the engine, to the node (the port's egress).
    ToNode = 1,
}

/// A frame whose delay is over.
#[derive(Debug)]
pub enum Due {
    /// A frame the node sent: the engine now handles it (past the stage).
    Ingress(PortId, Packet),
    /// A frame for the node: write it to the port.
    Egress(PortId, Packet),
}

/// Where a held frame goes when it is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Into the engine as if received on this port (past the stage).
    Ingress(PortId),
    /// As `Ingress(.0)`, the fault of uplink `.1` already applied (it must
    /// not apply again when the frame goes out to that uplink).
    IngressPast(PortId, PortId),
    /// Out of this port.
    Egress(PortId),
}

impl Resume {
    /// Where a frame judged on `port` in `dir` goes on by default.
    pub fn of(port: PortId, dir: Direction) -> Resume {
        match dir {
            Direction::FromNode => Resume::Ingress(port),
            Direction::ToNode => Resume::Egress(port),
        }
    }
}

/// What the stage decided for one frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Goes on now, unchanged (or corrupted in place).
    Pass,
    /// Dropped, for this reason.
    Drop(DropReason),
    /// Held; [`FaultStage::poll_due`] releases it.
    Held,
}

/// Counters of the fault stage (its drops are also counted per reason).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FaultCounters {
    /// Frames held for a delay or the rate limit.
    pub delayed: u64,
    /// Frames that skipped the delay (`reorder`).
    pub reordered: u64,
    /// Extra copies sent (`duplicate`).
    pub duplicated: u64,
    /// Frames with a bit flipped (`corrupt`).
    pub corrupted: u64,
}

/// xoshiro256** seeded through SplitMix64: small, fast, and the same
/// sequence on every machine for a given seed.
#[derive(Clone, Debug)]
pub(crate) struct Rng([u64; 4]);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p` (no draw when `p` is 0).
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

/// One faulted port.
#[derive(Debug)]
struct LinkState {
    fault: LinkFault,
    rng: Rng,
    /// Rate limit: theoretical arrival time per direction.
    tat: [Option<Instant>; 2],
}

#[derive(Debug)]
struct Held {
    due: Instant,
    seq: u64,
    resume: Resume,
    pkt: Packet,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(o.due, o.seq))
    }
}

/// The fault stage of an engine.
#[derive(Debug, Default)]
pub struct FaultStage {
    seed: u64,
    links: Vec<Option<Box<LinkState>>>,
    /// Any port has a fault, or a frame is held (the fast-path test).
    active: bool,
    held: BinaryHeap<Reverse<Held>>,
    seq: u64,
    counters: FaultCounters,
}

/// The size a link MTU applies to: the IP packet (the frame less its
/// Ethernet and 802.1Q headers); a GSO frame counts by its segments.
fn ip_len(pkt: &Packet) -> usize {
    let f = pkt.frame();
    let mut l2 = ethernet::HEADER_LEN;
    if f.len() >= ethernet::HEADER_LEN + 2
        && matches!(ethernet::ethertype(f), EtherType::VLAN | EtherType::QINQ)
    {
        l2 += crate::wire::vlan::TAG_LEN;
    }
    if pkt.hdr.is_gso() {
        let seg = usize::from(pkt.hdr.hdr_len).saturating_sub(l2) + usize::from(pkt.hdr.gso_size);
        return seg.min(f.len().saturating_sub(l2));
    }
    f.len().saturating_sub(l2)
}

impl FaultStage {
    /// A stage with no faults; random choices derive from `seed`.
    pub fn new(seed: u64) -> FaultStage {
        FaultStage {
            seed,
            ..FaultStage::default()
        }
    }

    /// Whether the stage has anything to do (a fault set or a frame held).
    #[inline(always)]
    pub fn active(&self) -> bool {
        self.active
    }

    /// Sets (`Some`) or clears (`None`) the fault of `port`. Setting a fault
    /// restarts the link's random sequence, so a run repeats exactly.
    /// Frames already held stay held until due.
    pub fn set(&mut self, port: PortId, fault: Option<LinkFault>) {
        let i = usize::from(port.0);
        if self.links.len() <= i {
            self.links.resize_with(i + 1, || None);
        }
        self.links[i] = fault.map(|fault| {
            let seed = self.seed ^ (u64::from(port.0) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            Box::new(LinkState {
                fault,
                rng: Rng::new(seed),
                tat: [None; 2],
            })
        });
        self.refresh();
    }

    fn refresh(&mut self) {
        self.active = !self.held.is_empty() || self.links.iter().any(Option::is_some);
    }

    /// The fault in force on `port`.
    pub fn fault(&self, port: PortId) -> Option<&LinkFault> {
        self.links
            .get(usize::from(port.0))
            .and_then(|l| l.as_deref())
            .map(|l| &l.fault)
    }

    /// The stage's counters.
    pub fn counters(&self) -> &FaultCounters {
        &self.counters
    }

    /// Whether a fault was ever set (the report then shows the counters).
    pub fn links_ever_set(&self) -> bool {
        !self.links.is_empty()
    }

    /// Frames held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Judges a frame crossing `port` in direction `dir` at `now`. On
    /// `Pass` the caller sends `pkt` on (it may have been corrupted in
    /// place; a duplicate, if any, has been queued for `now`). On `Held` the
    /// stage kept a copy. `Drop` names the reason.
    pub fn judge(
        &mut self,
        now: Instant,
        port: PortId,
        dir: Direction,
        pkt: &mut Packet,
    ) -> Verdict {
        self.judge_to(now, port, dir, pkt, Resume::of(port, dir))
    }

    /// [`FaultStage::judge`] for a frame that, once held, resumes at
    /// `resume` rather than on `port` itself (routed traffic crossing a
    /// machine's uplink inside the engine).
    pub fn judge_to(
        &mut self,
        now: Instant,
        port: PortId,
        dir: Direction,
        pkt: &mut Packet,
        resume: Resume,
    ) -> Verdict {
        let Some(link) = self
            .links
            .get_mut(usize::from(port.0))
            .and_then(|l| l.as_deref_mut())
        else {
            return Verdict::Pass;
        };
        let f = link.fault;
        if f.down {
            return Verdict::Drop(DropReason::LinkDown);
        }
        if f.mtu.is_some_and(|m| ip_len(pkt) > usize::from(m)) {
            return Verdict::Drop(DropReason::FaultMtu);
        }
        if link.rng.chance(f.loss) {
            return Verdict::Drop(DropReason::FaultLoss);
        }
        if link.rng.chance(f.corrupt) && pkt.len() > 14 {
            let bits = (pkt.len() - 14) as u64 * 8;
            let bit = 14 * 8 + (link.rng.next_u64() % bits) as usize;
            pkt.frame_mut()[bit / 8] ^= 1 << (bit % 8);
            self.counters.corrupted += 1;
        }
        let duplicate = link.rng.chance(f.duplicate);
        let mut due = now;
        if f.delays() {
            if link.rng.chance(f.reorder) {
                self.counters.reordered += 1;
            } else {
                due += jittered(f.delay, f.jitter, &mut link.rng);
            }
        }
        if let Some(bps) = f.rate_bps.filter(|&b| b > 0) {
            let tx =
                Duration::from_nanos((pkt.len() as u64 * 8).saturating_mul(1_000_000_000) / bps);
            let tau = Duration::from_nanos(RATE_BURST * 8 * 1_000_000_000 / bps);
            let tat = link.tat[dir as usize].unwrap_or(due).max(due);
            let depart = due.max(tat.checked_sub(tau).unwrap_or(due));
            if depart.saturating_duration_since(due) > RATE_QUEUE_LIMIT {
                return Verdict::Drop(DropReason::FaultRate);
            }
            link.tat[dir as usize] = Some(tat.max(depart) + tx);
            due = depart;
        }
        if duplicate {
            self.counters.duplicated += 1;
            self.hold(due, resume, Packet::from_frame(pkt.hdr, pkt.frame()));
        }
        if due > now {
            self.counters.delayed += 1;
            self.hold(due, resume, Packet::from_frame(pkt.hdr, pkt.frame()));
            return Verdict::Held;
        }
        Verdict::Pass
    }

    fn hold(&mut self, due: Instant, resume: Resume, pkt: Packet) {
        self.seq += 1;
        self.held.push(Reverse(Held {
            due,
            seq: self.seq,
            resume,
            pkt,
        }));
        self.active = true;
    }

    /// When the next held frame is due (`None`: nothing held).
    #[must_use]
    pub fn next_due(&self) -> Option<Instant> {
        self.held.peek().map(|Reverse(h)| h.due)
    }

    /// The next frame due at `now`, in due order (ties in the order held).
    pub fn poll_due(&mut self, now: Instant) -> Option<Due> {
        self.poll_due_past(now).map(|(d, _)| d)
    }

    /// [`FaultStage::poll_due`], with the uplink whose fault the frame
    /// already crossed, if any.
    pub fn poll_due_past(&mut self, now: Instant) -> Option<(Due, Option<PortId>)> {
        if self.held.peek().is_none_or(|Reverse(h)| h.due > now) {
            return None;
        }
        let Reverse(h) = self.held.pop()?;
        if self.held.is_empty() {
            self.refresh();
        }
        Some(match h.resume {
            Resume::Ingress(p) => (Due::Ingress(p, h.pkt), None),
            Resume::IngressPast(p, up) => (Due::Ingress(p, h.pkt), Some(up)),
            Resume::Egress(p) => (Due::Egress(p, h.pkt), None),
        })
    }
}

/// `delay ± jitter`, uniform, never below zero.
fn jittered(delay: Duration, jitter: Duration, rng: &mut Rng) -> Duration {
    if jitter.is_zero() {
        return delay;
    }
    let j = jitter.as_secs_f64();
    let off = (rng.unit() * 2.0 - 1.0) * j;
    Duration::from_secs_f64((delay.as_secs_f64() + off).max(0.0))
}
