//! The tools around runs, through the command line: `run --junit`,
//! `graph`, `inspect` against a live `vswitch up` world.
//!
//! Tests that build a world need root; without it they skip with a message,
//! unless `VSWITCH_REQUIRE_ROOT=1`, when they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use vswitch::world::RunId;

fn root_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn vswitch(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vswitch"));
    c.args(args).stdin(Stdio::null()).current_dir(root_dir());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("vswitch runs")
}

/// False (after saying why) when this process cannot build worlds.
fn have_root(test: &str) -> bool {
    if vswitch::netns::can_create() {
        return true;
    }
    assert!(
        std::env::var("VSWITCH_REQUIRE_ROOT").as_deref() != Ok("1"),
        "VSWITCH_REQUIRE_ROOT=1 but this process cannot create network namespaces"
    );
    eprintln!("skip {test}: needs root (network namespaces)");
    false
}

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

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vswitch-tools-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn graph_cli_writes_svg_and_dot() {
    let svg = tmp("quickstart.svg");
    let out = vswitch(
        &[
            "graph",
            "scenarios/quickstart.toml",
            "-o",
            svg.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<?xml") && text.contains("<svg"));
    for n in ["appnet", "web", "client", "machine host"] {
        assert!(text.contains(n), "{n} not in the SVG");
    }
    let out = vswitch(
        &["graph", "scenarios/quickstart.toml", "--format", "dot"],
        &[],
    );
    let dot = String::from_utf8(out.stdout).unwrap();
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(dot.contains("\"container:web\""));
    // Graphviz, where installed, reads it.
    if Command::new("dot").arg("-V").output().is_ok() {
        let mut child = Command::new("dot")
            .arg("-Tsvg")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(dot.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "dot rejected it: {out:?}");
    } else {
        assert!(
            std::env::var("VSWITCH_REQUIRE_ROOT").as_deref() != Ok("1"),
            "graphviz (dot) is not installed (.ci/run installs it)"
        );
        eprintln!("skip the dot syntax check: graphviz not installed");
    }
    // A report that is not JSON is bad input (exit 2), named.
    let bad = tmp("bad.json");
    std::fs::write(&bad, "nope").unwrap();
    let out = vswitch(
        &[
            "graph",
            "scenarios/quickstart.toml",
            "--json",
            bad.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a JSON report"));
}

#[test]
fn run_junit_of_a_real_run() {
    if !have_root("run_junit_of_a_real_run") {
        return;
    }
    let xml = tmp("quickstart.xml");
    let json = tmp("quickstart.json");
    let out = vswitch(
        &[
            "run",
            "-q",
            "scenarios/quickstart.toml",
            "--junit",
            xml.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&xml).unwrap();
    assert!(text.contains("<testsuite name=\"scenarios/quickstart.toml [userspace]\""));
    assert!(text.contains("failures=\"0\" errors=\"0\" skipped=\"0\""));
    assert_eq!(
        text.matches("<testcase ").count(),
        vswitch::scenario::load_file(&root_dir().join("scenarios/quickstart.toml"))
            .unwrap()
            .checks
            .len()
    );
    // The same report drawn: every check an arrow, all green.
    let out = vswitch(
        &[
            "graph",
            "scenarios/quickstart.toml",
            "--json",
            json.to_str().unwrap(),
        ],
        &[],
    );
    let svg = String::from_utf8(out.stdout).unwrap();
    assert!(svg.contains("marker-end=\"url(#arrow-pass)\""));
    assert!(!svg.contains("marker-end=\"url(#arrow-fail)\""));
}

/// `inspect` of a live world says what the namespaces really have.
#[test]
fn inspect_a_live_world() {
    if !have_root("inspect_a_live_world") {
        return;
    }
    let run = RunId::new();
    let up = vswitch(
        &["up", "scenarios/quickstart.toml"],
        &[("VSWITCH_RUN_ID", run.as_str())],
    );
    assert!(up.status.success(), "{up:?}");
    let result = std::panic::catch_unwind(|| {
        let out = vswitch(&["inspect", run.as_str(), "web"], &[]);
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ep = &v[0]["NetworkSettings"]["Networks"]["appnet"];
        let ip = vswitch(
            &[
                "exec",
                "--world",
                run.as_str(),
                "web",
                "--",
                "ip",
                "-j",
                "addr",
                "show",
                "eth0",
            ],
            &[],
        );
        assert!(ip.status.success(), "{ip:?}");
        let real: serde_json::Value = serde_json::from_slice(&ip.stdout).unwrap();
        let link = &real[0];
        assert_eq!(ep["MacAddress"], link["address"], "MAC");
        let inet = link["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["family"] == "inet")
            .expect("an IPv4 address on eth0");
        assert_eq!(ep["IPAddress"], inet["local"]);
        assert_eq!(ep["IPPrefixLen"], inet["prefixlen"]);
        let out = vswitch(&["inspect", run.as_str(), "appnet"], &[]);
        let net: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(net[0]["Driver"], "bridge");
        assert_eq!(net[0]["Containers"].as_object().unwrap().len(), 2);
        let out = vswitch(&["inspect", run.as_str(), "nosuch"], &[]);
        assert_eq!(out.status.code(), Some(1));
    });
    let down = vswitch(&["down", run.as_str()], &[]);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    assert!(down.status.success(), "{down:?}");
    assert_eq!(leftovers(&run), Vec::<String>::new());
}

#[test]
fn import_cli_prints_toml_and_lists_what_it_left_out() {
    let out = vswitch(&["import", "scenarios/compose/webapp.yml"], &[]);
    assert!(out.status.success(), "{out:?}");
    let toml = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(toml.contains("[[container]]\nname = \"api-2\""), "{toml}");
    assert!(
        stderr.contains("not translated: services.db.{image, environment} (line"),
        "{stderr}"
    );
    let plan = vswitch::scenario::parse_str(Path::new("webapp.toml"), &toml).expect("valid");
    assert_eq!(plan.containers.len(), 4);
    let bad = tmp("bad.yml");
    std::fs::write(&bad, "services:\n  web:\n    networks: [nope]\n").unwrap();
    let out = vswitch(&["import", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("bad.yml:3:16: services.web.networks: service web refers to undefined network"),
        "{e}"
    );
    // `run` on a broken compose file: exit 2 before anything is built.
    let out = vswitch(&["run", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // What the scenario loader rejects is located in the compose file too.
    std::fs::write(
        &bad,
        "services:\n  web:\n    networks:\n      n:\n        ipv4_address: 10.9.9.9\nnetworks:\n  n:\n    ipam:\n      config: [{subnet: 10.1.0.0/24}]\n",
    )
    .unwrap();
    let out = vswitch(&["check", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("bad.yml:4:7: services.web.networks.n: no configured subnet contains IP address 10.9.9.9"), "{e}");
}

/// `run FILE.yml` builds the translated world; `up FILE.yml` keeps it and
/// `inspect` shows the compose addresses.
#[test]
fn compose_file_runs_and_comes_up() {
    if !have_root("compose_file_runs_and_comes_up") {
        return;
    }
    let out = vswitch(
        &["run", "-q", "scenarios/compose/webapp.yml", "--json", "-"],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["title"], "compose: webapp");
    // A compose file runs with the discovery checks `import --checks`
    // writes, so the run observed something.
    let direct = v["passed"].as_u64().unwrap();
    assert!(direct >= 5, "{v}");
    assert_eq!(v["failed"], 0);
    // The same checks written out by import: names resolve, ports answer.
    let out = vswitch(&["import", "--checks", "scenarios/compose/webapp.yml"], &[]);
    assert!(out.status.success(), "{out:?}");
    let file = tmp("webapp.toml");
    std::fs::write(&file, &out.stdout).unwrap();
    let out = vswitch(&["run", "-q", file.to_str().unwrap(), "--json", "-"], &[]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"].as_u64().unwrap(), direct, "{v}");
    assert_eq!(v["failed"], 0);
    let run = RunId::new();
    let up = vswitch(
        &["up", "scenarios/compose/webapp.yml"],
        &[("VSWITCH_RUN_ID", run.as_str())],
    );
    assert!(up.status.success(), "{up:?}");
    let result = std::panic::catch_unwind(|| {
        let out = vswitch(&["inspect", run.as_str(), "proxy"], &[]);
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let front = &v[0]["NetworkSettings"]["Networks"]["front"];
        assert_eq!(front["IPAddress"], "172.28.0.10");
        let short = &v[0]["Id"].as_str().unwrap()[..12];
        assert_eq!(front["Aliases"], serde_json::json!(["www", short]));
        let ip = vswitch(
            &[
                "exec",
                "--world",
                run.as_str(),
                "proxy",
                "--",
                "ip",
                "-j",
                "addr",
                "show",
                "eth0",
            ],
            &[],
        );
        let real: serde_json::Value = serde_json::from_slice(&ip.stdout).unwrap();
        assert_eq!(front["MacAddress"], real[0]["address"]);
    });
    let down = vswitch(&["down", run.as_str()], &[]);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    assert!(down.status.success(), "{down:?}");
    assert_eq!(leftovers(&run), Vec::<String>::new());
}

/// Docker's run vocabulary in compose (scenarios/compose/run-vocabulary.yml):
/// `import` leaves none of its keys out, and the translation runs with
/// checks appended — a link target reached on the default bridge, a host
/// port vswitch chose (PUB-6), a sidecar in the app's namespace (NH-7).
#[test]
fn compose_run_vocabulary_round_trip() {
    let out = vswitch(&["import", "scenarios/compose/run-vocabulary.yml"], &[]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for k in [
        "hostname",
        "links",
        "dns_search",
        "dns_opt",
        "extra_hosts",
        "network_mode",
        "ports",
    ] {
        assert!(!err.contains(k), "{k} left out: {err}");
    }
    let mut toml = String::from_utf8(out.stdout).unwrap();
    assert!(toml.contains("network_mode = \"container:app\""), "{toml}");
    assert!(toml.contains("links = [\"db:database\"]"), "{toml}");
    if !have_root("compose_run_vocabulary_round_trip") {
        return;
    }
    toml.push_str(
        r#"
[[check]]
kind = "tcp"
from = "app"
to = "db:5432"
expect = "ok"

[[check]]
kind = "tcp"
from = "host"
to = "127.0.0.1:32768"
expect = "ok"

[[check]]
kind = "tcp"
from = "metrics"
to = "127.0.0.1:80"
expect = "ok"

[[check]]
kind = "tcp"
from = "db"
to = "metrics:9100"
seen_as = "db"
expect = "ok"
"#,
    );
    let file = tmp("run-vocabulary.toml");
    std::fs::write(&file, &toml).unwrap();
    let out = vswitch(&["run", "-q", file.to_str().unwrap(), "--json", "-"], &[]);
    assert!(out.status.success(), "{out:?}\n{toml}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], 4, "{v}");
    assert_eq!(v["chosen_ports"][1]["host_port"], 32768, "{v}");
    assert_eq!(v["chosen_ports"][1]["host_ip"], "127.0.0.1", "{v}");
}

/// `vswitch trace --backend kernel` builds the world, traces one SYN with
/// nftables and names the rule that dropped it: ICC off (BR-8) is the
/// bridge's forward rule; the same frame through the engine names the
/// engine's drop. Nothing is left behind.
#[test]
fn trace_names_the_icc_drop_on_both_paths() {
    if !have_root("trace_names_the_icc_drop_on_both_paths") {
        return;
    }
    if vswitch::prereq::tool("trace_names_the_icc_drop_on_both_paths", "nft")
        .or_panic()
        .is_none()
    {
        return;
    }
    let args = [
        "trace",
        "scenarios/bridge-icc-off.toml",
        "--from",
        "a",
        "--to",
        "b:80",
    ];
    let out = vswitch(&args, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("verdict: dropped:icc-disabled"), "{text}");
    let run = RunId::new();
    let mut k = args.to_vec();
    k.extend(["--backend", "kernel"]);
    let out = vswitch(&k, &[("VSWITCH_RUN_ID", run.as_str())]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("verdict: dropped:icc-disabled (by host inet")
            && text.contains("filter_forward"),
        "{text}"
    );
    assert!(text.contains("sent from a: no connection"), "{text}");
    assert!(leftovers(&run).is_empty(), "{:?}", leftovers(&run));
    assert!(vswitch::netns::list(&format!("{run}-")).is_empty());
}

/// A bad `--docker-hosts` side file, or bad `--docker-host`/TLS options,
/// is exit 2 naming the file, line, column and field (no root, no daemon:
/// the mapping is read before any command).
#[test]
fn docker_hosts_input_errors_exit_2() {
    let side = tmp("bad-hosts.toml");
    std::fs::write(
        &side,
        "[docker_hosts]\nh1 = \"unix:///run/a.sock\"\nh2 = { host = \"tcp://127.0.0.1:2376\", tlscacert = \"ca.pem\" }\n",
    )
    .unwrap();
    let side = side.to_str().unwrap();
    let cases: [(&[&str], String); 4] = [
        (
            &["--docker-hosts", side],
            format!("{side}:3:51: docker_hosts.h2.tlscacert: needs tlsverify = true"),
        ),
        (
            &["--docker-host", "h1=ssh://x"],
            "--docker-host: machine h1: `ssh://x` is neither".into(),
        ),
        (
            &[
                "--docker-host",
                "h1=tcp://127.0.0.1:2376",
                "--tlscert",
                "c.pem",
            ],
            "--tlscert needs --tlsverify".into(),
        ),
        (
            &["--docker-hosts", "/nonexistent/hosts.toml"],
            "/nonexistent/hosts.toml:0:0: file: cannot read the docker hosts file".into(),
        ),
    ];
    for (args, want) in cases {
        let mut all = args.to_vec();
        all.extend(["check", "scenarios/quickstart.toml"]);
        let out = vswitch(&all, &[("DOCKER_TLS_VERIFY", "")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(&want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
