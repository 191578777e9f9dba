//! `[[container]]` tables: attachments, static and dynamic addresses, MACs,
//! published ports and services.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::addr;
use super::container_opts::{self, NetMode};
use super::ipam::{self, Reserve};
use super::model::{ContainerDef, NetRef};
use super::networks::{Nets, machine_index};
use super::plan::{Container, Driver, Endpoint, MacAddr, Mode, Plan, PortMapping};
use super::span::{FieldPath, Issue, VResult};
use super::validate::Names;

/// An endpoint before dynamic allocation.
#[derive(Debug)]
struct Draft {
    network: usize,
    ip: Option<Ipv4Addr>,
    ip6: Option<Ipv6Addr>,
    aliases: Vec<String>,
    mac: Option<MacAddr>,
}

/// Validates containers and gives every endpoint its addresses: static ones
/// of all containers first, then dynamic ones in file order (IPAM-6..8).
pub(crate) fn containers(
    defs: &[ContainerDef],
    plan: &Plan,
    nets: &mut Nets,
    names: &Names,
) -> VResult<Vec<Container>> {
    let machine_names: HashMap<&str, usize> = plan
        .machines
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();
    let mut out: Vec<Container> = Vec::with_capacity(defs.len());
    let mut drafts = Vec::with_capacity(defs.len());
    let mut specs = Vec::with_capacity(defs.len());
    for (i, d) in defs.iter().enumerate() {
        let c = FieldPath::root().k("container").i(i);
        let machine = machine_index(d.machine.as_deref(), &c, &machine_names, "container")?;
        let earlier: HashMap<&str, usize> = out
            .iter()
            .enumerate()
            .map(|(k, o)| (o.name.as_str(), k))
            .collect();
        let mode = container_opts::network_mode(d, &c, &earlier, &out)?;
        let synthetic;
        let list: &[NetRef] = match &mode {
            NetMode::Network(n) => {
                synthetic = [NetRef::Name(n.clone())];
                &synthetic
            }
            _ => &d.networks,
        };
        let netns_of = match mode {
            NetMode::Container(o) => {
                if out[o].machine != machine {
                    return Err(Issue::new(
                        c.k("network_mode"),
                        format!(
                            "container {} is on machine {}: a shared namespace is on one machine",
                            out[o].name, plan.machines[out[o].machine].name
                        ),
                    ));
                }
                Some(o)
            }
            _ => None,
        };
        if list.is_empty() && netns_of.is_none() {
            return Err(Issue::new(
                c.k("networks"),
                "a container needs at least one network (or a network_mode)",
            ));
        }
        let mut eps: Vec<Draft> = Vec::with_capacity(list.len());
        for (j, r) in list.iter().enumerate() {
            let ep = match mode {
                NetMode::Network(_) => c.k("network_mode"),
                _ => c.k("networks").i(j),
            };
            let draft = draft_endpoint(r, &ep, &eps, plan, nets, names, machine, &d.name)?;
            eps.push(draft);
        }
        let mut publish = Vec::with_capacity(d.publish.len());
        for (j, s) in d.publish.iter().enumerate() {
            publish.push(addr::publish_spec(s).map_err(|m| Issue::new(c.k("publish").i(j), m))?);
        }
        specs.push(publish);
        let on_default = eps.iter().any(|e| nets.networks[e.network].default);
        let links = container_opts::links(d, &c, &earlier, on_default)?;
        let mut serve = Vec::with_capacity(d.serve.len());
        for (j, s) in d.serve.iter().enumerate() {
            let sv = addr::service(s).map_err(|m| Issue::new(c.k("serve").i(j), m))?;
            if serve.contains(&sv) {
                return Err(Issue::new(
                    c.k("serve").i(j),
                    format!("service {s} is listed twice"),
                ));
            }
            serve.push(sv);
        }
        let mut dns = Vec::with_capacity(d.dns.len());
        for (j, s) in d.dns.iter().enumerate() {
            dns.push(addr::ip(s).map_err(|m| Issue::new(c.k("dns").i(j), m))?);
        }
        let mut ctr = Container {
            name: d.name.clone(),
            machine,
            endpoints: Vec::new(),
            publish: Vec::new(),
            serve,
            dns,
            running: true,
            hostname: None,
            dns_search: Vec::new(),
            dns_opt: Vec::new(),
            extra_hosts: Vec::new(),
            links,
            netns_of,
        };
        container_opts::dns_files(d, &c, &mut ctr)?;
        out.push(ctr);
        drafts.push(eps);
    }
    assign_dynamic(drafts, &mut out, nets)?;
    let origin = container_opts::resolve_publish(&specs, &mut out)?;
    check_published(&out, nets, &origin)?;
    Ok(out)
}

/// Dynamic addresses and MACs, in file order (IPAM-6..8, BR-5).
fn assign_dynamic(drafts: Vec<Vec<Draft>>, out: &mut [Container], nets: &mut Nets) -> VResult<()> {
    let mut macs: HashMap<(usize, MacAddr), usize> = HashMap::new();
    let mut passthru: HashMap<usize, usize> = HashMap::new();
    for (i, eps) in drafts.into_iter().enumerate() {
        let c = FieldPath::root().k("container").i(i);
        for (j, mut e) in eps.into_iter().enumerate() {
            let n = e.network;
            let net = &nets.networks[n];
            let exhausted = |v: &str| {
                Issue::new(
                    c.k("networks"),
                    format!(
                        "no available {v} addresses on this network's address pools: {}",
                        net.name
                    ),
                )
            };
            if e.ip.is_none() && !net.subnets.is_empty() {
                e.ip = Some(
                    nets.v4[n]
                        .alloc()
                        .map(ipam::to_v4)
                        .ok_or_else(|| exhausted("IPv4"))?,
                );
            }
            // V6-6: on the default bridge Docker derives the IPv6 address
            // from the MAC (below); elsewhere IPAM's next free one.
            let from_mac = net.default && net.driver == Driver::Bridge;
            if e.ip6.is_none()
                && !from_mac
                && let Some(pool) = nets.v6[n].as_mut()
            {
                e.ip6 = Some(
                    pool.alloc()
                        .map(ipam::to_v6)
                        .ok_or_else(|| exhausted("IPv6"))?,
                );
            }
            let mac = match (e.mac, e.ip) {
                (Some(m), _) => m,
                (None, Some(ip)) => MacAddr::docker_from_ipv4(ip),
                // Locally administered, unicast, and unlike any 02:42: MAC.
                (None, None) => {
                    MacAddr([0x0a, 0x42, (i >> 8) as u8, i as u8, (n >> 8) as u8, n as u8])
                }
            };
            if e.ip6.is_none()
                && from_mac
                && let (Some(net6), Some(pool)) = (net.subnet6, nets.v6[n].as_mut())
            {
                let a = ipam::from_mac6(net6, mac.0);
                // Taken (a static ip6, the gateway): the MAC clash below or
                // the address check reports it.
                let _ = pool.reserve(ipam::n6(a));
                e.ip6 = Some(a);
            }
            if let Some(prev) = macs.insert((n, mac), i) {
                let path = if e.mac.is_some() {
                    c.k("networks").i(j).k("mac")
                } else {
                    c.k("networks").i(j)
                };
                return Err(Issue::new(
                    path,
                    format!(
                        "MAC address {mac} is already used on network {} by container {}",
                        net.name, out[prev].name
                    ),
                ));
            }
            if net.mode == Some(Mode::Passthru)
                && let Some(prev) = passthru.insert(n, i)
            {
                return Err(Issue::new(
                    c.k("networks").i(j),
                    format!(
                        "macvlan passthru network {} takes only one container; {} already uses it",
                        net.name, out[prev].name
                    ),
                ));
            }
            out[i].endpoints.push(Endpoint {
                network: n,
                ip: e.ip,
                ip6: e.ip6,
                aliases: e.aliases,
                mac,
            });
        }
    }
    Ok(())
}

/// One entry of a container's networks: its network, static addresses,
/// aliases and MAC, checked against Docker's rules and reserved.
#[allow(clippy::too_many_arguments)]
fn draft_endpoint(
    r: &NetRef,
    ep: &FieldPath,
    eps: &[Draft],
    plan: &Plan,
    nets: &mut Nets,
    names: &Names,
    machine: usize,
    who: &str,
) -> VResult<Draft> {
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
    if eps.iter().any(|e| e.network == n) {
        return Err(Issue::new(
            name_path,
            format!("network {} is listed twice", net.name),
        ));
    }
    if let Some(m) = net.machine
        && m != machine
    {
        return Err(Issue::new(
            name_path,
            format!(
                "network {} lives on machine {}, but container {} is on machine {}",
                net.name, plan.machines[m].name, who, plan.machines[machine].name
            ),
        ));
    }
    let shared = matches!(net.driver, Driver::None | Driver::Host);
    if !eps.is_empty()
        && (shared
            || matches!(
                nets.networks[eps[0].network].driver,
                Driver::None | Driver::Host
            ))
    {
        let first = nets.networks[eps[0].network].driver;
        let msg = match (first, net.driver) {
            (Driver::None, _) | (_, Driver::None) => {
                "container cannot be connected to multiple networks with one of the networks in private (none) mode"
            }
            (Driver::Host, _) => {
                "container sharing network namespace with another container or host cannot be connected to any other network"
            }
            _ => {
                "cannot connect container to host network - container must be created in host network mode"
            }
        };
        return Err(Issue::new(name_path, msg));
    }
    let mut draft = Draft {
        network: n,
        ip: None,
        ip6: None,
        aliases: Vec::new(),
        mac: None,
    };
    if let NetRef::Table(t) = r {
        let user_defined = !net.default && !shared;
        if let Some(s) = &t.ip {
            if !user_defined {
                return Err(Issue::new(
                    ep.k("ip"),
                    "user-specified IP address is supported on user-defined networks only",
                ));
            }
            draft.ip = Some(addr::ipv4(s).map_err(|m| Issue::new(ep.k("ip"), m))?);
        }
        if let Some(s) = &t.ip6 {
            if !user_defined {
                return Err(Issue::new(
                    ep.k("ip6"),
                    "user-specified IP address is supported on user-defined networks only",
                ));
            }
            let a = addr::ipv6(s).map_err(|m| Issue::new(ep.k("ip6"), m))?;
            if !net.ipv6 {
                return Err(Issue::new(
                    ep.k("ip6"),
                    format!("network {} has no IPv6 (set ipv6 = true on it)", net.name),
                ));
            }
            draft.ip6 = Some(a);
        }
        if !t.aliases.is_empty() && !user_defined {
            return Err(Issue::new(
                ep.k("aliases"),
                "network-scoped aliases are only supported for user-defined networks",
            ));
        }
        for (k, a) in t.aliases.iter().enumerate() {
            addr::check_name("alias", a).map_err(|m| Issue::new(ep.k("aliases").i(k), m))?;
        }
        draft.aliases = t.aliases.clone();
        if let Some(s) = &t.mac {
            if shared {
                return Err(Issue::new(
                    ep.k("mac"),
                    format!("a MAC address cannot be set on a {} network", net.driver),
                ));
            }
            draft.mac = Some(addr::mac(s).map_err(|m| Issue::new(ep.k("mac"), m))?);
        }
    }
    reserve_static(nets, n, &draft, ep, who)?;
    Ok(draft)
}

fn reserve_static(nets: &mut Nets, n: usize, d: &Draft, ep: &FieldPath, who: &str) -> VResult<()> {
    let mut wanted: Vec<(&str, IpAddr)> = Vec::new();
    if let Some(a) = d.ip {
        wanted.push(("ip", IpAddr::V4(a)));
    }
    if let Some(a) = d.ip6 {
        wanted.push(("ip6", IpAddr::V6(a)));
    }
    for (key, a) in wanted {
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
            }
            Err(Reserve::Outside) => {
                return Err(Issue::new(
                    ep.k(key),
                    format!("no configured subnet contains IP address {a}"),
                ));
            }
            Err(Reserve::InUse) => {
                let holder = nets
                    .owners
                    .get(&(n, k))
                    .cloned()
                    .unwrap_or_else(|| "the subnet's network or broadcast address".to_string());
                return Err(Issue::new(
                    ep.k(key),
                    format!("Address already in use: {a} is {holder}"),
                ));
            }
        }
    }
    Ok(())
}

/// PUB-5: one (host IP, host port, protocol) per machine.
fn check_published(containers: &[Container], nets: &Nets, origin: &[Vec<usize>]) -> VResult<()> {
    let mut bound: Vec<(usize, PortMapping, usize)> = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        // Only containers reachable through a non-internal bridge publish
        // anything (BR-17, NH-4); Docker ignores the rest.
        let effective = c.endpoints.iter().any(|e| {
            let n = &nets.networks[e.network];
            n.driver == Driver::Bridge && !n.internal
        });
        if !effective {
            continue;
        }
        for (j, pm) in c.publish.iter().enumerate() {
            let clash = bound.iter().find(|(m, other, _)| {
                *m == c.machine
                    && other.proto == pm.proto
                    && other.host_port == pm.host_port
                    && ips_clash(other.host_ip, pm.host_ip)
            });
            if let Some((_, _, prev)) = clash {
                let ip = pm.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                return Err(Issue::new(
                    FieldPath::root()
                        .k("container")
                        .i(i)
                        .k("publish")
                        .i(origin[i][j]),
                    format!(
                        "Bind for {} failed: port is already allocated (by container {})",
                        SocketAddr::new(ip, pm.host_port),
                        containers[*prev].name
                    ),
                ));
            }
            bound.push((c.machine, *pm, i));
        }
    }
    Ok(())
}

fn ips_clash(a: Option<IpAddr>, b: Option<IpAddr>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => true,
        (Some(x), Some(y)) => {
            x == y || (x.is_ipv4() == y.is_ipv4() && (x.is_unspecified() || y.is_unspecified()))
        }
    }
}
