//! Which link kinds this kernel can create.
//!
//! The probe tries for real: on a private thread it unshares a fresh,
//! unnamed network namespace, creates a throwaway link of the kind there
//! (on a veth parent for kinds that need one) and lets the namespace vanish
//! with the thread. Nothing is created in the caller's namespace and nothing
//! is left under `/run/netns`, even if the process dies mid-probe.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use nix::sched::{CloneFlags, unshare};

use super::netlink::{MacvlanMode, Netlink, NetlinkError};

/// Answers already found, per kind (the kernel does not change under us).
static CACHE: Mutex<Option<HashMap<String, bool>>> = Mutex::new(None);

/// True when the kernel can create a link of `kind` ("bridge", "veth",
/// "macvlan", "vxlan", "ipvlan", "vlan", "dummy", or any other
/// `IFLA_INFO_KIND`). False when the kernel does not know the kind
/// (`EOPNOTSUPP`), and also when the probe itself cannot run (no privilege to
/// create a namespace) or the kernel refuses it for another reason: callers
/// use the answer to decide whether to use the kind, and in those cases they
/// cannot.
pub fn link_kind_supported(kind: &str) -> bool {
    if let Some(known) = CACHE
        .lock()
        .ok()
        .and_then(|c| c.as_ref().and_then(|m| m.get(kind).copied()))
    {
        return known;
    }
    let owned = kind.to_string();
    let answer = std::thread::spawn(move || probe_in_fresh_netns(&owned))
        .join()
        .unwrap_or(false);
    if let Ok(mut c) = CACHE.lock() {
        c.get_or_insert_with(HashMap::new)
            .insert(kind.to_string(), answer);
    }
    answer
}

/// True when the kernel can install an IPsec ESP SA in transport mode with
/// `rfc4106(gcm(aes))` (what Docker's encrypted overlays program, OV-9).
/// Probed for real, as link kinds are: `ip xfrm state add` in a fresh,
/// unnamed network namespace of a throwaway thread (the SA dies with it).
/// False when the kernel lacks xfrm, ESP or the algorithm, and when the
/// probe cannot run (no privilege, no `ip`).
pub fn esp_supported() -> bool {
    const KEY: &str = "esp";
    if let Some(known) = CACHE
        .lock()
        .ok()
        .and_then(|c| c.as_ref().and_then(|m| m.get(KEY).copied()))
    {
        return known;
    }
    let answer = std::thread::spawn(|| {
        if unshare(CloneFlags::CLONE_NEWNET).is_err() {
            return false;
        }
        // The child is forked from this thread: it runs in the fresh namespace.
        std::process::Command::new("ip")
            .args([
                "xfrm",
                "state",
                "add",
                "src",
                "192.0.2.1",
                "dst",
                "192.0.2.2",
                "proto",
                "esp",
                "spi",
                "0x100",
                "mode",
                "transport",
                "aead",
                "rfc4106(gcm(aes))",
                "0x0102030405060708090a0b0c0d0e0f1011121314",
                "64",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
    .join()
    .unwrap_or(false);
    if let Ok(mut c) = CACHE.lock() {
        c.get_or_insert_with(HashMap::new)
            .insert(KEY.to_string(), answer);
    }
    answer
}

/// Runs on a dedicated thread that is discarded afterwards.
fn probe_in_fresh_netns(kind: &str) -> bool {
    if unshare(CloneFlags::CLONE_NEWNET).is_err() {
        return false;
    }
    let Ok(mut nl) = Netlink::new() else {
        return false;
    };
    match try_create(&mut nl, kind) {
        Ok(()) => true,
        Err(e) => {
            if e.errno() != Some(libc::EOPNOTSUPP) {
                tracing::debug!(kind, error = %e, "link kind probe failed for a reason other than an unknown kind");
            }
            false
        }
    }
}

fn try_create(nl: &mut Netlink, kind: &str) -> Result<(), NetlinkError> {
    const NAME: &str = "probe0";
    let needs_parent = matches!(
        kind,
        "vlan" | "macvlan" | "macvtap" | "ipvlan" | "ipvtap" | "vxlan"
    );
    if needs_parent {
        nl.link_add_veth("probep0", "probep1")?;
    }
    match kind {
        "veth" => nl.link_add_veth(NAME, "probe1")?,
        "bridge" => nl.link_add_bridge(NAME)?,
        "vlan" => nl.link_add_vlan(NAME, "probep0", 10)?,
        "macvlan" => nl.link_add_macvlan(NAME, "probep0", MacvlanMode::Bridge)?,
        "vxlan" => nl.link_add_vxlan(NAME, 42, Ipv4Addr::new(192, 0, 2, 1), "probep0", 4789)?,
        k if needs_parent => nl.link_add_kind(NAME, k, Some("probep0"))?,
        k => nl.link_add_kind(NAME, k, None)?,
    }
    nl.link_del(NAME)
}
