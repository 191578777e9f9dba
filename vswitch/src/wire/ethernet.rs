//! Ethernet II: addresses, EtherTypes and the 14-byte header.

use std::fmt;
use std::net::Ipv4Addr;

use super::{arr, be16, set_be16};

/// Byte offsets of the header's fields, for code that cannot use the
/// view (the DNS fast path's BPF program, checksum fix-ups by protocol).
pub mod field {
    /// Byte offset of the dst field.
    pub const DST: usize = 0;
    /// Byte offset of the src field.
    pub const SRC: usize = 6;
    /// Byte offset of the ethertype field.
    pub const ETHERTYPE: usize = 12;
    /// Byte offset of the payload field.
    pub const PAYLOAD: usize = 14;
}

/// Ethernet header length.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Offset of the two MACs' end (where an 802.1Q tag is inserted).
pub const MACS_LEN: usize = field::ETHERTYPE;

/// EtherType numbers the project knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    /// IPv4.
    Ipv4,
    /// ARP.
    Arp,
    /// IPv6.
    Ipv6,
    /// An 802.1Q tag.
    Vlan,
    /// An 802.1ad (QinQ) service tag.
    QinQ,
    /// Any other value.
    Unknown(u16),
}

impl EtherType {
    /// The number of IPv4.
    pub const IPV4: u16 = 0x0800;
    /// The number of ARP.
    pub const ARP: u16 = 0x0806;
    /// The number of IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// The number of an 802.1Q tag.
    pub const VLAN: u16 = 0x8100;
    /// The number of an 802.1ad tag.
    pub const QINQ: u16 = 0x88a8;
}

impl From<u16> for EtherType {
    #[inline]
    fn from(v: u16) -> EtherType {
        match v {
            EtherType::IPV4 => EtherType::Ipv4,
            EtherType::ARP => EtherType::Arp,
            EtherType::IPV6 => EtherType::Ipv6,
            EtherType::VLAN => EtherType::Vlan,
            EtherType::QINQ => EtherType::QinQ,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    #[inline]
    fn from(v: EtherType) -> u16 {
        match v {
            EtherType::Ipv4 => EtherType::IPV4,
            EtherType::Arp => EtherType::ARP,
            EtherType::Ipv6 => EtherType::IPV6,
            EtherType::Vlan => EtherType::VLAN,
            EtherType::QinQ => EtherType::QINQ,
            EtherType::Unknown(other) => other,
        }
    }
}

/// The EtherType of a frame of at least [`HEADER_LEN`] bytes (the
/// forwarding path's one look at a frame after its length check).
#[inline]
pub fn ethertype(frame: &[u8]) -> u16 {
    be16(frame, field::ETHERTYPE)
}

/// Writes an Ethernet header at the front of `buf` (at least 14 bytes).
#[inline]
pub fn emit(buf: &mut [u8], dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    let mut f = Frame::new_unchecked(buf);
    f.set_dst(dst);
    f.set_src(src);
    f.set_ethertype(ethertype);
}

view! {
    /// A view of an Ethernet II frame.
    Frame, header HEADER_LEN
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Destination address.
    #[inline]
    pub fn dst(&self) -> [u8; 6] {
        arr(self.buffer.as_ref(), field::DST)
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> [u8; 6] {
        arr(self.buffer.as_ref(), field::SRC)
    }

    /// The EtherType as a number.
    #[inline]
    pub fn ethertype_raw(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// The EtherType.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(self.ethertype_raw())
    }

    /// True when the destination is a group (multicast/broadcast) address.
    #[inline]
    pub fn dst_is_multicast(&self) -> bool {
        self.buffer.as_ref()[field::DST] & 1 != 0
    }

    /// True when the source has the group bit (never valid).
    #[inline]
    pub fn src_is_multicast(&self) -> bool {
        self.buffer.as_ref()[field::SRC] & 1 != 0
    }

    /// The payload after the 14-byte header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, v: [u8; 6]) {
        self.buffer.as_mut()[field::DST..field::DST + 6].copy_from_slice(&v);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, v: [u8; 6]) {
        self.buffer.as_mut()[field::SRC..field::SRC + 6].copy_from_slice(&v);
    }

    /// Sets the EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::ETHERTYPE, v);
    }

    /// The payload, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// A MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Broadcast address ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Docker ≤ 27's container MAC: `02:42:` followed by the IPv4 octets (BR-5).
    pub fn docker_from_ipv4(ip: Ipv4Addr) -> MacAddr {
        let o = ip.octets();
        MacAddr([0x02, 0x42, o[0], o[1], o[2], o[3]])
    }

    /// True for group (multicast or broadcast) addresses.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_parse_and_every_truncation() {
        let mut b = [0u8; 20];
        emit(&mut b, [1; 6], [2, 3, 4, 5, 6, 7], EtherType::IPV6);
        let f = Frame::new_checked(&b[..]).unwrap();
        assert_eq!((f.dst(), f.src()), ([1; 6], [2, 3, 4, 5, 6, 7]));
        assert_eq!(f.ethertype(), EtherType::Ipv6);
        assert_eq!(ethertype(&b), 0x86dd);
        assert!(f.dst_is_multicast() && !f.src_is_multicast());
        assert_eq!(f.payload().len(), 6);
        for n in 0..HEADER_LEN {
            assert_eq!(
                Frame::new_checked(&b[..n]).unwrap_err(),
                crate::wire::Error::Truncated
            );
        }
    }

    #[test]
    fn ethertype_numbers_round_trip() {
        for v in [0x0800, 0x0806, 0x86dd, 0x8100, 0x88a8, 0x1234] {
            assert_eq!(u16::from(EtherType::from(v)), v);
        }
        assert_eq!(EtherType::from(0x1234), EtherType::Unknown(0x1234));
    }
}
