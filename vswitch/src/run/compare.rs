//! `vswitch compare`: one scenario on several backends, check by check.
//!
//! Connectivity and DNS checks must observe the same thing on every backend
//! that could build the scenario, and what the file expects; a check marked
//! `known_difference` is reported but does not fail when the departure is
//! the named `backend`'s alone. Throughput is shown side by side as a ratio against the last
//! backend (userspace / kernel by default), never compared as pass/fail.

use serde::Serialize;

use crate::run::Report;
use crate::scenario::plan::Plan;

/// The checks a scenario marks `known_difference`, with the backend named
/// beside it (validation requires one).
pub fn known_differences(plan: &Plan) -> Vec<(usize, Option<String>)> {
    plan.checks
        .iter()
        .filter_map(|c| Some((c.index, c.known_difference.as_ref()?.backend.clone())))
        .collect()
}

/// Whether a `known_difference` naming backend `named` covers `backend`:
/// its own, and the userspace backend's for the sim too (the sim runs the
/// userspace backend's engine and userland proxy in memory, so it departs
/// where that backend does).
pub fn names_backend(named: &str, backend: &str) -> bool {
    named == backend || (named == "userspace" && backend == "sim")
}

/// One backend's outcome for one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct BackendRun {
    /// Backend name.
    pub backend: String,
    /// Exit status of that run.
    pub code: i32,
    /// The report, when it ran (or was refused with reasons).
    pub report: Option<Report>,
    /// Error text (invalid file, build failure).
    pub error: Option<String>,
}

/// One check across backends.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Check index.
    pub index: usize,
    /// Kind.
    pub kind: String,
    /// `name` or `from → to`.
    pub label: String,
    /// Expected outcome.
    pub expect: String,
    /// Observed per backend (None: that backend did not run it).
    pub observed: Vec<Option<String>>,
    /// Whether each backend met `expect`.
    pub pass: Vec<Option<bool>>,
    /// Backends disagree with each other.
    pub disagree: bool,
    /// Some backend disagrees with `expect`.
    pub unexpected: bool,
    /// A documented known difference covers the departure.
    pub known: bool,
    /// Throughput: first backend / last backend.
    pub ratio: Option<f64>,
}

/// The comparison of one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Scenario file.
    pub scenario: String,
    /// Backend names, in column order.
    pub backends: Vec<String>,
    /// Per check.
    pub rows: Vec<Row>,
    /// Per backend, why it could not build the scenario.
    pub unsupported: Vec<(String, Vec<String>)>,
    /// Errors per backend.
    pub errors: Vec<(String, String)>,
}

impl Comparison {
    /// Lines up several runs of one scenario.
    pub fn new(
        scenario: &str,
        runs: &[BackendRun],
        known: &[(usize, Option<String>)],
    ) -> Comparison {
        let backends: Vec<String> = runs.iter().map(|r| r.backend.clone()).collect();
        let n = runs
            .iter()
            .filter_map(|r| r.report.as_ref())
            .map(|r| r.checks.len())
            .max()
            .unwrap_or(0);
        let mut rows = Vec::new();
        for i in 0..n {
            let cells: Vec<Option<&crate::run::CheckResult>> = runs
                .iter()
                .map(|r| {
                    r.report
                        .as_ref()
                        .and_then(|rep| rep.checks.iter().find(|c| c.index == i))
                })
                .collect();
            let Some(first) = cells.iter().flatten().next() else {
                continue;
            };
            let observed: Vec<Option<String>> = cells
                .iter()
                .map(|c| c.map(|c| c.observed.clone()))
                .collect();
            let pass: Vec<Option<bool>> = cells.iter().map(|c| c.map(|c| c.pass)).collect();
            let is_throughput = first.kind == "throughput";
            let ran: Vec<&String> = observed.iter().flatten().collect();
            let disagree = !is_throughput && ran.windows(2).any(|w| w[0] != w[1]);
            let unexpected = pass.iter().flatten().any(|p| !p);
            // A known difference excuses the departure of the backend it
            // names and of no other: every other backend must hold and agree,
            // and a probe that could not run is never excused.
            let known = known.iter().any(|(idx, b)| {
                *idx == i
                    && b.as_ref().is_some_and(|b| {
                        let others: Vec<usize> = (0..backends.len())
                            .filter(|&k| !names_backend(b, &backends[k]) && cells[k].is_some())
                            .collect();
                        backends.iter().any(|k| names_backend(b, k))
                            && !cells.iter().flatten().any(|c| c.is_error())
                            && others.iter().all(|&k| pass[k] == Some(true))
                            && others.windows(2).all(|w| observed[w[0]] == observed[w[1]])
                    })
            });
            let ratio = if is_throughput {
                let g: Vec<Option<f64>> = cells.iter().map(|c| c.and_then(|c| c.gbps)).collect();
                match (g.first().copied().flatten(), g.last().copied().flatten()) {
                    (Some(a), Some(b)) if b > 0.0 && g.len() > 1 => Some(a / b),
                    _ => None,
                }
            } else {
                None
            };
            rows.push(Row {
                index: i,
                kind: first.kind.clone(),
                label: first
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{} → {}", first.from, first.to)),
                expect: first.expect.clone(),
                observed,
                pass,
                disagree,
                unexpected,
                known,
                ratio,
            });
        }
        let unsupported = runs
            .iter()
            .filter_map(|r| {
                let u = &r.report.as_ref()?.unsupported;
                (!u.is_empty()).then(|| (r.backend.clone(), u.clone()))
            })
            .collect();
        let errors = runs
            .iter()
            .filter_map(|r| Some((r.backend.clone(), r.error.clone()?)))
            .collect();
        Comparison {
            scenario: scenario.to_string(),
            backends,
            rows,
            unsupported,
            errors,
        }
    }

    /// True when some check departs without a documented reason.
    pub fn has_disagreement(&self) -> bool {
        !self.errors.is_empty()
            || self
                .rows
                .iter()
                .any(|r| (r.disagree || r.unexpected) && !r.known)
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut header = vec![
            "#".to_string(),
            "kind".into(),
            "check".into(),
            "expect".into(),
        ];
        header.extend(self.backends.iter().cloned());
        header.push(String::new());
        let mut rows = vec![header];
        for r in &self.rows {
            let mut line = vec![
                r.index.to_string(),
                r.kind.clone(),
                r.label.clone(),
                r.expect.clone(),
            ];
            line.extend(
                r.observed
                    .iter()
                    .map(|o| o.clone().unwrap_or_else(|| "-".into())),
            );
            line.push(match (r.ratio, r.disagree || r.unexpected, r.known) {
                (Some(x), _, _) => format!("ratio {x:.2}"),
                (None, true, true) => "known difference".into(),
                (None, true, false) => {
                    if r.observed
                        .iter()
                        .flatten()
                        .any(|o| o == super::OBSERVED_ERROR)
                    {
                        "ERROR (a probe could not run)".into()
                    } else if r.disagree {
                        "DISAGREE".into()
                    } else {
                        "UNEXPECTED".into()
                    }
                }
                (None, false, _) => "agree".into(),
            });
            rows.push(line);
        }
        let cols = rows[0].len();
        let widths: Vec<usize> = (0..cols)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut s = format!("{} — {}\n", self.scenario, self.backends.join(" vs "));
        for r in &rows {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            s.push_str(cells.join("  ").trim_end());
            s.push('\n');
        }
        for (b, why) in &self.unsupported {
            for w in why {
                s.push_str(&format!("  {b}: unsupported: {w}\n"));
            }
        }
        for (b, e) in &self.errors {
            s.push_str(&format!("  {b}: error: {e}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::CheckResult;

    fn result(
        index: usize,
        kind: &str,
        observed: &str,
        pass: bool,
        gbps: Option<f64>,
    ) -> CheckResult {
        CheckResult {
            index,
            kind: kind.into(),
            name: None,
            from: "a".into(),
            to: "b".into(),
            expect: "ok".into(),
            observed: observed.into(),
            pass,
            detail: String::new(),
            gbps,
            kpps: None,
            loss: None,
            known_difference: None,
            duration_ms: None,
            step: None,
            rtt_ms: None,
        }
    }

    fn run(backend: &str, checks: Vec<CheckResult>) -> BackendRun {
        BackendRun {
            backend: backend.into(),
            code: 0,
            report: Some(Report {
                scenario: "s".into(),
                title: "t".into(),
                backend: backend.into(),
                run_id: "vsw000000".into(),
                passed: 0,
                failed: 0,
                errors: 0,
                skipped: 0,
                setup_ms: 0,
                teardown_ms: 0,
                checks,
                unsupported: Vec::new(),
                steps: Vec::new(),
                metrics: serde_json::Value::Null,
                chosen_ports: Vec::new(),
            }),
            error: None,
        }
    }

    #[test]
    fn agreement_disagreement_and_ratio() {
        let u = run(
            "userspace",
            vec![
                result(0, "ping", "ok", true, None),
                result(1, "ping", "fail", false, None),
                result(2, "throughput", "9 Gbit/s", true, Some(9.0)),
            ],
        );
        let k = run(
            "kernel",
            vec![
                result(0, "ping", "ok", true, None),
                result(1, "ping", "ok", true, None),
                result(2, "throughput", "18 Gbit/s", true, Some(18.0)),
            ],
        );
        let c = Comparison::new("s", &[u.clone(), k.clone()], &[]);
        assert!(!c.rows[0].disagree);
        assert!(c.rows[1].disagree && c.rows[1].unexpected);
        assert_eq!(c.rows[2].ratio, Some(0.5));
        assert!(!c.rows[2].disagree);
        assert!(c.has_disagreement());
        assert!(c.table().contains("DISAGREE"));
        let excused = Comparison::new(
            "s",
            &[u.clone(), k.clone()],
            &[(1, Some("userspace".into()))],
        );
        assert!(!excused.has_disagreement());
        assert!(excused.table().contains("known difference"));
        // Naming the backend that held excuses nothing: userspace departs.
        let wrong = Comparison::new("s", &[u, k.clone()], &[(1, Some("kernel".into()))]);
        assert!(wrong.has_disagreement());
        // A probe that could not run is never excused.
        let broken = run(
            "userspace",
            vec![
                result(0, "ping", "error", false, None),
                result(1, "ping", "fail", false, None),
                result(2, "throughput", "9 Gbit/s", true, Some(9.0)),
            ],
        );
        let c = Comparison::new("s", &[broken, k], &[(0, Some("userspace".into()))]);
        assert!(c.has_disagreement());
        assert!(c.table().contains("ERROR (a probe could not run)"));
    }
}
