//! A world's lifecycle outside the data path: run ids and name prefixes, the
//! run registry under `/run/vswitch`, cleanup on success, failure, panic and
//! signals, and `vswitch cleanup` for runs that were killed.
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

use serde::{Deserialize, Serialize};

use crate::netns;

/// Directory of run records.
pub const RUN_DIR: &str = "/run/vswitch/runs";
/// Every run id starts with this.
pub const PREFIX: &str = "vsw";

/// A run's identity: `vsw` + 6 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunId(String);

impl RunId {
    /// A fresh random run id, or the one forced by `VSWITCH_RUN_ID` (tests
    /// use it to look for leaks of one particular run).
    pub fn new() -> RunId {
        if let Ok(forced) = std::env::var("VSWITCH_RUN_ID")
            && let Some(id) = RunId::parse(&forced)
        {
            return id;
        }
        RunId(format!("{PREFIX}{:06x}", rand::random::<u32>() & 0xff_ffff))
    }

    /// Parses `vsw` + 6 lower-case hex digits.
    pub fn parse(s: &str) -> Option<RunId> {
        let hex = s.strip_prefix(PREFIX)?;
        (hex.len() == 6
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| RunId(s.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Namespace name for a node of this run: `vswXXXXXX-<kind>-<name>`.
    pub fn netns_name(&self, kind: NodeKind, name: &str) -> String {
        format!("{}-{}-{}", self.0, kind.letter(), name)
    }

    /// The run id a namespace name belongs to, if it is one of ours.
    pub fn of_netns(name: &str) -> Option<RunId> {
        let (id, rest) = name.split_at_checked(PREFIX.len() + 6)?;
        rest.starts_with('-').then_some(())?;
        RunId::parse(id)
    }
}

impl Default for RunId {
    fn default() -> Self {
        RunId::new()
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a namespace plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A Docker host.
    Machine,
    /// A host on `lan`.
    External,
    /// A container.
    Container,
}

impl NodeKind {
    fn letter(self) -> &'static str {
        match self {
            NodeKind::Machine => "m",
            NodeKind::External => "x",
            NodeKind::Container => "c",
        }
    }
}

/// What `/run/vswitch/runs/<id>.json` says about a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run id.
    pub id: RunId,
    /// Process that owns the world.
    pub pid: u32,
    /// Scenario file.
    pub scenario: String,
    /// Short name (`vswitch down NAME`): the scenario file's stem.
    pub name: String,
    /// Backend.
    pub backend: String,
    /// Node name → namespace name, for `vswitch exec`.
    pub namespaces: Vec<(String, String)>,
    /// Whether the world is kept up (`vswitch up` / `--keep`).
    pub kept: bool,
}

impl RunRecord {
    fn path(id: &RunId) -> PathBuf {
        Path::new(RUN_DIR).join(format!("{id}.json"))
    }

    /// Writes the record (atomically).
    pub fn save(&self) -> io::Result<()> {
        fs::create_dir_all(RUN_DIR)?;
        let path = RunRecord::path(&self.id);
        let tmp = path.with_extension("tmp");
        fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).map_err(io::Error::other)?,
        )?;
        fs::rename(tmp, path)
    }

    /// Removes the record (and the log `vswitch up` keeps beside it).
    pub fn remove(id: &RunId) {
        let _ = fs::remove_file(RunRecord::path(id));
        let _ = fs::remove_file(Path::new(RUN_DIR).join(format!("{id}.log")));
        // The step channel of a world kept up (`vswitch step`).
        let _ = fs::remove_file(Path::new(RUN_DIR).join(format!("{id}.sock")));
    }

    /// Every readable record.
    pub fn all() -> Vec<RunRecord> {
        let Ok(rd) = fs::read_dir(RUN_DIR) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect()
    }

    /// True while the owning process lives.
    pub fn is_live(&self) -> bool {
        pid_alive(self.pid)
    }
}

fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    // Signal 0 checks existence; a zombie still counts as gone for us.
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None).is_err() {
        return false;
    }
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Removes every namespace of one run (and its record), and what it has in
/// the project's Docker daemon (containers, networks, the daemon-side
/// uplink; nothing when no daemon runs). Returns what was removed.
pub fn remove_run(id: &RunId) -> Vec<String> {
    // Daemons first: they hold links and namespaces of the run.
    let mut removed = kill_daemons(id);
    // Containers next: their namespaces are bind-mounted under the run's names.
    removed.extend(crate::backend::docker::remove_run(id));
    for ns in netns::list(&format!("{id}-")) {
        if netns::delete(&ns).is_ok() {
            removed.push(ns);
        }
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

impl PartialOrd for RunId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RunId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_parse_and_name_namespaces() {
        let id = RunId::parse("vsw0a1b2c").unwrap();
        let ns = id.netns_name(NodeKind::Container, "web");
        assert_eq!(ns, "vsw0a1b2c-c-web");
        assert_eq!(RunId::of_netns(&ns), Some(id));
        assert_eq!(RunId::of_netns("vswtest-x"), None);
        assert_eq!(RunId::parse("vswXYZ123"), None);
        assert_eq!(RunId::parse("vsw0a1b2"), None);
        assert!(RunId::parse(RunId::new().as_str()).is_some());
    }

    #[test]
    fn own_pid_is_alive() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX));
    }
}
