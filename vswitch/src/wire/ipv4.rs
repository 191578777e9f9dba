//! IPv4 headers (RFC 791).

use std::net::Ipv4Addr;

use super::ip::checksum;
use super::{Error, Result, arr, be16, set_be16};

/// Byte offsets of the header's fields, for code that cannot use the
/// view (the DNS fast path's BPF program, checksum fix-ups by protocol).
pub mod field {
    /// Byte offset of the ver ihl field.
    pub const VER_IHL: usize = 0;
    /// Byte offset of the tos field.
    pub const TOS: usize = 1;
    /// Byte offset of the length field.
    pub const LENGTH: usize = 2;
    /// Byte offset of the ident field.
    pub const IDENT: usize = 4;
    /// Byte offset of the flg off field.
    pub const FLG_OFF: usize = 6;
    /// Byte offset of the ttl field.
    pub const TTL: usize = 8;
    /// Byte offset of the protocol field.
    pub const PROTOCOL: usize = 9;
    /// Byte offset of the checksum field.
    pub const CHECKSUM: usize = 10;
    /// Byte offset of the src field.
    pub const SRC: usize = 12;
    /// Byte offset of the dst field.
    pub const DST: usize = 16;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// The don't-fragment bit of the flags/offset word.
pub const FLAG_DF: u16 = 0x4000;
/// The more-fragments bit of the flags/offset word.
pub const FLAG_MF: u16 = 0x2000;
/// The fragment-offset bits (in 8-byte units) of the flags/offset word.
pub const OFFSET_MASK: u16 = 0x1fff;

view! {
    /// A view of an IPv4 packet.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the header alone: at least 20 bytes, version 4, a header
    /// length of at least 20 that the buffer holds. After it every getter
    /// but [`Packet::payload`] is safe (the total length may still lie, as
    /// in the quote of an ICMP error).
    #[inline]
    pub fn check_header(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 || self.header_len() < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if b.len() < self.header_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// [`Packet::check_header`], and the total length lies between the
    /// header length and the buffer's length (trailing padding allowed).
    /// After it no getter can panic.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let ihl = self.header_len();
        let total = usize::from(self.total_len());
        if b[field::VER_IHL] >> 4 != 4 || ihl < HEADER_LEN || total < ihl {
            return Err(Error::Malformed);
        }
        if total > b.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Version nibble.
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (options included).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Type of service byte.
    #[inline]
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// Total length (header and payload).
    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    /// The flags/fragment-offset word as it is.
    #[inline]
    pub fn frag_field(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLG_OFF)
    }

    /// Don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.frag_field() & FLAG_DF != 0
    }

    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.frag_field() & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> usize {
        usize::from(self.frag_field() & OFFSET_MASK) * 8
    }

    /// True for a fragment (MF set or a non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.frag_field() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol number.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address bytes.
    #[inline]
    pub fn src(&self) -> [u8; 4] {
        arr(self.buffer.as_ref(), field::SRC)
    }

    /// Destination address bytes.
    #[inline]
    pub fn dst(&self) -> [u8; 4] {
        arr(self.buffer.as_ref(), field::DST)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src())
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst())
    }

    /// The header, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// True when the header checksum verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.header()) == 0
    }

    /// The payload, up to the total length (padding cut off).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<'a> Packet<&'a [u8]> {
    /// [`Packet::payload`] with the buffer's lifetime.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        &self.buffer[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 4 and the header length in bytes.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((len / 4) as u8 & 0x0f);
    }

    /// Sets the type of service byte.
    #[inline]
    pub fn set_tos(&mut self, v: u8) {
        self.buffer.as_mut()[field::TOS] = v;
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::LENGTH, v);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::IDENT, v);
    }

    /// Sets the flags/fragment-offset word.
    #[inline]
    pub fn set_frag_field(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::FLG_OFF, v);
    }

    /// Sets the time to live.
    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    /// Sets the protocol number.
    #[inline]
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }

    /// Sets the header checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, v: [u8; 4]) {
        self.buffer.as_mut()[field::SRC..field::SRC + 4].copy_from_slice(&v);
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, v: [u8; 4]) {
        self.buffer.as_mut()[field::DST..field::DST + 4].copy_from_slice(&v);
    }

    /// Computes and stores the header checksum.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }

    /// The header, writable.
    #[inline]
    pub fn header_mut(&mut self) -> &mut [u8] {
        let n = self.header_len();
        &mut self.buffer.as_mut()[..n]
    }

    /// The payload up to the total length, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[h..t]
    }
}

/// The fields of an option-less IPv4 header the project writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Protocol number.
    pub protocol: u8,
    /// Payload length.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Type of service byte.
    pub tos: u8,
    /// Don't-fragment flag.
    pub dont_frag: bool,
}

impl Repr {
    /// Reads a checked packet's header (options are dropped, the
    /// identification and fragment offset are not kept).
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            src: p.src(),
            dst: p.dst(),
            protocol: p.protocol(),
            payload_len: p.payload().len(),
            ttl: p.ttl(),
            tos: p.tos(),
            dont_frag: p.dont_frag(),
        }
    }

    /// Bytes the header takes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header (identification 0) with its checksum into
    /// the front of `buf`; the total length saturates at 65535.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut p = Packet::new_unchecked(&mut buf[..HEADER_LEN]);
        p.set_header_len(HEADER_LEN);
        p.set_tos(self.tos);
        p.set_total_len((HEADER_LEN + self.payload_len).min(usize::from(u16::MAX)) as u16);
        p.set_ident(0);
        p.set_frag_field(if self.dont_frag { FLAG_DF } else { 0 });
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src(self.src);
        p.set_dst(self.dst);
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ([u8; 28], Repr) {
        let r = Repr {
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 2],
            protocol: 1,
            payload_len: 8,
            ttl: 64,
            tos: 0xc0,
            dont_frag: true,
        };
        let mut b = [0u8; 28];
        r.emit(&mut b);
        (b, r)
    }

    #[test]
    fn emit_parse_and_every_truncation() {
        let (b, r) = sample();
        let v = Packet::new_checked(&b[..]).unwrap();
        assert!(v.verify_checksum());
        assert_eq!(Repr::parse(&v), r);
        assert_eq!(
            (v.src_addr(), v.dst_addr()),
            ([10, 0, 0, 1].into(), [10, 0, 0, 2].into())
        );
        assert_eq!(v.payload().len(), 8);
        assert!(!v.is_fragment() && v.dont_frag());
        for n in 0..b.len() {
            assert!(Packet::new_checked(&b[..n]).is_err());
        }
        assert!(Packet::new_unchecked(&b[..20]).check_header().is_ok());
    }

    #[test]
    fn bad_version_and_lengths_are_malformed() {
        let (mut b, _) = sample();
        b[0] = 0x65;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        b[0] = 0x44;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        b[0] = 0x45;
        b[3] = 19;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
    }

    #[test]
    fn fragment_fields() {
        let (mut b, _) = sample();
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_frag_field(FLAG_MF | 3);
        assert!(p.is_fragment() && p.more_frags() && !p.dont_frag());
        assert_eq!(p.frag_offset(), 24);
        p.fill_checksum();
        assert!(p.verify_checksum());
    }
}
