//! The drawing of scenarios of every shape: well-formed SVG naming every
//! node, DOT naming every node, arrows coloured from a report.

use std::path::Path;

use super::*;
use crate::junit::tests::{Elem, parse};
use crate::scenario;

const WORLD: &str = r#"
name = "graph: every kind of node & <more>"
lan = "198.18.0.0/24"
[[machine]]
name = "h1"
[[machine]]
name = "h2"
[[external]]
name = "ns1"
ip = "198.18.0.53"
dns = { "example.test" = "198.18.0.80" }
[[external]]
name = "peer"
ip = "198.18.0.90"
vlan = 10
[[network]]
name = "front"
machine = "h1"
subnet = "172.20.0.0/24"
[[network]]
name = "mv"
driver = "macvlan"
machine = "h2"
parent = "eth0.10"
subnet = "198.18.10.0/24"
[[network]]
name = "ov"
driver = "overlay"
subnet = "10.0.9.0/24"
[[container]]
name = "web"
machine = "h1"
networks = ["front", "ov"]
serve = ["tcp:80"]
publish = ["8080:80"]
[[container]]
name = "db"
machine = "h1"
networks = ["front"]
[[container]]
name = "mvc"
machine = "h2"
networks = ["mv", "ov"]
[[check]]
kind = "ping"
from = "mvc"
to = "web"
expect = "ok"
[[check]]
kind = "tcp"
from = "h2"
to = "h1:8080"
expect = "ok"
[[check]]
kind = "dns"
from = "web"
query = "example.test"
expect = ["198.18.0.80"]
[[check]]
kind = "reach"
from = ["web", "mvc"]
to = ["peer"]
expect = "fail"
"#;

fn plan() -> Plan {
    scenario::parse_str(Path::new("g.toml"), WORLD).expect("valid scenario")
}

fn texts(e: &Elem, out: &mut Vec<String>) {
    if e.name == "text" {
        out.push(e.text.clone());
    }
    for c in &e.children {
        texts(c, out);
    }
}

fn paths<'a>(e: &'a Elem, out: &mut Vec<&'a Elem>) {
    if e.name == "path" && e.attrs.contains_key("marker-end") {
        out.push(e);
    }
    for c in &e.children {
        paths(c, out);
    }
}

fn names(plan: &Plan) -> Vec<String> {
    let mut v: Vec<String> = plan.machines.iter().map(|m| m.name.clone()).collect();
    v.extend(plan.networks.iter().map(|n| n.name.clone()));
    v.extend(plan.containers.iter().map(|c| c.name.clone()));
    v.extend(plan.externals.iter().map(|x| x.name.clone()));
    v
}

#[test]
fn svg_is_xml_and_names_every_node() {
    let plan = plan();
    let svg = to_svg(&plan, &[]);
    let root = parse(&svg);
    assert_eq!(root.name, "svg");
    assert_eq!(root.attr("xmlns"), "http://www.w3.org/2000/svg");
    let mut t = Vec::new();
    texts(&root, &mut t);
    let all = t.join("\n");
    for n in names(&plan) {
        assert!(all.contains(&n), "{n:?} missing from the SVG texts:\n{all}");
    }
    for want in [
        "lan 198.18.0.0/24 · 802.1Q VLANs 10",
        "publish 8080:80/tcp",
        "overlay ov (VXLAN",
        "vlan 10",
        "parent eth0.10",
    ] {
        assert!(all.contains(want), "{want:?} missing:\n{all}");
    }
    assert!(all.contains("graph: every kind of node & <more>"));
    // Lines cut to fit a box are whole in its tooltip.
    let mut titles = Vec::new();
    fn collect<'a>(e: &'a Elem, name: &str, out: &mut Vec<&'a Elem>) {
        if e.name == name {
            out.push(e);
        }
        for c in &e.children {
            collect(c, name, out);
        }
    }
    collect(&root, "title", &mut titles);
    assert!(
        titles
            .iter()
            .any(|t| t.text.contains("web\n") && t.text.contains("publish 8080:80/tcp"))
    );
    // Deterministic.
    assert_eq!(svg, to_svg(&plan, &[]));
}

const REPORT: &str = r#"{"scenario": "g.toml", "title": "graph: every kind of node", "checks": [
  {"index": 0, "pass": true, "observed": "ok"},
  {"index": 1, "pass": false, "observed": "fail"},
  {"index": 2, "pass": false, "observed": "error"}
]}"#;

#[test]
fn report_checks_become_coloured_arrows() {
    let plan = plan();
    let arrows = check_arrows(&plan, REPORT, "r.json").expect("report");
    assert_eq!(arrows.len(), 4);
    let st: Vec<Status> = arrows.iter().map(|a| a.status).collect();
    assert_eq!(
        st,
        [Status::Pass, Status::Fail, Status::Error, Status::NotRun]
    );
    assert_eq!(arrows[0].pairs, [(Node::Container(2), Node::Container(0))]);
    assert_eq!(arrows[1].pairs, [(Node::Machine(1), Node::Machine(0))]);
    // dns: to the server the query is answered by is not known; the queried
    // name is no node, so the check is listed but not drawn.
    assert!(arrows[2].pairs.is_empty());
    assert_eq!(arrows[3].pairs.len(), 2);
    let root = parse(&to_svg(&plan, &arrows));
    let mut p = Vec::new();
    paths(&root, &mut p);
    let colours: Vec<&str> = p.iter().map(|e| e.attr("stroke")).collect();
    assert_eq!(
        colours,
        [
            Status::Pass.colour(),
            Status::Fail.colour(),
            Status::NotRun.colour(),
            Status::NotRun.colour()
        ]
    );
    assert_eq!(Status::Pass.colour(), "#1a9641");
    let mut t = Vec::new();
    texts(&root, &mut t);
    assert!(
        t.iter()
            .any(|s| s.contains("#2 dns web → example.test A") && s.contains("error"))
    );
    let dot = to_dot(&plan, &arrows);
    assert!(dot.contains("color=\"#d7191c\""));
    assert!(dot.contains("\"machine:h2\" -> \"machine:h1\""));
}

#[test]
fn dot_names_every_node() {
    let plan = plan();
    let dot = to_dot(&plan, &[]);
    assert!(dot.starts_with("digraph "));
    assert!(dot.trim_end().ends_with('}'));
    for n in names(&plan) {
        assert!(dot.contains(&n), "{n:?} missing from:\n{dot}");
    }
    assert!(dot.contains("\"container:db\""));
    assert!(dot.contains("digraph \"graph: every kind of node & <more>\""));
    assert!(dot.contains("subgraph \"cluster_h1\""));
    assert_eq!(dot.matches('{').count(), dot.matches('}').count());
}

#[test]
fn bad_reports_are_named() {
    let plan = plan();
    let e = check_arrows(&plan, "not json", "r.json").unwrap_err();
    assert!(
        e.to_string().starts_with("r.json: not a JSON report"),
        "{e}"
    );
    let e = check_arrows(&plan, "{\"x\": 1}", "r.json").unwrap_err();
    assert!(e.to_string().contains("no report with `checks`"), "{e}");
    // An array from several files: the matching one is picked.
    let two = format!("[{{\"scenario\": \"other.toml\", \"checks\": []}}, {REPORT}]");
    let arrows = check_arrows(&plan, &two, "r.json").unwrap();
    assert_eq!(arrows[0].status, Status::Pass);
}

#[test]
fn every_repository_scenario_draws() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let Ok(plan) = scenario::load_file(&path) else {
            continue;
        };
        let root = parse(&to_svg(&plan, &[]));
        let mut t = Vec::new();
        texts(&root, &mut t);
        let all = t.join("\n");
        for name in names(&plan) {
            assert!(all.contains(&name), "{}: {name} not drawn", path.display());
        }
        n += 1;
    }
    assert!(n > 10, "only {n} scenarios drawn");
}

/// NH-7: a container sharing another's namespace says whose it is.
#[test]
fn shared_namespace_is_drawn() {
    let plan = scenario::load_file(Path::new("../scenarios/vocab-run-options.toml")).unwrap();
    let c = plan
        .containers
        .iter()
        .position(|c| c.netns_of.is_some())
        .expect("the scenario has a container:NAME");
    let owner = &plan.containers[plan.containers[c].netns_of.unwrap()].name;
    let lines = layout::container_lines(&plan, c);
    assert!(
        lines.contains(&format!("network_mode container:{owner}")),
        "{lines:?}"
    );
}
