//! Results of a run: the JSON object of the format and the human table.

use serde::Serialize;

use crate::scenario::plan::{Check, CheckKind, DnsExpect, Expect, Plan};

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
            | CheckKind::Throughput { to, .. } => to.text.clone(),
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
    /// Checks that did not.
    pub failed: usize,
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
}

impl Report {
    /// Recounts passed/failed from the checks.
    pub fn tally(&mut self) {
        self.passed = self.checks.iter().filter(|c| c.pass).count();
        self.failed = self.checks.len() - self.passed;
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
                if c.pass { "PASS".into() } else { "FAIL".into() },
            ]);
        }
        let widths: Vec<usize> = (0..6)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut s = format!("{} [{}] {}\n", self.scenario, self.backend, self.title);
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
            "{} passed, {} failed, {} skipped (setup {} ms, teardown {} ms)\n",
            self.passed, self.failed, self.skipped, self.setup_ms, self.teardown_ms
        ));
        s
    }
}
