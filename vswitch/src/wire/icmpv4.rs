//! ICMP for IPv4 (RFC 792): echo, and the errors the router sends or
//! translates (they quote the offending packet after 8 bytes).

use super::ip::checksum;
use super::{be16, set_be16};

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
    /// Byte offset of the next hop mtu field.
    pub const NEXT_HOP_MTU: usize = 6;
}

/// Length of the header (type, code, checksum and the 4-byte rest).
pub const HEADER_LEN: usize = 8;

/// Message types the project reads or writes.
pub mod types {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DEST_UNREACH: u8 = 3;
    /// Source quench (obsolete, but still an error quoting a packet).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 12;
}

/// Destination-unreachable codes.
pub mod unreach {
    /// Network unreachable.
    pub const NET: u8 = 0;
    /// Port unreachable.
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set.
    pub const FRAG_NEEDED: u8 = 4;
}

/// True for the types that quote another packet (RFC 1122 §3.2.2: never
/// answered with another error).
#[inline]
pub fn is_error(t: u8) -> bool {
    matches!(
        t,
        types::DEST_UNREACH
            | types::SOURCE_QUENCH
            | types::REDIRECT
            | types::TIME_EXCEEDED
            | types::PARAM_PROBLEM
    )
}

icmp_header! {
    /// A view of an ICMP message (the buffer ends where the message ends).
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Next-hop MTU of a fragmentation-needed error (RFC 1191).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        be16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// True when the checksum over the whole message verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the next-hop MTU.
    #[inline]
    pub fn set_next_hop_mtu(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::NEXT_HOP_MTU, v);
    }

    /// Computes and stores the checksum over the whole message.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Error;

    #[test]
    fn echo_round_trip_and_every_truncation() {
        let mut b = [0u8; 12];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_msg_type(types::ECHO_REQUEST);
        p.set_code(0);
        p.set_echo_ident(0x1234);
        p.set_echo_seq(7);
        p.data_mut().copy_from_slice(b"ping");
        p.fill_checksum();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!((p.msg_type(), p.echo_ident(), p.echo_seq()), (8, 0x1234, 7));
        assert_eq!(p.data(), b"ping");
        assert!(!is_error(p.msg_type()) && is_error(types::TIME_EXCEEDED));
        for n in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&b[..n]).unwrap_err(), Error::Truncated);
        }
    }
}
