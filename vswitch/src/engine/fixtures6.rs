//! The IPv6 routing world (`route6.rs`) for its unit tests, the
//! `nat66_path` fuzz target and the NAT bench: one definition, so that all
//! three exercise the same machine.

use std::net::Ipv6Addr;

use super::route6::{Machine6, Network6, Publish6, Route6Config};
use super::{
    DomainConfig, DomainId, EngineConfig, Gateway, L3Config, PortConfig, PortId, PortRole,
};
use crate::wire::MacAddr;

/// The machine's uplink on lan.
pub const UPLINK: PortId = PortId(0);
/// The external WWW on lan.
pub const EXT: PortId = PortId(1);
/// n1's host port.
pub const HOST1: PortId = PortId(2);
/// Container A on n1.
pub const A: PortId = PortId(3);
/// Container B on n2.
pub const B: PortId = PortId(5);
/// n2's host port.
pub const HOST2: PortId = PortId(4);

/// The uplink's MAC.
pub const UP_MAC: MacAddr = MacAddr([0x02, 0x56, 198, 18, 0, 2]);
/// WWW's MAC.
pub const EXT_MAC: MacAddr = MacAddr([0x02, 0x56, 198, 18, 0, 80]);
/// n1's gateway MAC.
pub const GW1_MAC: MacAddr = MacAddr([0x02, 0x42, 172, 30, 0, 1]);
/// n2's gateway MAC.
pub const GW2_MAC: MacAddr = MacAddr([0x02, 0x42, 172, 31, 0, 1]);
/// A's MAC.
pub const A_MAC: MacAddr = MacAddr([0x02, 0x42, 172, 30, 0, 2]);
/// B's MAC.
pub const B_MAC: MacAddr = MacAddr([0x02, 0x42, 172, 31, 0, 2]);

/// An IPv6 address from text (for the constants above).
pub fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// The machine's ip6.
pub const ME: &str = "2001:2::10";
/// WWW's ip6.
pub const WWW: &str = "2001:2::80";
/// A's ip6.
pub const A6: &str = "fd00:30::2";
/// B's ip6.
pub const B6: &str = "fd00:31::2";

/// lan (uplink, WWW); n1 (host port, A) and n2 (host port, B, internal
/// when asked), both with IPv6; `8080:80` published by A; `ip6tables` as
/// given.
pub fn nat6_cfg(ip6tables: bool, n2_internal: bool) -> EngineConfig {
    let port = |name: &str, d: u16, role| PortConfig {
        name: name.into(),
        domain: DomainId(d),
        role,
    };
    let gw = |ip: [u8; 4], ip6: &str, mac| DomainConfig {
        name: "n".into(),
        gateway: Some(Gateway {
            ip: ip.into(),
            ip6: Some(a6(ip6)),
            mac,
        }),
        icc: true,
    };
    let lan = DomainConfig {
        name: "lan".into(),
        gateway: None,
        icc: true,
    };
    let net = |d: u16, sub: &str, gw6: &str, mac, internal| Network6 {
        domain: DomainId(d),
        machine: 0,
        subnet6: sub.parse().unwrap(),
        gateway6: a6(gw6),
        gw_mac: mac,
        internal,
        masquerade: true,
        mtu: 1500,
    };
    let v6 = Route6Config {
        machines: vec![Machine6 {
            uplink: UPLINK,
            mac: UP_MAC,
            ip6: Some(a6(ME)),
            lan6: Some("2001:2::/64".parse().unwrap()),
            lan_gateway6: None,
            ip6tables,
            lan_mtu: 1500,
        }],
        networks: vec![
            net(1, "fd00:30::/64", "fd00:30::1", GW1_MAC, false),
            net(2, "fd00:31::/64", "fd00:31::1", GW2_MAC, n2_internal),
        ],
        publish: vec![Publish6 {
            machine: 0,
            host_ip: None,
            host_port: 8080,
            proto: 6,
            container_ip: a6(A6),
            container_port: 80,
        }],
        neighbours: vec![
            (a6(WWW), EXT_MAC, EXT),
            (a6(A6), A_MAC, A),
            (a6(B6), B_MAC, B),
        ],
    };
    let l3 = L3Config {
        v6,
        ..L3Config::default()
    };
    EngineConfig {
        domains: vec![
            lan,
            gw([172, 30, 0, 1], "fd00:30::1", GW1_MAC),
            gw([172, 31, 0, 1], "fd00:31::1", GW2_MAC),
        ],
        ports: vec![
            port("lan/uplink", 0, PortRole::Plain),
            port("lan/ext", 0, PortRole::Plain),
            port("n1/host", 1, PortRole::Host),
            port("a/eth0", 1, PortRole::Container),
            port("n2/host", 2, PortRole::Host),
            port("b/eth0", 2, PortRole::Container),
        ],
        l3,
        ..EngineConfig::default()
    }
}
