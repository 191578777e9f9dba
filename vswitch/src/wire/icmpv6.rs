//! ICMPv6 (RFC 4443): echo, packet too big, and the header neighbour
//! discovery shares (see [`super::ndp`]).

use super::ip::{IpProtocol, checksum};
use super::{be32, set_be32};

/// Byte offsets of the header's fields, for code that cannot use the
/// view (the DNS fast path's BPF program, checksum fix-ups by protocol).
pub mod field {
    /// Byte offset of the type field.
    pub const TYPE: usize = 0;
    /// Byte offset of the code field.
    pub const CODE: usize = 1;
    /// Byte offset of the checksum field.
    pub const CHECKSUM: usize = 2;
    /// Byte offset of the echo ident field.
    pub const ECHO_IDENT: usize = 4;
    /// Byte offset of the echo seq field.
    pub const ECHO_SEQ: usize = 6;
    /// Byte offset of the mtu field.
    pub const MTU: usize = 4;
}

/// Length of the header (type, code, checksum and the 4-byte rest).
pub const HEADER_LEN: usize = 8;

/// Message types the project reads or writes.
pub mod types {
    /// Destination unreachable.
    pub const DEST_UNREACH: u8 = 1;
    /// Packet too big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Router solicitation.
    pub const ROUTER_SOLICIT: u8 = 133;
    /// Router advertisement.
    pub const ROUTER_ADVERT: u8 = 134;
    /// Neighbour solicitation.
    pub const NEIGHBOUR_SOLICIT: u8 = 135;
    /// Neighbour advertisement.
    pub const NEIGHBOUR_ADVERT: u8 = 136;
}

/// True for error messages (types below 128, RFC 4443 §2.1).
#[inline]
pub fn is_error(t: u8) -> bool {
    t < 128
}

icmp_header! {
    /// A view of an ICMPv6 message (the buffer ends where the message ends).
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// MTU of a packet-too-big message.
    #[inline]
    pub fn mtu(&self) -> u32 {
        be32(self.buffer.as_ref(), field::MTU)
    }

    /// True when the checksum verifies over the pseudo-header of `src`/`dst`.
    #[inline]
    pub fn verify_checksum(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        checksum::l4_checksum6(src, dst, IpProtocol::ICMPV6, self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the MTU of a packet-too-big message.
    #[inline]
    pub fn set_mtu(&mut self, v: u32) {
        set_be32(self.buffer.as_mut(), field::MTU, v);
    }

    /// Computes and stores the checksum for the pseudo-header of `src`/`dst`.
    #[inline]
    pub fn fill_checksum(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let c = checksum::l4_checksum6(src, dst, IpProtocol::ICMPV6, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Error;

    #[test]
    fn too_big_round_trip_and_every_truncation() {
        let (s, d) = ([0xfd; 16], [0xfe; 16]);
        let mut b = [0u8; 16];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_msg_type(types::PACKET_TOO_BIG);
        p.set_code(0);
        p.set_mtu(1280);
        p.fill_checksum(&s, &d);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum(&s, &d) && !p.verify_checksum(&d, &d));
        assert_eq!((p.msg_type(), p.mtu(), p.data().len()), (2, 1280, 8));
        assert!(is_error(p.msg_type()) && !is_error(types::ECHO_REPLY));
        for n in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&b[..n]).unwrap_err(), Error::Truncated);
        }
    }
}
