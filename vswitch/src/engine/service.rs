//! Swarm services in the engine: VIP load balancing as IPVS does
//! it inside each sandbox, and the ingress routing mesh.
//!
//! **VIPs** (docker-semantics SVC-3). A frame from a port of an overlay
//! domain where a service has a VIP, addressed to the VIP, is scheduled per
//! connection: a new flow (a TCP SYN, or a UDP datagram of an unknown flow)
//! takes the next running task, round robin; later packets of the flow go
//! to the same task for as long as the flow lives (UDP: sticky for its
//! conntrack lifetime). The destination address and MAC are rewritten to
//! the task's (DNAT, checksums updated incrementally); the source is left
//! alone, so the task sees the client's own address. The task's replies are
//! rewritten back to come from the VIP when they leave the task's port.
//! ARP for a VIP is answered with the VIP's MAC. A task taken out of the
//! set ([`Services::remove_backend`]) loses its flows at once.
//!
//! **Routing mesh** (SVC-4, OV-10). A TCP/UDP frame to a machine's uplink
//! (its MAC and address) on a port published in ingress mode is scheduled
//! over every task of the service on every machine, SNATed to that
//! machine's ingress-sandbox address and DNATed to the task's `ingress`
//! address, and switched into the machine's `ingress` domain from the
//! sandbox's virtual port. What the domain delivers to that port is the
//! replies (translated back and switched onto `lan` from the machine's
//! uplink, to the client's MAC) and ARP for the sandbox address (answered).
//!
//! Sans-IO like the rest of the engine: state, frame and `now` in, the
//! frame rewritten in place or a reply out.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::flow::{IPPROTO_TCP, IPPROTO_UDP, Ip4, L4, Tuple, tcp_flags};
use super::nat;
use super::pipeline::FrameCx;
use super::{DomainId, DropReason, MacAddr, Packet, PortId, VnetHdr};
use crate::wire::arp::{self, ArpRepr};
use crate::wire::ethernet::{self, EtherType, HEADER_LEN as ETH_HDR_LEN};

/// A task a VIP or published port balances over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    /// The task's address on the network.
    pub ip: Ipv4Addr,
    /// Its MAC there.
    pub mac: MacAddr,
}

/// One service's VIP on one overlay network.
#[derive(Clone, Debug)]
pub struct VipConfig {
    /// `service@network`, for logs.
    pub name: String,
    /// The virtual IP.
    pub vip: Ipv4Addr,
    /// The MAC ARP answers for it.
    pub mac: MacAddr,
    /// The overlay's domain on every machine of the engine.
    pub domains: Vec<DomainId>,
    /// The running tasks, by task number.
    pub backends: Vec<Backend>,
}

/// One machine's ingress sandbox.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// The machine's uplink address (where published ports listen).
    pub machine_ip: Ipv4Addr,
    /// The machine's uplink MAC.
    pub machine_mac: MacAddr,
    /// The machine's uplink port on `lan`.
    pub uplink: PortId,
    /// The sandbox's virtual port in the machine's `ingress` domain
    /// (configured as a `Plain` port; no TAP behind it).
    pub port: PortId,
    /// The sandbox's address on `ingress` (the source tasks see).
    pub ip: Ipv4Addr,
    /// Its MAC there.
    pub mac: MacAddr,
}

/// A port published in ingress mode.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// The service, for logs.
    pub name: String,
    /// IP protocol (TCP or UDP).
    pub proto: u8,
    /// Port on every machine.
    pub published: u16,
    /// Port of the tasks.
    pub target: u16,
    /// Every running task's `ingress` address, on every machine.
    pub backends: Vec<Backend>,
}

/// VIPs, sandboxes and published ports of an engine.
#[derive(Clone, Debug, Default)]
pub struct ServiceConfig {
    /// Service VIPs.
    pub vips: Vec<VipConfig>,
    /// Ingress sandboxes, one per machine.
    pub sandboxes: Vec<SandboxConfig>,
    /// Ingress-mode published ports.
    pub mesh: Vec<MeshConfig>,
}

/// How long a flow lives without packets (IPVS defaults: TCP 900 s
/// established, 120 s closing, UDP 300 s).
const TCP_TIMEOUT: Duration = Duration::from_secs(900);
const TCP_CLOSING: Duration = Duration::from_secs(120);
const UDP_TIMEOUT: Duration = Duration::from_secs(300);

/// Counters of the service stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServiceStats {
    /// Connections scheduled to a task through a VIP.
    pub vip_connections: u64,
    /// Connections scheduled through the routing mesh.
    pub mesh_connections: u64,
    /// Packets rewritten (both directions, both kinds).
    pub translated: u64,
    /// ARP requests answered for VIPs and sandboxes.
    pub arp_answered: u64,
    /// New flows dropped: no running task.
    pub no_backend: u64,
}

#[derive(Clone, Copy, Debug)]
struct VipFlow {
    vip: usize,
    backend: Backend,
    last: Instant,
    closing: bool,
}

#[derive(Clone, Copy, Debug)]
struct MeshFlow {
    sandbox: usize,
    client_mac: [u8; 6],
    /// The flow as the task sees it (sandbox → task).
    inner: Tuple,
    task_mac: MacAddr,
    last: Instant,
    closing: bool,
    /// From the machine's own host stack (its local entry, `t.dst` is the
    /// sandbox address): replies go straight back out of the uplink.
    local: bool,
}

/// What the stage did with a frame entering the engine.
#[derive(Debug)]
pub(crate) enum Pre {
    /// Not a service frame, or rewritten in place: carry on as usual.
    Pass,
    /// Answer out of the ingress port.
    Reply(Packet),
    /// Drop it for this reason.
    Drop(DropReason),
    /// Rewritten for the mesh: switch it in from this sandbox port.
    Inject(PortId),
}

/// What the stage did with a frame the engine delivered to a sandbox port.
#[derive(Debug)]
pub(crate) enum Post {
    /// An answer (ARP reply) to switch in from the sandbox port.
    Reply(Packet),
    /// A reply rewritten for the client: switch it onto `lan` from this
    /// machine uplink.
    ToLan(PortId),
    /// A reply for the machine's own host stack: out of this uplink.
    ToHost(PortId),
    /// Nothing for the sandbox: it is dropped.
    Drop,
}

/// A multiply-rotate hasher for flow tuples (the tables are the engine's
/// own, bounded by the flows it sees; SipHash buys nothing here and costs
/// a VIP packet most of its overhead).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FlowHasher(u64);

impl Hasher for FlowHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 31)
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    #[inline]
    fn write_u8(&mut self, x: u8) {
        self.write_u64(u64::from(x));
    }

    #[inline]
    fn write_u16(&mut self, x: u16) {
        self.write_u64(u64::from(x));
    }

    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }

    #[inline]
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
}

/// A map with [`FlowHasher`].
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FlowHasher>>;

/// The service stage's state.
#[derive(Debug)]
pub(crate) struct Services {
    cfg: ServiceConfig,
    vip_at: FastMap<(DomainId, Ipv4Addr), usize>,
    sandbox_at: FastMap<PortId, usize>,
    /// The next task of each VIP for each client: IPVS runs in every
    /// client's own sandbox, so each client has its own round robin (SVC-3).
    rr: HashMap<(usize, Ipv4Addr), usize>,
    /// The next task of each mesh port for each receiving machine's
    /// sandbox (each has its own IPVS on Docker, SVC-4).
    mesh_rr: HashMap<(usize, usize), usize>,
    /// Client-side tuple → flow.
    flows: FastMap<Tuple, VipFlow>,
    /// Task-side reply tuple → client-side tuple.
    back: FastMap<Tuple, Tuple>,
    mesh: FastMap<Tuple, MeshFlow>,
    mesh_back: FastMap<Tuple, Tuple>,
    stats: ServiceStats,
}

fn timeout(proto: u8, closing: bool) -> Duration {
    match (proto, closing) {
        (IPPROTO_TCP, false) => TCP_TIMEOUT,
        (IPPROTO_TCP, true) => TCP_CLOSING,
        _ => UDP_TIMEOUT,
    }
}

fn closes(ip: &Ip4) -> bool {
    matches!(ip.l4, L4::Tcp { flags } if flags & (tcp_flags::FIN | tcp_flags::RST) != 0)
}

/// A packet that may open a flow: any UDP datagram, a TCP SYN without ACK.
fn opens(ip: &Ip4) -> bool {
    match ip.l4 {
        L4::Udp => true,
        L4::Tcp { flags } => flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN,
        _ => false,
    }
}

/// An ARP reply from `mac`/`ip` to the asker of `req`.
fn arp_reply(req: &ArpRepr, mac: MacAddr) -> Packet {
    let mut p = Packet::zeroed(VnetHdr::default(), ETH_HDR_LEN + arp::PACKET_LEN);
    let b = p.frame_mut();
    ethernet::emit(b, req.sha, mac.0, EtherType::ARP);
    ArpRepr {
        op: arp::REPLY,
        sha: mac.0,
        spa: req.tpa,
        tha: req.sha,
        tpa: req.spa,
    }
    .emit(&mut b[ETH_HDR_LEN..]);
    p
}

impl Services {
    /// The stage for `cfg`.
    pub(crate) fn new(cfg: ServiceConfig) -> Services {
        let mut vip_at = FastMap::default();
        for (i, v) in cfg.vips.iter().enumerate() {
            for &d in &v.domains {
                vip_at.insert((d, v.vip), i);
            }
        }
        let sandbox_at = cfg
            .sandboxes
            .iter()
            .enumerate()
            .map(|(i, s)| (s.port, i))
            .collect();
        Services {
            rr: HashMap::new(),
            mesh_rr: HashMap::new(),
            cfg,
            vip_at,
            sandbox_at,
            flows: FastMap::default(),
            back: FastMap::default(),
            mesh: FastMap::default(),
            mesh_back: FastMap::default(),
            stats: ServiceStats::default(),
        }
    }

    /// Whether `port` is a sandbox's virtual port.
    pub(crate) fn is_sandbox(&self, port: PortId) -> bool {
        self.sandbox_at.contains_key(&port)
    }

    /// The counters.
    pub(crate) fn stats(&self) -> ServiceStats {
        self.stats
    }

    /// Number of live flows (VIP and mesh).
    pub(crate) fn len(&self) -> usize {
        self.flows.len() + self.mesh.len()
    }

    /// Takes the task at `ip` out of every VIP and published port, and
    /// forgets its flows (IPVS removes a real server with its connections).
    pub(crate) fn remove_backend(&mut self, ip: Ipv4Addr) {
        for v in &mut self.cfg.vips {
            v.backends.retain(|b| b.ip != ip);
        }
        for m in &mut self.cfg.mesh {
            m.backends.retain(|b| b.ip != ip);
        }
        self.flows.retain(|_, f| f.backend.ip != ip);
        self.back.retain(|k, _| k.src != ip);
        self.mesh.retain(|_, f| f.inner.dst != ip);
        self.mesh_back.retain(|k, _| k.src != ip);
    }

    /// Forgets flows idle past their timeout; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let before = self.len();
        let live = |last: Instant, proto: u8, closing: bool| {
            now.saturating_duration_since(last) <= timeout(proto, closing)
        };
        self.flows.retain(|k, f| live(f.last, k.proto, f.closing));
        let flows = &self.flows;
        self.back.retain(|_, k| flows.contains_key(k));
        self.mesh.retain(|k, f| live(f.last, k.proto, f.closing));
        let mesh = &self.mesh;
        self.mesh_back.retain(|_, k| mesh.contains_key(k));
        before - self.len()
    }

    /// A frame that entered on `ingress` (in `domain`), after L2 admission.
    pub(crate) fn pre(
        &mut self,
        now: Instant,
        ingress: PortId,
        domain: DomainId,
        pkt: &mut Packet,
    ) -> Pre {
        let frame = pkt.frame();
        if ethernet::ethertype(frame) == EtherType::ARP {
            let Some(req) = ArpRepr::parse(ethernet::Frame::new_unchecked(frame).payload()) else {
                return Pre::Pass;
            };
            let tpa = Ipv4Addr::from(req.tpa);
            if req.op != arp::REQUEST {
                return Pre::Pass;
            }
            if let Some(&v) = self.vip_at.get(&(domain, tpa)) {
                self.stats.arp_answered += 1;
                return Pre::Reply(arp_reply(&req, self.cfg.vips[v].mac));
            }
            // The machine's own way into its sandbox (the local entry).
            if let Some(s) = self
                .cfg
                .sandboxes
                .iter()
                .find(|s| s.uplink == ingress && s.ip == tpa && !self.cfg.mesh.is_empty())
            {
                self.stats.arp_answered += 1;
                return Pre::Reply(arp_reply(&req, s.mac));
            }
            return Pre::Pass;
        }
        let Some(ip) = Ip4::parse(frame) else {
            return Pre::Pass;
        };
        let t = ip.tuple;
        if let Some(&v) = self.vip_at.get(&(domain, t.dst)) {
            // IPVS balances TCP and UDP only; Docker holds the VIP in every
            // sandbox of the network (moby/libnetwork#1877), so the
            // client's own sandbox answers a ping to it.
            let vip = super::Gateway {
                ip: t.dst,
                ip6: None,
                mac: self.cfg.vips[v].mac,
            };
            match super::gateway::icmp_echo(frame, &pkt.hdr, &vip) {
                super::gateway::Echo::Reply(p) => return Pre::Reply(p),
                super::gateway::Echo::BadChecksum => return Pre::Drop(DropReason::BadChecksum),
                super::gateway::Echo::NotMine => {}
            }
            return self.vip_forward(now, v, pkt, &ip);
        }
        if let Some(&client) = self.back.get(&t) {
            return self.vip_reply(now, client, pkt, &ip);
        }
        if !self.cfg.mesh.is_empty()
            && let Some(s) = self.cfg.sandboxes.iter().position(|s| {
                let dst = ethernet::Frame::new_unchecked(frame).dst();
                (s.machine_ip == t.dst && s.machine_mac.0 == dst)
                    || (s.uplink == ingress && s.ip == t.dst && s.mac.0 == dst)
            })
        {
            return self.mesh_forward(now, s, pkt, &ip);
        }
        Pre::Pass
    }

    /// Whether a frame the engine hands to `port` is a mesh connection to
    /// be taken into a sandbox: the router delivers a routed client (a
    /// container of another machine, masqueraded) to the machine's host
    /// stack on its uplink.
    pub(crate) fn claims_uplink(&self, port: PortId, frame: &[u8]) -> bool {
        if self.cfg.mesh.is_empty() {
            return false;
        }
        let Some(s) = self.cfg.sandboxes.iter().find(|s| s.uplink == port) else {
            return false;
        };
        let Some(ip) = Ip4::parse(frame) else {
            return false;
        };
        let t = ip.tuple;
        t.dst == s.machine_ip
            && (self.mesh.contains_key(&t)
                || self
                    .cfg
                    .mesh
                    .iter()
                    .any(|m| m.proto == t.proto && m.published == t.dport))
    }

    /// [`Services::claims_uplink`]'s frame: scheduled like one from lan.
    pub(crate) fn routed_to_mesh(&mut self, now: Instant, port: PortId, pkt: &mut Packet) -> Pre {
        let Some(s) = self.cfg.sandboxes.iter().position(|s| s.uplink == port) else {
            return Pre::Pass;
        };
        let Some(ip) = Ip4::parse(pkt.frame()) else {
            return Pre::Pass;
        };
        self.mesh_forward(now, s, pkt, &ip)
    }

    /// Client → VIP: schedule (new flow) or follow the flow, then DNAT.
    fn vip_forward(&mut self, now: Instant, v: usize, pkt: &mut Packet, ip: &Ip4) -> Pre {
        let t = ip.tuple;
        if t.proto != IPPROTO_TCP && t.proto != IPPROTO_UDP || matches!(ip.l4, L4::Fragment) {
            return Pre::Drop(DropReason::NoRoute);
        }
        let known = self
            .flows
            .get(&t)
            .filter(|f| now.saturating_duration_since(f.last) <= timeout(t.proto, f.closing))
            .copied();
        let mut flow = match known {
            Some(f) => f,
            None => {
                if !opens(ip) {
                    return Pre::Drop(DropReason::InvalidState);
                }
                let backends = &self.cfg.vips[v].backends;
                if backends.is_empty() {
                    self.stats.no_backend += 1;
                    return Pre::Drop(DropReason::NoRoute);
                }
                let next = self.rr.entry((v, t.src)).or_insert(0);
                let backend = backends[*next % backends.len()];
                *next = next.wrapping_add(1);
                self.stats.vip_connections += 1;
                if let Some(old) = self.flows.get(&t) {
                    let stale = Tuple {
                        src: old.backend.ip,
                        ..t.inverse()
                    };
                    self.back.remove(&stale);
                }
                let reply = Tuple {
                    src: backend.ip,
                    ..t.inverse()
                };
                self.back.insert(reply, t);
                VipFlow {
                    vip: v,
                    backend,
                    last: now,
                    closing: false,
                }
            }
        };
        flow.last = now;
        flow.closing |= closes(ip);
        self.flows.insert(t, flow);
        let to = Tuple {
            dst: flow.backend.ip,
            ..t
        };
        nat::translate(pkt, ip, &t, &to);
        ethernet::Frame::new_unchecked(pkt.frame_mut()).set_dst(flow.backend.mac.0);
        self.stats.translated += 1;
        Pre::Pass
    }

    /// Task → client of a VIP flow: the source becomes the VIP again.
    fn vip_reply(&mut self, now: Instant, client: Tuple, pkt: &mut Packet, ip: &Ip4) -> Pre {
        let Some(f) = self.flows.get_mut(&client) else {
            return Pre::Pass;
        };
        f.last = now;
        f.closing |= closes(ip);
        let vip = &self.cfg.vips[f.vip];
        let t = ip.tuple;
        let to = Tuple { src: vip.vip, ..t };
        nat::translate(pkt, ip, &t, &to);
        ethernet::Frame::new_unchecked(pkt.frame_mut()).set_src(vip.mac.0);
        self.stats.translated += 1;
        Pre::Pass
    }

    /// Client → machine:published: schedule over every task, SNAT to the
    /// machine's sandbox, DNAT to the task's ingress address.
    fn mesh_forward(&mut self, now: Instant, s: usize, pkt: &mut Packet, ip: &Ip4) -> Pre {
        let t = ip.tuple;
        let Some(m) = self
            .cfg
            .mesh
            .iter()
            .position(|m| m.proto == t.proto && m.published == t.dport)
        else {
            return Pre::Pass;
        };
        if matches!(ip.l4, L4::Fragment) {
            return Pre::Drop(DropReason::UntrackedFragment);
        }
        let known = self
            .mesh
            .get(&t)
            .filter(|f| now.saturating_duration_since(f.last) <= timeout(t.proto, f.closing))
            .copied();
        let mut flow = match known {
            Some(f) => f,
            None => {
                if !opens(ip) {
                    return Pre::Drop(DropReason::InvalidState);
                }
                match self.new_mesh_flow(now, s, m, pkt, &t) {
                    Ok(f) => f,
                    Err(r) => return Pre::Drop(r),
                }
            }
        };
        flow.last = now;
        flow.closing |= closes(ip);
        self.mesh.insert(t, flow);
        nat::translate(pkt, ip, &t, &flow.inner);
        if ip.ttl > 1 {
            nat::dec_ttl(pkt);
        }
        let sb = &self.cfg.sandboxes[s];
        nat::set_macs(pkt, flow.task_mac.0, sb.mac.0);
        self.stats.translated += 1;
        Pre::Inject(sb.port)
    }

    fn new_mesh_flow(
        &mut self,
        now: Instant,
        s: usize,
        m: usize,
        pkt: &Packet,
        t: &Tuple,
    ) -> Result<MeshFlow, DropReason> {
        let mc = &self.cfg.mesh[m];
        if mc.backends.is_empty() {
            self.stats.no_backend += 1;
            return Err(DropReason::NoRoute);
        }
        let turn = self.mesh_rr.get(&(m, s)).copied().unwrap_or(0);
        let backend = mc.backends[turn % mc.backends.len()];
        let sb_ip = self.cfg.sandboxes[s].ip;
        // The client's port if free towards that task, else the next free.
        let mut inner = Tuple {
            src: sb_ip,
            dst: backend.ip,
            sport: t.sport,
            dport: mc.target,
            proto: t.proto,
            icmp_reply: false,
        };
        let mut tries = 0u32;
        while self.mesh_back.contains_key(&inner.inverse()) {
            tries += 1;
            if tries > 28_000 {
                return Err(DropReason::NatPortsExhausted);
            }
            inner.sport = if inner.sport >= 60999 || inner.sport < 32768 {
                32768
            } else {
                inner.sport + 1
            };
        }
        self.mesh_rr.insert((m, s), turn.wrapping_add(1));
        self.stats.mesh_connections += 1;
        if let Some(old) = self.mesh.get(t) {
            self.mesh_back.remove(&old.inner.inverse());
        }
        self.mesh_back.insert(inner.inverse(), *t);
        let client_mac = ethernet::Frame::new_unchecked(pkt.frame()).src();
        Ok(MeshFlow {
            sandbox: s,
            client_mac,
            inner,
            task_mac: backend.mac,
            last: now,
            closing: false,
            local: t.dst == sb_ip,
        })
    }

    /// A frame the engine delivered to sandbox port `port`.
    pub(crate) fn post(&mut self, now: Instant, port: PortId, pkt: &mut Packet) -> Post {
        let Some(&s) = self.sandbox_at.get(&port) else {
            return Post::Drop;
        };
        let frame = pkt.frame();
        if ethernet::ethertype(frame) == EtherType::ARP {
            let sb = &self.cfg.sandboxes[s];
            return match ArpRepr::parse(ethernet::Frame::new_unchecked(frame).payload()) {
                Some(req) if req.op == arp::REQUEST && Ipv4Addr::from(req.tpa) == sb.ip => {
                    self.stats.arp_answered += 1;
                    Post::Reply(arp_reply(&req, sb.mac))
                }
                _ => Post::Drop,
            };
        }
        let Some(ip) = Ip4::parse(frame) else {
            return Post::Drop;
        };
        let t = ip.tuple;
        let Some(&client) = self.mesh_back.get(&t) else {
            return Post::Drop;
        };
        let Some(f) = self.mesh.get_mut(&client) else {
            return Post::Drop;
        };
        if f.sandbox != s {
            return Post::Drop;
        }
        f.last = now;
        f.closing |= closes(&ip);
        let (client_mac, local) = (f.client_mac, f.local);
        let sb = &self.cfg.sandboxes[s];
        nat::translate(pkt, &ip, &t, &client.inverse());
        if ip.ttl > 1 {
            nat::dec_ttl(pkt);
        }
        self.stats.translated += 1;
        if local {
            nat::set_macs(pkt, client_mac, sb.mac.0);
            return Post::ToHost(sb.uplink);
        }
        nat::set_macs(pkt, client_mac, sb.machine_mac.0);
        Post::ToLan(sb.uplink)
    }
}

impl super::Engine {
    /// Adds swarm services: VIPs, ingress sandboxes and published ports
    /// (see the module documentation). Replaces any earlier set.
    pub fn set_services(&mut self, cfg: ServiceConfig) {
        self.services = Some(Box::new(Services::new(cfg)));
    }

    /// Takes the task at `ip` out of every VIP and published port, with
    /// its flows (a task that went away, SVC-6).
    pub fn remove_service_backend(&mut self, ip: Ipv4Addr) {
        if let Some(s) = self.services.as_deref_mut() {
            s.remove_backend(ip);
        }
    }

    /// The service stage's counters (None without services).
    pub fn service_stats(&self) -> Option<ServiceStats> {
        self.services.as_deref().map(Services::stats)
    }

    /// Live VIP and mesh flows.
    pub fn service_flows(&self) -> usize {
        self.services.as_deref().map_or(0, Services::len)
    }

    /// The stage on a frame just admitted on `ingress`; true: handled.
    pub(super) fn service_pre(&mut self, cx: &mut FrameCx<'_>) -> bool {
        let (now, ingress, domain) = (cx.now, cx.ingress, cx.port.domain);
        let (pkt, out) = (&mut *cx.pkt, &mut *cx.out);
        let Some(s) = self.services.as_deref_mut() else {
            return false;
        };
        match s.pre(now, ingress, domain, pkt) {
            Pre::Pass => false,
            Pre::Reply(p) => {
                self.metrics.tx(ingress, p.len());
                out.push(super::Action::Emit(ingress, p));
                true
            }
            Pre::Drop(r) => {
                super::l2::drop_frame(&mut self.metrics, ingress, r, out);
                true
            }
            Pre::Inject(port) => {
                self.inject(now, port, pkt, out);
                true
            }
        }
    }

    /// Frames that `out[start..]` delivers to sandbox ports go to the
    /// stage instead: ARP answered, replies translated onto `lan`.
    pub(super) fn service_post(&mut self, cx: &mut FrameCx<'_>) {
        let (now, start) = (cx.now, cx.start);
        let (pkt, out) = (&*cx.pkt, &mut *cx.out);
        use super::Action;
        let is_sb = |s: &Services, a: &Action| match a {
            Action::Forward(p) => s.is_sandbox(*p) || s.claims_uplink(*p, pkt.frame()),
            Action::Emit(p, b) => s.is_sandbox(*p) || s.claims_uplink(*p, b.frame()),
            _ => false,
        };
        let Some(s) = self.services.as_deref() else {
            return;
        };
        if !out[start..].iter().any(|a| is_sb(s, a)) {
            return;
        }
        let mut taken = Vec::new();
        let mut i = start;
        while i < out.len() {
            if self.services.as_deref().is_some_and(|s| is_sb(s, &out[i])) {
                taken.push(out.remove(i));
            } else {
                i += 1;
            }
        }
        for a in taken {
            let (port, mut p) = match a {
                Action::Forward(p) => (p, Packet::from_frame(pkt.hdr, pkt.frame())),
                Action::Emit(p, b) => (p, b),
                _ => continue,
            };
            let Some(s) = self.services.as_deref_mut() else {
                return;
            };
            let mut sub = Vec::new();
            if !s.is_sandbox(port) {
                // A routed client to this machine's published port.
                match s.routed_to_mesh(now, port, &mut p) {
                    Pre::Inject(sb) => self.inject(now, sb, &mut p, &mut sub),
                    Pre::Pass => {
                        out.push(Action::Emit(port, p));
                        continue;
                    }
                    Pre::Drop(_) | Pre::Reply(_) => continue,
                }
            } else {
                match s.post(now, port, &mut p) {
                    Post::Drop => continue,
                    Post::ToHost(uplink) => {
                        self.metrics.tx(uplink, p.len());
                        out.push(Action::Emit(uplink, p));
                        continue;
                    }
                    Post::Reply(mut r) => {
                        self.inject(now, port, &mut r, &mut sub);
                        p = r;
                    }
                    // As the machine's host stack sends it: the router
                    // takes replies to routed (masqueraded) clients.
                    Post::ToLan(uplink) => self.inject(now, uplink, &mut p, &mut sub),
                }
            }
            for a in sub {
                match a {
                    Action::Forward(to) => {
                        out.push(Action::Emit(to, Packet::from_frame(p.hdr, p.frame())))
                    }
                    Action::Drop(_) => {}
                    other => out.push(other),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
