//! A reference topology of one Docker host for the engine's unit tests,
//! proptests, benches and fuzz targets (one definition, so that they all
//! exercise the same world): a machine on `lan` with an external X and a
//! router G, three bridge networks — masqueraded n1 with containers A and B
//! and a published port, n2 without masquerade, internal n3.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{
    DomainConfig, DomainId, EngineConfig, Gateway, L3Config, MachineConfig, NetworkConfig,
    PortConfig, PortId, PortRole, PublishConfig,
};
use crate::wire::MacAddr;

/// Ports: lan (domain 0): 0 machine uplink, 1 external X, 2 router G;
/// n1 (domain 1, 172.20.0.0/24): 3 host, 4 container A, 5 container B;
/// n2 (domain 2, 172.21.0.0/24, masquerade off): 6 host, 7 container C;
/// n3 (domain 3, 10.81.0.0/24, internal): 8 host, 9 container D.
pub const UPLINK: PortId = PortId(0);
pub const X: PortId = PortId(1);
pub const G: PortId = PortId(2);
pub const H1: PortId = PortId(3);
pub const A: PortId = PortId(4);
pub const B: PortId = PortId(5);
pub const C: PortId = PortId(7);
pub const D: PortId = PortId(9);

/// Addresses: the machine, X and G on lan (198.18.0.0/24), the containers,
/// the networks' gateways.
pub const M_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const X_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 80);
pub const G_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const A_IP: Ipv4Addr = Ipv4Addr::new(172, 20, 0, 2);
pub const B_IP: Ipv4Addr = Ipv4Addr::new(172, 20, 0, 3);
pub const C_IP: Ipv4Addr = Ipv4Addr::new(172, 21, 0, 2);
pub const D_IP: Ipv4Addr = Ipv4Addr::new(10, 81, 0, 2);
pub const GW1: Ipv4Addr = Ipv4Addr::new(172, 20, 0, 1);
pub const GW2: Ipv4Addr = Ipv4Addr::new(172, 21, 0, 1);
pub const GW3: Ipv4Addr = Ipv4Addr::new(10, 81, 0, 1);

/// The MAC of a lan host: 02:56 and its address.
pub fn lmac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x56, o[0], o[1], o[2], o[3]]
}

/// The MAC Docker gives a container: 02:42 and its address.
pub fn dmac(ip: Ipv4Addr) -> [u8; 6] {
    MacAddr::docker_from_ipv4(ip).0
}

/// Knobs of [`nat_cfg`].
#[derive(Clone, Copy, Debug)]
pub struct Knobs {
    /// `userland_proxy` of the machine.
    pub proxy: bool,
    /// G is the lan's default gateway.
    pub lan_gateway: bool,
    /// MTU of the machine's uplink.
    pub lan_mtu: u16,
    /// MTU of the three bridge networks.
    pub net_mtu: u16,
    /// Conntrack entries.
    pub capacity: usize,
    /// MAC table entries.
    pub fdb_capacity: usize,
    /// Packets waiting for ARP, per next hop.
    pub neighbour_queue: usize,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            proxy: true,
            lan_gateway: true,
            lan_mtu: 1500,
            net_mtu: 1500,
            capacity: 1024,
            fdb_capacity: EngineConfig::default().fdb_capacity,
            neighbour_queue: L3Config::default().neighbour_queue,
        }
    }
}

/// The topology above as an engine configuration: A publishes TCP and UDP
/// 8080 → 80; n1 masquerades, n2 does not, n3 is internal.
pub fn nat_cfg(k: Knobs) -> EngineConfig {
    let port = |name: &str, d: u16, role| PortConfig {
        name: name.into(),
        domain: DomainId(d),
        role,
    };
    let dom = |name: &str, gw: Option<Ipv4Addr>| DomainConfig {
        name: name.into(),
        gateway: gw.map(|ip| Gateway {
            ip,
            ip6: None,
            mac: MacAddr::docker_from_ipv4(ip),
        }),
        icc: true,
    };
    let net =
        |d: u16, subnet: &str, gw: Ipv4Addr, internal, masquerade, n: Vec<(Ipv4Addr, u16)>| {
            NetworkConfig {
                domain: DomainId(d),
                machine: 0,
                subnets: vec![subnet.parse().unwrap()],
                gateways: vec![gw],
                internal,
                masquerade,
                mtu: k.net_mtu,
                neighbours: n
                    .into_iter()
                    .map(|(ip, p)| (ip, MacAddr::docker_from_ipv4(ip), PortId(p)))
                    .collect(),
            }
        };
    let publish = |proto| PublishConfig {
        machine: 0,
        host_ip: None,
        host_port: 8080,
        proto,
        container_ip: A_IP,
        container_port: 80,
        network: 0,
    };
    EngineConfig {
        domains: vec![
            dom("lan", None),
            dom("n1", Some(GW1)),
            dom("n2", Some(GW2)),
            dom("n3", Some(GW3)),
        ],
        ports: vec![
            port("m/eth0", 0, PortRole::Plain),
            port("x/eth0", 0, PortRole::Plain),
            port("g/eth0", 0, PortRole::Plain),
            port("m/br-n1", 1, PortRole::Host),
            port("a/eth0", 1, PortRole::Container),
            port("b/eth0", 1, PortRole::Container),
            port("m/br-n2", 2, PortRole::Host),
            port("c/eth0", 2, PortRole::Container),
            port("m/br-n3", 3, PortRole::Host),
            port("d/eth0", 3, PortRole::Container),
        ],
        l3: L3Config {
            machines: vec![MachineConfig {
                name: "m".into(),
                uplink: UPLINK,
                ip: M_IP,
                mac: MacAddr(lmac(M_IP)),
                lan: Ipv4Net::new(Ipv4Addr::new(198, 18, 0, 0), 24).unwrap(),
                lan_gateway: k.lan_gateway.then_some(G_IP),
                lan_mtu: k.lan_mtu,
                userland_proxy: k.proxy,
            }],
            networks: vec![
                net(
                    1,
                    "172.20.0.0/24",
                    GW1,
                    false,
                    true,
                    vec![(A_IP, 4), (B_IP, 5)],
                ),
                net(2, "172.21.0.0/24", GW2, false, false, vec![(C_IP, 7)]),
                net(3, "10.81.0.0/24", GW3, true, false, vec![(D_IP, 9)]),
            ],
            publish: vec![publish(6), publish(17)],
            conntrack_capacity: k.capacity,
            neighbour_queue: k.neighbour_queue,
            ..L3Config::default()
        },
        fdb_capacity: k.fdb_capacity,
        ..EngineConfig::default()
    }
}
