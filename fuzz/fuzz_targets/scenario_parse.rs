//! Scenario files: any text fed to the parser returns (Ok or Err), never
//! panics.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = vswitch::scenario::parse_str(Path::new("fuzz.toml"), &text);
});
