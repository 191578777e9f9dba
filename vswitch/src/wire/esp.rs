//! ESP headers (RFC 4303): SPI and sequence number; the IV, ciphertext
//! and ICV that follow are the engine's `esp` module's business.

use super::{be32, set_be32};

/// Byte offsets of the header's fields, for code that cannot use the
/// view (the DNS fast path's BPF program, checksum fix-ups by protocol).
pub mod field {
    /// Byte offset of the spi field.
    pub const SPI: usize = 0;
    /// Byte offset of the seq field.
    pub const SEQ: usize = 4;
}

/// Header length (SPI and sequence number).
pub const HEADER_LEN: usize = 8;

view! {
    /// A view of an ESP packet.
    Packet, header HEADER_LEN
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Security parameter index.
    #[inline]
    pub fn spi(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SPI)
    }

    /// Sequence number (low 32 bits).
    #[inline]
    pub fn seq(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ)
    }

    /// The header, as authenticated data.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }

    /// What follows the header (IV, ciphertext, ICV).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the SPI.
    #[inline]
    pub fn set_spi(&mut self, v: u32) {
        set_be32(self.buffer.as_mut(), field::SPI, v);
    }

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq(&mut self, v: u32) {
        set_be32(self.buffer.as_mut(), field::SEQ, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_truncation() {
        let mut b = [0u8; 12];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_spi(0x1000);
        p.set_seq(7);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.spi(), p.seq(), p.payload().len()), (0x1000, 7, 4));
        for n in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&b[..n]).unwrap_err(),
                crate::wire::Error::Truncated
            );
        }
    }
}
