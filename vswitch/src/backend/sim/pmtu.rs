//! Path MTU discovery for the sim's host stacks, which smoltcp lacks, with
//! Linux's semantics (`__ip_rt_update_pmtu`, `rt6_do_update_pmtu`):
//!
//! - An ICMP "fragmentation needed" or ICMPv6 "packet too big" a node
//!   receives about a packet it sent lowers the path MTU towards that
//!   packet's destination, never below 552 (IPv4, `min_pmtu`) or 1280
//!   (IPv6), and never raises it; the entry lasts 10 minutes
//!   (`mtu_expires`), per node (a network namespace's route exceptions).
//! - What a stack sends to such a destination is made to fit, as the
//!   kernel would have built it: TCP segments are cut to the path's MSS
//!   (the kernel's TCP lowers its MSS; smoltcp's segments are sized from
//!   the interface MTU, which it reads once, so the sim cuts them below
//!   TCP as TSO would, with the same sequence numbers), other IPv4
//!   datagrams are fragmented at the source, DF cleared (the kernel's
//!   `IP_PMTUDISC_WANT` and `DONT` sockets).
//! - A ping with DF above the path MTU is refused before it leaves
//!   ("message too long (mtu N)", EMSGSIZE), in [`super::probes`].
//!
//! The kernel's ICMP socket sends with `IP_PMTUDISC_DONT`: echo replies
//! and errors carry no DF, where smoltcp sets DF on every IPv4 packet
//! ([`linux_df`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::engine::{Packet, VnetHdr};
use crate::scenario::plan::Node;

/// How long a learned path MTU lasts (`ip_rt_mtu_expires`,
/// `ip6_rt_mtu_expires`: 10 minutes), virtual µs.
pub(crate) const EXPIRES_US: u64 = 600_000_000;
/// The lowest IPv4 path MTU Linux takes from an ICMP error
/// (`ip_rt_min_pmtu`).
const MIN_PMTU4: u16 = 552;
/// IPv6's minimum link MTU (RFC 8200).
const MIN_MTU6: u16 = 1280;

const ETH: usize = 14;

/// One learned path MTU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    dst: IpAddr,
    mtu: u16,
    until_us: u64,
}

/// Every node's learned path MTUs.
#[derive(Clone, Debug, Default)]
pub(crate) struct PathMtus(HashMap<Node, Vec<Entry>>);

impl PathMtus {
    /// The path MTU `node` knows towards `dst` at `now_us`, if lower than
    /// its link's.
    pub(crate) fn get(&self, node: Node, dst: IpAddr, now_us: u64) -> Option<u16> {
        self.0
            .get(&node)?
            .iter()
            .find(|e| e.dst == dst && e.until_us > now_us)
            .map(|e| e.mtu)
    }

    /// Whether no node knows any path MTU (the common case: nothing to do
    /// per frame).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `node` was told at `now_us` that `dst` is `mtu` bytes away, over a
    /// link of `link_mtu`: as the kernel updates its route exception.
    pub(crate) fn learn(&mut self, node: Node, dst: IpAddr, mtu: u32, link_mtu: u16, now_us: u64) {
        let floor = if dst.is_ipv4() { MIN_PMTU4 } else { MIN_MTU6 };
        let mtu = u16::try_from(mtu).unwrap_or(u16::MAX).max(floor);
        let current = self.get(node, dst, now_us).unwrap_or(link_mtu);
        if mtu >= current {
            return;
        }
        let v = self.0.entry(node).or_default();
        v.retain(|e| e.dst != dst && e.until_us > now_us);
        v.push(Entry {
            dst,
            mtu,
            until_us: now_us + EXPIRES_US,
        });
    }
}

/// What an ICMP error in frame `f` says about the path MTU: (the quoted
/// packet's source, its destination, the MTU) for a "fragmentation
/// needed" (IPv4, type 3 code 4, a non-zero next-hop MTU) or "packet too
/// big" (ICMPv6 type 2).
pub(crate) fn too_big(f: &[u8]) -> Option<(IpAddr, IpAddr, u32)> {
    match f.get(12..14)? {
        [0x08, 0x00] => {
            let ihl = usize::from(f.get(ETH)? & 0x0f) * 4;
            let icmp = f.get(ETH + ihl..)?;
            if *f.get(ETH + 9)? != 1 || icmp.get(0..2)? != [3, 4] {
                return None;
            }
            let mtu = u16::from_be_bytes(icmp.get(6..8)?.try_into().ok()?);
            let q = icmp.get(8..28)?;
            let src: [u8; 4] = q[12..16].try_into().ok()?;
            let dst: [u8; 4] = q[16..20].try_into().ok()?;
            (mtu != 0).then(|| {
                (
                    IpAddr::V4(Ipv4Addr::from(src)),
                    IpAddr::V4(Ipv4Addr::from(dst)),
                    u32::from(mtu),
                )
            })
        }
        [0x86, 0xdd] => {
            let icmp = f.get(ETH + 40..)?;
            if *f.get(ETH + 6)? != 58 || *icmp.first()? != 2 {
                return None;
            }
            let mtu = u32::from_be_bytes(icmp.get(4..8)?.try_into().ok()?);
            let q = icmp.get(8..48)?;
            let src: [u8; 16] = q[8..24].try_into().ok()?;
            let dst: [u8; 16] = q[24..40].try_into().ok()?;
            Some((
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                mtu,
            ))
        }
        _ => None,
    }
}

/// The destination of the IP packet in frame `f`.
pub(crate) fn destination(f: &[u8]) -> Option<IpAddr> {
    match f.get(12..14)? {
        [0x08, 0x00] => {
            let d: [u8; 4] = f.get(ETH + 16..ETH + 20)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(d)))
        }
        [0x86, 0xdd] => {
            let d: [u8; 16] = f.get(ETH + 24..ETH + 40)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(d)))
        }
        _ => None,
    }
}

/// Whether frame `f` is a TCP segment (IPv4 unfragmented, or IPv6 with
/// TCP right after the header).
pub(crate) fn is_tcp(f: &[u8]) -> bool {
    match f.get(12..14) {
        Some([0x08, 0x00]) => {
            let whole = f
                .get(ETH + 6..ETH + 8)
                .is_some_and(|b| b[0] & 0x3f == 0 && b[1] == 0);
            whole && f.get(ETH + 9) == Some(&6)
        }
        Some([0x86, 0xdd]) => f.get(ETH + 6) == Some(&6),
        _ => false,
    }
}

/// Frame `f` made to fit path MTU `mtu`: a TCP segment cut into segments
/// of the path's MSS (the same headers and options, sequence numbers
/// following on, FIN and PSH on the last), another IPv4 datagram
/// fragmented with DF cleared. What fits, and IPv6 other than TCP
/// (smoltcp has no IPv6 fragmentation), leaves whole.
pub(crate) fn fit(f: Vec<u8>, mtu: u16) -> Vec<Vec<u8>> {
    let mtu = usize::from(mtu);
    if f.len() <= ETH + mtu {
        return vec![f];
    }
    let (gso_type, l4) = match f.get(12..14) {
        Some([0x08, 0x00]) if is_tcp(&f) => {
            (VnetHdr::GSO_TCPV4, ETH + usize::from(f[ETH] & 0x0f) * 4)
        }
        Some([0x86, 0xdd]) if is_tcp(&f) => (VnetHdr::GSO_TCPV6, ETH + 40),
        _ => return super::frag::fragment_to(f, mtu),
    };
    let thl = f.get(l4 + 12).map_or(0, |b| usize::from(b >> 4) * 4);
    let Some(mss) = (ETH + mtu).checked_sub(l4 + thl).filter(|m| *m >= 8) else {
        return vec![f];
    };
    let pkt = Packet::from_frame(
        VnetHdr {
            gso_type,
            gso_size: mss as u16,
            ..VnetHdr::default()
        },
        &f,
    );
    crate::engine::gso6::segment_tcp(&pkt)
        .iter()
        .map(|p| p.frame().to_vec())
        .collect()
}

/// DF on an IPv4 ICMP message a stack sends, as the kernel sets it: an
/// echo request keeps it when `request_df` says so, everything else the
/// kernel's ICMP socket sends (replies, errors) goes without it. The
/// header checksum follows.
pub(crate) fn linux_df(f: &mut [u8], request_df: impl Fn(u16) -> bool) {
    if f.len() < ETH + 20 || f[12..14] != [0x08, 0x00] || f[ETH + 9] != 1 {
        return;
    }
    let ihl = usize::from(f[ETH] & 0x0f) * 4;
    let Some(icmp) = f.get(ETH + ihl..ETH + ihl + 8) else {
        return;
    };
    let keep = icmp[0] == 8 && request_df(u16::from_be_bytes([icmp[4], icmp[5]]));
    let df = f[ETH + 6] & 0x40 != 0;
    if df && !keep {
        let mut ip = crate::wire::ipv4::Packet::new_unchecked(&mut f[ETH..ETH + ihl]);
        let field = ip.frag_field() & !0x4000;
        ip.set_frag_field(field);
        ip.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

    const A: [u8; 4] = [10, 0, 40, 2];
    const B: [u8; 4] = [10, 0, 40, 3];

    fn tcp4(payload: usize) -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(A, B, 64)
            .tcp(32768, 5201, 1000, 64000)
            .ack(1)
            .psh()
            .write(&mut f, &vec![7u8; payload])
            .unwrap();
        f
    }

    fn echo4(ty: u8, payload: usize) -> Vec<u8> {
        let mut f = Vec::new();
        let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(A, B, 64);
        let b = if ty == 8 {
            b.icmpv4_echo_request(0x77, 1)
        } else {
            b.icmpv4_echo_reply(0x77, 1)
        };
        b.write(&mut f, &vec![0x5a; payload]).unwrap();
        f[14 + 6] |= 0x40; // DF, as smoltcp sends every IPv4 packet
        let mut ip = crate::wire::ipv4::Packet::new_unchecked(&mut f[14..34]);
        ip.fill_checksum();
        f
    }

    /// A "fragmentation needed" (MTU `mtu`) from B quoting `quoted`.
    fn frag_needed(quoted: &[u8], mtu: u16) -> Vec<u8> {
        let mut icmp = vec![3, 4, 0, 0, 0, 0];
        icmp.extend_from_slice(&mtu.to_be_bytes());
        icmp.extend_from_slice(&quoted[14..14 + 28]);
        let mut f = Vec::new();
        PacketBuilder::ethernet2([4; 6], [2; 6])
            .ipv4(B, A, 64)
            .write(&mut f, etherparse::IpNumber(1), &icmp)
            .unwrap();
        f
    }

    /// Linux: only ever lowered, never below 552 (IPv4) or 1280 (IPv6),
    /// per node, for 10 minutes.
    #[test]
    fn learned_as_the_kernel_learns() {
        let mut m = PathMtus::default();
        let (a, c) = (Node::Container(0), Node::Container(1));
        let b = IpAddr::V4(Ipv4Addr::from(B));
        assert!(m.is_empty());
        m.learn(a, b, 1500, 1450, 0);
        assert_eq!(m.get(a, b, 0), None, "not below the link");
        m.learn(a, b, 1350, 1450, 0);
        assert_eq!(m.get(a, b, 1), Some(1350));
        assert_eq!(m.get(c, b, 1), None, "another namespace");
        m.learn(a, b, 1400, 1450, 5);
        assert_eq!(m.get(a, b, 6), Some(1350), "never raised");
        m.learn(a, b, 300, 1450, 10);
        assert_eq!(m.get(a, b, 11), Some(552));
        assert_eq!(m.get(a, b, 10 + EXPIRES_US - 1), Some(552));
        assert_eq!(m.get(a, b, 10 + EXPIRES_US), None, "expired");
        let b6: IpAddr = "fd00:40::3".parse().unwrap();
        m.learn(a, b6, 1000, 1450, 0);
        assert_eq!(m.get(a, b6, 1), Some(1280));
    }

    #[test]
    fn too_big_reads_the_quote() {
        let f = frag_needed(&tcp4(1410), 1350);
        let (src, dst, mtu) = too_big(&f).unwrap();
        assert_eq!((src, dst, mtu), (A.into(), B.into(), 1350));
        // A zero MTU (RFC 792 routers) and other errors teach nothing.
        assert_eq!(too_big(&frag_needed(&tcp4(1410), 0)), None);
        let mut unreachable = f.clone();
        unreachable[14 + 20 + 1] = 1;
        assert_eq!(too_big(&unreachable), None);
        for n in 0..f.len() {
            let _ = too_big(&f[..n]);
        }
        // ICMPv6 packet too big.
        let quoted = {
            let mut q = Vec::new();
            PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64)
                .tcp(1, 2, 3, 4)
                .write(&mut q, &[0; 1200])
                .unwrap();
            q
        };
        let mut msg = vec![2, 0, 0, 0, 0, 0, 0x05, 0x46];
        msg.extend_from_slice(&quoted[..1232]);
        let mut f6 = Vec::new();
        PacketBuilder::ethernet2([4; 6], [2; 6])
            .ipv6([0xfe; 16], [0xfd; 16], 64)
            .write(&mut f6, etherparse::IpNumber(58), &msg)
            .unwrap();
        let (src, dst, mtu) = too_big(&f6).unwrap();
        assert_eq!(
            (src, dst, mtu),
            (
                IpAddr::V6(Ipv6Addr::from([0xfd; 16])),
                IpAddr::V6(Ipv6Addr::from([0xfe; 16])),
                1350
            )
        );
    }

    /// A TCP segment cut to the path's MSS: sizes, sequence numbers,
    /// flags and checksums as etherparse reads them, DF kept.
    #[test]
    fn tcp_is_cut_to_the_path_mss() {
        let segs = fit(tcp4(1410), 1350);
        assert_eq!(segs.len(), 2);
        let mut seq = 1000;
        for (i, s) in segs.iter().enumerate() {
            assert!(s.len() - 14 <= 1350);
            let p = SlicedPacket::from_ethernet(s).unwrap();
            let Some(NetSlice::Ipv4(ip)) = &p.net else {
                panic!("not IPv4")
            };
            let Some(TransportSlice::Tcp(t)) = &p.transport else {
                panic!("not TCP")
            };
            assert!(ip.header().dont_fragment());
            let h = ip.header().to_header();
            assert_eq!(h.header_checksum, h.calc_header_checksum());
            let want = t
                .to_header()
                .calc_checksum_ipv4_raw(A, B, t.payload())
                .unwrap();
            assert_eq!(t.checksum(), want);
            assert_eq!(t.sequence_number(), seq);
            assert_eq!(t.psh(), i == 1);
            seq += t.payload().len() as u32;
        }
        assert_eq!(seq, 1000 + 1410);
        assert_eq!(fit(tcp4(100), 1350).len(), 1, "what fits leaves whole");
    }

    /// Other IPv4 datagrams are fragmented at the source, DF cleared.
    #[test]
    fn other_ipv4_is_fragmented_at_the_source() {
        let frags = fit(echo4(8, 1400), 1350);
        assert_eq!(frags.len(), 2);
        let (f0, f1) = (&frags[0], &frags[1]);
        assert_eq!(f0.len(), 14 + 20 + 1328);
        assert_eq!(u16::from_be_bytes([f0[20], f0[21]]), 0x2000);
        assert_eq!(u16::from_be_bytes([f1[20], f1[21]]), 1328 / 8);
        assert_eq!(f0.len() + f1.len() - 2 * 34, 1408);
    }

    /// The kernel's ICMP socket sends without DF; a ping keeps its own.
    #[test]
    fn icmp_df_as_linux_sets_it() {
        let mut reply = echo4(0, 56);
        linux_df(&mut reply, |_| true);
        assert_eq!(reply[20] & 0x40, 0);
        assert!(crate::wire::ipv4::Packet::new_unchecked(&reply[14..34]).verify_checksum());
        let mut req = echo4(8, 56);
        linux_df(&mut req, |id| id == 0x77);
        assert_eq!(req[20] & 0x40, 0x40);
        linux_df(&mut req, |_| false);
        assert_eq!(req[20] & 0x40, 0);
        let mut seg = tcp4(10);
        let before = seg.clone();
        linux_df(&mut seg, |_| false);
        assert_eq!(seg, before);
    }
}
