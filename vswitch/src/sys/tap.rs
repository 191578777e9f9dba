//! TAP devices with the legacy virtio-net header and checksum/TSO offloads.
//!
//! Modelled on firecracker's `devices/virtio/net/tap.rs`: `/dev/net/tun` is
//! opened `O_CLOEXEC` straight into a [`File`], ioctl numbers come from nix's
//! macros, and every `unsafe` block says why it is sound.
//!
//! A TAP is born in the network namespace of the thread that calls
//! [`Tap::create`]; run it inside [`crate::netns::NetNs::run`] to place it.
//! The fd keeps working from any thread afterwards.

use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::engine::packet::{Packet, VNET_HDR_LEN, VnetHdr};

/// The clone device every TAP is created from.
const TUN_DEV: &str = "/dev/net/tun";
/// `TUNTAP` ioctl type from `<linux/if_tun.h>`.
const TUN_IOC_MAGIC: u8 = b'T';

// TUNSETIFF is declared `_IOW('T', 202, int)` but takes a `struct ifreq *`.
nix::ioctl_write_ptr_bad!(
    tun_set_iff,
    nix::request_code_write!(TUN_IOC_MAGIC, 202, std::mem::size_of::<libc::c_int>()),
    libc::ifreq
);
// TUNSETOFFLOAD is `_IOW('T', 208, unsigned int)` and takes the flags by value.
nix::ioctl_write_int_bad!(
    tun_set_offload,
    nix::request_code_write!(TUN_IOC_MAGIC, 208, std::mem::size_of::<libc::c_uint>())
);
// TUNSETPERSIST is `_IOW('T', 203, int)` and takes the flag by value.
nix::ioctl_write_int_bad!(
    tun_set_persist,
    nix::request_code_write!(TUN_IOC_MAGIC, 203, std::mem::size_of::<libc::c_int>())
);
// TUNSETVNETHDRSZ is `_IOW('T', 216, int)` and takes an `int *`.
nix::ioctl_write_ptr!(tun_set_vnet_hdr_sz, TUN_IOC_MAGIC, 216, libc::c_int);

/// Offloads always requested with [`TapOptions::offload`].
pub const OFFLOAD_BASE: u32 =
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
/// UDP segmentation offloads, requested too but dropped when the kernel
/// refuses them (older than 6.2).
pub const OFFLOAD_USO: u32 = libc::TUN_F_USO4 | libc::TUN_F_USO6;

/// Errors of TAP creation.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The interface name is empty, too long or holds a NUL or '/'.
    #[error("invalid TAP name {name:?}: must be 1..={max} bytes without NUL or '/'", max = libc::IFNAMSIZ - 1)]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// Offloads hand out partial checksums and GSO frames, which only make
    /// sense with a virtio-net header to describe them.
    #[error("TAP {name}: offload needs vnet_hdr; enable vnet_hdr or disable offload")]
    OffloadNeedsVnetHdr {
        /// Interface name.
        name: String,
    },
    /// `/dev/net/tun` could not be opened.
    #[error("cannot open {TUN_DEV}: {source} (is the tun driver present and are we root?)")]
    Open {
        /// Cause.
        source: io::Error,
    },
    /// `TUNSETIFF` failed.
    #[error(
        "TUNSETIFF for TAP {name} failed: {source} (name taken by a non-TAP link, or no CAP_NET_ADMIN?)"
    )]
    SetIff {
        /// Interface name.
        name: String,
        /// Cause.
        source: io::Error,
    },
    /// `TUNSETVNETHDRSZ` failed.
    #[error("TUNSETVNETHDRSZ({VNET_HDR_LEN}) for TAP {name} failed: {source}")]
    SetVnetHdrSz {
        /// Interface name.
        name: String,
        /// Cause.
        source: io::Error,
    },
    /// `TUNSETOFFLOAD` failed.
    #[error("TUNSETOFFLOAD({flags:#x}) for TAP {name} failed: {source}")]
    SetOffload {
        /// Interface name.
        name: String,
        /// The flags that were refused.
        flags: u32,
        /// Cause.
        source: io::Error,
    },
}

/// How to open a TAP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapOptions {
    /// Prepend a 10-byte `virtio_net_hdr` to every frame (`IFF_VNET_HDR`).
    pub vnet_hdr: bool,
    /// Let the kernel hand out partial checksums and TSO super-frames
    /// (`TUNSETOFFLOAD`); needs `vnet_hdr`.
    pub offload: bool,
    /// Open `O_NONBLOCK`: reads return `Ok(None)` instead of waiting.
    pub nonblocking: bool,
}

impl Default for TapOptions {
    fn default() -> Self {
        TapOptions {
            vnet_hdr: true,
            offload: true,
            nonblocking: true,
        }
    }
}

/// An open TAP device. Closing it (drop) deletes the interface unless it was
/// made persistent elsewhere.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    vnet_hdr: bool,
    offload: u32,
}

impl Tap {
    /// Creates TAP `name` (`TUNSETIFF IFF_TAP|IFF_NO_PI[|IFF_VNET_HDR]`) in
    /// the calling thread's network namespace; callers run this inside
    /// [`crate::netns::NetNs::run`] so the device is born in the right one.
    ///
    /// With `vnet_hdr` the header size is set to [`VNET_HDR_LEN`] (legacy
    /// `virtio_net_hdr`, little-endian). With `offload` the TAP accepts
    /// [`OFFLOAD_BASE`] (CSUM, TSO4, TSO6, TSO_ECN) plus [`OFFLOAD_USO`] when
    /// the kernel knows it.
    pub fn create(name: &str, opts: TapOptions) -> Result<Tap, TapError> {
        let mut ifr = ifreq_for(name)?;
        if opts.offload && !opts.vnet_hdr {
            return Err(TapError::OffloadNeedsVnetHdr {
                name: name.to_string(),
            });
        }
        let mut flags = libc::O_CLOEXEC;
        if opts.nonblocking {
            flags |= libc::O_NONBLOCK;
        }
        let file = File::options()
            .read(true)
            .write(true)
            .custom_flags(flags)
            .open(TUN_DEV)
            .map_err(|source| TapError::Open { source })?;

        let mut iff = libc::IFF_TAP | libc::IFF_NO_PI;
        if opts.vnet_hdr {
            iff |= libc::IFF_VNET_HDR;
        }
        // IFF_* flags fit in the `short` of `ifr_flags` (the largest is 0x8000
        // IFF_MULTI_QUEUE, not used here).
        ifr.ifr_ifru.ifru_flags = iff as libc::c_short;
        // A TAP of that name whose last fd is being closed is busy until it
        // goes: a data path rebuilt in the same namespace closes the old
        // one, but a process another thread forks at that moment holds the
        // fd until its exec closes it (O_CLOEXEC). Wait (bounded) for it.
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            // SAFETY: the fd is an open /dev/net/tun and `ifr` is a valid,
            // initialised ifreq that outlives the call; the kernel writes
            // only within it (the final interface name).
            match unsafe { tun_set_iff(file.as_raw_fd(), &ifr) } {
                Ok(_) => break,
                Err(nix::Error::EBUSY) if std::time::Instant::now() < give_up => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => {
                    return Err(TapError::SetIff {
                        name: name.to_string(),
                        source: e.into(),
                    });
                }
            }
        }
        let name = name_from_ifreq(&ifr);

        if opts.vnet_hdr {
            let size = VNET_HDR_LEN as libc::c_int;
            // SAFETY: the fd is a TAP fd and `size` is a live int the kernel
            // only reads.
            unsafe { tun_set_vnet_hdr_sz(file.as_raw_fd(), &size) }.map_err(|e| {
                TapError::SetVnetHdrSz {
                    name: name.clone(),
                    source: e.into(),
                }
            })?;
        }

        let mut offload = 0;
        if opts.offload {
            offload = set_offload(&file, OFFLOAD_BASE | OFFLOAD_USO)
                .map(|()| OFFLOAD_BASE | OFFLOAD_USO)
                .or_else(|e| match e {
                    nix::Error::EINVAL => set_offload(&file, OFFLOAD_BASE).map(|()| OFFLOAD_BASE),
                    e => Err(e),
                })
                .map_err(|e| TapError::SetOffload {
                    name: name.clone(),
                    flags: OFFLOAD_BASE,
                    source: e.into(),
                })?;
        }

        Ok(Tap {
            file,
            name,
            vnet_hdr: opts.vnet_hdr,
            offload,
        })
    }

    /// Closes the fd but leaves the interface to its namespace, for a
    /// namespace about to be deleted: the TAP is made persistent first
    /// (`TUNSETPERSIST`), so the close only detaches its queue instead of
    /// unregistering the device, which waits out RCU grace periods (15–20
    /// ms each here, one after the other). The interface then goes in the
    /// kernel's batched clean-up of the namespace; nothing outlives it.
    /// If the ioctl fails the fd is closed the ordinary way.
    pub fn release_to_namespace(self) -> io::Result<()> {
        // SAFETY: the fd is an open TAP fd; TUNSETPERSIST takes an int by
        // value and touches no user memory.
        let r = unsafe { tun_set_persist(self.file.as_raw_fd(), 1) };
        drop(self);
        r.map(drop).map_err(io::Error::from)
    }

    /// The interface name (as the kernel confirmed it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when every frame carries a virtio-net header.
    pub fn has_vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// The `TUN_F_*` offload flags the kernel accepted (0 without offload).
    pub fn offload_flags(&self) -> u32 {
        self.offload
    }

    /// Reads one frame into `pkt` with a single `readv` of [header,
    /// `pkt.read_area()`], sets `pkt.hdr` (default without vnet header) and
    /// the frame length, and returns the frame length. `Ok(None)` when the
    /// TAP is non-blocking and has nothing queued.
    pub fn read_packet(&self, pkt: &mut Packet) -> io::Result<Option<usize>> {
        let mut hdr = [0u8; VNET_HDR_LEN];
        let res = if self.vnet_hdr {
            let mut iov = [IoSliceMut::new(&mut hdr), IoSliceMut::new(pkt.read_area())];
            retry(|| (&self.file).read_vectored(&mut iov))
        } else {
            let area = pkt.read_area();
            retry(|| (&self.file).read(area))
        };
        let n = match res {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = if self.vnet_hdr {
            if n < VNET_HDR_LEN {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TAP read shorter than the virtio-net header",
                ));
            }
            pkt.hdr = VnetHdr::from_bytes(&hdr);
            n - VNET_HDR_LEN
        } else {
            pkt.hdr = VnetHdr::default();
            n
        };
        pkt.set_len(len);
        Ok(Some(len))
    }

    /// Tests: [`Tap::read_packet`], waiting (in `poll`) for a frame until
    /// `deadline`; `Ok(None)` once it has passed with none.
    #[cfg(test)]
    pub(crate) fn read_packet_until(
        &self,
        pkt: &mut Packet,
        deadline: std::time::Instant,
    ) -> io::Result<Option<usize>> {
        loop {
            if let Some(n) = self.read_packet(pkt)? {
                return Ok(Some(n));
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [nix::poll::PollFd::new(
                self.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            nix::poll::poll(&mut fds, ms).map_err(io::Error::from)?;
        }
    }

    /// Writes `pkt` (its header and frame) with one syscall.
    pub fn write_packet(&self, pkt: &Packet) -> io::Result<()> {
        self.write_frame(&pkt.hdr, pkt.frame())
    }

    /// Writes `frame` with one `writev` of [`hdr`, frame]. Without a vnet
    /// header only the frame is written: a GSO frame is then refused with
    /// [`io::ErrorKind::InvalidInput`] (segment it first), and a
    /// `NEEDS_CSUM` frame goes out as is, so the caller must have finished
    /// its checksum.
    ///
    /// On a non-blocking TAP a full queue shows as `WouldBlock`; the kernel
    /// rarely pushes back on TAP writes (they go straight into the stack).
    pub fn write_frame(&self, hdr: &VnetHdr, frame: &[u8]) -> io::Result<()> {
        let want = self.write_len(hdr, frame.len())?;
        let n = if self.vnet_hdr {
            let h = hdr.to_bytes();
            let iov = [IoSlice::new(&h), IoSlice::new(frame)];
            retry(|| (&self.file).write_vectored(&iov))?
        } else {
            retry(|| (&self.file).write(frame))?
        };
        check_written(n, want)
    }

    /// The bytes one write of a frame of `frame_len` with `hdr` takes: the
    /// vnet header and the frame, or the frame alone on a TAP without vnet
    /// header, where a GSO frame is refused (`InvalidInput`).
    pub(crate) fn write_len(&self, hdr: &VnetHdr, frame_len: usize) -> io::Result<usize> {
        if self.vnet_hdr {
            Ok(VNET_HDR_LEN + frame_len)
        } else if hdr.is_gso() {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "GSO frame on a TAP without vnet header: segment it first",
            ))
        } else {
            Ok(frame_len)
        }
    }
}

/// A TAP write is one frame: a count short of `want` means a truncated frame.
pub(crate) fn check_written(n: usize, want: usize) -> io::Result<()> {
    if n == want {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write to TAP",
        ))
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

fn set_offload(file: &File, flags: u32) -> nix::Result<()> {
    // SAFETY: the fd is a TAP fd; TUNSETOFFLOAD takes its argument by value
    // and touches no user memory.
    unsafe { tun_set_offload(file.as_raw_fd(), flags as libc::c_int) }.map(drop)
}

/// A zeroed ifreq carrying `name`, or an error when the name cannot be an
/// interface name.
fn ifreq_for(name: &str) -> Result<libc::ifreq, TapError> {
    let bytes = name.as_bytes();
    if bytes.is_empty()
        || bytes.len() >= libc::IFNAMSIZ
        || bytes.iter().any(|&b| b == 0 || b == b'/')
    {
        return Err(TapError::InvalidName {
            name: name.to_string(),
        });
    }
    // SAFETY: ifreq is plain old data (arrays, integers, a union of such and
    // a pointer); all-zero bytes are a valid value for each.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(ifr)
}

fn name_from_ifreq(ifr: &libc::ifreq) -> String {
    let bytes: Vec<u8> = ifr
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_if_tun_h() {
        // Cross-check the macro-built numbers against libc's table.
        assert_eq!(
            nix::request_code_write!(TUN_IOC_MAGIC, 202, std::mem::size_of::<libc::c_int>()) as u64,
            libc::TUNSETIFF
        );
        assert_eq!(
            nix::request_code_write!(TUN_IOC_MAGIC, 208, std::mem::size_of::<libc::c_uint>())
                as u64,
            libc::TUNSETOFFLOAD
        );
        assert_eq!(
            nix::request_code_write!(TUN_IOC_MAGIC, 216, std::mem::size_of::<libc::c_int>()) as u64,
            libc::TUNSETVNETHDRSZ
        );
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "a/b", "a\0b", "sixteen-bytes-xx"] {
            assert!(
                matches!(ifreq_for(bad), Err(TapError::InvalidName { .. })),
                "{bad:?}"
            );
        }
        let ifr = ifreq_for("fifteen-bytes-x").unwrap();
        assert_eq!(name_from_ifreq(&ifr), "fifteen-bytes-x");
    }
}
