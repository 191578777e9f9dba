//! One domain's forwarding database: learned MAC → port, bounded, aged on the
//! caller's clock.
//!
//! Entries are keyed by the MAC packed into a `u64` and hashed with a cheap
//! multiplicative hasher: the keys are six bytes, mostly set by Docker or by
//! our own scenario, so SipHash's DoS resistance buys nothing and costs a
//! large share of the per-frame budget. The table never holds more than
//! `capacity` entries, so a hostile port flooding random sources can at worst
//! fill it (counted as `full`), which turns unknown unicast into floods — the
//! same as a Linux bridge at `max_fdb_entries` hit.
//!
//! Static entries (the gateway MAC) are not kept here; the domain checks them
//! before the table, so they neither age nor count against the capacity.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use super::PortId;

/// A MAC packed into the low 48 bits of a `u64`, for hashing and comparing.
#[inline]
pub(crate) fn mac_key(b: &[u8]) -> u64 {
    u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// The MAC a [`mac_key`] packs.
#[inline]
pub(crate) fn key_mac(key: u64) -> [u8; 6] {
    let b = key.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// Multiplicative hasher for `u64` MAC keys (Fx-style, with a final fold so
/// that both the low bits (bucket index) and the high bits (control bytes)
/// depend on every input byte).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MacHasher(u64);

impl Hasher for MacHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: PortId,
    seen: Instant,
}

/// What learning a source MAC did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Learned {
    /// Already known on this port; its idle timer restarted.
    Refreshed,
    /// A new entry.
    New,
    /// Known on another port; moved to this one.
    Moved,
    /// Unknown and the table is full: not learned.
    Full,
}

/// A bounded, aging MAC table.
#[derive(Debug)]
pub(crate) struct Fdb {
    map: HashMap<u64, Entry, BuildHasherDefault<MacHasher>>,
    capacity: usize,
    aging: Duration,
    /// Never later than the oldest entry's `seen` (entries only get younger
    /// between sweeps), so `oldest + aging` is a safe wake-up time.
    oldest: Option<Instant>,
    /// `(now, now - aging)` of the last lookup: an entry seen before the
    /// cutoff has expired. Frames of one poll share `now`, so the clock
    /// arithmetic is done once per poll, not once per frame.
    cutoff: Option<(Instant, Option<Instant>)>,
    /// The last `(mac, port, now)` learnt: the entry holds exactly that, so
    /// the next frame of the same source in the same poll refreshes nothing
    /// and skips the hash lookup (a stream's frames come in bursts).
    last: Option<(u64, PortId, Instant)>,
}

impl Fdb {
    pub(crate) fn new(capacity: usize, aging: Duration) -> Fdb {
        Fdb {
            // Reserve a modest amount up front; a 4096-entry table for every
            // domain would be wasteful, but growing from empty on the first
            // few frames is a needless rehash cascade.
            map: HashMap::with_capacity_and_hasher(capacity.min(64), Default::default()),
            capacity,
            aging,
            oldest: None,
            cutoff: None,
            last: None,
        }
    }

    /// Number of learned entries.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Idle for longer than the aging time at `now`.
    #[inline]
    fn is_expired(&mut self, seen: Instant, now: Instant) -> bool {
        let cutoff = match self.cutoff {
            Some((at, c)) if at == now => c,
            _ => {
                let c = now.checked_sub(self.aging);
                self.cutoff = Some((now, c));
                c
            }
        };
        cutoff.is_some_and(|c| seen < c)
    }

    /// Records `mac` as seen on `port` at `now`. Returns the outcome and the
    /// number of entries expired on the way (only when the table was full).
    #[inline]
    pub(crate) fn learn(&mut self, mac: u64, port: PortId, now: Instant) -> (Learned, usize) {
        if self.last == Some((mac, port, now)) {
            return (Learned::Refreshed, 0);
        }
        if let Some(e) = self.map.get_mut(&mac) {
            e.seen = now;
            self.last = Some((mac, port, now));
            if e.port == port {
                return (Learned::Refreshed, 0);
            }
            e.port = port;
            return (Learned::Moved, 0);
        }
        let mut expired = 0;
        if self.map.len() >= self.capacity {
            // Full: sweep once if something may have aged out, then retry.
            if self.next_expiry().is_some_and(|t| t < now) {
                expired = self.expire(now);
            }
            if self.map.len() >= self.capacity {
                return (Learned::Full, expired);
            }
        }
        self.map.insert(mac, Entry { port, seen: now });
        self.last = Some((mac, port, now));
        self.oldest = Some(self.oldest.map_or(now, |o| o.min(now)));
        (Learned::New, expired)
    }

    /// The port `mac` was last seen on, unless unknown or idle for longer
    /// than the aging time (then the entry is removed: the bool is true).
    #[inline]
    pub(crate) fn lookup(&mut self, mac: u64, now: Instant) -> (Option<PortId>, bool) {
        let Some(&Entry { port, seen }) = self.map.get(&mac) else {
            return (None, false);
        };
        if self.is_expired(seen, now) {
            self.map.remove(&mac);
            self.last = None;
            return (None, true);
        }
        (Some(port), false)
    }

    /// The port of `mac` without aging it out (introspection).
    pub(crate) fn peek(&self, mac: u64) -> Option<PortId> {
        self.map.get(&mac).map(|e| e.port)
    }

    /// Removes every entry idle for longer than the aging time; returns how
    /// many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let before = self.map.len();
        let aging = self.aging;
        self.last = None;
        let mut oldest: Option<Instant> = None;
        self.map.retain(|_, e| {
            let keep = now.saturating_duration_since(e.seen) <= aging;
            if keep {
                oldest = Some(oldest.map_or(e.seen, |o| o.min(e.seen)));
            }
            keep
        });
        self.oldest = oldest;
        before - self.map.len()
    }

    /// When the next entry may expire (a lower bound; `None` when empty).
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        if self.map.is_empty() {
            return None;
        }
        self.oldest.and_then(|o| o.checked_add(self.aging))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGING: Duration = Duration::from_secs(300);

    #[test]
    fn learn_refresh_move() {
        let t0 = Instant::now();
        let mut f = Fdb::new(4, AGING);
        assert_eq!(f.learn(1, PortId(0), t0).0, Learned::New);
        assert_eq!(f.learn(1, PortId(0), t0).0, Learned::Refreshed);
        assert_eq!(f.learn(1, PortId(2), t0).0, Learned::Moved);
        assert_eq!(f.lookup(1, t0), (Some(PortId(2)), false));
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn the_last_learn_shortcut_never_hides_a_move_an_expiry_or_a_refresh() {
        let t0 = Instant::now();
        let t1 = t0 + AGING;
        let late = t1 + AGING / 2;
        let mut f = Fdb::new(4, AGING);
        assert_eq!(f.learn(1, PortId(0), t0).0, Learned::New);
        // Same source, port and poll: the shortcut.
        assert_eq!(f.learn(1, PortId(0), t0).0, Learned::Refreshed);
        // Another port in the same poll is still a move.
        assert_eq!(f.learn(1, PortId(3), t0).0, Learned::Moved);
        assert_eq!(f.lookup(1, t0), (Some(PortId(3)), false));
        // A later poll refreshes the entry: alive at t0 + aging * 1.5.
        assert_eq!(f.learn(1, PortId(3), t1).0, Learned::Refreshed);
        assert_eq!(f.lookup(1, late), (Some(PortId(3)), false));
        // An entry aged out by a lookup is learnt anew, even at the `now`
        // of the last learn.
        f.learn(2, PortId(1), t0);
        assert_eq!(f.lookup(2, late), (None, true));
        assert_eq!(f.learn(2, PortId(1), t0).0, Learned::New);
        // And by a sweep.
        assert_eq!(f.expire(late), 1);
        assert_eq!(f.learn(2, PortId(1), t0).0, Learned::New);
    }

    #[test]
    fn lookup_ages_out_lazily_and_refresh_keeps_alive() {
        let t0 = Instant::now();
        let mut f = Fdb::new(4, AGING);
        f.learn(1, PortId(0), t0);
        f.learn(2, PortId(1), t0);
        // Refresh 2 halfway; 1 stays idle.
        f.learn(2, PortId(1), t0 + AGING / 2);
        assert_eq!(f.lookup(1, t0 + AGING), (Some(PortId(0)), false));
        assert_eq!(
            f.lookup(1, t0 + AGING + Duration::from_secs(1)),
            (None, true)
        );
        assert_eq!(
            f.lookup(2, t0 + AGING + Duration::from_secs(1)).0,
            Some(PortId(1))
        );
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn capacity_bound_and_sweep_when_full() {
        let t0 = Instant::now();
        let mut f = Fdb::new(2, AGING);
        f.learn(1, PortId(0), t0);
        f.learn(2, PortId(0), t0 + Duration::from_secs(10));
        assert_eq!(f.learn(3, PortId(0), t0).0, Learned::Full);
        assert_eq!(f.len(), 2);
        // After 1 aged out, the full table sweeps and takes the new MAC.
        let later = t0 + AGING + Duration::from_secs(1);
        assert_eq!(f.learn(3, PortId(0), later), (Learned::New, 1));
        assert_eq!(f.len(), 2);
        assert_eq!(f.peek(1), None);
    }

    #[test]
    fn next_expiry_tracks_the_oldest_entry() {
        let t0 = Instant::now();
        let mut f = Fdb::new(8, AGING);
        assert_eq!(f.next_expiry(), None);
        f.learn(1, PortId(0), t0);
        f.learn(2, PortId(0), t0 + Duration::from_secs(100));
        assert_eq!(f.next_expiry(), Some(t0 + AGING));
        assert_eq!(f.expire(t0 + AGING + Duration::from_secs(1)), 1);
        assert_eq!(f.next_expiry(), Some(t0 + Duration::from_secs(100) + AGING));
        assert_eq!(f.expire(t0 + Duration::from_secs(1000)), 1);
        assert_eq!(f.next_expiry(), None);
    }

    #[test]
    fn mac_key_packs_six_bytes() {
        assert_eq!(mac_key(&[0, 0, 0, 0, 0, 1]), 1);
        assert_eq!(mac_key(&[0xff; 6]), 0xffff_ffff_ffff);
        let mac = [0x02, 0x42, 10, 0, 0, 9];
        assert_eq!(key_mac(mac_key(&mac)), mac);
    }
}
