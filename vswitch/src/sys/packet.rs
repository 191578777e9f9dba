//! AF_PACKET capture sockets: every frame of every interface of the
//! calling thread's network namespace, both directions, with the index of
//! the interface it crossed (what tcpdump's `-i any` reads, but with whole
//! Ethernet headers).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType, recvfrom, setsockopt, socket,
    sockopt,
};

/// Frames the kernel itself sent (`PACKET_OUTGOING`).
pub const PACKET_OUTGOING: u8 = 4;

/// A capture socket of the namespace the calling thread is in.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

/// One captured frame's metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Captured {
    /// Bytes written into the buffer.
    pub len: usize,
    /// The interface it crossed.
    pub ifindex: u32,
    /// `PACKET_HOST`, `PACKET_OUTGOING`, … (linux/if_packet.h).
    pub pkttype: u8,
}

impl PacketSocket {
    /// Opens an `ETH_P_ALL` packet socket in the caller's namespace; reads
    /// return after `timeout` with nothing, so a reader can look at a stop
    /// flag. `rcvbuf` bytes of kernel buffer.
    pub fn open(timeout: Duration, rcvbuf: usize) -> io::Result<PacketSocket> {
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::EthAll,
        )?;
        let tv = nix::sys::time::TimeVal::new(timeout.as_secs() as _, timeout.subsec_micros() as _);
        setsockopt(&fd, sockopt::ReceiveTimeout, &tv)?;
        // Best effort: a smaller buffer only means drops under load.
        let _ = setsockopt(&fd, sockopt::RcvBufForce, &rcvbuf)
            .or_else(|_| setsockopt(&fd, sockopt::RcvBuf, &rcvbuf));
        Ok(PacketSocket { fd })
    }

    /// Reads one frame into `buf`; `Ok(None)` when the timeout passed.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Captured>> {
        match recvfrom::<LinkAddr>(self.fd.as_raw_fd(), buf) {
            Ok((len, Some(a))) => Ok(Some(Captured {
                len,
                ifindex: a.ifindex() as u32,
                pkttype: a.pkttype(),
            })),
            Ok((len, None)) => Ok(Some(Captured {
                len,
                ifindex: 0,
                pkttype: 0,
            })),
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Index → name of every interface of the caller's namespace.
pub fn interfaces() -> io::Result<Vec<(u32, String)>> {
    Ok(nix::net::if_::if_nameindex()?
        .iter()
        .map(|i| (i.index(), i.name().to_string_lossy().into_owned()))
        .collect())
}
