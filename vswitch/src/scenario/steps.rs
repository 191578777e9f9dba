//! `[[step]]` tables: one action each, resolved against the world as it
//! stands after the steps before it. Connect allocates addresses with the
//! same IPAM as `[[container]]` (lowest free, IPAM-6), disconnect gives them
//! back (BUG-9), stop keeps them reserved.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::addr;
use super::ipam::{self, Reserve};
use super::model::{ConnectDef, FaultDef, StepDef};
use super::networks::Nets;
use super::plan::{Driver, Endpoint, LinkFault, LinkRef, MacAddr, Node, Plan, Step, StepAction};
use super::span::{FieldPath, Issue, VResult};
use super::validate::Names;

const ACTIONS: &str = "connect, disconnect, restart, stop, start, scale, fault, clear, wait_ms";

/// Validates the steps in file order. Returns them with the world after
/// each: `states[k]` is the plan once steps `0..k` have taken effect
/// (`states[0]` is `plan` itself, `states.len() == steps.len() + 1`).
pub(crate) fn steps(
    defs: &[StepDef],
    plan: &Plan,
    nets: &mut Nets,
    names: &Names,
) -> VResult<(Vec<Step>, Vec<Plan>)> {
    let mut states = vec![plan.clone()];
    let mut out: Vec<Step> = Vec::with_capacity(defs.len());
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, d) in defs.iter().enumerate() {
        let p = FieldPath::root().k("step").i(i);
        addr::check_name("step", &d.name).map_err(|m| Issue::new(p.k("name"), m))?;
        if let Some(prev) = seen.insert(d.name.as_str(), i) {
            return Err(Issue::new(
                p.k("name"),
                format!(
                    "duplicate step name {:?}: already used by step[{prev}]",
                    d.name
                ),
            ));
        }
        let state = states.last().cloned().unwrap_or_else(|| plan.clone());
        let action = action(d, &p, &state, nets, names)?;
        let mut next = state;
        next.apply(&action);
        states.push(next);
        out.push(Step {
            name: d.name.clone(),
            action,
        });
    }
    Ok((out, states))
}

/// The one action of a step.
fn action(
    d: &StepDef,
    p: &FieldPath,
    state: &Plan,
    nets: &mut Nets,
    names: &Names,
) -> VResult<StepAction> {
    let present: Vec<&str> = [
        ("connect", d.connect.is_some()),
        ("disconnect", d.disconnect.is_some()),
        ("restart", d.restart.is_some()),
        ("stop", d.stop.is_some()),
        ("start", d.start.is_some()),
        ("scale", d.scale.is_some()),
        ("fault", d.fault.is_some()),
        ("clear", d.clear.is_some()),
        ("wait_ms", d.wait_ms.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, on)| on.then_some(k))
    .collect();
    match present.as_slice() {
        [] => {
            return Err(Issue::new(
                p.k("name"),
                format!(
                    "step {:?} has no action: give exactly one of {ACTIONS}",
                    d.name
                ),
            ));
        }
        [_] => {}
        [first, second, ..] => {
            return Err(Issue::key(
                p.k(second),
                format!(
                    "a step takes exactly one action, this one has {first} and {second}: split it into two steps"
                ),
            ));
        }
    }
    let container = |key: &str, name: &str| -> VResult<usize> {
        match names.nodes.get(name) {
            Some(Node::Container(c)) if shares_netns(state, *c) => Err(Issue::new(
                p.k(key),
                format!(
                    "container {name} shares a network namespace (network_mode = \"container:…\"): stopping or restarting it is not modelled"
                ),
            )),
            Some(Node::Container(c)) => Ok(*c),
            _ => Err(Issue::new(p.k(key), format!("no container named {name:?}"))),
        }
    };
    if let Some(c) = &d.connect {
        return connect(c, &p.k("connect"), state, nets, names);
    }
    if let Some(dc) = &d.disconnect {
        let dp = p.k("disconnect");
        let ci = match names.nodes.get(dc.container.as_str()) {
            Some(Node::Container(c)) => *c,
            _ => {
                return Err(Issue::new(
                    dp.k("container"),
                    format!("no container named {:?}", dc.container),
                ));
            }
        };
        let Some(&n) = names.networks.get(dc.network.as_str()) else {
            return Err(Issue::new(
                dp.k("network"),
                format!("network {} not found", dc.network),
            ));
        };
        let ctr = &state.containers[ci];
        let Some(ep) = ctr.endpoints.iter().find(|e| e.network == n) else {
            return Err(Issue::new(
                dp.k("network"),
                format!(
                    "container {} is not connected to network {} at this point",
                    ctr.name, dc.network
                ),
            ));
        };
        if state.networks[n].driver == Driver::Host {
            return Err(Issue::new(
                dp.k("network"),
                "container cannot be disconnected from host network or connected to host network",
            ));
        }
        if let Some(a) = ep.ip {
            nets.v4[n].release(ipam::n4(a));
            nets.owners.remove(&(n, ipam::n4(a)));
        }
        if let (Some(a), Some(pool)) = (ep.ip6, nets.v6[n].as_mut()) {
            pool.release(ipam::n6(a));
            nets.owners.remove(&(n, ipam::n6(a)));
        }
        return Ok(StepAction::Disconnect {
            container: ci,
            network: n,
        });
    }
    if let Some(c) = &d.restart {
        return Ok(StepAction::Restart(container("restart", c)?));
    }
    if let Some(c) = &d.stop {
        return Ok(StepAction::Stop(container("stop", c)?));
    }
    if let Some(c) = &d.start {
        return Ok(StepAction::Start(container("start", c)?));
    }
    if let Some(s) = &d.scale {
        return super::services::scale(&s.service, s.replicas, &p.k("scale"), state, nets, names);
    }
    if let Some(f) = &d.fault {
        let fp = p.k("fault");
        let l = link(&f.link, state, names).map_err(|m| Issue::new(fp.k("link"), m))?;
        return Ok(StepAction::Fault {
            link: l,
            fault: fault(f, &fp)?,
        });
    }
    if let Some(l) = &d.clear {
        return Ok(StepAction::Clear(
            link(l, state, names).map_err(|m| Issue::new(p.k("clear"), m))?,
        ));
    }
    let ms = d.wait_ms.unwrap_or(0);
    if !(0..=3_600_000).contains(&ms) {
        return Err(Issue::new(
            p.k("wait_ms"),
            format!("wait_ms {ms} is out of range: must be 0-3600000"),
        ));
    }
    Ok(StepAction::Wait(Duration::from_millis(ms as u64)))
}

/// Whether container `c` lives in another's namespace or lends its own (NH-7).
fn shares_netns(state: &Plan, c: usize) -> bool {
    state.containers[c].netns_of.is_some() || state.containers.iter().any(|o| o.netns_of == Some(c))
}

/// `docker network connect [--ip] [--ip6] [--alias]`, with its errors.
fn connect(
    c: &ConnectDef,
    p: &FieldPath,
    state: &Plan,
    nets: &mut Nets,
    names: &Names,
) -> VResult<StepAction> {
    let ci = match names.nodes.get(c.container.as_str()) {
        Some(Node::Container(i)) => *i,
        _ => {
            return Err(Issue::new(
                p.k("container"),
                format!("no container named {:?}", c.container),
            ));
        }
    };
    if state.containers[ci].netns_of.is_some() {
        // NH-7, Docker's own message.
        return Err(Issue::new(
            p.k("container"),
            "container sharing network namespace with another container or host cannot be connected to any other network",
        ));
    }
    let Some(&n) = names.networks.get(c.network.as_str()) else {
        return Err(Issue::new(
            p.k("network"),
            format!("network {} not found", c.network),
        ));
    };
    let ctr = &state.containers[ci];
    let net = &state.networks[n];
    if ctr.endpoints.iter().any(|e| e.network == n) {
        return Err(Issue::new(
            p.k("network"),
            format!(
                "endpoint with name {} already exists in network {}",
                ctr.name, net.name
            ),
        ));
    }
    if let Some(m) = net.machine
        && m != ctr.machine
    {
        return Err(Issue::new(
            p.k("network"),
            format!(
                "network {} lives on machine {}, but container {} is on machine {}",
                net.name, state.machines[m].name, ctr.name, state.machines[ctr.machine].name
            ),
        ));
    }
    let shared = |d: Driver| matches!(d, Driver::None | Driver::Host);
    if net.driver == Driver::Host {
        return Err(Issue::new(
            p.k("network"),
            "container cannot be disconnected from host network or connected to host network",
        ));
    }
    if net.driver == Driver::None
        || ctr
            .endpoints
            .iter()
            .any(|e| shared(state.networks[e.network].driver))
    {
        return Err(Issue::new(
            p.k("network"),
            "container cannot be connected to multiple networks with one of the networks in private (none) mode",
        ));
    }
    let user_defined = !net.default;
    let mut ep = Endpoint {
        network: n,
        ip: None,
        ip6: None,
        aliases: Vec::new(),
        mac: MacAddr::default(),
    };
    for (key, given) in [("ip", &c.ip), ("ip6", &c.ip6)] {
        let Some(text) = given else { continue };
        if !user_defined {
            return Err(Issue::new(
                p.k(key),
                "user-specified IP address is supported on user-defined networks only",
            ));
        }
        match static_address(text, &p.k(key), n, state, nets, &ctr.name)? {
            IpAddr::V4(v4) => ep.ip = Some(v4),
            IpAddr::V6(v6) => ep.ip6 = Some(v6),
        }
    }
    if !c.aliases.is_empty() && !user_defined {
        return Err(Issue::new(
            p.k("aliases"),
            "network-scoped aliases are only supported for user-defined networks",
        ));
    }
    for (k, a) in c.aliases.iter().enumerate() {
        addr::check_name("alias", a).map_err(|m| Issue::new(p.k("aliases").i(k), m))?;
    }
    ep.aliases = c.aliases.clone();
    let exhausted = |v: &str| {
        Issue::new(
            p.k("network"),
            format!(
                "no available {v} addresses on this network's address pools: {}",
                net.name
            ),
        )
    };
    if ep.ip.is_none() && !net.subnets.is_empty() {
        let a = nets.v4[n]
            .alloc()
            .map(ipam::to_v4)
            .ok_or_else(|| exhausted("IPv4"))?;
        nets.owners
            .insert((n, ipam::n4(a)), format!("container {}", ctr.name));
        ep.ip = Some(a);
    }
    if ep.ip6.is_none()
        && let Some(pool) = nets.v6[n].as_mut()
    {
        let a = pool
            .alloc()
            .map(ipam::to_v6)
            .ok_or_else(|| exhausted("IPv6"))?;
        nets.owners
            .insert((n, ipam::n6(a)), format!("container {}", ctr.name));
        ep.ip6 = Some(a);
    }
    ep.mac = match ep.ip {
        Some(ip) => MacAddr::docker_from_ipv4(ip),
        None => MacAddr([
            0x0a,
            0x42,
            (ci >> 8) as u8,
            ci as u8,
            (n >> 8) as u8,
            n as u8,
        ]),
    };
    Ok(StepAction::Connect {
        container: ci,
        endpoint: ep,
    })
}

/// A connect's `ip` or `ip6` (`p` says which), reserved on network `n`.
fn static_address(
    text: &str,
    p: &FieldPath,
    n: usize,
    state: &Plan,
    nets: &mut Nets,
    who: &str,
) -> VResult<IpAddr> {
    let net = &state.networks[n];
    let v6 = p.0.last() == Some(&super::span::Seg::Key("ip6".into()));
    let a: IpAddr = if v6 {
        let a = addr::ipv6(text).map_err(|m| Issue::new(p.clone(), m))?;
        if !net.ipv6 {
            return Err(Issue::new(
                p.clone(),
                format!("network {} has no IPv6 (set ipv6 = true on it)", net.name),
            ));
        }
        IpAddr::V6(a)
    } else {
        IpAddr::V4(addr::ipv4(text).map_err(|m| Issue::new(p.clone(), m))?)
    };
    let (res, k) = match a {
        IpAddr::V4(v4) => (nets.v4[n].reserve(ipam::n4(v4)), ipam::n4(v4)),
        IpAddr::V6(v6) => match nets.v6[n].as_mut() {
            Some(pool) => (pool.reserve(ipam::n6(v6)), ipam::n6(v6)),
            None => (Err(Reserve::Outside), 0),
        },
    };
    match res {
        Ok(()) => {
            nets.owners.insert((n, k), format!("container {who}"));
            Ok(a)
        }
        Err(Reserve::Outside) => Err(Issue::new(
            p.clone(),
            format!("no configured subnet contains IP address {a}"),
        )),
        Err(Reserve::InUse) => {
            let holder = nets
                .owners
                .get(&(n, k))
                .cloned()
                .unwrap_or_else(|| "the subnet's network or broadcast address".to_string());
            Err(Issue::new(
                p.clone(),
                format!("Address already in use: {a} is {holder}"),
            ))
        }
    }
}

/// A fault's `link` (or a `clear`'s value): `lan`, a machine (its uplink),
/// an external, a container on its only network, or `container@network`.
pub(crate) fn link(s: &str, state: &Plan, names: &Names) -> Result<LinkRef, String> {
    if s == "lan" {
        return Ok(LinkRef::Lan);
    }
    let (name, net) = match s.split_once('@') {
        Some((n, net)) => (n, Some(net)),
        None => (s, None),
    };
    let Some(&node) = names.nodes.get(name) else {
        return Err(format!(
            "no container, external or machine named {name:?} (a link is lan, a node, or container@network)"
        ));
    };
    match (node, net) {
        (Node::Container(c), None) => {
            let ctr = &state.containers[c];
            match ctr.endpoints.as_slice() {
                [e] => Ok(LinkRef::Endpoint {
                    container: c,
                    network: e.network,
                }),
                [] => Err(format!(
                    "container {} has no network at this point",
                    ctr.name
                )),
                _ => Err(format!(
                    "container {} is on {} networks: name one, e.g. \"{}@{}\"",
                    ctr.name,
                    ctr.endpoints.len(),
                    ctr.name,
                    state.networks[ctr.endpoints[0].network].name
                )),
            }
        }
        (Node::Container(c), Some(netname)) => {
            let Some(&n) = names.networks.get(netname) else {
                return Err(format!("network {netname} not found"));
            };
            if !state.containers[c].endpoints.iter().any(|e| e.network == n) {
                return Err(format!(
                    "container {} is not on network {netname} at this point",
                    state.containers[c].name
                ));
            }
            Ok(LinkRef::Endpoint {
                container: c,
                network: n,
            })
        }
        (_, Some(_)) => Err("node@network is only for containers".to_string()),
        (Node::External(e), None) => Ok(LinkRef::External(e)),
        (Node::Machine(m), None) => Ok(LinkRef::Uplink(m)),
    }
}

fn fault(f: &FaultDef, p: &FieldPath) -> VResult<LinkFault> {
    let prob = |key: &str, v: Option<f64>| -> VResult<f64> {
        match v {
            None => Ok(0.0),
            Some(x) if x.is_finite() && (0.0..=1.0).contains(&x) => Ok(x),
            Some(x) => Err(Issue::new(
                p.k(key),
                format!("{key} {x} is out of range: a probability is 0..1"),
            )),
        }
    };
    let ms = |key: &str, v: Option<f64>| -> VResult<Duration> {
        match v {
            None => Ok(Duration::ZERO),
            Some(x) if x.is_finite() && (0.0..=60_000.0).contains(&x) => {
                Ok(Duration::from_secs_f64(x / 1000.0))
            }
            Some(x) => Err(Issue::new(
                p.k(key),
                format!("{key} {x} is out of range: must be 0-60000"),
            )),
        }
    };
    let rate_bps = match f.rate_mbit {
        None => None,
        Some(x) if x.is_finite() && x > 0.0 && x <= 100_000.0 => Some((x * 1e6) as u64),
        Some(x) => {
            return Err(Issue::new(
                p.k("rate_mbit"),
                format!("rate_mbit {x} is out of range: must be above 0 and at most 100000"),
            ));
        }
    };
    let mtu = match f.mtu {
        None => None,
        Some(m) if (68..=65_535).contains(&m) => Some(m as u16),
        Some(m) => {
            return Err(Issue::new(
                p.k("mtu"),
                format!("mtu {m} is out of range: must be 68-65535"),
            ));
        }
    };
    let out = LinkFault {
        loss: prob("loss", f.loss)?,
        delay: ms("delay_ms", f.delay_ms)?,
        jitter: ms("jitter_ms", f.jitter_ms)?,
        duplicate: prob("duplicate", f.duplicate)?,
        reorder: prob("reorder", f.reorder)?,
        corrupt: prob("corrupt", f.corrupt)?,
        rate_bps,
        mtu,
        down: f.down.unwrap_or(false),
    };
    if out.keys().is_empty() {
        return Err(Issue::new(
            p.k("link"),
            "this fault changes nothing: set loss, delay_ms, jitter_ms, duplicate, reorder, corrupt, rate_mbit, mtu or down = true (use clear to remove faults)",
        ));
    }
    if out.reorder > 0.0 && out.delay.is_zero() {
        return Err(Issue::new(
            p.k("reorder"),
            "reorder needs delay_ms: reordered frames are the ones that skip the delay",
        ));
    }
    Ok(out)
}
