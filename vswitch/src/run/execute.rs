//! One scenario end to end: validate, check the backend can build it,
//! record the run, build, run the checks, tear down. Exit statuses follow the
//! format: 0 all held, 1 a check did not hold, 2 invalid input, 3 the
//! backend cannot build something here.

use std::path::Path;
use std::time::Instant;

use crate::backend::{self, BuildOptions, World, namespace_names};
use crate::run::Report;
use crate::scenario::{self, plan::BackendKind, plan::Plan};
use crate::world::{self, RunId, RunRecord};

/// Exit status: every check held.
pub const EXIT_OK: i32 = 0;
/// Exit status: a check did not hold (or the world could not be built).
pub const EXIT_FAILED: i32 = 1;
/// Exit status: invalid scenario or command line.
pub const EXIT_INVALID: i32 = 2;
/// Exit status: the backend cannot build something on this machine.
pub const EXIT_UNSUPPORTED: i32 = 3;

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Backend.
    pub backend: BackendKind,
    /// Build options.
    pub build: BuildOptions,
    /// Keep the world up after the checks until a signal (Ctrl-C, `vswitch
    /// down`) arrives, then tear it down and return the run's status.
    pub keep: bool,
    /// Print progress on standard error.
    pub progress: bool,
    /// Use this run id instead of a fresh one (tests look for its leftovers).
    pub run_id: Option<RunId>,
}

/// What a run produced.
#[derive(Debug)]
pub struct Execution {
    /// Exit status for this scenario.
    pub code: i32,
    /// The report (None when the file was invalid).
    pub report: Option<Report>,
    /// The validation error, when invalid.
    pub error: Option<String>,
}

fn empty_report(path: &Path, plan: &Plan, backend: BackendKind, run: &RunId) -> Report {
    Report {
        scenario: path.display().to_string(),
        title: plan.name.clone(),
        backend: backend.to_string(),
        run_id: run.to_string(),
        passed: 0,
        failed: 0,
        errors: 0,
        skipped: 0,
        setup_ms: 0,
        teardown_ms: 0,
        checks: Vec::new(),
        unsupported: Vec::new(),
        steps: Vec::new(),
        metrics: serde_json::Value::Null,
        chosen_ports: super::report::ChosenPort::of(plan),
    }
}

/// The run id of a sim run: `vsw` + 6 hex digits of a hash of the file
/// name and the seed (FNV-1a), the same run after run.
fn sim_run_id(path: &Path, plan: &Plan) -> RunId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let text = format!("{}\0{}", path.display(), plan.seed);
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    RunId::parse(&format!("vsw{:06x}", h & 0xff_ffff)).unwrap_or_default()
}

/// Test hook: `VSWITCH_FAULT=panic-after-build` panics once the world is up,
/// so tests can prove that a panicking run leaves nothing behind.
fn inject_fault(point: &str) {
    if std::env::var("VSWITCH_FAULT").as_deref() == Ok(point) {
        panic!("VSWITCH_FAULT={point}: injected failure");
    }
}

/// Runs one scenario file.
pub fn execute(path: &Path, opts: &RunOptions) -> Execution {
    let plan = match scenario::load_file(path) {
        Ok(p) => p,
        Err(e) => {
            return Execution {
                code: EXIT_INVALID,
                report: None,
                error: Some(e.to_string()),
            };
        }
    };
    execute_plan(path, &plan, opts)
}

/// Runs one validated plan.
pub fn execute_plan(path: &Path, plan: &Plan, opts: &RunOptions) -> Execution {
    execute_plan_with(path, plan, opts, &|_| {})
}

/// [`execute_plan`], calling `checked` with the report once the checks ran
/// and before the world is held (`keep`) or torn down, so the caller can
/// show the results of a world that stays up.
pub fn execute_plan_with(
    path: &Path,
    plan: &Plan,
    opts: &RunOptions,
    checked: &dyn Fn(&Report),
) -> Execution {
    let sim = opts.backend == BackendKind::Sim;
    let run = match (&opts.run_id, sim) {
        (Some(r), _) => r.clone(),
        // Nothing of a sim run outlives the process, and the same file and
        // seed give the same report: its id is made from them.
        (None, true) => sim_run_id(path, plan),
        (None, false) => RunId::new(),
    };
    let mut report = empty_report(path, plan, opts.backend, &run);
    let unsupported = backend::unsupported(plan, opts.backend);
    if !unsupported.is_empty() {
        report.skipped = plan.checks.len();
        report.unsupported = unsupported;
        return Execution {
            code: EXIT_UNSUPPORTED,
            report: Some(report),
            error: None,
        };
    }
    let record = RunRecord {
        id: run.clone(),
        pid: std::process::id(),
        scenario: path.display().to_string(),
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "stdin".into()),
        backend: opts.backend.to_string(),
        namespaces: namespace_names(&run, plan, opts.backend),
        kept: false,
    };
    if let (false, Err(e)) = (sim, record.save()) {
        return Execution {
            code: EXIT_FAILED,
            report: Some(report),
            error: Some(format!(
                "cannot write run record under {}: {e}",
                world::RUN_DIR
            )),
        };
    }
    let _live = (!sim).then(|| world::register_live(&run));
    let progress = |s: &str| {
        if opts.progress {
            eprintln!("vswitch [{run}] {s}");
        }
    };
    let t0 = Instant::now();
    let built = World::build(&run, plan, opts.backend, &opts.build, &progress);
    report.setup_ms = t0.elapsed().as_millis() as u64;
    let world = match built {
        Ok(w) => w,
        Err(e) => {
            if !sim {
                world::remove_run(&run);
            }
            report.skipped = plan.checks.len();
            return Execution {
                code: EXIT_FAILED,
                report: Some(report),
                error: Some(format!("building the world failed: {e}")),
            };
        }
    };
    inject_fault("panic-after-build");
    progress(&format!(
        "world up in {} ms; running {} checks",
        report.setup_ms,
        plan.checks.len()
    ));
    let bar = opts
        .progress
        .then(|| crate::progress::Progress::start("checks", plan.checks.len() as u64));
    let show = |r: &crate::run::CheckResult| {
        if let Some(bar) = &bar {
            bar.inc();
            bar.println(&format!(
                "vswitch [{run}]   check {} {} {} → {}: {} ({})",
                r.index,
                r.kind,
                r.from,
                r.to,
                r.observed,
                if r.pass { "pass" } else { "FAIL" }
            ));
        }
    };
    let mut world = world;
    (report.checks, report.steps) = crate::run::steps::run_with_steps(&mut world, plan, &show);
    if let Some(bar) = bar {
        bar.finish();
    }
    report.tally();
    if opts.keep {
        world::prepare_hold();
    }
    checked(&report);
    if opts.keep {
        let mut kept = record.clone();
        kept.kept = true;
        if !sim {
            let _ = kept.save();
        }
        if sim {
            eprintln!(
                "vswitch [{run}] sim world held in this process (it has no namespaces for `vswitch exec`); Ctrl-C ends it."
            );
        } else {
            eprintln!(
                "vswitch [{run}] world kept up; `vswitch exec NODE -- CMD` works in it. Ctrl-C (or `vswitch down {run}`) tears it down."
            );
        }
        world::hold_until_signal();
        progress("tearing down");
    }
    let t1 = Instant::now();
    report.metrics = world.teardown();
    if !sim {
        world::remove_run(&run);
    }
    report.teardown_ms = t1.elapsed().as_millis() as u64;
    let code = if report.all_held() {
        EXIT_OK
    } else {
        EXIT_FAILED
    };
    Execution {
        code,
        report: Some(report),
        error: None,
    }
}

/// Tests: runs `plan` on the userspace backend with captures into a fresh
/// temporary directory named after `name`, asserts that every check held,
/// and returns that directory (the caller removes it).
#[cfg(test)]
pub(crate) fn run_captured(name: &str, plan: &Plan) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vswitch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ex = execute_plan(
        Path::new(name),
        plan,
        &RunOptions {
            backend: crate::scenario::plan::BackendKind::Userspace,
            build: crate::backend::BuildOptions {
                pcap_dir: Some(dir.clone()),
                ..crate::backend::BuildOptions::default()
            },
            keep: false,
            progress: false,
            run_id: Some(crate::world::RunId::new()),
        },
    );
    assert_eq!(ex.code, 0, "{:?}", ex.report.map(|r| r.table()));
    dir
}
