//! The few header fields the engine reads and writes, as byte offsets.
//!
//! The forwarding path only looks at the first 14 bytes of a frame, so it
//! indexes them directly after one length check instead of going through a
//! general parser. ARP and IPv4/ICMP are only parsed on the gateway's slow
//! path; the views below check every length before reading, so no accessor
//! can panic on a short or lying frame.

/// Ethernet header length.
pub(crate) const ETH_HDR_LEN: usize = 14;
/// Offset of the destination MAC.
pub(crate) const ETH_DST: usize = 0;
/// Offset of the source MAC.
pub(crate) const ETH_SRC: usize = 6;
/// Offset of the EtherType.
pub(crate) const ETH_TYPE: usize = 12;

/// EtherType of IPv4.
pub(crate) const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub(crate) const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of an 802.1Q tag.
pub(crate) const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType of an 802.1ad (QinQ) service tag.
pub(crate) const ETHERTYPE_QINQ: u16 = 0x88a8;

/// IP protocol number of ICMP.
pub(crate) const IPPROTO_ICMP: u8 = 1;
/// ICMP echo reply type.
pub(crate) const ICMP_ECHO_REPLY: u8 = 0;
/// ICMP echo request type.
pub(crate) const ICMP_ECHO_REQUEST: u8 = 8;

/// Length of an Ethernet/IPv4 ARP packet.
pub(crate) const ARP_LEN: usize = 28;
/// ARP request opcode.
pub(crate) const ARP_REQUEST: u16 = 1;
/// ARP reply opcode.
pub(crate) const ARP_REPLY: u16 = 2;

/// The EtherType of a frame of at least [`ETH_HDR_LEN`] bytes.
#[inline]
pub(crate) fn ethertype(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[ETH_TYPE], frame[ETH_TYPE + 1]])
}

/// Writes an Ethernet header at the front of `buf` (at least 14 bytes).
pub(crate) fn emit_eth(buf: &mut [u8], dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    buf[ETH_DST..ETH_DST + 6].copy_from_slice(&dst);
    buf[ETH_SRC..ETH_SRC + 6].copy_from_slice(&src);
    buf[ETH_TYPE..ETH_TYPE + 2].copy_from_slice(&ethertype.to_be_bytes());
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

/// An Ethernet/IPv4 ARP packet (the only kind the gateway answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArpRepr {
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
    pub(crate) fn parse(p: &[u8]) -> Option<ArpRepr> {
        if p.len() < ARP_LEN || be16(p, 0) != 1 || be16(p, 2) != ETHERTYPE_IPV4 {
            return None;
        }
        if p[4] != 6 || p[5] != 4 {
            return None;
        }
        Some(ArpRepr {
            op: be16(p, 6),
            sha: arr(p, 8),
            spa: arr(p, 14),
            tha: arr(p, 18),
            tpa: arr(p, 24),
        })
    }

    /// Writes the packet into the first [`ARP_LEN`] bytes of `buf`.
    pub(crate) fn emit(&self, buf: &mut [u8]) {
        buf[0..2].copy_from_slice(&1u16.to_be_bytes());
        buf[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        buf[4] = 6;
        buf[5] = 4;
        buf[6..8].copy_from_slice(&self.op.to_be_bytes());
        buf[8..14].copy_from_slice(&self.sha);
        buf[14..18].copy_from_slice(&self.spa);
        buf[18..24].copy_from_slice(&self.tha);
        buf[24..28].copy_from_slice(&self.tpa);
    }
}

/// A checked view of an IPv4 packet: header length, total length and version
/// are consistent with the buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ipv4View<'a> {
    /// The header, options included.
    pub header: &'a [u8],
    /// The payload, up to the header's total length (padding cut off).
    pub payload: &'a [u8],
}

impl<'a> Ipv4View<'a> {
    /// Minimum header length.
    pub(crate) const MIN_LEN: usize = 20;

    /// Checks lengths and version; `None` when the packet is not well formed.
    pub(crate) fn new_checked(p: &'a [u8]) -> Option<Ipv4View<'a>> {
        if p.len() < Self::MIN_LEN || p[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(p[0] & 0x0f) * 4;
        let total = usize::from(be16(p, 2));
        if ihl < Self::MIN_LEN || total < ihl || total > p.len() {
            return None;
        }
        Some(Ipv4View {
            header: &p[..ihl],
            payload: &p[ihl..total],
        })
    }

    /// Protocol number.
    pub(crate) fn protocol(&self) -> u8 {
        self.header[9]
    }

    /// True for a fragment (MF set or a non-zero offset).
    pub(crate) fn is_fragment(&self) -> bool {
        be16(self.header, 6) & 0x3fff != 0
    }

    /// Source address.
    pub(crate) fn src(&self) -> [u8; 4] {
        arr(self.header, 12)
    }

    /// Destination address.
    pub(crate) fn dst(&self) -> [u8; 4] {
        arr(self.header, 16)
    }

    /// Type of service byte.
    pub(crate) fn tos(&self) -> u8 {
        self.header[1]
    }

    /// True when the header checksum verifies.
    pub(crate) fn checksum_ok(&self) -> bool {
        checksum(self.header) == 0
    }
}

/// Writes a 20-byte IPv4 header (no options, DF clear, id 0) with its
/// checksum into the front of `buf`.
pub(crate) fn emit_ipv4(
    buf: &mut [u8],
    tos: u8,
    payload_len: usize,
    ttl: u8,
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
) {
    let total = (Ipv4View::MIN_LEN + payload_len) as u16;
    let h = &mut buf[..Ipv4View::MIN_LEN];
    h[0] = 0x45;
    h[1] = tos;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..8].fill(0);
    h[8] = ttl;
    h[9] = proto;
    h[10..12].fill(0);
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let c = checksum(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The Internet checksum (RFC 1071) of `data`: 0 when `data` holds a
/// correct checksum field.
pub(crate) fn checksum(data: &[u8]) -> u16 {
    !super::checksum::sum(data, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_rfc1071_example_and_odd_length() {
        // RFC 1071 §3 sample: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&d), !0xddf2);
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn arp_round_trip_and_every_truncation() {
        let a = ArpRepr {
            op: ARP_REQUEST,
            sha: [2, 0x42, 10, 0, 0, 2],
            spa: [10, 0, 0, 2],
            tha: [0; 6],
            tpa: [10, 0, 0, 1],
        };
        let mut b = [0u8; ARP_LEN];
        a.emit(&mut b);
        assert_eq!(ArpRepr::parse(&b), Some(a));
        for n in 0..ARP_LEN {
            assert_eq!(ArpRepr::parse(&b[..n]), None);
        }
    }

    #[test]
    fn ipv4_emit_parse_and_every_truncation() {
        let mut b = [0u8; 28];
        emit_ipv4(&mut b, 0, 8, 64, IPPROTO_ICMP, [10, 0, 0, 1], [10, 0, 0, 2]);
        let v = Ipv4View::new_checked(&b).unwrap();
        assert!(v.checksum_ok());
        assert_eq!(
            (v.protocol(), v.src(), v.dst()),
            (1, [10, 0, 0, 1], [10, 0, 0, 2])
        );
        assert_eq!(v.payload.len(), 8);
        assert!(!v.is_fragment());
        for n in 0..b.len() {
            assert!(Ipv4View::new_checked(&b[..n]).is_none());
        }
    }
}
