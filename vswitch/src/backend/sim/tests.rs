//! Tests of the sim backend's in-memory wiring, without root.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::backend::BuildOptions;
use crate::backend::hosted::configure;
use crate::probe::PingOptions;
use crate::scenario::plan::{Node, StepAction};

use super::SimWorld;
use super::frag::refragment;
use super::stack::{FrameKind, frame_kind};

const WORLD: &str = r#"
name = "two networks"
[[network]]
name = "front"
subnet = "10.70.1.0/24"
[[network]]
name = "back"
subnet = "10.70.2.0/24"
mtu = 1400
[[container]]
name = "web"
networks = ["front", "back"]
serve = ["tcp:80", "udp:53"]
[[container]]
name = "db"
networks = ["back"]
serve = ["tcp:5432"]
publish = ["8080:5432"]
"#;

fn plan() -> crate::scenario::plan::Plan {
    crate::scenario::parse_str(Path::new("t.toml"), WORLD).unwrap()
}

fn world() -> SimWorld {
    SimWorld::build(&plan(), "vsw000001", &BuildOptions::default()).unwrap()
}

/// Every engine port has one stack with the interface the userspace
/// backend would give its TAP (name, MAC, addresses, MTU), and every node
/// a loopback first.
#[test]
fn one_stack_per_engine_port_with_the_tap_spec() {
    let p = plan();
    let setup = configure(&p, "vsw000001", &BuildOptions::default()).unwrap();
    let w = world();
    for (port, node, spec) in setup.interfaces() {
        let st = &w.stacks[w.port_stack[usize::from(port.0)]];
        assert_eq!(st.node, node);
        assert_eq!(st.port, Some(port));
        assert_eq!(st.name, spec.name);
        assert_eq!(st.addrs, spec.addrs);
        assert_eq!(st.mtu, spec.mtu);
        let smoltcp::wire::HardwareAddress::Ethernet(mac) = st.iface.hardware_addr() else {
            panic!("an engine port's stack is Ethernet");
        };
        assert_eq!(mac.0, spec.mac.0);
    }
    for (node, stacks) in &w.nodes {
        let lo = &w.stacks[stacks[0]];
        assert_eq!((lo.name.as_str(), lo.port, lo.node), ("lo", None, *node));
        assert!(lo.holds("127.0.0.1".parse().unwrap()));
    }
}

/// The routing a node's stacks are picked by: loopback for its own
/// addresses, the interface on the subnet, else the default route's.
#[test]
fn probes_leave_by_the_route_the_kernel_would_pick() {
    let w = world();
    let web = Node::Container(0);
    let mine = &w.nodes[&web];
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(w.pick(web, ip("10.70.1.2")), Some(mine[0]));
    assert_eq!(w.pick(web, ip("127.0.0.1")), Some(mine[0]));
    let on_back = w.pick(web, ip("10.70.2.3")).unwrap();
    assert_eq!(w.stacks[on_back].name, "eth1");
    let default = w.pick(web, ip("198.18.0.99")).unwrap();
    assert_eq!(w.stacks[default].name, "eth0");
}

/// Ping, the echoes (with the greeting), the proxy and a refused port,
/// all in memory.
#[test]
fn probes_in_memory() {
    let mut w = world();
    let t = Duration::from_secs(5);
    let o = w
        .ping(
            Node::Container(1),
            "10.70.2.2".parse().unwrap(),
            &PingOptions::default(),
            t,
        )
        .unwrap();
    assert_eq!((o.sent, o.received), (3, 3));
    let r = w
        .tcp_echo(Node::Container(1), "10.70.2.2:80".parse().unwrap(), t)
        .unwrap();
    assert_eq!(r.seen.ip(), "10.70.2.3".parse::<IpAddr>().unwrap());
    assert_eq!(r.by.as_deref(), Some("web"));
    let u = w
        .udp_echo(
            Node::Container(1),
            Some(4000),
            "10.70.2.2:53".parse().unwrap(),
            t,
        )
        .unwrap();
    assert_eq!(u.seen, "10.70.2.3:4000".parse::<SocketAddr>().unwrap());
    // PUB-7: the machine to its own published port: the gateway address.
    let m = w
        .tcp_echo(Node::Machine(0), "127.0.0.1:8080".parse().unwrap(), t)
        .unwrap();
    assert_eq!(m.seen.ip(), "10.70.2.1".parse::<IpAddr>().unwrap());
    assert_eq!(m.by.as_deref(), Some("db"));
    let refused = w.tcp_echo(Node::Container(1), "10.70.2.2:81".parse().unwrap(), t);
    assert!(
        matches!(refused, Err(crate::probe::ProbeError::Refused { .. })),
        "{refused:?}"
    );
}

/// Waiting costs virtual time, not wall time.
#[test]
fn a_wait_step_costs_no_wall_time() {
    let mut w = world();
    let t0 = Instant::now();
    w.apply_step(
        &plan(),
        &StepAction::Wait(Duration::from_secs(600)),
        "vsw000001",
        &BuildOptions::default(),
        &[],
    )
    .unwrap();
    assert!(w.elapsed() >= Duration::from_secs(600));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // The world still works after ten minutes (learned MACs aged out).
    let o = w
        .ping(
            Node::Container(1),
            "10.70.2.2".parse().unwrap(),
            &PingOptions::default(),
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(o.received, 3);
}

/// smoltcp's fragments are cut again with every payload but the last a
/// multiple of 8 bytes, the datagram unchanged.
#[test]
fn fragments_are_cut_on_8_byte_boundaries() {
    // A 3000-byte payload as smoltcp 0.12 cuts it for MTU 1400: 1380 bytes
    // per fragment, offsets rounded down.
    let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let mut frames = Vec::new();
    let mut sent = 0;
    while sent < payload.len() {
        let n = (payload.len() - sent).min(1380);
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let mut ip = vec![
            0x45, 0, 0, 0, 0x12, 0x34, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip[2..4].copy_from_slice(&((20 + n) as u16).to_be_bytes());
        let more = sent + n < payload.len();
        let fo = (sent / 8) as u16 | if more { 0x2000 } else { 0 };
        ip[6..8].copy_from_slice(&fo.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&payload[sent..sent + n]);
        frames.push(f);
        sent += n;
    }
    let out = refragment(frames, 1400);
    let mut back = Vec::new();
    for (k, f) in out.iter().enumerate() {
        let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
        let fo = u16::from_be_bytes([f[20], f[21]]);
        assert_eq!(usize::from(fo & 0x1fff) * 8, back.len());
        assert!(total <= 1400);
        let data = &f[34..14 + total];
        if k + 1 < out.len() {
            assert_eq!(data.len() % 8, 0);
            assert!(fo & 0x2000 != 0);
        }
        back.extend_from_slice(data);
    }
    assert_eq!(back, payload);
}

#[test]
fn frame_kinds() {
    let mut arp = vec![0u8; 42];
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    arp[20..22].copy_from_slice(&[0, 1]);
    assert_eq!(frame_kind(&arp), FrameKind::Solicit);
    arp[21] = 2;
    assert_eq!(frame_kind(&arp), FrameKind::Advert);
    let mut echo = vec![0u8; 42];
    echo[12..14].copy_from_slice(&[0x08, 0x00]);
    echo[14] = 0x45;
    echo[23] = 1;
    echo[34] = 8;
    assert_eq!(frame_kind(&echo), FrameKind::EchoRequest);
    assert_eq!(frame_kind(&[0u8; 3]), FrameKind::Other);
}
