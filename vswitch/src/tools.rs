//! External programs vswitch, its tests and its cross-checks use, found on
//! `PATH` and named with the Debian package that provides each, so that a
//! missing one is reported as "X is not installed: apt-get install P".
//!
//! The packages are the ones `ci/packages.txt` lists (the README shows the
//! same line, and `.ci/run` installs it).

use std::path::{Path, PathBuf};

/// Every program the project runs, with its Debian package.
pub const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("bridge", "iproute2"),
    ("ping", "iputils-ping"),
    ("iperf3", "iperf3"),
    ("dig", "dnsutils"),
    ("tshark", "tshark"),
    ("tcpdump", "tcpdump"),
    ("nft", "nftables"),
    ("conntrack", "conntrack"),
    ("dockerd", "docker.io"),
    ("busybox", "busybox-static"),
    ("curl", "curl"),
    ("openssl", "openssl"),
    ("systemd-socket-activate", "systemd"),
    ("dnsperf", "dnsperf"),
    ("setpriv", "util-linux"),
    ("ovs-vswitchd", "openvswitch-switch"),
    ("ovsdb-server", "openvswitch-switch"),
    ("ovsdb-tool", "openvswitch-switch"),
    ("ovs-vsctl", "openvswitch-switch"),
];

/// The Debian package that provides `tool` (the tool's own name when the
/// table does not know it).
pub fn package(tool: &str) -> &str {
    TOOLS
        .iter()
        .find(|(t, _)| *t == tool)
        .map_or(tool, |(_, p)| *p)
}

/// Where `tool` is on `PATH`: the first executable file of that name.
pub fn find(tool: &str) -> Option<PathBuf> {
    find_in(tool, std::env::var_os("PATH")?.as_os_str())
}

/// [`find`] over an explicit search path (tests).
pub fn find_in(tool: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .map(|dir| dir.join(tool))
        .find(|p| is_executable(p, |m| m.permissions().mode() & 0o111 != 0))
}

fn is_executable(p: &Path, exec: impl Fn(&std::fs::Metadata) -> bool) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && exec(&m))
}

/// "`tool` is not installed: apt-get install PACKAGE".
pub fn missing(tool: &str) -> String {
    format!("{tool} is not installed: apt-get install {}", package(tool))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_are_named() {
        assert_eq!(package("dig"), "dnsutils");
        assert_eq!(package("nft"), "nftables");
        assert_eq!(package("dockerd"), "docker.io");
        assert_eq!(
            missing("tshark"),
            "tshark is not installed: apt-get install tshark"
        );
    }

    #[test]
    fn found_only_on_the_given_path() {
        let dir = std::env::temp_dir().join(format!("vswitch-tools-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("fake-tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        let not_exe = dir.join("plain-file");
        std::fs::write(&not_exe, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_in("fake-tool", dir.as_os_str()), Some(exe));
        assert_eq!(find_in("plain-file", dir.as_os_str()), None);
        assert_eq!(
            find_in("fake-tool", std::ffi::OsStr::new("/nonexistent")),
            None
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn install_list() -> Vec<&'static str> {
        include_str!("../../ci/packages.txt")
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .flat_map(str::split_whitespace)
            .collect()
    }

    /// Every tool's package is in ci/packages.txt, the one list CI installs.
    #[test]
    fn every_package_is_in_the_install_list() {
        let pkgs = install_list();
        for (tool, p) in TOOLS {
            assert!(
                pkgs.contains(p),
                "{tool}: package {p} is not in ci/packages.txt"
            );
        }
    }

    /// The README's install line is exactly that list.
    #[test]
    fn the_readme_shows_the_install_list() {
        let readme = include_str!("../../README.md");
        let line = readme
            .lines()
            .find_map(|l| l.split_once("apt-get install -y ").map(|(_, r)| r))
            .expect("the README has an apt-get install line");
        let mut shown: Vec<&str> = line.split_whitespace().collect();
        let mut listed = install_list();
        shown.sort_unstable();
        listed.sort_unstable();
        assert_eq!(shown, listed, "README and ci/packages.txt differ");
    }
}
