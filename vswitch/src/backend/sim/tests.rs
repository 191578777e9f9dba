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

/// An ARP request from `mac`/`ip` for `to.1`, or its reply to `to`
/// (target hardware address broadcast in a request, as smoltcp sends it).
fn arp(op: u8, mac: [u8; 6], ip: [u8; 4], to: ([u8; 6], [u8; 4])) -> Vec<u8> {
    let dst = if op == 1 { [0xff; 6] } else { to.0 };
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, op]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&to.1);
    f
}

/// SVC-4's `ip route add 10.0.0.4/32 dev eth0` outside the interface's
/// subnet: the stack asks ARP for the destination from its own address,
/// keeps the answer (smoltcp alone drops it: not its network) and sends
/// there from its own address; it does not answer for the destination.
#[test]
fn an_on_link_host_route_outside_the_subnet_is_reached_by_arp() {
    use super::stack::{Stack, StackSpec};
    use smoltcp::wire::{IpAddress, IpEndpoint};
    let me = [198, 18, 0, 3];
    let sb = [10, 0, 0, 4];
    let (my_mac, sb_mac) = ([2, 0, 0, 0, 0, 3], [2, 0x42, 10, 0, 0, 4]);
    let now = smoltcp::time::Instant::from_micros(0);
    let mut st = Stack::new(
        StackSpec {
            node: Node::Machine(0),
            port: Some(crate::engine::PortId(0)),
            name: "eth0".into(),
            mac: Some(crate::scenario::plan::MacAddr(my_mac)),
            mtu: 1500,
            addrs: vec![("198.18.0.3".parse().unwrap(), 24)],
            extra: Vec::new(),
            routes: vec![("10.0.0.4/32".parse().unwrap(), None)],
            seed: 1,
        },
        now,
    );
    assert_eq!(st.onlink, vec!["10.0.0.4".parse::<IpAddr>().unwrap()]);
    let mut t = super::services::tcp_socket(4096);
    let remote = IpEndpoint::new(IpAddress::v4(10, 0, 0, 4), 8080);
    t.connect(st.iface.context(), remote, 45000).unwrap();
    let h = st.sockets.add(t);
    st.iface.poll(now, &mut st.dev, &mut st.sockets);
    let asked = std::mem::take(&mut st.dev.tx);
    assert_eq!(asked, vec![arp(1, my_mac, me, ([0; 6], sb))]);
    // The sandbox answers; the SYN follows, from the interface's address.
    st.dev.rx.push_back(arp(2, sb_mac, sb, (my_mac, me)));
    let later = smoltcp::time::Instant::from_micros(1000);
    st.iface.poll(later, &mut st.dev, &mut st.sockets);
    let syn = st.dev.tx.first().expect("a SYN once the sandbox answered");
    assert_eq!((&syn[0..6], &syn[6..12]), (&sb_mac[..], &my_mac[..]));
    assert_eq!((&syn[26..30], &syn[30..34]), (&me[..], &sb[..]));
    assert_eq!(frame_kind(syn), FrameKind::Opener);
    assert_eq!(
        st.sockets.get::<smoltcp::socket::tcp::Socket>(h).state(),
        smoltcp::socket::tcp::State::SynSent
    );
    // Someone asking for the sandbox's address gets no answer here.
    let who_has = arp(1, [2, 0, 0, 0, 0, 9], [198, 18, 0, 9], ([0; 6], sb));
    assert!(st.not_mine(&who_has));
    assert!(!st.not_mine(&arp(1, [2, 0, 0, 0, 0, 9], [198, 18, 0, 9], ([0; 6], me))));
}

/// The plan of `toml` and its world.
fn world_of(toml: &str) -> (crate::scenario::plan::Plan, SimWorld) {
    let plan = crate::scenario::parse_str(Path::new("t.toml"), toml).unwrap();
    let w = SimWorld::build(&plan, "vsw000002", &BuildOptions::default()).unwrap();
    (plan, w)
}

/// Container `i`'s address on its first network (IPv6 when `v6`).
fn addr_of(plan: &crate::scenario::plan::Plan, i: usize, v6: bool) -> IpAddr {
    let e = &plan.containers[i].endpoints[0];
    if v6 {
        IpAddr::V6(e.ip6.unwrap())
    } else {
        IpAddr::V4(e.ip.unwrap())
    }
}

const NEIGHBOURS: &str = r#"
name = "new neighbours"
[[network]]
name = "v6"
ipv6 = true
subnet = "10.77.0.0/24"
subnet6 = "fd00:77::/64"
[[container]]
name = "c1"
networks = ["v6"]
[[container]]
name = "c2"
networks = ["v6"]
serve = ["tcp:80", "udp:53"]
[[container]]
name = "c3"
networks = ["v6"]
serve = ["tcp:80", "udp:53"]
[[container]]
name = "c4"
networks = ["v6"]
serve = ["tcp:80", "udp:53"]
"#;

/// smoltcp asks for one neighbour a second per interface; the kernel asks
/// for each at once. A second, third and fourth new neighbour within that
/// second are reached within a 300 ms timeout, on both families, and the
/// solicitations the sim sent for them are the stack's own.
#[test]
fn new_neighbours_within_a_second_are_asked_for_at_once() {
    for v6 in [false, true] {
        let (plan, mut w) = world_of(NEIGHBOURS);
        let t = Duration::from_millis(300);
        let at = |i| addr_of(&plan, i, v6);
        let (c1, c2) = (Node::Container(0), Node::Container(1));
        let first = w.ping(c1, at(1), &PingOptions::default(), t).unwrap();
        assert_eq!(first.received, 3, "v6 {v6}");
        let start = w.now_us();
        let r = w.tcp_echo(c1, SocketAddr::new(at(2), 80), t);
        assert_eq!(r.unwrap().by.as_deref(), Some("c3"), "v6 {v6}");
        let u = w.udp_echo(c1, None, SocketAddr::new(at(3), 53), t);
        assert!(u.is_ok(), "v6 {v6}: {u:?}");
        let o = w.ping(c2, at(3), &PingOptions::default(), t).unwrap();
        assert_eq!(o.received, 3, "v6 {v6}");
        let o = w.ping(c2, at(2), &PingOptions::default(), t).unwrap();
        assert_eq!(o.received, 3, "v6 {v6}");
        assert!(
            w.now_us() - start < 1_000_000,
            "v6 {v6}: waited out smoltcp's silence"
        );
    }
}

/// The answer to a packet routed in from the gateway (whose MAC the
/// container never heard, the engine's neighbours being static) needs the
/// gateway's MAC; asked for within a second of another solicitation, the
/// sim asks at once and hands the echo request in again once it is known.
#[test]
fn an_answer_routed_back_is_asked_for_at_once() {
    let (plan, mut w) = world_of(
        r#"
name = "routed back"
[[machine]]
name = "host"
ip6tables = false
[[network]]
name = "a"
ipv6 = true
subnet = "10.78.0.0/24"
subnet6 = "fd00:78::/64"
[[network]]
name = "b"
ipv6 = true
subnet = "10.79.0.0/24"
subnet6 = "fd00:79::/64"
[[container]]
name = "ca"
networks = ["a"]
[[container]]
name = "cb"
networks = ["b"]
serve = ["tcp:80"]
[[container]]
name = "cc"
networks = ["b"]
"#,
    );
    let t = Duration::from_millis(300);
    let (ca, cb) = (Node::Container(0), Node::Container(1));
    let o = w.ping(cb, addr_of(&plan, 2, true), &PingOptions::default(), t);
    assert_eq!(o.unwrap().received, 3);
    let o = w.ping(ca, addr_of(&plan, 1, true), &PingOptions::default(), t);
    assert_eq!(o.unwrap().received, 3);
    let r = w.tcp_echo(ca, SocketAddr::new(addr_of(&plan, 1, true), 80), t);
    assert_eq!(r.unwrap().by.as_deref(), Some("cb"));
}

/// The solicitations the sim sends are smoltcp's own: an NS smoltcp
/// parses, from the interface's MAC and address, to the solicited-node
/// group, with the source link-layer option; an ARP request from the
/// interface's first address.
#[test]
fn solicitations_in_smoltcps_form() {
    use smoltcp::wire::{
        ArpPacket, ArpRepr, EthernetFrame, Icmpv6Packet, Icmpv6Repr, Ipv6Packet, NdiscRepr,
    };
    let (plan, w) = world_of(NEIGHBOURS);
    let s = w.nodes[&Node::Container(0)][1];
    let st = &w.stacks[s];
    let target = addr_of(&plan, 1, true);
    let f = st.solicitation(target).unwrap();
    assert_eq!(super::neigh::solicits(&f), Some(target));
    let eth = EthernetFrame::new_checked(&f[..]).unwrap();
    assert_eq!(eth.src_addr().0, st.mac());
    let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(IpAddr::V6(ip.src_addr()), addr_of(&plan, 0, true));
    assert_eq!(ip.hop_limit(), 255);
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    let caps = smoltcp::phy::ChecksumCapabilities::default();
    let repr = Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), &icmp, &caps).unwrap();
    let Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr,
        lladdr: Some(ll),
    }) = repr
    else {
        panic!("not a solicitation with a source link-layer address: {repr:?}");
    };
    assert_eq!(
        (IpAddr::V6(target_addr), ll.as_bytes()),
        (target, &st.mac()[..])
    );
    let f4 = st.solicitation(addr_of(&plan, 1, false)).unwrap();
    let arp = ArpPacket::new_checked(&f4[14..]).unwrap();
    let ArpRepr::EthernetIpv4 {
        source_protocol_addr,
        target_protocol_addr,
        ..
    } = ArpRepr::parse(&arp).unwrap()
    else {
        panic!("not an Ethernet/IPv4 ARP packet");
    };
    assert_eq!(IpAddr::V4(source_protocol_addr), addr_of(&plan, 0, false));
    assert_eq!(IpAddr::V4(target_protocol_addr), addr_of(&plan, 1, false));
}
