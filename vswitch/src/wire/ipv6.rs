//! IPv6 fixed headers (RFC 8200). Extension headers are not walked: the
//! engine routes only packets whose next header is the upper layer.

use std::net::Ipv6Addr;

use super::{Error, Result, arr, be16, set_be16};

/// Byte offsets of the header's fields, for code that cannot use the
/// view (the DNS fast path's BPF program, checksum fix-ups by protocol).
pub mod field {
    /// Byte offset of the ver tc flow field.
    pub const VER_TC_FLOW: usize = 0;
    /// Byte offset of the payload len field.
    pub const PAYLOAD_LEN: usize = 4;
    /// Byte offset of the next header field.
    pub const NEXT_HEADER: usize = 6;
    /// Byte offset of the hop limit field.
    pub const HOP_LIMIT: usize = 7;
    /// Byte offset of the src field.
    pub const SRC: usize = 8;
    /// Byte offset of the dst field.
    pub const DST: usize = 24;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;

view! {
    /// A view of an IPv6 packet.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the header alone (40 bytes, version 6): every getter but
    /// [`Packet::payload`] is then safe.
    #[inline]
    pub fn check_header(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    /// [`Packet::check_header`], and the buffer holds the declared payload
    /// (trailing padding allowed). After it no getter can panic.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        self.check_header()?;
        if self.buffer.as_ref().len() < HEADER_LEN + usize::from(self.payload_len()) {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Version nibble.
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    /// Traffic class.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        let b = self.buffer.as_ref();
        (b[field::VER_TC_FLOW] << 4) | (b[field::VER_TC_FLOW + 1] >> 4)
    }

    /// Flow label.
    #[inline]
    pub fn flow_label(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]])
    }

    /// Payload length.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// Next header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address bytes.
    #[inline]
    pub fn src(&self) -> [u8; 16] {
        arr(self.buffer.as_ref(), field::SRC)
    }

    /// Destination address bytes.
    #[inline]
    pub fn dst(&self) -> [u8; 16] {
        arr(self.buffer.as_ref(), field::DST)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.src())
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.dst())
    }

    /// The payload, up to the declared length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

impl<'a> Packet<&'a [u8]> {
    /// [`Packet::payload`] with the buffer's lifetime.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        &self.buffer[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 6, the traffic class and a zero flow label.
    #[inline]
    pub fn set_version_tc(&mut self, traffic_class: u8) {
        let b = self.buffer.as_mut();
        b[0] = 0x60 | (traffic_class >> 4);
        b[1] = traffic_class << 4;
        b[2] = 0;
        b[3] = 0;
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::PAYLOAD_LEN, v);
    }

    /// Sets the next header.
    #[inline]
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = v;
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, v: [u8; 16]) {
        self.buffer.as_mut()[field::SRC..field::SRC + 16].copy_from_slice(&v);
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, v: [u8; 16]) {
        self.buffer.as_mut()[field::DST..field::DST + 16].copy_from_slice(&v);
    }

    /// Everything after the fixed header (to the buffer's end), writable.
    #[inline]
    pub fn rest_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// The fields of an IPv6 header the project writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Next header.
    pub next_header: u8,
    /// Payload length.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
}

impl Repr {
    /// Reads a checked packet's header (the flow label is not kept).
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            src: p.src(),
            dst: p.dst(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
        }
    }

    /// Bytes the header takes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header (flow label 0) into the front of `buf`; the
    /// payload length saturates at 65535.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut p = Packet::new_unchecked(&mut buf[..HEADER_LEN]);
        p.set_version_tc(self.traffic_class);
        p.set_payload_len(self.payload_len.min(usize::from(u16::MAX)) as u16);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src(self.src);
        p.set_dst(self.dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_parse_and_every_truncation() {
        let r = Repr {
            src: [0xfd; 16],
            dst: [0xfe; 16],
            next_header: 58,
            payload_len: 8,
            hop_limit: 255,
            traffic_class: 0xb8,
        };
        let mut b = [0u8; 48];
        r.emit(&mut b);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p), r);
        assert_eq!((p.version(), p.flow_label(), p.payload().len()), (6, 0, 8));
        for n in 0..b.len() {
            assert_eq!(Packet::new_checked(&b[..n]).unwrap_err(), Error::Truncated);
        }
        b[0] = 0x40;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
    }
}
