//! Topology steps on the kernel backend: `docker network connect` adds the
//! container's new interface (a veth on the network's bridge, or a macvlan
//! child), `disconnect` and `stop` delete interfaces, `start` and `restart`
//! create them again; the machine's nftables table is then replaced whole
//! from the world as it now stands, so published ports, ICC and isolation
//! follow the container. Conntrack is the kernel's own; as on Docker, the
//! flows whose reply tuple has a leaving endpoint's address are deleted
//! (`kernel::conntrack`, called by `backend::steps`), the rest stay until
//! they time out.

use crate::backend::common::steps::running_view;
use crate::backend::common::{BuildError, Namespaces};
use crate::scenario::plan::{Driver, Node, Plan, StepAction};
use crate::sys::netlink::Netlink;
use crate::sys::sysctl::sysctl_set;

use super::layout::{self, Link};
use super::{add_link, configure, nft};
use crate::backend::linux::{in_ns, nlerr};

/// What this backend cannot do of a topology step, if anything.
pub(crate) fn refusal(before: &Plan, action: &StepAction) -> Option<String> {
    match action {
        StepAction::Connect {
            container,
            endpoint,
        } => (before.networks[endpoint.network].driver == Driver::Overlay).then(|| {
            format!(
                "connect of {} to overlay network {} not supported yet",
                before.containers[*container].name, before.networks[endpoint.network].name
            )
        }),
        StepAction::Disconnect { container, network } => {
            let eps = &before.containers[*container].endpoints;
            (eps.last().is_some_and(|e| e.network != *network)).then(|| {
                format!(
                    "disconnect of {} from {}, which is not its last network, not supported yet (the later interfaces would have to be renamed)",
                    before.containers[*container].name, before.networks[*network].name
                )
            })
        }
        _ => None,
    }
}

/// The container's interfaces in `plan` (as the data path sees it).
fn links_of(plan: &Plan, c: usize) -> Vec<Link> {
    let m = plan.containers[c].machine;
    layout::machine_layout(plan, m)
        .links
        .into_iter()
        .filter(|l| l.container == c)
        .collect()
}

/// Carries out a topology step for the container(s) it names: a `scale`
/// step's removed tasks lose their interfaces and its added ones get
/// theirs; then the machine tables and every service table follow.
pub(crate) fn apply(
    world: &Namespaces,
    before: &Plan,
    after: &Plan,
    action: &StepAction,
) -> Result<(), BuildError> {
    let cs: Vec<usize> = match action {
        StepAction::Connect { container, .. } | StepAction::Disconnect { container, .. } => {
            vec![*container]
        }
        StepAction::Stop(c) | StepAction::Start(c) | StepAction::Restart(c) => vec![*c],
        StepAction::Scale { added, removed, .. } => removed
            .iter()
            .copied()
            .chain(added.iter().map(|(c, _)| *c))
            .collect(),
        _ => return Ok(()),
    };
    // OV-8 as at build: every task any step runs keeps its gwbridge address.
    let b = running_view(&super::services::with_gwbridge(before));
    let a = running_view(&super::services::with_gwbridge(after));
    let restart = matches!(action, StepAction::Restart(_));
    for &c in &cs {
        relink(world, (&b, &a), c, restart)?;
    }
    let mut machines: Vec<usize> = cs.iter().map(|&c| after.containers[c].machine).collect();
    if matches!(action, StepAction::Scale { .. }) {
        // Host-mode ports and VIP maps reach every machine.
        machines = (0..after.machines.len()).collect();
    }
    machines.sort_unstable();
    machines.dedup();
    for m in machines {
        replace_ruleset(world, &a, m)?;
    }
    super::services::apply_all(world, &b, &a)
}

/// Container `c`'s interfaces from what `b` (before) to what `a` (after)
/// says; `restart` makes every one anew.
fn relink(
    world: &Namespaces,
    (b, a): (&Plan, &Plan),
    c: usize,
    restart: bool,
) -> Result<(), BuildError> {
    let old = links_of(b, c);
    let new = links_of(a, c);
    let gone: Vec<Link> = old
        .iter()
        .filter(|l| restart || !new.contains(l))
        .cloned()
        .collect();
    let added: Vec<Link> = new
        .iter()
        .filter(|l| restart || !old.contains(l))
        .cloned()
        .collect();
    let name = a.containers[c].name.clone();
    let cns = world.ns(Node::Container(c));
    let names: Vec<String> = gone.iter().map(|l| l.iface.name.clone()).collect();
    in_ns(
        cns,
        format!("container {name}: remove interfaces"),
        move || {
            let mut nl = Netlink::new().map_err(nlerr("netlink socket"))?;
            for n in &names {
                nl.link_del(n).map_err(nlerr(n))?;
            }
            Ok(())
        },
    )?;
    let m = a.containers[c].machine;
    let target = cns
        .try_clone()
        .map_err(BuildError::at(format!("container {name}")))?;
    let to_add = added.clone();
    in_ns(
        world.ns(Node::Machine(m)),
        format!("container {name}: add interfaces"),
        move || {
            let mut nl = Netlink::new().map_err(nlerr("netlink socket"))?;
            for l in &to_add {
                add_link(&mut nl, l, &target)?;
            }
            Ok(())
        },
    )?;
    in_ns(cns, format!("container {name}: interfaces"), move || {
        let mut nl = Netlink::new().map_err(nlerr("netlink socket"))?;
        for l in &added {
            configure(&mut nl, &l.tmp, &l.iface)?;
        }
        Ok(())
    })
}

/// Replaces machine `m`'s nftables table with the one `plan` calls for,
/// in one transaction (declared empty first so that the delete holds).
fn replace_ruleset(world: &Namespaces, plan: &Plan, m: usize) -> Result<(), BuildError> {
    let layout = layout::machine_layout(plan, m);
    let table = world.run().to_string();
    let machine = &plan.machines[m].name;
    let mns = world.ns(Node::Machine(m));
    let br_netfilter = in_ns(mns, format!("machine {machine}: sysctl"), || {
        Ok(sysctl_set("net.bridge.bridge-nf-call-iptables", "1").is_ok())
    })?;
    let rules = nft::machine_ruleset(plan, m, &layout, &table, br_netfilter).unwrap_or_default();
    let all = format!("table inet {table} {{}}\ndelete table inet {table}\n{rules}");
    in_ns(mns, format!("machine {machine}: nftables"), move || {
        nft::apply(&all)
    })
}
