//! Sequences of IPv6 frames through the IPv6 router (`route6.rs`): the
//! reference world of `engine::fixtures6` (a machine with a lan external,
//! two dual-stack networks, a published port), with `ip6tables` on or off.
//! Checks after every frame: no panic, at most one drop and then alone,
//! and every routed TCP/UDP/ICMPv6 frame that came in with a valid
//! checksum leaving with a valid one.
//!
//! Input format: one byte of flags (bit 0: ip6tables off, bit 1: n2
//! internal), then records until the data runs out:
//!
//! ```text
//! port: u8      ingress port (mod 6)
//! kind: u8      0 TCP, 1 UDP, 2 ICMPv6 echo, 3 raw (the next `len` bytes)
//! src, dst: u8  indices into the address pool (and its MACs)
//! sport, dport: u16 le
//! flags: u8     TCP flags
//! hop: u8       hop limit
//! len: u8       payload length (kind 3: frame length)
//! ```
#![no_main]

use std::net::Ipv6Addr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use libfuzzer_sys::fuzz_target;
use vswitch::engine::fixtures6::{
    A_MAC, A6, B_MAC, B6, EXT_MAC, GW1_MAC, GW2_MAC, ME, UP_MAC, WWW, a6, nat6_cfg,
};
use vswitch::engine::{Action, Engine, Packet, PortId, VnetHdr};

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Addresses a record can name, each with the MAC its owner uses.
fn pool() -> [(Ipv6Addr, [u8; 6]); 7] {
    [
        (a6(A6), A_MAC.0),
        (a6(B6), B_MAC.0),
        (a6(WWW), EXT_MAC.0),
        (a6(ME), UP_MAC.0),
        (a6("fd00:30::1"), GW1_MAC.0),
        (a6("fd00:31::1"), GW2_MAC.0),
        (a6("2001:db8::9"), [0x02, 0, 0, 0, 0, 9]),
    ]
}

/// True when the frame's L4 checksum is right (etherparse computes it).
fn l4_ok(frame: &[u8]) -> Option<bool> {
    let s = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(NetSlice::Ipv6(ip)) = s.net else {
        return None;
    };
    let h = ip.header();
    match s.transport? {
        TransportSlice::Tcp(t) => Some(
            t.to_header()
                .calc_checksum_ipv6_raw(h.source(), h.destination(), t.payload())
                .ok()?
                == t.checksum(),
        ),
        TransportSlice::Udp(u) => Some(
            u.to_header()
                .calc_checksum_ipv6_raw(h.source(), h.destination(), u.payload())
                .ok()?
                == u.checksum(),
        ),
        TransportSlice::Icmpv6(i) => Some(
            i.icmp_type()
                .calc_checksum(h.source(), h.destination(), i.payload())
                .ok()?
                == i.checksum(),
        ),
        _ => None,
    }
}

fn build(rec: &[u8], payload: &[u8]) -> Vec<u8> {
    let pool = pool();
    let (src, smac) = pool[usize::from(rec[2]) % pool.len()];
    let (dst, dmac) = pool[usize::from(rec[3]) % pool.len()];
    // Frames go to the next hop: the dst's MAC, or the gateway's.
    let dmac = if rec[1] & 0x80 != 0 { GW1_MAC.0 } else { dmac };
    let sport = u16::from_le_bytes([rec[4], rec[5]]);
    let dport = u16::from_le_bytes([rec[6], rec[7]]);
    let b = PacketBuilder::ethernet2(smac, dmac).ipv6(src.octets(), dst.octets(), rec[9]);
    let mut v = Vec::new();
    let _ = match rec[1] & 3 {
        0 => {
            let mut t = b.tcp(sport, dport, 1, 64240);
            if rec[8] & 2 != 0 {
                t = t.syn();
            }
            if rec[8] & 16 != 0 {
                t = t.ack(1);
            }
            t.write(&mut v, payload)
        }
        1 => b.udp(sport, dport).write(&mut v, payload),
        _ => b.icmpv6_echo_request(sport, dport).write(&mut v, payload),
    };
    v
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut e = Engine::new(nat6_cfg(flags & 1 == 0, flags & 2 != 0)).expect("valid config");
    let mut now = base();
    let mut out = Vec::new();
    while rest.len() >= 11 {
        let rec = &rest[..11];
        rest = &rest[11..];
        let n = usize::from(rec[10]).min(rest.len());
        let (body, tail) = rest.split_at(n);
        rest = tail;
        let frame = if rec[1] & 3 == 3 {
            body.to_vec()
        } else {
            build(rec, body)
        };
        let valid_in = l4_ok(&frame) == Some(true);
        now += Duration::from_millis(u64::from(rec[0]));
        let ingress = PortId(u16::from(rec[0]) % 6);
        let mut p = Packet::from_frame(VnetHdr::default(), &frame);
        out.clear();
        e.handle_frame(now, ingress, &mut p, &mut out);
        let drops = out.iter().filter(|a| matches!(a, Action::Drop(_))).count();
        assert!(
            drops == 0 || out.len() == 1,
            "drop plus other actions: {out:?}"
        );
        if valid_in && out.iter().any(|a| matches!(a, Action::Forward(_))) {
            assert_eq!(
                l4_ok(p.frame()),
                Some(true),
                "a routed frame left with a bad checksum"
            );
        }
    }
});
