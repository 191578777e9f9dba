//! Packet views, one file per protocol: every header offset the library
//! reads or writes lives here, in each file's `field` table.
//!
//! The shape follows smoltcp's `src/wire/`: a view wraps any
//! `T: AsRef<[u8]>` (`Packet<&[u8]>` to read, `Packet<&mut [u8]>` to
//! write in place), `new_checked` is `new_unchecked` plus one `check_len`,
//! and after `check_len` no getter can panic. Getters are on `AsRef`,
//! setters on `AsMut`; every accessor is `#[inline]` and reads fixed
//! offsets, so a view costs what the hand-written indexing it replaced
//! cost: one length check up front, then plain loads. Unknown protocol
//! numbers are `Unknown(..)` variants, not errors.
//!
//! Why our own views rather than smoltcp's or etherparse's types: the
//! engine rewrites headers in place inside a frame buffer it owns (NAT,
//! TTL, VLAN tags, VXLAN/ESP encapsulation) and keeps partial checksums the
//! kernel left (`virtio_net_hdr`), so it needs views over borrowed slices
//! with setters, and no allocation. etherparse's slices are read-only and
//! its builders allocate; smoltcp (a dependency for the sim backend's host
//! stacks) has views of this shape, but none for VXLAN or ESP, and its
//! `check_len` does not check the version nibble the engine relies on.
//! etherparse stays in the tests, as an independent parser the
//! views are checked against.

#![forbid(unsafe_code)]

/// What every view shares: the struct over its buffer, `new_unchecked`,
/// `new_checked` (the view's `check_len`) and `into_inner`. A fixed-size
/// header (`view! { Name, header LEN }`) gets its `check_len` here too;
/// the others write their own, and each file its accessors.
macro_rules! view {
    // A view of a fixed-size header: `check_len` is "holds `$len` bytes".
    ($(#[$doc:meta])* $name:ident, header $len:expr) => {
        view! {
            $(#[$doc])*
            $name
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Checks the buffer holds the header.
            #[inline]
            pub fn check_len(&self) -> $crate::wire::Result<()> {
                if self.buffer.as_ref().len() < $len {
                    return Err($crate::wire::Error::Truncated);
                }
                Ok(())
            }
        }
    };
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Wraps a buffer without checking it.
            #[inline]
            pub const fn new_unchecked(buffer: T) -> $name<T> {
                $name { buffer }
            }

            /// Wraps a buffer that passes `check_len`.
            #[inline]
            pub fn new_checked(buffer: T) -> $crate::wire::Result<$name<T>> {
                let v = $name::new_unchecked(buffer);
                v.check_len()?;
                Ok(v)
            }

            /// The wrapped buffer.
            #[inline]
            pub fn into_inner(self) -> T {
                self.buffer
            }
        }
    };
}

/// An ICMP view (v4 or v6, which share the 8-byte header: type, code,
/// checksum, echo identifier and sequence): [`view!`] plus the shared
/// accessors. The invoking file has `field::{TYPE, CODE, CHECKSUM,
/// ECHO_IDENT, ECHO_SEQ}`, `HEADER_LEN` and a `types` module, and adds its
/// own checksum and MTU fields.
macro_rules! icmp_header {
    ($(#[$doc:meta])* $name:ident) => {
        view! {
            $(#[$doc])*
            $name, header HEADER_LEN
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Message type (see [`types`]).
            #[inline]
            pub fn msg_type(&self) -> u8 {
                self.buffer.as_ref()[field::TYPE]
            }

            /// Code.
            #[inline]
            pub fn code(&self) -> u8 {
                self.buffer.as_ref()[field::CODE]
            }

            /// Checksum field.
            #[inline]
            pub fn checksum(&self) -> u16 {
                $crate::wire::be16(self.buffer.as_ref(), field::CHECKSUM)
            }

            /// Echo identifier.
            #[inline]
            pub fn echo_ident(&self) -> u16 {
                $crate::wire::be16(self.buffer.as_ref(), field::ECHO_IDENT)
            }

            /// Echo sequence number.
            #[inline]
            pub fn echo_seq(&self) -> u16 {
                $crate::wire::be16(self.buffer.as_ref(), field::ECHO_SEQ)
            }

            /// What follows the header: echo data, an error's quote, or an
            /// NDP body's rest.
            #[inline]
            pub fn data(&self) -> &[u8] {
                &self.buffer.as_ref()[HEADER_LEN..]
            }
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            /// Sets the message type.
            #[inline]
            pub fn set_msg_type(&mut self, v: u8) {
                self.buffer.as_mut()[field::TYPE] = v;
            }

            /// Sets the code.
            #[inline]
            pub fn set_code(&mut self, v: u8) {
                self.buffer.as_mut()[field::CODE] = v;
            }

            /// Sets the checksum field.
            #[inline]
            pub fn set_checksum(&mut self, v: u16) {
                $crate::wire::set_be16(self.buffer.as_mut(), field::CHECKSUM, v);
            }

            /// Sets the echo identifier.
            #[inline]
            pub fn set_echo_ident(&mut self, v: u16) {
                $crate::wire::set_be16(self.buffer.as_mut(), field::ECHO_IDENT, v);
            }

            /// Sets the echo sequence number.
            #[inline]
            pub fn set_echo_seq(&mut self, v: u16) {
                $crate::wire::set_be16(self.buffer.as_mut(), field::ECHO_SEQ, v);
            }

            /// What follows the header, writable.
            #[inline]
            pub fn data_mut(&mut self) -> &mut [u8] {
                &mut self.buffer.as_mut()[HEADER_LEN..]
            }
        }
    };
}

pub mod arp;
pub mod dns;
pub mod esp;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod ndp;
pub mod tcp;
pub mod udp;
pub mod vlan;
pub mod vxlan;

pub use ethernet::{EtherType, MacAddr};
pub use ip::IpProtocol;

/// Why a buffer is not a well-formed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header (or than a length it declares).
    #[error("packet truncated: the buffer is shorter than the header says")]
    Truncated,
    /// A field is inconsistent (wrong version, a length below the minimum).
    #[error("packet malformed: a header field is inconsistent")]
    Malformed,
}

/// The result of checking a view.
pub type Result<T> = core::result::Result<T, Error>;

/// Reads a big-endian u16 at `at`.
#[inline(always)]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads a big-endian u32 at `at`.
#[inline(always)]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Writes a big-endian u16 at `at`.
#[inline(always)]
pub(crate) fn set_be16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes a big-endian u32 at `at`.
#[inline(always)]
pub(crate) fn set_be32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Copies `N` bytes from `at`.
#[inline(always)]
pub(crate) fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

#[cfg(test)]
mod proptests;
