//! Which forwarding decisions a kernel fast path may take over.
//!
//! With offload on ([`Engine::set_offload`]), the engine offers the IO
//! layer every decision that the same two MACs on the same ingress port
//! will get again, for as long as nothing the engine learns changes it:
//! a plain L2 forward between two containers of a bridge network, the
//! destination learned on the egress port. The IO layer installs it in the
//! kernel (`backend::userspace::offload`: a tc program that redirects such
//! frames from one container's veth to the other's) and the frames of
//! that pair of MACs stop coming to the engine.
//!
//! A routed IPv4 TCP connection is offered too, one direction at a time,
//! once it is ESTABLISHED and the engine forwards a frame of it in that
//! direction ([`OffloadEvent::Nat`]), and so is a UDP flow once it had a
//! reply: the tuple it arrives with, the one it leaves with (masquerade,
//! published-port DNAT or neither), the MACs of the next hop and the
//! ports, for a container network or `lan` whose MTU is no smaller than
//! the one it came from. The fast path sends every
//! TCP segment with SYN, FIN or RST to the engine, so conntrack sees each
//! change of state; a connection that leaves ESTABLISHED (any flow that
//! leaves the table) is retracted ([`OffloadEvent::ForgetConn`]) before its conntrack id can
//! be offered again. As for L2 flows, the fast path's counters refresh the
//! connection's timer ([`Engine::offload_conn_seen`]). The router's
//! neighbour entries are not refreshed by carried frames: like Linux's
//! flowtable, an offered connection keeps the next hop it was offered
//! with until it is retracted.
//!
//! In a world with overlays, a container's unicast to a container on
//! another machine of this engine is offered as a tunnel
//! ([`OffloadEvent::Tunnel`]) once it is one decision end to end: the
//! sending domain switched it to its VTEP alone, it left as one VXLAN
//! copy (unencrypted, fitting the underlay) to a VTEP of this engine, and
//! the receiving domain sent it to the one container port its destination
//! is learned on. The VTEPs' frames must not be captured. The fast path
//! then encapsulates and decapsulates it in the kernel, over an underlay
//! link of its own between the two machines; a remote MAC learned behind
//! another machine is announced as moved.
//!
//! What makes a decision stale is announced as well, in order with the
//! offers: a MAC that moved to another port (its entries go, both
//! directions), and any change of faults (every entry goes, and nothing is
//! offered while a fault is in force: a faulted link must see each frame).
//! What could make a frame of the pair decide differently is never
//! offered: frames other than IPv4 and non-ICMPv6 IPv6 (ARP and neighbour
//! discovery feed the routers' tables; the tc program sends every other
//! frame to the engine too), networks whose router rewrites on L2
//! (hairpin NAT without the userland proxy), the 802.1Q-aware `lan`,
//! engines with services, L2 flows and connections in engines with
//! overlays (only their tunnels are offered), and routed frames other
//! than the TCP and UDP flows above (ICMP, IPv6, IP options, fragments).
//!
//! Frames the fast path carries still refresh what the engine learned:
//! the IO layer reads the fast path's per-flow counters as often as it
//! ages the tables and reports each flow that moved frames
//! ([`Engine::offload_seen`]), so a MAC heard only through the fast path
//! is not forgotten and flooded to, as the kernel bridge's FDB is
//! refreshed by every frame.

use super::conntrack::Dir;
use super::fdb::{key_mac, mac_key};
use super::flow::Tuple;
use super::vxlan::OuterEnds;
use super::{Action, Engine, PortId, PortRole};
use crate::wire::MacAddr;
use crate::wire::ethernet::{self, EtherType};

/// What the IO layer's fast path must learn, in the order the engine
/// decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OffloadEvent {
    /// Frames from `src` to `dst` entering on `ingress` go out of `egress`,
    /// unchanged.
    Flow {
        /// The port they come in on.
        ingress: PortId,
        /// The port they leave by.
        egress: PortId,
        /// Their source MAC.
        src: MacAddr,
        /// Their destination MAC.
        dst: MacAddr,
    },
    /// Frames of one direction of a tracked TCP or UDP flow arriving on
    /// `ingress` for `in_dst` (the router's MAC) with tuple `from` leave by
    /// `egress` with tuple `to`, MACs `dst` and `src`, TTL one less.
    Nat {
        /// The port they come in on.
        ingress: PortId,
        /// The router's MAC they are sent to.
        in_dst: MacAddr,
        /// Their tuple on arrival.
        from: Tuple,
        /// The port they leave by.
        egress: PortId,
        /// Their tuple as they leave.
        to: Tuple,
        /// The next hop's MAC.
        dst: MacAddr,
        /// The router's MAC on the egress side.
        src: MacAddr,
        /// The connection and direction (for [`Engine::offload_conn_seen`]).
        conn: ConnRef,
    },
    /// Frames from `src` to `dst` entering on `ingress` (a container's
    /// port of an overlay network) are encapsulated between the VTEPs
    /// `ends` names (VXLAN to another machine of this engine, whose VTEP
    /// port is `vtep`), decapsulated there and leave by `egress`.
    Tunnel {
        /// The port they come in on.
        ingress: PortId,
        /// The port they leave by, on the other machine.
        egress: PortId,
        /// Their source MAC.
        src: MacAddr,
        /// Their destination MAC.
        dst: MacAddr,
        /// The VNI and the two VTEPs (MAC and address).
        ends: OuterEnds,
        /// The receiving VTEP's port (where `src` is learned there).
        vtep: PortId,
        /// The largest inner IP packet the underlay carries (a frame
        /// larger goes to the engine, which answers it, BUG-7).
        mtu: usize,
    },
    /// Every flow to or from this MAC is stale (it moved).
    ForgetMac(MacAddr),
    /// Both directions of this connection are stale.
    ForgetConn {
        /// The router's machine.
        machine: usize,
        /// Its conntrack id.
        id: u32,
    },
    /// Every flow is stale (the faults changed).
    ForgetAll,
}

/// One direction of a tracked connection of a machine's router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnRef {
    /// The router's machine (its index in the engine's configuration).
    pub machine: usize,
    /// The conntrack id.
    pub id: u32,
    /// The direction.
    pub dir: Dir,
}

/// The engine's side of offload: on or off, and what it has decided since
/// the IO layer last asked.
#[derive(Debug, Default)]
pub(crate) struct Offload {
    pub(crate) on: bool,
    pub(crate) events: Vec<OffloadEvent>,
}

/// IPv6's next header for ICMPv6.
const ICMPV6: u8 = 58;

/// True for a frame the tc program may take: IPv4, or IPv6 whose next
/// header is not ICMPv6 (the tc program checks the same two fields).
pub(crate) fn offloadable_frame(frame: &[u8]) -> bool {
    match frame.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]])) {
        Some(EtherType::IPV4) => true,
        Some(EtherType::IPV6) => frame.get(20).is_some_and(|&nh| nh != ICMPV6),
        _ => false,
    }
}

impl Engine {
    /// Turns offers of offloadable decisions on or off
    /// ([`Engine::take_offload_events`]). Off (the default), the engine
    /// records nothing.
    pub fn set_offload(&mut self, on: bool) {
        self.offload.on = on;
        self.offload.events.clear();
        if let Some(r) = self.router.as_deref_mut() {
            r.offers.clear();
        }
        self.route_offers();
    }

    /// Lets the router offer connections while offload is on in a world
    /// where nothing but the router decides their frames: no services,
    /// overlays or 802.1Q-aware `lan`, and no fault in force.
    pub(crate) fn route_offers(&mut self) {
        let on = self.offload.on
            && !self.faults.active()
            && self.services.is_none()
            && self.overlay.is_none()
            && self.vlan.is_none();
        if let Some(r) = self.router.as_deref_mut() {
            r.offload = on;
        }
    }

    /// Moves what the router offered or retracted behind what the engine
    /// decided before, in order.
    #[inline]
    pub(crate) fn take_router_offers(&mut self) {
        if let Some(r) = self.router.as_deref_mut()
            && r.offload
        {
            r.collect_retracted();
            self.offload.events.append(&mut r.offers);
        }
    }

    /// What the engine decided for the fast path since the last call.
    pub fn take_offload_events(&mut self) -> Vec<OffloadEvent> {
        self.take_router_offers();
        std::mem::take(&mut self.offload.events)
    }

    /// True when offload is on and something waits for the IO layer.
    #[inline]
    pub fn has_offload_events(&self) -> bool {
        !self.offload.events.is_empty()
    }

    /// After the switch stage sent the frame from `ingress` to the learned
    /// port `egress` alone: offers the decision when it is one the fast
    /// path may repeat (see the module's documentation).
    pub(crate) fn offer_flow(&mut self, ingress: PortId, egress: PortId, frame: &[u8]) {
        let (Some(from), Some(to)) = (
            self.ports.get(usize::from(ingress.0)),
            self.ports.get(usize::from(egress.0)),
        ) else {
            return;
        };
        if from.role != PortRole::Container
            || to.role != PortRole::Container
            || self.faults.active()
            || self.services.is_some()
            || self.overlay.is_some()
            || self
                .vlan
                .as_deref()
                .is_some_and(|v| v.domain == from.domain)
            || self
                .router
                .as_deref()
                .is_some_and(|r| r.rewrites_on_l2(ingress))
            || !offloadable_frame(frame)
        {
            return;
        }
        // (offloadable_frame saw an EtherType: the header is all there.)
        let eth = ethernet::Frame::new_unchecked(frame);
        self.offload.events.push(OffloadEvent::Flow {
            ingress,
            egress,
            dst: MacAddr(eth.dst()),
            src: MacAddr(eth.src()),
        });
    }

    /// True when a frame from `ingress` that the switch sent to its
    /// domain's VTEP alone (`rest`: what else it decided) may be offered
    /// as a tunnel once its one copy reaches a port
    /// ([`Engine::offer_tunnel`]): offload on, no fault, services, 802.1Q
    /// `lan` or capture of the VTEPs' frames, from a container, a frame
    /// the tc program may take.
    pub(crate) fn tunnel_offerable(&self, ingress: PortId, frame: &[u8], rest: &[Action]) -> bool {
        self.offload.on
            && !self.faults.active()
            && self.services.is_none()
            && self.vlan.is_none()
            && self.overlay.as_deref().is_some_and(|o| !o.captured())
            && self
                .ports
                .get(usize::from(ingress.0))
                .is_some_and(|p| p.role == PortRole::Container)
            && offloadable_frame(frame)
            && !rest.iter().any(|a| matches!(a, Action::Forward(_)))
    }

    /// After a frame from `ingress` was encapsulated to another machine's
    /// VTEP of this engine (`ends`) and handled there (`sub`, what that
    /// decided): offers the tunnel when it went to one container's port,
    /// the destination learned there.
    pub(crate) fn offer_tunnel(
        &mut self,
        ingress: PortId,
        frame: &[u8],
        sub: &[Action],
        (ends, mtu): (OuterEnds, usize),
    ) {
        let [Action::Forward(egress)] = *sub else {
            return;
        };
        let Some((domain, vtep)) = self
            .overlay
            .as_deref()
            .and_then(|o| o.vtep_at(ends.dst.1, ends.vni))
        else {
            return;
        };
        let eth = ethernet::Frame::new_unchecked(frame);
        let (dst, src) = (MacAddr(eth.dst()), MacAddr(eth.src()));
        let learned = self.domains[usize::from(domain.0)].peek(mac_key(&dst.0));
        let to_container = self
            .ports
            .get(usize::from(egress.0))
            .is_some_and(|p| p.role == PortRole::Container && p.domain == domain);
        if learned != Some(egress) || !to_container {
            return;
        }
        self.offload.events.push(OffloadEvent::Tunnel {
            ingress,
            egress,
            src,
            dst,
            ends,
            vtep,
            mtu,
        });
    }

    /// The fast path carried frames of the tunnel from `src` in on
    /// `ingress` by `now`: learns `src` there and on the receiving VTEP's
    /// port `vtep`, as if the engine had switched and decapsulated them.
    pub fn offload_tunnel_seen(
        &mut self,
        ingress: PortId,
        vtep: PortId,
        src: MacAddr,
        now: std::time::Instant,
    ) {
        self.offload_seen(ingress, src, now);
        self.offload_seen(vtep, src, now);
    }

    /// The fast path carried frames of connection `conn` by `now`: restarts
    /// its timer, as a frame through the engine would.
    pub fn offload_conn_seen(&mut self, conn: ConnRef, now: std::time::Instant) {
        if let Some(m) = self
            .router
            .as_deref_mut()
            .and_then(|r| r.machines.get_mut(conn.machine))
        {
            m.ct.refresh(conn.id, conn.dir, now);
        }
    }

    /// The fast path carried frames from `src` in on `ingress` (a flow the
    /// engine offered) by `now`: learns `src` there again, as if the engine
    /// had seen them.
    pub fn offload_seen(&mut self, ingress: PortId, src: MacAddr, now: std::time::Instant) {
        let Some(port) = self.ports.get(usize::from(ingress.0)) else {
            return;
        };
        let d = &mut self.domains[usize::from(port.domain.0)];
        super::l2::learn(d, &mut self.metrics, mac_key(&src.0), ingress, now);
        self.take_moved(port.domain);
    }

    /// Announces the MAC that last moved in `domain`, if one did.
    #[inline]
    pub(crate) fn take_moved(&mut self, domain: super::DomainId) {
        let d = &mut self.domains[usize::from(domain.0)];
        if let Some(key) = d.moved.take()
            && self.offload.on
        {
            let mac = MacAddr(key_mac(key));
            self.offload.events.push(OffloadEvent::ForgetMac(mac));
        }
    }
}
