//! Docker's embedded DNS server at 127.0.0.11 (docker-semantics §3,
//! DNS-1 … DNS-19), the same on every backend.
//!
//! - [`table`]: the records, built once from the [`Plan`](crate::scenario::plan::Plan):
//!   per network name → addresses and address → `container.network.`, and per
//!   container the networks it sees and the upstreams it forwards to.
//! - [`resolver`]: sans-IO: query bytes + querier + rng → [`Decision`]
//!   (a local answer, forward, or nothing).
//! - [`forward`]: the exchange with upstream servers (at most 3, in order,
//!   SERVFAIL/REFUSED → next, anything else relayed) and the per-container
//!   limit on concurrent forwarded queries.
//! - [`server`]: UDP and TCP `127.0.0.11:53` inside each container namespace.
//! - [`fastpath`]: a tc program on the container's `lo` answering the common
//!   case (a single-address A/AAAA name over UDP) in the kernel.

pub mod fastpath;
pub mod forward;
pub mod resolver;
pub mod server;
pub mod table;

#[cfg(test)]
mod fastpath_tests;
#[cfg(test)]
mod root_tests;
#[cfg(test)]
mod tests;

pub use forward::{
    DEFAULT_UPSTREAM_TIMEOUT, ForwardConfig, Inflight, MAX_CONCURRENT, MAX_UPSTREAMS, forward,
};
pub use resolver::{Decision, Transport, decodes, error_reply, query_has_edns, seeded_rng};
pub use server::{DnsError, EmbeddedDns, start_embedded_dns, stop_all};
pub use table::{ContainerView, Family, FastAnswer, LiveTable, NameTable, Upstreams};

/// The address Docker's embedded DNS listens on inside a container.
pub const EMBEDDED_DNS_ADDR: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 11);

/// TTL of every record the embedded DNS answers itself (DNS-9).
pub const EMBEDDED_TTL: u32 = 600;
