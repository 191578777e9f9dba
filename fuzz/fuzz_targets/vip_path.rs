//! The service stage (issue 14): arbitrary bytes as a frame into an engine
//! with a VIP over three tasks on an overlay domain and a routing-mesh port
//! on a machine with its ingress sandbox, entering on any of its ports; the
//! frame optionally aimed at the VIP or at the machine's published port
//! first (so the scheduler and both NAT directions run), then fed back in
//! from a task's port as its "reply" (the reverse paths, with the state the
//! first pass left). Checks: no panic; at most one drop and then alone;
//! every IPv4 frame that comes out with a changed header has a valid IPv4
//! header checksum when the input had one; expiry never panics.
//!
//! Input: `mode: u8` (bits 0-2: ingress port; bits 3-4: aim at nothing,
//! the VIP, the mesh port, or the sandbox address; bit 5: a partial-checksum
//! vnet header), then the frame.

#![no_main]

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use vswitch::engine::{
    Action, Backend, DomainConfig, DomainId, Engine, EngineConfig, MeshConfig, Packet, PortConfig,
    PortId, PortRole, SandboxConfig, ServiceConfig, VipConfig, VnetHdr,
};
use vswitch::scenario::plan::MacAddr;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
const M_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const M_MAC: MacAddr = MacAddr([2, 0x56, 198, 18, 0, 1]);
const SB_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn mac(ip: Ipv4Addr) -> MacAddr {
    MacAddr::docker_from_ipv4(ip)
}

fn engine() -> Engine {
    let port = |name: &str, d: u16, role| PortConfig {
        name: name.into(),
        domain: DomainId(d),
        role,
    };
    let mut e = Engine::new(EngineConfig {
        domains: ["front", "lan", "ingress"]
            .iter()
            .map(|n| DomainConfig {
                name: (*n).into(),
                gateway: None,
                icc: true,
            })
            .collect(),
        ports: vec![
            port("client", 0, PortRole::Container),
            port("t1", 0, PortRole::Container),
            port("t2", 0, PortRole::Container),
            port("t3", 2, PortRole::Container),
            port("ext", 1, PortRole::Plain),
            port("m1-eth0", 1, PortRole::Plain),
            port("m1-ingress-sbox", 2, PortRole::Plain),
        ],
        ..EngineConfig::default()
    })
    .expect("valid configuration");
    let b = |ip: Ipv4Addr| Backend { ip, mac: mac(ip) };
    e.set_services(ServiceConfig {
        vips: vec![VipConfig {
            name: "web@front".into(),
            vip: VIP,
            mac: mac(VIP),
            domains: vec![DomainId(0)],
            backends: [3, 4, 5]
                .iter()
                .map(|&k| b(Ipv4Addr::new(10, 10, 0, k)))
                .collect(),
        }],
        sandboxes: vec![SandboxConfig {
            machine_ip: M_IP,
            machine_mac: M_MAC,
            uplink: PortId(5),
            port: PortId(6),
            ip: SB_IP,
            mac: mac(SB_IP),
        }],
        mesh: vec![
            MeshConfig {
                name: "web".into(),
                proto: 6,
                published: 8080,
                target: 80,
                backends: vec![b(Ipv4Addr::new(10, 0, 0, 6))],
            },
            MeshConfig {
                name: "dns".into(),
                proto: 17,
                published: 5353,
                target: 53,
                backends: vec![b(Ipv4Addr::new(10, 0, 0, 6))],
            },
        ],
    });
    e
}

/// Points an Ethernet/IPv4 frame at `mac`/`ip` (and `port` when it has
/// room for a TCP/UDP header); other bytes are left as they are.
fn aim(f: &mut [u8], mac: MacAddr, ip: Ipv4Addr, port: Option<u16>) {
    if f.len() >= 14 {
        f[0..6].copy_from_slice(&mac.0);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
    }
    if f.len() >= 34 {
        f[30..34].copy_from_slice(&ip.octets());
    }
    if let (Some(p), true) = (port, f.len() >= 38) {
        let ihl = usize::from(f[14] & 0x0f) * 4;
        if f.len() >= 14 + ihl + 4 {
            f[14 + ihl + 2..14 + ihl + 4].copy_from_slice(&p.to_be_bytes());
        }
    }
}

/// Whether an Ethernet frame holds an IPv4 header with a valid checksum.
fn ipv4_ok(f: &[u8]) -> Option<bool> {
    if f.len() < 34 || f[12..14] != [0x08, 0x00] || f[14] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    if ihl < 20 || f.len() < 14 + ihl {
        return None;
    }
    let mut s: u32 = 0;
    for c in f[14..14 + ihl].chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    Some(s == 0xffff)
}

fn check(out: &[Action], pkt: &Packet, input_ok: Option<bool>) {
    let drops = out.iter().filter(|a| matches!(a, Action::Drop(_))).count();
    assert!(
        drops == 0 || out.len() == 1,
        "drop plus other actions: {out:?}"
    );
    if input_ok != Some(true) {
        return;
    }
    for a in out {
        let f = match a {
            Action::Forward(_) => pkt.frame(),
            Action::Emit(_, p) | Action::Capture(_, p) => p.frame(),
            Action::Drop(_) => continue,
        };
        if let Some(ok) = ipv4_ok(f) {
            assert!(ok, "bad IPv4 checksum out of a valid input: {f:02x?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let now = *BASE.get_or_init(Instant::now);
    let [mode, frame @ ..] = data else {
        return;
    };
    let mut f = frame.to_vec();
    match (mode >> 3) & 3 {
        1 => aim(&mut f, mac(VIP), VIP, None),
        2 => aim(&mut f, M_MAC, M_IP, Some(8080)),
        3 => aim(&mut f, mac(SB_IP), SB_IP, Some(8080)),
        _ => {}
    }
    let hdr = if mode & 0x20 != 0 {
        VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            ..VnetHdr::default()
        }
    } else {
        VnetHdr::default()
    };
    let mut e = engine();
    let ingress = PortId(u16::from(mode & 7).min(6));
    let input_ok = ipv4_ok(&f);
    let mut pkt = Packet::from_frame(hdr, &f);
    let mut out = Vec::new();
    e.handle_frame(now, ingress, &mut pkt, &mut out);
    check(&out, &pkt, input_ok);
    // What came out, back in from a task (its "reply"), on the same state.
    let back = pkt.frame().to_vec();
    for task in [PortId(1), PortId(3)] {
        let mut r = Packet::from_frame(hdr, &back);
        let ok = ipv4_ok(&back);
        out.clear();
        e.handle_frame(now + Duration::from_millis(1), task, &mut r, &mut out);
        check(&out, &r, ok);
    }
    let _ = e.expire(now + Duration::from_secs(1000));
});
