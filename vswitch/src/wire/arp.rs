//! ARP for Ethernet/IPv4 (RFC 826), the only kind the project answers.

use super::ethernet::EtherType;
use super::{Error, Result, arr, be16, set_be16};

/// Byte offsets of the header's fields, for code that cannot use the
/// view (the DNS fast path's BPF program, checksum fix-ups by protocol).
pub mod field {
    /// Byte offset of the htype field.
    pub const HTYPE: usize = 0;
    /// Byte offset of the ptype field.
    pub const PTYPE: usize = 2;
    /// Byte offset of the hlen field.
    pub const HLEN: usize = 4;
    /// Byte offset of the plen field.
    pub const PLEN: usize = 5;
    /// Byte offset of the oper field.
    pub const OPER: usize = 6;
    /// Byte offset of the sha field.
    pub const SHA: usize = 8;
    /// Byte offset of the spa field.
    pub const SPA: usize = 14;
    /// Byte offset of the tha field.
    pub const THA: usize = 18;
    /// Byte offset of the tpa field.
    pub const TPA: usize = 24;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
/// Request opcode.
pub const REQUEST: u16 = 1;
/// Reply opcode.
pub const REPLY: u16 = 2;
/// Hardware type of Ethernet.
const HTYPE_ETHERNET: u16 = 1;

view! {
    /// A view of an ARP packet.
    Packet
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the buffer holds 28 bytes (trailing padding allowed) and the
    /// types and lengths are Ethernet/IPv4's.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        if be16(b, field::HTYPE) != HTYPE_ETHERNET
            || be16(b, field::PTYPE) != EtherType::IPV4
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    /// Opcode.
    #[inline]
    pub fn operation(&self) -> u16 {
        be16(self.buffer.as_ref(), field::OPER)
    }

    /// Sender hardware address.
    #[inline]
    pub fn sha(&self) -> [u8; 6] {
        arr(self.buffer.as_ref(), field::SHA)
    }

    /// Sender protocol address.
    #[inline]
    pub fn spa(&self) -> [u8; 4] {
        arr(self.buffer.as_ref(), field::SPA)
    }

    /// Target hardware address.
    #[inline]
    pub fn tha(&self) -> [u8; 6] {
        arr(self.buffer.as_ref(), field::THA)
    }

    /// Target protocol address.
    #[inline]
    pub fn tpa(&self) -> [u8; 4] {
        arr(self.buffer.as_ref(), field::TPA)
    }
}

/// An Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// Opcode.
    pub op: u16,
    /// Sender hardware address.
    pub sha: [u8; 6],
    /// Sender protocol address.
    pub spa: [u8; 4],
    /// Target hardware address.
    pub tha: [u8; 6],
    /// Target protocol address.
    pub tpa: [u8; 4],
}

impl ArpRepr {
    /// Parses an ARP payload; `None` unless it is Ethernet/IPv4 and long
    /// enough (trailing padding is ignored).
    pub fn parse(p: &[u8]) -> Option<ArpRepr> {
        let p = Packet::new_checked(p).ok()?;
        Some(ArpRepr {
            op: p.operation(),
            sha: p.sha(),
            spa: p.spa(),
            tha: p.tha(),
            tpa: p.tpa(),
        })
    }

    /// Bytes the packet takes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet into the first [`PACKET_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        let b = &mut buf[..PACKET_LEN];
        set_be16(b, field::HTYPE, HTYPE_ETHERNET);
        set_be16(b, field::PTYPE, EtherType::IPV4);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        set_be16(b, field::OPER, self.op);
        b[field::SHA..field::SHA + 6].copy_from_slice(&self.sha);
        b[field::SPA..field::SPA + 4].copy_from_slice(&self.spa);
        b[field::THA..field::THA + 6].copy_from_slice(&self.tha);
        b[field::TPA..field::TPA + 4].copy_from_slice(&self.tpa);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_round_trip_and_every_truncation() {
        let a = ArpRepr {
            op: REQUEST,
            sha: [2, 0x42, 10, 0, 0, 2],
            spa: [10, 0, 0, 2],
            tha: [0; 6],
            tpa: [10, 0, 0, 1],
        };
        let mut b = [0u8; PACKET_LEN];
        a.emit(&mut b);
        assert_eq!(ArpRepr::parse(&b), Some(a));
        for n in 0..PACKET_LEN {
            assert_eq!(ArpRepr::parse(&b[..n]), None);
        }
        b[5] = 16;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
    }
}
