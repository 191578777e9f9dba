//! A world's lifecycle outside the data path: the run registry under
//! `/run/vswitch` (ids and records are [`crate::run_id`]'s, re-exported
//! here), cleanup on success, failure, panic and signals, and `vswitch
//! cleanup` for runs that were killed. This module calls the backends (the
//! docker backend's leftovers); no backend imports it.
//!
//! Every namespace a run creates is named `<run id>-<kind>-<name>` where the
//! run id is `vsw` plus six hex digits. Links and TAPs live inside those
//! namespaces, so deleting the namespaces removes everything a run made.
//! A run's record is written *before* its first namespace, so `cleanup`
//! can tell a live run (its pid is alive) from a leftover.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::netns;

use crate::run_id::pid_alive;
pub use crate::run_id::{NodeKind, PREFIX, RUN_DIR, RunId, RunRecord};

/// Removes every namespace of one run (and its record), and what it has in
/// the project's Docker daemon (containers, networks, the daemon-side
/// uplink; nothing when no daemon runs). Returns what was removed.
pub fn remove_run(id: &RunId) -> Vec<String> {
    // Daemons first: they hold links and namespaces of the run.
    let mut removed = kill_daemons(id);
    // Containers next: their namespaces are bind-mounted under the run's names.
    removed.extend(crate::backend::docker::remove_run(id));
    // A namespace whose delete fails (a mount still busy while the last
    // process in it finishes dying) is tried again, bounded; what stays is
    // said, not hidden.
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left = netns::list(&format!("{id}-"));
        let mut failed = Vec::new();
        for ns in left {
            match netns::delete(&ns) {
                Ok(()) => removed.push(ns),
                Err(e) => failed.push((ns, e)),
            }
        }
        if failed.is_empty() {
            break;
        }
        if std::time::Instant::now() >= give_up {
            for (ns, e) in failed {
                tracing::warn!(netns = %ns, error = %e, "namespace of a dead run not removed");
            }
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // /etc/netns entries whose namespace file is already gone.
    if let Ok(rd) = fs::read_dir(netns::NETNS_ETC_DIR) {
        for e in rd.filter_map(|e| e.ok()) {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&format!("{id}-")) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    RunRecord::remove(id);
    removed
}

/// Where runs keep the pid files of daemons they started (one directory
/// per run, `NAME.pid` in it); [`remove_run`] stops each.
pub const DAEMON_DIR: &str = "/run/vswitch/daemons";

/// The pid-file directory of `id`'s daemons (created by the caller).
pub fn daemon_dir(id: &RunId) -> PathBuf {
    Path::new(DAEMON_DIR).join(id.as_str())
}

/// Stops every daemon whose pid file is in `id`'s daemon directory (SIGTERM,
/// then SIGKILL after 2 s) and removes the directory.
fn kill_daemons(id: &RunId) -> Vec<String> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let dir = daemon_dir(id);
    let Ok(rd) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in rd.filter_map(|e| e.ok()) {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "pid") {
            continue;
        }
        let Some(pid) = fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(raw) = i32::try_from(pid) else {
            continue;
        };
        if !pid_alive(pid) {
            continue;
        }
        let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while pid_alive(pid) && std::time::Instant::now() < give_up {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if pid_alive(pid) {
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
            // Dying can take a while (its devices go under RTNL): wait for
            // it, so that what cleanup reports gone is gone.
            let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while pid_alive(pid) && std::time::Instant::now() < give_up {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        removed.push(format!(
            "daemon {} (pid {pid})",
            path.file_stem().unwrap_or_default().to_string_lossy()
        ));
    }
    // A dying daemon may still be removing its own files (pid file, control
    // socket) while the directory goes: retry until it is gone (bounded).
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while fs::remove_dir_all(&dir).is_err() && dir.exists() && std::time::Instant::now() < give_up {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    removed
}

/// `vswitch cleanup`: removes what runs whose process is gone left behind.
/// Live runs (including worlds kept up by `vswitch up`) are left alone.
pub fn cleanup_leftovers() -> Vec<String> {
    let live: BTreeSet<RunId> = RunRecord::all()
        .into_iter()
        .filter(|r| r.is_live())
        .map(|r| r.id)
        .collect();
    let mut dead: BTreeSet<RunId> = RunRecord::all()
        .into_iter()
        .filter(|r| !live.contains(&r.id))
        .map(|r| r.id)
        .collect();
    for ns in netns::list(PREFIX) {
        if let Some(id) = RunId::of_netns(&ns)
            && !live.contains(&id)
        {
            dead.insert(id);
        }
    }
    if let Ok(rd) = fs::read_dir(netns::NETNS_ETC_DIR) {
        for e in rd.filter_map(|e| e.ok()) {
            if let Some(id) = RunId::of_netns(&e.file_name().to_string_lossy())
                && !live.contains(&id)
            {
                dead.insert(id);
            }
        }
    }
    // Logs of `vswitch up` whose run is gone.
    if let Ok(rd) = fs::read_dir(RUN_DIR) {
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".log").and_then(RunId::parse)
                && !live.contains(&id)
            {
                dead.insert(id);
            }
        }
    }
    // Daemons of runs that are gone.
    if let Ok(rd) = fs::read_dir(DAEMON_DIR) {
        for e in rd.filter_map(|e| e.ok()) {
            if let Some(id) = RunId::parse(&e.file_name().to_string_lossy())
                && !live.contains(&id)
            {
                dead.insert(id);
            }
        }
    }
    // Docker containers/networks named `<run id>-*`, and the daemon uplink.
    for id in crate::backend::docker::leftover_runs() {
        if !live.contains(&id) {
            dead.insert(id);
        }
    }
    dead.iter().flat_map(remove_run).collect()
}

/// Runs of this process that must be torn down if a signal arrives.
static LIVE_RUNS: Mutex<Vec<RunId>> = Mutex::new(Vec::new());

/// Registers a run for signal-time cleanup; the guard unregisters it.
pub fn register_live(id: &RunId) -> LiveGuard {
    LIVE_RUNS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(id.clone());
    LiveGuard(id.clone())
}

/// Unregisters a run from signal-time cleanup when dropped.
#[derive(Debug)]
pub struct LiveGuard(RunId);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        LIVE_RUNS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|r| r != &self.0);
    }
}

/// The thread holding a kept world (`run --keep`), woken by the first signal.
static HOLDER: Mutex<Option<std::thread::Thread>> = Mutex::new(None);
/// Set by the signal thread when a held world is to be torn down.
static RELEASED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes the calling thread the holder of a kept world before it holds,
/// so that a signal arriving while the results are still being printed
/// releases the world the ordinary way instead of taking the immediate
/// path (a caller that sees the results may signal at once).
pub fn prepare_hold() {
    *HOLDER.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current());
}

/// Blocks until SIGINT, SIGTERM or SIGHUP arrives (with
/// [`install_signal_cleanup`] installed), so that a kept world is torn down
/// the ordinary way and the run returns its own exit status. A second signal
/// while the world is being torn down takes the immediate path.
pub fn hold_until_signal() {
    use std::sync::atomic::Ordering;
    if !RELEASED.load(Ordering::SeqCst) {
        *HOLDER.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current());
    }
    while !RELEASED.load(Ordering::SeqCst) {
        std::thread::park();
    }
    HOLDER.lock().unwrap_or_else(|e| e.into_inner()).take();
}

/// Installs SIGINT/SIGTERM/SIGHUP handling: every live run of this process is
/// removed, then the process exits with 128 + signal. Call once at start-up.
/// A world held by [`hold_until_signal`] is released instead, once.
pub fn install_signal_cleanup() -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use std::sync::atomic::Ordering;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let holder = HOLDER.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(t) = holder {
                    eprintln!("vswitch: signal {sig}: tearing the kept world down");
                    RELEASED.store(true, Ordering::SeqCst);
                    t.unpark();
                    continue;
                }
                // A build under way creates no namespace after this, so
                // what remove_run lists is all there is.
                crate::netns::close_creation(std::time::Duration::from_secs(5));
                let runs: Vec<RunId> = LIVE_RUNS.lock().unwrap_or_else(|e| e.into_inner()).clone();
                for id in &runs {
                    let mut removed = remove_run(id);
                    // What a build thread still held open may go only on a
                    // later pass (bounded).
                    for _ in 0..3 {
                        let left = netns::list(&format!("{id}-"));
                        if left.is_empty() {
                            break;
                        }
                        eprintln!("vswitch: signal {sig}: run {id} still has {left:?}; again");
                        removed.extend(remove_run(id));
                    }
                    eprintln!(
                        "vswitch: signal {sig}: removed run {id} ({} namespaces)",
                        removed.len()
                    );
                }
                std::process::exit(128 + sig);
            }
        })?;
    Ok(())
}
