//! Neighbour discovery (RFC 4861): the solicitation and advertisement
//! bodies inside an ICMPv6 message, and their link-layer address options.

use std::net::Ipv6Addr;

use super::arr;
use super::icmpv6::types;

/// Byte offsets of the header's fields, for code that cannot use the
/// view (the DNS fast path's BPF program, checksum fix-ups by protocol).
pub mod field {
    /// Byte offset of the type field.
    pub const TYPE: usize = 0;
    /// Byte offset of the flags field.
    pub const FLAGS: usize = 4;
    /// Byte offset of the target field.
    pub const TARGET: usize = 8;
    /// Byte offset of the options field.
    pub const OPTIONS: usize = 24;
}

/// Length of an NS or NA without options.
pub const HEADER_LEN: usize = field::OPTIONS;
/// Length of a link-layer address option for Ethernet.
pub const LL_OPTION_LEN: usize = 8;

/// Option types.
pub mod option {
    /// Source link-layer address.
    pub const SOURCE_LL: u8 = 1;
    /// Target link-layer address.
    pub const TARGET_LL: u8 = 2;
}

/// NA flags.
pub mod na_flags {
    /// Router.
    pub const ROUTER: u8 = 0x80;
    /// Solicited.
    pub const SOLICITED: u8 = 0x40;
    /// Override.
    pub const OVERRIDE: u8 = 0x20;
}

view! {
    /// A view of a neighbour solicitation or advertisement (the whole ICMPv6
    /// message, options included).
    Packet, header HEADER_LEN
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// True for a neighbour solicitation.
    #[inline]
    pub fn is_solicitation(&self) -> bool {
        self.buffer.as_ref()[field::TYPE] == types::NEIGHBOUR_SOLICIT
    }

    /// The NA flags byte (see [`na_flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Target address bytes.
    #[inline]
    pub fn target(&self) -> [u8; 16] {
        arr(self.buffer.as_ref(), field::TARGET)
    }

    /// Target address.
    #[inline]
    pub fn target_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.target())
    }

    /// The options.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..]
    }

    /// Whether the options include one of `kind` (a malformed option list
    /// counts as not having it).
    pub fn has_option(&self, kind: u8) -> bool {
        let mut opts = self.options();
        while opts.len() >= 8 {
            let len = usize::from(opts[1]) * 8;
            if len == 0 || len > opts.len() {
                return false;
            }
            if opts[0] == kind {
                return true;
            }
            opts = &opts[len..];
        }
        false
    }
}

/// A neighbour advertisement with a target link-layer address option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvertRepr {
    /// Flags (see [`na_flags`]).
    pub flags: u8,
    /// Target address.
    pub target: [u8; 16],
    /// The target's MAC.
    pub target_mac: [u8; 6],
}

impl AdvertRepr {
    /// Reads an advertisement whose first option is a target link-layer
    /// address; `None` otherwise.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Option<AdvertRepr> {
        let o = p.options();
        if p.buffer.as_ref()[field::TYPE] != types::NEIGHBOUR_ADVERT
            || o.len() < LL_OPTION_LEN
            || o[0] != option::TARGET_LL
            || o[1] != 1
        {
            return None;
        }
        Some(AdvertRepr {
            flags: p.flags(),
            target: p.target(),
            target_mac: arr(o, 2),
        })
    }

    /// Bytes the message takes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + LL_OPTION_LEN
    }

    /// Writes the message (checksum 0: the ICMPv6 layer fills it) into the
    /// front of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        let b = &mut buf[..HEADER_LEN + LL_OPTION_LEN];
        b.fill(0);
        b[field::TYPE] = types::NEIGHBOUR_ADVERT;
        b[field::FLAGS] = self.flags;
        b[field::TARGET..field::TARGET + 16].copy_from_slice(&self.target);
        let o = &mut b[field::OPTIONS..];
        o[0] = option::TARGET_LL;
        o[1] = 1;
        o[2..8].copy_from_slice(&self.target_mac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advert_round_trip_and_every_truncation() {
        let a = AdvertRepr {
            flags: na_flags::ROUTER | na_flags::OVERRIDE,
            target: [0xfd; 16],
            target_mac: [2, 0x42, 0, 0, 0, 1],
        };
        let mut b = [0u8; 32];
        a.emit(&mut b);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(AdvertRepr::parse(&p), Some(a));
        assert!(p.has_option(option::TARGET_LL) && !p.has_option(option::SOURCE_LL));
        assert!(!p.is_solicitation());
        for n in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&b[..n]).unwrap_err(),
                crate::wire::Error::Truncated
            );
        }
    }

    #[test]
    fn a_zero_length_option_ends_the_walk() {
        let mut b = [0u8; 40];
        b[24] = 3;
        b[32] = option::SOURCE_LL;
        b[33] = 1;
        assert!(
            !Packet::new_checked(&b[..])
                .unwrap()
                .has_option(option::SOURCE_LL)
        );
        b[25] = 1;
        assert!(
            Packet::new_checked(&b[..])
                .unwrap()
                .has_option(option::SOURCE_LL)
        );
    }
}
