//! The IO loop around the engine: one thread polls every TAP of a world,
//! hands each frame to `Engine::handle_frame` and carries out the actions.
//!
//! ```text
//! TAP fd (vnet hdr) ─read─▶ Packet ─▶ Engine::handle_frame(now, port, pkt)
//!                                          │ Forward / Emit / Drop
//! TAP fd ◀─write─ Packet ◀─────────────────┘
//! ```
//! One buffer is reused for every frame; forwarded frames are written back
//! with their virtio-net header untouched.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::backend::pcap::PcapWriter;
use crate::engine::{Action, Engine, Packet, PortId};
use crate::sys::tap::Tap;

/// Frames read from one port before the loop moves to the next ready port.
const BATCH: usize = 64;
/// How often learned MACs are aged out.
const EXPIRE_EVERY: Duration = Duration::from_millis(500);
const STOP_TOKEN: u64 = u64::MAX;

/// One engine port's IO side.
#[derive(Debug)]
pub struct PortIo {
    /// The TAP device.
    pub tap: Tap,
    /// Capture of both directions, when `--pcap` asked for it.
    pub pcap: Option<PcapWriter>,
}

/// Counters of the IO side (the engine keeps its own).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct IoStats {
    /// Frames read per port.
    pub read: Vec<u64>,
    /// Writes that failed per port (queue full, device gone).
    pub write_errors: Vec<u64>,
    /// Read errors other than EAGAIN per port.
    pub read_errors: Vec<u64>,
}

/// A running IO loop.
#[derive(Debug)]
pub struct EngineLoop {
    stop: Arc<EventFd>,
    stopping: Arc<AtomicBool>,
    handle: Option<JoinHandle<io::Result<(Engine, IoStats)>>>,
}

impl EngineLoop {
    /// Starts the loop on its own thread. When it stops, the TAPs are
    /// released to their namespaces ([`Tap::release_to_namespace`]), so
    /// those must be namespaces the caller deletes afterwards, as
    /// [`crate::backend::World`] does with all of its own.
    pub fn spawn(engine: Engine, ports: Vec<PortIo>) -> io::Result<EngineLoop> {
        let stop = Arc::new(
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .map_err(io::Error::from)?,
        );
        let stopping = Arc::new(AtomicBool::new(false));
        let (s, st) = (stop.clone(), stopping.clone());
        let handle = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || run(engine, ports, &s, &st))?;
        Ok(EngineLoop {
            stop,
            stopping,
            handle: Some(handle),
        })
    }

    /// Stops the loop and returns the engine (for its metrics) and IO counters.
    pub fn stop(mut self) -> io::Result<(Engine, IoStats)> {
        self.signal();
        let h = self.handle.take().expect("joined once");
        h.join()
            .unwrap_or_else(|_| Err(io::Error::other("engine thread panicked")))
    }

    fn signal(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.stop.write(1);
    }
}

impl Drop for EngineLoop {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.signal();
            let _ = h.join();
        }
    }
}

fn run(
    mut engine: Engine,
    mut ports: Vec<PortIo>,
    stop: &EventFd,
    stopping: &AtomicBool,
) -> io::Result<(Engine, IoStats)> {
    let served = serve(&mut engine, &mut ports, stop, stopping);
    let mut flushed = Ok(());
    for p in &mut ports {
        if let Some(w) = p.pcap.as_mut() {
            flushed = flushed.and(w.flush());
        }
    }
    // Every TAP lives in a namespace of the world, deleted right after the
    // engine stops: leave the devices to the kernel's batched namespace
    // clean-up rather than unregistering them one close at a time (see
    // `Tap::release_to_namespace`).
    for p in ports {
        let _ = p.tap.release_to_namespace();
    }
    let stats = served?;
    flushed?;
    Ok((engine, stats))
}

fn serve(
    engine: &mut Engine,
    ports: &mut [PortIo],
    stop: &EventFd,
    stopping: &AtomicBool,
) -> io::Result<IoStats> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    for (i, p) in ports.iter().enumerate() {
        epoll.add(
            p.tap.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, i as u64),
        )?;
    }
    epoll.add(
        stop.as_fd(),
        EpollEvent::new(EpollFlags::EPOLLIN, STOP_TOKEN),
    )?;

    let mut stats = IoStats {
        read: vec![0; ports.len()],
        write_errors: vec![0; ports.len()],
        read_errors: vec![0; ports.len()],
    };
    let mut events = vec![EpollEvent::empty(); ports.len() + 1];
    let mut pkt = Packet::new();
    let mut actions: Vec<Action> = Vec::with_capacity(ports.len() + 4);
    let mut next_expire = Instant::now() + EXPIRE_EVERY;

    'outer: while !stopping.load(Ordering::Relaxed) {
        let n = match epoll.wait(&mut events, EpollTimeout::from(500u16)) {
            Ok(n) => n,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let now = Instant::now();
        for ev in &events[..n] {
            let token = ev.data();
            if token == STOP_TOKEN {
                break 'outer;
            }
            let ingress = token as usize;
            for _ in 0..BATCH {
                match ports[ingress].tap.read_packet(&mut pkt) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        stats.read_errors[ingress] += 1;
                        break;
                    }
                }
                stats.read[ingress] += 1;
                if let Some(w) = ports[ingress].pcap.as_mut() {
                    let _ = w.write(pkt.frame());
                }
                engine.handle_frame(now, PortId(ingress as u16), &mut pkt, &mut actions);
                for action in actions.drain(..) {
                    let (egress, out) = match &action {
                        Action::Forward(p) => (p.0 as usize, &pkt),
                        Action::Emit(p, built) => (p.0 as usize, built),
                        Action::Drop(_) => continue,
                        Action::Capture(p, built) => {
                            if let Some(w) =
                                ports.get_mut(p.0 as usize).and_then(|x| x.pcap.as_mut())
                            {
                                let _ = w.write(built.frame());
                            }
                            continue;
                        }
                    };
                    let Some(port) = ports.get_mut(egress) else {
                        continue;
                    };
                    if port.tap.write_packet(out).is_err() {
                        stats.write_errors[egress] += 1;
                    }
                    if let Some(w) = port.pcap.as_mut() {
                        let _ = w.write(out.frame());
                    }
                }
            }
        }
        if now >= next_expire {
            engine.expire(now);
            next_expire = now + EXPIRE_EVERY;
        }
    }
    Ok(stats)
}
