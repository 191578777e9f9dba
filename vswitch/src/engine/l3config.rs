//! The routing/NAT part of the engine's configuration ([`L3Config`]):
//! machines with their uplinks, the bridge networks that route, and the
//! published ports. Built by the backend from the plan; checked by
//! `Engine::new`.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::conntrack::Timeouts;
use super::{DomainId, MacAddr, PortId};

/// A machine as the router sees it.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    /// Name (for errors).
    pub name: String,
    /// The engine port of its uplink `eth0` (its host stack on `lan`).
    pub uplink: PortId,
    /// Its uplink address, shared with the host stack.
    pub ip: Ipv4Addr,
    /// Its uplink MAC, shared with the host stack.
    pub mac: MacAddr,
    /// The `lan` subnet.
    pub lan: Ipv4Net,
    /// The `gateway = true` external, if any: the next hop off `lan`.
    pub lan_gateway: Option<Ipv4Addr>,
    /// MTU of `lan`.
    pub lan_mtu: u16,
    /// Docker's userland proxy (PUB-7); `false`: hairpin NAT (PUB-8).
    pub userland_proxy: bool,
}

/// The L3 side of a bridge network's domain.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Its domain (which has the gateway and host port).
    pub domain: DomainId,
    /// Index into [`L3Config::machines`].
    pub machine: usize,
    /// Its IPv4 subnets.
    pub subnets: Vec<Ipv4Net>,
    /// Every gateway address of the network (all machine-local).
    pub gateways: Vec<Ipv4Addr>,
    /// No route beyond the network (BR-15).
    pub internal: bool,
    /// SNAT to the machine's address on egress (BR-10).
    pub masquerade: bool,
    /// MTU of the network.
    pub mtu: u16,
    /// Container addresses known up front: (address, MAC, port).
    pub neighbours: Vec<(Ipv4Addr, MacAddr, PortId)>,
}

/// A published port (PUB-1).
#[derive(Clone, Copy, Debug)]
pub struct PublishConfig {
    /// Index into [`L3Config::machines`].
    pub machine: usize,
    /// Host address it is bound to; `None` for all of the machine's.
    pub host_ip: Option<Ipv4Addr>,
    /// Host port.
    pub host_port: u16,
    /// IP protocol (6 or 17).
    pub proto: u8,
    /// The container's address on its gateway network (BR-17).
    pub container_ip: Ipv4Addr,
    /// Container port.
    pub container_port: u16,
    /// Index into [`L3Config::networks`] of that network.
    pub network: usize,
}

/// The routing/NAT part of the engine's configuration.
#[derive(Clone, Debug)]
pub struct L3Config {
    /// Machines (empty: no routing at all, a pure L2 switch).
    pub machines: Vec<MachineConfig>,
    /// Bridge networks that route.
    pub networks: Vec<NetworkConfig>,
    /// Published ports.
    pub publish: Vec<PublishConfig>,
    /// Most tracked flows per machine.
    pub conntrack_capacity: usize,
    /// Conntrack timeouts.
    pub timeouts: Timeouts,
    /// Most packets waiting for ARP per engine address.
    pub neighbour_queue: usize,
    /// IPv6 routed between links (empty: IPv6 stays on its links).
    pub v6: super::route6::Route6Config,
}

impl Default for L3Config {
    fn default() -> Self {
        L3Config {
            machines: Vec::new(),
            networks: Vec::new(),
            publish: Vec::new(),
            conntrack_capacity: 65536,
            timeouts: Timeouts::default(),
            neighbour_queue: 64,
            v6: super::route6::Route6Config::default(),
        }
    }
}
