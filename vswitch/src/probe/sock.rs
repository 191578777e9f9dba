//! Socket set-up and worker-thread plumbing shared by the services.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{
    Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, UdpSocket,
};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, sendmsg, setsockopt,
    sockopt,
};
use rustix::net::sockopt::{Timeout, set_ipv6_v6only, set_socket_reuseaddr, set_socket_timeout};
use rustix::net::{AddressFamily, SocketFlags, SocketType, bind, listen, socket_with};

use super::ProbeError;

/// How often blocked service loops wake up to look at their stop flag.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// Time left until `deadline`, or `None` when less than a millisecond is left
/// (a zero socket timeout would mean "forever").
pub(crate) fn remaining(deadline: Instant) -> Option<Duration> {
    let left = deadline.checked_duration_since(Instant::now())?;
    (left >= Duration::from_millis(1)).then_some(left)
}

/// The unspecified address of `dst`'s family with port 0, for client sockets.
pub(crate) fn any_of(dst: &SocketAddr) -> SocketAddr {
    match dst {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`, so dual-stack sockets report IPv4 peers as
/// IPv4.
pub(crate) fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => addr,
        },
        v4 => v4,
    }
}

fn dual_stack_socket(ty: SocketType, port: u16) -> io::Result<OwnedFd> {
    let fd = socket_with(AddressFamily::INET6, ty, SocketFlags::CLOEXEC, None)?;
    set_ipv6_v6only(&fd, false)?;
    set_socket_reuseaddr(&fd, true)?;
    bind(&fd, &SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))?;
    Ok(fd)
}

fn ipv4_socket(ty: SocketType, port: u16) -> io::Result<OwnedFd> {
    let fd = socket_with(AddressFamily::INET, ty, SocketFlags::CLOEXEC, None)?;
    set_socket_reuseaddr(&fd, true)?;
    bind(&fd, &SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))?;
    Ok(fd)
}

/// A socket bound to every address on `port`: dual-stack `[::]`, or
/// `0.0.0.0` when IPv6 is unavailable in the namespace. Returns whether it is
/// the IPv6 one. Must run inside the namespace.
fn bind_any(ty: SocketType, port: u16) -> io::Result<(OwnedFd, bool)> {
    match dual_stack_socket(ty, port) {
        Ok(fd) => Ok((fd, true)),
        Err(v6) => ipv4_socket(ty, port)
            .map(|fd| (fd, false))
            .map_err(|v4| io::Error::new(v4.kind(), format!("[::]: {v6}; 0.0.0.0: {v4}"))),
    }
}

/// A listening TCP socket on all addresses, whose `accept` gives up after
/// [`POLL`] so its loop can look at a stop flag. Must run inside the
/// namespace.
pub(crate) fn tcp_listener(port: u16) -> Result<TcpListener, ProbeError> {
    let what = || format!("tcp listener on port {port}");
    let (fd, _) = bind_any(SocketType::STREAM, port).map_err(|e| ProbeError::socket(what(), e))?;
    listen(&fd, 1024).map_err(|e| ProbeError::socket(what(), e.into()))?;
    set_socket_timeout(&fd, Timeout::Recv, Some(POLL))
        .map_err(|e| ProbeError::socket(what(), e.into()))?;
    Ok(TcpListener::from(fd))
}

/// A UDP socket on all addresses that reports each datagram's local address
/// (so replies leave from the address the client talked to), with a
/// [`POLL`] receive timeout. Must run inside the namespace.
pub(crate) fn udp_service_socket(port: u16) -> Result<UdpService, ProbeError> {
    let what = || format!("udp socket on port {port}");
    let (fd, v6) = bind_any(SocketType::DGRAM, port).map_err(|e| ProbeError::socket(what(), e))?;
    let on = if v6 {
        setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true)
    } else {
        setsockopt(&fd, sockopt::Ipv4PacketInfo, &true)
    };
    on.map_err(|e| ProbeError::socket(what(), e.into()))?;
    set_socket_timeout(&fd, Timeout::Recv, Some(POLL))
        .map_err(|e| ProbeError::socket(what(), e.into()))?;
    Ok(UdpService { fd })
}

/// Where a datagram arrived: the local address it was sent to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LocalInfo {
    V4(libc::in_pktinfo),
    V6(libc::in6_pktinfo),
    Unknown,
}

/// A bound UDP service socket (see [`udp_service_socket`]).
#[derive(Debug)]
pub(crate) struct UdpService {
    fd: OwnedFd,
}

impl AsFd for UdpService {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl UdpService {
    /// The bound address.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        let any = rustix::net::getsockname(&self.fd)?;
        SocketAddr::try_from(any).map_err(|_| io::Error::other("not an IP socket"))
    }

    /// Receives one datagram; `Ok(None)` on timeout or interruption.
    pub(crate) fn recv(
        &self,
        buf: &mut [u8],
    ) -> io::Result<Option<(usize, SocketAddr, LocalInfo)>> {
        let mut iov = [IoSliceMut::new(buf)];
        let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::in_pktinfo);
        let msg = match recvmsg::<SockaddrStorage>(
            self.fd.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        ) {
            Ok(m) => m,
            Err(nix::Error::EAGAIN | nix::Error::EINTR) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut local = LocalInfo::Unknown;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                match c {
                    ControlMessageOwned::Ipv6PacketInfo(i) => local = LocalInfo::V6(i),
                    ControlMessageOwned::Ipv4PacketInfo(i) => local = LocalInfo::V4(i),
                    _ => {}
                }
            }
        }
        let peer = msg.address.as_ref().and_then(storage_to_std);
        let n = msg.bytes;
        match peer {
            Some(p) => Ok(Some((n, p, local))),
            None => Ok(None),
        }
    }

    /// Sends `parts` to `peer`, from the local address in `local` when known.
    pub(crate) fn reply(
        &self,
        parts: &[&[u8]],
        peer: SocketAddr,
        local: LocalInfo,
    ) -> io::Result<()> {
        let iov: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let to = SockaddrStorage::from(peer);
        let fd = self.fd.as_raw_fd();
        let with_src = match local {
            LocalInfo::V6(mut i) if !Ipv6Addr::from(i.ipi6_addr.s6_addr).is_multicast() => {
                // Any interface: only the source address is pinned.
                i.ipi6_ifindex = 0;
                Some(sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv6PacketInfo(&i)],
                    MsgFlags::empty(),
                    Some(&to),
                ))
            }
            LocalInfo::V4(mut i) => {
                i.ipi_ifindex = 0;
                Some(sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv4PacketInfo(&i)],
                    MsgFlags::empty(),
                    Some(&to),
                ))
            }
            _ => None,
        };
        match with_src {
            Some(Ok(_)) => Ok(()),
            // Without the source pinned rather than not at all.
            Some(Err(_)) | None => sendmsg(fd, &iov, &[], MsgFlags::empty(), Some(&to))
                .map(drop)
                .map_err(io::Error::from),
        }
    }
}

fn storage_to_std(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v6) = s.as_sockaddr_in6() {
        return Some(unmap(SocketAddr::V6(SocketAddrV6::from(*v6))));
    }
    s.as_sockaddr_in()
        .map(|v4| SocketAddr::V4(SocketAddrV4::from(*v4)))
}

/// Whether `e` only means "try again" (timeouts on sockets with SO_RCVTIMEO).
pub(crate) fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Threads of a running service, stopped and joined on drop.
#[derive(Debug, Default)]
pub(crate) struct Workers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Workers {
    /// The flag loops watch.
    pub(crate) fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Where per-connection threads are registered (see [`spawn_conn`]).
    pub(crate) fn conns(&self) -> Arc<Mutex<Vec<JoinHandle<()>>>> {
        self.conns.clone()
    }

    /// Starts a long-running named thread.
    pub(crate) fn spawn(
        &mut self,
        name: String,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<(), ProbeError> {
        let h = std::thread::Builder::new()
            .name(name.clone())
            .spawn(f)
            .map_err(|source| ProbeError::Thread { name, source })?;
        self.threads.push(h);
        Ok(())
    }

    /// Sets the stop flag and joins every thread.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
        // Listener threads are gone: no new connections can be registered.
        let conns: Vec<_> = match self.conns.lock() {
            Ok(mut v) => v.drain(..).collect(),
            Err(p) => p.into_inner().drain(..).collect(),
        };
        for h in conns {
            let _ = h.join();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a per-connection thread and registers it in `conns`, forgetting
/// finished ones. A failure to start a thread drops the connection.
pub(crate) fn spawn_conn(
    conns: &Mutex<Vec<JoinHandle<()>>>,
    name: &str,
    f: impl FnOnce() + Send + 'static,
) {
    let Ok(h) = std::thread::Builder::new().name(name.to_string()).spawn(f) else {
        return;
    };
    let mut v = match conns.lock() {
        Ok(v) => v,
        Err(p) => p.into_inner(),
    };
    v.retain(|h| !h.is_finished());
    v.push(h);
}

/// A UDP client socket of `dst`'s family, connected to `dst` (so ICMP errors
/// come back as errors on `recv`). Must run inside the namespace.
pub(crate) fn udp_client(dst: SocketAddr, sport: u16) -> Result<UdpSocket, ProbeError> {
    let mut local = any_of(&dst);
    local.set_port(sport);
    let sock = UdpSocket::bind(local)
        .map_err(|e| ProbeError::socket(format!("udp socket towards {dst}"), e))?;
    sock.connect(dst)
        .map_err(|e| ProbeError::io(dst, "connect", e))?;
    Ok(sock)
}
