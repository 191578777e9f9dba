//! `[[check]]` tables: kinds, the keys each kind takes, targets, expectations
//! and default timeouts.

use std::net::IpAddr;
use std::time::Duration;

use super::addr;
use super::model::{CheckDef, OneOrMany};
use super::plan::THROUGHPUT_PORT;
use super::plan::{
    Check, CheckKind, DnsExpect, Driver, Expect, Generator, KnownDifference, Node, Plan, Proto,
    QueryType, Step, Target,
};
use super::span::{FieldPath, Issue, VResult};
use super::validate::Names;

const KINDS: &str = "ping, tcp, udp, dns, reach, throughput, spread";
const COMMON: &[&str] = &[
    "kind",
    "from",
    "expect",
    "name",
    "timeout_ms",
    "known_difference",
    "backend",
    "after",
];

fn present_keys(d: &CheckDef) -> [(&'static str, bool); 27] {
    [
        ("to", d.to.is_some()),
        ("expect", d.expect.is_some()),
        ("name", d.name.is_some()),
        ("timeout_ms", d.timeout_ms.is_some()),
        ("count", d.count.is_some()),
        ("size", d.size.is_some()),
        ("df", d.df.is_some()),
        ("ipv6", d.ipv6.is_some()),
        ("seen_as", d.seen_as.is_some()),
        ("sport", d.sport.is_some()),
        ("query", d.query.is_some()),
        ("type", d.qtype.is_some()),
        ("transport", d.transport.is_some()),
        ("server", d.server.is_some()),
        ("rotate", d.rotate.is_some()),
        ("proto", d.proto.is_some()),
        ("seconds", d.seconds.is_some()),
        ("streams", d.streams.is_some()),
        ("min_gbps", d.min_gbps.is_some()),
        ("min_kpps", d.min_kpps.is_some()),
        ("known_difference", d.known_difference.is_some()),
        ("backend", d.backend.is_some()),
        ("after", d.after.is_some()),
        ("min_rtt_ms", d.min_rtt_ms.is_some()),
        ("max_rtt_ms", d.max_rtt_ms.is_some()),
        ("connections", d.connections.is_some()),
        ("from", true),
    ]
}

/// Whether a target takes a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortRule {
    Required,
    Forbidden,
    Optional,
}

/// Validates every check and resolves its nodes and targets against the
/// world at its step: `states[k]` is the plan after steps `0..k` (see
/// `steps::steps`), and a check with `after = S` sees `states[S + 1]`.
pub(crate) fn checks(
    defs: &[CheckDef],
    states: &[Plan],
    steps: &[Step],
    names: &Names,
) -> VResult<Vec<Check>> {
    defs.iter()
        .enumerate()
        .map(|(i, d)| {
            let p = FieldPath::root().k("check").i(i);
            let after = match &d.after {
                None => None,
                Some(a) => Some(steps.iter().position(|s| &s.name == a).ok_or_else(|| {
                    let known: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
                    Issue::new(
                        p.k("after"),
                        if known.is_empty() {
                            format!("no step named {a:?}: the scenario has no [[step]] tables")
                        } else {
                            format!("no step named {a:?} (steps: {})", known.join(", "))
                        },
                    )
                })?),
            };
            let state = &states[after.map_or(0, |s| s + 1)];
            let mut c = check(i, d, state, names)?;
            c.after = after;
            for (j, n) in c.from.iter().enumerate() {
                if let Node::Container(ci) = *n
                    && !state.containers[ci].running
                {
                    let fp = match d.from {
                        OneOrMany::Many(_) => p.k("from").i(j),
                        OneOrMany::One(_) => p.k("from"),
                    };
                    let when = after.map_or(String::new(), |s| {
                        format!(" after step {:?}", steps[s].name)
                    });
                    return Err(Issue::new(
                        fp,
                        format!(
                            "container {} is stopped{when}: a check cannot run from it (start it first)",
                            state.containers[ci].name
                        ),
                    ));
                }
            }
            Ok(c)
        })
        .collect()
}

/// `min_rtt_ms` / `max_rtt_ms` of a ping check.
fn rtt_bounds(d: &CheckDef, p: &FieldPath) -> VResult<(Option<f64>, Option<f64>)> {
    for (key, v) in [("min_rtt_ms", d.min_rtt_ms), ("max_rtt_ms", d.max_rtt_ms)] {
        if let Some(x) = v
            && !(x.is_finite() && (0.0..=600_000.0).contains(&x))
        {
            return Err(Issue::new(
                p.k(key),
                format!("{key} {x} is out of range: must be 0-600000"),
            ));
        }
    }
    if let (Some(lo), Some(hi)) = (d.min_rtt_ms, d.max_rtt_ms)
        && lo > hi
    {
        return Err(Issue::new(
            p.k("max_rtt_ms"),
            format!("max_rtt_ms {hi} is below min_rtt_ms {lo}"),
        ));
    }
    Ok((d.min_rtt_ms, d.max_rtt_ms))
}

fn int_in(v: Option<i64>, p: FieldPath, lo: i64, hi: i64, default: i64) -> VResult<i64> {
    match v {
        None => Ok(default),
        Some(x) if (lo..=hi).contains(&x) => Ok(x),
        Some(x) => Err(Issue::new(
            p,
            format!("{x} is out of range: must be {lo}-{hi}"),
        )),
    }
}

/// The check kinds of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ping,
    Tcp,
    Udp,
    Dns,
    Reach,
    Throughput,
    Spread,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Ping,
        Kind::Tcp,
        Kind::Udp,
        Kind::Dns,
        Kind::Reach,
        Kind::Throughput,
        Kind::Spread,
    ];

    fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Ping => "ping",
            Kind::Tcp => "tcp",
            Kind::Udp => "udp",
            Kind::Dns => "dns",
            Kind::Reach => "reach",
            Kind::Throughput => "throughput",
            Kind::Spread => "spread",
        }
    }

    /// Keys the kind takes besides the common ones.
    fn keys(self) -> &'static [&'static str] {
        match self {
            Kind::Ping => &[
                "to",
                "count",
                "size",
                "df",
                "ipv6",
                "min_rtt_ms",
                "max_rtt_ms",
            ],
            Kind::Tcp => &["to", "seen_as", "ipv6"],
            Kind::Udp => &["to", "seen_as", "ipv6", "sport"],
            Kind::Dns => &["query", "type", "transport", "server", "rotate"],
            Kind::Reach => &["to", "ipv6"],
            Kind::Spread => &["to", "proto", "connections", "ipv6"],
            Kind::Throughput => &[
                "to", "proto", "seconds", "streams", "size", "min_gbps", "min_kpps", "ipv6",
            ],
        }
    }
}

/// One check table being validated: what every kind's validation needs.
struct Ctx<'a> {
    d: &'a CheckDef,
    p: FieldPath,
    plan: &'a Plan,
    names: &'a Names,
    kind: Kind,
    from: Vec<Node>,
}

/// A check kind with its expectation and default timeout (ms).
type KindParts = (CheckKind, Expect, u64);

impl Ctx<'_> {
    /// The check's one target (`rule` says whether it takes a port).
    fn to_one(&self, rule: PortRule) -> VResult<Target> {
        let kind = self.kind.name();
        let to_path = self.p.k("to");
        match &self.d.to {
            None => Err(Issue::new(to_path, format!("a {kind} check needs to"))),
            Some(OneOrMany::Many(_)) => Err(Issue::new(
                to_path,
                format!("only reach checks take a list in to; a {kind} check has one target"),
            )),
            Some(OneOrMany::One(s)) => target(
                s,
                rule,
                self.ipv6(),
                self.plan,
                self.names,
                to_path,
                kind,
                &self.from,
            ),
        }
    }

    fn ipv6(&self) -> bool {
        self.d.ipv6.unwrap_or(false)
    }

    /// `expect = "ok"` or `"fail"`.
    fn ok_fail(&self) -> VResult<Expect> {
        match &self.d.expect {
            Some(OneOrMany::One(s)) if s == "ok" => Ok(Expect::Ok),
            Some(OneOrMany::One(s)) if s == "fail" => Ok(Expect::Fail),
            _ => Err(Issue::new(
                self.p.k("expect"),
                format!(
                    "expect for a {} check must be \"ok\" or \"fail\"",
                    self.kind.name()
                ),
            )),
        }
    }

    fn ping(&self) -> VResult<KindParts> {
        let (d, p) = (self.d, &self.p);
        let count = int_in(d.count, p.k("count"), 1, 10_000, 3)?;
        let size = int_in(d.size, p.k("size"), 0, 65_507, 56)?;
        let to = self.to_one(PortRule::Forbidden)?;
        let ms = (count as u64 * 200 + 1000).max(2000);
        let ipv6 = self.ipv6() || to.addr.is_ipv6();
        let (min_rtt_ms, max_rtt_ms) = rtt_bounds(d, p)?;
        let kind = CheckKind::Ping {
            to,
            count: count as u32,
            size: size as u16,
            df: d.df.unwrap_or(false),
            ipv6,
            min_rtt_ms,
            max_rtt_ms,
        };
        Ok((kind, self.ok_fail()?, ms))
    }

    fn echo(&self) -> VResult<KindParts> {
        let to = self.to_one(PortRule::Required)?;
        let seen_as = match &self.d.seen_as {
            None => None,
            Some(s) => Some(
                seen_as(s, to.addr.is_ipv6(), self.plan, self.names)
                    .map_err(|m| Issue::new(self.p.k("seen_as"), m))?,
            ),
        };
        let k = if self.kind == Kind::Tcp {
            CheckKind::Tcp { to, seen_as }
        } else {
            let d = self.d;
            let sport = match d.sport {
                None => None,
                Some(_) => Some(int_in(d.sport, self.p.k("sport"), 1, 65_535, 0)? as u16),
            };
            CheckKind::Udp { to, seen_as, sport }
        };
        Ok((k, self.ok_fail()?, 2000))
    }

    fn reach(&self) -> VResult<KindParts> {
        let tp = self.p.k("to");
        let list: Vec<(FieldPath, &str)> = match &self.d.to {
            None => return Err(Issue::new(tp, "a reach check needs to")),
            Some(OneOrMany::One(s)) => vec![(tp, s.as_str())],
            Some(OneOrMany::Many(v)) => v
                .iter()
                .enumerate()
                .map(|(j, s)| (tp.i(j), s.as_str()))
                .collect(),
        };
        if list.is_empty() {
            return Err(Issue::new(self.p.k("to"), "to is empty"));
        }
        let mut to = Vec::with_capacity(list.len());
        for (tp, s) in list {
            to.push(target(
                s,
                PortRule::Forbidden,
                self.ipv6(),
                self.plan,
                self.names,
                tp,
                self.kind.name(),
                &self.from,
            )?);
        }
        let ms = (self.from.len() as u64)
            .saturating_mul(to.len() as u64)
            .saturating_mul(2000);
        Ok((CheckKind::Reach { to }, self.ok_fail()?, ms))
    }

    fn throughput(&self) -> VResult<KindParts> {
        let (d, p) = (self.d, &self.p);
        let to = self.to_one(PortRule::Optional)?;
        let proto = match &d.proto {
            None => Proto::Tcp,
            Some(s) => addr::proto(s).map_err(|m| Issue::new(p.k("proto"), m))?,
        };
        if self
            .plan
            .receiver_of(to.addr, to.port.unwrap_or(THROUGHPUT_PORT), proto)
            .is_none()
        {
            return Err(Issue::new(
                p.k("to"),
                format!(
                    "no container, external or machine of the scenario holds {}: a throughput check needs a node there to receive",
                    to.addr
                ),
            ));
        }
        let seconds = int_in(d.seconds, p.k("seconds"), 1, 3600, 3)?;
        let streams = int_in(d.streams, p.k("streams"), 1, 128, 1)?;
        let size = int_in(d.size, p.k("size"), 1, 65_507, 1400)?;
        for (key, v) in [("min_gbps", d.min_gbps), ("min_kpps", d.min_kpps)] {
            if let Some(x) = v
                && !(x.is_finite() && x >= 0.0)
            {
                return Err(Issue::new(p.k(key), format!("{key} must be a number >= 0")));
            }
        }
        let expect = match &d.expect {
            None => Expect::Figures,
            Some(OneOrMany::One(s)) if s == "ok" => Expect::Figures,
            Some(_) => {
                return Err(Issue::new(
                    p.k("expect"),
                    "throughput checks take no expect; use min_gbps or min_kpps",
                ));
            }
        };
        let kind = CheckKind::Throughput {
            to,
            proto,
            seconds: seconds as u32,
            streams: streams as u32,
            size: size as u16,
            min_gbps: d.min_gbps,
            min_kpps: d.min_kpps,
            generator: Generator::Builtin,
            bidir: false,
        };
        Ok((kind, expect, seconds as u64 * 1000 + 10_000))
    }
}

/// The kind of check `i`, after refusing keys the kind does not take.
fn kind_of(d: &CheckDef, p: &FieldPath) -> VResult<Kind> {
    let Some(kind) = Kind::parse(d.kind.as_str()) else {
        return Err(Issue::new(
            p.k("kind"),
            format!("unknown check kind {:?}: expected one of {KINDS}", d.kind),
        ));
    };
    let allowed = kind.keys();
    for (key, here) in present_keys(d) {
        if here && !COMMON.contains(&key) && !allowed.contains(&key) {
            let name = kind.name();
            return Err(Issue::key(
                p.k(key),
                format!(
                    "{key} is not valid for a {name} check ({name} takes: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(kind)
}

/// `known_difference` with the `backend` that departs.
fn known_difference(d: &CheckDef, p: &FieldPath) -> VResult<Option<KnownDifference>> {
    match (&d.known_difference, &d.backend) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(Issue::key(
            p.k("backend"),
            "backend names who departs in a known_difference; add known_difference",
        )),
        // A departure excused on every backend would excuse anything.
        (Some(_), None) => Err(Issue::key(
            p.k("known_difference"),
            "a known_difference excuses one backend: add backend = \"userspace\", \"kernel\" or \"docker\" (the one that departs)",
        )),
        (Some(reason), Some(b)) => {
            if !matches!(b.as_str(), "userspace" | "kernel" | "docker") {
                return Err(Issue::new(
                    p.k("backend"),
                    format!("unknown backend {b:?}: expected userspace, kernel or docker"),
                ));
            }
            Ok(Some(KnownDifference {
                reason: reason.clone(),
                backend: Some(b.clone()),
            }))
        }
    }
}

/// The nodes a check runs from (a list only for reach).
fn froms(d: &CheckDef, p: &FieldPath, kind: Kind, names: &Names) -> VResult<Vec<Node>> {
    let items = d.from.items();
    if matches!(d.from, OneOrMany::Many(_)) && kind != Kind::Reach {
        return Err(Issue::new(
            p.k("from"),
            format!(
                "only reach checks take a list in from; a {} check runs from one node",
                kind.name()
            ),
        ));
    }
    if items.is_empty() {
        return Err(Issue::new(p.k("from"), "from is empty"));
    }
    let mut from = Vec::with_capacity(items.len());
    for (j, name) in items.iter().enumerate() {
        let fp = match d.from {
            OneOrMany::Many(_) => p.k("from").i(j),
            OneOrMany::One(_) => p.k("from"),
        };
        from.push(node(name, names).ok_or_else(|| {
            Issue::new(
                fp,
                format!("no container, external or machine named {name:?}"),
            )
        })?);
    }
    Ok(from)
}

fn check(i: usize, d: &CheckDef, plan: &Plan, names: &Names) -> VResult<Check> {
    let p = FieldPath::root().k("check").i(i);
    let kind = kind_of(d, &p)?;
    let known_difference = known_difference(d, &p)?;
    let from = froms(d, &p, kind, names)?;
    let from_text = d.from.items().join(", ");
    let cx = Ctx {
        d,
        p,
        plan,
        names,
        kind,
        from,
    };
    let (kind_v, expect, default_ms) = match kind {
        Kind::Ping => cx.ping()?,
        Kind::Tcp | Kind::Udp => cx.echo()?,
        Kind::Dns => dns(d, &cx.p, plan)?,
        Kind::Spread => spread(d, &cx.p, cx.to_one(PortRule::Required)?)?,
        Kind::Reach => cx.reach()?,
        Kind::Throughput => cx.throughput()?,
    };
    let timeout_ms = match d.timeout_ms {
        None => default_ms,
        Some(t) if (1..=86_400_000).contains(&t) => t as u64,
        Some(t) => {
            return Err(Issue::new(
                cx.p.k("timeout_ms"),
                format!("timeout_ms {t} is out of range: must be 1-86400000"),
            ));
        }
    };
    Ok(Check {
        index: i,
        name: d.name.clone(),
        from: cx.from,
        from_text,
        kind: kind_v,
        expect,
        timeout: Duration::from_millis(timeout_ms),
        known_difference,
        after: None,
    })
}

/// A `spread` check: `connections` TCP connections to `to`; `expect` is
/// the number of distinct nodes that answered.
fn spread(d: &CheckDef, p: &FieldPath, to: Target) -> VResult<KindParts> {
    let proto = match &d.proto {
        None => Proto::Tcp,
        Some(s) => match addr::proto(s).map_err(|m| Issue::new(p.k("proto"), m))? {
            Proto::Tcp => Proto::Tcp,
            Proto::Udp => {
                return Err(Issue::new(
                    p.k("proto"),
                    "a spread check counts TCP connections: proto must be tcp",
                ));
            }
        },
    };
    let connections = int_in(d.connections, p.k("connections"), 1, 10_000, 20)?;
    let expect = match &d.expect {
        Some(OneOrMany::One(s)) => match s.parse::<u32>() {
            Ok(n) => Expect::Count(n),
            Err(_) => {
                return Err(Issue::new(
                    p.k("expect"),
                    format!("expect for a spread check is an integer (distinct nodes), not {s:?}"),
                ));
            }
        },
        _ => {
            return Err(Issue::new(
                p.k("expect"),
                "expect for a spread check is an integer: the number of distinct nodes that answer",
            ));
        }
    };
    let ms = (connections as u64 * 200).max(3000);
    Ok((
        CheckKind::Spread {
            to,
            proto,
            connections: connections as u32,
        },
        expect,
        ms,
    ))
}

fn dns(d: &CheckDef, p: &FieldPath, plan: &Plan) -> VResult<KindParts> {
    let query = match &d.query {
        Some(q) if !q.trim().is_empty() => q.trim().to_string(),
        Some(_) => return Err(Issue::new(p.k("query"), "query is empty")),
        None => return Err(Issue::new(p.k("query"), "a dns check needs query")),
    };
    let qtype = match d.qtype.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("A") => QueryType::A,
        Some("AAAA") => QueryType::AAAA,
        Some("PTR") => QueryType::PTR,
        Some("CNAME") => QueryType::CNAME,
        Some("MX") => QueryType::MX,
        Some("TXT") => QueryType::TXT,
        Some(t) => {
            return Err(Issue::new(
                p.k("type"),
                format!("unknown query type {t:?}: expected A, AAAA, PTR, CNAME, MX or TXT"),
            ));
        }
    };
    let tcp = match d.transport.as_deref() {
        None | Some("udp") => false,
        Some("tcp") => true,
        Some(t) => {
            return Err(Issue::new(
                p.k("transport"),
                format!("unknown transport {t:?}: expected udp or tcp"),
            ));
        }
    };
    let server = match &d.server {
        None => None,
        Some(s) => Some(match plan.externals.iter().find(|e| &e.name == s) {
            Some(e) => e.ip,
            None => {
                let a: IpAddr = s.parse().map_err(|_| {
                    Issue::new(p.k("server"), format!("no external named {s:?} (server takes an IP address or an external name)"))
                })?;
                if !in_scenario(plan, a) {
                    return Err(Issue::new(
                        p.k("server"),
                        format!("address {a} is not part of the scenario"),
                    ));
                }
                a
            }
        }),
    };
    let expect = match &d.expect {
        Some(OneOrMany::Many(list)) => Expect::Dns(DnsExpect::Answers(
            list.iter().map(|a| normalize_answer(a, qtype)).collect(),
        )),
        Some(OneOrMany::One(s)) if s == "nxdomain" => Expect::Dns(DnsExpect::NxDomain),
        Some(OneOrMany::One(s)) if s == "servfail" => Expect::Dns(DnsExpect::ServFail),
        Some(OneOrMany::One(s)) if s == "refused" => Expect::Dns(DnsExpect::Refused),
        Some(OneOrMany::One(s)) if s == "fail" => Expect::Dns(DnsExpect::NoAnswer),
        _ => {
            return Err(Issue::new(
                p.k("expect"),
                "expect for a dns check is a list of answers (e.g. [\"10.0.0.2\"], [] for none) or one of \"nxdomain\", \"servfail\", \"refused\", \"fail\"",
            ));
        }
    };
    let kind = CheckKind::Dns {
        query,
        qtype,
        tcp,
        server,
        rotate: d.rotate.unwrap_or(false),
    };
    Ok((kind, expect, 5000))
}

/// Answers compare as lower-case names without trailing dot; addresses in
/// canonical form.
fn normalize_answer(a: &str, qtype: QueryType) -> String {
    let a = a.trim();
    if let Ok(ip) = a.parse::<IpAddr>() {
        return ip.to_string();
    }
    if qtype == QueryType::TXT {
        return a.to_string();
    }
    a.strip_suffix('.').unwrap_or(a).to_ascii_lowercase()
}

fn node(name: &str, names: &Names) -> Option<Node> {
    names.nodes.get(name).copied()
}

/// Whether an address belongs to the scenario: the lan, a network's
/// subnet, an external or machine address, or loopback (which never leaves
/// the namespace the check runs in).
fn in_scenario(plan: &Plan, a: IpAddr) -> bool {
    if a.is_loopback() {
        return true;
    }
    if plan.externals.iter().any(|e| e.holds(a)) || plan.machines.iter().any(|m| m.holds(a)) {
        return true;
    }
    match a {
        IpAddr::V4(v4) => {
            plan.lan.contains(&v4)
                || plan.machines.iter().any(|m| m.ip == v4)
                || plan
                    .networks
                    .iter()
                    .any(|n| n.subnets.iter().any(|s| s.net.contains(&v4)))
        }
        IpAddr::V6(v6) => {
            plan.lan6.is_some_and(|l| l.contains(&v6))
                || plan
                    .networks
                    .iter()
                    .any(|n| n.subnet6.is_some_and(|s| s.contains(&v6)))
        }
    }
}

/// Splits `host[:port]`, `[v6][:port]` or a bare IPv6 literal.
fn split_port(s: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("invalid target {s:?}: missing ']'"))?;
        return match after {
            "" => Ok((h, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((h, Some(port))),
                None => Err(format!("invalid target {s:?}: expected ':PORT' after ']'")),
            },
        };
    }
    if s.parse::<IpAddr>().is_ok() {
        return Ok((s, None));
    }
    Ok(match s.rsplit_once(':') {
        Some((h, port)) => (h, Some(port)),
        None => (s, None),
    })
}

/// Resolves a `to` target (a service name is its VIP on a network it
/// shares with `from`).
#[allow(clippy::too_many_arguments)]
fn target(
    text: &str,
    rule: PortRule,
    ipv6: bool,
    plan: &Plan,
    names: &Names,
    path: FieldPath,
    kind: &str,
    from: &[Node],
) -> VResult<Target> {
    let err = |m: String| Issue::new(path.clone(), m);
    let (host, port) = split_port(text).map_err(err)?;
    let port = match (port, rule) {
        (None, PortRule::Required) => {
            return Err(err(format!(
                "a {kind} target needs a port, e.g. \"{host}:80\""
            )));
        }
        (Some(_), PortRule::Forbidden) => {
            return Err(err(format!(
                "a {kind} target takes no port: write \"{host}\""
            )));
        }
        (Some(p), _) => Some(addr::port(p).map_err(err)?),
        (None, _) => None,
    };
    let (node, addr) = if let Ok(a) = host.parse::<IpAddr>() {
        if !in_scenario(plan, a) {
            return Err(err(format!(
                "address {a} is not part of the scenario: targets must be declared addresses or lie in a declared subnet or the lan"
            )));
        }
        if ipv6 && a.is_ipv4() {
            return Err(err(format!("ipv6 = true needs an IPv6 target, not {a}")));
        }
        (None, a)
    } else {
        let (name, net) = match host.split_once('@') {
            Some((n, net)) => (n, Some(net)),
            None => (host, None),
        };
        let Some(n) = node(name, names) else {
            if let Some(&svc) = names.services.get(name) {
                if ipv6 {
                    return Err(err(format!("service {name} has no IPv6 VIP")));
                }
                let a = super::services::vip_target(plan, names, svc, net, from).map_err(err)?;
                return Ok(Target {
                    text: text.to_string(),
                    node: None,
                    addr: a,
                    port,
                });
            }
            let what = if names.services.is_empty() {
                "container, external or machine"
            } else {
                "container, external, machine or service"
            };
            return Err(err(format!("no {what} named {name:?}")));
        };
        (Some(n), node_addr(plan, names, n, net, ipv6).map_err(err)?)
    };
    Ok(Target {
        text: text.to_string(),
        node,
        addr,
        port,
    })
}

/// The address of a node: a container's first (or named) endpoint, an
/// external's address, a machine's uplink.
fn node_addr(
    plan: &Plan,
    names: &Names,
    n: Node,
    net: Option<&str>,
    ipv6: bool,
) -> Result<IpAddr, String> {
    let fam = if ipv6 { "IPv6" } else { "IPv4" };
    match n {
        Node::Container(c) => {
            // NH-7: a container sharing another's namespace has its addresses.
            let ctr = &plan.containers[plan.containers[c].netns_of.unwrap_or(c)];
            let ep = match net {
                None => ctr.endpoints.first(),
                Some(netname) => {
                    let Some(&ni) = names.networks.get(netname) else {
                        return Err(format!("network {netname} not found"));
                    };
                    let ep = ctr.endpoints.iter().find(|e| e.network == ni);
                    if ep.is_none() {
                        return Err(format!(
                            "container {} is not on network {netname}",
                            ctr.name
                        ));
                    }
                    ep
                }
            };
            let Some(ep) = ep else {
                return Err(format!("container {} has no endpoint", ctr.name));
            };
            if plan.networks[ep.network].driver == Driver::Host {
                // Host networking: the container is the machine's stack.
                return machine_addr(plan, ctr.machine, ipv6);
            }
            let a = if ipv6 {
                ep.ip6.map(IpAddr::V6)
            } else {
                ep.ip.map(IpAddr::V4)
            };
            a.ok_or_else(|| {
                format!(
                    "container {} has no {fam} address on network {}",
                    ctr.name, plan.networks[ep.network].name
                )
            })
        }
        Node::External(e) => {
            if net.is_some() {
                return Err("name@network is only for containers".to_string());
            }
            let x = &plan.externals[e];
            let a = if ipv6 {
                x.ip6.map(IpAddr::V6)
            } else {
                x.ip4().map(IpAddr::V4)
            };
            a.ok_or_else(|| {
                let hint = if ipv6 { " (give it ip6)" } else { "" };
                format!("external {} has no {fam} address{hint}", x.name)
            })
        }
        Node::Machine(m) => {
            if net.is_some() {
                return Err("name@network is only for containers".to_string());
            }
            machine_addr(plan, m, ipv6)
        }
    }
}

/// A machine's uplink address of one family.
fn machine_addr(plan: &Plan, m: usize, ipv6: bool) -> Result<IpAddr, String> {
    let mach = &plan.machines[m];
    if !ipv6 {
        return Ok(IpAddr::V4(mach.ip));
    }
    mach.ip6.map(IpAddr::V6).ok_or_else(|| {
        format!(
            "machine {} has no IPv6 uplink address (the scenario has no lan6)",
            mach.name
        )
    })
}

/// `seen_as`: a node name (`name@network` for one endpoint), resolved to
/// its address of the check's family, or an address (kept as `IpAddr`, so
/// it compares in canonical form, RFC 5952).
fn seen_as(s: &str, ipv6: bool, plan: &Plan, names: &Names) -> Result<IpAddr, String> {
    if let Ok(a) = s.parse::<IpAddr>() {
        // Either family: docker-proxy serves the IPv6 side of a port of an
        // IPv4-only container (PUB-4), which then sees an IPv4 source.
        return Ok(a);
    }
    let (name, net) = match s.split_once('@') {
        Some((n, net)) => (n, Some(net)),
        None => (s, None),
    };
    let n = node(name, names).ok_or_else(|| {
        format!("no container, external or machine named {name:?} (seen_as takes a name or an IP address)")
    })?;
    node_addr(plan, names, n, net, ipv6)
}
