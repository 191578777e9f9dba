//! Sequences of frames through the router: one machine with a masqueraded
//! network (two containers, a published TCP and UDP port), a network
//! without masquerade, an internal one, and two externals on `lan`, with a
//! small conntrack table and ARP queue so that the bounds are reached.
//! Checks after every frame: no panic, at most one drop and then alone,
//! the tables within their bounds, and every routed IPv4 frame leaving with
//! a valid header checksum.
//!
//! Input format, repeated until the data runs out (see `corpus/nat_path`):
//!
//! ```text
//! port: u8      ingress port (mod 11: 10 is unknown)
//! advance: u8   seconds to move the virtual clock
//! kind: u8      0 TCP, 1 UDP, 2 ICMP echo, 3 ICMP error quoting TCP/UDP,
//!               4 ARP, 5 raw (the next `len` bytes as a frame)
//! src, dst: u8  indices into the address pool (and its MACs)
//! sport, dport: u16 le
//! flags: u8     TCP flags (kind 0), DF when bit 6 is set (kinds 0-2)
//! ttl: u8
//! len: u8       payload length (kind 5: frame length)
//! ```
#![no_main]

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use vswitch::engine::fixtures::{
    A_IP, B_IP, C_IP, D_IP, G_IP, GW1, GW2, GW3, Knobs, M_IP, X_IP, dmac, lmac, nat_cfg,
};
use vswitch::engine::{Action, Engine, EngineConfig, Packet, PortId, VnetHdr};

const CAPACITY: usize = 8;

/// Addresses a record can name (index mod len); the MAC of each is the
/// one its owner uses on its segment.
const POOL: [Ipv4Addr; 12] = [
    A_IP,
    B_IP,
    C_IP,
    D_IP,
    M_IP,
    X_IP,
    G_IP,
    GW1,
    GW2,
    GW3,
    Ipv4Addr::new(203, 0, 113, 7),
    Ipv4Addr::new(198, 18, 0, 99),
];

fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    if ip.octets()[0] == 198 {
        lmac(ip)
    } else {
        dmac(ip)
    }
}

/// The engine's reference NAT world with small tables, so that the bounds
/// are reached, and no userland proxy (hairpin NAT in the engine).
fn config() -> EngineConfig {
    nat_cfg(Knobs {
        proxy: false,
        net_mtu: 1400,
        capacity: CAPACITY,
        fdb_capacity: 16,
        neighbour_queue: 4,
        ..Knobs::default()
    })
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn csum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Ethernet + IPv4 header around `l4`.
#[allow(clippy::too_many_arguments)]
fn ipv4(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    df: bool,
    l4: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(34 + l4.len());
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&smac);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    h[6] = if df { 0x40 } else { 0 };
    h[8] = ttl;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = csum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(l4);
    f
}

fn l4(kind: u8, sport: u16, dport: u16, flags: u8, len: usize) -> (u8, Vec<u8>) {
    let mut v = match kind {
        0 => {
            let mut t = vec![0u8; 20];
            t[12] = 0x50;
            t[13] = flags & 0x3f;
            t
        }
        1 => vec![0u8; 8],
        _ => vec![8, 0, 0, 0, 0, 0, 0, 1],
    };
    match kind {
        0 | 1 => {
            v[0..2].copy_from_slice(&sport.to_be_bytes());
            v[2..4].copy_from_slice(&dport.to_be_bytes());
        }
        _ => v[4..6].copy_from_slice(&sport.to_be_bytes()),
    }
    v.resize(v.len() + len, 0x5a);
    if kind == 1 {
        let n = v.len() as u16;
        v[4..6].copy_from_slice(&n.to_be_bytes());
    }
    if kind == 2 {
        let c = csum(&v);
        v[2..4].copy_from_slice(&c.to_be_bytes());
    }
    let proto = match kind {
        0 => 6,
        1 => 17,
        _ => 1,
    };
    (proto, v)
}

fuzz_target!(|data: &[u8]| {
    let mut e = Engine::new(config()).expect("valid config");
    let mut now = base();
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 12 {
        let r = &rest[..12];
        rest = &rest[12..];
        let (port, adv, kind) = (r[0] % 11, r[1], r[2] % 6);
        let (src, dst) = (
            POOL[usize::from(r[3]) % POOL.len()],
            POOL[usize::from(r[4]) % POOL.len()],
        );
        let sport = u16::from_le_bytes([r[5], r[6]]);
        let dport = u16::from_le_bytes([r[7], r[8]]);
        let (flags, ttl, len) = (r[9], r[10], usize::from(r[11]) * 8);
        let df = flags & 0x40 != 0;
        // The frame goes to the gateway when the source is a container
        // and the destination is off its subnet, else to the owner's MAC.
        let src_mac = mac_of(src);
        let dst_mac = if src.octets()[0] != 198 && src.octets()[..3] != dst.octets()[..3] {
            let o = src.octets();
            dmac(Ipv4Addr::new(o[0], o[1], o[2], 1))
        } else if dst.octets()[0] == 198 || src.octets()[0] == 198 {
            mac_of(if dst.octets()[0] == 198 { dst } else { M_IP })
        } else {
            mac_of(dst)
        };
        let frame = match kind {
            0..=2 => {
                let (proto, body) = l4(kind, sport, dport, flags, len);
                ipv4(src_mac, dst_mac, src, dst, proto, ttl, df, &body)
            }
            3 => {
                let (proto, body) = l4(flags % 2, dport, sport, 0x02, 0);
                let quoted = ipv4([0; 6], [0; 6], dst, src, proto, 1, false, &body);
                let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
                icmp.extend_from_slice(&quoted[14..]);
                let c = csum(&icmp);
                icmp[2..4].copy_from_slice(&c.to_be_bytes());
                ipv4(src_mac, dst_mac, src, dst, 1, ttl, false, &icmp)
            }
            4 => {
                let mut a = vec![0xff; 6];
                a.extend_from_slice(&src_mac);
                a.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1 + (flags & 1)]);
                a.extend_from_slice(&src_mac);
                a.extend_from_slice(&src.octets());
                a.extend_from_slice(&[0; 6]);
                a.extend_from_slice(&dst.octets());
                a
            }
            _ => {
                let n = len.min(rest.len());
                let f = rest[..n].to_vec();
                rest = &rest[n..];
                f
            }
        };

        now += Duration::from_secs(u64::from(adv));
        let ingress = PortId(u16::from(port));
        let mut p = Packet::from_frame(VnetHdr::default(), &frame);
        out.clear();
        e.handle_frame(now, ingress, &mut p, &mut out);

        let drops = out.iter().filter(|a| matches!(a, Action::Drop(_))).count();
        assert!(
            drops == 0 || out.len() == 1,
            "drop plus other actions: {out:?}"
        );
        assert!(e.conntrack_len() <= CAPACITY, "conntrack over capacity");
        for a in &out {
            let f = match a {
                Action::Forward(to) => {
                    assert!(to.0 < 10, "forward to an unknown port");
                    p.frame()
                }
                Action::Emit(to, q) => {
                    assert!(to.0 < 10, "emit to an unknown port");
                    q.frame()
                }
                Action::Drop(_) => continue,
                Action::Capture(..) => panic!("capture without an overlay"),
            };
            if f.len() >= 34 && f[12..14] == [0x08, 0x00] && f[14] == 0x45 && kind != 5 {
                assert_eq!(csum(&f[14..34]), 0, "IPv4 header checksum broken");
            }
        }
    }
    e.expire(now + Duration::from_secs(600));
});
