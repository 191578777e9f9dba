//! Swarm services on the kernel backend (issue 14). This kernel has no
//! IP_VS, so what IPVS does for Docker is done with nftables `numgen inc`
//! dnat maps, as kube-proxy's nftables mode does; every table is
//! `table ip <run id>` in its namespace (the machine's own rules stay in
//! `table inet <run id>`).
//!
//! - VIPs (SVC-3): in every container namespace with an endpoint on a
//!   network where a `vip`-mode service has a VIP, the VIP is an address
//!   of `lo` (libnetwork programs it there since moby/libnetwork#1877, so
//!   a ping to it is answered by the client's own sandbox: IPVS balances
//!   TCP and UDP only), and nat output DNATs TCP and UDP to it, every port,
//!   round robin over the running tasks' addresses on that network
//!   (`numgen inc mod N map`); conntrack keeps a connection, and a UDP
//!   flow, on its task. A connection to a local address takes that address
//!   as source, so postrouting SNATs it to the container's own address on
//!   the network, as Docker's `-m ipvs --ipvs -j SNAT` rule does: the task
//!   sees the client's own address.
//! - The routing mesh (SVC-4): on each machine an ingress sandbox
//!   namespace `<run id>-i-<machine>` (Docker's `ingress_sbox`) with `eth0`
//!   on the `ingress` overlay at the address the plan gives it and `eth1`,
//!   a veth to the machine (`veth-sbox1`; unnumbered: the machine routes
//!   the sandbox address there, the sandbox routes everything back via the
//!   machine's lan address). The machine DNATs a published ingress port
//!   arriving for any of its addresses to the sandbox; the sandbox DNATs
//!   it round robin over every running task's `ingress` address (any
//!   machine, over the overlay) and the target port, and SNATs it to its
//!   own `ingress` address: the task sees the receiving machine's sandbox.
//! - Host mode (SVC-5): a machine running a task DNATs the published port
//!   to that task's `docker_gwbridge` address, as `-p` does: the client
//!   address is kept.
//! - `scale` steps (and `stop`/`start` of a task) rewrite every one of
//!   these tables from the world as it now stands (see `kernel::topology`).
//!   Every balanced flow carries its task's address as ct mark; the flows
//!   of a task that went are deleted over ctnetlink, so their next packet
//!   is balanced afresh (IPVS's `expire_nodest_conn`, which Docker sets).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use super::configure;
use super::layout::Iface;
use crate::backend::common::{BuildError, Namespaces};
use crate::backend::linux::{LinuxError, in_ns, nlerr};
use crate::backend::topology::{GWBRIDGE, machines_of};
use crate::netns::NetNs;
use crate::scenario::plan::{EndpointMode, MacAddr, Node, Plan, PublishMode};
use crate::sys::netlink::Netlink;

/// The machine end of the veth between a machine and its ingress sandbox.
const SANDBOX_LINK: &str = "veth-sbox1";
/// The machine end of the ingress sandbox's port on the `ingress` overlay.
const SANDBOX_PORT: &str = "veth-sbox0";

/// One VIP as a container namespace sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Vip {
    /// The service's virtual IP on the network.
    pub vip: Ipv4Addr,
    /// The container's own address on that network (the source tasks see).
    pub own: Ipv4Addr,
    /// The running tasks' addresses there, by task number.
    pub backends: Vec<Ipv4Addr>,
}

/// The running tasks of service `s`' addresses on network `net`.
fn task_addrs(plan: &Plan, s: usize, net: usize) -> Vec<Ipv4Addr> {
    plan.services[s]
        .running_tasks()
        .iter()
        .filter(|&&t| plan.containers[t].running)
        .filter_map(|&t| {
            plan.containers[t]
                .endpoints
                .iter()
                .find(|e| e.network == net)
                .and_then(|e| e.ip)
        })
        .collect()
}

/// The VIPs container `c` balances (one per `vip`-mode service on each of
/// its networks), in endpoint then service order.
pub(super) fn container_vips(plan: &Plan, c: usize) -> Vec<Vip> {
    let mut out = Vec::new();
    for e in &plan.containers[c].endpoints {
        let Some(own) = e.ip else { continue };
        for (s, svc) in plan.services.iter().enumerate() {
            if svc.mode != EndpointMode::Vip {
                continue;
            }
            let Some(vip) = svc.vip_on(e.network) else {
                continue;
            };
            out.push(Vip {
                vip,
                own,
                backends: task_addrs(plan, s, e.network),
            });
        }
    }
    out
}

/// Round robin over `backends` (each a task address and what to DNAT
/// to): `ct mark set numgen inc mod N map { 0 : <addr>, … }` then `dnat
/// {how} to ct mark map { <addr> : <to>, … }`. The mark (the task's
/// address as a number) names the task a flow went to, so that its flows
/// can be deleted when it goes ([`forget_tasks`]).
fn round_robin(how: &str, backends: &[(Ipv4Addr, String)]) -> String {
    let pick: Vec<String> = backends
        .iter()
        .enumerate()
        .map(|(i, (a, _))| format!("{i} : {:#010x}", u32::from(*a)))
        .collect();
    let to: Vec<String> = backends
        .iter()
        .map(|(a, t)| format!("{:#010x} : {t}", u32::from(*a)))
        .collect();
    format!(
        "ct mark set numgen inc mod {} map {{ {} }} dnat {how}to ct mark map {{ {} }}",
        backends.len(),
        pick.join(", "),
        to.join(", ")
    )
}

/// Container `c`'s VIP table, or None when it reaches no VIP.
pub(super) fn container_ruleset(plan: &Plan, c: usize, table: &str) -> Option<String> {
    let vips = container_vips(plan, c);
    if vips.is_empty() {
        return None;
    }
    let mut s = format!(
        "table ip {table} {{\n  chain vip_output {{\n    type nat hook output priority -100; policy accept;\n"
    );
    for v in vips.iter().filter(|v| !v.backends.is_empty()) {
        let to: Vec<(Ipv4Addr, String)> = v.backends.iter().map(|a| (*a, a.to_string())).collect();
        let _ = writeln!(
            s,
            "    ip daddr {} meta l4proto {{ tcp, udp }} {}",
            v.vip,
            round_robin("", &to)
        );
    }
    s.push_str(
        "  }\n  chain vip_postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n",
    );
    for v in &vips {
        let _ = writeln!(s, "    ip saddr {} ct status dnat snat to {}", v.vip, v.own);
    }
    s.push_str("  }\n}\n");
    Some(s)
}

/// The name of machine `m`'s ingress sandbox namespace.
pub(super) fn sandbox_ns_name(world: &Namespaces, plan: &Plan, m: usize) -> String {
    format!("{}-i-{}", world.run(), plan.machines[m].name)
}

/// Machine `m`'s ingress sandbox address, when the world has services.
fn sandbox_addr(plan: &Plan, m: usize) -> Option<Ipv4Addr> {
    plan.ingress.as_ref()?.sandboxes.get(m).copied()
}

/// The ingress sandbox table of machine `m`, or None without services.
pub(super) fn sandbox_ruleset(plan: &Plan, m: usize, table: &str) -> Option<String> {
    let ing = plan.ingress.as_ref()?;
    let own = sandbox_addr(plan, m)?;
    let mut s = format!(
        "table ip {table} {{\n  chain ingress_prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n"
    );
    for (si, svc) in plan.services.iter().enumerate() {
        let tasks = task_addrs(plan, si, ing.network);
        for p in svc
            .publish
            .iter()
            .filter(|p| p.mode == PublishMode::Ingress)
        {
            if tasks.is_empty() {
                continue;
            }
            let to: Vec<(Ipv4Addr, String)> = tasks
                .iter()
                .map(|a| (*a, format!("{a} . {}", p.target)))
                .collect();
            let _ = writeln!(
                s,
                "    iifname \"eth1\" ip daddr {own} {} dport {} {}",
                p.proto,
                p.published,
                round_robin("ip addr . port ", &to)
            );
        }
    }
    let _ = writeln!(
        s,
        "  }}\n  chain ingress_postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"eth0\" ct status dnat snat to {own}\n  }}\n}}"
    );
    Some(s)
}

/// A task's `docker_gwbridge` address in `plan` (as `with_gwbridge` gives it).
fn gwbridge_addr(plan: &Plan, c: usize) -> Option<Ipv4Addr> {
    plan.containers[c]
        .endpoints
        .iter()
        .find(|e| plan.networks[e.network].name == GWBRIDGE)
        .and_then(|e| e.ip)
}

/// Machine `m`'s published service ports: ingress mode to its sandbox
/// (every machine), host mode to its own task's gateway-bridge address.
/// None when no service publishes anything.
pub(super) fn machine_ruleset(plan: &Plan, m: usize, table: &str) -> Option<String> {
    if plan.services.iter().all(|s| s.publish.is_empty()) {
        return None;
    }
    let mut rules = Vec::new();
    for svc in &plan.services {
        for p in &svc.publish {
            let to = match p.mode {
                PublishMode::Ingress => sandbox_addr(plan, m).map(|a| (a, p.published)),
                PublishMode::Host => svc
                    .running_tasks()
                    .iter()
                    .filter(|&&t| plan.containers[t].machine == m && plan.containers[t].running)
                    .find_map(|&t| gwbridge_addr(plan, t))
                    .map(|a| (a, p.target)),
            };
            if let Some((a, port)) = to {
                rules.push(format!(
                    "    fib daddr type local {} dport {} dnat to {a}:{port}\n",
                    p.proto, p.published
                ));
            }
        }
    }
    let rules = rules.concat();
    Some(format!(
        "table ip {table} {{\n  chain publish_prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n{rules}  }}\n  chain publish_output {{\n    type nat hook output priority -100; policy accept;\n{rules}  }}\n}}\n"
    ))
}

/// The machines on which overlay `net`'s devices are built: those of its
/// containers, of every task any step runs on it, and, for `ingress`,
/// every machine (each has its ingress sandbox there).
pub(super) fn overlay_machines(plan: &Plan, net: usize) -> Vec<usize> {
    if plan.ingress.as_ref().is_some_and(|i| i.network == net) {
        return (0..plan.machines.len()).collect();
    }
    let mut v = machines_of(plan, net);
    for svc in &plan.services {
        let attached = svc.networks.iter().any(|n| n.network == net);
        if attached {
            v.extend(svc.tasks.iter().map(|&t| plan.containers[t].machine));
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// `with_gwbridge` over every task any step runs: each holds its
/// `docker_gwbridge` address from the start, so a task a `scale` step
/// starts takes none that a running container has (tasks not running keep
/// no endpoint).
pub(super) fn with_gwbridge(plan: &Plan) -> Plan {
    let mut all = plan.clone();
    let mut idle = Vec::new();
    for svc in &plan.services {
        let Some(n) = svc.networks.first() else {
            continue;
        };
        for &t in &svc.tasks {
            if all.containers[t].endpoints.is_empty() {
                all.containers[t]
                    .endpoints
                    .push(crate::scenario::plan::Endpoint {
                        network: n.network,
                        ip: None,
                        ip6: None,
                        aliases: Vec::new(),
                        mac: MacAddr([0; 6]),
                    });
                idle.push(t);
            }
        }
    }
    let mut out = crate::backend::topology::with_gwbridge(&all).into_owned();
    for t in idle {
        out.containers[t].endpoints.clear();
    }
    out
}

/// An ingress sandbox namespace; deleted when dropped.
pub(super) type Sandbox = crate::netns::OwnedNs;

/// `table ip T {}; delete table ip T; RULES`: replaces the table in one
/// transaction (an empty RULES removes it).
fn replacing(table: &str, rules: Option<&str>) -> String {
    format!(
        "table ip {table} {{}}\ndelete table ip {table}\n{}",
        rules.unwrap_or("")
    )
}

/// Builds machine `m`'s ingress sandbox: its namespace, `eth0` on the
/// `ingress` overlay's bridge, `eth1` to the machine, and its table.
pub(super) fn build_sandbox(
    world: &Namespaces,
    plan: &Plan,
    m: usize,
) -> Result<Option<Sandbox>, BuildError> {
    let (Some(ing), Some(addr)) = (plan.ingress.as_ref(), sandbox_addr(plan, m)) else {
        return Ok(None);
    };
    let name = sandbox_ns_name(world, plan, m);
    let ns = NetNs::create(&name).map_err(BuildError::at(format!("namespace {name}")))?;
    let sb = Sandbox::new(ns);
    let ns = sb.ns().expect("just created");
    let net = &plan.networks[ing.network];
    let prefix = net.primary().map_or(24, |s| s.net.prefix_len());
    let bridge = super::overlay::bridge_name(plan, ing.network);
    let mtu = net.mtu;
    let machine_ip = plan.machines[m].ip;
    let machine = plan.machines[m].name.clone();
    let target = ns
        .try_clone()
        .map_err(BuildError::at(format!("namespace {name}")))?;
    in_ns(
        world.ns(Node::Machine(m)),
        format!("machine {machine}: ingress sandbox links"),
        move || {
            let mut nl = Netlink::new().map_err(nlerr("netlink socket"))?;
            nl.link_add_veth_peer_in(SANDBOX_PORT, "sb0", std::os::fd::AsFd::as_fd(&target))
                .map_err(nlerr(SANDBOX_PORT))?;
            nl.link_set_mtu(SANDBOX_PORT, u32::from(mtu))
                .map_err(nlerr(SANDBOX_PORT))?;
            nl.link_set_master(SANDBOX_PORT, &bridge)
                .map_err(nlerr(SANDBOX_PORT))?;
            nl.link_set_up(SANDBOX_PORT).map_err(nlerr(SANDBOX_PORT))?;
            nl.link_add_veth_peer_in(SANDBOX_LINK, "sb1", std::os::fd::AsFd::as_fd(&target))
                .map_err(nlerr(SANDBOX_LINK))?;
            nl.link_set_up(SANDBOX_LINK).map_err(nlerr(SANDBOX_LINK))?;
            nl.route_add(IpNet::V4(Ipv4Net::from(addr)), None, Some(SANDBOX_LINK))
                .map_err(nlerr(SANDBOX_LINK))
        },
    )?;
    let eth0 = Iface {
        name: "eth0".into(),
        mac: MacAddr::docker_from_ipv4(addr),
        mtu,
        addrs: vec![(IpAddr::V4(addr), prefix)],
        routes: Vec::new(),
    };
    let o = addr.octets();
    let eth1 = Iface {
        name: "eth1".into(),
        mac: MacAddr([0x02, 0x49, o[0], o[1], o[2], o[3]]),
        mtu: 1500,
        addrs: Vec::new(),
        routes: vec![
            (IpNet::V4(Ipv4Net::from(machine_ip)), None),
            (IpNet::V4(Ipv4Net::default()), Some(IpAddr::V4(machine_ip))),
        ],
    };
    let table = world.run().to_string();
    let rules = sandbox_ruleset(plan, m, &table).unwrap_or_default();
    in_ns(ns, format!("ingress sandbox of {machine}"), move || {
        let mut nl = Netlink::new().map_err(nlerr("netlink socket"))?;
        nl.link_set_up("lo").map_err(nlerr("lo"))?;
        crate::sys::sysctl::sysctl_set("net.ipv4.ip_forward", "1")?;
        let _ = crate::sys::sysctl::sysctl_set("net.ipv6.conf.all.disable_ipv6", "1");
        let _ = crate::sys::sysctl::sysctl_set("net.ipv6.conf.default.disable_ipv6", "1");
        configure(&mut nl, "sb0", &eth0)?;
        configure(&mut nl, "sb1", &eth1)?;
        super::nft::apply(&rules)
    })?;
    Ok(Some(sb))
}

/// Puts container `c`'s VIPs on its `lo` (an address already there is
/// kept), replaces its VIP table and, when it `had` one, deletes its
/// flows to the tasks at `gone`. Nothing when it reaches no VIP and had
/// none.
fn apply_container(
    world: &Namespaces,
    plan: &Plan,
    c: usize,
    (had, gone): (bool, &[Ipv4Addr]),
) -> Result<(), BuildError> {
    let table = world.run().to_string();
    let rules = container_ruleset(plan, c, &table);
    if rules.is_none() && !had {
        return Ok(());
    }
    let vips: Vec<Ipv4Addr> = container_vips(plan, c).iter().map(|v| v.vip).collect();
    let text = replacing(&table, rules.as_deref());
    let gone = if had { gone.to_vec() } else { Vec::new() };
    in_ns(
        world.ns(Node::Container(c)),
        format!("container {}: VIPs", plan.containers[c].name),
        move || {
            let mut nl = Netlink::new().map_err(nlerr("netlink socket"))?;
            for v in &vips {
                match nl.addr_add("lo", IpAddr::V4(*v), 32) {
                    Err(e) if e.errno() == Some(libc::EEXIST) => {}
                    r => r.map_err(nlerr("lo"))?,
                }
            }
            super::nft::apply(&text)?;
            forget_tasks(&gone)
        },
    )
}

/// Deletes this namespace's flows to the tasks at `gone` (their ct mark,
/// see [`round_robin`]): their next packet is balanced afresh, as IPVS
/// with `expire_nodest_conn` (which Docker sets) does.
fn forget_tasks(gone: &[Ipv4Addr]) -> Result<(), LinuxError> {
    for a in gone {
        crate::sys::conntrack::delete_mark(u32::from(*a))?;
    }
    Ok(())
}

/// Every address some VIP or ingress port balances over in `plan`.
fn backends(plan: &Plan) -> Vec<Ipv4Addr> {
    let mut v = Vec::new();
    for (s, svc) in plan.services.iter().enumerate() {
        let nets = svc
            .networks
            .iter()
            .map(|n| n.network)
            .chain(plan.ingress.as_ref().map(|i| i.network));
        for n in nets {
            v.extend(task_addrs(plan, s, n));
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Machine `m`'s containers' VIP tables and its published service ports,
/// at build (the sandbox loads its own table when it is built).
pub(super) fn build_machine(world: &Namespaces, plan: &Plan, m: usize) -> Result<(), BuildError> {
    if plan.services.is_empty() {
        return Ok(());
    }
    let jobs: Vec<usize> = (0..plan.containers.len())
        .filter(|&c| plan.containers[c].machine == m)
        .collect();
    let done = crate::backend::parallel::map(jobs, crate::backend::parallel::WIDTH, |c| {
        apply_container(world, plan, c, (false, &[]))
    });
    done.into_iter().collect::<Result<Vec<()>, _>>()?;
    apply_machine(world, plan, m)
}

/// Replaces machine `m`'s table of published service ports.
fn apply_machine(world: &Namespaces, plan: &Plan, m: usize) -> Result<(), BuildError> {
    let table = world.run().to_string();
    let Some(rules) = machine_ruleset(plan, m, &table) else {
        return Ok(());
    };
    let text = replacing(&table, Some(&rules));
    in_ns(
        world.ns(Node::Machine(m)),
        format!("machine {}: published service ports", plan.machines[m].name),
        move || super::nft::apply(&text),
    )
}

/// After a step: every VIP table, ingress sandbox table and machine table
/// of services rewritten from `after` (`before`: the world as it stood).
pub(super) fn apply_all(world: &Namespaces, before: &Plan, after: &Plan) -> Result<(), BuildError> {
    if after.services.is_empty() {
        return Ok(());
    }
    let table = world.run().to_string();
    let now = backends(after);
    let gone: Vec<Ipv4Addr> = backends(before)
        .into_iter()
        .filter(|a| !now.contains(a))
        .collect();
    let jobs: Vec<usize> = (0..after.containers.len())
        .filter(|&c| after.containers[c].running)
        .collect();
    let done = crate::backend::parallel::map(jobs, crate::backend::parallel::WIDTH, |c| {
        let had = !container_vips(before, c).is_empty();
        apply_container(world, after, c, (had, &gone))
    });
    done.into_iter().collect::<Result<Vec<()>, _>>()?;
    for m in 0..after.machines.len() {
        apply_machine(world, after, m)?;
        let Some(rules) = sandbox_ruleset(after, m, &table) else {
            continue;
        };
        let name = sandbox_ns_name(world, after, m);
        let ns = NetNs::open(&name).map_err(BuildError::at(format!("namespace {name}")))?;
        let text = replacing(&table, Some(&rules));
        let gone = gone.clone();
        in_ns(&ns, format!("ingress sandbox {name}"), move || {
            super::nft::apply(&text)?;
            forget_tasks(&gone)
        })?;
    }
    Ok(())
}
