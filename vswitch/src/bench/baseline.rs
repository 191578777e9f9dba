//! Peers measured in the same sitting as the engine: two namespaces joined
//! by a bare veth pair (the limit of this machine), by a Linux bridge, or by
//! an Open vSwitch userspace (netdev) bridge with TAP ports and TSO.
//!
//! Each pair is a run of its own: a run id, a run record written before
//! the first namespace, namespaces named `<run>-c-a`, `<run>-c-b` (and
//! `<run>-m-br` / `<run>-m-ovs`), OVS's daemons' pid files under
//! [`world::daemon_dir`], so a signal or `vswitch cleanup` after SIGKILL
//! removes all of it as it does a world.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::netns::NetNs;
use crate::sys::netlink::Netlink;
use crate::world::{self, LiveGuard, NodeKind, RunId, RunRecord};

/// A peer data path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    /// A veth pair between the two namespaces.
    Veth,
    /// A Linux bridge in a third namespace, a veth to each.
    Bridge,
    /// Open vSwitch's userspace datapath (`datapath_type=netdev`) with a TAP
    /// port into each namespace and `userspace-tso-enable`.
    Ovs,
}

impl fmt::Display for Baseline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Baseline::Veth => "veth",
            Baseline::Bridge => "bridge",
            Baseline::Ovs => "ovs",
        })
    }
}

/// The sender's and receiver's addresses on every baseline.
pub const SENDER: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 1);
/// See [`SENDER`].
pub const RECEIVER: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 2);

/// Why a baseline could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// A program it needs is not installed.
    #[error("{baseline}: {tool} is not installed (apt-get install {package})")]
    Missing {
        /// Which baseline.
        baseline: Baseline,
        /// The program.
        tool: &'static str,
        /// Its Debian package.
        package: &'static str,
    },
    /// A build step failed (everything built so far was removed).
    #[error("{baseline}: {step}: {why}")]
    Step {
        /// Which baseline.
        baseline: Baseline,
        /// What was being done.
        step: String,
        /// Cause.
        why: String,
    },
}

/// A built pair; dropping it removes everything it made.
#[derive(Debug)]
pub struct Pair {
    /// The sending namespace.
    pub sender: NetNs,
    /// The receiving namespace (the receiver's address is [`RECEIVER`]).
    pub receiver: NetNs,
    run: RunId,
    _live: LiveGuard,
}

impl Pair {
    /// Where the receiver listens.
    pub fn dst(&self) -> IpAddr {
        IpAddr::V4(RECEIVER)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        world::remove_run(&self.run);
    }
}

/// The programs OVS needs.
const OVS_TOOLS: [&str; 4] = ["ovs-vswitchd", "ovsdb-server", "ovsdb-tool", "ovs-vsctl"];

/// Whether `b` can be built here (its programs are installed).
pub fn available(b: Baseline) -> Result<(), BaselineError> {
    if b == Baseline::Ovs {
        for tool in OVS_TOOLS {
            if crate::tools::find(tool).is_none() {
                return Err(BaselineError::Missing {
                    baseline: b,
                    tool,
                    package: "openvswitch-switch",
                });
            }
        }
    }
    Ok(())
}

/// Builds `b`. On failure nothing is left behind.
pub fn build(b: Baseline) -> Result<Pair, BaselineError> {
    available(b)?;
    let run = RunId::new();
    let step = |step: &str| {
        let step = step.to_string();
        move |e: &dyn fmt::Display| BaselineError::Step {
            baseline: b,
            step,
            why: e.to_string(),
        }
    };
    let record = RunRecord {
        id: run.clone(),
        pid: std::process::id(),
        scenario: format!("bench baseline {b}"),
        name: format!("baseline-{b}"),
        backend: b.to_string(),
        namespaces: vec![
            ("a".into(), run.netns_name(NodeKind::Container, "a")),
            ("b".into(), run.netns_name(NodeKind::Container, "b")),
        ],
        kept: false,
    };
    record
        .save()
        .map_err(|e| step("writing the run record")(&e))?;
    let live = world::register_live(&run);
    let built = wire(b, &run);
    match built {
        Ok((sender, receiver)) => Ok(Pair {
            sender,
            receiver,
            run,
            _live: live,
        }),
        Err(e) => {
            world::remove_run(&run);
            Err(e)
        }
    }
}

fn wire(b: Baseline, run: &RunId) -> Result<(NetNs, NetNs), BaselineError> {
    let err = |step: &str, e: &dyn fmt::Display| BaselineError::Step {
        baseline: b,
        step: step.to_string(),
        why: e.to_string(),
    };
    let create = |name: &str, kind: NodeKind| {
        NetNs::create(&run.netns_name(kind, name)).map_err(|e| err("creating a namespace", &e))
    };
    let a = create("a", NodeKind::Container)?;
    let bns = create("b", NodeKind::Container)?;
    match b {
        Baseline::Veth => {
            let peer = bns.try_clone().map_err(|e| err("opening b", &e))?;
            in_ns(&a, "veth a ↔ b", b, move |nl| {
                nl.link_add_veth_peer_in("eth0", "eth0", peer.as_fd())
            })?;
        }
        Baseline::Bridge => {
            let br = create("br", NodeKind::Machine)?;
            in_ns(&br, "bridge br0", b, |nl| {
                nl.link_add_bridge("br0")?;
                nl.link_set_up("br0")
            })?;
            for (ns, port) in [(&a, "pa"), (&bns, "pb")] {
                let target = ns.try_clone().map_err(|e| err("opening a namespace", &e))?;
                in_ns(&br, "bridge port", b, move |nl| {
                    nl.link_add_veth_peer_in(port, "eth0", target.as_fd())?;
                    nl.link_set_master(port, "br0")?;
                    nl.link_set_up(port)
                })?;
            }
        }
        Baseline::Ovs => ovs(run, &a, &bns)?,
    }
    for (ns, ip) in [(&a, SENDER), (&bns, RECEIVER)] {
        let dev = if b == Baseline::Ovs {
            ovs_port(ns)
        } else {
            "eth0"
        };
        in_ns(ns, "addressing", b, move |nl| {
            nl.addr_add(dev, IpAddr::V4(ip), 24)?;
            nl.link_set_up(dev)?;
            nl.link_set_up("lo")
        })?;
    }
    Ok((a, bns))
}

fn in_ns<F>(ns: &NetNs, step: &str, b: Baseline, f: F) -> Result<(), BaselineError>
where
    F: FnOnce(&mut Netlink) -> Result<(), crate::sys::netlink::NetlinkError> + Send + 'static,
{
    let r = ns.run(move || {
        let mut nl = Netlink::new()?;
        f(&mut nl)
    });
    let why = match r {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    Err(BaselineError::Step {
        baseline: b,
        step: step.to_string(),
        why,
    })
}

/// The TAP port OVS made for namespace `ns` (`tapa` / `tapb`).
fn ovs_port(ns: &NetNs) -> &'static str {
    if ns.name().ends_with("-a") {
        "tapa"
    } else {
        "tapb"
    }
}

/// Runs `prog args…` inside `ns` (the child is born there) and waits.
fn run_in(ns: &NetNs, prog: &str, args: Vec<String>) -> Result<(), String> {
    let prog = prog.to_string();
    let shown = format!("{prog} {}", args.join(" "));
    let out = ns
        .run(move || Command::new(&prog).args(&args).output())
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{shown}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// An OVS of its own: database and switch daemons with private files in
/// the run's daemon directory, running in `<run>-m-ovs`, one netdev bridge
/// with a TAP port moved into each namespace.
fn ovs(run: &RunId, a: &NetNs, b: &NetNs) -> Result<(), BaselineError> {
    let err = |step: &str, why: String| BaselineError::Step {
        baseline: Baseline::Ovs,
        step: step.to_string(),
        why,
    };
    let dir = world::daemon_dir(run);
    std::fs::create_dir_all(&dir).map_err(|e| err("daemon directory", e.to_string()))?;
    let ns = NetNs::create(&run.netns_name(NodeKind::Machine, "ovs"))
        .map_err(|e| err("creating a namespace", e.to_string()))?;
    let f = |name: &str| -> String { dir.join(name).display().to_string() };
    let db = f("conf.db");
    let sock = format!("unix:{}", f("db.sock"));
    let schema = ovs_schema().ok_or_else(|| err("schema", "vswitch.ovsschema not found".into()))?;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    run_in(&ns, "ovsdb-tool", s(&["create", &db, &schema])).map_err(|e| err("ovsdb-tool", e))?;
    run_in(
        &ns,
        "ovsdb-server",
        vec![
            format!("--remote=p{sock}"),
            format!("--pidfile={}", f("ovsdb-server.pid")),
            format!("--unixctl={}", f("ovsdb-server.ctl")),
            format!("--log-file={}", f("ovsdb-server.log")),
            "--detach".into(),
            "--no-chdir".into(),
            db.clone(),
        ],
    )
    .map_err(|e| err("ovsdb-server", e))?;
    let vsctl = |args: &[&str]| {
        let mut v = vec![format!("--db={sock}"), "--timeout=10".into()];
        v.extend(args.iter().map(|x| x.to_string()));
        run_in(&ns, "ovs-vsctl", v).map_err(|e| err("ovs-vsctl", e))
    };
    vsctl(&["--no-wait", "init"])?;
    vsctl(&[
        "--no-wait",
        "set",
        "Open_vSwitch",
        ".",
        "other_config:userspace-tso-enable=true",
    ])?;
    run_in(
        &ns,
        "ovs-vswitchd",
        vec![
            sock.clone(),
            format!("--pidfile={}", f("ovs-vswitchd.pid")),
            format!("--unixctl={}", f("ovs-vswitchd.ctl")),
            format!("--log-file={}", f("ovs-vswitchd.log")),
            "--detach".into(),
            "--no-chdir".into(),
        ],
    )
    .map_err(|e| err("ovs-vswitchd", e))?;
    vsctl(&[
        "add-br",
        "br0",
        "--",
        "set",
        "bridge",
        "br0",
        "datapath_type=netdev",
    ])?;
    for (target, port) in [(a, "tapa"), (b, "tapb")] {
        vsctl(&[
            "add-port",
            "br0",
            port,
            "--",
            "set",
            "Interface",
            port,
            "type=tap",
        ])?;
        let t = target
            .try_clone()
            .map_err(|e| err("opening a namespace", e.to_string()))?;
        in_ns(&ns, "moving a TAP port", Baseline::Ovs, move |nl| {
            nl.link_set_netns(port, t.as_fd())
        })?;
    }
    Ok(())
}

fn ovs_schema() -> Option<String> {
    ["/usr/share/openvswitch/vswitch.ovsschema"]
        .iter()
        .map(PathBuf::from)
        .find(|p| Path::new(p).exists())
        .map(|p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_cli_words() {
        assert_eq!(Baseline::Veth.to_string(), "veth");
        assert_eq!(Baseline::Bridge.to_string(), "bridge");
        assert_eq!(Baseline::Ovs.to_string(), "ovs");
    }
}
