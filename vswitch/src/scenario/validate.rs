//! From the serde model to a [`Plan`]: names, machines and externals here;
//! networks and containers in `networks`; checks in `checks`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::{Ipv4Net, Ipv6Net};

use super::addr;
use super::checks;
use super::ipam::{self, AddrPool, Reserve};
use super::model::{ExternalDef, MachineDef, ScenarioDef};
use super::networks;
use super::plan::{BackendKind, External, Machine, Node, Plan};
use super::span::{FieldPath, Issue, VResult};
use super::steps;

/// The `lan` when the file does not set one.
const DEFAULT_LAN: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(198, 18, 0, 0), 24) {
    Ok(n) => n,
    Err(_) => panic!("constant"),
};

/// The `lan6` when the file uses IPv6 and does not set one (RFC 5180).
const DEFAULT_LAN6: Ipv6Net = match Ipv6Net::new(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0), 64) {
    Ok(n) => n,
    Err(_) => panic!("constant"),
};

/// Name of the machine of a file without `[[machine]]` tables.
pub(crate) const IMPLICIT_MACHINE: &str = "host";

/// Names of the nodes checks can refer to.
#[derive(Debug, Default)]
pub(crate) struct Names {
    /// Container, external and machine names.
    pub nodes: HashMap<String, Node>,
    /// Network names.
    pub networks: HashMap<String, usize>,
    /// Swarm service names (`[[service]]`), by index.
    pub services: HashMap<String, usize>,
}

/// What `requires` may name: link kinds whose presence the kernel backend
/// probes (`sys::link_kind_supported`).
pub const KERNEL_FEATURES: &[&str] = &[
    "veth", "bridge", "macvlan", "macvtap", "ipvlan", "vlan", "vxlan", "dummy", "bond", "vrf",
];

/// Validates the whole model.
/// `pos` gives the byte offset of a field in the file, so that a duplicate
/// is reported at whichever of the two comes second.
pub(crate) fn build(
    source: &Path,
    mut def: ScenarioDef,
    pos: &dyn Fn(&FieldPath) -> usize,
) -> VResult<Plan> {
    let root = FieldPath::root();
    if let Some(v) = def.version
        && v != 1
    {
        return Err(Issue::new(
            root.k("version"),
            format!("unsupported scenario format version {v}: only version 1 exists"),
        ));
    }
    let lan = match &def.lan {
        Some(s) => addr::cidr4(s).map_err(|m| Issue::new(root.k("lan"), m))?,
        None => DEFAULT_LAN,
    };
    if lan.prefix_len() > 30 {
        return Err(Issue::new(
            root.k("lan"),
            format!("lan {lan} is too small: use a prefix of /30 or shorter"),
        ));
    }
    for (i, r) in def.requires.iter().enumerate() {
        if !KERNEL_FEATURES.contains(&r.as_str()) {
            return Err(Issue::new(
                root.k("requires").i(i),
                format!(
                    "unknown kernel feature {r:?}: requires takes link kinds ({})",
                    KERNEL_FEATURES.join(", ")
                ),
            ));
        }
    }
    let lan6 = match &def.lan6 {
        Some(s) => {
            let n = addr::cidr6(s).map_err(|m| Issue::new(root.k("lan6"), m))?;
            if n.prefix_len() > 120 {
                return Err(Issue::new(
                    root.k("lan6"),
                    format!("lan6 {n} is too small: use a prefix of /120 or shorter"),
                ));
            }
            Some(n)
        }
        None if uses_ipv6(&def) => Some(DEFAULT_LAN6),
        None => None,
    };
    super::builtin::add_implicit(&mut def, lan6.is_some())?;
    super::services::add_ingress(&mut def)?;
    let mut names = collect_names(&def, pos)?;
    super::services::names(&def, &mut names)?;
    let externals = externals(&def.external, lan, lan6)?;
    let mut machines = machines(&def.machine, lan, &externals)?;
    machines6(&def.machine, lan6, &externals, &mut machines)?;
    let mut plan = Plan {
        source: source.to_path_buf(),
        name: def.name.clone(),
        description: def.description.clone(),
        tags: def.tags.clone(),
        lan,
        lan6,
        requires: def.requires.clone(),
        machines,
        externals,
        networks: Vec::new(),
        containers: Vec::new(),
        checks: Vec::new(),
        seed: 0,
        steps: Vec::new(),
        services: Vec::new(),
        ingress: None,
    };
    plan.seed = match def.seed {
        None => 0,
        Some(s) if s >= 0 => s as u64,
        Some(s) => {
            return Err(Issue::new(
                root.k("seed"),
                format!("seed {s} is out of range: must be 0 or more"),
            ));
        }
    };
    let mut nets = networks::networks(&def.network, &plan)?;
    let swarm = super::services::build(&def, &plan, &mut nets, &mut names)?;
    plan.services = swarm.services;
    plan.ingress = swarm.ingress;
    plan.containers = networks::containers(&def.container, &plan, &mut nets, &names)?;
    plan.containers.extend(swarm.tasks);
    if let Some((s, j, m)) = super::services::port_clash(&plan) {
        return Err(Issue::new(root.k("service").i(s).k("publish").i(j), m));
    }
    plan.networks = std::mem::take(&mut nets.networks);
    let (steps, states) = steps::steps(&def.step, &plan, &mut nets, &names)?;
    plan.checks = checks::checks(&def.check, &states, &steps, &names)?;
    plan.steps = steps;
    Ok(plan)
}

/// Whether anything in the file is IPv6 (then `lan6` defaults to
/// `2001:2::/64`).
fn uses_ipv6(def: &ScenarioDef) -> bool {
    let v6 = |s: &str| s.parse::<Ipv6Addr>().is_ok();
    def.network.iter().any(|n| n.ipv6 == Some(true))
        || def.machine.iter().any(|m| m.ip6.is_some())
        || def.external.iter().any(|e| e.ip6.is_some() || v6(&e.ip))
        || def.check.iter().any(|c| c.ipv6 == Some(true))
        || def
            .container
            .iter()
            .any(|c| c.publish.iter().any(|p| p.starts_with('[')))
}

/// Checks name syntax and uniqueness; containers, externals and machines
/// share one namespace because checks refer to them by name.
fn collect_names(def: &ScenarioDef, pos: &dyn Fn(&FieldPath) -> usize) -> VResult<Names> {
    let root = FieldPath::root();
    let mut names = Names::default();
    let mut owner: HashMap<String, String> = HashMap::new();
    if def.machine.is_empty() {
        names
            .nodes
            .insert(IMPLICIT_MACHINE.to_string(), Node::Machine(0));
        owner.insert(
            IMPLICIT_MACHINE.to_string(),
            "the implicit machine (declare [[machine]] tables to use this name)".to_string(),
        );
    }
    let mut entries: Vec<(usize, &str, usize, &str)> = Vec::new();
    for (i, m) in def.machine.iter().enumerate() {
        entries.push((0, "machine", i, m.name.as_str()));
    }
    for (i, m) in def.external.iter().enumerate() {
        entries.push((0, "external", i, m.name.as_str()));
    }
    for (i, m) in def.container.iter().enumerate() {
        entries.push((0, "container", i, m.name.as_str()));
    }
    for e in &mut entries {
        e.0 = pos(&root.k(e.1).i(e.2).k("name"));
    }
    entries.sort_by_key(|e| e.0);
    for (_, kind, i, name) in entries {
        let path = root.k(kind).i(i).k("name");
        addr::check_name(kind, name).map_err(|m| Issue::new(path.clone(), m))?;
        if let Some(prev) = owner.get(name) {
            return Err(Issue::new(
                path,
                format!("duplicate name {name:?}: already used by {prev}"),
            ));
        }
        owner.insert(name.to_string(), format!("{kind}[{i}]"));
        let node = match kind {
            "machine" => Node::Machine(i),
            "external" => Node::External(i),
            _ => Node::Container(i),
        };
        names.nodes.insert(name.to_string(), node);
    }
    for (i, n) in def.network.iter().enumerate() {
        let path = root.k("network").i(i).k("name");
        addr::check_name("network", &n.name).map_err(|m| Issue::new(path.clone(), m))?;
        if let Some(prev) = names.networks.insert(n.name.clone(), i) {
            return Err(Issue::new(
                path,
                format!(
                    "network with name {} already exists (network[{prev}])",
                    n.name
                ),
            ));
        }
    }
    Ok(names)
}

/// Who holds each address of the lan (for messages).
type LanOwners = BTreeMap<u128, String>;

fn externals(defs: &[ExternalDef], lan: Ipv4Net, lan6: Option<Ipv6Net>) -> VResult<Vec<External>> {
    let mut out = Vec::with_capacity(defs.len());
    let mut used: HashMap<(IpAddr, Option<u16>), String> = HashMap::new();
    let mut routers: HashMap<Option<u16>, String> = HashMap::new();
    for (i, d) in defs.iter().enumerate() {
        let p = FieldPath::root().k("external").i(i);
        let vlan = match d.vlan {
            None => None,
            Some(v) if (1..=4094).contains(&v) => Some(v as u16),
            Some(v) => {
                return Err(Issue::new(
                    p.k("vlan"),
                    format!("invalid VLAN id {v}: must be 1-4094"),
                ));
            }
        };
        let ip = addr::ip(&d.ip).map_err(|m| Issue::new(p.k("ip"), m))?;
        if let (IpAddr::V4(a), None) = (ip, vlan) {
            lan_address(lan, a).map_err(|m| Issue::new(p.k("ip"), m))?;
        }
        let ip6 = match (&d.ip6, ip) {
            (Some(_), IpAddr::V6(_)) => {
                return Err(Issue::key(
                    p.k("ip6"),
                    "ip is already IPv6: an IPv6-only host takes no ip6",
                ));
            }
            (Some(s), IpAddr::V4(_)) => {
                Some((addr::ipv6(s).map_err(|m| Issue::new(p.k("ip6"), m))?, "ip6"))
            }
            (None, IpAddr::V6(a)) => Some((a, "ip")),
            (None, IpAddr::V4(_)) => None,
        };
        if let (Some((a, key)), None) = (ip6, vlan) {
            let l6 = lan6.unwrap_or(DEFAULT_LAN6);
            lan6_address(l6, a).map_err(|m| Issue::new(p.k(key), m))?;
        }
        let ip6 = ip6.map(|(a, _)| a);
        let mut own = vec![(ip, "ip")];
        if let Some(a) = ip6.filter(|a| IpAddr::V6(*a) != ip) {
            own.push((IpAddr::V6(a), "ip6"));
        }
        for (a, key) in own {
            if let Some(prev) = used.insert((a, vlan), d.name.clone()) {
                return Err(Issue::new(
                    p.k(key),
                    format!("address {a} is already used by external {prev}"),
                ));
            }
        }
        if d.gateway
            && let Some(prev) = routers.insert(vlan, d.name.clone())
        {
            return Err(Issue::new(
                p.k("gateway"),
                format!("external {prev} is already the gateway of this segment"),
            ));
        }
        let mut serve = Vec::with_capacity(d.serve.len());
        for (j, s) in d.serve.iter().enumerate() {
            let sv = addr::service(s).map_err(|m| Issue::new(p.k("serve").i(j), m))?;
            if serve.contains(&sv) {
                return Err(Issue::new(
                    p.k("serve").i(j),
                    format!("service {s} is listed twice"),
                ));
            }
            serve.push(sv);
        }
        let mut dns = BTreeMap::new();
        for (name, value) in &d.dns {
            let vp = p.k("dns").k(name);
            let key = name.trim_end_matches('.').to_ascii_lowercase();
            if key.is_empty() {
                return Err(Issue::key(vp, "empty DNS name"));
            }
            let items = value.items();
            let mut addrs = Vec::with_capacity(items.len());
            for (j, s) in items.iter().enumerate() {
                let ep = if matches!(value, super::model::OneOrMany::Many(_)) {
                    vp.i(j)
                } else {
                    vp.clone()
                };
                addrs.push(addr::ip(s).map_err(|m| Issue::new(ep, m))?);
            }
            if dns.insert(key.clone(), addrs).is_some() {
                return Err(Issue::key(vp, format!("DNS name {key} is listed twice")));
            }
        }
        out.push(External {
            name: d.name.clone(),
            ip,
            ip6,
            vlan,
            gateway: d.gateway,
            serve,
            dns,
        });
    }
    Ok(out)
}

/// An address of the lan that a host may hold.
fn lan_address(lan: Ipv4Net, a: Ipv4Addr) -> Result<(), String> {
    if !lan.contains(&a) {
        return Err(format!("address {a} is not in the lan {lan}"));
    }
    if a == lan.network() || a == lan.broadcast() {
        return Err(format!(
            "address {a} is the network or broadcast address of the lan {lan}"
        ));
    }
    Ok(())
}

/// An IPv6 address of `lan6` that a host may hold (not the subnet-router
/// anycast address, IPAM-4).
fn lan6_address(lan6: Ipv6Net, a: Ipv6Addr) -> Result<(), String> {
    if !lan6.contains(&a) {
        return Err(format!("address {a} is not in the lan6 {lan6}"));
    }
    if a == lan6.network() {
        return Err(format!(
            "address {a} is the subnet-router anycast address of the lan6 {lan6}"
        ));
    }
    Ok(())
}

/// Gives every machine its `ip6` (given ones first, then the next free
/// addresses of `lan6` in file order) when the scenario has a `lan6`.
fn machines6(
    defs: &[MachineDef],
    lan6: Option<Ipv6Net>,
    externals: &[External],
    machines: &mut [Machine],
) -> VResult<()> {
    let Some(lan6) = lan6 else {
        return Ok(());
    };
    let mut pool = AddrPool::v6(lan6);
    let mut owners = LanOwners::new();
    for e in externals.iter().filter(|e| e.vlan.is_none()) {
        if let Some(a) = e.ip6 {
            let _ = pool.reserve(ipam::n6(a));
            owners.insert(ipam::n6(a), format!("external {}", e.name));
        }
    }
    for (i, d) in defs.iter().enumerate() {
        let p = FieldPath::root().k("machine").i(i).k("ip6");
        let Some(s) = &d.ip6 else { continue };
        let a = addr::ipv6(s).map_err(|m| Issue::new(p.clone(), m))?;
        lan6_address(lan6, a).map_err(|m| Issue::new(p.clone(), m))?;
        if let Err(Reserve::InUse) = pool.reserve(ipam::n6(a)) {
            let who = owners.get(&ipam::n6(a)).cloned().unwrap_or_default();
            return Err(Issue::new(
                p,
                format!("address {a} is already used by {who}"),
            ));
        }
        owners.insert(ipam::n6(a), format!("machine {}", d.name));
        machines[i].ip6 = Some(a);
    }
    for (i, m) in machines.iter_mut().enumerate() {
        if m.ip6.is_none() {
            let p = if defs.is_empty() {
                FieldPath::root().k("lan6")
            } else {
                FieldPath::root().k("machine").i(i).k("ip6")
            };
            m.ip6 = Some(pool.alloc().map(ipam::to_v6).ok_or_else(|| {
                Issue::new(p, format!("no free address left on the lan6 {lan6}"))
            })?);
        }
    }
    Ok(())
}

fn machines(defs: &[MachineDef], lan: Ipv4Net, externals: &[External]) -> VResult<Vec<Machine>> {
    let mut pool = AddrPool::v4(lan, lan);
    let mut owners = LanOwners::new();
    for e in externals {
        if let (IpAddr::V4(a), None) = (e.ip, e.vlan) {
            let _ = pool.reserve(ipam::n4(a));
            owners.insert(ipam::n4(a), format!("external {}", e.name));
        }
    }
    if defs.is_empty() {
        let ip = pool.alloc().map(ipam::to_v4).ok_or_else(|| {
            Issue::new(
                FieldPath::root().k("lan"),
                format!("no free address left on the lan {lan}"),
            )
        })?;
        return Ok(vec![Machine {
            name: IMPLICIT_MACHINE.to_string(),
            ip,
            ip6: None,
            ip6tables: true,
            backend: None,
            userland_proxy: true,
            resolvers: Vec::new(),
        }]);
    }
    // Explicit addresses first, so that allocated ones skip all of them.
    let mut ips: Vec<Option<Ipv4Addr>> = Vec::with_capacity(defs.len());
    for (i, d) in defs.iter().enumerate() {
        let p = FieldPath::root().k("machine").i(i).k("ip");
        let Some(s) = &d.ip else {
            ips.push(None);
            continue;
        };
        let a = addr::ipv4(s).map_err(|m| Issue::new(p.clone(), m))?;
        lan_address(lan, a).map_err(|m| Issue::new(p.clone(), m))?;
        if let Err(Reserve::InUse) = pool.reserve(ipam::n4(a)) {
            let who = owners.get(&ipam::n4(a)).cloned().unwrap_or_default();
            return Err(Issue::new(
                p,
                format!("address {a} is already used by {who}"),
            ));
        }
        owners.insert(ipam::n4(a), format!("machine {}", d.name));
        ips.push(Some(a));
    }
    let mut out = Vec::with_capacity(defs.len());
    for (i, d) in defs.iter().enumerate() {
        let p = FieldPath::root().k("machine").i(i);
        let ip = match ips[i] {
            Some(a) => a,
            None => pool.alloc().map(ipam::to_v4).ok_or_else(|| {
                Issue::new(p.k("ip"), format!("no free address left on the lan {lan}"))
            })?,
        };
        let backend = match d.backend.as_deref() {
            None => None,
            Some("userspace") => Some(BackendKind::Userspace),
            Some("kernel") => Some(BackendKind::Kernel),
            Some(b) => {
                return Err(Issue::new(
                    p.k("backend"),
                    format!("unknown backend {b:?}: expected userspace or kernel"),
                ));
            }
        };
        let mut resolvers = Vec::with_capacity(d.resolvers.len());
        for (j, r) in d.resolvers.iter().enumerate() {
            let a = match externals.iter().find(|e| &e.name == r) {
                Some(e) => e.ip,
                None => r.parse::<IpAddr>().map_err(|_| {
                    Issue::new(
                        p.k("resolvers").i(j),
                        format!(
                            "no external named {r:?} (resolvers are external names or IP addresses)"
                        ),
                    )
                })?,
            };
            resolvers.push(a);
        }
        out.push(Machine {
            name: d.name.clone(),
            ip,
            ip6: None,
            ip6tables: d.ip6tables.unwrap_or(true),
            backend,
            userland_proxy: d.userland_proxy.unwrap_or(true),
            resolvers,
        });
    }
    Ok(out)
}
