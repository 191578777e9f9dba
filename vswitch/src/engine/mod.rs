//! The sans-IO switch. `Engine::handle_frame(now, port, packet)` is a pure
//! function of the engine's state, the frame and the caller's clock; it
//! returns actions for the IO layer to carry out. Nothing here knows that a
//! file descriptor exists.
//!
//! Issue 3 scope: L2 domains (one per Docker network and one for `lan`), MAC
//! learning with aging and a bounded table, flooding, a gateway that answers
//! ARP and ICMP echo, `icc = false`, isolation between domains.

pub mod packet;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

pub use packet::{Packet, VnetHdr};

use crate::scenario::plan::MacAddr;

/// Index of a port (a TAP device) in the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u16);

/// Index of an L2 domain (a Docker network, or `lan`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainId(pub u16);

/// What a port is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortRole {
    /// A container's interface: container↔container traffic obeys `icc`.
    Container,
    /// The machine host stack's port on a network (docker0's own port): it
    /// owns the gateway address, and `icc` never applies to it.
    Host,
    /// A plain segment port (`lan`: externals and machine uplinks).
    Plain,
}

/// A port's configuration.
#[derive(Clone, Debug)]
pub struct PortConfig {
    /// Name for counters, logs and pcaps (e.g. `web/eth0`).
    pub name: String,
    /// The domain it belongs to.
    pub domain: DomainId,
    /// Its role.
    pub role: PortRole,
}

/// The gateway of a domain, answered by the engine.
#[derive(Clone, Copy, Debug)]
pub struct Gateway {
    /// Gateway IPv4 address.
    pub ip: Ipv4Addr,
    /// Gateway MAC (also the host port's MAC).
    pub mac: MacAddr,
}

/// A domain's configuration.
#[derive(Clone, Debug)]
pub struct DomainConfig {
    /// Name (the network's name, or `lan`).
    pub name: String,
    /// Gateway answered by the engine.
    pub gateway: Option<Gateway>,
    /// Inter-container communication.
    pub icc: bool,
}

/// The engine's configuration.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Domains, indexed by `DomainId`.
    pub domains: Vec<DomainConfig>,
    /// Ports, indexed by `PortId`.
    pub ports: Vec<PortConfig>,
    /// Most MAC entries per domain.
    pub fdb_capacity: usize,
    /// Idle time after which a learned MAC is forgotten.
    pub fdb_aging: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            domains: Vec::new(),
            ports: Vec::new(),
            fdb_capacity: 4096,
            fdb_aging: Duration::from_secs(300),
        }
    }
}

/// What the IO layer must do with a frame.
#[derive(Debug)]
pub enum Action {
    /// Send the ingress packet, unchanged, out of this port.
    Forward(PortId),
    /// Send this engine-built packet out of this port.
    Emit(PortId, Packet),
    /// The ingress frame is dropped, for this reason.
    Drop(DropReason),
}

/// Why a frame was dropped. (Stub: the engine issue fills this in.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Placeholder.
    Malformed,
}

/// The switch. (Stub.)
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
}

impl Engine {
    /// Builds an engine.
    pub fn new(cfg: EngineConfig) -> Engine {
        Engine { cfg }
    }

    /// Handles one frame received on `ingress` at `now`.
    pub fn handle_frame(
        &mut self,
        _now: Instant,
        _ingress: PortId,
        _pkt: &mut Packet,
        out: &mut Vec<Action>,
    ) {
        let _ = &self.cfg;
        out.push(Action::Drop(DropReason::Malformed));
    }
}
