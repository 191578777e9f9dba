//! TCP headers (RFC 9293): the fields the engine reads (ports, flags,
//! sequence numbers for GSO) and writes (ports for NAT, checksums).

use super::{be16, be32, set_be16, set_be32};

/// Byte offsets of the header's fields, for code that cannot use the
/// view (the DNS fast path's BPF program, checksum fix-ups by protocol).
pub mod field {
    /// Byte offset of the src port field.
    pub const SRC_PORT: usize = 0;
    /// Byte offset of the dst port field.
    pub const DST_PORT: usize = 2;
    /// Byte offset of the seq field.
    pub const SEQ: usize = 4;
    /// Byte offset of the ack field.
    pub const ACK: usize = 8;
    /// Byte offset of the data off field.
    pub const DATA_OFF: usize = 12;
    /// Byte offset of the flags field.
    pub const FLAGS: usize = 13;
    /// Byte offset of the window field.
    pub const WINDOW: usize = 14;
    /// Byte offset of the checksum field.
    pub const CHECKSUM: usize = 16;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

/// TCP flag bits (the flags byte).
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;
}

view! {
    /// A view of a TCP segment. `check_len` checks the fixed 20 bytes only:
    /// the data offset is read as it is (a lying one makes
    /// [`Packet::payload`] empty, never a panic).
    Packet, header HEADER_LEN
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ)
    }

    /// Acknowledgement number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK)
    }

    /// Header length in bytes from the data offset (not validated).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flags byte (see [`flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Window size.
    #[inline]
    pub fn window(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The data after the header (empty when the data offset lies).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, v: u32) {
        set_be32(self.buffer.as_mut(), field::SEQ, v);
    }

    /// Sets the acknowledgement number.
    #[inline]
    pub fn set_ack_number(&mut self, v: u32) {
        set_be32(self.buffer.as_mut(), field::ACK, v);
    }

    /// Sets the header length in bytes (a multiple of 4).
    #[inline]
    pub fn set_header_len(&mut self, v: usize) {
        let b = self.buffer.as_mut();
        b[field::DATA_OFF] = (b[field::DATA_OFF] & 0x0f) | (((v / 4) as u8) << 4);
    }

    /// Sets the flags byte.
    #[inline]
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }

    /// Sets the window size.
    #[inline]
    pub fn set_window(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::WINDOW, v);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::CHECKSUM, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_every_truncation() {
        let mut b = [0u8; 24];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_src_port(1234);
        p.set_dst_port(80);
        p.set_seq_number(0xdead_beef);
        p.set_ack_number(7);
        p.set_header_len(20);
        p.set_flags(flags::SYN | flags::ACK);
        p.set_window(65535);
        p.set_checksum(0x1234);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (1234, 80));
        assert_eq!((p.seq_number(), p.ack_number()), (0xdead_beef, 7));
        assert_eq!((p.header_len(), p.flags(), p.window()), (20, 0x12, 65535));
        assert_eq!((p.checksum(), p.payload().len()), (0x1234, 4));
        for n in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&b[..n]).unwrap_err(),
                crate::wire::Error::Truncated
            );
        }
        b[12] = 0xf0; // 60-byte header in a 24-byte buffer
        assert!(Packet::new_checked(&b[..]).unwrap().payload().is_empty());
    }
}
