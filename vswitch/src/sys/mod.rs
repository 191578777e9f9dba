//! Every ioctl, netlink request and `unsafe` line of the project.
//!
//! - [`bpf`]: a BPF assembler, maps, program loading, tcx links.
//! - [`tap`]: TAP devices with virtio-net headers and offloads (the hot path).
//! - [`uring`]: batches of TAP writes through io_uring.
//! - [`netlink`]: a small synchronous rtnetlink client.
//! - [`conntrack`]: ctnetlink deletes of conntrack entries by mark.
//! - [`packet`]: AF_PACKET capture sockets (`--pcap` on kernel data paths).
//! - [`probe`]: which link kinds this kernel can create.
//! - [`sysctl`]: `/proc/sys` reads and writes for the calling thread's
//!   network namespace.
#![allow(unsafe_code)]

pub mod bpf;
pub mod conntrack;
pub mod netlink;
pub mod packet;
pub mod probe;
pub mod sysctl;
pub mod tap;
pub mod uring;

#[cfg(test)]
mod tests;

pub use netlink::{LinkState, MacvlanMode, Netlink, NetlinkError};
pub use probe::link_kind_supported;
pub use sysctl::{SysctlError, sysctl_get, sysctl_set};
pub use tap::{Tap, TapError, TapOptions};

/// Gate for privileged tests. Returns true when the process may create
/// network namespaces and links. Otherwise prints why `test` is skipped and
/// returns false, unless `VSWITCH_REQUIRE_ROOT=1`
/// ([`crate::prereq::REQUIRE_ROOT_ENV`]), in which case it panics.
pub fn require_root(test: &str) -> bool {
    crate::prereq::root(test).or_panic().is_some()
}
