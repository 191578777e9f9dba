//! The VTEP's decapsulation path (issue 8): arbitrary bytes as a frame on a
//! machine's lan port of an engine with two overlay VTEPs (VNI 4097 on m1
//! and m2), either raw or behind a valid outer Ethernet/IPv4/UDP 4789/VXLAN
//! header to m1 (so the inner frame reaches the overlay domain), plus the
//! sans-IO helpers on the same bytes. Checks: no panic; at most one drop
//! and then alone; decapsulation leaves exactly the inner bytes; software
//! segmentation never yields an empty set.
//!
//! Input: `mode: u8` (bit 0: wrap in a valid outer header; bits 1-2: the
//! vnet header's flags/GSO), `vni: u8` (added to 4096), then the frame.

#![no_main]

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use vswitch::engine::vxlan::{decap_in_place, encap, parse_outer, segment_tcp4};
use vswitch::engine::{
    Action, DomainConfig, DomainId, Engine, EngineConfig, Packet, PortConfig, PortId, PortRole,
    VnetHdr, VtepConfig,
};
use vswitch::scenario::plan::MacAddr;

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0x56, 198, 18, 0, n])
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, n)
}

fn engine() -> Engine {
    let dom = |n: &str| DomainConfig {
        name: n.into(),
        gateway: None,
        icc: true,
    };
    let port = |n: &str, d: u16| PortConfig {
        name: n.into(),
        domain: DomainId(d),
        role: if d == 0 {
            PortRole::Plain
        } else {
            PortRole::Container
        },
    };
    let vtep = |m: u8, d: u16, p: u16, peer: u8| VtepConfig {
        name: "ov".into(),
        vni: 4097,
        domain: DomainId(d),
        port: PortId(p),
        uplink: PortId(u16::from(m) - 1),
        local_ip: ip(m),
        local_mac: mac(m),
        peers: vec![(ip(peer), mac(peer))],
        bindings: vec![],
        capture: true,
        esp: Vec::new(),
    };
    let mut ports = vec![port("m1", 0), port("m2", 0), port("a", 1), port("b", 2)];
    ports.push(PortConfig {
        name: "v1".into(),
        domain: DomainId(1),
        role: PortRole::Plain,
    });
    ports.push(PortConfig {
        name: "v2".into(),
        domain: DomainId(2),
        role: PortRole::Plain,
    });
    Engine::new(EngineConfig {
        domains: vec![dom("lan"), dom("ov@m1"), dom("ov@m2")],
        ports,
        overlay: vec![vtep(1, 1, 4, 2), vtep(2, 2, 5, 1)],
        ..EngineConfig::default()
    })
    .expect("valid configuration")
}

fuzz_target!(|data: &[u8]| {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let now = *BASE.get_or_init(Instant::now);
    let [mode, vni, frame @ ..] = data else {
        return;
    };
    let hdr = match (mode >> 1) & 3 {
        0 => VnetHdr::default(),
        1 => VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VnetHdr::default()
        },
        2 => VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            gso_type: VnetHdr::GSO_TCPV4,
            hdr_len: 54,
            gso_size: 536,
            csum_start: 34,
            csum_offset: 16,
        },
        _ => VnetHdr {
            gso_type: VnetHdr::GSO_TCPV4,
            gso_size: 1,
            ..VnetHdr::default()
        },
    };
    let inner = Packet::from_frame(hdr, frame);
    let mut pkt = if mode & 1 == 1 {
        let e = encap(
            &inner,
            4096 + u32::from(*vni),
            mac(2),
            ip(2),
            mac(1),
            ip(1),
            50000,
        );
        // An inner frame shorter than an Ethernet header is refused.
        let o = parse_outer(e.frame());
        assert_eq!(o.is_err(), frame.len() < 14, "{o:?}");
        if let Ok(Some(o)) = o {
            let mut d = e.clone();
            decap_in_place(&mut d, o.inner);
            assert_eq!(d.frame(), inner.frame());
        }
        e
    } else {
        let _ = parse_outer(frame);
        Packet::from_frame(hdr, frame)
    };
    assert!(!segment_tcp4(&inner).is_empty());
    let mut e = engine();
    let mut out = Vec::new();
    e.handle_frame(now, PortId(1), &mut pkt, &mut out);
    let drops = out.iter().filter(|a| matches!(a, Action::Drop(_))).count();
    assert!(
        drops == 0 || out.len() == 1,
        "drop plus other actions: {out:?}"
    );
});
