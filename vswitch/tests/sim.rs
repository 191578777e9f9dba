//! The sim backend (`--backend sim`) end to end, without root:
//!
//! - `sim::<scenario>`: every file of `scenarios/` on the sim; its checks
//!   must hold (a check's `known_difference` naming userspace or sim
//!   excuses it). A scenario the sim refuses is a named skip.
//! - `compare::<scenario>`: the sim and the userspace backend must observe
//!   the same thing check by check (`vswitch compare --backends
//!   sim,userspace`). The userspace side needs root: without it these are
//!   named skips, failures under `VSWITCH_REQUIRE_ROOT=1`.
//! - `determinism::<scenario>`: two runs give byte-identical report JSON
//!   (apart from wall times) and pcaps.
//! - `unprivileged::setpriv`: the binary as user `nobody` through
//!   `setpriv`, every check held.
//! - `scale::*`: 100 containers built, checked and torn down; 10 000
//!   containers built (figures printed).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use libtest_mimic::{Arguments, Failed, Trial};

use vswitch::backend::BuildOptions;
use vswitch::run::compare::{BackendRun, Comparison, known_differences, names_backend};
use vswitch::run::execute::{Execution, RunOptions, execute_plan};
use vswitch::scenario::{self, plan::BackendKind, plan::Plan};

type TestResult = Result<(), Failed>;

fn root_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(path: &Path, plan: &Plan, backend: BackendKind, pcap: Option<PathBuf>) -> Execution {
    let opts = RunOptions {
        backend,
        build: BuildOptions {
            pcap_dir: pcap,
            ..BuildOptions::default()
        },
        keep: false,
        progress: false,
        run_id: None,
    };
    execute_plan(path, plan, &opts)
}

/// The report as a run gives it; Err when a check failed that no known
/// difference of this backend excuses.
fn checked(path: &Path, plan: &Plan, backend: BackendKind) -> Result<BackendRun, Failed> {
    let ex = run(path, plan, backend, None);
    let report = ex.report.ok_or("no report")?;
    if let Some(e) = ex.error {
        return Err(format!("{backend}: {e}\n{}", report.table()).into());
    }
    let known = known_differences(plan);
    let name = backend.to_string();
    let failing: Vec<usize> = report
        .checks
        .iter()
        .filter(|c| {
            let excused = known.iter().any(|(k, b)| {
                *k == c.index && b.as_deref().is_some_and(|b| names_backend(b, &name))
            });
            !c.pass && (c.is_error() || !excused)
        })
        .map(|c| c.index)
        .collect();
    if !failing.is_empty() || report.checks.len() != plan.checks.len() {
        return Err(format!(
            "{backend}: exit {}, failing checks {failing:?}:\n{}",
            ex.code,
            report.table()
        )
        .into());
    }
    Ok(BackendRun {
        backend: name,
        code: ex.code,
        report: Some(report),
        error: None,
    })
}

fn scenario_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root_dir().join("scenarios"))
        .expect("scenarios/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// A trial that is a named skip.
fn skipped(name: String, why: &str) -> Trial {
    vswitch::prereq::record_skip(&name, why);
    Trial::test(name, || Ok(())).with_ignored_flag(true)
}

fn scenario_trials(path: PathBuf, root: bool) -> Vec<Trial> {
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    let Ok(plan) = scenario::load_file(&path) else {
        return vec![Trial::test(format!("sim::{stem}"), || {
            Err("invalid scenario".into())
        })];
    };
    let why = vswitch::backend::unsupported(&plan, BackendKind::Sim);
    if !why.is_empty() {
        let why = why.join("; ");
        return vec![
            skipped(format!("sim::{stem}"), &why),
            skipped(format!("compare::{stem}"), &why),
        ];
    }
    let mut trials = Vec::new();
    let (p, pl) = (path.clone(), plan.clone());
    trials.push(Trial::test(format!("sim::{stem}"), move || {
        checked(&p, &pl, BackendKind::Sim).map(|_| ())
    }));
    let name = format!("compare::{stem}");
    let user_why = vswitch::backend::unsupported(&plan, BackendKind::Userspace);
    if !user_why.is_empty() {
        trials.push(skipped(name, &user_why.join("; ")));
    } else if !root && !vswitch::prereq::required() {
        trials.push(skipped(
            name,
            "the userspace side needs root (network namespaces, TAP devices)",
        ));
    } else if !root {
        trials.push(Trial::test(name, || {
            Err("VSWITCH_REQUIRE_ROOT=1 but this process cannot create network namespaces".into())
        }));
    } else {
        trials.push(Trial::test(name, move || compare(&path, &plan)));
    }
    trials
}

/// `vswitch compare --backends sim,userspace` for one file.
fn compare(path: &Path, plan: &Plan) -> TestResult {
    let runs = vec![
        checked(path, plan, BackendKind::Sim)?,
        checked(path, plan, BackendKind::Userspace)?,
    ];
    let cmp = Comparison::new(&path.display().to_string(), &runs, &known_differences(plan));
    if cmp.has_disagreement() {
        return Err(format!("sim and userspace disagree:\n{}", cmp.table()).into());
    }
    Ok(())
}

/// The report JSON without its wall times.
fn without_wall_times(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("setup_ms");
        o.remove("teardown_ms");
        if let Some(serde_json::Value::Array(checks)) = o.get_mut("checks") {
            for c in checks {
                if let Some(c) = c.as_object_mut() {
                    c.remove("duration_ms");
                }
            }
        }
        // Step times stay: on the sim they are virtual time.
    }
    v
}

/// Two runs of one file: identical report JSON (apart from wall times)
/// and identical pcaps, byte for byte.
fn determinism(file: &str) -> TestResult {
    let path = root_dir().join("scenarios").join(file);
    let plan = scenario::load_file(&path).map_err(|e| e.to_string())?;
    let mut outs = Vec::new();
    for k in 0..2 {
        let dir =
            std::env::temp_dir().join(format!("vswitch-sim-det-{}-{file}-{k}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let ex = run(&path, &plan, BackendKind::Sim, Some(dir.clone()));
        let report = ex.report.ok_or("no report")?;
        let json =
            serde_json::to_string_pretty(&without_wall_times(serde_json::to_value(&report)?))?;
        let mut pcaps: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap_or_default(),
                )
            })
            .collect();
        pcaps.sort();
        let _ = std::fs::remove_dir_all(&dir);
        if pcaps.is_empty() {
            return Err("no pcaps written".into());
        }
        outs.push((json, pcaps));
    }
    if outs[0].0 != outs[1].0 {
        return Err(format!("the reports differ:\n{}\n---\n{}", outs[0].0, outs[1].0).into());
    }
    for ((n0, b0), (n1, b1)) in outs[0].1.iter().zip(&outs[1].1) {
        if n0 != n1 || b0 != b1 {
            return Err(format!("pcap {n0} differs between runs").into());
        }
    }
    if outs[0].1.len() != outs[1].1.len() {
        return Err("the runs wrote different pcap files".into());
    }
    Ok(())
}

/// The sim as `nobody` (uid/gid 65534, no groups) through `setpriv`.
fn unprivileged() -> TestResult {
    let Some(setpriv) = ["/usr/bin/setpriv", "/bin/setpriv"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
    else {
        if vswitch::prereq::required() {
            return Err("setpriv is missing (util-linux)".into());
        }
        vswitch::prereq::skip("unprivileged::setpriv", "setpriv is missing (util-linux)");
        return Ok(());
    };
    if !nix::unistd::Uid::effective().is_root() {
        // Already unprivileged: run directly.
        return run_bin(Command::new(env!("CARGO_BIN_EXE_vswitch")));
    }
    // A copy of the binary and scenario that nobody can read and run.
    let dir = std::env::temp_dir().join(format!("vswitch-sim-nobody-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let bin = dir.join("vswitch");
    std::fs::copy(env!("CARGO_BIN_EXE_vswitch"), &bin)?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    let mut c = Command::new(setpriv);
    c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&bin);
    let r = run_bin(c);
    let _ = std::fs::remove_dir_all(&dir);
    r
}

fn run_bin(mut c: Command) -> TestResult {
    let scen = root_dir().join("scenarios");
    let files = [
        "quickstart.toml",
        "dns-names.toml",
        "nat-publish.toml",
        "steps-faults.toml",
    ];
    let dir = std::env::temp_dir();
    let mut args: Vec<String> = vec!["run".into(), "--backend".into(), "sim".into(), "-q".into()];
    for f in files {
        // Readable by anyone: the scenario text on standard input would do too.
        let p = dir.join(format!("vswitch-sim-{f}"));
        std::fs::copy(scen.join(f), &p)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
        args.push(p.display().to_string());
    }
    let out = c
        .args(&args)
        .env_remove("VSWITCH_RUN_ID")
        .current_dir("/")
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "exit {:?}\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.matches(" 0 failed, 0 errors").count() != files.len() {
        return Err(format!("not every file held:\n{text}").into());
    }
    Ok(())
}

/// A world of `n` containers on one bridge, a ping and a tcp check.
fn big_plan(n: usize) -> Plan {
    let mut t =
        String::from("name = \"scale\"\n[[network]]\nname = \"big\"\nsubnet = \"10.128.0.0/16\"\n");
    for i in 0..n {
        t.push_str(&format!(
            "[[container]]\nname = \"c{i}\"\nnetworks = [\"big\"]\nserve = [\"tcp:80\"]\n"
        ));
    }
    t.push_str("[[check]]\nkind = \"ping\"\nfrom = \"c0\"\nto = \"c1\"\nexpect = \"ok\"\n");
    t.push_str(&format!(
        "[[check]]\nkind = \"tcp\"\nfrom = \"c1\"\nto = \"c{}:80\"\nexpect = \"ok\"\n",
        n - 1
    ));
    t.push_str(&format!(
        "[[check]]\nkind = \"ping\"\nfrom = \"host\"\nto = \"c{}\"\nexpect = \"ok\"\n",
        n / 2
    ));
    scenario::parse_str(Path::new("scale.toml"), &t).expect("valid")
}

/// Resident set size of this process, kB.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn scale(n: usize) -> TestResult {
    let plan = big_plan(n);
    let before = rss_kb();
    let t0 = Instant::now();
    let ex = run(Path::new("scale.toml"), &plan, BackendKind::Sim, None);
    let took = t0.elapsed();
    let report = ex.report.ok_or("no report")?;
    eprintln!(
        "sim scale: {n} containers built, {} checks run, torn down in {:.3} s wall (setup {} ms, teardown {} ms); peak RSS before {} MB, after {} MB",
        report.checks.len(),
        took.as_secs_f64(),
        report.setup_ms,
        report.teardown_ms,
        before / 1024,
        rss_kb() / 1024
    );
    if ex.code != 0 {
        return Err(format!("exit {}:\n{}", ex.code, report.table()).into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let root = vswitch::netns::can_create();
    let mut trials: Vec<Trial> = scenario_files()
        .into_iter()
        .flat_map(|p| scenario_trials(p, root))
        .collect();
    for f in [
        "quickstart.toml",
        "steps-faults.toml",
        "dns-names.toml",
        "nat-publish.toml",
        // Path MTUs learned and the mesh's on-link route, in virtual time.
        "overlay-pmtu.toml",
        "swarm-routing-mesh.toml",
    ] {
        let stem = f.trim_end_matches(".toml").to_string();
        trials.push(Trial::test(format!("determinism::{stem}"), move || {
            determinism(f)
        }));
    }
    trials.push(Trial::test("unprivileged::setpriv", unprivileged));
    trials.push(Trial::test("scale::containers_100", || scale(100)));
    trials.push(Trial::test("scale::containers_10000", || scale(10_000)));
    let conclusion = libtest_mimic::run(&args, trials);
    let skips = vswitch::prereq::take_skips();
    if !skips.is_empty() {
        eprintln!("\nnot tested in this run ({} named skips):", skips.len());
        for s in &skips {
            eprintln!("  skip {s}");
        }
    }
    conclusion.exit();
}
