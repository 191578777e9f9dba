//! `vswitch bench`: a scenario's throughput checks measured on several data
//! paths in one sitting, runs alternating between paths so that drift on
//! the machine hits all alike.
//!
//! The paths are backends building the scenario (the engine, the kernel)
//! and [`baseline`] peers (a bare veth pair, a Linux bridge, OVS userspace)
//! that carry the same load between two namespaces of their own. Figures
//! come from iperf3 when it is installed (what users trust), else from the
//! built-in generator, and the report says which. The result is a
//! [`BenchReport`]: a text table, JSON (`--json`) and an SVG chart
//! (`--plot`, see [`plot`]).

pub mod baseline;
pub mod plot;

use std::path::Path;

use serde::Serialize;

use crate::probe::{self, Load, Ports};
use crate::run::execute::{RunOptions, execute_plan};
use crate::scenario::plan::{BackendKind, CheckKind, Generator, Plan, Proto, THROUGHPUT_PORT};
use crate::sys::uring::{TapIo, TapWriter};

pub use baseline::Baseline;

/// A data path measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// The scenario built by a backend.
    Backend(BackendKind),
    /// A peer carrying the same load between two namespaces.
    Baseline(Baseline),
}

impl std::fmt::Display for PathKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathKind::Backend(b) => write!(f, "{b}"),
            PathKind::Baseline(b) => write!(f, "{b}"),
        }
    }
}

/// What `vswitch bench` was asked for.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Rounds; every path runs once per round.
    pub repeat: u32,
    /// Backends building the scenario.
    pub backends: Vec<BackendKind>,
    /// Peers measured beside them.
    pub baselines: Vec<Baseline>,
    /// iperf3 or the built-in generator.
    pub generator: Generator,
    /// Seconds per measurement instead of each check's own.
    pub seconds: Option<u32>,
    /// Parallel streams instead of each check's own.
    pub streams: Option<u32>,
    /// Both directions at once (iperf3 only).
    pub bidir: bool,
    /// Say what runs on standard error.
    pub progress: bool,
}

/// iperf3 when it is installed, else the built-in generator.
pub fn default_generator() -> Generator {
    if crate::tools::find("iperf3").is_some() {
        Generator::Iperf3
    } else {
        Generator::Builtin
    }
}

/// One measurement.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sample {
    /// Payload Gbit/s received.
    pub gbps: f64,
    /// Thousand packets per second received.
    pub kpps: f64,
    /// UDP: share of datagrams lost.
    pub loss: Option<f64>,
}

/// Median, minimum and maximum of a figure.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `v` (None when empty).
    pub fn of(v: &[f64]) -> Option<Spread> {
        let mut s: Vec<f64> = v.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        let n = s.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => s[n / 2],
            _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        };
        Some(Spread {
            median,
            min: s[0],
            max: s[n - 1],
        })
    }
}

/// One path's figures for one check.
#[derive(Clone, Debug, Serialize)]
pub struct PathFigures {
    /// `userspace`, `kernel`, `veth`, `bridge`, `ovs`.
    pub path: String,
    /// Every sample, in round order.
    pub samples: Vec<Sample>,
    /// Gbit/s over the samples.
    pub gbps: Option<Spread>,
    /// kpps over the samples.
    pub kpps: Option<Spread>,
    /// Why rounds gave no sample (a refusal, a failed build, a probe error).
    pub errors: Vec<String>,
}

impl PathFigures {
    fn new(path: PathKind) -> PathFigures {
        PathFigures {
            path: path.to_string(),
            samples: Vec::new(),
            gbps: None,
            kpps: None,
            errors: Vec::new(),
        }
    }

    fn summarise(&mut self) {
        let g: Vec<f64> = self.samples.iter().map(|s| s.gbps).collect();
        let k: Vec<f64> = self.samples.iter().map(|s| s.kpps).collect();
        self.gbps = Spread::of(&g);
        self.kpps = Spread::of(&k);
    }

    /// The figure people compare for this protocol: kpps for UDP (small
    /// packets), Gbit/s for TCP.
    pub fn headline(&self, proto: Proto) -> Option<Spread> {
        match proto {
            Proto::Udp => self.kpps,
            Proto::Tcp => self.gbps,
        }
    }
}

/// One throughput check measured on every path.
#[derive(Clone, Debug, Serialize)]
pub struct CheckFigures {
    /// The check's name (or its kind).
    pub name: String,
    /// `tcp` / `udp`.
    pub proto: Proto,
    /// UDP payload bytes.
    pub size: u16,
    /// Parallel streams.
    pub streams: u32,
    /// Both directions at once.
    pub bidir: bool,
    /// Seconds per measurement.
    pub seconds: u32,
    /// Per path, in the order they ran.
    pub paths: Vec<PathFigures>,
}

impl CheckFigures {
    /// `first path / path` of the headline figure, for every other path.
    pub fn ratios(&self) -> Vec<(String, Option<f64>)> {
        let Some(first) = self.paths.first() else {
            return Vec::new();
        };
        let f = first.headline(self.proto).map(|s| s.median);
        self.paths[1..]
            .iter()
            .map(|p| {
                let r = match (f, p.headline(self.proto)) {
                    (Some(a), Some(b)) if b.median > 0.0 => Some(a / b.median),
                    _ => None,
                };
                (p.path.clone(), r)
            })
            .collect()
    }
}

/// One scenario's checks.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioFigures {
    /// Scenario file.
    pub file: String,
    /// Its throughput checks.
    pub checks: Vec<CheckFigures>,
}

/// Everything one `vswitch bench` measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// When (UTC, RFC 3339).
    pub date: String,
    /// `git describe` of the working tree, when there is one.
    pub commit: Option<String>,
    /// CPUs online.
    pub cpus: usize,
    /// What measured.
    pub generator: Generator,
    /// How the userspace engine's TAP writes reach the kernel in this
    /// process: io_uring batches, or one `writev` per frame (no io_uring
    /// here, or `VSWITCH_TAP_IO=writev`).
    pub tap_io: TapIo,
    /// Threads the userspace engine serves its ports with (one per two
    /// CPUs unless `VSWITCH_ENGINE_THREADS` says; an engine never runs
    /// more than it has ports).
    pub engine_workers: usize,
    /// Whether the userspace engine hands container-to-container forwarding
    /// to its kernel fast path (`VSWITCH_OFFLOAD`, see
    /// `backend::userspace::offload`).
    pub offload: String,
    /// Rounds.
    pub repeat: u32,
    /// Per scenario.
    pub scenarios: Vec<ScenarioFigures>,
    /// Exit status: 0 when every path gave every sample.
    #[serde(skip)]
    pub code: i32,
}

/// The throughput checks of `plan`, each set to what `opts` asks for.
fn throughput_only(plan: &Plan, opts: &BenchOptions) -> Plan {
    let mut only = plan.clone();
    only.checks
        .retain(|c| matches!(c.kind, CheckKind::Throughput { .. }));
    only.steps.clear();
    for (i, c) in only.checks.iter_mut().enumerate() {
        c.index = i;
        c.after = None;
        if let CheckKind::Throughput {
            seconds,
            streams,
            generator,
            bidir,
            ..
        } = &mut c.kind
        {
            *seconds = opts.seconds.unwrap_or(*seconds);
            *streams = opts.streams.unwrap_or(*streams);
            *generator = opts.generator;
            *bidir = opts.bidir;
        }
        c.timeout = std::time::Duration::from_secs(u64::from(opts.seconds.unwrap_or(30)) + 20)
            .max(c.timeout);
    }
    only
}

fn check_figures(plan: &Plan, paths: &[PathKind]) -> Vec<CheckFigures> {
    plan.checks
        .iter()
        .filter_map(|c| match &c.kind {
            CheckKind::Throughput {
                proto,
                seconds,
                streams,
                size,
                bidir,
                ..
            } => Some(CheckFigures {
                name: c.name.clone().unwrap_or_else(|| c.kind.name().to_string()),
                proto: *proto,
                size: *size,
                streams: *streams,
                bidir: *bidir,
                seconds: *seconds,
                paths: paths.iter().map(|&p| PathFigures::new(p)).collect(),
            }),
            _ => None,
        })
        .collect()
}

/// One round of the scenario on `backend`: a sample (or an error) per check.
fn backend_round(file: &Path, plan: &Plan, backend: BackendKind) -> Vec<Result<Sample, String>> {
    let opts = RunOptions {
        backend,
        build: Default::default(),
        keep: false,
        progress: false,
        run_id: None,
    };
    let ex = execute_plan(file, plan, &opts);
    let Some(r) = ex.report else {
        let why = ex.error.unwrap_or_else(|| "no report".into());
        return vec![Err(why); plan.checks.len()];
    };
    if !r.unsupported.is_empty() {
        return vec![Err(r.unsupported.join("; ")); plan.checks.len()];
    }
    if let Some(e) = ex.error {
        return vec![Err(e); plan.checks.len()];
    }
    let mut out = vec![Err("not run".to_string()); plan.checks.len()];
    for c in &r.checks {
        out[c.index] = match (c.gbps, c.kpps) {
            (Some(gbps), Some(kpps)) => Ok(Sample {
                gbps,
                kpps,
                loss: c.loss,
            }),
            _ => Err(format!("{}: {}", c.observed, c.detail)),
        };
    }
    out
}

/// One round of every check on a baseline pair built for the round.
fn baseline_round(plan: &Plan, b: Baseline) -> Vec<Result<Sample, String>> {
    let pair = match baseline::build(b) {
        Ok(p) => p,
        Err(e) => return vec![Err(e.to_string()); plan.checks.len()],
    };
    plan.checks
        .iter()
        .map(|c| {
            let CheckKind::Throughput {
                to,
                proto,
                seconds,
                streams,
                size,
                generator,
                bidir,
                ..
            } = &c.kind
            else {
                return Err("not a throughput check".into());
            };
            let port = to.port.unwrap_or(THROUGHPUT_PORT);
            let ports = Ports {
                listen: port,
                connect: port,
            };
            let load = Load {
                proto: *proto,
                seconds: f64::from(*seconds),
                streams: *streams,
                udp_size: *size,
                bidir: *bidir,
            };
            let (s, r, dst) = (&pair.sender, &pair.receiver, pair.dst());
            let t = match generator {
                Generator::Iperf3 => probe::iperf3(s, r, dst, ports, &load),
                Generator::Builtin => probe::throughput(s, r, dst, ports, &load),
            };
            t.map(|t| Sample {
                gbps: t.gbps,
                kpps: t.kpps,
                loss: t.loss,
            })
            .map_err(|e| e.to_string())
        })
        .collect()
}

/// Measures every throughput check of every file on every path, `repeat`
/// rounds, paths alternating within each round. Files that do not load
/// are reported on standard error and counted in the exit status.
pub fn bench(files: &[(std::path::PathBuf, Plan)], opts: &BenchOptions) -> BenchReport {
    let paths: Vec<PathKind> = opts
        .backends
        .iter()
        .map(|&b| PathKind::Backend(b))
        .chain(opts.baselines.iter().map(|&b| PathKind::Baseline(b)))
        .collect();
    let mut report = BenchReport {
        date: chrono_now(),
        commit: git_describe(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        generator: opts.generator,
        tap_io: TapWriter::new(1).io(),
        engine_workers: crate::backend::userspace::io::workers(),
        offload: crate::backend::userspace::offload::Mode::from_env().effective(),
        repeat: opts.repeat,
        scenarios: Vec::new(),
        code: 0,
    };
    for (file, plan) in files {
        let only = throughput_only(plan, opts);
        if only.checks.is_empty() {
            eprintln!("{}: no throughput checks", file.display());
            continue;
        }
        let mut checks = check_figures(&only, &paths);
        let bar = crate::progress::Progress::start(
            "bench runs",
            u64::from(opts.repeat.max(1)) * paths.len() as u64,
        );
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        for round in 1..=opts.repeat.max(1) {
            for (pi, &p) in paths.iter().enumerate() {
                bar.inc();
                if opts.progress && !(tty && crate::progress::enabled()) {
                    eprintln!(
                        "vswitch bench: {} round {round}/{} on {p}",
                        file.display(),
                        opts.repeat
                    );
                }
                let samples = match p {
                    PathKind::Backend(b) => backend_round(file, &only, b),
                    PathKind::Baseline(b) => baseline_round(&only, b),
                };
                for (c, s) in checks.iter_mut().zip(samples) {
                    match s {
                        Ok(s) => c.paths[pi].samples.push(s),
                        Err(e) => {
                            if !c.paths[pi].errors.contains(&e) {
                                c.paths[pi].errors.push(e);
                            }
                        }
                    }
                }
            }
        }
        bar.finish();
        for c in &mut checks {
            for p in &mut c.paths {
                p.summarise();
                if !p.errors.is_empty() {
                    report.code = 1;
                }
            }
        }
        report.scenarios.push(ScenarioFigures {
            file: file.display().to_string(),
            checks,
        });
    }
    report
}

/// The report as the text table `vswitch bench` prints.
pub fn to_text(r: &BenchReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "measured with {} ({} rounds, paths alternating; {} CPUs; engine: {} worker(s), TAP writes {}, offload {}; {}{})",
        r.generator,
        r.repeat,
        r.cpus,
        r.engine_workers,
        r.tap_io.as_str(),
        r.offload,
        r.date,
        r.commit
            .as_deref()
            .map(|c| format!(", {c}"))
            .unwrap_or_default()
    );
    for s in &r.scenarios {
        let _ = writeln!(out, "{}", s.file);
        for c in &s.checks {
            let load = match c.proto {
                Proto::Tcp => format!("tcp, {} stream(s)", c.streams),
                Proto::Udp => format!("udp {} B, {} stream(s)", c.size, c.streams),
            };
            let bidir = if c.bidir { ", both directions" } else { "" };
            let _ = writeln!(out, "  {} ({load}{bidir}, {} s)", c.name, c.seconds);
            let _ = writeln!(
                out,
                "    {:<10} {:>22} {:>26} {:>7}",
                "path", "Gbit/s median (min–max)", "kpps median (min–max)", "loss"
            );
            for p in &c.paths {
                let fig = |s: Option<Spread>, prec: usize| {
                    s.map(|s| {
                        format!(
                            "{:.prec$} ({:.prec$}–{:.prec$})",
                            s.median,
                            s.min,
                            s.max,
                            prec = prec
                        )
                    })
                    .unwrap_or_else(|| "-".into())
                };
                let losses: Vec<f64> = p.samples.iter().filter_map(|s| s.loss).collect();
                let loss = Spread::of(&losses)
                    .map(|l| format!("{:.1}%", l.median * 100.0))
                    .unwrap_or_else(|| "".into());
                let _ = writeln!(
                    out,
                    "    {:<10} {:>22} {:>26} {:>7}",
                    p.path,
                    fig(p.gbps, 2),
                    fig(p.kpps, 0),
                    loss
                );
                for e in &p.errors {
                    let _ = writeln!(out, "    {:<10} error: {e}", "");
                }
            }
            let first = c.paths.first().map(|p| p.path.as_str()).unwrap_or("");
            let unit = match c.proto {
                Proto::Udp => "received kpps",
                Proto::Tcp => "Gbit/s",
            };
            for (path, ratio) in c.ratios() {
                if let Some(x) = ratio {
                    let _ = writeln!(out, "    {first} / {path} = {x:.2} ({unit})");
                }
            }
        }
    }
    out
}

fn chrono_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    civil(now)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (Howard Hinnant's
/// days-to-civil algorithm).
fn civil(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn git_describe() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_medians() {
        assert_eq!(Spread::of(&[]), None);
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[1.0, 4.0]).unwrap().median, 2.5);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), "1970-01-01T00:00:00Z");
        assert_eq!(civil(1_796_083_200), "2026-12-01T00:00:00Z");
        assert_eq!(civil(951_782_400 + 3661), "2000-02-29T01:01:01Z");
    }

    fn figures(path: &str, kpps: f64, gbps: f64) -> PathFigures {
        let mut p = PathFigures {
            path: path.into(),
            samples: vec![Sample {
                gbps,
                kpps,
                loss: None,
            }],
            gbps: None,
            kpps: None,
            errors: Vec::new(),
        };
        p.summarise();
        p
    }

    #[test]
    fn ratios_use_the_headline_figure_of_the_protocol() {
        let mut c = CheckFigures {
            name: "udp".into(),
            proto: Proto::Udp,
            size: 64,
            streams: 1,
            bidir: false,
            seconds: 4,
            paths: vec![
                figures("userspace", 200.0, 0.1),
                figures("bridge", 100.0, 0.2),
                PathFigures::new(PathKind::Baseline(Baseline::Ovs)),
            ],
        };
        let r = c.ratios();
        assert_eq!(r[0], ("bridge".into(), Some(2.0)));
        assert_eq!(r[1], ("ovs".into(), None));
        c.proto = Proto::Tcp;
        assert_eq!(c.ratios()[0].1, Some(0.5));
    }
}
