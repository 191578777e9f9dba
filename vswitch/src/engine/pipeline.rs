//! The frame path as a list of named stages ([`PIPELINE`]), as VPP lists
//! its graph nodes: every stage is one function over the frame's context
//! ([`FrameCx`]) that passes the frame on, takes it, or ends it ([`Next`]).
//! Adding a stage is adding a [`Stage`] variant, its entry in [`PIPELINE`]
//! and its arm in `Engine::stage`.
//!
//! Two kinds of stage:
//!
//! - **ingress** stages, up to and including [`Stage::Switch`], decide
//!   where the frame goes; the first one that takes it ([`Next::Taken`])
//!   ends that part;
//! - **output** stages ([`Stage::is_output`]) then rewrite, replace or
//!   hold what the ingress stages appended to `out` (encapsulation towards
//!   VXLAN peers, service sandboxes, the egress side of link faults).
//!
//! A stage that ends the frame ([`Next::Done`]: held or dropped before it
//! was switched) skips the output stages too.
//!
//! The stage list is a `const` array, walked by `Engine::run` with one
//! constant index per entry and dispatched through one `match`
//! (`Engine::stage`): each step folds to a direct call of its stage, with
//! no function pointers and no dynamic dispatch on the hot path.

use std::time::Instant;

use super::l2::{self, Port};
use super::{Action, DomainId, DropReason, Engine, Packet, PortId, PortRole, fault, vlan};

/// A stage of the frame path. [`PIPELINE`] lists them in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Link faults of the ingress port (loss, rate, delay, down, MTU), and
    /// of a faulted machine uplink the frame crosses inside the engine.
    FaultIn,
    /// The ingress port: known, counted, at least an Ethernet header.
    Port,
    /// The 802.1Q-aware domain (`lan` with VLANs): classification, macvlan
    /// and ipvlan children, routing on the untagged lan, switching
    /// ([`vlan`]). Takes every frame of that domain.
    Vlan,
    /// Source checks and MAC learning in the port's domain.
    Admit,
    /// Swarm services: VIP load balancing and the ingress routing mesh.
    ServiceIn,
    /// VXLAN (and ESP) for a local VTEP, decapsulated into its domain; ARP
    /// for remote overlay bindings answered.
    OverlayIn,
    /// The IPv4 router: conntrack, NAT, routing between a machine's
    /// networks, its host stack and `lan`; ARP for next hops.
    Router,
    /// The IPv6 router.
    Router6,
    /// The L2 switch: the gateway, a known unicast, or a flood.
    Switch,
    /// Frames switched to a VTEP port, encapsulated to the VNI's peers.
    OverlayOut,
    /// Frames delivered to service sandboxes, translated and re-switched.
    ServiceOut,
    /// Link faults of the ports the frame leaves by.
    FaultOut,
}

/// The frame path, in order.
pub const PIPELINE: [Stage; 12] = [
    Stage::FaultIn,
    Stage::Port,
    Stage::Vlan,
    Stage::Admit,
    Stage::ServiceIn,
    Stage::OverlayIn,
    Stage::Router,
    Stage::Router6,
    Stage::Switch,
    Stage::OverlayOut,
    Stage::ServiceOut,
    Stage::FaultOut,
];

/// Where a frame from a port starts ([`Engine::handle_frame`]) and ends.
const FROM_PORT: (usize, usize) = (0, PIPELINE.len());

/// A frame that the fault stage already let in ([`Engine::handle_past_fault`]).
const PAST_FAULT: (usize, usize) = (1, PIPELINE.len());

/// A frame a stage puts back into the switch on another port (a service
/// sandbox's): its egress is judged by the fault stage of the frame that
/// made it.
const INJECTED: (usize, usize) = (1, PIPELINE.len() - 1);

impl Stage {
    /// The stage's name, as a trace prints it.
    pub fn name(self) -> &'static str {
        match self {
            Stage::FaultIn => "fault-in",
            Stage::Port => "port",
            Stage::Vlan => "vlan",
            Stage::Admit => "admit",
            Stage::ServiceIn => "service-in",
            Stage::OverlayIn => "overlay-in",
            Stage::Router => "router",
            Stage::Router6 => "router6",
            Stage::Switch => "switch",
            Stage::OverlayOut => "overlay-out",
            Stage::ServiceOut => "service-out",
            Stage::FaultOut => "fault-out",
        }
    }

    /// True for the stages that work on what the ingress stages sent
    /// (they run even when an earlier stage took the frame).
    #[inline]
    pub fn is_output(self) -> bool {
        matches!(
            self,
            Stage::OverlayOut | Stage::ServiceOut | Stage::FaultOut
        )
    }
}

/// What a stage did with the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// On to the next stage.
    Continue,
    /// Taken (sent, answered, queued or dropped): the output stages still
    /// see what it sent, the remaining ingress stages are skipped.
    Taken,
    /// Gone before it was switched (held or dropped): nothing more runs.
    Done,
}

impl From<bool> for Next {
    /// `true` (the stage handled the frame) is [`Next::Taken`].
    #[inline]
    fn from(taken: bool) -> Next {
        if taken { Next::Taken } else { Next::Continue }
    }
}

/// One frame on its way through the pipeline: where it came in, the frame
/// itself, what the stages learnt about it, and the actions so far.
#[derive(Debug)]
pub(crate) struct FrameCx<'a> {
    /// The caller's clock.
    pub(crate) now: Instant,
    /// The port it came in on.
    pub(crate) ingress: PortId,
    /// The frame (stages may rewrite it in place).
    pub(crate) pkt: &'a mut Packet,
    /// The actions, shared with the caller and any enclosing frame.
    pub(crate) out: &'a mut Vec<Action>,
    /// The ingress port's domain and role (filled in by [`Stage::Port`]).
    pub(crate) port: Port,
    /// The VLAN it is on (set by the vlan stage; 0: untagged).
    pub(crate) vid: u16,
    /// The uplink whose fault the frame already crossed.
    pub(crate) past_uplink: Option<PortId>,
    /// Where this frame's actions start in `out`.
    pub(crate) start: usize,
    /// Where the switch stage's actions start (`None`: not switched, or
    /// no overlay to read it).
    pub(crate) switched: Option<usize>,
}

impl<'a> FrameCx<'a> {
    /// A frame received on `ingress` at `now`, its actions appended to `out`.
    #[inline]
    pub(crate) fn new(
        now: Instant,
        ingress: PortId,
        pkt: &'a mut Packet,
        out: &'a mut Vec<Action>,
    ) -> FrameCx<'a> {
        FrameCx {
            now,
            ingress,
            start: out.len(),
            pkt,
            out,
            port: Port {
                domain: DomainId(0),
                role: PortRole::Plain,
            },
            vid: 0,
            past_uplink: None,
            switched: None,
        }
    }

    /// The same context for a frame entering on `port` instead, with the
    /// role the stage gives it (the VXLAN decapsulation's VTEP port).
    #[inline]
    pub(crate) fn on_port(&mut self, ingress: PortId, port: Port) -> FrameCx<'_> {
        let mut cx = FrameCx::new(self.now, ingress, self.pkt, self.out);
        cx.port = port;
        cx
    }
}

impl Engine {
    /// Handles one frame received on `ingress` at `now`, appending what to
    /// do with it to `out` (which the caller clears and reuses).
    ///
    /// The outcome is one or more `Forward`s (the caller sends `pkt`, vnet
    /// header untouched, out of each), `Emit`s of engine-built frames, or
    /// exactly one `Drop` with its reason. The frame is not copied, but the
    /// router rewrites it in place (NAT, TTL, MACs) before a `Forward`.
    /// A frame answered with an ICMP error yields that `Emit` (and its drop
    /// reason is counted); a frame queued while its next hop is resolved
    /// yields the ARP request's `Emit`s, or nothing when a request is
    /// already out; it is sent (or dropped, `neighbour-unresolved`) later.
    ///
    /// A port with a fault ([`Engine::set_fault`]) may drop the frame
    /// (`fault-loss`, `fault-mtu`, `link-down`, `fault-rate`) or hold it:
    /// then nothing is returned now, and [`Engine::poll_due`] hands it back
    /// when its delay is over.
    #[inline]
    pub fn handle_frame(
        &mut self,
        now: Instant,
        ingress: PortId,
        pkt: &mut Packet,
        out: &mut Vec<Action>,
    ) {
        let mut cx = FrameCx::new(now, ingress, pkt, out);
        cx.past_uplink = self.past_uplink.take();
        self.run::<{ FROM_PORT.0 }, { FROM_PORT.1 }>(&mut cx);
    }

    /// [`Engine::handle_frame`] for a frame the fault stage already let in
    /// (a [`fault::Due::Ingress`] from [`Engine::poll_due`]).
    #[inline]
    pub fn handle_past_fault(
        &mut self,
        now: Instant,
        ingress: PortId,
        pkt: &mut Packet,
        out: &mut Vec<Action>,
    ) {
        let mut cx = FrameCx::new(now, ingress, pkt, out);
        cx.past_uplink = self.past_uplink.take();
        self.run::<{ PAST_FAULT.0 }, { PAST_FAULT.1 }>(&mut cx);
    }

    /// Switches a frame a stage built or rewrote as if it came in on
    /// `ingress` (past the fault stage, whose egress side the enclosing
    /// frame runs).
    pub(super) fn inject(
        &mut self,
        now: Instant,
        ingress: PortId,
        pkt: &mut Packet,
        out: &mut Vec<Action>,
    ) {
        let mut cx = FrameCx::new(now, ingress, pkt, out);
        self.run::<{ INJECTED.0 }, { INJECTED.1 }>(&mut cx);
    }

    /// Runs the stages `PIPELINE[FROM..TO]` over the frame.
    ///
    /// The walk is unrolled by hand (one `step!` per entry of [`PIPELINE`],
    /// each a constant index): every `self.stage(PIPELINE[i], ..)` then
    /// folds to a direct call of that stage, as the hand-written chain
    /// before it was. A loop over the array is not unrolled by LLVM at this
    /// size and costs a dispatch per stage per frame.
    #[inline(always)]
    fn run<const FROM: usize, const TO: usize>(&mut self, cx: &mut FrameCx<'_>) {
        const { assert!(PIPELINE.len() == 12, "one step! per stage of PIPELINE") };
        let mut taken = false;
        macro_rules! step {
            ($i:literal) => {
                if FROM <= $i && $i < TO {
                    const S: Stage = PIPELINE[$i];
                    if !taken || S.is_output() {
                        match self.stage(S, cx) {
                            Next::Continue => {}
                            Next::Taken => taken = true,
                            Next::Done => return,
                        }
                    }
                }
            };
        }
        step!(0);
        step!(1);
        step!(2);
        step!(3);
        step!(4);
        step!(5);
        step!(6);
        step!(7);
        step!(8);
        step!(9);
        step!(10);
        step!(11);
        // (What the last step set is read by no later one.)
        let _ = taken;
    }

    /// Runs one stage.
    #[inline(always)]
    fn stage(&mut self, s: Stage, cx: &mut FrameCx<'_>) -> Next {
        match s {
            Stage::FaultIn if self.faults.active() => self.fault_ingress(cx),
            Stage::FaultIn => Next::Continue,
            Stage::Port => self.port_stage(cx),
            Stage::Vlan => self.vlan_stage(cx),
            Stage::Admit => {
                let d = &mut self.domains[usize::from(cx.port.domain.0)];
                let admitted = l2::admit(d, &mut self.metrics, cx);
                if d.moved.is_some() {
                    self.take_moved(cx.port.domain);
                }
                Next::from(!admitted)
            }
            Stage::ServiceIn => Next::from(self.services.is_some() && self.service_pre(cx)),
            Stage::OverlayIn => Next::from(
                self.overlay.is_some() && (self.overlay_ingress(cx) || self.overlay_arp(cx)),
            ),
            Stage::Router => match self.router.as_deref_mut() {
                Some(r) => {
                    let taken = r.intercept(cx, &mut self.metrics);
                    self.take_router_offers();
                    Next::from(taken)
                }
                None => Next::Continue,
            },
            Stage::Router6 => match self.router6.as_deref_mut() {
                Some(r) => Next::from(r.intercept(cx, &mut self.metrics)),
                None => Next::Continue,
            },
            Stage::Switch => {
                let d = &mut self.domains[usize::from(cx.port.domain.0)];
                // (Only the overlay's output stage reads where it starts.)
                if self.overlay.is_some() {
                    cx.switched = Some(cx.out.len());
                }
                let unicast = l2::switch(d, &self.ports, &mut self.metrics, cx);
                if let Some(to) = unicast
                    && self.offload.on
                    && cx.out.len() == cx.start + 1
                {
                    self.offer_flow(cx.ingress, to, cx.pkt.frame());
                }
                Next::Continue
            }
            Stage::OverlayOut => {
                if self.overlay.is_some()
                    && let Some(start) = cx.switched
                {
                    self.overlay_egress(cx, start);
                }
                Next::Continue
            }
            Stage::ServiceOut => {
                if self.services.is_some() {
                    self.service_post(cx);
                }
                Next::Continue
            }
            Stage::FaultOut => {
                if self.faults.active() {
                    self.fault_egress(cx);
                }
                Next::Continue
            }
        }
    }

    /// [`Stage::Port`]: an unknown port or a runt frame is dropped here.
    #[inline(always)]
    fn port_stage(&mut self, cx: &mut FrameCx<'_>) -> Next {
        let Some(&port) = self.ports.get(usize::from(cx.ingress.0)) else {
            tracing::trace!(port = cx.ingress.0, "frame on unknown port");
            self.metrics.drop_unknown_port();
            cx.out.push(Action::Drop(DropReason::UnknownPort));
            return Next::Done;
        };
        cx.port = port;
        self.metrics.rx(cx.ingress, cx.pkt.len());
        if cx.pkt.len() < crate::wire::ethernet::HEADER_LEN {
            l2::drop_frame(&mut self.metrics, cx.ingress, DropReason::Malformed, cx.out);
            return Next::Done;
        }
        Next::Continue
    }

    /// [`Stage::Vlan`]: the VLAN-aware domain takes all its frames.
    #[inline(always)]
    fn vlan_stage(&mut self, cx: &mut FrameCx<'_>) -> Next {
        let Some(v) = self.vlan.as_deref() else {
            return Next::Continue;
        };
        if v.domain != cx.port.domain {
            return Next::Continue;
        }
        let d = &mut self.domains[usize::from(cx.port.domain.0)];
        let routers = vlan::Routers {
            v4: self.router.as_deref_mut(),
            v6: self.router6.as_deref_mut(),
        };
        vlan::handle(v, d, &mut self.metrics, routers, cx);
        Next::Taken
    }

    /// [`Stage::FaultIn`]: the ingress port's fault, then (for a frame to
    /// a machine across its faulted uplink, which the router takes inside
    /// the engine) the uplink's.
    fn fault_ingress(&mut self, cx: &mut FrameCx<'_>) -> Next {
        let (now, ingress) = (cx.now, cx.ingress);
        match self
            .faults
            .judge(now, ingress, fault::Direction::FromNode, cx.pkt)
        {
            fault::Verdict::Pass => {}
            fault::Verdict::Held => return Next::Done,
            fault::Verdict::Drop(r) => return self.fault_drop(cx, r),
        }
        // (A frame too short for a MAC is left to the port stage's
        // malformed-frame drop.)
        if let Some(dst) = cx.pkt.frame().get(..6)
            && let Some(up) = self.faulted_uplink(ingress, dst)
        {
            let resume = fault::Resume::IngressPast(ingress, up);
            let to = fault::Direction::ToNode;
            match self.faults.judge_to(now, up, to, cx.pkt, resume) {
                fault::Verdict::Pass => cx.past_uplink = Some(up),
                fault::Verdict::Held => return Next::Done,
                fault::Verdict::Drop(r) => return self.fault_drop(cx, r),
            }
        }
        Next::Continue
    }

    fn fault_drop(&mut self, cx: &mut FrameCx<'_>, r: DropReason) -> Next {
        if usize::from(cx.ingress.0) < self.ports.len() {
            self.metrics.rx(cx.ingress, cx.pkt.len());
        }
        l2::drop_frame(&mut self.metrics, cx.ingress, r, cx.out);
        Next::Done
    }

    /// The faulted uplink (not `port` itself) whose machine MAC is `mac`.
    fn faulted_uplink(&self, port: PortId, mac: &[u8]) -> Option<PortId> {
        self.cfg
            .l3
            .machines
            .iter()
            .find(|m| m.uplink != port && m.mac.0[..] == *mac)
            .map(|m| m.uplink)
            .filter(|&u| self.faults.fault(u).is_some())
    }

    /// [`Stage::FaultOut`]: the fault stage over the frames `out[start..]`
    /// sends to ports.
    fn fault_egress(&mut self, cx: &mut FrameCx<'_>) {
        let (now, ingress, past, start) = (cx.now, cx.ingress, cx.past_uplink, cx.start);
        let (pkt, out) = (&*cx.pkt, &mut *cx.out);
        let mut dropped = None;
        let mut i = start;
        while i < out.len() {
            let (port, frame) = match &out[i] {
                Action::Forward(p) => (*p, pkt.frame()),
                Action::Emit(p, b) => (*p, b.frame()),
                _ => {
                    i += 1;
                    continue;
                }
            };
            // Routed by a machine out of its faulted uplink (the router
            // emits onto lan itself), unless it came from that uplink.
            let uplink = self
                .faulted_uplink(
                    port,
                    &crate::wire::ethernet::Frame::new_unchecked(frame).src(),
                )
                .filter(|&u| u != ingress);
            let own_fault = self.faults.fault(port).is_some() && past != Some(port);
            let judged = [
                uplink.map(|u| (u, fault::Direction::FromNode)),
                own_fault.then_some((port, fault::Direction::ToNode)),
            ];
            if judged.iter().all(Option::is_none) {
                i += 1;
                continue;
            }
            // A forwarded frame may go to several ports: judge a copy.
            let mut own = match std::mem::replace(&mut out[i], Action::Drop(DropReason::FaultLoss))
            {
                Action::Emit(_, b) => b,
                _ => Packet::from_frame(pkt.hdr, pkt.frame()),
            };
            let mut verdict = fault::Verdict::Pass;
            for (p, dir) in judged.into_iter().flatten() {
                let resume = fault::Resume::Egress(port);
                verdict = self.faults.judge_to(now, p, dir, &mut own, resume);
                if verdict != fault::Verdict::Pass {
                    break;
                }
            }
            match verdict {
                fault::Verdict::Pass => {
                    out[i] = Action::Emit(port, own);
                    i += 1;
                }
                fault::Verdict::Held => {
                    out.remove(i);
                }
                fault::Verdict::Drop(r) => {
                    self.metrics.drop(port, r);
                    dropped = Some(r);
                    out.remove(i);
                }
            }
        }
        if let (Some(r), true) = (dropped, out.len() == start) {
            out.push(Action::Drop(r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipeline_lists_every_stage_once_with_output_stages_last() {
        let mut seen = std::collections::HashSet::new();
        for s in PIPELINE {
            assert!(seen.insert(s), "{} listed twice", s.name());
        }
        let first_out = PIPELINE.iter().position(|s| s.is_output());
        assert_eq!(first_out, Some(PIPELINE.len() - 3));
        assert!(
            PIPELINE[first_out.unwrap_or(0)..]
                .iter()
                .all(|s| s.is_output())
        );
        assert_eq!(PIPELINE[FROM_PORT.0], Stage::FaultIn);
        assert_eq!(FROM_PORT.1, PIPELINE.len());
        assert_eq!(PIPELINE[PAST_FAULT.0], Stage::Port);
        assert_eq!(PAST_FAULT.1, PIPELINE.len());
        assert_eq!(PIPELINE[INJECTED.0], Stage::Port);
        assert_eq!(PIPELINE[INJECTED.1 - 1], Stage::ServiceOut);
    }
}
