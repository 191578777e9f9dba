//! Many independent, slow kernel operations at once.
//!
//! Closing a TAP fd unregisters its device, and each unregistration waits
//! for RCU grace periods (`synchronize_net`, `rcu_barrier`) that take
//! 15–20 ms here while the CPU idles. Done one after the other, a world of
//! 1000 containers took 20 s to tear down; done on a few dozen threads at
//! once the waits overlap (the kernel lets each one wait outside the RTNL
//! lock) and the same teardown takes well under a second. The work is
//! independent per item, so order does not matter.

use std::sync::Mutex;

/// Threads used for teardown and set-up work that mostly waits in the kernel.
pub const WIDTH: usize = 48;

/// Runs `f` on every item on up to `width` threads and returns the results
/// in the items' order. If a thread cannot be started its share runs on the
/// calling thread. A panic in `f` propagates to the caller.
pub fn map<T, R, F>(items: Vec<T>, width: usize, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
{
    let n = items.len();
    let width = width.clamp(1, n.max(1));
    if width == 1 {
        return items.into_iter().map(f).collect();
    }
    // Shared queue of (index, item); results land in their slot.
    let queue = Mutex::new(items.into_iter().enumerate().collect::<Vec<_>>());
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..n).map(|_| None).collect());
    let work = || {
        loop {
            let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some((i, item)) = next else { break };
            let r = f(item);
            results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..width {
            let spawned = std::thread::Builder::new()
                .name("vswitch-par".into())
                .spawn_scoped(s, work);
            if spawned.is_err() {
                break;
            }
        }
        // The calling thread works too (alone if no thread started).
        work();
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.expect("every item was processed"))
        .collect()
}

/// Drops every item, on up to `width` threads.
pub fn drop_all<T: Send>(items: Vec<T>, width: usize) {
    map(items, width, drop);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keeps_order() {
        let v: Vec<u32> = (0..1000).collect();
        let out = map(v, 8, |x| x * 2);
        assert_eq!(out, (0..1000).map(|x| x * 2).collect::<Vec<_>>());
    }

    #[test]
    fn map_handles_empty_and_single() {
        assert!(map(Vec::<u8>::new(), 8, |x| x).is_empty());
        assert_eq!(map(vec![7u8], 8, |x| x + 1), vec![8]);
    }

    #[test]
    fn drop_all_drops_everything() {
        use std::sync::Arc;
        let marker = Arc::new(());
        let items: Vec<Arc<()>> = (0..100).map(|_| marker.clone()).collect();
        drop_all(items, 16);
        assert_eq!(Arc::strong_count(&marker), 1);
    }
}
