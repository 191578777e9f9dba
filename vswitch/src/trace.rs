//! `vswitch trace`: one synthetic frame through the engine a scenario's
//! world would run, every stage it crosses printed, like OVS's
//! `ofproto/trace`.
//!
//! The engine is the userspace backend's own, configured from the Plan by
//! [`hosted::configure`] (no root, no TAPs). Its forwarding tables are
//! primed as a running world's would be: every interface announces itself
//! (a gratuitous ARP), so MACs are learned. Then the frame — the first
//! packet of a TCP connection (SYN), a UDP datagram or an ICMP echo
//! request, from the source's interface that the source's own routing
//! table would pick — goes in, and the trace lists the stages the engine
//! noted ([`TraceEvent`]), every frame that comes out with the rewrites
//! read off it (NAT, VLAN tags, VXLAN encapsulation), and the verdict with
//! the named drop reason.

use std::fmt::Write;
use std::net::IpAddr;
use std::time::Instant;

use etherparse::{
    ArpEthIpv4Packet, ArpOperation, LinkSlice, NetSlice, PacketBuilder, SlicedPacket,
    TransportSlice,
};
use ipnet::IpNet;

use crate::backend::BuildOptions;
use crate::backend::hosted::{self, IfaceSpec, Setup};
use crate::engine::trace::TraceEvent;
use crate::engine::{Action, Engine, Packet, PortId, VnetHdr};
use crate::scenario::plan::{MacAddr, Node, Plan};
use crate::wire::vxlan;

/// What to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceProto {
    /// A TCP SYN.
    Tcp,
    /// A UDP datagram.
    Udp,
    /// An ICMP (or ICMPv6) echo request.
    Icmp,
}

/// Why a trace could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A name that is no node of the scenario.
    #[error("{0:?} is not a container, external or machine of the scenario")]
    UnknownNode(String),
    /// A target that is neither a node nor an address.
    #[error("invalid target {0:?}: expected NODE, ADDRESS, NODE:PORT, ADDRESS:PORT or [V6]:PORT")]
    BadTarget(String),
    /// TCP and UDP need a port.
    #[error("--proto {0} needs a port: --to TARGET:PORT")]
    NoPort(&'static str),
    /// The source has no interface that could send there.
    #[error("{from} has no interface or route towards {to}")]
    NoRoute {
        /// Source.
        from: String,
        /// Destination address.
        to: IpAddr,
    },
    /// Nothing in the world holds the next hop.
    #[error("no interface of the world holds {0}, the next hop")]
    NoNextHop(IpAddr),
    /// The target node has no address of the family.
    #[error("{0} has no address to send to")]
    NoAddress(String),
    /// The engine could not be configured.
    #[error("{0}")]
    Build(String),
}

/// A finished trace.
#[derive(Debug)]
pub struct Trace {
    /// The report, one line per stage.
    pub text: String,
    /// The verdict's one-word form: `delivered`, `dropped:<reason>`,
    /// `held`, `emitted` (answered by the engine itself).
    pub verdict: String,
}

/// Where the frame goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The node named, if a name was given.
    pub node: Option<String>,
    /// The address, when a literal was given.
    pub addr: Option<IpAddr>,
    /// The port.
    pub port: Option<u16>,
}

impl Target {
    /// Parses `NODE`, `ADDR`, `NODE:PORT`, `ADDR:PORT` or `[V6]:PORT`.
    pub fn parse(s: &str) -> Result<Target, TraceError> {
        let bad = || TraceError::BadTarget(s.to_string());
        if let Ok(a) = s.parse::<IpAddr>() {
            return Ok(Target {
                node: None,
                addr: Some(a),
                port: None,
            });
        }
        if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
            return Ok(Target {
                node: None,
                addr: Some(sa.ip()),
                port: Some(sa.port()),
            });
        }
        let (name, port) = match s.rsplit_once(':') {
            Some((n, p)) => (n, Some(p.parse::<u16>().map_err(|_| bad())?)),
            None => (s, None),
        };
        if name.is_empty() || name.contains([':', '[', ']', ' ']) {
            return Err(bad());
        }
        Ok(Target {
            node: Some(name.to_string()),
            addr: None,
            port,
        })
    }
}

fn node_by_name(plan: &Plan, name: &str) -> Option<Node> {
    if let Some(i) = plan.containers.iter().position(|c| c.name == name) {
        return Some(Node::Container(i));
    }
    if let Some(i) = plan.externals.iter().position(|x| x.name == name) {
        return Some(Node::External(i));
    }
    plan.machines
        .iter()
        .position(|m| m.name == name)
        .map(Node::Machine)
}

fn node_name(plan: &Plan, n: Node) -> String {
    match n {
        Node::Container(i) => plan.containers[i].name.clone(),
        Node::External(i) => plan.externals[i].name.clone(),
        Node::Machine(i) => plan.machines[i].name.clone(),
    }
}

/// The interfaces of `node`.
fn ifaces_of(setup: &Setup, node: Node) -> Vec<(PortId, &IfaceSpec)> {
    setup
        .interfaces()
        .filter(|(_, n, _)| *n == node)
        .map(|(p, _, s)| (p, s))
        .collect()
}

/// The address of `node` to send to from `src` (on a network they share
/// when there is one), of `src_family` when it matters.
fn address_of(setup: &Setup, node: Node, src: Node, v6: bool) -> Option<IpAddr> {
    let src_nets: Vec<IpNet> = ifaces_of(setup, src)
        .iter()
        .flat_map(|(_, s)| s.addrs.iter())
        .filter_map(|(a, p)| IpNet::new(*a, *p).ok().map(|n| n.trunc()))
        .collect();
    let mine: Vec<IpAddr> = ifaces_of(setup, node)
        .iter()
        .flat_map(|(_, s)| s.addrs.iter().map(|(a, _)| *a))
        .filter(|a| a.is_ipv6() == v6)
        .collect();
    mine.iter()
        .find(|a| src_nets.iter().any(|n| n.contains(*a)))
        .or(mine.first())
        .copied()
}

/// The source interface and next hop towards `dst`: on-link where an
/// interface's subnet holds it, else the first route that covers it.
fn route(src: &[(PortId, &IfaceSpec)], dst: IpAddr) -> Option<(PortId, IpAddr, IpAddr)> {
    for (p, s) in src {
        for (a, len) in &s.addrs {
            if a.is_ipv6() == dst.is_ipv6()
                && IpNet::new(*a, *len).is_ok_and(|n| n.trunc().contains(&dst))
            {
                return Some((*p, *a, dst));
            }
        }
    }
    for (p, s) in src {
        for (net, via) in &s.routes {
            if net.contains(&dst) {
                let from = s
                    .addrs
                    .iter()
                    .map(|(a, _)| *a)
                    .find(|a| a.is_ipv6() == dst.is_ipv6())?;
                return Some((*p, from, via.unwrap_or(dst)));
            }
        }
    }
    None
}

/// The MAC of whichever interface holds `ip`.
fn mac_holding(setup: &Setup, ip: IpAddr) -> Option<MacAddr> {
    setup
        .interfaces()
        .find(|(_, _, s)| s.addrs.iter().any(|(a, _)| *a == ip))
        .map(|(_, _, s)| s.mac)
}

/// Every interface announces itself once, as a live world's would have.
fn prime(engine: &mut Engine, setup: &Setup, now: Instant) {
    let mut out = Vec::new();
    for (port, _, s) in setup.interfaces() {
        let Some(ip) = s.addrs.iter().find_map(|(a, _)| match a {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        }) else {
            continue;
        };
        let arp = ArpEthIpv4Packet {
            operation: ArpOperation::REQUEST,
            sender_mac: s.mac.0,
            sender_ipv4: ip.octets(),
            target_mac: [0; 6],
            target_ipv4: ip.octets(),
        };
        let mut v = Vec::new();
        if PacketBuilder::ethernet2(s.mac.0, [0xff; 6])
            .arp(arp.into())
            .write(&mut v)
            .is_err()
        {
            continue;
        }
        let mut pkt = Packet::from_frame(VnetHdr::default(), &v);
        engine.handle_frame(now, port, &mut pkt, &mut out);
        out.clear();
    }
}

fn build_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: IpAddr,
    dst: IpAddr,
    proto: TraceProto,
    port: u16,
) -> Option<Vec<u8>> {
    let eth = PacketBuilder::ethernet2(src_mac.0, dst_mac.0);
    let ip = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => return None,
    };
    let mut v = Vec::new();
    let payload: &[u8] = b"vswitch trace";
    let written = match proto {
        TraceProto::Tcp => ip.tcp(40_000, port, 1, 64_240).syn().write(&mut v, &[]),
        TraceProto::Udp => ip.udp(40_000, port).write(&mut v, payload),
        TraceProto::Icmp if src.is_ipv4() => ip.icmpv4_echo_request(1, 1).write(&mut v, payload),
        TraceProto::Icmp => ip.icmpv6_echo_request(1, 1).write(&mut v, payload),
    };
    written.ok().map(|_| v)
}

/// One frame's headers in a line: `eth A → B [vlan N] ipv4 a → b tcp p → q [SYN]`,
/// with a VXLAN frame's inner frame after it.
pub fn summary(frame: &[u8]) -> String {
    let Ok(s) = SlicedPacket::from_ethernet(frame) else {
        return format!("{} bytes, not a valid frame", frame.len());
    };
    let mut out = String::new();
    if let Some(LinkSlice::Ethernet2(e)) = &s.link {
        let _ = write!(
            out,
            "eth {} → {}",
            MacAddr(e.source()),
            MacAddr(e.destination())
        );
    }
    for v in s.vlan_ids() {
        let _ = write!(out, " vlan {}", v.value());
    }
    match &s.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            let _ = write!(
                out,
                " ipv4 {} → {} ttl {}",
                h.source_addr(),
                h.destination_addr(),
                h.ttl()
            );
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let _ = write!(
                out,
                " ipv6 {} → {} hop {}",
                h.source_addr(),
                h.destination_addr(),
                h.hop_limit()
            );
        }
        Some(NetSlice::Arp(a)) => {
            let _ = write!(out, " arp {:?}", a.operation());
        }
        None => {}
    }
    match &s.transport {
        Some(TransportSlice::Tcp(t)) => {
            let flags: Vec<&str> = [
                (t.syn(), "SYN"),
                (t.ack(), "ACK"),
                (t.rst(), "RST"),
                (t.fin(), "FIN"),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
            let _ = write!(
                out,
                " tcp {} → {} [{}]",
                t.source_port(),
                t.destination_port(),
                flags.join(",")
            );
        }
        Some(TransportSlice::Udp(u)) => {
            let _ = write!(out, " udp {} → {}", u.source_port(), u.destination_port());
            if u.destination_port() == vxlan::PORT
                && let Ok(v) = vxlan::Packet::new_checked(u.payload())
                && !v.payload().is_empty()
            {
                let _ = write!(out, " vxlan vni {} | {}", v.vni(), summary(v.payload()));
            }
        }
        Some(TransportSlice::Icmpv4(i)) => {
            let _ = write!(out, " icmp {:?}", i.icmp_type());
        }
        Some(TransportSlice::Icmpv6(i)) => {
            let _ = write!(out, " icmpv6 {:?}", i.icmp_type());
        }
        _ => {}
    }
    out
}

/// Source, destination and (TCP/UDP) ports of a frame.
type Endpoints = (IpAddr, IpAddr, Option<(u16, u16)>);

/// The addresses and ports of a frame, inner frame of VXLAN included.
fn endpoints(frame: &[u8]) -> Option<Endpoints> {
    let s = SlicedPacket::from_ethernet(frame).ok()?;
    let (src, dst): (IpAddr, IpAddr) = match &s.net {
        Some(NetSlice::Ipv4(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => return None,
    };
    let ports = match &s.transport {
        Some(TransportSlice::Tcp(t)) => Some((t.source_port(), t.destination_port())),
        Some(TransportSlice::Udp(u)) => {
            if u.destination_port() == vxlan::PORT
                && let Ok(v) = vxlan::Packet::new_checked(u.payload())
                && !v.payload().is_empty()
            {
                return endpoints(v.payload());
            }
            Some((u.source_port(), u.destination_port()))
        }
        _ => None,
    };
    Some((src, dst, ports))
}

/// The NAT rewrites between what went in and what came out.
fn rewrites(input: &[u8], output: &[u8]) -> Vec<String> {
    let (Some((s0, d0, p0)), Some((s1, d1, p1))) = (endpoints(input), endpoints(output)) else {
        return Vec::new();
    };
    let mut v = Vec::new();
    let sp = |p: Option<(u16, u16)>| p.map(|p| p.0);
    let dp = |p: Option<(u16, u16)>| p.map(|p| p.1);
    let show = |a: IpAddr, p: Option<u16>| match p {
        Some(p) => std::net::SocketAddr::new(a, p).to_string(),
        None => a.to_string(),
    };
    if (s0, sp(p0)) != (s1, sp(p1)) {
        v.push(format!("SNAT {} → {}", show(s0, sp(p0)), show(s1, sp(p1))));
    }
    if (d0, dp(p0)) != (d1, dp(p1)) {
        v.push(format!("DNAT {} → {}", show(d0, dp(p0)), show(d1, dp(p1))));
    }
    v
}

/// A port's name; the ports after the interfaces' are the engine's VTEPs.
fn port_label(setup: &Setup, p: PortId) -> String {
    setup
        .port_names
        .get(usize::from(p.0))
        .cloned()
        .unwrap_or_else(|| format!("the overlay's VTEP (port {})", p.0))
}

fn describe(event: &TraceEvent, setup: &Setup) -> String {
    let domain = |d: crate::engine::DomainId| {
        setup
            .cfg
            .domains
            .get(usize::from(d.0))
            .map_or_else(|| format!("domain {}", d.0), |x| x.name.clone())
    };
    let port = |p: PortId| port_label(setup, p);
    match event {
        TraceEvent::Admit { domain: d, learned } => format!(
            "switch {}: admitted; source MAC {}",
            domain(*d),
            if *learned { "learned" } else { "known" }
        ),
        TraceEvent::FdbHit { domain: d, port: p } => format!(
            "switch {}: FDB lookup: destination behind {}",
            domain(*d),
            port(*p)
        ),
        TraceEvent::Flood { domain: d } => {
            format!(
                "switch {}: FDB lookup: unknown or group destination, flood",
                domain(*d)
            )
        }
        TraceEvent::Gateway { domain: d } => {
            format!("switch {}: to the gateway MAC", domain(*d))
        }
        TraceEvent::Router { machine, path } => {
            let name = setup
                .cfg
                .l3
                .machines
                .get(*machine)
                .map_or_else(|| format!("machine {machine}"), |m| m.name.clone());
            format!("router {name}: {path}")
        }
        TraceEvent::Note(n) => n.clone(),
    }
}

/// A trace request with names resolved against the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The sending node.
    pub src: Node,
    /// The destination address.
    pub dst: IpAddr,
    /// The destination port (0 for ICMP).
    pub port: u16,
}

/// Resolves `from`, `to` and the port against `plan` as configured.
fn resolve(
    plan: &Plan,
    setup: &Setup,
    from: &str,
    to: &Target,
    proto: TraceProto,
) -> Result<Resolved, TraceError> {
    let src = node_by_name(plan, from).ok_or_else(|| TraceError::UnknownNode(from.into()))?;
    let dst_node = match &to.node {
        Some(n) => Some(node_by_name(plan, n).ok_or_else(|| TraceError::UnknownNode(n.clone()))?),
        None => None,
    };
    let dst = match (to.addr, dst_node) {
        (Some(a), _) => a,
        (None, Some(n)) => address_of(setup, n, src, false)
            .or_else(|| address_of(setup, n, src, true))
            .ok_or_else(|| TraceError::NoAddress(node_name(plan, n)))?,
        (None, None) => return Err(TraceError::BadTarget(String::new())),
    };
    let port = match (proto, to.port) {
        (TraceProto::Icmp, _) => 0,
        (_, Some(p)) => p,
        (TraceProto::Tcp, None) => return Err(TraceError::NoPort("tcp")),
        (TraceProto::Udp, None) => return Err(TraceError::NoPort("udp")),
    };
    Ok(Resolved { src, dst, port })
}

/// Resolves a request against `plan` without building anything.
pub fn resolve_request(
    plan: &Plan,
    from: &str,
    to: &Target,
    proto: TraceProto,
) -> Result<Resolved, TraceError> {
    let setup = hosted::configure(plan, "trace", &BuildOptions::default())
        .map_err(|e| TraceError::Build(e.to_string()))?;
    resolve(plan, &setup, from, to, proto)
}

/// Traces one frame from `from` to `to` in the world of `plan`.
pub fn trace(plan: &Plan, from: &str, to: &Target, proto: TraceProto) -> Result<Trace, TraceError> {
    let setup = hosted::configure(plan, "trace", &BuildOptions::default())
        .map_err(|e| TraceError::Build(e.to_string()))?;
    let Resolved {
        src: src_node,
        dst,
        port,
    } = resolve(plan, &setup, from, to, proto)?;
    let src_ifaces = ifaces_of(&setup, src_node);
    let (ingress, src_ip, next_hop) =
        route(&src_ifaces, dst).ok_or_else(|| TraceError::NoRoute {
            from: from.to_string(),
            to: dst,
        })?;
    let src_mac = src_ifaces
        .iter()
        .find(|(p, _)| *p == ingress)
        .map(|(_, s)| s.mac)
        .ok_or(TraceError::NoNextHop(next_hop))?;
    let dst_mac = mac_holding(&setup, next_hop).ok_or(TraceError::NoNextHop(next_hop))?;
    let frame = build_frame(src_mac, dst_mac, src_ip, dst, proto, port)
        .ok_or_else(|| TraceError::BadTarget(dst.to_string()))?;

    let mut engine = setup
        .engine()
        .map_err(|e| TraceError::Build(e.to_string()))?;
    let now = Instant::now();
    prime(&mut engine, &setup, now);
    let mut pkt = Packet::from_frame(VnetHdr::default(), &frame);
    let (events, actions) = engine.trace_frame(now, ingress, &mut pkt);
    Ok(render(
        plan, &setup, ingress, &frame, &pkt, &events, &actions,
    ))
}

fn render(
    plan: &Plan,
    setup: &Setup,
    ingress: PortId,
    input: &[u8],
    forwarded: &Packet,
    events: &[TraceEvent],
    actions: &[Action],
) -> Trace {
    let port_name = |p: PortId| port_label(setup, p);
    let owner = |p: PortId| {
        setup
            .port_nodes
            .get(usize::from(p.0))
            .map(|n| node_name(plan, *n))
            .unwrap_or_default()
    };
    let mut text = String::new();
    let _ = writeln!(text, "in  {}: {}", port_name(ingress), summary(input));
    for e in events {
        let _ = writeln!(text, "    {}", describe(e, setup));
    }
    let mut verdicts = Vec::new();
    for a in actions {
        match a {
            Action::Forward(p) | Action::Emit(p, _) => {
                let (frame, how) = match a {
                    Action::Emit(_, built) => (built.frame(), "emitted by the engine"),
                    _ => (forwarded.frame(), "forwarded"),
                };
                let _ = writeln!(
                    text,
                    "out {} ({}), {how}: {}",
                    port_name(*p),
                    owner(*p),
                    summary(frame)
                );
                for r in rewrites(input, frame) {
                    let _ = writeln!(text, "    {r}");
                }
                // An engine-built frame with the input's own source is the
                // frame itself, carried on (decapsulated, segmented); any
                // other is the engine's answer (ARP, ICMP).
                let carried = endpoints(frame).map(|e| e.0) == endpoints(input).map(|e| e.0)
                    || matches!(a, Action::Forward(_));
                verdicts.push(if carried {
                    format!("delivered to {}", owner(*p))
                } else {
                    "answered by the engine".to_string()
                });
            }
            Action::Drop(r) => {
                let _ = writeln!(text, "drop: {} ({r:?})", r.as_str());
                verdicts.push(format!("dropped:{}", r.as_str()));
            }
            Action::Capture(p, built) => {
                let _ = writeln!(
                    text,
                    "    on the wire of {}: {}",
                    port_name(*p),
                    summary(built.frame())
                );
            }
        }
    }
    if verdicts.is_empty() {
        let _ = writeln!(text, "held: nothing left the engine yet (a fault's delay)");
        verdicts.push("held".into());
    }
    let verdict = verdicts.join(", ");
    let _ = writeln!(text, "verdict: {verdict}");
    Trace { text, verdict }
}

pub mod kernel;

#[cfg(test)]
mod tests;
