//! Validation tests on whole scenario texts.

mod invalid;
mod ipv6;
mod services;
mod steps;
mod valid;

use std::net::Ipv4Addr;
use std::path::Path;

use super::plan::*;
use super::{ScenarioError, parse_str};

pub(super) fn ok(text: &str) -> Plan {
    match parse_str(Path::new("t.toml"), text) {
        Ok(p) => p,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

pub(super) fn err(text: &str) -> ScenarioError {
    match parse_str(Path::new("t.toml"), text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

/// Asserts line, field and a message substring.
pub(super) fn err_at(text: &str, line: usize, field: &str, msg: &str) {
    let e = err(text);
    assert_eq!((e.line, e.field.as_str()), (line, field), "{e}");
    assert!(e.message.contains(msg), "{e}\n  wanted: {msg}");
}

pub(super) fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub(super) const HEAD: &str = "name = \"x\"\n";
