//! Where a check's probes run: the node's namespace (kernel sockets, wall
//! time) or the sim's in-memory world (smoltcp sockets, virtual time).
//! Both give the same result types, so a check's result is made the same
//! way from either.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::backend::World;
use crate::backend::sim::SimWorld;
use crate::netns::NetNs;
use crate::probe::{self, DnsOutcome, EchoReply, PingOptions, PingOutcome, ProbeError};
use crate::scenario::plan::{Node, QueryType};

/// The probes of one check from one node, all before one deadline.
#[derive(Debug)]
pub enum Prober<'a> {
    /// Kernel sockets in the node's namespace, until a wall-clock deadline.
    Ns(&'a NetNs, Instant),
    /// The sim's stacks, until a virtual deadline (µs).
    Sim(&'a Mutex<SimWorld>, Node, u64),
}

impl<'a> Prober<'a> {
    /// The prober of `from` in `world`, `timeout` from now.
    pub fn new(world: &'a World, from: Node, timeout: Duration) -> Prober<'a> {
        match world.sim() {
            Some(m) => {
                let now = m.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
                Prober::Sim(m, from, (now + timeout).as_micros() as u64)
            }
            None => Prober::Ns(world.ns(from), Instant::now() + timeout),
        }
    }

    /// Runs `f` on the sim with the time left.
    fn sim<T>(m: &Mutex<SimWorld>, end: u64, f: impl FnOnce(&mut SimWorld, Duration) -> T) -> T {
        let mut w = m.lock().unwrap_or_else(|p| p.into_inner());
        let left = end.saturating_sub(w.elapsed().as_micros() as u64);
        f(&mut w, Duration::from_micros(left))
    }

    /// ICMP echo.
    pub fn ping(&self, to: IpAddr, opts: &PingOptions) -> Result<PingOutcome, ProbeError> {
        match self {
            Prober::Ns(ns, d) => probe::ping(ns, to, opts, *d),
            Prober::Sim(m, n, e) => Self::sim(m, *e, |w, t| w.ping(*n, to, opts, t)),
        }
    }

    /// The TCP echo.
    pub fn tcp_echo(&self, dst: SocketAddr) -> Result<EchoReply, ProbeError> {
        match self {
            Prober::Ns(ns, d) => probe::tcp_echo(ns, dst, *d),
            Prober::Sim(m, n, e) => Self::sim(m, *e, |w, t| w.tcp_echo(*n, dst, t)),
        }
    }

    /// The UDP echo, from `sport` when given.
    pub fn udp_echo(&self, sport: Option<u16>, dst: SocketAddr) -> Result<EchoReply, ProbeError> {
        match (self, sport) {
            (Prober::Ns(ns, d), Some(p)) => probe::udp_echo_from(ns, p, dst, *d),
            (Prober::Ns(ns, d), None) => probe::udp_echo(ns, dst, *d),
            (Prober::Sim(m, n, e), _) => Self::sim(m, *e, |w, t| w.udp_echo(*n, sport, dst, t)),
        }
    }

    /// One DNS query.
    pub fn dns_query(
        &self,
        server: SocketAddr,
        name: &str,
        qtype: QueryType,
        tcp: bool,
    ) -> Result<DnsOutcome, ProbeError> {
        match self {
            Prober::Ns(ns, d) => probe::dns_query(ns, server, name, qtype, tcp, *d),
            Prober::Sim(m, n, e) => {
                Self::sim(m, *e, |w, t| w.dns_query(*n, server, name, qtype, tcp, t))
            }
        }
    }

    /// TCP connections one after another; who answered each.
    pub fn spread(&self, dst: SocketAddr, connections: u32) -> Result<Vec<String>, ProbeError> {
        match self {
            Prober::Ns(ns, d) => probe::spread(ns, dst, connections, *d),
            Prober::Sim(m, n, e) => Self::sim(m, *e, |w, t| w.spread(*n, dst, connections, t)),
        }
    }
}
