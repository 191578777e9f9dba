//! The router between a machine's bridge networks, its host stack and its
//! uplink on `lan`, with connection tracking and NAT: the pipeline's
//! `router` stage ([`Router::intercept`]).
//!
//! `Router` is split by role over two files: this one holds its state, its
//! construction and the ingress half (which frames are the router's, and
//! the decision for each: tracked, new, NATed, denied); `forward.rs` holds
//! the egress half (route, TTL and MTU checks, commit, rewrite, next hop).
//!
//! Where frames enter it (everything else stays on the L2 path):
//!
//! - a container's IPv4 frame to its gateway MAC for an address that is not
//!   the machine's own ([`Router::routed_from_container`]): conntrack, then
//!   isolation (BR-12), internal networks (BR-15), masquerade (BR-10/11) or
//!   hairpin NAT (PUB-8), then routed into another network or out of the
//!   uplink;
//! - an IPv4 frame from `lan` to a machine's uplink MAC ([`Router::inbound`]):
//!   replies of tracked flows, published ports (PUB-1, PUB-3), ingress deny
//!   for container addresses (PUB-2), and the host stack's own flows;
//! - the host stack's frames leaving its uplink ([`Router::egress_host`]):
//!   tracked, so that NAT never picks a port one of them uses; a host flow
//!   is itself translated only when its tuple collides with a NAT flow's;
//! - ARP anywhere on those segments: learned for next hops.

use std::net::Ipv4Addr;
use std::time::Instant;

use super::conntrack::{Conntrack, Dir, Kind, Refused};
use super::fdb::mac_key;
use super::flow::{IPPROTO_TCP, Inner, Ip4, L4, Tuple, tcp_flags};
use super::l3config::{L3Config, MachineConfig, NetworkConfig, PublishConfig};
use super::metrics::Metrics;
use super::neigh::Neighbours;
use super::packet::Packet;
use super::pipeline::FrameCx;
use super::trace::TraceEvent;
use super::{Action, DomainId, DropReason, EngineError, MacAddr, PortId, PortRole};
use crate::wire::arp::{self, ArpRepr};
use crate::wire::ethernet::{self, EtherType, HEADER_LEN as ETH_HDR_LEN};

#[derive(Debug)]
pub(crate) struct MachineRt {
    pub(crate) cfg: MachineConfig,
    pub(crate) neigh: Neighbours,
    /// Its connection tracking (each machine is its own host).
    pub(crate) ct: Conntrack,
    /// Networks of this machine (indices into `Router::nets`).
    pub(crate) nets: Vec<usize>,
    /// A faulted uplink's smaller MTU (`fault = { link = machine, mtu }`).
    pub(crate) uplink_mtu: Option<u16>,
}

impl MachineRt {
    /// The IP MTU of the machine's uplink: the lan's, or a faulted smaller one.
    pub(crate) fn uplink_ip_mtu(&self) -> usize {
        usize::from(
            self.uplink_mtu
                .map_or(self.cfg.lan_mtu, |f| f.min(self.cfg.lan_mtu)),
        )
    }
}

#[derive(Debug)]
pub(crate) struct NetRt {
    pub(crate) cfg: NetworkConfig,
    pub(crate) gw_ip: Ipv4Addr,
    pub(crate) gw_mac: MacAddr,
    gw_key: u64,
    /// Hairpin NAT (PUB-8) may target this network: container → container
    /// frames on its L2 path may be replies to translate back.
    l2_hairpin: bool,
    /// Ports an ARP request goes out of (all but the host port).
    pub(crate) flood: Vec<PortId>,
    pub(crate) neigh: Neighbours,
}

/// What a port is to the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    /// Not on a routed segment.
    None,
    /// A machine's uplink (its host stack).
    Uplink(u16),
    /// Another port on `lan`.
    Lan,
    /// A container port on a routed network.
    Container(u16),
}

/// A decision for a packet, before anything is committed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Flow {
    /// A tracked flow.
    Existing(u32, Dir),
    /// A new flow to insert once the packet is known to go out.
    New { kind: Kind, reply: Tuple },
}

/// The router state.
#[derive(Debug)]
pub(crate) struct Router {
    pub(crate) machines: Vec<MachineRt>,
    pub(crate) nets: Vec<NetRt>,
    tags: Vec<Tag>,
    /// Ports of the `lan` domain (ARP requests go out of all but the asking
    /// machine's uplink).
    pub(crate) lan_ports: Vec<PortId>,
    publish: Vec<PublishConfig>,
    /// Offer connections to a kernel fast path ([`super::offload`]).
    pub(crate) offload: bool,
    /// What it offered or retracted since the engine last took them.
    pub(crate) offers: Vec<super::OffloadEvent>,
}

/// What the engine's ports look like, for building the router.
pub(crate) struct PortView<'a> {
    pub(crate) domain_of: &'a dyn Fn(PortId) -> Option<(DomainId, PortRole)>,
    pub(crate) gateway_of: &'a dyn Fn(DomainId) -> Option<(Ipv4Addr, MacAddr, Option<PortId>)>,
    pub(crate) members_of: &'a dyn Fn(DomainId) -> Vec<PortId>,
}

impl Router {
    pub(crate) fn new(
        cfg: &L3Config,
        nports: usize,
        view: &PortView<'_>,
    ) -> Result<Router, EngineError> {
        let mut tags = vec![Tag::None; nports];
        let mut machines = Vec::with_capacity(cfg.machines.len());
        let mut lan_domain = None;
        for (i, m) in cfg.machines.iter().enumerate() {
            let Some((d, _)) = (view.domain_of)(m.uplink) else {
                return Err(EngineError::BadL3Port {
                    what: format!("machine {} uplink", m.name),
                    port: m.uplink.0,
                });
            };
            if lan_domain.is_some_and(|l| l != d) {
                return Err(EngineError::BadL3Port {
                    what: format!("machine {} uplink (not on the first machine's lan)", m.name),
                    port: m.uplink.0,
                });
            }
            lan_domain = Some(d);
            tags[usize::from(m.uplink.0)] = Tag::Uplink(i as u16);
            machines.push(MachineRt {
                cfg: m.clone(),
                neigh: Neighbours::new(m.ip, m.mac, cfg.neighbour_queue),
                ct: Conntrack::new(cfg.conntrack_capacity, cfg.timeouts),
                nets: Vec::new(),
                uplink_mtu: None,
            });
        }
        let lan_ports = lan_domain.map_or_else(Vec::new, |d| (view.members_of)(d));
        for &p in &lan_ports {
            if tags[usize::from(p.0)] == Tag::None {
                tags[usize::from(p.0)] = Tag::Lan;
            }
        }
        let mut nets = Vec::with_capacity(cfg.networks.len());
        for (i, n) in cfg.networks.iter().enumerate() {
            let Some((gw_ip, gw_mac, host_port)) = (view.gateway_of)(n.domain) else {
                return Err(EngineError::NoGateway { domain: n.domain.0 });
            };
            let Some(mrt) = machines.get_mut(n.machine) else {
                return Err(EngineError::BadL3Port {
                    what: format!(
                        "network in domain {} names machine {}",
                        n.domain.0, n.machine
                    ),
                    port: 0,
                });
            };
            mrt.nets.push(i);
            let members = (view.members_of)(n.domain);
            for &p in &members {
                if let Some((_, PortRole::Container)) = (view.domain_of)(p) {
                    tags[usize::from(p.0)] = Tag::Container(i as u16);
                }
            }
            let mut neigh = Neighbours::new(gw_ip, gw_mac, cfg.neighbour_queue);
            for &(ip, mac, port) in &n.neighbours {
                neigh.add_static(ip, mac, port);
            }
            nets.push(NetRt {
                cfg: n.clone(),
                gw_ip,
                gw_mac,
                gw_key: mac_key(&gw_mac.0),
                l2_hairpin: !cfg.machines[n.machine].userland_proxy
                    && cfg.publish.iter().any(|p| p.network == i),
                flood: members
                    .into_iter()
                    .filter(|&p| Some(p) != host_port)
                    .collect(),
                neigh,
            });
        }
        for p in &cfg.publish {
            if p.machine >= machines.len() || p.network >= nets.len() {
                return Err(EngineError::BadL3Port {
                    what: format!("published port {}", p.host_port),
                    port: 0,
                });
            }
        }
        Ok(Router {
            machines,
            nets,
            tags,
            lan_ports,
            publish: cfg.publish.clone(),
            offload: false,
            offers: Vec::new(),
        })
    }

    /// Sets (or clears) the MTU a fault gives the uplink `port`: routed
    /// packets above it get ICMP "fragmentation needed" (DF) or are
    /// fragmented, as a Linux router with a smaller egress MTU does.
    pub(crate) fn set_uplink_mtu(&mut self, port: PortId, mtu: Option<u16>) {
        for m in &mut self.machines {
            if m.cfg.uplink == port {
                m.uplink_mtu = mtu;
            }
        }
    }

    /// Keeps only the lan ports that `keep` allows as targets of the
    /// router's ARP requests (the untagged lan's ports, with VLANs).
    pub(crate) fn retain_lan_ports(&mut self, keep: impl Fn(PortId) -> bool) {
        self.lan_ports.retain(|&p| keep(p));
    }

    /// True when frames a container on `port` sends on L2 may be rewritten
    /// here (hairpin replies, see `hairpin_reply_on_l2`).
    pub(crate) fn rewrites_on_l2(&self, port: PortId) -> bool {
        match self.tags.get(usize::from(port.0)) {
            Some(Tag::Container(n)) => self.nets[usize::from(*n)].l2_hairpin,
            _ => false,
        }
    }

    /// Takes the frame when it is the router's; false leaves it to L2 (the
    /// router may have rewritten it, e.g. a remapped host-stack port, or
    /// appended emits of packets an ARP packet released).
    #[inline]
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
        let frame = cx.pkt.frame();
        let et = ethernet::ethertype(frame);
        if et == EtherType::ARP {
            self.snoop_arp(now, tag, ingress, metrics, frame, cx.out);
            return false;
        }
        if et != EtherType::IPV4 {
            return false;
        }
        let dst_key = mac_key(&ethernet::Frame::new_unchecked(frame).dst());
        match tag {
            Tag::Container(n) => {
                if dst_key != self.nets[usize::from(n)].gw_key {
                    if self.nets[usize::from(n)].l2_hairpin {
                        let m = self.nets[usize::from(n)].cfg.machine;
                        self.hairpin_reply_on_l2(now, m, cx.pkt);
                    }
                    return false;
                }
                let Some(ip) = Ip4::parse(frame) else {
                    return false;
                };
                metrics.note(|| TraceEvent::Router {
                    machine: self.nets[usize::from(n)].cfg.machine,
                    path: "from a container network",
                });
                self.routed_from_container(cx, metrics, usize::from(n), &ip)
            }
            Tag::Uplink(m) => {
                let Some(ip) = Ip4::parse(frame) else {
                    return false;
                };
                if self.egress_host(cx, metrics, usize::from(m), &ip) {
                    metrics.note(|| TraceEvent::Router {
                        machine: usize::from(m),
                        path: "from the machine's host stack",
                    });
                    return true;
                }
                // Machine to machine: the other one's inbound path.
                match self.machine_by_mac(dst_key) {
                    Some(m2) if m2 != usize::from(m) => {
                        let Some(ip) = Ip4::parse(cx.pkt.frame()) else {
                            return false;
                        };
                        metrics.note(|| TraceEvent::Router {
                            machine: m2,
                            path: "inbound, from another machine",
                        });
                        self.inbound(cx, metrics, m2, &ip)
                    }
                    _ => false,
                }
            }
            Tag::Lan => {
                let Some(m) = self.machine_by_mac(dst_key) else {
                    return false;
                };
                let Some(ip) = Ip4::parse(frame) else {
                    return false;
                };
                metrics.note(|| TraceEvent::Router {
                    machine: m,
                    path: "inbound, from lan",
                });
                self.inbound(cx, metrics, m, &ip)
            }
            Tag::None => false,
        }
    }

    /// A container answering a hairpinned peer of its own network goes
    /// straight to the peer's MAC; its source must become the published
    /// address again (what br_netfilter's conntrack does on a Linux bridge).
    fn hairpin_reply_on_l2(&mut self, now: Instant, m: usize, pkt: &mut Packet) {
        let Some(ip) = Ip4::parse(pkt.frame()) else {
            return;
        };
        let Some((id, dir)) = self.machines[m].ct.lookup(&ip.tuple, now) else {
            return;
        };
        let Some(c) = self.machines[m].ct.get(id) else {
            return;
        };
        if c.kind != Kind::Hairpin {
            return;
        }
        let to = c.translated(dir);
        self.machines[m].ct.update(id, dir, tcp_of(&ip), now);
        super::nat::translate(pkt, &ip, &ip.tuple, &to);
    }

    /// Runs another machine's inbound path on a packet the router built or
    /// held (a routed packet whose next hop is that machine): its
    /// `Forward`s become `Emit`s of this packet; by default it goes to that
    /// machine's host stack.
    pub(crate) fn inbound_owned(
        &mut self,
        now: Instant,
        m2: usize,
        from: PortId,
        mut pkt: Packet,
        metrics: &mut Metrics,
        out: &mut Vec<Action>,
    ) {
        let mut tmp = Vec::new();
        let taken = match Ip4::parse(pkt.frame()) {
            Some(ip) => self.inbound(
                &mut FrameCx::new(now, from, &mut pkt, &mut tmp),
                metrics,
                m2,
                &ip,
            ),
            None => false,
        };
        if !taken {
            let up = self.machines[m2].cfg.uplink;
            metrics.tx(up, pkt.len());
            tmp.push(Action::Forward(up));
        }
        for a in tmp {
            match a {
                Action::Forward(p) => out.push(Action::Emit(p, pkt.clone())),
                // Already counted on `from`; the caller's frame is not the
                // one dropped.
                Action::Drop(_) => {}
                other => out.push(other),
            }
        }
    }

    pub(crate) fn machine_by_mac(&self, key: u64) -> Option<usize> {
        self.machines
            .iter()
            .position(|m| mac_key(&m.cfg.mac.0) == key)
    }

    /// Learns the sender of an ARP packet and releases what waited for it.
    fn snoop_arp(
        &mut self,
        now: Instant,
        tag: Tag,
        ingress: PortId,
        metrics: &mut Metrics,
        frame: &[u8],
        out: &mut Vec<Action>,
    ) {
        let Some(arp) = ArpRepr::parse(ethernet::Frame::new_unchecked(frame).payload()) else {
            return;
        };
        if arp.op != arp::REQUEST && arp.op != arp::REPLY {
            return;
        }
        let spa = Ipv4Addr::from(arp.spa);
        let sha = MacAddr(arp.sha);
        let mut released = Vec::new();
        let mut lan_from = None;
        match tag {
            Tag::Container(n) => {
                let net = &mut self.nets[usize::from(n)];
                if net.cfg.subnets.iter().any(|s| s.contains(&spa)) {
                    let mac = net.gw_mac;
                    released.extend(
                        net.neigh
                            .learn(spa, sha, ingress, now)
                            .into_iter()
                            .map(|p| (p, mac)),
                    );
                }
            }
            Tag::Uplink(_) | Tag::Lan => {
                for (i, m) in self.machines.iter_mut().enumerate() {
                    if m.cfg.lan.contains(&spa) {
                        let mac = m.cfg.mac;
                        let up = m.cfg.uplink;
                        let ready = m.neigh.learn(spa, sha, ingress, now);
                        if !ready.is_empty() {
                            lan_from = Some((i, up));
                        }
                        released.extend(ready.into_iter().map(|p| (p, mac)));
                    }
                }
            }
            Tag::None => {}
        }
        let next_machine = self.machine_by_mac(mac_key(&sha.0));
        for (mut p, src) in released {
            super::nat::set_macs(&mut p.pkt, sha.0, src.0);
            if let (Some(m2), Some((m, up))) = (next_machine, lan_from)
                && m2 != m
            {
                self.inbound_owned(now, m2, up, p.pkt, metrics, out);
                continue;
            }
            metrics.tx(ingress, p.pkt.len());
            out.push(Action::Emit(ingress, p.pkt));
        }
    }

    /// Machine-local addresses: the uplink and every gateway.
    pub(crate) fn is_local(&self, m: usize, ip: Ipv4Addr) -> bool {
        let mrt = &self.machines[m];
        ip == mrt.cfg.ip
            || mrt
                .nets
                .iter()
                .any(|&n| self.nets[n].cfg.gateways.contains(&ip))
    }

    /// The network of machine `m` whose subnet holds `ip`.
    pub(crate) fn net_of(&self, m: usize, ip: Ipv4Addr) -> Option<usize> {
        self.machines[m]
            .nets
            .iter()
            .copied()
            .find(|&n| self.nets[n].cfg.subnets.iter().any(|s| s.contains(&ip)))
    }

    fn publish_match(
        &self,
        m: usize,
        proto: u8,
        dst: Ipv4Addr,
        dport: u16,
    ) -> Option<PublishConfig> {
        self.publish
            .iter()
            .find(|p| {
                p.machine == m
                    && p.proto == proto
                    && p.host_port == dport
                    && match p.host_ip {
                        None => true,
                        Some(h) if h.is_unspecified() => true,
                        Some(h) => h == dst,
                    }
            })
            .copied()
    }

    /// A published container port reached on the container's own address
    /// (PUB-2 accepts `<ctrIP>:C/proto` from outside the bridge).
    fn published_direct(&self, net: usize, t: &Tuple) -> bool {
        self.publish.iter().any(|p| {
            p.network == net
                && p.proto == t.proto
                && p.container_ip == t.dst
                && p.container_port == t.dport
        })
    }

    /// The host stack's IPv4 frame leaving its uplink. True when it was
    /// dropped (table full, no port left).
    fn egress_host(
        &mut self,
        cx: &mut FrameCx<'_>,
        metrics: &mut Metrics,
        m: usize,
        ip: &Ip4,
    ) -> bool {
        let (now, ingress) = (cx.now, cx.ingress);
        let (pkt, out) = (&mut *cx.pkt, &mut *cx.out);
        let t = ip.tuple;
        if t.src != self.machines[m].cfg.ip {
            return false;
        }
        let tcp = tcp_of(ip);
        if let Some((id, dir)) = self.machines[m].ct.lookup(&t, now) {
            let to = self.machines[m].ct.get(id).map(|c| c.translated(dir));
            self.machines[m].ct.update(id, dir, tcp, now);
            if let Some(to) = to {
                super::nat::translate(pkt, ip, &t, &to);
            }
            return false;
        }
        match ip.l4 {
            L4::IcmpError { inner } => {
                if let Some((inner, inner_to, src, dst)) =
                    self.icmp_error_target(m, pkt, ip, inner, now)
                {
                    super::nat::translate_icmp_error(pkt, ip, &inner, &inner_to, src, dst);
                }
                return false;
            }
            L4::Fragment => return false,
            L4::Tcp { flags } if flags & tcp_flags::RST != 0 => return false,
            _ => {}
        }
        let Some(reply) = self.machines[m].ct.free_reply(t.inverse()) else {
            drop_frame(metrics, ingress, DropReason::NatPortsExhausted, out);
            return true;
        };
        match self.machines[m].ct.insert(t, reply, Kind::Host, tcp, now) {
            Ok(_) => {
                super::nat::translate(pkt, ip, &t, &reply.inverse());
                false
            }
            Err(r) => {
                drop_frame(metrics, ingress, refused_reason(r), out);
                true
            }
        }
    }

    /// For an ICMP error quoting a tracked packet: the quoted packet, what
    /// it must become, and the outer source and destination.
    pub(crate) fn icmp_error_target(
        &mut self,
        m: usize,
        pkt: &Packet,
        ip: &Ip4,
        inner_off: usize,
        now: Instant,
    ) -> Option<(Inner, Tuple, Ipv4Addr, Ipv4Addr)> {
        let inner = Inner::parse(&pkt.frame()[..ETH_HDR_LEN + ip.total], inner_off)?;
        let (id, dir) = self.machines[m].ct.lookup(&inner.tuple.inverse(), now)?;
        let c = self.machines[m].ct.get(id)?;
        let tr = c.translated(dir);
        let src = if ip.tuple.src == c.tuple(dir).src {
            tr.src
        } else {
            ip.tuple.src
        };
        Some((inner, tr.inverse(), src, tr.dst))
    }

    /// An IPv4 frame from `lan` for machine `m`'s MAC.
    fn inbound(&mut self, cx: &mut FrameCx<'_>, metrics: &mut Metrics, m: usize, ip: &Ip4) -> bool {
        let (now, ingress) = (cx.now, cx.ingress);
        let (pkt, out) = (&mut *cx.pkt, &mut *cx.out);
        let t = ip.tuple;
        let flow = if let Some((id, dir)) = self.machines[m].ct.lookup(&t, now) {
            Flow::Existing(id, dir)
        } else {
            if let L4::IcmpError { inner } = ip.l4 {
                return match self.icmp_error_target(m, pkt, ip, inner, now) {
                    Some(target) => {
                        self.forward_icmp_error(cx, metrics, (m, None), ip, target);
                        true
                    }
                    None => false,
                };
            }
            let net = self.net_of(m, t.dst);
            if let Some(k) = net {
                // Someone routes container addresses via this machine:
                // only tracked replies and published ports pass (PUB-2).
                if self.nets[k].cfg.internal
                    || matches!(ip.l4, L4::Fragment)
                    || !self.published_direct(k, &t)
                    || self.machines[m].ct.in_use(&t.inverse())
                {
                    drop_frame(metrics, ingress, DropReason::IngressDenied, out);
                    return true;
                }
                Flow::New {
                    kind: Kind::Routed,
                    reply: t.inverse(),
                }
            } else if !self.is_local(m, t.dst) || matches!(ip.l4, L4::Fragment) {
                return false;
            } else if let Some(p) = self.publish_match(m, t.proto, t.dst, t.dport) {
                let reply = Tuple {
                    src: p.container_ip,
                    dst: t.src,
                    sport: p.container_port,
                    dport: t.sport,
                    proto: t.proto,
                    icmp_reply: false,
                };
                if self.machines[m].ct.in_use(&reply) {
                    drop_frame(metrics, ingress, DropReason::InvalidState, out);
                    return true;
                }
                Flow::New {
                    kind: Kind::Dnat,
                    reply,
                }
            } else if t.dst == self.machines[m].cfg.ip
                && !matches!(ip.l4, L4::Tcp { flags } if flags & tcp_flags::RST != 0)
                && !self.machines[m].ct.in_use(&t.inverse())
            {
                Flow::New {
                    kind: Kind::Host,
                    reply: t.inverse(),
                }
            } else {
                return false;
            }
        };
        self.forward(cx, metrics, (m, None), ip, flow);
        true
    }

    /// A container's IPv4 frame to its gateway MAC.
    fn routed_from_container(
        &mut self,
        cx: &mut FrameCx<'_>,
        metrics: &mut Metrics,
        n: usize,
        ip: &Ip4,
    ) -> bool {
        let (now, ingress) = (cx.now, cx.ingress);
        let (pkt, out) = (&mut *cx.pkt, &mut *cx.out);
        let m = self.nets[n].cfg.machine;
        let t = ip.tuple;
        let local = self.is_local(m, t.dst);
        if local && self.machines[m].cfg.userland_proxy {
            // The host stack (and the userland proxy there) answers.
            return false;
        }
        let flow = if let Some((id, dir)) = self.machines[m].ct.lookup(&t, now) {
            Flow::Existing(id, dir)
        } else if let L4::IcmpError { inner } = ip.l4 {
            match self.icmp_error_target(m, pkt, ip, inner, now) {
                Some(target) => {
                    self.forward_icmp_error(cx, metrics, (m, Some(n)), ip, target);
                }
                None if local => return false,
                None => drop_frame(metrics, ingress, DropReason::InvalidState, out),
            }
            return true;
        } else if local {
            match self.publish_match(m, t.proto, t.dst, t.dport) {
                Some(p) if !matches!(ip.l4, L4::Fragment) => {
                    if p.network != n {
                        // DNATed into another bridge: Docker's isolation
                        // chains drop it (BR-12); only the proxy gets there.
                        drop_frame(metrics, ingress, DropReason::Isolation, out);
                        return true;
                    }
                    // PUB-8: only a container reaching its own published
                    // port is masqueraded (to the gateway); a peer keeps
                    // its address.
                    let own = t.src == p.container_ip;
                    let want = Tuple {
                        src: p.container_ip,
                        dst: if own { self.nets[n].gw_ip } else { t.src },
                        sport: p.container_port,
                        dport: t.sport,
                        proto: t.proto,
                        icmp_reply: false,
                    };
                    let reply = if own {
                        self.machines[m].ct.free_reply(want)
                    } else {
                        (!self.machines[m].ct.in_use(&want)).then_some(want)
                    };
                    let Some(reply) = reply else {
                        drop_frame(metrics, ingress, DropReason::NatPortsExhausted, out);
                        return true;
                    };
                    Flow::New {
                        kind: Kind::Hairpin,
                        reply,
                    }
                }
                _ => return false,
            }
        } else if let Some(k) = self.net_of(m, t.dst) {
            if k == n {
                // Its own subnet via the gateway: the host stack's business.
                return false;
            }
            drop_frame(metrics, ingress, DropReason::Isolation, out);
            return true;
        } else if self.nets[n].cfg.internal {
            drop_frame(metrics, ingress, DropReason::InternalNetwork, out);
            return true;
        } else if matches!(ip.l4, L4::Fragment) {
            drop_frame(metrics, ingress, DropReason::UntrackedFragment, out);
            return true;
        } else if matches!(ip.l4, L4::Tcp { flags } if flags & tcp_flags::RST != 0) {
            drop_frame(metrics, ingress, DropReason::InvalidState, out);
            return true;
        } else if self.nets[n].cfg.masquerade {
            let mut want = t.inverse();
            want.dst = self.machines[m].cfg.ip;
            let Some(reply) = self.machines[m].ct.free_reply(want) else {
                drop_frame(metrics, ingress, DropReason::NatPortsExhausted, out);
                return true;
            };
            Flow::New {
                kind: Kind::Masquerade,
                reply,
            }
        } else {
            if self.machines[m].ct.in_use(&t.inverse()) {
                drop_frame(metrics, ingress, DropReason::InvalidState, out);
                return true;
            }
            Flow::New {
                kind: Kind::Routed,
                reply: t.inverse(),
            }
        };
        self.forward(cx, metrics, (m, Some(n)), ip, flow);
        true
    }

    /// Forgets expired flows and neighbours; drops packets that waited too
    /// long for ARP (reason `neighbour-unresolved` on their ingress port).
    pub(crate) fn expire(&mut self, now: Instant, metrics: &mut Metrics) -> usize {
        let n = self.machines.iter_mut().map(|m| m.ct.expire(now)).sum();
        let tables = self
            .machines
            .iter_mut()
            .map(|m| &mut m.neigh)
            .chain(self.nets.iter_mut().map(|n| &mut n.neigh));
        for t in tables {
            for p in t.expire(now) {
                metrics.drop(p.ingress, DropReason::NeighbourUnresolved);
            }
        }
        n
    }

    /// Earliest time [`Router::expire`] has work.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.machines
            .iter()
            .map(|m| &m.neigh)
            .chain(self.nets.iter().map(|n| &n.neigh))
            .filter_map(Neighbours::next_expiry)
            .chain(self.machines.iter().filter_map(|m| m.ct.next_expiry()))
            .min()
    }
}

/// The TCP flags of a packet, for conntrack.
pub(crate) fn tcp_of(ip: &Ip4) -> Option<u8> {
    match ip.l4 {
        L4::Tcp { flags } if ip.tuple.proto == IPPROTO_TCP => Some(flags),
        _ => None,
    }
}

pub(crate) fn refused_reason(r: Refused) -> DropReason {
    match r {
        Refused::Full => DropReason::ConntrackFull,
        Refused::PortsExhausted => DropReason::NatPortsExhausted,
    }
}

/// Records a drop: one reason, one counter, one action.
pub(crate) fn drop_frame(
    metrics: &mut Metrics,
    ingress: PortId,
    reason: DropReason,
    out: &mut Vec<Action>,
) {
    super::l2::drop_frame(metrics, ingress, reason, out);
}
