//! End-to-end tests: every file in `scenarios/` is built on every backend
//! that can build it (userspace, kernel, and docker — the project's Docker
//! daemon as the oracle) in real namespaces, its checks must hold and the
//! backends must agree; then the CLI's exit statuses, cleanup after
//! panic/SIGINT/SIGKILL (also of docker runs), `up`/`exec`/`down`, and pcaps
//! read back by tshark.
//!
//! Needs root (namespaces, TAP devices), and for docker the daemon started by
//! `ci/docker-daemon.sh start`. Without them the trials are ignored with a
//! message, unless `VSWITCH_REQUIRE_ROOT=1`, when they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};

use vswitch::backend::BuildOptions;
use vswitch::run::compare::{BackendRun, Comparison};
use vswitch::run::execute::{RunOptions, execute_plan};
use vswitch::scenario::{
    self,
    plan::{BackendKind, Plan},
};
use vswitch::world::RunId;

type TestResult = Result<(), Failed>;
type NamedTest = (&'static str, fn() -> TestResult);

fn root_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vswitch")
}

fn require_root() -> bool {
    vswitch::prereq::required()
}

/// A prerequisite's gate as a trial result: Ok(Some) run, Ok(None) a named
/// skip (recorded), Err a failure (under `VSWITCH_REQUIRE_ROOT=1`).
fn gate<T>(g: vswitch::prereq::Gate<T>) -> Result<Option<T>, Failed> {
    match g {
        vswitch::prereq::Gate::Run(t) => Ok(Some(t)),
        vswitch::prereq::Gate::Skip => Ok(None),
        vswitch::prereq::Gate::Fail(m) => Err(m.into()),
    }
}

/// Namespaces (and /etc/netns entries) a run left behind, and what it left
/// in the project's Docker daemon.
fn leftovers(run: &RunId) -> Vec<String> {
    let mut v = vswitch::backend::docker::traces(run);
    if let Ok(rd) = std::fs::read_dir(vswitch::netns::NETNS_ETC_DIR) {
        v.extend(
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("{run}-"))),
        );
    }
    v
}

fn assert_no_leftovers(run: &RunId) -> TestResult {
    let left = leftovers(run);
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("run {run} leaked: {left:?}").into())
    }
}

/// Waits for a condition with a deadline (never a fixed sleep).
fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) -> TestResult {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!("timed out waiting for {what}").into())
}

fn vswitch(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("vswitch runs")
}

/// Runs `plan` on one backend; Err with the report table when it did not pass.
fn run_on(path: &Path, plan: &Plan, backend: BackendKind) -> Result<BackendRun, Failed> {
    run_with(path, plan, backend, BuildOptions::default())
}

/// [`run_on`] with build options.
fn run_with(
    path: &Path,
    plan: &Plan,
    backend: BackendKind,
    build: BuildOptions,
) -> Result<BackendRun, Failed> {
    let run = RunId::new();
    let opts = RunOptions {
        backend,
        build,
        keep: false,
        progress: false,
        run_id: Some(run.clone()),
    };
    let ex = execute_plan(path, plan, &opts);
    assert_no_leftovers(&run)?;
    let report = ex.report.ok_or("no report")?;
    if let Some(e) = &ex.error {
        return Err(format!("{backend}: {e}\n{}", report.table()).into());
    }
    // A check that fails only where its `known_difference` names this
    // backend is the documented departure, not a failure; a probe that
    // could not run is never excused.
    let known = vswitch::run::compare::known_differences(plan);
    let excused = |i: usize| {
        known.iter().any(|(k, b)| {
            *k == i
                && b.as_deref()
                    .is_some_and(|b| vswitch::run::compare::names_backend(b, &backend.to_string()))
        })
    };
    let failing: Vec<usize> = report
        .checks
        .iter()
        .filter(|c| !c.pass && (c.is_error() || !excused(c.index)))
        .map(|c| c.index)
        .collect();
    if !failing.is_empty() || (ex.code != 0 && ex.code != 1) {
        return Err(format!(
            "{backend}: exit {}, failing checks {failing:?}:\n{}",
            ex.code,
            report.table()
        )
        .into());
    }
    if report.checks.len() != plan.checks.len() {
        return Err(format!("{backend}: not every check ran").into());
    }
    Ok(BackendRun {
        backend: backend.to_string(),
        code: ex.code,
        report: Some(report),
        error: None,
    })
}

/// The userspace engine with two worker threads, whatever the CPU count:
/// scenarios of several kinds of path (bridges, NAT, DNS, link faults set
/// by steps) hold all their checks, and both workers read
/// frames (each serves half of the ports), so the lock, the shared fault
/// queue and the cross-worker writes are what carried them.
fn two_engine_workers() -> TestResult {
    for stem in [
        "bridge-reach-matrix",
        "nat-masquerade",
        "dns-names",
        "steps-link-faults",
    ] {
        let path = root_dir().join(format!("scenarios/{stem}.toml"));
        let plan = scenario::load_file(&path).map_err(|e| format!("{stem}: {e}"))?;
        let build = BuildOptions {
            engine_workers: Some(2),
            ..BuildOptions::default()
        };
        let run = run_with(&path, &plan, BackendKind::Userspace, build)
            .map_err(|e| format!("{stem}: {}", e.message().unwrap_or_default()))?;
        let metrics = &run.report.as_ref().ok_or("no report")?.metrics;
        let reads: Vec<u64> = metrics["io"]["worker_reads"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
            .unwrap_or_default();
        if reads.len() != 2 || reads.contains(&0) {
            return Err(
                format!("{stem}: frames read per worker {reads:?}, want two non-zero").into(),
            );
        }
    }
    Ok(())
}

/// The kernel fast path of the userspace engine (`backend::userspace::offload`):
/// between two containers of a bridge network it carries the bulk of a
/// transfer past the engine (the engine reads a handful of frames, the
/// fast path the rest), and so it does for masqueraded TCP connections to
/// an external and for a transfer across an overlay between two machines
/// (VXLAN tunnels); off, it is absent. With faults set by steps on a
/// link the fast path had been carrying (steps-link-faults: a ping before
/// the first fault), every fault still holds (loss, a downed link, rate).
fn offload_fast_path() -> TestResult {
    let build = |offload| BuildOptions {
        offload: Some(offload),
        ..BuildOptions::default()
    };
    let offload_of = |stem: &str, on: bool| -> Result<(serde_json::Value, u64), Failed> {
        let path = root_dir().join(format!("scenarios/{stem}.toml"));
        let plan = scenario::load_file(&path).map_err(|e| format!("{stem}: {e}"))?;
        let run = run_with(&path, &plan, BackendKind::Userspace, build(on))
            .map_err(|e| format!("{stem}: {}", e.message().unwrap_or_default()))?;
        let metrics = &run.report.as_ref().ok_or("no report")?.metrics;
        let read = metrics["io"]["read"]
            .as_array()
            .map_or(0, |a| a.iter().filter_map(|v| v.as_u64()).sum());
        Ok((metrics["io"]["offload"].clone(), read))
    };
    let (fast, read) = offload_of("bridge-throughput", true)?;
    let (flows, frames) = (fast["flows"].as_u64(), fast["frames"].as_u64());
    match (flows, frames) {
        (Some(f), Some(n)) if f >= 2 && n >= 10_000 && read * 100 < n => {}
        _ => {
            return Err(format!(
                "bridge-throughput: fast path {fast}, engine read {read} frames; want ≥ 2 flows carrying ≥ 10000 frames, 100× what the engine read"
            )
            .into());
        }
    }
    // Masqueraded connections to an external (BR-10): the transfer, and
    // each TCP check's payload and its echo, which the probe compares
    // byte for byte after the `seen` line (so the rewrite and its
    // checksums are what the receiving stacks accepted).
    for (stem, least) in [("nat-throughput", 10_000), ("nat-masquerade", 2)] {
        let (nat, _) = offload_of(stem, true)?;
        let (flows, frames) = (nat["flows"].as_u64(), nat["frames"].as_u64());
        if !matches!((flows, frames), (Some(f), Some(n)) if f >= 2 && n >= least) {
            return Err(format!(
                "{stem}: fast path {nat}; want both directions of a connection carrying ≥ {least} frames"
            )
            .into());
        }
    }
    // Across machines (OV-2): both directions of the transfer tunnelled
    // by the fast path's VTEPs, the engine reading a handful of frames,
    // nothing dropped at an underlay for want of a tunnel.
    let (ov, read) = offload_of("overlay-throughput", true)?;
    let (tunnels, frames, missed) = (
        ov["tunnels"].as_u64(),
        ov["tunnel_frames"].as_u64(),
        ov["missed"].as_u64(),
    );
    if !matches!((tunnels, frames, missed), (Some(t), Some(n), Some(0)) if t >= 2 && n >= 10_000 && read * 100 < n)
    {
        return Err(format!(
            "overlay-throughput: fast path {ov}, engine read {read} frames; want ≥ 2 tunnels carrying ≥ 10000 frames, 100× what the engine read, none missed"
        )
        .into());
    }
    let (off, _) = offload_of("bridge-throughput", false)?;
    if !off.is_null() {
        return Err(format!("offload off, yet the fast path reported {off}").into());
    }
    let (faulted, _) = offload_of("steps-link-faults", true)?;
    if faulted["flows"].as_u64().unwrap_or(0) == 0 {
        return Err(format!(
            "steps-link-faults: the fast path carried nothing ({faulted}), so its faults test nothing of it"
        )
        .into());
    }
    Ok(())
}

/// Trials for one scenario file: it runs on every backend that can build it,
/// every check must hold on each, and the backends must observe the same
/// thing for every non-throughput check. A backend that cannot build it is a
/// named skip.
fn scenario_trials(path: PathBuf) -> Vec<Trial> {
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    let plan = match scenario::load_file(&path) {
        Ok(p) => p,
        Err(e) => {
            return vec![Trial::test(format!("scenario::{stem}"), move || {
                Err(format!("invalid scenario: {e}").into())
            })];
        }
    };
    let mut trials = Vec::new();
    let mut able = Vec::new();
    let mut refusals = Vec::new();
    for backend in [
        BackendKind::Userspace,
        BackendKind::Kernel,
        BackendKind::Docker,
    ] {
        let why = vswitch::backend::unsupported(&plan, backend);
        let name = format!("{backend}::{stem}");
        if why.is_empty() {
            able.push(backend);
        } else if require_root() && missing_prerequisite(backend, &why) {
            // Under CI a missing tool or daemon is a broken runner (.ci/run
            // installs and starts them), not a skip.
            let msg = why.join("; ");
            trials.push(Trial::test(name, move || Err(msg.into())));
        } else {
            // An unsupported kernel or engine feature stays a named skip.
            vswitch::prereq::record_skip(&name, &why.join("; "));
            refusals.extend(why);
            trials.push(Trial::test(name, || Ok(())).with_ignored_flag(true));
        }
    }
    if able.is_empty() {
        // Refused everywhere: under CI only a kernel feature the scenario
        // says it needs (`requires`), absent here, excuses that.
        let absent = vswitch::backend::absent_requirements(&plan);
        if require_root() && absent.is_empty() {
            let msg = format!(
                "every backend refused the scenario and it names no absent kernel feature in `requires`: {}",
                refusals.join("; ")
            );
            trials.push(Trial::test(format!("refused::{stem}"), move || {
                Err(msg.into())
            }));
        }
        return trials;
    }
    let name = match able.as_slice() {
        [one] => format!("{one}::{stem}"),
        [_, _] => format!("both::{stem}"),
        _ => format!("all::{stem}"),
    };
    trials.push(Trial::test(name, move || {
        let runs = able
            .iter()
            .map(|&b| run_on(&path, &plan, b))
            .collect::<Result<Vec<_>, _>>()?;
        if runs.len() > 1 {
            let known = vswitch::run::compare::known_differences(&plan);
            let cmp = Comparison::new(&path.display().to_string(), &runs, &known);
            if cmp.has_disagreement() {
                return Err(format!("backends disagree:\n{}", cmp.table()).into());
            }
        }
        Ok(())
    }));
    trials
}

fn write_temp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vswitch-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Exit 2 for a malformed file, with file:line:column in the message.
fn invalid_exit_2() -> TestResult {
    let p = write_temp(
        "bad.toml",
        "name = \"bad\"\n\n[[network]]\nname = \"n\"\nsubnet = \"10.0.0.0/33\"\n",
    );
    let out = vswitch(&["check", p.to_str().unwrap()], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2) {
        return Err(format!("expected exit 2, got {:?}: {err}", out.status).into());
    }
    if !err.contains("bad.toml:5:") || !err.contains("subnet") {
        return Err(format!("message lacks file:line and field: {err}").into());
    }
    let out = vswitch(&["run", "--quiet", p.to_str().unwrap()], &[]);
    if out.status.code() != Some(2) {
        return Err(format!("run: expected exit 2, got {:?}", out.status).into());
    }
    Ok(())
}

// Something the userspace backend still refuses: IPv6 on ipvlan (its
// children are found by IPv4 address).
/// ipvlan, which this kernel lacks: the kernel backend refuses it.
const NEEDS_IPV6: &str = r#"
name = "needs IPv6 on ipvlan"
[[network]]
name = "v"
driver = "ipvlan"
parent = "eth0"
subnet = "198.18.0.0/24"
ipv6 = true
subnet6 = "fd00:7::/64"
[[container]]
name = "c"
networks = ["v"]
[[check]]
kind = "ping"
from = "c"
to = "198.18.0.1"
expect = "ok"
"#;

/// Exit 3 names what the backend cannot build, builds nothing; --strict → 1.
fn unsupported_exit_3() -> TestResult {
    let p = write_temp("ipv6.toml", NEEDS_IPV6);
    let run = RunId::new();
    let out = vswitch(
        &["run", "--backend", "kernel", p.to_str().unwrap()],
        &[("VSWITCH_RUN_ID", run.as_str())],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(3)
        || !err.contains("ipvlan needs the kernel's ipvlan link type, which this kernel lacks")
    {
        return Err(format!(
            "expected exit 3 naming the missing ipvlan link type, got {:?}: {err}",
            out.status
        )
        .into());
    }
    assert_no_leftovers(&run)?;
    let out = vswitch(
        &[
            "run",
            "--backend",
            "kernel",
            "--strict",
            p.to_str().unwrap(),
        ],
        &[],
    );
    if out.status.code() != Some(1) {
        return Err(format!("--strict: expected exit 1, got {:?}", out.status).into());
    }
    Ok(())
}

const PINGS: &str = r#"
name = "pings and a tcp echo"
[[network]]
name = "n"
subnet = "10.124.0.0/24"
[[container]]
name = "a"
networks = ["n"]
serve = ["tcp:80"]
[[container]]
name = "b"
networks = ["n"]
[[check]]
name = "BR-7 ping expected ok"
kind = "ping"
from = "b"
to = "a"
count = 1
expect = "ok"
[[check]]
name = "ping expected fail"
kind = "ping"
from = "b"
to = "10.124.0.99"
count = 1
timeout_ms = 1000
expect = "fail"
[[check]]
name = "BR-7 tcp"
kind = "tcp"
from = "b"
to = "a:80"
expect = "ok"
"#;

/// A probe that cannot run (here: raw ICMP sockets without CAP_NET_RAW,
/// the capability dropped from the whole process) is observed `error` for
/// `expect = "ok"` and `expect = "fail"` alike, counted under `errors`, and
/// the run exits 1; the checks that could run still pass.
fn probe_that_cannot_run_is_an_error() -> TestResult {
    let Some(setpriv) = gate(vswitch::prereq::tool(
        "cli::probe_that_cannot_run_is_an_error",
        "setpriv",
    ))?
    else {
        return Ok(());
    };
    let p = write_temp("pings.toml", PINGS);
    let run = RunId::new();
    let out = Command::new(setpriv)
        .args(["--bounding-set", "-net_raw", "--inh-caps", "-net_raw", "--"])
        .arg(bin())
        .args(["run", "--quiet", "--json", "-", p.to_str().unwrap()])
        .env("VSWITCH_RUN_ID", run.as_str())
        .stdin(Stdio::null())
        .output()?;
    assert_no_leftovers(&run)?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stderr)))?;
    let observed: Vec<&str> = json["checks"]
        .as_array()
        .ok_or("no checks")?
        .iter()
        .map(|c| c["observed"].as_str().unwrap_or("?"))
        .collect();
    if observed != ["error", "error", "ok"]
        || json["errors"] != 2
        || json["passed"] != 1
        || json["failed"] != 0
        || out.status.code() != Some(1)
    {
        return Err(format!(
            "expected two errors, one pass, exit 1; got {:?} {observed:?} {json}",
            out.status
        )
        .into());
    }
    Ok(())
}

/// `run --keep` prints the table and writes `--json` before it holds the
/// world; Ctrl-C then tears it down and the run exits with its own status.
fn keep_prints_before_holding() -> TestResult {
    use std::io::BufRead;
    let run = RunId::new();
    let quick = root_dir().join("scenarios/quickstart.toml");
    let json = std::env::temp_dir().join(format!("vswitch-keep-{run}.json"));
    let mut child = Reaped(
        Command::new(bin())
            .args(["run", "--keep", "--json", json.to_str().unwrap()])
            .arg(&quick)
            .env("VSWITCH_RUN_ID", run.as_str())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let stdout = child.0.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let end = Instant::now() + Duration::from_secs(60);
    let mut table = Vec::new();
    while !table.iter().any(|l: &String| l.contains(" passed, ")) {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => table.push(l),
            Err(_) => return Err(format!("no result table while kept: {table:?}").into()),
        }
    }
    // The world is still up, and the report is already written.
    if vswitch::netns::list(&format!("{run}-")).is_empty() {
        return Err("the world is not held".into());
    }
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    if report["passed"] != 6 || report["errors"] != 0 {
        return Err(format!("report while kept: {report}").into());
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )?;
    let status = child.0.wait()?;
    let _ = std::fs::remove_file(&json);
    if status.code() != Some(0) {
        return Err(format!("expected the run's own status 0 after Ctrl-C, got {status:?}").into());
    }
    assert_no_leftovers(&run)
}

/// A run that panics after building its world leaves nothing behind.
fn panic_mid_run_leaves_nothing() -> TestResult {
    let run = RunId::new();
    let quick = root_dir().join("scenarios/quickstart.toml");
    let out = vswitch(
        &["run", "--quiet", quick.to_str().unwrap()],
        &[
            ("VSWITCH_RUN_ID", run.as_str()),
            ("VSWITCH_FAULT", "panic-after-build"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !err.contains("injected failure") {
        return Err(format!("expected the injected panic, got {:?}: {err}", out.status).into());
    }
    assert_no_leftovers(&run)
}

const LONG: &str = r#"
name = "long-running"
[[network]]
name = "n"
subnet = "10.123.0.0/24"
[[container]]
name = "a"
networks = ["n"]
[[container]]
name = "b"
networks = ["n"]
[[check]]
kind = "throughput"
from = "a"
to = "b"
seconds = 30
"#;

/// Three machines on their own daemons (docker: one dockerd each, a swarm
/// for the overlay), long enough to be killed mid-run.
const LONG3: &str = r#"
name = "long-running, three machines"
[[machine]]
name = "h1"
[[machine]]
name = "h2"
[[machine]]
name = "h3"
[[network]]
name = "ov"
driver = "overlay"
subnet = "10.124.0.0/24"
[[network]]
name = "br"
machine = "h3"
subnet = "10.125.0.0/24"
[[container]]
name = "a"
machine = "h1"
networks = ["ov"]
[[container]]
name = "b"
machine = "h2"
networks = ["ov"]
[[container]]
name = "c"
machine = "h3"
networks = ["br"]
publish = ["8080:80"]
[[check]]
kind = "throughput"
from = "a"
to = "b"
seconds = 60
"#;

/// A child process that is killed and reaped however the test ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_long_on(run: &RunId, backend: &str) -> Reaped {
    spawn_text_on(run, backend, LONG)
}

fn spawn_text_on(run: &RunId, backend: &str, text: &str) -> Reaped {
    let p = write_temp(&format!("long-{run}.toml"), text);
    let child = Command::new(bin())
        .args(["run", "--quiet", "--backend", backend, p.to_str().unwrap()])
        .env("VSWITCH_RUN_ID", run.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn vswitch");
    Reaped(child)
}

fn world_is_up(run: &RunId) -> bool {
    vswitch::netns::list(&format!("{run}-")).len() == 3
}

/// Ctrl-C in the middle of a run on `backend` removes the world, exit 130.
fn sigint_on(backend: &str, up_within: Duration, is_up: fn(&RunId) -> bool) -> TestResult {
    let run = RunId::new();
    let log = std::env::temp_dir().join(format!("vswitch-sigint-{run}.log"));
    let p = write_temp(&format!("long-{run}.toml"), LONG);
    let child = Command::new(bin())
        .args(["run", "--quiet", "--backend", backend, p.to_str().unwrap()])
        .env("VSWITCH_RUN_ID", run.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let mut child = Reaped(child);
    wait_for("the world to come up", up_within, || is_up(&run))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )?;
    let status = child.0.wait()?;
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    if status.code() != Some(130) {
        return Err(
            format!("expected exit 130 after SIGINT, got {status:?}; it said: {said}").into(),
        );
    }
    assert_no_leftovers(&run).map_err(|e| format!("{e:?}; it said: {said}").into())
}

/// SIGKILL during a run on `backend` leaves its world behind; `vswitch
/// cleanup` removes it (and only dead runs').
fn sigkill_on(backend: &str, up_within: Duration, is_up: fn(&RunId) -> bool) -> TestResult {
    let run = RunId::new();
    let mut child = spawn_long_on(&run, backend);
    wait_for("the world to come up", up_within, || is_up(&run))?;
    child.0.kill()?;
    child.0.wait()?;
    if leftovers(&run).is_empty() {
        return Err("SIGKILL left nothing: the test would prove nothing".into());
    }
    let out = vswitch(&["cleanup"], &[]);
    if !out.status.success() {
        return Err(format!("cleanup failed: {out:?}").into());
    }
    assert_no_leftovers(&run)
}

fn sigint_mid_run_leaves_nothing() -> TestResult {
    sigint_on("userspace", Duration::from_secs(30), world_is_up)
}

fn sigkill_then_cleanup() -> TestResult {
    sigkill_on("userspace", Duration::from_secs(30), world_is_up)
}

/// The docker backend needs the project's daemon: Ok(false) skips without it
/// (a failure under CI, which starts it).
fn have_daemon(test: &str) -> Result<bool, Failed> {
    match vswitch::backend::docker::daemon_reachable() {
        Ok(_) => Ok(true),
        Err(e) => Ok(gate(vswitch::prereq::missing::<()>(test, &format!("{e}")))?.is_some()),
    }
}

/// A docker world is up: its lan and both containers' namespaces exist.
fn docker_world_is_up(run: &RunId) -> bool {
    let ns = vswitch::netns::list(&format!("{run}-"));
    ns.len() == 3 && ns.iter().any(|n| n.ends_with("-c-b"))
}

/// A three-machine docker world is up: its daemons run and every container
/// namespace exists.
fn docker3_world_is_up(run: &RunId) -> bool {
    let ns = vswitch::netns::list(&format!("{run}-"));
    ["-c-a", "-c-b", "-c-c"]
        .iter()
        .all(|c| ns.iter().any(|n| n.ends_with(c)))
}

/// SIGKILL during a three-machine docker run (three dockerd, their
/// containerd and shims, a swarm, an overlay, a published port) leaves
/// daemons, namespaces, mounts and cgroups; `vswitch cleanup` removes
/// every one (checked by `traces`: processes of the run's daemons, their
/// directories with the swarm state, mounts under them, cgroups).
fn docker_three_machines_sigkill_then_cleanup() -> TestResult {
    let test = "cleanup::docker_three_machines_sigkill_then_cleanup";
    if !have_tool(test, "dockerd")? || !have_tool(test, "nsenter")? {
        return Ok(());
    }
    let run = RunId::new();
    let mut child = spawn_text_on(&run, "docker", LONG3);
    wait_for("the world to come up", Duration::from_secs(120), || {
        docker3_world_is_up(&run)
    })?;
    child.0.kill()?;
    child.0.wait()?;
    let left = leftovers(&run);
    if !left.iter().any(|l| l.contains("dockerd")) {
        return Err(format!(
            "SIGKILL left no daemon behind: the test would prove nothing: {left:?}"
        )
        .into());
    }
    let out = vswitch(&["cleanup"], &[]);
    if !out.status.success() {
        return Err(format!("cleanup failed: {out:?}").into());
    }
    assert_no_leftovers(&run)
}

/// Ctrl-C during a three-machine docker run removes its daemons and all.
fn docker_three_machines_sigint_leaves_nothing() -> TestResult {
    let test = "cleanup::docker_three_machines_sigint_leaves_nothing";
    if !have_tool(test, "dockerd")? || !have_tool(test, "nsenter")? {
        return Ok(());
    }
    let run = RunId::new();
    let mut child = spawn_text_on(&run, "docker", LONG3);
    wait_for("the world to come up", Duration::from_secs(120), || {
        docker3_world_is_up(&run)
    })?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )?;
    let status = child.0.wait()?;
    if status.code() != Some(130) {
        return Err(format!("expected exit 130 after SIGINT, got {status:?}").into());
    }
    assert_no_leftovers(&run)
}

/// `ci/docker-hosts.sh` started and stopped around a test. The daemons are
/// one set for the machine, so the tests using them take turns (the guard
/// holds the lock until they are stopped).
struct DockerHosts(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

/// Serialises the tests that start `ci/docker-hosts.sh`'s daemons.
static DOCKER_HOSTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl DockerHosts {
    const MAP: &'static str =
        "h1=unix:///run/dhost-1/docker.sock,h2=unix:///run/dhost-2/docker.sock";

    fn start() -> Result<DockerHosts, Failed> {
        DockerHosts::start_as("start")
    }

    /// `start-tcp`: also tcp://127.0.0.1:23751 (h1, plain) and
    /// tcp://127.0.0.1:23762 (h2, TLS, certificates in /run/dhost-tls).
    fn start_tcp() -> Result<DockerHosts, Failed> {
        DockerHosts::start_as("start-tcp")
    }

    fn start_as(how: &str) -> Result<DockerHosts, Failed> {
        // A test that failed while holding it poisoned it; the daemons are
        // stopped and started again below either way.
        let turn = DOCKER_HOSTS.lock().unwrap_or_else(|p| p.into_inner());
        let script = root_dir().join("ci/docker-hosts.sh");
        // A previous, killed test may have left them.
        let _ = Command::new("bash").arg(&script).arg("stop").output();
        let out = Command::new("bash").arg(&script).arg(how).output()?;
        if !out.status.success() {
            return Err(format!("ci/docker-hosts.sh {how}: {out:?}").into());
        }
        Ok(DockerHosts(turn))
    }
}

impl Drop for DockerHosts {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root_dir().join("ci/docker-hosts.sh"))
            .arg("stop")
            .output();
    }
}

/// `--docker-host` with two local daemons given by socket, as if remote:
/// the scenario runs and passes on them, leaves no labelled object there;
/// a machine whose address is not on its host, and
/// an unreachable tcp:// daemon, are refused by name (exit 3); a SIGKILLed
/// mapped run's containers and networks go with `vswitch cleanup`.
fn docker_hosts_mapped() -> TestResult {
    let test = "cli::docker_hosts_mapped";
    if !have_tool(test, "dockerd")? || !have_tool(test, "nsenter")? || !have_tool(test, "ip")? {
        return Ok(());
    }
    let _hosts = DockerHosts::start()?;
    let file = root_dir().join("vswitch/tests/docker-hosts.toml");
    let f = file.to_str().unwrap();
    let run = RunId::new();
    let out = vswitch(
        &[
            "run",
            "--quiet",
            "--backend",
            "docker",
            "--docker-host",
            DockerHosts::MAP,
            f,
        ],
        &[("VSWITCH_RUN_ID", run.as_str())],
    );
    if !out.status.success() {
        return Err(format!("mapped run failed: {out:?}").into());
    }
    assert_no_leftovers(&run)?;
    let bad = write_temp(
        "mapped-bad.toml",
        &std::fs::read_to_string(&file)?.replace("198.18.0.12\"", "198.18.0.13\""),
    );
    let out = vswitch(
        &[
            "run",
            "--quiet",
            "--backend",
            "docker",
            "--docker-host",
            DockerHosts::MAP,
            bad.to_str().unwrap(),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(3)
        || !err.contains("no interface with the machine's lan address 198.18.0.13")
    {
        return Err(format!("expected a refusal of h2's address: {out:?}").into());
    }
    // Port 1 of the loopback: nothing listens (and nothing leaves the machine).
    let tcp = "h1=unix:///run/dhost-1/docker.sock,h2=tcp://127.0.0.1:1";
    let out = vswitch(
        &[
            "run",
            "--quiet",
            "--backend",
            "docker",
            "--docker-host",
            tcp,
            f,
        ],
        &[],
    );
    if out.status.code() != Some(3)
        || !String::from_utf8_lossy(&out.stderr)
            .contains("cannot reach the Docker daemon at tcp://127.0.0.1:1")
    {
        return Err(format!("expected a refusal of an unreachable tcp://: {out:?}").into());
    }
    // SIGKILL of a kept world, then cleanup.
    let run = RunId::new();
    let child = Command::new(bin())
        .args([
            "run",
            "--quiet",
            "--keep",
            "--backend",
            "docker",
            "--docker-host",
            DockerHosts::MAP,
        ])
        .arg(&file)
        .env("VSWITCH_RUN_ID", run.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut child = Reaped(child);
    wait_for(
        "the mapped world to come up",
        Duration::from_secs(120),
        || {
            leftovers(&run)
                .iter()
                .filter(|l| l.contains("docker object"))
                .count()
                >= 4
        },
    )?;
    child.0.kill()?;
    child.0.wait()?;
    let out = vswitch(&["cleanup"], &[]);
    if !out.status.success() {
        return Err(format!("cleanup failed: {out:?}").into());
    }
    assert_no_leftovers(&run)
}

/// The TLS files `ci/docker-hosts.sh start-tcp` makes.
const DHOST_TLS: &str = "/run/dhost-tls";

/// `vswitch run --quiet --backend docker` of the two-host scenario with
/// `args` before `run` (the mapping).
fn run_mapped(args: &[&str], run: Option<&RunId>) -> Output {
    let file = root_dir().join("vswitch/tests/docker-hosts.toml");
    let mut all: Vec<&str> = args.to_vec();
    all.extend([
        "run",
        "--quiet",
        "--backend",
        "docker",
        file.to_str().unwrap(),
    ]);
    match run {
        Some(r) => vswitch(&all, &[("VSWITCH_RUN_ID", r.as_str())]),
        None => vswitch(&all, &[]),
    }
}

/// Relays connections on a 127.0.0.1 port to `to` for 30 s (a proxy, as
/// `ssh -L` would be): the other end of a connection to it is this test.
fn relay(to: &'static str) -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    l.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            let Ok((a, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let _ = a.set_nonblocking(false);
            let Ok(b) = std::net::TcpStream::connect(to) else {
                continue;
            };
            let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
            let (mut a, mut b) = (a, b);
            // Each direction ends with a half close (the other thread holds a clone).
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut a2, &mut b2);
                let _ = b2.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut b, &mut a);
                let _ = a.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    Ok(port)
}

/// `tcp://` daemons, plain and TLS, from a side file (`--docker-hosts`,
/// paths relative to it) and from the command line (`--tlsverify`,
/// `--tlscacert`, `--tlscert`, `--tlskey`): two local daemons listening
/// on 127.0.0.1 (`ci/docker-hosts.sh start-tcp`, certificates made at
/// test time). The scenario passes both ways and leaves nothing; a wrong
/// CA is a refusal naming the TLS handshake (exit 3), as are a proxy to a
/// daemon and an entry mapped in both places (exit 2); a SIGKILLed TLS
/// run's objects go with `vswitch cleanup`, over TLS.
fn docker_hosts_tcp_tls() -> TestResult {
    let test = "cli::docker_hosts_tcp_tls";
    for tool in [
        "dockerd",
        "nsenter",
        "ip",
        "curl",
        "openssl",
        "systemd-socket-activate",
    ] {
        if !have_tool(test, tool)? {
            return Ok(());
        }
    }
    let hosts = DockerHosts::start_tcp()?;
    let side = Path::new(DHOST_TLS).join("hosts.toml");
    std::fs::write(
        &side,
        "[docker_hosts]\n\
         h1 = { host = \"tcp://127.0.0.1:23751\", tlsverify = false }\n\
         h2 = { host = \"tcp://127.0.0.1:23762\", tlsverify = true, tlscacert = \"ca.pem\", tlscert = \"cert.pem\", tlskey = \"key.pem\" }\n",
    )?;
    let side = side.to_str().unwrap();
    let run = RunId::new();
    let out = run_mapped(&["--docker-hosts", side], Some(&run));
    if !out.status.success() {
        return Err(format!("side-file tcp/TLS run failed: {out:?}").into());
    }
    assert_no_leftovers(&run)?;
    // h1 from the side file (plain), h2 from the command line (TLS).
    let h1_only = Path::new(DHOST_TLS).join("h1.toml");
    std::fs::write(
        &h1_only,
        "[docker_hosts]\nh1 = { host = \"tcp://127.0.0.1:23751\", tlsverify = false }\n",
    )?;
    let tls = |ca: &str| -> Vec<String> {
        vec![
            "--tlsverify".into(),
            "--tlscacert".into(),
            format!("{DHOST_TLS}/{ca}"),
            "--tlscert".into(),
            format!("{DHOST_TLS}/cert.pem"),
            "--tlskey".into(),
            format!("{DHOST_TLS}/key.pem"),
        ]
    };
    let mut args = vec![
        "--docker-hosts".to_string(),
        h1_only.display().to_string(),
        "--docker-host".into(),
        "h2=tcp://127.0.0.1:23762".into(),
    ];
    args.extend(tls("ca.pem"));
    let run = RunId::new();
    let out = run_mapped(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        Some(&run),
    );
    if !out.status.success() {
        return Err(format!("CLI --tlsverify run failed: {out:?}").into());
    }
    assert_no_leftovers(&run)?;
    // The wrong CA: the handshake fails, by name, exit 3, no panic.
    let mut args = vec![
        "--docker-host".to_string(),
        "h1=unix:///run/dhost-1/docker.sock,h2=tcp://127.0.0.1:23762".into(),
    ];
    args.extend(tls("other-ca/ca.pem"));
    let out = run_mapped(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(3)
        || !err.contains(
            "cannot reach the Docker daemon at tcp://127.0.0.1:23762 (TLS): TLS handshake failed",
        )
        || !err.contains("UnknownIssuer")
        || err.contains("panicked")
    {
        return Err(format!("expected a refused TLS handshake: {out:?}").into());
    }
    // A proxy to a daemon is not the daemon (its namespace is not the host's).
    let port = relay("127.0.0.1:23751")?;
    let map = format!("h1=tcp://127.0.0.1:{port},h2=unix:///run/dhost-2/docker.sock");
    let out = run_mapped(&["--docker-host", &map], None);
    if out.status.code() != Some(3) || !String::from_utf8_lossy(&out.stderr).contains("not dockerd")
    {
        return Err(format!("expected a refusal of a proxied daemon: {out:?}").into());
    }
    // One machine in both places.
    let out = run_mapped(
        &[
            "--docker-hosts",
            side,
            "--docker-host",
            "h1=unix:///run/dhost-1/docker.sock",
        ],
        None,
    );
    if out.status.code() != Some(2)
        || !String::from_utf8_lossy(&out.stderr).contains("machine h1 is mapped by --docker-host")
    {
        return Err(format!("expected a refusal of h1 mapped twice: {out:?}").into());
    }
    // SIGKILL of a kept TLS world, then cleanup (which speaks TLS from the record).
    let run = RunId::new();
    let child = Command::new(bin())
        .args([
            "--docker-hosts",
            side,
            "run",
            "--quiet",
            "--keep",
            "--backend",
            "docker",
        ])
        .arg(root_dir().join("vswitch/tests/docker-hosts.toml"))
        .env("VSWITCH_RUN_ID", run.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut child = Reaped(child);
    wait_for(
        "the TLS-mapped world to come up",
        Duration::from_secs(120),
        || {
            leftovers(&run)
                .iter()
                .filter(|l| l.contains("docker object") && l.contains("(TLS)"))
                .count()
                >= 2
        },
    )?;
    child.0.kill()?;
    child.0.wait()?;
    let out = vswitch(&["cleanup"], &[]);
    if !out.status.success() {
        return Err(format!("cleanup failed: {out:?}").into());
    }
    assert_no_leftovers(&run)?;
    drop(hosts);
    if Path::new(DHOST_TLS).exists() {
        return Err(format!("{DHOST_TLS} left after ci/docker-hosts.sh stop").into());
    }
    Ok(())
}

/// Ctrl-C during a docker run removes its containers, networks, uplink and
/// namespaces (the signal path), exit 130.
fn docker_sigint_mid_run_leaves_nothing() -> TestResult {
    if !have_daemon("cleanup::docker_sigint_mid_run_leaves_nothing")? {
        return Ok(());
    }
    sigint_on("docker", Duration::from_secs(120), docker_world_is_up)
}

/// SIGKILL during a docker run leaves containers, networks, the uplink and
/// namespaces; `vswitch cleanup` removes them.
fn docker_sigkill_then_cleanup() -> TestResult {
    if !have_daemon("cleanup::docker_sigkill_then_cleanup")? {
        return Ok(());
    }
    sigkill_on("docker", Duration::from_secs(120), docker_world_is_up)
}

/// `up` keeps a world, `exec` works inside it with Docker's resolv.conf, `down` removes it.
fn up_exec_down() -> TestResult {
    if !have_tool("cli::up_exec_down", "ping")? {
        return Ok(());
    }
    with_world("scenarios/quickstart.toml", |run| {
        let out = exec_in(run, "client", &["cat", "/etc/resolv.conf"]);
        let text = String::from_utf8_lossy(&out.stdout);
        if !text.contains("nameserver 127.0.0.11") {
            return Err(format!("resolv.conf in the container: {text:?} {out:?}").into());
        }
        // Real ping (iputils) from inside the container, across the engine.
        let out = exec_in(run, "client", &["ping", "-c", "1", "-W", "2", "172.18.0.2"]);
        if !out.status.success() {
            return Err(format!("ping web from client through `exec` failed: {out:?}").into());
        }
        Ok(())
    })
}

/// `vswitch step` on a world kept up: a file step by name changes what the
/// container sees (BUG-2), a repeated one is refused (exit 2), stdin steps
/// are validated with their own locations, and a fault from stdin cuts the
/// link until cleared.
fn up_step_down() -> TestResult {
    if !have_tool("cli::up_step_down", "ping")? {
        return Ok(());
    }
    with_world("scenarios/steps-connect-names.toml", |run| {
        let step = |args: &[&str], stdin: Option<&str>| -> Output {
            let mut c = Command::new(bin());
            c.args(["step", "--world", run.as_str()]).args(args);
            c.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = c.spawn().expect("vswitch runs");
            if let Some(text) = stdin {
                use std::io::Write as _;
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(text.as_bytes())
                    .expect("write");
            }
            drop(child.stdin.take());
            child.wait_with_output().expect("vswitch ends")
        };
        let ping = || {
            exec_in(run, "api", &["ping", "-c", "1", "-W", "2", "10.61.2.3"])
                .status
                .success()
        };
        if ping() {
            return Err("web answers on net2 before it is connected".into());
        }
        let out = step(&["connect"], None);
        if !out.status.success() || !ping() {
            return Err(format!("step connect: {out:?}").into());
        }
        let again = step(&["connect"], None);
        if again.status.code() != Some(2) {
            return Err(format!("a repeated step must exit 2: {again:?}").into());
        }
        let bad = step(&["-"], Some("[[step]]\nname = \"x\"\nstop = \"nobody\"\n"));
        let err = String::from_utf8_lossy(&bad.stderr);
        if bad.status.code() != Some(2) || !err.contains("-:3:") {
            return Err(format!("stdin step errors are located in stdin: {bad:?}").into());
        }
        let cut = "[[step]]\nname = \"cut\"\nfault = { link = \"api\", loss = 1.0 }\n";
        let out = step(&["-"], Some(cut));
        if !out.status.success() || ping() {
            return Err(format!("a lossy link still answers: {out:?}").into());
        }
        let heal = "[[step]]\nname = \"heal\"\nclear = \"api\"\n";
        let out = step(&["-"], Some(heal));
        if !out.status.success() || !ping() {
            return Err(format!("cleared link does not answer: {out:?}").into());
        }
        Ok(())
    })
}

/// Starts `file` with `vswitch up`, runs `body` with the run id, then `down`;
/// the world must be gone afterwards whatever `body` returned.
fn with_world(file: &str, body: impl FnOnce(&RunId) -> TestResult) -> TestResult {
    let run = RunId::new();
    let path = root_dir().join(file);
    let out = vswitch(
        &["up", path.to_str().unwrap()],
        &[("VSWITCH_RUN_ID", run.as_str())],
    );
    if !out.status.success() {
        return Err(format!("up failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let result = body(&run);
    let down = vswitch(&["down", run.as_str()], &[]);
    result?;
    if !down.status.success() {
        return Err(format!("down failed: {down:?}").into());
    }
    assert_no_leftovers(&run)
}

/// DNS-2, DNS-20, BR-20, NH-7: the resolv.conf, hosts and hostname that
/// `vswitch exec` shows in a userspace world are vswitch's rendering of the
/// plan, and the docker backend's containers carry the same text in the
/// files Docker itself wrote (apart from the IPv6 lines Docker 20.10 adds
/// to every hosts file).
fn run_option_files() -> TestResult {
    if !have_tool("cli::run_option_files", "unshare")? {
        return Ok(());
    }
    let cases: [(&str, &[&str]); 2] = [
        (
            "scenarios/vocab-run-options.toml",
            &["web", "sidecar", "peer"],
        ),
        ("scenarios/vocab-links.toml", &["db", "app"]),
    ];
    for (file, nodes) in cases {
        let plan = scenario::load_file(&root_dir().join(file)).map_err(|e| e.to_string())?;
        let want = |node: &str| -> (String, String, String) {
            let i = plan
                .containers
                .iter()
                .position(|c| c.name == node)
                .expect("container in plan");
            (
                vswitch::backend::resolv_conf(&plan, i),
                vswitch::backend::hosts_file(&plan, i),
                vswitch::backend::hostname_file(&plan, i),
            )
        };
        with_world(file, |run| {
            for node in nodes {
                let (resolv, hosts, hostname) = want(node);
                let cat = |f: &str| {
                    String::from_utf8_lossy(&exec_in(run, node, &["cat", f]).stdout).into_owned()
                };
                let host = exec_in(run, node, &["hostname"]);
                let got = (
                    cat("/etc/resolv.conf"),
                    cat("/etc/hosts"),
                    String::from_utf8_lossy(&host.stdout).into_owned(),
                );
                let env =
                    String::from_utf8_lossy(&exec_in(run, node, &["env"]).stdout).into_owned();
                let link_env = link_env_lines(&env, &plan, node);
                let want_env = want_link_env(&plan, node);
                if link_env != want_env {
                    return Err(format!(
                        "{file} {node}: exec's link env {link_env:?}, the plan's {want_env:?}"
                    )
                    .into());
                }
                if got != (resolv.clone(), hosts.clone(), hostname.clone()) {
                    return Err(format!(
                        "{file} {node}: exec shows {got:?}, the plan says {:?}",
                        (resolv, hosts, hostname)
                    )
                    .into());
                }
            }
            Ok(())
        })?;
        if !have_daemon("cli::run_option_files (docker)")? {
            continue;
        }
        let run = RunId::new();
        let path = root_dir().join(file);
        let out = vswitch(
            &["up", "--backend", "docker", path.to_str().unwrap()],
            &[("VSWITCH_RUN_ID", run.as_str())],
        );
        if !out.status.success() {
            return Err(format!("up on docker: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        let client = vswitch::backend::docker::client();
        let mut result: TestResult = Ok(());
        for node in nodes {
            let (resolv, hosts, hostname) = want(node);
            let v = match client.container_inspect(node) {
                Ok(v) => v,
                Err(e) => {
                    result = Err(format!("inspect {node}: {e}").into());
                    break;
                }
            };
            // Docker's hostname without `hostname` is the 12-digit id;
            // vswitch's stand-in is the name.
            let id: String = v["Id"].as_str().unwrap_or("").chars().take(12).collect();
            let read = |key: &str| {
                std::fs::read_to_string(v[key].as_str().unwrap_or(""))
                    .unwrap_or_default()
                    .replace(&id, node)
            };
            let v6 = vswitch::backend::HOSTS_IPV6_LINES;
            // The daemon gives the default bridge IPv6 (ci/docker-daemon.sh);
            // a plan whose default bridge has none lacks those lines.
            let docker_hosts: String = read("HostsPath")
                .replace(v6, "")
                .lines()
                .filter(|l| {
                    let ip = l.split('\t').next().unwrap_or("");
                    ip.parse::<std::net::Ipv6Addr>().is_err() || hosts.contains(l)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            let pid = v["State"]["Pid"].as_u64().unwrap_or(0);
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let environ = String::from_utf8_lossy(&environ).replace('\0', "\n");
            let docker_env = link_env_lines(&environ, &plan, node);
            if docker_env != want_link_env(&plan, node) {
                result = Err(format!(
                    "{file} {node}: Docker's link env {docker_env:?}, vswitch's {:?}",
                    want_link_env(&plan, node)
                )
                .into());
                break;
            }
            let got = (read("ResolvConfPath"), docker_hosts, read("HostnamePath"));
            let want = (resolv, hosts.replace(v6, ""), hostname);
            if got != want {
                result = Err(format!(
                    "{file} {node}: Docker wrote {got:?}, vswitch writes {want:?}"
                )
                .into());
                break;
            }
        }
        let down = vswitch(&["down", run.as_str()], &[]);
        result?;
        if !down.status.success() {
            return Err(format!("down failed: {down:?}").into());
        }
        assert_no_leftovers(&run)?;
    }
    Ok(())
}

/// The `ALIAS_…` lines of an environment listing, for the links of `node`, sorted.
fn link_env_lines(env: &str, plan: &Plan, node: &str) -> Vec<String> {
    let c = plan
        .containers
        .iter()
        .find(|c| c.name == node)
        .expect("node");
    let prefixes: Vec<String> = c
        .links
        .iter()
        .map(|l| format!("{}_", l.alias.to_uppercase().replace('-', "_")))
        .collect();
    let mut v: Vec<String> = env
        .lines()
        .filter(|l| prefixes.iter().any(|p| l.starts_with(p.as_str())))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn want_link_env(plan: &Plan, node: &str) -> Vec<String> {
    let i = plan
        .containers
        .iter()
        .position(|c| c.name == node)
        .expect("node");
    let mut v: Vec<String> = vswitch::backend::link_env(plan, i)
        .into_iter()
        .map(|(k, val)| format!("{k}={val}"))
        .collect();
    v.sort();
    v
}

fn exec_in(run: &RunId, node: &str, cmd: &[&str]) -> Output {
    let mut args = vec!["exec", "--world", run.as_str(), node, "--"];
    args.extend_from_slice(cmd);
    vswitch(&args, &[])
}

/// Whether a backend's refusal is a missing tool or daemon (which CI
/// provides) rather than a feature this kernel or backend lacks.
fn missing_prerequisite(backend: BackendKind, why: &[String]) -> bool {
    why.iter().any(|w| w.contains("is not installed"))
        || (backend == BackendKind::Docker && vswitch::backend::docker::daemon_reachable().is_err())
}

fn have_tool(test: &str, tool: &str) -> Result<bool, Failed> {
    Ok(gate(vswitch::prereq::tool(test, tool))?.is_some())
}

/// Real iperf3 between two containers through the engine (TSO path).
fn iperf3_through_engine() -> TestResult {
    if !have_tool("cross::iperf3_through_engine", "iperf3")? {
        return Ok(());
    }
    with_world("scenarios/bridge-throughput.toml", |run| {
        // -1: serve one test then exit; -D: daemonize once listening.
        let s = exec_in(
            run,
            "receiver",
            &["iperf3", "-s", "-1", "-D", "-B", "10.100.0.3"],
        );
        if !s.status.success() {
            return Err(format!("iperf3 -s: {s:?}").into());
        }
        let mut last = None;
        // The daemon may not be listening the instant -D returns: retry on
        // "connection refused" until a deadline.
        wait_for("iperf3 client to run", Duration::from_secs(10), || {
            let c = exec_in(
                run,
                "sender",
                &["iperf3", "-c", "10.100.0.3", "-t", "2", "-J"],
            );
            let ok = c.status.success();
            last = Some(c);
            ok
        })?;
        let c = last.ok_or("no client run")?;
        let json: serde_json::Value = serde_json::from_slice(&c.stdout)?;
        let bps = json["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .ok_or("no sum_received in iperf3 output")?;
        eprintln!("iperf3 through the engine: {:.2} Gbit/s", bps / 1e9);
        if bps <= 0.0 {
            return Err("iperf3 moved no data".into());
        }
        Ok(())
    })
}

/// Real dig against an external's DNS server, from the machine's namespace.
fn dig_external_dns() -> TestResult {
    if !have_tool("cross::dig_external_dns", "dig")? {
        return Ok(());
    }
    with_world("scenarios/lan-externals.toml", |run| {
        for transport in ["+notcp", "+tcp"] {
            let out = exec_in(
                run,
                "host",
                &[
                    "dig",
                    "@198.18.0.53",
                    "multi.test",
                    "A",
                    "+short",
                    transport,
                    "+time=2",
                    "+tries=2",
                ],
            );
            let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            got.sort();
            if got != ["198.18.0.80", "198.18.0.81"] {
                return Err(format!("dig {transport}: {got:?} {out:?}").into());
            }
        }
        let out = exec_in(
            run,
            "host",
            &["dig", "@198.18.0.53", "nope.test", "+time=2"],
        );
        if !String::from_utf8_lossy(&out.stdout).contains("status: NXDOMAIN") {
            return Err(format!("dig nope.test: {out:?}").into());
        }
        Ok(())
    })
}

/// `--pcap` writes a file per port (userspace) or interface (kernel,
/// docker: AF_PACKET captures), with the same names, that tshark decodes.
fn pcap_read_by_tshark() -> TestResult {
    let test = "cli::pcap_read_by_tshark";
    let Some(tshark) = gate(vswitch::prereq::tool(test, "tshark"))? else {
        return Ok(());
    };
    let quick = root_dir().join("scenarios/quickstart.toml");
    let plan = scenario::load_file(&quick).map_err(|e| e.to_string())?;
    for backend in [
        BackendKind::Userspace,
        BackendKind::Kernel,
        BackendKind::Docker,
    ] {
        let why = vswitch::backend::unsupported(&plan, backend);
        if !why.is_empty() {
            let what = format!("--pcap on {backend}: {}", why.join("; "));
            if missing_prerequisite(backend, &why) {
                gate(vswitch::prereq::missing::<()>(test, &what))?;
            } else {
                vswitch::prereq::skip(test, &what);
            }
            continue;
        }
        pcap_on(&tshark, &quick, backend)?;
    }
    Ok(())
}

fn pcap_on(tshark: &Path, scenario: &Path, backend: BackendKind) -> TestResult {
    let dir = std::env::temp_dir().join(format!("vswitch-pcap-{}-{backend}", std::process::id()));
    let b = backend.to_string();
    let out = vswitch(
        &[
            "run",
            "--quiet",
            "--backend",
            &b,
            "--pcap",
            dir.to_str().unwrap(),
            scenario.to_str().unwrap(),
        ],
        &[],
    );
    if !out.status.success() {
        return Err(format!("{b}: run failed: {}", String::from_utf8_lossy(&out.stdout)).into());
    }
    // Every backend files the interfaces under the engine's port names
    // (the docker bridge `br-<id>` as `br-appnet`), so captures of the
    // paths can be put side by side.
    for name in [
        "client-eth0.pcap",
        "web-eth0.pcap",
        "host-br-appnet.pcap",
        "lan-host-eth0.pcap",
    ] {
        if !dir.join(name).is_file() {
            let have: Vec<String> = std::fs::read_dir(&dir)?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!("{b}: no {name} among {have:?}").into());
        }
    }
    let file = dir.join("client-eth0.pcap");
    let t = Command::new(tshark)
        .args([
            "-r",
            file.to_str().unwrap(),
            "-Y",
            "icmp.type == 0 || arp.opcode == 2",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ])
        .output()?;
    let frames = String::from_utf8_lossy(&t.stdout).lines().count();
    let _ = std::fs::remove_dir_all(&dir);
    if !t.status.success() || frames == 0 {
        return Err(format!(
            "{b}: tshark saw no ICMP/ARP replies in {}: {t:?}",
            file.display()
        )
        .into());
    }
    Ok(())
}

/// Two machines, an encrypted overlay (VNI 4242) and a plain one (VNI
/// 4343) beside it, a ping and a TCP echo across each (OV-9).
const ENCRYPTED: &str = r#"
name = "encrypted overlay beside a plain one"
[[machine]]
name = "h1"
[[machine]]
name = "h2"
[[network]]
name = "secure"
driver = "overlay"
subnet = "10.0.70.0/24"
vni = 4242
encrypted = true
[[network]]
name = "plain"
driver = "overlay"
subnet = "10.0.71.0/24"
vni = 4343
[[container]]
name = "a"
machine = "h1"
networks = ["secure", "plain"]
[[container]]
name = "b"
machine = "h2"
networks = ["secure", "plain"]
serve = ["tcp:7"]
[[check]]
kind = "ping"
from = "a"
to = "b@secure"
expect = "ok"
[[check]]
kind = "tcp"
from = "a"
to = "b@secure:7"
expect = "ok"
[[check]]
kind = "ping"
from = "a"
to = "b@plain"
expect = "ok"
"#;

/// Frames of `file` that tshark shows for `filter` (with extra options).
fn tshark_count(
    tshark: &Path,
    file: &Path,
    opts: &[String],
    filter: &str,
) -> Result<usize, Failed> {
    let mut c = Command::new(tshark);
    c.arg("-r").arg(file);
    for o in opts {
        c.args(["-o", o]);
    }
    let t = c
        .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
        .output()?;
    if !t.status.success() {
        return Err(format!("tshark -Y {filter:?} failed: {t:?}").into());
    }
    Ok(String::from_utf8_lossy(&t.stdout).lines().count())
}

/// OV-9 on the userspace backend, read by tshark: with `--pcap`, the lan
/// capture holds ESP for the encrypted network and no cleartext VXLAN of
/// its VNI (the plain overlay's VXLAN is there, so the filter works); given
/// the `esp_sa` file the run wrote, tshark decrypts the ESP to VXLAN of
/// that VNI carrying the containers' own ICMP and TCP.
fn encrypted_overlay_read_by_tshark() -> TestResult {
    let test = "cli::encrypted_overlay_read_by_tshark";
    let Some(tshark) = gate(vswitch::prereq::tool(test, "tshark"))? else {
        return Ok(());
    };
    let p = write_temp("encrypted.toml", ENCRYPTED);
    let dir = std::env::temp_dir().join(format!("vswitch-esp-pcap-{}", std::process::id()));
    let run = RunId::new();
    let out = vswitch(
        &[
            "run",
            "--quiet",
            "--pcap",
            dir.to_str().unwrap(),
            p.to_str().unwrap(),
        ],
        &[("VSWITCH_RUN_ID", run.as_str())],
    );
    assert_no_leftovers(&run)?;
    if !out.status.success() {
        return Err(format!("run failed: {}", String::from_utf8_lossy(&out.stdout)).into());
    }
    let result = (|| -> TestResult {
        let lan = dir.join("lan-h1-eth0.pcap");
        let sa = std::fs::read_to_string(dir.join("esp_sa"))?;
        let lines: Vec<&str> = sa.lines().collect();
        if lines.len() != 2 || !lines.iter().all(|l| l.contains("AES-GCM")) {
            return Err(format!("esp_sa should hold the two SAs h1↔h2: {sa:?}").into());
        }
        let esp = tshark_count(&tshark, &lan, &[], "esp")?;
        let clear = tshark_count(&tshark, &lan, &[], "udp.port == 4789 && vxlan.vni == 4242")?;
        let plain = tshark_count(&tshark, &lan, &[], "udp.port == 4789 && vxlan.vni == 4343")?;
        if esp == 0 || clear != 0 || plain == 0 {
            return Err(format!(
                "lan capture: {esp} ESP frames, {clear} cleartext VXLAN of the encrypted VNI 4242 (want 0), {plain} of the plain VNI 4343"
            )
            .into());
        }
        let mut keys = vec!["esp.enable_encryption_decode:TRUE".to_string()];
        keys.extend(lines.iter().map(|l| format!("uat:esp_sa:{l}")));
        let icmp = tshark_count(
            &tshark,
            &lan,
            &keys,
            "esp && vxlan.vni == 4242 && icmp && ip.src == 10.0.70.2 && ip.dst == 10.0.70.3",
        )?;
        let tcp = tshark_count(
            &tshark,
            &lan,
            &keys,
            "esp && vxlan.vni == 4242 && tcp.port == 7 && ip.addr == 10.0.70.2",
        )?;
        let undecrypted = tshark_count(&tshark, &lan, &keys, "esp && !vxlan")?;
        if icmp == 0 || tcp == 0 || undecrypted != 0 {
            return Err(format!(
                "decrypted with esp_sa: {icmp} ICMP a→b, {tcp} TCP port 7 frames inside VNI 4242; {undecrypted} ESP frames left undecrypted (want 0)"
            )
            .into());
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The kernel and docker backends refuse an encrypted overlay by name
/// (this kernel has no ESP): exit 3, nothing built.
fn encrypted_refused_exit_3() -> TestResult {
    let p = write_temp("encrypted-refused.toml", ENCRYPTED);
    for backend in ["kernel", "docker"] {
        let run = RunId::new();
        let out = vswitch(
            &["run", "--backend", backend, p.to_str().unwrap()],
            &[("VSWITCH_RUN_ID", run.as_str())],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(3) || !err.contains("ESP missing") {
            return Err(format!(
                "{backend}: expected exit 3 naming ESP missing, got {:?}: {err}",
                out.status
            )
            .into());
        }
        assert_no_leftovers(&run)?;
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let root = vswitch::netns::can_create();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root_dir().join("scenarios"))
        .expect("scenarios/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut trials: Vec<Trial> = files.into_iter().flat_map(scenario_trials).collect();
    let cli: [NamedTest; 23] = [
        ("cli::run_option_files", run_option_files),
        (
            "cli::probe_that_cannot_run_is_an_error",
            probe_that_cannot_run_is_an_error,
        ),
        (
            "cli::keep_prints_before_holding",
            keep_prints_before_holding,
        ),
        ("cli::invalid_exit_2", invalid_exit_2),
        ("cli::unsupported_exit_3", unsupported_exit_3),
        ("cli::up_exec_down", up_exec_down),
        ("cli::up_step_down", up_step_down),
        ("cli::pcap_read_by_tshark", pcap_read_by_tshark),
        (
            "cli::encrypted_overlay_read_by_tshark",
            encrypted_overlay_read_by_tshark,
        ),
        ("cli::encrypted_refused_exit_3", encrypted_refused_exit_3),
        ("cross::iperf3_through_engine", iperf3_through_engine),
        ("engine::two_workers", two_engine_workers),
        ("engine::offload", offload_fast_path),
        ("cross::dig_external_dns", dig_external_dns),
        (
            "cleanup::panic_mid_run_leaves_nothing",
            panic_mid_run_leaves_nothing,
        ),
        (
            "cleanup::sigint_mid_run_leaves_nothing",
            sigint_mid_run_leaves_nothing,
        ),
        ("cleanup::sigkill_then_cleanup", sigkill_then_cleanup),
        (
            "cleanup::docker_sigint_mid_run_leaves_nothing",
            docker_sigint_mid_run_leaves_nothing,
        ),
        (
            "cleanup::docker_sigkill_then_cleanup",
            docker_sigkill_then_cleanup,
        ),
        (
            "cleanup::docker_three_machines_sigkill_then_cleanup",
            docker_three_machines_sigkill_then_cleanup,
        ),
        (
            "cleanup::docker_three_machines_sigint_leaves_nothing",
            docker_three_machines_sigint_leaves_nothing,
        ),
        ("cli::docker_hosts_mapped", docker_hosts_mapped),
        ("cli::docker_hosts_tcp_tls", docker_hosts_tcp_tls),
    ];
    trials.extend(cli.into_iter().map(|(n, f)| Trial::test(n, f)));
    // These never build a world: they run without root too.
    let rootless = [
        "cli::invalid_exit_2",
        "cli::unsupported_exit_3",
        "cli::encrypted_refused_exit_3",
    ];
    if !root {
        if require_root() {
            trials = trials
                .into_iter()
                .map(|t| {
                    if rootless.contains(&t.name()) {
                        return t;
                    }
                    let name = t.name().to_string();
                    Trial::test(name, || {
                        Err("VSWITCH_REQUIRE_ROOT=1 but this process cannot create network namespaces".into())
                    })
                })
                .collect();
        } else {
            vswitch::prereq::skip(
                "scenarios (every trial that builds a world)",
                "needs root (network namespaces, TAP devices)",
            );
            trials = trials
                .into_iter()
                .map(|t| {
                    let skip = !rootless.contains(&t.name());
                    t.with_ignored_flag(skip)
                })
                .collect();
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    // What was not tested, and why: this binary's skips and those the
    // library's unit tests recorded earlier in the same `cargo test`.
    let skips = vswitch::prereq::take_skips();
    if !skips.is_empty() {
        eprintln!("\nnot tested in this run ({} named skips):", skips.len());
        for s in &skips {
            eprintln!("  skip {s}");
        }
    }
    conclusion.exit();
}
