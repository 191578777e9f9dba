//! The gateway's answers: ARP replies for the gateway address and ICMP echo
//! replies (BR-3, BR-8: the gateway answers even with `icc = false`).
//!
//! These run only for frames that already look like they are for the
//! gateway, so they may allocate the reply; the forwarding path never comes
//! here.

use super::packet::{Packet, VnetHdr};
use super::wire::{
    ARP_LEN, ARP_REPLY, ARP_REQUEST, ArpRepr, ETH_HDR_LEN, ETH_SRC, ETHERTYPE_ARP, ETHERTYPE_IPV4,
    ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, IPPROTO_ICMP, Ipv4View, checksum, emit_eth, emit_ipv4,
};
use super::{Gateway, wire};

/// TTL of the gateway's own packets (Linux's default).
pub(crate) const GATEWAY_TTL: u8 = 64;

/// The ARP reply to `frame` if it is an Ethernet/IPv4 ARP request for the
/// gateway's address; `None` for anything else (the caller switches it).
pub(crate) fn arp_reply(frame: &[u8], gw: &Gateway) -> Option<Packet> {
    if frame.len() < ETH_HDR_LEN || wire::ethertype(frame) != ETHERTYPE_ARP {
        return None;
    }
    let req = ArpRepr::parse(&frame[ETH_HDR_LEN..])?;
    if req.op != ARP_REQUEST || req.tpa != gw.ip.octets() {
        return None;
    }
    let rep = ArpRepr {
        op: ARP_REPLY,
        sha: gw.mac.0,
        spa: gw.ip.octets(),
        tha: req.sha,
        tpa: req.spa,
    };
    // Reply to the Ethernet source, as Linux does: the ARP sender field may
    // name another host (proxy cases), but the asker is the frame's source.
    let mut asker = [0u8; 6];
    asker.copy_from_slice(&frame[ETH_SRC..ETH_SRC + 6]);
    let mut p = Packet::zeroed(VnetHdr::default(), ETH_HDR_LEN + ARP_LEN);
    let b = p.frame_mut();
    emit_eth(b, asker, gw.mac.0, ETHERTYPE_ARP);
    rep.emit(&mut b[ETH_HDR_LEN..]);
    Some(p)
}

/// What the gateway makes of a frame sent to its MAC.
#[derive(Debug)]
pub(crate) enum Echo {
    /// Not an ICMP echo request for the gateway address: the host stack's.
    NotMine,
    /// An echo request for the gateway with a wrong checksum.
    BadChecksum,
    /// The echo reply to emit.
    Reply(Packet),
}

/// Answers an ICMP echo request for the gateway address.
///
/// The request's ICMP checksum is only verified when the vnet header says
/// it is complete (no `NEEDS_CSUM`) and not already verified (`DATA_VALID`).
/// The reply has a fresh 20-byte IPv4 header (options are not echoed), TTL
/// 64, the request's TOS, identifier, sequence number and payload, and full
/// checksums with a zero vnet header.
pub(crate) fn icmp_echo(frame: &[u8], hdr: &VnetHdr, gw: &Gateway) -> Echo {
    if frame.len() < ETH_HDR_LEN || wire::ethertype(frame) != ETHERTYPE_IPV4 {
        return Echo::NotMine;
    }
    let Some(ip) = Ipv4View::new_checked(&frame[ETH_HDR_LEN..]) else {
        return Echo::NotMine;
    };
    if ip.protocol() != IPPROTO_ICMP || ip.dst() != gw.ip.octets() || ip.is_fragment() {
        return Echo::NotMine;
    }
    let icmp = ip.payload;
    if icmp.len() < 8 || icmp[0] != ICMP_ECHO_REQUEST || icmp[1] != 0 {
        return Echo::NotMine;
    }
    let l4_unverified = hdr.flags & (VnetHdr::F_NEEDS_CSUM | VnetHdr::F_DATA_VALID) == 0;
    if !ip.checksum_ok() || (l4_unverified && checksum(icmp) != 0) {
        return Echo::BadChecksum;
    }

    let mut asker = [0u8; 6];
    asker.copy_from_slice(&frame[ETH_SRC..ETH_SRC + 6]);
    let ip_len = Ipv4View::MIN_LEN + icmp.len();
    let mut p = Packet::zeroed(VnetHdr::default(), ETH_HDR_LEN + ip_len);
    let b = p.frame_mut();
    emit_eth(b, asker, gw.mac.0, ETHERTYPE_IPV4);
    let (iph, rest) = b[ETH_HDR_LEN..].split_at_mut(Ipv4View::MIN_LEN);
    emit_ipv4(
        iph,
        ip.tos(),
        icmp.len(),
        GATEWAY_TTL,
        IPPROTO_ICMP,
        gw.ip.octets(),
        ip.src(),
    );
    rest.copy_from_slice(icmp);
    rest[0] = ICMP_ECHO_REPLY;
    rest[1] = 0;
    rest[2..4].fill(0);
    let c = checksum(rest);
    rest[2..4].copy_from_slice(&c.to_be_bytes());
    Echo::Reply(p)
}
