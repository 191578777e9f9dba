//! The kernel fast path against the resolver: the same queries through
//! `BPF_PROG_TEST_RUN` and through [`NameTable::answer`] must give the same
//! DNS bytes, or the program must leave the frame alone (needs root to load
//! BPF; skipped otherwise unless VSWITCH_REQUIRE_ROOT=1).

use std::path::Path;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::fastpath::{Loaded, key, query_frame, reply_payload};
use super::tests::{WORLD, query};
use super::*;
use crate::sys::bpf::{TCX_NEXT, TCX_PASS, current_netns_cookie};

fn table() -> (crate::scenario::plan::Plan, NameTable) {
    let plan = crate::scenario::parse_str(Path::new("unit.toml"), WORLD).expect("valid scenario");
    let table = NameTable::from_plan(&plan);
    (plan, table)
}

fn idx(plan: &crate::scenario::plan::Plan, name: &str) -> usize {
    plan.containers.iter().position(|c| c.name == name).unwrap()
}

fn load(table: &NameTable, c: usize) -> Option<Loaded> {
    if !crate::sys::require_root("dns fast path") {
        return None;
    }
    let answers = table.fast_answers(c);
    let l = Loaded::new(answers.len()).expect("the verifier accepts the program");
    l.insert(here(), &answers).expect("map update");
    Some(l)
}

/// The cookie of this thread's namespace, the one `BPF_PROG_TEST_RUN` runs
/// the program in.
fn here() -> u64 {
    current_netns_cookie().expect("SO_NETNS_COOKIE")
}

/// Runs `dns` through the program: `Some(reply)` when it answered, `None`
/// when it passed the frame on untouched (anything else fails).
fn run(l: &Loaded, dns: &[u8]) -> Option<Vec<u8>> {
    let f = query_frame(dns);
    let (ret, out) = l.prog.test_run(&f).expect("test run");
    match ret {
        TCX_PASS => Some(reply_payload(&f, &out).unwrap().to_vec()),
        TCX_NEXT => {
            assert_eq!(out, f, "a frame passed on is not modified");
            None
        }
        other => panic!("unexpected verdict {other}"),
    }
}

fn resolver_bytes(table: &NameTable, c: usize, dns: &[u8]) -> Option<Vec<u8>> {
    match table.answer(c, dns, Transport::Udp, &mut StdRng::seed_from_u64(1)) {
        Decision::Answer(b) => Some(b),
        _ => None,
    }
}

fn edns_query(name: &str, rt: RecordType, cd: bool, rd: bool, id: u16) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = rd;
    m.metadata.checking_disabled = cd;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rt));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    m.set_edns(e);
    m.to_vec().unwrap()
}

/// AAAA in the kernel as A: a single-address IPv6 name is a fast answer,
/// and the program's reply is the resolver's.
#[test]
fn aaaa_fast_answer_for_an_ipv6_name() {
    let (plan, table) = table();
    let c = idx(&plan, "dual");
    let answers = table.fast_answers(c);
    let six = answers
        .iter()
        .find(|a| a.name == "dual" && a.qtype == 28)
        .expect("dual AAAA is a fast answer");
    assert_eq!(six.addr, Some("fd00:6::2".parse().unwrap()));
    let Some(l) = load(&table, c) else { return };
    let q = query("dual", RecordType::AAAA, None);
    let got = run(&l, &q).expect("answered in the kernel");
    assert_eq!(Some(got.clone()), resolver_bytes(&table, c, &q));
    let m = Message::from_vec(&got).unwrap();
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].record_type(), RecordType::AAAA);
}

#[test]
fn fast_answers_are_single_address_names_dns8_dns10() {
    let (plan, table) = table();
    let web = table.fast_answers(idx(&plan, "client"));
    let has = |n: &str, t: u16| web.iter().any(|a| a.name == n && a.qtype == t);
    assert!(has("web", 1) && has("web.n1", 1) && has("www", 1));
    // DNS-10: the v4-only name answers AAAA with no records.
    assert!(
        web.iter()
            .any(|a| a.name == "web" && a.qtype == 28 && a.addr.is_none())
    );
    // DNS-8: svc has two addresses (round-robin) and stays in userspace.
    assert!(!has("svc", 1));
    // DNS-5: api is on n2 only.
    assert!(!has("api", 1));
    assert!(
        table.fast_answers(idx(&plan, "old")).is_empty(),
        "default bridge: no embedded DNS"
    );
    assert!(
        key(7, &"a".repeat(63), 1).is_none(),
        "64 wire bytes plus the zero do not fit"
    );
    assert!(key(7, &"a".repeat(62), 1).is_some());
}

/// DNS-4, DNS-7, DNS-9, DNS-10: every fast answer, with and without EDNS,
/// RD and CD, equals the resolver's bytes.
#[test]
fn kernel_answers_equal_the_resolvers() {
    let (plan, table) = table();
    for c in ["client", "router", "dual", "web"] {
        let c = idx(&plan, c);
        let Some(l) = load(&table, c) else { return };
        let answers = table.fast_answers(c);
        assert!(!answers.is_empty());
        for (i, a) in answers.iter().enumerate() {
            let rt = RecordType::from(a.qtype);
            for q in [
                query(&a.name, rt, None),
                edns_query(&a.name, rt, i % 2 == 0, i % 3 == 0, i as u16),
                edns_query(&format!("{}.", a.name), rt, true, true, 0xffff),
            ] {
                let want = resolver_bytes(&table, c, &q).expect("a local answer");
                let got = run(&l, &q).unwrap_or_else(|| panic!("{} {rt} not answered", a.name));
                assert_eq!(got, want, "{} {rt}", a.name);
            }
        }
        assert_eq!(l.hits(), 3 * answers.len() as u64, "every answer counted");
    }
}

/// What the fast path must leave to userspace: round-robin names (DNS-8),
/// other spellings, PTR/MX, forwarded names, other scopes.
#[test]
fn everything_else_passes_through_untouched() {
    let (plan, table) = table();
    let c = idx(&plan, "client");
    let Some(l) = load(&table, c) else { return };
    for (name, rt) in [
        ("svc", RecordType::A),
        ("WEB", RecordType::A),
        ("Web.n1", RecordType::A),
        ("web", RecordType::MX),
        ("web", RecordType::TXT),
        ("1.0.1.10.in-addr.arpa", RecordType::PTR),
        ("example.test", RecordType::A),
        ("api", RecordType::A),
    ] {
        assert_eq!(run(&l, &query(name, rt, None)), None, "{name} {rt}");
    }
    // A response, a second question, trailing bytes, an OPT with options.
    let mut resp = query("web", RecordType::A, None);
    resp[2] |= 0x80;
    assert_eq!(run(&l, &resp), None);
    let mut two = query("web", RecordType::A, None);
    two[5] = 2;
    assert_eq!(run(&l, &two), None);
    let mut trailing = query("web", RecordType::A, None);
    trailing.push(0);
    assert_eq!(run(&l, &trailing), None);
    let mut cookie = edns_query("web", RecordType::A, false, true, 7);
    let n = cookie.len();
    cookie[n - 1] = 4; // RDLEN 4 …
    cookie.extend_from_slice(&[0, 10, 0, 0]); // … an empty COOKIE option
    assert_eq!(run(&l, &cookie), None);
    assert_eq!(l.hits(), 0);
}

/// DNS-5 in the kernel: one map holds every container's names, each under
/// its namespace's cookie; a query only finds those of the namespace it is
/// sent in.
#[test]
fn names_of_another_namespace_are_not_answered() {
    let (plan, table) = table();
    if !crate::sys::require_root("dns fast path") {
        return;
    }
    let api = table.fast_answers(idx(&plan, "api"));
    let l = Loaded::new(2 * api.len()).expect("the verifier accepts the program");
    l.insert(here().wrapping_add(1), &api).unwrap();
    assert_eq!(
        run(&l, &query("api", RecordType::A, None)),
        None,
        "another namespace's name"
    );
    l.insert(here(), &api).unwrap();
    assert!(
        run(&l, &query("api", RecordType::A, None)).is_some(),
        "this namespace's"
    );
    assert_eq!(l.hits(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any frame: the program either leaves it alone or answers exactly as
    /// the resolver does.
    #[test]
    fn never_disagrees_with_the_resolver(
        which in 0usize..6,
        flips in proptest::collection::vec((0usize..64, any::<u8>()), 0..4),
        cut in 0usize..8,
    ) {
        let (plan, table) = table();
        let c = idx(&plan, "client");
        let Some(l) = load(&table, c) else { return Ok(()) };
        let names = ["web", "web.n1", "www", "client", "svc", "nope"];
        let rt = if which % 2 == 0 { RecordType::A } else { RecordType::AAAA };
        let mut q = edns_query(names[which], rt, false, true, 0x4242);
        if which >= 3 {
            q = query(names[which], rt, None);
        }
        for (at, v) in flips {
            if at < q.len() {
                q[at] = v;
            }
        }
        q.truncate(q.len().saturating_sub(cut));
        if let Some(got) = run(&l, &q) {
            prop_assert_eq!(Some(got), resolver_bytes(&table, c, &q));
        }
    }
}
