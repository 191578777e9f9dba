//! The egress half of the router (`Router`'s state and ingress half are in
//! `route.rs`): where a (translated) packet goes, the checks of a
//! forwarding router (TTL, MTU and DF, a route at all), the commit of a new
//! flow, the rewrite, and the next hop's MAC (or a wait for ARP).
//!
//! A packet is only committed to conntrack once it is known to go out, as
//! Linux confirms a conntrack entry only in POSTROUTING: a packet answered
//! with an ICMP error leaves no flow behind.

use std::net::Ipv4Addr;

use super::conntrack::{Kind, State, TcpState};
use super::flow::{IPPROTO_UDP, Inner, Ip4, Tuple, icmp_type, tcp_flags};
use super::icmp::{self, code};
use super::metrics::Metrics;
use super::neigh::Queued;
use super::offload::ConnRef;
use super::packet::Packet;
use super::pipeline::FrameCx;
use super::route::{Flow, Router, drop_frame, refused_reason, tcp_of};
use super::{Action, DropReason, MacAddr, OffloadEvent, PortId, nat};
use crate::wire::ethernet;

/// Where a packet leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Egress {
    /// Into a bridge network (index into `Router::nets`).
    Net(usize),
    /// Out of the machine's uplink towards this next hop on `lan`.
    Lan(Ipv4Addr),
    /// To the machine's own host stack (its uplink address).
    Host,
    /// Nowhere: no route (the machine has no default route).
    NoRoute,
}

/// The packets to send: the ingress frame itself or its fragments.
enum Outgoing {
    Ingress,
    Built(Vec<Packet>),
}

impl Router {
    /// The route of machine `m` to `dst`.
    pub(crate) fn route(&self, m: usize, dst: Ipv4Addr) -> Egress {
        if let Some(k) = self.net_of(m, dst) {
            return Egress::Net(k);
        }
        let c = &self.machines[m].cfg;
        if dst == c.ip {
            Egress::Host
        } else if c.lan.contains(&dst) {
            Egress::Lan(dst)
        } else if let Some(gw) = c.lan_gateway {
            Egress::Lan(gw)
        } else {
            Egress::NoRoute
        }
    }

    /// The MTU of an egress.
    fn mtu(&self, m: usize, e: Egress) -> usize {
        let net = match e {
            Egress::Net(k) => Some(k),
            _ => None,
        };
        self.mtu_of(m, net)
    }

    /// The router's address and MAC on the side a packet came from (the
    /// source of the ICMP errors it sends back).
    fn near_side(&self, m: usize, from_net: Option<usize>) -> (Ipv4Addr, MacAddr) {
        match from_net {
            Some(n) => (self.nets[n].gw_ip, self.nets[n].gw_mac),
            None => (self.machines[m].cfg.ip, self.machines[m].cfg.mac),
        }
    }

    /// Answers the packet with an ICMP error (when allowed) and counts it
    /// as dropped for `reason`.
    fn reject(
        &self,
        cx: &mut FrameCx<'_>,
        metrics: &mut Metrics,
        (m, from_net): (usize, Option<usize>),
        ip: &Ip4,
        (typ, code, mtu): (u8, u8, u16),
        reason: DropReason,
    ) {
        let (ingress, pkt, out) = (cx.ingress, &*cx.pkt, &mut *cx.out);
        if !icmp::may_answer(ip) {
            return drop_frame(metrics, ingress, reason, out);
        }
        let (src_ip, src_mac) = self.near_side(m, from_net);
        let e = icmp::error(pkt.frame(), ip, typ, code, mtu, src_ip, src_mac.0);
        // The ingress frame is gone (counted under its reason); the error
        // is what the caller sends.
        metrics.drop(ingress, reason);
        metrics.tx(ingress, e.len());
        out.push(Action::Emit(ingress, e));
    }

    /// Routes one packet of `flow` (new or tracked) that came in on
    /// `ingress` (from network `from_net`, or from `lan` when `None`).
    pub(crate) fn forward(
        &mut self,
        cx: &mut FrameCx<'_>,
        metrics: &mut Metrics,
        (m, from_net): (usize, Option<usize>),
        ip: &Ip4,
        flow: Flow,
    ) {
        let (now, ingress) = (cx.now, cx.ingress);
        let (pkt, out) = (&mut *cx.pkt, &mut *cx.out);
        let t = ip.tuple;
        metrics.note(|| {
            super::trace::TraceEvent::Note(match &flow {
                Flow::Existing(_, dir) => format!("conntrack: established flow ({dir:?})"),
                Flow::New { kind, .. } => format!("conntrack: new flow ({kind:?})"),
            })
        });
        let nt = match flow {
            Flow::Existing(id, dir) => match self.machines[m].ct.get(id) {
                Some(c) => c.translated(dir),
                None => return drop_frame(metrics, ingress, DropReason::InvalidState, out),
            },
            Flow::New { reply, .. } => reply.inverse(),
        };
        let egress = self.route(m, nt.dst);
        match egress {
            Egress::NoRoute => {
                let err = (icmp_type::DEST_UNREACH, code::NET_UNREACH, 0);
                return self.reject(cx, metrics, (m, from_net), ip, err, DropReason::NoRoute);
            }
            Egress::Host if from_net.is_some() => {
                return drop_frame(metrics, ingress, DropReason::InvalidState, out);
            }
            Egress::Host => {}
            Egress::Net(_) | Egress::Lan(_) => {
                if ip.ttl <= 1 {
                    let err = (icmp_type::TIME_EXCEEDED, 0, 0);
                    return self.reject(
                        cx,
                        metrics,
                        (m, from_net),
                        ip,
                        err,
                        DropReason::TtlExceeded,
                    );
                }
            }
        }
        let mtu = self.mtu(m, egress);
        let too_big = egress != Egress::Host && icmp::wire_len(pkt, ip) > mtu;
        if too_big && (ip.df || pkt.hdr.is_gso()) {
            let err = (icmp_type::DEST_UNREACH, code::FRAG_NEEDED, mtu as u16);
            return self.reject(cx, metrics, (m, from_net), ip, err, DropReason::FragNeeded);
        }
        // Commit.
        let tcp = tcp_of(ip);
        match flow {
            Flow::Existing(id, dir) => self.machines[m].ct.update(id, dir, tcp, now),
            Flow::New { kind, reply } => {
                if let Err(r) = self.machines[m].ct.insert(t, reply, kind, tcp, now) {
                    return drop_frame(metrics, ingress, refused_reason(r), out);
                }
            }
        }
        nat::translate(pkt, ip, &t, &nt);
        if egress == Egress::Host {
            return self.to_host(m, pkt, metrics, out);
        }
        nat::dec_ttl(pkt);
        // What the fast path would need to repeat this (see offer_conn).
        let offer = match flow {
            Flow::Existing(id, dir)
                if self.offload
                    && !too_big
                    && mtu >= self.mtu_of(m, from_net)
                    && ip.ihl == 20
                    && match tcp {
                        Some(f) => f & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST) == 0,
                        None => ip.tuple.proto == IPPROTO_UDP,
                    } =>
            {
                let eth = ethernet::Frame::new_unchecked(pkt.frame());
                Some((
                    ConnRef {
                        machine: m,
                        id,
                        dir,
                    },
                    MacAddr(eth.dst()),
                    out.len(),
                ))
            }
            _ => None,
        };
        let outgoing = if too_big {
            let whole = Packet::from_frame(pkt.hdr, pkt.frame());
            match icmp::fragment(whole, ip, mtu) {
                Some(f) => Outgoing::Built(f),
                None => return drop_frame(metrics, ingress, DropReason::Malformed, out),
            }
        } else {
            Outgoing::Ingress
        };
        self.deliver(cx, metrics, m, (egress, nt.dst), outgoing);
        if let Some((conn, in_dst, before)) = offer {
            self.offer_conn(cx, conn, in_dst, (t, nt), before);
        }
    }

    /// The MTU of machine `m`'s side `net` (a network, or `None`: its
    /// uplink), as the side a packet came from or leaves by.
    fn mtu_of(&self, m: usize, net: Option<usize>) -> usize {
        match net {
            Some(n) => usize::from(self.nets[n].cfg.mtu),
            None => self.machines[m].uplink_ip_mtu(),
        }
    }

    /// After a frame of an established TCP connection (or a UDP flow that
    /// had a reply) went out unchanged but for its translation, TTL and
    /// MACs as the one action since `before`: offers that direction to the
    /// fast path, once.
    fn offer_conn(
        &mut self,
        cx: &FrameCx<'_>,
        conn: ConnRef,
        in_dst: MacAddr,
        (from, to): (Tuple, Tuple),
        before: usize,
    ) {
        let Some(&Action::Forward(egress)) = cx.out.get(before) else {
            return;
        };
        let ct = &mut self.machines[conn.machine].ct;
        let offerable = cx.out.len() == before + 1
            && ct.get(conn.id).is_some_and(|c| {
                (matches!(c.state, State::Tcp(TcpState::Established, _))
                    || c.state == State::Udp && c.seen_reply)
                    && matches!(c.kind, Kind::Masquerade | Kind::Routed | Kind::Dnat)
            });
        if !offerable || !ct.offer(conn.id, conn.dir) {
            return;
        }
        let eth = ethernet::Frame::new_unchecked(cx.pkt.frame());
        self.offers.push(OffloadEvent::Nat {
            ingress: cx.ingress,
            in_dst,
            from,
            egress,
            to,
            dst: MacAddr(eth.dst()),
            src: MacAddr(eth.src()),
            conn,
        });
    }

    /// Moves every connection conntrack retracted into the offers, ahead
    /// of anything offered after.
    pub(crate) fn collect_retracted(&mut self) {
        for (machine, mrt) in self.machines.iter_mut().enumerate() {
            let gone = mrt.ct.drain_retracted();
            self.offers
                .extend(gone.map(|id| OffloadEvent::ForgetConn { machine, id }));
        }
    }

    /// Every offer is void (the engine announced that the fast path forgot
    /// all): nothing is retracted, everything may be offered again.
    pub(crate) fn forget_offers(&mut self) {
        self.offers.retain(|e| {
            !matches!(
                e,
                OffloadEvent::Nat { .. } | OffloadEvent::ForgetConn { .. }
            )
        });
        for mrt in &mut self.machines {
            mrt.ct.forget_offers();
        }
    }

    /// Routes an ICMP error that quotes a tracked packet, translated for
    /// that flow (outer addresses and the quoted packet).
    pub(crate) fn forward_icmp_error(
        &mut self,
        cx: &mut FrameCx<'_>,
        metrics: &mut Metrics,
        (m, from_net): (usize, Option<usize>),
        ip: &Ip4,
        (inner, inner_to, src, dst): (Inner, Tuple, Ipv4Addr, Ipv4Addr),
    ) {
        let ingress = cx.ingress;
        let (pkt, out) = (&mut *cx.pkt, &mut *cx.out);
        let egress = self.route(m, dst);
        match egress {
            Egress::NoRoute => return drop_frame(metrics, ingress, DropReason::NoRoute, out),
            Egress::Host if from_net.is_some() => {
                return drop_frame(metrics, ingress, DropReason::InvalidState, out);
            }
            Egress::Net(_) | Egress::Lan(_) if ip.ttl <= 1 => {
                return drop_frame(metrics, ingress, DropReason::TtlExceeded, out);
            }
            _ => {}
        }
        nat::translate_icmp_error(pkt, ip, &inner, &inner_to, src, dst);
        if egress == Egress::Host {
            return self.to_host(m, pkt, metrics, out);
        }
        nat::dec_ttl(pkt);
        self.deliver(cx, metrics, m, (egress, dst), Outgoing::Ingress);
    }

    /// Hands the (translated) ingress frame to machine `m`'s host stack.
    fn to_host(&self, m: usize, pkt: &Packet, metrics: &mut Metrics, out: &mut Vec<Action>) {
        let up = self.machines[m].cfg.uplink;
        metrics.tx(up, pkt.len());
        out.push(Action::Forward(up));
    }

    /// Sends to the next hop of `egress`, or queues for ARP.
    fn deliver(
        &mut self,
        cx: &mut FrameCx<'_>,
        metrics: &mut Metrics,
        m: usize,
        (egress, dst): (Egress, Ipv4Addr),
        outgoing: Outgoing,
    ) {
        let (now, ingress) = (cx.now, cx.ingress);
        let (pkt, out) = (&mut *cx.pkt, &mut *cx.out);
        let (next_hop, neigh) = match egress {
            Egress::Net(k) => (dst, &mut self.nets[k].neigh),
            Egress::Lan(nh) => (nh, &mut self.machines[m].neigh),
            Egress::Host | Egress::NoRoute => {
                return drop_frame(metrics, ingress, DropReason::InvalidState, out);
            }
        };
        let src_mac = neigh.mac.0;
        if let Some(e) = neigh.lookup(next_hop, now) {
            // The next hop is another machine of this world: its own
            // inbound path (DNAT, conntrack) comes first.
            if matches!(egress, Egress::Lan(_))
                && let Some(m2) = self.machine_by_mac(super::fdb::mac_key(&e.mac.0))
                && m2 != m
            {
                let up = self.machines[m].cfg.uplink;
                let packets = match outgoing {
                    Outgoing::Ingress => vec![Packet::from_frame(pkt.hdr, pkt.frame())],
                    Outgoing::Built(f) => f,
                };
                for mut q in packets {
                    nat::set_macs(&mut q, e.mac.0, src_mac);
                    self.inbound_owned(now, m2, up, q, metrics, out);
                }
                return;
            }
            match outgoing {
                Outgoing::Ingress => {
                    nat::set_macs(pkt, e.mac.0, src_mac);
                    metrics.tx(e.port, pkt.len());
                    out.push(Action::Forward(e.port));
                }
                Outgoing::Built(frags) => {
                    for mut f in frags {
                        nat::set_macs(&mut f, e.mac.0, src_mac);
                        metrics.tx(e.port, f.len());
                        out.push(Action::Emit(e.port, f));
                    }
                }
            }
            return;
        }
        let packets = match outgoing {
            Outgoing::Ingress => vec![Packet::from_frame(pkt.hdr, pkt.frame())],
            Outgoing::Built(f) => f,
        };
        let mut ask = false;
        for mut p in packets {
            nat::set_macs(&mut p, [0xff; 6], src_mac);
            match neigh.queue(next_hop, p, ingress, now) {
                Queued::Request => ask = true,
                Queued::Waiting => {}
                Queued::Full => {
                    return drop_frame(metrics, ingress, DropReason::NeighbourQueueFull, out);
                }
            }
        }
        if ask {
            let req = neigh.request(next_hop);
            let ports: Vec<PortId> = match egress {
                Egress::Net(k) => self.nets[k].flood.clone(),
                _ => {
                    let up = self.machines[m].cfg.uplink;
                    self.lan_ports
                        .iter()
                        .copied()
                        .filter(|&p| p != up)
                        .collect()
                }
            };
            for p in ports {
                metrics.tx(p, req.len());
                out.push(Action::Emit(p, req.clone()));
            }
        }
    }
}
