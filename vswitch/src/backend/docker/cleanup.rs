//! Ownership and removal: the lock that serializes runs on the shared
//! daemon, and what a run (live, dead or killed) has there.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use super::api::Client;
use super::lan::uplink_guard;
use super::{DAEMON_NETNS, LABEL_RUN, LOCK_FILE, UPLINK, UPLINK_OWNER, client};
use crate::backend::common::BuildError;
use crate::netns;
use crate::run_id::{RunId, RunRecord};

/// Takes the docker lock, waiting for another run to finish.
pub(super) fn acquire_lock(wait: Duration) -> Result<File, BuildError> {
    let err = BuildError::at(format!("lock {LOCK_FILE}"));
    if let Some(dir) = Path::new(LOCK_FILE).parent() {
        std::fs::create_dir_all(dir).map_err(BuildError::at(format!("lock {LOCK_FILE}")))?;
    }
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .map_err(err)?;
    let end = std::time::Instant::now() + wait;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(BuildError {
                    step: format!("lock {LOCK_FILE}"),
                    source: format!(
                        "another docker run held it for {} s (a world kept up with `vswitch up --backend docker`?)",
                        wait.as_secs()
                    )
                    .into(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(BuildError {
                    step: format!("lock {LOCK_FILE}"),
                    source: Box::new(e),
                });
            }
        }
    }
}

/// Removes the containers and networks labelled as run `run`'s; returns
/// their names.
pub(super) fn remove_objects(client: &Client, run: &RunId) -> Vec<String> {
    let mut removed = Vec::new();
    let mine = |label: &str| label == run.as_str();
    if let Ok(list) = client.containers_labeled(LABEL_RUN) {
        for c in list.into_iter().filter(|c| mine(&c.label)) {
            match client.container_remove(&c.id) {
                Ok(()) => removed.push(format!("docker container {}", c.name)),
                Err(e) => {
                    tracing::warn!(container = %c.name, error = %e, "cannot remove docker container")
                }
            }
        }
    }
    // Another cleaner (a docker run that just took the lock, or a parallel
    // `vswitch cleanup`) may be removing the same containers: an error here
    // can mean "in progress". Wait until they are really gone, so that the
    // networks can go and the caller can rely on what it was told.
    wait_gone(|| {
        client
            .containers_labeled(LABEL_RUN)
            .map(|l| l.iter().any(|c| mine(&c.label)))
            .unwrap_or(false)
    });
    if let Ok(list) = client.networks_labeled(LABEL_RUN) {
        for n in list.into_iter().filter(|n| mine(&n.label)) {
            match client.network_remove(&n.id) {
                Ok(()) => removed.push(format!("docker network {}", n.name)),
                Err(e) => {
                    tracing::warn!(network = %n.name, error = %e, "cannot remove docker network")
                }
            }
        }
    }
    wait_gone(|| {
        client
            .networks_labeled(LABEL_RUN)
            .map(|l| l.iter().any(|n| mine(&n.label)))
            .unwrap_or(false)
    });
    removed
}

/// Polls `present` until it is false or 30 s have passed.
fn wait_gone(mut present: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while present() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes what run `id` has in the daemon: its containers and networks,
/// and the daemon-side uplink when that run owns it. Quiet when no daemon
/// runs. Used by the signal path and `vswitch cleanup` (its lan namespace
/// carries the run id and goes with the run's other namespaces).
pub fn remove_run(id: &RunId) -> Vec<String> {
    // The run's own daemons (and their containers) first.
    let mut removed = super::daemon::remove(id);
    removed.extend(super::hosts::remove(id));
    if Path::new(&super::socket()).exists() {
        removed.extend(remove_objects(&client(), id));
    }
    if uplink_owner().as_ref() == Some(id) {
        remove_uplink(uplink_guard(), &mut removed);
    }
    removed
}

/// Removes the shared daemon's uplink (its guard), its fault table and the
/// owner file, saying so in `removed`.
pub(super) fn remove_uplink(uplink: netns::DeleteOnDrop, removed: &mut Vec<String>) {
    if let Err(e) = super::faults::remove_uplink_faults() {
        eprintln!("vswitch: {e}");
    }
    match uplink.delete() {
        Ok(()) => removed.push(format!("{DAEMON_NETNS}/{UPLINK}")),
        Err(e) => {
            tracing::warn!(link = UPLINK, namespace = DAEMON_NETNS, error = %e, "cannot remove link")
        }
    }
    let _ = std::fs::remove_file(UPLINK_OWNER);
}

pub(super) fn uplink_owner() -> Option<RunId> {
    RunId::parse(std::fs::read_to_string(UPLINK_OWNER).ok()?.trim())
}

/// Run ids that own something in the daemon (containers, networks, the
/// uplink), live or not.
pub fn leftover_runs() -> Vec<RunId> {
    let mut ids: Vec<RunId> = uplink_owner().into_iter().collect();
    ids.extend(super::daemon::leftover_runs());
    ids.extend(super::hosts::leftover_runs());
    if Path::new(&super::socket()).exists() {
        let c = client();
        let labels = c
            .containers_labeled(LABEL_RUN)
            .unwrap_or_default()
            .into_iter()
            .chain(c.networks_labeled(LABEL_RUN).unwrap_or_default())
            .map(|o| o.label);
        ids.extend(labels.filter_map(|l| RunId::parse(&l)));
    }
    ids.sort();
    ids.dedup();
    ids
}

/// Under the lock: removes what runs that are no longer live left in the
/// daemon (never `me`, never a live run's).
pub(super) fn remove_dead_leftovers(me: &RunId) {
    let live: Vec<RunId> = RunRecord::all()
        .into_iter()
        .filter(RunRecord::is_live)
        .map(|r| r.id)
        .collect();
    for id in leftover_runs() {
        if &id != me && !live.contains(&id) {
            let removed = remove_run(&id);
            if !removed.is_empty() {
                eprintln!(
                    "vswitch: removed leftovers of dead run {id}: {}",
                    removed.join(", ")
                );
            }
        }
    }
}

/// What run `id` still has on the docker side: daemon objects labelled as
/// its, its namespaces, the uplink (tests look for leaks with this).
pub fn traces(id: &RunId) -> Vec<String> {
    let mut v = Vec::new();
    if Path::new(&super::socket()).exists() {
        let c = client();
        v.extend(
            c.containers_labeled(LABEL_RUN)
                .unwrap_or_default()
                .into_iter()
                .chain(c.networks_labeled(LABEL_RUN).unwrap_or_default())
                .filter(|o| o.label == id.as_str())
                .map(|o| format!("docker object {}", o.name)),
        );
    }
    v.extend(netns::list(&format!("{id}-")));
    v.extend(super::daemon::has_traces(id));
    v.extend(super::hosts::traces(id));
    if uplink_owner().as_ref() == Some(id) {
        v.push(UPLINK_OWNER.into());
    }
    v
}
