//! The sim's one clock: a fixed base [`Instant`] plus virtual time. The
//! engine sees `base + virtual`, the stacks see virtual microseconds, and
//! captures are stamped [`VIRTUAL_EPOCH_US`] + virtual, so two runs of one
//! file write identical pcaps.

use std::time::{Duration, Instant};

/// The wall-clock time virtual zero is written as in captures:
/// 2024-01-01T00:00:00Z, in microseconds since the Unix epoch.
pub const VIRTUAL_EPOCH_US: u64 = 1_704_067_200_000_000;

/// Virtual time.
#[derive(Clone, Debug)]
pub struct Clock {
    base: Instant,
    now_us: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            base: Instant::now(),
            now_us: 0,
        }
    }
}

impl Clock {
    /// Virtual microseconds since the world was built.
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// Moves the clock to `us` (never backwards).
    pub fn set_us(&mut self, us: u64) {
        self.now_us = self.now_us.max(us);
    }

    /// Virtual time elapsed.
    pub fn elapsed(&self) -> Duration {
        Duration::from_micros(self.now_us)
    }

    /// The engine's notion of now.
    pub fn instant(&self) -> Instant {
        self.base + self.elapsed()
    }

    /// An engine deadline as virtual microseconds.
    pub fn us_of(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_micros() as u64
    }

    /// The stacks' notion of now.
    pub fn smol(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.now_us as i64)
    }

    /// Capture timestamp of now.
    pub fn pcap_us(&self) -> u64 {
        VIRTUAL_EPOCH_US + self.now_us
    }
}
