//! Forwarding non-local names to upstream servers (DNS-13, DNS-18, DNS-19).
//!
//! Upstreams are asked one after the other, at most [`MAX_UPSTREAMS`], each
//! for at most [`ForwardConfig::timeout`]. A SERVFAIL or REFUSED, a timeout
//! or a socket error moves on to the next; any other reply (NXDOMAIN
//! included) is relayed byte for byte, only its id put back to the
//! client's. When nobody answered the client gets SERVFAIL: the embedded
//! server never makes up an NXDOMAIN. The upstream transport is the
//! client's: UDP over UDP (a truncated upstream reply is relayed as is, the
//! client retries over TCP), TCP over TCP.
//!
//! Sockets are created on the calling thread, so they live in that
//! thread's network namespace: the server runs these calls on threads in
//! the **machine's** namespace (see [`server`](super::server)).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;

use super::resolver::error_reply;
use crate::wire::dns;

/// Docker asks at most this many upstream servers (moby `maxExtDNS`).
pub const MAX_UPSTREAMS: usize = 3;

/// Concurrent forwarded queries per container above which queries are
/// REFUSED (moby `maxConcurrent`, DNS-19).
pub const MAX_CONCURRENT: usize = 1024;

/// Default per-upstream timeout: **2 s**, where Docker waits 4 s
/// (`extIOTimeout`). A `dns` check gives up after 5 s by default, so with
/// Docker's 4 s a dead first upstream would leave about a second for the
/// second one on a loaded machine; with 2 s the answer comes after ~2 s and
/// even two dead upstreams are still answered within a check's deadline.
/// The order of upstreams, the move-on rules and the SERVFAIL at the end are
/// Docker's; only the wait differs.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a waiting exchange looks at its stop flag.
const POLL: Duration = Duration::from_millis(100);

/// Forwarding parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Time one upstream gets to answer (connect, send and receive).
    pub timeout: Duration,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            timeout: DEFAULT_UPSTREAM_TIMEOUT,
        }
    }
}

/// Counts one container's forwarded queries in flight (DNS-19).
#[derive(Debug, Default)]
pub struct Inflight {
    n: AtomicUsize,
}

/// One forwarded query in flight; dropping it frees its slot.
#[derive(Debug)]
pub struct InflightGuard(Arc<Inflight>);

impl Inflight {
    /// Takes a slot, or `None` when [`MAX_CONCURRENT`] are in flight (the
    /// query is then REFUSED).
    pub fn try_acquire(self: &Arc<Self>) -> Option<InflightGuard> {
        self.n
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CONCURRENT).then_some(n + 1)
            })
            .ok()
            .map(|_| InflightGuard(self.clone()))
    }

    /// Queries in flight now.
    pub fn current(&self) -> usize {
        self.n.load(Ordering::Acquire)
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.n.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The upstreams asked, from the configured list (the container's `dns`,
/// else the machine's resolvers): in order, without duplicates, loopback
/// addresses dropped (127.0.0.11 must never ask itself, and a machine's
/// loopback resolver does not exist in a scenario), at most
/// [`MAX_UPSTREAMS`].
pub fn select_upstreams(configured: &[IpAddr]) -> Vec<IpAddr> {
    let mut servers: Vec<IpAddr> = Vec::new();
    for ip in configured {
        if !ip.is_loopback() && !ip.is_unspecified() && !servers.contains(ip) {
            servers.push(*ip);
        }
    }
    servers.truncate(MAX_UPSTREAMS);
    servers
}

/// What one upstream's reply means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not a reply to what we sent (wrong id or question, not a response).
    NotOurs,
    /// SERVFAIL or REFUSED: ask the next upstream.
    TryNext,
    /// Relay it to the client.
    Relay,
}

/// Length of the question section of `msg` (one question expected), or
/// `None` when it is not well-formed (compression pointers are not
/// expected in a first question).
pub(crate) fn question_len(msg: &[u8]) -> Option<usize> {
    let mut at = dns::HEADER_LEN;
    loop {
        let l = usize::from(*msg.get(at)?);
        if l == 0 {
            at += 1;
            break;
        }
        if l > 63 {
            return None;
        }
        at += 1 + l;
    }
    (msg.len() >= at + 4).then_some(at + 4 - dns::HEADER_LEN)
}

/// Judges `reply` to a query sent with id `sent_id` and question bytes
/// `question` (as [`question_len`] delimits them).
pub(crate) fn judge(reply: &[u8], sent_id: u16, question: &[u8]) -> Verdict {
    let Ok(h) = dns::Packet::new_checked(reply) else {
        return Verdict::NotOurs;
    };
    if h.id() != sent_id || !h.is_response() {
        return Verdict::NotOurs;
    }
    let qdcount = h.qdcount();
    // Some servers leave the question out of error replies.
    if qdcount != 0 {
        let at = dns::HEADER_LEN;
        let Some(got) = reply.get(at..at + question.len()) else {
            return Verdict::NotOurs;
        };
        let n = question.len() - 4;
        if qdcount != 1
            || !got[..n].eq_ignore_ascii_case(&question[..n])
            || got[n..] != question[n..]
        {
            return Verdict::NotOurs;
        }
    }
    match h.rcode() {
        2 | 5 => Verdict::TryNext,
        _ => Verdict::Relay,
    }
}

/// Relays `query` (raw bytes from the client) to `upstreams` in order and
/// returns the reply for the client: the first upstream reply that is not
/// SERVFAIL/REFUSED with the client's id, else SERVFAIL. `None` only when
/// `query` is not a query at all. `tcp` picks the upstream transport (the
/// client's, DNS-18). Gives up early, with SERVFAIL, once `stop` is set.
pub fn forward(
    upstreams: &[SocketAddr],
    query: &[u8],
    tcp: bool,
    cfg: &ForwardConfig,
    stop: &AtomicBool,
) -> Option<Vec<u8>> {
    if !dns::is_query(query) {
        return None;
    }
    let servfail = || error_reply(query, ResponseCode::ServFail);
    let Some(qlen) = question_len(query) else {
        return servfail();
    };
    let question = &query[dns::HEADER_LEN..dns::HEADER_LEN + qlen];
    for server in upstreams.iter().take(MAX_UPSTREAMS) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // A fresh id towards the upstream: replies to somebody else's query
        // (or spoofed ones) do not match.
        let id: u16 = rand::random();
        let mut msg = query.to_vec();
        dns::Packet::new_unchecked(&mut msg[..]).set_id(id);
        let deadline = Instant::now() + cfg.timeout;
        let got = if tcp {
            exchange_tcp(*server, &msg, id, question, deadline, stop)
        } else {
            exchange_udp(*server, &msg, id, question, deadline, stop)
        };
        if let Some(mut reply) = got {
            reply[..2].copy_from_slice(&query[..2]);
            return Some(reply);
        }
        tracing::debug!(%server, "upstream did not answer usefully; next");
    }
    servfail()
}

fn unspecified_of(server: &SocketAddr) -> SocketAddr {
    match server.ip() {
        IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    }
}

/// Time to wait now: at most [`POLL`], `None` once `deadline` has passed.
fn slice_until(deadline: Instant) -> Option<Duration> {
    let left = deadline.checked_duration_since(Instant::now())?;
    (left >= Duration::from_millis(1)).then(|| left.min(POLL))
}

fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// One UDP exchange; `Some(reply)` to relay, `None` to move on.
fn exchange_udp(
    server: SocketAddr,
    msg: &[u8],
    id: u16,
    question: &[u8],
    deadline: Instant,
    stop: &AtomicBool,
) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind(unspecified_of(&server)).ok()?;
    sock.connect(server).ok()?;
    sock.send(msg).ok()?;
    let mut buf = vec![0u8; 65535];
    while !stop.load(Ordering::Relaxed) {
        sock.set_read_timeout(Some(slice_until(deadline)?)).ok()?;
        match sock.recv(&mut buf) {
            Ok(n) => match judge(&buf[..n], id, question) {
                Verdict::NotOurs => {}
                Verdict::TryNext => return None,
                Verdict::Relay => return Some(buf[..n].to_vec()),
            },
            Err(e) if is_retry(&e) => {}
            // Port unreachable, host unreachable: this one is dead.
            Err(_) => return None,
        }
    }
    None
}

/// One TCP exchange (2-byte length prefix); `Some(reply)` to relay, `None`
/// to move on.
fn exchange_tcp(
    server: SocketAddr,
    msg: &[u8],
    id: u16,
    question: &[u8],
    deadline: Instant,
    stop: &AtomicBool,
) -> Option<Vec<u8>> {
    let left = deadline.checked_duration_since(Instant::now())?;
    let mut s = TcpStream::connect_timeout(&server, left).ok()?;
    let len = u16::try_from(msg.len()).ok()?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    s.set_write_timeout(Some(left)).ok()?;
    s.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    read_full(&mut s, &mut len, deadline, stop)?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    read_full(&mut s, &mut body, deadline, stop)?;
    match judge(&body, id, question) {
        Verdict::Relay => Some(body),
        Verdict::TryNext | Verdict::NotOurs => None,
    }
}

/// Fills `buf` before `deadline` unless stopped; `None` on EOF, error,
/// timeout or stop.
pub(crate) fn read_full(
    s: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
    stop: &AtomicBool,
) -> Option<()> {
    let mut got = 0;
    while got < buf.len() {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        s.set_read_timeout(Some(slice_until(deadline)?)).ok()?;
        match s.read(&mut buf[got..]) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(e) if is_retry(&e) => {}
            Err(_) => return None,
        }
    }
    Some(())
}
