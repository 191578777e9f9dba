//! `--pcap DIR` where the kernel carries the frames (the kernel and docker
//! backends): one AF_PACKET socket per namespace of the world sees every
//! interface there, both directions, and each interface gets its own
//! classic pcap file, named as the userspace backend names its ports —
//! `client-eth0.pcap` (a container's interface), `lan-host-eth0.pcap` (a
//! machine's uplink or an external's interface on lan), `host-br-appnet.pcap`
//! (a bridge device in the machine's namespace; its bridge ports and vxlan
//! devices likewise) — so a capture of Linux's path and one of the engine's
//! can be put side by side.
//!
//! Frames are written as the socket reads them: GSO super-frames whole,
//! partial checksums as they are, as with the engine's captures.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::common::{BuildError, Namespaces};
use super::pcap::{PcapWriter, file_name};
use crate::scenario::plan::{Node, Plan};
use crate::sys::packet::{PacketSocket, interfaces};

/// How often a capture thread looks at its stop flag.
const TICK: Duration = Duration::from_millis(100);
/// Kernel buffer per capture socket.
const RCVBUF: usize = 8 << 20;
/// Largest frame read (a 64 KiB GSO frame plus headers).
const FRAME_MAX: usize = 65_536 + 1024;

/// Running captures; [`Captures::stop`] (or drop) flushes every file.
#[derive(Debug)]
pub struct Captures {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// The file stem of interface `ifname` of a node: lan interfaces of
/// machines and externals are `lan-NODE-IF`, everything else `NODE-IF`.
pub fn stem(node: Node, name: &str, ifname: &str) -> String {
    let on_lan = matches!(node, Node::Machine(_) | Node::External(_)) && ifname == "eth0";
    if on_lan {
        format!("lan-{name}-{ifname}")
    } else {
        format!("{name}-{ifname}")
    }
}

impl Captures {
    /// Starts one capture thread per distinct namespace of `world`'s nodes;
    /// an interface named in `renames` is filed under the name it maps to
    /// (Docker's `br-<id>` as `br-<network>`).
    pub(crate) fn start(
        world: &Namespaces,
        plan: &Plan,
        dir: &Path,
        renames: &HashMap<String, String>,
    ) -> Result<Captures, BuildError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut seen = Vec::new();
        let nodes = (0..plan.machines.len())
            .map(Node::Machine)
            .chain((0..plan.externals.len()).map(Node::External))
            .chain((0..plan.containers.len()).map(Node::Container));
        for node in nodes {
            let ns = world.ns(node);
            if seen.contains(&ns.name().to_string()) {
                continue; // a host-network container: its machine's capture
            }
            seen.push(ns.name().to_string());
            let name = plan.node_name(node).to_string();
            let (dir, stop, renames) = (dir.to_path_buf(), stop.clone(), renames.clone());
            let step = format!("--pcap: capture in {}", ns.name());
            // Open the socket first, so a failure stops the build.
            let (tx, rx) = std::sync::mpsc::channel();
            let h = ns
                .spawn(move || match PacketSocket::open(TICK, RCVBUF) {
                    Ok(sock) => {
                        let _ = tx.send(Ok(()));
                        capture_loop(&sock, node, &name, &dir, &renames, &stop);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                })
                .map_err(BuildError::at(step.clone()))?;
            match rx.recv() {
                Ok(Ok(())) => threads.push(h),
                Ok(Err(e)) => return Err(BuildError::at(step)(e)),
                Err(e) => return Err(BuildError::at(step)(e)),
            }
        }
        Ok(Captures { stop, threads })
    }

    /// Stops every capture and flushes its files.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Captures {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Reads frames until `stop`, writing each to its interface's file (one
/// for every interface there at the start, empty or not, and for those
/// that appear later when they first carry a frame; `lo` is skipped).
fn capture_loop(
    sock: &PacketSocket,
    node: Node,
    name: &str,
    dir: &Path,
    renames: &HashMap<String, String>,
    stop: &AtomicBool,
) {
    let mut buf = vec![0u8; FRAME_MAX];
    let mut names: HashMap<u32, String> = interfaces().unwrap_or_default().into_iter().collect();
    let create = |ifname: &str| {
        if ifname == "lo" {
            return None;
        }
        let ifname = renames.get(ifname).map_or(ifname, String::as_str);
        let path: PathBuf = dir.join(file_name(&stem(node, name, ifname)));
        PcapWriter::create(&path)
            .map_err(|e| tracing::warn!("cannot create {}: {e}", path.display()))
            .ok()
    };
    let mut files: HashMap<u32, Option<PcapWriter>> =
        names.iter().map(|(i, n)| (*i, create(n))).collect();
    while !stop.load(Ordering::SeqCst) {
        let c = match sock.recv(&mut buf) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(node = name, "capture stopped: {e}");
                break;
            }
        };
        let w = files.entry(c.ifindex).or_insert_with(|| {
            names.extend(interfaces().unwrap_or_default());
            create(names.get(&c.ifindex)?)
        });
        if let Some(w) = w {
            let _ = w.write(&buf[..c.len.min(buf.len())]);
        }
    }
    for w in files.values_mut().flatten() {
        let _ = w.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_match_the_engines_ports() {
        assert_eq!(stem(Node::Machine(0), "host", "eth0"), "lan-host-eth0");
        assert_eq!(stem(Node::External(1), "peer", "eth0"), "lan-peer-eth0");
        assert_eq!(
            stem(Node::Machine(0), "host", "br-appnet"),
            "host-br-appnet"
        );
        assert_eq!(stem(Node::Container(2), "client", "eth0"), "client-eth0");
    }
}
