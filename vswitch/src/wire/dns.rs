//! DNS message headers (RFC 1035 §4.1.1): the fixed 12 bytes before the
//! question. Messages themselves are parsed and built with hickory-proto;
//! this view is for the code that must not parse a whole message to read
//! the header (the embedded DNS's drop test, the forwarder's reply check,
//! a header-only error reply) and for the kernel fast path's BPF program,
//! which takes its displacements from [`field`].

use super::{be16, set_be16};

/// Byte offsets of the header's fields.
pub mod field {
    /// Byte offset of the id field.
    pub const ID: usize = 0;
    /// Byte offset of the first flags byte (QR, opcode, AA, TC, RD).
    pub const FLAGS_HI: usize = 2;
    /// Byte offset of the second flags byte (RA, Z, AD, CD, rcode).
    pub const FLAGS_LO: usize = 3;
    /// Byte offset of the question count.
    pub const QDCOUNT: usize = 4;
    /// Byte offset of the answer count.
    pub const ANCOUNT: usize = 6;
    /// Byte offset of the authority count.
    pub const NSCOUNT: usize = 8;
    /// Byte offset of the additional count.
    pub const ARCOUNT: usize = 10;
}

/// Header length: the question starts here.
pub const HEADER_LEN: usize = 12;

/// The QR bit of [`field::FLAGS_HI`] (set in responses).
pub const QR: u8 = 0x80;
/// QR and the opcode's bits of [`field::FLAGS_HI`] (a standard query has
/// them all clear).
pub const QR_OPCODE: u8 = 0xf8;
/// The opcode's bits of [`field::FLAGS_HI`].
pub const OPCODE: u8 = 0x78;
/// The RD bit of [`field::FLAGS_HI`].
pub const RD: u8 = 0x01;
/// The RA bit of [`field::FLAGS_LO`].
pub const RA: u8 = 0x80;
/// The CD bit of [`field::FLAGS_LO`].
pub const CD: u8 = 0x10;
/// The rcode's bits of [`field::FLAGS_LO`].
pub const RCODE: u8 = 0x0f;

/// True when `msg` holds a header and is a query (QR clear): what the
/// embedded DNS and the forwarder answer at all.
#[inline]
pub fn is_query(msg: &[u8]) -> bool {
    Packet::new_checked(msg).is_ok_and(|h| !h.is_response())
}

view! {
    /// A view of a DNS message's header.
    Packet, header HEADER_LEN
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// The message id.
    #[inline]
    pub fn id(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ID)
    }

    /// True for a response (QR set).
    #[inline]
    pub fn is_response(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS_HI] & QR != 0
    }

    /// The first flags byte (QR, opcode, AA, TC, RD).
    #[inline]
    pub fn flags_hi(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS_HI]
    }

    /// The response code (the low four bits; no EDNS extension).
    #[inline]
    pub fn rcode(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS_LO] & RCODE
    }

    /// The question count.
    #[inline]
    pub fn qdcount(&self) -> u16 {
        be16(self.buffer.as_ref(), field::QDCOUNT)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the message id.
    #[inline]
    pub fn set_id(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::ID, v);
    }

    /// Sets the first flags byte.
    #[inline]
    pub fn set_flags_hi(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS_HI] = v;
    }

    /// Sets the second flags byte.
    #[inline]
    pub fn set_flags_lo(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS_LO] = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};

    /// The view reads what hickory-proto wrote.
    #[test]
    fn agrees_with_hickory() {
        let mut m = Message::new(0xbeef, MessageType::Response, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.metadata.response_code = ResponseCode::NXDomain;
        let name = Name::from_ascii("web.").expect("name");
        m.add_query(Query::query(name, RecordType::A));
        let b = m.to_vec().expect("encode");
        let h = Packet::new_checked(&b[..]).expect("header");
        assert_eq!(h.id(), 0xbeef);
        assert!(h.is_response());
        assert_eq!(h.flags_hi() & RD, RD);
        assert_eq!(h.flags_hi() & QR_OPCODE, QR);
        assert_eq!(h.rcode(), 3);
        assert_eq!(h.qdcount(), 1);
        assert!(!is_query(&b));
        assert!(!is_query(&b[..HEADER_LEN - 1]));

        let mut q = b.clone();
        let mut v = Packet::new_unchecked(&mut q[..]);
        v.set_id(7);
        v.set_flags_hi(RD);
        v.set_flags_lo(0);
        let back = Message::from_vec(&q).expect("decode");
        assert_eq!(back.metadata.id, 7);
        assert_eq!(back.metadata.message_type, MessageType::Query);
        assert!(is_query(&q));
        assert_eq!(back.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            Packet::new_checked(&b[..HEADER_LEN - 1]).err(),
            Some(crate::wire::Error::Truncated)
        );
    }
}
