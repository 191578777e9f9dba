//! Daemons of a run's own: one `dockerd` per scenario machine, started in
//! that machine's network namespace (multi-machine scenarios, and machines
//! whose daemon-wide settings differ from the shared daemon's).
//!
//! Everything of one daemon lives under `/run/vswitch/dockerd/<run>/m<i>/`:
//! `data/` (data root: images, containers, swarm state), `exec/` (exec
//! root: its managed containerd, netns bind mounts), `docker.sock`,
//! `dockerd.pid`, `dockerd.log` and an empty `daemon.json` (no
//! configuration of the machine applies). dockerd runs its own managed
//! containerd (started under the exec root, so daemons never share one).
//!
//! Processes are tracked by cgroup: the daemon is put, before it execs, in
//! the cgroup v2 directory `vswitch-<run>/m<i>` (the unified hierarchy,
//! `/sys/fs/cgroup/unified` on a hybrid host), so containerd, its shims and
//! `docker-proxy` inherit it; containers get `--cgroup-parent
//! /vswitch-<run>/c<i>`. [`remove`] SIGKILLs every process whose cgroup
//! path is under `/vswitch-<run>/` or whose command line names the run's
//! directory, unmounts what is mounted under it, deletes it and the cgroup
//! directories. That is the teardown of a finished run as well as what
//! `vswitch cleanup` does after a SIGKILL: a run's daemons hold nothing a
//! graceful stop would need to save.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BoxError;
use super::api::Client;
use crate::run_id::RunId;
use crate::scenario::plan::Machine;

/// Where the run's daemons keep everything.
pub const DAEMONS_DIR: &str = "/run/vswitch/dockerd";
/// How long a started daemon may take to answer.
const READY_WAIT: Duration = Duration::from_secs(60);

/// One started daemon.
#[derive(Debug)]
pub struct OwnDaemon {
    /// Its directory.
    pub root: PathBuf,
    /// A client for its socket.
    pub client: Client,
    child: Option<Child>,
}

/// The run's directory of daemons.
pub fn run_dir(run: &RunId) -> PathBuf {
    Path::new(DAEMONS_DIR).join(run.as_str())
}

/// The cgroup v2 hierarchy processes are tracked in, if any.
fn cgroup2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.max.depth").exists())
}

/// The cgroup name of a run: `vswitch-<run>`.
fn cgroup_name(run: &RunId) -> String {
    format!("vswitch-{run}")
}

/// The daemon-wide options of machine `m` (the shared daemon's, with the
/// machine's `userland_proxy` and `ip6tables`).
pub fn daemon_args(run: &RunId, idx: usize, m: &Machine, root: &Path) -> Vec<String> {
    let p = |s: &str| root.join(s).display().to_string();
    vec![
        format!("--config-file={}", p("daemon.json")),
        format!("--host=unix://{}", p("docker.sock")),
        format!("--data-root={}", p("data")),
        format!("--exec-root={}", p("exec")),
        format!("--pidfile={}", p("dockerd.pid")),
        "--storage-driver=vfs".into(),
        "--iptables=true".into(),
        "--bip=172.17.0.1/16".into(),
        format!("--userland-proxy={}", m.userland_proxy),
        "--ipv6".into(),
        "--fixed-cidr-v6=fd00:dead:beef::/48".into(),
        "--experimental".into(),
        format!("--ip6tables={}", m.ip6tables),
        format!("--cgroup-parent=/{}/c{idx}", cgroup_name(run)),
        "--log-level=warn".into(),
    ]
}

impl OwnDaemon {
    /// Starts machine `idx`'s daemon in the network namespace `netns`
    /// (a name under `/run/netns`); does not wait for it (see [`OwnDaemon::wait_ready`]).
    pub fn spawn(run: &RunId, idx: usize, m: &Machine, netns: &str) -> Result<OwnDaemon, BoxError> {
        let root = run_dir(run).join(format!("m{idx}"));
        for d in ["data", "exec"] {
            std::fs::create_dir_all(root.join(d))
                .map_err(|e| format!("{}: {e}", root.join(d).display()))?;
        }
        std::fs::write(root.join("daemon.json"), "{}\n")?;
        let cgroup = match cgroup2_root() {
            Some(base) => {
                let dir = base.join(cgroup_name(run)).join(format!("m{idx}"));
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                dir.join("cgroup.procs").display().to_string()
            }
            None => String::new(),
        };
        let log = std::fs::File::create(root.join("dockerd.log"))?;
        // The shell joins the cgroup, then becomes nsenter, which becomes
        // dockerd in the machine's network namespace (only that one: the
        // mount namespace stays, so the cgroup tree stays visible).
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"cg=$1; shift; if [ -n "$cg" ]; then echo $$ > "$cg"; fi; exec nsenter "$@""#)
            .arg("sh")
            .arg(&cgroup)
            .arg(format!("--net=/run/netns/{netns}"))
            .arg("dockerd")
            .args(daemon_args(run, idx, m, &root))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting dockerd: {e}"))?;
        Ok(OwnDaemon {
            client: Client::new(root.join("docker.sock")),
            root,
            child: Some(child),
        })
    }

    /// Waits until the daemon answers; an exit or a timeout is an error
    /// carrying its log's last lines.
    pub fn wait_ready(&mut self) -> Result<Duration, BoxError> {
        let t = Instant::now();
        loop {
            if self.client.socket().is_some_and(Path::exists) && self.client.version().is_ok() {
                return Ok(t.elapsed());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(format!("dockerd exited ({status}): {}", self.log_tail()).into());
            }
            if t.elapsed() > READY_WAIT {
                return Err(format!(
                    "dockerd did not answer in {} s: {}",
                    READY_WAIT.as_secs(),
                    self.log_tail()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The PID of the daemon process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.root.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join(" | ")
    }

    /// Reaps the daemon process (after [`remove`] killed it).
    pub fn reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Processes of run `run`'s daemons: in its cgroups, or naming its directory.
fn run_processes(run: &RunId) -> Vec<i32> {
    let cg = format!("/{}/", cgroup_name(run));
    let dir = run_dir(run).display().to_string();
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me && !zombie(pid))
        .filter(|pid| {
            let cgroups =
                std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let in_cgroup = cgroups.lines().any(|l| {
                l.split(':')
                    .nth(2)
                    .is_some_and(|p| format!("{p}/").starts_with(&cg))
            });
            in_cgroup || {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmd).contains(&dir)
            }
        })
        .collect()
}

/// Whether `pid` is dead, waiting to be reaped (no process to kill).
fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

/// Whether run `run` has daemon leftovers (processes, directory, cgroups).
pub fn has_traces(run: &RunId) -> Vec<String> {
    let mut v = Vec::new();
    if run_dir(run).exists() {
        v.push(run_dir(run).display().to_string());
    }
    for pid in run_processes(run) {
        v.push(format!("process {pid} of the run's dockerd"));
    }
    v.extend(
        cgroup_dirs(run)
            .into_iter()
            .map(|p| p.display().to_string()),
    );
    v.extend(mounts_under(&run_dir(run)));
    v
}

/// The run's cgroup directories in every hierarchy.
fn cgroup_dirs(run: &RunId) -> Vec<PathBuf> {
    let name = cgroup_name(run);
    let mut v = Vec::new();
    let base = Path::new("/sys/fs/cgroup");
    if base.join(&name).exists() {
        v.push(base.join(&name));
    }
    if let Ok(rd) = std::fs::read_dir(base) {
        for e in rd.filter_map(|e| e.ok()) {
            let p = e.path().join(&name);
            if p.exists() {
                v.push(p);
            }
        }
    }
    v
}

/// Mount points under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.len()));
    v.dedup();
    v
}

/// Removes a cgroup directory tree (children first; only `rmdir` works there).
fn rmdir_tree(p: &Path) {
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.filter_map(|e| e.ok()) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(p);
}

/// Removes everything of run `run`'s daemons: kills their processes (and
/// the containers'), unmounts, deletes the directory and the cgroups.
/// Returns what it removed; quiet when there is nothing.
pub fn remove(run: &RunId) -> Vec<String> {
    let mut removed = Vec::new();
    let end = Instant::now() + Duration::from_secs(20);
    let mut killed = 0;
    loop {
        let pids = run_processes(run);
        if pids.is_empty() || Instant::now() > end {
            break;
        }
        for pid in pids {
            if nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
            {
                killed += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if killed > 0 {
        removed.push(format!("{killed} dockerd/containerd/container processes"));
    }
    let dir = run_dir(run);
    if let Ok(keep) = std::env::var("VSWITCH_DOCKER_KEEP_LOGS") {
        // Debugging: each daemon's log survives the run there.
        for i in 0..16 {
            let log = dir.join(format!("m{i}/dockerd.log"));
            if log.exists() {
                let _ = std::fs::copy(&log, Path::new(&keep).join(format!("{run}-m{i}.log")));
            }
        }
    }
    for m in mounts_under(&dir) {
        match nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => removed.push(format!("mount {m}")),
            Err(e) => tracing::warn!(mount = %m, error = %e, "cannot unmount"),
        }
    }
    if dir.exists() {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => removed.push(dir.display().to_string()),
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot remove"),
        }
    }
    for cg in cgroup_dirs(run) {
        rmdir_tree(&cg);
        if !cg.exists() {
            removed.push(cg.display().to_string());
        }
    }
    removed
}

/// Runs with daemon leftovers (a directory or cgroups).
pub fn leftover_runs() -> Vec<RunId> {
    let mut ids = Vec::new();
    if let Ok(rd) = std::fs::read_dir(DAEMONS_DIR) {
        ids.extend(
            rd.filter_map(|e| e.ok())
                .filter_map(|e| RunId::parse(e.file_name().to_str()?)),
        );
    }
    let mut bases = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        bases.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    for b in bases {
        if let Ok(rd) = std::fs::read_dir(b) {
            ids.extend(
                rd.filter_map(|e| e.ok()).filter_map(|e| {
                    RunId::parse(e.file_name().to_str()?.strip_prefix("vswitch-")?)
                }),
            );
        }
    }
    ids.sort();
    ids.dedup();
    ids
}
