//! ICMP echo over raw sockets, IPv4 and IPv6.
//!
//! Each call uses its own echo identifier, and replies are matched on
//! identifier, sequence number and source address, so several pings can run
//! at once in one namespace (a raw socket sees every ICMP message).

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use rustix::net::sockopt::{
    Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery, Timeout, set_ip_mtu_discover,
    set_ipv6_mtu_discover, set_socket_timeout,
};
use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, ipproto, recvfrom, sendto,
    socket_with,
};

use crate::netns::NetNs;
use crate::wire::{IpProtocol, icmpv4, icmpv6, ipv4, ipv6};

use super::ProbeError;
use super::sock::remaining;

/// What to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingOptions {
    /// Echo requests to send.
    pub count: u32,
    /// ICMP payload bytes, as `ping -s`.
    pub size: u16,
    /// Forbid fragmentation (IP_PMTUDISC_DO); otherwise the kernel fragments
    /// (IP_PMTUDISC_DONT).
    pub df: bool,
    /// Time between requests.
    pub interval: Duration,
}

impl Default for PingOptions {
    /// Three 56-byte requests 100 ms apart, fragmentation allowed.
    fn default() -> Self {
        PingOptions {
            count: 3,
            size: 56,
            df: false,
            interval: Duration::from_millis(100),
        }
    }
}

/// What came back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PingOutcome {
    /// Requests the kernel accepted.
    pub sent: u32,
    /// Distinct replies received.
    pub received: u32,
    /// Round-trip times, in arrival order.
    pub rtts: Vec<Duration>,
    /// Why requests failed, when known: a send error ("message too long (mtu
    /// 1400)", "network unreachable") or an ICMP error received
    /// ("host unreachable from 10.0.0.1", "fragmentation needed (mtu 1400)
    /// from 10.0.0.254"). The first one is kept.
    pub error: Option<String>,
    /// Sequence numbers sent that got neither a reply nor an error by the
    /// deadline (what a partial result lost).
    pub unanswered: Vec<u16>,
}

const ECHO_REQUEST_V4: u8 = icmpv4::types::ECHO_REQUEST;
const ECHO_REPLY_V4: u8 = icmpv4::types::ECHO_REPLY;
const ECHO_REQUEST_V6: u8 = icmpv6::types::ECHO_REQUEST;
const ECHO_REPLY_V6: u8 = icmpv6::types::ECHO_REPLY;

/// A fresh echo identifier: random per process, then counting, so that
/// concurrent pings of this process never share one.
fn next_id() -> u16 {
    static BASE: OnceLock<u16> = OnceLock::new();
    static COUNT: AtomicU16 = AtomicU16::new(0);
    BASE.get_or_init(rand::random::<u16>)
        .wrapping_add(COUNT.fetch_add(1, Ordering::Relaxed))
}

/// Pings `dst` from inside `ns`: sends `opts.count` requests `opts.interval`
/// apart and returns once every request has a reply (or an ICMP error), or
/// at `deadline`.
pub fn ping(
    ns: &NetNs,
    dst: IpAddr,
    opts: &PingOptions,
    deadline: Instant,
) -> Result<PingOutcome, ProbeError> {
    let opts = opts.clone();
    ns.run(move || ping_here(dst, &opts, deadline))?
}

fn raw_socket(dst: IpAddr, df: bool) -> io::Result<OwnedFd> {
    let fd = if dst.is_ipv4() {
        let fd = socket_with(
            AddressFamily::INET,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            Some(ipproto::ICMP),
        )?;
        let pmtu = if df {
            Ipv4PathMtuDiscovery::DO
        } else {
            Ipv4PathMtuDiscovery::DONT
        };
        set_ip_mtu_discover(&fd, pmtu)?;
        fd
    } else {
        // The kernel fills in ICMPv6 checksums on these sockets.
        let fd = socket_with(
            AddressFamily::INET6,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            Some(ipproto::ICMPV6),
        )?;
        let pmtu = if df {
            Ipv6PathMtuDiscovery::DO
        } else {
            Ipv6PathMtuDiscovery::DONT
        };
        set_ipv6_mtu_discover(&fd, pmtu)?;
        fd
    };
    Ok(fd)
}

/// Per-request state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Unsent,
    Waiting(Instant),
    Replied,
    Failed,
}

fn ping_here(
    dst: IpAddr,
    opts: &PingOptions,
    deadline: Instant,
) -> Result<PingOutcome, ProbeError> {
    let fd = raw_socket(dst, opts.df).map_err(|e| {
        ProbeError::socket(
            if dst.is_ipv4() {
                "raw ICMP socket"
            } else {
                "raw ICMPv6 socket"
            },
            e,
        )
    })?;
    let id = next_id();
    let to = SocketAddr::new(dst, 0);
    let count = opts.count as usize;
    let mut slots = vec![Slot::Unsent; count];
    let mut out = PingOutcome::default();
    let mut next = 0usize;
    let mut next_at = Instant::now();
    let mut send_failed = false;
    let mut buf = vec![0u8; 65536 + 128];
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if !send_failed && next < count && now >= next_at {
            let pkt = echo_request(dst.is_ipv6(), id, next as u16, opts.size);
            match sendto(&fd, &pkt, SendFlags::empty(), &to) {
                Ok(_) => {
                    slots[next] = Slot::Waiting(Instant::now());
                    out.sent += 1;
                }
                Err(e) => {
                    out.error.get_or_insert_with(|| send_error(dst, e.into()));
                    send_failed = true;
                }
            }
            next += 1;
            next_at += opts.interval;
            continue;
        }
        let sending = !send_failed && next < count;
        if !sending && !slots.iter().any(|s| matches!(s, Slot::Waiting(_))) {
            break;
        }
        let wake = if sending {
            next_at.min(deadline)
        } else {
            deadline
        };
        let Some(wait) = remaining(wake) else {
            continue;
        };
        set_socket_timeout(&fd, Timeout::Recv, Some(wait))
            .map_err(|e| ProbeError::socket("raw ICMP socket timeout", e.into()))?;
        let (n, from) = match recvfrom(&fd, &mut buf[..], RecvFlags::empty()) {
            Ok((n, _, from)) => (n, from.and_then(|a| SocketAddr::try_from(a).ok())),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => continue,
            Err(e) => {
                return Err(ProbeError::socket("receive on raw ICMP socket", e.into()));
            }
        };
        let at = Instant::now();
        let parsed = if dst.is_ipv4() {
            parse_v4(&buf[..n], dst, id)
        } else {
            from.and_then(|f| parse_v6(&buf[..n], f.ip(), dst, id))
        };
        match parsed {
            Some(Icmp::Reply { seq }) => {
                if let Some(Slot::Waiting(t)) = slots.get(usize::from(seq)).copied() {
                    slots[usize::from(seq)] = Slot::Replied;
                    out.received += 1;
                    out.rtts.push(at.duration_since(t));
                }
            }
            Some(Icmp::Error { seq, what }) => {
                if let Some(Slot::Waiting(_)) = slots.get(usize::from(seq)) {
                    slots[usize::from(seq)] = Slot::Failed;
                    out.error.get_or_insert(what);
                }
            }
            None => {}
        }
    }
    out.unanswered = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s, Slot::Waiting(_)))
        .map(|(i, _)| i as u16)
        .collect();
    Ok(out)
}

/// Builds an echo request with `size` payload bytes (pattern like iputils).
fn echo_request(v6: bool, id: u16, seq: u16, size: u16) -> Vec<u8> {
    // ICMPv4 and ICMPv6 echo share their layout; the kernel fills the
    // ICMPv6 checksum (it covers a pseudo-header).
    let mut p = vec![0u8; icmpv4::HEADER_LEN + usize::from(size)];
    let mut m = icmpv4::Packet::new_unchecked(&mut p[..]);
    m.set_msg_type(if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 });
    m.set_code(0);
    m.set_echo_ident(id);
    m.set_echo_seq(seq);
    for (i, b) in m.data_mut().iter_mut().enumerate() {
        *b = (i % 256) as u8;
    }
    if !v6 {
        m.fill_checksum();
    }
    p
}

/// A received ICMP message that concerns this ping.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Icmp {
    Reply { seq: u16 },
    Error { seq: u16, what: String },
}

/// What the IP packet `ip` (an IPv4 datagram, or an IPv6 packet with
/// ICMPv6 right after its header) says about the echo requests `id` sent
/// to `dst`, read as this probe reads its raw socket: for the sim backend,
/// whose stacks see packets rather than sockets.
pub(crate) fn about_echo(ip: &[u8], dst: IpAddr, id: u16) -> Option<Icmp> {
    if dst.is_ipv4() {
        return parse_v4(ip, dst, id);
    }
    let p = ipv6::Packet::new_unchecked(ip);
    p.check_header().ok()?;
    if p.next_header() != IpProtocol::ICMPV6 {
        return None;
    }
    parse_v6(
        ip.get(ipv6::HEADER_LEN..)?,
        IpAddr::V6(p.src_addr()),
        dst,
        id,
    )
}

/// Parses an IPv4 datagram (raw IPv4 sockets deliver the IP header).
fn parse_v4(pkt: &[u8], dst: IpAddr, id: u16) -> Option<Icmp> {
    let (src, icmp) = ipv4_payload(pkt, IpProtocol::ICMP)?;
    let icmp = icmpv4::Packet::new_checked(icmp).ok()?;
    let (ty, code) = (icmp.msg_type(), icmp.code());
    if ty == ECHO_REPLY_V4 {
        if IpAddr::V4(src) != dst || icmp.echo_ident() != id {
            return None;
        }
        return Some(Icmp::Reply {
            seq: icmp.echo_seq(),
        });
    }
    let what = match (ty, code) {
        (3, 0) => "network unreachable".to_string(),
        (3, 1) => "host unreachable".to_string(),
        (3, 2) => "protocol unreachable".to_string(),
        (3, 3) => "port unreachable".to_string(),
        (3, 4) => format!("fragmentation needed (mtu {})", icmp.next_hop_mtu()),
        (3, 9 | 10 | 13) => "administratively prohibited".to_string(),
        (3, c) => format!("destination unreachable (code {c})"),
        (11, _) => "time to live exceeded".to_string(),
        (12, _) => "parameter problem".to_string(),
        _ => return None,
    };
    // The offending datagram: our echo request to `dst` with our id.
    let inner = quoted_icmp_v4(icmp.data(), dst)?;
    let inner = icmpv4::Packet::new_checked(inner).ok()?;
    if inner.msg_type() != ECHO_REQUEST_V4 || inner.echo_ident() != id {
        return None;
    }
    Some(Icmp::Error {
        seq: inner.echo_seq(),
        what: format!("{what} from {src}"),
    })
}

/// The source and the payload of an IPv4 header of protocol `proto`; the
/// total length is not trusted (a quote in an ICMP error is cut).
fn ipv4_payload(pkt: &[u8], proto: u8) -> Option<(std::net::Ipv4Addr, &[u8])> {
    let ip = ipv4::Packet::new_unchecked(pkt);
    ip.check_header().ok()?;
    if ip.protocol() != proto {
        return None;
    }
    Some((ip.src_addr(), &pkt[ip.header_len()..]))
}

/// The ICMP part of a (quoted, possibly cut) IPv4 header addressed to `dst`.
fn quoted_icmp_v4(pkt: &[u8], dst: IpAddr) -> Option<&[u8]> {
    let (_, payload) = ipv4_payload(pkt, IpProtocol::ICMP)?;
    let d = ipv4::Packet::new_unchecked(pkt).dst_addr();
    (IpAddr::V4(d) == dst).then_some(payload)
}

/// Parses an ICMPv6 message (raw IPv6 sockets deliver no IP header).
fn parse_v6(icmp: &[u8], src: IpAddr, dst: IpAddr, id: u16) -> Option<Icmp> {
    let icmp = icmpv6::Packet::new_checked(icmp).ok()?;
    let (ty, code) = (icmp.msg_type(), icmp.code());
    if ty == ECHO_REPLY_V6 {
        if src != dst || icmp.echo_ident() != id {
            return None;
        }
        return Some(Icmp::Reply {
            seq: icmp.echo_seq(),
        });
    }
    let what = match (ty, code) {
        (1, 0) => "network unreachable".to_string(),
        (1, 1) => "administratively prohibited".to_string(),
        (1, 3) => "host unreachable".to_string(),
        (1, 4) => "port unreachable".to_string(),
        (1, c) => format!("destination unreachable (code {c})"),
        (2, _) => format!("packet too big (mtu {})", icmp.mtu()),
        (3, _) => "hop limit exceeded".to_string(),
        (4, _) => "parameter problem".to_string(),
        _ => return None,
    };
    // The quoted IPv6 header: version 6, next header ICMPv6, our dst.
    let ip = ipv6::Packet::new_unchecked(icmp.data());
    if ip.check_header().is_err() || ip.next_header() != IpProtocol::ICMPV6 {
        return None;
    }
    let inner = icmpv6::Packet::new_checked(&icmp.data()[ipv6::HEADER_LEN..]).ok()?;
    if IpAddr::V6(ip.dst_addr()) != dst
        || inner.msg_type() != ECHO_REQUEST_V6
        || inner.echo_ident() != id
    {
        return None;
    }
    Some(Icmp::Error {
        seq: inner.echo_seq(),
        what: format!("{what} from {src}"),
    })
}

/// Words for a failed send, with the path MTU for EMSGSIZE when the kernel
/// knows it.
fn send_error(dst: IpAddr, e: io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EMSGSIZE) => match path_mtu(dst) {
            Some(mtu) => format!("message too long (mtu {mtu})"),
            None => "message too long".to_string(),
        },
        Some(libc::ENETUNREACH) => "network unreachable".to_string(),
        Some(libc::EHOSTUNREACH) => "host unreachable".to_string(),
        Some(libc::ENETDOWN) => "network is down".to_string(),
        Some(libc::EACCES | libc::EPERM) => "operation not permitted".to_string(),
        _ => e.to_string(),
    }
}

/// The route MTU towards `dst`, read from a connected UDP socket (IP_MTU
/// only works on connected sockets, and connecting the raw one would filter
/// out ICMP errors from routers).
fn path_mtu(dst: IpAddr) -> Option<u32> {
    let to = SocketAddr::new(dst, 9);
    let s = UdpSocket::bind(super::sock::any_of(&to)).ok()?;
    s.connect(to).ok()?;
    if dst.is_ipv4() {
        rustix::net::sockopt::ip_mtu(&s).ok()
    } else {
        rustix::net::sockopt::ipv6_mtu(&s).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip::checksum::checksum;

    fn v4_header(src: [u8; 4], dst: [u8; 4], payload_len: usize) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 1, 0, 0];
        let total = (20 + payload_len) as u16;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h
    }

    #[test]
    fn checksum_of_request_verifies() {
        let p = echo_request(false, 0x1234, 7, 56);
        assert_eq!(p.len(), 64);
        assert_eq!(checksum(&p), 0);
        let odd = echo_request(false, 1, 1, 3);
        assert_eq!(checksum(&odd), 0);
    }

    #[test]
    fn v4_reply_matches_id_and_source() {
        let dst: IpAddr = "10.0.0.2".parse().unwrap();
        let mut reply = echo_request(false, 42, 3, 8);
        reply[0] = ECHO_REPLY_V4;
        let mut pkt = v4_header([10, 0, 0, 2], [10, 0, 0, 1], reply.len());
        pkt.extend_from_slice(&reply);
        assert_eq!(parse_v4(&pkt, dst, 42), Some(Icmp::Reply { seq: 3 }));
        assert_eq!(parse_v4(&pkt, dst, 43), None);
        assert_eq!(parse_v4(&pkt, "10.0.0.3".parse().unwrap(), 42), None);
        for n in 0..pkt.len() {
            let _ = parse_v4(&pkt[..n], dst, 42);
        }
    }

    #[test]
    fn v4_frag_needed_quotes_our_request() {
        let dst: IpAddr = "10.0.0.2".parse().unwrap();
        let req = echo_request(false, 42, 1, 1400);
        let mut quoted = v4_header([10, 0, 0, 1], [10, 0, 0, 2], req.len());
        quoted.extend_from_slice(&req[..8]);
        let mut icmp = vec![3, 4, 0, 0, 0, 0];
        icmp.extend_from_slice(&1400u16.to_be_bytes());
        icmp.extend_from_slice(&quoted);
        let mut pkt = v4_header([10, 0, 0, 254], [10, 0, 0, 1], icmp.len());
        pkt.extend_from_slice(&icmp);
        assert_eq!(
            parse_v4(&pkt, dst, 42),
            Some(Icmp::Error {
                seq: 1,
                what: "fragmentation needed (mtu 1400) from 10.0.0.254".into()
            })
        );
        assert_eq!(parse_v4(&pkt, dst, 41), None);
        for n in 0..pkt.len() {
            let _ = parse_v4(&pkt[..n], dst, 42);
        }
    }

    #[test]
    fn v6_reply_and_error() {
        let dst: IpAddr = "fd00::2".parse().unwrap();
        let mut reply = echo_request(true, 9, 0, 4);
        reply[0] = ECHO_REPLY_V6;
        assert_eq!(parse_v6(&reply, dst, dst, 9), Some(Icmp::Reply { seq: 0 }));
        assert_eq!(parse_v6(&reply, "fd00::3".parse().unwrap(), dst, 9), None);
        let req = echo_request(true, 9, 2, 4);
        let mut ip6 = vec![0x60, 0, 0, 0, 0, 12, 58, 64];
        ip6.extend_from_slice(&"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        ip6.extend_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        let mut err = vec![1, 3, 0, 0, 0, 0, 0, 0];
        err.extend_from_slice(&ip6);
        err.extend_from_slice(&req);
        let router: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(
            parse_v6(&err, router, dst, 9),
            Some(Icmp::Error {
                seq: 2,
                what: "host unreachable from fd00::1".into()
            })
        );
        for n in 0..err.len() {
            let _ = parse_v6(&err[..n], router, dst, 9);
        }
    }
}
