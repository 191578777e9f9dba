//! `/proc/sys` reads and writes.
//!
//! Network sysctls (`net.*`) belong to a network namespace, and procfs picks
//! it from the *thread* that opens the file (`current->nsproxy->net_ns`), not
//! from the process or the mount. So [`sysctl_set`] called inside
//! [`crate::netns::NetNs::run`] changes that namespace only; the tests in
//! `sys::tests` check this. Non-`net` keys are global.

use std::io;
use std::path::PathBuf;

/// Errors of sysctl access.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    /// The key is empty or has empty, `.`/`..` or `/`-holding components.
    #[error("invalid sysctl key {key:?}: expected dotted words like net.ipv4.ip_forward")]
    InvalidKey {
        /// The rejected key.
        key: String,
    },
    /// Reading failed (missing key, no permission).
    #[error("cannot read sysctl {key} ({path}): {source}")]
    Read {
        /// The key.
        key: String,
        /// The file.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// Writing failed (missing key, value refused, no permission).
    #[error("cannot set sysctl {key} ({path}) to {value:?}: {source}")]
    Write {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// The file.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
}

/// `/proc/sys/…` path for `key` ("net.ipv4.ip_forward" →
/// "/proc/sys/net/ipv4/ip_forward"). Keys with `/` in them are taken as
/// already slash-separated ("net/ipv4/conf/eth0.1/forwarding" style, for
/// interface names holding dots).
pub fn sysctl_path(key: &str) -> Result<PathBuf, SysctlError> {
    let parts: Vec<&str> = if key.contains('/') {
        key.split('/').collect()
    } else {
        key.split('.').collect()
    };
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(SysctlError::InvalidKey {
            key: key.to_string(),
        });
    }
    let mut path = PathBuf::from("/proc/sys");
    path.extend(parts);
    Ok(path)
}

/// Writes `value` to sysctl `key` for the calling thread's network namespace.
pub fn sysctl_set(key: &str, value: &str) -> Result<(), SysctlError> {
    let path = sysctl_path(key)?;
    std::fs::write(&path, value).map_err(|source| SysctlError::Write {
        key: key.to_string(),
        value: value.to_string(),
        path,
        source,
    })
}

/// Reads sysctl `key` (trailing newline removed) for the calling thread's
/// network namespace.
pub fn sysctl_get(key: &str) -> Result<String, SysctlError> {
    let path = sysctl_path(key)?;
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(s.trim_end_matches('\n').to_string()),
        Err(source) => Err(SysctlError::Read {
            key: key.to_string(),
            path,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.1/forwarding").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.1/forwarding")
        );
        for bad in ["", "net..x", "net/../x", ".net"] {
            assert!(sysctl_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_a_global_key() {
        assert!(!sysctl_get("kernel.ostype").unwrap().is_empty());
    }
}
