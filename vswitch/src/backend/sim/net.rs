//! Moving frames in virtual time: stacks are polled, their frames go
//! through the engine (or, on a loopback, back in), and the clock only
//! jumps to the next deadline once nothing moves at the current instant.

use std::net::IpAddr;

use crate::engine::fault::Due;
use crate::engine::{Action, Packet, PortId, VnetHdr};
use crate::scenario::plan::Node;

use super::SimWorld;
use super::services;
use super::stack::{FrameKind, frame_kind};

/// Polls of one stack in a row while its services keep answering.
const MAX_REPOLL: usize = 64;
/// Engine housekeeping (aging) at most this often, virtual µs.
const EXPIRE_EVERY_US: u64 = 500_000;

impl SimWorld {
    /// Virtual now, µs.
    pub(crate) fn now_us(&self) -> u64 {
        self.clock.now_us()
    }

    /// Marks a stack for polling.
    pub(crate) fn touch(&mut self, s: usize) {
        self.dirty.insert(s);
    }

    /// Processes everything due at the current instant until nothing moves.
    pub(crate) fn settle(&mut self) {
        let mut rounds = 0u32;
        loop {
            self.release_due();
            let Some(s) = self.dirty.pop_first() else {
                break;
            };
            self.poll_stack(s);
            rounds += 1;
            if rounds > 5_000_000 {
                tracing::warn!("sim: a storm of frames at one instant; moving on");
                self.dirty.clear();
                break;
            }
        }
    }

    fn poll_stack(&mut self, s: usize) {
        let now = self.clock.smol();
        let st = &mut self.stacks[s];
        let kinds: Vec<FrameKind> = st.dev.rx.iter().map(|f| frame_kind(f)).collect();
        let echoes: Vec<Vec<u8>> = st
            .dev
            .rx
            .iter()
            .zip(&kinds)
            .filter(|(_, k)| **k == FrameKind::EchoRequest)
            .map(|(f, _)| f.clone())
            .collect();
        let openers: Vec<Vec<u8>> = st
            .dev
            .rx
            .iter()
            .zip(&kinds)
            .filter(|(_, k)| **k == FrameKind::Opener)
            .map(|(f, _)| f.clone())
            .collect();
        if kinds.contains(&FrameKind::Advert) && !st.held_echo.is_empty() {
            let held = std::mem::take(&mut st.held_echo);
            st.dev.rx.extend(held);
        }
        for _ in 0..MAX_REPOLL {
            let st = &mut self.stacks[s];
            let sent = st.dev.tx.len();
            st.iface.poll(now, &mut st.dev, &mut st.sockets);
            // A poll sends one fragment of a fragmented packet: go on
            // while it sends.
            let more = st.dev.tx.len() > sent;
            let served = services::serve(st);
            let proxied = self.proxy_step(s);
            if !served && !proxied && !more {
                break;
            }
        }
        let st = &mut self.stacks[s];
        st.next_at = st
            .iface
            .poll_at(now, &st.sockets)
            .map(|t| t.total_micros().max(0) as u64);
        let mut frames =
            super::frag::refragment(std::mem::take(&mut st.dev.tx), usize::from(st.mtu));
        let on_port = st.port.is_some();
        self.note_solicits(s, &frames);
        let is_v4 = |f: &Vec<u8>| f.get(12..14) == Some(&[0x08, 0x00]);
        if on_port && !echoes.is_empty() {
            let kinds: Vec<FrameKind> = frames.iter().map(|f| frame_kind(f)).collect();
            if kinds.contains(&FrameKind::Solicit) {
                self.stacks[s].held_echo = echoes;
            } else if !kinds.contains(&FrameKind::EchoReply) {
                let (v4, v6): (Vec<_>, Vec<_>) = echoes.into_iter().partition(is_v4);
                let again = self.answer_rate_limited(s, &v4, true);
                self.note_solicits(s, &again);
                frames.extend(again);
                // The kernel's neighbour queue: handed in again once the
                // advertisement arrives.
                if self.ask_senders(s, &v6, &mut frames) {
                    self.stacks[s].held_echo = v6;
                }
            }
        }
        if on_port && !openers.is_empty() {
            let st = &self.stacks[s];
            let silent = |o: &Vec<u8>| {
                !frames
                    .iter()
                    .any(|f| f.get(0..6) == o.get(6..12) || frame_kind(f) == FrameKind::Solicit)
            };
            let now_us = self.clock.now_us();
            let (want4, want6): (Vec<_>, Vec<_>) = openers
                .into_iter()
                .filter(|o| o.get(0..6) == Some(&st.mac()[..]) && silent(o))
                .partition(is_v4);
            let want4: Vec<Vec<u8>> = want4
                .into_iter()
                .filter(|o| {
                    let src: [u8; 4] = o[26..30].try_into().unwrap_or_default();
                    !st.taught
                        .iter()
                        .any(|(a, t)| *a == src && now_us < t + 1_000_000)
                })
                .collect();
            if !want4.is_empty() {
                let again = self.answer_rate_limited(s, &want4, false);
                self.note_solicits(s, &again);
                frames.extend(again);
            }
            self.ask_senders(s, &want6, &mut frames);
        }
        if on_port {
            self.ask_withheld(s, &mut frames);
        }
        let st = &mut self.stacks[s];
        match st.port {
            None => {
                if !frames.is_empty() {
                    st.dev.rx.extend(frames);
                    self.dirty.insert(s);
                }
            }
            Some(p) => {
                for f in frames {
                    self.send_on_path(s, p, f);
                }
            }
        }
    }

    /// Frames that got no answer and no ARP request: smoltcp's neighbour
    /// cache was rate-limited. The interface is taught the way back by an
    /// ARP request from the sender (its answer goes nowhere) and, `again`,
    /// gets the frames again (echo requests, answered by the stack itself;
    /// a socket's answer waits in the socket); what it sends then is
    /// returned.
    fn answer_rate_limited(&mut self, s: usize, echoes: &[Vec<u8>], again: bool) -> Vec<Vec<u8>> {
        let now = self.clock.smol();
        let now_us = self.clock.now_us();
        let st = &mut self.stacks[s];
        let smoltcp::wire::HardwareAddress::Ethernet(mac) = st.iface.hardware_addr() else {
            return Vec::new();
        };
        for e in echoes {
            let src = e.get(26..30).and_then(|b| <[u8; 4]>::try_from(b).ok());
            let src = src.map(|b| IpAddr::V4(std::net::Ipv4Addr::from(b)));
            let via = match src {
                Some(ip) if !st.on_link(ip) => st.gateway4(ip),
                _ => None,
            };
            if let Some(arp) = super::stack::arp_for(e, mac.0, via) {
                st.dev.rx.push_back(arp);
                if again {
                    st.dev.rx.push_back(e.clone());
                }
                let src: [u8; 4] = e[26..30].try_into().unwrap_or_default();
                st.taught.retain(|(a, _)| *a != src);
                st.taught.push((src, now_us));
            }
        }
        for _ in 0..MAX_REPOLL {
            let sent = st.dev.tx.len();
            st.iface.poll(now, &mut st.dev, &mut st.sockets);
            let served = services::serve(st);
            if st.dev.tx.len() == sent && st.dev.rx.is_empty() && !served {
                break;
            }
        }
        let out = std::mem::take(&mut st.dev.tx);
        out.into_iter()
            .filter(|f| !(f.len() >= 22 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2]))
            .collect()
    }

    /// A frame a stack sent on port `p`: through the engine.
    fn frame_from_stack(&mut self, p: PortId, frame: &[u8]) {
        self.frames += 1;
        let now = self.clock.instant();
        let mut pkt = Packet::from_frame(VnetHdr::default(), frame);
        let mut actions = Vec::new();
        self.engine.handle_frame(now, p, &mut pkt, &mut actions);
        let ts = self.clock.pcap_us();
        if let Some(w) = self
            .pcaps
            .get_mut(usize::from(p.0))
            .and_then(Option::as_mut)
        {
            let comment = match actions.as_slice() {
                [Action::Drop(r)] => Some(format!("vswitch drop: {}", r.as_str())),
                _ => None,
            };
            let _ = w.write_at(ts, frame, comment.as_deref());
        }
        self.execute(&pkt, actions);
    }

    fn execute(&mut self, pkt: &Packet, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Forward(q) => self.frame_to_port(q, pkt.frame()),
                Action::Emit(q, built) => self.frame_to_port(q, built.frame()),
                Action::Capture(q, built) => {
                    let ts = self.clock.pcap_us();
                    if let Some(w) = self
                        .pcaps
                        .get_mut(usize::from(q.0))
                        .and_then(Option::as_mut)
                    {
                        let _ = w.write_at(ts, built.frame(), None);
                    }
                }
                Action::Drop(_) => {}
            }
        }
    }

    /// A frame the engine sends out of port `q`: into its stack.
    fn frame_to_port(&mut self, q: PortId, frame: &[u8]) {
        let ts = self.clock.pcap_us();
        if let Some(w) = self
            .pcaps
            .get_mut(usize::from(q.0))
            .and_then(Option::as_mut)
        {
            let _ = w.write_at(ts, frame, None);
        }
        let Some(&s) = self.port_stack.get(usize::from(q.0)) else {
            return;
        };
        if self.stacks.get(s).is_none_or(|st| st.not_mine(frame)) {
            return;
        }
        self.icmp_in(s, frame);
        self.stacks[s].dev.rx.push_back(frame.to_vec());
        self.dirty.insert(s);
    }

    /// An ICMP error arriving at stack `s`: a path MTU its node learns
    /// ([`super::pmtu`]), and the error for a ping under way there.
    fn icmp_in(&mut self, s: usize, frame: &[u8]) {
        let icmp = match frame.get(12..14) {
            Some([0x08, 0x00]) => frame.get(23) == Some(&1),
            Some([0x86, 0xdd]) => frame.get(20) == Some(&58),
            _ => false,
        };
        if !icmp {
            return;
        }
        let now = self.clock.now_us();
        let st = &self.stacks[s];
        if let Some((src, dst, mtu)) = super::pmtu::too_big(frame)
            && st.holds(src)
        {
            self.pmtu.learn(st.node, dst, mtu, st.mtu, now);
        }
        for w in self.pings.iter_mut().filter(|w| w.stack == s) {
            w.heard(&frame[14..]);
        }
    }

    /// A frame stack `s` sends on port `p`, as the kernel would have
    /// built it for the path its node knows: DF as Linux sets it on ICMP,
    /// cut to a learned path MTU ([`super::pmtu`]). A TCP segment the path
    /// refuses meanwhile (the ICMP error comes back at once) is sent again
    /// at once, cut to the new size, as Linux's `tcp_simple_retransmit`
    /// does on learning it; smoltcp would wait for its retransmission
    /// timer.
    fn send_on_path(&mut self, s: usize, p: PortId, mut f: Vec<u8>) {
        super::pmtu::linux_df(&mut f, |ident| {
            self.pings
                .iter()
                .find(|w| w.stack == s && w.ident == ident)
                .is_none_or(|w| w.df)
        });
        let dst = super::pmtu::destination(&f);
        let learned = |w: &SimWorld| {
            if w.pmtu.is_empty() {
                return None;
            }
            let node = w.stacks[s].node;
            dst.and_then(|d| w.pmtu.get(node, d, w.clock.now_us()))
        };
        let pieces = match learned(self) {
            Some(mtu) => super::pmtu::fit(f, mtu),
            None => vec![f],
        };
        for piece in pieces {
            self.frame_from_stack(p, &piece);
            if let Some(mtu) = learned(self)
                && super::pmtu::is_tcp(&piece)
                && piece.len() > 14 + usize::from(mtu)
            {
                for again in super::pmtu::fit(piece, mtu) {
                    self.frame_from_stack(p, &again);
                }
            }
        }
    }

    /// The MTU towards `dst` from stack `s`: its interface's, or lower
    /// when its node learned so.
    pub(crate) fn path_mtu(&self, s: usize, dst: IpAddr) -> u16 {
        let st = &self.stacks[s];
        let learned = self.pmtu.get(st.node, dst, self.clock.now_us());
        learned.map_or(st.mtu, |m| m.min(st.mtu))
    }

    /// Frames a fault held that are now due.
    fn release_due(&mut self) {
        if !self.engine.faults().active() {
            return;
        }
        let now = self.clock.instant();
        while let Some(due) = self.engine.poll_due(now) {
            match due {
                Due::Egress(p, pkt) => self.frame_to_port(p, pkt.frame()),
                Due::Ingress(p, mut pkt) => {
                    let mut actions = Vec::new();
                    self.engine
                        .handle_past_fault(now, p, &mut pkt, &mut actions);
                    self.execute(&pkt, actions);
                }
            }
        }
    }

    /// The next instant anything is due, µs (at most `limit`).
    fn next_event(&self, limit: u64) -> u64 {
        let mut next = limit;
        for st in &self.stacks {
            if let Some(t) = st.next_at {
                next = next.min(t);
            }
        }
        if let Some(t) = self.engine.faults().next_due() {
            next = next.min(self.clock.us_of(t));
        }
        next.max(self.clock.now_us())
    }

    /// Settles, then moves the clock to the next event or `limit`,
    /// whichever comes first, and marks the stacks then due.
    pub(crate) fn advance(&mut self, limit: u64) {
        self.settle();
        let now = self.clock.now_us();
        if now >= limit {
            return;
        }
        let mut next = self.next_event(limit);
        if next <= now {
            // A stack wants polling now but has nothing to do: step 1 ms.
            next = (now + 1000).min(limit);
        }
        let before = now / EXPIRE_EVERY_US;
        self.clock.set_us(next);
        if next / EXPIRE_EVERY_US != before {
            let t = self.clock.instant();
            self.engine.expire(t);
        }
        for (i, st) in self.stacks.iter().enumerate() {
            if st.next_at.is_some_and(|t| t <= next) {
                self.dirty.insert(i);
            }
        }
        self.settle();
    }

    /// Lets the world run until virtual time `until`.
    pub(crate) fn run_until(&mut self, until: u64) {
        while self.clock.now_us() < until {
            self.advance(until);
        }
    }

    /// The stack of `node` that sends to `dst`, as its routing table
    /// would pick: the loopback for its own and loopback addresses, an
    /// interface whose subnet holds `dst`, else the longest route.
    pub(crate) fn pick(&self, node: Node, dst: IpAddr) -> Option<usize> {
        pick_stack(&self.stacks, self.nodes.get(&node)?, dst)
    }

    /// A fresh ephemeral port.
    pub(crate) fn ephemeral(&mut self) -> u16 {
        let p = self.next_port;
        self.next_port = if p >= 60999 { EPHEMERAL_FIRST } else { p + 1 };
        p
    }

    /// A fresh ICMP echo identifier.
    pub(crate) fn ident(&mut self) -> u16 {
        self.next_ident = self.next_ident.wrapping_add(1).max(1);
        self.next_ident
    }
}

use super::EPHEMERAL_FIRST;

/// [`SimWorld::pick`] over a node's stacks `mine` (its loopback first).
pub(crate) fn pick_stack(
    stacks: &[super::stack::Stack],
    mine: &[usize],
    dst: IpAddr,
) -> Option<usize> {
    let lo = *mine.first()?;
    let own = |s: usize| stacks[s].addrs.iter().any(|(a, _)| *a == dst);
    if dst.is_loopback() || mine.iter().any(|&s| own(s)) {
        return Some(lo);
    }
    if let Some(&s) = mine[1..].iter().find(|&&s| stacks[s].on_link(dst)) {
        return Some(s);
    }
    mine[1..]
        .iter()
        .filter_map(|&s| stacks[s].route_len(dst).map(|l| (l, s)))
        .max_by_key(|(l, s)| (*l, std::cmp::Reverse(*s)))
        .map(|(_, s)| s)
}
