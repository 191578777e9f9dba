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

use crate::engine::internet_checksum as checksum;
use crate::netns::NetNs;

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

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

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
    let mut p = Vec::with_capacity(8 + usize::from(size));
    p.push(if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 });
    p.push(0);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend((0..size).map(|i| (i % 256) as u8));
    if !v6 {
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// A received ICMP message that concerns this ping.
#[derive(Debug, PartialEq, Eq)]
enum Icmp {
    Reply { seq: u16 },
    Error { seq: u16, what: String },
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Parses an IPv4 datagram (raw IPv4 sockets deliver the IP header).
fn parse_v4(pkt: &[u8], dst: IpAddr, id: u16) -> Option<Icmp> {
    let (src, icmp) = ipv4_payload(pkt, 1)?;
    let ty = *icmp.first()?;
    let code = *icmp.get(1)?;
    if ty == ECHO_REPLY_V4 {
        if IpAddr::V4(src) != dst || be16(icmp, 4)? != id {
            return None;
        }
        return Some(Icmp::Reply {
            seq: be16(icmp, 6)?,
        });
    }
    let what = match (ty, code) {
        (3, 0) => "network unreachable".to_string(),
        (3, 1) => "host unreachable".to_string(),
        (3, 2) => "protocol unreachable".to_string(),
        (3, 3) => "port unreachable".to_string(),
        (3, 4) => format!("fragmentation needed (mtu {})", be16(icmp, 6)?),
        (3, 9 | 10 | 13) => "administratively prohibited".to_string(),
        (3, c) => format!("destination unreachable (code {c})"),
        (11, _) => "time to live exceeded".to_string(),
        (12, _) => "parameter problem".to_string(),
        _ => return None,
    };
    // The offending datagram: our echo request to `dst` with our id.
    let inner = quoted_icmp_v4(icmp.get(8..)?, dst)?;
    if *inner.first()? != ECHO_REQUEST_V4 || be16(inner, 4)? != id {
        return None;
    }
    Some(Icmp::Error {
        seq: be16(inner, 6)?,
        what: format!("{what} from {src}"),
    })
}

fn ipv4_payload(pkt: &[u8], proto: u8) -> Option<(std::net::Ipv4Addr, &[u8])> {
    if pkt.first()? >> 4 != 4 || *pkt.get(9)? != proto {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let src: [u8; 4] = pkt.get(12..16)?.try_into().ok()?;
    Some((src.into(), pkt.get(ihl..)?))
}

/// The ICMP part of a (quoted, possibly cut) IPv4 header addressed to `dst`.
fn quoted_icmp_v4(pkt: &[u8], dst: IpAddr) -> Option<&[u8]> {
    let (_, payload) = ipv4_payload(pkt, 1)?;
    let d: [u8; 4] = pkt.get(16..20)?.try_into().ok()?;
    (IpAddr::from(d) == dst).then_some(payload)
}

/// Parses an ICMPv6 message (raw IPv6 sockets deliver no IP header).
fn parse_v6(icmp: &[u8], src: IpAddr, dst: IpAddr, id: u16) -> Option<Icmp> {
    let ty = *icmp.first()?;
    let code = *icmp.get(1)?;
    if ty == ECHO_REPLY_V6 {
        if src != dst || be16(icmp, 4)? != id {
            return None;
        }
        return Some(Icmp::Reply {
            seq: be16(icmp, 6)?,
        });
    }
    let what = match (ty, code) {
        (1, 0) => "network unreachable".to_string(),
        (1, 1) => "administratively prohibited".to_string(),
        (1, 3) => "host unreachable".to_string(),
        (1, 4) => "port unreachable".to_string(),
        (1, c) => format!("destination unreachable (code {c})"),
        (2, _) => {
            let mtu = u32::from_be_bytes(icmp.get(4..8)?.try_into().ok()?);
            format!("packet too big (mtu {mtu})")
        }
        (3, _) => "hop limit exceeded".to_string(),
        (4, _) => "parameter problem".to_string(),
        _ => return None,
    };
    // The quoted IPv6 header: version 6, next header ICMPv6, our dst.
    let ip = icmp.get(8..)?;
    if ip.first()? >> 4 != 6 || *ip.get(6)? != 58 {
        return None;
    }
    let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
    let inner = ip.get(40..)?;
    if IpAddr::from(d) != dst || *inner.first()? != ECHO_REQUEST_V6 || be16(inner, 4)? != id {
        return None;
    }
    Some(Icmp::Error {
        seq: be16(inner, 6)?,
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
