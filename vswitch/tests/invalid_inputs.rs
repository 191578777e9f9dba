//! Every malformed-input class is rejected with the right location.
//!
//! Each `tests/invalid/*.toml` starts with
//! `# expect: <line>:<column>: <field>: <substring of the message>`;
//! `load_file` must report exactly that line, column and field, and a
//! message containing the substring. A second test feeds truncated and
//! mutated scenarios to `parse_str`, which must never panic.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use vswitch::scenario::{load_file, parse_str};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/invalid exists")
        .map(|e| e.expect("readable directory").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// `(line, column, field, message substring)` from the first line.
fn expectation(text: &str) -> Option<(usize, usize, String, String)> {
    let spec = text.lines().next()?.strip_prefix("# expect: ")?;
    let mut parts = spec.splitn(4, ": ");
    let pos = parts.next()?;
    let field = parts.next()?.to_string();
    let msg = parts.next()?.to_string();
    let (line, col) = pos.split_once(':')?;
    Some((line.parse().ok()?, col.parse().ok()?, field, msg))
}

#[test]
fn every_fixture_fails_where_it_says() {
    let files = fixtures();
    assert!(
        files.len() >= 20,
        "expected the fixture set, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("fixture readable");
        let Some((line, column, field, msg)) = expectation(&text) else {
            let got = load_file(f)
                .err()
                .map(|e| format!("{}:{}: {}: {}", e.line, e.column, e.field, e.message));
            failures.push(format!(
                "{}: first line is not `# expect: L:C: field: message` (reported: {got:?})",
                f.display()
            ));
            continue;
        };
        match load_file(f) {
            Ok(_) => failures.push(format!("{}: accepted", f.display())),
            Err(e) => {
                let name = f.file_name().unwrap_or_default().to_string_lossy();
                if e.line != line
                    || e.column != column
                    || e.field != field
                    || !e.message.contains(&msg)
                {
                    failures.push(format!(
                        "{name}: got `{}:{}: {}: {}`",
                        e.line, e.column, e.field, e.message
                    ));
                }
                assert_eq!(e.file, *f);
                assert!(
                    e.to_string()
                        .starts_with(&format!("{}:{line}:{column}: ", f.display()))
                        || !failures.is_empty()
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn unreadable_file_names_the_file() {
    let p = Path::new("/nonexistent/scenario.toml");
    let e = load_file(p).expect_err("missing file");
    assert_eq!((e.line, e.column), (0, 0));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/scenario.toml:0:0: "),
        "{e}"
    );
}

/// A scenario using most of the format, for mutation.
const RICH: &str = r#"name = "rich"
description = "everything"
tags = ["dns", "nat"]
lan = "198.18.0.0/24"

[[machine]]
name = "h1"
resolvers = ["up"]

[[machine]]
name = "h2"
ip = "198.18.0.20"
backend = "kernel"
userland_proxy = false

[[external]]
name = "up"
ip = "198.18.0.1"
gateway = true
serve = ["tcp:80", "udp:53"]
dns = { "example.com" = "198.18.0.1", "multi.example" = ["198.18.0.1", "198.18.0.2"] }

[[network]]
name = "bridge"
default = true
machine = "h1"

[[network]]
name = "appnet"
machine = "h1"
subnet = ["172.20.0.0/24", "172.20.1.0/24"]
gateway = "172.20.0.254"
ip_range = "172.20.0.0/25"
aux_addresses = { r = "172.20.0.100" }
ipv6 = true
icc = false
mtu = 1400

[[network]]
name = "mv"
driver = "macvlan"
machine = "h2"
parent = "eth0.10"
mode = "private"

[[network]]
name = "ov"
driver = "overlay"
mtu = 1500

[[container]]
name = "web"
machine = "h1"
networks = [{ name = "appnet", ip = "172.20.0.10", aliases = ["www"] }, "ov"]
publish = ["8080:80", "[::1]:8443:443/tcp"]
serve = ["tcp:80"]
dns = ["198.18.0.1"]

[[container]]
name = "db"
machine = "h2"
networks = ["mv", "ov"]

[[check]]
kind = "dns"
from = "web"
query = "db"
type = "A"
transport = "tcp"
expect = ["10.0.0.3"]

[[check]]
kind = "tcp"
from = "up"
to = "h1:8080"
seen_as = "up"
expect = "ok"

[[check]]
kind = "reach"
from = ["web", "db"]
to = ["web@ov", "db"]
expect = "ok"

[[check]]
kind = "throughput"
from = "web"
to = "db:5201"
proto = "udp"
min_kpps = 10.5
known_difference = "slow"
backend = "userspace"
"#;

#[test]
fn rich_scenario_is_valid() {
    if let Err(e) = parse_str(Path::new("rich.toml"), RICH) {
        panic!("{e}");
    }
}

#[test]
fn every_truncation_is_handled() {
    let src = Path::new("t.toml");
    for (i, _) in RICH.char_indices() {
        let _ = parse_str(src, &RICH[..i]);
        let _ = parse_str(src, &RICH[i..]);
    }
}

/// Interesting replacement tokens for mutations.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("\"".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("\n".to_string()),
        Just("=".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("99999999999".to_string()),
        Just("/33".to_string()),
        Just("::".to_string()),
        Just("@".to_string()),
        Just("[[check]]\n".to_string()),
        Just("[[network]]\nname = \"x\"\n".to_string()),
        Just("é".to_string()),
        "[ -~]{0,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_scenarios_never_panic(
        edits in proptest::collection::vec((0usize..RICH.len(), 0usize..8, token()), 1..6)
    ) {
        let mut text = RICH.to_string();
        for (at, del, ins) in edits {
            let mut at = at.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + del).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            text.replace_range(at..end, &ins);
        }
        let _ = parse_str(Path::new("m.toml"), &text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_str(Path::new("b.toml"), &text);
    }
}
