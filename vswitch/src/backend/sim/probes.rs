//! The probes of every check kind on the sim's stacks, with the outcomes
//! of the kernel-socket probes ([`crate::probe`]): the same result types,
//! the same error variants for the same network outcomes. Each runs to
//! completion in virtual time (a check's timeout is virtual too).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::{icmp, tcp, udp};
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpEndpoint};

use crate::probe::{DnsOutcome, EchoReply, PingOptions, PingOutcome, ProbeError, parse_greeting};
use crate::scenario::plan::{Node, QueryType};

use super::SimWorld;
use super::services::{tcp_socket, udp_socket};
use super::stack::{smol_ip, std_ip};

/// UDP echo requests are repeated this often (as the kernel probe does).
const UDP_RETRY_US: u64 = 200_000;
/// DNS over UDP is asked again this often.
const DNS_RETRY_US: u64 = 1_000_000;

fn unreachable(dst: SocketAddr) -> ProbeError {
    ProbeError::Unreachable {
        dst,
        source: std::io::Error::from_raw_os_error(libc::ENETUNREACH),
    }
}

/// Per-request state of a ping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Unsent,
    /// Sent at this virtual µs.
    Waiting(u64),
    Replied,
    Failed,
}

/// A ping under way on a stack: its echo identifier, whether its requests
/// carry DF, and the ICMP errors about them the stack received, as
/// (sequence number, words).
#[derive(Debug)]
pub(crate) struct PingWatch {
    pub stack: usize,
    pub ident: u16,
    dst: IpAddr,
    pub df: bool,
    errors: Vec<(u16, String)>,
}

impl PingWatch {
    /// An ICMP packet `ip` arrived at its stack.
    pub(crate) fn heard(&mut self, ip: &[u8]) {
        if let Some(crate::probe::Icmp::Error { seq, what }) =
            crate::probe::about_echo(ip, self.dst, self.ident)
        {
            self.errors.push((seq, what));
        }
    }
}

impl SimWorld {
    fn deadline(&self, timeout: Duration) -> u64 {
        self.now_us() + timeout.as_micros() as u64
    }

    /// Pings `dst` from `from`, as the kernel-socket probe does: a
    /// request too big for the interface, or for the path MTU the node
    /// learned, with DF is a send error that ends the sending (EMSGSIZE);
    /// an ICMP error quoting a request answers it.
    pub fn ping(
        &mut self,
        from: Node,
        dst: IpAddr,
        opts: &PingOptions,
        timeout: Duration,
    ) -> Result<PingOutcome, ProbeError> {
        let end = self.deadline(timeout);
        let Some(s) = self.pick(from, dst) else {
            return Ok(PingOutcome {
                error: Some("network unreachable".into()),
                ..PingOutcome::default()
            });
        };
        let header = if dst.is_ipv4() { 28 } else { 48 };
        let ident = self.ident();
        let mut sock = icmp::Socket::new(
            icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 64], vec![0; 128 * 1024]),
            icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 64], vec![0; 128 * 1024]),
        );
        sock.bind(icmp::Endpoint::Ident(ident))
            .map_err(|e| ProbeError::socket("ICMP socket", std::io::Error::other(e.to_string())))?;
        let h = self.stacks[s].sockets.add(sock);
        self.pings.push(PingWatch {
            stack: s,
            ident,
            dst,
            df: opts.df,
            errors: Vec::new(),
        });
        let src = self.stacks[s].source_for(dst);
        let mut out = PingOutcome::default();
        let count = opts.count as usize;
        let mut slots = vec![Slot::Unsent; count];
        let mut next = 0usize;
        let mut send_failed = false;
        let interval = opts.interval.as_micros() as u64;
        let mut next_send = self.now_us();
        loop {
            if !send_failed && next < count && self.now_us() >= next_send {
                let mtu = self.path_mtu(s, dst);
                if opts.df && usize::from(opts.size) + header > usize::from(mtu) {
                    out.error
                        .get_or_insert_with(|| format!("message too long (mtu {mtu})"));
                    send_failed = true;
                } else if self.send_echo(s, h, dst, src, ident, next as u16, opts.size) {
                    slots[next] = Slot::Waiting(self.now_us());
                    out.sent += 1;
                }
                next += 1;
                next_send = self.now_us() + interval;
                self.expect(s, dst);
                self.touch(s);
            }
            self.settle();
            while let Some(seq) = self.recv_echo(s, h, dst, ident) {
                if let Some(Slot::Waiting(t)) = slots.get(usize::from(seq)).copied() {
                    slots[usize::from(seq)] = Slot::Replied;
                    out.received += 1;
                    out.rtts.push(Duration::from_micros(self.now_us() - t));
                }
            }
            let heard = self
                .pings
                .iter_mut()
                .find(|w| w.stack == s && w.ident == ident)
                .map(|w| std::mem::take(&mut w.errors))
                .unwrap_or_default();
            for (seq, what) in heard {
                if let Some(Slot::Waiting(_)) = slots.get(usize::from(seq)) {
                    slots[usize::from(seq)] = Slot::Failed;
                    out.error.get_or_insert(what);
                }
            }
            let sending = !send_failed && next < count;
            let waiting = slots.iter().any(|s| matches!(s, Slot::Waiting(_)));
            if (!sending && !waiting) || self.now_us() >= end {
                break;
            }
            let limit = if sending { next_send.min(end) } else { end };
            self.advance(limit);
        }
        self.pings.retain(|w| !(w.stack == s && w.ident == ident));
        self.stacks[s].sockets.remove(h);
        out.unanswered = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Slot::Waiting(_)))
            .map(|(k, _)| k as u16)
            .collect();
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn send_echo(
        &mut self,
        s: usize,
        h: SocketHandle,
        dst: IpAddr,
        src: Option<IpAddr>,
        ident: u16,
        seq: u16,
        size: u16,
    ) -> bool {
        let data = vec![0x5a_u8; usize::from(size)];
        let st = &mut self.stacks[s];
        let caps = st.dev_caps();
        let sock = st.sockets.get_mut::<icmp::Socket>(h);
        match (dst, src) {
            (IpAddr::V4(_), _) => {
                let repr = Icmpv4Repr::EchoRequest {
                    ident,
                    seq_no: seq,
                    data: &data,
                };
                let Ok(buf) = sock.send(repr.buffer_len(), smol_ip(dst)) else {
                    return false;
                };
                let mut pkt = Icmpv4Packet::new_unchecked(buf);
                repr.emit(&mut pkt, &caps.checksum);
                true
            }
            (IpAddr::V6(d), Some(IpAddr::V6(sr))) => {
                let repr = Icmpv6Repr::EchoRequest {
                    ident,
                    seq_no: seq,
                    data: &data,
                };
                let Ok(buf) = sock.send(repr.buffer_len(), smol_ip(dst)) else {
                    return false;
                };
                let mut pkt = Icmpv6Packet::new_unchecked(buf);
                repr.emit(&sr, &d, &mut pkt, &caps.checksum);
                true
            }
            _ => false,
        }
    }

    fn recv_echo(&mut self, s: usize, h: SocketHandle, dst: IpAddr, ident: u16) -> Option<u16> {
        let st = &mut self.stacks[s];
        let caps = st.dev_caps();
        let sock = st.sockets.get_mut::<icmp::Socket>(h);
        loop {
            let (data, from) = sock.recv().ok()?;
            if std_ip(from) != dst && !dst.is_loopback() {
                continue;
            }
            match dst {
                IpAddr::V4(_) => {
                    let Ok(p) = Icmpv4Packet::new_checked(data) else {
                        continue;
                    };
                    if let Ok(Icmpv4Repr::EchoReply {
                        ident: i, seq_no, ..
                    }) = Icmpv4Repr::parse(&p, &caps.checksum)
                        && i == ident
                    {
                        return Some(seq_no);
                    }
                }
                IpAddr::V6(_) => {
                    let Ok(p) = Icmpv6Packet::new_checked(data) else {
                        continue;
                    };
                    // The checksum was verified by the stack.
                    if p.msg_type() == smoltcp::wire::Icmpv6Message::EchoReply
                        && p.echo_ident() == ident
                    {
                        return Some(p.echo_seq_no());
                    }
                }
            }
        }
    }

    /// Opens a TCP connection from `from` to `dst`; the socket and its
    /// stack, or the outcome that ended it.
    fn tcp_connect(
        &mut self,
        from: Node,
        dst: SocketAddr,
        end: u64,
    ) -> Result<(usize, SocketHandle), ProbeError> {
        let s = self.pick(from, dst.ip()).ok_or_else(|| unreachable(dst))?;
        let port = self.ephemeral();
        let mut sock = tcp_socket(8192);
        let st = &mut self.stacks[s];
        let remote = IpEndpoint::new(smol_ip(dst.ip()), dst.port());
        sock.connect(st.iface.context(), remote, port)
            .map_err(|_| unreachable(dst))?;
        let h = st.sockets.add(sock);
        self.expect(s, dst.ip());
        self.touch(s);
        loop {
            self.settle();
            let state = self.stacks[s].sockets.get::<tcp::Socket>(h).state();
            match state {
                tcp::State::Established => return Ok((s, h)),
                tcp::State::Closed => {
                    self.stacks[s].sockets.remove(h);
                    return Err(ProbeError::Refused { dst });
                }
                _ => {}
            }
            if self.now_us() >= end {
                self.stacks[s].sockets.remove(h);
                return Err(ProbeError::TimedOut {
                    dst,
                    stage: "connect",
                });
            }
            self.advance(end);
        }
    }

    /// Reads from a TCP socket until `want` says it has enough.
    fn tcp_read(
        &mut self,
        s: usize,
        h: SocketHandle,
        dst: SocketAddr,
        stage: &'static str,
        end: u64,
        want: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<u8>, ProbeError> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            self.settle();
            let sock = self.stacks[s].sockets.get_mut::<tcp::Socket>(h);
            while let Ok(n) = sock.recv_slice(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            if want(&got) {
                self.touch(s);
                return Ok(got);
            }
            if !sock.may_recv() {
                let reason = format!(
                    "connection closed before the {stage} (got {:?})",
                    String::from_utf8_lossy(&got)
                );
                return Err(ProbeError::BadReply { dst, reason });
            }
            if self.now_us() >= end {
                return Err(ProbeError::TimedOut { dst, stage });
            }
            self.touch(s);
            self.advance(end);
        }
    }

    fn tcp_close(&mut self, s: usize, h: SocketHandle) {
        self.stacks[s].sockets.get_mut::<tcp::Socket>(h).abort();
        self.touch(s);
        self.settle();
        self.stacks[s].sockets.remove(h);
    }

    /// The TCP echo: the greeting, then a payload that must come back.
    pub fn tcp_echo(
        &mut self,
        from: Node,
        dst: SocketAddr,
        timeout: Duration,
    ) -> Result<EchoReply, ProbeError> {
        let end = self.deadline(timeout);
        let (s, h) = self.tcp_connect(from, dst, end)?;
        let r = self.tcp_echo_on(s, h, dst, end);
        self.tcp_close(s, h);
        r
    }

    fn tcp_echo_on(
        &mut self,
        s: usize,
        h: SocketHandle,
        dst: SocketAddr,
        end: u64,
    ) -> Result<EchoReply, ProbeError> {
        let line = self.tcp_read(s, h, dst, "seen line", end, |b| b.contains(&b'\n'))?;
        let nl = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
        let text = String::from_utf8_lossy(&line[..=nl.min(line.len() - 1)]).into_owned();
        let (seen, by) = parse_greeting(&text).ok_or_else(|| ProbeError::BadReply {
            dst,
            reason: format!("expected `seen <ip>:<port>`, got {text:?}"),
        })?;
        let token: u64 = rand::Rng::random(&mut self.rng);
        let payload = format!("vswitch-echo {token:016x}\n");
        let start = self.now_us();
        let _ = self.stacks[s]
            .sockets
            .get_mut::<tcp::Socket>(h)
            .send_slice(payload.as_bytes());
        self.touch(s);
        let want = payload.len();
        let back = self.tcp_read(s, h, dst, "echo", end, |b| b.len() >= want)?;
        if &back[..want] != payload.as_bytes() {
            return Err(ProbeError::BadReply {
                dst,
                reason: format!(
                    "echo differs: sent {payload:?}, got {:?}",
                    String::from_utf8_lossy(&back)
                ),
            });
        }
        Ok(EchoReply {
            seen,
            by,
            rtt: Duration::from_micros(self.now_us() - start),
        })
    }

    /// `connections` TCP connections one after another; the node each
    /// greeting named.
    pub fn spread(
        &mut self,
        from: Node,
        dst: SocketAddr,
        connections: u32,
        timeout: Duration,
    ) -> Result<Vec<String>, ProbeError> {
        let end = self.deadline(timeout);
        let mut nodes = Vec::new();
        for _ in 0..connections {
            let (s, h) = self.tcp_connect(from, dst, end)?;
            let line = self.tcp_read(s, h, dst, "seen line", end, |b| b.contains(&b'\n'));
            self.tcp_close(s, h);
            let line = line?;
            let text = String::from_utf8_lossy(&line).into_owned();
            match parse_greeting(text.lines().next().unwrap_or_default()) {
                Some((_, Some(by))) => nodes.push(by),
                _ => {
                    return Err(ProbeError::BadReply {
                        dst,
                        reason: format!("expected `seen <ip>:<port> by <node>`, got {text:?}"),
                    });
                }
            }
        }
        Ok(nodes)
    }

    /// A UDP socket of `from` towards `dst`, bound to `sport` (or an
    /// ephemeral port).
    fn udp_open(
        &mut self,
        from: Node,
        dst: SocketAddr,
        sport: Option<u16>,
    ) -> Result<(usize, SocketHandle, u16), ProbeError> {
        let s = self.pick(from, dst.ip()).ok_or_else(|| unreachable(dst))?;
        let port = match sport {
            Some(p) => p,
            None => self.ephemeral(),
        };
        let mut u = udp_socket(16, 64 * 1024);
        u.bind(port).map_err(|e| {
            ProbeError::socket(
                format!("udp socket on port {port}"),
                std::io::Error::other(e.to_string()),
            )
        })?;
        let h = self.stacks[s].sockets.add(u);
        Ok((s, h, port))
    }

    /// The UDP echo from `sport` (or an ephemeral port), repeated every
    /// 200 ms until answered.
    pub fn udp_echo(
        &mut self,
        from: Node,
        sport: Option<u16>,
        dst: SocketAddr,
        timeout: Duration,
    ) -> Result<EchoReply, ProbeError> {
        let end = self.deadline(timeout);
        let (s, h, _) = self.udp_open(from, dst, sport)?;
        let token = format!(
            "vswitch-echo {:016x} ",
            rand::Rng::random::<u64>(&mut self.rng)
        );
        let mut sent_at = Vec::new();
        let mut next = self.now_us();
        let remote = IpEndpoint::new(smol_ip(dst.ip()), dst.port());
        let mut last = None;
        let r = loop {
            if self.now_us() >= next {
                let msg = format!("{token}{}", sent_at.len());
                let sock = self.stacks[s].sockets.get_mut::<udp::Socket>(h);
                let _ = sock.send_slice(msg.as_bytes(), remote);
                sent_at.push(self.now_us());
                next = self.now_us() + UDP_RETRY_US;
                self.expect(s, dst.ip());
                self.touch(s);
            }
            self.settle();
            let sock = self.stacks[s].sockets.get_mut::<udp::Socket>(h);
            if let Ok((data, _)) = sock.recv() {
                match check_udp_reply(data, &token) {
                    Ok((seen, k)) => {
                        let at = sent_at.get(k).copied().unwrap_or(self.now_us());
                        break Ok(EchoReply {
                            seen,
                            by: None,
                            rtt: Duration::from_micros(self.now_us() - at),
                        });
                    }
                    Err(reason) => last = Some(ProbeError::BadReply { dst, reason }),
                }
                continue;
            }
            if self.now_us() >= end {
                break Err(last.unwrap_or(ProbeError::TimedOut { dst, stage: "echo" }));
            }
            self.advance(next.min(end));
        };
        self.stacks[s].sockets.remove(h);
        r
    }

    /// One DNS query from `from` to `server`; 127.0.0.11 in a container is
    /// the embedded DNS, answered by the name table and forwarded from
    /// the machine's stack.
    pub fn dns_query(
        &mut self,
        from: Node,
        server: SocketAddr,
        name: &str,
        qtype: QueryType,
        tcp: bool,
        timeout: Duration,
    ) -> Result<DnsOutcome, ProbeError> {
        let end = self.deadline(timeout);
        let (_, qname, mut query) = crate::probe::dns::build_query(name, qtype)?;
        let id: u16 = rand::Rng::random(&mut self.rng);
        query[..2].copy_from_slice(&id.to_be_bytes());
        let reply = match (from, server.ip()) {
            (Node::Container(c), IpAddr::V4(a)) if a == crate::dns::EMBEDDED_DNS_ADDR => {
                self.embedded(c, &query, tcp, end)
            }
            _ => self.exchange(from, server, &query, id, tcp, end),
        };
        Ok(match reply {
            Some(r) => crate::probe::dns::parse_response(&r, id, &qname, qtype)
                .unwrap_or(DnsOutcome::NoAnswer),
            None => DnsOutcome::NoAnswer,
        })
    }

    /// The embedded DNS of container `c` (DNS-1 … DNS-19), in-process.
    fn embedded(&mut self, c: usize, query: &[u8], tcp: bool, end: u64) -> Option<Vec<u8>> {
        let table = self.table.clone();
        table.view(c).filter(|v| v.embedded)?;
        let transport = if tcp {
            crate::dns::Transport::Tcp
        } else {
            crate::dns::Transport::Udp
        };
        match table.answer(c, query, transport, &mut self.rng) {
            crate::dns::Decision::Answer(b) => Some(b),
            crate::dns::Decision::Drop => None,
            crate::dns::Decision::Forward(ups) => {
                let machine = Node::Machine(self.machine_of(c));
                self.forward(machine, &ups, query, tcp, end)
            }
        }
    }

    /// The embedded DNS's forwarding (`dns::forward`'s rules): upstreams in
    /// order, each for the upstream timeout, SERVFAIL/REFUSED → next, any
    /// other reply relayed with the client's id; SERVFAIL at the end.
    fn forward(
        &mut self,
        machine: Node,
        ups: &[IpAddr],
        query: &[u8],
        tcp: bool,
        end: u64,
    ) -> Option<Vec<u8>> {
        let servfail = || crate::dns::error_reply(query, hickory_proto::op::ResponseCode::ServFail);
        let qlen = crate::dns::forward::question_len(query)?;
        let question = query[12..12 + qlen].to_vec();
        for up in ups.iter().take(crate::dns::MAX_UPSTREAMS) {
            let id: u16 = rand::Rng::random(&mut self.rng);
            let mut msg = query.to_vec();
            msg[..2].copy_from_slice(&id.to_be_bytes());
            let limit =
                (self.now_us() + crate::dns::DEFAULT_UPSTREAM_TIMEOUT.as_micros() as u64).min(end);
            let got = self.exchange(machine, SocketAddr::new(*up, 53), &msg, id, tcp, limit);
            if let Some(mut r) = got {
                use crate::dns::forward::{Verdict, judge};
                match judge(&r, id, &question) {
                    Verdict::Relay => {
                        r[..2].copy_from_slice(&query[..2]);
                        return Some(r);
                    }
                    Verdict::TryNext | Verdict::NotOurs => {}
                }
            }
            if self.now_us() >= end {
                return None;
            }
        }
        servfail()
    }

    fn machine_of(&self, c: usize) -> usize {
        self.container_machine.get(c).copied().unwrap_or(0)
    }

    /// One DNS exchange over UDP (asked again every second) or TCP.
    fn exchange(
        &mut self,
        from: Node,
        server: SocketAddr,
        msg: &[u8],
        id: u16,
        tcp: bool,
        end: u64,
    ) -> Option<Vec<u8>> {
        if tcp {
            let (s, h) = self.tcp_connect(from, server, end).ok()?;
            let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(msg);
            let _ = self.stacks[s]
                .sockets
                .get_mut::<tcp::Socket>(h)
                .send_slice(&framed);
            self.touch(s);
            let full = |b: &[u8]| {
                b.len() >= 2 && b.len() >= 2 + usize::from(u16::from_be_bytes([b[0], b[1]]))
            };
            let r = self.tcp_read(s, h, server, "answer", end, full);
            self.tcp_close(s, h);
            let r = r.ok()?;
            let len = usize::from(u16::from_be_bytes([r[0], r[1]]));
            return Some(r[2..2 + len].to_vec());
        }
        let (s, h, _) = self.udp_open(from, server, None).ok()?;
        let remote = IpEndpoint::new(smol_ip(server.ip()), server.port());
        let mut next = self.now_us();
        let r = loop {
            if self.now_us() >= next {
                let _ = self.stacks[s]
                    .sockets
                    .get_mut::<udp::Socket>(h)
                    .send_slice(msg, remote);
                next = self.now_us() + DNS_RETRY_US;
                self.expect(s, server.ip());
                self.touch(s);
            }
            self.settle();
            if let Ok((d, _)) = self.stacks[s].sockets.get_mut::<udp::Socket>(h).recv()
                && d.len() >= 2
                && u16::from_be_bytes([d[0], d[1]]) == id
            {
                break Some(d.to_vec());
            }
            if self.now_us() >= end {
                break None;
            }
            self.advance(next.min(end));
        };
        self.stacks[s].sockets.remove(h);
        r
    }
}

/// A UDP echo reply: `seen <addr>\n` then `token` and the attempt number.
fn check_udp_reply(reply: &[u8], token: &str) -> Result<(SocketAddr, usize), String> {
    let Some(nl) = reply.iter().position(|&b| b == b'\n') else {
        return Err(format!(
            "no seen line in {:?}",
            String::from_utf8_lossy(reply)
        ));
    };
    let line = String::from_utf8_lossy(&reply[..nl]);
    let seen = crate::probe::parse_seen(&line)
        .ok_or_else(|| format!("expected `seen <ip>:<port>`, got {line:?}"))?;
    let payload = String::from_utf8_lossy(&reply[nl + 1..]);
    let attempt = payload
        .strip_prefix(token)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("payload not echoed: got {payload:?}"))?;
    Ok((seen, attempt))
}

/// Virtual time one round of the throughput senders takes.
const TICK_US: u64 = 1000;
/// UDP datagrams each stream sends per tick.
const UDP_PER_TICK: usize = 8;

impl SimWorld {
    /// The built-in generator in virtual time: a sink on `to_node`, the
    /// senders in `from`, for `load.seconds` of virtual time, the senders
    /// refilled once per millisecond. The figures are per second of virtual
    /// time: they measure the sim, not this machine.
    pub fn throughput(
        &mut self,
        from: Node,
        to_node: Node,
        dst: IpAddr,
        ports: crate::probe::Ports,
        load: &crate::probe::Load,
    ) -> Result<crate::probe::Throughput, ProbeError> {
        use crate::scenario::plan::Proto;
        let proto = load.proto;
        let recv: Vec<usize> = self.nodes.get(&to_node).cloned().unwrap_or_default();
        for &s in &recv {
            super::services::bind(
                &mut self.stacks[s],
                proto,
                ports.listen,
                super::services::TcpRole::Sink,
            );
        }
        let target = SocketAddr::new(dst, ports.connect);
        let secs = load.seconds.max(0.001);
        let start = self.now_us();
        let end = start + (secs * 1e6) as u64;
        let streams = load.streams.max(1) as usize;
        let size = usize::from(load.udp_size).max(crate::probe::SEQ_HEADER);
        let mut senders = Vec::new();
        let mut sent = 0u64;
        let opened: Result<(), ProbeError> = (|| {
            for _ in 0..streams {
                senders.push(match proto {
                    Proto::Tcp => {
                        let (s, h) = self.tcp_connect(from, target, start + 3_000_000)?;
                        (s, h)
                    }
                    Proto::Udp => {
                        let (s, h, _) = self.udp_open(from, target, None)?;
                        (s, h)
                    }
                });
            }
            Ok(())
        })();
        let t0 = self.now_us();
        let end = end.max(t0) + (t0 - start);
        let chunk = vec![0x42u8; 64 * 1024];
        let mut seq = 0u64;
        while opened.is_ok() && self.now_us() < end {
            for &(s, h) in &senders {
                match proto {
                    Proto::Tcp => {
                        let sock = self.stacks[s].sockets.get_mut::<tcp::Socket>(h);
                        let _ = sock.send_slice(&chunk);
                    }
                    Proto::Udp => {
                        let remote = IpEndpoint::new(smol_ip(dst), ports.connect);
                        let sock = self.stacks[s].sockets.get_mut::<udp::Socket>(h);
                        for _ in 0..UDP_PER_TICK {
                            let mut d = chunk[..size].to_vec();
                            crate::probe::encode_seq(&mut d, seq, 0);
                            seq += 1;
                            if sock.send_slice(&d, remote).is_ok() {
                                sent += 1;
                            }
                        }
                    }
                }
                self.expect(s, dst);
                self.touch(s);
            }
            let next = (self.now_us() + TICK_US).min(end);
            self.run_until(next);
        }
        let (mut bytes, mut datagrams) = (0, 0);
        for &s in &recv {
            if let Some((b, d)) = super::services::sink_stats(&self.stacks[s], proto, ports.listen)
            {
                bytes += b;
                datagrams += d;
            }
            super::services::unbind_sink(&mut self.stacks[s], proto, ports.listen);
        }
        for (s, h) in senders {
            match proto {
                Proto::Tcp => self.tcp_close(s, h),
                Proto::Udp => {
                    self.stacks[s].sockets.remove(h);
                }
            }
        }
        opened?;
        let seconds = (end - t0) as f64 / 1e6;
        let gbps = bytes as f64 * 8.0 / seconds / 1e9;
        let kpps = match proto {
            Proto::Tcp => bytes as f64 / 1448.0 / seconds / 1e3,
            Proto::Udp => datagrams as f64 / seconds / 1e3,
        };
        let loss = (proto == Proto::Udp).then(|| {
            if sent == 0 {
                1.0
            } else {
                1.0 - (datagrams as f64 / sent as f64).min(1.0)
            }
        });
        Ok(crate::probe::Throughput {
            gbps,
            kpps,
            loss,
            bytes,
            seconds,
        })
    }
}
