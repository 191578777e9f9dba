//! VXLAN in the fast path ([`crate::engine::OffloadEvent::Tunnel`]): the two VTEPs of an
//! offered tunnel are the tc program, the underlay between them a veth
//! pair joining the two machines' namespaces (`ul<machine>` in each, the
//! name its peer's machine).
//!
//! ```text
//! container eth0 ─▶ vh ingress ─ (vh, dst, src): encap ─▶ redirect_peer(ul) ─▶ ul ingress, other machine
//!   ─ (ul, dst, src) and the VNI: decap ─▶ redirect_peer(vh of the receiver) ─▶ its eth0
//! ```
//!
//! **Encapsulation** (an L2 flow's entry whose `how` is `ENCAP`, its
//! value holding the outer headers the engine built,
//! [`crate::engine::vxlan::outer_headers`]): `bpf_skb_adjust_room` makes 50
//! bytes of room after the MAC header with the tunnel flags (UDP, IPv4,
//! an Ethernet inner header; a GSO frame keeps its segment size and
//! becomes a UDP-tunnel GSO frame), the frame's own Ethernet header moves
//! in as the inner one, and the outer headers go in front with the IPv4
//! length (saturating at 65535 for a super-frame, as the engine's), its
//! checksum updated, the UDP length and a source port from the inner
//! flow's hash (`49152 | ((h >> 16) ^ h) & 0x3fff`, RFC 7348 §5, as the
//! engine's [`crate::engine::vxlan::flow_port`] derives it from its own).
//!
//! **Decapsulation** (the program [`decap_program`] on `ul` ingress):
//! IPv4 without options, UDP to 4789, keyed by the ingress interface and
//! the inner MACs, the entry's VNI matching the frame's; the 50 bytes go
//! again and the inner Ethernet header is put back in front. Anything else
//! arriving there (none is sent: the engine installs the receiving end of
//! a tunnel before its sending end and retracts them the other way round)
//! is dropped and counted in the interface's default entry
//! ([`super::OffloadStats::missed`]).

use crate::engine::vxlan::{OVERHEAD, OuterEnds, outer_headers};
use crate::sys::bpf::{self, Alu, Asm, FP, Insn, Jmp, Map, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9};

use super::{FRAMES, PEER, TEMPLATE, VALUE, value};

/// An L2 flow's `how`: encapsulate by the template, then into the peer.
pub(super) const ENCAP: u32 = 2;

/// The tunnel flags of the encapsulation.
const ENCAP_FLAGS: u64 = bpf::adj_room::FIXED_GSO
    | bpf::adj_room::ENCAP_L3_IPV4
    | bpf::adj_room::ENCAP_L4_UDP
    | bpf::adj_room::ENCAP_L2_ETH
    | bpf::adj_room::encap_l2(14);

/// Stack offsets: the frame's Ethernet header while the room is made, and
/// the inner flow's hash.
const ETH: i16 = -80;
const HASH: i16 = -88;

/// Frame offsets of the outer headers.
mod at {
    pub const IP_LEN: i16 = 16;
    pub const IP_CSUM: i32 = 24;
    pub const PROTO: i16 = 23;
    pub const SPORT: i16 = 34;
    pub const DPORT: i16 = 36;
    pub const UDP_LEN: i16 = 38;
    pub const VNI: i16 = 46;
    pub const INNER: i16 = 50;
}

/// The sending end's value: encapsulate with `ends`, into the peer of the
/// underlay veth `ifindex`.
pub(super) fn encap_value(ifindex: u32, ends: &OuterEnds) -> [u8; VALUE] {
    let mut v = value(ifindex, ENCAP);
    v[TEMPLATE..TEMPLATE + OVERHEAD].copy_from_slice(&outer_headers(ends));
    v
}

/// The receiving end's value: frames of VNI `vni` into the peer of
/// `ifindex` (the receiver's veth end).
pub(super) fn decap_value(ifindex: u32, vni: u32) -> [u8; VALUE] {
    let mut v = value(ifindex, PEER);
    v[TEMPLATE..TEMPLATE + 4].copy_from_slice(&(vni << 8).to_be_bytes());
    v
}

/// `dst = the low 16 bits of src, bytes swapped` (a length or port as a
/// 16-bit load of its network-order bytes gives it).
fn swap16(a: &mut Asm, dst: bpf::Reg, src: bpf::Reg) {
    a.alu_reg(Alu::Mov, dst, src);
    a.alu_imm(Alu::And, dst, 0xff);
    a.alu_imm(Alu::Lsh, dst, 8);
    a.alu_reg(Alu::Mov, R5, src);
    a.alu_imm(Alu::Rsh, R5, 8);
    a.alu_imm(Alu::And, R5, 0xff);
    a.alu_reg(Alu::Or, dst, R5);
}

/// `bpf_skb_store_bytes(skb, off, r3 + from, len, 0)` with r3 already
/// pointing at the source.
fn store_bytes(a: &mut Asm, off: i32, len: i32) {
    a.alu_reg(Alu::Mov, R1, R6);
    a.alu_imm(Alu::Mov, R2, off);
    a.alu_imm(Alu::Mov, R4, len);
    a.alu_imm(Alu::Mov, R5, 0);
    a.call(bpf::HELPER_SKB_STORE_BYTES);
}

/// r2, r3: data and data_end, valid for `len` bytes, or to `short`.
fn packet(a: &mut Asm, len: i32, short: bpf::Label) {
    a.load(bpf::Size::W, R2, R6, bpf::skb::DATA);
    a.load(bpf::Size::W, R3, R6, bpf::skb::DATA_END);
    a.alu_reg(Alu::Mov, R4, R2);
    a.alu_imm(Alu::Add, R4, len);
    a.jmp_reg(Jmp::Gt, R4, R3, short);
}

/// The encapsulation, with the skb in r6 and the flow's value in r7 (the
/// frame counted): ends in `redirect_peer` of the value's interface; a
/// frame the kernel cannot make room in goes unchanged where the
/// interface's default entry in `map` sends it (the engine's TAP).
pub(super) fn encap(a: &mut Asm, map: &Map) {
    use bpf::Size::{H, W};
    let (clamp, lengths, drop, fail) = (a.label(), a.label(), a.label(), a.label());
    a.alu_reg(Alu::Mov, R1, R6);
    a.call(bpf::HELPER_GET_HASH_RECALC);
    a.store(W, FP, HASH, R0);
    packet(a, 14, fail);
    for off in [0i16, 4, 8] {
        a.load(W, R5, R2, off);
        a.store(W, FP, ETH + off, R5);
    }
    a.load(H, R5, R2, 12);
    a.store(H, FP, ETH + 12, R5);
    a.alu_reg(Alu::Mov, R1, R6);
    a.alu_imm(Alu::Mov, R2, OVERHEAD as i32);
    a.alu_imm(Alu::Mov, R3, bpf::ADJ_ROOM_MAC);
    a.load_imm64(R4, ENCAP_FLAGS);
    a.call(bpf::HELPER_SKB_ADJUST_ROOM);
    a.jmp_imm(Jmp::Ne, R0, 0, fail);
    // The frame's Ethernet header, then the outer headers in front.
    a.alu_reg(Alu::Mov, R3, FP);
    a.alu_imm(Alu::Add, R3, i32::from(ETH));
    store_bytes(a, i32::from(at::INNER), 14);
    a.alu_reg(Alu::Mov, R3, R7);
    a.alu_imm(Alu::Add, R3, TEMPLATE as i32);
    store_bytes(a, 0, OVERHEAD as i32);
    // r8: the IPv4 length, r9: the same as stored.
    a.load(W, R8, R6, bpf::skb::LEN);
    a.alu_imm(Alu::Sub, R8, 14);
    a.jmp_imm(Jmp::Gt, R8, 0xffff, clamp);
    a.ja(lengths);
    a.bind(clamp);
    a.alu_imm(Alu::Mov, R8, 0xffff);
    a.bind(lengths);
    swap16(a, R9, R8);
    packet(a, OVERHEAD as i32 + 14, drop);
    a.store(H, R2, at::IP_LEN, R9);
    a.alu_imm(Alu::Sub, R8, 20);
    swap16(a, R4, R8);
    // (swap16 used r5; the packet pointers are r2 and r3.)
    a.store(H, R2, at::UDP_LEN, R4);
    a.load(W, R8, FP, HASH);
    a.alu_reg(Alu::Mov, R4, R8);
    a.alu_imm(Alu::Rsh, R4, 16);
    a.alu_reg(Alu::Xor, R8, R4);
    a.alu_imm(Alu::And, R8, 0x3fff);
    a.alu_imm(Alu::Or, R8, 0xc000);
    swap16(a, R4, R8);
    a.store(H, R2, at::SPORT, R4);
    // The IPv4 checksum, from the template's length (as loaded) to r9.
    a.alu_reg(Alu::Mov, R1, R6);
    a.alu_imm(Alu::Mov, R2, at::IP_CSUM);
    a.load(H, R3, R7, TEMPLATE as i16 + at::IP_LEN);
    a.alu_reg(Alu::Mov, R4, R9);
    a.alu_imm(Alu::Mov, R5, 2);
    a.call(bpf::HELPER_L3_CSUM_REPLACE);
    // (The flow's lookup counted the frame.)
    a.load(W, R1, R7, 0);
    a.alu_imm(Alu::Mov, R2, 0);
    a.call(bpf::HELPER_REDIRECT_PEER);
    a.exit();
    // (No jump back into the main program: the verifier would see a loop.)
    a.bind(fail);
    default_entry(a, map, drop);
    a.load(W, R1, R0, 0);
    a.alu_imm(Alu::Mov, R2, 0);
    a.call(bpf::HELPER_REDIRECT);
    a.exit();
    // (Past the room being made, the frame is not what the engine reads.)
    a.bind(drop);
    a.alu_imm(Alu::Mov, R0, bpf::TCX_DROP);
    a.exit();
}

/// r0 = the ingress interface's default entry in `map`, or to `none`.
fn default_entry(a: &mut Asm, map: &Map, none: bpf::Label) {
    a.load(bpf::Size::W, R5, R6, bpf::skb::IFINDEX);
    a.store(bpf::Size::W, FP, -16, R5);
    for off in [-12i16, -8, -4] {
        a.store_imm(bpf::Size::W, FP, off, 0);
    }
    a.load_map(R1, map);
    a.alu_reg(Alu::Mov, R2, FP);
    a.alu_imm(Alu::Add, R2, -16);
    a.call(bpf::HELPER_MAP_LOOKUP);
    a.jmp_imm(Jmp::Eq, R0, 0, none);
}

/// The receiving end's program, on ingress of the underlay veths (see
/// the module's documentation).
pub fn decap_program(map: &Map) -> Vec<Insn> {
    use bpf::Size::{B, H, W};
    let mut a = Asm::new();
    let (miss, drop, v6, adjust) = (a.label(), a.label(), a.label(), a.label());
    a.alu_reg(Alu::Mov, R6, R1);
    packet(&mut a, OVERHEAD as i32 + 14, miss);
    a.load(H, R5, R2, 12);
    a.jmp_imm(Jmp::Ne, R5, 0x0008, miss);
    a.load(B, R5, R2, 14);
    a.jmp_imm(Jmp::Ne, R5, 0x45, miss);
    a.load(B, R5, R2, at::PROTO);
    a.jmp_imm(Jmp::Ne, R5, 17, miss);
    a.load(H, R5, R2, at::DPORT);
    a.jmp_imm(
        Jmp::Ne,
        R5,
        i32::from(crate::engine::vxlan::VXLAN_PORT.swap_bytes()),
        miss,
    );
    // The key (ingress, inner MACs) at fp-16, the inner Ethernet header at
    // ETH; r8 the VNI word, r9 the inner EtherType (as loaded).
    a.load(W, R5, R6, bpf::skb::IFINDEX);
    a.store(W, FP, -16, R5);
    for off in [0i16, 4, 8] {
        a.load(W, R5, R2, at::INNER + off);
        a.store(W, FP, -12 + off, R5);
        a.store(W, FP, ETH + off, R5);
    }
    a.load(H, R9, R2, at::INNER + 12);
    a.store(H, FP, ETH + 12, R9);
    a.load(W, R8, R2, at::VNI);
    a.load_map(R1, map);
    a.alu_reg(Alu::Mov, R2, FP);
    a.alu_imm(Alu::Add, R2, -16);
    a.call(bpf::HELPER_MAP_LOOKUP);
    a.jmp_imm(Jmp::Eq, R0, 0, miss);
    a.alu_reg(Alu::Mov, R7, R0);
    a.load(W, R5, R7, TEMPLATE as i16);
    a.jmp_reg(Jmp::Ne, R5, R8, miss);
    a.alu_reg(Alu::Mov, R1, R6);
    a.alu_imm(Alu::Mov, R2, -(OVERHEAD as i32));
    a.alu_imm(Alu::Mov, R3, bpf::ADJ_ROOM_MAC);
    a.jmp_imm(Jmp::Eq, R9, 0xdd86, v6);
    a.load_imm64(R4, bpf::adj_room::FIXED_GSO | bpf::adj_room::DECAP_L3_IPV4);
    a.ja(adjust);
    a.bind(v6);
    a.load_imm64(R4, bpf::adj_room::FIXED_GSO | bpf::adj_room::DECAP_L3_IPV6);
    a.bind(adjust);
    a.call(bpf::HELPER_SKB_ADJUST_ROOM);
    a.jmp_imm(Jmp::Ne, R0, 0, miss);
    a.alu_reg(Alu::Mov, R3, FP);
    a.alu_imm(Alu::Add, R3, i32::from(ETH));
    store_bytes(&mut a, 0, 14);
    a.load(W, R1, R7, 0);
    a.alu_imm(Alu::Mov, R2, 0);
    a.call(bpf::HELPER_REDIRECT_PEER);
    a.exit();
    // Counted in the interface's default entry, then dropped.
    a.bind(miss);
    default_entry(&mut a, map, drop);
    a.alu_imm(Alu::Mov, R1, 1);
    a.atomic_add64(R0, FRAMES as i16, R1);
    a.bind(drop);
    a.alu_imm(Alu::Mov, R0, bpf::TCX_DROP);
    a.exit();
    a.finish()
}
