//! Incremental Internet checksum updates (RFC 1624) for NAT rewrites.
//!
//! Two kinds of checksum field are updated:
//!
//! - a **complete** checksum `C = ~sum`: when a 16-bit word `m` becomes
//!   `m'`, `C' = ~(~C + ~m + m')` (RFC 1624 eqn. 3);
//! - a **partial** checksum, as the kernel leaves it in a frame whose
//!   virtio-net header has `F_NEEDS_CSUM`: the field holds the folded,
//!   *uncomplemented* sum of the pseudo-header, and whoever finishes the
//!   checksum sums from `csum_start` onwards (this field included) and
//!   stores the complement. Changing a pseudo-header word (an address) is
//!   `P' = P + ~m + m'` with no complement; changing a word that lies inside
//!   the summed range (a port) needs no update at all, because the finisher
//!   will sum the new value itself.

/// Ones'-complement addition of two 16-bit values.
#[inline]
fn add(a: u16, b: u16) -> u16 {
    let (s, carry) = a.overflowing_add(b);
    s.wrapping_add(u16::from(carry))
}

/// A complete checksum after one 16-bit word changed from `old` to `new`.
#[inline]
pub(crate) fn update16(csum: u16, old: u16, new: u16) -> u16 {
    !add(add(!csum, !old), new)
}

/// A complete checksum after one 32-bit word (an IPv4 address) changed.
#[inline]
pub(crate) fn update32(csum: u16, old: u32, new: u32) -> u16 {
    let c = update16(csum, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

/// A partial (uncomplemented pseudo-header) checksum after a pseudo-header
/// 16-bit word changed.
#[inline]
pub(crate) fn update16_partial(sum: u16, old: u16, new: u16) -> u16 {
    add(add(sum, !old), new)
}

/// A partial (uncomplemented pseudo-header) checksum after a pseudo-header
/// 32-bit word changed.
#[inline]
pub(crate) fn update32_partial(sum: u16, old: u32, new: u32) -> u16 {
    let s = add(add(sum, !((old >> 16) as u16)), (new >> 16) as u16);
    add(add(s, !(old as u16)), new as u16)
}

/// The folded, uncomplemented ones'-complement sum of `data` added to `init`.
pub(crate) use crate::wire::ip::checksum::sum;

/// The TCP/UDP pseudo-header sum (uncomplemented).
#[cfg(test)]
pub(crate) fn pseudo(src: u32, dst: u32, proto: u8, len: usize) -> u32 {
    (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + u32::from(proto) + len as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn full(data: &[u8]) -> u16 {
        !sum(data, 0)
    }

    proptest! {
        /// Updating incrementally equals recomputing, for any data and any
        /// change of one aligned 32-bit word.
        #[test]
        fn update_matches_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 8..64),
            at in 0usize..16,
            new in any::<u32>(),
        ) {
            let at = ((at * 2) % (data.len() - 4)) & !1;
            let before = full(&data);
            let old = crate::wire::be32(&data, at);
            crate::wire::set_be32(&mut data, at, new);
            let after = full(&data);
            // Ones' complement has two zeros; both verify the same way.
            let inc = update32(before, old, new);
            prop_assert!(inc == after || (inc == 0xffff && after == 0) || (inc == 0 && after == 0xffff));
        }

        /// The partial sum tracks the pseudo-header exactly.
        #[test]
        fn partial_tracks_pseudo_header(src in any::<u32>(), dst in any::<u32>(), new in any::<u32>(), len in 8usize..2000) {
            let p = sum(&[], pseudo(src, dst, 6, len));
            let updated = update32_partial(p, src, new);
            let want = sum(&[], pseudo(new, dst, 6, len));
            prop_assert!(updated == want || (updated == 0xffff && want == 0) || (updated == 0 && want == 0xffff));
        }
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 §4: HC = 0xdd2f, m = 0x5555 → m' = 0x3285, HC' = 0x0000.
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }
}
