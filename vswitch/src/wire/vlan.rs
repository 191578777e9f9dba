//! 802.1Q tags: the 4 bytes after the MACs (TPID, then TCI), seen from the
//! frame's start, since tags are inserted and removed in place.

use super::ethernet::{self, EtherType};
use super::{be16, set_be16};

/// Byte offsets of the header's fields, for code that cannot use the
/// view (the DNS fast path's BPF program, checksum fix-ups by protocol).
pub mod field {
    /// Byte offset of the tci field.
    pub const TCI: usize = 14;
    /// Byte offset of the inner type field.
    pub const INNER_TYPE: usize = 16;
}

/// Length of a tag.
pub const TAG_LEN: usize = 4;
/// Length of an Ethernet header with one tag.
pub const HEADER_LEN: usize = ethernet::HEADER_LEN + TAG_LEN;
/// The VLAN id bits of the TCI.
pub const VID_MASK: u16 = 0x0fff;

view! {
    /// A view of an 802.1Q-tagged Ethernet frame.
    Frame, header HEADER_LEN
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// True when the outer EtherType is 802.1Q.
    #[inline]
    pub fn is_tagged(&self) -> bool {
        ethernet::ethertype(self.buffer.as_ref()) == EtherType::VLAN
    }

    /// The tag control information.
    #[inline]
    pub fn tci(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TCI)
    }

    /// The VLAN id.
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & VID_MASK
    }

    /// The priority code point.
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// The EtherType after the tag.
    #[inline]
    pub fn inner_ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::INNER_TYPE)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Writes the 802.1Q TPID and a TCI of VLAN `vid`, priority 0.
    #[inline]
    pub fn set_tag(&mut self, vid: u16) {
        let b = self.buffer.as_mut();
        set_be16(b, ethernet::field::ETHERTYPE, EtherType::VLAN);
        set_be16(b, field::TCI, vid & VID_MASK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_round_trip_and_every_truncation() {
        let mut b = [0u8; HEADER_LEN];
        b[16..18].copy_from_slice(&EtherType::IPV4.to_be_bytes());
        let mut f = Frame::new_unchecked(&mut b[..]);
        f.set_tag(0x1064); // the priority bits are cut
        let f = Frame::new_checked(&b[..]).unwrap();
        assert!(f.is_tagged());
        assert_eq!((f.vid(), f.pcp(), f.inner_ethertype()), (0x064, 0, 0x0800));
        for n in 0..HEADER_LEN {
            assert_eq!(
                Frame::new_checked(&b[..n]).unwrap_err(),
                crate::wire::Error::Truncated
            );
        }
    }
}
