//! What IPv4 and IPv6 share: protocol numbers and the Internet checksum.

/// IP protocol (IPv6: next-header) numbers the project knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// ICMP.
    Icmp,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ESP.
    Esp,
    /// ICMPv6.
    Icmpv6,
    /// Any other value.
    Unknown(u8),
}

impl IpProtocol {
    /// The number of ICMP.
    pub const ICMP: u8 = 1;
    /// The number of TCP.
    pub const TCP: u8 = 6;
    /// The number of UDP.
    pub const UDP: u8 = 17;
    /// The number of ESP.
    pub const ESP: u8 = 50;
    /// The number of ICMPv6.
    pub const ICMPV6: u8 = 58;
}

impl From<u8> for IpProtocol {
    #[inline]
    fn from(v: u8) -> IpProtocol {
        match v {
            IpProtocol::ICMP => IpProtocol::Icmp,
            IpProtocol::TCP => IpProtocol::Tcp,
            IpProtocol::UDP => IpProtocol::Udp,
            IpProtocol::ESP => IpProtocol::Esp,
            IpProtocol::ICMPV6 => IpProtocol::Icmpv6,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    #[inline]
    fn from(v: IpProtocol) -> u8 {
        match v {
            IpProtocol::Icmp => IpProtocol::ICMP,
            IpProtocol::Tcp => IpProtocol::TCP,
            IpProtocol::Udp => IpProtocol::UDP,
            IpProtocol::Esp => IpProtocol::ESP,
            IpProtocol::Icmpv6 => IpProtocol::ICMPV6,
            IpProtocol::Unknown(other) => other,
        }
    }
}

/// The Internet checksum (RFC 1071).
pub mod checksum {
    /// The folded, uncomplemented ones'-complement sum of `data` added to
    /// `init`.
    pub fn sum(data: &[u8], init: u32) -> u16 {
        let mut s = u64::from(init);
        let mut chunks = data.chunks_exact(2);
        for c in &mut chunks {
            s += u64::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            s += u64::from(u16::from_be_bytes([*last, 0]));
        }
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// The checksum of `data`: 0 when `data` holds a correct checksum field.
    #[inline]
    pub fn checksum(data: &[u8]) -> u16 {
        !sum(data, 0)
    }

    /// The uncomplemented sum of an IPv4 pseudo-header (RFC 768, RFC 9293)
    /// for an upper-layer packet of `len` bytes.
    pub fn pseudo4(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> u32 {
        let w = |a: [u8; 4]| {
            u32::from(u16::from_be_bytes([a[0], a[1]]))
                + u32::from(u16::from_be_bytes([a[2], a[3]]))
        };
        w(src) + w(dst) + u32::from(proto) + len as u32
    }

    /// The checksum of a TCP/UDP segment over IPv4 (its checksum field
    /// holding 0 to compute, or the sent value to verify: 0 when correct).
    pub fn l4_checksum4(src: [u8; 4], dst: [u8; 4], proto: u8, seg: &[u8]) -> u16 {
        !sum(seg, pseudo4(src, dst, proto, seg.len()))
    }

    /// The uncomplemented sum of an IPv6 pseudo-header (RFC 8200 §8.1)
    /// for an upper-layer packet of `len` bytes.
    pub fn pseudo6(src: &[u8; 16], dst: &[u8; 16], proto: u8, len: usize) -> u32 {
        let mut s = 0u32;
        for c in src.chunks_exact(2).chain(dst.chunks_exact(2)) {
            s += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        s + len as u32 + u32::from(proto)
    }

    /// The checksum of an upper-layer message over IPv6 (its checksum field
    /// holding 0 to compute, or the sent value to verify: 0 when correct).
    pub fn l4_checksum6(src: &[u8; 16], dst: &[u8; 16], proto: u8, msg: &[u8]) -> u16 {
        !sum(msg, pseudo6(src, dst, proto, msg.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::checksum::*;
    use super::*;

    #[test]
    fn checksum_rfc1071_example_and_odd_length() {
        // RFC 1071 §3 sample: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&d), !0xddf2);
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn protocol_numbers_round_trip() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(IpProtocol::from(v)), v);
        }
        assert_eq!(IpProtocol::from(6), IpProtocol::Tcp);
        assert_eq!(IpProtocol::from(99), IpProtocol::Unknown(99));
    }
}
