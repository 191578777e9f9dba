//! The `vswitch` command line.
fn main() {}
