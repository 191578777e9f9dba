//! VLAN forwarding on the engine's 802.1Q-aware lan beside plain L2: a
//! learned unicast on the untagged lan without the VLAN layer, the same
//! between two access ports of VLAN 10, a tagged frame from a trunk popped
//! towards an access port (and the tag pushed back, so each iteration sees
//! the same frame), and an access port's frame tagged towards a trunk (an
//! engine-built tagged copy).
//!
//! ```text
//! cargo bench -p vswitch-benches --bench vlan            # full
//! cargo bench -p vswitch-benches --bench vlan -- --quick # smoke
//! ```

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput};
use vswitch::engine::vlan::push_tag;
use vswitch::engine::{
    Action, Attachment, DomainConfig, DomainId, Engine, EngineConfig, Packet, PortConfig, PortId,
    PortRole, VlanConfig, VlanMode, VlanPort, VnetHdr,
};
use vswitch::wire::MacAddr;
use vswitch::wire::ethernet::{self, EtherType};

mod common;
use common::criterion;

const SIZES: [usize; 2] = [64, 1500];
const TRUNK: PortId = PortId(0);
const A: PortId = PortId(1);
const B: PortId = PortId(2);

fn mac(i: u8) -> [u8; 6] {
    [0x02, 0x56, 10, 0, 0, i]
}

fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Packet {
    let mut f = vec![0u8; len];
    ethernet::emit(&mut f, dst, src, EtherType::IPV4);
    let hdr = VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 16,
        ..VnetHdr::default()
    };
    Packet::from_frame(hdr, &f)
}

/// Three lan ports: a trunk (0) and two access ports (1, 2), of VLAN 10
/// when `vlans`, else plain; the MACs 1..=3 learned (on VLAN 10 or 0).
fn engine(now: Instant, vlans: bool) -> Engine {
    let cfg = EngineConfig {
        domains: vec![DomainConfig {
            name: "lan".into(),
            gateway: None,
            icc: true,
        }],
        ports: (0..3)
            .map(|i| PortConfig {
                name: format!("p{i}"),
                domain: DomainId(0),
                role: PortRole::Plain,
            })
            .collect(),
        ..EngineConfig::default()
    };
    let mut e = Engine::new(cfg).expect("bench config");
    if vlans {
        let access = VlanPort {
            mode: VlanMode::Access(10),
            attach: Attachment::None,
        };
        let trunk = VlanPort {
            mode: VlanMode::Trunk { native: 0 },
            attach: Attachment::Parent {
                group: 0,
                mac: MacAddr(mac(1)),
                ip: Ipv4Addr::new(10, 0, 0, 1),
            },
        };
        e.set_vlans(&VlanConfig {
            domain: DomainId(0),
            ports: vec![(TRUNK, trunk), (A, access), (B, access)],
            vids: vec![10],
        })
        .expect("vlan config");
    }
    let mut out = Vec::new();
    for (i, p) in [TRUNK, A, B].into_iter().enumerate() {
        let mut f = frame([0xff; 6], mac(i as u8 + 1), 64);
        if vlans && p == TRUNK {
            push_tag(&mut f, 10);
        }
        e.handle_frame(now, p, &mut f, &mut out);
    }
    e
}

#[derive(Clone, Copy)]
enum Case {
    /// Learned unicast, untagged lan, no VLAN layer.
    Plain,
    /// Learned unicast between two access ports of VLAN 10.
    Access,
    /// Tagged on the trunk → access (pop), tag pushed back afterwards.
    PopPush,
    /// Access → a MAC learned behind the trunk (tagged copy).
    ToTrunk,
}

impl Case {
    const ALL: [Case; 4] = [Case::Plain, Case::Access, Case::PopPush, Case::ToTrunk];

    fn name(self) -> &'static str {
        match self {
            Case::Plain => "plain_l2",
            Case::Access => "vlan_access",
            Case::PopPush => "vlan_pop_push",
            Case::ToTrunk => "vlan_push_to_trunk",
        }
    }

    fn setup(self, len: usize) -> (Engine, Packet, PortId, Instant) {
        let now = Instant::now();
        let e = engine(now, !matches!(self, Case::Plain));
        let (p, ingress) = match self {
            Case::Plain | Case::Access => (frame(mac(3), mac(2), len), A),
            Case::PopPush => {
                let mut p = frame(mac(2), mac(1), len);
                push_tag(&mut p, 10);
                (p, TRUNK)
            }
            Case::ToTrunk => (frame(mac(1), mac(2), len), A),
        };
        (e, p, ingress, now)
    }
}

fn step(
    e: &mut Engine,
    now: Instant,
    case: Case,
    ingress: PortId,
    p: &mut Packet,
    out: &mut Vec<Action>,
) {
    out.clear();
    e.handle_frame(now, ingress, black_box(p), out);
    if let Case::PopPush = case {
        push_tag(p, 10);
    }
    black_box(&out);
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("vlan");
    g.throughput(Throughput::Elements(1));
    for len in SIZES {
        for case in Case::ALL {
            let (mut e, mut p, ingress, now) = case.setup(len);
            let mut out: Vec<Action> = Vec::with_capacity(4);
            g.bench_function(BenchmarkId::new(case.name(), len), |b| {
                b.iter(|| step(&mut e, now, case, ingress, &mut p, &mut out))
            });
            assert_eq!(out.len(), 1, "{}: {out:?}", case.name());
            assert!(
                !matches!(out[0], Action::Drop(_)),
                "{}: {out:?}",
                case.name()
            );
        }
    }
    g.finish();
}

fn main() {
    let mut c = criterion();
    bench(&mut c);
    c.final_summary();
}
