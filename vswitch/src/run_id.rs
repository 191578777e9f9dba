//! A run's identity and record, shared by the world's lifecycle (`world`:
//! registry, cleanup, signals) and the backends, which name what they make
//! with the run id: `vsw` plus six hex digits, every namespace named
//! `<run id>-<kind>-<name>`, the record under `/run/vswitch/runs`.
//! Backends import this module, never `world`; `world` calls backends.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Directory of run records.
pub const RUN_DIR: &str = "/run/vswitch/runs";
/// Every run id starts with this.
pub const PREFIX: &str = "vsw";

/// A run's identity: `vsw` + 6 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunId(String);

impl RunId {
    /// A fresh random run id, or the one forced by `VSWITCH_RUN_ID` (tests
    /// use it to look for leaks of one particular run).
    pub fn new() -> RunId {
        if let Ok(forced) = std::env::var("VSWITCH_RUN_ID")
            && let Some(id) = RunId::parse(&forced)
        {
            return id;
        }
        RunId(format!("{PREFIX}{:06x}", rand::random::<u32>() & 0xff_ffff))
    }

    /// Parses `vsw` + 6 lower-case hex digits.
    pub fn parse(s: &str) -> Option<RunId> {
        let hex = s.strip_prefix(PREFIX)?;
        (hex.len() == 6
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| RunId(s.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Namespace name for a node of this run: `vswXXXXXX-<kind>-<name>`.
    pub fn netns_name(&self, kind: NodeKind, name: &str) -> String {
        format!("{}-{}-{}", self.0, kind.letter(), name)
    }

    /// The run id a namespace name belongs to, if it is one of ours.
    pub fn of_netns(name: &str) -> Option<RunId> {
        let (id, rest) = name.split_at_checked(PREFIX.len() + 6)?;
        rest.starts_with('-').then_some(())?;
        RunId::parse(id)
    }
}

impl Default for RunId {
    fn default() -> Self {
        RunId::new()
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a namespace plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A Docker host.
    Machine,
    /// A host on `lan`.
    External,
    /// A container.
    Container,
}

impl NodeKind {
    fn letter(self) -> &'static str {
        match self {
            NodeKind::Machine => "m",
            NodeKind::External => "x",
            NodeKind::Container => "c",
        }
    }
}

/// What `/run/vswitch/runs/<id>.json` says about a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run id.
    pub id: RunId,
    /// Process that owns the world.
    pub pid: u32,
    /// Scenario file.
    pub scenario: String,
    /// Short name (`vswitch down NAME`): the scenario file's stem.
    pub name: String,
    /// Backend.
    pub backend: String,
    /// Node name → namespace name, for `vswitch exec`.
    pub namespaces: Vec<(String, String)>,
    /// Whether the world is kept up (`vswitch up` / `--keep`).
    pub kept: bool,
}

impl RunRecord {
    fn path(id: &RunId) -> PathBuf {
        Path::new(RUN_DIR).join(format!("{id}.json"))
    }

    /// Writes the record (atomically).
    pub fn save(&self) -> io::Result<()> {
        fs::create_dir_all(RUN_DIR)?;
        let path = RunRecord::path(&self.id);
        let tmp = path.with_extension("tmp");
        fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).map_err(io::Error::other)?,
        )?;
        fs::rename(tmp, path)
    }

    /// Removes the record (and the log `vswitch up` keeps beside it).
    pub fn remove(id: &RunId) {
        let _ = fs::remove_file(RunRecord::path(id));
        let _ = fs::remove_file(Path::new(RUN_DIR).join(format!("{id}.log")));
        // The step channel of a world kept up (`vswitch step`).
        let _ = fs::remove_file(Path::new(RUN_DIR).join(format!("{id}.sock")));
    }

    /// Every readable record.
    pub fn all() -> Vec<RunRecord> {
        let Ok(rd) = fs::read_dir(RUN_DIR) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect()
    }

    /// True while the owning process lives.
    pub fn is_live(&self) -> bool {
        pid_alive(self.pid)
    }
}

/// True while process `pid` lives (a zombie counts as gone).
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    // Signal 0 checks existence; a zombie still counts as gone for us.
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None).is_err() {
        return false;
    }
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

impl PartialOrd for RunId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RunId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_parse_and_name_namespaces() {
        let id = RunId::parse("vsw0a1b2c").unwrap();
        let ns = id.netns_name(NodeKind::Container, "web");
        assert_eq!(ns, "vsw0a1b2c-c-web");
        assert_eq!(RunId::of_netns(&ns), Some(id));
        assert_eq!(RunId::of_netns("vswtest-x"), None);
        assert_eq!(RunId::parse("vswXYZ123"), None);
        assert_eq!(RunId::parse("vsw0a1b2"), None);
        assert!(RunId::parse(RunId::new().as_str()).is_some());
    }

    #[test]
    fn own_pid_is_alive() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX));
    }
}
