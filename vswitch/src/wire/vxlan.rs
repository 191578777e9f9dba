//! VXLAN headers (RFC 7348): 8 bytes after UDP, then the inner frame.

/// Byte offsets of the header's fields, for code that cannot use the
/// view (the DNS fast path's BPF program, checksum fix-ups by protocol).
pub mod field {
    /// Byte offset of the flags field.
    pub const FLAGS: usize = 0;
    /// Byte offset of the vni field.
    pub const VNI: usize = 4;
}

/// Header length.
pub const HEADER_LEN: usize = 8;
/// The IANA UDP port.
pub const PORT: u16 = 4789;
/// The I flag: the VNI is valid.
pub const FLAG_I: u8 = 0x08;

view! {
    /// A view of a VXLAN packet (header and inner frame).
    Packet, header HEADER_LEN
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// The flags byte.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// True when the I flag says the VNI is valid.
    #[inline]
    pub fn vni_valid(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// The 24-bit VNI.
    #[inline]
    pub fn vni(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([0, b[field::VNI], b[field::VNI + 1], b[field::VNI + 2]])
    }

    /// The inner frame.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

/// A VXLAN header with a valid VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// The VNI (24 bits; higher bits are cut).
    pub vni: u32,
}

impl Repr {
    /// Reads a header; `None` without the I flag.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Option<Repr> {
        p.vni_valid().then(|| Repr { vni: p.vni() })
    }

    /// Bytes the header takes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the front of `buf`.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) {
        let b = &mut buf[..HEADER_LEN];
        b.fill(0);
        b[field::FLAGS] = FLAG_I;
        b[field::VNI..field::VNI + 3].copy_from_slice(&self.vni.to_be_bytes()[1..4]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_truncation() {
        let r = Repr { vni: 0x0012_3456 };
        let mut b = [0xffu8; 10];
        r.emit(&mut b);
        assert_eq!(&b[..8], &[0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p), Some(r));
        assert_eq!(p.payload().len(), 2);
        for n in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&b[..n]).unwrap_err(),
                crate::wire::Error::Truncated
            );
        }
        b[0] = 0;
        assert_eq!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()), None);
    }
}
