//! Connection tracking on the caller's clock: a bounded table of flows,
//! each known by its original tuple and by its reply tuple (the tuple its
//! replies carry on the wire, after NAT), with Linux-like states and
//! timeouts.
//!
//! When the table is full, expired entries are swept first (at most once a
//! second, so a flood of new flows cannot make every packet pay a sweep);
//! if that frees nothing the new flow is refused and the caller drops the
//! packet with reason `conntrack-full`, as Linux does ("nf_conntrack: table
//! full, dropping packet"). Existing flows are never evicted for new ones.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::flow::{FlowAddr, IPPROTO_TCP, IPPROTO_UDP, Tuple, tcp_flags};

/// First port NAT picks when the preferred one is taken (Linux's default
/// `ip_local_port_range`, PUB-9).
pub const NAT_PORT_MIN: u16 = 32768;
/// Last port NAT picks.
pub const NAT_PORT_MAX: u16 = 60999;
/// Most candidate ports tried before a new flow is refused.
const PORT_PROBES: u32 = 4096;
/// Least time between two sweeps forced by a full table.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Which way a packet goes relative to the connection's first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Same direction as the packet that created the entry.
    Orig,
    /// The other way.
    Reply,
}

impl Dir {
    fn idx(self) -> usize {
        match self {
            Dir::Orig => 0,
            Dir::Reply => 1,
        }
    }
}

/// TCP states (Linux's names, fewer of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    /// SYN seen.
    SynSent,
    /// SYN+ACK seen.
    SynRecv,
    /// Handshake done.
    Established,
    /// One side sent FIN.
    FinWait,
    /// Both sides sent FIN.
    LastAck,
    /// Both FINs and an ACK after them.
    TimeWait,
    /// RST seen.
    Close,
}

/// Per-protocol state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// TCP with the FINs seen per direction.
    Tcp(TcpState, [bool; 2]),
    /// UDP.
    Udp,
    /// ICMP echo.
    Icmp,
    /// Any other protocol.
    Other,
}

/// What created a flow (for counters and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The machine's own host stack on its uplink (tracked so NAT never
    /// reuses its ports; translated only on a collision).
    Host,
    /// A container's flow leaving with the machine's address (BR-10).
    Masquerade,
    /// Routed without translation (`masquerade = false`, BR-11).
    Routed,
    /// A published port reached from outside (PUB-1, PUB-3).
    Dnat,
    /// A published port reached from a container with the userland proxy
    /// off: DNAT plus SNAT to the gateway (PUB-8).
    Hairpin,
}

/// Timeouts, Linux's defaults unless stated.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// SYN_SENT.
    pub tcp_syn_sent: Duration,
    /// SYN_RECV.
    pub tcp_syn_recv: Duration,
    /// ESTABLISHED (5 days).
    pub tcp_established: Duration,
    /// FIN_WAIT (and CLOSE_WAIT).
    pub tcp_fin_wait: Duration,
    /// LAST_ACK.
    pub tcp_last_ack: Duration,
    /// TIME_WAIT.
    pub tcp_time_wait: Duration,
    /// CLOSE (after RST).
    pub tcp_close: Duration,
    /// UDP, no reply seen yet.
    pub udp: Duration,
    /// UDP after a reply (assured).
    pub udp_stream: Duration,
    /// ICMP echo.
    pub icmp: Duration,
    /// Other protocols.
    pub generic: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let s = Duration::from_secs;
        Timeouts {
            tcp_syn_sent: s(120),
            tcp_syn_recv: s(60),
            tcp_established: s(432_000),
            tcp_fin_wait: s(120),
            tcp_last_ack: s(30),
            tcp_time_wait: s(120),
            tcp_close: s(10),
            udp: s(30),
            udp_stream: s(180),
            icmp: s(30),
            generic: s(600),
        }
    }
}

/// One tracked flow.
#[derive(Clone, Copy, Debug)]
pub struct Conn<A = Ipv4Addr> {
    /// Tuple of the first packet, before translation.
    pub orig: Tuple<A>,
    /// Tuple replies carry on the wire, before translation back.
    pub reply: Tuple<A>,
    /// What created it.
    pub kind: Kind,
    /// Protocol state.
    pub state: State,
    /// A packet was seen in the reply direction.
    pub seen_reply: bool,
    /// When it is forgotten unless refreshed.
    pub expires: Instant,
    /// The directions offered to a kernel fast path (bit 0 original, bit
    /// 1 reply; see [`crate::engine::offload`]): cleared, and the flow's
    /// id reported by [`Conntrack::drain_retracted`], once a TCP flow leaves
    /// ESTABLISHED or any flow the table.
    pub offered: u8,
}

impl<A: FlowAddr> Conn<A> {
    /// The tuple a packet going `dir` carries before translation.
    pub fn tuple(&self, dir: Dir) -> &Tuple<A> {
        match dir {
            Dir::Orig => &self.orig,
            Dir::Reply => &self.reply,
        }
    }

    /// The tuple a packet going `dir` must carry after translation.
    pub fn translated(&self, dir: Dir) -> Tuple<A> {
        match dir {
            Dir::Orig => self.reply.inverse(),
            Dir::Reply => self.orig.inverse(),
        }
    }
}

/// Conntrack counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConntrackCounters {
    /// Flows created.
    pub created: u64,
    /// Flows forgotten after their timeout.
    pub expired: u64,
    /// New flows refused because the table was full.
    pub full: u64,
    /// Flows whose port (or echo id) was changed to avoid a collision.
    pub port_remapped: u64,
    /// New flows refused because no free port was found.
    pub ports_exhausted: u64,
}

impl std::ops::AddAssign for ConntrackCounters {
    fn add_assign(&mut self, o: ConntrackCounters) {
        self.created += o.created;
        self.expired += o.expired;
        self.full += o.full;
        self.port_remapped += o.port_remapped;
        self.ports_exhausted += o.ports_exhausted;
    }
}

/// A tuple packed for hashing (see [`FlowAddr::key`]).
#[inline]
fn key<A: FlowAddr>(t: &Tuple<A>) -> A::Key {
    A::key(t)
}

/// Multiplicative hasher for packed tuples (the same reasoning as the FDB's
/// hasher: no adversary benefits from SipHash here, and the table is
/// bounded).
#[derive(Debug, Default, Clone, Copy)]
struct TupleHasher(u64);

impl Hasher for TupleHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 31)
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    #[inline]
    fn write_u128(&mut self, x: u128) {
        self.write_u64(x as u64);
        self.write_u64((x >> 64) as u64);
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
}

/// Why a flow could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The table is full.
    Full,
    /// No free port for the translation.
    PortsExhausted,
}

/// The table.
#[derive(Debug)]
pub struct Conntrack<A: FlowAddr = Ipv4Addr> {
    slots: Vec<Option<Conn<A>>>,
    free: Vec<u32>,
    index: HashMap<A::Key, (u32, Dir), BuildHasherDefault<TupleHasher>>,
    capacity: usize,
    timeouts: Timeouts,
    last_sweep: Option<Instant>,
    counters: ConntrackCounters,
    /// Offered flows no longer offerable, since the last
    /// [`Conntrack::drain_retracted`].
    retracted: Vec<u32>,
}

impl<A: FlowAddr> Conntrack<A> {
    /// An empty table holding at most `capacity` flows.
    pub fn new(capacity: usize, timeouts: Timeouts) -> Conntrack<A> {
        Conntrack {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::default(),
            capacity,
            timeouts,
            last_sweep: None,
            counters: ConntrackCounters::default(),
            retracted: Vec::new(),
        }
    }

    /// Marks direction `dir` of flow `id` as offered to a kernel fast
    /// path; false when it already was (or there is no such flow).
    pub fn offer(&mut self, id: u32, dir: Dir) -> bool {
        let Some(c) = self.slots.get_mut(id as usize).and_then(Option::as_mut) else {
            return false;
        };
        let bit = 1 << dir.idx();
        let fresh = c.offered & bit == 0;
        c.offered |= bit;
        fresh
    }

    /// The ids of offered flows that left ESTABLISHED (TCP) or the table
    /// since the last call (a fast path must forget them before the id is
    /// offered again); the list keeps its room.
    pub fn drain_retracted(&mut self) -> std::vec::Drain<'_, u32> {
        self.retracted.drain(..)
    }

    /// Forgets which flows were offered and retracted (the fast path
    /// forgot them all).
    pub fn forget_offers(&mut self) {
        self.retracted.clear();
        for c in self.slots.iter_mut().flatten() {
            c.offered = 0;
        }
    }

    /// Restarts the timer of flow `id` for a packet going `dir` that
    /// something else carried (its state unchanged).
    pub fn refresh(&mut self, id: u32, dir: Dir, now: Instant) {
        self.update(id, dir, None, now);
    }

    /// Number of live (not yet swept) flows.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// True when no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most flows.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Counters.
    pub fn counters(&self) -> &ConntrackCounters {
        &self.counters
    }

    /// A flow by id.
    pub fn get(&self, id: u32) -> Option<&Conn<A>> {
        self.slots.get(id as usize)?.as_ref()
    }

    /// Every live flow with its id.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Conn<A>)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i as u32, c)))
    }

    /// The flow a packet with tuple `t` belongs to, and its direction. An
    /// expired flow is removed and not returned.
    #[inline]
    pub fn lookup(&mut self, t: &Tuple<A>, now: Instant) -> Option<(u32, Dir)> {
        let &(id, dir) = self.index.get(&key(t))?;
        let c = self.slots[id as usize].as_ref()?;
        if c.expires <= now {
            self.remove(id);
            self.counters.expired += 1;
            return None;
        }
        Some((id, dir))
    }

    /// True when a tuple is in use in either direction (expired or not).
    pub fn in_use(&self, t: &Tuple<A>) -> bool {
        self.index.contains_key(&key(t))
    }

    /// `want` if no flow uses it, else the same tuple with its destination
    /// port (and, for ICMP, its echo id) moved into the NAT range; `None`
    /// when nothing free was found (or the protocol has no ports).
    pub fn free_reply(&mut self, want: Tuple<A>) -> Option<Tuple<A>> {
        if !self.in_use(&want) {
            return Some(want);
        }
        if !want.has_ports() {
            return None;
        }
        let span = u32::from(NAT_PORT_MAX - NAT_PORT_MIN) + 1;
        let mut h = TupleHasher::default();
        key(&want).hash(&mut h);
        let start = (h.finish() % u64::from(span)) as u32;
        for i in 0..PORT_PROBES.min(span) {
            let p = NAT_PORT_MIN + ((start + i) % span) as u16;
            let mut t = want;
            t.dport = p;
            if t.proto == A::ICMP {
                t.sport = p;
            }
            if !self.in_use(&t) {
                self.counters.port_remapped += 1;
                return Some(t);
            }
        }
        self.counters.ports_exhausted += 1;
        None
    }

    /// Starts tracking a flow whose first packet had `orig` and whose
    /// replies will carry `reply`; both must be unused (see
    /// [`Conntrack::free_reply`]). `tcp_flags` are the first packet's.
    pub fn insert(
        &mut self,
        orig: Tuple<A>,
        reply: Tuple<A>,
        kind: Kind,
        tcp: Option<u8>,
        now: Instant,
    ) -> Result<u32, Refused> {
        if self.len() >= self.capacity {
            let due = self
                .last_sweep
                .is_none_or(|t| now.saturating_duration_since(t) >= FULL_SWEEP_EVERY);
            if due {
                self.expire(now);
            }
            if self.len() >= self.capacity {
                self.counters.full += 1;
                return Err(Refused::Full);
            }
        }
        debug_assert!(!self.in_use(&orig) && !self.in_use(&reply));
        let state = match orig.proto {
            IPPROTO_TCP => {
                let f = tcp.unwrap_or(tcp_flags::SYN);
                // A flow picked up mid-stream (Linux's tcp_loose) is taken
                // as established.
                let s = if f & tcp_flags::SYN != 0 && f & tcp_flags::ACK == 0 {
                    TcpState::SynSent
                } else {
                    TcpState::Established
                };
                State::Tcp(s, [false; 2])
            }
            IPPROTO_UDP => State::Udp,
            p if p == A::ICMP => State::Icmp,
            _ => State::Other,
        };
        let mut c = Conn {
            orig,
            reply,
            kind,
            state,
            seen_reply: false,
            expires: now,
            offered: 0,
        };
        c.expires = now + self.timeout_of(&c);
        let id = self.place(c);
        self.counters.created += 1;
        Ok(id)
    }

    /// Stores a flow in a free slot and indexes both of its tuples.
    fn place(&mut self, c: Conn<A>) -> u32 {
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(c);
                id
            }
            None => {
                self.slots.push(Some(c));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key(&c.orig), (id, Dir::Orig));
        self.index.insert(key(&c.reply), (id, Dir::Reply));
        id
    }

    /// Advances a flow's state for a packet going `dir` (with its TCP
    /// flags) and restarts its timer.
    #[inline]
    pub fn update(&mut self, id: u32, dir: Dir, tcp: Option<u8>, now: Instant) {
        let Some(mut c) = self.slots.get(id as usize).copied().flatten() else {
            return;
        };
        if dir == Dir::Reply {
            c.seen_reply = true;
        }
        if let (State::Tcp(s, mut fin), Some(f)) = (c.state, tcp) {
            let s = if f & tcp_flags::RST != 0 {
                TcpState::Close
            } else if f & tcp_flags::SYN != 0 {
                match (s, dir, f & tcp_flags::ACK != 0) {
                    // A new connection reusing the tuple of a closed one.
                    (TcpState::TimeWait | TcpState::Close, Dir::Orig, false) => {
                        fin = [false; 2];
                        TcpState::SynSent
                    }
                    (TcpState::SynSent, Dir::Reply, true) => TcpState::SynRecv,
                    (s, _, _) => s,
                }
            } else if f & tcp_flags::FIN != 0 {
                fin[dir.idx()] = true;
                if fin[0] && fin[1] {
                    TcpState::LastAck
                } else {
                    TcpState::FinWait
                }
            } else if f & tcp_flags::ACK != 0 {
                match s {
                    TcpState::SynRecv if dir == Dir::Orig => TcpState::Established,
                    TcpState::LastAck => TcpState::TimeWait,
                    s => s,
                }
            } else {
                s
            };
            c.state = State::Tcp(s, fin);
            if c.offered != 0 && s != TcpState::Established {
                c.offered = 0;
                self.retracted.push(id);
            }
        }
        c.expires = now + self.timeout_of(&c);
        self.slots[id as usize] = Some(c);
    }

    fn timeout_of(&self, c: &Conn<A>) -> Duration {
        let t = &self.timeouts;
        match c.state {
            State::Tcp(s, _) => match s {
                TcpState::SynSent => t.tcp_syn_sent,
                TcpState::SynRecv => t.tcp_syn_recv,
                TcpState::Established => t.tcp_established,
                TcpState::FinWait => t.tcp_fin_wait,
                TcpState::LastAck => t.tcp_last_ack,
                TcpState::TimeWait => t.tcp_time_wait,
                TcpState::Close => t.tcp_close,
            },
            State::Udp if c.seen_reply => t.udp_stream,
            State::Udp => t.udp,
            State::Icmp => t.icmp,
            State::Other => t.generic,
        }
    }

    /// Forgets a flow.
    pub fn remove(&mut self, id: u32) {
        if let Some(c) = self.slots.get_mut(id as usize).and_then(Option::take) {
            self.index.remove(&key(&c.orig));
            self.index.remove(&key(&c.reply));
            self.free.push(id);
            if c.offered != 0 {
                self.retracted.push(id);
            }
        }
    }

    /// Forgets every flow whose timer ran out; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        self.last_sweep = Some(now);
        let dead: Vec<u32> = self
            .iter()
            .filter(|(_, c)| c.expires <= now)
            .map(|(id, _)| id)
            .collect();
        for &id in &dead {
            self.remove(id);
        }
        self.counters.expired += dead.len() as u64;
        dead.len()
    }

    /// Takes every live flow out of the table, leaving it empty (its
    /// counters stay): the state a rebuilt engine carries over, as the
    /// host's conntrack outlives a container restart (see
    /// [`super::ConntrackState`]).
    pub fn take_flows(&mut self) -> Vec<Conn<A>> {
        let flows: Vec<Conn<A>> = self.slots.drain(..).flatten().collect();
        self.free.clear();
        self.index.clear();
        self.retracted.clear();
        flows
    }

    /// Puts flows taken from another table back as they were (state,
    /// translation, timer). A flow already expired at `now`, or whose
    /// tuples are in use here, or beyond the capacity is left out; returns
    /// how many were restored. Restored flows are not counted as created.
    pub fn restore_flows(
        &mut self,
        flows: impl IntoIterator<Item = Conn<A>>,
        now: Instant,
    ) -> usize {
        let mut n = 0;
        for c in flows {
            if c.expires <= now
                || self.len() >= self.capacity
                || self.in_use(&c.orig)
                || self.in_use(&c.reply)
            {
                continue;
            }
            // (What another engine offered is not this one's.)
            self.place(Conn { offered: 0, ..c });
            n += 1;
        }
        n
    }

    /// The earliest expiry of any flow (O(n): for tests and idle wake-ups).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.iter().map(|(_, c)| c.expires).min()
    }
}

/// The conntrack tables of an engine by machine name, taken out of it to be
/// restored into the engine rebuilt after a topology step (the host's
/// conntrack outlives a container's restart, connect or disconnect).
#[derive(Clone, Debug, Default)]
pub struct ConntrackState {
    /// IPv4 flows of each machine.
    pub v4: Vec<(String, Vec<Conn<Ipv4Addr>>)>,
    /// IPv6 flows of each machine.
    pub v6: Vec<(String, Vec<Conn<Ipv6Addr>>)>,
}

impl ConntrackState {
    /// Number of flows held.
    pub fn len(&self) -> usize {
        self.v4.iter().map(|(_, f)| f.len()).sum::<usize>()
            + self.v6.iter().map(|(_, f)| f.len()).sum::<usize>()
    }

    /// True when no flow is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every flow whose reply tuple has `ip` as its source or its
    /// destination, on every machine; returns how many. This is what
    /// Docker's bridge driver deletes when an endpoint with that address
    /// leaves its network (stop, restart, disconnect: libnetwork
    /// `clearEndpointConnections`, a netlink conntrack filter on the
    /// reply's addresses). So a published port's flows and a container's
    /// unmasqueraded flows to that address go, while the container's own
    /// masqueraded flows (reply addressed to the machine) and every other
    /// flow stay, and their replies reach whoever holds the address next.
    pub fn forget_endpoint(&mut self, ip: IpAddr) -> usize {
        fn forget<A: FlowAddr>(tables: &mut [(String, Vec<Conn<A>>)], ip: A) -> usize {
            let mut n = 0;
            for (_, flows) in tables {
                let before = flows.len();
                flows.retain(|c| c.reply.src != ip && c.reply.dst != ip);
                n += before - flows.len();
            }
            n
        }
        match ip {
            IpAddr::V4(a) => forget(&mut self.v4, a),
            IpAddr::V6(a) => forget(&mut self.v6, a),
        }
    }
}
