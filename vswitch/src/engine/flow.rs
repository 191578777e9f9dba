//! The routed path's view of an IPv4 frame: header offsets and the flow
//! tuple conntrack keys on. Parsing checks every length first, so nothing
//! here can index out of bounds on a short or lying frame.

use std::net::Ipv4Addr;

use crate::wire::ethernet::{self, EtherType, HEADER_LEN as ETH_HDR_LEN};
use crate::wire::{IpProtocol, icmpv4, ipv4, tcp, udp};

/// IP protocol numbers the conntrack knows by name.
pub(crate) const IPPROTO_TCP: u8 = IpProtocol::TCP;
/// UDP.
pub(crate) const IPPROTO_UDP: u8 = IpProtocol::UDP;
/// ICMP.
pub(crate) const IPPROTO_ICMP: u8 = IpProtocol::ICMP;

/// ICMP types the routed path reads or writes.
pub(crate) use crate::wire::icmpv4::types as icmp_type;

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
pub(crate) const IPPROTO_ICMPV6: u8 = IpProtocol::ICMPV6;

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
pub(crate) use crate::wire::tcp::flags as tcp_flags;

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
        let eth = ethernet::Frame::new_checked(frame).ok()?;
        if eth.ethertype_raw() != EtherType::IPV4 {
            return None;
        }
        let ip = ipv4::Packet::new_checked(eth.payload()).ok()?;
        let ihl = ip.header_len();
        let first = ip.frag_offset() == 0;
        let proto = ip.protocol();
        let mut tuple = Tuple {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            sport: 0,
            dport: 0,
            proto,
            icmp_reply: false,
        };
        let l4b = ip.payload();
        let l4 = if !first {
            L4::Fragment
        } else {
            match proto {
                IPPROTO_TCP => {
                    let t = tcp::Packet::new_checked(l4b).ok()?;
                    tuple.sport = t.src_port();
                    tuple.dport = t.dst_port();
                    L4::Tcp { flags: t.flags() }
                }
                IPPROTO_UDP => {
                    let u = udp::Packet::new_checked(l4b).ok()?;
                    tuple.sport = u.src_port();
                    tuple.dport = u.dst_port();
                    L4::Udp
                }
                IPPROTO_ICMP => {
                    let m = icmpv4::Packet::new_checked(l4b).ok()?;
                    match m.msg_type() {
                        icmp_type::ECHO_REQUEST | icmp_type::ECHO_REPLY => {
                            let id = m.echo_ident();
                            tuple.sport = id;
                            tuple.dport = id;
                            tuple.icmp_reply = m.msg_type() == icmp_type::ECHO_REPLY;
                            L4::Echo
                        }
                        t if icmpv4::is_error(t)
                            && l4b.len() >= icmpv4::HEADER_LEN + ipv4::HEADER_LEN =>
                        {
                            L4::IcmpError {
                                inner: ETH_HDR_LEN + ihl + icmpv4::HEADER_LEN,
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
            total: usize::from(ip.total_len()),
            ttl: ip.ttl(),
            df: ip.dont_frag(),
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
        let q = ipv4::Packet::new_unchecked(frame.get(off..)?);
        q.check_header().ok()?;
        let ihl = q.header_len();
        let l4 = q.into_inner().get(ihl..)?;
        if l4.len() < udp::HEADER_LEN {
            return None;
        }
        let proto = q.protocol();
        let mut tuple = Tuple {
            src: q.src_addr(),
            dst: q.dst_addr(),
            sport: 0,
            dport: 0,
            proto,
            icmp_reply: false,
        };
        match proto {
            // The quote holds at least 8 bytes: both ports, or ICMP's
            // type and echo id.
            IPPROTO_TCP | IPPROTO_UDP => {
                let u = udp::Packet::new_unchecked(l4);
                tuple.sport = u.src_port();
                tuple.dport = u.dst_port();
            }
            IPPROTO_ICMP => {
                let m = icmpv4::Packet::new_unchecked(l4);
                match m.msg_type() {
                    icmp_type::ECHO_REQUEST | icmp_type::ECHO_REPLY => {
                        let id = m.echo_ident();
                        tuple.sport = id;
                        tuple.dport = id;
                        tuple.icmp_reply = m.msg_type() == icmp_type::ECHO_REPLY;
                    }
                    // An error about an error is never answered (RFC 1122).
                    _ => return None,
                }
            }
            _ => {}
        }
        Some(Inner { off, ihl, tuple })
    }
}
