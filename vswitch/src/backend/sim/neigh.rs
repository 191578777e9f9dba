//! Neighbour resolution that smoltcp's rate limit withholds.
//!
//! smoltcp's neighbour cache sends at most one ARP request or neighbour
//! solicitation a second per interface (`Cache::SILENT_TIME`): within that
//! second a lookup of another unknown neighbour fails without a word and
//! the packet waits for the second to end. The kernel asks per neighbour
//! at once and queues the packet meanwhile, so a check with a short
//! timeout to a second new neighbour would fail on the sim alone, and in
//! virtual time no faster machine hides it. The sim therefore sends the
//! solicitation smoltcp withheld, as the interface itself would have (its
//! MAC and source address, smoltcp's own form); the answer fills smoltcp's
//! cache (it takes any ARP packet aimed at it from its subnet, and
//! unsolicited advertisements) and the waiting packet leaves.
//!
//! Withheld is read from the frames of one poll, while the interface is
//! inside the second after smoltcp's own last solicitation: a packet the
//! sim expected the stack to send ([`SimWorld::expect`]: a probe's, the
//! proxy's) that left neither itself nor a solicitation for its next hop,
//! or the answer to an IPv6 echo request, SYN or datagram it received (the
//! IPv4 answers have their own help, [`super::stack::arp_for`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv6Packet, Ipv6Repr, NdiscRepr,
    RawHardwareAddress,
};

use super::SimWorld;
use super::stack::Stack;

/// smoltcp's silence after a solicitation, virtual µs.
const SILENT_US: u64 = 1_000_000;

const ETH: usize = 14;

impl Stack {
    /// The next hop towards `dst`, as smoltcp routes: `dst` itself on the
    /// interface's subnets (or an on-link host route), else the gateway of
    /// the longest route.
    pub(crate) fn next_hop(&self, dst: IpAddr) -> Option<IpAddr> {
        if self.on_link(dst) || self.onlink.contains(&dst) {
            return Some(dst);
        }
        self.routes
            .iter()
            .filter(|(n, via)| via.is_some() && n.contains(&dst))
            .max_by_key(|(n, _)| n.prefix_len())
            .and_then(|(_, via)| *via)
    }

    /// The ARP request or neighbour solicitation for `nh` as smoltcp
    /// sends it from this interface: from its first IPv4 address (target
    /// hardware address broadcast), or from its source address towards
    /// `nh` to the solicited-node group with the source link-layer option.
    pub(crate) fn solicitation(&self, nh: IpAddr) -> Option<Vec<u8>> {
        let mac = self.mac();
        match nh {
            IpAddr::V4(t) => {
                let spa = self.iface.get_source_address_ipv4(&t)?;
                let mut f = Vec::with_capacity(42);
                f.extend_from_slice(&[0xff; 6]);
                f.extend_from_slice(&mac);
                f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
                f.extend_from_slice(&mac);
                f.extend_from_slice(&spa.octets());
                f.extend_from_slice(&[0xff; 6]);
                f.extend_from_slice(&t.octets());
                Some(f)
            }
            IpAddr::V6(t) => {
                let src = self.iface.get_source_address_ipv6(&t);
                let o = t.octets();
                let group = Ipv6Addr::new(
                    0xff02,
                    0,
                    0,
                    0,
                    0,
                    1,
                    0xff00 | u16::from(o[13]),
                    u16::from_be_bytes([o[14], o[15]]),
                );
                let ns = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
                    target_addr: t,
                    lladdr: Some(RawHardwareAddress::from(EthernetAddress(mac))),
                });
                let ip = Ipv6Repr {
                    src_addr: src,
                    dst_addr: group,
                    next_header: IpProtocol::Icmpv6,
                    payload_len: ns.buffer_len(),
                    hop_limit: 255,
                };
                let mut f = vec![0u8; ETH + ip.buffer_len() + ns.buffer_len()];
                f[0..6].copy_from_slice(&[0x33, 0x33, 0xff, o[13], o[14], o[15]]);
                f[6..12].copy_from_slice(&mac);
                f[12..14].copy_from_slice(&[0x86, 0xdd]);
                ip.emit(&mut Ipv6Packet::new_unchecked(&mut f[ETH..ETH + 40]));
                ns.emit(
                    &src,
                    &group,
                    &mut Icmpv6Packet::new_unchecked(&mut f[ETH + 40..]),
                    &ChecksumCapabilities::default(),
                );
                Some(f)
            }
        }
    }
}

/// The address frame `f` asks for: an ARP request's target, a neighbour
/// solicitation's.
pub(crate) fn solicits(f: &[u8]) -> Option<IpAddr> {
    match f.get(12..14)? {
        [0x08, 0x06] if f.get(20..22)? == [0, 1] => {
            let t: [u8; 4] = f.get(38..42)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(t)))
        }
        [0x86, 0xdd] if *f.get(ETH + 6)? == 58 && *f.get(ETH + 40)? == 135 => {
            let t: [u8; 16] = f.get(ETH + 48..ETH + 64)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(t)))
        }
        _ => None,
    }
}

/// The source of the IPv6 packet in frame `f`.
pub(crate) fn source6(f: &[u8]) -> Option<IpAddr> {
    let s: [u8; 16] = f.get(ETH + 8..ETH + 24)?.try_into().ok()?;
    (f.get(12..14)? == [0x86, 0xdd]).then(|| IpAddr::V6(Ipv6Addr::from(s)))
}

impl SimWorld {
    /// Stack `s` was just handed something to send to `dst`.
    pub(crate) fn expect(&mut self, s: usize, dst: IpAddr) {
        if let Some(st) = self.stacks.get_mut(s)
            && st.port.is_some()
        {
            st.expect.push(dst);
        }
    }

    /// Stack `s`'s smoltcp sent `frames`: a solicitation among them starts
    /// its silence.
    pub(crate) fn note_solicits(&mut self, s: usize, frames: &[Vec<u8>]) {
        if frames.iter().any(|f| solicits(f).is_some()) {
            self.stacks[s].solicited_at = Some(self.clock.now_us());
        }
    }

    /// After a poll of stack `s` that sent `frames`: the solicitations it
    /// withheld for what it was expected to send.
    pub(crate) fn ask_withheld(&mut self, s: usize, frames: &mut Vec<Vec<u8>>) {
        let wanted = std::mem::take(&mut self.stacks[s].expect);
        for dst in wanted {
            let left = frames
                .iter()
                .any(|f| super::pmtu::destination(f) == Some(dst));
            if !left && let Some(nh) = self.stacks[s].next_hop(dst) {
                self.ask(s, nh, frames);
            }
        }
    }

    /// After a poll of stack `s` that sent `frames`: the way back to the
    /// senders of the IPv6 packets `got` whose answers it withheld;
    /// whether it asked.
    pub(crate) fn ask_senders(
        &mut self,
        s: usize,
        got: &[Vec<u8>],
        frames: &mut Vec<Vec<u8>>,
    ) -> bool {
        let mut asked = false;
        for g in got {
            if let Some(nh) = source6(g).and_then(|src| self.stacks[s].next_hop(src)) {
                asked |= self.ask(s, nh, frames);
            }
        }
        asked
    }

    /// Asks for `nh` on stack `s`'s behalf, when smoltcp is silent and
    /// neither it nor the sim asked for `nh` within the last second;
    /// whether it did.
    fn ask(&mut self, s: usize, nh: IpAddr, frames: &mut Vec<Vec<u8>>) -> bool {
        let now = self.clock.now_us();
        let st = &mut self.stacks[s];
        let silent = st.solicited_at.is_some_and(|t| now < t + SILENT_US);
        let asking = frames.iter().any(|f| solicits(f) == Some(nh))
            || st
                .asked
                .iter()
                .any(|(a, t)| *a == nh && now < t + SILENT_US);
        if !silent || asking {
            return false;
        }
        let Some(f) = st.solicitation(nh) else {
            return false;
        };
        st.asked.retain(|(_, t)| now < t + SILENT_US);
        st.asked.push((nh, now));
        frames.push(f);
        true
    }
}
