//! The external hosts' authoritative DNS server: any query bytes get an
//! answer or nothing, never a panic; an answer always parses back as a DNS
//! message with the query's id.
#![no_main]

use std::collections::BTreeMap;
use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut table: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    table.insert("example.test".into(), vec!["198.18.0.80".parse().unwrap()]);
    table.insert(
        "multi.test".into(),
        vec!["198.18.0.80".parse().unwrap(), "fd00::80".parse().unwrap()],
    );
    for answer in [
        vswitch::probe::authoritative_answer(&table, data),
        vswitch::probe::authoritative_answer_udp(&table, data),
    ]
    .into_iter()
    .flatten()
    {
        assert!(answer.len() >= 12, "an answer has a DNS header");
        assert_eq!(answer[..2], data[..2], "an answer echoes the query id");
    }
});
