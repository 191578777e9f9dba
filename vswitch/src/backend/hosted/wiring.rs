//! [`configure`]: a Plan turned into the engine's configuration and the
//! TAPs, captures and proxies around it, without IO. One [`Wiring`] walks
//! the world in a fixed order, since port ids are handed out as ports are
//! added: the lan (machine uplinks, then externals), each bridge network's
//! domain and host port, the overlays' domains, the containers' interfaces,
//! then the VTEPs, the service stage and the machines' routers.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::{IpNet, Ipv4Net};

use super::proxy::proxy_mappings;
use super::{IfaceSpec, Setup, ip_proto, l2nets, overlay, services};
use crate::backend::common::{BuildError, BuildOptions};
use crate::backend::pcap;
use crate::backend::topology::{Interface, LAN_MTU, Topology, is_child_driver, lan_mac};
use crate::engine::route6::{Machine6, Network6, Publish6, Route6Config};
use crate::engine::{
    Attachment, DomainConfig, DomainId, EngineConfig, Gateway, MachineConfig, NetworkConfig,
    PortConfig, PortId, PortRole, PublishConfig, VlanConfig, VlanMode, VlanPort,
};
use crate::scenario::plan::{Driver, Endpoint, MacAddr, Node, Plan, PortMapping};

/// The lan's domain.
const LAN: DomainId = DomainId(0);

/// The engine configuration of `plan` and the TAPs, captures and proxies
/// it needs: no IO. `run` (the run id) seeds the encrypted overlays' keys.
pub fn configure(plan: &Plan, run: &str, opts: &BuildOptions) -> Result<Setup, BuildError> {
    // SVC-5: tasks publish their host-mode ports as `-p` does.
    let plan = &*services::with_host_ports(plan);
    // OV-8: overlay-only containers get a docker_gwbridge endpoint.
    let plan = &*crate::backend::topology::with_gwbridge(plan);
    let topo = Topology::of(plan);
    let mut w = Wiring::new(plan, &topo, opts.pcap_dir.as_deref());
    w.machine_uplinks();
    w.externals();
    w.bridge_networks();
    let ov_domains = overlay::add_domains(plan, &mut w.cfg);
    for ci in 0..plan.containers.len() {
        w.container(ci, &ov_domains);
    }
    overlay::add_vteps(
        plan,
        &mut w.cfg,
        &ov_domains,
        &w.uplinks,
        lan_mac,
        opts.pcap_dir.is_some(),
        &overlay::world_sas(run, plan),
    );
    let services = services::configure(plan, &mut w.cfg, &ov_domains, &w.uplinks, lan_mac);
    w.routers();
    Ok(w.finish(services))
}

/// The configuration being built, with each port's TAP and capture.
struct Wiring<'a> {
    plan: &'a Plan,
    /// Every interface's name, MAC, MTU, addresses and routes.
    topo: &'a Topology,
    pcap_dir: Option<&'a Path>,
    cfg: EngineConfig,
    v6: Route6Config,
    vlans: VlanConfig,
    /// TAPs to create (made together later, on parallel threads).
    pending: Vec<(Node, String, IfaceSpec)>,
    pcaps: Vec<Option<std::path::PathBuf>>,
    port_names: Vec<String>,
    port_nodes: Vec<Node>,
    port_domains: Vec<DomainId>,
    /// Each machine's uplink port.
    uplinks: Vec<PortId>,
    /// Machines whose data path is the engine's (mixed runs: not the
    /// `backend = kernel` ones), and their index among the router's.
    l3_of: Vec<Option<usize>>,
    /// Each network's domain (bridges, and macvlan/ipvlan: lan or their own).
    domain_of: Vec<Option<DomainId>>,
    /// Each bridge network's index among the router's networks.
    l3_net_of: Vec<Option<usize>>,
}

impl<'a> Wiring<'a> {
    fn new(plan: &'a Plan, topo: &'a Topology, pcap_dir: Option<&'a Path>) -> Wiring<'a> {
        let mut cfg = EngineConfig::default();
        cfg.domains.push(DomainConfig {
            name: "lan".into(),
            gateway: None,
            icc: true,
        });
        Wiring {
            plan,
            topo,
            pcap_dir,
            cfg,
            v6: Route6Config::default(),
            vlans: VlanConfig {
                domain: LAN,
                ..VlanConfig::default()
            },
            pending: Vec::new(),
            pcaps: Vec::new(),
            port_names: Vec::new(),
            port_nodes: Vec::new(),
            port_domains: Vec::new(),
            uplinks: Vec::new(),
            l3_of: overlay::engine_machines(plan),
            domain_of: vec![None; plan.networks.len()],
            l3_net_of: vec![None; plan.networks.len()],
        }
    }

    /// Adds a port of `domain` whose TAP is `spec` in `node`'s namespace.
    fn add_port(
        &mut self,
        node: Node,
        domain: DomainId,
        role: PortRole,
        port_name: String,
        spec: IfaceSpec,
    ) -> PortId {
        self.pending.push((node, port_name.clone(), spec));
        self.port_nodes.push(node);
        self.pcaps.push(
            self.pcap_dir
                .map(|dir| dir.join(pcap::file_name(&port_name))),
        );
        self.cfg.ports.push(PortConfig {
            name: port_name.clone(),
            domain,
            role,
        });
        self.port_names.push(port_name);
        self.port_domains.push(domain);
        PortId((self.cfg.ports.len() - 1) as u16)
    }

    fn lan_gateway(&self) -> Option<&'a crate::scenario::plan::External> {
        self.plan.externals.iter().find(|x| x.gateway)
    }

    /// Each machine's `eth0` on lan: an 802.1Q trunk, the parent of its
    /// macvlan/ipvlan children.
    fn machine_uplinks(&mut self) {
        let plan = self.plan;
        for (i, m) in plan.machines.iter().enumerate() {
            let Some(lan) = self.topo.lan(Node::Machine(i)) else {
                continue;
            };
            let mut spec = IfaceSpec::from(lan);
            // SVC-4: the machine's own way into its ingress sandbox.
            if let Some(sb) = services::local_entry(plan, i) {
                spec.routes.push((IpNet::V4(Ipv4Net::from(sb)), None));
            }
            let name = format!("lan-{}-eth0", m.name);
            let up = self.add_port(Node::Machine(i), LAN, PortRole::Plain, name, spec);
            self.uplinks.push(up);
            if let Some(ip6) = m.ip6 {
                self.v6.neighbours.push((ip6, lan_mac(m.ip), up));
            }
            self.vlans.ports.push((
                up,
                VlanPort {
                    mode: VlanMode::Trunk { native: 0 },
                    attach: Attachment::Parent {
                        group: i as u16,
                        mac: lan_mac(m.ip),
                        ip: m.ip,
                    },
                },
            ));
        }
    }

    /// Each external's `eth0` on lan (an access port with `vlan`).
    fn externals(&mut self) {
        let plan = self.plan;
        for (i, x) in plan.externals.iter().enumerate() {
            // No route back to IPv4 container subnets: with `masquerade =
            // false` no reply returns (BR-11, BUG-5), as on Docker. IPv6
            // subnets routed without NAT (`ip6tables = false`) get one.
            let Some(lan) = self.topo.lan(Node::External(i)) else {
                continue;
            };
            let (mac, spec) = (lan.mac, IfaceSpec::from(lan));
            let name = format!("lan-{}-eth0", x.name);
            let p = self.add_port(Node::External(i), LAN, PortRole::Plain, name, spec);
            if let Some(ip6) = x.ip6 {
                self.v6.neighbours.push((ip6, mac, p));
            }
            if let Some(v) = x.vlan {
                self.vlans.ports.push((
                    p,
                    VlanPort {
                        mode: VlanMode::Access(v),
                        attach: Attachment::None,
                    },
                ));
            }
        }
    }

    /// One domain per bridge network with its host port; macvlan/ipvlan
    /// networks on lan (with a parent) or on a domain of their own.
    fn bridge_networks(&mut self) {
        let plan = self.plan;
        for (ni, n) in plan.networks.iter().enumerate() {
            if is_child_driver(n) {
                // With a parent: on lan. Without: a domain of its own.
                self.domain_of[ni] = Some(if n.parent.is_some() {
                    LAN
                } else {
                    self.cfg.domains.push(DomainConfig {
                        name: n.name.clone(),
                        gateway: None,
                        icc: true,
                    });
                    DomainId((self.cfg.domains.len() - 1) as u16)
                });
                continue;
            }
            if n.driver == Driver::Bridge {
                self.bridge_network(ni);
            }
        }
    }

    fn bridge_network(&mut self, ni: usize) {
        let plan = self.plan;
        let n = &plan.networks[ni];
        let (Some(machine), Some(primary)) = (n.machine, n.primary()) else {
            return;
        };
        // A kernel machine of a mixed run builds its own networks.
        let Some(l3_machine) = self.l3_of[machine] else {
            return;
        };
        let gateway = primary.gateway.map(|ip| Gateway {
            ip,
            ip6: n.gateway6.filter(|_| n.ipv6),
            mac: MacAddr::docker_from_ipv4(ip),
        });
        self.cfg.domains.push(DomainConfig {
            name: n.name.clone(),
            gateway,
            icc: n.icc,
        });
        let domain = DomainId((self.cfg.domains.len() - 1) as u16);
        self.domain_of[ni] = Some(domain);
        let Some(gw) = gateway else { return };
        if let (true, Some(subnet6), Some(gateway6)) = (n.ipv6, n.subnet6, n.gateway6) {
            self.v6.networks.push(Network6 {
                domain,
                machine: l3_machine,
                subnet6,
                gateway6,
                gw_mac: gw.mac,
                internal: n.internal,
                masquerade: n.masquerade && !n.internal,
                mtu: n.mtu,
            });
        }
        self.l3_net_of[ni] = Some(self.cfg.l3.networks.len());
        self.cfg.l3.networks.push(NetworkConfig {
            domain,
            machine: l3_machine,
            subnets: n.subnets.iter().map(|s| s.net).collect(),
            gateways: n.subnets.iter().filter_map(|s| s.gateway).collect(),
            internal: n.internal,
            masquerade: n.masquerade && !n.internal,
            mtu: n.mtu,
            neighbours: Vec::new(),
        });
        // V6-1: the host port holds gateway6 as docker0 would.
        let Some(dev) = self.topo.bridge(ni) else {
            return;
        };
        let (name, spec) = (dev.name.clone(), IfaceSpec::from(dev));
        let label = format!("{}-{}", plan.machines[machine].name, name);
        self.add_port(Node::Machine(machine), domain, PortRole::Host, label, spec);
    }

    /// Container `ci`: one `ethN` per attachment, the default route via
    /// the first non-internal network with a gateway (BR-3, BR-15).
    fn container(&mut self, ci: usize, ov_domains: &overlay::Domains) {
        let plan = self.plan;
        let c = &plan.containers[ci];
        let Some(l3_machine) = self.l3_of[c.machine] else {
            return;
        };
        let default_net = c.endpoints.iter().position(|e| {
            let n = &plan.networks[e.network];
            crate::backend::topology::carries_default(n)
        });
        for (k, e) in c.endpoints.iter().enumerate() {
            let Some(domain) = self.domain_of[e.network]
                .or_else(|| ov_domains.get(&(e.network, c.machine)).copied())
            else {
                continue;
            };
            let Some(ip) = e.ip else { continue };
            self.endpoint(ci, k, domain, ip);
            // BR-17: ports are published on the default-gateway network.
            if default_net == Some(k)
                && let Some(l3) = self.l3_net_of[e.network]
            {
                for p in &c.publish {
                    self.publish(p, e, ip, l3_machine, l3);
                }
            }
        }
    }

    /// The interface of container `ci`'s endpoint `k` (address `ip`) on
    /// `domain`, as the topology has it (its default routes included).
    fn endpoint(&mut self, ci: usize, k: usize, domain: DomainId, ip: Ipv4Addr) {
        let plan = self.plan;
        let c = &plan.containers[ci];
        let e = &c.endpoints[k];
        let n = &plan.networks[e.network];
        let on_lan = is_child_driver(n) && n.parent.is_some();
        let Some(iface) = self.topo.endpoint(ci, k) else {
            return;
        };
        let (ifname, mac, spec) = (iface.name.clone(), iface.mac, IfaceSpec::from(iface));
        let role = if on_lan {
            PortRole::Plain
        } else {
            PortRole::Container
        };
        let name = format!("{}-{ifname}", c.name);
        let port = self.add_port(Node::Container(ci), domain, role, name, spec);
        if on_lan {
            self.vlans
                .ports
                .push((port, l2nets::child_port(n, c.machine, ip, e.ip6)));
        }
        if let Some(l3) = self.l3_net_of[e.network] {
            self.cfg.l3.networks[l3].neighbours.push((ip, e.mac, port));
        }
        if let (true, Some(ip6)) = (n.ipv6, e.ip6) {
            self.v6.neighbours.push((ip6, mac, port));
        }
    }

    /// A published port of a container whose default-gateway endpoint `e`
    /// (address `ip`) is on router network `l3` of router machine `m`.
    fn publish(&mut self, p: &PortMapping, e: &Endpoint, ip: Ipv4Addr, m: usize, l3: usize) {
        let n = &self.plan.networks[e.network];
        // PUB-4: `H:C` on both families, `[v6]:H:C` on IPv6.
        if let (Some(ip6), true) = (e.ip6, n.ipv6) {
            let host_ip = match p.host_ip {
                None => Some(None),
                Some(IpAddr::V6(h)) => Some((!h.is_unspecified()).then_some(h)),
                Some(IpAddr::V4(_)) => None,
            };
            if let Some(host_ip) = host_ip {
                self.v6.publish.push(Publish6 {
                    machine: m,
                    host_ip,
                    host_port: p.host_port,
                    proto: ip_proto(p.proto),
                    container_ip: ip6,
                    container_port: p.container_port,
                });
            }
        }
        let host_ip = match p.host_ip {
            None => None,
            Some(IpAddr::V4(h)) => Some(h),
            Some(IpAddr::V6(_)) => return,
        };
        self.cfg.l3.publish.push(PublishConfig {
            machine: m,
            host_ip,
            host_port: p.host_port,
            proto: ip_proto(p.proto),
            container_ip: ip,
            container_port: p.container_port,
            network: l3,
        });
    }

    /// Each engine machine's router, IPv4 and IPv6.
    fn routers(&mut self) {
        let plan = self.plan;
        let lan_gateway = self.lan_gateway();
        for (i, m) in plan.machines.iter().enumerate() {
            if self.l3_of[i].is_none() {
                continue;
            }
            self.v6.machines.push(Machine6 {
                uplink: self.uplinks[i],
                mac: lan_mac(m.ip),
                ip6: m.ip6,
                lan6: plan.lan6,
                lan_gateway6: lan_gateway.and_then(|g| g.ip6),
                ip6tables: m.ip6tables,
                lan_mtu: LAN_MTU,
            });
            self.cfg.l3.machines.push(MachineConfig {
                name: m.name.clone(),
                uplink: self.uplinks[i],
                ip: m.ip,
                mac: lan_mac(m.ip),
                lan: plan.lan,
                lan_gateway: lan_gateway.and_then(|g| g.ip4()),
                lan_mtu: LAN_MTU,
                userland_proxy: m.userland_proxy,
            });
        }
    }

    fn finish(mut self, services: Option<crate::engine::service::ServiceConfig>) -> Setup {
        let plan = self.plan;
        let plan_of: Vec<usize> = (0..plan.machines.len())
            .filter(|&m| self.l3_of[m].is_some())
            .collect();
        self.cfg.l3.v6 = self.v6;
        let mut proxy_maps = proxy_mappings(plan, &self.cfg, &plan_of);
        for (m, maps) in proxy_maps.iter_mut().enumerate() {
            if self.l3_of[m].is_some() {
                maps.extend(services::local_proxies(plan, m));
            }
        }
        Setup {
            cfg: self.cfg,
            vlans: l2nets::needs_vlans(plan).then_some(self.vlans),
            seed: plan.seed,
            port_names: self.port_names,
            port_nodes: self.port_nodes,
            port_domains: self.port_domains,
            pending: self.pending,
            pcap_paths: self.pcaps,
            proxy_maps,
            services,
        }
    }
}

impl From<&Interface> for IfaceSpec {
    fn from(i: &Interface) -> IfaceSpec {
        IfaceSpec {
            name: i.name.clone(),
            mac: i.mac,
            mtu: i.mtu,
            addrs: i.addrs.clone(),
            routes: i.routes.clone(),
        }
    }
}
