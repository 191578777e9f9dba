//! Tracing one frame through the engine, as OVS's `ofproto/trace` does:
//! the stages a frame crosses are noted while [`Engine::trace_frame`] runs
//! it (and only then: the note is one branch on an empty `Option`
//! otherwise), and the verdict is the frame's actions. Rewrites (NAT, VLAN
//! tags, VXLAN encapsulation) are read off the frames that leave, by the
//! caller, who knows the world's names.

use std::time::Instant;

use super::{Action, DomainId, Engine, Packet, PortId};

/// A stage a traced frame crossed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// Admitted into a domain; its source MAC learned on the port (or
    /// refreshed).
    Admit {
        /// The domain.
        domain: DomainId,
        /// Whether the source MAC was new or moved here.
        learned: bool,
    },
    /// The destination MAC is in the domain's forwarding table.
    FdbHit {
        /// The domain.
        domain: DomainId,
        /// The port it sits behind.
        port: PortId,
    },
    /// Unknown or group destination: flooded.
    Flood {
        /// The domain.
        domain: DomainId,
    },
    /// Addressed to the domain's gateway MAC.
    Gateway {
        /// The domain.
        domain: DomainId,
    },
    /// Taken by a machine's router.
    Router {
        /// The machine (index among the engine's machines).
        machine: usize,
        /// Which path: `from a container network`, `from the machine's host
        /// stack`, `from lan`, `IPv6 …`.
        path: &'static str,
    },
    /// Free text from a stage.
    Note(String),
}

impl Engine {
    /// Runs `pkt` in on `ingress` at `now` like [`Engine::handle_frame`] and
    /// returns the stages it crossed with its actions. The engine's state
    /// changes as for any frame (learning, conntrack): trace on an engine
    /// built for the purpose, or on a clone.
    pub fn trace_frame(
        &mut self,
        now: Instant,
        ingress: PortId,
        pkt: &mut Packet,
    ) -> (Vec<TraceEvent>, Vec<Action>) {
        self.metrics.trace = Some(Vec::new());
        let mut out = Vec::new();
        self.handle_frame(now, ingress, pkt, &mut out);
        let events = self.metrics.trace.take().unwrap_or_default();
        (events, out)
    }
}
