//! The `vswitch` command line: clap, tracing set-up, exit statuses.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use vswitch::backend::BuildOptions;
use vswitch::run::execute::{
    EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_UNSUPPORTED, Execution, RunOptions,
};
use vswitch::scenario::{
    self,
    plan::{BackendKind, Generator},
};
use vswitch::world::{self, RunId, RunRecord};

#[derive(Parser, Debug)]
#[command(
    name = "vswitch",
    version,
    about = "Userspace virtual switch and Docker networking test bench"
)]
struct Cli {
    /// Backend docker: map scenario machines to existing daemons instead
    /// of starting them, `MACHINE=URL[,MACHINE=URL...]`, each URL
    /// `unix:///path` or `tcp://host:port` (the lan is then the hosts' own
    /// network; the daemons must run on this machine).
    #[arg(long, global = true, value_name = "MAP")]
    docker_host: Option<String>,
    /// Backend docker: the same mapping from a TOML file, a `[docker_hosts]`
    /// table of `MACHINE = "URL"` or `MACHINE = { host = "URL", tlsverify =
    /// true, tlscacert = "ca.pem", tlscert = "cert.pem", tlskey = "key.pem" }`
    /// (paths relative to the file; an entry without tls keys takes the
    /// command line's). A machine may not be mapped here and by --docker-host.
    #[arg(long, global = true, value_name = "FILE")]
    docker_hosts: Option<PathBuf>,
    /// TLS to tcp:// daemons, the server verified against --tlscacert (as
    /// `docker --tlsverify`; also when DOCKER_TLS_VERIFY is set and not empty).
    #[arg(long, global = true)]
    tlsverify: bool,
    /// CA certificate for --tlsverify [default: ca.pem in $DOCKER_CERT_PATH, else ~/.docker].
    #[arg(long, global = true, value_name = "PATH")]
    tlscacert: Option<PathBuf>,
    /// Client certificate for --tlsverify [default: cert.pem there, used if it and key.pem exist].
    #[arg(long, global = true, value_name = "PATH")]
    tlscert: Option<PathBuf>,
    /// Client key for --tlsverify [default: key.pem there].
    #[arg(long, global = true, value_name = "PATH")]
    tlskey: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Backend {
    /// The vswitch engine behind TAP devices.
    Userspace,
    /// Linux bridge, macvlan, ipvlan, vxlan and nftables.
    Kernel,
    /// A real Docker daemon (start it with `ci/docker-daemon.sh start`).
    Docker,
    /// The whole world in one process: the engine and smoltcp host stacks
    /// in memory, in virtual time, without root.
    Sim,
}

impl From<Backend> for BackendKind {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Userspace => BackendKind::Userspace,
            Backend::Kernel => BackendKind::Kernel,
            Backend::Docker => BackendKind::Docker,
            Backend::Sim => BackendKind::Sim,
        }
    }
}

/// A peer data path of `vswitch bench --baseline`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BaselineArg {
    /// A bare veth pair (the limit of the machine).
    Veth,
    /// A Linux bridge.
    Bridge,
    /// Open vSwitch userspace (netdev) with TAP ports and TSO.
    Ovs,
}

impl From<BaselineArg> for vswitch::bench::Baseline {
    fn from(b: BaselineArg) -> Self {
        match b {
            BaselineArg::Veth => vswitch::bench::Baseline::Veth,
            BaselineArg::Bridge => vswitch::bench::Baseline::Bridge,
            BaselineArg::Ovs => vswitch::bench::Baseline::Ovs,
        }
    }
}

/// What measures throughput in `vswitch bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ToolArg {
    /// iperf3 processes in the namespaces.
    Iperf3,
    /// vswitch's own sender and sink.
    Builtin,
}

impl From<ToolArg> for Generator {
    fn from(t: ToolArg) -> Self {
        match t {
            ToolArg::Iperf3 => Generator::Iperf3,
            ToolArg::Builtin => Generator::Builtin,
        }
    }
}

/// What `vswitch trace` sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TraceProtoArg {
    /// A TCP SYN.
    Tcp,
    /// A UDP datagram.
    Udp,
    /// An ICMP echo request.
    Icmp,
}

/// Output format of `vswitch graph`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum GraphFormat {
    /// SVG drawn by vswitch (opens in a browser).
    Svg,
    /// Graphviz DOT text.
    Dot,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Build each scenario, run its checks, tear it down.
    Run {
        /// Scenario files (`-` or none: standard input).
        files: Vec<PathBuf>,
        /// Data path.
        #[arg(long, value_enum, default_value = "userspace")]
        backend: Backend,
        /// Write the JSON report here (`-`: standard output).
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
        /// Write one pcap file per engine port into this directory.
        #[arg(long, value_name = "DIR")]
        pcap: Option<PathBuf>,
        /// Write a JUnit XML report here (one testsuite per scenario).
        #[arg(long, value_name = "PATH")]
        junit: Option<PathBuf>,
        /// Keep the world up after the checks (until Ctrl-C or `vswitch down`).
        #[arg(long)]
        keep: bool,
        /// Count "backend cannot build this" (exit 3) as a failure (exit 1).
        #[arg(long)]
        strict: bool,
        /// No progress lines on standard error.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Validate scenario files only.
    Check {
        /// Scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also report what this backend cannot build (exit 3).
        #[arg(long, value_enum)]
        backend: Option<Backend>,
    },
    /// Build a world and keep it up in the background.
    Up {
        /// Scenario file.
        file: PathBuf,
        /// Data path.
        #[arg(long, value_enum, default_value = "userspace")]
        backend: Backend,
        /// Write one pcap file per engine port into this directory.
        #[arg(long, value_name = "DIR")]
        pcap: Option<PathBuf>,
    },
    /// Tear down a world started with `up` (by run id or scenario name).
    Down {
        /// Run id (`vswXXXXXX`) or scenario file stem.
        name: String,
    },
    /// Run a command inside a node (container, external or machine) of a live world.
    Exec {
        /// The world (run id or scenario name) when several have this node.
        #[arg(long)]
        world: Option<String>,
        /// Node name.
        node: String,
        /// Command and arguments.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Apply a step to a live world: a `[[step]]` of its scenario by name,
    /// or `-` for `[[step]]` tables on standard input.
    Step {
        /// The world (run id or scenario name); needed when several are up.
        #[arg(long)]
        world: Option<String>,
        /// Step name, or `-`.
        name: String,
    },
    /// Remove everything that killed runs left behind (live runs are kept).
    Cleanup,
    /// Run each scenario on several backends and show where they differ.
    Compare {
        /// Scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Backends, in column order (throughput ratio = first / last).
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "userspace,kernel"
        )]
        backends: Vec<Backend>,
        /// Write the comparison as JSON here (`-`: standard output).
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
        /// Write a JUnit XML report here (one testsuite per scenario and backend).
        #[arg(long, value_name = "PATH")]
        junit: Option<PathBuf>,
        /// Count "a backend cannot build this" (exit 3) as a failure (exit 1).
        #[arg(long)]
        strict: bool,
    },
    /// Run the throughput checks N times per backend: median, spread, ratio.
    Bench {
        /// Scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Rounds; every path runs once per round, paths alternating.
        #[arg(long, default_value_t = 3)]
        repeat: u32,
        /// Backends building the scenario (ratios: first path / each other).
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "userspace,kernel"
        )]
        backends: Vec<Backend>,
        /// Peers carrying the same load between two namespaces of their own,
        /// in the same sitting: a bare veth pair, a Linux bridge, OVS
        /// userspace with TAP ports and TSO (when ovs-vswitchd is installed).
        #[arg(long, value_enum, value_delimiter = ',')]
        baseline: Vec<BaselineArg>,
        /// What measures: iperf3 (default when installed) or the built-in
        /// generator.
        #[arg(long, value_enum)]
        tool: Option<ToolArg>,
        /// Seconds per measurement instead of each check's own.
        #[arg(long)]
        seconds: Option<u32>,
        /// Parallel streams instead of each check's own.
        #[arg(long)]
        streams: Option<u32>,
        /// Both directions at once (iperf3 --bidir).
        #[arg(long)]
        bidir: bool,
        /// Write every figure as JSON here (`-`: standard output).
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
        /// Write a chart of the medians with min–max bars (SVG) here.
        #[arg(long, value_name = "PATH")]
        plot: Option<PathBuf>,
    },
    /// Trace one synthetic frame through the engine a scenario's world
    /// runs: every stage it crosses, the rewrites, and the verdict.
    Trace {
        /// Scenario file (or the run id / name of a world kept up by
        /// `vswitch up`: its scenario is traced).
        world: String,
        /// Source node (container, external or machine).
        #[arg(long)]
        from: String,
        /// Target: NODE, ADDRESS, NODE:PORT, ADDRESS:PORT or [V6]:PORT.
        #[arg(long)]
        to: String,
        /// What to send: a TCP SYN, a UDP datagram or an ICMP echo request
        /// (default: tcp with a port, icmp without).
        #[arg(long, value_enum)]
        proto: Option<TraceProtoArg>,
        /// Whose path: the engine's (userspace, no root) or Linux's own
        /// (kernel: the world is built and one real packet is traced with
        /// nftables' `meta nftrace`).
        #[arg(long, value_enum, default_value = "userspace")]
        backend: Backend,
    },
    /// Draw a scenario's world as SVG (or Graphviz DOT), checks coloured by a report.
    Graph {
        /// Scenario file.
        file: PathBuf,
        /// Output file (default: standard output).
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Output format (default: from the output's extension, else svg).
        #[arg(long, value_enum)]
        format: Option<GraphFormat>,
        /// A report written by `vswitch run --json`: checks drawn as arrows.
        #[arg(long, value_name = "REPORT")]
        json: Option<PathBuf>,
    },
    /// Show a live world's networks or one node as `docker network inspect` / `docker inspect` JSON.
    Inspect {
        /// Run id (`vswXXXXXX`) or scenario file stem of a live world.
        run: String,
        /// A network or node name (`network:NAME`, `container:NAME`… when names collide);
        /// none: every network.
        name: Option<String>,
    },
    /// Translate a Compose file into a scenario (TOML on standard output).
    Import {
        /// Compose file (`-`: standard input).
        file: PathBuf,
        /// Add checks that service names resolve and served TCP ports answer.
        #[arg(long)]
        checks: bool,
    },
    /// Internal: the background process of `up`.
    #[command(hide = true)]
    Serve {
        file: PathBuf,
        #[arg(long, value_enum)]
        backend: Backend,
        #[arg(long)]
        pcap: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VSWITCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                EXIT_INVALID as u8
            } else {
                0
            });
        }
    };
    let tls = vswitch::backend::docker::hosts::TlsOptions {
        verify: cli.tlsverify
            || std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty()),
        cacert: cli.tlscacert.clone(),
        cert: cli.tlscert.clone(),
        key: cli.tlskey.clone(),
    };
    if let Err(e) = vswitch::backend::docker::hosts::configure(
        cli.docker_host.as_deref(),
        cli.docker_hosts.as_deref(),
        &tls,
    ) {
        eprintln!("vswitch: {e}");
        return ExitCode::from(EXIT_INVALID as u8);
    }
    match dispatch(cli.cmd) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("vswitch: {e:#}");
            ExitCode::from(EXIT_FAILED as u8)
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Run {
            files,
            backend,
            json,
            pcap,
            junit,
            keep,
            strict,
            quiet,
        } => {
            let out = Outputs { json, junit };
            cmd_run(files, backend.into(), out, pcap, keep, strict, quiet)
        }
        Cmd::Check { files, backend } => Ok(cmd_check(&files, backend.map(Into::into))),
        Cmd::Up {
            file,
            backend,
            pcap,
        } => cmd_up(&file, backend, pcap),
        Cmd::Down { name } => cmd_down(&name),
        Cmd::Exec { world, node, cmd } => cmd_exec(world.as_deref(), &node, &cmd),
        Cmd::Step { world, name } => cmd_step(world.as_deref(), &name),
        Cmd::Cleanup => {
            let removed = world::cleanup_leftovers();
            if removed.is_empty() {
                println!("nothing to clean up");
            }
            for ns in removed {
                println!("removed namespace {ns}");
            }
            Ok(EXIT_OK)
        }
        Cmd::Compare {
            files,
            backends,
            json,
            junit,
            strict,
        } => cmd_compare(&files, &backends, Outputs { json, junit }, strict),
        Cmd::Bench {
            files,
            repeat,
            backends,
            baseline,
            tool,
            seconds,
            streams,
            bidir,
            json,
            plot,
        } => {
            let opts = vswitch::bench::BenchOptions {
                repeat,
                backends: backends.into_iter().map(BackendKind::from).collect(),
                baselines: baseline.into_iter().map(Into::into).collect(),
                generator: tool.map_or_else(vswitch::bench::default_generator, Into::into),
                seconds,
                streams,
                bidir,
                progress: true,
            };
            cmd_bench(&files, &opts, json.as_deref(), plot.as_deref())
        }
        Cmd::Serve {
            file,
            backend,
            pcap,
        } => cmd_serve(&file, backend.into(), pcap),
        Cmd::Trace {
            world,
            from,
            to,
            proto,
            backend,
        } => cmd_trace(&world, &from, &to, proto, backend.into()),
        Cmd::Inspect { run, name } => cmd_inspect(&run, name.as_deref()),
        Cmd::Import { file, checks } => Ok(cmd_import(&file, checks)),
        Cmd::Graph {
            file,
            output,
            format,
            json,
        } => cmd_graph(&file, output.as_deref(), format, json.as_deref()),
    }
}

fn install_signals() -> Result<()> {
    world::install_signal_cleanup().context("installing signal handlers")
}

fn pcap_dir(pcap: Option<PathBuf>) -> Result<Option<PathBuf>> {
    if let Some(dir) = &pcap {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(pcap)
}

/// Exit status of several scenarios: invalid beats failed beats unsupported.
fn combine(codes: &[i32], strict: bool) -> i32 {
    let strict_code = |c: i32| {
        if strict && c == EXIT_UNSUPPORTED {
            EXIT_FAILED
        } else {
            c
        }
    };
    let codes: Vec<i32> = codes.iter().map(|&c| strict_code(c)).collect();
    [EXIT_INVALID, EXIT_FAILED, EXIT_UNSUPPORTED]
        .into_iter()
        .find(|c| codes.contains(c))
        .unwrap_or(EXIT_OK)
}

/// Report files a run or comparison writes.
struct Outputs {
    json: Option<PathBuf>,
    junit: Option<PathBuf>,
}

/// Writes a JUnit document (`-`: standard output).
fn write_junit(path: &Path, suites: &[vswitch::junit::Suite]) -> Result<()> {
    let xml = vswitch::junit::to_xml(suites);
    if path == Path::new("-") {
        print!("{xml}");
        Ok(())
    } else {
        std::fs::write(path, xml).with_context(|| format!("writing {}", path.display()))
    }
}

/// Loads a scenario file (a `.yml`/`.yaml` Compose file through `import`),
/// its error as text.
fn load_plan(file: &Path) -> Result<scenario::plan::Plan, String> {
    if !vswitch::compose::is_compose_path(file) {
        return scenario::load_file(file).map_err(|e| e.to_string());
    }
    let imported = vswitch::compose::import_file(file).map_err(|e| e.to_string())?;
    for n in &imported.notes {
        eprintln!("{}: not translated: {n}", file.display());
    }
    // The loader's line and column are the translation's: say where in the
    // Compose file that part came from.
    let located = |e: scenario::ScenarioError| {
        let (line, column, key) = imported
            .origin_of(&e.field)
            .map_or((0, 0, "compose"), |o| (o.line, o.column, o.key.as_str()));
        format!(
            "{}:{line}:{column}: {key}: {} (scenario field {}, line {} of `vswitch import {}`)",
            file.display(),
            e.message,
            e.field,
            e.line,
            file.display()
        )
    };
    // A compose file has no checks of its own: it is run with the ones
    // `import --checks` writes (each service resolves to its containers and
    // answers on its ports), so a run observes something.
    let plan = scenario::parse_str(file, &imported.toml).map_err(located)?;
    let mut text = imported.toml.clone();
    text.push_str(&vswitch::compose::discovery_checks(
        &plan,
        &imported.services,
    ));
    scenario::parse_str(file, &text).map_err(located)
}

/// Loads and runs one file; the plan is returned for reports.
/// Loads and runs one file; `checked` sees the report before a kept world
/// is held.
fn run_file(
    file: &Path,
    opts: &RunOptions,
    checked: &dyn Fn(&vswitch::run::Report),
) -> (Option<scenario::plan::Plan>, Execution) {
    match load_plan(file) {
        Ok(plan) => {
            let ex = vswitch::run::execute::execute_plan_with(file, &plan, opts, checked);
            (Some(plan), ex)
        }
        Err(e) => (
            None,
            Execution {
                code: EXIT_INVALID,
                report: None,
                error: Some(e),
            },
        ),
    }
}

/// The JUnit suite of one execution.
fn junit_suite(
    file: &Path,
    backend: BackendKind,
    plan: Option<&scenario::plan::Plan>,
    ex: &Execution,
) -> vswitch::junit::Suite {
    match &ex.report {
        Some(r) => vswitch::junit::suite(plan, r, ex.error.as_deref()),
        None => vswitch::junit::invalid_suite(
            &file.display().to_string(),
            &backend.to_string(),
            ex.error.as_deref().unwrap_or("not run"),
        ),
    }
}

fn cmd_run(
    files: Vec<PathBuf>,
    backend: BackendKind,
    out: Outputs,
    pcap: Option<PathBuf>,
    keep: bool,
    strict: bool,
    quiet: bool,
) -> Result<i32> {
    install_signals()?;
    vswitch::progress::enable(!quiet);
    let files = if files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        files
    };
    let opts = RunOptions {
        backend,
        build: BuildOptions {
            pcap_dir: pcap_dir(pcap)?,
            ..BuildOptions::default()
        },
        keep,
        progress: !quiet,
        run_id: None,
    };
    let Outputs { json, junit } = out;
    let json_to_stdout = json.as_deref() == Some(Path::new("-"));
    let table_to_stderr = json_to_stdout || junit.as_deref() == Some(Path::new("-"));
    let print_table = |r: &vswitch::run::Report| {
        let table = r.table();
        if table_to_stderr {
            eprint!("{table}");
        } else {
            print!("{table}");
            let _ = std::io::stdout().flush();
        }
    };
    let mut codes = Vec::new();
    let mut reports = Vec::new();
    let mut suites = Vec::new();
    for f in &files {
        // A kept world shows its results (and writes --json) before it is
        // held, not only once it is torn down.
        let shown = std::cell::Cell::new(false);
        let on_checked = |r: &vswitch::run::Report| {
            if !keep {
                return;
            }
            // The report first: whoever reads the table may look for it.
            if let Some(path) = json.as_deref().filter(|_| files.len() == 1)
                && let Err(e) = write_json(path, &serde_json::to_value(r).unwrap_or_default())
            {
                eprintln!("{e:#}");
            }
            print_table(r);
            shown.set(true);
        };
        let (plan, ex) = run_file(f, &opts, &on_checked);
        if junit.is_some() {
            suites.push(junit_suite(f, backend, plan.as_ref(), &ex));
        }
        let Execution {
            code,
            report,
            error,
        } = ex;
        if let Some(e) = &error {
            eprintln!("{e}");
        }
        if let Some(r) = &report {
            for u in &r.unsupported {
                eprintln!("{u}");
            }
            if (r.unsupported.is_empty() && error.is_none() || !r.checks.is_empty()) && !shown.get()
            {
                print_table(r);
            }
            reports.push(serde_json::to_value(r)?);
        } else if let Some(e) = &error {
            reports.push(serde_json::json!({ "scenario": f.display().to_string(), "error": e }));
        }
        codes.push(code);
    }
    if let Some(path) = json {
        let value = if reports.len() == 1 {
            reports.pop().unwrap_or_default()
        } else {
            serde_json::Value::Array(reports)
        };
        write_json(&path, &value)?;
    }
    if let Some(path) = junit {
        write_junit(&path, &suites)?;
    }
    Ok(combine(&codes, strict))
}

/// Writes a report to `path` (`-`: standard output).
fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}")?;
        out.flush()?;
    } else {
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn cmd_check(files: &[PathBuf], backend: Option<BackendKind>) -> i32 {
    let mut codes = Vec::new();
    for f in files {
        match load_plan(f) {
            Ok(plan) => {
                let why = backend
                    .map(|b| vswitch::backend::unsupported(&plan, b))
                    .unwrap_or_default();
                for w in &why {
                    eprintln!("{}: {w}", f.display());
                }
                println!(
                    "{}: ok — {} machine(s), {} network(s), {} container(s), {} external(s), {} check(s)",
                    f.display(),
                    plan.machines.len(),
                    plan.networks.len(),
                    plan.containers.len(),
                    plan.externals.len(),
                    plan.checks.len()
                );
                codes.push(if why.is_empty() {
                    EXIT_OK
                } else {
                    EXIT_UNSUPPORTED
                });
            }
            Err(e) => {
                eprintln!("{e}");
                codes.push(EXIT_INVALID);
            }
        }
    }
    combine(&codes, false)
}

fn find_record(name: &str) -> Result<RunRecord> {
    let live: Vec<RunRecord> = RunRecord::all()
        .into_iter()
        .filter(|r| r.is_live())
        .collect();
    let hits: Vec<RunRecord> = live
        .into_iter()
        .filter(|r| r.id.as_str() == name || r.name == name)
        .collect();
    match hits.len() {
        0 => bail!(
            "no live world named {name:?} (see /run/vswitch/runs; `vswitch up FILE` starts one)"
        ),
        1 => Ok(hits.into_iter().next().expect("one")),
        _ => bail!(
            "several live worlds are named {name:?}: use a run id ({})",
            hits.iter()
                .map(|r| r.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn cmd_up(file: &Path, backend: Backend, pcap: Option<PathBuf>) -> Result<i32> {
    use std::os::unix::process::CommandExt;
    let plan = match load_plan(file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return Ok(EXIT_INVALID);
        }
    };
    let mut why = vswitch::backend::unsupported(&plan, backend.into());
    if BackendKind::from(backend) == BackendKind::Sim {
        why.push(
            "backend sim: `up` keeps a world for `exec` and `step` from other processes; the sim's world lives in memory inside one process, with no namespaces to enter (use `vswitch run --backend sim`)"
                .into(),
        );
    }
    if !why.is_empty() {
        for w in why {
            eprintln!("{w}");
        }
        return Ok(EXIT_UNSUPPORTED);
    }
    let run = RunId::new();
    std::fs::create_dir_all(world::RUN_DIR)?;
    let log = PathBuf::from(world::RUN_DIR).join(format!("{run}.log"));
    let out = std::fs::File::create(&log)?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("serve")
        .arg(std::fs::canonicalize(file)?)
        .arg("--backend")
        .arg(BackendKind::from(backend).to_string())
        .env("VSWITCH_RUN_ID", run.as_str())
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0);
    if let Some(p) = pcap_dir(pcap)? {
        cmd.arg("--pcap").arg(std::fs::canonicalize(p)?);
    }
    let mut child = cmd.spawn().context("starting the background world")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if RunRecord::all().iter().any(|r| r.id == run && r.kept) {
            break;
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the world did not come up ({status}); its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            world::remove_run(&run);
            bail!(
                "the world did not come up within 60 s; log in {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("world {run} is up ({})", plan.name);
    println!("  vswitch exec NODE -- CMD     run a command in a container, external or machine");
    println!("  vswitch down {run}       tear it down");
    Ok(EXIT_OK)
}

fn cmd_serve(file: &Path, backend: BackendKind, pcap: Option<PathBuf>) -> Result<i32> {
    install_signals()?;
    let plan = load_plan(file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let run = RunId::new();
    let record = RunRecord {
        id: run.clone(),
        pid: std::process::id(),
        scenario: file.display().to_string(),
        name: file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        backend: backend.to_string(),
        namespaces: vswitch::backend::namespace_names(&run, &plan, backend),
        kept: false,
    };
    record.save()?;
    let _live = world::register_live(&run);
    let opts = BuildOptions {
        pcap_dir: pcap,
        ..BuildOptions::default()
    };
    let w = match vswitch::backend::World::build(&run, &plan, backend, &opts, &|s| eprintln!("{s}"))
    {
        Ok(w) => w,
        Err(e) => {
            world::remove_run(&run);
            bail!("building the world failed: {e}");
        }
    };
    let mut kept = record;
    kept.kept = true;
    kept.save()?;
    eprintln!("world {run} up");
    if let Err(e) = vswitch::run::live::serve(w, file, backend) {
        // The world stays up (it moved into `serve` and is dropped only on
        // error, so this is reached with it gone): say why steps cannot come.
        bail!("{e}");
    }
    loop {
        std::thread::park();
    }
}

fn cmd_step(world_name: Option<&str>, name: &str) -> Result<i32> {
    use std::io::Read as _;
    use vswitch::run::live::{StepRequest, request};
    let rec = match world_name {
        Some(w) => find_record(w)?,
        None => {
            let mut live: Vec<RunRecord> = RunRecord::all()
                .into_iter()
                .filter(|r| r.is_live() && r.kept)
                .collect();
            match live.len() {
                1 => live.remove(0),
                0 => bail!("no live world (`vswitch up FILE` starts one)"),
                _ => bail!("several live worlds: pass --world RUN_ID"),
            }
        }
    };
    let req = if name == "-" {
        let mut t = String::new();
        std::io::stdin().read_to_string(&mut t)?;
        StepRequest {
            name: None,
            tables: Some(t),
        }
    } else {
        StepRequest {
            name: Some(name.to_string()),
            tables: None,
        }
    };
    let answer = request(&rec.id, &req)?;
    for s in &answer.steps {
        match &s.error {
            None => println!(
                "step {} ({}) took effect in {} ms",
                s.name, s.action, s.took_ms
            ),
            Some(e) => println!("step {} ({}) failed: {e}", s.name, s.action),
        }
    }
    if let Some(e) = &answer.error {
        eprintln!("{e}");
    }
    Ok(answer.code)
}

fn cmd_down(name: &str) -> Result<i32> {
    let rec = find_record(name)?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(rec.pid)?);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(15);
    while rec.is_live() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let removed = world::remove_run(&rec.id);
    println!(
        "world {} is down ({} namespaces removed by this command)",
        rec.id,
        removed.len()
    );
    Ok(EXIT_OK)
}

fn cmd_exec(world_name: Option<&str>, node: &str, cmd: &[String]) -> Result<i32> {
    use std::os::unix::process::CommandExt;
    let records: Vec<RunRecord> = match world_name {
        Some(w) => vec![find_record(w)?],
        None => RunRecord::all()
            .into_iter()
            .filter(|r| r.is_live())
            .collect(),
    };
    let hits: Vec<(RunId, String, String)> = records
        .iter()
        .flat_map(|r| {
            r.namespaces
                .iter()
                .filter(|(n, _)| n == node)
                .map(|(_, ns)| (r.id.clone(), ns.clone(), r.scenario.clone()))
        })
        .collect();
    let (_, ns, scenario_file) = match hits.len() {
        0 => bail!("no live world has a node named {node:?}"),
        1 => hits.into_iter().next().expect("one"),
        _ => bail!("several live worlds have a node named {node:?}: pass --world RUN_ID"),
    };
    // `ip netns exec` binds /etc/netns/NS/resolv.conf and hosts over /etc,
    // exactly as for any other named namespace. A container's hostname
    // (its /etc/hostname there) is set in a UTS namespace of the command's own.
    let mut c = std::process::Command::new("ip");
    c.args(["netns", "exec", &ns]);
    if Path::new(vswitch::netns::NETNS_ETC_DIR)
        .join(&ns)
        .join("hostname")
        .exists()
    {
        c.args([
            "unshare",
            "--uts",
            "--",
            "sh",
            "-c",
            "hostname \"$(cat /etc/hostname)\" && exec \"$@\"",
            "vswitch-exec",
        ]);
    }
    // BR-20: the environment Docker gives a container for its links.
    if let Ok(plan) = load_plan(Path::new(&scenario_file))
        && let Some(i) = plan.containers.iter().position(|x| x.name == node)
    {
        c.envs(vswitch::backend::link_env(&plan, i));
    }
    let err = c.args(cmd).exec();
    bail!("cannot run `ip netns exec {ns}`: {err}")
}

/// Loads a scenario, or prints why not and records exit 2.
fn load_or_report(file: &Path, codes: &mut Vec<i32>) -> Option<scenario::plan::Plan> {
    match load_plan(file) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("{e}");
            codes.push(EXIT_INVALID);
            None
        }
    }
}

fn quiet_opts(backend: BackendKind) -> RunOptions {
    RunOptions {
        backend,
        build: BuildOptions::default(),
        keep: false,
        progress: false,
        run_id: None,
    }
}

fn cmd_compare(files: &[PathBuf], backends: &[Backend], out: Outputs, strict: bool) -> Result<i32> {
    use vswitch::run::compare::{BackendRun, Comparison};
    install_signals()?;
    let Outputs { json, junit } = out;
    let mut codes = Vec::new();
    let mut all = Vec::new();
    let mut suites = Vec::new();
    for f in files {
        let plan = match load_plan(f) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{e}");
                codes.push(EXIT_INVALID);
                let name = f.display().to_string();
                for &b in backends {
                    let kind = BackendKind::from(b).to_string();
                    suites.push(vswitch::junit::invalid_suite(&name, &kind, &e));
                }
                continue;
            }
        };
        let runs: Vec<BackendRun> = backends
            .iter()
            .map(|&b| {
                let kind: BackendKind = b.into();
                eprintln!("vswitch compare: {} on {kind}", f.display());
                let ex = vswitch::run::execute::execute_plan(f, &plan, &quiet_opts(kind));
                suites.push(junit_suite(f, kind, Some(&plan), &ex));
                BackendRun {
                    backend: kind.to_string(),
                    code: ex.code,
                    report: ex.report,
                    error: ex.error,
                }
            })
            .collect();
        let known = vswitch::run::compare::known_differences(&plan);
        let cmp = Comparison::new(&f.display().to_string(), &runs, &known);
        let table = cmp.table();
        if json.as_deref() == Some(Path::new("-")) {
            eprint!("{table}");
        } else {
            print!("{table}");
        }
        codes.push(if cmp.has_disagreement() {
            EXIT_FAILED
        } else if runs.iter().any(|r| r.code == EXIT_UNSUPPORTED) {
            EXIT_UNSUPPORTED
        } else {
            EXIT_OK
        });
        all.push(serde_json::to_value(&cmp)?);
    }
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&all)?;
        if path == Path::new("-") {
            println!("{text}");
        } else {
            std::fs::write(&path, text + "\n")?;
        }
    }
    if let Some(path) = junit {
        write_junit(&path, &suites)?;
    }
    Ok(combine(&codes, strict))
}

fn cmd_bench(
    files: &[PathBuf],
    opts: &vswitch::bench::BenchOptions,
    json: Option<&Path>,
    plot: Option<&Path>,
) -> Result<i32> {
    install_signals()?;
    vswitch::progress::enable(true);
    if opts.bidir && opts.generator != Generator::Iperf3 {
        eprintln!("vswitch: --bidir needs iperf3 (--tool iperf3)");
        return Ok(EXIT_INVALID);
    }
    if opts.generator == Generator::Iperf3 && vswitch::tools::find("iperf3").is_none() {
        eprintln!("vswitch: iperf3 is not installed (apt-get install iperf3)");
        return Ok(EXIT_UNSUPPORTED);
    }
    let mut codes = Vec::new();
    let mut plans = Vec::new();
    for f in files {
        if let Some(plan) = load_or_report(f, &mut codes) {
            plans.push((f.clone(), plan));
        }
    }
    let report = vswitch::bench::bench(&plans, opts);
    codes.push(report.code);
    let text = vswitch::bench::to_text(&report);
    if json == Some(Path::new("-")) {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    if let Some(path) = json {
        let body = serde_json::to_string_pretty(&report)? + "\n";
        if path == Path::new("-") {
            print!("{body}");
        } else {
            std::fs::write(path, body).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    if let Some(path) = plot {
        std::fs::write(path, vswitch::bench::plot::to_svg(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(combine(&codes, false))
}

fn cmd_trace(
    world: &str,
    from: &str,
    to: &str,
    proto: Option<TraceProtoArg>,
    backend: BackendKind,
) -> Result<i32> {
    use vswitch::trace::{Target, TraceProto};
    let live = if Path::new(world).exists() {
        None
    } else {
        Some(find_record(world)?)
    };
    let path = match &live {
        None => PathBuf::from(world),
        Some(rec) => PathBuf::from(&rec.scenario),
    };
    let plan = match load_plan(&path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return Ok(EXIT_INVALID);
        }
    };
    let target = match Target::parse(to) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vswitch: --to: {e}");
            return Ok(EXIT_INVALID);
        }
    };
    let proto = match proto {
        Some(TraceProtoArg::Tcp) => TraceProto::Tcp,
        Some(TraceProtoArg::Udp) => TraceProto::Udp,
        Some(TraceProtoArg::Icmp) => TraceProto::Icmp,
        None if target.port.is_some() => TraceProto::Tcp,
        None => TraceProto::Icmp,
    };
    // A live world is traced on its own backend.
    let backend = match &live {
        Some(rec) if rec.backend == "kernel" => BackendKind::Kernel,
        Some(rec) => {
            eprintln!(
                "vswitch: tracing {} ({}) on a fresh engine of its scenario: the live world's learned state is not read",
                rec.id, rec.scenario
            );
            BackendKind::Userspace
        }
        None => backend,
    };
    let traced = match (backend, &live) {
        (BackendKind::Kernel, Some(rec)) => {
            vswitch::trace::resolve_request(&plan, from, &target, proto)
                .and_then(|r| vswitch::trace::kernel::trace_live(&plan, &rec.namespaces, &r, proto))
        }
        (BackendKind::Kernel, None) => {
            install_signals()?;
            vswitch::trace::resolve_request(&plan, from, &target, proto).and_then(|r| {
                vswitch::trace::kernel::trace(&plan, &path.display().to_string(), &r, proto)
            })
        }
        // The sim runs the userspace engine: the same trace.
        (BackendKind::Userspace | BackendKind::Sim, _) => {
            vswitch::trace::trace(&plan, from, &target, proto)
        }
        (BackendKind::Docker, _) => {
            eprintln!(
                "vswitch: trace follows the userspace engine or the kernel backend, not docker"
            );
            return Ok(EXIT_UNSUPPORTED);
        }
    };
    match traced {
        Ok(t) => {
            print!("{}", t.text);
            Ok(EXIT_OK)
        }
        Err(e) => {
            eprintln!("vswitch: {e}");
            Ok(EXIT_INVALID)
        }
    }
}

fn cmd_graph(
    file: &Path,
    output: Option<&Path>,
    format: Option<GraphFormat>,
    json: Option<&Path>,
) -> Result<i32> {
    let plan = match load_plan(file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return Ok(EXIT_INVALID);
        }
    };
    let arrows = match json {
        None => Vec::new(),
        Some(r) => {
            let text =
                std::fs::read_to_string(r).with_context(|| format!("reading {}", r.display()))?;
            match vswitch::graph::check_arrows(&plan, &text, &r.display().to_string()) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("vswitch: {e}");
                    return Ok(EXIT_INVALID);
                }
            }
        }
    };
    let by_extension = output
        .and_then(|o| o.extension())
        .is_some_and(|e| e == "dot" || e == "gv");
    let format = format.unwrap_or(if by_extension {
        GraphFormat::Dot
    } else {
        GraphFormat::Svg
    });
    let text = match format {
        GraphFormat::Svg => vswitch::graph::to_svg(&plan, &arrows),
        GraphFormat::Dot => vswitch::graph::to_dot(&plan, &arrows),
    };
    match output {
        Some(o) if o != Path::new("-") => {
            std::fs::write(o, text).with_context(|| format!("writing {}", o.display()))?
        }
        _ => print!("{text}"),
    }
    Ok(EXIT_OK)
}

fn cmd_inspect(run: &str, name: Option<&str>) -> Result<i32> {
    let rec = find_record(run)?;
    let plan = load_plan(Path::new(&rec.scenario)).map_err(|e| {
        anyhow::anyhow!(
            "world {} was built from {}, which no longer loads: {e}",
            rec.id,
            rec.scenario
        )
    })?;
    match vswitch::inspect::inspect(&plan, rec.id.as_str(), name) {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(EXIT_OK)
        }
        Err(e) => {
            eprintln!("vswitch: world {}: {e}", rec.id);
            Ok(EXIT_FAILED)
        }
    }
}

fn cmd_import(file: &Path, checks: bool) -> i32 {
    match vswitch::compose::import_file(file) {
        Ok(imported) => {
            for n in &imported.notes {
                eprintln!("{}: not translated: {n}", file.display());
            }
            let mut text = imported.toml.clone();
            if checks {
                match scenario::parse_str(file, &imported.toml) {
                    Ok(plan) => text.push_str(&vswitch::compose::discovery_checks(
                        &plan,
                        &imported.services,
                    )),
                    Err(e) => {
                        eprintln!(
                            "{}: the translated scenario is invalid: {e}",
                            file.display()
                        );
                        return EXIT_INVALID;
                    }
                }
            }
            print!("{text}");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("{e}");
            EXIT_INVALID
        }
    }
}
