//! Swarm services (`[[service]]`, docker-semantics SVC-1, SVC-5, DNS-25)
//! on the run's own daemons: real `docker service`s, in `dnsrr` mode
//! (VIPs and the routing mesh need IP_VS, which this kernel lacks: those
//! are refused by name in `backend::services`).
//!
//! # Addresses
//!
//! A task's address cannot be asked for: Engine 20.10's swarm allocator
//! hands out overlay addresses *serially* (the next free one after the
//! last it gave, wrapping at the end of the network's range; observed:
//! after tasks .2-.5 were removed, the next task got .8, not .2), and each
//! node takes one more, its load-balancer endpoint `lb-<network>`, the
//! moment it first runs something on the network (and gives it back when
//! it runs nothing there any more). The plan gives a service's tasks the
//! lowest addresses, in file and task order. So, for each overlay with
//! services, before any container or task is on it ([`Prime`]):
//!
//! 1. the network is created with an `IPRange` starting at the subnet,
//!    just large enough for the services' addresses and `2 × machines`
//!    addresses at its top that nothing of the plan holds;
//! 2. a *walker* service with as many tasks as the range has free
//!    addresses below that top takes all of them at once; its tasks spread
//!    over every machine, whose load-balancer endpoints then take the next
//!    addresses (the lower half of the top);
//! 3. one *keeper* container per machine takes an address of the upper
//!    half explicitly (an explicit address does not move the serial
//!    cursor), so no machine ever gives its endpoint back;
//! 4. the walker goes; the cursor now stands at the end of the range and
//!    the next address given wraps to the range's first free one.
//!
//! Then the `[[container]]`s are created (explicit addresses, as always),
//! and each service with 0 replicas, scaled up one task at a time: every
//! task takes the lowest free address, as in the plan. Placement (task N
//! on machine N of the service's `machines`, round robin): before task N
//! is added, every other node is set to availability `pause` (no new
//! tasks; the running ones stay), so the scheduler has one choice. All
//! nodes are `active` again afterwards. Every task's machine and addresses
//! are checked against the plan, and its namespace is adopted as the
//! plan's container `NAME.N` (echo services, probes and `vswitch exec` as
//! for any container; the greeting says `by NAME.N`).
//!
//! Services, walkers and keepers carry the run's label; they live in the
//! run's own daemons, whose teardown (also `vswitch cleanup` after a
//! SIGKILL) kills the daemons and removes their data roots, swarm state
//! included.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use super::lan::adopt_pid_netns;
use super::{Dataplane, LABEL_RUN, image};
use crate::backend::common::{BuildError, Namespaces};
use crate::run_id::RunId;
use crate::scenario::plan::{Driver, EndpointMode, Node, Plan, PublishMode};

/// How long one swarm step (tasks running, endpoints, tasks gone) may take.
const SWARM_WAIT: Duration = Duration::from_secs(90);

/// What priming one overlay takes ([module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Prime {
    /// The plan network.
    pub net: usize,
    /// The network's `IPRange`.
    pub range: Ipv4Net,
    /// Tasks of the walker service.
    pub walkers: usize,
    /// Where the machines' load-balancer endpoints land (any order).
    pub lbs: Vec<Ipv4Addr>,
    /// The keeper container of machine `i` holds `keepers[i]`.
    pub keepers: Vec<Ipv4Addr>,
}

/// The overlays services attach to, in network order.
fn service_networks(plan: &Plan) -> Vec<usize> {
    let mut v: Vec<usize> = plan
        .services
        .iter()
        .flat_map(|s| s.networks.iter().map(|n| n.network))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The primes of every overlay with services; an error names the network
/// whose subnet has no room for them.
pub(super) fn primes(plan: &Plan) -> Result<Vec<Prime>, String> {
    service_networks(plan)
        .into_iter()
        .map(|n| {
            prime(plan, n).ok_or_else(|| {
                format!(
                    "network {}: no range of its subnet holds the services' addresses and {} free addresses for the machines' load-balancer endpoints",
                    plan.networks[n].name,
                    2 * plan.machines.len()
                )
            })
        })
        .collect()
}

/// The prime of overlay `net`: the smallest range from the subnet's start
/// holding the services' addresses, with `2 × machines` unplanned
/// addresses at its top and at least one walker per machine.
pub(super) fn prime(plan: &Plan, net: usize) -> Option<Prime> {
    let n = &plan.networks[net];
    let s = n.primary()?;
    let k = plan.machines.len();
    let on_net = |c: usize| {
        plan.containers[c]
            .endpoints
            .iter()
            .filter(move |e| e.network == net)
            .filter_map(|e| e.ip)
    };
    let mut wanted: Vec<Ipv4Addr> = Vec::new();
    for svc in &plan.services {
        wanted.extend(
            svc.networks
                .iter()
                .filter(|x| x.network == net)
                .filter_map(|x| x.vip),
        );
        for &t in &svc.tasks {
            wanted.extend(on_net(t));
        }
    }
    let reserved: HashSet<Ipv4Addr> = s
        .gateway
        .into_iter()
        .chain(n.aux_addresses.values().filter_map(|a| match a {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        }))
        .collect();
    let planned: HashSet<Ipv4Addr> = (0..plan.containers.len())
        .flat_map(on_net)
        .chain(reserved.iter().copied())
        .collect();
    for len in (s.net.prefix_len()..=30).rev() {
        let range = Ipv4Net::new(s.net.network(), len).ok()?;
        if !wanted.iter().all(|a| range.contains(a)) {
            continue;
        }
        // Docker never gives the subnet's own network and broadcast addresses.
        let free: Vec<Ipv4Addr> = range
            .hosts()
            .chain([range.network(), range.broadcast()])
            .filter(|a| *a != s.net.network() && *a != s.net.broadcast())
            .filter(|a| !reserved.contains(a))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if free.len() < 3 * k {
            continue;
        }
        let top = &free[free.len() - 2 * k..];
        if top.iter().any(|a| planned.contains(a)) {
            continue;
        }
        return Some(Prime {
            net,
            range,
            walkers: free.len() - 2 * k,
            lbs: top[..k].to_vec(),
            keepers: top[k..].to_vec(),
        });
    }
    None
}

/// Whether container `ci` is a task of a service.
pub(super) fn is_task(plan: &Plan, ci: usize) -> bool {
    plan.services.iter().any(|s| s.tasks.contains(&ci))
}

/// `POST /services/create` body of service `s`, with 0 replicas (tasks
/// are added one at a time). `nets` are the daemon's network names, `dns`
/// the tasks' upstream resolvers.
pub(super) fn service_body(
    plan: &Plan,
    s: usize,
    nets: &[String],
    run: &RunId,
    dns: &[String],
) -> Value {
    let svc = &plan.services[s];
    let networks: Vec<Value> = svc
        .networks
        .iter()
        .map(|n| {
            let mut v = json!({ "Target": nets[n.network] });
            if !n.aliases.is_empty() {
                v["Aliases"] = json!(n.aliases);
            }
            v
        })
        .collect();
    let ports: Vec<Value> = svc
        .publish
        .iter()
        .map(|p| {
            json!({
                "Protocol": p.proto.to_string(),
                "TargetPort": p.target,
                "PublishedPort": p.published,
                "PublishMode": match p.mode {
                    PublishMode::Host => "host",
                    PublishMode::Ingress => "ingress",
                },
            })
        })
        .collect();
    let mode = match svc.mode {
        EndpointMode::Dnsrr => "dnsrr",
        EndpointMode::Vip => "vip",
    };
    json!({
        "Name": svc.name,
        "Labels": { LABEL_RUN: run.as_str(), "vswitch.service": svc.name },
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": format!("{}:{}", image::IMAGE_REPO, image::IMAGE_TAG),
                "Command": ["sleep", "2000000000"],
                "Labels": { LABEL_RUN: run.as_str(), "vswitch.service": svc.name },
                "StopGracePeriod": 0,
                "DNSConfig": { "Nameservers": dns },
            },
            "Networks": networks,
            "RestartPolicy": { "Condition": "none" },
        },
        "Mode": { "Replicated": { "Replicas": 0 } },
        "EndpointSpec": { "Mode": mode, "Ports": ports },
    })
}

/// The walker service of a prime: `walkers` dnsrr tasks on the network.
pub(super) fn walker_body(p: &Prime, net_name: &str, run: &RunId) -> Value {
    let name = format!("{run}-walk-{net_name}");
    json!({
        "Name": name,
        "Labels": { LABEL_RUN: run.as_str() },
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": format!("{}:{}", image::IMAGE_REPO, image::IMAGE_TAG),
                "Command": ["sleep", "2000000000"],
                "Labels": { LABEL_RUN: run.as_str() },
                "StopGracePeriod": 0,
            },
            "Networks": [{ "Target": net_name }],
            "RestartPolicy": { "Condition": "none" },
        },
        "Mode": { "Replicated": { "Replicas": p.walkers } },
        "EndpointSpec": { "Mode": "dnsrr" },
    })
}

/// `POST /containers/create` body of a keeper holding `ip` on `net_name`.
pub(super) fn keeper_body(net_name: &str, ip: Ipv4Addr, run: &RunId, dns: &str) -> Value {
    json!({
        "Image": format!("{}:{}", image::IMAGE_REPO, image::IMAGE_TAG),
        "Cmd": ["sleep", "2000000000"],
        "Labels": { LABEL_RUN: run.as_str(), "vswitch.keeper": net_name },
        "NetworkingConfig": { "EndpointsConfig": { net_name: {
            "IPAMConfig": { "IPv4Address": ip.to_string() }
        } } },
        "HostConfig": { "NetworkMode": net_name, "Dns": [dns] },
    })
}

/// Waits for `cond` (Ok(true)) until [`SWARM_WAIT`] has passed.
fn wait_for(
    what: &str,
    mut cond: impl FnMut() -> Result<bool, BuildError>,
) -> Result<(), BuildError> {
    let end = Instant::now() + SWARM_WAIT;
    loop {
        if cond()? {
            return Ok(());
        }
        if Instant::now() > end {
            return Err(BuildError {
                step: what.to_string(),
                source: format!("not done after {} s", SWARM_WAIT.as_secs()).into(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The IPv4 address of an attachment's `Addresses` entry on network `net`.
fn attachment_ip(task: &Value, net: &str) -> Option<Ipv4Addr> {
    task["NetworksAttachments"]
        .as_array()?
        .iter()
        .find(|a| a["Network"]["Spec"]["Name"].as_str() == Some(net))?["Addresses"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|s| s.split('/').next()?.parse().ok())
}

impl Dataplane {
    /// Steps 2-4 of the [module docs](self) for every overlay with services.
    pub(super) fn prime_service_networks(
        &mut self,
        plan: &Plan,
        nets: &[String],
        silent: Ipv4Addr,
    ) -> Result<(), BuildError> {
        let primes = primes(plan).map_err(|e| BuildError {
            step: "swarm services".into(),
            source: e.into(),
        })?;
        let manager = self.clients[0].clone();
        for p in &primes {
            let name = &nets[p.net];
            let step = format!("services on {}: walker", plan.networks[p.net].name);
            let id = manager
                .service_create(&walker_body(p, name, &self.run))
                .map_err(BuildError::at(step.clone()))?;
            let lb_key = format!("lb-{name}");
            // Every machine's load-balancer endpoint, where the prime says.
            for (i, c) in self.clients.iter().enumerate() {
                let what = format!("{step}: endpoint of machine {}", plan.machines[i].name);
                wait_for(&what, || {
                    let v = c
                        .network_inspect(name)
                        .map_err(BuildError::at(what.clone()))?;
                    let Some(a) = v["Containers"][&lb_key]["IPv4Address"].as_str() else {
                        return Ok(false);
                    };
                    let ip: Option<Ipv4Addr> = a.split('/').next().and_then(|s| s.parse().ok());
                    match ip {
                        Some(ip) if p.lbs.contains(&ip) => Ok(true),
                        _ => Err(BuildError {
                            step: what.clone(),
                            source: format!(
                                "Docker gave it {a}, the backend expected one of {:?}",
                                p.lbs
                            )
                            .into(),
                        }),
                    }
                })?;
            }
            for (i, ip) in p.keepers.iter().enumerate() {
                let what = format!("{step}: keeper on machine {}", plan.machines[i].name);
                let kname = format!("{}-keep-{}-m{i}", self.run, plan.networks[p.net].name);
                let body = keeper_body(name, *ip, &self.run, &silent.to_string());
                let c = &self.clients[i];
                let kid = c
                    .container_create(&kname, &body)
                    .map_err(BuildError::at(what.clone()))?;
                c.container_start(&kid)
                    .map_err(BuildError::at(what.clone()))?;
            }
            manager
                .service_remove(&id)
                .map_err(BuildError::at(step.clone()))?;
            wait_for(&format!("{step}: its tasks gone"), || {
                let tasks = manager.tasks().map_err(BuildError::at(step.clone()))?;
                Ok(!tasks.iter().any(|t| t["ServiceID"].as_str() == Some(&id)))
            })?;
        }
        Ok(())
    }

    /// Creates every service and its tasks, one at a time on its machine
    /// ([module docs](self)); adopts the tasks' namespaces.
    pub(super) fn create_services(
        &mut self,
        world: &mut Namespaces,
        plan: &Plan,
        nets: &[String],
        ns_names: &std::collections::BTreeMap<String, String>,
        silent: Ipv4Addr,
    ) -> Result<(), BuildError> {
        let nodes: Vec<String> = self
            .clients
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.node_id().map_err(BuildError::at(format!(
                    "swarm node of machine {}",
                    plan.machines[i].name
                )))
            })
            .collect::<Result<_, _>>()?;
        let manager = self.clients[0].clone();
        let mut active = vec![true; nodes.len()];
        let r = self.create_services_on(world, plan, nets, ns_names, silent, &nodes, &mut active);
        // Every node active again, also after a failure (teardown needs none).
        for (i, a) in active.iter().enumerate() {
            if !a {
                let _ = manager.node_availability(&nodes[i], "active");
            }
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn create_services_on(
        &mut self,
        world: &mut Namespaces,
        plan: &Plan,
        nets: &[String],
        ns_names: &std::collections::BTreeMap<String, String>,
        silent: Ipv4Addr,
        nodes: &[String],
        active: &mut [bool],
    ) -> Result<(), BuildError> {
        let manager = self.clients[0].clone();
        for (s, svc) in plan.services.iter().enumerate() {
            let step = format!("service {}", svc.name);
            let first_task = svc.tasks.first().map(|&t| plan.containers[t].machine);
            let m = first_task.unwrap_or(0);
            let dns: Vec<String> = if plan.machines[m].resolvers.is_empty() {
                vec![silent.to_string()]
            } else {
                plan.machines[m]
                    .resolvers
                    .iter()
                    .map(IpAddr::to_string)
                    .collect()
            };
            let id = manager
                .service_create(&service_body(plan, s, nets, &self.run, &dns))
                .map_err(BuildError::at(step.clone()))?;
            for (k, &ci) in svc.running_tasks().iter().enumerate() {
                let c = &plan.containers[ci];
                let what = format!("task {}", c.name);
                for (i, node) in nodes.iter().enumerate() {
                    let want = i == c.machine;
                    if active[i] != want {
                        manager
                            .node_availability(node, if want { "active" } else { "pause" })
                            .map_err(BuildError::at(format!(
                                "{what}: availability of machine {}",
                                plan.machines[i].name
                            )))?;
                        active[i] = want;
                    }
                }
                manager
                    .service_scale(&id, k + 1)
                    .map_err(BuildError::at(what.clone()))?;
                let mut found = Value::Null;
                wait_for(&format!("{what}: running"), || {
                    let tasks = manager.tasks().map_err(BuildError::at(what.clone()))?;
                    let t = tasks.into_iter().find(|t| {
                        t["ServiceID"].as_str() == Some(&id)
                            && t["Slot"].as_u64() == Some(k as u64 + 1)
                            && t["DesiredState"].as_str() == Some("running")
                    });
                    match t {
                        Some(t) if t["Status"]["State"].as_str() == Some("running") => {
                            found = t;
                            Ok(true)
                        }
                        Some(t)
                            if matches!(
                                t["Status"]["State"].as_str(),
                                Some("failed" | "rejected")
                            ) =>
                        {
                            Err(BuildError {
                                step: what.clone(),
                                source: format!("Docker: {}", t["Status"]).into(),
                            })
                        }
                        _ => Ok(false),
                    }
                })?;
                self.adopt_task(world, plan, ci, &found, nets, nodes, ns_names)?;
            }
        }
        self.wait_service_records(plan, nets)
    }

    /// Waits until every machine's view of each service network (`GET
    /// /networks/{id}?verbose=true`, the gossiped service records its
    /// embedded DNS answers from, DNS-25) lists every running task:
    /// a machine learns another's tasks a moment after they start.
    fn wait_service_records(&self, plan: &Plan, nets: &[String]) -> Result<(), BuildError> {
        for n in service_networks(plan) {
            let name = &nets[n];
            for (i, c) in self.clients.iter().enumerate() {
                let what = format!(
                    "service records of {} on machine {}",
                    plan.networks[n].name, plan.machines[i].name
                );
                wait_for(&what, || {
                    let v = c
                        .network_inspect_verbose(name)
                        .map_err(BuildError::at(what.clone()))?;
                    Ok(plan.services.iter().all(|svc| {
                        if !svc.networks.iter().any(|x| x.network == n) {
                            return true;
                        }
                        let ips: HashSet<Ipv4Addr> = v["Services"][&svc.name]["Tasks"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|t| t["EndpointIP"].as_str()?.parse().ok())
                            .collect();
                        svc.running_tasks().iter().all(|&t| {
                            plan.containers[t]
                                .endpoints
                                .iter()
                                .filter(|e| e.network == n)
                                .filter_map(|e| e.ip)
                                .all(|ip| ips.contains(&ip))
                        })
                    }))
                })?;
            }
        }
        Ok(())
    }

    /// Checks a running task against the plan (its machine, its address on
    /// each network) and adopts its namespace as container `ci`.
    #[allow(clippy::too_many_arguments)]
    fn adopt_task(
        &mut self,
        world: &mut Namespaces,
        plan: &Plan,
        ci: usize,
        task: &Value,
        nets: &[String],
        nodes: &[String],
        ns_names: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), BuildError> {
        let c = &plan.containers[ci];
        let what = format!("task {}", c.name);
        let node = task["NodeID"].as_str().unwrap_or("");
        if node != nodes[c.machine] {
            let on = nodes.iter().position(|n| n == node);
            return Err(BuildError {
                step: what,
                source: format!(
                    "Docker placed it on {}, the plan on machine {}",
                    on.map_or(node.to_string(), |i| format!(
                        "machine {}",
                        plan.machines[i].name
                    )),
                    plan.machines[c.machine].name
                )
                .into(),
            });
        }
        for e in &c.endpoints {
            let (Some(ip), net) = (e.ip, &nets[e.network]) else {
                continue;
            };
            let got = attachment_ip(task, net);
            if got != Some(ip) {
                return Err(BuildError {
                    step: format!("{what}: address on {}", plan.networks[e.network].name),
                    source: format!("Docker gave {got:?}, the plan says {ip}").into(),
                });
            }
        }
        let status = &task["Status"]["ContainerStatus"];
        let pid = status["PID"].as_u64().unwrap_or(0) as u32;
        let cid = status["ContainerID"].as_str().unwrap_or("").to_string();
        if pid == 0 || cid.is_empty() {
            return Err(BuildError {
                step: what,
                source: format!("no container: {status}").into(),
            });
        }
        if self.containers.len() != ci {
            return Err(BuildError {
                step: what,
                source: "tasks out of order".into(),
            });
        }
        self.containers.push(cid);
        let ns = adopt_pid_netns(pid, &ns_names[&c.name]).map_err(|source| BuildError {
            step: format!("{what}: namespace of pid {pid}"),
            source,
        })?;
        world.adopt(Node::Container(ci), ns);
        self.verify_interfaces(world, plan, ci)
    }
}

/// Whether plan network `k` is the implicit or declared `ingress` overlay
/// of the services: Docker's swarm has its own, never created by the run.
pub(super) fn is_ingress(plan: &Plan, k: usize) -> bool {
    plan.ingress.as_ref().is_some_and(|i| i.network == k)
        && plan.networks[k].driver == Driver::Overlay
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::scenario;

    fn plan(text: &str) -> Plan {
        scenario::parse_str(Path::new("test.toml"), text).expect("valid scenario")
    }

    /// Two machines, a dnsrr service of three tasks (.2 .3 .4) and a
    /// client (.5), as scenarios/swarm-dnsrr-docker.toml.
    const DNSRR: &str = r#"
name = "dnsrr"
[[machine]]
name = "m1"
[[machine]]
name = "m2"
[[network]]
name = "front"
driver = "overlay"
subnet = "10.80.0.0/24"
[[service]]
name = "web"
replicas = 3
machines = ["m1", "m2"]
endpoint_mode = "dnsrr"
networks = [{ name = "front", aliases = ["www"] }]
serve = ["tcp:80"]
[[container]]
name = "client"
machine = "m2"
networks = ["front"]
"#;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// SVC-1: the smallest range from the subnet's start with the tasks'
    /// addresses and 2 × 2 unplanned addresses at its top: .0/29 has the
    /// client's .5 in its top four, so .0/28 (.2-.15): 10 walkers (.2-.11),
    /// the endpoints .12 .13, the keepers .14 .15.
    #[test]
    fn prime_leaves_the_top_of_the_range_to_the_machines() {
        let p = plan(DNSRR);
        let net = p.networks.iter().position(|n| n.name == "front").unwrap();
        let pr = prime(&p, net).unwrap();
        assert_eq!(pr.range.to_string(), "10.80.0.0/28");
        assert_eq!(pr.walkers, 10);
        assert_eq!(pr.lbs, vec![ip("10.80.0.12"), ip("10.80.0.13")]);
        assert_eq!(pr.keepers, vec![ip("10.80.0.14"), ip("10.80.0.15")]);
        assert_eq!(primes(&p).unwrap(), vec![pr]);
        // The tasks are containers of the plan, the client is not a task.
        let web = &p.services[0];
        assert!(web.tasks.iter().all(|&t| is_task(&p, t)));
        let client = p
            .containers
            .iter()
            .position(|c| c.name == "client")
            .unwrap();
        assert!(!is_task(&p, client));
        // The implicit ingress overlay is Docker's own.
        let ing = p.ingress.as_ref().unwrap().network;
        assert!(is_ingress(&p, ing) && !is_ingress(&p, net));
    }

    /// A range never takes the subnet's broadcast address, and a subnet
    /// too small for the endpoints has no prime (an error naming it).
    #[test]
    fn prime_of_a_full_subnet_is_an_error_naming_the_network() {
        let small = DNSRR
            .replace("10.80.0.0/24", "10.80.0.0/29")
            .replace("replicas = 3", "replicas = 2");
        let p = plan(&small);
        let e = primes(&p).unwrap_err();
        assert!(e.contains("network front") && e.contains("4 free"), "{e}");
    }

    /// SVC-1, SVC-5, DNS-25: one dnsrr service, 0 replicas to start with,
    /// its alias on its network, its host-mode port, the run's label, the
    /// silent resolver, and a stop that does not wait.
    #[test]
    fn service_body_is_one_dnsrr_service() {
        // One task per machine for a host-mode port (SVC-5).
        let text = DNSRR.replace(
            "replicas = 3",
            "replicas = 2\npublish = [\"published=9090,target=80,mode=host\"]",
        );
        let p = plan(&text);
        let run = RunId::parse("vsw0a1b2c").unwrap();
        let nets: Vec<String> = p.networks.iter().map(|n| n.name.clone()).collect();
        let b = service_body(&p, 0, &nets, &run, &["198.18.255.254".to_string()]);
        assert_eq!(b["Name"], "web");
        assert_eq!(b["Labels"][LABEL_RUN], "vsw0a1b2c");
        assert_eq!(b["Mode"]["Replicated"]["Replicas"], 0);
        assert_eq!(b["EndpointSpec"]["Mode"], "dnsrr");
        assert_eq!(
            b["EndpointSpec"]["Ports"],
            json!([{ "Protocol": "tcp", "TargetPort": 80, "PublishedPort": 9090, "PublishMode": "host" }])
        );
        assert_eq!(
            b["TaskTemplate"]["Networks"],
            json!([{ "Target": "front", "Aliases": ["www"] }])
        );
        let cs = &b["TaskTemplate"]["ContainerSpec"];
        assert_eq!(cs["Image"], "vswitch/busybox:1");
        assert_eq!(cs["StopGracePeriod"], 0);
        assert_eq!(cs["DNSConfig"]["Nameservers"], json!(["198.18.255.254"]));
        let p = plan(DNSRR);
        let net = nets.iter().position(|n| n == "front").unwrap();
        let pr = prime(&p, net).unwrap();
        let w = walker_body(&pr, "front", &run);
        assert_eq!(w["Mode"]["Replicated"]["Replicas"], 10);
        assert_eq!(w["EndpointSpec"]["Mode"], "dnsrr");
        assert_eq!(w["Name"], "vsw0a1b2c-walk-front");
        let k = keeper_body("front", pr.keepers[1], &run, "198.18.255.254");
        assert_eq!(
            k["NetworkingConfig"]["EndpointsConfig"]["front"]["IPAMConfig"]["IPv4Address"],
            "10.80.0.15"
        );
        assert_eq!(k["Labels"][LABEL_RUN], "vsw0a1b2c");
    }

    /// A task's address on a network, from the manager's task object.
    #[test]
    fn reads_a_tasks_address() {
        let t = json!({ "NetworksAttachments": [
            { "Network": { "Spec": { "Name": "ingress" } }, "Addresses": ["10.0.0.5/24"] },
            { "Network": { "Spec": { "Name": "front" } }, "Addresses": ["10.80.0.3/24"] },
        ] });
        assert_eq!(attachment_ip(&t, "front"), Some(ip("10.80.0.3")));
        assert_eq!(attachment_ip(&t, "back"), None);
    }
}
