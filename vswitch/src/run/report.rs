//! Results of a run: the JSON object of the format and the human table.

use serde::Serialize;

use crate::scenario::plan::{Check, CheckKind, DnsExpect, Expect, Plan};

/// What a check observed when its probe could not run: never a pass,
/// whatever the check expected, and counted apart (`errors`).
pub const OBSERVED_ERROR: &str = "error";

/// One check's result (`checks[]` of the JSON report).
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    /// Position in the file.
    pub index: usize,
    /// Kind.
    pub kind: String,
    /// Label.
    pub name: Option<String>,
    /// `from` as written.
    pub from: String,
    /// `to` as written (targets joined with `,` for reach; the query for dns).
    pub to: String,
    /// Expected outcome as written.
    pub expect: String,
    /// What was observed.
    pub observed: String,
    /// Whether the check held.
    pub pass: bool,
    /// Human detail.
    pub detail: String,
    /// Throughput, Gbit/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gbps: Option<f64>,
    /// Throughput, thousands of packets per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kpps: Option<f64>,
    /// UDP loss ratio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Documented known difference, when the file marks one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_difference: Option<String>,
    /// How long the check took, in milliseconds (JUnit `time`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The step it ran after (`after`); none: before the first step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Ping: median round-trip time in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
}

/// `expect` rendered as the file writes it.
pub fn expect_text(e: &Expect, kind: &CheckKind) -> String {
    match e {
        Expect::Ok => "ok".into(),
        Expect::Count(n) => n.to_string(),
        Expect::Fail => "fail".into(),
        Expect::Dns(DnsExpect::Answers(a)) => format!("[{}]", a.join(", ")),
        Expect::Dns(DnsExpect::NxDomain) => "nxdomain".into(),
        Expect::Dns(DnsExpect::ServFail) => "servfail".into(),
        Expect::Dns(DnsExpect::Refused) => "refused".into(),
        Expect::Dns(DnsExpect::NoAnswer) => "fail".into(),
        Expect::Figures => match kind {
            CheckKind::Throughput {
                min_gbps, min_kpps, ..
            } => {
                let mut v = Vec::new();
                if let Some(g) = min_gbps {
                    v.push(format!(">= {g} Gbit/s"));
                }
                if let Some(k) = min_kpps {
                    v.push(format!(">= {k} kpps"));
                }
                if v.is_empty() {
                    "-".into()
                } else {
                    v.join(", ")
                }
            }
            _ => "-".into(),
        },
    }
}

impl CheckResult {
    /// A result for `check` with nothing observed yet.
    pub fn new(plan: &Plan, check: &Check) -> CheckResult {
        let to = match &check.kind {
            CheckKind::Ping { to, .. }
            | CheckKind::Tcp { to, .. }
            | CheckKind::Udp { to, .. }
            | CheckKind::Throughput { to, .. }
            | CheckKind::Spread { to, .. } => to.text.clone(),
            CheckKind::Reach { to } => to
                .iter()
                .map(|t| t.text.as_str())
                .collect::<Vec<_>>()
                .join(","),
            CheckKind::Dns { query, qtype, .. } => format!("{query} {qtype:?}"),
        };
        CheckResult {
            index: check.index,
            kind: check.kind.name().to_string(),
            name: check.name.clone(),
            from: check.from_text.clone(),
            to,
            expect: expect_text(&check.expect, &check.kind),
            observed: String::new(),
            pass: false,
            detail: String::new(),
            gbps: None,
            kpps: None,
            loss: None,
            known_difference: check.known_difference.as_ref().map(|k| k.reason.clone()),
            duration_ms: None,
            step: check.after.map(|s| plan.steps[s].name.clone()),
            rtt_ms: None,
        }
    }

    /// Fills in the observation.
    pub fn observed(mut self, observed: &str, pass: bool, detail: String) -> CheckResult {
        self.observed = observed.to_string();
        self.pass = pass;
        self.detail = detail;
        self
    }

    /// The probe could not run (a harness error, not a network outcome):
    /// observed `error`, never a pass.
    pub fn error(self, detail: String) -> CheckResult {
        self.observed(OBSERVED_ERROR, false, detail)
    }

    /// Whether this result is a harness error rather than an observation.
    pub fn is_error(&self) -> bool {
        self.observed == OBSERVED_ERROR
    }

    /// The verdict column of the table.
    fn verdict(&self) -> &'static str {
        if self.pass {
            "PASS"
        } else if self.is_error() {
            "ERROR"
        } else {
            "FAIL"
        }
    }
}

/// The JSON object `--json` writes.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Scenario file.
    pub scenario: String,
    /// Scenario title.
    pub title: String,
    /// Backend.
    pub backend: String,
    /// Run id.
    pub run_id: String,
    /// Checks that held.
    pub passed: usize,
    /// Checks whose observation did not meet `expect`.
    pub failed: usize,
    /// Checks whose probe could not run (observed `error`): neither passed
    /// nor failed, and the run's exit status is 1.
    pub errors: usize,
    /// Checks not run.
    pub skipped: usize,
    /// Time to build the world.
    pub setup_ms: u64,
    /// Time to tear it down.
    pub teardown_ms: u64,
    /// Per check.
    pub checks: Vec<CheckResult>,
    /// Why the backend could not build the scenario (exit 3), if so.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unsupported: Vec<String>,
    /// The steps, in file order, and when each took effect.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<super::steps::StepReport>,
    /// Data path counters (per port, per drop reason).
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub metrics: serde_json::Value,
    /// Host ports vswitch chose for `publish` entries without one (PUB-6).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chosen_ports: Vec<ChosenPort>,
}

/// A host port chosen for a `publish` entry (PUB-6).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ChosenPort {
    /// Container.
    pub container: String,
    /// `83/tcp`.
    pub container_port: String,
    /// Host address (`0.0.0.0` when none was given: both families).
    pub host_ip: String,
    /// The chosen host port.
    pub host_port: u16,
    /// The range it was chosen from, `32768-60999`.
    pub range: String,
}

impl ChosenPort {
    /// Every chosen port of `plan`, in file order.
    pub fn of(plan: &crate::scenario::plan::Plan) -> Vec<ChosenPort> {
        plan.containers
            .iter()
            .flat_map(|c| {
                c.publish.iter().filter_map(|p| {
                    let (a, b) = p.auto?;
                    Some(ChosenPort {
                        container: c.name.clone(),
                        container_port: format!("{}/{}", p.container_port, p.proto),
                        host_ip: p
                            .host_ip
                            .map_or_else(|| "0.0.0.0".into(), |ip| ip.to_string()),
                        host_port: p.host_port,
                        range: format!("{a}-{b}"),
                    })
                })
            })
            .collect()
    }
}

impl Report {
    /// Recounts passed/failed/errors from the checks.
    pub fn tally(&mut self) {
        self.passed = self.checks.iter().filter(|c| c.pass).count();
        self.errors = self.checks.iter().filter(|c| c.is_error()).count();
        self.failed = self.checks.len() - self.passed - self.errors;
    }

    /// Whether every check held (no failure and no error).
    pub fn all_held(&self) -> bool {
        self.failed == 0 && self.errors == 0
    }

    /// The human summary table.
    pub fn table(&self) -> String {
        let mut rows: Vec<[String; 6]> = vec![[
            "#".into(),
            "kind".into(),
            "from → to".into(),
            "expect".into(),
            "observed".into(),
            "".into(),
        ]];
        let mut group: Option<&str> = None;
        for c in &self.checks {
            if c.step.as_deref() != group {
                group = c.step.as_deref();
                rows.push(super::steps::heading_row(&self.steps, group));
            }
            rows.push([
                c.index.to_string(),
                c.kind.clone(),
                format!("{} → {}", c.from, c.to),
                c.expect.clone(),
                c.observed.clone(),
                c.verdict().into(),
            ]);
        }
        let widths: Vec<usize> = (0..6)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut s = format!("{} [{}] {}\n", self.scenario, self.backend, self.title);
        for p in &self.chosen_ports {
            s.push_str(&format!(
                "  published {} {} on host port {} of {} (chosen from {})\n",
                p.container, p.container_port, p.host_port, p.host_ip, p.range
            ));
        }
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            s.push_str(line.join("  ").trim_end());
            s.push('\n');
        }
        for c in self.checks.iter().filter(|c| !c.pass) {
            s.push_str(&format!(
                "  check {} ({}): {}\n",
                c.index,
                c.name.as_deref().unwrap_or(&c.kind),
                c.detail
            ));
        }
        s.push_str(&format!(
            "{} passed, {} failed, {} errors, {} skipped (setup {} ms, teardown {} ms)\n",
            self.passed, self.failed, self.errors, self.skipped, self.setup_ms, self.teardown_ms
        ));
        s
    }
}
