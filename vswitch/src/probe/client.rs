//! TCP and UDP echo clients, the counterparts of [`start_echo`].
//!
//! [`start_echo`]: super::start_echo

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::netns::NetNs;

use super::ProbeError;
use super::echo::{parse_greeting, parse_seen};
use super::sock::{remaining, udp_client};

/// A successful echo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EchoReply {
    /// The source address the service saw (after any NAT).
    pub seen: SocketAddr,
    /// The node that answered, from the greeting's ` by <node>` (TCP).
    pub by: Option<String>,
    /// Round trip of the echoed payload.
    pub rtt: Duration,
}

/// How often UDP requests are repeated while no answer has come.
const UDP_RETRY: Duration = Duration::from_millis(200);

/// Connects to the TCP echo at `dst` from inside `ns`, reads its `seen` line,
/// sends a payload and checks that it comes back, all before `deadline`.
pub fn tcp_echo(ns: &NetNs, dst: SocketAddr, deadline: Instant) -> Result<EchoReply, ProbeError> {
    ns.run(move || tcp_echo_here(dst, deadline))?
}

fn tcp_echo_here(dst: SocketAddr, deadline: Instant) -> Result<EchoReply, ProbeError> {
    let left = remaining(deadline).ok_or(ProbeError::TimedOut {
        dst,
        stage: "connect",
    })?;
    let mut s =
        TcpStream::connect_timeout(&dst, left).map_err(|e| ProbeError::io(dst, "connect", e))?;
    s.set_nodelay(true)
        .map_err(|e| ProbeError::io(dst, "set TCP_NODELAY", e))?;
    let line = read_line(&mut s, dst, deadline)?;
    let (seen, by) = parse_greeting(&line).ok_or_else(|| ProbeError::BadReply {
        dst,
        reason: format!("expected `seen <ip>:<port>`, got {line:?}"),
    })?;
    let payload = format!("vswitch-echo {:016x}\n", rand::random::<u64>());
    let start = Instant::now();
    s.write_all(payload.as_bytes())
        .map_err(|e| ProbeError::io(dst, "send", e))?;
    let mut back = vec![0u8; payload.len()];
    let mut got = 0;
    while got < back.len() {
        let left = remaining(deadline).ok_or(ProbeError::TimedOut { dst, stage: "echo" })?;
        s.set_read_timeout(Some(left))
            .map_err(|e| ProbeError::io(dst, "set read timeout", e))?;
        match s.read(&mut back[got..]) {
            Ok(0) => {
                return Err(ProbeError::BadReply {
                    dst,
                    reason: format!(
                        "connection closed after {got} of {} echoed bytes",
                        back.len()
                    ),
                });
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProbeError::io(dst, "echo", e)),
        }
    }
    let rtt = start.elapsed();
    if back != payload.as_bytes() {
        return Err(ProbeError::BadReply {
            dst,
            reason: format!(
                "echo differs: sent {payload:?}, got {:?}",
                String::from_utf8_lossy(&back)
            ),
        });
    }
    Ok(EchoReply { seen, by, rtt })
}

/// Opens `connections` TCP connections to `dst` from inside `ns`, one
/// after another, and returns the node each greeting named (`by <node>`),
/// in order. A connection that fails, or a greeting without a node, is an
/// error: a count must rest on every answer.
pub fn spread(
    ns: &NetNs,
    dst: SocketAddr,
    connections: u32,
    deadline: Instant,
) -> Result<Vec<String>, ProbeError> {
    ns.run(move || {
        let mut nodes = Vec::with_capacity(connections as usize);
        for _ in 0..connections {
            let left = remaining(deadline).ok_or(ProbeError::TimedOut {
                dst,
                stage: "connect",
            })?;
            let mut s = TcpStream::connect_timeout(&dst, left)
                .map_err(|e| ProbeError::io(dst, "connect", e))?;
            let line = read_line(&mut s, dst, deadline)?;
            match parse_greeting(&line) {
                Some((_, Some(by))) => nodes.push(by),
                _ => {
                    return Err(ProbeError::BadReply {
                        dst,
                        reason: format!("expected `seen <ip>:<port> by <node>`, got {line:?}"),
                    });
                }
            }
        }
        Ok(nodes)
    })?
}

/// Reads up to and including the first `\n` (at most 256 bytes).
fn read_line(s: &mut TcpStream, dst: SocketAddr, deadline: Instant) -> Result<String, ProbeError> {
    let mut line = Vec::new();
    let mut byte = [0u8; 64];
    loop {
        let left = remaining(deadline).ok_or(ProbeError::TimedOut {
            dst,
            stage: "seen line",
        })?;
        s.set_read_timeout(Some(left))
            .map_err(|e| ProbeError::io(dst, "set read timeout", e))?;
        // Byte by byte would be slow; the server sends nothing after the
        // line before we write, so reading more cannot swallow echo bytes.
        match s.read(&mut byte) {
            Ok(0) => {
                return Err(ProbeError::BadReply {
                    dst,
                    reason: format!(
                        "connection closed before the seen line (got {:?})",
                        String::from_utf8_lossy(&line)
                    ),
                });
            }
            Ok(n) => {
                line.extend_from_slice(&byte[..n]);
                if let Some(end) = line.iter().position(|&b| b == b'\n') {
                    line.truncate(end + 1);
                    return Ok(String::from_utf8_lossy(&line).into_owned());
                }
                if line.len() > 256 {
                    return Err(ProbeError::BadReply {
                        dst,
                        reason: "no newline in the first 256 bytes".into(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProbeError::io(dst, "seen line", e)),
        }
    }
}

/// Sends a datagram to the UDP echo at `dst` from inside `ns`, repeating it
/// every 200 ms, until a reply with the `seen` line and the same payload
/// arrives or `deadline` passes. An ICMP port unreachable ends it at once as
/// [`ProbeError::Refused`].
pub fn udp_echo(ns: &NetNs, dst: SocketAddr, deadline: Instant) -> Result<EchoReply, ProbeError> {
    ns.run(move || udp_echo_here(udp_client(dst, 0)?, dst, deadline))?
}

/// [`udp_echo`] from the source port `sport` (a check's `sport`: one flow
/// continued across steps).
pub fn udp_echo_from(
    ns: &NetNs,
    sport: u16,
    dst: SocketAddr,
    deadline: Instant,
) -> Result<EchoReply, ProbeError> {
    ns.run(move || udp_echo_here(udp_client(dst, sport)?, dst, deadline))?
}

fn udp_echo_here(
    sock: std::net::UdpSocket,
    dst: SocketAddr,
    deadline: Instant,
) -> Result<EchoReply, ProbeError> {
    let token = format!("vswitch-echo {:016x} ", rand::random::<u64>());
    let mut sent_at: Vec<Instant> = Vec::new();
    let mut next_send = Instant::now();
    let mut buf = vec![0u8; 65536];
    // Errors that a later attempt may still get past; reported at the end.
    let mut last_err: Option<ProbeError> = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if now >= next_send {
            let msg = format!("{token}{}", sent_at.len());
            match sock.send(msg.as_bytes()) {
                Ok(_) => sent_at.push(now),
                Err(e) => match ProbeError::io(dst, "send", e) {
                    r @ ProbeError::Refused { .. } => return Err(r),
                    other => last_err = Some(other),
                },
            }
            next_send = now + UDP_RETRY;
        }
        let Some(wait) = remaining(next_send.min(deadline)) else {
            continue;
        };
        sock.set_read_timeout(Some(wait))
            .map_err(|e| ProbeError::io(dst, "set read timeout", e))?;
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => match ProbeError::io(dst, "receive", e) {
                r @ ProbeError::Refused { .. } => return Err(r),
                other => {
                    last_err = Some(other);
                    continue;
                }
            },
        };
        match check_udp_reply(&buf[..n], &token) {
            Ok((seen, attempt)) => {
                let rtt = sent_at
                    .get(attempt)
                    .map(|t| t.elapsed())
                    .unwrap_or_default();
                return Ok(EchoReply {
                    seen,
                    by: None,
                    rtt,
                });
            }
            Err(reason) => last_err = Some(ProbeError::BadReply { dst, reason }),
        }
    }
    Err(last_err.unwrap_or(ProbeError::TimedOut { dst, stage: "echo" }))
}

/// Checks a UDP echo reply: `seen <addr>\n` then `token` and the attempt
/// number. Returns the seen address and the attempt answered.
fn check_udp_reply(reply: &[u8], token: &str) -> Result<(SocketAddr, usize), String> {
    let Some(nl) = reply.iter().position(|&b| b == b'\n') else {
        return Err(format!(
            "no seen line in {:?}",
            String::from_utf8_lossy(reply)
        ));
    };
    let line = String::from_utf8_lossy(&reply[..nl]);
    let seen =
        parse_seen(&line).ok_or_else(|| format!("expected `seen <ip>:<port>`, got {line:?}"))?;
    let payload = String::from_utf8_lossy(&reply[nl + 1..]);
    let attempt = payload
        .strip_prefix(token)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("payload not echoed: got {payload:?}"))?;
    Ok((seen, attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_reply_checks() {
        let t = "vswitch-echo 00000000000000ff ";
        let ok = format!("seen 10.0.0.1:5000\n{t}3");
        assert_eq!(
            check_udp_reply(ok.as_bytes(), t),
            Ok(("10.0.0.1:5000".parse().unwrap(), 3))
        );
        assert!(check_udp_reply(b"seen 10.0.0.1:5000\nother 3", t).is_err());
        assert!(check_udp_reply(b"no newline", t).is_err());
        assert!(check_udp_reply(format!("hello\n{t}1").as_bytes(), t).is_err());
    }
}
