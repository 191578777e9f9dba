//! Built-in probes and echo services, run inside namespaces.
//!
//! Everything here talks through ordinary kernel sockets created inside a
//! [`NetNs`](crate::netns::NetNs): ICMP echo over raw sockets ([`ping`]),
//! TCP/UDP echo clients ([`tcp_echo`], [`udp_echo`]) and the echo services
//! that answer them ([`start_echo`]), a throughput sender/sink pair
//! ([`throughput`], [`start_sink`]), a DNS client ([`dns_query`]) and an
//! authoritative DNS server for scenario externals ([`start_dns_server`]).
//! No external binaries are run.

mod client;
pub(crate) mod dns;
mod echo;
mod iperf3;
mod ping;
mod sock;
mod throughput;

#[cfg(test)]
mod root_tests;
#[cfg(test)]
pub(crate) mod testnet;

use std::io;
use std::net::SocketAddr;

use crate::netns::NetnsError;

pub use client::{EchoReply, spread, tcp_echo, udp_echo, udp_echo_from};
pub use dns::{
    DNS_TTL, DnsOutcome, DnsServer, authoritative_answer, authoritative_answer_udp, dns_query,
    start_dns_server,
};
pub use echo::{
    EchoServices, SEQ_HEADER, Sink, SinkStats, decode_seq, encode_seq, format_seen, parse_greeting,
    parse_seen, start_echo, start_sink,
};
pub use iperf3::{Load, iperf3};
pub(crate) use ping::{Icmp, about_echo};
pub use ping::{PingOptions, PingOutcome, ping};
pub use throughput::{Ports, Throughput, throughput};

/// Errors of the probes and services.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Running inside the namespace failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// Creating or configuring a local socket failed.
    #[error("cannot set up {what}: {source}")]
    Socket {
        /// Which socket (e.g. "raw ICMP socket", "tcp listener on port 80").
        what: String,
        /// Cause.
        source: io::Error,
    },
    /// Starting a worker thread failed.
    #[error("cannot start thread {name}: {source}")]
    Thread {
        /// Thread name.
        name: String,
        /// Cause.
        source: io::Error,
    },
    /// The peer actively refused (TCP RST or ICMP port unreachable): nothing
    /// listens there.
    #[error("{dst} refused the connection: nothing listens there")]
    Refused {
        /// Destination.
        dst: SocketAddr,
    },
    /// Nothing (or not enough) came back before the deadline.
    #[error("timed out waiting for {stage} from {dst}")]
    TimedOut {
        /// Destination.
        dst: SocketAddr,
        /// What was awaited ("connect", "seen line", "echo", …).
        stage: &'static str,
    },
    /// An ICMP error or a routing failure said the destination is unreachable.
    #[error("{dst} is unreachable: {source}")]
    Unreachable {
        /// Destination.
        dst: SocketAddr,
        /// The kernel's error (EHOSTUNREACH, ENETUNREACH, …).
        source: io::Error,
    },
    /// Something came back, but not what the protocol promised.
    #[error("bad reply from {dst}: {reason}")]
    BadReply {
        /// Destination.
        dst: SocketAddr,
        /// What was wrong.
        reason: String,
    },
    /// Another I/O error while talking to `dst`.
    #[error("{stage} with {dst} failed: {source}")]
    Io {
        /// Destination.
        dst: SocketAddr,
        /// What was being done.
        stage: &'static str,
        /// Cause.
        source: io::Error,
    },
    /// A DNS name that cannot be encoded.
    #[error("invalid DNS name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why.
        reason: String,
    },
}

impl ProbeError {
    /// Classifies an I/O error seen while talking to `dst` during `stage`.
    pub(crate) fn io(dst: SocketAddr, stage: &'static str, e: io::Error) -> ProbeError {
        use io::ErrorKind as K;
        match e.kind() {
            K::ConnectionRefused => return ProbeError::Refused { dst },
            K::TimedOut | K::WouldBlock => return ProbeError::TimedOut { dst, stage },
            _ => {}
        }
        match e.raw_os_error() {
            Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::ENETDOWN | libc::EHOSTDOWN) => {
                ProbeError::Unreachable { dst, source: e }
            }
            _ => ProbeError::Io {
                dst,
                stage,
                source: e,
            },
        }
    }

    /// Whether the probe itself could not run (a harness error: entering
    /// the namespace, creating a socket or thread, encoding the query), as
    /// opposed to a network outcome (timeout, refusal, unreachable, an ICMP
    /// error, a wrong answer). A harness error is never an observation.
    pub fn is_harness(&self) -> bool {
        match self {
            ProbeError::Netns(_)
            | ProbeError::Socket { .. }
            | ProbeError::Thread { .. }
            | ProbeError::InvalidName { .. } => true,
            ProbeError::Refused { .. }
            | ProbeError::TimedOut { .. }
            | ProbeError::Unreachable { .. }
            | ProbeError::BadReply { .. } => false,
            // Errors of the local socket layer, not of the path: the probe
            // was wrong or the process ran out of something.
            ProbeError::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(
                    libc::EBADF
                        | libc::EINVAL
                        | libc::EFAULT
                        | libc::ENOMEM
                        | libc::EMFILE
                        | libc::ENFILE
                        | libc::ENOTSOCK
                        | libc::EAFNOSUPPORT
                        | libc::EPROTONOSUPPORT
                        | libc::ENOSYS
                )
            ),
        }
    }

    pub(crate) fn socket(what: impl Into<String>, source: io::Error) -> ProbeError {
        ProbeError::Socket {
            what: what.into(),
            source,
        }
    }
}
