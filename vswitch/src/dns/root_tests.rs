//! The embedded DNS asked by the real `dig` inside a container namespace of
//! a built world (needs root and dnsutils; skipped otherwise unless
//! VSWITCH_REQUIRE_ROOT=1).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::backend::{BuildOptions, World, namespace_names};
use crate::scenario::plan::BackendKind;
use crate::world::RunId;

/// 40 containers under one alias: more than a 512-byte UDP answer holds.
const CROWD: usize = 40;

fn scenario() -> String {
    let mut t = String::from(
        r#"
name = "dig against 127.0.0.11"

[[machine]]
name = "host"
resolvers = ["ns1"]

[[external]]
name = "ns1"
ip = "198.18.0.53"
dns = { "example.test" = "198.18.0.80" }

[[network]]
name = "n"
subnet = "10.53.99.0/24"

[[container]]
name = "web"
networks = [{ name = "n", aliases = ["www"] }]

[[container]]
name = "client"
networks = ["n"]
"#,
    );
    for i in 0..CROWD {
        write!(
            t,
            "[[container]]\nname = \"c{i}\"\nnetworks = [{{ name = \"n\", aliases = [\"crowd\"] }}]\n"
        )
        .unwrap();
    }
    t
}

/// dig on PATH for `test`: a named skip without it (a failure under CI).
fn have_dig(test: &str) -> bool {
    crate::prereq::tool(test, "dig").or_panic().is_some()
}

/// `dig @127.0.0.11 ARGS` inside namespace `ns`; its standard output.
fn dig(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "dig",
            "@127.0.0.11",
            "+time=4",
            "+tries=1",
        ])
        .args(args)
        .output()
        .expect("ip netns exec dig runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn short(ns: &str, args: &[&str]) -> Vec<String> {
    let mut a = vec!["+short"];
    a.extend_from_slice(args);
    let mut v: Vec<String> = dig(ns, &a).lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn dig_inside_a_container() {
    if !crate::sys::require_root("dig_inside_a_container") {
        return;
    }
    if !have_dig("dig_inside_a_container") {
        return;
    }
    let plan = crate::scenario::parse_str(Path::new("dig.toml"), &scenario()).unwrap();
    let run = RunId::new();
    let ns = namespace_names(&run, &plan, BackendKind::Userspace)
        .into_iter()
        .find(|(n, _)| n == "client")
        .unwrap()
        .1;
    {
        let world = World::build(
            &run,
            &plan,
            BackendKind::Userspace,
            &BuildOptions::default(),
            &|_| {},
        )
        .expect("world builds");

        // UDP and TCP, names and aliases, case (DNS-4, DNS-7, DNS-18).
        assert_eq!(short(&ns, &["web"]), ["10.53.99.2"]);
        // The kernel fast path answers `web` asked without EDNS options
        // (dig's COOKIE sends the query above to the server); `WEB` goes to
        // the server. Same header, same record, and the program counts it.
        if super::fastpath::enabled() {
            let before = world.dns_fast_path_hits().expect("fast path loaded");
            let fast = dig(&ns, &["+noedns", "web"]);
            assert_eq!(world.dns_fast_path_hits(), Some(before + 1), "{fast}");
            let slow = dig(&ns, &["+noedns", "WEB"]);
            assert_eq!(world.dns_fast_path_hits(), Some(before + 1), "{slow}");
            for out in [&fast, &slow] {
                assert!(out.contains("status: NOERROR"), "{out}");
                assert!(
                    out.contains(
                        "flags: qr rd ra; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 0"
                    ),
                    "{out}"
                );
                assert!(
                    out.to_ascii_lowercase()
                        .contains("web.\t\t\t600\tin\ta\t10.53.99.2"),
                    "{out}"
                );
            }
        }
        assert_eq!(short(&ns, &["+tcp", "WWW.n"]), ["10.53.99.2"]);
        // AAAA and MX for a known name: NOERROR, no answers (DNS-10, DNS-12).
        for t in ["AAAA", "MX"] {
            let out = dig(&ns, &[t, "web"]);
            assert!(out.contains("status: NOERROR"), "{t}: {out}");
            assert!(out.contains("ANSWER: 0"), "{t}: {out}");
            // Local answers are not authoritative: no `aa`, so not ns1's.
            assert!(!out.contains(" aa"), "{t}: {out}");
        }
        // PTR, TTL 600 (DNS-9, DNS-11).
        assert_eq!(short(&ns, &["-x", "10.53.99.2"]), ["web.n."]);
        let out = dig(&ns, &["-x", "10.53.99.2"]);
        assert!(out.contains("600\tIN\tPTR\tweb.n."), "{out}");
        // TXT is forwarded (DNS-12): ns1's authoritative empty answer.
        let out = dig(&ns, &["TXT", "example.test"]);
        assert!(
            out.contains("status: NOERROR") && out.contains(" aa"),
            "{out}"
        );
        assert_eq!(short(&ns, &["example.test"]), ["198.18.0.80"]);
        assert_eq!(short(&ns, &["+tcp", "example.test"]), ["198.18.0.80"]);
        let out = dig(&ns, &["nosuch.test"]);
        assert!(out.contains("status: NXDOMAIN"), "{out}");
        // DNS-18: 40 addresses do not fit 512 bytes: TC, part of them.
        let out = dig(&ns, &["+noedns", "+ignore", "crowd"]);
        assert!(out.contains("flags: qr tc"), "{out}");
        let n = out.lines().filter(|l| l.contains("\tIN\tA\t")).count();
        assert!(n > 0 && n < CROWD, "{n} answers: {out}");
        // Over TCP (and dig's own retry after TC) all of them.
        assert_eq!(short(&ns, &["+tcp", "+noedns", "crowd"]).len(), CROWD);
        assert_eq!(short(&ns, &["+noedns", "crowd"]).len(), CROWD);
        // EDNS 4096 fits them in one UDP answer.
        let out = dig(&ns, &["+bufsize=4096", "+ignore", "crowd"]);
        assert!(!out.contains(" tc"), "{out}");
        drop(world);
    }
    assert!(
        crate::netns::list(&format!("{run}-")).is_empty(),
        "namespaces left behind"
    );
}

/// Garbage over UDP, TCP streams that stop mid-message or announce 65535
/// bytes and send a few: the server keeps answering, on both transports,
/// while those streams are still open.
#[test]
fn server_survives_garbage_and_stalled_streams() {
    use std::io::Write;
    use std::net::{SocketAddr, TcpStream, UdpSocket};
    use std::time::{Duration, Instant};

    use crate::probe::{DnsOutcome, dns_query};
    use crate::scenario::plan::{Node, QueryType};

    if !crate::sys::require_root("server_survives_garbage_and_stalled_streams") {
        return;
    }
    let text = "name = \"garbage\"\n[[network]]\nname = \"n\"\nsubnet = \"10.53.98.0/24\"\n\
                [[container]]\nname = \"web\"\nnetworks = [\"n\"]\n";
    let plan = crate::scenario::parse_str(Path::new("garbage.toml"), text).unwrap();
    let run = RunId::new();
    let world = World::build(
        &run,
        &plan,
        BackendKind::Userspace,
        &BuildOptions::default(),
        &|_| {},
    )
    .expect("world builds");
    let ns = world.ns(Node::Container(0));
    let dns = SocketAddr::from((super::EMBEDDED_DNS_ADDR, 53));
    let stalled = ns
        .run(move || {
            let u = UdpSocket::bind("0.0.0.0:0").unwrap();
            let mut header_only = vec![0x55, 0x66, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
            header_only.extend_from_slice(&[63; 70]);
            for d in [
                &[1u8, 2, 3][..],
                &[0xff; 100][..],
                &header_only[..],
                &vec![0u8; 65000][..],
            ] {
                u.send_to(d, dns).unwrap();
            }
            let mut v = Vec::new();
            // Half a length prefix; a full one promising 65535 bytes and a
            // few of them; a zero length (closed by the server); garbage.
            for bytes in [
                &[0x00][..],
                &[0xff, 0xff, 1, 2, 3][..],
                &[0, 0][..],
                &[
                    0, 20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                ][..],
            ] {
                let mut s = TcpStream::connect(dns).unwrap();
                s.write_all(bytes).unwrap();
                v.push(s);
            }
            v
        })
        .unwrap();
    for tcp in [false, true] {
        let deadline = Instant::now() + Duration::from_secs(3);
        let out = dns_query(ns, dns, "web", QueryType::A, tcp, deadline).unwrap();
        assert_eq!(
            out,
            DnsOutcome::Answer {
                rcode: "NOERROR".into(),
                answers: vec!["10.53.98.2".into()],
                truncated: false
            },
            "tcp {tcp}"
        );
    }
    drop(stalled);
    let started = Instant::now();
    drop(world);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "teardown waits on stalled streams"
    );
    assert!(crate::netns::list(&format!("{run}-")).is_empty());
}
