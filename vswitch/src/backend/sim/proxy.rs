//! The userland proxy (PUB-7) in a machine's stacks: per published port a
//! listener on the machine's interfaces that relays to the container from
//! the machine's interface towards it, so the container sees the gateway
//! address, as docker-proxy makes it. TCP: accept, connect, copy both ways
//! with half-close. UDP: one upstream socket per client address.

use std::collections::{BTreeSet, HashMap};

use smoltcp::iface::SocketHandle;
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

use crate::backend::hosted::proxy::Mapping;
use crate::scenario::plan::{Node, Plan, Proto};

use super::net::pick_stack;
use super::services::{tcp_socket, udp_socket};
use super::stack::{Stack, smol_ip};

const BUF: usize = 16 * 1024;

#[derive(Debug)]
struct Listener {
    stack: usize,
    handle: SocketHandle,
    map: Mapping,
    /// The machine stack that reaches the target.
    up_stack: usize,
    /// The machine's stacks (to route another family's target).
    mine: Vec<usize>,
    /// Every mapping of the machine (a smoltcp wildcard listener takes
    /// both families: the connection's own picks the target).
    all: Vec<Mapping>,
}

#[derive(Debug)]
struct TcpPair {
    client: (usize, SocketHandle),
    up: (usize, SocketHandle),
    up_closed: bool,
    client_closed: bool,
}

#[derive(Debug)]
struct UdpSession {
    listener: usize,
    client: IpEndpoint,
    local: Option<smoltcp::wire::IpAddress>,
    up: (usize, SocketHandle),
}

/// Every machine's relays.
#[derive(Debug, Default)]
pub(crate) struct Proxy {
    maps: Vec<Vec<Mapping>>,
    listeners: Vec<Listener>,
    pairs: Vec<TcpPair>,
    sessions: Vec<UdpSession>,
    next_port: u16,
    /// (stack, destination) of what it just handed a stack to send.
    pub(crate) sent: Vec<(usize, std::net::IpAddr)>,
}

impl Proxy {
    pub(crate) fn new(maps: &[Vec<Mapping>]) -> Proxy {
        Proxy {
            maps: maps.to_vec(),
            next_port: 45000,
            ..Proxy::default()
        }
    }

    fn port(&mut self) -> u16 {
        let p = self.next_port;
        self.next_port = if p >= 59999 { 45000 } else { p + 1 };
        p
    }

    /// Binds every mapping on the stacks of its machine that hold its
    /// address (all of them for a wildcard).
    pub(crate) fn bind(
        &mut self,
        stacks: &mut [Stack],
        nodes: &HashMap<Node, Vec<usize>>,
        plan: &Plan,
    ) {
        let _ = plan;
        for (m, maps) in std::mem::take(&mut self.maps).into_iter().enumerate() {
            let Some(mine) = nodes.get(&Node::Machine(m)) else {
                continue;
            };
            let all = maps.clone();
            for map in maps {
                let Some(up_stack) = pick_stack(stacks, mine, map.target.ip()) else {
                    continue;
                };
                for &s in mine {
                    let ip = map.listen.ip();
                    if !ip.is_unspecified() && !stacks[s].holds(ip) {
                        continue;
                    }
                    if ip.is_unspecified()
                        && !stacks[s]
                            .addrs
                            .iter()
                            .any(|(a, _)| a.is_ipv6() == ip.is_ipv6())
                    {
                        continue;
                    }
                    let addr = (!ip.is_unspecified()).then(|| smol_ip(ip));
                    let ep = IpListenEndpoint {
                        addr,
                        port: map.listen.port(),
                    };
                    let handle = match map.proto {
                        Proto::Tcp => {
                            let mut t = tcp_socket(BUF);
                            let _ = t.listen(ep);
                            stacks[s].sockets.add(t)
                        }
                        Proto::Udp => {
                            let mut u = udp_socket(16, BUF);
                            let _ = u.bind(ep);
                            stacks[s].sockets.add(u)
                        }
                    };
                    self.listeners.push(Listener {
                        stack: s,
                        handle,
                        map,
                        up_stack,
                        mine: mine.clone(),
                        all: all.clone(),
                    });
                }
            }
        }
    }

    /// One round of relaying after stack `s` was polled; `dirty` gets the
    /// stacks written to.
    pub(crate) fn step(&mut self, s: usize, stacks: &mut [Stack], dirty: &mut BTreeSet<usize>) {
        if self.listeners.is_empty() {
            return;
        }
        self.accept(s, stacks, dirty);
        self.relay_tcp(stacks, dirty);
        self.relay_udp(s, stacks, dirty);
    }

    fn accept(&mut self, s: usize, stacks: &mut [Stack], dirty: &mut BTreeSet<usize>) {
        for i in 0..self.listeners.len() {
            let l = &self.listeners[i];
            if l.stack != s || l.map.proto != Proto::Tcp {
                continue;
            }
            let st = stacks[s].sockets.get::<tcp::Socket>(l.handle).state();
            if st == tcp::State::Listen {
                continue;
            }
            let (map, old) = (l.map, l.handle);
            let t = stacks[s].sockets.get::<tcp::Socket>(old);
            let local = t.local_endpoint().map(|e| super::stack::std_ip(e.addr));
            // The mapping for the connection's family and address.
            let target = local.and_then(|ip| {
                l.all
                    .iter()
                    .find(|m| {
                        m.proto == Proto::Tcp
                            && m.listen.port() == map.listen.port()
                            && m.listen.ip().is_ipv6() == ip.is_ipv6()
                            && (m.listen.ip() == ip || m.listen.ip().is_unspecified())
                    })
                    .map(|m| m.target)
            });
            let up_stack = target.and_then(|t| pick_stack(stacks, &l.mine, t.ip()));
            let mut t = tcp_socket(BUF);
            let ip = map.listen.ip();
            let _ = t.listen(IpListenEndpoint {
                addr: (!ip.is_unspecified()).then(|| smol_ip(ip)),
                port: map.listen.port(),
            });
            self.listeners[i].handle = stacks[s].sockets.add(t);
            let (Some(target), Some(up_stack)) = (target, up_stack) else {
                // Not published on this family (PUB-4): reset.
                stacks[s].sockets.get_mut::<tcp::Socket>(old).abort();
                self.pairs.push(TcpPair {
                    client: (s, old),
                    up: (s, old),
                    up_closed: true,
                    client_closed: true,
                });
                continue;
            };
            let map = Mapping { target, ..map };
            let port = self.port();
            let mut up = tcp_socket(BUF);
            let u = &mut stacks[up_stack];
            let remote = IpEndpoint::new(smol_ip(map.target.ip()), map.target.port());
            let ok = up.connect(u.iface.context(), remote, port).is_ok();
            let uh = u.sockets.add(up);
            dirty.insert(up_stack);
            self.sent.push((up_stack, map.target.ip()));
            if !ok {
                stacks[s].sockets.get_mut::<tcp::Socket>(old).abort();
            }
            self.pairs.push(TcpPair {
                client: (s, old),
                up: (up_stack, uh),
                up_closed: false,
                client_closed: false,
            });
        }
    }

    fn relay_tcp(&mut self, stacks: &mut [Stack], dirty: &mut BTreeSet<usize>) {
        let mut buf = [0u8; 4096];
        self.pairs.retain_mut(|p| {
            let (cs, ch) = p.client;
            let (us, uh) = p.up;
            if p.up == p.client {
                // A reset client without upstream: gone once closed.
                let closed =
                    stacks[cs].sockets.get::<tcp::Socket>(ch).state() == tcp::State::Closed;
                if closed {
                    stacks[cs].sockets.remove(ch);
                }
                return !closed;
            }
            let up_state = stacks[us].sockets.get::<tcp::Socket>(uh).state();
            let cl_state = stacks[cs].sockets.get::<tcp::Socket>(ch).state();
            if up_state == tcp::State::Closed && cl_state == tcp::State::Closed {
                stacks[us].sockets.remove(uh);
                stacks[cs].sockets.remove(ch);
                return false;
            }
            if up_state == tcp::State::Closed && !p.up_closed && cl_state != tcp::State::Closed {
                // Upstream refused or reset: so is the client.
                let established = stacks[cs].sockets.get::<tcp::Socket>(ch).may_send();
                if !established || stacks[us].sockets.get::<tcp::Socket>(uh).recv_queue() == 0 {
                    stacks[cs].sockets.get_mut::<tcp::Socket>(ch).abort();
                    dirty.insert(cs);
                    p.up_closed = true;
                }
            }
            copy(
                stacks,
                (us, uh),
                (cs, ch),
                &mut buf,
                dirty,
                &mut p.up_closed,
            );
            copy(
                stacks,
                (cs, ch),
                (us, uh),
                &mut buf,
                dirty,
                &mut p.client_closed,
            );
            true
        });
    }

    fn relay_udp(&mut self, s: usize, stacks: &mut [Stack], dirty: &mut BTreeSet<usize>) {
        for i in 0..self.listeners.len() {
            let l = &self.listeners[i];
            if l.stack != s || l.map.proto != Proto::Udp {
                continue;
            }
            let (lh, up_stack, target) = (l.handle, l.up_stack, l.map.target);
            loop {
                let sock = stacks[s].sockets.get_mut::<udp::Socket>(lh);
                let Ok((data, meta)) = sock.recv() else { break };
                let data = data.to_vec();
                let pos = self
                    .sessions
                    .iter()
                    .position(|x| x.listener == i && x.client == meta.endpoint);
                let k = match pos {
                    Some(k) => k,
                    None => {
                        let port = self.port();
                        let mut u = udp_socket(16, BUF);
                        let _ = u.bind(port);
                        let h = stacks[up_stack].sockets.add(u);
                        self.sessions.push(UdpSession {
                            listener: i,
                            client: meta.endpoint,
                            local: meta.local_address,
                            up: (up_stack, h),
                        });
                        self.sessions.len() - 1
                    }
                };
                let (us, uh) = self.sessions[k].up;
                let dst = IpEndpoint::new(smol_ip(target.ip()), target.port());
                let _ = stacks[us]
                    .sockets
                    .get_mut::<udp::Socket>(uh)
                    .send_slice(&data, dst);
                dirty.insert(us);
                self.sent.push((us, target.ip()));
            }
        }
        for sess in &self.sessions {
            let (us, uh) = sess.up;
            let l = &self.listeners[sess.listener];
            while let Ok((data, _)) = stacks[us].sockets.get_mut::<udp::Socket>(uh).recv() {
                let data = data.to_vec();
                let mut m = udp::UdpMetadata::from(sess.client);
                m.local_address = sess.local;
                let _ = stacks[l.stack]
                    .sockets
                    .get_mut::<udp::Socket>(l.handle)
                    .send_slice(&data, m);
                dirty.insert(l.stack);
            }
        }
    }
}

/// Copies what `from` received into `to`; closes `to` once `from`'s peer
/// closed and everything went across.
fn copy(
    stacks: &mut [Stack],
    from: (usize, SocketHandle),
    to: (usize, SocketHandle),
    buf: &mut [u8],
    dirty: &mut BTreeSet<usize>,
    closed: &mut bool,
) {
    loop {
        let room = {
            let t = stacks[to.0].sockets.get::<tcp::Socket>(to.1);
            if !t.may_send() {
                break;
            }
            t.send_capacity() - t.send_queue()
        };
        let f = stacks[from.0].sockets.get_mut::<tcp::Socket>(from.1);
        if room == 0 || !f.can_recv() {
            break;
        }
        let n = room.min(buf.len());
        let Ok(got) = f.recv_slice(&mut buf[..n]) else {
            break;
        };
        if got == 0 {
            break;
        }
        dirty.insert(from.0);
        let _ = stacks[to.0]
            .sockets
            .get_mut::<tcp::Socket>(to.1)
            .send_slice(&buf[..got]);
        dirty.insert(to.0);
    }
    let f = stacks[from.0].sockets.get::<tcp::Socket>(from.1);
    let finished = !f.may_recv()
        && !f.can_recv()
        && f.state() != tcp::State::Listen
        && f.state() != tcp::State::SynReceived
        && f.state() != tcp::State::SynSent;
    if finished && !*closed {
        let t = stacks[to.0].sockets.get_mut::<tcp::Socket>(to.1);
        if t.may_send() || t.state() == tcp::State::SynSent {
            t.close();
            *closed = true;
            dirty.insert(to.0);
        } else if t.state() == tcp::State::Closed {
            *closed = true;
        }
    }
}
