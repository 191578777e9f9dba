//! `[[service]]` tables (format 1.1, "Services (Swarm)"): swarm services,
//! their tasks, VIPs, published ports and the `ingress` overlay.
//!
//! A service's tasks `NAME.N` are ordinary [`Container`]s of the plan,
//! appended after the `[[container]]` tables (so a file container keeps
//! the index of its table), one for every task number any `scale` step
//! ever runs; tasks above the current replica count are not running and
//! have no endpoints. Addresses (docker-semantics SVC-2): on each network
//! every service in file order takes its VIP (`vip` mode) and then its
//! tasks' addresses, before the `[[container]]` tables take theirs (static
//! container addresses are skipped, so they still hold). On `ingress`
//! (`10.0.0.0/24` unless a network named `ingress` is declared) each
//! machine's ingress sandbox takes an address first, in machine order.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;

use super::addr;
use super::ipam;
use super::model::{NetRef, NetworkDef, OneOrMany, ScenarioDef, ServiceDef};
use super::networks::Nets;
use super::plan::{
    Container, Driver, Endpoint, EndpointMode, Ingress, MacAddr, Node, Plan, Proto, PublishMode,
    Service, ServiceNet, ServicePort, SwarmService,
};
use super::span::{FieldPath, Issue, VResult};
use super::validate::Names;

/// Name of the swarm's routing-mesh overlay.
pub const INGRESS: &str = "ingress";

/// Subnet of the implicit `ingress` overlay (Docker's default).
pub const INGRESS_SUBNET: &str = "10.0.0.0/24";

/// Most tasks one service may have.
const MAX_REPLICAS: i64 = 1000;

/// Adds the `ingress` overlay when the file has services and declares no
/// network of that name; a declared one must be an overlay.
pub(crate) fn add_ingress(def: &mut ScenarioDef) -> VResult<()> {
    if def.service.is_empty() {
        return Ok(());
    }
    if let Some(i) = def.network.iter().position(|n| n.name == INGRESS) {
        let drv = def.network[i].driver.as_deref().unwrap_or("bridge");
        if drv != "overlay" {
            return Err(Issue::new(
                FieldPath::root().k("network").i(i).k("name"),
                format!(
                    "network {INGRESS} is the swarm's routing-mesh network: with [[service]] tables it must have driver = \"overlay\" (it has {drv})"
                ),
            ));
        }
        return Ok(());
    }
    let ing: Ipv4Net = INGRESS_SUBNET.parse().expect("constant");
    for (i, n) in def.network.iter().enumerate() {
        let Some(sub) = &n.subnet else { continue };
        for (j, s) in sub.items().iter().enumerate() {
            if let Ok(net) = s.parse::<Ipv4Net>()
                && ipam::overlaps4(&net, &ing)
            {
                let p = FieldPath::root().k("network").i(i).k("subnet");
                let p = if matches!(sub, OneOrMany::Many(_)) {
                    p.i(j)
                } else {
                    p
                };
                return Err(Issue::new(
                    p,
                    format!(
                        "subnet {s} overlaps the swarm's ingress network {INGRESS_SUBNET}: choose another subnet, or declare a [[network]] named {INGRESS} with its own subnet"
                    ),
                ));
            }
        }
    }
    def.network.push(NetworkDef {
        name: INGRESS.to_string(),
        driver: Some("overlay".to_string()),
        subnet: Some(OneOrMany::One(INGRESS_SUBNET.to_string())),
        ..NetworkDef::default()
    });
    Ok(())
}

/// Checks service names: valid, unique, and unlike any node name (a
/// service name is also a DNS name and a check target).
pub(crate) fn names(def: &ScenarioDef, names: &mut Names) -> VResult<()> {
    for (i, s) in def.service.iter().enumerate() {
        let p = FieldPath::root().k("service").i(i).k("name");
        addr::check_name("service", &s.name).map_err(|m| Issue::new(p.clone(), m))?;
        if s.name.contains('.') {
            return Err(Issue::new(
                p,
                format!(
                    "invalid service name {:?}: a service name has no '.' (its tasks are NAME.N)",
                    s.name
                ),
            ));
        }
        if let Some(prev) = names.services.insert(s.name.clone(), i) {
            return Err(Issue::new(
                p,
                format!(
                    "duplicate service name {:?}: already used by service[{prev}]",
                    s.name
                ),
            ));
        }
        if names.nodes.contains_key(&s.name) {
            return Err(Issue::new(
                p,
                format!(
                    "service name {:?} is already the name of a container, external or machine",
                    s.name
                ),
            ));
        }
    }
    Ok(())
}

/// A service as validated, before addresses.
struct Draft {
    name: String,
    mode: EndpointMode,
    networks: Vec<(usize, Vec<String>)>,
    machines: Vec<usize>,
    serve: Vec<Service>,
    publish: Vec<ServicePort>,
    replicas: usize,
    /// Most replicas any step asks for (at least `replicas`).
    most: usize,
}

/// What services add to the plan.
pub(crate) struct Built {
    /// The services.
    pub services: Vec<SwarmService>,
    /// The ingress overlay.
    pub ingress: Option<Ingress>,
    /// Task containers, to append after the `[[container]]` ones.
    pub tasks: Vec<Container>,
}

/// Validates the services and gives VIPs and task addresses, before the
/// `[[container]]` tables take theirs. Registers task names in `names`.
pub(crate) fn build(
    def: &ScenarioDef,
    plan: &Plan,
    nets: &mut Nets,
    names: &mut Names,
) -> VResult<Built> {
    if def.service.is_empty() {
        return Ok(Built {
            services: Vec::new(),
            ingress: None,
            tasks: Vec::new(),
        });
    }
    let drafts = def
        .service
        .iter()
        .enumerate()
        .map(|(i, d)| draft(i, d, def, plan, nets, names))
        .collect::<VResult<Vec<Draft>>>()?;
    // Static container addresses are theirs: skip them while allocating.
    let held = hold_static(def, nets, names);
    let ing = names.networks[INGRESS];
    let mut sandboxes = Vec::with_capacity(plan.machines.len());
    for m in &plan.machines {
        let a = alloc4(
            nets,
            ing,
            &format!("the ingress sandbox of machine {}", m.name),
        )
        .ok_or_else(|| exhausted(FieldPath::root().k("service"), INGRESS))?;
        sandboxes.push(a);
    }
    let mut services = Vec::with_capacity(drafts.len());
    let mut tasks = Vec::new();
    let base = def.container.len();
    for (i, d) in drafts.into_iter().enumerate() {
        let p = FieldPath::root().k("service").i(i);
        let mut attach: Vec<(usize, Vec<String>)> = d.networks.clone();
        let on_ingress = d.publish.iter().any(|x| x.mode == PublishMode::Ingress);
        if on_ingress {
            attach.push((ing, Vec::new()));
        }
        let mut vips = Vec::with_capacity(attach.len());
        let mut eps: Vec<Vec<Endpoint>> = vec![Vec::new(); d.replicas];
        for (n, _) in &attach {
            let vip = match d.mode {
                EndpointMode::Vip => Some(
                    alloc4(nets, *n, &format!("the VIP of service {}", d.name))
                        .ok_or_else(|| exhausted(p.k("networks"), &nets.networks[*n].name))?,
                ),
                EndpointMode::Dnsrr => None,
            };
            vips.push(vip);
            for (k, e) in eps.iter_mut().enumerate() {
                let name = nets.networks[*n].name.clone();
                let who = format!("task {}.{}", d.name, k + 1);
                e.push(task_endpoint(nets, (*n, &name), &who, &p)?);
            }
        }
        let mut svc = SwarmService {
            name: d.name.clone(),
            mode: d.mode,
            networks: d
                .networks
                .iter()
                .zip(&vips)
                .map(|((n, aliases), vip)| ServiceNet {
                    network: *n,
                    vip: *vip,
                    aliases: aliases.clone(),
                })
                .collect(),
            machines: d.machines.clone(),
            serve: d.serve.clone(),
            publish: d.publish.clone(),
            ingress_vip: if on_ingress {
                *vips.last().unwrap_or(&None)
            } else {
                None
            },
            tasks: Vec::with_capacity(d.most),
            replicas: d.replicas,
        };
        for n in 1..=d.most {
            let name = format!("{}.{n}", d.name);
            if names.nodes.contains_key(&name) {
                return Err(Issue::new(
                    p.k("name"),
                    format!(
                        "task {name} of service {} has the name of a container, external or machine",
                        d.name
                    ),
                ));
            }
            let idx = base + tasks.len();
            names.nodes.insert(name.clone(), Node::Container(idx));
            svc.tasks.push(idx);
            let running = n <= d.replicas;
            tasks.push(Container {
                name,
                machine: svc.machine_of_task(n),
                endpoints: if running {
                    std::mem::take(&mut eps[n - 1])
                } else {
                    Vec::new()
                },
                publish: Vec::new(),
                serve: d.serve.clone(),
                dns: Vec::new(),
                running,
                hostname: None,
                dns_search: Vec::new(),
                dns_opt: Vec::new(),
                extra_hosts: Vec::new(),
                links: Vec::new(),
                netns_of: None,
            });
        }
        services.push(svc);
    }
    for (n, a) in held {
        nets.v4[n].release(a);
    }
    Ok(Built {
        services,
        ingress: Some(Ingress {
            network: ing,
            sandboxes,
        }),
        tasks,
    })
}

fn exhausted(p: FieldPath, net: &str) -> Issue {
    Issue::new(
        p,
        format!("no available IPv4 addresses on this network's address pools: {net}"),
    )
}

/// Takes the lowest free IPv4 address of network `n` for `who`.
fn alloc4(nets: &mut Nets, n: usize, who: &str) -> Option<Ipv4Addr> {
    let a = nets.v4[n].alloc()?;
    nets.owners.insert((n, a), who.to_string());
    Some(ipam::to_v4(a))
}

/// A task's endpoint on network `n`: the next free addresses.
pub(crate) fn task_endpoint(
    nets: &mut Nets,
    (n, net_name): (usize, &str),
    who: &str,
    p: &FieldPath,
) -> VResult<Endpoint> {
    let ip = alloc4(nets, n, who).ok_or_else(|| exhausted(p.k("networks"), net_name))?;
    let ip6 = match nets.v6[n].as_mut() {
        Some(pool) => {
            let a = pool
                .alloc()
                .ok_or_else(|| exhausted(p.k("networks"), net_name))?;
            nets.owners.insert((n, a), who.to_string());
            Some(ipam::to_v6(a))
        }
        None => None,
    };
    Ok(Endpoint {
        network: n,
        ip: Some(ip),
        ip6,
        aliases: Vec::new(),
        mac: MacAddr::docker_from_ipv4(ip),
    })
}

/// Reserves the static IPv4 addresses `[[container]]` tables give on the
/// networks services use; returns them, to be released afterwards (the
/// container tables then reserve them as usual).
fn hold_static(def: &ScenarioDef, nets: &mut Nets, names: &Names) -> Vec<(usize, u128)> {
    let mut held = Vec::new();
    for c in &def.container {
        for r in &c.networks {
            let NetRef::Table(t) = r else { continue };
            let (Some(s), Some(&n)) = (&t.ip, names.networks.get(&t.name)) else {
                continue;
            };
            if let Ok(a) = s.parse::<Ipv4Addr>()
                && nets.v4[n].reserve(ipam::n4(a)).is_ok()
            {
                held.push((n, ipam::n4(a)));
            }
        }
    }
    held
}

/// Validates one `[[service]]` table.
fn draft(
    i: usize,
    d: &ServiceDef,
    def: &ScenarioDef,
    plan: &Plan,
    nets: &Nets,
    names: &Names,
) -> VResult<Draft> {
    let p = FieldPath::root().k("service").i(i);
    let replicas = match d.replicas {
        None => 1,
        Some(r) if (0..=MAX_REPLICAS).contains(&r) => r as usize,
        Some(r) => {
            return Err(Issue::new(
                p.k("replicas"),
                format!("replicas {r} is out of range: must be 0-{MAX_REPLICAS}"),
            ));
        }
    };
    let machines = match &d.machines {
        None => (0..plan.machines.len()).collect(),
        Some(list) => {
            if list.is_empty() {
                return Err(Issue::new(
                    p.k("machines"),
                    "machines is empty: list at least one machine, or leave it out (every machine)",
                ));
            }
            let mut v = Vec::with_capacity(list.len());
            for (j, m) in list.iter().enumerate() {
                let Some(k) = plan.machines.iter().position(|x| &x.name == m) else {
                    return Err(Issue::new(
                        p.k("machines").i(j),
                        format!("no machine named {m:?}"),
                    ));
                };
                if v.contains(&k) {
                    return Err(Issue::new(
                        p.k("machines").i(j),
                        format!("machine {m} is listed twice"),
                    ));
                }
                v.push(k);
            }
            v
        }
    };
    let mode = match d.endpoint_mode.as_deref() {
        None | Some("vip") => EndpointMode::Vip,
        Some("dnsrr") => EndpointMode::Dnsrr,
        Some(m) => {
            return Err(Issue::new(
                p.k("endpoint_mode"),
                format!("unknown endpoint_mode {m:?}: expected vip or dnsrr"),
            ));
        }
    };
    let networks = service_networks(d, &p, nets, names)?;
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
    let mut publish: Vec<ServicePort> = Vec::with_capacity(d.publish.len());
    for (j, s) in d.publish.iter().enumerate() {
        let pp = p.k("publish").i(j);
        let port = published(s).map_err(|m| Issue::new(pp.clone(), m))?;
        if port.mode == PublishMode::Ingress && mode == EndpointMode::Dnsrr {
            return Err(Issue::new(
                pp,
                "port published with ingress mode can't be used with dnsrr mode: add mode=host",
            ));
        }
        if publish
            .iter()
            .any(|q| q.published == port.published && q.proto == port.proto)
        {
            return Err(Issue::new(
                pp,
                format!(
                    "published port {}/{} is listed twice",
                    port.published, port.proto
                ),
            ));
        }
        publish.push(port);
    }
    let most = def
        .step
        .iter()
        .filter_map(|s| s.scale.as_ref())
        .filter(|s| s.service == d.name)
        .map(|s| s.replicas.clamp(0, MAX_REPLICAS) as usize)
        .fold(replicas, usize::max);
    Ok(Draft {
        name: d.name.clone(),
        mode,
        networks,
        machines,
        serve,
        publish,
        replicas,
        most,
    })
}

/// A service's `networks`: overlays only, not `ingress`, aliases only.
fn service_networks(
    d: &ServiceDef,
    p: &FieldPath,
    nets: &Nets,
    names: &Names,
) -> VResult<Vec<(usize, Vec<String>)>> {
    let mut out: Vec<(usize, Vec<String>)> = Vec::with_capacity(d.networks.len());
    for (j, r) in d.networks.iter().enumerate() {
        let ep = p.k("networks").i(j);
        let name_path = match r {
            NetRef::Name(_) => ep.clone(),
            NetRef::Table(_) => ep.k("name"),
        };
        let Some(&n) = names.networks.get(r.name()) else {
            return Err(Issue::new(
                name_path,
                format!("network {} not found", r.name()),
            ));
        };
        let net = &nets.networks[n];
        if net.driver != Driver::Overlay {
            return Err(Issue::new(
                name_path,
                format!(
                    "network {} has driver {}: a service attaches to overlay networks only",
                    net.name, net.driver
                ),
            ));
        }
        if net.name == INGRESS {
            return Err(Issue::new(
                name_path,
                "service cannot be explicitly attached to the ingress network: publish a port instead",
            ));
        }
        if out.iter().any(|(m, _)| *m == n) {
            return Err(Issue::new(
                name_path,
                format!("network {} is listed twice", net.name),
            ));
        }
        let mut aliases = Vec::new();
        if let NetRef::Table(t) = r {
            for (key, set) in [
                ("ip", t.ip.is_some()),
                ("ip6", t.ip6.is_some()),
                ("mac", t.mac.is_some()),
            ] {
                if set {
                    return Err(Issue::key(
                        ep.k(key),
                        format!(
                            "{key} is not valid for a service network (a service's table takes name and aliases)"
                        ),
                    ));
                }
            }
            for (k, a) in t.aliases.iter().enumerate() {
                addr::check_name("alias", a).map_err(|m| Issue::new(ep.k("aliases").i(k), m))?;
            }
            aliases = t.aliases.clone();
        }
        out.push((n, aliases));
    }
    Ok(out)
}

/// A service's published port: `H:C[/proto]` (ingress mode) or the long
/// form `published=H,target=C[,protocol=P][,mode=ingress|host]`.
pub(crate) fn published(s: &str) -> Result<ServicePort, String> {
    if !s.contains('=') {
        let m = addr::publish(s)?;
        if m.host_ip.is_some() {
            return Err(format!(
                "invalid published port {s:?}: a service port takes no host address (every address of the machines)"
            ));
        }
        return Ok(ServicePort {
            published: m.host_port,
            target: m.container_port,
            proto: m.proto,
            mode: PublishMode::Ingress,
        });
    }
    let (mut published, mut target, mut proto, mut mode) =
        (None, None, Proto::Tcp, PublishMode::Ingress);
    for part in s.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            return Err(format!(
                "invalid published port {s:?}: {part:?} is not KEY=VALUE (published=H,target=C,protocol=tcp|udp,mode=ingress|host)"
            ));
        };
        let bad = |e: String| format!("invalid published port {s:?}: {k}: {e}");
        match k.trim() {
            "published" => published = Some(addr::port(v.trim()).map_err(bad)?),
            "target" => target = Some(addr::port(v.trim()).map_err(bad)?),
            "protocol" => proto = addr::proto(v.trim()).map_err(bad)?,
            "mode" => {
                mode = match v.trim() {
                    "ingress" => PublishMode::Ingress,
                    "host" => PublishMode::Host,
                    m => return Err(bad(format!("unknown mode {m:?}: expected ingress or host"))),
                }
            }
            other => {
                return Err(format!(
                    "invalid published port {s:?}: unknown key {other:?} (published, target, protocol, mode)"
                ));
            }
        }
    }
    match (published, target) {
        (Some(published), Some(target)) => Ok(ServicePort {
            published,
            target,
            proto,
            mode,
        }),
        (_, None) => Err(format!("invalid published port {s:?}: target is required")),
        (None, _) => Err(format!(
            "invalid published port {s:?}: published is required (vswitch assigns no port)"
        )),
    }
}

/// The first port that cannot be bound in `plan` as it stands: an ingress
/// port listens on every machine (OV-10), so it clashes with any other use
/// of that port anywhere; a host-mode port binds on each machine running a
/// task, so two tasks on one machine clash (SVC-5). Returns the service,
/// the index of its port and the message.
pub(crate) fn port_clash(plan: &Plan) -> Option<(usize, usize, String)> {
    // (machine or None for every machine, port, proto) -> who
    let mut bound: Vec<(Option<usize>, u16, Proto, String)> = Vec::new();
    for c in &plan.containers {
        for m in &c.publish {
            bound.push((
                Some(c.machine),
                m.host_port,
                m.proto,
                format!("container {}", c.name),
            ));
        }
    }
    for (s, svc) in plan.services.iter().enumerate() {
        for (j, port) in svc.publish.iter().enumerate() {
            let wants: Vec<Option<usize>> = match port.mode {
                PublishMode::Ingress => vec![None],
                PublishMode::Host => svc
                    .running_tasks()
                    .iter()
                    .map(|&c| Some(plan.containers[c].machine))
                    .collect(),
            };
            let mut mine: HashSet<Option<usize>> = HashSet::new();
            for w in wants {
                let who = match w {
                    None => format!("service {} (ingress)", svc.name),
                    Some(m) => format!("service {} on machine {}", svc.name, plan.machines[m].name),
                };
                if !mine.insert(w) {
                    return Some((
                        s,
                        j,
                        format!(
                            "host-mode port {}/{} is already bound on machine {} by another task of service {}: one task per machine (add machines or lower replicas)",
                            port.published,
                            port.proto,
                            w.map_or("?", |m| plan.machines[m].name.as_str()),
                            svc.name
                        ),
                    ));
                }
                let clash = bound.iter().find(|(m, p, pr, _)| {
                    *p == port.published
                        && *pr == port.proto
                        && (m.is_none() || w.is_none() || *m == w)
                });
                if let Some((_, _, _, prev)) = clash {
                    return Some((
                        s,
                        j,
                        format!(
                            "port {}/{} is already allocated (by {prev})",
                            port.published, port.proto
                        ),
                    ));
                }
                bound.push((w, port.published, port.proto, who));
            }
        }
    }
    None
}

/// The address a check reaches service `s` at: its VIP on the network
/// `net` names, or else on the first of its networks `from` shares.
pub(crate) fn vip_target(
    plan: &Plan,
    names: &Names,
    s: usize,
    net: Option<&str>,
    from: &[Node],
) -> Result<IpAddr, String> {
    let svc = &plan.services[s];
    if svc.mode == EndpointMode::Dnsrr {
        return Err(format!(
            "service {} is in dnsrr mode and has no address of its own: name one of its tasks ({}.1)",
            svc.name, svc.name
        ));
    }
    let chosen = match net {
        Some(netname) => {
            let Some(&ni) = names.networks.get(netname) else {
                return Err(format!("network {netname} not found"));
            };
            svc.networks
                .iter()
                .find(|n| n.network == ni)
                .ok_or_else(|| format!("service {} is not on network {netname}", svc.name))?
        }
        None => {
            let shared = |n: &ServiceNet| {
                from.iter().any(|f| match f {
                    Node::Container(c) => plan.containers[*c]
                        .endpoints
                        .iter()
                        .any(|e| e.network == n.network),
                    _ => false,
                })
            };
            svc.networks
                .iter()
                .find(|n| shared(n))
                .or_else(|| svc.networks.first())
                .ok_or_else(|| format!("service {} is on no network: it has no VIP", svc.name))?
        }
    };
    chosen
        .vip
        .map(IpAddr::V4)
        .ok_or_else(|| format!("service {} has no VIP", svc.name))
}

/// A `scale` step: the tasks that go and those that come, with addresses.
pub(crate) fn scale(
    service: &str,
    replicas: i64,
    p: &FieldPath,
    state: &Plan,
    nets: &mut Nets,
    names: &Names,
) -> VResult<super::plan::StepAction> {
    let Some(&s) = names.services.get(service) else {
        return Err(Issue::new(
            p.k("service"),
            format!("no service named {service:?}"),
        ));
    };
    if !(0..=MAX_REPLICAS).contains(&replicas) {
        return Err(Issue::new(
            p.k("replicas"),
            format!("replicas {replicas} is out of range: must be 0-{MAX_REPLICAS}"),
        ));
    }
    let replicas = replicas as usize;
    let svc = &state.services[s];
    let mut removed = Vec::new();
    for n in (replicas + 1..=svc.replicas).rev() {
        let c = svc.tasks[n - 1];
        for e in &state.containers[c].endpoints {
            if let Some(a) = e.ip {
                nets.v4[e.network].release(ipam::n4(a));
                nets.owners.remove(&(e.network, ipam::n4(a)));
            }
            if let (Some(a), Some(pool)) = (e.ip6, nets.v6[e.network].as_mut()) {
                pool.release(ipam::n6(a));
                nets.owners.remove(&(e.network, ipam::n6(a)));
            }
        }
        removed.push(c);
    }
    let mut attach: Vec<usize> = svc.networks.iter().map(|n| n.network).collect();
    if svc.uses_ingress()
        && let Some(ing) = &state.ingress
    {
        attach.push(ing.network);
    }
    let mut added = Vec::new();
    for n in svc.replicas + 1..=replicas {
        let c = svc.tasks[n - 1];
        let who = format!("task {}.{n}", svc.name);
        let eps = attach
            .iter()
            .map(|&net| task_endpoint(nets, (net, &state.networks[net].name), &who, p))
            .collect::<VResult<Vec<Endpoint>>>()?;
        added.push((c, eps));
    }
    let action = super::plan::StepAction::Scale {
        service: s,
        replicas,
        added,
        removed,
    };
    let mut next = state.clone();
    next.apply(&action);
    if let Some((_, _, m)) = port_clash(&next) {
        return Err(Issue::new(p.k("replicas"), m));
    }
    Ok(action)
}
