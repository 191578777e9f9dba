//! vswitch: a userspace virtual switch and network test bench that
//! reproduces Docker's networking world on real namespaces and TAP devices.
#![deny(unsafe_code)]
// `sys` is the one place allowed to say `unsafe`.

pub mod backend;
pub mod bench;
pub mod compose;
pub mod dns;
pub mod engine;
pub mod graph;
pub mod inspect;
pub mod junit;
pub mod netns;
pub mod prereq;
pub mod probe;
pub mod progress;
pub mod run;
pub mod run_id;
pub mod scenario;
pub mod sys;
pub mod tools;
pub mod trace;
pub mod wire;
pub mod world;
