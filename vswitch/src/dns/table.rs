//! The embedded DNS's records, built once from a [`Plan`]: what each
//! container may resolve (DNS-4 … DNS-7, DNS-11) and where it forwards the
//! rest (DNS-13, DNS-15 … DNS-17). No IO.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::scenario::plan::{Driver, Plan};

use super::forward::select_upstreams;

/// The records of one network with embedded DNS.
#[derive(Clone, Debug, Default)]
struct NetRecords {
    /// Lower-case network name (for `name.network`, DNS-7).
    name: String,
    /// Lower-case name (container name or alias) → its distinct addresses on
    /// this network, both families, in file order.
    names: HashMap<String, Vec<IpAddr>>,
    /// Container address → PTR target `container.network` (no trailing dot).
    /// Aliases get no PTR (DNS-11).
    reverse: HashMap<IpAddr, String>,
}

/// Where a container's non-local queries go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstreams {
    /// Forward to these servers, in order (1 to [`MAX_UPSTREAMS`](super::MAX_UPSTREAMS), no
    /// loopback address: 127.0.0.11 must never ask itself).
    Servers(Vec<IpAddr>),
    /// The scenario gives none: SERVFAIL (vswitch never falls back to
    /// public resolvers, DNS-16).
    NoneConfigured,
    /// Every endpoint is on an internal network: SERVFAIL (DNS-17).
    NoExternalAccess,
}

/// What one container's embedded DNS knows.
#[derive(Clone, Debug)]
pub struct ContainerView {
    /// At least one endpoint on a network with embedded DNS (DNS-1).
    pub embedded: bool,
    /// Networks whose records the container sees, in endpoint order
    /// (DNS-5: only networks it is attached to; multi-homed sees all).
    pub networks: Vec<usize>,
    /// Where non-local names go.
    pub upstreams: Upstreams,
    /// `ndots` was given in `dns_opt` (DNS-14): unknown single-label A and
    /// AAAA queries get an empty NOERROR instead of going upstream.
    pub ndots_set: bool,
}

/// Address family asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4 (A).
    V4,
    /// IPv6 (AAAA).
    V6,
    /// Either (MX: "is the name known").
    Any,
}

impl Family {
    fn matches(self, ip: &IpAddr) -> bool {
        match self {
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
            Family::Any => true,
        }
    }
}

/// Swarm service records (DNS-25, SVC-1, SVC-2, SVC-6): on each network
/// of a service, its name and aliases answer its VIP there (`vip`) or the
/// addresses of its running tasks there (`dnsrr`); `tasks.NAME` (and
/// `tasks.ALIAS`) answer every running task's address.
fn add_services(plan: &Plan, networks: &mut [NetRecords]) {
    for svc in &plan.services {
        for sn in &svc.networks {
            let tasks: Vec<IpAddr> = svc
                .running_tasks()
                .iter()
                .flat_map(|&c| &plan.containers[c].endpoints)
                .filter(|e| e.network == sn.network)
                .flat_map(|e| {
                    e.ip.map(IpAddr::V4)
                        .into_iter()
                        .chain(e.ip6.map(IpAddr::V6))
                })
                .collect();
            let service: Vec<IpAddr> = match sn.vip {
                Some(v) => vec![IpAddr::V4(v)],
                None => tasks.clone(),
            };
            let rec = &mut networks[sn.network];
            // No running task: the names go (NXDOMAIN), a VIP stays.
            for name in std::iter::once(&svc.name).chain(&sn.aliases) {
                let name = name.to_ascii_lowercase();
                if !tasks.is_empty() {
                    rec.names.insert(format!("tasks.{name}"), tasks.clone());
                }
                if !service.is_empty() {
                    rec.names.insert(name, service.clone());
                }
            }
        }
    }
}

/// Every container's view of the embedded DNS records of a plan.
#[derive(Clone, Debug)]
pub struct NameTable {
    networks: Vec<NetRecords>,
    views: Vec<ContainerView>,
}

impl NameTable {
    /// Builds the records of `plan`. Each network with embedded DNS (not the
    /// default bridge, `none` or `host`, BR-18/DNS-1) registers, per
    /// attached container, its name and the aliases given for that network
    /// (DNS-4, DNS-6). Containers of every machine are included: a network
    /// belongs to one machine, except overlay, whose records Docker shares
    /// across machines.
    pub fn from_plan(plan: &Plan) -> NameTable {
        let mut networks: Vec<NetRecords> = plan
            .networks
            .iter()
            .map(|n| NetRecords {
                name: n.name.clone(),
                ..NetRecords::default()
            })
            .collect();
        let ingress = plan.ingress.as_ref().map(|i| i.network);
        // A stopped container's records are gone (DNS-23).
        for c in plan.containers.iter().filter(|c| c.running) {
            for e in &c.endpoints {
                let net = &plan.networks[e.network];
                // The routing mesh's network has no service discovery.
                if !net.has_embedded_dns() || Some(e.network) == ingress {
                    continue;
                }
                let rec = &mut networks[e.network];
                let addrs: Vec<IpAddr> =
                    e.ip.map(IpAddr::V4)
                        .into_iter()
                        .chain(e.ip6.map(IpAddr::V6))
                        .collect();
                // DNS-4: the name, the hostname (also Docker 20.10's), aliases.
                for name in std::iter::once(&c.name)
                    .chain(c.hostname.as_ref())
                    .chain(&e.aliases)
                {
                    let list = rec.names.entry(name.to_ascii_lowercase()).or_default();
                    for a in &addrs {
                        if !list.contains(a) {
                            list.push(*a);
                        }
                    }
                }
                for a in &addrs {
                    rec.reverse
                        .entry(*a)
                        .or_insert_with(|| format!("{}.{}", c.name, net.name));
                }
            }
        }
        add_services(plan, &mut networks);
        let views = (0..plan.containers.len())
            .map(|i| view_of(plan, i))
            .collect();
        NameTable { networks, views }
    }

    /// The view of container `i` (index into `Plan::containers`).
    pub fn view(&self, container: usize) -> Option<&ContainerView> {
        self.views.get(container)
    }

    /// Number of containers the table was built for.
    pub fn containers(&self) -> usize {
        self.views.len()
    }

    /// The addresses of family `family` that `name` (lower-case, no
    /// trailing dot) has for `querier`, following Docker's
    /// `Sandbox.ResolveName`: first the whole name on every network of the
    /// querier in endpoint order, then `a.b` as `a` on network `b` and so on
    /// (DNS-7). The first network knowing the name with addresses of that
    /// family answers. `Some(empty)` when the name is known but only with the
    /// other family (DNS-10); `None` when it is not known at all.
    ///
    /// `name` is the query name as asked (labels joined, no trailing dot).
    /// The container or alias part compares case-insensitively; the network
    /// part of `a.network` compares exactly, as Docker 20.10 does (observed
    /// on the docker backend: `WWW.AppNet` is not `www` on `appnet`).
    pub fn lookup(&self, querier: usize, name: &str, family: Family) -> Option<Vec<IpAddr>> {
        let view = self.views.get(querier)?;
        if !view.embedded {
            return None;
        }
        let mut candidates = vec![(name, None)];
        let mut rest = name;
        while let Some(dot) = rest.rfind('.') {
            candidates.push((&name[..dot], Some(&name[dot + 1..])));
            rest = &rest[..dot];
        }
        for (req, net_name) in candidates {
            let req = req.to_ascii_lowercase();
            let req = req.as_str();
            let mut known = false;
            for &n in &view.networks {
                let rec = &self.networks[n];
                if net_name.is_some_and(|w| w != rec.name) {
                    continue;
                }
                let Some(addrs) = rec.names.get(req) else {
                    continue;
                };
                known = true;
                let found: Vec<IpAddr> = addrs
                    .iter()
                    .filter(|a| family.matches(a))
                    .copied()
                    .collect();
                if !found.is_empty() {
                    return Some(found);
                }
            }
            if known {
                return Some(Vec::new());
            }
        }
        None
    }

    /// The PTR target (`container.network`, no trailing dot) of `ip` for
    /// `querier`: only addresses on networks the querier is attached to
    /// (DNS-11).
    pub fn reverse(&self, querier: usize, ip: IpAddr) -> Option<&str> {
        let view = self.views.get(querier)?;
        if !view.embedded {
            return None;
        }
        view.networks
            .iter()
            .find_map(|&n| self.networks[n].reverse.get(&ip).map(String::as_str))
    }
}

/// A query the kernel fast path may answer by itself: `name` (as a client
/// spells it, no trailing dot) and type `qtype` (A or AAAA) get `addr`, or
/// NOERROR without records when `None`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FastAnswer {
    /// Labels joined by dots, exactly as they must be asked.
    pub name: String,
    /// 1 (A) or 28 (AAAA).
    pub qtype: u16,
    /// The one address, or none of that family (DNS-10).
    pub addr: Option<IpAddr>,
}

impl NameTable {
    /// Every A/AAAA query of `querier` whose answer is fixed: each name it
    /// can see (container names and aliases, lower case, alone and as
    /// `name.network`) with at most one address of the family asked.
    /// Answers come from [`NameTable::lookup`] itself, so they are the
    /// resolver's; names with several addresses are left out (their order
    /// rotates, DNS-8), and so is every other spelling (those are looked up
    /// by the resolver, case rules included).
    pub fn fast_answers(&self, querier: usize) -> Vec<FastAnswer> {
        let Some(view) = self.views.get(querier).filter(|v| v.embedded) else {
            return Vec::new();
        };
        let mut names: Vec<String> = Vec::new();
        for &n in &view.networks {
            let rec = &self.networks[n];
            for name in rec.names.keys() {
                names.push(name.clone());
                names.push(format!("{name}.{}", rec.name));
            }
        }
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for name in names {
            for (family, qtype) in [(Family::V4, 1u16), (Family::V6, 28u16)] {
                match self.lookup(querier, &name, family).as_deref() {
                    Some([]) => out.push(FastAnswer {
                        name: name.clone(),
                        qtype,
                        addr: None,
                    }),
                    Some([one]) => out.push(FastAnswer {
                        name: name.clone(),
                        qtype,
                        addr: Some(*one),
                    }),
                    _ => {}
                }
            }
        }
        out
    }
}

/// Container `i`'s view: its networks with records and its upstreams.
fn view_of(plan: &Plan, i: usize) -> ContainerView {
    let c = &plan.containers[i];
    let mut networks = Vec::new();
    for e in &c.endpoints {
        if plan.networks[e.network].has_embedded_dns() && !networks.contains(&e.network) {
            networks.push(e.network);
        }
    }
    // DNS-17: an endpoint with external access is one on a non-internal
    // network that carries traffic (not `none`).
    let external = c.endpoints.iter().any(|e| {
        let n = &plan.networks[e.network];
        !n.internal && n.driver != Driver::None
    });
    let configured: &[IpAddr] = if c.dns.is_empty() {
        &plan.machines[c.machine].resolvers
    } else {
        &c.dns
    };
    let servers = select_upstreams(configured);
    let upstreams = if !external {
        Upstreams::NoExternalAccess
    } else if servers.is_empty() {
        Upstreams::NoneConfigured
    } else {
        Upstreams::Servers(servers)
    };
    ContainerView {
        embedded: !networks.is_empty(),
        networks,
        upstreams,
        ndots_set: c.dns_opt.iter().any(|o| o.starts_with("ndots:")),
    }
}

/// The table a world's embedded DNS servers answer from, replaced whole
/// when a step changes the records (connect, disconnect, stop, DNS-23,
/// DNS-26): a query sees the old table or the new one, never a mix.
#[derive(Debug)]
pub struct LiveTable(std::sync::RwLock<std::sync::Arc<NameTable>>);

impl LiveTable {
    /// A live table starting with `table`.
    pub fn new(table: NameTable) -> LiveTable {
        LiveTable(std::sync::RwLock::new(std::sync::Arc::new(table)))
    }

    /// The table in force.
    pub fn get(&self) -> std::sync::Arc<NameTable> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the table; queries after this see only the new one.
    pub fn set(&self, table: NameTable) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(table);
    }
}
