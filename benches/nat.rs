//! The router's per-packet cost on established flows beside the plain L2
//! path, in the same run: a container → container frame switched in one
//! bridge (l2), a container → external packet masqueraded (masq-out), its
//! reply translated back (masq-in), and a packet from the lan to a
//! published port (dnat-in). 64- and 1500-byte frames.
//!
//! The IPv6 cases beside them (`route6.rs` on the reference world of
//! `fixtures6`): the same container → container frame over IPv6 (l2-v6),
//! NAT66 masquerade out and back (masq6-out, masq6-in), DNAT of a port
//! published over IPv6 (dnat6-in) and `ip6tables = false` routing between
//! two networks (routed6). The ratios to l2 are the IPv4/IPv6 comparison.
//!
//! Every case restores the original frame before each call (NAT rewrites
//! in place), the L2 case too, so the ratios compare like with like.
//!
//! ```text
//! cargo bench -p vswitch-benches --bench nat            # full
//! cargo bench -p vswitch-benches --bench nat -- --quick # smoke
//! ```

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use vswitch::engine::fixtures::{A, A_IP, B, B_IP, GW1, Knobs, M_IP, X, X_IP, dmac, lmac, nat_cfg};
use vswitch::engine::fixtures6 as f6;
use vswitch::engine::{Action, Engine, Packet, PortId, VnetHdr};
use vswitch::wire::ethernet::{self, EtherType};
use vswitch::wire::{IpProtocol, arp, ipv4, ipv6, tcp};

mod common;
use common::{criterion, self_timed_pass, time_per_call};

const SIZES: [usize; 2] = [64, 1500];

/// The engine's reference NAT world (A and B on masqueraded n1, X on lan,
/// A publishing 8080 → 80); X is reached directly, not through G.
fn engine() -> Engine {
    Engine::new(nat_cfg(Knobs {
        lan_gateway: false,
        ..Knobs::default()
    }))
    .expect("bench config")
}

/// Ethernet + IPv4 + TCP of `len` bytes in all.
#[allow(clippy::too_many_arguments)] // one header's fields
fn tcp(
    smac: [u8; 6],
    dmac: [u8; 6],
    sip: Ipv4Addr,
    dip: Ipv4Addr,
    sp: u16,
    dp: u16,
    flags: u8,
    len: usize,
) -> Vec<u8> {
    let l4 = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
    let len = len.max(l4 + tcp::HEADER_LEN);
    let mut f = vec![0u8; len];
    ethernet::emit(&mut f, dmac, smac, EtherType::IPV4);
    let ip = ipv4::Repr {
        src: sip.octets(),
        dst: dip.octets(),
        protocol: IpProtocol::TCP,
        payload_len: len - l4,
        ttl: 64,
        tos: 0,
        dont_frag: true,
    };
    ip.emit(&mut f[ethernet::HEADER_LEN..]);
    tcp_ports(&mut f[l4..], sp, dp, flags);
    f
}

/// Ports, a 20-byte data offset and `flags` in the TCP header at the
/// front of `t` (checksum left zero).
fn tcp_ports(t: &mut [u8], sp: u16, dp: u16, flags: u8) {
    let mut t = tcp::Packet::new_unchecked(t);
    t.set_src_port(sp);
    t.set_dst_port(dp);
    t.set_header_len(tcp::HEADER_LEN);
    t.set_flags(flags);
}

/// Ethernet + IPv6 + TCP of `len` bytes in all (checksum zero: the
/// router updates it incrementally and never verifies it).
#[allow(clippy::too_many_arguments)] // one header's fields
fn tcp6(
    smac: [u8; 6],
    dmac: [u8; 6],
    sip: &str,
    dip: &str,
    sp: u16,
    dp: u16,
    flags: u8,
    len: usize,
) -> Vec<u8> {
    let l4 = ethernet::HEADER_LEN + ipv6::HEADER_LEN;
    let len = len.max(l4 + tcp::HEADER_LEN);
    let mut f = vec![0u8; len];
    ethernet::emit(&mut f, dmac, smac, EtherType::IPV6);
    let ip = ipv6::Repr {
        src: f6::a6(sip).octets(),
        dst: f6::a6(dip).octets(),
        next_header: IpProtocol::TCP,
        payload_len: len - l4,
        hop_limit: 64,
        traffic_class: 0,
    };
    ip.emit(&mut f[ethernet::HEADER_LEN..]);
    tcp_ports(&mut f[l4..], sp, dp, flags);
    f
}

#[derive(Clone, Copy)]
enum Case {
    L2,
    MasqOut,
    MasqIn,
    DnatIn,
    L2v6,
    Masq6Out,
    Masq6In,
    Dnat6In,
    Routed6,
}

impl Case {
    const ALL: [Case; 9] = [
        Case::L2,
        Case::MasqOut,
        Case::MasqIn,
        Case::DnatIn,
        Case::L2v6,
        Case::Masq6Out,
        Case::Masq6In,
        Case::Dnat6In,
        Case::Routed6,
    ];

    fn name(self) -> &'static str {
        match self {
            Case::L2 => "l2",
            Case::MasqOut => "masq-out",
            Case::MasqIn => "masq-in",
            Case::DnatIn => "dnat-in",
            Case::L2v6 => "l2-v6",
            Case::Masq6Out => "masq6-out",
            Case::Masq6In => "masq6-in",
            Case::Dnat6In => "dnat6-in",
            Case::Routed6 => "routed6",
        }
    }

    /// The IPv6 world with its flows established, the frame and its
    /// ingress.
    fn setup6(self, len: usize) -> (Engine, Vec<u8>, PortId, Instant) {
        use f6::{A as A6P, A_MAC, A6, B6, EXT, EXT_MAC, GW1_MAC, ME, UP_MAC, WWW};
        let now = Instant::now();
        let routed = matches!(self, Case::Routed6);
        let mut e = Engine::new(f6::nat6_cfg(!routed, false)).expect("bench config");
        let mut out = Vec::new();
        let mut run = |e: &mut Engine, port: PortId, f: Vec<u8>| {
            out.clear();
            let mut p = Packet::from_frame(VnetHdr::default(), &f);
            e.handle_frame(now, port, &mut p, &mut out);
            assert!(matches!(out[..], [Action::Forward(_)]), "{out:?}");
            let l4 = ethernet::HEADER_LEN + ipv6::HEADER_LEN;
            tcp::Packet::new_unchecked(&p.frame()[l4..]).src_port()
        };
        let (am, gm, em, um) = (A_MAC.0, GW1_MAC.0, EXT_MAC.0, UP_MAC.0);
        if routed {
            run(&mut e, A6P, tcp6(am, gm, A6, B6, 40000, 80, 0x02, 74));
            let f = tcp6(am, gm, A6, B6, 40000, 80, 0x10, len);
            return (e, f, A6P, now);
        }
        // A:40000 → WWW:80 masqueraded (to ME:sp); WWW:5555 → ME:8080.
        let sp = run(&mut e, A6P, tcp6(am, gm, A6, WWW, 40000, 80, 0x02, 74));
        run(&mut e, EXT, tcp6(em, um, WWW, ME, 80, sp, 0x12, 74));
        run(&mut e, A6P, tcp6(am, gm, A6, WWW, 40000, 80, 0x10, 74));
        run(&mut e, EXT, tcp6(em, um, WWW, ME, 5555, 8080, 0x02, 74));
        run(&mut e, A6P, tcp6(am, gm, A6, WWW, 80, 5555, 0x12, 74));
        let (f, port) = match self {
            Case::Masq6Out => (tcp6(am, gm, A6, WWW, 40000, 80, 0x10, len), A6P),
            Case::Masq6In => (tcp6(em, um, WWW, ME, 80, sp, 0x10, len), EXT),
            _ => (tcp6(em, um, WWW, ME, 5555, 8080, 0x10, len), EXT),
        };
        (e, f, port, now)
    }

    /// An engine with the flow established, the frame and its ingress.
    fn setup(self, len: usize) -> (Engine, Vec<u8>, PortId, Instant) {
        if matches!(
            self,
            Case::Masq6Out | Case::Masq6In | Case::Dnat6In | Case::Routed6
        ) {
            return self.setup6(len);
        }
        let now = Instant::now();
        let mut e = engine();
        let mut out = Vec::new();
        let mut run = |e: &mut Engine, port: PortId, f: Vec<u8>| {
            out.clear();
            let mut p = Packet::from_frame(VnetHdr::default(), &f);
            e.handle_frame(now, port, &mut p, &mut out);
        };
        // The external and both containers are known.
        let mut req = vec![0u8; ethernet::HEADER_LEN + arp::PACKET_LEN];
        ethernet::emit(&mut req, [0xff; 6], lmac(X_IP), EtherType::ARP);
        arp::ArpRepr {
            op: arp::REQUEST,
            sha: lmac(X_IP),
            spa: X_IP.octets(),
            tha: [0; 6],
            tpa: M_IP.octets(),
        }
        .emit(&mut req[ethernet::HEADER_LEN..]);
        run(&mut e, X, req);
        run(
            &mut e,
            B,
            tcp(dmac(B_IP), dmac(A_IP), B_IP, A_IP, 1, 1, 0x10, 64),
        );
        run(
            &mut e,
            A,
            tcp(dmac(A_IP), dmac(B_IP), A_IP, B_IP, 1, 1, 0x10, 64),
        );
        let gw = dmac(GW1);
        // Flows: A:40000 → X:80 masqueraded; X:5555 → M:8080 published.
        run(
            &mut e,
            A,
            tcp(dmac(A_IP), gw, A_IP, X_IP, 40000, 80, 0x02, 64),
        );
        run(
            &mut e,
            X,
            tcp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 80, 40000, 0x12, 64),
        );
        run(
            &mut e,
            A,
            tcp(dmac(A_IP), gw, A_IP, X_IP, 40000, 80, 0x10, 64),
        );
        run(
            &mut e,
            X,
            tcp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 5555, 8080, 0x02, 64),
        );
        run(
            &mut e,
            A,
            tcp(dmac(A_IP), gw, A_IP, X_IP, 80, 5555, 0x12, 64),
        );
        run(
            &mut e,
            X,
            tcp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 5555, 8080, 0x10, 64),
        );
        let (f, port) = match self {
            Case::L2 => (tcp(dmac(A_IP), dmac(B_IP), A_IP, B_IP, 1, 1, 0x10, len), A),
            Case::L2v6 => (
                tcp6(
                    dmac(A_IP),
                    dmac(B_IP),
                    "fd00::2",
                    "fd00::3",
                    1,
                    1,
                    0x10,
                    len,
                ),
                A,
            ),
            Case::MasqOut => (tcp(dmac(A_IP), gw, A_IP, X_IP, 40000, 80, 0x10, len), A),
            Case::MasqIn => (
                tcp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 80, 40000, 0x10, len),
                X,
            ),
            _ => (
                tcp(lmac(X_IP), lmac(M_IP), X_IP, M_IP, 5555, 8080, 0x10, len),
                X,
            ),
        };
        (e, f, port, now)
    }
}

/// One call: restore the frame, run the engine, check one forward.
#[inline]
fn once(
    e: &mut Engine,
    p: &mut Packet,
    f: &[u8],
    port: PortId,
    now: Instant,
    out: &mut Vec<Action>,
) {
    let area = p.read_area();
    area[..f.len()].copy_from_slice(f);
    p.set_len(f.len());
    out.clear();
    e.handle_frame(now, port, black_box(p), out);
    black_box(&out);
}

fn bench_engine(c: &mut Criterion) {
    let mut g = c.benchmark_group("nat");
    g.throughput(Throughput::Elements(1));
    for len in SIZES {
        for case in Case::ALL {
            let (mut e, f, port, now) = case.setup(len);
            let mut p = Packet::new();
            let mut out: Vec<Action> = Vec::with_capacity(8);
            g.bench_function(BenchmarkId::new(case.name(), len), |b| {
                b.iter(|| once(&mut e, &mut p, &f, port, now, &mut out))
            });
            assert!(
                matches!(out[..], [Action::Forward(_)]),
                "{}: {out:?}",
                case.name()
            );
        }
    }
    g.finish();
}

fn print_ratios(budget: Duration) {
    println!("\nrouted/NAT cases vs the L2 path (self-timed, {budget:?} per case):");
    println!(
        "{:>10} {:>6} {:>10} {:>12} {:>8}",
        "case", "bytes", "ns/frame", "Mframes/s", "x l2"
    );
    for len in SIZES {
        let mut l2 = 0.0;
        for case in Case::ALL {
            let (mut e, f, port, now) = case.setup(len);
            let mut p = Packet::new();
            let mut out: Vec<Action> = Vec::with_capacity(8);
            let ns = time_per_call(budget, || once(&mut e, &mut p, &f, port, now, &mut out));
            if matches!(case, Case::L2) {
                l2 = ns;
            }
            println!(
                "{:>10} {:>6} {:>10.2} {:>12.2} {:>8.2}",
                case.name(),
                len,
                ns,
                1e3 / ns,
                ns / l2
            );
        }
    }
}

fn main() {
    let mut c = criterion();
    bench_engine(&mut c);
    c.final_summary();
    if self_timed_pass() {
        print_ratios(Duration::from_millis(300));
    }
}
