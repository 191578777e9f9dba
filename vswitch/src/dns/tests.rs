//! The embedded DNS without root: decisions from a scenario's plan, byte
//! round trips through hickory, and forwarding against upstreams on this
//! host's loopback. Each test names the DNS-* statements it checks.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::forward::{Verdict, judge, question_len, select_upstreams};
use super::resolver::parse_arpa;
use super::*;
use crate::scenario::plan::Plan;

pub(super) const WORLD: &str = r#"
name = "dns unit world"

[[machine]]
name = "host"
resolvers = ["ns1"]

[[external]]
name = "ns1"
ip = "198.18.0.53"
dns = { "example.test" = "198.18.0.80" }

[[network]]
name = "n1"
subnet = "10.1.0.0/24"

[[network]]
name = "n2"
subnet = "10.2.0.0/24"

[[network]]
name = "int"
subnet = "10.3.0.0/24"
internal = true

[[network]]
name = "bridge"
default = true

[[network]]
name = "v6"
subnet = "10.6.0.0/24"
ipv6 = true
subnet6 = "fd00:6::/64"

[[container]]
name = "web"
networks = [{ name = "n1", aliases = ["www", "svc"] }]

[[container]]
name = "web2"
networks = [{ name = "n1", aliases = ["svc"] }]

[[container]]
name = "api"
networks = [{ name = "n2", aliases = ["backend"] }]

[[container]]
name = "router"
networks = ["n1", { name = "n2", aliases = ["r2"] }]

[[container]]
name = "client"
networks = ["n1"]

[[container]]
name = "lonely"
networks = ["int"]

[[container]]
name = "old"
networks = ["bridge"]

[[container]]
name = "custom"
networks = ["n1"]
dns = ["198.18.0.99", "198.18.0.53"]

[[container]]
name = "dual"
networks = ["v6"]
"#;

fn plan_of(text: &str) -> Plan {
    crate::scenario::parse_str(Path::new("unit.toml"), text).expect("valid scenario")
}

struct World {
    plan: Plan,
    table: NameTable,
    rng: StdRng,
}

impl World {
    fn new(text: &str) -> World {
        let plan = plan_of(text);
        let table = NameTable::from_plan(&plan);
        World {
            plan,
            table,
            rng: StdRng::seed_from_u64(11),
        }
    }

    fn idx(&self, name: &str) -> usize {
        self.plan
            .containers
            .iter()
            .position(|c| c.name == name)
            .unwrap()
    }

    fn ask(&mut self, from: &str, q: &[u8], t: Transport) -> Decision {
        let i = self.idx(from);
        self.table.answer(i, q, t, &mut self.rng)
    }

    /// A local answer, parsed back; panics on Forward/Drop.
    fn local(&mut self, from: &str, name: &str, rt: RecordType) -> Message {
        match self.ask(from, &query(name, rt, None), Transport::Udp) {
            Decision::Answer(b) => Message::from_vec(&b).expect("answer parses"),
            other => panic!("{from} asking {name} {rt}: expected a local answer, got {other:?}"),
        }
    }

    fn addrs(&mut self, from: &str, name: &str, rt: RecordType) -> Vec<String> {
        let m = self.local(from, name, rt);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        let mut v: Vec<String> = m.answers.iter().map(|r| render(&r.data)).collect();
        v.sort();
        v
    }
}

pub(super) fn query(name: &str, rt: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rt));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn render(d: &RData) -> String {
    match d {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::PTR(p) => p.0.to_ascii(),
        other => format!("{other:?}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ns1() -> Decision {
    Decision::Forward(vec![ip("198.18.0.53")])
}

#[test]
fn dns4_name_and_aliases_resolve_with_ttl_600() {
    let mut w = World::new(WORLD);
    assert_eq!(w.addrs("client", "web", RecordType::A), ["10.1.0.2"]);
    assert_eq!(w.addrs("client", "www", RecordType::A), ["10.1.0.2"]);
    let m = w.local("client", "web.", RecordType::A);
    // DNS-9, and moby's createRespMsg: id, RD kept, RA set, question kept.
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert!(m.metadata.recursion_desired && m.metadata.recursion_available);
    assert!(!m.metadata.truncation);
    assert_eq!(m.queries.len(), 1);
    assert!(m.answers.iter().all(|r| r.ttl == EMBEDDED_TTL));
}

#[test]
fn dns7_case_insensitive_and_name_dot_network() {
    let mut w = World::new(WORLD);
    assert_eq!(w.addrs("client", "WEB", RecordType::A), ["10.1.0.2"]);
    assert_eq!(w.addrs("client", "web.n1", RecordType::A), ["10.1.0.2"]);
    assert_eq!(w.addrs("client", "Web.n1.", RecordType::A), ["10.1.0.2"]);
    // The network part compares exactly, as Docker 20.10 does (seen on the
    // docker backend): `Web.N1` is not a local name, it goes upstream.
    let q = query("Web.N1.", RecordType::A, None);
    assert_eq!(w.ask("client", &q, Transport::Udp), ns1());
    assert_eq!(w.addrs("client", "www.n1", RecordType::A), ["10.1.0.2"]);
    // The answer keeps the question's case.
    let m = w.local("client", "WeB", RecordType::A);
    assert_eq!(m.answers[0].name.to_ascii(), "WeB.");
    // Only for queriers attached to that network.
    let q = query("api.n2", RecordType::A, None);
    assert_eq!(w.ask("client", &q, Transport::Udp), ns1());
    assert_eq!(w.addrs("router", "api.n2", RecordType::A), ["10.2.0.2"]);
    // A network the name is not on.
    let q = query("web.n2", RecordType::A, None);
    assert_eq!(w.ask("router", &q, Transport::Udp), ns1());
}

#[test]
fn dns5_dns6_scoping_and_multihomed() {
    let mut w = World::new(WORLD);
    // DNS-5: no shared network → upstream (which says NXDOMAIN).
    let q = query("api", RecordType::A, None);
    assert_eq!(w.ask("client", &q, Transport::Udp), ns1());
    // A multi-homed container sees both of its networks.
    assert_eq!(w.addrs("router", "api", RecordType::A), ["10.2.0.2"]);
    assert_eq!(w.addrs("router", "web", RecordType::A), ["10.1.0.2"]);
    // Each querier sees the router's address on the network they share.
    assert_eq!(w.addrs("client", "router", RecordType::A), ["10.1.0.4"]);
    assert_eq!(w.addrs("api", "router", RecordType::A), ["10.2.0.3"]);
    // DNS-6: alias r2 exists on n2 only.
    assert_eq!(w.addrs("api", "r2", RecordType::A), ["10.2.0.3"]);
    let q = query("r2", RecordType::A, None);
    assert_eq!(w.ask("client", &q, Transport::Udp), ns1());
    let q = query("backend", RecordType::A, None);
    assert_eq!(w.ask("web", &q, Transport::Udp), ns1());
}

#[test]
fn dns8_shared_alias_one_record_per_ip_shuffled() {
    let mut w = World::new(WORLD);
    let mut firsts = std::collections::BTreeSet::new();
    for _ in 0..64 {
        let m = w.local("client", "svc", RecordType::A);
        let got: Vec<String> = m.answers.iter().map(|r| render(&r.data)).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        firsts.insert(got[0].clone());
    }
    assert_eq!(firsts.len(), 2, "both orders appear over 64 answers");
}

#[test]
fn dns10_dns12_known_name_other_types() {
    let mut w = World::new(WORLD);
    // AAAA for a v4-only name: NOERROR, nothing, not forwarded.
    assert!(w.addrs("client", "web", RecordType::AAAA).is_empty());
    assert!(w.addrs("client", "svc", RecordType::AAAA).is_empty());
    // MX for a known name: NOERROR, nothing.
    assert!(w.addrs("client", "web", RecordType::MX).is_empty());
    // Dual stack: AAAA answers the v6 address.
    assert_eq!(w.addrs("dual", "dual", RecordType::AAAA), ["fd00:6::2"]);
    assert_eq!(w.addrs("dual", "dual", RecordType::A), ["10.6.0.2"]);
    // Unknown names, TXT, SRV, NS: forwarded.
    for (name, rt) in [
        ("nosuch", RecordType::MX),
        ("nosuch", RecordType::AAAA),
        ("web", RecordType::TXT),
        ("web", RecordType::SRV),
        ("web", RecordType::NS),
        ("example.test", RecordType::A),
    ] {
        let q = query(name, rt, None);
        assert_eq!(w.ask("client", &q, Transport::Udp), ns1(), "{name} {rt}");
    }
}

#[test]
fn dns11_ptr_container_dot_network() {
    let mut w = World::new(WORLD);
    let m = w.local("client", "2.0.1.10.in-addr.arpa", RecordType::PTR);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(render(&m.answers[0].data), "web.n1.");
    assert_eq!(m.answers[0].ttl, EMBEDDED_TTL);
    // The router's n2 address, asked from n2.
    assert_eq!(
        w.addrs("api", "3.0.2.10.IN-ADDR.ARPA.", RecordType::PTR),
        ["router.n2."]
    );
    // IPv6.
    let v6 = "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.0.0.0.0.0.d.f.ip6.arpa";
    assert_eq!(w.addrs("dual", v6, RecordType::PTR), ["dual.v6."]);
    // Not shared, the gateway, outside: forwarded.
    for name in [
        "2.0.2.10.in-addr.arpa",
        "1.0.1.10.in-addr.arpa",
        "53.0.18.198.in-addr.arpa",
        "0.1.10.in-addr.arpa",
    ] {
        let q = query(name, RecordType::PTR, None);
        assert_eq!(w.ask("client", &q, Transport::Udp), ns1(), "{name}");
    }
}

#[test]
fn dns1_default_bridge_has_no_embedded_dns() {
    let mut w = World::new(WORLD);
    let old = w.idx("old");
    assert!(!w.table.view(old).unwrap().embedded);
    let q = query("web", RecordType::A, None);
    assert_eq!(w.ask("old", &q, Transport::Udp), Decision::Drop);
    // Its name is registered nowhere (BR-18).
    let q = query("old", RecordType::A, None);
    assert_eq!(w.ask("client", &q, Transport::Udp), ns1());
}

#[test]
fn dns13_upstreams_container_dns_first() {
    let mut w = World::new(WORLD);
    let q = query("example.test", RecordType::A, None);
    assert_eq!(
        w.ask("custom", &q, Transport::Udp),
        Decision::Forward(vec![ip("198.18.0.99"), ip("198.18.0.53")])
    );
    // At most 3, in order, no loopback (no loop back to 127.0.0.11), no
    // duplicates.
    let given: Vec<IpAddr> = [
        "127.0.0.11",
        "10.0.0.1",
        "::1",
        "10.0.0.2",
        "10.0.0.1",
        "10.0.0.3",
        "10.0.0.4",
    ]
    .iter()
    .map(|s| ip(s))
    .collect();
    assert_eq!(
        select_upstreams(&given),
        vec![ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")]
    );
}

#[test]
fn dns16_no_upstream_is_servfail_never_nxdomain() {
    let text = WORLD.replace("resolvers = [\"ns1\"]", "");
    let mut w = World::new(&text);
    let m = w.local("client", "example.test", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(m.metadata.id, 0x1234);
    assert!(m.answers.is_empty());
    // Local names still resolve.
    assert_eq!(w.addrs("client", "web", RecordType::A), ["10.1.0.2"]);
}

#[test]
fn dns17_internal_only_servfail_but_local_names() {
    let mut w = World::new(WORLD);
    let m = w.local("lonely", "example.test", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(w.addrs("lonely", "lonely", RecordType::A), ["10.3.0.2"]);
    assert_eq!(
        w.table.view(w.idx("lonely")).unwrap().upstreams,
        Upstreams::NoExternalAccess
    );
}

fn many_world(n: usize) -> World {
    let mut t =
        String::from("name = \"many\"\n[[network]]\nname = \"n\"\nsubnet = \"10.9.0.0/24\"\n");
    for i in 0..n {
        t.push_str(&format!(
            "[[container]]\nname = \"c{i}\"\nnetworks = [{{ name = \"n\", aliases = [\"web\"] }}]\n"
        ));
    }
    World::new(&t)
}

#[test]
fn dns18_udp_truncation_and_tcp_full() {
    let mut w = many_world(40);
    let count = |b: &[u8]| {
        let m = Message::from_vec(b).unwrap();
        (m.answers.len(), m.metadata.truncation)
    };
    let Decision::Answer(b) = w.ask("c0", &query("web", RecordType::A, None), Transport::Udp)
    else {
        panic!("local")
    };
    assert!(b.len() <= 512, "{}", b.len());
    let (n, tc) = count(&b);
    assert!(tc && n > 20 && n < 40, "{n} answers, tc {tc}");
    // EDNS 4096 fits all 40.
    let q = query("web", RecordType::A, Some(4096));
    let Decision::Answer(b) = w.ask("c0", &q, Transport::Udp) else {
        panic!("local")
    };
    assert_eq!(count(&b), (40, false));
    // EDNS sizes below 512 count as 512.
    let q = query("web", RecordType::A, Some(100));
    let Decision::Answer(b) = w.ask("c0", &q, Transport::Udp) else {
        panic!("local")
    };
    assert!(b.len() <= 512 && b.len() > 400);
    // TCP: everything.
    let q = query("web", RecordType::A, None);
    let Decision::Answer(b) = w.ask("c0", &q, Transport::Tcp) else {
        panic!("local")
    };
    assert_eq!(count(&b), (40, false));
}

#[test]
fn malformed_queries_never_panic() {
    let mut w = World::new(WORLD);
    let q = query("web", RecordType::A, Some(1232));
    for n in 0..q.len() {
        match w.ask("client", &q[..n], Transport::Udp) {
            Decision::Drop => assert!(n < 12),
            Decision::Answer(b) => {
                let m = Message::from_vec(&b).expect("parses");
                assert_eq!(m.metadata.id, 0x1234);
                assert_eq!(m.metadata.response_code, ResponseCode::FormErr, "at {n}");
            }
            Decision::Forward(_) => panic!("truncated query forwarded at {n}"),
        }
    }
    // A response is never answered (no loops).
    let Decision::Answer(resp) = w.ask("client", &q, Transport::Udp) else {
        panic!("local")
    };
    assert_eq!(w.ask("client", &resp, Transport::Udp), Decision::Drop);
    // Not a QUERY: NOTIMP. No question or two: FORMERR.
    let mut m = Message::new(7, MessageType::Query, OpCode::Notify);
    m.add_query(Query::query(
        Name::from_ascii("web").unwrap(),
        RecordType::A,
    ));
    let rc = |d: Decision| match d {
        Decision::Answer(b) => Message::from_vec(&b).unwrap().metadata.response_code,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        rc(w.ask("client", &m.to_vec().unwrap(), Transport::Udp)),
        ResponseCode::NotImp
    );
    let m = Message::new(8, MessageType::Query, OpCode::Query);
    assert_eq!(
        rc(w.ask("client", &m.to_vec().unwrap(), Transport::Udp)),
        ResponseCode::FormErr
    );
    let mut m = Message::new(9, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii("web").unwrap(),
        RecordType::A,
    ));
    m.add_query(Query::query(
        Name::from_ascii("api").unwrap(),
        RecordType::A,
    ));
    assert_eq!(
        rc(w.ask("client", &m.to_vec().unwrap(), Transport::Udp)),
        ResponseCode::FormErr
    );
    // Garbage after a plausible header: FORMERR with the id.
    let mut g = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    g.extend_from_slice(&[0xff; 40]);
    let Decision::Answer(b) = w.ask("client", &g, Transport::Udp) else {
        panic!("formerr")
    };
    assert_eq!(&b[..2], &[0xab, 0xcd]);
    assert_eq!(b[2] & 0x80, 0x80);
    assert_eq!(b[3] & 0x0f, 1);
    // Unknown querier index: nothing.
    assert_eq!(
        w.table.answer(999, &q, Transport::Udp, &mut w.rng),
        Decision::Drop
    );
}

#[test]
fn arpa_names() {
    assert_eq!(parse_arpa("4.3.2.1.in-addr.arpa"), Some(ip("1.2.3.4")));
    assert_eq!(
        parse_arpa("255.0.0.10.in-addr.arpa"),
        Some(ip("10.0.0.255"))
    );
    for bad in [
        "3.2.1.in-addr.arpa",
        "256.0.0.1.in-addr.arpa",
        "01.0.0.1.in-addr.arpa",
        "a.b.c.d.in-addr.arpa",
        "5.4.3.2.1.in-addr.arpa",
        ".0.0.1.in-addr.arpa",
        "1.ip6.arpa",
        "web",
    ] {
        assert_eq!(parse_arpa(bad), None, "{bad}");
    }
}

#[test]
fn error_reply_shapes() {
    let q = query("web", RecordType::A, Some(1232));
    let r = Message::from_vec(&error_reply(&q, ResponseCode::Refused).unwrap()).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert_eq!(r.metadata.id, 0x1234);
    assert_eq!(r.queries.len(), 1);
    assert!(r.edns.is_none());
    assert_eq!(error_reply(&q[..5], ResponseCode::ServFail), None);
}

#[test]
fn judge_upstream_replies() {
    let q = query("Example.test", RecordType::A, None);
    let qlen = question_len(&q).unwrap();
    let question = &q[12..12 + qlen];
    let table: std::collections::BTreeMap<String, Vec<IpAddr>> =
        [("example.test".to_string(), vec![ip("198.18.0.80")])].into();
    let ok = crate::probe::authoritative_answer(&table, &q).unwrap();
    assert_eq!(judge(&ok, 0x1234, question), Verdict::Relay);
    assert_eq!(judge(&ok, 0x4321, question), Verdict::NotOurs);
    assert_eq!(judge(&q, 0x1234, question), Verdict::NotOurs, "a query");
    assert_eq!(judge(&ok[..5], 0x1234, question), Verdict::NotOurs);
    // The upstream may change the case (0x20), not the name.
    let mut upper = ok.clone();
    upper[13..20].make_ascii_uppercase();
    assert_eq!(judge(&upper, 0x1234, question), Verdict::Relay);
    let other =
        crate::probe::authoritative_answer(&table, &query("xample.test", RecordType::A, None))
            .unwrap();
    assert_eq!(judge(&other, 0x1234, question), Verdict::NotOurs);
    let nx =
        crate::probe::authoritative_answer(&table, &query("Example.tesT", RecordType::A, None))
            .unwrap();
    assert_eq!(judge(&nx, 0x1234, question), Verdict::Relay);
    for (code, v) in [
        (ResponseCode::ServFail, Verdict::TryNext),
        (ResponseCode::Refused, Verdict::TryNext),
        (ResponseCode::NXDomain, Verdict::Relay),
        (ResponseCode::FormErr, Verdict::Relay),
    ] {
        let r = error_reply(&q, code).unwrap();
        assert_eq!(judge(&r, 0x1234, question), v, "{code:?}");
        // Without the question: judged on the code alone.
        let mut bare = r[..12].to_vec();
        bare[4..6].copy_from_slice(&[0, 0]);
        assert_eq!(judge(&bare, 0x1234, question), v, "{code:?} bare");
    }
    assert_eq!(question_len(&q[..14]), None);
}

#[test]
fn dns19_inflight_limit() {
    let f = Arc::new(Inflight::default());
    let guards: Vec<_> = (0..MAX_CONCURRENT)
        .map(|_| f.try_acquire().expect("below the limit"))
        .collect();
    assert!(f.try_acquire().is_none());
    assert_eq!(f.current(), MAX_CONCURRENT);
    drop(guards);
    assert_eq!(f.current(), 0);
    assert!(f.try_acquire().is_some());
}

/// An upstream on this host's loopback that answers every datagram with
/// `reply(query)` (or stays silent on `None`), until dropped.
struct FakeUdp {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    h: Option<std::thread::JoinHandle<()>>,
}

impl FakeUdp {
    fn new(reply: impl Fn(&[u8]) -> Option<Vec<u8>> + Send + 'static) -> FakeUdp {
        Self::on(UdpSocket::bind("127.0.0.1:0").unwrap(), reply)
    }

    fn on(s: UdpSocket, reply: impl Fn(&[u8]) -> Option<Vec<u8>> + Send + 'static) -> FakeUdp {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let addr = s.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let h = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, peer)) = s.recv_from(&mut buf)
                    && let Some(r) = reply(&buf[..n])
                {
                    let _ = s.send_to(&r, peer);
                }
            }
        });
        FakeUdp {
            addr,
            stop,
            h: Some(h),
        }
    }
}

impl Drop for FakeUdp {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.h.take() {
            let _ = h.join();
        }
    }
}

fn ns_table() -> std::collections::BTreeMap<String, Vec<IpAddr>> {
    [("example.test".to_string(), vec![ip("198.18.0.80")])].into()
}

fn rcode_of(b: &[u8]) -> ResponseCode {
    Message::from_vec(b).unwrap().metadata.response_code
}

#[test]
fn dns13_forward_moves_on_and_relays_unchanged() {
    let cfg = ForwardConfig {
        timeout: Duration::from_millis(300),
    };
    let stop = AtomicBool::new(false);
    let t = ns_table();
    let good = FakeUdp::new(move |q| crate::probe::authoritative_answer_udp(&t, q));
    let silent = FakeUdp::new(|_| None);
    let servfail = FakeUdp::new(|q| error_reply(q, ResponseCode::ServFail));
    let refused = FakeUdp::new(|q| error_reply(q, ResponseCode::Refused));
    // A port nobody listens on: ICMP port unreachable → next at once.
    let closed = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let q = query("example.test", RecordType::A, None);

    let started = Instant::now();
    let r = forward(&[closed, silent.addr, good.addr], &q, false, &cfg, &stop).unwrap();
    assert_eq!(&r[..2], &[0x12, 0x34], "client id restored");
    let m = Message::from_vec(&r).unwrap();
    assert_eq!(m.answers.len(), 1);
    assert!(m.metadata.authoritative, "relayed as the upstream sent it");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );

    // SERVFAIL and REFUSED move on; NXDOMAIN is relayed, not retried.
    let r = forward(
        &[servfail.addr, refused.addr, good.addr],
        &q,
        false,
        &cfg,
        &stop,
    )
    .unwrap();
    assert_eq!(rcode_of(&r), ResponseCode::NoError);
    let nx = query("nosuch.test", RecordType::A, None);
    let r = forward(&[good.addr, servfail.addr], &nx, false, &cfg, &stop).unwrap();
    assert_eq!(rcode_of(&r), ResponseCode::NXDomain);

    // Nobody useful: SERVFAIL; and only the first 3 are asked.
    let r = forward(
        &[servfail.addr, refused.addr, closed],
        &q,
        false,
        &cfg,
        &stop,
    )
    .unwrap();
    assert_eq!(rcode_of(&r), ResponseCode::ServFail);
    let r = forward(
        &[servfail.addr, refused.addr, closed, good.addr],
        &q,
        false,
        &cfg,
        &stop,
    )
    .unwrap();
    assert_eq!(rcode_of(&r), ResponseCode::ServFail);
    let r = forward(&[], &q, false, &cfg, &stop).unwrap();
    assert_eq!(rcode_of(&r), ResponseCode::ServFail);

    // Stopped: gives up at once.
    let stopped = AtomicBool::new(true);
    let r = forward(&[good.addr], &q, false, &cfg, &stopped).unwrap();
    assert_eq!(rcode_of(&r), ResponseCode::ServFail);
}

#[test]
fn dns18_forward_over_tcp() {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = ns_table();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut q).unwrap();
        let r = crate::probe::authoritative_answer(&t, &q).unwrap();
        s.write_all(&(r.len() as u16).to_be_bytes()).unwrap();
        s.write_all(&r).unwrap();
    });
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let q = query("example.test", RecordType::A, None);
    let cfg = ForwardConfig::default();
    let r = forward(&[closed, addr], &q, true, &cfg, &AtomicBool::new(false)).unwrap();
    h.join().unwrap();
    let m = Message::from_vec(&r).unwrap();
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.answers.len(), 1);
}

/// Upstreams reached over IPv6 (format 1.1): an IPv6 upstream is asked from
/// an IPv6 socket, and its AAAA answer is relayed unchanged.
#[test]
fn forward_to_an_ipv6_upstream() {
    let Ok(sock) = UdpSocket::bind("[::1]:0") else {
        eprintln!("SKIP forward_to_an_ipv6_upstream: no IPv6 loopback here");
        return;
    };
    let t: std::collections::BTreeMap<String, Vec<IpAddr>> =
        [("six.test".to_string(), vec![ip("2001:2::80")])].into();
    let good = FakeUdp::on(sock, move |q| crate::probe::authoritative_answer_udp(&t, q));
    assert!(good.addr.is_ipv6());
    let cfg = ForwardConfig {
        timeout: Duration::from_millis(500),
    };
    let q = query("six.test", RecordType::AAAA, None);
    let r = forward(&[good.addr], &q, false, &cfg, &AtomicBool::new(false)).unwrap();
    let m = Message::from_vec(&r).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let got: Vec<String> = m.answers.iter().map(|a| render(&a.data)).collect();
    assert_eq!(got, ["2001:2::80"]);
}

/// V6-2: AAAA from the container's IPv6 address, A from its IPv4 one, and
/// the PTR of the IPv6 address is `container.network.`, on the default /64
/// of a network without subnet6 too.
#[test]
fn v6_2_aaaa_and_ip6_arpa_ptr() {
    let plan = plan_of(
        r#"
name = "v6"
[[network]]
name = "dual"
subnet = "10.9.0.0/24"
ipv6 = true
[[container]]
name = "web"
networks = [{ name = "dual", ip6 = "fd00:5653::99" }]
[[container]]
name = "client"
networks = ["dual"]
"#,
    );
    let table = NameTable::from_plan(&plan);
    let mut rng = StdRng::seed_from_u64(3);
    let ask = |rng: &mut StdRng, name: &str, rt: RecordType| -> Vec<String> {
        match table.answer(1, &query(name, rt, None), Transport::Udp, rng) {
            Decision::Answer(b) => Message::from_vec(&b)
                .unwrap()
                .answers
                .iter()
                .map(|a| render(&a.data))
                .collect(),
            d => panic!("{name} {rt}: {d:?}"),
        }
    };
    assert_eq!(ask(&mut rng, "web", RecordType::AAAA), ["fd00:5653::99"]);
    assert_eq!(ask(&mut rng, "web", RecordType::A), ["10.9.0.2"]);
    assert_eq!(
        ask(&mut rng, "client.dual", RecordType::AAAA),
        ["fd00:5653::2"]
    );
    let ip6: std::net::Ipv6Addr = "fd00:5653::99".parse().unwrap();
    let nibbles: Vec<String> = ip6
        .octets()
        .iter()
        .rev()
        .flat_map(|b| [format!("{:x}", b & 0xf), format!("{:x}", b >> 4)])
        .collect();
    let arpa = format!("{}.ip6.arpa", nibbles.join("."));
    let arpa = arpa.as_str();
    assert_eq!(ask(&mut rng, arpa, RecordType::PTR), ["web.dual."]);
}

/// DNS-14: with `ndots` in `dns_opt`, an unknown single-label A/AAAA name
/// is answered locally with an empty NOERROR; dotted names and containers
/// without ndots still go upstream. DNS-4: the hostname resolves too.
#[test]
fn dns14_ndots_set_single_label_answered_empty() {
    let text = r#"name = "t"
[[machine]]
name = "host"
resolvers = ["198.18.0.53"]
[[network]]
name = "n"
subnet = "10.1.0.0/24"
[[container]]
name = "a"
networks = ["n"]
hostname = "a-host"
dns_opt = ["ndots:2"]
dns_search = ["corp"]
[[container]]
name = "b"
networks = ["n"]
"#;
    let mut w = World::new(text);
    for rt in [RecordType::A, RecordType::AAAA] {
        assert!(w.addrs("a", "foo", rt).is_empty());
    }
    assert_eq!(
        w.ask("a", &query("foo.corp", RecordType::A, None), Transport::Udp),
        ns1()
    );
    assert_eq!(
        w.ask("b", &query("foo", RecordType::A, None), Transport::Udp),
        ns1()
    );
    assert_eq!(w.addrs("b", "a-host", RecordType::A), ["10.1.0.2"]);
}
