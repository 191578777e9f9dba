//! IPv6 routed between links: a machine's bridge networks and its uplink on
//! `lan`, with the same connection tracking as IPv4 ([`Conntrack`] over
//! [`Ipv6Addr`]) and Docker's `ip6tables` semantics (V6-4):
//!
//! - with `ip6tables` on: masquerade to the machine's `ip6` on egress
//!   (BR-10's IPv6 side), published ports DNATed to `[container6]:C` with
//!   the client's own address kept (PUB-1, PUB-3, PUB-4), isolation between
//!   the machine's networks (V6-3), ingress denied to container addresses
//!   that are neither a tracked reply nor published (PUB-2), internal
//!   networks kept in (BR-15);
//! - with `ip6tables` off: IPv6 routed both ways without NAT or filtering.
//!
//! Next hops are found in a static neighbour table the backend fills from
//! the plan (every container's and lan host's IPv6 address with its MAC and
//! engine port), so the router never waits for neighbour discovery; hosts
//! still resolve each other and the gateway with NS/NA on their links.
//!
//! What is not routed here goes on along the L2 path: frames for the
//! machine's own addresses (its host stack), link-local and multicast
//! destinations, and anything that is not TCP, UDP or ICMPv6 right after
//! the fixed header.

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::time::Instant;

use ipnet::Ipv6Net;

use super::checksum::update16;
use super::conntrack::{Conntrack, Kind, Timeouts};
use super::fdb::mac_key;
use super::flow::{IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Tuple, tcp_flags};
use super::icmp6;
use super::metrics::Metrics;
use super::packet::{Packet, VnetHdr};
use super::pipeline::FrameCx;
use super::trace::TraceEvent;
use super::{Action, DomainId, DropReason, MacAddr, PortId, PortRole};
use crate::wire::ethernet::{self, EtherType, HEADER_LEN as ETH_HDR_LEN};
use crate::wire::{be16, set_be16};
use crate::wire::{icmpv6, ipv6, tcp, udp};

const IPV6_HDR: usize = ipv6::HEADER_LEN;
const ICMPV6_ECHO_REQUEST: u8 = icmpv6::types::ECHO_REQUEST;
const ICMPV6_ECHO_REPLY: u8 = icmpv6::types::ECHO_REPLY;

/// A machine as the IPv6 router sees it (one per [`super::MachineConfig`],
/// same order).
#[derive(Clone, Debug)]
pub struct Machine6 {
    /// The engine port of its uplink.
    pub uplink: PortId,
    /// Its uplink MAC (shared with the host stack).
    pub mac: MacAddr,
    /// Its uplink IPv6 address, when the world has `lan6`.
    pub ip6: Option<Ipv6Addr>,
    /// `lan6`.
    pub lan6: Option<Ipv6Net>,
    /// The lan's default router for IPv6 (the `gateway = true` external's
    /// IPv6 address).
    pub lan_gateway6: Option<Ipv6Addr>,
    /// Docker's `ip6tables` daemon option (V6-4).
    pub ip6tables: bool,
    /// The MTU of its uplink (routed packets above it get a packet too
    /// big).
    pub lan_mtu: u16,
}

/// A bridge network's IPv6 side.
#[derive(Clone, Debug)]
pub struct Network6 {
    /// Its domain.
    pub domain: DomainId,
    /// Index of its machine.
    pub machine: usize,
    /// `subnet6`.
    pub subnet6: Ipv6Net,
    /// `gateway6` (machine-local).
    pub gateway6: Ipv6Addr,
    /// The gateway's MAC (the host port's).
    pub gw_mac: MacAddr,
    /// No route beyond the network (BR-15).
    pub internal: bool,
    /// Masquerade on egress (with `ip6tables`).
    pub masquerade: bool,
    /// The network's MTU (BR-6).
    pub mtu: u16,
}

/// A port published over IPv6 (PUB-4: `H:C` and `[v6]:H:C`).
#[derive(Clone, Copy, Debug)]
pub struct Publish6 {
    /// Index of its machine.
    pub machine: usize,
    /// Host address; `None` for all of the machine's.
    pub host_ip: Option<Ipv6Addr>,
    /// Host port.
    pub host_port: u16,
    /// 6 or 17.
    pub proto: u8,
    /// The container's IPv6 address.
    pub container_ip: Ipv6Addr,
    /// Container port.
    pub container_port: u16,
}

/// The IPv6 routing configuration (empty: IPv6 stays on its links).
#[derive(Clone, Debug, Default)]
pub struct Route6Config {
    /// Machines, in [`super::L3Config::machines`] order.
    pub machines: Vec<Machine6>,
    /// Bridge networks with IPv6.
    pub networks: Vec<Network6>,
    /// Published ports.
    pub publish: Vec<Publish6>,
    /// Every IPv6 host the router may deliver to: address, MAC, port.
    pub neighbours: Vec<(Ipv6Addr, MacAddr, PortId)>,
}

/// What a port is to the IPv6 router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    None,
    Container(usize),
    Lan,
}

/// An IPv6 packet's fields on the routed path (fixed header only).
#[derive(Clone, Copy, Debug)]
struct Ip6 {
    tuple: Tuple<Ipv6Addr>,
    hop_limit: u8,
    /// Bytes of L4 in the frame.
    l4_len: usize,
    /// TCP flags.
    tcp: Option<u8>,
}

const L4_OFF: usize = ETH_HDR_LEN + IPV6_HDR;

impl Ip6 {
    fn parse(frame: &[u8]) -> Option<Ip6> {
        let eth = ethernet::Frame::new_checked(frame).ok()?;
        if eth.ethertype_raw() != EtherType::IPV6 {
            return None;
        }
        let h = ipv6::Packet::new_checked(eth.payload()).ok()?;
        let plen = usize::from(h.payload_len());
        let l4 = h.into_payload();
        let mut tuple = Tuple {
            src: h.src_addr(),
            dst: h.dst_addr(),
            sport: 0,
            dport: 0,
            proto: h.next_header(),
            icmp_reply: false,
        };
        let mut tcp = None;
        match tuple.proto {
            IPPROTO_TCP if l4.len() >= tcp::HEADER_LEN => {
                let t = tcp::Packet::new_unchecked(l4);
                tuple.sport = t.src_port();
                tuple.dport = t.dst_port();
                tcp = Some(t.flags());
            }
            IPPROTO_UDP if l4.len() >= udp::HEADER_LEN => {
                let u = udp::Packet::new_unchecked(l4);
                tuple.sport = u.src_port();
                tuple.dport = u.dst_port();
            }
            IPPROTO_ICMPV6 if l4.len() >= icmpv6::HEADER_LEN => {
                let m = icmpv6::Packet::new_unchecked(l4);
                if matches!(m.msg_type(), ICMPV6_ECHO_REQUEST | ICMPV6_ECHO_REPLY) {
                    let id = m.echo_ident();
                    tuple.sport = id;
                    tuple.dport = id;
                    tuple.icmp_reply = m.msg_type() == ICMPV6_ECHO_REPLY;
                } else {
                    // Errors and neighbour discovery are not routed here.
                    return None;
                }
            }
            _ => return None,
        }
        Some(Ip6 {
            tuple,
            hop_limit: h.hop_limit(),
            l4_len: plen,
            tcp,
        })
    }
}

/// Whether the router leaves a destination to the L2 path.
fn on_link_only(a: Ipv6Addr) -> bool {
    a.is_multicast() || a.is_unicast_link_local() || a.is_loopback() || a.is_unspecified()
}

/// The IPv6 router.
#[derive(Debug)]
pub(crate) struct Router6 {
    cfg: Route6Config,
    pub(crate) ct: Vec<Conntrack<Ipv6Addr>>,
    tags: Vec<Tag>,
    neigh: HashMap<Ipv6Addr, (MacAddr, PortId)>,
    /// A link fault's MTU on each machine's uplink (the router's egress
    /// MTU there too, as for IPv4).
    uplink_mtu: Vec<Option<u16>>,
}

impl Router6 {
    /// Builds the router; `domain_of` gives each port's domain and role,
    /// `lan` is the lan domain.
    pub(crate) fn new(
        cfg: Route6Config,
        nports: usize,
        domain_of: &dyn Fn(PortId) -> Option<(DomainId, PortRole)>,
        lan: Option<DomainId>,
        conntrack_capacity: usize,
        timeouts: Timeouts,
    ) -> Router6 {
        let mut tags = vec![Tag::None; nports];
        for (i, t) in tags.iter_mut().enumerate() {
            let Some((d, role)) = domain_of(PortId(i as u16)) else {
                continue;
            };
            if Some(d) == lan {
                *t = Tag::Lan;
            } else if role == PortRole::Container
                && let Some(n) = cfg.networks.iter().position(|n| n.domain == d)
            {
                *t = Tag::Container(n);
            }
        }
        let neigh = cfg
            .neighbours
            .iter()
            .map(|&(ip, mac, port)| (ip, (mac, port)))
            .collect();
        Router6 {
            uplink_mtu: vec![None; cfg.machines.len()],
            ct: (0..cfg.machines.len())
                .map(|_| Conntrack::new(conntrack_capacity, timeouts))
                .collect(),
            cfg,
            tags,
            neigh,
        }
    }

    /// Takes the frame when it is the router's (routed, translated,
    /// dropped); false leaves it to L2.
    pub(crate) fn intercept(&mut self, cx: &mut FrameCx<'_>, metrics: &mut Metrics) -> bool {
        let (now, ingress) = (cx.now, cx.ingress);
        let tag = self
            .tags
            .get(usize::from(ingress.0))
            .copied()
            .unwrap_or(Tag::None);
        if tag == Tag::None {
            return false;
        }
        if tag == Tag::Lan && self.error_for_a_flow(cx, metrics) {
            return true;
        }
        let frame = cx.pkt.frame();
        let Some(ip) = Ip6::parse(frame) else {
            return false;
        };
        if on_link_only(ip.tuple.dst) {
            return false;
        }
        let dst_key = mac_key(&ethernet::Frame::new_unchecked(frame).dst());
        let (m, verdict) = match tag {
            Tag::Container(n) if dst_key == mac_key(&self.cfg.networks[n].gw_mac.0) => {
                let m = self.cfg.networks[n].machine;
                metrics.note(|| TraceEvent::Router {
                    machine: m,
                    path: "IPv6, from a container network",
                });
                (m, self.routed_from_container(now, n, &ip))
            }
            Tag::Lan => match self
                .cfg
                .machines
                .iter()
                .position(|m| mac_key(&m.mac.0) == dst_key)
            {
                Some(m) => {
                    metrics.note(|| TraceEvent::Router {
                        machine: m,
                        path: "IPv6, inbound from lan",
                    });
                    (m, self.inbound(now, m, &ip))
                }
                None => return false,
            },
            _ => return false,
        };
        let near = match tag {
            Tag::Container(n) => {
                let net = &self.cfg.networks[n];
                Some((net.gateway6, net.gw_mac))
            }
            _ => self.cfg.machines[m]
                .ip6
                .map(|a| (a, self.cfg.machines[m].mac)),
        };
        self.apply(cx, metrics, (m, near), &ip, verdict, 0)
    }

    /// Carries out machine `m`'s verdict on a packet from `ingress`
    /// (`near`: the router's address and MAC on that side, for errors).
    /// A packet routed to another machine of this world goes through that
    /// machine's inbound path next (published ports, conntrack), as the
    /// IPv4 router does: `depth` counts those hand-overs.
    fn apply(
        &mut self,
        cx: &mut FrameCx<'_>,
        metrics: &mut Metrics,
        (m, near): (usize, Option<(Ipv6Addr, MacAddr)>),
        ip: &Ip6,
        verdict: Verdict,
        depth: u8,
    ) -> bool {
        let (now, ingress) = (cx.now, cx.ingress);
        let (pkt, out) = (&mut *cx.pkt, &mut *cx.out);
        let err = |typ, code, param| (ingress, near, (typ, code, param));
        let (to, hop, commit) = match verdict {
            Verdict::Pass => return false,
            Verdict::Drop(DropReason::NoRoute) => {
                let e = err(icmp6::DEST_UNREACH, icmp6::NO_ROUTE, 0);
                reject(pkt, e, metrics, out);
                return true;
            }
            Verdict::Drop(r) => {
                metrics.drop(ingress, r);
                out.push(Action::Drop(r));
                return true;
            }
            Verdict::Route { to, hop, commit } => (to, hop, commit),
        };
        if ip.hop_limit <= 1 {
            reject(pkt, err(icmp6::TIME_EXCEEDED, 0, 0), metrics, out);
            return true;
        }
        let mtu = match self.uplink_mtu[m] {
            Some(f) if hop.lan => hop.mtu.min(f),
            _ => hop.mtu,
        };
        if icmp6::wire_len(pkt) > usize::from(mtu) {
            let e = err(icmp6::PACKET_TOO_BIG, 0, u32::from(mtu));
            reject(pkt, e, metrics, out);
            return true;
        }
        if let Some((orig, reply, kind)) = commit
            && let Err(e) = self.ct[m].insert(orig, reply, kind, ip.tcp, now)
        {
            let r = super::route::refused_reason(e);
            metrics.drop(ingress, r);
            out.push(Action::Drop(r));
            return true;
        }
        rewrite(pkt, &ip.tuple, &to, ip.l4_len);
        let mut eth = ethernet::Frame::new_unchecked(pkt.frame_mut());
        eth.set_dst(hop.via_mac.0);
        eth.set_src(hop.src_mac.0);
        ipv6::Packet::new_unchecked(eth.payload_mut()).set_hop_limit(ip.hop_limit - 1);
        let via = mac_key(&hop.via_mac.0);
        if hop.lan
            && depth == 0
            && let Some(m2) = self
                .cfg
                .machines
                .iter()
                .position(|c| mac_key(&c.mac.0) == via)
            && m2 != m
            && let Some(ip2) = Ip6::parse(pkt.frame())
        {
            let v2 = self.inbound(now, m2, &ip2);
            // Errors of the second machine are not sent back across the
            // first one's translation: such a packet is only dropped.
            if self.apply(cx, metrics, (m2, None), &ip2, v2, 1) {
                return true;
            }
        }
        let (pkt, out) = (&*cx.pkt, &mut *cx.out);
        metrics.tx(hop.port, pkt.len());
        out.push(Action::Forward(hop.port));
        true
    }

    /// An ICMPv6 error from the lan to machine `m` quoting a packet of a
    /// tracked flow (a packet too big on the path of a masqueraded
    /// connection, RFC 4443 §2.4): translated back as Linux's
    /// `nf_nat_icmpv6_reply_translation` does (outer destination, the
    /// quoted packet's source address and port, both checksums) and
    /// routed to the flow's own end. False leaves the frame alone.
    fn error_for_a_flow(&mut self, cx: &mut FrameCx<'_>, metrics: &mut Metrics) -> bool {
        let (now, ingress) = (cx.now, cx.ingress);
        let (pkt, out) = (&mut *cx.pkt, &mut *cx.out);
        let f = pkt.frame();
        let inner_at = L4_OFF + icmpv6::HEADER_LEN;
        if f.len() < inner_at + IPV6_HDR + 8 || ethernet::ethertype(f) != EtherType::IPV6 {
            return false;
        }
        let outer = ipv6::Packet::new_unchecked(&f[ETH_HDR_LEN..]);
        let msg = icmpv6::Packet::new_unchecked(&f[L4_OFF..]);
        let quote = ipv6::Packet::new_unchecked(&f[inner_at..]);
        if outer.next_header() != IPPROTO_ICMPV6
            || !(icmpv6::types::DEST_UNREACH..=icmpv6::types::PARAM_PROBLEM)
                .contains(&msg.msg_type())
            || quote.version() != 6
        {
            return false;
        }
        let dst_key = mac_key(&ethernet::Frame::new_unchecked(f).dst());
        let Some(m) = self
            .cfg
            .machines
            .iter()
            .position(|c| mac_key(&c.mac.0) == dst_key)
        else {
            return false;
        };
        let proto = quote.next_header();
        let l4 = inner_at + IPV6_HDR;
        // The quote holds at least 8 bytes of its L4 header.
        let (ports, echo) = (
            udp::Packet::new_unchecked(&f[l4..]),
            icmpv6::Packet::new_unchecked(&f[l4..]),
        );
        let (sport, dport, icmp_reply) = match proto {
            IPPROTO_TCP | IPPROTO_UDP => (ports.src_port(), ports.dst_port(), false),
            IPPROTO_ICMPV6
                if matches!(echo.msg_type(), ICMPV6_ECHO_REQUEST | ICMPV6_ECHO_REPLY) =>
            {
                let id = echo.echo_ident();
                (id, id, echo.msg_type() == ICMPV6_ECHO_REPLY)
            }
            _ => return false,
        };
        let quoted = Tuple {
            src: quote.src_addr(),
            dst: quote.dst_addr(),
            sport,
            dport,
            proto,
            icmp_reply,
        };
        // A reply to the quoted packet is what the flow tracks on this side.
        let Some((id, dir)) = self.ct[m].lookup(&quoted.inverse(), now) else {
            return false;
        };
        let Some(back) = self.ct[m].get(id).map(|c| c.translated(dir)) else {
            return false;
        };
        let orig = back.inverse();
        if orig == quoted {
            return false; // not translated: routed as it is, or the host's
        }
        let Ok(hop) = self.next_hop(m, orig.src) else {
            return false;
        };
        let hop_limit = outer.hop_limit();
        if hop_limit <= 1 {
            metrics.drop(ingress, DropReason::TtlExceeded);
            out.push(Action::Drop(DropReason::TtlExceeded));
            return true;
        }
        let b = pkt.frame_mut();
        // The quoted packet: its source address and port, its checksum.
        let inner_l4_len = b.len() - l4;
        let inner_csum = match proto {
            IPPROTO_TCP => tcp::field::CHECKSUM,
            IPPROTO_UDP => udp::field::CHECKSUM,
            _ => icmpv6::field::CHECKSUM,
        };
        if inner_l4_len >= inner_csum + 2 {
            let mut c = be16(b, l4 + inner_csum);
            for (o, n) in quoted.src.segments().into_iter().zip(orig.src.segments()) {
                c = update16(c, o, n);
            }
            // The port (or echo id) is covered by its own checksum.
            c = update16(c, quoted.sport, orig.sport);
            set_be16(b, l4 + inner_csum, c);
        }
        ipv6::Packet::new_unchecked(&mut b[inner_at..]).set_src(orig.src.octets());
        let port_at = if proto == IPPROTO_ICMPV6 {
            l4 + icmpv6::field::ECHO_IDENT
        } else {
            l4 + udp::field::SRC_PORT
        };
        set_be16(b, port_at, orig.sport);
        // The outer destination, hop limit, MACs and ICMPv6 checksum.
        let mut o = ipv6::Packet::new_unchecked(&mut b[ETH_HDR_LEN..]);
        o.set_dst(orig.src.octets());
        o.set_hop_limit(hop_limit - 1);
        let (plen, src) = (usize::from(o.payload_len()), o.src());
        let mut eth = ethernet::Frame::new_unchecked(&mut *b);
        eth.set_dst(hop.via_mac.0);
        eth.set_src(hop.src_mac.0);
        let plen = plen.min(b.len() - L4_OFF);
        let mut m = icmpv6::Packet::new_unchecked(&mut b[L4_OFF..]);
        m.set_checksum(0);
        let c = super::nd::icmpv6_checksum(&src, &orig.src.octets(), &m.into_inner()[..plen]);
        icmpv6::Packet::new_unchecked(&mut b[L4_OFF..]).set_checksum(c);
        pkt.hdr = VnetHdr::default();
        metrics.tx(hop.port, pkt.len());
        out.push(Action::Forward(hop.port));
        true
    }

    /// Sets (or clears) a link fault's MTU on an uplink port.
    pub(crate) fn set_uplink_mtu(&mut self, port: PortId, mtu: Option<u16>) {
        for (m, f) in self.cfg.machines.iter().zip(&mut self.uplink_mtu) {
            if m.uplink == port {
                *f = mtu;
            }
        }
    }

    /// Machine-local IPv6 addresses: the uplink's and every gateway6.
    fn is_local(&self, m: usize, a: Ipv6Addr) -> bool {
        self.cfg.machines[m].ip6 == Some(a)
            || self
                .cfg
                .networks
                .iter()
                .any(|n| n.machine == m && n.gateway6 == a)
    }

    fn net_of(&self, m: usize, a: Ipv6Addr) -> Option<usize> {
        self.cfg
            .networks
            .iter()
            .position(|n| n.machine == m && n.subnet6.contains(&a))
    }

    /// Where a packet for `dst` goes from machine `m`: into one of its
    /// networks, or out of its uplink towards `dst` or the lan's router.
    fn next_hop(&self, m: usize, dst: Ipv6Addr) -> Result<Hop, DropReason> {
        let (hop, src_mac, mtu, lan) = match self.net_of(m, dst) {
            Some(n) => (
                dst,
                self.cfg.networks[n].gw_mac,
                self.cfg.networks[n].mtu,
                false,
            ),
            None => {
                let mc = &self.cfg.machines[m];
                let hop = if mc.lan6.is_some_and(|l| l.contains(&dst)) {
                    dst
                } else {
                    mc.lan_gateway6.ok_or(DropReason::NoRoute)?
                };
                (hop, mc.mac, mc.lan_mtu, true)
            }
        };
        let &(via_mac, port) = self
            .neigh
            .get(&hop)
            .ok_or(DropReason::NeighbourUnresolved)?;
        Ok(Hop {
            via_mac,
            src_mac,
            port,
            mtu,
            lan,
        })
    }

    fn route_to(&self, m: usize, to: Tuple<Ipv6Addr>) -> Verdict {
        self.route_new(m, to, None)
    }

    /// Routes to `to`, committing `commit` (a new flow) only once the
    /// packet is known to leave: one answered with an ICMPv6 error leaves
    /// no flow behind, as Linux confirms conntrack entries in POSTROUTING.
    fn route_new(&self, m: usize, to: Tuple<Ipv6Addr>, commit: Option<Commit>) -> Verdict {
        match self.next_hop(m, to.dst) {
            Ok(hop) => Verdict::Route { to, hop, commit },
            Err(r) => Verdict::Drop(r),
        }
    }

    /// A container's packet to its gateway MAC for an address that is not
    /// the machine's own.
    fn routed_from_container(&mut self, now: Instant, n: usize, ip: &Ip6) -> Verdict {
        let net = self.cfg.networks[n].clone();
        let m = net.machine;
        let t = ip.tuple;
        if self.is_local(m, t.dst) {
            return Verdict::Pass;
        }
        let ip6tables = self.cfg.machines[m].ip6tables;
        if let Some((id, dir)) = self.ct[m].lookup(&t, now) {
            let to = self.ct[m].get(id).map_or(t, |c| c.translated(dir));
            self.ct[m].update(id, dir, ip.tcp, now);
            return self.route_to(m, to);
        }
        if let Some(other) = self.net_of(m, t.dst) {
            if other == n {
                return Verdict::Pass; // on its own link: L2's
            }
            if ip6tables {
                return Verdict::Drop(DropReason::Isolation);
            }
            return self.route_to(m, t);
        }
        if net.internal {
            return Verdict::Drop(DropReason::InternalNetwork);
        }
        if !ip6tables {
            return self.route_to(m, t);
        }
        if ip.tcp.is_some_and(|f| f & tcp_flags::SYN == 0) && t.proto == IPPROTO_TCP {
            // No flow and not a SYN: conntrack's INVALID.
            return Verdict::Drop(DropReason::InvalidState);
        }
        let (kind, reply) = match (net.masquerade, self.cfg.machines[m].ip6) {
            (true, Some(me)) => {
                let want = Tuple {
                    src: t.dst,
                    dst: me,
                    sport: t.dport,
                    dport: t.sport,
                    proto: t.proto,
                    icmp_reply: t.proto == IPPROTO_ICMPV6 && !t.icmp_reply,
                };
                match self.ct[m].free_reply(want) {
                    Some(r) => (Kind::Masquerade, r),
                    None => return Verdict::Drop(DropReason::NatPortsExhausted),
                }
            }
            _ => (Kind::Routed, t.inverse()),
        };
        self.route_new(m, reply.inverse(), Some((t, reply, kind)))
    }

    /// A packet from the lan to machine `m`'s MAC.
    fn inbound(&mut self, now: Instant, m: usize, ip: &Ip6) -> Verdict {
        let t = ip.tuple;
        if let Some((id, dir)) = self.ct[m].lookup(&t, now) {
            let to = self.ct[m].get(id).map_or(t, |c| c.translated(dir));
            self.ct[m].update(id, dir, ip.tcp, now);
            return self.route_to(m, to);
        }
        let ip6tables = self.cfg.machines[m].ip6tables;
        if self.cfg.machines[m].ip6 == Some(t.dst) {
            let Some(p) = self.publish_match(m, &t) else {
                return Verdict::Pass; // the host stack's
            };
            if !ip6tables {
                return Verdict::Pass; // docker-proxy's, on the host stack
            }
            let to = Tuple {
                dst: p.container_ip,
                dport: p.container_port,
                ..t
            };
            return self.route_new(m, to, Some((t, to.inverse(), Kind::Dnat)));
        }
        if self.net_of(m, t.dst).is_some() {
            if ip6tables {
                return Verdict::Drop(DropReason::IngressDenied);
            }
            return self.route_to(m, t);
        }
        Verdict::Pass
    }

    fn publish_match(&self, m: usize, t: &Tuple<Ipv6Addr>) -> Option<Publish6> {
        self.cfg.publish.iter().copied().find(|p| {
            p.machine == m
                && p.proto == t.proto
                && p.host_port == t.dport
                && p.host_ip.is_none_or(|h| h == t.dst || h.is_unspecified())
        })
    }

    /// Forgets expired flows; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        self.ct.iter_mut().map(|c| c.expire(now)).sum()
    }

    /// The earliest flow expiry.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.ct.iter().filter_map(Conntrack::next_expiry).min()
    }

    /// Number of tracked IPv6 flows.
    pub(crate) fn len(&self) -> usize {
        self.ct.iter().map(Conntrack::len).sum()
    }
}

/// A new flow to commit: original tuple, reply tuple, kind.
type Commit = (Tuple<Ipv6Addr>, Tuple<Ipv6Addr>, Kind);

/// The next hop of a routed packet.
#[derive(Clone, Copy, Debug)]
struct Hop {
    via_mac: MacAddr,
    src_mac: MacAddr,
    port: PortId,
    /// The egress link's MTU.
    mtu: u16,
    /// Out of the machine's uplink.
    lan: bool,
}

enum Verdict {
    Pass,
    Drop(DropReason),
    Route {
        to: Tuple<Ipv6Addr>,
        hop: Hop,
        commit: Option<Commit>,
    },
}

/// Who sent the offending frame, the router's address and MAC on that
/// side (none: no IPv6 address to answer from), and the error.
type Reject = (PortId, Option<(Ipv6Addr, MacAddr)>, (u8, u8, u32));

/// Answers the packet with an ICMPv6 error (when allowed) and counts it as
/// dropped, as [`super::forward`] does for IPv4.
fn reject(
    pkt: &Packet,
    (ingress, near, (typ, code, param)): Reject,
    metrics: &mut Metrics,
    out: &mut Vec<Action>,
) {
    let reason = match typ {
        icmp6::PACKET_TOO_BIG => DropReason::FragNeeded,
        icmp6::TIME_EXCEEDED => DropReason::TtlExceeded,
        _ => DropReason::NoRoute,
    };
    metrics.drop(ingress, reason);
    match near {
        Some((ip, mac)) if icmp6::may_answer(pkt.frame()) => {
            let e = icmp6::error(pkt.frame(), typ, code, param, ip, mac.0);
            metrics.tx(ingress, e.len());
            out.push(Action::Emit(ingress, e));
        }
        _ => out.push(Action::Drop(reason)),
    }
}

/// Rewrites addresses and ports from `from` to `to`, updating the L4
/// checksum incrementally (RFC 1624). IPv6 has no header checksum; TCP,
/// UDP and ICMPv6 all cover the pseudo-header. A partial checksum (the
/// device finishes it, `F_NEEDS_CSUM`) holds the uncomplemented
/// pseudo-header sum: address changes update it without complementing and
/// port changes leave it alone, as for IPv4 (`nat.rs`).
fn rewrite(pkt: &mut Packet, from: &Tuple<Ipv6Addr>, to: &Tuple<Ipv6Addr>, l4_len: usize) {
    if from == to {
        return;
    }
    let partial =
        pkt.hdr.flags & VnetHdr::F_NEEDS_CSUM != 0 && usize::from(pkt.hdr.csum_start) == L4_OFF;
    let at = match from.proto {
        IPPROTO_TCP => tcp::field::CHECKSUM,
        IPPROTO_UDP => udp::field::CHECKSUM,
        _ => icmpv6::field::CHECKSUM,
    };
    let b = pkt.frame_mut();
    let has_csum = l4_len >= at + 2;
    let mut c = if has_csum { be16(b, L4_OFF + at) } else { 0 };
    let words = |a: Ipv6Addr| a.segments();
    let addrs = [
        (ipv6::field::SRC, from.src, to.src),
        (ipv6::field::DST, from.dst, to.dst),
    ];
    for (field, o, n) in addrs {
        if o == n {
            continue;
        }
        if has_csum {
            for (ow, nw) in words(o).into_iter().zip(words(n)) {
                c = if partial {
                    super::checksum::update16_partial(c, ow, nw)
                } else {
                    update16(c, ow, nw)
                };
            }
        }
        b[ETH_HDR_LEN + field..ETH_HDR_LEN + field + 16].copy_from_slice(&n.octets());
    }
    let ports: &[(usize, u16, u16)] = match from.proto {
        IPPROTO_TCP | IPPROTO_UDP => &[
            (udp::field::SRC_PORT, from.sport, to.sport),
            (udp::field::DST_PORT, from.dport, to.dport),
        ],
        // The echo id is the "port" of both directions.
        _ => &[(icmpv6::field::ECHO_IDENT, from.sport, to.sport)],
    };
    for &(field, o, n) in ports {
        if o != n && l4_len >= field + 2 {
            if has_csum && !partial {
                c = update16(c, o, n);
            }
            set_be16(b, L4_OFF + field, n);
        }
    }
    if has_csum {
        if from.proto == IPPROTO_UDP && c == 0 && !partial {
            c = 0xffff;
        }
        set_be16(b, L4_OFF + at, c);
    }
}
