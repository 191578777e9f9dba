//! Sequences of (port, frame) fed to a VLAN-aware lan: a trunk (machine
//! uplink, parent of its children), access ports on VLANs 0, 10 and 20,
//! macvlan children (bridge on VLAN 10, private on the untagged lan) and
//! ipvlan children (l2, l3). Frames may carry 802.1Q/802.1ad tags. Checks
//! after every frame: no panic, exactly one drop or some deliveries, no
//! frame leaving on another VLAN than the one it came in on, tags only
//! towards the trunk, and the trunk's tags carrying a VID the lan knows.
//!
//! Input format, repeated until the data runs out:
//!
//! ```text
//! port: u8      ingress port (mod 10)
//! ctl: u8       bits 0-2: dst MAC from the pool (0 = keep); bits 3-5: src
//!               MAC from the pool (0 = keep); bits 6-7: tag 0/10/20/raw
//! len: u16 le   frame length (cut to what is left)
//! frame: [u8; len]
//! ```
#![no_main]

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use vswitch::engine::{
    Action, Attachment, DomainConfig, DomainId, Engine, EngineConfig, Packet, PortConfig, PortId,
    PortRole, Siblings, VlanConfig, VlanMode, VlanPort, VnetHdr,
};
use vswitch::scenario::plan::MacAddr;

const M_MAC: [u8; 6] = [0x02, 0x56, 198, 18, 0, 2];
const PORTS: u16 = 10;

const POOL: [[u8; 6]; 8] = [
    [0; 6],
    M_MAC,
    [0x02, 0x56, 0xaa, 0, 0, 1],
    [0x02, 0x56, 0xaa, 0, 0, 2],
    [0x02, 0x42, 10, 30, 0, 1],
    [0xff; 6],
    [0x01, 0x00, 0x5e, 0, 0, 1],
    [0x02, 0x42, 198, 18, 0, 9],
];

/// The VLAN of untagged frames on each port (`None`: the trunk).
fn port_vid(p: u16) -> Option<u16> {
    match p {
        0 => None,
        1 | 4 | 5 => Some(10),
        2 => Some(20),
        _ => Some(0),
    }
}

fn config() -> (EngineConfig, VlanConfig) {
    let cfg = EngineConfig {
        domains: vec![DomainConfig {
            name: "lan".into(),
            gateway: None,
            icc: true,
        }],
        ports: (0..PORTS)
            .map(|i| PortConfig {
                name: format!("p{i}"),
                domain: DomainId(0),
                role: PortRole::Plain,
            })
            .collect(),
        ..EngineConfig::default()
    };
    let access = |v, attach| VlanPort {
        mode: VlanMode::Access(v),
        attach,
    };
    let mv = |mode| Attachment::Macvlan { group: 0, mode };
    let iv = |ip: std::net::Ipv4Addr, l3| Attachment::Ipvlan {
        group: 0,
        ip,
        ip6: Some(std::net::Ipv6Addr::from(
            u128::from(u32::from(ip)) | (0x2001_0002u128 << 96),
        )),
        l3,
        flag: Siblings::Bridge,
    };
    let vlans = VlanConfig {
        domain: DomainId(0),
        ports: vec![
            (
                PortId(0),
                VlanPort {
                    mode: VlanMode::Trunk { native: 0 },
                    attach: Attachment::Parent {
                        group: 0,
                        mac: MacAddr(M_MAC),
                        ip: Ipv4Addr::new(198, 18, 0, 2),
                    },
                },
            ),
            (PortId(1), access(10, Attachment::None)),
            (PortId(2), access(20, Attachment::None)),
            (PortId(3), access(0, Attachment::None)),
            (PortId(4), access(10, mv(Siblings::Bridge))),
            (PortId(5), access(10, mv(Siblings::Bridge))),
            (PortId(6), access(0, mv(Siblings::Private))),
            (PortId(7), access(0, mv(Siblings::Private))),
            (
                PortId(8),
                access(0, iv(Ipv4Addr::new(198, 18, 0, 130), false)),
            ),
            (PortId(9), access(0, iv(Ipv4Addr::new(10, 1, 0, 5), true))),
        ],
        vids: Vec::new(),
    };
    (cfg, vlans)
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn tag_of(f: &[u8]) -> Option<u16> {
    (f.len() >= 16 && f[12..14] == [0x81, 0x00]).then(|| u16::from_be_bytes([f[14], f[15]]) & 0xfff)
}

fuzz_target!(|data: &[u8]| {
    let (cfg, vlans) = config();
    let mut e = Engine::new(cfg).expect("valid config");
    e.set_vlans(&vlans).expect("valid vlans");
    let now = base();
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 4 {
        let (port, ctl) = (u16::from(rest[0]) % PORTS, rest[1]);
        let len = usize::from(u16::from_le_bytes([rest[2], rest[3]]));
        rest = &rest[4..];
        let n = len.min(rest.len());
        let mut frame = rest[..n].to_vec();
        rest = &rest[n..];
        let (d, s) = (usize::from(ctl & 7), usize::from((ctl >> 3) & 7));
        if d != 0 && frame.len() >= 6 {
            frame[..6].copy_from_slice(&POOL[d]);
        }
        if s != 0 && frame.len() >= 12 {
            frame[6..12].copy_from_slice(&POOL[s]);
        }
        match ctl >> 6 {
            1 | 2 if frame.len() >= 12 => {
                let vid: u16 = if ctl >> 6 == 1 { 10 } else { 20 };
                let mut t = frame[..12].to_vec();
                t.extend_from_slice(&[0x81, 0x00]);
                t.extend_from_slice(&vid.to_be_bytes());
                t.extend_from_slice(&frame[12..]);
                frame = t;
            }
            _ => {}
        }
        // The VLAN the frame is on, as the engine must classify it.
        let vid_in = match (port_vid(port), tag_of(&frame)) {
            (Some(v), None) => Some(v),
            (None, None) => Some(0),
            (None, Some(v)) => Some(v),
            (Some(_), Some(_)) => None,
        };
        let ingress = PortId(port);
        let mut p = Packet::from_frame(VnetHdr::default(), &frame);
        out.clear();
        e.handle_frame(now, ingress, &mut p, &mut out);
        assert!(!out.is_empty(), "no action");
        let drops = out.iter().filter(|a| matches!(a, Action::Drop(_))).count();
        assert!(drops == 0 || out.len() == 1, "drop plus others: {out:?}");
        for a in &out {
            match a {
                Action::Forward(to) => {
                    assert_ne!(*to, ingress, "forward back to the ingress port");
                    let v = vid_in.expect("a tag on an access port was forwarded");
                    assert_eq!(port_vid(to.0).unwrap_or(0), v, "VLAN leak to {to:?}");
                    assert_eq!(tag_of(p.frame()), None, "forwarded with a tag");
                }
                Action::Emit(to, q) => {
                    let v = vid_in.expect("a tag on an access port was answered");
                    match tag_of(q.frame()) {
                        Some(t) => {
                            assert_eq!(to.0, 0, "a tag towards an access port");
                            assert_eq!(t, v, "retagged on another VLAN");
                        }
                        None => assert_eq!(port_vid(to.0).unwrap_or(0), v, "VLAN leak"),
                    }
                }
                Action::Drop(_) | Action::Capture(..) => {}
            }
        }
    }
});
