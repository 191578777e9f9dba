//! The JUnit document parsed back as XML and checked element by element.

use std::collections::BTreeMap;
use std::path::Path;

use quick_xml::Reader;
use quick_xml::events::Event;

use super::*;
use crate::scenario;

/// A parsed element: name, attributes, children, text.
#[derive(Debug, Default)]
pub(crate) struct Elem {
    pub name: String,
    pub attrs: BTreeMap<String, String>,
    pub children: Vec<Elem>,
    pub text: String,
}

impl Elem {
    pub fn all(&self, name: &str) -> Vec<&Elem> {
        self.children.iter().filter(|c| c.name == name).collect()
    }
    pub fn attr(&self, k: &str) -> &str {
        self.attrs
            .get(k)
            .unwrap_or_else(|| panic!("<{}> has no attribute {k}: {self:?}", self.name))
    }
}

fn elem_of(e: &quick_xml::events::BytesStart) -> Elem {
    let mut el = Elem {
        name: e.name().as_ref().to_string(),
        ..Elem::default()
    };
    for a in e.attributes() {
        let a = a.unwrap();
        el.attrs.insert(
            a.key.as_ref().to_string(),
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .unwrap()
                .into_owned(),
        );
    }
    el
}

/// Parses a whole document strictly (mismatched tags are errors).
pub(crate) fn parse(xml: &str) -> Elem {
    let mut r = Reader::from_str(xml);
    let mut stack = vec![Elem::default()];
    loop {
        match r.read_event().expect("well-formed XML") {
            Event::Start(e) => stack.push(elem_of(&e)),
            Event::Empty(e) => {
                let el = elem_of(&e);
                stack.last_mut().unwrap().children.push(el);
            }
            Event::End(_) => {
                let mut el = stack.pop().unwrap();
                el.text = el.text.trim().to_string();
                stack.last_mut().unwrap().children.push(el);
            }
            Event::Text(t) => {
                let s = t.xml_content(quick_xml::XmlVersion::Implicit1_0);
                stack.last_mut().unwrap().text.push_str(&s);
            }
            Event::GeneralRef(g) => {
                let name = g.into_inner().into_owned();
                let s = match name.as_str() {
                    "lt" => "<",
                    "gt" => ">",
                    "amp" => "&",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "?",
                };
                stack.last_mut().unwrap().text.push_str(s);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(stack.len(), 1, "unclosed elements");
    let mut root = stack.pop().unwrap();
    assert_eq!(root.children.len(), 1, "one root element");
    root.children.pop().unwrap()
}

const SCENARIO: &str = r#"
name = "junit <test> & co"
[[network]]
name = "n"
[[container]]
name = "a"
networks = ["n"]
serve = ["tcp:80"]
[[container]]
name = "b"
networks = ["n"]
[[check]]
kind = "ping"
from = "b"
to = "a"
expect = "ok"
[[check]]
kind = "tcp"
name = "web answers"
from = "b"
to = "a:80"
expect = "ok"
[[check]]
kind = "ping"
from = "a"
to = "b"
expect = "fail"
"#;

fn plan() -> Plan {
    scenario::parse_str(Path::new("scenarios/j.toml"), SCENARIO).expect("valid")
}

fn report(plan: &Plan, checks: Vec<CheckResult>) -> Report {
    let mut r = Report {
        scenario: "scenarios/j.toml".into(),
        title: plan.name.clone(),
        backend: "userspace".into(),
        run_id: "vsw000001".into(),
        passed: 0,
        failed: 0,
        errors: 0,
        skipped: 0,
        setup_ms: 1200,
        teardown_ms: 300,
        checks,
        unsupported: Vec::new(),
        steps: Vec::new(),
        metrics: serde_json::Value::Null,
        chosen_ports: Vec::new(),
    };
    r.tally();
    r
}

fn ran(plan: &Plan) -> Vec<CheckResult> {
    let mut v = vec![
        CheckResult::new(plan, &plan.checks[0]).observed("ok", true, "3/3 replies".into()),
        CheckResult::new(plan, &plan.checks[1]).observed(
            "fail",
            false,
            "connect: <refused> & gone".into(),
        ),
        CheckResult::new(plan, &plan.checks[2]).observed("error", false, "no socket".into()),
    ];
    for (i, c) in v.iter_mut().enumerate() {
        c.duration_ms = Some(100 * (i as u64 + 1));
    }
    v
}

#[test]
fn run_report_becomes_a_parsable_junit_document() {
    let plan = plan();
    let rep = report(&plan, ran(&plan));
    let xml = to_xml(&[suite(Some(&plan), &rep, None)]);
    let root = parse(&xml);
    assert_eq!(root.name, "testsuites");
    for k in ["tests", "failures", "errors", "skipped", "time"] {
        root.attr(k);
    }
    assert_eq!(root.attr("tests"), "3");
    let suites = root.all("testsuite");
    assert_eq!(suites.len(), 1);
    let s = suites[0];
    assert_eq!(s.attr("name"), "scenarios/j.toml [userspace]");
    assert_eq!(s.attr("tests"), "3");
    assert_eq!(s.attr("failures"), "1");
    assert_eq!(s.attr("errors"), "1");
    assert_eq!(s.attr("skipped"), "0");
    // setup 1.2 + longest concurrent check 0.3 + teardown 0.3
    assert_eq!(s.attr("time"), "1.800");
    let props = &s.all("properties")[0];
    let names: Vec<&str> = props
        .all("property")
        .iter()
        .map(|p| p.attr("name"))
        .collect();
    assert_eq!(names, ["scenario", "title", "backend", "run_id"]);
    assert_eq!(props.all("property")[1].attr("value"), "junit <test> & co");
    let cases = s.all("testcase");
    assert_eq!(cases.len(), 3);
    assert_eq!(cases[0].attr("name"), "#0 ping b → a");
    assert_eq!(cases[0].attr("classname"), "j.userspace");
    assert_eq!(cases[0].attr("time"), "0.100");
    assert!(cases[0].children.is_empty());
    assert_eq!(cases[1].attr("name"), "#1 tcp b → a:80 (web answers)");
    let f = &cases[1].all("failure")[0];
    assert_eq!(f.attr("message"), "expected ok, observed fail");
    assert_eq!(f.text, "connect: <refused> & gone");
    let e = &cases[2].all("error")[0];
    assert_eq!(e.attr("message"), "no socket");
}

#[test]
fn refused_backend_skips_every_check_with_the_reason() {
    let plan = plan();
    let mut rep = report(&plan, Vec::new());
    rep.backend = "kernel".into();
    rep.skipped = 3;
    rep.unsupported = vec!["kernel backend: ipvlan is not available".into()];
    let root = parse(&to_xml(&[suite(Some(&plan), &rep, None)]));
    let s = &root.all("testsuite")[0];
    assert_eq!(s.attr("skipped"), "3");
    assert_eq!(s.attr("tests"), "3");
    assert_eq!(root.attr("skipped"), "3");
    for c in s.all("testcase") {
        let sk = &c.all("skipped")[0];
        assert!(
            sk.attr("message").contains("ipvlan is not available"),
            "{sk:?}"
        );
        assert_eq!(c.attr("classname"), "j.kernel");
    }
}

#[test]
fn unbuilt_world_and_invalid_file_are_errors() {
    let plan = plan();
    let rep = report(&plan, Vec::new());
    let s = suite(Some(&plan), &rep, Some("building the world failed: boom"));
    let invalid = invalid_suite("bad.toml", "userspace", "bad.toml:3:1: name: missing");
    let root = parse(&to_xml(&[s, invalid]));
    let suites = root.all("testsuite");
    assert_eq!(suites.len(), 2);
    assert_eq!(suites[0].attr("errors"), "3");
    assert_eq!(suites[1].attr("errors"), "1");
    assert_eq!(root.attr("errors"), "4");
    let e = &suites[1].all("testcase")[0].all("error")[0];
    assert_eq!(e.attr("message"), "bad.toml:3:1: name: missing");
}
