//! The IO loop around the engine: one thread polls every TAP of a world,
//! hands each frame to `Engine::handle_frame` and carries out the actions.
//!
//! ```text
//! TAP fd (vnet hdr) ─read─▶ Packet ─▶ Engine::handle_frame(now, port, pkt)
//!                                          │ Forward / Emit / Drop
//! TAP fd ◀─write─ Packet ◀─────────────────┘
//! ```
//! Up to [`BATCH`] frames are read from a ready port into a pool of reused
//! buffers, each handed to the engine as it comes; what they produce is
//! written once the batch is read, with one `io_uring_enter`
//! ([`TapWriter`]), and the thread then yields to whatever the batch woke.
//! Forwarded frames are written back with their virtio-net header
//! untouched.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::backend::pcap::PcapWriter;
use crate::engine::fault::Due;
use crate::engine::{Action, Engine, Packet, PortId};
use crate::scenario::plan::LinkFault;
use crate::sys::tap::Tap;
use crate::sys::uring::TapWriter;

/// Frames read from one port before the loop moves to the next ready port.
const BATCH: usize = 64;
/// A batch of at least this many frames yields the CPU once written.
const YIELD_AFTER: usize = 16;
/// How often learned MACs are aged out.
const EXPIRE_EVERY: Duration = Duration::from_millis(500);
const STOP_TOKEN: u64 = u64::MAX;
const CONTROL_TOKEN: u64 = u64::MAX - 1;
/// Longest the loop waits in epoll when nothing is due.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// A change asked of the running engine, acknowledged once done.
#[derive(Debug)]
enum Control {
    /// Set (`Some`) or clear (`None`) the fault of each port.
    Faults(Vec<(PortId, Option<LinkFault>)>, mpsc::Sender<()>),
}

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
    control: Mutex<mpsc::Sender<Control>>,
    wake: Arc<EventFd>,
    /// Whether the TAPs go with their namespaces (true, the world's end) or
    /// are closed and unregistered now (a step rebuilding the data path in
    /// the same namespaces).
    release: Arc<AtomicBool>,
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
        let wake = Arc::new(
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .map_err(io::Error::from)?,
        );
        let (tx, rx) = mpsc::channel();
        let release = Arc::new(AtomicBool::new(true));
        let (s, st, w, r) = (
            stop.clone(),
            stopping.clone(),
            wake.clone(),
            release.clone(),
        );
        // The engine thread logs inside the span of the world that built it.
        let span = tracing::info_span!("engine", ports = ports.len());
        let handle = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let _span = span.entered();
                run(engine, ports, &s, &st, &w, &rx, &r)
            })?;
        Ok(EngineLoop {
            stop,
            stopping,
            control: Mutex::new(tx),
            wake,
            release,
            handle: Some(handle),
        })
    }

    /// Sets or clears port faults on the running engine; returns once the
    /// engine has them (frames after this meet the new faults).
    pub fn set_faults(&self, faults: Vec<(PortId, Option<LinkFault>)>) -> io::Result<()> {
        let (ack, done) = mpsc::channel();
        self.control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Control::Faults(faults, ack))
            .map_err(|_| io::Error::other("engine thread has stopped"))?;
        self.wake.write(1).map_err(io::Error::from)?;
        done.recv_timeout(Duration::from_secs(10))
            .map_err(|_| io::Error::other("engine did not take the faults"))
    }

    /// Stops the loop, closing the TAPs now (their devices go at once), for
    /// a data path rebuilt in the same namespaces; see [`EngineLoop::stop`].
    pub fn stop_closing(self) -> io::Result<(Engine, IoStats)> {
        self.release.store(false, Ordering::SeqCst);
        self.stop()
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

/// The packet comment of a captured ingress frame the engine dropped
/// (its one `Drop` action): `vswitch drop: REASON`.
fn drop_comment(actions: &[Action]) -> Option<String> {
    match actions {
        [Action::Drop(r)] => Some(format!("vswitch drop: {}", r.as_str())),
        _ => None,
    }
}

fn capture(ports: &mut [PortIo], port: usize, pkt: &Packet) {
    if let Some(w) = ports.get_mut(port).and_then(|x| x.pcap.as_mut()) {
        let _ = w.write(pkt.frame());
    }
}

/// Where a frame of a batch waits to be written.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// The ingress frame read into this slot of the pool, forwarded as is.
    Read(usize),
    /// A frame the engine built or a fault held, at this index of the
    /// batch's own.
    Built(usize),
}

/// The frames one port's batch of reads produced, written together (one
/// `io_uring_enter`, see [`TapWriter`]) once the batch is read.
#[derive(Debug)]
struct Batch {
    /// Buffers the batch reads into, one per frame.
    pool: Vec<Packet>,
    /// Frames the engine built (`Action::Emit`) and frames a fault held.
    built: Vec<Packet>,
    /// Every frame to write, in order: its egress port and where it is.
    out: Vec<(usize, Slot)>,
    writer: TapWriter,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            pool: (0..BATCH).map(|_| Packet::new()).collect(),
            built: Vec::new(),
            out: Vec::with_capacity(BATCH * 2),
            writer: TapWriter::new(BATCH as u32 * 2),
        }
    }

    /// Queues the actions of the frame at `src` (captures are written now).
    fn queue(&mut self, ports: &mut [PortIo], src: Slot, actions: &mut Vec<Action>) {
        for action in actions.drain(..) {
            let (egress, at) = match action {
                Action::Forward(p) => (p.0 as usize, src),
                Action::Emit(p, built) => (p.0 as usize, self.hold(built)),
                Action::Drop(_) => continue,
                Action::Capture(p, built) => {
                    capture(ports, p.0 as usize, &built);
                    continue;
                }
            };
            self.send(ports, egress, at);
        }
    }

    /// Keeps a frame that is not in the pool (built, or held by a fault)
    /// until the batch is written.
    fn hold(&mut self, pkt: Packet) -> Slot {
        self.built.push(pkt);
        Slot::Built(self.built.len() - 1)
    }

    /// Queues the frame at `at` for `egress` (and writes its capture).
    fn send(&mut self, ports: &mut [PortIo], egress: usize, at: Slot) {
        if egress >= ports.len() {
            return;
        }
        capture(ports, egress, self.frame(at));
        self.out.push((egress, at));
    }

    fn frame(&self, at: Slot) -> &Packet {
        slot_frame(&self.pool, &self.built, at)
    }

    /// Writes every queued frame, in order, and empties the batch.
    fn flush(&mut self, ports: &[PortIo], stats: &mut IoStats) {
        if self.out.is_empty() {
            return;
        }
        let (out, pool, built) = (&self.out, &self.pool, &self.built);
        let frame = |i: usize| {
            let (egress, at) = out[i];
            (&ports[egress].tap, slot_frame(pool, built, at))
        };
        self.writer.write_all(out.len(), frame, |i, r| {
            if r.is_err() {
                stats.write_errors[out[i].0] += 1;
            }
        });
        self.out.clear();
        self.built.clear();
    }
}

fn slot_frame<'a>(pool: &'a [Packet], built: &'a [Packet], at: Slot) -> &'a Packet {
    match at {
        Slot::Read(i) => &pool[i],
        Slot::Built(i) => &built[i],
    }
}

/// Sends every frame whose fault delay is over.
fn release_due(
    engine: &mut Engine,
    batch: &mut Batch,
    ports: &mut [PortIo],
    stats: &mut IoStats,
    now: Instant,
    actions: &mut Vec<Action>,
) {
    while let Some(due) = engine.poll_due(now) {
        match due {
            Due::Egress(p, pkt) => {
                let at = batch.hold(pkt);
                batch.send(ports, p.0 as usize, at);
            }
            Due::Ingress(p, mut pkt) => {
                engine.handle_past_fault(now, p, &mut pkt, actions);
                let at = batch.hold(pkt);
                batch.queue(ports, at, actions);
            }
        }
    }
    batch.flush(ports, stats);
}

/// How long epoll may wait: until the next held frame is due, at most
/// [`IDLE_WAIT`] (rounded up to a millisecond, epoll's resolution).
fn wait_for(engine: &Engine) -> EpollTimeout {
    let now = Instant::now();
    let wait = engine.faults().next_due().map_or(IDLE_WAIT, |d| {
        d.saturating_duration_since(now).min(IDLE_WAIT)
    });
    let ms = wait.as_nanos().div_ceil(1_000_000) as u16;
    EpollTimeout::from(ms)
}

fn run(
    mut engine: Engine,
    mut ports: Vec<PortIo>,
    stop: &EventFd,
    stopping: &AtomicBool,
    wake: &EventFd,
    control: &mpsc::Receiver<Control>,
    release: &AtomicBool,
) -> io::Result<(Engine, IoStats)> {
    let served = serve(&mut engine, &mut ports, stop, stopping, wake, control);
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
    if release.load(Ordering::SeqCst) {
        for p in ports {
            let _ = p.tap.release_to_namespace();
        }
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
    wake: &EventFd,
    control: &mpsc::Receiver<Control>,
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
    epoll.add(
        wake.as_fd(),
        EpollEvent::new(EpollFlags::EPOLLIN, CONTROL_TOKEN),
    )?;

    let mut stats = IoStats {
        read: vec![0; ports.len()],
        write_errors: vec![0; ports.len()],
        read_errors: vec![0; ports.len()],
    };
    let mut events = vec![EpollEvent::empty(); ports.len() + 2];
    let mut batch = Batch::new();
    tracing::debug!("TAP writes: {}", batch.writer.io().as_str());
    let mut actions: Vec<Action> = Vec::with_capacity(ports.len() + 4);
    let mut next_expire = Instant::now() + EXPIRE_EVERY;

    'outer: while !stopping.load(Ordering::Relaxed) {
        let n = match epoll.wait(&mut events, wait_for(engine)) {
            Ok(n) => n,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let now = Instant::now();
        if engine.faults().active() {
            release_due(engine, &mut batch, ports, &mut stats, now, &mut actions);
        }
        for ev in &events[..n] {
            let token = ev.data();
            if token == STOP_TOKEN {
                break 'outer;
            }
            if token == CONTROL_TOKEN {
                let _ = wake.read();
                while let Ok(Control::Faults(list, ack)) = control.try_recv() {
                    for (p, f) in list {
                        engine.set_fault(p, f);
                    }
                    let _ = ack.send(());
                }
                continue;
            }
            let ingress = token as usize;
            let mut slot = 0;
            while slot < BATCH {
                let pkt = &mut batch.pool[slot];
                match ports[ingress].tap.read_packet(pkt) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        stats.read_errors[ingress] += 1;
                        break;
                    }
                }
                stats.read[ingress] += 1;
                // A captured port keeps the frame as it came in (the engine
                // rewrites it in place) to write it once the verdict is known.
                let seen = ports[ingress].pcap.is_some().then(|| pkt.frame().to_vec());
                engine.handle_frame(now, PortId(ingress as u16), pkt, &mut actions);
                if let (Some(frame), Some(w)) = (seen, ports[ingress].pcap.as_mut()) {
                    let _ = w.write_commented(&frame, drop_comment(&actions).as_deref());
                }
                batch.queue(ports, Slot::Read(slot), &mut actions);
                slot += 1;
            }
            batch.flush(ports, &mut stats);
            if slot >= YIELD_AFTER {
                // Let the processes this batch woke take it before reading
                // more: otherwise a receiver sharing this core gets too
                // little of it, and frames forwarded past what it can read
                // die at its socket (iperf3 UDP 64 B: 250 → 305 kpps
                // received). Returns at once when nothing else is runnable
                // here.
                let _ = nix::sched::sched_yield();
            }
        }
        if now >= next_expire {
            engine.expire(now);
            next_expire = now + EXPIRE_EVERY;
        }
    }
    Ok(stats)
}
