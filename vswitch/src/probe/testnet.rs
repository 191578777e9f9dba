//! Test fixture: two namespaces joined by a veth pair, deleted on drop.
//!
//! `a` has 10.99.0.1/24 and fd99::1/64 on `va`, `b` has 10.99.0.2/24 and
//! fd99::2/64 on `vb`. Only these namespaces are configured, never the one
//! the test runs in. Left-overs of a killed run: `ip netns | grep ^vswp`
//! and `ip netns del` each.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::netns::{self, NetNs};

pub(crate) const A4: &str = "10.99.0.1";
pub(crate) const B4: &str = "10.99.0.2";
pub(crate) const A6: &str = "fd99::1";
pub(crate) const B6: &str = "fd99::2";

pub(crate) struct Pair {
    pub a: NetNs,
    pub b: NetNs,
    // Declared last: deletes the namespaces after the handles above are
    // closed, also when a test panics.
    _guard: Vec<netns::DeleteOnDrop>,
}

/// Whether root tests should run; panics when they must but cannot.
pub(crate) fn root_or_skip(test: &str) -> bool {
    crate::prereq::root(test).or_panic().is_some()
}

fn ip(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .arg("-n")
        .arg(ns)
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip -n {ns} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Pair {
    /// Builds the pair, or `None` when the test should be skipped.
    pub(crate) fn new(test: &str) -> Option<Pair> {
        if !root_or_skip(test) {
            return None;
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let k = N.fetch_add(1, Ordering::Relaxed);
        let base = format!("vswp{}x{k}", std::process::id());
        let (na, nb) = (format!("{base}a"), format!("{base}b"));
        let guard = vec![
            netns::DeleteOnDrop::namespace(&na),
            netns::DeleteOnDrop::namespace(&nb),
        ];
        let a = NetNs::create(&na).expect("create namespace a");
        let b = NetNs::create(&nb).expect("create namespace b");
        ip(
            &na,
            &[
                "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &nb,
            ],
        );
        for (ns, dev, v4, v6) in [(&na, "va", A4, A6), (&nb, "vb", B4, B6)] {
            ip(ns, &["addr", "add", &format!("{v4}/24"), "dev", dev]);
            ip(
                ns,
                &["addr", "add", &format!("{v6}/64"), "dev", dev, "nodad"],
            );
            ip(ns, &["link", "set", "lo", "up"]);
            ip(ns, &["link", "set", dev, "up"]);
        }
        let until = Instant::now() + Duration::from_secs(5);
        for (ns, dev) in [(&na, "va"), (&nb, "vb")] {
            loop {
                let show = ip(ns, &["-br", "link", "show", dev]);
                if show.split_whitespace().nth(1) == Some("UP") {
                    break;
                }
                assert!(Instant::now() < until, "{dev} in {ns} not up: {show}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Some(Pair {
            a,
            b,
            _guard: guard,
        })
    }

    /// Adds an address (CIDR) to `b`'s veth end.
    pub(crate) fn add_addr_b(&self, cidr: &str) {
        ip(self.b.name(), &["addr", "add", cidr, "dev", "vb", "nodad"]);
    }

    /// Sets the MTU of `a`'s veth end.
    pub(crate) fn set_mtu_a(&self, mtu: u16) {
        ip(
            self.a.name(),
            &["link", "set", "va", "mtu", &mtu.to_string()],
        );
    }
}

pub(crate) fn soon(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}
