//! `[[network]]` tables: drivers and their options, subnets, gateways,
//! auxiliary addresses, IPv6, MTU, parents and VNIs.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::{Ipv4Net, Ipv6Net};

use super::addr;
use super::ipam::{self, AddrPool, NetAlloc, PoolPicker, Reserve};
use super::model::{NetworkDef, OneOrMany};
use super::plan::{Driver, IpvlanFlag, Mode, Network, Plan, Subnet4};
use super::span::{FieldPath, Issue, VResult};

pub(crate) use super::containers::containers;

/// Networks with their allocators, handed on to container allocation.
#[derive(Debug, Default)]
pub(crate) struct Nets {
    /// The resolved networks.
    pub networks: Vec<Network>,
    /// IPv4 allocator per network.
    pub v4: Vec<NetAlloc>,
    /// IPv6 allocator per network (IPv6 networks only).
    pub v6: Vec<Option<AddrPool>>,
    /// Who holds a reserved address: (network, address) → description.
    pub owners: HashMap<(usize, u128), String>,
}

fn driver(s: &str) -> Result<Driver, String> {
    Ok(match s {
        "bridge" => Driver::Bridge,
        "macvlan" => Driver::Macvlan,
        "ipvlan" => Driver::Ipvlan,
        "overlay" => Driver::Overlay,
        "none" | "null" => Driver::None,
        "host" => Driver::Host,
        _ => {
            return Err(format!(
                "unknown driver {s:?}: expected bridge, macvlan, ipvlan, overlay, none or host"
            ));
        }
    })
}

/// The first key the driver does not take, with the reason.
fn foreign_key(d: &NetworkDef, drv: Driver) -> Option<(&'static str, String)> {
    let present = [
        ("machine", d.machine.is_some()),
        ("default", d.default == Some(true)),
        ("subnet", d.subnet.is_some()),
        ("gateway", d.gateway.is_some()),
        ("ip_range", d.ip_range.is_some()),
        ("aux_addresses", d.aux_addresses.is_some()),
        ("ipv6", d.ipv6.is_some()),
        ("subnet6", d.subnet6.is_some()),
        ("gateway6", d.gateway6.is_some()),
        ("internal", d.internal.is_some()),
        ("icc", d.icc.is_some()),
        ("masquerade", d.masquerade.is_some()),
        ("mtu", d.mtu.is_some()),
        ("parent", d.parent.is_some()),
        ("mode", d.mode.is_some()),
        ("flag", d.flag.is_some()),
        ("vni", d.vni.is_some()),
        ("encrypted", d.encrypted.is_some()),
    ];
    for (key, here) in present {
        if !here {
            continue;
        }
        let why = match (drv, key) {
            (Driver::None | Driver::Host, "machine") => continue,
            (Driver::None | Driver::Host, _) => {
                format!(
                    "{key} is not valid for the {drv} driver, which has no addressing of its own"
                )
            }
            (Driver::Overlay, "machine") => {
                "overlay networks span every machine: remove machine".to_string()
            }
            (_, "default") if drv != Driver::Bridge => {
                "only a bridge network can be the default network".to_string()
            }
            (_, "icc" | "masquerade") if drv != Driver::Bridge => {
                format!("{key} is only for the bridge driver")
            }
            (_, "parent" | "mode") if !matches!(drv, Driver::Macvlan | Driver::Ipvlan) => {
                format!("{key} is only for the macvlan and ipvlan drivers")
            }
            (_, "flag") if drv != Driver::Ipvlan => {
                "flag is only for the ipvlan driver".to_string()
            }
            (_, "vni") if drv != Driver::Overlay => {
                "vni is only for the overlay driver".to_string()
            }
            (_, "encrypted") if drv != Driver::Overlay => {
                "encrypted is only for the overlay driver (IPsec ESP between machines, OV-9)"
                    .to_string()
            }
            _ => continue,
        };
        return Some((key, why));
    }
    None
}

/// Subnets of one network as written (or implied for the default bridge).
struct Declared {
    nets: Vec<(Ipv4Net, FieldPath)>,
    explicit: bool,
}

fn declared_subnets(d: &NetworkDef, p: &FieldPath, drv: Driver) -> VResult<Declared> {
    let mut nets = Vec::new();
    match &d.subnet {
        Some(OneOrMany::One(s)) => {
            let n = addr::cidr4(s).map_err(|m| Issue::new(p.k("subnet"), m))?;
            nets.push((n, p.k("subnet")));
        }
        Some(OneOrMany::Many(list)) => {
            if list.is_empty() {
                return Err(Issue::new(p.k("subnet"), "subnet list is empty"));
            }
            for (j, s) in list.iter().enumerate() {
                let n = addr::cidr4(s).map_err(|m| Issue::new(p.k("subnet").i(j), m))?;
                nets.push((n, p.k("subnet").i(j)));
            }
        }
        None => {
            if drv == Driver::Bridge && d.default == Some(true) {
                nets.push((ipam::DEFAULT_BRIDGE, p.k("default")));
            }
        }
    }
    Ok(Declared {
        explicit: d.subnet.is_some(),
        nets,
    })
}

/// Validates every network and allocates their subnets and gateways.
pub(crate) fn networks(defs: &[NetworkDef], plan: &Plan) -> VResult<Nets> {
    let root = FieldPath::root();
    let (drivers, machines) = drivers_and_machines(defs, plan)?;
    let mut declared = Vec::with_capacity(defs.len());
    for (i, d) in defs.iter().enumerate() {
        declared.push(declared_subnets(d, &root.k("network").i(i), drivers[i])?);
    }
    let mut reserved = overlaps(defs, plan, &declared, &drivers, &machines)?;
    reserved.push(plan.lan);
    reserved.push(ipam::DEFAULT_BRIDGE);
    let mut picker = PoolPicker::new(reserved);
    let declared6 = declared_v6(defs, plan, &drivers, &machines)?;
    let mut ula = Ula {
        next: 0,
        taken: declared6
            .iter()
            .flatten()
            .copied()
            .chain(plan.lan6)
            .collect(),
    };

    // Everything else, in file order.
    let mut nets = Nets::default();
    for (i, d) in defs.iter().enumerate() {
        let p = root.k("network").i(i);
        let drv = drivers[i];
        let (mut alloc, subs) = ipv4_part(i, d, &p, drv, &declared[i], &mut picker, &mut nets)?;
        let v6 = ipv6_part(i, d, &p, drv, declared6[i], &mut ula, &mut nets)?;
        let ipv6 = v6.is_some();
        let (subnet6, gateway6, mut pool6) = match v6 {
            Some((n, g, pool)) => (Some(n), Some(g), Some(pool)),
            None => (None, None, None),
        };
        let subnets: Vec<Ipv4Net> = subs.iter().map(|s| s.net).collect();
        let aux = aux_addresses(i, d, &p, &subnets, &mut alloc, pool6.as_mut(), &mut nets)?;
        reserve_lan_hosts(i, plan, &subnets, &mut alloc, &mut nets);
        if let (Some(pool), Some(n6)) = (pool6.as_mut(), subnet6) {
            reserve_lan6_hosts(i, plan, n6, pool, &mut nets);
        }
        let mtu = mtu(d, drv, &p)?;
        let (parent, mode, flag) = link_options(d, drv, &p)?;
        let vni = match d.vni {
            None => None,
            Some(v) if (1..=i64::from(ipam::MAX_VNI)).contains(&v) => Some(v as u32),
            Some(v) => {
                return Err(Issue::new(
                    p.k("vni"),
                    format!("invalid VNI {v}: must be 1-16777215"),
                ));
            }
        };
        let internal = d.internal == Some(true)
            || (matches!(drv, Driver::Macvlan | Driver::Ipvlan) && parent.is_none());
        nets.networks.push(Network {
            name: d.name.clone(),
            driver: drv,
            machine: machines[i],
            default: d.default == Some(true),
            subnets: subs,
            aux_addresses: aux,
            ipv6,
            subnet6,
            gateway6,
            internal,
            icc: d.icc.unwrap_or(true),
            masquerade: d.masquerade.unwrap_or(true),
            mtu,
            parent,
            mode,
            flag,
            vni,
            mtu_explicit: d.mtu.is_some(),
            encrypted: d.encrypted == Some(true),
        });
        nets.v4.push(alloc);
        nets.v6.push(pool6);
    }
    assign_vnis(&mut nets.networks)?;
    check_parents(&nets.networks, plan)?;
    Ok(nets)
}

/// Each network's driver and machine, refusing keys the driver does not
/// take, a second default network or a second `none`/`host` network on a
/// machine.
fn drivers_and_machines(
    defs: &[NetworkDef],
    plan: &Plan,
) -> VResult<(Vec<Driver>, Vec<Option<usize>>)> {
    let root = FieldPath::root();
    let machine_names: HashMap<&str, usize> = plan
        .machines
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();
    let mut drivers = Vec::with_capacity(defs.len());
    let mut machines = Vec::with_capacity(defs.len());
    let mut defaults: HashMap<usize, usize> = HashMap::new();
    let mut singletons: HashMap<(usize, Driver), usize> = HashMap::new();
    for (i, d) in defs.iter().enumerate() {
        let p = root.k("network").i(i);
        let drv = match &d.driver {
            Some(s) => driver(s).map_err(|m| Issue::new(p.k("driver"), m))?,
            None => Driver::Bridge,
        };
        if let Some((key, why)) = foreign_key(d, drv) {
            return Err(Issue::key(p.k(key), why));
        }
        let machine = if drv == Driver::Overlay {
            None
        } else {
            Some(machine_index(
                d.machine.as_deref(),
                &p,
                &machine_names,
                "network",
            )?)
        };
        if let (Some(m), Some(true)) = (machine, d.default)
            && let Some(prev) = defaults.insert(m, i)
        {
            return Err(Issue::new(
                p.k("default"),
                format!(
                    "network[{prev}] is already the default network of machine {}",
                    plan.machines[m].name
                ),
            ));
        }
        if let (Some(m), Driver::None | Driver::Host) = (machine, drv)
            && let Some(prev) = singletons.insert((m, drv), i)
        {
            return Err(Issue::new(
                p.k("driver"),
                format!(
                    "only one instance of \"{drv}\" network is allowed (network[{prev}] on machine {})",
                    plan.machines[m].name
                ),
            ));
        }
        drivers.push(drv);
        machines.push(machine);
    }
    Ok((drivers, machines))
}

/// Refuses declared subnets that overlap each other on one machine (or
/// across overlays) or the lan; returns every declared subnet.
fn overlaps(
    defs: &[NetworkDef],
    plan: &Plan,
    declared: &[Declared],
    drivers: &[Driver],
    machines: &[Option<usize>],
) -> VResult<Vec<Ipv4Net>> {
    let mut seen: Vec<(usize, Ipv4Net)> = Vec::new();
    for (i, dec) in declared.iter().enumerate() {
        let d = &defs[i];
        let on_lan_ok = matches!(drivers[i], Driver::Macvlan | Driver::Ipvlan)
            && d.parent.as_deref() == Some("eth0");
        for (net, path) in &dec.nets {
            if ipam::overlaps4(net, &plan.lan) && !on_lan_ok {
                return Err(Issue::new(
                    path.clone(),
                    format!(
                        "subnet {net} overlaps the lan {}; only a macvlan or ipvlan network on parent eth0 may share it",
                        plan.lan
                    ),
                ));
            }
            for (j, other) in &seen {
                // Local-scope address spaces are per machine: the same
                // subnet on two machines is two networks (two hosts'
                // macvlans of one lan subnet, the default bridges). An
                // overlay (every machine) overlaps everything.
                let apart = matches!((machines[i], machines[*j]), (Some(a), Some(b)) if a != b);
                if ipam::overlaps4(net, other) && !apart {
                    return Err(Issue::new(
                        path.clone(),
                        format!(
                            "Pool overlaps with other one on this address space: {net} overlaps {other} of network {}",
                            defs[*j].name
                        ),
                    ));
                }
            }
            seen.push((i, *net));
        }
    }
    Ok(seen.into_iter().map(|(_, n)| n).collect())
}

/// `ip_range` and `gateway` of network `d`, each with the index of the
/// subnet that holds it.
type RangeAndGateway = (
    Option<(usize, Ipv4Net)>,
    Option<(usize, std::net::Ipv4Addr)>,
);

fn range_and_gateway(
    d: &NetworkDef,
    p: &FieldPath,
    declared: &Declared,
    subnets: &[Ipv4Net],
) -> VResult<RangeAndGateway> {
    let ip_range = match &d.ip_range {
        None => None,
        Some(s) => {
            let rp = p.k("ip_range");
            let r = addr::cidr4(s).map_err(|m| Issue::new(rp.clone(), m))?;
            if !declared.explicit {
                return Err(Issue::new(
                    rp,
                    "every ip-range or gateway must have a corresponding subnet",
                ));
            }
            let Some(k) = subnets.iter().position(|n| n.contains(&r)) else {
                return Err(Issue::new(rp, format!("no matching subnet for range {r}")));
            };
            Some((k, r))
        }
    };
    let gateway = match &d.gateway {
        None => None,
        Some(s) => {
            let gp = p.k("gateway");
            let g = addr::ipv4(s).map_err(|m| Issue::new(gp.clone(), m))?;
            if !declared.explicit {
                return Err(Issue::new(
                    gp,
                    "every ip-range or gateway must have a corresponding subnet",
                ));
            }
            let Some(k) = subnets.iter().position(|n| n.contains(&g)) else {
                return Err(Issue::new(
                    gp,
                    format!("no matching subnet for gateway {g}"),
                ));
            };
            Some((k, g))
        }
    };
    Ok((ip_range, gateway))
}

/// Network `i`'s IPv4 subnets (declared, or the next free default pool),
/// with their ranges and gateways (reserved in the allocator).
fn ipv4_part(
    i: usize,
    d: &NetworkDef,
    p: &FieldPath,
    drv: Driver,
    declared: &Declared,
    picker: &mut PoolPicker,
    nets: &mut Nets,
) -> VResult<(NetAlloc, Vec<Subnet4>)> {
    let mut subnets: Vec<Ipv4Net> = declared.nets.iter().map(|(n, _)| *n).collect();
    if subnets.is_empty() && !matches!(drv, Driver::None | Driver::Host) {
        let pool = if drv == Driver::Overlay {
            picker.overlay()
        } else {
            picker.local()
        };
        subnets.push(pool.ok_or_else(|| {
            Issue::new(
                p.k("subnet"),
                "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network: all predefined address pools have been fully subnetted",
            )
        })?);
    }
    let (ip_range, gateway) = range_and_gateway(d, p, declared, &subnets)?;
    let mut alloc = NetAlloc::default();
    let mut subs = Vec::with_capacity(subnets.len());
    for (k, net) in subnets.iter().enumerate() {
        let range = match ip_range {
            Some((rk, r)) if rk == k => r,
            _ => *net,
        };
        let mut pool = AddrPool::v4(*net, range);
        let gw = match gateway {
            Some((gk, g)) if gk == k => {
                if pool.reserve(ipam::n4(g)).is_err() {
                    return Err(Issue::new(
                        p.k("gateway"),
                        format!("gateway {g} is the network or broadcast address of {net}"),
                    ));
                }
                g
            }
            _ => pool.alloc().map(ipam::to_v4).ok_or_else(|| {
                Issue::new(
                    declared
                        .nets
                        .get(k)
                        .map_or(p.k("subnet"), |(_, path)| path.clone()),
                    format!("no available IPv4 addresses in {range} for the gateway"),
                )
            })?,
        };
        nets.owners.insert(
            (i, ipam::n4(gw)),
            format!("the gateway of network {}", d.name),
        );
        alloc.subnets.push(pool);
        subs.push(Subnet4 {
            net: *net,
            gateway: Some(gw),
            ip_range: range,
        });
    }
    Ok((alloc, subs))
}

/// The default IPv6 /64s still free: they come from fd00:5653::/48 in file
/// order, each network without subnet6 taking the next free one after the
/// previous one's.
struct Ula {
    next: usize,
    taken: Vec<Ipv6Net>,
}

/// Network `i`'s IPv6 subnet, gateway and allocator (`None` without
/// `ipv6 = true`, where subnet6 and gateway6 are refused).
fn ipv6_part(
    i: usize,
    d: &NetworkDef,
    p: &FieldPath,
    drv: Driver,
    declared6: Option<Ipv6Net>,
    ula: &mut Ula,
    nets: &mut Nets,
) -> VResult<Option<(Ipv6Net, std::net::Ipv6Addr, AddrPool)>> {
    if d.ipv6 != Some(true) {
        for (key, here) in [
            ("subnet6", d.subnet6.is_some()),
            ("gateway6", d.gateway6.is_some()),
        ] {
            if here {
                return Err(Issue::key(p.k(key), format!("{key} needs ipv6 = true")));
            }
        }
        return Ok(None);
    }
    let net6 = match declared6 {
        Some(n) => n,
        // V6-6: the default bridge's IPv6 is the daemon's fixed-cidr-v6.
        None if drv == Driver::Bridge && d.default == Some(true) => ipam::DEFAULT_BRIDGE6,
        None => {
            let n = ipam::ula64(ula.next, &ula.taken).ok_or_else(|| {
                Issue::new(p.k("ipv6"), "no free IPv6 ULA /64 left for this network")
            })?;
            ula.next = ipam::ula64_index(&n) + 1;
            ula.taken.push(n);
            n
        }
    };
    let mut pool = AddrPool::v6(net6);
    let gw = match &d.gateway6 {
        Some(s) => {
            let gp = p.k("gateway6");
            let g = addr::ipv6(s).map_err(|m| Issue::new(gp.clone(), m))?;
            if !net6.contains(&g) {
                return Err(Issue::new(
                    gp,
                    format!("no matching subnet for gateway {g}"),
                ));
            }
            if pool.reserve(ipam::n6(g)).is_err() {
                return Err(Issue::new(
                    gp,
                    format!("gateway {g} is the subnet-router anycast address of {net6}"),
                ));
            }
            g
        }
        None => pool.alloc().map(ipam::to_v6).ok_or_else(|| {
            Issue::new(
                p.k("subnet6"),
                format!("no available IPv6 address in {net6} for the gateway"),
            )
        })?,
    };
    nets.owners.insert(
        (i, ipam::n6(gw)),
        format!("the IPv6 gateway of network {}", d.name),
    );
    Ok(Some((net6, gw, pool)))
}

/// Auxiliary addresses (MV-11), reserved after the gateway as Docker does.
fn aux_addresses(
    i: usize,
    d: &NetworkDef,
    p: &FieldPath,
    subnets: &[Ipv4Net],
    alloc: &mut NetAlloc,
    mut pool6: Option<&mut AddrPool>,
    nets: &mut Nets,
) -> VResult<BTreeMap<String, IpAddr>> {
    let mut aux = BTreeMap::new();
    for (name, s) in d.aux_addresses.iter().flatten() {
        let ap = p.k("aux_addresses").k(name);
        let a = addr::ip(s).map_err(|m| Issue::new(ap.clone(), m))?;
        let master = subnets
            .first()
            .map_or("none".to_string(), |n| n.to_string());
        let res = match a {
            IpAddr::V4(v4) => alloc.reserve(ipam::n4(v4)),
            IpAddr::V6(v6) => match pool6.as_deref_mut() {
                Some(pool) => pool.reserve(ipam::n6(v6)),
                None => Err(Reserve::Outside),
            },
        };
        let key = match a {
            IpAddr::V4(v4) => ipam::n4(v4),
            IpAddr::V6(v6) => ipam::n6(v6),
        };
        match res {
            Ok(()) => {}
            Err(Reserve::Outside) => {
                return Err(Issue::new(
                    ap,
                    format!(
                        "auxiliary address: ({name}:{a}) must belong to the master pool: {master}"
                    ),
                ));
            }
            Err(Reserve::InUse) => {
                let who = nets
                    .owners
                    .get(&(i, key))
                    .map_or(String::new(), |w| format!(" ({a} is {w})"));
                return Err(Issue::new(
                    ap,
                    format!(
                        "failed to allocate secondary ip address ({name}:{a}): Address already in use{who}"
                    ),
                ));
            }
        }
        nets.owners.insert(
            (i, key),
            format!("auxiliary address {name} of network {}", d.name),
        );
        aux.insert(name.clone(), a);
    }
    Ok(aux)
}

/// A macvlan/ipvlan network on the lan must not hand out the lan addresses
/// of machines and externals.
fn reserve_lan_hosts(
    i: usize,
    plan: &Plan,
    subnets: &[Ipv4Net],
    alloc: &mut NetAlloc,
    nets: &mut Nets,
) {
    if !subnets.iter().any(|n| ipam::overlaps4(n, &plan.lan)) {
        return;
    }
    let lan_hosts = plan
        .machines
        .iter()
        .map(|m| (IpAddr::V4(m.ip), format!("machine {}", m.name)))
        .chain(
            plan.externals
                .iter()
                .filter(|e| e.vlan.is_none())
                .map(|e| (e.ip, format!("external {}", e.name))),
        );
    for (a, who) in lan_hosts {
        if let IpAddr::V4(v4) = a
            && alloc.reserve(ipam::n4(v4)).is_ok()
        {
            nets.owners.insert((i, ipam::n4(v4)), who);
        }
    }
}

/// ... and the same for the IPv6 lan (`lan6`).
fn reserve_lan6_hosts(i: usize, plan: &Plan, n6: Ipv6Net, pool: &mut AddrPool, nets: &mut Nets) {
    let Some(l6) = plan.lan6 else {
        return;
    };
    if !ipam::overlaps6(&n6, &l6) {
        return;
    }
    let hosts = plan
        .machines
        .iter()
        .filter_map(|m| Some((m.ip6?, format!("machine {}", m.name))))
        .chain(
            plan.externals
                .iter()
                .filter(|e| e.vlan.is_none())
                .filter_map(|e| Some((e.ip6?, format!("external {}", e.name)))),
        );
    for (a, who) in hosts {
        if pool.reserve(ipam::n6(a)).is_ok() {
            nets.owners.insert((i, ipam::n6(a)), who);
        }
    }
}

/// Resolves an optional `machine` key.
pub(crate) fn machine_index(
    name: Option<&str>,
    p: &FieldPath,
    machines: &HashMap<&str, usize>,
    what: &str,
) -> VResult<usize> {
    match name {
        Some(n) => machines
            .get(n)
            .copied()
            .ok_or_else(|| Issue::new(p.k("machine"), format!("no machine named {n:?}"))),
        None if machines.len() == 1 => Ok(0),
        None => Err(Issue::new(
            p.k("machine"),
            format!("this scenario has several machines: the {what} needs `machine`"),
        )),
    }
}

fn declared_v6(
    defs: &[NetworkDef],
    plan: &Plan,
    drivers: &[Driver],
    machines: &[Option<usize>],
) -> VResult<Vec<Option<Ipv6Net>>> {
    let mut out: Vec<Option<Ipv6Net>> = Vec::with_capacity(defs.len());
    for (i, d) in defs.iter().enumerate() {
        let Some(s) = &d.subnet6 else {
            out.push(None);
            continue;
        };
        let p = FieldPath::root().k("network").i(i).k("subnet6");
        let n = addr::cidr6(s).map_err(|m| Issue::new(p.clone(), m))?;
        let on_lan_ok = matches!(drivers[i], Driver::Macvlan | Driver::Ipvlan)
            && d.parent.as_deref() == Some("eth0");
        if let Some(l6) = plan.lan6
            && ipam::overlaps6(&n, &l6)
            && !on_lan_ok
        {
            return Err(Issue::new(
                p,
                format!(
                    "subnet6 {n} overlaps the lan6 {l6}; only a macvlan or ipvlan network on parent eth0 may share it"
                ),
            ));
        }
        for (j, other) in out.iter().enumerate() {
            let apart = matches!((machines[i], machines[j]), (Some(a), Some(b)) if a != b);
            if let Some(o) = other
                && ipam::overlaps6(&n, o)
                && !apart
            {
                return Err(Issue::new(
                    p,
                    format!(
                        "Pool overlaps with other one on this address space: {n} overlaps {o} of network {}",
                        defs[j].name
                    ),
                ));
            }
        }
        out.push(Some(n));
    }
    Ok(out)
}

/// An overlay's container MTU from its underlay MTU (OV-5, OV-6): 50
/// bytes of VXLAN, and on an encrypted overlay 26 more of ESP, rounded
/// down to a multiple of 4 (Docker's `maxMTU`).
pub(crate) fn overlay_mtu(underlay: i64, encrypted: bool) -> i64 {
    let mut m = underlay - 50;
    if encrypted {
        m -= crate::engine::esp::OVERHEAD as i64;
        m -= m.rem_euclid(4);
    }
    m
}

fn mtu(d: &NetworkDef, drv: Driver, p: &FieldPath) -> VResult<u16> {
    let encrypted = d.encrypted == Some(true);
    let Some(v) = d.mtu else {
        return Ok(if drv == Driver::Overlay {
            overlay_mtu(1500, encrypted) as u16
        } else {
            1500
        });
    };
    if !(68..=65535).contains(&v) {
        return Err(Issue::new(
            p.k("mtu"),
            format!("invalid MTU {v}: must be 68-65535"),
        ));
    }
    if drv == Driver::Overlay {
        // OV-5: the option is the underlay MTU; containers get 50 less
        // (OV-6: and 26 more, rounded down to a multiple of 4, encrypted).
        let m = overlay_mtu(v, encrypted);
        if m < 68 {
            return Err(Issue::new(
                p.k("mtu"),
                format!("overlay mtu {v} is the underlay MTU; containers would get {m} (below 68)"),
            ));
        }
        return Ok(m as u16);
    }
    Ok(v as u16)
}

type LinkOptions = (
    Option<super::plan::Parent>,
    Option<Mode>,
    Option<IpvlanFlag>,
);

fn link_options(d: &NetworkDef, drv: Driver, p: &FieldPath) -> VResult<LinkOptions> {
    if !matches!(drv, Driver::Macvlan | Driver::Ipvlan) {
        return Ok((None, None, None));
    }
    let parent = match &d.parent {
        Some(s) => {
            Some(addr::parent(s, &drv.to_string()).map_err(|m| Issue::new(p.k("parent"), m))?)
        }
        None => None,
    };
    let mode = match (drv, d.mode.as_deref()) {
        (Driver::Macvlan, None | Some("bridge")) => Mode::Bridge,
        (Driver::Macvlan, Some("vepa")) => Mode::Vepa,
        (Driver::Macvlan, Some("private")) => Mode::Private,
        (Driver::Macvlan, Some("passthru")) => Mode::Passthru,
        (Driver::Ipvlan, None | Some("l2")) => Mode::L2,
        (Driver::Ipvlan, Some("l3")) => Mode::L3,
        (Driver::Ipvlan, Some("l3s")) => Mode::L3s,
        (_, m) => {
            return Err(Issue::new(
                p.k("mode"),
                format!(
                    "requested {drv} mode '{}' is not valid",
                    m.unwrap_or_default()
                ),
            ));
        }
    };
    let flag = match (drv, d.flag.as_deref()) {
        (Driver::Ipvlan, None | Some("bridge")) => Some(IpvlanFlag::Bridge),
        (Driver::Ipvlan, Some("private")) => Some(IpvlanFlag::Private),
        (Driver::Ipvlan, Some("vepa")) => Some(IpvlanFlag::Vepa),
        (Driver::Ipvlan, Some(f)) => {
            return Err(Issue::new(
                p.k("flag"),
                format!("requested ipvlan flag '{f}' is not valid"),
            ));
        }
        _ => None,
    };
    Ok((parent, Some(mode), flag))
}

fn assign_vnis(networks: &mut [Network]) -> VResult<()> {
    let mut by_vni: HashMap<u32, usize> = HashMap::new();
    for (i, n) in networks.iter().enumerate() {
        if let Some(v) = n.vni
            && let Some(prev) = by_vni.insert(v, i)
        {
            return Err(Issue::new(
                FieldPath::root().k("network").i(i).k("vni"),
                format!("VNI {v} is already used by network {}", networks[prev].name),
            ));
        }
    }
    let overlay: Vec<usize> = (0..networks.len())
        .filter(|&i| networks[i].driver == Driver::Overlay)
        .collect();
    let declared: Vec<Option<u32>> = overlay.iter().map(|&i| networks[i].vni).collect();
    let vnis = ipam::vnis(&declared)
        .ok_or_else(|| Issue::new(FieldPath::root().k("network"), "no free VNI left"))?;
    for (&i, v) in overlay.iter().zip(vnis) {
        networks[i].vni = Some(v);
    }
    Ok(())
}

/// IV-3 and MV-3: one ipvlan network per parent; passthru owns its parent.
fn check_parents(networks: &[Network], plan: &Plan) -> VResult<()> {
    let mut users: HashMap<(usize, &str), Vec<usize>> = HashMap::new();
    for (i, n) in networks.iter().enumerate() {
        let (Some(m), Some(parent)) = (n.machine, &n.parent) else {
            continue;
        };
        let p = FieldPath::root().k("network").i(i).k("parent");
        let list = users.entry((m, parent.name.as_str())).or_default();
        for &j in list.iter() {
            let o = &networks[j];
            let on = format!("{} on machine {}", parent.name, plan.machines[m].name);
            if n.driver == Driver::Ipvlan && o.driver == Driver::Ipvlan {
                return Err(Issue::new(
                    p,
                    format!("network {} is already using parent interface {on}", o.name),
                ));
            }
            if n.driver == Driver::Macvlan && o.driver == Driver::Macvlan {
                if n.mode == Some(Mode::Passthru) {
                    return Err(Issue::new(
                        p,
                        format!(
                            "cannot use mode passthru, macvlan network {} is already using parent interface {on}",
                            o.name
                        ),
                    ));
                }
                if o.mode == Some(Mode::Passthru) {
                    return Err(Issue::new(
                        p,
                        format!(
                            "network {} is already using parent interface {on} in mode passthru",
                            o.name
                        ),
                    ));
                }
            }
        }
        list.push(i);
    }
    Ok(())
}
