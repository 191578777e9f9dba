//! `--docker-host m1=unix:///run/a.sock,m2=...`: scenario machines mapped
//! to daemons that already run, instead of daemons the run starts. The
//! lan is then the hosts' own network: nothing is wired; each machine's
//! planned lan address must already be on its daemon's host, and no
//! scenario subnet may be in use there. A daemon's host is found from the
//! socket's peer credentials (the PID of dockerd, whose network namespace
//! is the machine's).
//!
//! What this backend cannot map is refused by name (exit 3): `tcp://`
//! daemons (the client speaks HTTP over unix sockets only, so no TLS
//! either), externals (they would have to be real hosts of that network),
//! overlays (the hosts' swarm is theirs to form), unmapped machines.
//!
//! A mapped run's containers and networks carry its label like on the
//! shared daemon; the sockets it used are recorded in
//! `/run/vswitch/docker-hosts/<run>` so that `vswitch cleanup` finds them
//! after a SIGKILL.

use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::BoxError;
use super::api::Client;
use crate::scenario::plan::{Driver, Plan};
use crate::world::RunId;

/// Where mapped runs record their sockets.
pub const HOSTS_DIR: &str = "/run/vswitch/docker-hosts";

static HOSTS: OnceLock<Vec<(String, String)>> = OnceLock::new();

/// Parses and sets this process's mapping (`NAME=URL,...`); once.
pub fn set(spec: &str) -> Result<(), String> {
    let mut v = Vec::new();
    for item in spec.split(',').filter(|s| !s.trim().is_empty()) {
        let Some((m, url)) = item.split_once('=') else {
            return Err(format!(
                "--docker-host: `{item}` is not MACHINE=URL (unix:///path or tcp://host:port)"
            ));
        };
        let (m, url) = (m.trim(), url.trim());
        if !(url.starts_with("unix://") || url.starts_with("tcp://")) {
            return Err(format!(
                "--docker-host: `{url}` (machine {m}) is neither unix:///path nor tcp://host:port"
            ));
        }
        if v.iter().any(|(n, _): &(String, String)| n == m) {
            return Err(format!("--docker-host: machine {m} is mapped twice"));
        }
        v.push((m.to_string(), url.to_string()));
    }
    HOSTS
        .set(v)
        .map_err(|_| "--docker-host given twice".to_string())
}

/// The mapping, when `--docker-host` was given.
pub fn mapping() -> Option<&'static [(String, String)]> {
    HOSTS.get().map(Vec::as_slice).filter(|v| !v.is_empty())
}

/// The socket machine `name` is mapped to (unix URLs only).
pub fn socket_of(name: &str) -> Option<PathBuf> {
    let (_, url) = mapping()?.iter().find(|(m, _)| m == name)?;
    url.strip_prefix("unix://").map(PathBuf::from)
}

/// The PID of the daemon behind a unix socket (its peer credentials).
pub fn daemon_pid(socket: &Path) -> Result<u32, BoxError> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let s = UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    let cred = getsockopt(&s, PeerCredentials)?;
    Ok(cred.pid() as u32)
}

/// Why the mapping cannot carry `plan`, one reason per item.
pub fn unsupported(plan: &Plan) -> Vec<String> {
    let mut why = Vec::new();
    let Some(map) = mapping() else {
        return why;
    };
    for (m, _) in map {
        if !plan.machines.iter().any(|x| &x.name == m) {
            why.push(format!(
                "--docker-host names machine `{m}`, which the scenario does not have"
            ));
        }
    }
    for (i, x) in plan.externals.iter().enumerate() {
        why.push(format!(
            "external[{i}] `{}` on --docker-host daemons: the lan is the hosts' own network, where vswitch creates no hosts",
            x.name
        ));
    }
    for (i, n) in plan.networks.iter().enumerate() {
        if n.driver == Driver::Overlay {
            why.push(format!(
                "overlay network[{i}] `{}` on --docker-host daemons: forming the hosts' swarm is not supported (only started daemons)",
                n.name
            ));
        }
    }
    for (i, m) in plan.machines.iter().enumerate() {
        let Some((_, url)) = map.iter().find(|(n, _)| n == &m.name) else {
            why.push(format!(
                "machine[{i}] `{}` has no --docker-host (every machine must be mapped)",
                m.name
            ));
            continue;
        };
        if url.starts_with("tcp://") {
            why.push(format!(
                "machine[{i}] `{}` at {url}: only unix:// daemons (the client speaks HTTP over unix sockets; no TCP, so no TLS options)",
                m.name
            ));
            continue;
        }
        if let Err(e) = host_fits(plan, i, url) {
            why.push(format!("machine[{i}] `{}` at {url}: {e}", m.name));
        }
    }
    why.into_iter()
        .map(|w| format!("backend docker: {w}"))
        .collect()
}

/// The daemon answers, its host carries the machine's planned lan address,
/// and no scenario subnet is in use there.
fn host_fits(plan: &Plan, i: usize, url: &str) -> Result<(), BoxError> {
    let socket = PathBuf::from(url.trim_start_matches("unix://"));
    Client::new(&socket).version()?;
    let pid = daemon_pid(&socket)?;
    let subnets: Vec<ipnet::Ipv4Net> = plan
        .networks
        .iter()
        .filter(|n| n.machine == Some(i) && !matches!(n.driver, Driver::Macvlan | Driver::Ipvlan))
        .flat_map(|n| n.subnets.iter().map(|s| s.net))
        .collect();
    let want = IpAddr::V4(plan.machines[i].ip);
    let addrs = host_addrs(pid)?;
    if !addrs.iter().any(|(_, a)| *a == want) {
        return Err(format!(
            "its host has no interface with the machine's lan address {want} (it has {})",
            addrs
                .iter()
                .map(|(l, a)| format!("{l} {a}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into());
    }
    for (l, a) in &addrs {
        if let IpAddr::V4(v4) = a
            && let Some(s) = subnets.iter().find(|s| s.contains(v4))
        {
            return Err(format!("subnet {s} is in use on its host ({l} has {a})").into());
        }
    }
    Ok(())
}

/// The addresses of the host (network namespace) of process `pid`.
fn host_addrs(pid: u32) -> Result<Vec<(String, IpAddr)>, BoxError> {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["ip", "-o", "addr", "show"])
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "listing its host's addresses: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    // `2: eth0    inet 198.18.0.2/24 brd ... scope global eth0`
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let a = w.get(3)?.split('/').next()?.parse().ok()?;
            Some((w.get(1)?.to_string(), a))
        })
        .collect())
}

/// Records the sockets a mapped run uses (for cleanup after SIGKILL).
pub fn record(run: &RunId, sockets: &[PathBuf]) -> std::io::Result<()> {
    std::fs::create_dir_all(HOSTS_DIR)?;
    let text: String = sockets
        .iter()
        .map(|s| format!("{}\n", s.display()))
        .collect();
    std::fs::write(Path::new(HOSTS_DIR).join(run.as_str()), text)
}

/// The sockets run `run` recorded.
pub fn recorded(run: &RunId) -> Vec<PathBuf> {
    std::fs::read_to_string(Path::new(HOSTS_DIR).join(run.as_str()))
        .unwrap_or_default()
        .lines()
        .map(PathBuf::from)
        .collect()
}

/// Removes run `run`'s labelled objects from the daemons it recorded, and the record.
pub fn remove(run: &RunId) -> Vec<String> {
    let mut removed = Vec::new();
    for s in recorded(run) {
        if s.exists() {
            removed.extend(super::cleanup::remove_objects(&Client::new(&s), run));
        }
    }
    let rec = Path::new(HOSTS_DIR).join(run.as_str());
    if rec.exists() && std::fs::remove_file(&rec).is_ok() {
        removed.push(rec.display().to_string());
    }
    removed
}

/// Runs with a record of mapped daemons.
pub fn leftover_runs() -> Vec<RunId> {
    std::fs::read_dir(HOSTS_DIR)
        .map(|rd| {
            rd.filter_map(|e| RunId::parse(e.ok()?.file_name().to_str()?))
                .collect()
        })
        .unwrap_or_default()
}

/// What run `run` still has on mapped daemons (labelled objects, the record).
pub fn traces(run: &RunId) -> Vec<String> {
    let mut v = Vec::new();
    for s in recorded(run) {
        if !s.exists() {
            continue;
        }
        let c = Client::new(&s);
        v.extend(
            c.containers_labeled(super::LABEL_RUN)
                .unwrap_or_default()
                .into_iter()
                .chain(c.networks_labeled(super::LABEL_RUN).unwrap_or_default())
                .filter(|o| o.label == run.as_str())
                .map(|o| format!("docker object {} at {}", o.name, s.display())),
        );
    }
    let rec = Path::new(HOSTS_DIR).join(run.as_str());
    if rec.exists() {
        v.push(rec.display().to_string());
    }
    v
}
