//! A world on daemons of its own (see [`super::daemon`]): one dockerd per
//! machine in the machine's namespace (created by World as on the other
//! backends, `<run>-m-<name>`), its uplink `eth0` on the run's lan, the
//! image imported into each, and a swarm of them when the scenario has
//! overlays: the first machine `swarm init`s on its lan address, the others
//! join it as workers; overlays are created `Attachable` on the manager.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use ipnet::Ipv4Net;

use super::daemon::OwnDaemon;
use super::lan::plug;
use super::{Dataplane, ensure_image};
use crate::backend::common::{BuildError, Namespaces};
use crate::backend::linux::in_ns_boxed;
use crate::scenario::plan::{Driver, Node, Plan};
use crate::sys::sysctl::sysctl_set;

/// Candidate default address pools of the swarm (its `ingress` network's
/// subnet comes from there): the first that no scenario subnet or lan touches.
const SWARM_POOLS: &[&str] = &["10.255.0.0/16", "100.127.0.0/16", "172.31.0.0/16"];

impl Dataplane {
    /// Starts the daemons, wires the lan, forms the swarm, then builds
    /// networks and containers as on the shared daemon.
    pub(super) fn build_own(
        &mut self,
        world: &mut Namespaces,
        plan: &Plan,
        progress: &dyn Fn(&str),
    ) -> Result<(), BuildError> {
        progress(&format!("starting {} dockerd", plan.machines.len()));
        let t = Instant::now();
        self.clients.clear();
        for (i, m) in plan.machines.iter().enumerate() {
            let ns = world.ns(Node::Machine(i)).name().to_string();
            let d = OwnDaemon::spawn(&self.run, i, m, &ns).map_err(|source| BuildError {
                step: format!("dockerd of machine {}", m.name),
                source,
            })?;
            self.clients.push(d.client.clone());
            self.daemons.push(d);
        }
        for (i, d) in self.daemons.iter_mut().enumerate() {
            d.wait_ready().map_err(|source| BuildError {
                step: format!("dockerd of machine {}", plan.machines[i].name),
                source,
            })?;
        }
        tracing::debug!(ms = t.elapsed().as_millis() as u64, "setup: daemons answer");
        progress(&format!(
            "{} dockerd up in {} ms",
            plan.machines.len(),
            t.elapsed().as_millis()
        ));
        let v = self.clients[0]
            .version()
            .map_err(BuildError::at("docker daemon"))?;
        self.engine_version = v.version;
        let clients = self.clients.clone();
        std::thread::scope(|s| {
            let jobs: Vec<_> = clients
                .iter()
                .map(|c| s.spawn(move || ensure_image(c)))
                .collect();
            jobs.into_iter()
                .map(|j| {
                    j.join().unwrap_or_else(|_| {
                        Err(BuildError {
                            step: "image import".into(),
                            source: "its thread panicked".into(),
                        })
                    })
                })
                .collect::<Result<Vec<()>, BuildError>>()
        })?;
        progress("wiring lan and the machine uplinks");
        self.build_lan(world, plan)?;
        if plan.networks.iter().any(|n| n.driver == Driver::Overlay) {
            progress("forming the swarm");
            self.form_swarm(plan)?;
        }
        self.networks_and_containers(world, plan, progress)
    }

    /// Machines mapped to existing daemons (`--docker-host`): their
    /// hosts' namespaces adopted under the run's machine names, no lan
    /// wired (it is the hosts' own network), then networks and containers.
    pub(super) fn build_mapped(
        &mut self,
        world: &mut Namespaces,
        plan: &Plan,
        progress: &dyn Fn(&str),
    ) -> Result<(), BuildError> {
        self.mapped = true;
        self.clients.clear();
        let mut hosts = Vec::new();
        for m in &plan.machines {
            let step = format!("machine {}", m.name);
            let host = super::hosts::host_of(&m.name).ok_or_else(|| BuildError {
                step: step.clone(),
                source: "no --docker-host".into(),
            })?;
            let client = host
                .client()
                .map_err(|source| BuildError { step, source })?;
            hosts.push(host);
            self.clients.push(client);
        }
        super::hosts::record(&self.run, &hosts)
            .map_err(BuildError::at("recording the --docker-host daemons"))?;
        for (i, m) in plan.machines.iter().enumerate() {
            let endpoint = self.clients[i].endpoint();
            let step = format!("machine {} at {endpoint}", m.name);
            let pid = super::hosts::daemon_pid(endpoint).map_err(|source| BuildError {
                step: step.clone(),
                source,
            })?;
            let name = self
                .run
                .netns_name(crate::run_id::NodeKind::Machine, &m.name);
            let ns = super::lan::adopt_pid_netns(pid, &name)
                .map_err(|source| BuildError { step, source })?;
            world.adopt(Node::Machine(i), ns);
        }
        let v = self.clients[0]
            .version()
            .map_err(BuildError::at("docker daemon"))?;
        self.engine_version = v.version;
        for c in &self.clients {
            ensure_image(c)?;
        }
        progress("machines mapped to --docker-host daemons");
        self.networks_and_containers(world, plan, progress)
    }

    /// Each machine's uplink `eth0` in its namespace, as the kernel
    /// backend wires it: the lan MAC, its addresses, the default route via
    /// the `gateway = true` external.
    pub(super) fn plug_machines(
        &mut self,
        world: &Namespaces,
        plan: &Plan,
    ) -> Result<(), BuildError> {
        let lan = self
            .lan
            .as_ref()
            .and_then(|l| l.ns())
            .ok_or_else(|| BuildError {
                step: "lan".into(),
                source: "no lan namespace".into(),
            })?;
        for (i, m) in plan.machines.iter().enumerate() {
            let ns = world
                .ns(Node::Machine(i))
                .try_clone()
                .map_err(BuildError::at(format!("machine {}", m.name)))?;
            in_ns_boxed(&ns, "machine namespace: IPv6 DAD off", || {
                for scope in ["all", "default"] {
                    sysctl_set(&format!("net.ipv6.conf.{scope}.accept_dad"), "0")?;
                }
                Ok(())
            })?;
            let up = super::lan_interface(&self.topology, i)?;
            plug(lan, &format!("m{i}"), &ns, up).map_err(|source| BuildError {
                step: format!("uplink eth0 of machine {}", m.name),
                source,
            })?;
        }
        Ok(())
    }

    /// `docker swarm init` on the first machine's lan address, `docker
    /// swarm join` of the others.
    fn form_swarm(&mut self, plan: &Plan) -> Result<(), BuildError> {
        let pool = swarm_pool(plan)?;
        let manager = plan.machines[0].ip.to_string();
        self.clients[0]
            .swarm_init(&manager, &pool)
            .map_err(BuildError::at(format!(
                "swarm init on machine {}",
                plan.machines[0].name
            )))?;
        let token = self.clients[0]
            .swarm_worker_token()
            .map_err(BuildError::at("swarm join token"))?;
        for (i, m) in plan.machines.iter().enumerate().skip(1) {
            self.clients[i]
                .swarm_join(&m.ip.to_string(), &manager, &token)
                .map_err(BuildError::at(format!("swarm join of machine {}", m.name)))?;
        }
        // A worker attaches containers to overlays only once the manager
        // has it ready (before that: "attaching to network failed").
        let end = Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let ready = self.clients[0]
                .swarm_ready_nodes()
                .map_err(BuildError::at("swarm nodes"))?;
            if ready == plan.machines.len() {
                break;
            }
            if Instant::now() > end {
                return Err(BuildError {
                    step: "swarm".into(),
                    source: format!("{ready} of {} nodes ready after 60 s", plan.machines.len())
                        .into(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(())
    }
}

/// The `IPRange` an overlay is created with on Docker: a /29 of its
/// subnet holding no address of the plan. Every container's address is
/// given explicitly, but each machine attaching a container to an overlay
/// also takes one for its load-balancer endpoint (`lb-<network>`), first
/// free in the range: in the plan's own range that is the next container's
/// address ("could not allocate IP from IPAM: Address already in use").
pub(super) fn overlay_lb_range(plan: &Plan, net: usize) -> Option<Ipv4Net> {
    let n = &plan.networks[net];
    let s = n.primary()?;
    let taken: Vec<Ipv4Addr> = plan
        .containers
        .iter()
        .flat_map(|c| c.endpoints.iter())
        .filter(|e| e.network == net)
        .filter_map(|e| e.ip)
        .chain(s.gateway)
        .chain(n.aux_addresses.values().filter_map(|a| match a {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        }))
        .collect();
    if s.net.prefix_len() > 28 {
        return None;
    }
    let blocks = s.net.subnets(29).ok()?.collect::<Vec<_>>();
    blocks
        .into_iter()
        .rev()
        .find(|b| !taken.iter().any(|a| b.contains(a)))
}

/// The first of [`SWARM_POOLS`] that overlaps nothing of the scenario.
fn swarm_pool(plan: &Plan) -> Result<String, BuildError> {
    let used: Vec<Ipv4Net> = plan
        .networks
        .iter()
        .flat_map(|n| n.subnets.iter().map(|s| s.net))
        .chain([plan.lan])
        .collect();
    let overlaps = |a: &Ipv4Net, b: &Ipv4Net| a.contains(&b.network()) || b.contains(&a.network());
    SWARM_POOLS
        .iter()
        .find(|p| {
            let p: Ipv4Net = p
                .parse()
                .unwrap_or_else(|_| Ipv4Net::from(Ipv4Addr::UNSPECIFIED));
            !used.iter().any(|u| overlaps(&p, u))
        })
        .map(|p| p.to_string())
        .ok_or_else(|| BuildError {
            step: "swarm address pool".into(),
            source: format!(
                "every candidate ({}) overlaps a scenario subnet",
                SWARM_POOLS.join(", ")
            )
            .into(),
        })
}
