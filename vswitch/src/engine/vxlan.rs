//! The engine's VXLAN tunnel endpoints (OV-2..5): an overlay
//! network is one L2 domain per machine; each such domain has a virtual
//! VTEP port (a port with no TAP behind it). Frames the domain sends to that
//! port are encapsulated in VXLAN/UDP 4789 from the machine's uplink address
//! to the peer machine's and handed to `lan` as if the machine's uplink had
//! sent them (the engine speaks on lan as the machine, as the router does
//! for NAT). VXLAN arriving on `lan` for a machine's uplink address is
//! decapsulated into the VNI's domain on that machine, as if received on its
//! VTEP port.
//!
//! Per VTEP: remote MACs are learned from decapsulated frames (inner source
//! → outer source address) on top of the bindings the control plane knows
//! (the scenario's containers, OV-11); broadcast and unknown unicast are
//! replicated to every peer of the VNI (head-end replication); ARP requests
//! for a known remote binding are answered locally; VXLAN for a VNI the
//! machine has no VTEP for is dropped (`vxlan-unknown-vni`). The outer UDP
//! source port is a hash of the inner flow (RFC 7348 §5).
//!
//! virtio-net metadata: the inner frame's checksum/GSO offsets are shifted
//! with the outer headers, so a GSO super-frame crosses the (virtual) lan
//! whole and is written to the receiving container's TAP still GSO: TCP
//! across the overlay keeps its offloads. Where an encapsulated frame must
//! leave on a real link without tunnel GSO, [`segment_tcp4`] (IPv4) or
//! [`super::gso6::segment_tcp6`] (IPv6) cuts the inner super-frame into
//! MSS-sized segments with full checksums first.
//!
//! Path MTU (BUG-7): an inner packet that does not fit the underlay once
//! encapsulated (the machine's lan MTU, or its uplink's faulted MTU, less
//! 50) is answered with ICMP "fragmentation needed" / ICMPv6 "packet too
//! big" as Linux's vxlan answers it ([`super::pmtu`]); one that cannot be
//! answered (no DF) leaves in outer fragments, which a receiving VTEP of
//! this engine puts back together ([`super::reasm`]).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::esp::{self, EspState, SaConfig};
use super::fdb::mac_key;
use super::pipeline::FrameCx;
use super::{Action, DomainId, DropReason, Engine, MacAddr, Packet, PortId, VnetHdr, l2};
use crate::wire::arp::{self, ArpRepr};
use crate::wire::ethernet::{self, EtherType, HEADER_LEN as ETH_HDR_LEN};
use crate::wire::ip::checksum::{self, checksum};
use crate::wire::{IpProtocol, ipv4, ipv6, tcp, udp, vxlan};

/// UDP destination port of VXLAN (IANA, OV-2).
pub const VXLAN_PORT: u16 = vxlan::PORT;
/// Outer Ethernet + IPv4 + UDP + VXLAN headers: what the overlay costs (OV-5).
pub const OVERHEAD: usize = ETH_HDR_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN;
const IPPROTO_UDP: u8 = IpProtocol::UDP;
const IPPROTO_TCP: u8 = IpProtocol::TCP;

/// One VTEP: an overlay network's domain on one machine.
#[derive(Clone, Debug)]
pub struct VtepConfig {
    /// Network name (for logs).
    pub name: String,
    /// The VNI.
    pub vni: u32,
    /// The overlay's domain on this machine.
    pub domain: DomainId,
    /// The domain's virtual VTEP port (configured in `EngineConfig::ports`
    /// as a `Plain` port of `domain`; no TAP behind it).
    pub port: PortId,
    /// The machine's uplink port on lan.
    pub uplink: PortId,
    /// The machine's uplink address (the outer source).
    pub local_ip: Ipv4Addr,
    /// The machine's uplink MAC.
    pub local_mac: MacAddr,
    /// Other machines of the VNI: underlay address and MAC.
    pub peers: Vec<(Ipv4Addr, MacAddr)>,
    /// Remote containers known up front: (inner IP, inner MAC, peer address).
    pub bindings: Vec<(Ipv4Addr, MacAddr, Ipv4Addr)>,
    /// Emit [`Action::Capture`] copies of the VXLAN frames this engine
    /// carries between its own VTEPs (set when lan is captured).
    pub capture: bool,
    /// Encrypted overlay (`encrypted = true`, OV-9): the ESP SAs between
    /// this machine and its peers, both directions. Non-empty: this VNI's
    /// VXLAN leaves only inside ESP, and cleartext VXLAN of it is dropped
    /// on receive.
    pub esp: Vec<SaConfig>,
}

#[derive(Debug)]
struct Vtep {
    cfg: VtepConfig,
    /// Inner MAC → peer address (static bindings, then learned).
    remote: HashMap<u64, Ipv4Addr>,
    /// Inner IP → inner MAC, for local ARP answers.
    arp: HashMap<Ipv4Addr, MacAddr>,
    peer_mac: HashMap<Ipv4Addr, MacAddr>,
}

/// The engine's VTEPs.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    vteps: Vec<Vtep>,
    by_port: HashMap<PortId, usize>,
    by_domain: HashMap<DomainId, usize>,
    by_local: HashMap<(Ipv4Addr, u32), usize>,
    /// Uplink ports of machines that have VTEPs, with their addresses.
    locals: HashMap<Ipv4Addr, PortId>,
    /// Copy encapsulated frames between this engine's own VTEPs to the
    /// sender's uplink capture ([`Action::Capture`]).
    capture: bool,
    /// SAs of encrypted overlays (None: no VTEP is encrypted).
    esp: Option<EspState>,
    /// Outer packets fragmented on the underlay, being put together.
    reasm: super::reasm::Reassembly,
    /// Counters.
    pub(crate) stats: OverlayStats,
}

/// What the VTEPs did.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct OverlayStats {
    /// Frames encapsulated (one per peer copy).
    pub encapsulated: u64,
    /// Frames decapsulated.
    pub decapsulated: u64,
    /// ARP requests answered locally.
    pub arp_answered: u64,
    /// VXLAN dropped for an unknown VNI.
    pub unknown_vni: u64,
    /// Remote MACs learned (new or moved).
    pub learned: u64,
    /// VXLAN frames sent inside ESP (encrypted overlays).
    pub esp_protected: u64,
    /// ESP frames decrypted and authenticated.
    pub esp_unprotected: u64,
    /// ESP frames refused (any `esp-*` drop reason).
    pub esp_refused: u64,
    /// Cleartext VXLAN dropped for an encrypted VNI.
    pub cleartext_dropped: u64,
    /// Inner packets too big for the underlay answered with ICMP
    /// "fragmentation needed" / ICMPv6 "packet too big".
    pub too_big: u64,
    /// Encapsulated packets sent fragmented (inner packet without DF).
    pub fragmented: u64,
    /// Fragmented outer packets put back together.
    pub reassembled: u64,
}

impl Overlay {
    pub(crate) fn new(cfgs: &[VtepConfig]) -> Overlay {
        let mut o = Overlay {
            capture: cfgs.iter().any(|c| c.capture),
            ..Overlay::default()
        };
        for (i, c) in cfgs.iter().enumerate() {
            let mut remote = HashMap::new();
            let mut arp = HashMap::new();
            for &(ip, mac, peer) in &c.bindings {
                remote.insert(mac_key(&mac.0), peer);
                arp.insert(ip, mac);
            }
            o.vteps.push(Vtep {
                cfg: c.clone(),
                remote,
                arp,
                peer_mac: c.peers.iter().copied().collect(),
            });
            o.by_port.insert(c.port, i);
            o.by_domain.insert(c.domain, i);
            o.by_local.insert((c.local_ip, c.vni), i);
            o.locals.insert(c.local_ip, c.uplink);
            if !c.esp.is_empty() {
                o.esp.get_or_insert_with(EspState::default).add(&c.esp);
            }
        }
        o
    }

    /// The domain and port of the VTEP of VNI `vni` at this engine's
    /// address `ip`.
    pub(crate) fn vtep_at(&self, ip: Ipv4Addr, vni: u32) -> Option<(DomainId, PortId)> {
        let vt = &self.vteps[*self.by_local.get(&(ip, vni))?];
        Some((vt.cfg.domain, vt.cfg.port))
    }

    /// True when frames between this engine's VTEPs are captured.
    pub(crate) fn captured(&self) -> bool {
        self.capture
    }
}

/// Why a frame addressed to a VTEP could not be decapsulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecapError {
    /// Headers short or inconsistent, or the I flag clear.
    Malformed,
}

/// The outer headers of a VXLAN frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outer {
    /// Outer source address (the sending VTEP).
    pub src: Ipv4Addr,
    /// Outer destination address.
    pub dst: Ipv4Addr,
    /// The VNI.
    pub vni: u32,
    /// Offset of the inner Ethernet frame.
    pub inner: usize,
}

/// Parses an Ethernet frame: `Ok(None)` when it is not IPv4/UDP to port
/// 4789 (not ours to look at), `Err` when it is but is malformed.
pub fn parse_outer(frame: &[u8]) -> Result<Option<Outer>, DecapError> {
    if frame.len() < ETH_HDR_LEN + ipv4::HEADER_LEN || ethernet::ethertype(frame) != EtherType::IPV4
    {
        return Ok(None);
    }
    let ip = ipv4::Packet::new_unchecked(&frame[ETH_HDR_LEN..]);
    if ip.version() != 4 || ip.protocol() != IPPROTO_UDP {
        return Ok(None);
    }
    let ihl = ip.header_len();
    let total = usize::from(ip.total_len());
    let ipb = ip.into_inner();
    if ihl < ipv4::HEADER_LEN || ipb.len() < ihl + udp::HEADER_LEN {
        return Ok(None);
    }
    // Fragments are not VXLAN we can decapsulate here.
    if ip.is_fragment() {
        return Ok(None);
    }
    let u = udp::Packet::new_unchecked(&ipb[ihl..]);
    if u.dst_port() != VXLAN_PORT {
        return Ok(None);
    }
    let ulen = usize::from(u.len());
    // GSO frames from a TAP may carry total/UDP lengths of 0 or of one
    // segment; only the buffer bounds what is read.
    const MIN_UDP: usize = udp::HEADER_LEN + vxlan::HEADER_LEN + ETH_HDR_LEN;
    if total != 0 && (total < ihl + MIN_UDP) {
        return Err(DecapError::Malformed);
    }
    if ulen != 0 && ulen < MIN_UDP {
        return Err(DecapError::Malformed);
    }
    let Ok(vx) = vxlan::Packet::new_checked(u.payload()) else {
        return Err(DecapError::Malformed);
    };
    if vx.payload().len() < ETH_HDR_LEN || !vx.vni_valid() {
        return Err(DecapError::Malformed);
    }
    Ok(Some(Outer {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        vni: vx.vni(),
        inner: ETH_HDR_LEN + ihl + udp::HEADER_LEN + vxlan::HEADER_LEN,
    }))
}

/// The outer UDP source port for an inner frame: a hash of its MACs,
/// EtherType and (for IPv4) addresses, protocol and ports, folded into
/// 49152..=65535 so one flow always takes one underlay path.
pub fn flow_port(inner: &[u8]) -> u16 {
    // FNV-1a: cheap, deterministic, no per-process seed.
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |b: &[u8]| {
        for &x in b {
            h ^= u32::from(x);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    if inner.len() >= ETH_HDR_LEN {
        eat(&inner[..ETH_HDR_LEN]);
        let et = ethernet::ethertype(inner);
        // Both ports, as the first 4 bytes of a TCP or UDP header.
        let ports = |l4: &[u8]| {
            let u = udp::Packet::new_unchecked(l4);
            let (s, d) = (u.src_port().to_be_bytes(), u.dst_port().to_be_bytes());
            [s[0], s[1], d[0], d[1]]
        };
        if et == EtherType::IPV4 && inner.len() >= ETH_HDR_LEN + ipv4::HEADER_LEN {
            let ipb = &inner[ETH_HDR_LEN..];
            let ip = ipv4::Packet::new_unchecked(ipb);
            eat(&[ip.protocol()]);
            eat(&ip.src());
            eat(&ip.dst());
            let ihl = ip.header_len();
            if matches!(ip.protocol(), IPPROTO_TCP | IPPROTO_UDP)
                && ipb.len() >= ihl + 4
                && ihl >= ipv4::HEADER_LEN
            {
                eat(&ports(&ipb[ihl..]));
            }
        } else if et == EtherType::IPV6 && inner.len() >= ETH_HDR_LEN + ipv6::HEADER_LEN + 4 {
            let ipb = &inner[ETH_HDR_LEN..];
            let ip = ipv6::Packet::new_unchecked(ipb);
            eat(&[ip.next_header()]);
            eat(&ip.src());
            eat(&ip.dst());
            if matches!(ip.next_header(), IPPROTO_TCP | IPPROTO_UDP) {
                eat(&ports(&ipb[ipv6::HEADER_LEN..]));
            }
        }
    }
    49152 | (((h >> 16) ^ h) as u16 & 0x3fff)
}

/// Builds the VXLAN encapsulation of `inner` (its vnet header's offsets
/// shifted by the outer headers). The outer UDP checksum is 0 (allowed for
/// IPv4, RFC 7348 §5); DF is clear, as Linux's vxlan leaves it by default.
pub fn encap(
    inner: &Packet,
    vni: u32,
    src_mac: MacAddr,
    src_ip: Ipv4Addr,
    dst_mac: MacAddr,
    dst_ip: Ipv4Addr,
    sport: u16,
) -> Packet {
    let n = inner.len();
    let mut hdr = inner.hdr;
    hdr.shift(OVERHEAD as i32);
    let mut p = Packet::zeroed(hdr, n + OVERHEAD);
    let b = p.frame_mut();
    let ends = OuterEnds {
        vni,
        src: (src_mac, src_ip),
        dst: (dst_mac, dst_ip),
    };
    emit_outer(b, n, &ends, sport);
    b[OVERHEAD..].copy_from_slice(inner.frame());
    p
}

/// Who a VXLAN frame goes between: the VNI, the sending VTEP's MAC and
/// address, the receiving one's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OuterEnds {
    /// The VNI.
    pub vni: u32,
    /// The sending VTEP (its machine's uplink).
    pub src: (MacAddr, Ipv4Addr),
    /// The receiving VTEP.
    pub dst: (MacAddr, Ipv4Addr),
}

/// The outer headers of an empty inner frame from UDP source port 0:
/// what the kernel fast path puts in front of a frame it encapsulates,
/// setting the lengths (the IPv4 checksum updated) and the source port
/// there (`backend::userspace::offload`).
pub fn outer_headers(ends: &OuterEnds) -> [u8; OVERHEAD] {
    let mut b = [0u8; OVERHEAD];
    emit_outer(&mut b, 0, ends, 0);
    b
}

/// Writes the outer Ethernet, IPv4, UDP and VXLAN headers for an inner
/// frame of `n` bytes into `b[..OVERHEAD]` (the IPv4 length saturates at
/// 65535 for a GSO super-frame).
fn emit_outer(b: &mut [u8], n: usize, ends: &OuterEnds, sport: u16) {
    let ((src_mac, src_ip), (dst_mac, dst_ip)) = (ends.src, ends.dst);
    ethernet::emit(b, dst_mac.0, src_mac.0, EtherType::IPV4);
    let ip_len = (n + OVERHEAD - ETH_HDR_LEN).min(usize::from(u16::MAX));
    let ip = ipv4::Repr {
        src: src_ip.octets(),
        dst: dst_ip.octets(),
        protocol: IPPROTO_UDP,
        payload_len: ip_len - ipv4::HEADER_LEN,
        ttl: 64,
        tos: 0,
        dont_frag: false,
    };
    ip.emit(&mut b[ETH_HDR_LEN..]);
    let at = ETH_HDR_LEN + ipv4::HEADER_LEN;
    let u = udp::Repr {
        src_port: sport,
        dst_port: VXLAN_PORT,
        payload_len: ip_len - ipv4::HEADER_LEN - udp::HEADER_LEN,
    };
    u.emit(&mut b[at..]);
    vxlan::Repr { vni: ends.vni }.emit(&mut b[at + udp::HEADER_LEN..]);
}

/// Strips the outer headers (`inner` from [`parse_outer`]) in place and
/// shifts the vnet header back.
///
/// A partial checksum that starts in the outer headers is the outer UDP
/// checksum (Linux's vxlan sends `udpcsum`): it dies with them, and the
/// inner frame's own checksums are complete (one skb has one partial
/// checksum), so the flag is cleared.
pub fn decap_in_place(pkt: &mut Packet, inner: usize) {
    pkt.pull_front(inner);
    let h = &mut pkt.hdr;
    if h.flags & VnetHdr::F_NEEDS_CSUM != 0 && usize::from(h.csum_start) < inner {
        h.flags &= !VnetHdr::F_NEEDS_CSUM;
        h.csum_start = 0;
        h.csum_offset = 0;
    }
    if usize::from(h.hdr_len) < inner {
        h.hdr_len = 0;
    }
    h.shift(-(inner as i32));
}

/// Cuts an inner IPv4/TCP GSO super-frame (`hdr.gso_type` TCPV4) into
/// frames of at most `gso_size` payload bytes, each with its own IPv4 total
/// length, id, header checksum, TCP sequence number and full TCP checksum
/// (FIN/PSH only on the last, CWR only on the first). Anything else comes
/// back as one frame with its checksum completed if it was partial.
pub fn segment_tcp4(pkt: &Packet) -> Vec<Packet> {
    let f = pkt.frame();
    let h = pkt.hdr;
    let is_tcp4 = h.gso_type & !VnetHdr::GSO_ECN == VnetHdr::GSO_TCPV4;
    let ip_ok =
        f.len() >= ETH_HDR_LEN + ipv4::HEADER_LEN && ethernet::ethertype(f) == EtherType::IPV4;
    if !is_tcp4 || !ip_ok || h.gso_size == 0 {
        let mut one = Packet::from_frame(VnetHdr::default(), f);
        finish_csum(&mut one, &h);
        return vec![one];
    }
    let ip = ipv4::Packet::new_unchecked(&f[ETH_HDR_LEN..]);
    let ihl = ip.header_len();
    let l4 = ETH_HDR_LEN + ihl;
    if ihl < ipv4::HEADER_LEN || f.len() < l4 + tcp::HEADER_LEN || ip.protocol() != IPPROTO_TCP {
        return vec![Packet::from_frame(VnetHdr::default(), f)];
    }
    let t0 = tcp::Packet::new_unchecked(&f[l4..]);
    let thl = t0.header_len();
    let hlen = l4 + thl;
    if thl < tcp::HEADER_LEN || f.len() < hlen {
        return vec![Packet::from_frame(VnetHdr::default(), f)];
    }
    let payload = &f[hlen..];
    let id0 = ip.ident();
    let (src, dst) = (ip.src(), ip.dst());
    super::gso6::cut_tcp(
        f,
        l4,
        payload,
        usize::from(h.gso_size),
        |b, i, n| {
            let mut iph = ipv4::Packet::new_unchecked(&mut b[ETH_HDR_LEN..l4]);
            iph.set_total_len((ihl + thl + n) as u16);
            iph.set_ident(id0.wrapping_add(i as u16));
            iph.fill_checksum();
        },
        |seg| l4_checksum(src, dst, IPPROTO_TCP, seg),
    )
}

/// TCP/UDP checksum over the IPv4 pseudo-header and `seg` (whose checksum
/// field must be zero).
pub fn l4_checksum(src: [u8; 4], dst: [u8; 4], proto: u8, seg: &[u8]) -> u16 {
    checksum::l4_checksum4(src, dst, proto, seg)
}

/// Completes a partial checksum (`F_NEEDS_CSUM`) in software.
fn finish_csum(p: &mut Packet, h: &VnetHdr) {
    if h.flags & VnetHdr::F_NEEDS_CSUM == 0 {
        return;
    }
    let start = usize::from(h.csum_start);
    let at = start + usize::from(h.csum_offset);
    let b = p.frame_mut();
    if at + 2 > b.len() {
        return;
    }
    // The field holds the pseudo-header sum; fold the rest on top.
    let c = checksum(&b[start..]);
    b[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

fn push(out: &mut Vec<Action>, engine_metrics: &mut super::Metrics, a: Action) {
    if let Action::Emit(p, ref pkt) = a {
        engine_metrics.tx(p, pkt.len());
    }
    out.push(a);
}

/// The overlay stages of the pipeline (`overlay-in`, `overlay-out`): they
/// are `Engine` methods because encapsulated frames go back into the
/// engine from the machine's uplink.
impl Engine {
    /// A frame received on a lan port: when it is VXLAN for a local VTEP's
    /// address, decapsulates it into the VNI's domain (true: handled).
    pub(super) fn overlay_ingress(&mut self, cx: &mut FrameCx<'_>) -> bool {
        let (now, ingress) = (cx.now, cx.ingress);
        let (pkt, out) = (&mut *cx.pkt, &mut *cx.out);
        let Some(ov) = self.overlay.as_deref_mut() else {
            return false;
        };
        // ESP to a machine of this engine: decrypted first, then decapsulated
        // as the VXLAN it carries (OV-9).
        let mut protected = false;
        if let Some(st) = ov.esp.as_mut()
            && esp::is_esp(pkt.frame())
            && ov.locals.contains_key(&esp::ipv4_dst(pkt.frame()))
        {
            match st.unprotect(pkt.frame()) {
                Ok(plain) => {
                    ov.stats.esp_unprotected += 1;
                    *pkt = plain;
                    protected = true;
                }
                Err(e) => {
                    ov.stats.esp_refused += 1;
                    l2::drop_frame(&mut self.metrics, ingress, e.drop_reason(), out);
                    return true;
                }
            }
        }
        // Only UDP (VXLAN's outer protocol) is put back together: other
        // fragments to the machine go on as they came.
        if super::reasm::is_fragment(pkt.frame())
            && ipv4::Packet::new_unchecked(&pkt.frame()[ETH_HDR_LEN..]).protocol() == IPPROTO_UDP
            && ov.locals.contains_key(&esp::ipv4_dst(pkt.frame()))
        {
            match ov.reasm.offer(now, pkt.frame()) {
                super::reasm::Offer::Whole => {}
                super::reasm::Offer::Kept => return true,
                super::reasm::Offer::Complete(p) => {
                    ov.stats.reassembled += 1;
                    *pkt = p;
                }
                super::reasm::Offer::Refused => {
                    l2::drop_frame(&mut self.metrics, ingress, DropReason::VxlanMalformed, out);
                    return true;
                }
            }
        }
        let frame = pkt.frame();
        let outer = match parse_outer(frame) {
            Ok(Some(o)) => o,
            Ok(None) => return false,
            Err(DecapError::Malformed) => {
                // parse_outer saw at least an IPv4 header.
                let dst_ip = ipv4::Packet::new_unchecked(&frame[ETH_HDR_LEN..]).dst_addr();
                if ov.locals.contains_key(&dst_ip) {
                    l2::drop_frame(&mut self.metrics, ingress, DropReason::VxlanMalformed, out);
                    return true;
                }
                return false;
            }
        };
        if !ov.locals.contains_key(&outer.dst) {
            return false;
        }
        let Some(&vi) = ov.by_local.get(&(outer.dst, outer.vni)) else {
            ov.stats.unknown_vni += 1;
            l2::drop_frame(&mut self.metrics, ingress, DropReason::VxlanUnknownVni, out);
            return true;
        };
        let vt = &mut ov.vteps[vi];
        if !vt.cfg.esp.is_empty() && !protected {
            ov.stats.cleartext_dropped += 1;
            l2::drop_frame(&mut self.metrics, ingress, DropReason::VxlanCleartext, out);
            return true;
        }
        let inner = &frame[outer.inner..];
        if inner.len() < ETH_HDR_LEN {
            l2::drop_frame(&mut self.metrics, ingress, DropReason::VxlanMalformed, out);
            return true;
        }
        let inner_eth = ethernet::Frame::new_unchecked(inner);
        let src = mac_key(&inner_eth.src());
        let mut moved = false;
        if !inner_eth.src_is_multicast() {
            let was = vt.remote.insert(src, outer.src);
            if was != Some(outer.src) {
                ov.stats.learned += 1;
                moved = was.is_some();
            }
        }
        ov.stats.decapsulated += 1;
        let (domain, vport) = (vt.cfg.domain, vt.cfg.port);
        decap_in_place(pkt, outer.inner);
        self.metrics.rx(vport, pkt.len());
        // On into the VNI's domain, as if received on its VTEP port.
        let d = &mut self.domains[usize::from(domain.0)];
        let role = super::PortRole::Plain;
        let mut vtep = cx.on_port(vport, l2::Port { domain, role });
        let admitted = l2::admit(d, &mut self.metrics, &mut vtep);
        // (A MAC that moved here, or to another machine behind the tunnel,
        // retracts what the fast path holds of it.)
        self.take_moved(domain);
        if moved && self.offload.on {
            let mac = MacAddr(super::fdb::key_mac(src));
            self.offload
                .events
                .push(super::OffloadEvent::ForgetMac(mac));
        }
        if !admitted {
            return true;
        }
        let d = &mut self.domains[usize::from(domain.0)];
        l2::switch(d, &self.ports, &mut self.metrics, &mut vtep);
        true
    }

    /// A frame from a local port of an overlay domain: answers ARP for
    /// known remote bindings (true: handled).
    pub(super) fn overlay_arp(&mut self, cx: &mut FrameCx<'_>) -> bool {
        let (ingress, pkt, out) = (cx.ingress, &*cx.pkt, &mut *cx.out);
        let Some(ov) = self.overlay.as_deref_mut() else {
            return false;
        };
        let Some(port) = self.ports.get(usize::from(ingress.0)) else {
            return false;
        };
        let Some(&vi) = ov.by_domain.get(&port.domain) else {
            return false;
        };
        let f = pkt.frame();
        if ethernet::ethertype(f) != EtherType::ARP || ov.by_port.contains_key(&ingress) {
            return false;
        }
        let Some(req) = ArpRepr::parse(&f[ETH_HDR_LEN..]) else {
            return false;
        };
        if req.op != arp::REQUEST {
            return false;
        }
        let vt = &ov.vteps[vi];
        let Some(&mac) = vt.arp.get(&Ipv4Addr::from(req.tpa)) else {
            return false;
        };
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
        ov.stats.arp_answered += 1;
        push(out, &mut self.metrics, Action::Emit(ingress, p));
        true
    }

    /// After switching in an overlay domain: every `Forward` to a VTEP port
    /// (from `out[start..]`) becomes encapsulated copies for the peers —
    /// one when the destination MAC is known behind a peer, every peer
    /// otherwise — handed to lan from the machine's uplink.
    ///
    /// An inner packet too big for the underlay once encapsulated is
    /// answered as Linux's vxlan answers it ([`super::pmtu`]).
    pub(super) fn overlay_egress(&mut self, cx: &mut FrameCx<'_>, start: usize) {
        let (now, ingress) = (cx.now, cx.ingress);
        let (pkt, out) = (&*cx.pkt, &mut *cx.out);
        let Some(ov) = self.overlay.as_deref() else {
            return;
        };
        let Some(at) = out[start..]
            .iter()
            .position(|a| matches!(a, Action::Forward(p) if ov.by_port.contains_key(p)))
        else {
            return;
        };
        let Action::Forward(vport) = out.remove(start + at) else {
            return;
        };
        let vt = &ov.vteps[ov.by_port[&vport]];
        let f = pkt.frame();
        let eth = ethernet::Frame::new_unchecked(f);
        let dst = mac_key(&eth.dst());
        let targets: Vec<(Ipv4Addr, MacAddr)> = match vt.remote.get(&dst) {
            Some(ip) if !eth.dst_is_multicast() => vt
                .peer_mac
                .get(ip)
                .map(|m| vec![(*ip, *m)])
                .unwrap_or_default(),
            _ => vt.cfg.peers.clone(),
        };
        let sport = flow_port(f);
        let (vni, lmac, lip, uplink) =
            (vt.cfg.vni, vt.cfg.local_mac, vt.cfg.local_ip, vt.cfg.uplink);
        let encrypted = !vt.cfg.esp.is_empty();
        let unicast = targets.len() == 1 && !eth.dst_is_multicast();
        let mtu = self.overlay_inner_mtu(uplink, encrypted);
        let oversize = match super::pmtu::check(pkt, mtu) {
            super::pmtu::Verdict::Fits => false,
            super::pmtu::Verdict::Oversize => true,
            super::pmtu::Verdict::Answer(e) => {
                self.metrics.note(|| {
                    super::trace::TraceEvent::Note(format!(
                        "vxlan: too big for the underlay once encapsulated (inner MTU {mtu}): ICMP error back to the sender"
                    ))
                });
                // Counted as dropped unless it also went out of local ports.
                if !out[start..].iter().any(|a| matches!(a, Action::Forward(_))) {
                    self.metrics.drop(ingress, DropReason::FragNeeded);
                }
                self.metrics.tx(ingress, e.len());
                out.push(Action::Emit(ingress, e));
                if let Some(ov) = self.overlay.as_deref_mut() {
                    ov.stats.too_big += 1;
                }
                return;
            }
        };
        // Offered to the kernel fast path, when this decision is one it may
        // repeat (`super::offload`): one copy, whole, to a VTEP of this
        // engine.
        let offerable =
            unicast && !encrypted && !oversize && self.tunnel_offerable(ingress, f, &out[start..]);
        let mut sub = Vec::new();
        for (ip, mac) in targets {
            self.metrics.note(|| {
                super::trace::TraceEvent::Note(format!(
                    "vxlan: encapsulated in VNI {vni}, VTEP {lip} → {ip} (udp {sport} → 4789)"
                ))
            });
            // A peer VTEP of this engine decapsulates the frame whole, GSO
            // metadata and all; a foreign one (a kernel machine behind a TAP
            // without UDP-tunnel GSO) gets MSS-sized, fully checksummed
            // segments.
            let local = self
                .overlay
                .as_deref()
                .is_some_and(|o| o.locals.contains_key(&ip));
            // An encrypted VNI's frames are cut and checksummed first too:
            // ESP carries whole packets of at most the lan MTU.
            let whole = (local && !encrypted) || (!pkt.hdr.is_gso() && pkt.hdr.flags == 0);
            let mut frames = if whole {
                vec![encap(pkt, vni, lmac, lip, mac, ip, sport)]
            } else {
                super::gso6::segment_tcp(pkt)
                    .iter()
                    .map(|s| encap(s, vni, lmac, lip, mac, ip, sport))
                    .collect()
            };
            if oversize && !encrypted && !pkt.hdr.is_gso() {
                frames = self.overlay_fragment(frames, mtu + OVERHEAD);
            }
            if encrypted {
                self.metrics.note(|| {
                    super::trace::TraceEvent::Note(format!(
                        "esp: VNI {vni} is encrypted: each frame sealed in ESP (AES-GCM) for {lip} → {ip}"
                    ))
                });
                frames = self.overlay_protect(uplink, lip, ip, frames, out);
            }
            for mut e in frames {
                let capture = match self.overlay.as_deref_mut() {
                    Some(ov) => {
                        ov.stats.encapsulated += 1;
                        ov.capture
                    }
                    None => false,
                };
                if local && capture {
                    out.push(Action::Capture(
                        uplink,
                        Packet::from_frame(e.hdr, e.frame()),
                    ));
                }
                sub.clear();
                self.handle_frame(now, uplink, &mut e, &mut sub);
                if offerable && local {
                    let ends = OuterEnds {
                        vni,
                        src: (lmac, lip),
                        dst: (mac, ip),
                    };
                    self.offer_tunnel(ingress, f, &sub, (ends, mtu));
                }
                // The last Forward takes the packet itself: no copy for the
                // usual single destination.
                let last = sub.iter().rposition(|a| matches!(a, Action::Forward(_)));
                let mut owned = Some(e);
                for (i, a) in sub.drain(..).enumerate() {
                    match a {
                        Action::Forward(p) if Some(i) == last => {
                            if let Some(e) = owned.take() {
                                out.push(Action::Emit(p, e));
                            }
                        }
                        Action::Forward(p) => {
                            if let Some(e) = owned.as_ref() {
                                out.push(Action::Emit(p, Packet::from_frame(e.hdr, e.frame())));
                            }
                        }
                        Action::Drop(_) => {}
                        other => out.push(other),
                    }
                }
            }
        }
    }

    /// The largest inner IP packet a VTEP on `uplink` can carry: the
    /// machine's lan MTU (or its uplink's faulted MTU, when smaller) less
    /// the 50 bytes of VXLAN (OV-5), and for an encrypted VNI less the ESP
    /// expansion too, rounded down to 4 bytes (OV-6: 1424 on a 1500 lan).
    fn overlay_inner_mtu(&self, uplink: PortId, encrypted: bool) -> usize {
        // The machine's router knows it; an engine without one (L2 only)
        // has the default lan and the fault stage's MTU.
        let router = self
            .router
            .as_deref()
            .and_then(|r| r.machines.iter().find(|m| m.cfg.uplink == uplink));
        let under = match router {
            Some(m) => m.uplink_ip_mtu(),
            None => self
                .faults
                .fault(uplink)
                .and_then(|f| f.mtu)
                .map_or(1500, |f| usize::from(f).min(1500)),
        };
        if encrypted {
            under.saturating_sub(OVERHEAD + esp::OVERHEAD) & !3
        } else {
            under.saturating_sub(OVERHEAD)
        }
    }

    /// Fragments encapsulated frames larger than `mtu` (the underlay's IP
    /// MTU) as IP does the outer packet of Linux's vxlan (outer DF clear).
    fn overlay_fragment(&mut self, frames: Vec<Packet>, mtu: usize) -> Vec<Packet> {
        let mut out = Vec::with_capacity(frames.len());
        for f in frames {
            let parts = super::flow::Ip4::parse(f.frame())
                .filter(|ip| ip.total > mtu)
                .and_then(|ip| {
                    super::icmp::fragment(Packet::from_frame(f.hdr, f.frame()), &ip, mtu)
                });
            match parts {
                Some(parts) => {
                    self.metrics.note(|| {
                        super::trace::TraceEvent::Note(format!(
                            "vxlan: outer packet of {} bytes over an underlay MTU of {mtu}: sent in {} fragments",
                            f.len() - ETH_HDR_LEN,
                            parts.len()
                        ))
                    });
                    if let Some(ov) = self.overlay.as_deref_mut() {
                        ov.stats.fragmented += 1;
                    }
                    out.extend(parts);
                }
                None => out.push(f),
            }
        }
        out
    }

    /// ESP-protects encapsulated frames from `src` to `dst`; one that cannot
    /// be protected is dropped (`esp-no-sa`), never sent in clear.
    fn overlay_protect(
        &mut self,
        uplink: PortId,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        frames: Vec<Packet>,
        out: &mut Vec<Action>,
    ) -> Vec<Packet> {
        let Some(ov) = self.overlay.as_deref_mut() else {
            return Vec::new();
        };
        let mut sealed = Vec::with_capacity(frames.len());
        for f in frames {
            match ov.esp.as_mut().map(|st| st.protect(src, dst, f.frame())) {
                Some(Ok(p)) => {
                    ov.stats.esp_protected += 1;
                    sealed.push(p);
                }
                Some(Err(e)) => {
                    ov.stats.esp_refused += 1;
                    l2::drop_frame(&mut self.metrics, uplink, e.drop_reason(), out);
                }
                None => l2::drop_frame(&mut self.metrics, uplink, DropReason::EspNoSa, out),
            }
        }
        sealed
    }

    /// The VTEPs' counters (None without overlay networks).
    pub fn overlay_stats(&self) -> Option<OverlayStats> {
        self.overlay.as_deref().map(|o| o.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn inner_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; ETH_HDR_LEN];
        ethernet::emit(
            &mut f,
            [2, 0x42, 10, 0, 0, 3],
            [2, 0x42, 10, 0, 0, 2],
            0x0800,
        );
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn encap_layout_and_round_trip() {
        let inner = Packet::from_frame(VnetHdr::default(), &inner_frame(&[1, 2, 3, 4]));
        let e = encap(
            &inner,
            4097,
            MacAddr([2, 0x56, 192, 168, 0, 2]),
            Ipv4Addr::new(192, 168, 0, 2),
            MacAddr([2, 0x56, 192, 168, 0, 3]),
            Ipv4Addr::new(192, 168, 0, 3),
            50000,
        );
        let f = e.frame();
        assert_eq!(f.len(), inner.len() + OVERHEAD);
        assert_eq!(&f[36..38], &4789u16.to_be_bytes());
        assert_eq!(f[42], 0x08);
        assert_eq!(&f[46..49], &[0x00, 0x10, 0x01]);
        assert_eq!(checksum(&f[14..34]), 0);
        let o = parse_outer(f).unwrap().unwrap();
        assert_eq!(o.vni, 4097);
        assert_eq!(o.src, Ipv4Addr::new(192, 168, 0, 2));
        assert_eq!(o.dst, Ipv4Addr::new(192, 168, 0, 3));
        let mut e = e;
        decap_in_place(&mut e, o.inner);
        assert_eq!(e.frame(), inner.frame());
    }

    #[test]
    fn outer_partial_checksum_dies_with_the_outer_headers() {
        let inner = Packet::from_frame(VnetHdr::default(), &inner_frame(&[0x45; 40]));
        let mut e = encap(
            &inner,
            7,
            MacAddr([2; 6]),
            Ipv4Addr::LOCALHOST,
            MacAddr([2; 6]),
            Ipv4Addr::LOCALHOST,
            1,
        );
        // As Linux's vxlan (udpcsum) hands it to a TAP: outer UDP partial.
        e.hdr = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VnetHdr::default()
        };
        let o = parse_outer(e.frame()).unwrap().unwrap();
        decap_in_place(&mut e, o.inner);
        assert_eq!(e.hdr, VnetHdr::default());
        assert_eq!(e.frame(), inner.frame());
    }

    #[test]
    fn not_vxlan_and_malformed() {
        assert_eq!(parse_outer(&[0u8; 10]), Ok(None));
        let inner = Packet::from_frame(VnetHdr::default(), &inner_frame(&[]));
        let mut e = encap(
            &inner,
            1,
            MacAddr([2; 6]),
            Ipv4Addr::LOCALHOST,
            MacAddr([2; 6]),
            Ipv4Addr::LOCALHOST,
            1,
        )
        .frame()
        .to_vec();
        e[42] = 0; // I flag clear
        assert_eq!(parse_outer(&e), Err(DecapError::Malformed));
        e[36] = 0; // other port
        assert_eq!(parse_outer(&e), Ok(None));
    }

    #[test]
    fn flow_port_is_stable_and_in_range() {
        let a = inner_frame(&[0x45; 40]);
        assert_eq!(flow_port(&a), flow_port(&a));
        assert!(flow_port(&a) >= 49152);
    }

    /// An IPv4/TCP GSO frame with `n` payload bytes and MSS `mss`.
    fn tcp_gso(n: usize, mss: u16) -> Packet {
        let mut f = vec![0u8; ETH_HDR_LEN + 40];
        ethernet::emit(&mut f, [2; 6], [4; 6], 0x0800);
        f.extend((0..n).map(|i| i as u8));
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((40 + n) as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[10, 0, 0, 2]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 3]);
        let t = &mut f[34..54];
        t[0..2].copy_from_slice(&1234u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[4..8].copy_from_slice(&1000u32.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = 0x18; // PSH ACK
        Packet::from_frame(
            VnetHdr {
                flags: VnetHdr::F_NEEDS_CSUM,
                gso_type: VnetHdr::GSO_TCPV4,
                hdr_len: 54,
                gso_size: mss,
                csum_start: 34,
                csum_offset: 16,
            },
            &f,
        )
    }

    proptest! {
        #[test]
        fn round_trip_any_frame(body in proptest::collection::vec(any::<u8>(), 0..2000),
                                vni in 1u32..(1 << 24), sport in any::<u16>()) {
            let inner = Packet::from_frame(VnetHdr::default(), &inner_frame(&body));
            let e = encap(&inner, vni, MacAddr([2;6]), Ipv4Addr::new(1,2,3,4),
                          MacAddr([2;6]), Ipv4Addr::new(5,6,7,8), sport);
            let o = parse_outer(e.frame()).unwrap().unwrap();
            prop_assert_eq!(o.vni, vni);
            let mut e = e;
            decap_in_place(&mut e, o.inner);
            prop_assert_eq!(e.frame(), inner.frame());
            prop_assert_eq!(e.hdr, inner.hdr);
        }

        #[test]
        fn parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_outer(&b);
            let _ = flow_port(&b);
        }

        #[test]
        fn segmentation_sizes_and_checksums(n in 1usize..20000, mss in 500u16..1500) {
            let p = tcp_gso(n, mss);
            let segs = segment_tcp4(&p);
            prop_assert_eq!(segs.len(), n.div_ceil(usize::from(mss)));
            let mut total = 0;
            let mut seq = 1000u32;
            for (i, s) in segs.iter().enumerate() {
                let f = s.frame();
                let pl = f.len() - 54;
                if i + 1 < segs.len() {
                    prop_assert_eq!(pl, usize::from(mss));
                    prop_assert_eq!(f[47] & 0x08, 0);
                }
                prop_assert_eq!(checksum(&f[14..34]), 0);
                prop_assert_eq!(u16::from_be_bytes([f[16], f[17]]) as usize, 40 + pl);
                prop_assert_eq!(u32::from_be_bytes([f[38], f[39], f[40], f[41]]), seq);
                prop_assert_eq!(l4_checksum([10,0,0,2],[10,0,0,3],6,&f[34..]), 0);
                seq = seq.wrapping_add(pl as u32);
                total += pl;
            }
            prop_assert_eq!(total, n);
        }
    }
}
