//! The embedded DNS's kernel fast path, run in the kernel with
//! `BPF_PROG_TEST_RUN`: any bytes as the UDP payload of a query to
//! 127.0.0.11 (or, when the first byte is odd, as a whole frame on `lo`)
//! either pass through untouched or get a well-formed reply whose DNS bytes
//! are exactly the resolver's answer. Loading BPF needs root: without it
//! every input is skipped (CI runs this as root).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vswitch::dns::fastpath::{Loaded, query_frame, reply_payload};
use vswitch::dns::{Decision, Transport};
use vswitch::sys::bpf::{TCX_NEXT, TCX_PASS, current_netns_cookie};

mod dns_world;
use dns_world::table;

/// Container `web2` (on both networks, with a shared alias): its program.
const QUERIER: usize = 1;

fn loaded() -> Option<&'static Loaded> {
    static L: OnceLock<Option<Loaded>> = OnceLock::new();
    L.get_or_init(|| {
        let answers = table().fast_answers(QUERIER);
        let l = Loaded::new(answers.len()).ok()?;
        l.insert(current_netns_cookie().ok()?, &answers).ok()?;
        Some(l)
    })
    .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some(l) = loaded() else { return };
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let frame = if mode & 1 == 1 {
        rest.to_vec()
    } else {
        query_frame(rest)
    };
    if frame.len() < 14 {
        return; // the kernel refuses to test-run less than an Ethernet header
    }
    let (verdict, out) = match l.prog.test_run(&frame) {
        Ok(r) => r,
        // The kernel's test harness itself refuses some frames (an IPv4
        // ethertype without a whole IP header): the program never ran.
        Err(e) if e.raw_os_error() == Some(22) => return,
        Err(e) => panic!("test run: {e}"),
    };
    match verdict {
        TCX_NEXT => assert_eq!(out, frame, "a frame passed on is untouched"),
        TCX_PASS => {
            let got = reply_payload(&frame, &out).expect("a well-formed reply frame");
            let query = &frame[42..];
            let mut rng = vswitch::dns::seeded_rng(1);
            match table().answer(QUERIER, query, Transport::Udp, &mut rng) {
                Decision::Answer(want) => assert_eq!(got, &want[..], "the resolver's answer"),
                other => panic!("answered in the kernel, but the resolver says {other:?}"),
            }
        }
        other => panic!("verdict {other}"),
    }
});
