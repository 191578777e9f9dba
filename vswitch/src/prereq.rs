//! Prerequisites of tests: root, tools, a Docker daemon, kernel features.
//!
//! A missing prerequisite is a *named skip*: the test says what is missing
//! and which package provides it, and the skip is recorded so the suite can
//! list every skip at its end. With `VSWITCH_REQUIRE_ROOT=1` (CI sets it) a
//! missing prerequisite is a failure instead — except a kernel feature this
//! machine's kernel lacks, which stays a named skip.

use std::io::Write;
use std::path::PathBuf;

/// Environment variable that turns "skip when not root" into a failure
/// (set it in CI, where a missing privilege is a broken runner).
pub const REQUIRE_ROOT_ENV: &str = "VSWITCH_REQUIRE_ROOT";

/// Whether missing prerequisites fail (`VSWITCH_REQUIRE_ROOT=1`).
pub fn required() -> bool {
    std::env::var(REQUIRE_ROOT_ENV).is_ok_and(|v| v == "1")
}

/// Where this test run's skips are recorded: one file per `cargo test`
/// invocation (every test binary it starts has the same parent).
fn skip_log() -> PathBuf {
    std::env::temp_dir().join(format!(
        "vswitch-skips-{}.log",
        std::os::unix::process::parent_id()
    ))
}

/// Records and prints that `test` was skipped and why.
pub fn skip(test: &str, reason: &str) {
    eprintln!("skip {test}: {reason}");
    record_skip(test, reason);
}

/// Records a skip without printing it (the test harness shows it as an
/// ignored trial; the list at the end gives the reason).
pub fn record_skip(test: &str, reason: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skip_log())
    {
        let _ = writeln!(f, "{test}: {}", reason.replace('\n', " "));
    }
}

/// The skips recorded so far by this test run, which are then forgotten.
pub fn take_skips() -> Vec<String> {
    let path = skip_log();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    let mut v: Vec<String> = text.lines().map(str::to_string).collect();
    v.sort();
    v.dedup();
    v
}

/// What a test should do about one prerequisite.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate<T> {
    /// Present: run.
    Run(T),
    /// Absent: skip (already recorded with its reason).
    Skip,
    /// Absent while prerequisites are required: fail with this message.
    Fail(String),
}

impl<T> Gate<T> {
    /// For tests that fail by panicking: `Some` to run, `None` to skip, and
    /// a panic naming what is missing when it is required.
    pub fn or_panic(self) -> Option<T> {
        match self {
            Gate::Run(t) => Some(t),
            Gate::Skip => None,
            Gate::Fail(m) => panic!("{m}"),
        }
    }
}

/// Decides about something missing: skip (recorded) or, when required, fail.
pub fn missing<T>(test: &str, what: &str) -> Gate<T> {
    decide(required(), test, what, &skip)
}

fn decide<T>(required: bool, test: &str, what: &str, record: &dyn Fn(&str, &str)) -> Gate<T> {
    if required {
        Gate::Fail(format!("{test}: {what} ({REQUIRE_ROOT_ENV}=1)"))
    } else {
        record(test, what);
        Gate::Skip
    }
}

/// `tool` on `PATH` for `test`.
pub fn tool(test: &str, tool: &str) -> Gate<PathBuf> {
    match crate::tools::find(tool) {
        Some(p) => Gate::Run(p),
        None => missing(test, &crate::tools::missing(tool)),
    }
}

/// Root (network namespaces and links can be created) for `test`.
pub fn root(test: &str) -> Gate<()> {
    if crate::netns::can_create() {
        Gate::Run(())
    } else {
        missing(
            test,
            "needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN to create network namespaces)",
        )
    }
}

/// A kernel feature this machine may lack: always a named skip when absent
/// (an unsupported kernel feature is not a broken runner).
pub fn kernel_feature(test: &str, present: bool, what: &str) -> bool {
    if !present {
        skip(test, &format!("this kernel lacks {what}"));
    }
    present
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the tool absent from PATH: a named skip naming the package, or
    /// a failure when prerequisites are required.
    #[test]
    fn a_missing_tool_is_a_named_skip_or_a_failure() {
        let what = crate::tools::missing("vswitch-no-such-tool");
        let seen = std::cell::RefCell::new(Vec::new());
        let record = |t: &str, w: &str| seen.borrow_mut().push(format!("{t}: {w}"));
        assert_eq!(decide::<()>(false, "t", &what, &record), Gate::Skip);
        assert_eq!(
            *seen.borrow(),
            ["t: vswitch-no-such-tool is not installed: apt-get install vswitch-no-such-tool"]
        );
        match decide::<()>(true, "t", &what, &record) {
            Gate::Fail(m) => assert!(m.contains("is not installed") && m.contains("REQUIRE_ROOT")),
            g => panic!("{g:?}"),
        }
        assert_eq!(seen.borrow().len(), 1, "a failure is not a skip");
        assert!(crate::tools::find("vswitch-no-such-tool").is_none());
        assert!(matches!(tool("t", "sh"), Gate::Run(_)));
    }
}
