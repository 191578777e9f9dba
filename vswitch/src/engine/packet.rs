//! A frame plus its virtio-net header, carried through the engine as metadata.
//!
//! TAP devices opened with `IFF_VNET_HDR` prepend a `virtio_net_hdr` to every
//! frame. With `TUNSETOFFLOAD` (CSUM, TSO4, TSO6) the kernel hands us frames
//! with partial checksums and GSO super-frames up to 64 KiB; the engine keeps
//! the header beside the frame so that it can be written back unchanged (or
//! fixed up when headers move) on the egress TAP.

/// Size of the legacy `virtio_net_hdr` (no `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;
/// Room kept in front of a frame for tags and tunnel headers.
pub const HEADROOM: usize = 128;
/// Largest frame the engine accepts: a 64 KiB GSO frame plus link headers.
pub const MAX_FRAME: usize = 65535 + 14 + 4;

/// The virtio-net header (little-endian on the wire, as the TAP uses).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`.
    pub gso_type: u8,
    /// Length of the headers to replicate per segment.
    pub hdr_len: u16,
    /// Segment payload size.
    pub gso_size: u16,
    /// Where checksumming starts (from the start of the frame).
    pub csum_start: u16,
    /// Where the checksum goes, relative to `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// The checksum is partial: finish it from `csum_start`, store at `csum_offset`.
    pub const F_NEEDS_CSUM: u8 = 1;
    /// The checksum is already verified.
    pub const F_DATA_VALID: u8 = 2;
    /// Not a GSO frame.
    pub const GSO_NONE: u8 = 0;
    /// TCP over IPv4 segmentation.
    pub const GSO_TCPV4: u8 = 1;
    /// UDP fragmentation offload.
    pub const GSO_UDP: u8 = 3;
    /// TCP over IPv6 segmentation.
    pub const GSO_TCPV6: u8 = 4;
    /// UDP segmentation (USO).
    pub const GSO_UDP_L4: u8 = 5;
    /// ECN bit ORed into `gso_type`.
    pub const GSO_ECN: u8 = 0x80;

    /// Parses the 10-byte header.
    pub fn from_bytes(b: &[u8; VNET_HDR_LEN]) -> VnetHdr {
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16::from_le_bytes([b[2], b[3]]),
            gso_size: u16::from_le_bytes([b[4], b[5]]),
            csum_start: u16::from_le_bytes([b[6], b[7]]),
            csum_offset: u16::from_le_bytes([b[8], b[9]]),
        }
    }

    /// Serialises the 10-byte header.
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// True when the frame is a GSO super-frame.
    pub fn is_gso(&self) -> bool {
        self.gso_type & !Self::GSO_ECN != Self::GSO_NONE
    }

    /// Moves the checksum/GSO offsets when `delta` bytes are inserted
    /// (positive) or removed (negative) in front of the L3 header.
    pub fn shift(&mut self, delta: i32) {
        let mv = |v: u16| (i32::from(v) + delta).clamp(0, i32::from(u16::MAX)) as u16;
        if self.flags & Self::F_NEEDS_CSUM != 0 {
            self.csum_start = mv(self.csum_start);
        }
        if self.hdr_len != 0 {
            self.hdr_len = mv(self.hdr_len);
        }
    }
}

/// A frame in a reusable buffer with headroom, plus its vnet header.
#[derive(Clone)]
pub struct Packet {
    /// The virtio-net metadata.
    pub hdr: VnetHdr,
    buf: Box<[u8]>,
    start: usize,
    len: usize,
}

impl std::fmt::Debug for Packet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packet")
            .field("hdr", &self.hdr)
            .field("len", &self.len)
            .finish()
    }
}

impl Default for Packet {
    fn default() -> Self {
        Packet::new()
    }
}

impl Packet {
    /// An empty packet with room for the largest frame.
    pub fn new() -> Packet {
        Packet {
            hdr: VnetHdr::default(),
            buf: vec![0u8; HEADROOM + MAX_FRAME].into_boxed_slice(),
            start: HEADROOM,
            len: 0,
        }
    }

    /// A packet holding a copy of `frame` (frames longer than `MAX_FRAME` are cut).
    pub fn from_frame(hdr: VnetHdr, frame: &[u8]) -> Packet {
        let n = frame.len().min(MAX_FRAME);
        let mut buf = vec![0u8; HEADROOM + n].into_boxed_slice();
        buf[HEADROOM..].copy_from_slice(&frame[..n]);
        Packet {
            hdr,
            buf,
            start: HEADROOM,
            len: n,
        }
    }

    /// A packet holding `len` zero bytes (cut at `MAX_FRAME`), for frames the
    /// engine builds itself: one allocation sized to the frame.
    pub fn zeroed(hdr: VnetHdr, len: usize) -> Packet {
        let n = len.min(MAX_FRAME);
        Packet {
            hdr,
            buf: vec![0u8; HEADROOM + n].into_boxed_slice(),
            start: HEADROOM,
            len: n,
        }
    }

    /// The frame bytes.
    #[inline]
    pub fn frame(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// The frame bytes, writable.
    #[inline]
    pub fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }

    /// Frame length.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Resets headroom and returns the whole area a read may fill.
    pub fn read_area(&mut self) -> &mut [u8] {
        self.start = HEADROOM;
        self.len = 0;
        &mut self.buf[HEADROOM..]
    }

    /// Sets the frame length after a read into `read_area`.
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.buf.len() - self.start);
    }

    /// Grows the frame at the front by `n` bytes and returns them, or None
    /// when there is no headroom left.
    pub fn push_front(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.start {
            return None;
        }
        self.start -= n;
        self.len += n;
        Some(&mut self.buf[self.start..self.start + n])
    }

    /// Drops `n` bytes from the front (clamped to the frame length).
    pub fn pull_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.start += n;
        self.len -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_hdr_round_trip() {
        let h = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            gso_type: VnetHdr::GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::from_bytes(&h.to_bytes()), h);
        assert!(h.is_gso());
    }

    #[test]
    fn shift_moves_offsets_only_when_set() {
        let mut h = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            hdr_len: 66,
            ..VnetHdr::default()
        };
        h.shift(4);
        assert_eq!((h.csum_start, h.csum_offset, h.hdr_len), (38, 16, 70));
        h.shift(-4);
        assert_eq!((h.csum_start, h.hdr_len), (34, 66));
        let mut none = VnetHdr::default();
        none.shift(4);
        assert_eq!(none, VnetHdr::default());
    }

    #[test]
    fn push_and_pull_front() {
        let mut p = Packet::from_frame(VnetHdr::default(), &[1, 2, 3]);
        p.push_front(2).unwrap().copy_from_slice(&[9, 9]);
        assert_eq!(p.frame(), &[9, 9, 1, 2, 3]);
        p.pull_front(2);
        assert_eq!(p.frame(), &[1, 2, 3]);
        assert!(p.push_front(HEADROOM + 1).is_none());
    }
}
