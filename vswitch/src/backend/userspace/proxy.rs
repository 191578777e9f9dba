//! The docker-proxy equivalent (PUB-7): per published port, a listener in
//! the machine's namespace that relays to the container. A connection from
//! the machine itself (to `127.0.0.1:H` or its own address) or hairpinned
//! from a container through the host stack therefore reaches the container
//! from the machine's address on that network: the gateway address, as
//! with Docker. Connections from `lan` never get here: the engine DNATs
//! them before the host stack sees them (PUB-3).
//!
//! TCP: accept, connect to the container, copy both ways with half-close.
//! UDP: one session (a connected socket) per client address, forgotten
//! after [`UDP_IDLE`] without traffic.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::backend::hosted::proxy::Mapping;
use crate::netns::{NetNs, NetnsError};
use crate::scenario::plan::Proto;

/// How often blocked threads look at the stop flag.
const TICK: Duration = Duration::from_millis(100);
/// Connect timeout towards the container.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A UDP session without traffic for this long is forgotten.
pub const UDP_IDLE: Duration = Duration::from_secs(30);

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Entering the namespace failed.
    #[error("userland proxy: {0}")]
    Netns(#[from] NetnsError),
    /// Binding a listener failed (port in use, PUB-5).
    #[error("userland proxy: cannot bind {proto} {addr}: {source}")]
    Bind {
        /// The protocol.
        proto: Proto,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// A thread could not be started.
    #[error("userland proxy: cannot start a thread: {0}")]
    Thread(io::Error),
}

/// Running relays; dropping it (or [`Proxy::stop`]) stops every thread.
#[derive(Debug)]
pub struct Proxy {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

enum Bound {
    Tcp(TcpListener, SocketAddr),
    Udp(UdpSocket, SocketAddr),
}

impl Proxy {
    /// Binds every mapping in `ns` and starts relaying.
    pub fn start(ns: &NetNs, maps: &[Mapping]) -> Result<Proxy, ProxyError> {
        let list = maps.to_vec();
        let bound = ns.run(move || {
            list.iter()
                .map(|m| {
                    let err = |source| ProxyError::Bind {
                        proto: m.proto,
                        addr: m.listen,
                        source,
                    };
                    match m.proto {
                        Proto::Tcp => tcp_listener(m.listen)
                            .and_then(|l| l.set_nonblocking(true).map(|()| l))
                            .map(|l| Bound::Tcp(l, m.target))
                            .map_err(err),
                        Proto::Udp => UdpSocket::bind(m.listen)
                            .and_then(|u| u.set_read_timeout(Some(TICK)).map(|()| u))
                            .map(|u| Bound::Udp(u, m.target))
                            .map_err(err),
                    }
                })
                .collect::<Result<Vec<_>, _>>()
        })??;
        let mut p = Proxy {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            conns: Arc::new(Mutex::new(Vec::new())),
        };
        for b in bound {
            let stop = p.stop.clone();
            let conns = p.conns.clone();
            // Relay threads live in the namespace: their outgoing sockets
            // must be created there (threads they spawn inherit it).
            let h = ns.spawn(move || match b {
                Bound::Tcp(l, target) => tcp_accept_loop(&l, target, &stop, &conns),
                Bound::Udp(u, target) => udp_loop(&u, target, &stop, &conns),
            })?;
            p.threads.push(h);
        }
        Ok(p)
    }

    /// Stops every relay and waits for its threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
        let conns: Vec<_> = self
            .conns
            .lock()
            .map(|mut c| c.drain(..).collect())
            .unwrap_or_default();
        for h in conns {
            let _ = h.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn spawn_conn(conns: &Mutex<Vec<JoinHandle<()>>>, f: impl FnOnce() + Send + 'static) {
    if let Ok(h) = std::thread::Builder::new()
        .name("proxy-conn".into())
        .spawn(f)
        && let Ok(mut c) = conns.lock()
    {
        c.retain(|h| !h.is_finished());
        c.push(h);
    }
}

fn wait_readable(fd: &impl AsFd) {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let _ = poll(&mut fds, PollTimeout::from(TICK.as_millis() as u16));
}

fn tcp_accept_loop(
    l: &TcpListener,
    target: SocketAddr,
    stop: &Arc<AtomicBool>,
    conns: &Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((client, _)) => {
                let stop = stop.clone();
                spawn_conn(conns, move || tcp_relay(client, target, &stop));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_readable(l),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn tcp_relay(client: TcpStream, target: SocketAddr, stop: &Arc<AtomicBool>) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) else {
        return;
    };
    for s in [&client, &server] {
        let _ = s.set_read_timeout(Some(TICK));
        let _ = s.set_nodelay(true);
    }
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let stop2 = stop.clone();
    let up = std::thread::Builder::new()
        .name("proxy-up".into())
        .spawn(move || copy(c2, s2, &stop2));
    copy(server, client, stop);
    if let Ok(h) = up {
        let _ = h.join();
    }
}

/// Copies `from` → `to` until EOF (then half-closes `to`), an error, or stop.
fn copy(mut from: TcpStream, mut to: TcpStream, stop: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    let _ = from.shutdown(Shutdown::Read);
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
        }
    }
}

struct Session {
    sock: Arc<UdpSocket>,
    last: Arc<Mutex<Instant>>,
}

/// A TCP listener on `addr`; on the IPv6 wildcard with `IPV6_V6ONLY`, so
/// that it sits beside the IPv4 wildcard's listener on the same port.
fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrIn6, bind, listen, setsockopt, socket,
        sockopt,
    };
    let SocketAddr::V6(a6) = addr else {
        return TcpListener::bind(addr);
    };
    let fd = socket(
        AddressFamily::Inet6,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn6::from(a6))?;
    listen(&fd, Backlog::new(1024).map_err(io::Error::from)?)?;
    Ok(TcpListener::from(fd))
}

fn udp_loop(
    u: &UdpSocket,
    target: SocketAddr,
    stop: &Arc<AtomicBool>,
    conns: &Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    let Ok(listen) = u.try_clone().map(Arc::new) else {
        return;
    };
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        sessions.retain(|_, s| {
            s.last
                .lock()
                .map(|t| now.saturating_duration_since(*t) < UDP_IDLE)
                .unwrap_or(false)
        });
        let (n, client) = match u.recv_from(&mut buf) {
            Ok(x) => x,
            Err(_) => continue,
        };
        let s = match sessions.entry(client) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let any: SocketAddr = if target.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                }
                .parse()
                .expect("a wildcard address");
                let Ok(sock) = UdpSocket::bind(any).and_then(|s| {
                    s.connect(target)?;
                    s.set_read_timeout(Some(TICK))?;
                    Ok(Arc::new(s))
                }) else {
                    continue;
                };
                let last = Arc::new(Mutex::new(now));
                let (back, l2, listen2, stop2) =
                    (sock.clone(), last.clone(), listen.clone(), stop.clone());
                spawn_conn(conns, move || {
                    udp_back(&back, &listen2, client, &l2, &stop2)
                });
                v.insert(Session { sock, last })
            }
        };
        if let Ok(mut t) = s.last.lock() {
            *t = now;
        }
        let _ = s.sock.send(&buf[..n]);
    }
}

/// Container → client for one UDP session, until it idles out.
fn udp_back(
    sock: &UdpSocket,
    listen: &UdpSocket,
    client: SocketAddr,
    last: &Mutex<Instant>,
    stop: &AtomicBool,
) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv(&mut buf) {
            Ok(n) => {
                if let Ok(mut t) = last.lock() {
                    *t = Instant::now();
                }
                let _ = listen.send_to(&buf[..n], client);
            }
            Err(_) => {
                let idle = last.lock().map(|t| t.elapsed() >= UDP_IDLE).unwrap_or(true);
                if idle {
                    return;
                }
            }
        }
    }
}
