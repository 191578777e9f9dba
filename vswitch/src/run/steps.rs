//! A world that changes: the checks without `after` run first, then each
//! step in file order is carried out by the backend
//! ([`World::apply_step`]) and the checks bound to it run against the world
//! as it now stands ([`Plan::after_steps`]).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::World;
use crate::scenario::plan::{Plan, StepAction};

use super::{CheckResult, run_checks};

/// When and how one step took effect (`steps[]` of the JSON report).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// Its action (`connect`, `fault`, …).
    pub action: String,
    /// What it acted on, in words.
    pub detail: String,
    /// When it started, in ms after the world was up.
    pub at_ms: u64,
    /// How long the backend took to carry it out.
    pub took_ms: u64,
    /// Why it could not be carried out (its checks are then errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a step does, in words.
fn describe(plan: &Plan, action: &StepAction) -> String {
    let c = |i: &usize| plan.containers[*i].name.clone();
    match action {
        StepAction::Connect {
            container,
            endpoint,
        } => {
            let mut s = format!(
                "{} to {}",
                c(container),
                plan.networks[endpoint.network].name
            );
            if let Some(ip) = endpoint.ip {
                s.push_str(&format!(" as {ip}"));
            }
            s
        }
        StepAction::Disconnect { container, network } => {
            format!("{} from {}", c(container), plan.networks[*network].name)
        }
        StepAction::Restart(i) | StepAction::Stop(i) | StepAction::Start(i) => c(i),
        StepAction::Fault { link, fault } => {
            format!("{}: {}", plan.link_name(*link), fault.keys().join(", "))
        }
        StepAction::Clear(link) => plan.link_name(*link),
        StepAction::Scale {
            service, replicas, ..
        } => format!(
            "{} from {} to {replicas} replicas",
            plan.services[*service].name, plan.services[*service].replicas
        ),
        StepAction::Wait(d) => format!("{} ms", d.as_millis()),
    }
}

/// `plan` after `steps` steps, holding only the checks bound to `after`.
fn checks_of(plan: &Plan, after: Option<usize>, steps: usize) -> Plan {
    let mut p = plan.after_steps(steps);
    p.checks = plan
        .checks
        .iter()
        .filter(|c| c.after == after)
        .cloned()
        .collect();
    p
}

/// Runs the checks before the first step, then each step and its checks.
/// Returns the results in the order they ran and one report per step. A
/// step the backend could not carry out makes its checks, and those of
/// every later step, errors (nothing was observed of the world they expect).
pub fn run_with_steps(
    world: &mut World,
    plan: &Plan,
    on_result: &(dyn Fn(&CheckResult) + Sync),
) -> (Vec<CheckResult>, Vec<StepReport>) {
    let t0 = Instant::now();
    // Step times are the world's: virtual time on the sim (so two runs
    // report the same), wall time elsewhere.
    let since = |world: &World| match world.sim() {
        Some(sim) => sim.lock().map_or(Duration::ZERO, |s| s.elapsed()),
        None => t0.elapsed(),
    };
    let mut results = run_checks(world, &checks_of(plan, None, 0), on_result);
    let mut reports = Vec::with_capacity(plan.steps.len());
    let mut broken: Option<String> = None;
    for (k, step) in plan.steps.iter().enumerate() {
        let before = plan.after_steps(k);
        let sub = checks_of(plan, Some(k), k + 1);
        let at = since(world);
        let outcome = match &broken {
            Some(first) => Err(format!("an earlier step, {first:?}, was not carried out")),
            None => world
                .apply_step(&before, &sub, &step.action)
                .map_err(|e| format!("step {:?} ({}): {e}", step.name, step.action.name())),
        };
        let mut detail = describe(&before, &step.action);
        if let Some(note) = world.step_note(&step.action) {
            detail.push_str(&format!("; {note}"));
        }
        reports.push(StepReport {
            name: step.name.clone(),
            action: step.action.name().to_string(),
            detail,
            at_ms: at.as_millis() as u64,
            took_ms: since(world).saturating_sub(at).as_millis() as u64,
            error: outcome.as_ref().err().cloned(),
        });
        match outcome {
            Ok(()) => results.extend(run_checks(world, &sub, on_result)),
            Err(why) => {
                for c in &sub.checks {
                    let r = CheckResult::new(plan, c).observed(
                        "error",
                        false,
                        format!("not run: {why}"),
                    );
                    on_result(&r);
                    results.push(r);
                }
                broken.get_or_insert_with(|| step.name.clone());
            }
        }
    }
    (results, reports)
}

/// The heading row of a step's group in the report table.
pub fn heading_row(steps: &[StepReport], name: Option<&str>) -> [String; 6] {
    let Some(name) = name else {
        return [
            String::new(),
            "before any step".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ];
    };
    let (what, when) = match steps.iter().find(|s| s.name == name) {
        Some(s) => (
            format!("{} {}", s.action, s.detail),
            match &s.error {
                None => format!("at +{} ms ({} ms)", s.at_ms, s.took_ms),
                Some(_) => "not carried out".into(),
            },
        ),
        None => (String::new(), String::new()),
    };
    [
        String::new(),
        format!("step {name}"),
        what,
        when,
        String::new(),
        String::new(),
    ]
}

/// A ping result with its median round-trip time, which must lie within
/// `min_rtt_ms..=max_rtt_ms` when they are given. `rtt_ms` is reported
/// whenever a reply came.
pub fn with_rtt(
    mut r: CheckResult,
    rtts: &[Duration],
    min_rtt_ms: Option<f64>,
    max_rtt_ms: Option<f64>,
) -> CheckResult {
    let median = median_ms(rtts);
    r.rtt_ms = median;
    if min_rtt_ms.is_none() && max_rtt_ms.is_none() {
        return r;
    }
    match median {
        None => {
            if r.pass && r.observed == "ok" {
                r.pass = false;
                r.detail.push_str("; no round-trip time to compare");
            }
        }
        Some(m) => {
            r.detail.push_str(&format!("; median rtt {m:.2} ms"));
            let low = min_rtt_ms.is_some_and(|lo| m < lo);
            let high = max_rtt_ms.is_some_and(|hi| m > hi);
            if r.observed == "ok" && (low || high) {
                r.pass = false;
                r.observed = format!("rtt {m:.1} ms");
                r.detail.push_str(&format!(
                    ", expected {} ms .. {} ms",
                    min_rtt_ms.map_or("0".into(), |v| v.to_string()),
                    max_rtt_ms.map_or("∞".into(), |v| v.to_string())
                ));
            }
        }
    }
    r
}

/// Median in milliseconds (mean of the middle two for an even count).
fn median_ms(rtts: &[Duration]) -> Option<f64> {
    if rtts.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = rtts.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_result() -> CheckResult {
        let plan = crate::scenario::parse_str(
            std::path::Path::new("t.toml"),
            "name = \"x\"\n[[network]]\nname = \"n\"\n[[container]]\nname = \"a\"\nnetworks = [\"n\"]\n[[container]]\nname = \"b\"\nnetworks = [\"n\"]\n[[check]]\nkind = \"ping\"\nfrom = \"a\"\nto = \"b\"\nexpect = \"ok\"\n",
        )
        .unwrap();
        CheckResult::new(&plan, &plan.checks[0]).observed("ok", true, "3/3 replies".into())
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        assert_eq!(median_ms(&ms(&[30, 10, 20])), Some(20.0));
        assert_eq!(median_ms(&ms(&[10, 40, 20, 30])), Some(25.0));
        assert_eq!(median_ms(&[]), None);
    }

    #[test]
    fn rtt_bounds_decide_a_passing_ping() {
        let rtts: Vec<Duration> = [39, 41, 40].map(Duration::from_millis).to_vec();
        let r = with_rtt(ok_result(), &rtts, Some(35.0), Some(60.0));
        assert!(r.pass, "{r:?}");
        assert_eq!(r.rtt_ms, Some(40.0));
        let r = with_rtt(ok_result(), &rtts, None, Some(20.0));
        assert!(!r.pass);
        assert_eq!(r.observed, "rtt 40.0 ms");
        let r = with_rtt(ok_result(), &rtts, Some(50.0), None);
        assert!(!r.pass);
        // Without bounds the figure is only reported.
        let r = with_rtt(ok_result(), &rtts, None, None);
        assert!(r.pass && r.rtt_ms == Some(40.0));
    }
}
