//! `--docker-host m1=unix:///run/a.sock,m2=...`: scenario machines mapped
//! to daemons that already run, instead of daemons the run starts. The
//! lan is then the hosts' own network: nothing is wired; each machine's
//! planned lan address must already be on its daemon's host, and no
//! scenario subnet may be in use there. A daemon's host is found from the
//! socket's peer credentials (the PID of dockerd, whose network namespace
//! is the machine's).
//!
//! Daemons are given by `--docker-host` and/or a side file
//! (`--docker-hosts FILE`, [`parse`]), at `unix:///path` or
//! `tcp://host:port`, plain or TLS (the docker CLI's `--tlsverify`,
//! `--tlscacert`, `--tlscert`, `--tlskey`; per host in the side file).
//! vswitch drives containers through their namespaces, so a mapped daemon
//! must run on this machine: a `tcp://` daemon's PID is the process
//! holding the other end of a connection to it (`/proc/net/tcp`); a daemon
//! elsewhere is refused by name (exit 3).
//!
//! What this backend cannot map is also refused by name (exit 3):
//! externals (they would have to be real hosts of that network), overlays
//! (the hosts' swarm is theirs to form), unmapped machines, unreachable
//! daemons and failed TLS handshakes.
//!
//! A mapped run's containers and networks carry its label like on the
//! shared daemon; the daemons it used are recorded in
//! `/run/vswitch/docker-hosts/<run>` (one JSON line each: URL and TLS
//! files) so that `vswitch cleanup` finds them after a SIGKILL.

pub mod parse;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::BoxError;
use super::api::{Client, Endpoint, TlsFiles};
use crate::run_id::RunId;
use crate::scenario::plan::{Driver, Plan};
pub use parse::{Host, TlsOptions};

/// Where mapped runs record their daemons.
pub const HOSTS_DIR: &str = "/run/vswitch/docker-hosts";

static HOSTS: OnceLock<Vec<Host>> = OnceLock::new();

/// Sets this process's mapping from `--docker-host` (`cli`), the side
/// file (`file`) and the TLS options; once. The error is the message for
/// exit 2.
pub fn configure(cli: Option<&str>, file: Option<&Path>, tls: &TlsOptions) -> Result<(), String> {
    let v = resolve(cli, file, tls, &parse::cert_dir())?;
    HOSTS
        .set(v)
        .map_err(|_| "--docker-host given twice".to_string())
}

/// The mapping `configure` would set.
pub fn resolve(
    cli: Option<&str>,
    file: Option<&Path>,
    tls: &TlsOptions,
    dir: &Path,
) -> Result<Vec<Host>, String> {
    if cli.is_none() && file.is_none() {
        if let Some(flag) = explicit_tls_flag(tls) {
            return Err(format!(
                "{flag} applies to tcp:// daemons of --docker-host or --docker-hosts; neither is given"
            ));
        }
        return Ok(Vec::new());
    }
    let files = match tls.files(dir) {
        Ok(f) => f,
        // Unreadable TLS files (say DOCKER_TLS_VERIFY set without
        // certificates) matter only when a tcp:// host takes them.
        Err(e) if tls.verify => {
            let marker = TlsFiles {
                ca: PathBuf::from("\0"),
                client: None,
            };
            let v = parse_all(cli, file, &Some(marker.clone()), dir)?;
            if v.iter().any(|h| h.tls.as_ref() == Some(&marker)) {
                return Err(e);
            }
            None
        }
        Err(e) => return Err(e),
    };
    parse_all(cli, file, &files, dir)
}

/// Both sources, `tls` given to the tcp:// hosts without their own.
fn parse_all(
    cli: Option<&str>,
    file: Option<&Path>,
    tls: &Option<TlsFiles>,
    dir: &Path,
) -> Result<Vec<Host>, String> {
    let mut v = match cli {
        Some(spec) => parse::parse_cli(spec, tls)?,
        None => Vec::new(),
    };
    if let Some(f) = file {
        for h in parse::load_file(f, tls, dir).map_err(|e| e.to_string())? {
            if let Some(c) = v.iter().find(|c| c.machine == h.machine) {
                return Err(format!(
                    "machine {} is mapped by {} ({}) and by {} ({}): map it in one place",
                    h.machine, c.origin, c.url, h.origin, h.url
                ));
            }
            v.push(h);
        }
    }
    Ok(v)
}

fn explicit_tls_flag(tls: &TlsOptions) -> Option<&'static str> {
    [
        ("--tlscacert", tls.cacert.is_some()),
        ("--tlscert", tls.cert.is_some()),
        ("--tlskey", tls.key.is_some()),
    ]
    .into_iter()
    .find_map(|(f, given)| given.then_some(f))
}

/// The mapping, when `--docker-host` or `--docker-hosts` was given.
pub fn mapping() -> Option<&'static [Host]> {
    HOSTS.get().map(Vec::as_slice).filter(|v| !v.is_empty())
}

/// The host machine `name` is mapped to.
pub fn host_of(name: &str) -> Option<&'static Host> {
    mapping()?.iter().find(|h| h.machine == name)
}

/// The endpoint of a URL with its TLS files.
pub fn endpoint(url: &str, tls: Option<&TlsFiles>) -> Result<Endpoint, BoxError> {
    if let Some(p) = url.strip_prefix("unix://") {
        return Ok(Endpoint::Unix(PathBuf::from(p)));
    }
    let addr = url
        .strip_prefix("tcp://")
        .ok_or_else(|| format!("`{url}` is neither unix:// nor tcp://"))?;
    let tls = tls.map(TlsFiles::config).transpose()?;
    Ok(Endpoint::Tcp {
        addr: addr.trim_end_matches('/').to_string(),
        tls,
    })
}

impl Host {
    /// A client for this host's daemon.
    pub fn client(&self) -> Result<Client, BoxError> {
        Ok(Client::at(endpoint(&self.url, self.tls.as_ref())?))
    }
}

/// The PID of the daemon behind an endpoint: a unix socket's peer
/// credentials, or the local process holding the other end of a TCP
/// connection (a daemon on another machine has none: refused).
pub fn daemon_pid(endpoint: &Endpoint) -> Result<u32, BoxError> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let addr = match endpoint {
        Endpoint::Unix(socket) => {
            let s =
                UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
            let cred = getsockopt(&s, PeerCredentials)?;
            return is_dockerd(cred.pid() as u32, &format!("unix://{}", socket.display()));
        }
        Endpoint::Tcp { addr, .. } => addr,
    };
    let s = std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())?
        .find_map(|a| TcpStream::connect_timeout(&a, Duration::from_secs(10)).ok())
        .ok_or_else(|| format!("tcp://{addr}: cannot connect"))?;
    let (local, peer) = (s.local_addr()?, s.peer_addr()?);
    // The daemon accepts the connection soon after the handshake.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(pid) = tcp_peer_pid(local, peer) {
            return is_dockerd(pid, &format!("tcp://{addr}"));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "tcp://{addr} is not a daemon on this machine (no local process holds the other end of a connection to it): vswitch enters the containers' namespaces, so a mapped daemon must run here"
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `pid` when it is a dockerd: a proxy or tunnel (socat, `ssh -L`) to a
/// daemon elsewhere is not the daemon, and its namespace not the host's.
fn is_dockerd(pid: u32, at: &str) -> Result<u32, BoxError> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "dockerd" {
        return Err(format!(
            "the process at the other end of {at} is `{}` (PID {pid}), not dockerd: a proxy or tunnel to a daemon elsewhere cannot be mapped (vswitch enters the containers' namespaces, so the daemon must run on this machine)",
            comm.trim()
        )
        .into());
    }
    Ok(pid)
}

/// The process holding the socket whose local address is `peer` and
/// remote address `local` (the other end of our connection).
fn tcp_peer_pid(local: SocketAddr, peer: SocketAddr) -> Option<u32> {
    let table = if peer.is_ipv4() {
        "/proc/net/tcp"
    } else {
        "/proc/net/tcp6"
    };
    let text = std::fs::read_to_string(table).ok()?;
    let inode = text.lines().skip(1).find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        let (ours, theirs) = (parse_proc_addr(w.get(1)?)?, parse_proc_addr(w.get(2)?)?);
        (ours == peer && theirs == local).then(|| w.get(9).map(|s| s.to_string()))?
    })?;
    let target = format!("socket:[{inode}]");
    for p in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

/// `0100007F:0050` (IPv4) or 32 hex digits and a port (IPv6), as
/// `/proc/net/tcp*` prints them: each 32-bit word in host byte order.
fn parse_proc_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| {
        u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16)
            .ok()
            .map(u32::to_ne_bytes)
    };
    let ip: IpAddr = match ip.len() {
        8 => std::net::Ipv4Addr::from(word(0)?).into(),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            std::net::Ipv6Addr::from(b).into()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Why the mapping cannot carry `plan`, one reason per item.
pub fn unsupported(plan: &Plan) -> Vec<String> {
    let mut why = Vec::new();
    let Some(map) = mapping() else {
        return why;
    };
    for h in map {
        if !plan.machines.iter().any(|x| x.name == h.machine) {
            why.push(format!(
                "{} names machine `{}`, which the scenario does not have",
                h.origin, h.machine
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
        let Some(h) = map.iter().find(|h| h.machine == m.name) else {
            why.push(format!(
                "machine[{i}] `{}` has no --docker-host (every machine must be mapped)",
                m.name
            ));
            continue;
        };
        if let Err(e) = host_fits(plan, i, h) {
            why.push(format!("machine[{i}] `{}` at {}: {e}", m.name, h.url));
        }
    }
    why.into_iter()
        .map(|w| format!("backend docker: {w}"))
        .collect()
}

/// The daemon answers, its host carries the machine's planned lan address,
/// and no scenario subnet is in use there.
fn host_fits(plan: &Plan, i: usize, h: &Host) -> Result<(), BoxError> {
    let client = h.client()?;
    client.version()?;
    let pid = daemon_pid(client.endpoint())?;
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

/// Records the daemons a mapped run uses (for cleanup after SIGKILL).
pub fn record(run: &RunId, hosts: &[&Host]) -> std::io::Result<()> {
    std::fs::create_dir_all(HOSTS_DIR)?;
    let text: String = hosts
        .iter()
        .map(|h| {
            let tls = h.tls.as_ref().map(|t| {
                json!({
                    "ca": t.ca,
                    "client": t.client.as_ref().map(|(c, k)| json!([c, k])),
                })
            });
            format!("{}\n", json!({ "url": h.url, "tls": tls }))
        })
        .collect();
    std::fs::write(Path::new(HOSTS_DIR).join(run.as_str()), text)
}

/// The daemons run `run` recorded (a line that is a bare path: a socket,
/// as older records had them).
pub fn recorded(run: &RunId) -> Vec<(String, Option<TlsFiles>)> {
    let text = std::fs::read_to_string(Path::new(HOSTS_DIR).join(run.as_str()));
    text.unwrap_or_default()
        .lines()
        .filter_map(|l| {
            if l.starts_with('/') {
                return Some((format!("unix://{l}"), None));
            }
            let v: Value = serde_json::from_str(l).ok()?;
            let path = |v: &Value| v.as_str().map(PathBuf::from);
            let tls = v["tls"].as_object().and_then(|t| {
                let client = t
                    .get("client")
                    .and_then(|c| Some((path(&c[0])?, path(&c[1])?)));
                Some(TlsFiles {
                    ca: path(t.get("ca")?)?,
                    client,
                })
            });
            Some((v["url"].as_str()?.to_string(), tls))
        })
        .collect()
}

/// Clients of the daemons run `run` recorded that can still be reached.
fn recorded_clients(run: &RunId) -> Vec<Client> {
    recorded(run)
        .into_iter()
        .filter_map(|(url, tls)| {
            let e = endpoint(&url, tls.as_ref()).ok()?;
            if let Endpoint::Unix(s) = &e
                && !s.exists()
            {
                return None;
            }
            Some(Client::at(e))
        })
        .collect()
}

/// Removes run `run`'s labelled objects from the daemons it recorded, and the record.
pub fn remove(run: &RunId) -> Vec<String> {
    let mut removed = Vec::new();
    for c in recorded_clients(run) {
        removed.extend(super::cleanup::remove_objects(&c, run));
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
    for c in recorded_clients(run) {
        v.extend(
            c.containers_labeled(super::LABEL_RUN)
                .unwrap_or_default()
                .into_iter()
                .chain(c.networks_labeled(super::LABEL_RUN).unwrap_or_default())
                .filter(|o| o.label == run.as_str())
                .map(|o| format!("docker object {} at {}", o.name, c.endpoint())),
        );
    }
    let rec = Path::new(HOSTS_DIR).join(run.as_str());
    if rec.exists() {
        v.push(rec.display().to_string());
    }
    v
}

#[cfg(test)]
mod tests;
