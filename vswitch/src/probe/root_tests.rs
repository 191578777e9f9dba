//! Probes against services across a veth pair between two namespaces
//! (needs root; skipped otherwise unless VSWITCH_REQUIRE_ROOT=1).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use super::testnet::{A4, A6, B4, B6, Pair, soon};
use super::*;
use crate::scenario::plan::{Proto, QueryType, Service};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(self::ip(ip), port)
}

#[test]
fn ping_replies_v4_and_v6() {
    let Some(p) = Pair::new("ping_replies_v4_and_v6") else {
        return;
    };
    for dst in [B4, B6] {
        let out = ping(&p.a, ip(dst), &PingOptions::default(), soon(3000)).unwrap();
        assert_eq!((out.sent, out.received), (3, 3), "{dst}: {out:?}");
        assert_eq!(out.rtts.len(), 3);
        assert_eq!(out.error, None);
    }
    // Fragmented both ways when DF is off.
    let big = PingOptions {
        size: 3000,
        ..PingOptions::default()
    };
    for dst in [B4, B6] {
        let out = ping(&p.a, ip(dst), &big, soon(3000)).unwrap();
        assert_eq!(out.received, 3, "{dst}: {out:?}");
    }
}

#[test]
fn concurrent_pings_do_not_mix() {
    let Some(p) = Pair::new("concurrent_pings_do_not_mix") else {
        return;
    };
    let opts = PingOptions {
        count: 5,
        interval: Duration::from_millis(20),
        ..PingOptions::default()
    };
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let (ns, opts) = (&p.a, &opts);
                // Half of them to an unused address: they must see no replies.
                let dst = if i % 2 == 0 { B4 } else { "10.99.0.77" };
                s.spawn(move || (dst, ping(ns, ip(dst), opts, soon(1500)).unwrap()))
            })
            .collect();
        for h in hs {
            let (dst, out) = h.join().unwrap();
            let want = if dst == B4 { 5 } else { 0 };
            assert_eq!(out.received, want, "{dst}: {out:?}");
        }
    });
}

#[test]
fn ping_unused_address_fails_by_deadline() {
    let Some(p) = Pair::new("ping_unused_address_fails_by_deadline") else {
        return;
    };
    let start = Instant::now();
    let deadline = start + Duration::from_millis(1200);
    let out = ping(&p.a, ip("10.99.0.77"), &PingOptions::default(), deadline).unwrap();
    assert_eq!(out.received, 0, "{out:?}");
    assert_eq!(out.sent, 3);
    assert!(Instant::now() < deadline + Duration::from_millis(300));
    // Once neighbour resolution gives up (about 3 s), the kernel says so.
    let out = ping(&p.a, ip("10.99.0.78"), &PingOptions::default(), soon(6000)).unwrap();
    assert_eq!(out.received, 0);
    let err = out.error.unwrap_or_default();
    assert!(err.starts_with("host unreachable"), "{err}");
    // Off-link without a route: the send itself fails.
    let out = ping(&p.a, ip("192.0.2.1"), &PingOptions::default(), soon(1000)).unwrap();
    assert_eq!(out.received, 0);
    assert_eq!(out.error.as_deref(), Some("network unreachable"), "{out:?}");
}

#[test]
fn ping_df_too_big() {
    let Some(p) = Pair::new("ping_df_too_big") else {
        return;
    };
    p.set_mtu_a(1400);
    let opts = PingOptions {
        size: 1400,
        df: true,
        ..PingOptions::default()
    };
    for dst in [B4, B6] {
        let out = ping(&p.a, ip(dst), &opts, soon(2000)).unwrap();
        assert_eq!(out.received, 0, "{out:?}");
        let err = out.error.unwrap_or_default();
        assert!(err.starts_with("message too long"), "{dst}: {err}");
        assert!(err.contains("mtu 1400"), "{dst}: {err}");
    }
    // Fits: 1372 + 8 + 20 = 1400.
    let fits = PingOptions {
        size: 1372,
        df: true,
        ..PingOptions::default()
    };
    let out = ping(&p.a, ip(B4), &fits, soon(2000)).unwrap();
    assert_eq!(out.received, 3, "{out:?}");
}

fn echo_services(port: u16) -> Vec<Service> {
    vec![
        Service {
            proto: Proto::Tcp,
            port,
        },
        Service {
            proto: Proto::Udp,
            port,
        },
    ]
}

#[test]
fn echo_reports_seen_address() {
    let Some(p) = Pair::new("echo_reports_seen_address") else {
        return;
    };
    let svc = start_echo(&p.b, &echo_services(7000), "b").unwrap();
    for (dst, src) in [(B4, A4), (B6, A6)] {
        let r = tcp_echo(&p.a, sa(dst, 7000), soon(2000)).unwrap();
        assert_eq!(r.seen.ip(), ip(src), "tcp {dst}");
        let r = udp_echo(&p.a, sa(dst, 7000), soon(2000)).unwrap();
        assert_eq!(r.seen.ip(), ip(src), "udp {dst}");
    }
    // Secondary addresses: replies must come from the address asked, or
    // the client's connected socket would drop them.
    p.add_addr_b("10.99.0.3/24");
    p.add_addr_b("fd99::3/64");
    for dst in ["10.99.0.3", "fd99::3"] {
        udp_echo(&p.a, sa(dst, 7000), soon(2000)).unwrap();
    }
    // A client that sends without reading blocks the echo's writes; stop
    // must not wait for it.
    let stuck =
        p.a.run(|| {
            let mut c = std::net::TcpStream::connect(sa(B4, 7000)).unwrap();
            c.set_nonblocking(true).unwrap();
            let block = vec![0u8; 64 * 1024];
            let mut until = Instant::now() + Duration::from_secs(5);
            let mut written = 0usize;
            // Write until both socket buffers are full (the echo is stuck).
            loop {
                match std::io::Write::write(&mut c, &block) {
                    Ok(n) => {
                        written += n;
                        until = Instant::now() + Duration::from_millis(300);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() >= until {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            assert!(written > 0);
            c
        })
        .unwrap();
    let start = Instant::now();
    svc.stop();
    drop(stuck);
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn echo_without_ipv6() {
    let Some(p) = Pair::new("echo_without_ipv6") else {
        return;
    };
    let out = Command::new("ip")
        .args(["netns", "exec", p.b.name(), "sysctl", "-qw"])
        .args([
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ])
        .status()
        .unwrap();
    assert!(out.success());
    let _svc = start_echo(&p.b, &echo_services(7200), "b").unwrap();
    let _dns = start_dns_server(&p.b, &table()).unwrap();
    assert_eq!(
        tcp_echo(&p.a, sa(B4, 7200), soon(2000)).unwrap().seen.ip(),
        ip(A4)
    );
    assert_eq!(
        udp_echo(&p.a, sa(B4, 7200), soon(2000)).unwrap().seen.ip(),
        ip(A4)
    );
    let out = dns_query(
        &p.a,
        sa(B4, 53),
        "www.example.test",
        QueryType::A,
        false,
        soon(2000),
    );
    assert!(matches!(out, Ok(DnsOutcome::Answer { .. })), "{out:?}");
}

#[test]
fn echo_many_concurrent_clients() {
    let Some(p) = Pair::new("echo_many_concurrent_clients") else {
        return;
    };
    let _svc = start_echo(&p.b, &echo_services(7100), "b").unwrap();
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..32)
            .map(|i| {
                let ns = &p.a;
                s.spawn(move || {
                    if i % 2 == 0 {
                        tcp_echo(ns, sa(B4, 7100), soon(3000)).map(|r| r.seen)
                    } else {
                        udp_echo(ns, sa(B4, 7100), soon(3000)).map(|r| r.seen)
                    }
                })
            })
            .collect();
        for h in hs {
            assert_eq!(h.join().unwrap().unwrap().ip(), ip(A4));
        }
    });
}

#[test]
fn nothing_listening_is_refused() {
    let Some(p) = Pair::new("nothing_listening_is_refused") else {
        return;
    };
    let e = tcp_echo(&p.a, sa(B4, 7001), soon(2000)).unwrap_err();
    assert!(matches!(e, ProbeError::Refused { .. }), "{e}");
    let e = udp_echo(&p.a, sa(B4, 7001), soon(2000)).unwrap_err();
    assert!(matches!(e, ProbeError::Refused { .. }), "{e}");
    // An address nobody has: no answer by the deadline.
    let e = tcp_echo(&p.a, sa("10.99.0.77", 7001), soon(500)).unwrap_err();
    assert!(
        matches!(
            e,
            ProbeError::TimedOut { .. } | ProbeError::Unreachable { .. }
        ),
        "{e}"
    );
}

#[test]
fn throughput_tcp_and_udp() {
    let Some(p) = Pair::new("throughput_tcp_and_udp") else {
        return;
    };
    let t = throughput(
        &p.a,
        &p.b,
        ip(B4),
        Ports {
            listen: 5201,
            connect: 5201,
        },
        &Load {
            proto: Proto::Tcp,
            seconds: 0.5,
            streams: 2,
            udp_size: 1400,
            bidir: false,
        },
    )
    .unwrap();
    eprintln!("tcp: {t:?}");
    assert!(t.gbps > 0.0 && t.kpps > 0.0 && t.bytes > 0, "{t:?}");
    assert_eq!(t.loss, None);
    let t = throughput(
        &p.a,
        &p.b,
        ip(B4),
        Ports {
            listen: 5201,
            connect: 5201,
        },
        &Load {
            proto: Proto::Udp,
            seconds: 0.5,
            streams: 1,
            udp_size: 1400,
            bidir: false,
        },
    )
    .unwrap();
    eprintln!("udp: {t:?}");
    assert!(t.gbps > 0.0 && t.kpps > 0.0 && t.bytes > 0, "{t:?}");
    let loss = t.loss.unwrap();
    assert!((0.0..1.0).contains(&loss), "{t:?}");
    // TCP to an address without a route: an error, not zeros.
    let e = throughput(
        &p.a,
        &p.b,
        ip("192.0.2.1"),
        Ports {
            listen: 5202,
            connect: 5202,
        },
        &Load {
            proto: Proto::Tcp,
            seconds: 0.2,
            streams: 1,
            udp_size: 1400,
            bidir: false,
        },
    )
    .unwrap_err();
    assert!(matches!(e, ProbeError::Unreachable { .. }), "{e}");
}

/// Format 1.1: throughput over IPv6, TCP and UDP.
#[test]
fn throughput_over_ipv6() {
    let Some(p) = Pair::new("throughput_over_ipv6") else {
        return;
    };
    for (proto, port) in [(Proto::Tcp, 5211), (Proto::Udp, 5212)] {
        let t = throughput(
            &p.a,
            &p.b,
            ip(B6),
            Ports {
                listen: port,
                connect: port,
            },
            &Load {
                proto,
                seconds: 0.3,
                streams: 1,
                udp_size: 1200,
                bidir: false,
            },
        )
        .unwrap();
        assert!(t.gbps > 0.0 && t.bytes > 0, "{proto}: {t:?}");
    }
}

fn table() -> BTreeMap<String, Vec<IpAddr>> {
    let mut t = BTreeMap::new();
    t.insert(
        "www.example.test".to_string(),
        vec![ip("192.0.2.10"), ip("192.0.2.11")],
    );
    t.insert("six.example.test".to_string(), vec![ip("2001:db8::6")]);
    t
}

#[test]
fn dns_server_and_client() {
    let Some(p) = Pair::new("dns_server_and_client") else {
        return;
    };
    let _srv = start_dns_server(&p.b, &table()).unwrap();
    let answer = |rcode: &str, a: &[&str]| DnsOutcome::Answer {
        rcode: rcode.into(),
        answers: a.iter().map(|s| s.to_string()).collect(),
        truncated: false,
    };
    for server in [sa(B4, 53), sa(B6, 53)] {
        for tcp in [false, true] {
            let q = |name: &str, t| dns_query(&p.a, server, name, t, tcp, soon(3000)).unwrap();
            assert_eq!(
                q("www.example.test", QueryType::A),
                answer("NOERROR", &["192.0.2.10", "192.0.2.11"]),
                "{server} tcp={tcp}"
            );
            assert_eq!(
                q("WWW.example.test.", QueryType::AAAA),
                answer("NOERROR", &[])
            );
            assert_eq!(
                q("six.example.test", QueryType::AAAA),
                answer("NOERROR", &["2001:db8::6"])
            );
            assert_eq!(
                q("nope.example.test", QueryType::A),
                answer("NXDOMAIN", &[])
            );
        }
    }
    // Nothing on port 53 of a: no answer, and quickly (port unreachable).
    let start = Instant::now();
    let out = dns_query(&p.b, sa(A4, 53), "x", QueryType::A, false, soon(3000)).unwrap();
    assert_eq!(out, DnsOutcome::NoAnswer);
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn dns_server_answers_dig() {
    let Some(p) = Pair::new("dns_server_answers_dig") else {
        return;
    };
    if crate::prereq::tool("dns_server_answers_dig", "dig")
        .or_panic()
        .is_none()
    {
        return;
    }
    let _srv = start_dns_server(&p.b, &table()).unwrap();
    let dig = |args: &[&str]| {
        let out = Command::new("ip")
            .args(["netns", "exec", p.a.name(), "dig", "+time=2", "+tries=2"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let short = dig(&["@10.99.0.2", "www.example.test", "+short"]);
    let mut got: Vec<&str> = short.lines().collect();
    got.sort();
    assert_eq!(got, ["192.0.2.10", "192.0.2.11"]);
    let tcp = dig(&["@10.99.0.2", "www.example.test", "+short", "+tcp"]);
    assert_eq!(tcp.lines().count(), 2, "{tcp}");
    let nx = dig(&["@10.99.0.2", "nope.example.test"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    assert!(nx.contains(" aa"), "authoritative flag: {nx}");
    let six = dig(&["@fd99::2", "six.example.test", "AAAA", "+short"]);
    assert_eq!(six.trim(), "2001:db8::6");
}
