//! `vswitch graph`: a picture of a scenario's world, drawn by the project
//! itself, as SVG (a deterministic layered layout: externals and the `lan`
//! on top, machines as boxes under it, their networks inside, containers
//! under their networks, overlays as tunnels joining machines) or as
//! Graphviz DOT text.
//!
//! With a report written by `vswitch run --json`, each check becomes an
//! arrow from its source to its target, coloured by result: pass green,
//! fail red, error orange (grey: not run).

mod dot;
mod layout;
mod svg;

use std::net::IpAddr;

use crate::scenario::plan::{CheckKind, Driver, Node, Plan};

pub use dot::to_dot;
pub use svg::to_svg;

/// A problem with the `--json` report given to `graph`.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// Not JSON.
    #[error("{file}: not a JSON report: {source}")]
    Json {
        /// Report file.
        file: String,
        /// Parser error.
        source: serde_json::Error,
    },
    /// JSON, but no report of this scenario.
    #[error("{file}: {message}")]
    Shape {
        /// Report file.
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// A check's result as drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// It held.
    Pass,
    /// It ran and did not hold.
    Fail,
    /// The probe could not run.
    Error,
    /// Not run (backend refused, world not built, not in the report).
    NotRun,
}

impl Status {
    /// Stroke colour.
    pub fn colour(self) -> &'static str {
        match self {
            Status::Pass => "#1a9641",
            Status::Fail => "#d7191c",
            Status::Error => "#f28e2b",
            Status::NotRun => "#8c8c8c",
        }
    }

    /// Word for legends.
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Error => "error",
            Status::NotRun => "not run",
        }
    }
}

/// One check drawn as arrows.
#[derive(Clone, Debug)]
pub struct CheckArrow {
    /// Check index.
    pub index: usize,
    /// `#I kind from → to (label)`.
    pub label: String,
    /// Observed outcome from the report.
    pub observed: String,
    /// Result.
    pub status: Status,
    /// (from, to) pairs of nodes; empty when the target is no node here.
    pub pairs: Vec<(Node, Node)>,
}

/// The node that owns an address, if any.
fn node_at(plan: &Plan, addr: IpAddr) -> Option<Node> {
    for (i, c) in plan.containers.iter().enumerate() {
        if c.endpoints
            .iter()
            .any(|e| e.ip.map(IpAddr::V4) == Some(addr) || e.ip6.map(IpAddr::V6) == Some(addr))
        {
            return Some(Node::Container(i));
        }
    }
    if let Some(i) = plan.externals.iter().position(|x| x.ip == addr) {
        return Some(Node::External(i));
    }
    plan.machines
        .iter()
        .position(|m| IpAddr::V4(m.ip) == addr)
        .map(Node::Machine)
}

/// The node named `name` (a DNS query: `web`, `web.net`), if any.
fn node_named(plan: &Plan, name: &str) -> Option<Node> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let first = name.split('.').next().unwrap_or("");
    let eq = |n: &str| {
        let n = n.to_ascii_lowercase();
        n == name || n == first
    };
    if let Some(i) = plan
        .containers
        .iter()
        .position(|c| eq(&c.name) || c.endpoints.iter().any(|e| e.aliases.iter().any(|a| eq(a))))
    {
        return Some(Node::Container(i));
    }
    if let Some(i) = plan.externals.iter().position(|x| eq(&x.name)) {
        return Some(Node::External(i));
    }
    plan.machines
        .iter()
        .position(|m| eq(&m.name))
        .map(Node::Machine)
}

/// Where a check's arrows point.
fn check_targets(plan: &Plan, kind: &CheckKind) -> Vec<Node> {
    let target = |t: &crate::scenario::plan::Target| t.node.or_else(|| node_at(plan, t.addr));
    match kind {
        CheckKind::Ping { to, .. }
        | CheckKind::Tcp { to, .. }
        | CheckKind::Udp { to, .. }
        | CheckKind::Throughput { to, .. }
        | CheckKind::Spread { to, .. } => target(to).into_iter().collect(),
        CheckKind::Reach { to } => to.iter().filter_map(target).collect(),
        CheckKind::Dns { query, server, .. } => server
            .and_then(|s| node_at(plan, s))
            .or_else(|| query.parse().ok().and_then(|a| node_at(plan, a)))
            .or_else(|| node_named(plan, query))
            .into_iter()
            .collect(),
    }
}

/// Picks this scenario's report out of `--json` output (one object, or an
/// array of them from several files).
fn pick_report<'a>(
    plan: &Plan,
    value: &'a serde_json::Value,
    file: &str,
) -> Result<&'a serde_json::Value, GraphError> {
    let shape = |message: String| GraphError::Shape {
        file: file.to_string(),
        message,
    };
    let reports: Vec<&serde_json::Value> = match value {
        serde_json::Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    let with_checks: Vec<&serde_json::Value> = reports
        .into_iter()
        .filter(|r| r.get("checks").is_some_and(|c| c.is_array()))
        .collect();
    let source = plan.source.display().to_string();
    let same = |r: &&serde_json::Value| {
        r.get("scenario").and_then(|s| s.as_str()) == Some(source.as_str())
            || r.get("title").and_then(|s| s.as_str()) == Some(plan.name.as_str())
    };
    match with_checks.iter().copied().find(same) {
        Some(r) => Ok(r),
        None if with_checks.len() == 1 => Ok(with_checks[0]),
        None if with_checks.is_empty() => Err(shape(
            "no report with `checks` in it (write one with `vswitch run --json PATH`)".into(),
        )),
        None => Err(shape(format!(
            "none of its {} reports is of scenario {source}",
            with_checks.len()
        ))),
    }
}

fn status_of(c: &serde_json::Value) -> (Status, String) {
    let observed = c
        .get("observed")
        .and_then(|o| o.as_str())
        .unwrap_or("")
        .to_string();
    let state = c.get("status").and_then(|s| s.as_str());
    let status = if observed == "error" || state == Some("error") {
        Status::Error
    } else if state == Some("skipped") {
        Status::NotRun
    } else if c.get("pass").and_then(|p| p.as_bool()) == Some(true) {
        Status::Pass
    } else {
        Status::Fail
    };
    (status, observed)
}

/// The checks of `plan` with their results from a `--json` report.
pub fn check_arrows(plan: &Plan, report: &str, file: &str) -> Result<Vec<CheckArrow>, GraphError> {
    let value: serde_json::Value =
        serde_json::from_str(report).map_err(|source| GraphError::Json {
            file: file.to_string(),
            source,
        })?;
    let report = pick_report(plan, &value, file)?;
    let results: Vec<&serde_json::Value> = report
        .get("checks")
        .and_then(|c| c.as_array())
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    Ok(plan
        .checks
        .iter()
        .map(|c| {
            let r = results
                .iter()
                .find(|r| r.get("index").and_then(|i| i.as_u64()) == Some(c.index as u64));
            let (status, observed) = r.map_or((Status::NotRun, String::new()), |r| status_of(r));
            let base = crate::run::CheckResult::new(plan, c);
            let mut label = format!("#{} {} {} → {}", c.index, base.kind, base.from, base.to);
            if let Some(n) = &c.name {
                label.push_str(&format!(" ({n})"));
            }
            let targets = check_targets(plan, &c.kind);
            let pairs = c
                .from
                .iter()
                .flat_map(|f| targets.iter().map(move |t| (*f, *t)))
                .collect();
            CheckArrow {
                index: c.index,
                label,
                observed,
                status,
                pairs,
            }
        })
        .collect())
}

/// A network's fill colour, by driver.
pub(crate) fn driver_colour(d: Driver) -> &'static str {
    match d {
        Driver::Bridge => "#dbe9f6",
        Driver::Macvlan => "#e8dcf4",
        Driver::Ipvlan => "#d5f0ec",
        Driver::Overlay => "#fde6cc",
        Driver::None => "#eeeeee",
        Driver::Host => "#f2d0d0",
    }
}

/// The VLAN ids used on `lan` (externals and `eth0.N` parents).
pub(crate) fn lan_vlans(plan: &Plan) -> Vec<u16> {
    let mut v: Vec<u16> = plan
        .externals
        .iter()
        .filter_map(|x| x.vlan)
        .chain(
            plan.networks
                .iter()
                .filter_map(|n| n.parent.as_ref().and_then(|p| p.vlan)),
        )
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// One line per address of a container: `172.20.0.2 @net`.
pub(crate) fn endpoint_lines(plan: &Plan, c: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for e in &plan.containers[c].endpoints {
        let net = &plan.networks[e.network].name;
        match (e.ip, e.ip6) {
            (Some(a), Some(b)) => {
                lines.push(format!("{a} @{net}"));
                lines.push(format!("{b}"));
            }
            (Some(a), None) => lines.push(format!("{a} @{net}")),
            (None, Some(b)) => lines.push(format!("{b} @{net}")),
            (None, None) => lines.push(format!("@{net}")),
        }
    }
    lines
}

/// `publish 8080:80/tcp` lines of a container.
pub(crate) fn publish_lines(plan: &Plan, c: usize) -> Vec<String> {
    plan.containers[c]
        .publish
        .iter()
        .map(|p| match p.host_ip {
            Some(ip) => format!(
                "publish {ip}:{}:{}/{}",
                p.host_port, p.container_port, p.proto
            ),
            None => format!("publish {}:{}/{}", p.host_port, p.container_port, p.proto),
        })
        .collect()
}

#[cfg(test)]
mod tests;
