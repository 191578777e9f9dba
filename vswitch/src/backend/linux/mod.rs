//! What the kernel and docker backends share of Linux itself: running a
//! step on a thread inside a network namespace ([`in_ns`]), the helper
//! tools (`nft`, `tc`, `ip`, `conntrack`, [`run_tool`]) in the calling
//! thread's namespace, and link faults set with what this kernel has
//! ([`faults`]). Neither backend imports the other: both import this.

pub(crate) mod faults;

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::backend::common::BuildError;
use crate::netns::{NetNs, NetnsError};
use crate::sys::netlink::NetlinkError;
use crate::sys::sysctl::SysctlError;

/// A boxed error of a step (what [`BuildError`] carries).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of a step inside a network namespace: netlink, sysctls and the
/// helper tools (`nft`, `tc`, `ip`, `conntrack`).
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// A netlink request failed.
    #[error("{what}: {source}")]
    Netlink {
        /// What was being set up.
        what: String,
        /// Cause.
        source: NetlinkError,
    },
    /// A sysctl could not be set.
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    /// A helper process could not be run.
    #[error("{what}: {source}")]
    Spawn {
        /// What was being run.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A helper tool (`nft`, `ip`) refused its input.
    #[error("`{command}` failed: {stderr}{}", if input.is_empty() { String::new() } else { format!("\n--- input ---\n{input}") })]
    Tool {
        /// The command line.
        command: String,
        /// Its standard error.
        stderr: String,
        /// What it was given on standard input.
        input: String,
    },
    /// A namespace handle could not be duplicated.
    #[error("namespace handle: {0}")]
    Netns(#[from] NetnsError),
    /// Conntrack entries could not be deleted.
    #[error(transparent)]
    Conntrack(#[from] crate::sys::conntrack::ConntrackError),
}

/// `map_err` helper: a netlink error while setting up `what`.
pub(crate) fn nlerr(what: &str) -> impl FnOnce(NetlinkError) -> LinuxError + '_ {
    move |source| LinuxError::Netlink {
        what: what.to_string(),
        source,
    }
}

/// Runs `f` on a thread inside `ns`; both the namespace entry and `f`'s own
/// error become a [`BuildError`] at `step`.
pub(crate) fn in_ns<T, F>(ns: &NetNs, step: impl Into<String>, f: F) -> Result<T, BuildError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, LinuxError> + Send + 'static,
{
    run_in(ns, step.into(), f)
}

/// [`in_ns`] for a step whose errors are boxed (the docker backend's).
pub(crate) fn in_ns_boxed<T, F>(ns: &NetNs, step: impl Into<String>, f: F) -> Result<T, BuildError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, BoxError> + Send + 'static,
{
    run_in(ns, step.into(), f)
}

/// The one implementation of [`in_ns`] and [`in_ns_boxed`].
fn run_in<T, E, F>(ns: &NetNs, step: String, f: F) -> Result<T, BuildError>
where
    T: Send + 'static,
    E: Into<BoxError> + Send + 'static,
    F: FnOnce() -> Result<T, E> + Send + 'static,
{
    ns.run(f)
        .map_err(BuildError::at(step.clone()))?
        .map_err(|e| BuildError {
            step,
            source: e.into(),
        })
}

/// Runs `program args…` with `input` on its standard input, in the calling
/// thread's network namespace (a child inherits the thread's namespace).
pub(crate) fn run_tool(program: &str, args: &[&str], input: &str) -> Result<(), LinuxError> {
    let command = format!("{program} {}", args.join(" "));
    let spawn_err = |source| LinuxError::Spawn {
        what: command.clone(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if out.status.success() {
        return Ok(());
    }
    Err(LinuxError::Tool {
        command,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        input: input.to_string(),
    })
}
