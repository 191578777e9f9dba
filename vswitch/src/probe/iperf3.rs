//! Throughput measured by iperf3, the tool users trust: a one-shot server
//! (`iperf3 -s -1`) in the receiving namespace and a client (`iperf3 -c
//! … -J`) in the sending one, its JSON read for the receiver's figures.
//!
//! Each process is started from a thread that has entered the namespace,
//! so it is born there; nothing runs in the caller's namespace.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::NetNs;
use crate::scenario::plan::Proto;

use super::ProbeError;
use super::throughput::{Ports, Throughput};

/// What to send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    /// TCP or UDP.
    pub proto: Proto,
    /// Seconds of traffic.
    pub seconds: f64,
    /// Parallel streams (`-P`).
    pub streams: u32,
    /// UDP payload bytes (`-l`).
    pub udp_size: u16,
    /// Both directions at once (`--bidir`): the figures are the sum.
    pub bidir: bool,
}

/// How long the server may take to listen.
const LISTEN_DEADLINE: Duration = Duration::from_secs(5);

/// Kills the server if the measurement ends early.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_in(ns: &NetNs, args: Vec<String>, what: &'static str) -> Result<Child, ProbeError> {
    let spawned = ns.run(move || {
        Command::new("iperf3")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    })?;
    spawned.map_err(|source| ProbeError::Socket {
        what: format!("{what} (iperf3)"),
        source,
    })
}

/// Whether something listens on TCP `port` in the namespace of the calling
/// thread (`/proc/thread-self/net`: this thread's namespace, not the
/// process's).
fn listening_here(port: u16) -> bool {
    let want = format!(":{port:04X} ");
    ["tcp", "tcp6"].iter().any(|f| {
        std::fs::read_to_string(format!("/proc/thread-self/net/{f}")).is_ok_and(|t| {
            t.lines().skip(1).any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3 && format!("{} ", cols[1]).ends_with(&want) && cols[3] == "0A"
            })
        })
    })
}

fn wait_listening(ns: &NetNs, port: u16, server: &mut Child) -> Result<(), ProbeError> {
    let deadline = Instant::now() + LISTEN_DEADLINE;
    loop {
        if ns.run(move || listening_here(port))? {
            return Ok(());
        }
        if let Ok(Some(status)) = server.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = server.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(ProbeError::Socket {
                what: format!("iperf3 server on port {port}"),
                source: io::Error::other(format!("exited with {status}: {}", err.trim())),
            });
        }
        if Instant::now() >= deadline {
            return Err(ProbeError::Socket {
                what: format!("iperf3 server on port {port}"),
                source: io::Error::other("not listening after 5 s"),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The iperf3 client's arguments for `load` towards `to`.
pub fn client_args(to: SocketAddr, load: &Load) -> Vec<String> {
    let mut a = vec![
        "-c".to_string(),
        to.ip().to_string(),
        "-p".into(),
        to.port().to_string(),
        "-t".into(),
        format!("{}", load.seconds.max(1.0).round() as u64),
        "-J".into(),
        "-P".into(),
        load.streams.max(1).to_string(),
    ];
    if load.proto == Proto::Udp {
        a.extend(["-u", "-b", "0", "-l"].map(String::from));
        a.push(load.udp_size.max(16).to_string());
    }
    if load.bidir {
        a.push("--bidir".into());
    }
    a
}

/// Runs iperf3 from `client` to `dst` (a server started in `server` on
/// `ports.listen`, reached at `ports.connect`). A client that cannot reach
/// the server is a network outcome; a server that cannot start, or output
/// that is not iperf3's JSON, is a harness error.
pub fn iperf3(
    client: &NetNs,
    server: &NetNs,
    dst: IpAddr,
    ports: Ports,
    load: &Load,
) -> Result<Throughput, ProbeError> {
    let args = vec![
        "-s".into(),
        "-1".into(),
        "-p".into(),
        ports.listen.to_string(),
    ];
    let mut srv = Reaped(spawn_in(server, args, "server")?);
    wait_listening(server, ports.listen, &mut srv.0)?;
    let to = SocketAddr::new(dst, ports.connect);
    let cli = spawn_in(client, client_args(to, load), "client")?;
    let out = cli
        .wait_with_output()
        .map_err(|source| ProbeError::Socket {
            what: "iperf3 client".into(),
            source,
        })?;
    let json: Value = serde_json::from_slice(&out.stdout).map_err(|e| ProbeError::Socket {
        what: "iperf3 client".into(),
        source: io::Error::other(format!(
            "output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    })?;
    figures(&json, load, to)
}

/// The receiver's figures from the client's JSON (`-J`).
pub fn figures(json: &Value, load: &Load, to: SocketAddr) -> Result<Throughput, ProbeError> {
    if let Some(e) = json.get("error").and_then(Value::as_str) {
        return Err(client_error(to, e));
    }
    let end = &json["end"];
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    let bad = |what: &str| ProbeError::Socket {
        what: "iperf3 client".into(),
        source: io::Error::other(format!("its JSON has no {what}")),
    };
    match load.proto {
        Proto::Tcp => {
            let mut parts = vec![&end["sum_received"]];
            if load.bidir {
                parts.push(&end["sum_received_bidir_reverse"]);
            }
            let mut bytes = 0.0;
            let mut seconds: f64 = 0.0;
            for p in parts {
                bytes += num(p, "bytes").ok_or_else(|| bad("end.sum_received.bytes"))?;
                seconds = seconds.max(num(p, "seconds").ok_or_else(|| bad("seconds"))?);
            }
            let seconds = seconds.max(1e-9);
            Ok(Throughput {
                gbps: bytes * 8.0 / seconds / 1e9,
                kpps: bytes / 1448.0 / seconds / 1e3,
                loss: None,
                bytes: bytes as u64,
                seconds,
            })
        }
        Proto::Udp => {
            let mut parts = vec![&end["sum"]];
            if load.bidir {
                parts.push(&end["sum_bidir_reverse"]);
            }
            let (mut packets, mut lost, mut seconds) = (0.0, 0.0, 0.0f64);
            for p in parts {
                packets += num(p, "packets").ok_or_else(|| bad("end.sum.packets"))?;
                lost += num(p, "lost_packets").ok_or_else(|| bad("end.sum.lost_packets"))?;
                seconds = seconds.max(num(p, "seconds").ok_or_else(|| bad("seconds"))?);
            }
            let seconds = seconds.max(1e-9);
            let received = (packets - lost).max(0.0);
            let bytes = received * f64::from(load.udp_size.max(16));
            Ok(Throughput {
                gbps: bytes * 8.0 / seconds / 1e9,
                kpps: received / seconds / 1e3,
                loss: Some(if packets > 0.0 { lost / packets } else { 1.0 }),
                bytes: bytes as u64,
                seconds,
            })
        }
    }
}

fn client_error(to: SocketAddr, e: &str) -> ProbeError {
    let lower = e.to_ascii_lowercase();
    if lower.contains("refused") {
        ProbeError::Refused { dst: to }
    } else if lower.contains("unreachable") || lower.contains("no route") {
        ProbeError::Unreachable {
            dst: to,
            source: io::Error::other(e.to_string()),
        }
    } else if lower.contains("timed out") || lower.contains("timeout") {
        ProbeError::TimedOut {
            dst: to,
            stage: "iperf3 control connection",
        }
    } else {
        ProbeError::BadReply {
            dst: to,
            reason: format!("iperf3: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(proto: Proto, bidir: bool) -> Load {
        Load {
            proto,
            seconds: 2.0,
            streams: 1,
            udp_size: 64,
            bidir,
        }
    }

    const TO: &str = "10.0.0.2:5201";

    #[test]
    fn tcp_figures_are_the_receivers() {
        let j: Value = serde_json::from_str(
            r#"{"end":{"sum_sent":{"bytes":2000000000,"seconds":2.0},
                "sum_received":{"bytes":1000000000,"seconds":2.0}}}"#,
        )
        .unwrap();
        let t = figures(&j, &load(Proto::Tcp, false), TO.parse().unwrap()).unwrap();
        assert!((t.gbps - 4.0).abs() < 1e-9);
        assert_eq!(t.loss, None);
    }

    #[test]
    fn bidir_adds_the_reverse_direction() {
        let j: Value = serde_json::from_str(
            r#"{"end":{"sum_received":{"bytes":1000000000,"seconds":2.0},
                "sum_received_bidir_reverse":{"bytes":500000000,"seconds":2.0}}}"#,
        )
        .unwrap();
        let t = figures(&j, &load(Proto::Tcp, true), TO.parse().unwrap()).unwrap();
        assert!((t.gbps - 6.0).abs() < 1e-9);
    }

    #[test]
    fn udp_counts_received_datagrams() {
        let j: Value = serde_json::from_str(
            r#"{"end":{"sum":{"packets":300000,"lost_packets":100000,"seconds":2.0}}}"#,
        )
        .unwrap();
        let t = figures(&j, &load(Proto::Udp, false), TO.parse().unwrap()).unwrap();
        assert!((t.kpps - 100.0).abs() < 1e-9);
        assert!((t.loss.unwrap() - 1.0 / 3.0).abs() < 1e-9);
        assert!((t.gbps - 100_000.0 * 64.0 * 8.0 / 1e9).abs() < 1e-9);
    }

    #[test]
    fn client_errors_are_network_outcomes_or_bad_replies() {
        let to: SocketAddr = TO.parse().unwrap();
        let j: Value =
            serde_json::from_str(r#"{"error":"unable to connect to server: Connection refused"}"#)
                .unwrap();
        let e = figures(&j, &load(Proto::Tcp, false), to).unwrap_err();
        assert!(matches!(e, ProbeError::Refused { .. }), "{e}");
        assert!(!e.is_harness());
        let j: Value = serde_json::from_str(r#"{"end":{}}"#).unwrap();
        assert!(
            figures(&j, &load(Proto::Tcp, false), to)
                .unwrap_err()
                .is_harness()
        );
    }

    #[test]
    fn client_args_follow_the_load() {
        let a = client_args(TO.parse().unwrap(), &load(Proto::Udp, true));
        let s = a.join(" ");
        assert!(s.contains("-u -b 0 -l 64"), "{s}");
        assert!(s.ends_with("--bidir"), "{s}");
        assert!(s.starts_with("-c 10.0.0.2 -p 5201 -t 2 -J -P 1"), "{s}");
    }
}
