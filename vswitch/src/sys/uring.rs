//! Batched TAP writes: a batch of frames handed to the kernel with one
//! `io_uring_enter`.
//!
//! Why: the kernel is built without preemption (`Dynamic Preempt: none`
//! here), so a process woken by a frame the engine writes — the receiving
//! iperf3, say — runs only when the engine's syscall returns. With one
//! `writev` per frame, a receiver sharing the engine's core is woken and
//! scheduled after every frame and reads one datagram per wake-up (~100 000
//! context switches per second each way under iperf3 UDP 64 B). Handed to
//! the kernel together, a batch of frames is queued on the receiving
//! sockets before anyone is scheduled, and the receiver drains them in one
//! go.
//!
//! TAP fds are non-blocking, so io_uring writes them inline, in submission
//! order, inside the one `io_uring_enter`; [`TapWriter::write_all`] waits
//! for every completion before it returns, so the frames it borrows are
//! never read after the call. Where io_uring is unavailable (an old kernel,
//! `kernel.io_uring_disabled`, a seccomp filter), or with
//! `VSWITCH_TAP_IO=writev`, every frame is one `writev` as before; so is
//! every frame after a submission the kernel refused (the ring is dropped
//! with the refused entries unread).

use std::io;
use std::os::fd::AsRawFd;

use io_uring::{IoUring, opcode, types};

use super::tap::{Tap, check_written};
use crate::engine::packet::{Packet, VNET_HDR_LEN};

/// Environment variable: `writev` writes every frame with its own syscall.
pub const TAP_IO_ENV: &str = "VSWITCH_TAP_IO";

/// How TAP writes reach the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TapIo {
    /// A batch per `io_uring_enter`.
    IoUring,
    /// One `writev` per frame.
    Writev,
}

impl TapIo {
    /// The name printed in logs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TapIo::IoUring => "io_uring",
            TapIo::Writev => "writev",
        }
    }
}

/// Writes batches of frames to TAPs.
pub struct TapWriter {
    ring: Option<IoUring>,
    hdrs: Vec<[u8; VNET_HDR_LEN]>,
    iovs: Vec<[libc::iovec; 2]>,
}

impl std::fmt::Debug for TapWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapWriter").field("io", &self.io()).finish()
    }
}

impl TapWriter {
    /// A writer for batches of up to `depth` frames per `io_uring_enter`
    /// (larger batches go in several); one `writev` per frame when io_uring
    /// cannot be set up or [`TAP_IO_ENV`] says `writev`.
    pub fn new(depth: u32) -> TapWriter {
        let io = match std::env::var(TAP_IO_ENV) {
            Ok(v) if v == "writev" => TapIo::Writev,
            _ => TapIo::IoUring,
        };
        TapWriter::with_io(depth, io)
    }

    /// A writer of the given kind; [`TapIo::IoUring`] falls back to
    /// [`TapIo::Writev`] (logged) when the ring cannot be made, which
    /// [`TapWriter::io`] then says.
    pub fn with_io(depth: u32, io: TapIo) -> TapWriter {
        let ring = match io {
            TapIo::Writev => None,
            TapIo::IoUring => match IoUring::builder()
                .setup_single_issuer()
                // Every queued write is taken even if one fails to start,
                // so none is left behind in the queue (see `submit_chunk`).
                .setup_submit_all()
                .build(depth)
            {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::info!("io_uring unavailable ({e}): one writev per TAP frame");
                    None
                }
            },
        };
        TapWriter {
            ring,
            hdrs: Vec::with_capacity(depth as usize),
            iovs: Vec::with_capacity(depth as usize),
        }
    }

    /// Which way frames are written.
    pub fn io(&self) -> TapIo {
        if self.ring.is_some() {
            TapIo::IoUring
        } else {
            TapIo::Writev
        }
    }

    /// Writes frames `0..count` (`frame(i)` gives the TAP and packet of
    /// frame `i`) in order and reports each result by its index; returns
    /// once every frame has been written.
    pub fn write_all<'a>(
        &mut self,
        count: usize,
        frame: impl Fn(usize) -> (&'a Tap, &'a Packet),
        mut on_result: impl FnMut(usize, io::Result<()>),
    ) {
        let mut start = 0;
        while start < count {
            let Some(ring) = self.ring.as_mut() else {
                for i in start..count {
                    let (tap, pkt) = frame(i);
                    on_result(i, tap.write_packet(pkt));
                }
                return;
            };
            let end = count.min(start + ring.params().sq_entries() as usize);
            let chunk = start..end;
            if let Err(e) = submit_chunk(
                ring,
                &mut self.hdrs,
                &mut self.iovs,
                chunk,
                &frame,
                &mut on_result,
            ) {
                // The kernel took none of the chunk and nothing of it was
                // reported: drop the ring (the queued entries go unread
                // with it) and write the chunk, and everything after, one
                // frame at a time.
                tracing::warn!(
                    "io_uring submit failed ({e}): one writev per TAP frame from now on"
                );
                self.ring = None;
                continue;
            }
            start = end;
        }
    }
}

/// Errors of `io_uring_enter` worth trying again.
fn retryable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

/// Submits frames `chunk` (at most the ring's depth) and reaps their
/// completions, reporting every frame once. On an error nothing was taken
/// by the kernel and nothing is reported.
fn submit_chunk<'a>(
    ring: &mut IoUring,
    hdrs: &mut Vec<[u8; VNET_HDR_LEN]>,
    iovs: &mut Vec<[libc::iovec; 2]>,
    chunk: std::ops::Range<usize>,
    frame: &impl Fn(usize) -> (&'a Tap, &'a Packet),
    report: &mut impl FnMut(usize, io::Result<()>),
) -> io::Result<()> {
    // Both vectors are filled completely before any pointer into them is
    // taken, so nothing the kernel reads moves.
    hdrs.clear();
    hdrs.extend(chunk.clone().map(|i| frame(i).1.hdr.to_bytes()));
    iovs.clear();
    iovs.extend(chunk.clone().zip(hdrs.iter()).map(|(i, hdr)| {
        let bytes = frame(i).1.frame();
        [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut libc::c_void,
                iov_len: VNET_HDR_LEN,
            },
            libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            },
        ]
    }));
    let mut submitted = 0;
    {
        let mut sq = ring.submission();
        for (k, i) in chunk.clone().enumerate() {
            let (tap, pkt) = frame(i);
            // Refused frames are reported once the rest is written.
            if tap.write_len(&pkt.hdr, pkt.frame().len()).is_err() {
                continue;
            }
            // [header, frame] with a vnet header, [frame] without.
            let (first, n) = if tap.has_vnet_hdr() { (0, 2) } else { (1, 1) };
            let sqe = opcode::Writev::new(types::Fd(tap.as_raw_fd()), iovs[k][first..].as_ptr(), n)
                .build()
                .user_data(i as u64);
            // SAFETY: the iovecs, the headers they point to and the frames
            // (borrowed through `frame` for this whole call) stay alive and
            // unmoved until every completion is reaped below, before this
            // function returns; if the kernel takes none of the entries,
            // the error goes to `write_all`, which drops the ring with them
            // unread. The fd is the borrowed TAP's own.
            unsafe { sq.push(&sqe) }.map_err(|_| io::Error::other("io_uring queue full"))?;
            submitted += 1;
        }
    }
    // Submit: all or nothing. An error means this call took none of them,
    // so the caller may drop the ring with them unread.
    let mut taken = 0;
    while taken < submitted {
        match ring.submit() {
            Ok(n) => taken += n,
            Err(e) if retryable(&e) => {}
            Err(e) if taken == 0 => return Err(e),
            Err(e) => in_flight_lost(&e),
        }
    }
    // Wait for every completion: the frames are borrowed only for this call.
    let mut reaped = 0;
    while reaped < submitted {
        match ring.submit_and_wait(submitted - reaped) {
            Ok(_) => {}
            Err(e) if retryable(&e) => {}
            Err(e) => in_flight_lost(&e),
        }
        for cqe in ring.completion() {
            let i = cqe.user_data() as usize;
            let (tap, pkt) = frame(i);
            let res = cqe.result();
            report(
                i,
                match usize::try_from(res) {
                    Err(_) => Err(io::Error::from_raw_os_error(-res)),
                    Ok(n) => tap
                        .write_len(&pkt.hdr, pkt.frame().len())
                        .and_then(|want| check_written(n, want)),
                },
            );
            reaped += 1;
        }
    }
    for i in chunk {
        let (tap, pkt) = frame(i);
        if let Err(e) = tap.write_len(&pkt.hdr, pkt.frame().len()) {
            report(i, Err(e));
        }
    }
    Ok(())
}

/// The kernel holds writes that borrow buffers this thread is about to
/// reuse, and cannot be waited for: nothing safe is left to do. (Not seen:
/// `io_uring_enter` fails only with the errors [`retryable`] takes once
/// the ring is set up.)
fn in_flight_lost(e: &io::Error) -> ! {
    tracing::error!("io_uring_enter failed with TAP writes in flight: {e}");
    eprintln!("vswitch: io_uring_enter failed with TAP writes in flight ({e}); aborting");
    std::process::abort()
}
