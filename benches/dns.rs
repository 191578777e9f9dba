//! The embedded DNS's sans-IO path (`NameTable::answer`): queries answered
//! per second from the name table of a world with 100 containers, for a
//! single name, a shared alias of 10 containers (shuffled, DNS-8), an empty
//! AAAA (DNS-10), a PTR (DNS-11) and the decision to forward an unknown
//! name, beside a baseline that only decodes the query (what any answer
//! costs at least).
//!
//! `Throughput::Elements(1)`: criterion reports queries/s. After criterion's
//! groups, a short self-timed pass prints queries/s and the cost against the
//! decode baseline from the same run.
//!
//! ```text
//! cargo bench -p vswitch-benches --bench dns            # full (~2 s per case)
//! cargo bench -p vswitch-benches --bench dns -- --quick # smoke
//! ```

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use vswitch::dns::{Decision, NameTable, Transport, decodes, seeded_rng};

mod common;
use common::{criterion, self_timed_pass, time_per_call};

const CONTAINERS: usize = 100;
const ALIASED: usize = 10;

/// One network, 100 containers; the first 10 share alias `pool`.
fn table() -> NameTable {
    let mut t = String::from(
        "name = \"bench\"\n[[machine]]\nname = \"host\"\nresolvers = [\"ns1\"]\n\
         [[external]]\nname = \"ns1\"\nip = \"198.18.0.53\"\n\
         [[network]]\nname = \"n\"\nsubnet = \"10.0.0.0/16\"\n",
    );
    for i in 0..CONTAINERS {
        let aliases = if i < ALIASED { "\"pool\"" } else { "" };
        writeln!(
            t,
            "[[container]]\nname = \"c{i}\"\nnetworks = [{{ name = \"n\", aliases = [{aliases}] }}]"
        )
        .unwrap();
    }
    let plan = vswitch::scenario::parse_str(Path::new("bench.toml"), &t).expect("bench world");
    NameTable::from_plan(&plan)
}

/// A query as a stub resolver sends it (RD set, one question, no EDNS).
fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

fn cases() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a_name", query("c50", 1)),
        ("a_alias_10", query("pool", 1)),
        ("aaaa_empty", query("c50", 28)),
        ("ptr", query("52.0.0.10.in-addr.arpa", 12)),
        ("forward_decision", query("example.test", 1)),
    ]
}

fn bench_answers(c: &mut Criterion, t: &NameTable) {
    let mut g = c.benchmark_group("dns_answer");
    g.throughput(Throughput::Elements(1));
    let q = query("c50", 1);
    g.bench_function("decode_only", |b| b.iter(|| decodes(black_box(&q))));
    let mut rng = seeded_rng(7);
    for (name, q) in cases() {
        g.bench_function(name, |b| {
            b.iter(|| t.answer(0, black_box(&q), Transport::Udp, &mut rng))
        });
    }
    g.finish();
}

/// Queries per second of `f` over about `span`.
/// Calls of `f` per second over about `span`.
fn rate(span: Duration, f: impl FnMut()) -> f64 {
    1e9 / time_per_call(span, f)
}

fn print_rates(t: &NameTable, span: Duration) {
    let q = query("c50", 1);
    let base = rate(span, || {
        black_box(decodes(black_box(&q)));
    });
    println!("\nembedded DNS, queries/s on one core (decode-only baseline {base:.0}/s):");
    let mut rng = seeded_rng(7);
    for (name, q) in cases() {
        let qps = rate(span, || {
            let d = t.answer(0, black_box(&q), Transport::Udp, &mut rng);
            assert!(!matches!(d, Decision::Drop));
            let _ = black_box(d);
        });
        println!("  {name:<18} {qps:>12.0} q/s  ({:.1}x decode)", base / qps);
    }
}

fn main() {
    let t = table();
    let mut c = criterion();
    bench_answers(&mut c, &t);
    c.final_summary();
    if self_timed_pass() {
        print_rates(&t, Duration::from_millis(300));
    }
}
