//! The embedded DNS (127.0.0.11): any bytes as a query from a container,
//! over UDP and TCP, get an answer, a forward or nothing, never a panic; an
//! answer always parses back as a DNS response with the query's id, and a
//! UDP answer fits 512 bytes unless the query carried EDNS.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch::dns::{Decision, Transport};

mod dns_world;
use dns_world::table;

fuzz_target!(|data: &[u8]| {
    let t = table();
    let mut rng = vswitch::dns::seeded_rng(1);
    for querier in 0..t.containers() {
        for transport in [Transport::Udp, Transport::Tcp] {
            match t.answer(querier, data, transport, &mut rng) {
                Decision::Answer(b) => {
                    assert!(b.len() >= 12, "an answer has a DNS header");
                    assert_eq!(b[..2], data[..2], "an answer echoes the query id");
                    assert_eq!(b[2] & 0x80, 0x80, "an answer is a response");
                    assert!(vswitch::dns::decodes(&b), "an answer parses back");
                    if transport == Transport::Udp && !vswitch::dns::query_has_edns(data) {
                        assert!(b.len() <= 512, "UDP answer of {} bytes", b.len());
                    }
                }
                Decision::Forward(ups) => assert!(!ups.is_empty() && ups.len() <= 3),
                Decision::Drop => {}
            }
        }
    }
});
