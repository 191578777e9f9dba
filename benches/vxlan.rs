//! The VTEP's per-packet work (issue 8): VXLAN encapsulation of a 64- and a
//! 1450-byte inner frame, decapsulation (outer parse + strip), and the
//! whole engine path of a frame from a container on m1 to one on m2
//! (switch, encap, lan, decap, switch), beside a baseline that only copies
//! the frame once.
//!
//! Beside each, the encrypted overlay's (issue 14, OV-9): `esp-encap`
//! (VXLAN encap, then ESP/AES-GCM protect), `esp-decap` (unprotect with
//! its anti-replay check, then the VXLAN parse and strip) and the engine
//! path of an encrypted VNI.
//!
//! `Throughput::Elements(1)`: criterion reports packets/s.
//!
//! ```text
//! cargo bench -p vswitch-benches --bench vxlan            # full
//! cargo bench -p vswitch-benches --bench vxlan -- --quick # smoke
//! ```

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput};
use vswitch::engine::esp::{self, EspState, OutboundSa, SaConfig};
use vswitch::engine::vxlan::{decap_in_place, encap, parse_outer};
use vswitch::engine::{
    DomainConfig, DomainId, Engine, EngineConfig, Packet, PortConfig, PortId, PortRole, VnetHdr,
    VtepConfig,
};
use vswitch::wire::MacAddr;
use vswitch::wire::ethernet::{self, EtherType};

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0x56, 198, 18, 0, n])
}
fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, n)
}
const A: MacAddr = MacAddr([2, 0x42, 10, 0, 0, 2]);
const B: MacAddr = MacAddr([2, 0x42, 10, 0, 0, 3]);

fn frame(len: usize) -> Packet {
    let mut f = vec![0x45u8; len];
    ethernet::emit(&mut f, B.0, A.0, EtherType::IPV4);
    Packet::from_frame(VnetHdr::default(), &f)
}

fn sas() -> Vec<SaConfig> {
    esp::derive_sas(b"bench", &[ip(1), ip(2)])
}

fn engine(encrypted: bool) -> Engine {
    let dom = |n: &str| DomainConfig {
        name: n.into(),
        gateway: None,
        icc: true,
    };
    let port = |n: &str, d: u16, role| PortConfig {
        name: n.into(),
        domain: DomainId(d),
        role,
    };
    let vtep = |m: u8, d: u16, p: u16, peer: u8, who: MacAddr, at: u8| VtepConfig {
        name: "ov".into(),
        vni: 4097,
        domain: DomainId(d),
        port: PortId(p),
        uplink: PortId(u16::from(m) - 1),
        local_ip: ip(m),
        local_mac: mac(m),
        peers: vec![(ip(peer), mac(peer))],
        bindings: vec![(Ipv4Addr::new(10, 0, 0, at), who, ip(peer))],
        capture: false,
        esp: if encrypted { sas() } else { Vec::new() },
    };
    Engine::new(EngineConfig {
        domains: vec![dom("lan"), dom("ov@m1"), dom("ov@m2")],
        ports: vec![
            port("m1", 0, PortRole::Plain),
            port("m2", 0, PortRole::Plain),
            port("a", 1, PortRole::Container),
            port("b", 2, PortRole::Container),
            port("v1", 1, PortRole::Plain),
            port("v2", 2, PortRole::Plain),
        ],
        overlay: vec![vtep(1, 1, 4, 2, B, 3), vtep(2, 2, 5, 1, A, 2)],
        ..EngineConfig::default()
    })
    .expect("valid configuration")
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    for len in [64usize, 1464] {
        let inner = frame(len);
        let mut g = c.benchmark_group(format!("vxlan/{len}B"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("copy-baseline", |b| {
            b.iter(|| black_box(Packet::from_frame(inner.hdr, black_box(inner.frame()))))
        });
        g.bench_function("encap", |b| {
            b.iter(|| {
                black_box(encap(
                    black_box(&inner),
                    4097,
                    mac(1),
                    ip(1),
                    mac(2),
                    ip(2),
                    50000,
                ))
            })
        });
        let outer = encap(&inner, 4097, mac(1), ip(1), mac(2), ip(2), 50000);
        g.bench_function("decap", |b| {
            b.iter(|| {
                let mut p = Packet::from_frame(outer.hdr, outer.frame());
                if let Ok(Some(o)) = parse_outer(black_box(p.frame())) {
                    decap_in_place(&mut p, o.inner);
                }
                black_box(p)
            })
        });
        let all = sas();
        let sa = all.iter().find(|s| s.src == ip(1)).expect("m1 → m2");
        let mut tx = OutboundSa::new(sa);
        g.bench_function("esp-encap", |b| {
            b.iter(|| {
                let v = encap(black_box(&inner), 4097, mac(1), ip(1), mac(2), ip(2), 50000);
                black_box(esp::protect(&mut tx, v.frame()).expect("protects"))
            })
        });
        let mut rx = EspState::default();
        rx.add(&all);
        g.bench_function("esp-decap", |b| {
            b.iter_batched(
                || esp::protect(&mut tx, outer.frame()).expect("protects"),
                |sealed| {
                    let mut p = rx.unprotect(black_box(sealed.frame())).expect("genuine");
                    if let Ok(Some(o)) = parse_outer(p.frame()) {
                        decap_in_place(&mut p, o.inner);
                    }
                    black_box(p)
                },
                BatchSize::SmallInput,
            )
        });
        for (encrypted, name) in [
            (false, "engine a@m1 → b@m2"),
            (true, "engine a@m1 → b@m2 (ESP)"),
        ] {
            let mut e = engine(encrypted);
            let now = Instant::now();
            let mut out = Vec::new();
            // Teach both domains where a and b are.
            let mut f = inner.frame().to_vec();
            f[0..6].copy_from_slice(&A.0);
            f[6..12].copy_from_slice(&B.0);
            let mut back = Packet::from_frame(VnetHdr::default(), &f);
            e.handle_frame(now, PortId(3), &mut back, &mut out);
            out.clear();
            g.bench_function(name, |b| {
                b.iter(|| {
                    let mut p = inner.clone();
                    e.handle_frame(now, PortId(2), &mut p, &mut out);
                    black_box(out.len());
                    out.clear();
                })
            });
        }
        g.finish();
    }
    c.final_summary();
}
