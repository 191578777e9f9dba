//! The services of the sim, run on the stacks' sockets after every poll:
//! the echo services (the `seen <ip>:<port> by <node>` greeting of
//! [`format_seen`]), the throughput sink and the externals' authoritative
//! DNS servers (UDP and TCP, answered by [`authoritative_answer`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::IpListenEndpoint;

use crate::probe::{authoritative_answer, authoritative_answer_udp, format_seen};
use crate::scenario::plan::Proto;

use super::stack::{Stack, std_ip};

/// Socket buffer of an echo connection, each way.
const ECHO_BUF: usize = 4096;
/// Socket buffer of a throughput sink connection.
pub(crate) const SINK_BUF: usize = 256 * 1024;

/// What a TCP service does with its connections.
#[derive(Clone, Debug)]
pub(crate) enum TcpRole {
    /// Greets with `seen … by <node>` and echoes.
    Echo(Arc<str>),
    /// Answers DNS over TCP from this table.
    Dns(Arc<BTreeMap<String, Vec<IpAddr>>>),
    /// Reads and counts (the throughput receiver).
    Sink,
}

/// One accepted connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub handle: SocketHandle,
    greeted: bool,
    inbuf: Vec<u8>,
    out: Vec<u8>,
}

/// A service bound on one stack.
#[derive(Debug)]
pub(crate) enum Service {
    /// A TCP listener and its connections.
    Tcp {
        port: u16,
        role: TcpRole,
        listener: SocketHandle,
        conns: Vec<Conn>,
        buf: usize,
        /// Bytes received (sink).
        bytes: u64,
    },
    /// A UDP echo.
    UdpEcho {
        node: Arc<str>,
        handle: SocketHandle,
    },
    /// A UDP DNS server.
    UdpDns {
        table: Arc<BTreeMap<String, Vec<IpAddr>>>,
        handle: SocketHandle,
    },
    /// A UDP sink counting datagrams and bytes.
    UdpSink {
        handle: SocketHandle,
        datagrams: u64,
        bytes: u64,
    },
}

pub(crate) fn tcp_socket(buf: usize) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; buf]),
        tcp::SocketBuffer::new(vec![0; buf]),
    );
    s.set_nagle_enabled(false);
    s.set_ack_delay(None);
    s
}

pub(crate) fn udp_socket(packets: usize, bytes: usize) -> udp::Socket<'static> {
    udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; packets], vec![0; bytes]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; packets], vec![0; bytes]),
    )
}

fn listen(stack: &mut Stack, port: u16, buf: usize) -> SocketHandle {
    let mut s = tcp_socket(buf);
    let _ = s.listen(IpListenEndpoint { addr: None, port });
    stack.sockets.add(s)
}

/// Binds a service on `stack`; `false` when the port is taken there.
pub(crate) fn bind(stack: &mut Stack, proto: Proto, port: u16, role: TcpRole) -> bool {
    let taken = stack.services.iter().any(|s| match (s, proto) {
        (Service::Tcp { port: p, .. }, Proto::Tcp) => *p == port,
        (Service::UdpEcho { handle, .. } | Service::UdpDns { handle, .. }, Proto::Udp)
        | (Service::UdpSink { handle, .. }, Proto::Udp) => {
            stack.sockets.get::<udp::Socket>(*handle).endpoint().port == port
        }
        _ => false,
    });
    if taken {
        return false;
    }
    let svc = match proto {
        Proto::Tcp => {
            let buf = if matches!(role, TcpRole::Sink) {
                SINK_BUF
            } else {
                ECHO_BUF
            };
            Service::Tcp {
                port,
                listener: listen(stack, port, buf),
                role,
                conns: Vec::new(),
                buf,
                bytes: 0,
            }
        }
        Proto::Udp => {
            let (packets, bytes) = match role {
                TcpRole::Sink => (1024, 2 << 20),
                _ => (8, 16 * 1024),
            };
            let mut u = udp_socket(packets, bytes);
            let _ = u.bind(port);
            let handle = stack.sockets.add(u);
            match role {
                TcpRole::Echo(node) => Service::UdpEcho { node, handle },
                TcpRole::Dns(table) => Service::UdpDns { table, handle },
                TcpRole::Sink => Service::UdpSink {
                    handle,
                    datagrams: 0,
                    bytes: 0,
                },
            }
        }
    };
    stack.services.push(svc);
    true
}

/// Removes every service of `stack` (a stopped container's processes end:
/// their connections are reset).
pub(crate) fn stop_all(stack: &mut Stack) {
    for s in std::mem::take(&mut stack.services) {
        match s {
            Service::Tcp {
                listener, conns, ..
            } => {
                stack.sockets.remove(listener);
                for c in conns {
                    stack.sockets.get_mut::<tcp::Socket>(c.handle).abort();
                    stack.sockets.remove(c.handle);
                }
            }
            Service::UdpEcho { handle, .. }
            | Service::UdpDns { handle, .. }
            | Service::UdpSink { handle, .. } => {
                stack.sockets.remove(handle);
            }
        }
    }
}

/// Runs every service of `stack` once: accepts, reads, answers.
/// Returns whether any socket was touched (the stack needs polling again).
pub(crate) fn serve(stack: &mut Stack) -> bool {
    let mut touched = false;
    let mut services = std::mem::take(&mut stack.services);
    for svc in &mut services {
        touched |= match svc {
            Service::Tcp {
                port,
                role,
                listener,
                conns,
                buf,
                bytes,
            } => serve_tcp(stack, *port, role, listener, conns, *buf, bytes),
            Service::UdpEcho { node, handle } => serve_udp(stack, *handle, |peer, data| {
                let mut r = format_seen(peer, node).into_bytes();
                r.extend_from_slice(data);
                Some(r)
            }),
            Service::UdpDns { table, handle } => {
                serve_udp(stack, *handle, |_, q| authoritative_answer_udp(table, q))
            }
            Service::UdpSink {
                handle,
                datagrams,
                bytes,
            } => {
                let s = stack.sockets.get_mut::<udp::Socket>(*handle);
                let mut any = false;
                while let Ok((d, _)) = s.recv() {
                    *datagrams += 1;
                    *bytes += d.len() as u64;
                    any = true;
                }
                any
            }
        };
    }
    stack.services = services;
    touched
}

fn serve_udp(
    stack: &mut Stack,
    handle: SocketHandle,
    mut answer: impl FnMut(SocketAddr, &[u8]) -> Option<Vec<u8>>,
) -> bool {
    let s = stack.sockets.get_mut::<udp::Socket>(handle);
    let mut touched = false;
    while s.can_send() {
        let Ok((data, meta)) = s.recv() else { break };
        touched = true;
        let peer = SocketAddr::new(std_ip(meta.endpoint.addr), meta.endpoint.port);
        if let Some(reply) = answer(peer, data) {
            let mut m = udp::UdpMetadata::from(meta.endpoint);
            m.local_address = meta.local_address;
            let _ = s.send_slice(&reply, m);
        }
    }
    touched
}

#[allow(clippy::too_many_arguments)]
fn serve_tcp(
    stack: &mut Stack,
    port: u16,
    role: &TcpRole,
    listener: &mut SocketHandle,
    conns: &mut Vec<Conn>,
    buf: usize,
    bytes: &mut u64,
) -> bool {
    let mut touched = false;
    if stack.sockets.get::<tcp::Socket>(*listener).state() != tcp::State::Listen {
        conns.push(Conn {
            handle: *listener,
            greeted: false,
            inbuf: Vec::new(),
            out: Vec::new(),
        });
        *listener = listen(stack, port, buf);
        touched = true;
    }
    conns.retain_mut(|c| {
        let s = stack.sockets.get_mut::<tcp::Socket>(c.handle);
        match s.state() {
            tcp::State::Closed | tcp::State::TimeWait => {
                stack.sockets.remove(c.handle);
                return false;
            }
            tcp::State::SynReceived | tcp::State::Listen => return true,
            _ => {}
        }
        touched |= conn_step(s, c, role, bytes);
        true
    });
    touched
}

/// One connection's work: greet, read, answer, close after the peer did.
fn conn_step(s: &mut tcp::Socket<'static>, c: &mut Conn, role: &TcpRole, bytes: &mut u64) -> bool {
    let mut touched = false;
    if !c.greeted {
        c.greeted = true;
        if let (TcpRole::Echo(node), Some(peer)) = (role, s.remote_endpoint()) {
            let peer = SocketAddr::new(std_ip(peer.addr), peer.port);
            c.out.extend_from_slice(format_seen(peer, node).as_bytes());
        }
    }
    let mut tmp = [0u8; 4096];
    while s.can_recv() {
        let Ok(n) = s.recv_slice(&mut tmp) else { break };
        if n == 0 {
            break;
        }
        touched = true;
        match role {
            TcpRole::Echo(_) => c.out.extend_from_slice(&tmp[..n]),
            TcpRole::Sink => *bytes += n as u64,
            TcpRole::Dns(table) => {
                c.inbuf.extend_from_slice(&tmp[..n]);
                dns_frames(table, &mut c.inbuf, &mut c.out);
            }
        }
    }
    if !c.out.is_empty()
        && s.can_send()
        && let Ok(n) = s.send_slice(&c.out)
    {
        c.out.drain(..n);
        touched |= n > 0;
    }
    if !s.may_recv() && c.out.is_empty() && s.state() == tcp::State::CloseWait {
        s.close();
        touched = true;
    }
    touched
}

/// Answers every complete length-prefixed query in `inbuf`.
fn dns_frames(table: &BTreeMap<String, Vec<IpAddr>>, inbuf: &mut Vec<u8>, out: &mut Vec<u8>) {
    while inbuf.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([inbuf[0], inbuf[1]]));
        if inbuf.len() < 2 + len {
            return;
        }
        let q: Vec<u8> = inbuf.drain(..2 + len).skip(2).collect();
        if let Some(r) = authoritative_answer(table, &q) {
            out.extend_from_slice(&(r.len() as u16).to_be_bytes());
            out.extend_from_slice(&r);
        }
    }
}

/// Bytes and datagrams a sink of `proto` on `port` received.
pub(crate) fn sink_stats(stack: &Stack, proto: Proto, port: u16) -> Option<(u64, u64)> {
    stack.services.iter().find_map(|s| match (s, proto) {
        (
            Service::Tcp {
                port: p,
                role: TcpRole::Sink,
                bytes,
                ..
            },
            Proto::Tcp,
        ) if *p == port => Some((*bytes, 0)),
        (
            Service::UdpSink {
                handle,
                datagrams,
                bytes,
            },
            Proto::Udp,
        ) if stack.sockets.get::<udp::Socket>(*handle).endpoint().port == port => {
            Some((*bytes, *datagrams))
        }
        _ => None,
    })
}

/// Removes the sink of `proto` on `port`.
pub(crate) fn unbind_sink(stack: &mut Stack, proto: Proto, port: u16) {
    let mut keep = Vec::new();
    for s in std::mem::take(&mut stack.services) {
        let is = match (&s, proto) {
            (
                Service::Tcp {
                    port: p,
                    role: TcpRole::Sink,
                    ..
                },
                Proto::Tcp,
            ) => *p == port,
            (Service::UdpSink { handle, .. }, Proto::Udp) => {
                stack.sockets.get::<udp::Socket>(*handle).endpoint().port == port
            }
            _ => false,
        };
        if is {
            let mut one = vec![s];
            std::mem::swap(&mut stack.services, &mut one);
            stop_all(stack);
        } else {
            keep.push(s);
        }
    }
    stack.services = keep;
}
