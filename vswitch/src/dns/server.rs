//! The embedded DNS's sockets: UDP and TCP `127.0.0.11:53` inside a
//! container's namespace, served until dropped.
//!
//! Docker listens on random ports and DNATs port 53 to them in the
//! container's namespace (DNS-3); binding port 53 directly is what a client
//! sees all the same, and needs no NAT rules: `lo` is up and 127.0.0.0/8 is
//! local, so 127.0.0.11 can be bound as it is. One difference remains: a
//! container that itself serves `tcp:53` on every address leaves no room
//! for a TCP listener on 127.0.0.11:53 (Linux refuses a specific bind beside
//! a wildcard listener), so its embedded DNS answers over UDP only, with a
//! warning; `udp:53` services coexist (SO_REUSEADDR, the more specific
//! socket gets the queries).
//!
//! The listening sockets are created inside the container's namespace; every
//! thread of the server runs in the **machine's** namespace, so the sockets
//! of forwarded queries (created by those threads) live there. This is what
//! Docker ≥ 28 does for upstreams from the host's resolv.conf (DNS-15), and
//! it makes forwarding work on every backend, whether or not it routes
//! container traffic to `lan` yet. (Docker queries `--dns` servers from the
//! container's namespace instead; vswitch uses the machine's for those too,
//! which only differs when a container could not reach its own `dns`
//! server.)
//!
//! The world's kernel fast path ([`super::fastpath`]), attached to the
//! container's `lo` by the world builder, answers the single-address A/AAAA
//! queries: those never arrive here.
//!
//! Robustness: every socket wait is a short poll on a stop flag; garbage is
//! dropped or answered FORMERR; a TCP stream that stalls mid-message is
//! closed after [`TCP_IDLE`] without holding anything else up; a message is
//! at most 65535 bytes (its 2-byte length prefix).

use std::io::{self, IoSlice, IoSliceMut, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg};
use rustix::net::sockopt::{Timeout, set_socket_reuseaddr, set_socket_timeout};
use rustix::net::{AddressFamily, SocketFlags, SocketType, bind, socket_with};

use crate::netns::{NetNs, NetnsError};

use super::EMBEDDED_DNS_ADDR;
use super::forward::{ForwardConfig, Inflight, forward, read_full};
use super::resolver::{Decision, Transport, error_reply};
use super::table::LiveTable;

/// How often blocked loops look at their stop flag.
const POLL: Duration = Duration::from_millis(100);
/// A TCP connection idle (or stalled mid-message) this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// TCP connections served at once per container; more are closed at once.
const MAX_TCP_CONNS: usize = 128;

/// Errors of starting an embedded DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// Entering a namespace or starting a thread in it failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// Binding 127.0.0.11:53 failed.
    #[error(
        "cannot bind {proto} 127.0.0.11:53 in namespace {ns}: {source} (is loopback up, is port 53 taken?)"
    )]
    Bind {
        /// `udp` or `tcp`.
        proto: &'static str,
        /// Namespace name.
        ns: String,
        /// Cause.
        source: io::Error,
    },
}

/// What the threads of one container's server share.
#[derive(Debug)]
struct Shared {
    table: Arc<LiveTable>,
    container: usize,
    cfg: ForwardConfig,
    stop: Arc<AtomicBool>,
    inflight: Arc<Inflight>,
    tcp_conns: AtomicUsize,
    /// Forwarding and TCP connection threads, joined on drop.
    children: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Starts a child thread (it inherits the caller's namespace: the
    /// machine's). False when the thread could not be started.
    fn spawn(&self, name: &str, f: impl FnOnce() + Send + 'static) -> bool {
        let Ok(h) = std::thread::Builder::new().name(name.into()).spawn(f) else {
            return false;
        };
        let mut v = self.children.lock().unwrap_or_else(|p| p.into_inner());
        v.retain(|h| !h.is_finished());
        v.push(h);
        true
    }
}

/// A running embedded DNS server of one container; dropping it stops it
/// and waits for its threads (at most about one poll interval).
#[derive(Debug)]
pub struct EmbeddedDns {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl EmbeddedDns {
    /// Forwarded queries in flight.
    pub fn inflight(&self) -> usize {
        self.shared.inflight.current()
    }
}

/// Stops every server of `servers` and empties it: all are told to stop
/// first, then each is joined, so a world's teardown waits about one poll
/// interval in all rather than one per container.
pub fn stop_all(servers: &mut Vec<EmbeddedDns>) {
    for s in servers.iter() {
        s.shared.stop.store(true, Ordering::SeqCst);
    }
    servers.clear();
}

impl Drop for EmbeddedDns {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
        // The listeners are gone: no new children can be registered.
        let children: Vec<_> = self
            .shared
            .children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for h in children {
            let _ = h.join();
        }
    }
}

/// Starts the embedded DNS of container `container` (index into
/// `Plan::containers`, as `table` was built): UDP and TCP 127.0.0.11:53
/// bound in `container_ns`, served by threads in `machine_ns`, which is
/// where forwarded queries leave from.
pub fn start_embedded_dns(
    table: Arc<LiveTable>,
    container: usize,
    container_ns: &NetNs,
    machine_ns: &NetNs,
    cfg: ForwardConfig,
) -> Result<EmbeddedDns, DnsError> {
    let ns = container_ns.name().to_string();
    let bind_err = |proto| {
        let ns = ns.clone();
        move |source| DnsError::Bind { proto, ns, source }
    };
    let addr = SocketAddr::from((EMBEDDED_DNS_ADDR, 53));
    let (udp, tcp) = container_ns.run(move || (bind_udp(addr), bind_tcp(addr)))?;
    let udp = udp.map_err(bind_err("udp"))?;
    let tcp = match tcp {
        Ok(l) => Some(l),
        // The container serves tcp:53 itself on every address (an echo
        // service): its wildcard listener rules out a listener on
        // 127.0.0.11:53, and Docker's way round it (a random port and DNAT
        // inside the container) needs NAT rules. UDP still works (both
        // sockets use SO_REUSEADDR and the more specific one gets 127.0.0.11).
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            tracing::warn!(
                namespace = %ns,
                "port tcp:53 is taken in the container; embedded DNS over TCP unavailable there"
            );
            None
        }
        Err(e) => return Err(bind_err("tcp")(e)),
    };
    let shared = Arc::new(Shared {
        table,
        container,
        cfg,
        stop: Arc::new(AtomicBool::new(false)),
        inflight: Arc::new(Inflight::default()),
        tcp_conns: AtomicUsize::new(0),
        children: Mutex::new(Vec::new()),
    });
    let mut server = EmbeddedDns {
        shared: shared.clone(),
        threads: Vec::new(),
    };
    // One receiver, batching: the common queries never reach it (the kernel
    // fast path answers them), and a second thread on the same socket
    // measured no faster under dnsperf, only contending for the socket.
    let udp = Arc::new(udp);
    for _ in 0..UDP_WORKERS {
        let (sh, udp) = (shared.clone(), udp.clone());
        server
            .threads
            .push(machine_ns.spawn(move || udp_loop(&sh, &udp))?);
    }
    if let Some(tcp) = tcp {
        let sh = shared;
        server
            .threads
            .push(machine_ns.spawn(move || accept_loop(&sh, &tcp))?);
    }
    Ok(server)
}

/// UDP 127.0.0.11:53 with SO_REUSEADDR (so that a container's own udp:53
/// echo service on the wildcard address does not stand in the way) and a
/// [`POLL`] receive timeout. Runs inside the container's namespace.
fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let fd = socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    set_socket_reuseaddr(&fd, true)?;
    bind(&fd, &addr)?;
    let u = UdpSocket::from(fd);
    u.set_read_timeout(Some(POLL))?;
    Ok(u)
}

/// TCP 127.0.0.11:53 listening, whose accept gives up after [`POLL`] so the
/// loop sees its stop flag. Runs inside the container's namespace.
fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let l = TcpListener::bind(addr)?;
    set_socket_timeout(&l, Timeout::Recv, Some(POLL))?;
    Ok(l)
}

/// Threads receiving on the UDP socket.
const UDP_WORKERS: usize = 1;
/// Queries taken from the socket per `recvmmsg`, answers sent per `sendmmsg`.
const UDP_BATCH: usize = 32;
/// Room for one query. Larger datagrams arrive cut (MSG_TRUNC) and get
/// FORMERR; Docker's server (miekg/dns) reads only 512 bytes of a query.
const UDP_QUERY_MAX: usize = 4096;

/// One UDP worker: takes up to [`UDP_BATCH`] queries per `recvmmsg`
/// (blocking for the first, [`POLL`] at most), answers the local ones and
/// sends those answers back with one `sendmmsg`. At high rates this halves
/// the syscalls per query and lets the client's socket take answers in
/// bursts; at low rates a batch is one query and nothing waits for a batch
/// to fill.
fn udp_loop(sh: &Arc<Shared>, sock: &Arc<UdpSocket>) {
    let fd = sock.as_raw_fd();
    let mut bufs = vec![[0u8; UDP_QUERY_MAX]; UDP_BATCH];
    let mut rx = MultiHeaders::<SockaddrIn>::preallocate(UDP_BATCH, None);
    let mut tx = MultiHeaders::<SockaddrIn>::preallocate(UDP_BATCH, None);
    let mut replies: Vec<(Vec<u8>, SockaddrIn)> = Vec::with_capacity(UDP_BATCH);
    let mut rng = rand::rng();
    while !sh.stopped() {
        {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            match recvmmsg(fd, &mut rx, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
                Ok(got) => {
                    for m in got {
                        let Some(peer) = m.address else { continue };
                        let query = m.iovs().next().unwrap_or_default();
                        let reply = if m.flags.contains(MsgFlags::MSG_TRUNC) {
                            error_reply(query, ResponseCode::FormErr)
                        } else {
                            handle_udp(sh, sock, query, peer, &mut rng)
                        };
                        if let Some(r) = reply {
                            replies.push((r, peer));
                        }
                    }
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                // Not expected on a bound UDP socket; do not spin on it.
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        send_batch(fd, &mut tx, &mut replies);
    }
}

/// Sends every reply of `replies` (with `sendmmsg`, as few calls as it
/// takes) and empties it. A reply the socket refuses is dropped, as a
/// datagram lost: the client asks again.
fn send_batch(
    fd: RawFd,
    tx: &mut MultiHeaders<SockaddrIn>,
    replies: &mut Vec<(Vec<u8>, SockaddrIn)>,
) {
    let mut from = 0;
    while from < replies.len() {
        let pending = &replies[from..];
        let iovs: Vec<[IoSlice<'_>; 1]> = pending.iter().map(|(b, _)| [IoSlice::new(b)]).collect();
        let addrs: Vec<Option<SockaddrIn>> = pending.iter().map(|(_, a)| Some(*a)).collect();
        match sendmmsg(fd, tx, &iovs, &addrs, [], MsgFlags::empty()) {
            Ok(sent) => from += sent.count().max(1),
            Err(Errno::EINTR) => {}
            Err(_) => from += 1,
        }
    }
    replies.clear();
}

/// The reply to send now to one UDP query from `peer`, if any; a forwarded
/// query is answered later by its own thread.
fn handle_udp(
    sh: &Arc<Shared>,
    sock: &Arc<UdpSocket>,
    query: &[u8],
    peer: SockaddrIn,
    rng: &mut rand::rngs::ThreadRng,
) -> Option<Vec<u8>> {
    match sh
        .table
        .get()
        .answer(sh.container, query, Transport::Udp, rng)
    {
        Decision::Answer(b) => Some(b),
        Decision::Drop => None,
        Decision::Forward(ups) => {
            let Some(guard) = sh.inflight.try_acquire() else {
                // DNS-19.
                return error_reply(query, ResponseCode::Refused);
            };
            let upstreams: Vec<SocketAddr> =
                ups.iter().map(|ip| SocketAddr::new(*ip, 53)).collect();
            let owned = query.to_vec();
            let (s, sock2) = (sh.clone(), sock.clone());
            let started = sh.spawn("dns-fwd", move || {
                let _guard = guard;
                if let Some(r) = forward(&upstreams, &owned, false, &s.cfg, &s.stop) {
                    let _ = sock2.send_to(&r, SocketAddr::from(peer));
                }
            });
            if started {
                None
            } else {
                error_reply(query, ResponseCode::ServFail)
            }
        }
    }
}

fn accept_loop(sh: &Arc<Shared>, listener: &TcpListener) {
    while !sh.stopped() {
        match listener.accept() {
            Ok((s, _)) => {
                let taken = sh
                    .tcp_conns
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < MAX_TCP_CONNS).then_some(n + 1)
                    })
                    .is_ok();
                if !taken {
                    continue; // dropped: closed
                }
                let s2 = sh.clone();
                let started = sh.spawn("dns-tcp", move || {
                    tcp_conn(&s2, s);
                    s2.tcp_conns.fetch_sub(1, Ordering::AcqRel);
                });
                if !started {
                    sh.tcp_conns.fetch_sub(1, Ordering::AcqRel);
                }
            }
            Err(e) if is_retry(&e) => {}
            // EMFILE and the like: back off instead of spinning.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Serves one TCP connection: length-prefixed queries, one after the other
/// (DNS-18: forwarded over TCP too), until EOF, garbage, [`TCP_IDLE`] or stop.
fn tcp_conn(sh: &Arc<Shared>, mut s: TcpStream) {
    if s.set_write_timeout(Some(Duration::from_secs(1))).is_err() {
        return;
    }
    let mut rng = rand::rng();
    loop {
        let until = Instant::now() + TCP_IDLE;
        let mut len = [0u8; 2];
        if read_full(&mut s, &mut len, until, &sh.stop).is_none() {
            return;
        }
        let n = usize::from(u16::from_be_bytes(len));
        if n == 0 {
            return;
        }
        let mut query = vec![0u8; n];
        if read_full(&mut s, &mut query, until, &sh.stop).is_none() {
            return;
        }
        let reply = match sh
            .table
            .get()
            .answer(sh.container, &query, Transport::Tcp, &mut rng)
        {
            Decision::Answer(b) => Some(b),
            Decision::Drop => None,
            Decision::Forward(ups) => match sh.inflight.try_acquire() {
                None => error_reply(&query, ResponseCode::Refused),
                Some(_guard) => {
                    let upstreams: Vec<SocketAddr> =
                        ups.iter().map(|ip| SocketAddr::new(*ip, 53)).collect();
                    forward(&upstreams, &query, true, &sh.cfg, &sh.stop)
                }
            },
        };
        let Some(reply) = reply else {
            return;
        };
        let Ok(rlen) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(2 + reply.len());
        framed.extend_from_slice(&rlen.to_be_bytes());
        framed.extend_from_slice(&reply);
        if s.write_all(&framed).is_err() {
            return;
        }
    }
}

fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
