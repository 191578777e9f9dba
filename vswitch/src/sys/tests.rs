//! Privileged tests of `sys` on real namespaces, TAPs and links.
//!
//! Every namespace is named `vswt<pid>-<tag>` and deleted by [`NsGuard`],
//! also when a test panics. Nothing is configured in the namespace the test
//! process starts in. Leftovers after a killed run:
//! `ip -all netns del` or `for n in /run/netns/vswt*; do ip netns del ${n##*/}; done`.

use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use etherparse::{PacketBuilder, TcpOptionElement};

use super::netlink::NetlinkError;
use super::*;
use crate::engine::packet::{Packet, VnetHdr};
use crate::netns::{self, NETNS_RUN_DIR, NetNs};

/// Deletes its namespaces on drop, panic or not.
struct NsGuard(Vec<netns::DeleteOnDrop>);

impl NsGuard {
    fn new() -> NsGuard {
        NsGuard(Vec::new())
    }

    fn create(&mut self, tag: &str) -> NetNs {
        let name = format!("vswt{}-{tag}", std::process::id());
        let _ = netns::delete(&name); // a leftover of a killed run with our pid
        self.0.push(netns::DeleteOnDrop::namespace(&name));
        NetNs::create(&name).expect("create test namespace")
    }
}

const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const TAP_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const ETH_ARP: u16 = 0x0806;
const ETH_IPV4: u16 = 0x0800;

fn ethertype(f: &[u8]) -> u16 {
    u16::from_be_bytes([f[12], f[13]])
}

fn arp_frame(op: u16, dst_mac: [u8; 6], target_mac: [u8; 6], target_ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&ETH_ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&PEER_IP.octets());
    f.extend_from_slice(&target_mac);
    f.extend_from_slice(&target_ip.octets());
    f
}

/// Reads frames until `want` picks one or `timeout` passes. ARP requests for
/// the peer are answered on the way, as a real peer would.
fn pump<T>(
    tap: &Tap,
    timeout: Duration,
    mut want: impl FnMut(&VnetHdr, &[u8]) -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut pkt = Packet::new();
    while tap
        .read_packet_until(&mut pkt, deadline)
        .expect("read tap")
        .is_some()
    {
        let f = pkt.frame();
        if f.len() >= 42 && ethertype(f) == ETH_ARP && f[21] == 1 && f[38..42] == PEER_IP.octets() {
            let mac: [u8; 6] = f[22..28].try_into().unwrap();
            let ip = Ipv4Addr::new(f[28], f[29], f[30], f[31]);
            tap.write_frame(&VnetHdr::default(), &arp_frame(2, mac, mac, ip))
                .expect("answer arp");
            continue;
        }
        if let Some(t) = want(&pkt.hdr, f) {
            return Some(t);
        }
    }
    None
}

/// The one's-complement sum of the IPv4 pseudo header, folded, not inverted:
/// what a `NEEDS_CSUM` frame carries in its checksum field.
fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u16 {
    let mut sum: u32 = 0;
    for w in [src.octets(), dst.octets()] {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        sum += u32::from(u16::from_be_bytes([w[2], w[3]]));
    }
    sum += u32::from(proto) + u32::from(len);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// IPv4 TCP segment facts: (src port, dst port, seq, flags, payload length).
fn tcp_facts(f: &[u8]) -> Option<(u16, u16, u32, u8, usize)> {
    if f.len() < 54 || ethertype(f) != ETH_IPV4 || f[23] != 6 {
        return None;
    }
    let ihl = usize::from(f[14] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    let t = 14 + ihl;
    let doff = usize::from(f[t + 12] >> 4) * 4;
    Some((
        u16::from_be_bytes([f[t], f[t + 1]]),
        u16::from_be_bytes([f[t + 2], f[t + 3]]),
        u32::from_be_bytes([f[t + 4], f[t + 5], f[t + 6], f[t + 7]]),
        f[t + 13],
        total - ihl - doff,
    ))
}

#[test]
fn tap_frames_flow_with_vnet_hdr_and_offloads() {
    if !require_root("tap_frames_flow_with_vnet_hdr_and_offloads") {
        return;
    }
    let mut guard = NsGuard::new();
    let ns = guard.create("tap");
    ns.run(|| {
        let tap = Tap::create("vswtap0", TapOptions::default()).expect("create tap");
        assert_eq!(tap.name(), "vswtap0");
        assert!(tap.has_vnet_hdr());
        assert_ne!(tap.offload_flags() & tap::OFFLOAD_BASE, 0);
        eprintln!("tap offload flags accepted: {:#x}", tap.offload_flags());

        // The device lives in this thread's namespace (procfs by thread).
        let dev = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
        assert!(dev.contains("vswtap0:"), "{dev}");
        // sysfs shows the namespace of whoever mounted /sys, not ours.
        eprintln!(
            "/sys/class/net/vswtap0 visible from a setns'd thread: {}",
            std::path::Path::new("/sys/class/net/vswtap0").exists()
        );

        // Keep IPv6 (router solicitations, MLD) off this link: less noise.
        sysctl_set("net.ipv6.conf.vswtap0.disable_ipv6", "1").unwrap();
        let mut nl = Netlink::new().unwrap();
        nl.link_set_up("lo").unwrap();
        nl.addr_add("vswtap0", IpAddr::V4(TAP_IP), 24).unwrap();
        nl.link_set_up("vswtap0").unwrap();
        let link = nl.link_get("vswtap0").unwrap();
        assert_eq!(link.kind.as_deref(), Some("tun"));
        let tap_mac = link.mac.unwrap();

        // Wire → kernel → wire: ARP request in, the kernel's reply out.
        let req = arp_frame(1, [0xff; 6], [0; 6], TAP_IP);
        tap.write_frame(&VnetHdr::default(), &req).unwrap();
        let reply = pump(&tap, Duration::from_secs(5), |hdr, f| {
            (ethertype(f) == ETH_ARP && f[21] == 2).then(|| (*hdr, f.to_vec()))
        })
        .expect("ARP reply from the kernel");
        assert_eq!(reply.0, VnetHdr::default());
        assert_eq!(&reply.1[0..6], &PEER_MAC);
        assert_eq!(&reply.1[22..28], &tap_mac);
        assert_eq!(&reply.1[28..32], &TAP_IP.octets());

        // Kernel rx of a UDP datagram: a bad checksum without NEEDS_CSUM is
        // dropped, a partial checksum with NEEDS_CSUM is delivered.
        let sock = UdpSocket::bind((TAP_IP, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let port = sock.local_addr().unwrap().port();
        let udp = |payload: &[u8]| {
            let mut f = Vec::new();
            PacketBuilder::ethernet2(PEER_MAC, tap_mac)
                .ipv4(PEER_IP.octets(), TAP_IP.octets(), 64)
                .udp(4000, port)
                .write(&mut f, payload)
                .unwrap();
            f
        };
        let mut bad = udp(b"bad");
        bad[40] ^= 0xff;
        tap.write_frame(&VnetHdr::default(), &bad).unwrap();
        let mut partial = udp(b"partial checksum");
        let udp_len = (partial.len() - 34) as u16;
        let sum = pseudo_header_sum(PEER_IP, TAP_IP, 17, udp_len);
        partial[40..42].copy_from_slice(&sum.to_be_bytes());
        let hdr = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VnetHdr::default()
        };
        tap.write_packet(&Packet::from_frame(hdr, &partial))
            .unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = sock.recv_from(&mut buf).expect("partial-checksum datagram");
        assert_eq!(&buf[..n], b"partial checksum");
        assert_eq!(from.ip(), IpAddr::V4(PEER_IP));

        // Kernel tx with offloads: a TCP sender inside the namespace sends a
        // partial-checksum SYN, then TSO super-frames once we open a window.
        let client = std::thread::spawn(|| {
            // Threads spawned here inherit this thread's namespace.
            let mut s = TcpStream::connect_timeout(&(PEER_IP, 5001).into(), Duration::from_secs(5))
                .expect("handshake through the tap");
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(&vec![0x55; 1 << 20]); // ends with our RST
        });
        let (syn_hdr, cport, cseq) = pump(&tap, Duration::from_secs(5), |hdr, f| {
            tcp_facts(f)
                .filter(|t| t.1 == 5001 && t.3 & 0x02 != 0)
                .map(|t| (*hdr, t.0, t.2))
        })
        .expect("SYN");
        assert_eq!(syn_hdr.flags & VnetHdr::F_NEEDS_CSUM, VnetHdr::F_NEEDS_CSUM);
        assert_eq!((syn_hdr.csum_start, syn_hdr.csum_offset), (34, 16));
        assert!(!syn_hdr.is_gso());

        let mut synack = Vec::new();
        PacketBuilder::ethernet2(PEER_MAC, tap_mac)
            .ipv4(PEER_IP.octets(), TAP_IP.octets(), 64)
            .tcp(5001, cport, 1000, 65535)
            .syn()
            .ack(cseq.wrapping_add(1))
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::WindowScale(7),
            ])
            .unwrap()
            .write(&mut synack, &[])
            .unwrap();
        tap.write_frame(&VnetHdr::default(), &synack).unwrap();

        let (gso, glen, gpay) = pump(&tap, Duration::from_secs(5), |hdr, f| {
            tcp_facts(f)
                .filter(|t| t.0 == cport && t.4 > 1460)
                .map(|t| (*hdr, f.len(), t.4))
        })
        .expect("a TSO super-frame");
        eprintln!("TSO frame: {glen} bytes, {gpay} payload, hdr {gso:?}");
        assert_eq!(gso.gso_type & !VnetHdr::GSO_ECN, VnetHdr::GSO_TCPV4);
        assert_eq!(gso.gso_size, 1460);
        assert!(gso.hdr_len >= 54, "{gso:?}");
        assert_eq!(gso.flags & VnetHdr::F_NEEDS_CSUM, VnetHdr::F_NEEDS_CSUM);
        assert_eq!((gso.csum_start, gso.csum_offset), (34, 16));

        // Reset the connection so the sender stops at once.
        let mut rst = Vec::new();
        PacketBuilder::ethernet2(PEER_MAC, tap_mac)
            .ipv4(PEER_IP.octets(), TAP_IP.octets(), 64)
            .tcp(5001, cport, 1001, 0)
            .rst()
            .write(&mut rst, &[])
            .unwrap();
        tap.write_frame(&VnetHdr::default(), &rst).unwrap();
        client.join().expect("client thread");

        // A GSO frame cannot go to a TAP without vnet header.
        let plain = Tap::create(
            "vswtap1",
            TapOptions {
                vnet_hdr: false,
                offload: false,
                nonblocking: true,
            },
        )
        .unwrap();
        assert!(!plain.has_vnet_hdr());
        let e = plain.write_frame(&gso, &synack).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        // Without vnet header frames still flow both ways: the kernel
        // answers ARP for its addresses on any link (arp_ignore=0).
        sysctl_set("net.ipv6.conf.vswtap1.disable_ipv6", "1").unwrap();
        nl.link_set_up("vswtap1").unwrap();
        plain.write_frame(&VnetHdr::default(), &req).unwrap();
        let (h, f) = pump(&plain, Duration::from_secs(5), |hdr, f| {
            (ethertype(f) == ETH_ARP && f[21] == 2).then(|| (*hdr, f.to_vec()))
        })
        .expect("ARP reply on the plain tap");
        assert_eq!(h, VnetHdr::default());
        assert_eq!(f.len(), 42);
        assert_eq!(&f[28..32], &TAP_IP.octets());
        assert!(matches!(
            Tap::create(
                "vswtap2",
                TapOptions {
                    vnet_hdr: false,
                    ..TapOptions::default()
                }
            ),
            Err(TapError::OffloadNeedsVnetHdr { .. })
        ));
    })
    .expect("tap test inside namespace");
}

fn proc_route_has(dst_le_hex: &str, gw_le_hex: &str, dev: &str) -> bool {
    let t = std::fs::read_to_string("/proc/thread-self/net/route").unwrap();
    t.lines().any(|l| {
        let c: Vec<&str> = l.split_whitespace().collect();
        c.len() > 2 && c[0] == dev && c[1] == dst_le_hex && c[2] == gw_le_hex
    })
}

fn proc_route6_has(dst: Ipv6Addr, plen: u8, gw: Ipv6Addr, dev: &str) -> bool {
    let hex = |a: Ipv6Addr| {
        a.octets()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let t = std::fs::read_to_string("/proc/thread-self/net/ipv6_route").unwrap();
    t.lines().any(|l| {
        let c: Vec<&str> = l.split_whitespace().collect();
        c.len() == 10
            && c[0] == hex(dst)
            && c[1] == format!("{plen:02x}")
            && c[4] == hex(gw)
            && c[9] == dev
    })
}

#[test]
fn netlink_manages_links_addresses_and_routes() {
    if !require_root("netlink_manages_links_addresses_and_routes") {
        return;
    }
    let mut guard = NsGuard::new();
    let a = guard.create("nla");
    let b = guard.create("nlb");
    let b_file = File::open(format!("{NETNS_RUN_DIR}/{}", b.name())).unwrap();
    const MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x07];

    a.run(move || {
        let mut nl = Netlink::new().unwrap();
        assert!(matches!(
            nl.link_index("nope0"),
            Err(NetlinkError::NotFound { .. })
        ));
        assert!(!nl.link_exists("nope0").unwrap());
        assert!(nl.link_index("lo").unwrap() > 0);

        nl.link_add_veth("va0", "vb0").unwrap();
        nl.link_add_bridge("br0").unwrap();
        let dup = nl.link_add_bridge("br0").unwrap_err();
        assert_eq!(dup.errno(), Some(libc::EEXIST), "{dup}");
        eprintln!("duplicate bridge error reads: {dup}");

        nl.link_set_mtu("va0", 1400).unwrap();
        nl.link_set_mac("va0", MAC).unwrap();
        nl.link_rename("va0", "va1").unwrap();
        assert!(!nl.link_exists("va0").unwrap());
        nl.link_set_master("va1", "br0").unwrap();
        for l in ["lo", "va1", "vb0", "br0"] {
            nl.link_set_up(l).unwrap();
        }
        let br = nl.link_get("br0").unwrap();
        assert_eq!(br.kind.as_deref(), Some("bridge"));
        let va = nl.link_get("va1").unwrap();
        assert_eq!(va.mtu, 1400);
        assert_eq!(va.mac, Some(MAC));
        assert_eq!(va.master, Some(br.index));
        assert!(va.up);
        assert_eq!(va.kind.as_deref(), Some("veth"));
        let mut names = nl.link_names().unwrap();
        names.sort();
        assert_eq!(names, ["br0", "lo", "va1", "vb0"]);
        let sysfs_master = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
        assert!(sysfs_master.contains("va1:"));

        let v6 = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
        nl.addr_add("br0", IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)), 24)
            .unwrap();
        nl.addr_add("br0", IpAddr::V6(v6), 64).unwrap();
        let addrs = nl.addr_list("br0").unwrap();
        assert!(
            addrs.contains(&(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)), 24)),
            "{addrs:?}"
        );
        assert!(addrs.contains(&(IpAddr::V6(v6), 64)), "{addrs:?}");

        let gw4 = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 254));
        nl.route_add("10.2.0.0/16".parse().unwrap(), Some(gw4), None)
            .unwrap();
        nl.route_add("0.0.0.0/0".parse().unwrap(), Some(gw4), Some("br0"))
            .unwrap();
        nl.route_add("10.3.0.0/16".parse().unwrap(), None, Some("br0"))
            .unwrap();
        assert!(proc_route_has("0000020A", "FE00010A", "br0"));
        assert!(proc_route_has("00000000", "FE00010A", "br0"));
        assert!(proc_route_has("0000030A", "00000000", "br0"));
        let gw6 = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xfe);
        let net6 = Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 0);
        nl.route_add("fd01::/64".parse().unwrap(), Some(IpAddr::V6(gw6)), None)
            .unwrap();
        nl.route_add("::/0".parse().unwrap(), None, Some("br0"))
            .unwrap();
        assert!(proc_route6_has(net6, 64, gw6, "br0"));
        assert!(proc_route6_has(
            Ipv6Addr::UNSPECIFIED,
            0,
            Ipv6Addr::UNSPECIFIED,
            "br0"
        ));
        let e = nl
            .route_add("10.2.0.0/16".parse().unwrap(), Some(gw4), None)
            .unwrap_err();
        assert_eq!(e.errno(), Some(libc::EEXIST), "{e}");

        nl.link_add_macvlan("mv0", "br0", MacvlanMode::Bridge)
            .unwrap();
        assert_eq!(nl.link_get("mv0").unwrap().kind.as_deref(), Some("macvlan"));
        nl.link_add_vxlan("vxl0", 42, Ipv4Addr::new(10, 1, 0, 1), "br0", 4789)
            .unwrap();
        assert_eq!(nl.link_get("vxl0").unwrap().kind.as_deref(), Some("vxlan"));
        nl.link_del("mv0").unwrap();
        nl.link_del("vxl0").unwrap();

        nl.link_set_netns("vb0", b_file.as_fd()).unwrap();
        assert!(!nl.link_exists("vb0").unwrap());
    })
    .expect("namespace a");

    b.run(|| {
        let mut nl = Netlink::new().unwrap();
        assert!(nl.link_exists("vb0").unwrap());
        assert!(!nl.link_exists("br0").unwrap());
    })
    .expect("namespace b");

    a.run(|| {
        let mut nl = Netlink::new().unwrap();
        nl.link_del("va1").unwrap();
        assert!(!nl.link_exists("va1").unwrap());
        nl.link_del("br0").unwrap();
        assert_eq!(nl.link_names().unwrap(), ["lo"]);
        assert!(matches!(
            nl.link_del("br0"),
            Err(NetlinkError::NotFound { .. })
        ));
    })
    .expect("namespace a again");

    b.run(|| {
        // The veth peer went with its other end.
        assert!(!Netlink::new().unwrap().link_exists("vb0").unwrap());
    })
    .expect("namespace b again");
}

#[test]
fn sysctl_follows_the_threads_namespace() {
    if !require_root("sysctl_follows_the_threads_namespace") {
        return;
    }
    let mut guard = NsGuard::new();
    let x = guard.create("sysx");
    let y = guard.create("sysy");
    const KEY: &str = "net.ipv4.ip_forward";
    x.run(|| {
        assert_eq!(sysctl_get(KEY).unwrap(), "0");
        sysctl_set(KEY, "1").unwrap();
        assert_eq!(sysctl_get(KEY).unwrap(), "1");
    })
    .unwrap();
    // Another thread in x sees it, a thread in y does not.
    assert_eq!(x.run(|| sysctl_get(KEY).unwrap()).unwrap(), "1");
    assert_eq!(y.run(|| sysctl_get(KEY).unwrap()).unwrap(), "0");
    let e = x.run(|| sysctl_set("net.ipv4.no_such_key", "1")).unwrap();
    assert!(matches!(e, Err(SysctlError::Write { .. })));
}

#[test]
fn link_kinds_are_probed_without_touching_our_namespace() {
    if !require_root("link_kinds_are_probed_without_touching_our_namespace") {
        return;
    }
    let before = std::fs::read_to_string("/proc/self/net/dev").unwrap();
    for kind in [
        "bridge", "veth", "macvlan", "vxlan", "ipvlan", "vlan", "dummy",
    ] {
        eprintln!(
            "link kind {kind}: supported = {}",
            link_kind_supported(kind)
        );
    }
    assert!(link_kind_supported("bridge"));
    assert!(link_kind_supported("veth"));
    assert!(!link_kind_supported("no-such-kind"));
    let after = std::fs::read_to_string("/proc/self/net/dev").unwrap();
    let names = |t: &str| {
        t.lines()
            .skip(2)
            .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&before), names(&after));
}

/// A batch through [`uring::TapWriter`] reaches the namespace's stack
/// whole and in order, across several submissions of the ring's depth, in
/// both modes; a GSO frame on a TAP without vnet header is refused by name.
#[test]
fn tap_writer_delivers_batches_in_order() {
    use super::uring::{TapIo, TapWriter};
    if !require_root("tap_writer_delivers_batches_in_order") {
        return;
    }
    let mut guard = NsGuard::new();
    let ns = guard.create("uring");
    ns.run(|| {
        sysctl_set("net.ipv6.conf.default.disable_ipv6", "1").unwrap();
        let tap = Tap::create("vswtap1", TapOptions::default()).expect("create tap");
        let plain = Tap::create(
            "vswtap2",
            TapOptions {
                vnet_hdr: false,
                offload: false,
                nonblocking: true,
            },
        )
        .expect("create tap without vnet header");
        let mut nl = Netlink::new().unwrap();
        nl.addr_add("vswtap1", IpAddr::V4(TAP_IP), 24).unwrap();
        nl.link_set_up("vswtap1").unwrap();
        nl.link_set_up("vswtap2").unwrap();
        let tap_mac = nl.link_get("vswtap1").unwrap().mac.unwrap();
        let sock = UdpSocket::bind((TAP_IP, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let port = sock.local_addr().unwrap().port();
        let frames: Vec<Packet> = (0u32..150)
            .map(|seq| {
                let mut f = Vec::new();
                PacketBuilder::ethernet2(PEER_MAC, tap_mac)
                    .ipv4(PEER_IP.octets(), TAP_IP.octets(), 64)
                    .udp(4000, port)
                    .write(&mut f, &seq.to_be_bytes())
                    .unwrap();
                Packet::from_frame(VnetHdr::default(), &f)
            })
            .collect();

        for io in [TapIo::IoUring, TapIo::Writev] {
            let mut writer = TapWriter::with_io(64, io);
            if writer.io() != io {
                assert!(
                    !crate::prereq::required(),
                    "io_uring cannot be set up here ({}=1)",
                    crate::prereq::REQUIRE_ROOT_ENV
                );
                eprintln!(
                    "tap_writer_delivers_batches_in_order: io_uring unavailable, writev only"
                );
                continue;
            }
            let mut results = vec![None; frames.len()];
            writer.write_all(
                frames.len(),
                |i| (&tap, &frames[i]),
                |i, r| results[i] = Some(r.map_err(|e| e.to_string())),
            );
            assert!(
                results.iter().all(|r| r == &Some(Ok(()))),
                "{io:?}: {results:?}"
            );
            for want in 0u32..150 {
                let mut buf = [0u8; 16];
                let n = sock.recv(&mut buf).expect("every datagram of the batch");
                assert_eq!(&buf[..n], &want.to_be_bytes(), "{io:?}: in order");
            }

            let gso = Packet::from_frame(
                VnetHdr {
                    gso_type: VnetHdr::GSO_TCPV4,
                    gso_size: 1448,
                    ..VnetHdr::default()
                },
                frames[0].frame(),
            );
            let mut refused = None;
            let mixed = [(&plain, &gso), (&plain, &frames[1])];
            writer.write_all(
                mixed.len(),
                |i| mixed[i],
                |i, r| {
                    if i == 0 {
                        refused = Some(r.map_err(|e| e.kind()));
                    } else {
                        r.expect("a plain frame on a plain TAP");
                    }
                },
            );
            assert_eq!(
                refused,
                Some(Err(std::io::ErrorKind::InvalidInput)),
                "{io:?}"
            );
        }
    })
    .expect("tap writer test inside namespace");
}
