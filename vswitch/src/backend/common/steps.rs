//! What a step does to the plan a data path is built from, the same for
//! every backend: the plan as the data path sees it ([`running_view`]),
//! the faults in force, the endpoints a step takes away, and what of a
//! fault this kernel cannot set. Steps themselves are carried out by
//! `backend::steps` (`World::apply_step`), which dispatches to the backends.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::scenario::plan::{Driver, LinkFault, LinkRef, Plan, StepAction};

/// What of a fault this kernel cannot do at all on `backend`: netem is
/// absent, so delay, jitter, reorder, duplicate and corrupt are refused by
/// name (on the kernel backend, and on docker, which sets the same faults).
pub(crate) fn netem_refusals(backend: &str, f: &LinkFault, at: &str) -> Vec<String> {
    let mut why = Vec::new();
    for (key, on) in [
        ("delay_ms", !f.delay.is_zero()),
        ("jitter_ms", !f.jitter.is_zero()),
        ("reorder", f.reorder > 0.0),
        ("duplicate", f.duplicate > 0.0),
        ("corrupt", f.corrupt > 0.0),
    ] {
        if on {
            why.push(format!(
                "backend {backend}: fault {key} needs the kernel's netem qdisc, which this kernel lacks ({at})"
            ));
        }
    }
    why
}

/// The faults in force on each link after applying `action` to `faults`.
pub(crate) fn track_faults(faults: &mut HashMap<LinkRef, LinkFault>, action: &StepAction) {
    match action {
        StepAction::Fault { link, fault } => {
            faults.insert(*link, *fault);
        }
        StepAction::Clear(link) => {
            faults.remove(link);
        }
        _ => {}
    }
}

/// The addresses of the bridge endpoints that leave their network in a
/// step from `before` to `after`: every endpoint of a stopped, restarted
/// or removed container, a disconnected one, and any whose address
/// changed. Docker's bridge driver deletes their conntrack entries then
/// (see [`crate::engine::ConntrackState::forget_endpoint`]); joining
/// deletes nothing (both observed on Docker 20.10.24).
pub(crate) fn leaving_addrs(before: &Plan, after: &Plan, action: &StepAction) -> Vec<IpAddr> {
    leaving_endpoints(before, after, action)
        .into_iter()
        .map(|(_, ip)| ip)
        .collect()
}

/// [`leaving_addrs`] with each address's machine.
pub(crate) fn leaving_endpoints(
    before: &Plan,
    after: &Plan,
    action: &StepAction,
) -> Vec<(usize, IpAddr)> {
    let (before, after) = (running_view(before), running_view(after));
    let restarted = match action {
        StepAction::Restart(c) => Some(*c),
        _ => None,
    };
    let mut out = Vec::new();
    for (i, c) in before.containers.iter().enumerate() {
        for e in &c.endpoints {
            if before.networks[e.network].driver != Driver::Bridge {
                continue;
            }
            let stays = restarted != Some(i)
                && after.containers.get(i).is_some_and(|a| {
                    a.endpoints
                        .iter()
                        .any(|x| x.network == e.network && x.ip == e.ip && x.ip6 == e.ip6)
                });
            if !stays {
                let ips =
                    e.ip.map(IpAddr::V4)
                        .into_iter()
                        .chain(e.ip6.map(IpAddr::V6));
                out.extend(ips.map(|ip| (c.machine, ip)));
            }
        }
    }
    out
}

/// The plan as the data path sees it: a stopped container has no
/// interfaces (Docker removes its veths), its addresses stay reserved.
pub(crate) fn running_view(plan: &Plan) -> Plan {
    let mut p = plan.clone();
    for c in &mut p.containers {
        if !c.running {
            c.endpoints.clear();
        }
    }
    p
}
