//! The engine as a backend hosts it, computed without IO: the engine
//! configuration of a plan and the interfaces it switches between
//! ([`configure`] → [`Setup`]), what the engine cannot build
//! ([`unsupported`]), overlays' domains and ESP SAs ([`overlay`]), swarm
//! services ([`services`]), the userland proxy's mappings ([`proxy`]) and
//! the engine ports of a link ([`link_ports`]).
//!
//! Shared by the two backends that run the engine: userspace (TAP devices
//! and an IO loop) and sim (smoltcp stacks in memory). Neither imports the
//! other; both import this, and it imports neither.

mod l2nets;
pub mod overlay;
pub mod proxy;
pub mod services;
mod wiring;

use std::net::IpAddr;

use ipnet::IpNet;

use crate::backend::common::BuildError;
use crate::backend::topology::features::{Env, features, refusals_of};
use crate::engine::{DomainId, Engine, EngineConfig, PortId, VlanConfig};
use crate::scenario::plan::{BackendKind, LinkRef, MacAddr, Node, Plan, Proto};

use proxy::Mapping;
pub use wiring::configure;

/// The file beside the pcaps holding the ESP SAs of encrypted overlays, in
/// Wireshark's `esp_sa` UAT format (copy it into a tshark profile, or pass
/// its lines as `-o uat:esp_sa:…`).
pub const ESP_SA_FILE: &str = "esp_sa";

/// What this backend cannot build yet, one reason per item.
pub fn unsupported(plan: &Plan) -> Vec<String> {
    let mut why = Vec::new();
    let mut say = |s: String| why.push(format!("backend userspace: {s}"));
    // IPv6 is built on every link (bridge, the default bridge, macvlan,
    // ipvlan, overlay, lan6 and its VLANs) and routed between them
    // (route6.rs, the proxy's IPv6 side).
    let no_probe = |_: &str| true;
    let env = Env {
        has_kind: &no_probe,
    };
    let f = features(plan);
    for r in refusals_of(BackendKind::Userspace, &f.networks, plan, &env) {
        say(r);
    }
    for r in crate::backend::topology::refusals(plan) {
        say(r);
    }
    why.dedup();
    why
}

/// A TAP to create inside a namespace and how to configure it.
#[derive(Clone, Debug)]
pub struct IfaceSpec {
    /// Interface name in its namespace (`eth0`, `br-front`, …).
    pub name: String,
    /// Its MAC address.
    pub mac: MacAddr,
    /// Its MTU.
    pub mtu: u16,
    /// Its addresses with prefix lengths.
    pub addrs: Vec<(IpAddr, u8)>,
    /// Routes through it (`None`: on-link).
    pub routes: Vec<(IpNet, Option<IpAddr>)>,
}

/// What the engine is for a plan, and what IO must make for it: computed
/// without root or IO ([`configure`]), so that `vswitch trace` and tests can
/// build the very engine a world would run.
#[derive(Debug)]
pub struct Setup {
    /// The engine's configuration.
    pub cfg: EngineConfig,
    /// The lan's 802.1Q configuration, when the world needs VLANs.
    pub vlans: Option<VlanConfig>,
    /// The fault stage's seed.
    pub seed: u64,
    /// Each port's name (`lan-m1-eth0`, `web-eth0`, …), by port id.
    pub port_names: Vec<String>,
    /// Each port's node, by port id.
    pub port_nodes: Vec<Node>,
    /// The domain of each port (`lan` is domain 0).
    pub(crate) port_domains: Vec<DomainId>,
    /// The TAP of each port, by port id.
    pub(crate) pending: Vec<(Node, String, IfaceSpec)>,
    /// Each port's capture file, when captures were asked for.
    pub(crate) pcap_paths: Vec<Option<std::path::PathBuf>>,
    pub(crate) proxy_maps: Vec<Vec<Mapping>>,
    /// The engine's swarm service stage, when the world has services.
    pub(crate) services: Option<crate::engine::service::ServiceConfig>,
}

impl Setup {
    /// The interface behind each port, by port id, with its node.
    pub fn interfaces(&self) -> impl Iterator<Item = (PortId, Node, &IfaceSpec)> {
        self.pending
            .iter()
            .enumerate()
            .map(|(i, (node, _, spec))| (PortId(i as u16), *node, spec))
    }

    /// Each port's capture file, when captures were asked for, by port id.
    pub(crate) fn pcap_paths(&self) -> &[Option<std::path::PathBuf>] {
        &self.pcap_paths
    }

    /// The userland proxy's mappings, per machine.
    pub(crate) fn proxy_maps(&self) -> &[Vec<Mapping>] {
        &self.proxy_maps
    }

    /// A fresh engine of this configuration (seeded, with its VLANs).
    pub fn engine(&self) -> Result<Engine, BuildError> {
        let mut engine =
            Engine::new(self.cfg.clone()).map_err(BuildError::at("engine configuration"))?;
        engine.set_fault_seed(self.seed);
        if let Some(s) = &self.services {
            engine.set_services(s.clone());
        }
        if let Some(v) = &self.vlans {
            engine
                .set_vlans(v)
                .map_err(BuildError::at("engine VLAN configuration"))?;
        }
        Ok(engine)
    }
}

/// IP protocol number of a mapping's protocol.
fn ip_proto(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
    }
}

/// The engine ports of `link`, found by the port names [`configure`] gives
/// (`lan`: the ports on domain 0, given). The sim backend's too.
pub(crate) fn link_ports(
    plan: &Plan,
    port_names: &[String],
    lan: impl Iterator<Item = PortId>,
    link: LinkRef,
) -> Result<Vec<PortId>, String> {
    let by_name = |name: String| -> Result<Vec<PortId>, String> {
        match port_names.iter().position(|n| *n == name) {
            Some(i) => Ok(vec![PortId(i as u16)]),
            None => Err(format!("no engine port {name} for this link")),
        }
    };
    match link {
        LinkRef::Lan => Ok(lan.collect()),
        LinkRef::Uplink(m) => by_name(format!("lan-{}-eth0", plan.machines[m].name)),
        LinkRef::External(x) => by_name(format!("lan-{}-eth0", plan.externals[x].name)),
        LinkRef::Endpoint { container, network } => {
            let c = &plan.containers[container];
            match c.endpoints.iter().position(|e| e.network == network) {
                Some(k) => by_name(format!("{}-eth{k}", c.name)),
                // Disconnected or stopped: the fault waits for nothing.
                None => Ok(Vec::new()),
            }
        }
    }
}
