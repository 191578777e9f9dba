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
    std::env::var("VSWITCH_REQUIRE_ROOT").as_deref() == Ok("1")
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
    let run = RunId::new();
    let opts = RunOptions {
        backend,
        build: BuildOptions::default(),
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
    // backend (or any backend) is the documented departure, not a failure.
    let known = vswitch::run::compare::known_differences(plan);
    let excused = |i: usize| {
        known
            .iter()
            .any(|(k, b)| *k == i && b.as_deref().is_none_or(|b| b == backend.to_string()))
    };
    let failing: Vec<usize> = report
        .checks
        .iter()
        .filter(|c| !c.pass && !excused(c.index))
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
    for backend in [
        BackendKind::Userspace,
        BackendKind::Kernel,
        BackendKind::Docker,
    ] {
        let why = vswitch::backend::unsupported(&plan, backend);
        if why.is_empty() {
            able.push(backend);
        } else if require_root()
            && backend == BackendKind::Docker
            && vswitch::backend::docker::daemon_reachable().is_err()
        {
            // Under CI the oracle must be there (.ci/run starts it).
            let name = format!("{backend}::{stem}");
            let msg = why.join("; ");
            trials.push(Trial::test(name, move || Err(msg.into())));
        } else {
            // An unsupported kernel or engine feature stays a named skip.
            let name = format!("{backend}::{stem}");
            eprintln!("skip {name}: {}", why.join("; "));
            trials.push(Trial::test(name, || Ok(())).with_ignored_flag(true));
        }
    }
    if able.is_empty() {
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

// The userspace backend builds ipvlan (issue 7); IPv6 is still refused.
const NEEDS_IPV6: &str = r#"
name = "needs IPv6"
[[network]]
name = "v"
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
        &["run", p.to_str().unwrap()],
        &[("VSWITCH_RUN_ID", run.as_str())],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(3) || !err.contains("IPv6 not supported yet") {
        return Err(format!("expected exit 3 naming IPv6, got {:?}: {err}", out.status).into());
    }
    assert_no_leftovers(&run)?;
    let out = vswitch(&["run", "--strict", p.to_str().unwrap()], &[]);
    if out.status.code() != Some(1) {
        return Err(format!("--strict: expected exit 1, got {:?}", out.status).into());
    }
    Ok(())
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

/// A child process that is killed and reaped however the test ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_long_on(run: &RunId, backend: &str) -> Reaped {
    let p = write_temp(&format!("long-{run}.toml"), LONG);
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
    let mut child = spawn_long_on(&run, backend);
    wait_for("the world to come up", up_within, || is_up(&run))?;
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
fn have_daemon() -> Result<bool, Failed> {
    match vswitch::backend::docker::daemon_reachable() {
        Ok(_) => Ok(true),
        Err(e) if require_root() => Err(format!("{e}").into()),
        Err(e) => {
            eprintln!("skip: {e}");
            Ok(false)
        }
    }
}

/// A docker world is up: its lan and both containers' namespaces exist.
fn docker_world_is_up(run: &RunId) -> bool {
    let ns = vswitch::netns::list(&format!("{run}-"));
    ns.len() == 3 && ns.iter().any(|n| n.ends_with("-c-b"))
}

/// Ctrl-C during a docker run removes its containers, networks, uplink and
/// namespaces (the signal path), exit 130.
fn docker_sigint_mid_run_leaves_nothing() -> TestResult {
    if !have_daemon()? {
        return Ok(());
    }
    sigint_on("docker", Duration::from_secs(120), docker_world_is_up)
}

/// SIGKILL during a docker run leaves containers, networks, the uplink and
/// namespaces; `vswitch cleanup` removes them.
fn docker_sigkill_then_cleanup() -> TestResult {
    if !have_daemon()? {
        return Ok(());
    }
    sigkill_on("docker", Duration::from_secs(120), docker_world_is_up)
}

/// `up` keeps a world, `exec` works inside it with Docker's resolv.conf, `down` removes it.
fn up_exec_down() -> TestResult {
    if !have_tool("ping")? {
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
    if !have_tool("ping")? {
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

fn exec_in(run: &RunId, node: &str, cmd: &[&str]) -> Output {
    let mut args = vec!["exec", "--world", run.as_str(), node, "--"];
    args.extend_from_slice(cmd);
    vswitch(&args, &[])
}

fn have_tool(tool: &str) -> Result<bool, Failed> {
    if Command::new(tool).arg("--version").output().is_ok() {
        return Ok(true);
    }
    if require_root() {
        return Err(format!("{tool} is not installed (.ci/run installs it)").into());
    }
    eprintln!("skip: {tool} not installed");
    Ok(false)
}

/// Real iperf3 between two containers through the engine (TSO path).
fn iperf3_through_engine() -> TestResult {
    if !have_tool("iperf3")? {
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
    if !have_tool("dig")? {
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

/// `--pcap` writes a file per port that tshark decodes.
fn pcap_read_by_tshark() -> TestResult {
    if Command::new("tshark").arg("--version").output().is_err() {
        if require_root() {
            return Err("tshark is not installed (.ci/run installs it)".into());
        }
        eprintln!("skip pcap_read_by_tshark: tshark not installed");
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("vswitch-pcap-{}", std::process::id()));
    let quick = root_dir().join("scenarios/quickstart.toml");
    let out = vswitch(
        &[
            "run",
            "--quiet",
            "--pcap",
            dir.to_str().unwrap(),
            quick.to_str().unwrap(),
        ],
        &[],
    );
    if !out.status.success() {
        return Err(format!("run failed: {}", String::from_utf8_lossy(&out.stdout)).into());
    }
    let file = dir.join("client-eth0.pcap");
    let t = Command::new("tshark")
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
            "tshark saw no ICMP/ARP replies in {}: {t:?}",
            file.display()
        )
        .into());
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
    let cli: [NamedTest; 12] = [
        ("cli::invalid_exit_2", invalid_exit_2),
        ("cli::unsupported_exit_3", unsupported_exit_3),
        ("cli::up_exec_down", up_exec_down),
        ("cli::up_step_down", up_step_down),
        ("cli::pcap_read_by_tshark", pcap_read_by_tshark),
        ("cross::iperf3_through_engine", iperf3_through_engine),
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
    ];
    trials.extend(cli.into_iter().map(|(n, f)| Trial::test(n, f)));
    // These two never build a world: they run without root too.
    let rootless = ["cli::invalid_exit_2", "cli::unsupported_exit_3"];
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
            eprintln!("scenario tests need root (network namespaces, TAP devices): ignored");
            trials = trials
                .into_iter()
                .map(|t| {
                    let skip = !rootless.contains(&t.name());
                    t.with_ignored_flag(skip)
                })
                .collect();
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
