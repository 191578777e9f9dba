//! Echo services (every scenario service) and the throughput sink.
//!
//! An echo first tells the peer which address it saw, so a check can tell
//! whether NAT rewrote the source: TCP writes `seen <ip>:<port>\n` on accept
//! and then echoes every byte until EOF; UDP answers each datagram with
//! `seen <ip>:<port>\n` followed by the datagram's payload. IPv6 peers are
//! written in brackets (`seen [fd00::1]:4000`), as [`SocketAddr`] prints them.
//! The line ends with ` by <node>`, the name of the container, task or
//! external that answered (format 1.1 "Echo greeting"); readers of the
//! `seen` address ignore the rest of the line.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netns::NetNs;
use crate::scenario::plan::{Proto, Service};

use super::ProbeError;
use super::sock::{
    POLL, UdpService, Workers, is_retry, spawn_conn, tcp_listener, udp_service_socket, unmap,
};

/// The first line an echo service sends: `seen <ip>:<port> by <node>\n`.
pub fn format_seen(peer: SocketAddr, node: &str) -> String {
    format!("seen {} by {node}\n", unmap(peer))
}

/// Parses a `seen <ip>:<port>` line (with or without the newline); what
/// follows the address (` by <node>`) is ignored.
pub fn parse_seen(line: &str) -> Option<SocketAddr> {
    parse_greeting(line).map(|(a, _)| a)
}

/// Parses a greeting `seen <ip>:<port> [by <node>]`: the address and, when
/// the line names one, the node that answered.
pub fn parse_greeting(line: &str) -> Option<(SocketAddr, Option<String>)> {
    let rest = line.trim_end_matches(['\n', '\r']).strip_prefix("seen ")?;
    let mut words = rest.split(' ');
    let addr = words.next()?.parse().ok()?;
    let by = match (words.next(), words.next()) {
        (Some("by"), Some(n)) if !n.is_empty() => Some(n.to_string()),
        _ => None,
    };
    Some((addr, by))
}

/// Length of the sequence header of a throughput datagram.
pub const SEQ_HEADER: usize = 16;

/// Writes the throughput datagram header: a big-endian u64 sequence number
/// followed by a big-endian u64 run id. `buf` must hold [`SEQ_HEADER`] bytes.
pub fn encode_seq(buf: &mut [u8], seq: u64, run: u64) {
    buf[..8].copy_from_slice(&seq.to_be_bytes());
    buf[8..SEQ_HEADER].copy_from_slice(&run.to_be_bytes());
}

/// Reads `(seq, run)` from a throughput datagram; `None` when too short.
pub fn decode_seq(buf: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_be_bytes(buf.get(..8)?.try_into().ok()?);
    let run = u64::from_be_bytes(buf.get(8..SEQ_HEADER)?.try_into().ok()?);
    Some((seq, run))
}

/// Running echo services of one namespace. Dropping it (or [`stop`]) stops
/// every thread and closes every socket.
///
/// [`stop`]: EchoServices::stop
#[derive(Debug)]
pub struct EchoServices {
    workers: Workers,
    ports: Vec<(Proto, u16)>,
}

impl EchoServices {
    /// The bound ports (as asked, or the ephemeral one chosen for port 0).
    pub fn ports(&self) -> &[(Proto, u16)] {
        &self.ports
    }

    /// Stops all services and waits for their threads.
    pub fn stop(mut self) {
        self.workers.stop();
    }
}

/// Starts an echo for every service, bound to all addresses of `ns`;
/// `node` is the name its greeting gives (`seen … by <node>`).
pub fn start_echo(
    ns: &NetNs,
    services: &[Service],
    node: &str,
) -> Result<EchoServices, ProbeError> {
    enum Bound {
        Tcp(TcpListener),
        Udp(UdpService),
    }
    let list = services.to_vec();
    let bound: Vec<Bound> = ns.run(move || {
        list.iter()
            .map(|s| match s.proto {
                Proto::Tcp => tcp_listener(s.port).map(Bound::Tcp),
                Proto::Udp => udp_service_socket(s.port).map(Bound::Udp),
            })
            .collect::<Result<Vec<_>, _>>()
    })??;
    let mut workers = Workers::default();
    let mut ports = Vec::new();
    let node: Arc<str> = Arc::from(node);
    for b in bound {
        let stop = workers.stop_flag();
        let node = node.clone();
        match b {
            Bound::Tcp(l) => {
                let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
                ports.push((Proto::Tcp, port));
                let conns = workers.conns();
                workers.spawn(format!("echo-tcp-{port}"), move || {
                    accept_loop(&l, &stop, &conns, "echo-conn", move |s, stop| {
                        tcp_echo_conn(s, &stop, &node)
                    })
                })?;
            }
            Bound::Udp(u) => {
                let port = u.local_addr().map(|a| a.port()).unwrap_or(0);
                ports.push((Proto::Udp, port));
                workers.spawn(format!("echo-udp-{port}"), move || {
                    udp_echo_loop(&u, &stop, &node)
                })?;
            }
        }
    }
    Ok(EchoServices { workers, ports })
}

/// Accepts until `stop`, handing each connection to `handle` on its own
/// thread.
pub(crate) fn accept_loop(
    l: &TcpListener,
    stop: &Arc<AtomicBool>,
    conns: &Mutex<Vec<JoinHandle<()>>>,
    name: &str,
    handle: impl Fn(TcpStream, Arc<AtomicBool>) + Clone + Send + 'static,
) {
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((s, _)) => {
                let stop = stop.clone();
                let handle = handle.clone();
                spawn_conn(conns, name, move || handle(s, stop));
            }
            Err(e) if is_retry(&e) => {}
            // ECONNABORTED, EMFILE and the like: back off instead of spinning.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn tcp_echo_conn(mut s: TcpStream, stop: &AtomicBool, node: &str) {
    let Ok(peer) = s.peer_addr() else { return };
    // Timeouts both ways, so a peer that stops reading cannot keep this
    // thread (and so `stop`) waiting.
    if s.set_read_timeout(Some(POLL)).is_err()
        || s.set_write_timeout(Some(POLL)).is_err()
        || s.set_nodelay(true).is_err()
    {
        return;
    }
    if !write_all_stoppable(&mut s, format_seen(peer, node).as_bytes(), stop) {
        return;
    }
    let mut buf = vec![0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => {
                let _ = s.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if !write_all_stoppable(&mut s, &buf[..n], stop) {
                    return;
                }
            }
            Err(e) if is_retry(&e) => {}
            Err(_) => return,
        }
    }
}

/// Writes all of `data` on a socket with a write timeout; false on error or
/// `stop`.
fn write_all_stoppable(s: &mut TcpStream, mut data: &[u8], stop: &AtomicBool) -> bool {
    while !data.is_empty() {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        match s.write(data) {
            Ok(0) => return false,
            Ok(n) => data = &data[n..],
            Err(e) if is_retry(&e) => {}
            Err(_) => return false,
        }
    }
    true
}

fn udp_echo_loop(u: &UdpService, stop: &AtomicBool, node: &str) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match u.recv(&mut buf) {
            Ok(Some((n, peer, local))) => {
                let seen = format_seen(peer, node);
                let _ = u.reply(&[seen.as_bytes(), &buf[..n]], peer, local);
            }
            Ok(None) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// What a [`Sink`] has received so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SinkStats {
    /// Payload bytes received (UDP: only datagrams of this sink's run).
    pub bytes: u64,
    /// Datagrams received (UDP, this run only); 0 for TCP.
    pub datagrams: u64,
    /// Highest sequence number seen plus one (UDP, this run only).
    pub max_seq: u64,
    /// TCP connections accepted.
    pub connections: u64,
    /// TCP connections still open.
    pub open: u64,
    /// When the first counted byte arrived.
    pub first: Option<Instant>,
    /// When the last counted byte arrived.
    pub last: Option<Instant>,
}

#[derive(Debug)]
struct Counters {
    base: Instant,
    bytes: AtomicU64,
    datagrams: AtomicU64,
    max_seq: AtomicU64,
    connections: AtomicU64,
    open: AtomicU64,
    /// Nanoseconds after `base`; `u64::MAX` for none yet.
    first_ns: AtomicU64,
    last_ns: AtomicU64,
}

impl Counters {
    fn new() -> Counters {
        Counters {
            base: Instant::now(),
            bytes: AtomicU64::new(0),
            datagrams: AtomicU64::new(0),
            max_seq: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            open: AtomicU64::new(0),
            first_ns: AtomicU64::new(u64::MAX),
            last_ns: AtomicU64::new(0),
        }
    }

    fn add(&self, bytes: usize) {
        let ns = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.first_ns.fetch_min(ns, Ordering::Relaxed);
        self.last_ns.fetch_max(ns, Ordering::Relaxed);
    }

    fn stats(&self) -> SinkStats {
        let first = self.first_ns.load(Ordering::Relaxed);
        let at = |ns| self.base + Duration::from_nanos(ns);
        SinkStats {
            bytes: self.bytes.load(Ordering::Relaxed),
            datagrams: self.datagrams.load(Ordering::Relaxed),
            max_seq: self.max_seq.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
            first: (first != u64::MAX).then(|| at(first)),
            last: (first != u64::MAX).then(|| at(self.last_ns.load(Ordering::Relaxed))),
        }
    }
}

/// A throughput receiver: TCP accepts any number of connections and
/// discards their data; UDP counts datagrams carrying this sink's run id
/// (see [`encode_seq`]). Dropping it (or [`stop`]) stops it.
///
/// [`stop`]: Sink::stop
#[derive(Debug)]
pub struct Sink {
    workers: Workers,
    counters: Arc<Counters>,
    proto: Proto,
    port: u16,
    run_id: u64,
}

impl Sink {
    /// Protocol.
    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// The bound port (the ephemeral one when 0 was asked for).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The run id UDP senders must put in their datagrams.
    pub fn run_id(&self) -> u64 {
        self.run_id
    }

    /// Counters so far.
    pub fn stats(&self) -> SinkStats {
        self.counters.stats()
    }

    /// Stops receiving and returns the final counters.
    pub fn stop(mut self) -> SinkStats {
        self.workers.stop();
        self.counters.stats()
    }
}

/// Starts a throughput sink on `port` (all addresses) inside `ns`.
pub fn start_sink(ns: &NetNs, proto: Proto, port: u16) -> Result<Sink, ProbeError> {
    let counters = Arc::new(Counters::new());
    let run_id: u64 = rand::random();
    let mut workers = Workers::default();
    let stop = workers.stop_flag();
    let c = counters.clone();
    let bound_port;
    match proto {
        Proto::Tcp => {
            let l = ns.run(move || tcp_listener(port))??;
            bound_port = l.local_addr().map(|a| a.port()).unwrap_or(port);
            let conns = workers.conns();
            workers.spawn(format!("sink-tcp-{bound_port}"), move || {
                accept_loop(&l, &stop, &conns, "sink-conn", move |s, stop| {
                    tcp_sink_conn(s, &stop, &c)
                })
            })?;
        }
        Proto::Udp => {
            let u = ns.run(move || {
                let u = udp_service_socket(port)?;
                // Absorb bursts; the forced variant ignores rmem_max (root).
                let big = 16 << 20;
                if rustix::net::sockopt::set_socket_recv_buffer_size_force(&u, big).is_err() {
                    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&u, big);
                }
                Ok::<_, ProbeError>(u)
            })??;
            bound_port = u.local_addr().map(|a| a.port()).unwrap_or(port);
            workers.spawn(format!("sink-udp-{bound_port}"), move || {
                udp_sink_loop(&u, &stop, &c, run_id)
            })?;
        }
    }
    Ok(Sink {
        workers,
        counters,
        proto,
        port: bound_port,
        run_id,
    })
}

fn tcp_sink_conn(mut s: TcpStream, stop: &AtomicBool, c: &Counters) {
    c.connections.fetch_add(1, Ordering::Relaxed);
    c.open.fetch_add(1, Ordering::Relaxed);
    if s.set_read_timeout(Some(POLL)).is_ok() {
        let mut buf = vec![0u8; 256 * 1024];
        while !stop.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => c.add(n),
                Err(e) if is_retry(&e) => {}
                Err(_) => break,
            }
        }
    }
    c.open.fetch_sub(1, Ordering::Relaxed);
}

fn udp_sink_loop(u: &UdpService, stop: &AtomicBool, c: &Counters, run_id: u64) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match u.recv(&mut buf) {
            Ok(Some((n, _, _))) => {
                if let Some((seq, run)) = decode_seq(&buf[..n])
                    && run == run_id
                {
                    c.datagrams.fetch_add(1, Ordering::Relaxed);
                    c.max_seq
                        .fetch_max(seq.saturating_add(1), Ordering::Relaxed);
                    c.add(n);
                }
            }
            Ok(None) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_round_trip() {
        let v4: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        assert_eq!(format_seen(v4, "web.2"), "seen 10.0.0.1:4000 by web.2\n");
        assert_eq!(parse_seen(&format_seen(v4, "web.2")), Some(v4));
        assert_eq!(
            parse_greeting(&format_seen(v4, "web.2")),
            Some((v4, Some("web.2".to_string())))
        );
        // Readers of `seen` ignore the rest of the line.
        assert_eq!(parse_greeting("seen 10.0.0.1:4000\n"), Some((v4, None)));
        assert_eq!(parse_seen("seen 10.0.0.1:4000 anything else"), Some(v4));
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:4000".parse().unwrap();
        assert_eq!(format_seen(mapped, "c"), "seen 10.0.0.1:4000 by c\n");
        let v6: SocketAddr = "[fd00::1]:53".parse().unwrap();
        assert_eq!(format_seen(v6, "c"), "seen [fd00::1]:53 by c\n");
        assert_eq!(parse_seen("seen [fd00::1]:53"), Some(v6));
        assert_eq!(parse_seen("seen nonsense\n"), None);
        assert_eq!(parse_seen("hello 10.0.0.1:1\n"), None);
    }

    #[test]
    fn seq_round_trip() {
        let mut b = [0u8; 20];
        encode_seq(&mut b, 7, 0xdead_beef_0000_0001);
        assert_eq!(decode_seq(&b), Some((7, 0xdead_beef_0000_0001)));
        assert_eq!(&b[..8], &[0, 0, 0, 0, 0, 0, 0, 7]);
        for n in 0..SEQ_HEADER {
            assert_eq!(decode_seq(&b[..n]), None);
        }
    }
}
