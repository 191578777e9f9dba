//! Steps on a running world ([`World::apply_step`]) and what each backend
//! refuses of them, said before anything is built.
//!
//! On every backend but docker the embedded DNS records follow every step
//! at once (the table is swapped under the running servers, DNS-23,
//! DNS-26) and a restarted or started container's services start again.
//! Docker: the daemon does connect, disconnect, stop, start and restart.
//! Userspace: connect, disconnect, stop, start and restart rebuild the
//! engine's data path from the world as it now stands (interfaces of the
//! container appear or go, published ports follow the container; learned
//! MACs start afresh). The engine's conntrack, NAT bindings included, is
//! carried into the new engine as the host's conntrack outlives the change
//! on Docker, minus what Docker's bridge driver deletes when an endpoint
//! leaves: every flow whose reply tuple has the endpoint's address
//! ([`leaving_addrs`]; a container's own masqueraded flows stay, so their
//! replies reach whoever holds its address next, BUG-9). Faults go to the
//! running engine. Kernel: see `kernel::topology` and `linux::faults`.

use std::net::IpAddr;

use crate::scenario::plan::{BackendKind, LinkFault, LinkRef, Node, Plan, StepAction};

use super::common::BuildError;
use super::common::steps::{
    leaving_addrs, leaving_endpoints, netem_refusals, running_view, track_faults,
};
use super::{Dataplane, World, userspace};

/// Why a step could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The data path could not be rebuilt for the new topology, or a
    /// kernel fault could not be set.
    #[error("{0}")]
    Rebuild(#[from] BuildError),
    /// A container's services could not be restarted.
    #[error("services of {container}: {source}")]
    Services {
        /// The container.
        container: String,
        /// Cause.
        source: crate::probe::ProbeError,
    },
    /// The engine did not take the fault.
    #[error("engine: {0}")]
    Engine(String),
    /// This world's backend cannot carry out the action (refused before
    /// the build; seen here only when a live world is asked directly).
    #[error("backend {backend} cannot carry out {action} steps")]
    Unsupported {
        /// The backend.
        backend: BackendKind,
        /// The action's key.
        action: &'static str,
    },
}

/// Whether an action changes which interfaces exist.
fn changes_topology(a: &StepAction) -> bool {
    matches!(
        a,
        StepAction::Connect { .. }
            | StepAction::Disconnect { .. }
            | StepAction::Stop(_)
            | StepAction::Start(_)
            | StepAction::Restart(_)
            | StepAction::Scale { .. }
    )
}

/// Whether any step of `plan` changes the topology (the DNS fast path's
/// fixed answers are then not loaded).
pub(crate) fn has_topology_steps(plan: &Plan) -> bool {
    plan.steps.iter().any(|s| changes_topology(&s.action))
}

/// What `backend` cannot carry out of `plan`'s steps, one reason per item.
pub(crate) fn refusals(plan: &Plan, backend: BackendKind) -> Vec<String> {
    let mut why = Vec::new();
    for (i, s) in plan.steps.iter().enumerate() {
        let at = format!("step[{i}] `{}`", s.name);
        match backend {
            BackendKind::Userspace => {
                if !matches!(s.action, StepAction::Wait(_))
                    && let Some(m) = plan.machines.iter().find(|m| m.backend.is_some())
                {
                    why.push(format!(
                        "backend userspace: {} steps in a mixed run (machine `{}` sets backend) not supported yet ({at})",
                        s.action.name(),
                        m.name
                    ));
                }
            }
            BackendKind::Kernel => {
                if let StepAction::Fault { fault, .. } = &s.action {
                    why.extend(netem_refusals("kernel", fault, &at));
                }
                let before = plan.after_steps(i);
                if let Some(r) = super::kernel::topology::refusal(&before, &s.action) {
                    why.push(format!("backend kernel: {r} ({at})"));
                }
                if crate::tools::find("conntrack").is_none()
                    && !leaving_endpoints(&before, &plan.after_steps(i + 1), &s.action).is_empty()
                {
                    why.push(format!(
                        "backend kernel: deleting a leaving endpoint's conntrack flows as Docker does needs {} ({at})",
                        crate::tools::missing("conntrack")
                    ));
                }
            }
            BackendKind::Docker => {
                why.extend(super::docker::faults::refusals(plan, &s.action, &at))
            }
            BackendKind::Sim => {}
        }
    }
    why
}

impl World {
    /// Carries out one step's action on the running world. `before` is the
    /// world as it stood, `after` as it must stand (see
    /// [`Plan::after_steps`]). Returns once the change has taken effect.
    pub fn apply_step(
        &mut self,
        before: &Plan,
        after: &Plan,
        action: &StepAction,
    ) -> Result<(), StepError> {
        let backend = self.backend;
        if let Some(sim) = &self.sim {
            let leaving = leaving_addrs(before, after, action);
            let mut w = sim.lock().unwrap_or_else(|p| p.into_inner());
            return w
                .apply_step(
                    after,
                    action,
                    self.nodes.run().as_str(),
                    &self.opts,
                    &leaving,
                )
                .map_err(StepError::Engine);
        }
        // Kernel and docker: the same faults in the nodes' namespaces.
        let ns_fault = matches!(backend, BackendKind::Kernel | BackendKind::Docker)
            && matches!(action, StepAction::Fault { .. } | StepAction::Clear(_));
        if let (true, StepAction::Fault { link, .. } | StepAction::Clear(link)) = (ns_fault, action)
        {
            track_faults(&mut self.faults, action);
            return super::linux::faults::apply(&self.nodes, after, &self.faults, *link)
                .map_err(StepError::Rebuild);
        }
        if backend == BackendKind::Docker {
            self.docker_step(after, action)?;
            return self.reapply_endpoint_faults(after);
        }
        match action {
            StepAction::Wait(d) => {
                // The action is time passing (MAC and conntrack aging).
                std::thread::sleep(*d);
                Ok(())
            }
            StepAction::Fault { .. } | StepAction::Clear(_) => {
                track_faults(&mut self.faults, action);
                self.push_faults(after)
            }
            _ => {
                if let Some(t) = &self.dns_table {
                    t.set(crate::dns::NameTable::from_plan(after));
                }
                if let StepAction::Restart(c) | StepAction::Stop(c) = action {
                    // Its processes end: connections to it are reset.
                    self.container_echo.remove(c);
                }
                if let StepAction::Scale { removed, .. } = action {
                    // Removed tasks' processes end with them.
                    for c in removed {
                        self.container_echo.remove(c);
                    }
                }
                if backend == BackendKind::Kernel {
                    super::kernel::topology::apply(&self.nodes, before, after, action)?;
                    for (m, ip) in leaving_endpoints(before, after, action) {
                        super::kernel::conntrack::forget_endpoint(self.ns(Node::Machine(m)), ip)?;
                    }
                    self.reapply_endpoint_faults(after)?;
                } else {
                    self.rebuild_dataplane(after, &leaving_addrs(before, after, action))?;
                }
                if let StepAction::Restart(c) | StepAction::Start(c) = action {
                    self.start_container_services(after, *c)?;
                }
                if let StepAction::Scale { added, .. } = action {
                    for (c, _) in added {
                        self.start_container_services(after, *c)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// What the report says of a step beyond its action: a partial loss on
    /// the kernel and docker backends is nftables' unseeded `numgen`, so
    /// it does not repeat run to run (the engine's does).
    pub(crate) fn step_note(&self, action: &StepAction) -> Option<&'static str> {
        match action {
            StepAction::Fault { fault, .. }
                if fault.loss > 0.0
                    && fault.loss < 1.0
                    && matches!(self.backend, BackendKind::Kernel | BackendKind::Docker) =>
            {
                Some(super::linux::faults::LOSS_NOT_SEEDED)
            }
            _ => None,
        }
    }

    /// Kernel and docker: interfaces a topology step made anew carry no
    /// fault yet; the endpoint faults in force are set again.
    fn reapply_endpoint_faults(&mut self, after: &Plan) -> Result<(), StepError> {
        let links: Vec<LinkRef> = self.faults.keys().copied().collect();
        for l in links {
            if matches!(l, LinkRef::Endpoint { .. }) {
                super::linux::faults::apply(&self.nodes, after, &self.faults, l)?;
            }
        }
        Ok(())
    }

    /// A step on the docker backend: the daemon does it (its own DNS
    /// follows), or it is refused.
    fn docker_step(&mut self, after: &Plan, action: &StepAction) -> Result<(), StepError> {
        if let StepAction::Stop(c) | StepAction::Start(c) | StepAction::Restart(c) = action {
            return self.docker_lifecycle(after, action, *c);
        }
        let Some(Dataplane::Docker(d)) = self.dataplane.as_ref() else {
            return Err(StepError::Unsupported {
                backend: self.backend,
                action: action.name(),
            });
        };
        match action {
            StepAction::Wait(t) => {
                std::thread::sleep(*t);
                Ok(())
            }
            StepAction::Connect {
                container,
                endpoint,
            } => Ok(d.connect(after, *container, endpoint)?),
            StepAction::Disconnect { container, network } => {
                Ok(d.disconnect(after, *container, *network)?)
            }
            _ => Err(StepError::Unsupported {
                backend: self.backend,
                action: action.name(),
            }),
        }
    }

    /// `docker stop`, `start`, `restart`: a started container lives in a
    /// new namespace, adopted under its old name; its services start there.
    fn docker_lifecycle(
        &mut self,
        after: &Plan,
        action: &StepAction,
        c: usize,
    ) -> Result<(), StepError> {
        let stop = !matches!(action, StepAction::Start(_));
        let start = !matches!(action, StepAction::Stop(_));
        if stop {
            self.container_echo.remove(&c);
        }
        let ns = {
            let Some(Dataplane::Docker(d)) = self.dataplane.as_ref() else {
                return Err(StepError::Unsupported {
                    backend: self.backend,
                    action: action.name(),
                });
            };
            if stop {
                d.stop_container(after, c)?;
            }
            if start {
                Some(d.start_container(after, c)?)
            } else {
                None
            }
        };
        if let Some(ns) = ns {
            self.nodes.replace(Node::Container(c), ns);
            self.start_container_services(after, c)?;
        }
        Ok(())
    }

    /// Stops the data path and builds it again for `plan`, keeping the
    /// faults in force and the engine's conntrack minus what Docker deletes
    /// for the endpoints that left (`leaving`); the old one's counters are
    /// kept for the report.
    fn rebuild_dataplane(&mut self, plan: &Plan, leaving: &[IpAddr]) -> Result<(), StepError> {
        let mut carried = crate::engine::ConntrackState::default();
        if let Some(d) = self.dataplane.take() {
            let (metrics, ct) = d.stop_for_rebuild();
            self.earlier_metrics.push(metrics);
            carried = ct;
        }
        for ip in leaving {
            carried.forget_endpoint(*ip);
        }
        let built = userspace::Dataplane::build_carrying(
            &self.nodes,
            &running_view(plan),
            &self.opts,
            carried,
        )?;
        self.dataplane = Some(Dataplane::Userspace(built));
        self.push_faults(plan)
    }

    /// Hands the faults in force to the engine.
    fn push_faults(&mut self, plan: &Plan) -> Result<(), StepError> {
        let faults: Vec<(LinkRef, LinkFault)> = self.faults.iter().map(|(l, f)| (*l, *f)).collect();
        match self.dataplane.as_mut() {
            Some(Dataplane::Userspace(d)) => d
                .set_faults(&running_view(plan), &faults)
                .map_err(StepError::Engine),
            _ => Err(StepError::Unsupported {
                backend: self.backend,
                action: "fault",
            }),
        }
    }

    /// (Re)starts a container's echo services.
    fn start_container_services(&mut self, plan: &Plan, c: usize) -> Result<(), StepError> {
        let ctr = &plan.containers[c];
        if ctr.serve.is_empty() {
            return Ok(());
        }
        let s = crate::probe::start_echo(self.ns(Node::Container(c)), &ctr.serve, &ctr.name)
            .map_err(|source| StepError::Services {
                container: ctr.name.clone(),
                source,
            })?;
        self.container_echo.insert(c, s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn stale() -> Plan {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        crate::scenario::load_file(&dir.join("steps-stale-conntrack.toml")).unwrap()
    }

    fn leaving(p: &Plan, k: usize) -> Vec<String> {
        leaving_addrs(&p.after_steps(k), &p.after_steps(k + 1), &p.steps[k].action)
            .iter()
            .map(IpAddr::to_string)
            .collect()
    }

    #[test]
    fn leaving_endpoints_are_those_docker_clears() {
        let p = stale();
        let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["c1-leaves", "c3-takes-.2", "c1-back", "c3-restarts"]
        );
        assert_eq!(leaving(&p, 0), ["10.68.0.2"], "a disconnect");
        assert!(leaving(&p, 1).is_empty(), "joining clears nothing");
        assert!(leaving(&p, 2).is_empty());
        let mut r = leaving(&p, 3);
        r.sort();
        assert_eq!(r, ["10.68.0.2", "10.68.9.2"], "a restart: every endpoint");
    }

    #[test]
    fn docker_sets_what_the_kernel_sets_and_refuses_netem_by_name() {
        let mut p = stale();
        p.steps.truncate(1);
        let f = |fault: LinkFault| StepAction::Fault {
            link: LinkRef::Lan,
            fault,
        };
        p.steps[0].action = f(LinkFault {
            loss: 0.3,
            down: true,
            mtu: Some(1400),
            rate_bps: Some(1_000_000),
            ..LinkFault::default()
        });
        assert!(refusals(&p, BackendKind::Docker).is_empty());
        p.steps[0].action = f(LinkFault {
            delay: std::time::Duration::from_millis(5),
            ..LinkFault::default()
        });
        let why = refusals(&p, BackendKind::Docker);
        assert_eq!(why.len(), 1);
        assert!(
            why[0].starts_with("backend docker: fault delay_ms needs the kernel's netem qdisc"),
            "{why:?}"
        );
    }
}
