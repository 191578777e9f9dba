//! A small DNS client and an authoritative server for scenario externals,
//! with hickory-proto doing the message encoding.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::netns::NetNs;
use crate::scenario::plan::QueryType;

use super::ProbeError;
use super::echo::accept_loop;
use super::sock::{
    POLL, UdpService, Workers, remaining, tcp_listener, udp_client, udp_service_socket,
};

/// What a DNS query got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsOutcome {
    /// A response came back.
    Answer {
        /// "NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", … (`RCODE<n>` for
        /// codes without a name).
        rcode: String,
        /// Answer records of the queried type, rendered: A/AAAA → address;
        /// PTR/CNAME → target, lower-case, no trailing dot; MX →
        /// `"<pref> <exchange>"`; TXT → the strings joined.
        answers: Vec<String>,
        /// The TC bit was set.
        truncated: bool,
    },
    /// Nothing came back before the deadline (or the server's port was
    /// closed).
    NoAnswer,
}

/// Time to live of every answer of [`authoritative_answer`].
pub const DNS_TTL: u32 = 300;

/// How often UDP queries are repeated.
const UDP_RETRY: Duration = Duration::from_secs(1);

fn record_type(q: QueryType) -> RecordType {
    match q {
        QueryType::A => RecordType::A,
        QueryType::AAAA => RecordType::AAAA,
        QueryType::PTR => RecordType::PTR,
        QueryType::CNAME => RecordType::CNAME,
        QueryType::MX => RecordType::MX,
        QueryType::TXT => RecordType::TXT,
    }
}

/// The conventional mnemonic of a response code.
fn rcode_text(code: ResponseCode) -> String {
    let n = u16::from(code);
    match n {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADVERS",
        _ => return format!("RCODE{n}"),
    }
    .to_string()
}

/// A name as the tables and checks write it: lower-case, no trailing dot.
fn name_key(n: &Name) -> String {
    n.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

fn render(data: &RData) -> Option<String> {
    Some(match data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::PTR(p) => name_key(&p.0),
        RData::CNAME(c) => name_key(&c.0),
        RData::MX(mx) => format!("{} {}", mx.preference, name_key(&mx.exchange)),
        RData::TXT(t) => t
            .txt_data
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect::<String>(),
        _ => return None,
    })
}

/// Builds a query message; returns it with its id.
pub(crate) fn build_query(
    name: &str,
    qtype: QueryType,
) -> Result<(u16, Name, Vec<u8>), ProbeError> {
    let invalid = |reason: String| ProbeError::InvalidName {
        name: name.to_string(),
        reason,
    };
    // from_ascii keeps the case as given (from_utf8 folds it through IDNA).
    let mut qname = Name::from_ascii(name)
        .or_else(|_| Name::from_utf8(name))
        .map_err(|e| invalid(e.to_string()))?;
    qname.set_fqdn(true);
    let id: u16 = rand::random();
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(qname.clone(), record_type(qtype)));
    let bytes = msg.to_vec().map_err(|e| invalid(e.to_string()))?;
    Ok((id, qname, bytes))
}

/// Decodes a response to our query; `None` when it is not one (wrong id,
/// question, not a response, garbage).
pub(crate) fn parse_response(
    bytes: &[u8],
    id: u16,
    qname: &Name,
    qtype: QueryType,
) -> Option<DnsOutcome> {
    let m = Message::from_vec(bytes).ok()?;
    if m.metadata.id != id || m.metadata.message_type != MessageType::Response {
        return None;
    }
    let rt = record_type(qtype);
    // Servers may leave the question out of error responses (FORMERR etc.).
    if let Some(q) = m.queries.first()
        && (m.queries.len() != 1 || name_key(&q.name) != name_key(qname) || q.query_type != rt)
    {
        return None;
    }
    let answers = m
        .answers
        .iter()
        .filter(|r| r.record_type() == rt)
        .filter_map(|r| render(&r.data))
        .collect();
    Some(DnsOutcome::Answer {
        rcode: rcode_text(m.metadata.response_code),
        answers,
        truncated: m.metadata.truncation,
    })
}

/// Asks `server` for `name` (made absolute) of type `qtype` from inside
/// `ns`, over UDP (repeated every second) or TCP (2-byte length prefix).
/// [`DnsOutcome::NoAnswer`] when nothing came back by `deadline` or the
/// server port is closed.
pub fn dns_query(
    ns: &NetNs,
    server: SocketAddr,
    name: &str,
    qtype: QueryType,
    tcp: bool,
    deadline: Instant,
) -> Result<DnsOutcome, ProbeError> {
    let (id, qname, query) = build_query(name, qtype)?;
    ns.run(move || {
        if tcp {
            query_tcp(server, &query, id, &qname, qtype, deadline)
        } else {
            query_udp(server, &query, id, &qname, qtype, deadline)
        }
    })?
}

fn query_udp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    qname: &Name,
    qtype: QueryType,
    deadline: Instant,
) -> Result<DnsOutcome, ProbeError> {
    let sock = udp_client(server, 0)?;
    let mut buf = vec![0u8; 65536];
    let mut next_send = Instant::now();
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(DnsOutcome::NoAnswer);
        }
        if now >= next_send {
            match sock.send(query) {
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    return Ok(DnsOutcome::NoAnswer);
                }
                // Unreachable and the like: the next attempt may fare better.
                _ => next_send = now + UDP_RETRY,
            }
        }
        let Some(wait) = remaining(next_send.min(deadline)) else {
            continue;
        };
        sock.set_read_timeout(Some(wait))
            .map_err(|e| ProbeError::io(server, "set read timeout", e))?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                if let Some(out) = parse_response(&buf[..n], id, qname, qtype) {
                    return Ok(out);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Ok(DnsOutcome::NoAnswer);
            }
            Err(_) => {}
        }
    }
}

fn query_tcp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    qname: &Name,
    qtype: QueryType,
    deadline: Instant,
) -> Result<DnsOutcome, ProbeError> {
    let Some(left) = remaining(deadline) else {
        return Ok(DnsOutcome::NoAnswer);
    };
    let Ok(mut s) = TcpStream::connect_timeout(&server, left) else {
        return Ok(DnsOutcome::NoAnswer);
    };
    let len = u16::try_from(query.len()).map_err(|_| ProbeError::InvalidName {
        name: qname.to_string(),
        reason: "query too long".into(),
    })?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    if s.write_all(&framed).is_err() {
        return Ok(DnsOutcome::NoAnswer);
    }
    let mut len = [0u8; 2];
    if !read_full_until(&mut s, &mut len, deadline) {
        return Ok(DnsOutcome::NoAnswer);
    }
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    if !read_full_until(&mut s, &mut body, deadline) {
        return Ok(DnsOutcome::NoAnswer);
    }
    parse_response(&body, id, qname, qtype).ok_or_else(|| ProbeError::BadReply {
        dst: server,
        reason: "the TCP response does not answer the query (id or question differ, or not DNS)"
            .into(),
    })
}

/// Fills `buf` before `deadline`; false on timeout, EOF or error.
fn read_full_until(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> bool {
    let mut got = 0;
    while got < buf.len() {
        let Some(left) = remaining(deadline) else {
            return false;
        };
        if s.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match s.read(&mut buf[got..]) {
            Ok(0) => return false,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// The answer of the authoritative server to `query`, or `None` when the
/// query is malformed (or is not a query at all). Pure: no I/O.
///
/// Names of `table` (lower-case, no trailing dot) are matched
/// case-insensitively, a trailing dot ignored; A/AAAA get the addresses of
/// that family, other types NOERROR with no answers; unknown names get
/// NXDOMAIN. Responses are authoritative, TTL [`DNS_TTL`], never truncated.
pub fn authoritative_answer(
    table: &BTreeMap<String, Vec<IpAddr>>,
    query: &[u8],
) -> Option<Vec<u8>> {
    answer(table, query, None)
}

/// As [`authoritative_answer`] for UDP: a response longer than the client
/// can take (512 bytes, or its EDNS size) goes out empty with TC set.
pub fn authoritative_answer_udp(
    table: &BTreeMap<String, Vec<IpAddr>>,
    query: &[u8],
) -> Option<Vec<u8>> {
    answer(table, query, Some(512))
}

/// The EDNS payload size this server offers.
const EDNS_PAYLOAD: u16 = 1232;

fn answer(
    table: &BTreeMap<String, Vec<IpAddr>>,
    query: &[u8],
    udp_limit: Option<usize>,
) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    if q.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.checking_disabled = q.metadata.checking_disabled;
    r.metadata.authoritative = true;
    r.queries = q.queries.clone();
    let limit = udp_limit.map(|base| match &q.edns {
        Some(e) => usize::from(e.max_payload().clamp(512, EDNS_PAYLOAD)),
        None => base,
    });
    if q.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(EDNS_PAYLOAD);
        r.set_edns(e);
    }
    r.metadata.response_code = respond(table, &q, &mut r.answers);
    let bytes = r.to_vec().ok()?;
    match limit {
        Some(l) if bytes.len() > l => {
            r.answers.clear();
            r.metadata.truncation = true;
            r.to_vec().ok()
        }
        _ => Some(bytes),
    }
}

/// Fills `answers` and returns the response code.
fn respond(
    table: &BTreeMap<String, Vec<IpAddr>>,
    q: &Message,
    answers: &mut Vec<Record>,
) -> ResponseCode {
    if q.metadata.op_code != OpCode::Query {
        return ResponseCode::NotImp;
    }
    let [query] = q.queries.as_slice() else {
        return ResponseCode::FormErr;
    };
    if query.query_class != DNSClass::IN {
        return ResponseCode::Refused;
    }
    let Some(addrs) = table.get(&name_key(&query.name)) else {
        return ResponseCode::NXDomain;
    };
    for ip in addrs {
        let data = match (query.query_type, ip) {
            (RecordType::A, IpAddr::V4(v4)) => RData::A(A(*v4)),
            (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(*v6)),
            _ => continue,
        };
        answers.push(Record::from_rdata(query.name.clone(), DNS_TTL, data));
    }
    ResponseCode::NoError
}

/// A running authoritative DNS server; dropping it (or [`stop`]) stops it.
///
/// [`stop`]: DnsServer::stop
#[derive(Debug)]
pub struct DnsServer {
    workers: Workers,
}

impl DnsServer {
    /// Stops the server and waits for its threads.
    pub fn stop(mut self) {
        self.workers.stop();
    }
}

/// Starts an authoritative server for `table` on UDP and TCP port 53 of every
/// address of `ns` (see [`authoritative_answer`]).
pub fn start_dns_server(
    ns: &NetNs,
    table: &BTreeMap<String, Vec<IpAddr>>,
) -> Result<DnsServer, ProbeError> {
    let table = Arc::new(table.clone());
    let (udp, tcp) =
        ns.run(|| Ok::<_, ProbeError>((udp_service_socket(53)?, tcp_listener(53)?)))??;
    let mut workers = Workers::default();
    let stop = workers.stop_flag();
    let t = table.clone();
    workers.spawn("dns-udp".into(), move || dns_udp_loop(&udp, &stop, &t))?;
    let stop = workers.stop_flag();
    let conns = workers.conns();
    workers.spawn("dns-tcp".into(), move || {
        accept_loop(&tcp, &stop, &conns, "dns-conn", move |s, stop| {
            dns_tcp_conn(s, &stop, &table)
        })
    })?;
    Ok(DnsServer { workers })
}

fn dns_udp_loop(u: &UdpService, stop: &AtomicBool, table: &BTreeMap<String, Vec<IpAddr>>) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match u.recv(&mut buf) {
            Ok(Some((n, peer, local))) => {
                if let Some(resp) = authoritative_answer_udp(table, &buf[..n]) {
                    let _ = u.reply(&[&resp], peer, local);
                }
            }
            Ok(None) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Idle TCP connections are closed after this long.
const TCP_IDLE: Duration = Duration::from_secs(10);

fn dns_tcp_conn(mut s: TcpStream, stop: &AtomicBool, table: &BTreeMap<String, Vec<IpAddr>>) {
    // A client that does not read its answers is dropped after a second.
    if s.set_read_timeout(Some(POLL)).is_err()
        || s.set_write_timeout(Some(Duration::from_secs(1))).is_err()
    {
        return;
    }
    loop {
        let idle_until = Instant::now() + TCP_IDLE;
        let mut len = [0u8; 2];
        if !read_full_stoppable(&mut s, &mut len, stop, idle_until) {
            return;
        }
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if !read_full_stoppable(&mut s, &mut body, stop, idle_until) {
            return;
        }
        let Some(resp) = authoritative_answer(table, &body) else {
            return;
        };
        let Ok(rlen) = u16::try_from(resp.len()) else {
            return;
        };
        let mut framed = rlen.to_be_bytes().to_vec();
        framed.extend_from_slice(&resp);
        if s.write_all(&framed).is_err() {
            return;
        }
    }
}

/// Fills `buf` from a socket with a [`POLL`] read timeout; false on EOF,
/// error, `stop` or `until`.
fn read_full_stoppable(
    s: &mut TcpStream,
    buf: &mut [u8],
    stop: &AtomicBool,
    until: Instant,
) -> bool {
    let mut got = 0;
    while got < buf.len() {
        if stop.load(Ordering::Relaxed) || Instant::now() >= until {
            return false;
        }
        match s.read(&mut buf[got..]) {
            Ok(0) => return false,
            Ok(n) => got += n,
            Err(e) if super::sock::is_retry(&e) => {}
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> BTreeMap<String, Vec<IpAddr>> {
        let mut t = BTreeMap::new();
        t.insert(
            "web.example".to_string(),
            vec!["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()],
        );
        t.insert("v6only".to_string(), vec!["2001:db8::1".parse().unwrap()]);
        t
    }

    fn ask(name: &str, qtype: QueryType) -> DnsOutcome {
        let (id, qname, q) = build_query(name, qtype).unwrap();
        let r = authoritative_answer(&table(), &q).expect("an answer");
        parse_response(&r, id, &qname, qtype).expect("a response to our query")
    }

    fn answer_of(rcode: &str, answers: &[&str]) -> DnsOutcome {
        DnsOutcome::Answer {
            rcode: rcode.into(),
            answers: answers.iter().map(|s| s.to_string()).collect(),
            truncated: false,
        }
    }

    #[test]
    fn a_records() {
        assert_eq!(
            ask("web.example", QueryType::A),
            answer_of("NOERROR", &["192.0.2.1", "192.0.2.2"])
        );
        assert_eq!(
            ask("WEB.Example.", QueryType::A),
            answer_of("NOERROR", &["192.0.2.1", "192.0.2.2"])
        );
    }

    #[test]
    fn aaaa_and_other_types() {
        assert_eq!(
            ask("web.example", QueryType::AAAA),
            answer_of("NOERROR", &[])
        );
        assert_eq!(
            ask("v6only", QueryType::AAAA),
            answer_of("NOERROR", &["2001:db8::1"])
        );
        assert_eq!(ask("v6only", QueryType::MX), answer_of("NOERROR", &[]));
    }

    #[test]
    fn unknown_is_nxdomain() {
        assert_eq!(ask("nope", QueryType::A), answer_of("NXDOMAIN", &[]));
        assert_eq!(ask("example", QueryType::A), answer_of("NXDOMAIN", &[]));
    }

    #[test]
    fn response_header() {
        let (id, _, q) = build_query("web.example", QueryType::A).unwrap();
        let r = Message::from_vec(&authoritative_answer(&table(), &q).unwrap()).unwrap();
        assert_eq!(r.metadata.id, id);
        assert!(r.metadata.authoritative);
        assert!(r.metadata.recursion_desired);
        assert_eq!(r.answers.len(), 2);
        assert!(r.answers.iter().all(|a| a.ttl == DNS_TTL));
        // Case of the question is kept (0x20 randomisation).
        let (_, _, q) = build_query("WeB.example", QueryType::A).unwrap();
        let r = Message::from_vec(&authoritative_answer(&table(), &q).unwrap()).unwrap();
        assert_eq!(r.queries[0].name.to_ascii(), "WeB.example.");
    }

    #[test]
    fn malformed_and_responses_are_ignored() {
        assert_eq!(authoritative_answer(&table(), &[]), None);
        assert_eq!(authoritative_answer(&table(), &[1, 2, 3]), None);
        let (_, _, q) = build_query("web.example", QueryType::A).unwrap();
        let r = authoritative_answer(&table(), &q).unwrap();
        // A response is not answered (no loops between servers).
        assert_eq!(authoritative_answer(&table(), &r), None);
        for n in 0..q.len() {
            let _ = authoritative_answer(&table(), &q[..n]);
        }
    }

    #[test]
    fn no_question_is_formerr() {
        let m = Message::new(7, MessageType::Query, OpCode::Query);
        let r = authoritative_answer(&table(), &m.to_vec().unwrap()).unwrap();
        let r = Message::from_vec(&r).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    }

    #[test]
    fn udp_truncates_big_answers() {
        let mut t = BTreeMap::new();
        let many: Vec<IpAddr> = (0..60u8).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        t.insert("big".to_string(), many);
        let (id, qname, q) = build_query("big", QueryType::A).unwrap();
        let r = authoritative_answer_udp(&t, &q).unwrap();
        assert!(r.len() <= 512);
        assert_eq!(
            parse_response(&r, id, &qname, QueryType::A),
            Some(DnsOutcome::Answer {
                rcode: "NOERROR".into(),
                answers: vec![],
                truncated: true
            })
        );
        let full = authoritative_answer(&t, &q).unwrap();
        match parse_response(&full, id, &qname, QueryType::A) {
            Some(DnsOutcome::Answer { answers, .. }) => assert_eq!(answers.len(), 60),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn response_matching() {
        let (id, qname, q) = build_query("web.example", QueryType::A).unwrap();
        let r = authoritative_answer(&table(), &q).unwrap();
        assert!(parse_response(&r, id.wrapping_add(1), &qname, QueryType::A).is_none());
        assert!(parse_response(&r, id, &qname, QueryType::AAAA).is_none());
        let other = Name::from_utf8("other.").unwrap();
        assert!(parse_response(&r, id, &other, QueryType::A).is_none());
    }

    #[test]
    fn renders_other_types() {
        use hickory_proto::rr::rdata::{CNAME, MX, PTR, TXT};
        let n = Name::from_utf8("Mail.Example.").unwrap();
        assert_eq!(render(&RData::PTR(PTR(n.clone()))).unwrap(), "mail.example");
        assert_eq!(
            render(&RData::CNAME(CNAME(n.clone()))).unwrap(),
            "mail.example"
        );
        assert_eq!(
            render(&RData::MX(MX::new(10, n))).unwrap(),
            "10 mail.example"
        );
        assert_eq!(
            render(&RData::TXT(TXT::new(vec!["a=".into(), "b".into()]))).unwrap(),
            "a=b"
        );
    }

    #[test]
    fn rcode_names() {
        assert_eq!(rcode_text(ResponseCode::NoError), "NOERROR");
        assert_eq!(rcode_text(ResponseCode::ServFail), "SERVFAIL");
        assert_eq!(rcode_text(ResponseCode::Refused), "REFUSED");
        assert_eq!(rcode_text(ResponseCode::from(1, 7)), "RCODE23");
    }
}
