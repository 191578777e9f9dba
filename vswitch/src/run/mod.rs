//! Running a scenario's checks against a built world. Every result is
//! observed from real traffic in the namespaces; nothing is assumed.

pub mod compare;
pub mod execute;
pub mod live;
pub mod prober;
pub mod report;
pub mod steps;

#[cfg(test)]
mod root_tests;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::backend::{World, default_dns_server};
use crate::probe::{self, DnsOutcome, PingOptions, ProbeError};
use crate::scenario::plan::{
    Check, CheckKind, DnsExpect, Expect, Generator, Node, Plan, QueryType, Target,
};

pub use report::{CheckResult, OBSERVED_ERROR, Report};

/// A probe's error as a result: a network outcome (timeout, refusal,
/// unreachable, a wrong answer) is observed `fail`; a harness error (the
/// probe could not run) is observed `error`, which never passes.
fn probe_failed(base: CheckResult, check: &Check, e: &ProbeError) -> CheckResult {
    if e.is_harness() {
        base.error(format!("the probe could not run: {e}"))
    } else {
        base.observed("fail", expect_pass(&check.expect, "fail"), e.to_string())
    }
}

/// Runs every check: connectivity and DNS checks concurrently (each has its
/// own deadline), throughput checks afterwards one at a time so they do not
/// share the CPU with each other.
pub fn run_checks(
    world: &World,
    plan: &Plan,
    on_result: &(dyn Fn(&CheckResult) + Sync),
) -> Vec<CheckResult> {
    let mut results: Vec<Option<CheckResult>> = vec![None; plan.checks.len()];
    if world.sim().is_some() {
        // One world in virtual time: the checks run one after another, in
        // file order, so that two runs see the same world.
        return plan
            .checks
            .iter()
            .map(|c| {
                let r = timed_check(world, plan, c);
                on_result(&r);
                r
            })
            .collect();
    }
    std::thread::scope(|s| {
        // Results go by position in `plan.checks`, which may be a subset
        // of the file's checks (one step's, see `steps`).
        let handles: Vec<_> = plan
            .checks
            .iter()
            .enumerate()
            .filter(|(_, c)| !matches!(c.kind, CheckKind::Throughput { .. }))
            .map(|(i, c)| {
                (
                    i,
                    s.spawn(move || {
                        let r = timed_check(world, plan, c);
                        on_result(&r);
                        r
                    }),
                )
            })
            .collect();
        for (i, h) in handles {
            let r = h.join().unwrap_or_else(|_| {
                CheckResult::new(plan, &plan.checks[i]).error("the probe panicked".into())
            });
            results[i] = Some(r);
        }
    });
    for (i, c) in plan
        .checks
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c.kind, CheckKind::Throughput { .. }))
    {
        let r = timed_check(world, plan, c);
        on_result(&r);
        results[i] = Some(r);
    }
    results.into_iter().flatten().collect()
}

/// [`run_check`], with how long it took recorded in the result.
fn timed_check(world: &World, plan: &Plan, check: &Check) -> CheckResult {
    let t0 = Instant::now();
    let mut r = run_check(world, plan, check);
    r.duration_ms = Some(t0.elapsed().as_millis() as u64);
    r
}

fn ping_observed(received: u32, count: u32) -> &'static str {
    if received == count {
        "ok"
    } else if received == 0 {
        "fail"
    } else {
        "partial"
    }
}

fn expect_pass(expect: &Expect, observed: &str) -> bool {
    match expect {
        Expect::Ok => observed == "ok",
        Expect::Fail | Expect::Dns(DnsExpect::NoAnswer) => observed == "fail",
        // No node answered at all: a spread of zero.
        Expect::Count(0) => observed == "fail" || observed == "0",
        _ => false,
    }
}

/// The number of distinct nodes among the answers of a spread check, and
/// how many answers each gave ("web.1 x7, web.2 x7, web.3 x6").
fn spread_counts(nodes: &[String]) -> (usize, String) {
    let mut by: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for n in nodes {
        *by.entry(n.as_str()).or_default() += 1;
    }
    let detail = by
        .iter()
        .map(|(n, k)| format!("{n} x{k}"))
        .collect::<Vec<_>>()
        .join(", ");
    (by.len(), format!("{} connections: {detail}", nodes.len()))
}

/// Runs one check.
pub fn run_check(world: &World, plan: &Plan, check: &Check) -> CheckResult {
    let base = CheckResult::new(plan, check);
    let deadline = Instant::now() + check.timeout;
    let from = check.from[0];
    let pr = prober::Prober::new(world, from, check.timeout);
    match &check.kind {
        CheckKind::Ping {
            to,
            count,
            size,
            df,
            min_rtt_ms,
            max_rtt_ms,
            ..
        } => {
            let opts = PingOptions {
                count: *count,
                size: *size,
                df: *df,
                interval: Duration::from_millis(100),
            };
            match pr.ping(to.addr, &opts) {
                Ok(o) => {
                    let obs = ping_observed(o.received, o.sent.max(*count));
                    let mut detail = format!("{}/{} replies", o.received, count);
                    if let Some(e) = &o.error {
                        detail.push_str(&format!(" ({e})"));
                    }
                    if o.received > 0 && !o.unanswered.is_empty() {
                        let seqs: Vec<String> = o.unanswered.iter().map(u16::to_string).collect();
                        detail.push_str(&format!("; no reply to seq {}", seqs.join(", ")));
                    }
                    let r = base.observed(obs, expect_pass(&check.expect, obs), detail);
                    steps::with_rtt(r, &o.rtts, *min_rtt_ms, *max_rtt_ms)
                }
                Err(e) => probe_failed(base, check, &e),
            }
        }
        CheckKind::Tcp { to, seen_as } | CheckKind::Udp { to, seen_as, .. } => {
            let dst = SocketAddr::new(to.addr, to.port.unwrap_or(0));
            let r = match &check.kind {
                CheckKind::Udp { sport, .. } => pr.udp_echo(*sport, dst),
                _ => pr.tcp_echo(dst),
            };
            match r {
                Ok(reply) => {
                    let seen = reply.seen.ip().to_canonical();
                    let detail = format!("seen {}:{}", seen, reply.seen.port());
                    match seen_as {
                        Some(want) if *want != seen => base.observed(
                            &format!("seen {seen}"),
                            false,
                            format!("{detail}, expected seen as {want}"),
                        ),
                        _ => base.observed("ok", check.expect == Expect::Ok, detail),
                    }
                }
                Err(e) => probe_failed(base, check, &e),
            }
        }
        CheckKind::Dns {
            query,
            qtype,
            tcp,
            server,
            rotate,
        } => {
            let Some(server) = server.or_else(|| default_dns_server(plan, from)) else {
                return base.error(format!(
                    "{} has no nameserver to ask (give the check a server)",
                    plan.node_name(from)
                ));
            };
            dns_check(
                &pr,
                check,
                base,
                SocketAddr::new(server, 53),
                (query, *qtype, *tcp, *rotate),
            )
        }
        CheckKind::Reach { to } => reach(world, plan, check, base, to, deadline),
        CheckKind::Spread {
            to, connections, ..
        } => {
            let dst = SocketAddr::new(to.addr, to.port.unwrap_or(0));
            match pr.spread(dst, *connections) {
                Ok(nodes) => {
                    let (distinct, detail) = spread_counts(&nodes);
                    let obs = distinct.to_string();
                    let pass = check.expect == Expect::Count(distinct as u32);
                    base.observed(&obs, pass, detail)
                }
                Err(e) => probe_failed(base, check, &e),
            }
        }
        CheckKind::Throughput {
            to,
            proto,
            seconds,
            streams,
            size,
            min_gbps,
            min_kpps,
            generator,
            bidir,
        } => {
            let port = to.port.unwrap_or(crate::scenario::plan::THROUGHPUT_PORT);
            // A named container or external receives itself; an address (or
            // a machine) is received where Docker would deliver it.
            let receiver = match to.node {
                Some(n @ (Node::Container(_) | Node::External(_))) => Some((n, port)),
                _ => plan.receiver_of(to.addr, port, *proto),
            };
            let Some((node, listen)) = receiver else {
                return base.error(format!(
                    "no node of the scenario holds {} to run the receiver in",
                    to.addr
                ));
            };
            let ports = probe::Ports {
                listen,
                connect: port,
            };
            let load = probe::Load {
                proto: *proto,
                seconds: f64::from(*seconds),
                streams: *streams,
                udp_size: *size,
                bidir: *bidir,
            };
            if let prober::Prober::Sim(m, from, _) = &pr {
                let mut w = m.lock().unwrap_or_else(|p| p.into_inner());
                let measured = w.throughput(*from, node, to.addr, ports, &load);
                let mut r = throughput_result(base, measured, *min_gbps, *min_kpps, *generator);
                r.detail = r.detail.replacen(" s (", " s of virtual time (", 1);
                return r;
            }
            let prober::Prober::Ns(ns, _) = pr else {
                return base.error("no namespace to run the generator in".into());
            };
            let measured = match generator {
                Generator::Builtin => probe::throughput(ns, world.ns(node), to.addr, ports, &load),
                Generator::Iperf3 => probe::iperf3(ns, world.ns(node), to.addr, ports, &load),
            };
            throughput_result(base, measured, *min_gbps, *min_kpps, *generator)
        }
    }
}

/// A throughput check's result from what was measured.
fn throughput_result(
    base: CheckResult,
    measured: Result<probe::Throughput, ProbeError>,
    min_gbps: Option<f64>,
    min_kpps: Option<f64>,
    generator: Generator,
) -> CheckResult {
    match measured {
        Ok(t) => {
            let pass = min_gbps.is_none_or(|m| t.gbps >= m) && min_kpps.is_none_or(|m| t.kpps >= m);
            let mut r = base.observed(
                &format!("{:.2} Gbit/s", t.gbps),
                pass,
                format!("{:.1} kpps over {:.1} s ({generator})", t.kpps, t.seconds),
            );
            r.gbps = Some(t.gbps);
            r.kpps = Some(t.kpps);
            r.loss = t.loss;
            r
        }
        Err(e) if e.is_harness() => base.error(format!("the probe could not run: {e}")),
        Err(e) => base.observed("fail", false, e.to_string()),
    }
}

fn ptr_name(query: &str) -> String {
    match query.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        Ok(IpAddr::V6(a)) => {
            let mut s = String::new();
            for b in a.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
        Err(_) => query.to_string(),
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The observed outcome of one DNS answer, as the format writes `expect`.
fn dns_observed(o: &DnsOutcome) -> (String, Option<Vec<String>>) {
    match o {
        DnsOutcome::NoAnswer => ("fail".into(), None),
        DnsOutcome::Answer { rcode, answers, .. } => match rcode.as_str() {
            "NOERROR" => {
                let mut a: Vec<String> = answers.iter().map(|s| normalize(s)).collect();
                a.sort();
                (format!("[{}]", a.join(", ")), Some(a))
            }
            other => (other.to_ascii_lowercase(), None),
        },
    }
}

/// Asks `server` the check's question (`query`, `qtype`, over TCP or
/// UDP; with `rotate`, asked again until the answer order changes).
fn dns_check(
    pr: &prober::Prober<'_>,
    check: &Check,
    base: CheckResult,
    server: SocketAddr,
    (query, qtype, tcp, rotate): (&str, QueryType, bool, bool),
) -> CheckResult {
    let name = if qtype == QueryType::PTR {
        ptr_name(query)
    } else {
        query.to_string()
    };
    let first = match pr.dns_query(server, &name, qtype, tcp) {
        Ok(o) => o,
        Err(e) => return probe_failed(base, check, &e),
    };
    let (observed, answers) = dns_observed(&first);
    let mut pass = match (&check.expect, &answers) {
        (Expect::Dns(DnsExpect::Answers(want)), Some(got)) => {
            let mut w: Vec<String> = want.iter().map(|s| normalize(s)).collect();
            w.sort();
            &w == got
        }
        (Expect::Dns(DnsExpect::NxDomain), _) => observed == "nxdomain",
        (Expect::Dns(DnsExpect::ServFail), _) => observed == "servfail",
        (Expect::Dns(DnsExpect::Refused), _) => observed == "refused",
        (Expect::Dns(DnsExpect::NoAnswer), _) => observed == "fail",
        _ => false,
    };
    let mut detail = format!("asked {server} ({})", if tcp { "tcp" } else { "udp" });
    if rotate && pass {
        // Round-robin: over several answers the order must change at least once.
        let order = |o: &DnsOutcome| match o {
            DnsOutcome::Answer { answers, .. } => answers.clone(),
            DnsOutcome::NoAnswer => Vec::new(),
        };
        let first_order = order(&first);
        let mut varied = false;
        for _ in 0..20 {
            match pr.dns_query(server, &name, qtype, tcp) {
                Ok(o) if order(&o) != first_order => {
                    varied = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.is_harness() => {
                    return base.error(format!("the probe could not run: {e}"));
                }
                Err(_) => {}
            }
        }
        if !varied {
            pass = false;
            detail.push_str("; answer order never changed over 20 queries");
        }
    }
    base.observed(&observed, pass, detail)
}

fn reach(
    world: &World,
    plan: &Plan,
    check: &Check,
    base: CheckResult,
    to: &[Target],
    deadline: Instant,
) -> CheckResult {
    let plan_pairs: Vec<(Node, &Target)> = check
        .from
        .iter()
        .flat_map(|f| to.iter().map(move |t| (*f, t)))
        .collect();
    let opts = PingOptions {
        count: 1,
        size: 56,
        df: false,
        interval: Duration::from_millis(100),
    };
    let outcomes: Vec<(String, Result<bool, ProbeError>)> = if world.sim().is_some() {
        // In virtual time, one pair after another (each from the check's start).
        plan_pairs
            .iter()
            .map(|(f, t)| {
                let pr = prober::Prober::new(world, *f, check.timeout);
                (
                    format!("{}→{}", plan.node_name(*f), t.text),
                    pr.ping(t.addr, &opts).map(|o| o.received > 0),
                )
            })
            .collect()
    } else {
        std::thread::scope(|s| {
            let hs: Vec<_> = plan_pairs
                .iter()
                .map(|(f, t)| {
                    let ns = world.ns(*f);
                    s.spawn(move || {
                        let opts = PingOptions {
                            count: 1,
                            size: 56,
                            df: false,
                            interval: Duration::from_millis(100),
                        };
                        probe::ping(ns, t.addr, &opts, deadline).map(|o| o.received > 0)
                    })
                })
                .collect();
            hs.into_iter()
                .zip(&plan_pairs)
                .map(|(h, (f, t))| {
                    (
                        format!("{}→{}", plan.node_name(*f), t.text),
                        h.join().unwrap_or_else(|_| {
                            Err(ProbeError::Thread {
                                name: "reach ping".into(),
                                source: std::io::Error::other("the probe panicked"),
                            })
                        }),
                    )
                })
                .collect()
        })
    };
    // A pair whose probe could not run makes the whole check an error; a
    // network failure of a pair is an observation.
    let broken: Vec<String> = outcomes
        .iter()
        .filter_map(|(p, r)| match r {
            Err(e) if e.is_harness() => Some(format!("{p}: {e}")),
            _ => None,
        })
        .collect();
    if !broken.is_empty() {
        return base.error(format!("the probe could not run: {}", broken.join("; ")));
    }
    let outcomes: Vec<(String, bool)> = outcomes
        .into_iter()
        .map(|(p, r)| (p, r.unwrap_or(false)))
        .collect();
    let ok = outcomes.iter().filter(|(_, r)| *r).count();
    let observed = if ok == outcomes.len() {
        "ok"
    } else if ok == 0 {
        "fail"
    } else {
        "mixed"
    };
    let odd: Vec<String> = outcomes
        .iter()
        .filter(|(_, r)| (observed == "mixed") && !*r)
        .map(|(p, _)| p.clone())
        .collect();
    let detail = if odd.is_empty() {
        format!("{ok}/{} pairs reply", outcomes.len())
    } else {
        format!(
            "{ok}/{} pairs reply; no reply: {}",
            outcomes.len(),
            odd.join(", ")
        )
    };
    base.observed(observed, expect_pass(&check.expect, observed), detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptr_names() {
        assert_eq!(ptr_name("172.20.0.2"), "2.0.20.172.in-addr.arpa");
        assert_eq!(ptr_name("web"), "web");
        assert!(ptr_name("fd00::1").ends_with(".0.0.d.f.ip6.arpa"));
    }

    #[test]
    fn ping_outcomes() {
        assert_eq!(ping_observed(3, 3), "ok");
        assert_eq!(ping_observed(0, 3), "fail");
        assert_eq!(ping_observed(1, 3), "partial");
        assert!(!expect_pass(&Expect::Ok, "partial"));
        assert!(!expect_pass(&Expect::Fail, "partial"));
    }
}
