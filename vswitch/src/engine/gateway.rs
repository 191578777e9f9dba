//! The gateway's answers: ARP replies for the gateway address and ICMP echo
//! replies (BR-3, BR-8: the gateway answers even with `icc = false`).
//!
//! These run only for frames that already look like they are for the
//! gateway, so they may allocate the reply; the forwarding path never comes
//! here.

use super::Gateway;
use super::packet::{Packet, VnetHdr};
use crate::wire::arp::{self, ArpRepr};
use crate::wire::ethernet::{self, EtherType, HEADER_LEN as ETH_HDR_LEN};
use crate::wire::icmpv4::{self, types::ECHO_REPLY, types::ECHO_REQUEST};
use crate::wire::{IpProtocol, ipv4};

/// TTL of the gateway's own packets (Linux's default).
pub(crate) const GATEWAY_TTL: u8 = 64;

/// The ARP reply to `frame` if it is an Ethernet/IPv4 ARP request for the
/// gateway's address; `None` for anything else (the caller switches it).
pub(crate) fn arp_reply(frame: &[u8], gw: &Gateway) -> Option<Packet> {
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    if eth.ethertype_raw() != EtherType::ARP {
        return None;
    }
    let req = ArpRepr::parse(eth.payload())?;
    if req.op != arp::REQUEST || req.tpa != gw.ip.octets() {
        return None;
    }
    let rep = ArpRepr {
        op: arp::REPLY,
        sha: gw.mac.0,
        spa: gw.ip.octets(),
        tha: req.sha,
        tpa: req.spa,
    };
    // Reply to the Ethernet source, as Linux does: the ARP sender field may
    // name another host (proxy cases), but the asker is the frame's source.
    let mut p = Packet::zeroed(VnetHdr::default(), ETH_HDR_LEN + rep.buffer_len());
    let b = p.frame_mut();
    ethernet::emit(b, eth.src(), gw.mac.0, EtherType::ARP);
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
    let Ok(eth) = ethernet::Frame::new_checked(frame) else {
        return Echo::NotMine;
    };
    if eth.ethertype_raw() != EtherType::IPV4 {
        return Echo::NotMine;
    }
    let Ok(ip) = ipv4::Packet::new_checked(eth.payload()) else {
        return Echo::NotMine;
    };
    if ip.protocol() != IpProtocol::ICMP || ip.dst() != gw.ip.octets() || ip.is_fragment() {
        return Echo::NotMine;
    }
    let Ok(icmp) = icmpv4::Packet::new_checked(ip.payload()) else {
        return Echo::NotMine;
    };
    if icmp.msg_type() != ECHO_REQUEST || icmp.code() != 0 {
        return Echo::NotMine;
    }
    let l4_unverified = hdr.flags & (VnetHdr::F_NEEDS_CSUM | VnetHdr::F_DATA_VALID) == 0;
    if !ip.verify_checksum() || (l4_unverified && !icmp.verify_checksum()) {
        return Echo::BadChecksum;
    }

    let icmp = icmp.into_inner();
    let rep = ipv4::Repr {
        src: gw.ip.octets(),
        dst: ip.src(),
        protocol: IpProtocol::ICMP,
        payload_len: icmp.len(),
        ttl: GATEWAY_TTL,
        tos: ip.tos(),
        dont_frag: false,
    };
    let mut p = Packet::zeroed(
        VnetHdr::default(),
        ETH_HDR_LEN + rep.buffer_len() + icmp.len(),
    );
    let b = p.frame_mut();
    ethernet::emit(b, eth.src(), gw.mac.0, EtherType::IPV4);
    let (iph, rest) = b[ETH_HDR_LEN..].split_at_mut(rep.buffer_len());
    rep.emit(iph);
    rest.copy_from_slice(icmp);
    let mut m = icmpv4::Packet::new_unchecked(rest);
    m.set_msg_type(ECHO_REPLY);
    m.set_code(0);
    m.fill_checksum();
    Echo::Reply(p)
}
