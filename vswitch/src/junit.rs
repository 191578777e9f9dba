//! JUnit XML for `run --junit` and `compare --junit`: one `<testsuite>` per
//! scenario and backend, one `<testcase>` per check.
//!
//! A check that held is a plain testcase; one that did not carries
//! `<failure message="expected …, observed …">` with the detail as text; a
//! probe that could not run (observed `error`) or a world that could not be
//! built carries `<error>`; a backend that refused the scenario (exit 3)
//! skips every check with the refusal reasons as `<skipped message>`.

use std::io;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use crate::run::{CheckResult, Report};
use crate::scenario::plan::Plan;

/// What became of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It held.
    Passed,
    /// It ran and did not hold.
    Failure {
        /// One line: expected and observed.
        message: String,
        /// The probe's detail.
        detail: String,
    },
    /// It could not run (probe error, world not built).
    Error {
        /// Why.
        message: String,
    },
    /// It was not run (backend refused the scenario).
    Skipped {
        /// Why.
        message: String,
    },
}

/// One `<testcase>`.
#[derive(Clone, Debug)]
pub struct Case {
    /// The check's position in the file.
    pub index: usize,
    /// `#INDEX kind from → to`, with the check's label when it has one.
    pub name: String,
    /// `scenario-stem.backend`.
    pub classname: String,
    /// Seconds.
    pub time: f64,
    /// Result.
    pub outcome: Outcome,
}

/// One `<testsuite>`: a scenario on one backend.
#[derive(Clone, Debug)]
pub struct Suite {
    /// `scenario [backend]`.
    pub name: String,
    /// Seconds (build + checks + teardown).
    pub time: f64,
    /// `<properties>`: scenario, title, backend, run id.
    pub properties: Vec<(String, String)>,
    /// Testcases.
    pub cases: Vec<Case>,
}

impl Suite {
    /// Number of testcases with this kind of outcome.
    fn count(&self, pred: fn(&Outcome) -> bool) -> usize {
        self.cases.iter().filter(|c| pred(&c.outcome)).count()
    }

    /// Failures.
    pub fn failures(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failure { .. }))
    }

    /// Errors.
    pub fn errors(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Error { .. }))
    }

    /// Skipped.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped { .. }))
    }
}

fn stem(scenario: &str) -> String {
    std::path::Path::new(scenario)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| scenario.to_string())
}

fn case_name(c: &CheckResult) -> String {
    let base = format!("#{} {} {} → {}", c.index, c.kind, c.from, c.to);
    match &c.name {
        Some(n) => format!("{base} ({n})"),
        None => base,
    }
}

fn ms(v: u64) -> f64 {
    v as f64 / 1000.0
}

/// The outcome of a check that ran.
fn ran_outcome(c: &CheckResult) -> Outcome {
    if c.pass {
        Outcome::Passed
    } else if c.is_error() {
        Outcome::Error {
            message: if c.detail.is_empty() {
                "the probe could not run".into()
            } else {
                c.detail.clone()
            },
        }
    } else {
        Outcome::Failure {
            message: format!("expected {}, observed {}", c.expect, c.observed),
            detail: c.detail.clone(),
        }
    }
}

/// The suite of one run. `plan` supplies the checks a refused or unbuilt
/// world never ran; `error` is the run's error (e.g. the build failed).
pub fn suite(plan: Option<&Plan>, report: &Report, error: Option<&str>) -> Suite {
    let classname = format!("{}.{}", stem(&report.scenario), report.backend);
    let mut cases: Vec<Case> = report
        .checks
        .iter()
        .map(|c| Case {
            index: c.index,
            name: case_name(c),
            classname: classname.clone(),
            time: c.duration_ms.map_or(0.0, ms),
            outcome: ran_outcome(c),
        })
        .collect();
    if let Some(plan) = plan {
        let not_run = if !report.unsupported.is_empty() {
            Some(Outcome::Skipped {
                message: format!(
                    "backend {} cannot build this scenario: {}",
                    report.backend,
                    report.unsupported.join("; ")
                ),
            })
        } else {
            error.map(|e| Outcome::Error {
                message: e.to_string(),
            })
        };
        if let Some(outcome) = not_run {
            for check in &plan.checks {
                if report.checks.iter().any(|c| c.index == check.index) {
                    continue;
                }
                cases.push(Case {
                    index: check.index,
                    name: case_name(&CheckResult::new(plan, check)),
                    classname: classname.clone(),
                    time: 0.0,
                    outcome: outcome.clone(),
                });
            }
            cases.sort_by_key(|c| c.index);
        }
    }
    // Checks run concurrently: the suite took the build, the longest
    // concurrent check plus the throughput checks in turn, and the teardown.
    let concurrent = report
        .checks
        .iter()
        .filter(|c| c.kind != "throughput")
        .filter_map(|c| c.duration_ms)
        .max()
        .unwrap_or(0);
    let sequential: u64 = report
        .checks
        .iter()
        .filter(|c| c.kind == "throughput")
        .filter_map(|c| c.duration_ms)
        .sum();
    Suite {
        name: format!("{} [{}]", report.scenario, report.backend),
        time: ms(report.setup_ms + concurrent + sequential + report.teardown_ms),
        properties: vec![
            ("scenario".into(), report.scenario.clone()),
            ("title".into(), report.title.clone()),
            ("backend".into(), report.backend.clone()),
            ("run_id".into(), report.run_id.clone()),
        ],
        cases,
    }
}

/// The suite of a scenario that could not be loaded: one testcase in error.
pub fn invalid_suite(scenario: &str, backend: &str, error: &str) -> Suite {
    Suite {
        name: format!("{scenario} [{backend}]"),
        time: 0.0,
        properties: vec![
            ("scenario".into(), scenario.to_string()),
            ("backend".into(), backend.to_string()),
        ],
        cases: vec![Case {
            index: 0,
            name: "load scenario".into(),
            classname: format!("{}.{backend}", stem(scenario)),
            time: 0.0,
            outcome: Outcome::Error {
                message: error.to_string(),
            },
        }],
    }
}

fn secs(t: f64) -> String {
    format!("{t:.3}")
}

fn write_case<W: io::Write>(w: &mut Writer<W>, c: &Case) -> io::Result<()> {
    let time = secs(c.time);
    let el = w.create_element("testcase").with_attributes([
        ("name", c.name.as_str()),
        ("classname", c.classname.as_str()),
        ("time", time.as_str()),
    ]);
    match &c.outcome {
        Outcome::Passed => {
            el.write_empty()?;
        }
        Outcome::Failure { message, detail } => {
            el.write_inner_content(|w| {
                w.create_element("failure")
                    .with_attributes([("message", message.as_str()), ("type", "check")])
                    .write_text_content(BytesText::new(detail))?;
                Ok(())
            })?;
        }
        Outcome::Error { message } => {
            el.write_inner_content(|w| {
                w.create_element("error")
                    .with_attributes([("message", message.as_str()), ("type", "error")])
                    .write_empty()?;
                Ok(())
            })?;
        }
        Outcome::Skipped { message } => {
            el.write_inner_content(|w| {
                w.create_element("skipped")
                    .with_attribute(("message", message.as_str()))
                    .write_empty()?;
                Ok(())
            })?;
        }
    }
    Ok(())
}

fn write_suite<W: io::Write>(w: &mut Writer<W>, s: &Suite) -> io::Result<()> {
    let tests = s.cases.len().to_string();
    let failures = s.failures().to_string();
    let errors = s.errors().to_string();
    let skipped = s.skipped().to_string();
    let time = secs(s.time);
    w.create_element("testsuite")
        .with_attributes([
            ("name", s.name.as_str()),
            ("tests", tests.as_str()),
            ("failures", failures.as_str()),
            ("errors", errors.as_str()),
            ("skipped", skipped.as_str()),
            ("time", time.as_str()),
        ])
        .write_inner_content(|w| {
            w.create_element("properties").write_inner_content(|w| {
                for (k, v) in &s.properties {
                    w.create_element("property")
                        .with_attributes([("name", k.as_str()), ("value", v.as_str())])
                        .write_empty()?;
                }
                Ok(())
            })?;
            for c in &s.cases {
                write_case(w, c)?;
            }
            Ok(())
        })?;
    Ok(())
}

/// The JUnit XML document of these suites.
pub fn to_xml(suites: &[Suite]) -> String {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    let total = |f: fn(&Suite) -> usize| suites.iter().map(f).sum::<usize>().to_string();
    let tests = total(|s| s.cases.len());
    let failures = total(Suite::failures);
    let errors = total(Suite::errors);
    let skipped = total(Suite::skipped);
    let time = secs(suites.iter().map(|s| s.time).sum());
    let written: io::Result<()> = (|| {
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        w.create_element("testsuites")
            .with_attributes([
                ("name", "vswitch"),
                ("tests", tests.as_str()),
                ("failures", failures.as_str()),
                ("errors", errors.as_str()),
                ("skipped", skipped.as_str()),
                ("time", time.as_str()),
            ])
            .write_inner_content(|w| {
                for s in suites {
                    write_suite(w, s)?;
                }
                Ok(())
            })?;
        Ok(())
    })();
    // Writing into a Vec cannot fail.
    written.expect("writing XML into memory");
    let mut text = String::from_utf8(w.into_inner()).expect("quick-xml writes UTF-8");
    text.push('\n');
    text
}

#[cfg(test)]
pub(crate) mod tests;
