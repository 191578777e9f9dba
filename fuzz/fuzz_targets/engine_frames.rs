//! Sequences of (port, frame) fed to an engine with two domains: a Docker
//! network with a gateway, a host port, three containers and `icc = false`,
//! and a `lan` segment with two plain ports. Checks the switch's invariants
//! after every frame.
//!
//! Input format, repeated until the data runs out (see `corpus/`):
//!
//! ```text
//! port: u8      ingress port (mod 8: 6 and 7 are unknown ports)
//! advance: u8   seconds to move the virtual clock
//! ctl: u8       bits 0-2: replace dst MAC with pool[ctl & 7] (0 = keep);
//!               bits 3-5: replace src MAC with pool[(ctl >> 3) & 7] (0 = keep)
//! len: u16 le   frame length (cut to what is left)
//! frame: [u8; len]
//! ```
#![no_main]

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use vswitch::engine::{
    Action, DomainConfig, DomainId, Engine, EngineConfig, Gateway, Packet, PortConfig, PortId,
    PortRole, VnetHdr,
};
use vswitch::scenario::plan::MacAddr;

const GW_MAC: [u8; 6] = [0x02, 0x42, 10, 0, 0, 1];
const CAPACITY: usize = 4;

/// MACs the control byte can put in a frame, so that learning, moves, hits
/// and the gateway are reached without the fuzzer guessing 48-bit values.
const POOL: [[u8; 6]; 8] = [
    [0; 6], // slot 0 means "keep the frame's own"
    GW_MAC,
    [0x02, 0x42, 10, 0, 0, 2],
    [0x02, 0x42, 10, 0, 0, 3],
    [0x02, 0x42, 10, 0, 0, 4],
    [0xff; 6],
    [0x01, 0x00, 0x5e, 0, 0, 1],
    [0x02, 0x00, 0, 0, 0, 9],
];

fn config() -> EngineConfig {
    let port = |name: &str, d: u16, role| PortConfig {
        name: name.into(),
        domain: DomainId(d),
        role,
    };
    EngineConfig {
        domains: vec![
            DomainConfig {
                name: "locked".into(),
                gateway: Some(Gateway {
                    ip: Ipv4Addr::new(10, 0, 0, 1),
                    // gateway6 too, so the IPv6 neighbour and echo answers are fuzzed.
                    ip6: Some(std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
                    mac: MacAddr(GW_MAC),
                }),
                icc: false,
            },
            DomainConfig {
                name: "lan".into(),
                gateway: None,
                icc: true,
            },
        ],
        ports: vec![
            port("locked/host", 0, PortRole::Host),
            port("a/eth0", 0, PortRole::Container),
            port("b/eth0", 0, PortRole::Container),
            port("c/eth0", 0, PortRole::Container),
            port("x/eth0", 1, PortRole::Plain),
            port("y/eth0", 1, PortRole::Plain),
        ],
        fdb_capacity: CAPACITY,
        fdb_aging: Duration::from_secs(300),
        ..EngineConfig::default()
    }
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fuzz_target!(|data: &[u8]| {
    let mut e = Engine::new(config()).expect("valid config");
    let mut now = base();
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 5 {
        let (port, adv, ctl) = (rest[0] % 8, rest[1], rest[2]);
        let len = usize::from(u16::from_le_bytes([rest[3], rest[4]]));
        rest = &rest[5..];
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

        now += Duration::from_secs(u64::from(adv));
        let ingress = PortId(u16::from(port));
        let mut p = Packet::from_frame(VnetHdr::default(), &frame);
        out.clear();
        e.handle_frame(now, ingress, &mut p, &mut out);

        assert!(!out.is_empty(), "no action");
        let drops = out.iter().filter(|a| matches!(a, Action::Drop(_))).count();
        assert!(
            drops == 0 || out.len() == 1,
            "drop plus other actions: {out:?}"
        );
        assert_eq!(p.frame(), &frame[..], "ingress frame modified");
        for a in &out {
            match a {
                Action::Forward(to) => {
                    assert_ne!(*to, ingress, "forward back to the ingress port");
                    assert_eq!(
                        e.port_domain(*to),
                        e.port_domain(ingress),
                        "crossed domains"
                    );
                    let c2c = e.port_role(ingress) == Some(PortRole::Container)
                        && e.port_role(*to) == Some(PortRole::Container);
                    assert!(!c2c, "icc=false delivered {ingress:?} → {to:?}");
                }
                Action::Emit(to, pk) => {
                    assert_eq!(*to, ingress, "emit to another port");
                    assert_eq!(&pk.frame()[6..12], &GW_MAC[..], "emit not from the gateway");
                }
                Action::Capture(..) => panic!("capture without an overlay"),
                Action::Drop(_) => {}
            }
        }
        for d in 0..2 {
            assert!(e.fdb_len(DomainId(d)) <= CAPACITY, "fdb over capacity");
        }
        if adv == 255 {
            e.expire(now);
            assert!(e.poll_timeout().is_none_or(|t| t >= now));
        }
    }
});
