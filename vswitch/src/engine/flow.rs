//! The routed path's view of an IPv4 frame: header offsets and the flow
//! tuple conntrack keys on. Parsing checks every length first, so nothing
//! here can index out of bounds on a short or lying frame.

use std::net::Ipv4Addr;

use super::checksum::{get16, get32};
use super::wire::{ETH_HDR_LEN, ETHERTYPE_IPV4, ethertype};

/// IP protocol numbers the conntrack knows by name.
pub(crate) const IPPROTO_TCP: u8 = 6;
/// UDP.
pub(crate) const IPPROTO_UDP: u8 = 17;
/// ICMP.
pub(crate) const IPPROTO_ICMP: u8 = 1;

/// ICMP types the routed path reads or writes.
pub(crate) mod icmp_type {
    /// Echo reply.
    pub(crate) const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub(crate) const DEST_UNREACH: u8 = 3;
    /// Source quench (obsolete, but still an error quoting a packet).
    pub(crate) const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub(crate) const REDIRECT: u8 = 5;
    /// Echo request.
    pub(crate) const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub(crate) const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub(crate) const PARAM_PROBLEM: u8 = 12;
}

/// An address family conntrack can key flows of: IPv4 (the default
/// everywhere) or IPv6.
pub trait FlowAddr:
    Copy + Eq + Ord + std::hash::Hash + std::fmt::Debug + Send + Sync + 'static
{
    /// A tuple packed for hashing.
    type Key: Copy + Eq + std::hash::Hash + std::fmt::Debug;
    /// The family's ICMP protocol number (echo ids are its "ports").
    const ICMP: u8;
    /// Packs a tuple.
    fn key(t: &Tuple<Self>) -> Self::Key;
}

impl FlowAddr for Ipv4Addr {
    type Key = u128;
    const ICMP: u8 = IPPROTO_ICMP;
    #[inline]
    fn key(t: &Tuple<Self>) -> u128 {
        (u128::from(t.src.to_bits()) << 96)
            | (u128::from(t.dst.to_bits()) << 64)
            | (u128::from(t.sport) << 48)
            | (u128::from(t.dport) << 32)
            | (u128::from(t.proto) << 8)
            | u128::from(t.icmp_reply)
    }
}

impl FlowAddr for std::net::Ipv6Addr {
    type Key = (u128, u128, u64);
    const ICMP: u8 = IPPROTO_ICMPV6;
    #[inline]
    fn key(t: &Tuple<Self>) -> (u128, u128, u64) {
        let rest = (u64::from(t.sport) << 48)
            | (u64::from(t.dport) << 32)
            | (u64::from(t.proto) << 8)
            | u64::from(t.icmp_reply);
        (t.src.to_bits(), t.dst.to_bits(), rest)
    }
}

/// ICMPv6.
pub(crate) const IPPROTO_ICMPV6: u8 = 58;

/// A connection's identity in one direction. For ICMP echo the identifier
/// is both "ports", and `icmp_reply` tells a reply from a request so that a
/// request *to* an address never matches the reply of a ping *from* it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple<A = Ipv4Addr> {
    /// Source address.
    pub src: A,
    /// Destination address.
    pub dst: A,
    /// Source port (ICMP: echo identifier; other protocols: 0).
    pub sport: u16,
    /// Destination port (ICMP: echo identifier; other protocols: 0).
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// ICMP only: this is the echo-reply side.
    pub icmp_reply: bool,
}

impl<A: FlowAddr> Tuple<A> {
    /// The tuple of a packet going the other way.
    #[must_use]
    pub fn inverse(&self) -> Tuple<A> {
        Tuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
            icmp_reply: self.proto == A::ICMP && !self.icmp_reply,
        }
    }

    /// True when the protocol has ports (or an echo id) NAT may change.
    pub(crate) fn has_ports(&self) -> bool {
        self.proto == IPPROTO_TCP || self.proto == IPPROTO_UDP || self.proto == A::ICMP
    }
}

/// What the L4 header is, as far as the routed path cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum L4 {
    /// TCP with its flags byte.
    Tcp { flags: u8 },
    /// UDP.
    Udp,
    /// ICMP echo request or reply.
    Echo,
    /// An ICMP error quoting another packet, which starts at `inner`
    /// (frame offset of the quoted IPv4 header).
    IcmpError { inner: usize },
    /// Other ICMP (timestamps, …): tracked by addresses only.
    IcmpOther,
    /// Another protocol: tracked by addresses only.
    Other,
    /// A non-first fragment: no L4 header to read.
    Fragment,
}

/// TCP flag bits.
pub(crate) mod tcp_flags {
    /// FIN.
    pub(crate) const FIN: u8 = 0x01;
    /// SYN.
    pub(crate) const SYN: u8 = 0x02;
    /// RST.
    pub(crate) const RST: u8 = 0x04;
    /// ACK.
    pub(crate) const ACK: u8 = 0x10;
}

/// Offsets and fields of an IPv4 frame on the routed path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ip4 {
    /// IPv4 header length (options included).
    pub(crate) ihl: usize,
    /// Total length from the IPv4 header.
    pub(crate) total: usize,
    /// Time to live.
    pub(crate) ttl: u8,
    /// Don't-fragment bit.
    pub(crate) df: bool,
    /// The flow tuple (ports zero where the protocol has none).
    pub(crate) tuple: Tuple,
    /// The L4 kind.
    pub(crate) l4: L4,
}

impl Ip4 {
    /// Frame offset of the L4 header.
    pub(crate) fn l4_off(&self) -> usize {
        ETH_HDR_LEN + self.ihl
    }

    /// Parses an Ethernet/IPv4 frame. `None` when it is not IPv4, is
    /// truncated, or its header is inconsistent; an L4 header too short to
    /// hold its ports is also `None` (the frame is malformed).
    pub(crate) fn parse(frame: &[u8]) -> Option<Ip4> {
        if frame.len() < ETH_HDR_LEN + 20 || ethertype(frame) != ETHERTYPE_IPV4 {
            return None;
        }
        let ip = &frame[ETH_HDR_LEN..];
        if ip[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(get16(ip, 2));
        if ihl < 20 || total < ihl || total > ip.len() {
            return None;
        }
        let frag = get16(ip, 6);
        let first = frag & 0x1fff == 0;
        let proto = ip[9];
        let mut tuple = Tuple {
            src: Ipv4Addr::from(get32(ip, 12)),
            dst: Ipv4Addr::from(get32(ip, 16)),
            sport: 0,
            dport: 0,
            proto,
            icmp_reply: false,
        };
        let l4b = &ip[ihl..total];
        let l4 = if !first {
            L4::Fragment
        } else {
            match proto {
                IPPROTO_TCP => {
                    if l4b.len() < 20 {
                        return None;
                    }
                    tuple.sport = get16(l4b, 0);
                    tuple.dport = get16(l4b, 2);
                    L4::Tcp { flags: l4b[13] }
                }
                IPPROTO_UDP => {
                    if l4b.len() < 8 {
                        return None;
                    }
                    tuple.sport = get16(l4b, 0);
                    tuple.dport = get16(l4b, 2);
                    L4::Udp
                }
                IPPROTO_ICMP => {
                    if l4b.len() < 8 {
                        return None;
                    }
                    match l4b[0] {
                        icmp_type::ECHO_REQUEST | icmp_type::ECHO_REPLY => {
                            let id = get16(l4b, 4);
                            tuple.sport = id;
                            tuple.dport = id;
                            tuple.icmp_reply = l4b[0] == icmp_type::ECHO_REPLY;
                            L4::Echo
                        }
                        icmp_type::DEST_UNREACH
                        | icmp_type::SOURCE_QUENCH
                        | icmp_type::REDIRECT
                        | icmp_type::TIME_EXCEEDED
                        | icmp_type::PARAM_PROBLEM
                            if l4b.len() >= 8 + 20 =>
                        {
                            L4::IcmpError {
                                inner: ETH_HDR_LEN + ihl + 8,
                            }
                        }
                        _ => L4::IcmpOther,
                    }
                }
                _ => L4::Other,
            }
        };
        Some(Ip4 {
            ihl,
            total,
            ttl: ip[8],
            df: frag & 0x4000 != 0,
            tuple,
            l4,
        })
    }
}

/// The quoted packet of an ICMP error: its header offsets and tuple. The
/// quote may be cut anywhere after the first 8 bytes of its L4 header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Inner {
    /// Frame offset of the quoted IPv4 header.
    pub(crate) off: usize,
    /// Its header length.
    pub(crate) ihl: usize,
    /// Its tuple (ports read from the quoted L4 header).
    pub(crate) tuple: Tuple,
}

impl Inner {
    /// Parses the packet quoted at frame offset `off` (up to the frame end).
    pub(crate) fn parse(frame: &[u8], off: usize) -> Option<Inner> {
        let q = frame.get(off..)?;
        if q.len() < 20 || q[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(q[0] & 0x0f) * 4;
        if ihl < 20 || q.len() < ihl + 8 {
            return None;
        }
        let proto = q[9];
        let l4 = &q[ihl..];
        let mut tuple = Tuple {
            src: Ipv4Addr::from(get32(q, 12)),
            dst: Ipv4Addr::from(get32(q, 16)),
            sport: 0,
            dport: 0,
            proto,
            icmp_reply: false,
        };
        match proto {
            IPPROTO_TCP | IPPROTO_UDP => {
                tuple.sport = get16(l4, 0);
                tuple.dport = get16(l4, 2);
            }
            IPPROTO_ICMP => match l4[0] {
                icmp_type::ECHO_REQUEST | icmp_type::ECHO_REPLY => {
                    let id = get16(l4, 4);
                    tuple.sport = id;
                    tuple.dport = id;
                    tuple.icmp_reply = l4[0] == icmp_type::ECHO_REPLY;
                }
                // An error about an error is never answered (RFC 1122).
                _ => return None,
            },
            _ => {}
        }
        Some(Inner { off, ihl, tuple })
    }
}
