//! IPv4 fragments as the kernel cuts them. smoltcp 0.12 cuts the first
//! fragment of a datagram at the MTU, so that its payload need not be a
//! multiple of 8 bytes and the next fragment's offset overlaps it; a
//! receiver that checks (tshark, the kernel) drops them. The fragments a
//! stack sent in one poll are put back together and cut again here, every
//! payload but the last a multiple of 8 bytes.

const ETH: usize = 14;

/// (src, dst, id, proto) of an IPv4 fragment, with its offset, whether
/// more follow, and its payload.
fn fragment(f: &[u8]) -> Option<([u8; 11], usize, bool, &[u8])> {
    if f.len() < ETH + 20 || f[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &f[ETH..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let fo = u16::from_be_bytes([ip[6], ip[7]]);
    let more = fo & 0x2000 != 0;
    let off = usize::from(fo & 0x1fff) * 8;
    if (!more && off == 0) || total < ihl || ip.len() < total {
        return None;
    }
    let mut key = [0u8; 11];
    key[..8].copy_from_slice(&ip[12..20]);
    key[8..10].copy_from_slice(&ip[4..6]);
    key[10] = ip[9];
    Some((key, off, more, &ip[ihl..total]))
}

fn checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in h.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Cuts `payload` (of the datagram whose first frame is `first`) into
/// fragments of at most `mtu` bytes, the first at byte offset `base` of
/// the datagram, the last with "more fragments" set when `more_after`.
fn cut(first: &[u8], payload: &[u8], mtu: usize, base: usize, more_after: bool) -> Vec<Vec<u8>> {
    let ihl = usize::from(first[ETH] & 0x0f) * 4;
    let head = &first[..ETH + ihl];
    let step = (mtu.saturating_sub(ihl) / 8 * 8).max(8);
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let end = (off + step).min(payload.len());
        let more = end < payload.len() || more_after;
        let mut f = head.to_vec();
        f.extend_from_slice(&payload[off..end]);
        let ip = &mut f[ETH..];
        ip[2..4].copy_from_slice(&((ihl + end - off) as u16).to_be_bytes());
        let fo = ((base + off) / 8) as u16 | if more { 0x2000 } else { 0 };
        ip[6..8].copy_from_slice(&fo.to_be_bytes());
        ip[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(&ip[..ihl]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        out.push(f);
        off = end;
    }
    out
}

/// The frames of one poll with every complete fragmented IPv4 datagram
/// cut again for `mtu`; anything else as it was, in order. smoltcp writes
/// each fragment's offset rounded down but its payload whole, so the
/// datagram is its fragments' payloads one after another, in the order
/// sent.
pub(crate) fn refragment(frames: Vec<Vec<u8>>, mtu: usize) -> Vec<Vec<u8>> {
    if !frames.iter().any(|f| fragment(f).is_some()) {
        return frames;
    }
    // (key, index of the first fragment in `frames`, payload, complete)
    let mut groups: Vec<([u8; 11], usize, Vec<u8>, bool)> = Vec::new();
    let mut member: Vec<Option<usize>> = vec![None; frames.len()];
    for (i, f) in frames.iter().enumerate() {
        let Some((key, off, more, data)) = fragment(f) else {
            continue;
        };
        let g = match groups.iter().position(|g| g.0 == key && !g.3) {
            Some(g) => g,
            None if off == 0 => {
                groups.push((key, i, Vec::new(), false));
                groups.len() - 1
            }
            None => continue,
        };
        groups[g].2.extend_from_slice(data);
        groups[g].3 = !more;
        member[i] = Some(g);
    }
    let mut result = Vec::with_capacity(frames.len());
    for (i, f) in frames.into_iter().enumerate() {
        match member[i].map(|g| &groups[g]) {
            Some((_, first, payload, true)) if *first == i => {
                result.extend(cut(&f, payload, mtu, 0, false))
            }
            Some((_, _, _, true)) => {}
            _ => result.push(f),
        }
    }
    result
}

/// An IPv4 datagram or fragment (frame `f`) cut for `mtu` as the kernel
/// fragments at the source: DF cleared, every payload but the last a
/// multiple of 8 bytes. A frame that fits, or is not IPv4, comes back
/// whole.
pub(crate) fn fragment_to(f: Vec<u8>, mtu: usize) -> Vec<Vec<u8>> {
    if f.len() < ETH + 20 || f[12..14] != [0x08, 0x00] || f.len() - ETH <= mtu {
        return vec![f];
    }
    let ip = &f[ETH..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let fo = u16::from_be_bytes([ip[6], ip[7]]);
    if total < ihl || ip.len() < total || mtu < ihl + 8 {
        return vec![f];
    }
    let base = usize::from(fo & 0x1fff) * 8;
    cut(&f, &ip[ihl..total], mtu, base, fo & 0x2000 != 0)
}
