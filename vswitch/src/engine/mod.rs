//! The sans-IO switch. `Engine::handle_frame(now, port, packet, out)` is a
//! pure function of the engine's state, the frame and the caller's clock; it
//! appends [`Action`]s for the IO layer to carry out. Nothing here knows that
//! a file descriptor exists.
//!
//! # Where a frame goes
//!
//! Every frame crosses the stages of [`pipeline::PIPELINE`], in order, each
//! one function over the frame's context (ingress port, packet, what the
//! stages learnt, the actions so far):
//!
//! ```text
//! fault-in → port → vlan → admit → service-in → overlay-in → router → router6 → switch
//!                                                           → overlay-out → service-out → fault-out
//! ```
//!
//! - **fault-in** ([`fault`]): a link fault on the ingress port (or on a
//!   faulted machine uplink the frame crosses inside the engine) drops or
//!   holds it; [`Engine::poll_due`] hands held frames back later.
//! - **port**: the ingress port is known and counted; a runt is dropped.
//! - **vlan** ([`vlan`]): on the 802.1Q-aware domain (`lan` with VLANs) the
//!   frame is classified, its tag popped, and switched (and routed on the
//!   untagged lan) there; macvlan and ipvlan children hang off it.
//! - **admit** (`l2.rs`): source checks and MAC learning in the port's L2
//!   domain (one per network, one for `lan`).
//! - **service-in** ([`service`]): VIP load balancing and the ingress
//!   routing mesh.
//! - **overlay-in** ([`vxlan`], [`esp`]): VXLAN for a local VTEP,
//!   decrypted (ESP) and reassembled first, decapsulated into its VNI's
//!   domain; ARP for known remote bindings is answered.
//! - **router** (`route.rs` the ingress half, `forward.rs` the egress half)
//!   and **router6** ([`route6`]): a machine's router between its bridge
//!   networks, its host stack and its uplink, with conntrack ([`conntrack`]),
//!   masquerade, published ports, hairpin NAT (`nat.rs`), ICMP errors and
//!   next-hop resolution.
//! - **switch** (`l2.rs`): the gateway MAC (ARP, ICMP echo, else the host
//!   port), a known unicast, or a flood; `icc` and domain isolation.
//! - **overlay-out**, **service-out**, **fault-out**: what the stages above
//!   sent, encapsulated towards VXLAN peers, translated for service
//!   sandboxes, and judged by the faults of the ports it leaves by.
//!
//! A dropped frame always has one named [`DropReason`], counted per port in
//! [`Metrics`]; [`Engine::trace_frame`] records the stages a frame crossed.
//!
//! # Where the code is
//!
//! [`Engine`]'s methods live in `mod.rs` (building, configuring, counters and
//! tables), `pipeline.rs` (the frame path and the stages that are the
//! engine's own: faults, port, dispatch), `vxlan.rs` (the overlay stages,
//! which re-enter the pipeline from a machine's uplink), `service.rs` (the
//! service stages) and `trace.rs`. The IPv4 `Router` is split by role:
//! `route.rs` (state, classification, inbound and outbound decisions, ARP)
//! and `forward.rs` (the egress checks, the commit, the rewrite, the next
//! hop).

mod checksum;
pub mod conntrack;
pub mod esp;
pub mod fault;
mod fdb;
pub mod fixtures;
pub mod fixtures6;
pub mod flow;
mod forward;
mod gateway;
pub mod gso6;
mod icmp;
mod icmp6;
mod l2;
mod l3config;
pub mod metrics;
mod nat;
mod nd;
mod neigh;
pub mod offload;
pub mod packet;
pub mod pipeline;
mod pmtu;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod proptests6;
mod reasm;
mod route;
pub mod route6;
pub mod service;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ct_carry;
#[cfg(test)]
mod tests_esp;
#[cfg(test)]
mod tests_fault;
#[cfg(test)]
mod tests_gso6;
#[cfg(test)]
mod tests_l3;
#[cfg(test)]
mod tests_nat;
#[cfg(test)]
mod tests_offload;
#[cfg(test)]
mod tests_route6;
#[cfg(test)]
mod tests_vlan;
#[cfg(test)]
mod tests_vxlan;
pub mod trace;
pub mod vlan;
pub mod vxlan;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::wire::MacAddr;
pub use conntrack::{Conn, ConntrackCounters, ConntrackState, Dir, Kind, TcpState, Timeouts};
use fdb::{Fdb, mac_key};
pub use flow::Tuple;
use l2::{Domain, Port};
pub use l3config::{L3Config, MachineConfig, NetworkConfig, PublishConfig};
pub use metrics::{DropCounts, DropReason, FdbCounters, Metrics, PortCounters};
pub use offload::OffloadEvent;
pub use packet::{Packet, VnetHdr};
pub use service::{Backend, MeshConfig, SandboxConfig, ServiceConfig, ServiceStats, VipConfig};
pub use vlan::{Attachment, Siblings, VlanConfig, VlanMode, VlanPort};
pub use vxlan::{OverlayStats, VtepConfig};

/// Index of a port (a TAP device) in the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u16);

/// Index of an L2 domain (a Docker network, or `lan`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainId(pub u16);

/// What a port is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortRole {
    /// A container's interface: container↔container traffic obeys `icc`.
    Container,
    /// The machine host stack's port on a network (docker0's own port): it
    /// owns the gateway address, and `icc` never applies to it.
    Host,
    /// A plain segment port (`lan`: externals and machine uplinks).
    Plain,
}

/// A port's configuration.
#[derive(Clone, Debug)]
pub struct PortConfig {
    /// Name for counters, logs and pcaps (e.g. `web/eth0`).
    pub name: String,
    /// The domain it belongs to.
    pub domain: DomainId,
    /// Its role.
    pub role: PortRole,
}

/// The gateway of a domain, answered by the engine.
#[derive(Clone, Copy, Debug)]
pub struct Gateway {
    /// Gateway IPv4 address.
    pub ip: Ipv4Addr,
    /// Gateway IPv6 address (`gateway6`), when the network has IPv6.
    pub ip6: Option<Ipv6Addr>,
    /// Gateway MAC (also the host port's MAC).
    pub mac: MacAddr,
}

/// A domain's configuration.
#[derive(Clone, Debug)]
pub struct DomainConfig {
    /// Name (the network's name, or `lan`).
    pub name: String,
    /// Gateway answered by the engine.
    pub gateway: Option<Gateway>,
    /// Inter-container communication.
    pub icc: bool,
}

/// The engine's configuration.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Domains, indexed by `DomainId`.
    pub domains: Vec<DomainConfig>,
    /// Ports, indexed by `PortId`.
    pub ports: Vec<PortConfig>,
    /// Most MAC entries per domain.
    pub fdb_capacity: usize,
    /// Idle time after which a learned MAC is forgotten.
    pub fdb_aging: Duration,
    /// Routing and NAT (empty: a pure L2 switch).
    pub l3: L3Config,
    /// VXLAN tunnel endpoints of overlay networks (empty: none).
    pub overlay: Vec<VtepConfig>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            domains: Vec::new(),
            ports: Vec::new(),
            fdb_capacity: 4096,
            fdb_aging: Duration::from_secs(300),
            l3: L3Config::default(),
            overlay: Vec::new(),
        }
    }
}

/// What the IO layer must do with a frame.
#[derive(Debug)]
pub enum Action {
    /// Send the ingress packet, unchanged, out of this port.
    Forward(PortId),
    /// Send this engine-built packet out of this port.
    Emit(PortId, Packet),
    /// The ingress frame is dropped, for this reason.
    Drop(DropReason),
    /// Write this engine-built frame to the port's capture only (a frame
    /// the engine sent on the port's segment without a device seeing it,
    /// e.g. VXLAN between two machines of one engine).
    Capture(PortId, Packet),
}

/// A configuration the engine cannot run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A port names a domain that is not configured.
    #[error(
        "port {port} ({name}) is in domain {domain}, but only {domains} domains are configured; \
         add the domain or fix the port's domain index"
    )]
    UnknownDomain {
        /// The port's index.
        port: u16,
        /// The port's name.
        name: String,
        /// The domain index it names.
        domain: u16,
        /// How many domains there are.
        domains: usize,
    },
    /// A domain has more than one host port.
    #[error(
        "domain {domain} ({name}) has two host ports, {first} and {second}; \
         a domain has at most one (it owns the gateway MAC)"
    )]
    SecondHostPort {
        /// The domain's index.
        domain: u16,
        /// The domain's name.
        name: String,
        /// Name of the first host port.
        first: String,
        /// Name of the second host port.
        second: String,
    },
    /// A gateway MAC that is a group or zero address.
    #[error("domain {domain} ({name}): gateway MAC {mac} is not a unicast address")]
    BadGatewayMac {
        /// The domain's index.
        domain: u16,
        /// The domain's name.
        name: String,
        /// The MAC.
        mac: MacAddr,
    },
    /// The routing configuration names a port that is missing or wrong.
    #[error(
        "routing configuration: {what} names port {port}, which is not a port of the right kind"
    )]
    BadL3Port {
        /// What named it.
        what: String,
        /// The port index.
        port: u16,
    },
    /// A routed network's domain has no gateway.
    #[error("routing configuration: domain {domain} routes but has no gateway; give it one")]
    NoGateway {
        /// The domain's index.
        domain: u16,
    },
    /// The VLAN configuration names a port that is missing or wrong.
    #[error("VLAN configuration: port {port}: {why}")]
    BadVlan {
        /// The port index.
        port: u16,
        /// What is wrong.
        why: String,
    },
    /// More ports or domains than a 16-bit index can name.
    #[error("{count} {what} configured; at most 65536 are supported")]
    TooMany {
        /// `ports` or `domains`.
        what: &'static str,
        /// How many were configured.
        count: usize,
    },
}

/// The switch: L2 domains, their FDBs, gateways and counters.
///
/// Deterministic: the output depends only on the configuration, the frames
/// and the `now` values the caller passes; the engine never reads a clock.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    ports: Vec<Port>,
    domains: Vec<Domain>,
    metrics: Metrics,
    router: Option<Box<route::Router>>,
    router6: Option<Box<route6::Router6>>,
    vlan: Option<Box<vlan::VlanState>>,
    overlay: Option<Box<vxlan::Overlay>>,
    services: Option<Box<service::Services>>,
    faults: fault::FaultStage,
    /// The uplink whose fault the frame being handled already crossed.
    past_uplink: Option<PortId>,
    /// What the engine offers a kernel fast path ([`offload`]).
    offload: offload::Offload,
}

impl Engine {
    /// Builds an engine, checking that every port's domain exists and that
    /// each domain has at most one host port.
    pub fn new(cfg: EngineConfig) -> Result<Engine, EngineError> {
        for (what, count) in [("ports", cfg.ports.len()), ("domains", cfg.domains.len())] {
            if count > usize::from(u16::MAX) + 1 {
                return Err(EngineError::TooMany { what, count });
            }
        }
        let mut domains = Vec::with_capacity(cfg.domains.len());
        for (i, dc) in cfg.domains.iter().enumerate() {
            let id = DomainId(i as u16);
            if let Some(gw) = dc.gateway
                && (gw.mac.is_multicast() || gw.mac.0 == [0; 6])
            {
                return Err(EngineError::BadGatewayMac {
                    domain: id.0,
                    name: dc.name.clone(),
                    mac: gw.mac,
                });
            }
            let fdb = Fdb::new(cfg.fdb_capacity, cfg.fdb_aging);
            domains.push(Domain::new(id, dc.gateway, dc.icc, fdb));
        }
        let mut ports = Vec::with_capacity(cfg.ports.len());
        for (i, pc) in cfg.ports.iter().enumerate() {
            let id = PortId(i as u16);
            let Some(d) = domains.get_mut(usize::from(pc.domain.0)) else {
                return Err(EngineError::UnknownDomain {
                    port: id.0,
                    name: pc.name.clone(),
                    domain: pc.domain.0,
                    domains: cfg.domains.len(),
                });
            };
            if pc.role == PortRole::Host {
                if let Some(first) = d.host_port {
                    return Err(EngineError::SecondHostPort {
                        domain: pc.domain.0,
                        name: cfg.domains[usize::from(pc.domain.0)].name.clone(),
                        first: cfg.ports[usize::from(first.0)].name.clone(),
                        second: pc.name.clone(),
                    });
                }
                d.host_port = Some(id);
            }
            d.members.push((id, pc.role));
            ports.push(Port {
                domain: pc.domain,
                role: pc.role,
            });
        }
        let metrics = Metrics::new(ports.len(), domains.len());
        let router = if cfg.l3.machines.is_empty() {
            None
        } else {
            let domain_of = |p: PortId| ports.get(usize::from(p.0)).map(|p| (p.domain, p.role));
            let gateway_of = |d: DomainId| {
                let d = domains.get(usize::from(d.0))?;
                d.gateway.map(|g| (g.ip, g.mac, d.host_port))
            };
            let members_of = |d: DomainId| {
                domains
                    .get(usize::from(d.0))
                    .map_or_else(Vec::new, |d| d.members.iter().map(|&(p, _)| p).collect())
            };
            let view = route::PortView {
                domain_of: &domain_of,
                gateway_of: &gateway_of,
                members_of: &members_of,
            };
            Some(Box::new(route::Router::new(&cfg.l3, ports.len(), &view)?))
        };
        let router6 = if cfg.l3.v6.networks.is_empty() && cfg.l3.v6.publish.is_empty() {
            None
        } else {
            let domain_of = |p: PortId| ports.get(usize::from(p.0)).map(|p| (p.domain, p.role));
            let lan = cfg
                .l3
                .v6
                .machines
                .first()
                .and_then(|m| ports.get(usize::from(m.uplink.0)))
                .map(|p| p.domain);
            Some(Box::new(route6::Router6::new(
                cfg.l3.v6.clone(),
                ports.len(),
                &domain_of,
                lan,
                cfg.l3.conntrack_capacity,
                cfg.l3.timeouts,
            )))
        };
        let overlay = if cfg.overlay.is_empty() {
            None
        } else {
            Some(Box::new(vxlan::Overlay::new(&cfg.overlay)))
        };
        Ok(Engine {
            cfg,
            ports,
            domains,
            metrics,
            router,
            router6,
            vlan: None,
            overlay,
            services: None,
            faults: fault::FaultStage::new(0),
            past_uplink: None,
            offload: offload::Offload::default(),
        })
    }

    /// Makes one domain (`lan`) 802.1Q-aware, with macvlan/ipvlan children
    /// on its ports (see [`vlan`]). Without it every domain is untagged.
    pub fn set_vlans(&mut self, cfg: &VlanConfig) -> Result<(), EngineError> {
        let ports = &self.ports;
        let st = vlan::VlanState::new(cfg, ports.len(), |p| {
            ports.get(usize::from(p.0)).map(|p| p.domain)
        })?;
        if let Some(r) = self.router.as_deref_mut() {
            r.retain_lan_ports(|p| st.takes_router_arp(p));
        }
        self.vlan = Some(Box::new(st));
        Ok(())
    }

    /// Sets (`Some`) or clears (`None`) the fault of a port, both
    /// directions. A fault replaces the port's earlier one.
    ///
    /// On a machine's uplink a fault's `mtu` is the router's egress MTU
    /// there too: routed packets above it get ICMP "fragmentation needed"
    /// (DF) or are fragmented, as a Linux router's would. Elsewhere (a
    /// switch port) a frame above it is dropped silently (`fault-mtu`).
    pub fn set_fault(&mut self, port: PortId, fault: Option<fault::LinkFault>) {
        if let Some(r) = self.router.as_deref_mut() {
            r.set_uplink_mtu(port, fault.and_then(|f| f.mtu));
        }
        if let Some(r) = self.router6.as_deref_mut() {
            r.set_uplink_mtu(port, fault.and_then(|f| f.mtu));
        }
        self.faults.set(port, fault);
        if self.offload.on && fault.is_some() {
            self.take_router_offers();
            self.offload.events.push(OffloadEvent::ForgetAll);
            if let Some(r) = self.router.as_deref_mut() {
                r.forget_offers();
            }
        }
        self.route_offers();
    }

    /// Seeds the fault stage's random choices (before any fault is set).
    pub fn set_fault_seed(&mut self, seed: u64) {
        let held = self.faults.held();
        debug_assert_eq!(held, 0, "seed the fault stage before it holds frames");
        self.faults = fault::FaultStage::new(seed);
    }

    /// The fault stage (its counters, the faults in force).
    pub fn faults(&self) -> &fault::FaultStage {
        &self.faults
    }

    /// The next frame whose fault delay is over at `now`, if any; call
    /// until `None`. Ingress frames go to [`Engine::handle_past_fault`],
    /// egress frames straight to their port.
    ///
    /// An ingress frame must go to [`Engine::handle_past_fault`] before
    /// the next call (it may carry which uplink's fault it already crossed).
    pub fn poll_due(&mut self, now: Instant) -> Option<fault::Due> {
        let (due, past) = self.faults.poll_due_past(now)?;
        self.past_uplink = past;
        Some(due)
    }

    /// Forgets every learned MAC idle for longer than `fdb_aging`, every
    /// flow past its timeout and every packet that waited too long for ARP;
    /// returns how many MACs and flows. Lookups also age entries out
    /// lazily, so calling this keeps the tables tidy and the counts right.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        for d in &mut self.domains {
            let e = d.fdb.expire(now);
            self.metrics.fdb_mut(d.id).expired += e as u64;
            n += e;
        }
        if let Some(r) = self.router.as_deref_mut() {
            n += r.expire(now, &mut self.metrics);
        }
        self.take_router_offers();
        if let Some(r) = self.router6.as_deref_mut() {
            n += r.expire(now);
        }
        if let Some(s) = self.services.as_deref_mut() {
            n += s.expire(now);
        }
        n
    }

    /// When [`Engine::expire`] may next have something to do (`None` when
    /// nothing is learned or tracked). May be early, never late.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.domains
            .iter()
            .filter_map(|d| d.fdb.next_expiry())
            .chain(self.router.as_deref().and_then(route::Router::next_expiry))
            .chain(
                self.router6
                    .as_deref()
                    .and_then(route6::Router6::next_expiry),
            )
            .chain(self.faults.next_due())
            .min()
    }

    /// The tracked flows of every machine (empty without routing).
    pub fn conntrack(&self) -> Vec<Conn> {
        self.router.as_deref().map_or_else(Vec::new, |r| {
            r.machines
                .iter()
                .flat_map(|m| m.ct.iter().map(|(_, c)| *c))
                .collect()
        })
    }

    /// Takes every machine's tracked flows (both families) out of the
    /// engine, by machine name, leaving its tables empty: what a rebuilt
    /// engine restores with [`Engine::restore_conntrack`].
    pub fn take_conntrack(&mut self) -> ConntrackState {
        let mut st = ConntrackState::default();
        if let Some(r) = self.router.as_deref_mut() {
            for m in &mut r.machines {
                st.v4.push((m.cfg.name.clone(), m.ct.take_flows()));
            }
        }
        if let Some(r) = self.router6.as_deref_mut() {
            for (i, ct) in r.ct.iter_mut().enumerate() {
                if let Some(m) = self.cfg.l3.machines.get(i) {
                    st.v6.push((m.name.clone(), ct.take_flows()));
                }
            }
        }
        st
    }

    /// Restores flows taken from an earlier engine into the machines of
    /// the same names (flows of machines this engine lacks, flows expired
    /// at `now` and flows colliding with ones tracked here are dropped);
    /// returns how many were restored.
    pub fn restore_conntrack(&mut self, st: ConntrackState, now: Instant) -> usize {
        let mut n = 0;
        if let Some(r) = self.router.as_deref_mut() {
            for (name, flows) in st.v4 {
                if let Some(m) = r.machines.iter_mut().find(|m| m.cfg.name == name) {
                    n += m.ct.restore_flows(flows, now);
                }
            }
        }
        if let Some(r) = self.router6.as_deref_mut() {
            for (name, flows) in st.v6 {
                let i = self.cfg.l3.machines.iter().position(|m| m.name == name);
                if let Some(ct) = i.and_then(|i| r.ct.get_mut(i)) {
                    n += ct.restore_flows(flows, now);
                }
            }
        }
        n
    }

    /// Number of tracked flows (all machines, both families).
    pub fn conntrack_len(&self) -> usize {
        self.router
            .as_deref()
            .map_or(0, |r| r.machines.iter().map(|m| m.ct.len()).sum())
            + self.router6.as_deref().map_or(0, route6::Router6::len)
    }

    /// Conntrack counters summed over machines (zero without routing).
    pub fn conntrack_counters(&self) -> ConntrackCounters {
        self.router
            .as_deref()
            .map_or_else(ConntrackCounters::default, |r| {
                let mut t = ConntrackCounters::default();
                for m in &r.machines {
                    t += *m.ct.counters();
                }
                t
            })
    }

    /// The configuration the engine was built from.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The counters as JSON, with port and domain names (see
    /// [`Metrics::snapshot`]).
    pub fn metrics_json(&self) -> serde_json::Value {
        let ports: Vec<&str> = self.cfg.ports.iter().map(|p| p.name.as_str()).collect();
        let domains: Vec<&str> = self.cfg.domains.iter().map(|d| d.name.as_str()).collect();
        let mut v = self.metrics.snapshot(&ports, &domains);
        if let (true, Some(o)) = (self.faults.links_ever_set(), v.as_object_mut()) {
            o.insert("faults".into(), serde_json::json!(self.faults.counters()));
        }
        if let (Some(ov), Some(o)) = (self.overlay_stats(), v.as_object_mut()) {
            o.insert("overlay".into(), serde_json::json!(ov));
        }
        if let (Some(s), Some(o)) = (self.service_stats(), v.as_object_mut()) {
            o.insert("services".into(), serde_json::json!(s));
        }
        if let (Some(r), Some(o)) = (self.router.as_deref(), v.as_object_mut()) {
            o.insert(
                "conntrack".into(),
                r.machines
                    .iter()
                    .map(|m| {
                        (
                            m.cfg.name.clone(),
                            serde_json::json!({
                                "len": m.ct.len(),
                                "capacity": m.ct.capacity(),
                                "counters": m.ct.counters(),
                            }),
                        )
                    })
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
            );
        }
        v
    }

    /// Number of learned MACs in a domain (the gateway's static entry is not
    /// counted); 0 for an unknown domain.
    pub fn fdb_len(&self, domain: DomainId) -> usize {
        self.domains
            .get(usize::from(domain.0))
            .map_or(0, |d| d.fdb.len())
    }

    /// Where a domain would send unicast to `mac` right now: the gateway's
    /// host port or a learned port. Does not age entries out.
    pub fn fdb_port(&self, domain: DomainId, mac: MacAddr) -> Option<PortId> {
        self.domains
            .get(usize::from(domain.0))?
            .peek(mac_key(&mac.0))
    }

    /// The domain a port belongs to.
    pub fn port_domain(&self, port: PortId) -> Option<DomainId> {
        self.ports.get(usize::from(port.0)).map(|p| p.domain)
    }

    /// A port's role.
    pub fn port_role(&self, port: PortId) -> Option<PortRole> {
        self.ports.get(usize::from(port.0)).map(|p| p.role)
    }
}
