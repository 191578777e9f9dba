//! Results mean what they say, in a built world: a probe that cannot run is
//! observed `error` whatever the check expected.

use std::path::Path;

use crate::backend::{BuildOptions, World};
use crate::netns::{NETNS_RUN_DIR, NetNs};
use crate::run::{Report, run_checks};
use crate::scenario::parse_str;
use crate::scenario::plan::{BackendKind, Node};
use crate::world::RunId;

const TWO: &str = r#"
name = "two on a bridge"
[[network]]
name = "n"
subnet = "10.77.0.0/24"
[[container]]
name = "a"
networks = ["n"]
serve = ["tcp:80"]
[[container]]
name = "b"
networks = ["n"]
[[check]]
name = "BR-7 reachable"
kind = "ping"
from = "b"
to = "a"
count = 1
expect = "ok"
[[check]]
name = "nothing on 81"
kind = "tcp"
from = "b"
to = "a:81"
timeout_ms = 2000
expect = "fail"
[[check]]
kind = "reach"
from = ["b"]
to = ["a"]
expect = "fail"
[[check]]
name = "the other direction still runs"
kind = "tcp"
from = "a"
to = "a:80"
expect = "ok"
"#;

/// A file under /run/netns that is not a namespace: entering it fails as
/// entering a namespace that is gone does. Removed on drop.
struct NotANamespace(String);

impl NotANamespace {
    fn new() -> NotANamespace {
        let name = format!("vswtest-gone-{}", std::process::id());
        std::fs::create_dir_all(NETNS_RUN_DIR).unwrap();
        std::fs::write(Path::new(NETNS_RUN_DIR).join(&name), b"").unwrap();
        NotANamespace(name)
    }
}

impl Drop for NotANamespace {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(Path::new(NETNS_RUN_DIR).join(&self.0));
    }
}

#[test]
fn a_probe_whose_namespace_is_gone_is_an_error_whatever_was_expected() {
    if !crate::sys::require_root("a_probe_whose_namespace_is_gone_is_an_error") {
        return;
    }
    let plan = parse_str(Path::new("gone.toml"), TWO).unwrap();
    let run = RunId::new();
    let mut world = World::build(
        &run,
        &plan,
        BackendKind::Userspace,
        &BuildOptions::default(),
        &|_| {},
    )
    .expect("world builds");
    let bogus = NotANamespace::new();
    let b = Node::Container(1);
    let real = world.swap_ns(b, NetNs::open(&bogus.0).unwrap());
    let results = run_checks(&world, &plan, &|_| {});
    let _bogus = world.swap_ns(b, real);
    drop(world);
    assert!(crate::netns::list(&format!("{run}-")).is_empty());

    // ping expecting ok, tcp expecting fail, reach expecting fail: all error.
    for r in &results[..3] {
        assert_eq!(r.observed, "error", "{r:#?}");
        assert!(!r.pass, "{r:#?}");
        assert!(r.detail.contains("could not run"), "{r:#?}");
    }
    assert!(results[3].pass, "{:#?}", results[3]);
    let mut report = Report {
        scenario: "gone.toml".into(),
        title: plan.name.clone(),
        backend: "userspace".into(),
        run_id: run.to_string(),
        passed: 0,
        failed: 0,
        errors: 0,
        skipped: 0,
        setup_ms: 0,
        teardown_ms: 0,
        checks: results,
        unsupported: Vec::new(),
        steps: Vec::new(),
        metrics: serde_json::Value::Null,
        chosen_ports: Vec::new(),
    };
    report.tally();
    assert_eq!((report.passed, report.failed, report.errors), (1, 0, 3));
    assert!(!report.all_held());
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["errors"], 3);
    assert!(report.table().contains("ERROR"));
    assert!(report.table().contains("1 passed, 0 failed, 3 errors"));
}
