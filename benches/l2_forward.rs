//! Placeholder; the engine work fills this in.
fn main() {}
