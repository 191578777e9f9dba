//! The IO loop around the engine: worker threads poll the TAPs of a world,
//! hand each frame to `Engine::handle_frame` and carry out the actions.
//!
//! ```text
//! TAP fd (vnet hdr) ─read─▶ Packet ─▶ Engine::handle_frame(now, port, pkt)
//!                                          │ Forward / Emit / Drop
//! TAP fd ◀─write─ Packet ◀─────────────────┘   (one lock, many workers)
//! ```
//! There are one or more workers (one per two CPUs unless the build or
//! `VSWITCH_ENGINE_THREADS` says, see [`workers`]), each reading its share of
//! the ports (port `i` is worker `i mod n`'s) and writing to any: a
//! direction of a flow enters at one port, so one worker reads, handles
//! and writes it in order, while the ports of other busy containers go
//! through the others (both directions of a TCP transfer, two senders).
//! The engine itself stays one state machine behind a lock, taken once
//! per batch; the reads and writes, where the time goes (copies, and the
//! receiving stack run in the writer's context), are outside it.
//!
//! Up to [`BATCH`] frames are read from a ready port into the worker's
//! pool of reused buffers, handed to the engine, and what they produce is
//! written with one `io_uring_enter` ([`TapWriter`]); the worker then
//! yields to whatever the batch woke. Forwarded frames are written back
//! with their virtio-net header untouched.

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

use super::offload::{FastPath, OffloadStats};

/// Frames read from one port before the loop moves to the next ready port.
const BATCH: usize = 64;
/// A batch of at least this many frames yields the CPU once written.
const YIELD_AFTER: usize = 16;
/// Most worker threads one engine runs.
const MAX_WORKERS: usize = 8;
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
    /// Frames read per worker thread (how many served the ports).
    pub worker_reads: Vec<u64>,
    /// Flows the kernel fast path was given, and frames it carried
    /// ([`super::offload`]; absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offload: Option<OffloadStats>,
}

/// How the loop's owner reaches its workers.
#[derive(Debug)]
struct Signals {
    /// Readable once the loop is to stop (never read, so every worker sees it).
    stop: EventFd,
    stopping: AtomicBool,
    /// Written when a [`Control`] is waiting.
    wake: EventFd,
}

impl Signals {
    fn new() -> io::Result<Signals> {
        let fd = || {
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .map_err(io::Error::from)
        };
        Ok(Signals {
            stop: fd()?,
            stopping: AtomicBool::new(false),
            wake: fd()?,
        })
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.stop.write(1);
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

/// A running IO loop.
#[derive(Debug)]
pub struct EngineLoop {
    signals: Arc<Signals>,
    control: Mutex<mpsc::Sender<Control>>,
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
    /// `workers` threads serve the ports (at least one, at most
    /// [`MAX_WORKERS`] and one per port).
    /// With `fast`, the engine's offers go to that kernel fast path.
    pub fn spawn(
        mut engine: Engine,
        ports: Vec<PortIo>,
        workers: usize,
        fast: Option<FastPath>,
    ) -> io::Result<EngineLoop> {
        engine.set_offload(fast.is_some());
        let signals = Arc::new(Signals::new()?);
        let (tx, rx) = mpsc::channel();
        let release = Arc::new(AtomicBool::new(true));
        let (sig, r) = (signals.clone(), release.clone());
        // The engine thread logs inside the span of the world that built it.
        let span = tracing::info_span!("engine", ports = ports.len());
        let handle = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let _span = span.entered();
                run(engine, ports, workers, fast, &sig, rx, &r)
            })?;
        Ok(EngineLoop {
            signals,
            control: Mutex::new(tx),
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
        self.signals.wake.write(1).map_err(io::Error::from)?;
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
        self.signals.stop();
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

fn capture(pcaps: &mut [Option<PcapWriter>], port: usize, pkt: &Packet) {
    if let Some(w) = pcaps.get_mut(port).and_then(Option::as_mut) {
        let _ = w.write(pkt.frame());
    }
}

/// What the workers share, under one lock: the engine, the captures
/// (written in the order the engine handles frames), the control channel
/// and the ageing clock.
#[derive(Debug)]
struct Core {
    engine: Engine,
    pcaps: Vec<Option<PcapWriter>>,
    fast: Option<FastPath>,
    control: mpsc::Receiver<Control>,
    next_expire: Instant,
}

impl Core {
    /// Carries out the changes asked of the engine.
    fn take_control(&mut self) {
        while let Ok(Control::Faults(list, ack)) = self.control.try_recv() {
            for (p, f) in list {
                self.engine.set_fault(p, f);
            }
            self.offload();
            let _ = ack.send(());
        }
    }

    /// Hands the engine's offers and retractions to the fast path.
    #[inline]
    fn offload(&mut self) {
        if let Some(f) = self.fast.as_mut()
            && self.engine.has_offload_events()
        {
            f.apply(self.engine.take_offload_events());
        }
    }

    /// Ages out learned MACs and flows when it is time (after what the
    /// fast path carried since the last time refreshed its MACs).
    fn expire_due(&mut self, now: Instant) {
        if now >= self.next_expire {
            if let Some(f) = self.fast.as_mut() {
                f.poll(&mut self.engine, now);
            }
            self.engine.expire(now);
            self.next_expire = now + EXPIRE_EVERY;
        }
    }
}

fn lock(core: &Mutex<Core>) -> std::sync::MutexGuard<'_, Core> {
    // A worker that panicked holding the lock ends its own thread; the
    // engine state it leaves is still the engine's, so the others go on.
    core.lock().unwrap_or_else(|p| p.into_inner())
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
/// `io_uring_enter`, see [`TapWriter`]) once the batch is handled. Each
/// worker has its own.
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
    fn queue(&mut self, pcaps: &mut [Option<PcapWriter>], src: Slot, actions: &mut Vec<Action>) {
        for action in actions.drain(..) {
            let (egress, at) = match action {
                Action::Forward(p) => (p.0 as usize, src),
                Action::Emit(p, built) => (p.0 as usize, self.hold(built)),
                Action::Drop(_) => continue,
                Action::Capture(p, built) => {
                    capture(pcaps, p.0 as usize, &built);
                    continue;
                }
            };
            self.send(pcaps, egress, at);
        }
    }

    /// Keeps a frame that is not in the pool (built, or held by a fault)
    /// until the batch is written.
    fn hold(&mut self, pkt: Packet) -> Slot {
        self.built.push(pkt);
        Slot::Built(self.built.len() - 1)
    }

    /// Queues the frame at `at` for `egress` (and writes its capture).
    fn send(&mut self, pcaps: &mut [Option<PcapWriter>], egress: usize, at: Slot) {
        if egress >= pcaps.len() {
            return;
        }
        capture(pcaps, egress, self.frame(at));
        self.out.push((egress, at));
    }

    fn frame(&self, at: Slot) -> &Packet {
        slot_frame(&self.pool, &self.built, at)
    }

    /// Writes every queued frame, in order, and empties the batch.
    fn flush(&mut self, taps: &[Tap], stats: &mut IoStats) {
        if self.out.is_empty() {
            return;
        }
        let (out, pool, built) = (&self.out, &self.pool, &self.built);
        let frame = |i: usize| {
            let (egress, at) = out[i];
            (&taps[egress], slot_frame(pool, built, at))
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

/// Sends every frame whose fault delay is over. The frames are written
/// before the lock goes, so that held frames leave in the order the engine
/// releases them whichever worker releases them.
fn release_due(
    core: &mut Core,
    batch: &mut Batch,
    taps: &[Tap],
    stats: &mut IoStats,
    now: Instant,
    actions: &mut Vec<Action>,
) {
    let Core { engine, pcaps, .. } = core;
    while let Some(due) = engine.poll_due(now) {
        match due {
            Due::Egress(p, pkt) => {
                let at = batch.hold(pkt);
                batch.send(pcaps, p.0 as usize, at);
            }
            Due::Ingress(p, mut pkt) => {
                engine.handle_past_fault(now, p, &mut pkt, actions);
                let at = batch.hold(pkt);
                batch.queue(pcaps, at, actions);
            }
        }
    }
    batch.flush(taps, stats);
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

/// How many workers serve an engine's ports when the build does not say:
/// `VSWITCH_ENGINE_THREADS`, else one per two CPUs. Two CPUs per worker,
/// because every busy port has a sender and a receiver of its own: on 2
/// CPUs a second worker made one-way TCP 10 % slower (the receiver's ACKs
/// then wake a thread of their own) for 1.1–1.4× on four TCP streams both
/// ways at once.
pub fn workers() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::env::var("VSWITCH_ENGINE_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(cpus / 2)
        .clamp(1, MAX_WORKERS)
}

fn run(
    engine: Engine,
    ports: Vec<PortIo>,
    workers: usize,
    fast: Option<FastPath>,
    signals: &Signals,
    control: mpsc::Receiver<Control>,
    release: &AtomicBool,
) -> io::Result<(Engine, IoStats)> {
    let (taps, pcaps): (Vec<Tap>, Vec<_>) = ports.into_iter().map(|p| (p.tap, p.pcap)).unzip();
    let workers = workers.clamp(1, MAX_WORKERS).min(taps.len().max(1));
    tracing::debug!("engine workers: {workers}");
    let core = Mutex::new(Core {
        engine,
        pcaps,
        fast,
        control,
        next_expire: Instant::now() + EXPIRE_EVERY,
    });
    let served: Vec<io::Result<IoStats>> = std::thread::scope(|s| {
        let (core, taps) = (&core, &taps[..]);
        // A worker that ends (on an error) stops the others with it.
        let serve_one = move |w: usize| {
            let served = serve(w, workers, core, taps, signals);
            signals.stop();
            served
        };
        let span = tracing::Span::current();
        let others: Vec<_> = (1..workers)
            .map(|w| {
                let span = span.clone();
                std::thread::Builder::new()
                    .name(format!("engine-{w}"))
                    .spawn_scoped(s, move || {
                        let _span = span.entered();
                        serve_one(w)
                    })
            })
            .collect();
        if others.iter().any(Result::is_err) {
            // Ports nobody reads would be a data path that half works:
            // stop at once and report the failed spawn.
            signals.stop();
        }
        let mut served = vec![serve_one(0)];
        for h in others {
            served.push(match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("engine worker panicked"))),
                Err(e) => Err(e),
            });
        }
        served
    });
    let Core {
        mut engine,
        mut pcaps,
        fast,
        ..
    } = core.into_inner().unwrap_or_else(|p| p.into_inner());
    let offload = fast.map(|mut f| {
        f.poll(&mut engine, Instant::now());
        f.stats
    });
    let mut flushed = Ok(());
    for w in pcaps.iter_mut().flatten() {
        flushed = flushed.and(w.flush());
    }
    // Every TAP lives in a namespace of the world, deleted right after the
    // engine stops: leave the devices to the kernel's batched namespace
    // clean-up rather than unregistering them one close at a time (see
    // `Tap::release_to_namespace`).
    if release.load(Ordering::SeqCst) {
        for tap in taps {
            let _ = tap.release_to_namespace();
        }
    }
    let mut stats = IoStats::for_ports(pcaps.len());
    for s in served {
        let s = s?;
        stats.add(&s);
        stats.worker_reads.push(s.read.iter().sum());
    }
    stats.offload = offload;
    flushed?;
    Ok((engine, stats))
}

impl IoStats {
    fn for_ports(n: usize) -> IoStats {
        IoStats {
            read: vec![0; n],
            write_errors: vec![0; n],
            read_errors: vec![0; n],
            worker_reads: Vec::new(),
            offload: None,
        }
    }

    fn add(&mut self, other: &IoStats) {
        for (mine, theirs) in [
            (&mut self.read, &other.read),
            (&mut self.write_errors, &other.write_errors),
            (&mut self.read_errors, &other.read_errors),
        ] {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        }
    }
}

/// Worker `worker` of `workers`: polls its ports, reads a batch from each
/// ready one, hands the batch to the engine under the lock and writes what
/// it produced.
fn serve(
    worker: usize,
    workers: usize,
    core: &Mutex<Core>,
    taps: &[Tap],
    signals: &Signals,
) -> io::Result<IoStats> {
    let Signals { stop, wake, .. } = signals;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let mine = (worker..taps.len()).step_by(workers);
    for i in mine.clone() {
        epoll.add(
            taps[i].as_fd(),
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

    let mut stats = IoStats::for_ports(taps.len());
    let mut events = vec![EpollEvent::empty(); mine.len() + 2];
    let mut batch = Batch::new();
    if worker == 0 {
        tracing::debug!("TAP writes: {}", batch.writer.io().as_str());
    }
    let mut actions: Vec<Action> = Vec::with_capacity(taps.len() + 4);

    'outer: while !signals.stopping() {
        let timeout = wait_for(&lock(core).engine);
        let n = match epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        {
            let mut core = lock(core);
            let now = Instant::now();
            if core.engine.faults().active() {
                release_due(&mut core, &mut batch, taps, &mut stats, now, &mut actions);
            }
            core.expire_due(now);
        }
        for ev in &events[..n] {
            let token = ev.data();
            if token == STOP_TOKEN {
                break 'outer;
            }
            if token == CONTROL_TOKEN {
                // Every worker wakes; one reads the count, and whichever
                // takes the lock first carries out the changes.
                let _ = wake.read();
                lock(core).take_control();
                continue;
            }
            let ingress = token as usize;
            let read = read_batch(&taps[ingress], &mut batch.pool, &mut stats, ingress);
            if read == 0 {
                continue;
            }
            {
                let mut guard = lock(core);
                // The clock is read under the lock, so the engine never
                // sees time go back between two workers.
                let now = Instant::now();
                let Core { engine, pcaps, .. } = &mut *guard;
                for slot in 0..read {
                    let pkt = &mut batch.pool[slot];
                    // A captured port keeps the frame as it came in (the
                    // engine rewrites it in place) to write it once the
                    // verdict is known.
                    let seen = pcaps[ingress].is_some().then(|| pkt.frame().to_vec());
                    engine.handle_frame(now, PortId(ingress as u16), pkt, &mut actions);
                    if let (Some(frame), Some(w)) = (seen, pcaps[ingress].as_mut()) {
                        let _ = w.write_commented(&frame, drop_comment(&actions).as_deref());
                    }
                    batch.queue(pcaps, Slot::Read(slot), &mut actions);
                }
                guard.offload();
            }
            batch.flush(taps, &mut stats);
            if read >= YIELD_AFTER {
                // Let the processes this batch woke take it before reading
                // more: otherwise a receiver sharing this core gets too
                // little of it, and frames forwarded past what it can read
                // die at its socket (iperf3 UDP 64 B: 250 → 305 kpps
                // received). Returns at once when nothing else is runnable
                // here.
                let _ = nix::sched::sched_yield();
            }
        }
    }
    Ok(stats)
}

/// Reads up to a pool's worth of frames from one TAP; returns how many.
fn read_batch(tap: &Tap, pool: &mut [Packet], stats: &mut IoStats, port: usize) -> usize {
    let mut read = 0;
    while read < pool.len() {
        match tap.read_packet(&mut pool[read]) {
            Ok(Some(_)) => read += 1,
            Ok(None) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                stats.read_errors[port] += 1;
                break;
            }
        }
    }
    stats.read[port] += read as u64;
    read
}
