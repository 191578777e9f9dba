//! Throughput between two namespaces, measured at the receiver.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::netns::NetNs;
use crate::scenario::plan::Proto;

use super::echo::{SEQ_HEADER, SinkStats, encode_seq, start_sink};
use super::sock::udp_client;
use super::{Load, ProbeError};

/// Figures of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Throughput {
    /// Payload bits per second received, in Gbit/s.
    pub gbps: f64,
    /// Thousands of packets per second received: datagrams (UDP) or
    /// bytes / 1448 (TCP, an estimate of full-sized segments).
    pub kpps: f64,
    /// UDP only: 1 − received / sent.
    pub loss: Option<f64>,
    /// Payload bytes received.
    pub bytes: u64,
    /// Seconds between the first and the last byte received.
    pub seconds: f64,
}

/// Where the receiver listens and where the senders connect: the same port,
/// or a published host port that reaches the receiver's container port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// The receiver's port in its own namespace.
    pub listen: u16,
    /// The port the senders connect to at `dst`.
    pub connect: u16,
}

const TCP_WRITE: usize = 128 * 1024;
const TCP_MSS_GUESS: f64 = 1448.0;

/// Runs a sink in `server` on `port` (all addresses) and `load.streams`
/// senders in `client` towards `dst:port` for `load.seconds`, then stops
/// both (`load.bidir` is iperf3's alone: ignored here). UDP datagrams carry
/// `load.udp_size` payload bytes (at least 16: sequence number
/// and run id). Fails when a sender cannot start (e.g. TCP connection
/// refused); a UDP run where nothing arrives gives zero figures and loss 1.
pub fn throughput(
    client: &NetNs,
    server: &NetNs,
    dst: IpAddr,
    ports: Ports,
    load: &Load,
) -> Result<Throughput, ProbeError> {
    let (proto, seconds, streams, udp_size) =
        (load.proto, load.seconds, load.streams, load.udp_size);
    let sink = start_sink(server, proto, ports.listen)?;
    let connect = if ports.connect == ports.listen {
        sink.port()
    } else {
        ports.connect
    };
    let to = SocketAddr::new(dst, connect);
    let run = sink.run_id();
    let duration = Duration::from_secs_f64(seconds.max(0.0));
    let stop = Arc::new(AtomicBool::new(false));
    let size = usize::from(udp_size).max(SEQ_HEADER);
    let mut handles = Vec::new();
    let mut failure = None;
    let end = Instant::now() + duration;
    for _ in 0..streams.max(1) {
        let stop = stop.clone();
        let spawned = client.spawn(move || match proto {
            Proto::Tcp => tcp_sender(to, end, &stop),
            Proto::Udp => udp_sender(to, end, &stop, run, size),
        });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                failure = Some(ProbeError::from(e));
                break;
            }
        }
    }
    if failure.is_some() {
        stop.store(true, Ordering::SeqCst);
    }
    let mut sent = 0u64;
    let mut connected = 0u64;
    for h in handles {
        match h.join() {
            Ok(Ok(n)) => {
                sent += n;
                connected += 1;
            }
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(_) => {
                failure.get_or_insert(ProbeError::Thread {
                    name: "throughput sender".into(),
                    source: io::Error::other("panicked"),
                });
            }
        }
    }
    drain(&sink, proto, connected);
    let stats = sink.stop();
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(figures(&stats, proto, sent, seconds))
}

/// Waits until the sink has taken in what is still in flight: TCP until every
/// sender connection is closed, UDP until nothing new arrived for 100 ms
/// (at most 2 s either way).
fn drain(sink: &super::Sink, proto: Proto, connections: u64) {
    let give_up = Instant::now() + Duration::from_secs(2);
    let mut last = sink.stats();
    let mut quiet_since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(10));
        let now_stats = sink.stats();
        let done = match proto {
            Proto::Tcp => now_stats.connections >= connections && now_stats.open == 0,
            Proto::Udp => {
                if now_stats.datagrams != last.datagrams {
                    quiet_since = Instant::now();
                }
                quiet_since.elapsed() >= Duration::from_millis(100)
            }
        };
        last = now_stats;
        if done || Instant::now() >= give_up {
            return;
        }
    }
}

fn figures(s: &SinkStats, proto: Proto, sent: u64, asked: f64) -> Throughput {
    let window = match (s.first, s.last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    // A single read has no duration; fall back to the run time asked for.
    let seconds = if window > 0.0 { window } else { asked };
    let per_sec = |x: f64| if seconds > 0.0 { x / seconds } else { 0.0 };
    let packets = match proto {
        Proto::Udp => s.datagrams as f64,
        Proto::Tcp => s.bytes as f64 / TCP_MSS_GUESS,
    };
    let loss = match proto {
        Proto::Udp if sent > 0 => Some((1.0 - s.datagrams as f64 / sent as f64).max(0.0)),
        Proto::Udp => Some(1.0),
        Proto::Tcp => None,
    };
    Throughput {
        gbps: per_sec(s.bytes as f64 * 8.0) / 1e9,
        kpps: per_sec(packets) / 1000.0,
        loss,
        bytes: s.bytes,
        seconds,
    }
}

/// Writes 128 KiB blocks until `end`; returns bytes written.
fn tcp_sender(to: SocketAddr, end: Instant, stop: &AtomicBool) -> Result<u64, ProbeError> {
    let connect_for = end
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_millis(500), Duration::from_secs(3));
    let mut s = TcpStream::connect_timeout(&to, connect_for)
        .map_err(|e| ProbeError::io(to, "connect", e))?;
    // Short write timeouts so a stalled path cannot hold the sender past `end`.
    s.set_write_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| ProbeError::io(to, "set write timeout", e))?;
    let block = vec![0x5au8; TCP_WRITE];
    let mut sent = 0u64;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        match s.write(&block) {
            Ok(n) => sent += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(ProbeError::io(to, "send", e)),
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    Ok(sent)
}

/// Sends datagrams as fast as the socket takes them until `end`; returns
/// datagrams sent.
fn udp_sender(
    to: SocketAddr,
    end: Instant,
    stop: &AtomicBool,
    run: u64,
    size: usize,
) -> Result<u64, ProbeError> {
    let sock = udp_client(to, 0)?;
    let _ = rustix::net::sockopt::set_socket_send_buffer_size(&sock, 4 << 20);
    let mut buf = vec![0u8; size];
    let mut seq = 0u64;
    'outer: loop {
        // Reading the clock for every datagram would cost more than sending.
        for _ in 0..64 {
            encode_seq(&mut buf, seq, run);
            match sock.send(&buf) {
                Ok(_) => seq += 1,
                // ICMP errors from earlier datagrams, full queues: keep going;
                // the loss figure shows what happened.
                Err(_) => {
                    if Instant::now() >= end {
                        break 'outer;
                    }
                }
            }
        }
        if Instant::now() >= end || stop.load(Ordering::Relaxed) {
            break;
        }
    }
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_udp() {
        let base = Instant::now();
        let s = SinkStats {
            bytes: 1_000_000_000 / 8,
            datagrams: 900,
            first: Some(base),
            last: Some(base + Duration::from_secs(1)),
            ..SinkStats::default()
        };
        let t = figures(&s, Proto::Udp, 1000, 3.0);
        assert!((t.gbps - 1.0).abs() < 1e-9);
        assert!((t.kpps - 0.9).abs() < 1e-9);
        assert!((t.loss.unwrap() - 0.1).abs() < 1e-9);
        assert_eq!(t.seconds, 1.0);
    }

    #[test]
    fn figures_empty() {
        let t = figures(&SinkStats::default(), Proto::Udp, 0, 1.0);
        assert_eq!(t.gbps, 0.0);
        assert_eq!(t.loss, Some(1.0));
        let t = figures(&SinkStats::default(), Proto::Tcp, 0, 1.0);
        assert_eq!(t.loss, None);
    }
}
