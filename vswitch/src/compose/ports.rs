//! Compose `ports` (short `[HOST_IP:][HOST:]CONTAINER[/PROTO]`, ranges
//! included, and the long `target`/`published`/`host_ip`/`protocol` form)
//! and `expose`.

use std::net::IpAddr;

use super::yaml::{Node, Val};
use super::{ComposeError, Ctx};

/// One container port, published or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Port {
    pub host_ip: Option<IpAddr>,
    /// None: a host port Docker chooses, from `range` or else from the
    /// ephemeral range (PUB-6).
    pub published: Option<u16>,
    /// `8000-8009:80`: the host range one port is chosen from.
    pub range: Option<(u16, u16)>,
    pub target: u16,
    pub proto: String,
}

impl Port {
    /// The scenario's `publish` string; `ports` publishes every entry,
    /// on a host port Docker chooses when none is given (PUB-6).
    pub fn publish(&self) -> Option<String> {
        let h = match (self.published, self.range) {
            (Some(h), _) => h.to_string(),
            (None, Some((a, b))) => format!("{a}-{b}"),
            (None, None) => String::new(),
        };
        let suffix = if self.proto == "udp" { "/udp" } else { "" };
        Some(match self.host_ip {
            Some(IpAddr::V6(a)) => format!("[{a}]:{h}:{}{suffix}", self.target),
            Some(a) => format!("{a}:{h}:{}{suffix}", self.target),
            None if h.is_empty() => format!("{}{suffix}", self.target),
            None => format!("{h}:{}{suffix}", self.target),
        })
    }
}

/// `80` or `8000-8002`.
fn range(ctx: &Ctx, n: &Node, key: &str, s: &str) -> Result<Vec<u16>, ComposeError> {
    let bad = || ctx.err(n.line, n.col, key, format!("invalid port {s:?}"));
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, b),
        None => (s, s),
    };
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || b < a || b - a > 1000 {
        return Err(bad());
    }
    Ok((a..=b).collect())
}

fn proto(ctx: &Ctx, n: &Node, key: &str, p: &str) -> Result<String, ComposeError> {
    match p {
        "tcp" | "udp" | "sctp" => Ok(p.to_string()),
        _ => Err(ctx.err(
            n.line,
            n.col,
            key,
            format!("invalid protocol {p:?} (tcp or udp)"),
        )),
    }
}

/// Splits `[HOST_IP:]` off the front (`[::1]:` for IPv6).
fn split_host_ip<'s>(
    ctx: &Ctx,
    n: &Node,
    key: &str,
    s: &'s str,
) -> Result<(Option<IpAddr>, &'s str), ComposeError> {
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, rest) = rest
            .split_once("]:")
            .ok_or_else(|| ctx.err(n.line, n.col, key, format!("invalid port {s:?}")))?;
        let ip = ip
            .parse()
            .map_err(|_| ctx.err(n.line, n.col, key, format!("invalid host IP {ip:?}")))?;
        return Ok((Some(ip), rest));
    }
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() == 3 {
        let ip = parts[0];
        if ip.is_empty() {
            return Ok((None, &s[1..]));
        }
        let ip = ip
            .parse()
            .map_err(|_| ctx.err(n.line, n.col, key, format!("invalid host IP {ip:?}")))?;
        return Ok((Some(ip), &s[parts[0].len() + 1..]));
    }
    Ok((None, s))
}

/// The short syntax.
fn short(ctx: &Ctx, n: &Node, key: &str) -> Result<Vec<Port>, ComposeError> {
    let s = ctx.text(n, key)?;
    let (spec, p) = match s.rsplit_once('/') {
        Some((a, p)) => (a, proto(ctx, n, key, p)?),
        None => (s.as_str(), "tcp".to_string()),
    };
    let (host_ip, rest) = split_host_ip(ctx, n, key, spec)?;
    let (host, target) = match rest.split_once(':') {
        // `IP::80`: a host port Docker chooses.
        Some(("", t)) => (None, range(ctx, n, key, t)?),
        Some((h, t)) => (Some(range(ctx, n, key, h)?), range(ctx, n, key, t)?),
        None => (None, range(ctx, n, key, rest)?),
    };
    match host {
        Some(h) if h.len() != target.len() && h.len() != 1 && target.len() != 1 => Err(ctx.err(
            n.line,
            n.col,
            key,
            format!("host range and container range differ in length in {s:?}"),
        )),
        Some(h) if h.len() > 1 && target.len() == 1 => Ok(vec![Port {
            host_ip,
            published: None,
            range: Some((h[0], h[h.len() - 1])),
            target: target[0],
            proto: p.clone(),
        }]),
        Some(h) if h.len() == 1 && target.len() > 1 => Err(ctx.err(
            n.line,
            n.col,
            key,
            format!("one host port for a range of container ports in {s:?}"),
        )),
        Some(h) => Ok(h
            .iter()
            .zip(&target)
            .map(|(&h, &t)| Port {
                host_ip,
                published: Some(h),
                range: None,
                target: t,
                proto: p.clone(),
            })
            .collect()),
        None => Ok(target
            .into_iter()
            .map(|t| Port {
                host_ip,
                published: None,
                range: None,
                target: t,
                proto: p.clone(),
            })
            .collect()),
    }
}

/// The long syntax.
fn long(ctx: &mut Ctx, n: &Node, key: &str) -> Result<Vec<Port>, ComposeError> {
    let mut target = None;
    let mut published = None;
    let mut host_ip = None;
    let mut p = "tcp".to_string();
    for e in ctx.map(n, key)?.to_vec() {
        let k = format!("{key}.{}", e.key);
        match e.key.as_str() {
            "target" => target = Some(range(ctx, &e.value, &k, &ctx.text(&e.value, &k)?)?),
            "published" => published = Some(range(ctx, &e.value, &k, &ctx.text(&e.value, &k)?)?),
            "host_ip" => host_ip = Some(ctx.ip(&e.value, &k)?),
            "protocol" => p = proto(ctx, &e.value, &k, &ctx.text(&e.value, &k)?)?,
            // Outside Swarm both modes publish on the machine.
            "mode" => {}
            "name" | "app_protocol" => {
                ctx.note(e.line, &k, "a port's name and app_protocol are labels only")
            }
            _ => return Err(ctx.err(e.line, e.col, &k, "unknown port key")),
        }
    }
    let Some(target) = target else {
        return Err(ctx.err(
            n.line,
            n.col,
            &format!("{key}.target"),
            "a long-syntax port needs `target`",
        ));
    };
    let published: Vec<Option<u16>> = match published {
        Some(h) if h.len() == target.len() => h.into_iter().map(Some).collect(),
        Some(h) if h.len() > 1 && target.len() == 1 => {
            return Ok(vec![Port {
                host_ip,
                published: None,
                range: Some((h[0], h[h.len() - 1])),
                target: target[0],
                proto: p,
            }]);
        }
        Some(h) => vec![h.first().copied(); target.len()],
        None => vec![None; target.len()],
    };
    Ok(target
        .into_iter()
        .zip(published)
        .map(|(t, h)| Port {
            host_ip,
            published: h,
            range: None,
            target: t,
            proto: p.clone(),
        })
        .collect())
}

/// Every port of a `ports` list.
pub(crate) fn ports(ctx: &mut Ctx, n: &Node, key: &str) -> Result<Vec<Port>, ComposeError> {
    let mut out = Vec::new();
    for (i, item) in ctx.list(n, key)?.to_vec().iter().enumerate() {
        let k = format!("{key}[{i}]");
        let mut got = match item.val {
            Val::Map(_) => long(ctx, item, &k)?,
            _ => short(ctx, item, &k)?,
        };
        if got.iter().any(|p| p.proto == "sctp") {
            ctx.note(item.line, &k, "sctp ports are not in the scenario format");
            got.retain(|p| p.proto != "sctp");
        }
        out.append(&mut got);
    }
    Ok(out)
}

/// `expose`: container ports served, not published.
pub(crate) fn expose(
    ctx: &mut Ctx,
    n: &Node,
    key: &str,
) -> Result<Vec<(String, u16)>, ComposeError> {
    let mut out = Vec::new();
    for (i, item) in ctx.list(n, key)?.to_vec().iter().enumerate() {
        let k = format!("{key}[{i}]");
        let s = ctx.text(item, &k)?;
        let (ports, p) = match s.rsplit_once('/') {
            Some((a, p)) => (a.to_string(), proto(ctx, item, &k, p)?),
            None => (s.clone(), "tcp".to_string()),
        };
        if p == "sctp" {
            ctx.note(item.line, &k, "sctp ports are not in the scenario format");
            continue;
        }
        for port in range(ctx, item, &k, &ports)? {
            out.push((p.clone(), port));
        }
    }
    Ok(out)
}
