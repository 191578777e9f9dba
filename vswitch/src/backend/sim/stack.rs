//! One smoltcp host stack per interface: an in-memory device whose frames
//! go to and come from an engine port (or, for a node's loopback, back to
//! itself), with the interface's addresses and routes from the
//! [`IfaceSpec`](crate::backend::hosted::IfaceSpec) the userspace
//! backend would give its TAP.

use std::collections::VecDeque;
use std::net::IpAddr;

use ipnet::IpNet;
use smoltcp::iface::{Config, Interface, Route, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

use crate::engine::PortId;
use crate::scenario::plan::{MacAddr, Node};

use super::services::Service;

/// At most this many addresses per interface (smoltcp's fixed table).
pub(crate) const MAX_ADDRS: usize = 8;

/// An in-memory device: frames received wait in `rx`, frames sent pile up
/// in `tx` until the world moves them.
#[derive(Debug)]
pub(crate) struct MemDevice {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: Vec<Vec<u8>>,
    mtu: usize,
    medium: Medium,
}

impl MemDevice {
    pub(crate) fn new(mtu: usize, medium: Medium) -> MemDevice {
        MemDevice {
            rx: VecDeque::new(),
            tx: Vec::new(),
            mtu,
            medium,
        }
    }
}

/// A received frame.
#[derive(Debug)]
pub(crate) struct RxTok(Vec<u8>);

/// Room for one frame to send.
#[derive(Debug)]
pub(crate) struct TxTok<'a>(&'a mut Vec<Vec<u8>>);

impl smoltcp::phy::RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for MemDevice {
    type RxToken<'a> = RxTok;
    type TxToken<'a> = TxTok<'a>;

    fn receive(&mut self, _: SmolInstant) -> Option<(RxTok, TxTok<'_>)> {
        let f = self.rx.pop_front()?;
        Some((RxTok(f), TxTok(&mut self.tx)))
    }

    fn transmit(&mut self, _: SmolInstant) -> Option<TxTok<'_>> {
        Some(TxTok(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = self.medium;
        c.max_transmission_unit = match self.medium {
            Medium::Ethernet => self.mtu + 14,
            _ => self.mtu,
        };
        c
    }
}

/// One interface of a node with its sockets and the services bound there.
pub(crate) struct Stack {
    /// The node it belongs to.
    pub node: Node,
    /// Its engine port (`None`: the node's loopback).
    pub port: Option<PortId>,
    /// Interface name in the node (`eth0`, `br-x`, `lo`).
    pub name: String,
    pub iface: Interface,
    pub dev: MemDevice,
    pub sockets: SocketSet<'static>,
    /// Its own addresses with prefix lengths (routing decisions).
    pub addrs: Vec<(IpAddr, u8)>,
    /// Routes through it (`None`: on-link).
    pub routes: Vec<(IpNet, Option<IpAddr>)>,
    /// Services listening here.
    pub services: Vec<Service>,
    /// Its MTU.
    pub mtu: u16,
    /// When it next wants polling, in virtual microseconds.
    pub next_at: Option<u64>,
    /// Echo requests whose automatic reply waits for the sender's (or the
    /// gateway's) MAC: handed in again once an ARP reply or neighbour
    /// advertisement arrives, as the kernel's neighbour queue holds them.
    pub held_echo: Vec<Vec<u8>>,
    /// Senders this interface was taught the way back to, with when
    /// (virtual µs): at most once a second each.
    pub taught: Vec<([u8; 4], u64)>,
    /// Destinations of its on-link host routes outside its own subnets
    /// ([`onlink_hosts`]).
    pub onlink: Vec<IpAddr>,
    /// Where it was just handed packets to send ([`super::neigh`]).
    pub expect: Vec<IpAddr>,
    /// When smoltcp last sent a solicitation here (its silence follows),
    /// virtual µs.
    pub solicited_at: Option<u64>,
    /// Neighbours the sim asked for on its behalf, with when.
    pub asked: Vec<(IpAddr, u64)>,
}

/// A host prefix length for `a`'s family.
fn host_len(a: IpAddr) -> u8 {
    if a.is_ipv4() { 32 } else { 128 }
}

/// The IPv4 destinations of on-link host routes (`ip route add D/32 dev
/// eth0`) outside the interface's own subnets, such as a machine's way
/// into its ingress sandbox (SVC-4). smoltcp has no on-link routes: it
/// asks ARP only for addresses of its own subnets and drops an ARP reply
/// from any other sender (`process_arp`: "source IP address not in same
/// network"). The interface therefore holds such a destination as a /32
/// after its own addresses; it then asks for it and keeps the answer as
/// the kernel does, its source address stays the first of its own, and
/// [`Stack::not_mine`] keeps it from answering for the address.
pub(crate) fn onlink_hosts(
    addrs: &[(IpAddr, u8)],
    routes: &[(IpNet, Option<IpAddr>)],
) -> Vec<IpAddr> {
    routes
        .iter()
        .filter(|(n, via)| via.is_none() && matches!(n, IpNet::V4(v) if v.prefix_len() == 32))
        .map(|(n, _)| n.addr())
        .filter(|d| {
            !addrs
                .iter()
                .any(|(a, len)| a.is_ipv4() && IpNet::new(*a, *len).is_ok_and(|n| n.contains(d)))
        })
        .collect()
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("node", &self.node)
            .field("port", &self.port)
            .field("name", &self.name)
            .field("addrs", &self.addrs)
            .finish()
    }
}

pub(crate) fn smol_ip(a: IpAddr) -> IpAddress {
    match a {
        IpAddr::V4(v) => IpAddress::Ipv4(v),
        IpAddr::V6(v) => IpAddress::Ipv6(v),
    }
}

pub(crate) fn std_ip(a: IpAddress) -> IpAddr {
    match a {
        IpAddress::Ipv4(v) => IpAddr::V4(v),
        IpAddress::Ipv6(v) => IpAddr::V6(v),
    }
}

/// What to make one interface from.
#[derive(Debug)]
pub(crate) struct StackSpec {
    pub node: Node,
    pub port: Option<PortId>,
    pub name: String,
    pub mac: Option<MacAddr>,
    pub mtu: u16,
    pub addrs: Vec<(IpAddr, u8)>,
    /// Addresses of the node's other interfaces, answered here too (the
    /// weak host model of Linux), as host routes.
    pub extra: Vec<IpAddr>,
    pub routes: Vec<(IpNet, Option<IpAddr>)>,
    pub seed: u64,
}

impl Stack {
    /// A stack for `spec` at virtual time `now`.
    pub(crate) fn new(spec: StackSpec, now: SmolInstant) -> Stack {
        let (medium, hw) = match spec.mac {
            Some(m) => (
                Medium::Ethernet,
                HardwareAddress::Ethernet(EthernetAddress(m.0)),
            ),
            None => (Medium::Ip, HardwareAddress::Ip),
        };
        let mut dev = MemDevice::new(usize::from(spec.mtu), medium);
        let mut cfg = Config::new(hw);
        cfg.random_seed = spec.seed;
        let mut iface = Interface::new(cfg, &mut dev, now);
        let mut cidrs: Vec<IpCidr> = spec
            .addrs
            .iter()
            .map(|(a, p)| IpCidr::new(smol_ip(*a), *p))
            .collect();
        // After the interface's own addresses, so that smoltcp's source
        // address (its first of the family) stays the kernel's.
        let onlink = onlink_hosts(&spec.addrs, &spec.routes);
        cidrs.extend(
            onlink
                .iter()
                .map(|a| IpCidr::new(smol_ip(*a), host_len(*a))),
        );
        for a in &spec.extra {
            if !spec.addrs.iter().any(|(b, _)| b == a) {
                cidrs.push(IpCidr::new(smol_ip(*a), host_len(*a)));
            }
        }
        iface.update_ip_addrs(|v| {
            for c in cidrs.into_iter().take(MAX_ADDRS) {
                let _ = v.push(c);
            }
        });
        let mut gw4 = None;
        let mut gw6 = None;
        for (net, via) in &spec.routes {
            if net.prefix_len() == 0 {
                match via {
                    Some(IpAddr::V4(g)) => gw4 = Some(*g),
                    Some(IpAddr::V6(g)) => gw6 = Some(*g),
                    None => {}
                }
            }
        }
        iface.routes_mut().update(|r| {
            for (net, via) in &spec.routes {
                let Some(via) = via else { continue };
                let _ = r.push(Route {
                    cidr: IpCidr::new(smol_ip(net.addr()), net.prefix_len()),
                    via_router: smol_ip(*via),
                    preferred_until: None,
                    expires_at: None,
                });
            }
        });
        let _ = (gw4, gw6);
        Stack {
            node: spec.node,
            port: spec.port,
            name: spec.name,
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            addrs: spec.addrs,
            routes: spec.routes,
            services: Vec::new(),
            mtu: spec.mtu,
            next_at: Some(0),
            held_echo: Vec::new(),
            taught: Vec::new(),
            onlink,
            expect: Vec::new(),
            solicited_at: None,
            asked: Vec::new(),
        }
    }

    /// Whether frame `f`, arriving from the engine, is for an on-link
    /// host route's destination rather than for this interface: an ARP
    /// request for it or an IPv4 packet to it. The interface holds that
    /// address only for smoltcp's sake; the kernel, which only routes to
    /// it, would ignore both.
    pub(crate) fn not_mine(&self, f: &[u8]) -> bool {
        if self.onlink.is_empty() {
            return false;
        }
        let dst = match f.get(12..14) {
            Some([0x08, 0x06]) if f.get(20..22) == Some(&[0, 1]) => f.get(38..42),
            Some([0x08, 0x00]) => f.get(30..34),
            _ => None,
        };
        let Some(dst) = dst.and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
            return false;
        };
        self.onlink
            .contains(&IpAddr::V4(std::net::Ipv4Addr::from(dst)))
    }

    /// Whether `dst` is on one of this interface's own subnets.
    pub(crate) fn on_link(&self, dst: IpAddr) -> bool {
        self.addrs.iter().any(|(a, len)| {
            a.is_ipv6() == dst.is_ipv6() && IpNet::new(*a, *len).is_ok_and(|n| n.contains(&dst))
        })
    }

    /// The longest route of this interface covering `dst`, as a prefix length.
    pub(crate) fn route_len(&self, dst: IpAddr) -> Option<u8> {
        self.routes
            .iter()
            .filter(|(n, _)| n.contains(&dst))
            .map(|(n, _)| n.prefix_len())
            .max()
    }

    /// The IPv4 next hop of the longest route towards `dst`.
    pub(crate) fn gateway4(&self, dst: IpAddr) -> Option<std::net::Ipv4Addr> {
        self.routes
            .iter()
            .filter(|(n, _)| n.contains(&dst))
            .max_by_key(|(n, _)| n.prefix_len())
            .and_then(|(_, via)| match via {
                Some(IpAddr::V4(g)) => Some(*g),
                _ => None,
            })
    }

    /// The source address this interface uses towards `dst`.
    pub(crate) fn source_for(&self, dst: IpAddr) -> Option<IpAddr> {
        let fam = self
            .addrs
            .iter()
            .filter(|(a, _)| a.is_ipv6() == dst.is_ipv6());
        let mut first = None;
        for (a, len) in fam {
            if IpNet::new(*a, *len).is_ok_and(|n| n.contains(&dst)) {
                return Some(*a);
            }
            first.get_or_insert(*a);
        }
        first
    }

    /// Its MAC (zero for a loopback).
    pub(crate) fn mac(&self) -> [u8; 6] {
        match self.iface.hardware_addr() {
            HardwareAddress::Ethernet(m) => m.0,
            _ => [0; 6],
        }
    }

    /// The device's capabilities (checksums to compute).
    pub(crate) fn dev_caps(&self) -> DeviceCapabilities {
        self.dev.capabilities()
    }

    /// Whether this interface holds `ip` (its own or the node's other ones).
    pub(crate) fn holds(&self, ip: IpAddr) -> bool {
        self.iface.has_ip_addr(smol_ip(ip))
    }
}

/// What a frame is, as far as the neighbour queue cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// An ICMP or ICMPv6 echo request.
    EchoRequest,
    /// An ICMP or ICMPv6 echo reply.
    EchoReply,
    /// A TCP SYN or UDP datagram: it may want an answer from a socket.
    Opener,
    /// An ARP request or IPv6 neighbour solicitation.
    Solicit,
    /// An ARP reply or IPv6 neighbour advertisement.
    Advert,
    /// Anything else.
    Other,
}

/// Classifies an Ethernet frame (untagged: the stacks see no VLAN tags).
pub(crate) fn frame_kind(f: &[u8]) -> FrameKind {
    let Some(et) = f.get(12..14) else {
        return FrameKind::Other;
    };
    match u16::from_be_bytes([et[0], et[1]]) {
        0x0806 => match f.get(20..22) {
            Some([0, 1]) => FrameKind::Solicit,
            Some([0, 2]) => FrameKind::Advert,
            _ => FrameKind::Other,
        },
        0x0800 => {
            let ihl = usize::from(f.get(14).copied().unwrap_or(0) & 0x0f) * 4;
            match (f.get(23), f.get(14 + ihl)) {
                (Some(1), Some(8)) => FrameKind::EchoRequest,
                (Some(1), Some(0)) => FrameKind::EchoReply,
                (Some(17), _) => FrameKind::Opener,
                (Some(6), _) => match f.get(14 + ihl + 13) {
                    Some(flags) if flags & 0x12 == 0x02 => FrameKind::Opener,
                    _ => FrameKind::Other,
                },
                _ => FrameKind::Other,
            }
        }
        0x86dd => match (f.get(20), f.get(54)) {
            (Some(17), _) => FrameKind::Opener,
            (Some(6), _) => match f.get(54 + 13) {
                Some(flags) if flags & 0x12 == 0x02 => FrameKind::Opener,
                _ => FrameKind::Other,
            },
            (Some(58), Some(128)) => FrameKind::EchoRequest,
            (Some(58), Some(129)) => FrameKind::EchoReply,
            (Some(58), Some(135)) => FrameKind::Solicit,
            (Some(58), Some(136)) => FrameKind::Advert,
            _ => FrameKind::Other,
        },
        _ => FrameKind::Other,
    }
}

/// An ARP request to this interface for the destination of the IPv4 echo
/// request `echo`, as its sender (or `via`, the next hop it came through)
/// would send it: teaches the interface the way back when smoltcp's
/// neighbour cache is rate-limited (one request a second per interface,
/// where the kernel asks per neighbour and queues meanwhile).
pub(crate) fn arp_for(
    echo: &[u8],
    my_mac: [u8; 6],
    via: Option<std::net::Ipv4Addr>,
) -> Option<Vec<u8>> {
    if echo.len() < 34 || echo[12..14] != [0x08, 0x00] {
        return None;
    }
    let src_mac = &echo[6..12];
    let spa: [u8; 4] = match via {
        Some(g) => g.octets(),
        None => echo[26..30].try_into().ok()?,
    };
    let tpa = &echo[30..34];
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&my_mac);
    f.extend_from_slice(src_mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(src_mac);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(tpa);
    Some(f)
}
