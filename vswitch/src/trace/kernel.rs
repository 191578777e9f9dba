//! `vswitch trace --backend kernel`: the same question asked of Linux's own
//! path, through nftables tracing. The world is built on the kernel
//! backend; every machine namespace and the source's get a table that sets
//! `meta nftrace` on the flow (inet prerouting and output, bridge
//! prerouting, ahead of every other hook), `nft monitor trace` runs in
//! each, one real packet is sent (a TCP connect, a UDP datagram, an echo
//! request), and the trace lines of that packet are printed per namespace
//! with the outcome the source saw. Then the world goes, as any run's.
//!
//! A monitor is known to be listening once it has printed the trace of a
//! marker datagram to 127.0.0.254 sent in its namespace (no sleeping).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Resolved, Trace, TraceError, TraceProto, node_name};
use crate::backend::{BuildOptions, World};
use crate::netns::NetNs;
use crate::probe::{self, PingOptions};
use crate::scenario::plan::{BackendKind, Node, Plan};
use crate::world::{self, RunId, RunRecord};

/// The table every traced namespace gets.
const TABLE: &str = "vswitch_trace";
/// Where the readiness marker goes.
const MARKER: &str = "127.0.0.254";
/// How long a monitor may take to show the marker.
const READY_DEADLINE: Duration = Duration::from_secs(10);

/// The nft match of the traced flow.
fn flow_match(r: &Resolved, proto: TraceProto) -> String {
    let fam = if r.dst.is_ipv4() { "ip" } else { "ip6" };
    let l4 = match proto {
        TraceProto::Tcp => format!(" tcp dport {} tcp flags & (syn | ack) == syn", r.port),
        TraceProto::Udp => format!(" udp dport {}", r.port),
        TraceProto::Icmp if r.dst.is_ipv4() => " icmp type echo-request".to_string(),
        TraceProto::Icmp => " icmpv6 type echo-request".to_string(),
    };
    format!("{fam} daddr {}{l4}", r.dst)
}

/// The tracing table of one namespace, `bridge` too on machines (bridged
/// frames never reach the inet hooks without br_netfilter).
pub fn ruleset(flow: &str, bridge: bool) -> String {
    let mut s = format!(
        "table inet {TABLE} {{\n  chain pre {{\n    type filter hook prerouting priority -400; policy accept;\n    {flow} meta nftrace set 1\n  }}\n  chain out {{\n    type filter hook output priority -400; policy accept;\n    {flow} meta nftrace set 1\n    ip daddr {MARKER} udp dport 9 meta nftrace set 1\n  }}\n}}\n"
    );
    if bridge {
        let _ = write!(
            s,
            "table bridge {TABLE} {{\n  chain pre {{\n    type filter hook prerouting priority -400; policy accept;\n    {flow} meta nftrace set 1\n  }}\n}}\n"
        );
    }
    s
}

fn nft_in(ns: &NetNs, args: Vec<String>, input: String) -> Result<(), String> {
    let out = ns
        .run(move || -> std::io::Result<std::process::Output> {
            let mut c = Command::new("nft")
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            if let Some(mut i) = c.stdin.take() {
                std::io::Write::write_all(&mut i, input.as_bytes())?;
            }
            c.wait_with_output()
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A running `nft monitor trace` and the lines it printed.
struct Monitor {
    label: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Monitor {
    fn start(ns: &NetNs, label: String) -> Result<Monitor, String> {
        let mut child = ns
            .run(|| {
                Command::new("nft")
                    .args(["monitor", "trace"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
            })
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("nft monitor trace: {e}"))?;
        let out = child.stdout.take().ok_or("nft monitor has no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Ok(Monitor {
            label,
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// Takes what arrived within `wait`.
    fn pump(&mut self, wait: Duration) -> bool {
        match self.lines.recv_timeout(wait) {
            Ok(l) => {
                self.seen.push(l);
                while let Ok(l) = self.lines.try_recv() {
                    self.seen.push(l);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Sends markers until this monitor shows one (it is subscribed then).
    fn wait_ready(&mut self, ns: &NetNs) -> Result<(), String> {
        let deadline = Instant::now() + READY_DEADLINE;
        while Instant::now() < deadline {
            let _ = ns.run(|| {
                std::net::UdpSocket::bind("127.0.0.1:0")
                    .and_then(|s| s.send_to(b"vswitch-trace-marker", (MARKER, 9)))
            });
            self.pump(Duration::from_millis(50));
            if self.seen.iter().any(|l| l.contains(MARKER)) {
                return Ok(());
            }
        }
        Err(format!(
            "nft monitor trace in {} never listened",
            self.label
        ))
    }

    /// The trace lines of the traced flow: those of every trace id whose
    /// packet was not a marker.
    fn flow_lines(&self) -> Vec<String> {
        let id = |l: &str| l.split_whitespace().nth(2).map(str::to_string);
        let markers: std::collections::BTreeSet<String> = self
            .seen
            .iter()
            .filter(|l| l.contains(MARKER))
            .filter_map(|l| id(l))
            .collect();
        // The first packet of the flow (a retransmission or the rest of
        // the connection would repeat the same path).
        let first = self
            .seen
            .iter()
            .filter(|l| l.starts_with("trace id"))
            .filter_map(|l| id(l))
            .find(|i| !markers.contains(i));
        self.seen
            .iter()
            .filter(|l| l.starts_with("trace id") && id(l).is_some() && id(l) == first)
            .cloned()
            .collect()
    }
}

/// What the source saw when it sent the real packet.
fn send(ns: &NetNs, r: &Resolved, proto: TraceProto) -> String {
    let deadline = Instant::now() + Duration::from_secs(3);
    let dst = SocketAddr::new(r.dst, r.port);
    match proto {
        TraceProto::Tcp => match probe::tcp_echo(ns, dst, deadline) {
            Ok(_) => "connected (the service answered)".into(),
            Err(e) => format!("no connection: {e}"),
        },
        TraceProto::Udp => match probe::udp_echo(ns, dst, deadline) {
            Ok(_) => "answered (the service echoed)".into(),
            Err(e) => format!("no answer: {e}"),
        },
        TraceProto::Icmp => {
            let opts = PingOptions {
                count: 1,
                ..PingOptions::default()
            };
            match probe::ping(ns, r.dst, &opts, deadline) {
                Ok(o) if o.received > 0 => "echo reply received".into(),
                Ok(_) => "no echo reply".into(),
                Err(e) => format!("ping failed: {e}"),
            }
        }
    }
}

/// Builds `plan` on the kernel backend, traces one packet and tears the
/// world down.
pub fn trace(
    plan: &Plan,
    scenario: &str,
    r: &Resolved,
    proto: TraceProto,
) -> Result<Trace, TraceError> {
    let why = crate::backend::unsupported(plan, BackendKind::Kernel);
    if !why.is_empty() {
        return Err(TraceError::Build(format!(
            "the kernel backend cannot build this world: {}",
            why.join("; ")
        )));
    }
    let run = RunId::new();
    let record = RunRecord {
        id: run.clone(),
        pid: std::process::id(),
        scenario: scenario.to_string(),
        name: "trace".into(),
        backend: "kernel".into(),
        namespaces: Vec::new(),
        kept: false,
    };
    record
        .save()
        .map_err(|e| TraceError::Build(format!("run record: {e}")))?;
    let _live = world::register_live(&run);
    let built = World::build(
        &run,
        plan,
        BackendKind::Kernel,
        &BuildOptions::default(),
        &|_| {},
    );
    let result = match built {
        Ok(w) => {
            let t = places(plan, r)
                .into_iter()
                .map(|(n, b)| {
                    w.ns(n)
                        .try_clone()
                        .map(|ns| (n, b, ns))
                        .map_err(|e| TraceError::Build(format!("{}: {e}", node_name(plan, n))))
                })
                .collect::<Result<Vec<_>, _>>()
                .and_then(|nss| trace_in(&nss, plan, r, proto));
            w.teardown();
            t
        }
        Err(e) => Err(TraceError::Build(format!("building the world failed: {e}"))),
    };
    world::remove_run(&run);
    result
}

/// Traces in a world kept up on the kernel backend (`vswitch up`), in
/// its own namespaces (`namespaces`: node name → namespace name, from its
/// run record); the tracing tables are removed again afterwards.
pub fn trace_live(
    plan: &Plan,
    namespaces: &[(String, String)],
    r: &Resolved,
    proto: TraceProto,
) -> Result<Trace, TraceError> {
    let nss = places(plan, r)
        .into_iter()
        .map(|(n, b)| {
            let name = node_name(plan, n);
            let ns_name = namespaces
                .iter()
                .find(|(node, _)| *node == name)
                .map(|(_, ns)| ns.clone())
                .ok_or_else(|| {
                    TraceError::Build(format!("the live world has no namespace for {name}"))
                })?;
            NetNs::open(&ns_name)
                .map(|ns| (n, b, ns))
                .map_err(|e| TraceError::Build(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let t = trace_in(&nss, plan, r, proto);
    for (_, b, ns) in &nss {
        for family in ["inet", "bridge"].iter().take(if *b { 2 } else { 1 }) {
            let args = ["delete", "table", family, TABLE]
                .map(String::from)
                .to_vec();
            let _ = nft_in(ns, args, String::new());
        }
    }
    t
}

/// Where the trace looks: every machine namespace (with the bridge family)
/// and the source's.
fn places(plan: &Plan, r: &Resolved) -> Vec<(Node, bool)> {
    let mut places: Vec<(Node, bool)> = (0..plan.machines.len())
        .map(|m| (Node::Machine(m), true))
        .collect();
    if !places.iter().any(|(n, _)| *n == r.src) {
        places.push((r.src, false));
    }
    places
}

fn trace_in(
    nss: &[(Node, bool, NetNs)],
    plan: &Plan,
    r: &Resolved,
    proto: TraceProto,
) -> Result<Trace, TraceError> {
    let flow = flow_match(r, proto);
    let src_ns = nss
        .iter()
        .find(|(n, _, _)| *n == r.src)
        .map(|(_, _, ns)| ns)
        .ok_or_else(|| TraceError::Build("no namespace for the source".into()))?;
    let mut monitors = Vec::new();
    for (node, bridge, ns) in nss {
        let label = node_name(plan, *node);
        nft_in(ns, vec!["-f".into(), "-".into()], ruleset(&flow, *bridge))
            .map_err(|e| TraceError::Build(format!("{label}: {e}")))?;
        let mut m = Monitor::start(ns, label).map_err(TraceError::Build)?;
        m.wait_ready(ns).map_err(TraceError::Build)?;
        monitors.push(m);
    }
    let outcome = send(src_ns, r, proto);
    // What is still in flight: until no monitor prints for 200 ms (≤ 2 s).
    let give_up = Instant::now() + Duration::from_secs(2);
    while Instant::now() < give_up {
        let mut any = false;
        for m in &mut monitors {
            any |= m.pump(Duration::from_millis(50));
        }
        if !any
            && !monitors
                .iter_mut()
                .any(|m| m.pump(Duration::from_millis(150)))
        {
            break;
        }
    }
    let mut text = String::new();
    let _ = writeln!(text, "kernel path, nftables trace of {flow}");
    let mut verdicts = Vec::new();
    for m in &monitors {
        let lines = m.flow_lines();
        let _ = writeln!(text, "[{}] {} trace lines", m.label, lines.len());
        for l in &lines {
            let _ = writeln!(text, "    {l}");
            if l.ends_with("(verdict drop)") || l.contains("(verdict reject") {
                // `trace id ID FAMILY TABLE CHAIN rule RULE (verdict drop)`
                let t: Vec<&str> = l.splitn(7, ' ').collect();
                let rule = t.get(6).map_or("", |r| r.trim_start_matches("rule "));
                let rule = rule.rsplit_once(" (verdict").map_or(rule, |(r, _)| r);
                let at = t.get(3..6).map(|x| x.join(" ")).unwrap_or_default();
                // The ruleset names its drops as the engine does
                // (`comment "icc-disabled"`): the reason leads.
                let by = format!("by {} {at}: {rule}", m.label);
                verdicts.push(
                    match rule
                        .split_once("comment \"")
                        .and_then(|(_, c)| c.split_once('"'))
                    {
                        Some((reason, _)) => format!("dropped:{reason} ({by})"),
                        None => format!("dropped {by}"),
                    },
                );
            }
        }
    }
    let _ = writeln!(text, "sent from {}: {outcome}", node_name(plan, r.src));
    let verdict = if verdicts.is_empty() {
        outcome
    } else {
        verdicts.join(", ")
    };
    let _ = writeln!(text, "verdict: {verdict}");
    Ok(Trace { text, verdict })
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn the_ruleset_marks_the_flow_ahead_of_every_hook() {
        let r = Resolved {
            src: Node::Container(0),
            dst: IpAddr::V4("10.0.0.2".parse().unwrap()),
            port: 80,
        };
        let f = flow_match(&r, TraceProto::Tcp);
        assert_eq!(
            f,
            "ip daddr 10.0.0.2 tcp dport 80 tcp flags & (syn | ack) == syn"
        );
        let s = ruleset(&f, true);
        assert!(s.contains("table inet vswitch_trace"));
        assert!(s.contains("table bridge vswitch_trace"));
        assert_eq!(s.matches("priority -400").count(), 3);
        assert!(s.contains("ip daddr 127.0.0.254 udp dport 9 meta nftrace set 1"));
        assert!(!ruleset(&f, false).contains("bridge"));
        let r6 = Resolved {
            dst: IpAddr::V6("fd00::2".parse().unwrap()),
            ..r
        };
        assert_eq!(
            flow_match(&r6, TraceProto::Icmp),
            "ip6 daddr fd00::2 icmpv6 type echo-request"
        );
    }
}
