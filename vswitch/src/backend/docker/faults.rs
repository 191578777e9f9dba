//! Link faults on the docker backend: the kernel backend's code
//! (`backend::linux::faults`, one implementation) run in the namespaces of
//! the docker world. A container's interfaces are in its network namespace
//! (`/proc/PID/ns/net`, adopted at build and again after each start), an
//! external's and the lan's in the run's namespaces, and a machine's uplink
//! `eth0` in the daemon's namespace, where the run wires it (`lan.rs`).
//! So the same faults are set (down, loss, rate, MTU) and the same are
//! refused by name (what needs netem, which this kernel lacks). As on the
//! kernel backend, loss comes from nftables `numgen random`, which the
//! scenario's `seed` cannot seed: not repeatable run to run.
//!
//! The shared daemon's namespace outlives the run, and a netdev table stays
//! when its device goes: the uplink's fault table is removed at teardown
//! ([`remove_uplink_faults`]).

use crate::netns::NetNs;
use crate::scenario::plan::{Plan, StepAction};

/// What the docker backend cannot carry out of a step, one reason each.
pub(crate) fn refusals(_plan: &Plan, action: &StepAction, at: &str) -> Vec<String> {
    let faulting = matches!(action, StepAction::Fault { .. } | StepAction::Clear(_));
    if faulting && super::mapped() {
        return vec![format!(
            "backend docker: {} steps on daemons mapped with --docker-host not supported (their namespaces are not this run's) ({at})",
            action.name()
        )];
    }
    match action {
        StepAction::Fault { fault, .. } => {
            crate::backend::common::steps::netem_refusals("docker", fault, at)
        }
        _ => Vec::new(),
    }
}

/// Removes the fault table of the shared daemon's uplink (absent is fine).
pub(super) fn remove_uplink_faults() -> Result<(), crate::backend::common::BuildError> {
    let ns = NetNs::open(super::DAEMON_NETNS)
        .map_err(crate::backend::common::BuildError::at("daemon namespace"))?;
    crate::backend::linux::faults::remove_table(&ns, super::UPLINK)
}
