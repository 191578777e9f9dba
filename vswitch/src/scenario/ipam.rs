//! Address management as Docker's default IPAM does it (docker-semantics
//! IPAM-1..8, BR-4, MV-10, MV-11, OV-3). Pure: no names, no errors with
//! locations; `networks` turns failures into located messages.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// Docker's default bridge subnet, kept for `docker0` whether declared or not.
pub(crate) const DEFAULT_BRIDGE: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(172, 17, 0, 0), 16) {
    Ok(n) => n,
    Err(_) => panic!("constant"),
};

/// The default bridge's IPv6 subnet: the oracle daemon's `fixed-cidr-v6`
/// (V6-6, ci/docker-daemon.sh), gateway its first address.
pub(crate) const DEFAULT_BRIDGE6: Ipv6Net =
    match Ipv6Net::new(Ipv6Addr::new(0xfd00, 0xdead, 0xbeef, 0, 0, 0, 0, 0), 48) {
        Ok(n) => n,
        Err(_) => panic!("constant"),
    };

/// A default-bridge container's IPv6 address as Docker derives it from a
/// `fixed-cidr-v6` of /80 or shorter: the prefix with the interface MAC in
/// its last 48 bits (`fd00:dead:beef::242:ac11:2` for 02:42:ac:11:00:02).
pub(crate) fn from_mac6(net: Ipv6Net, mac: [u8; 6]) -> Ipv6Addr {
    let mut o = net.network().octets();
    o[10..16].copy_from_slice(&mac);
    Ipv6Addr::from(o)
}

/// First VNI Docker gives to a user overlay network (OV-3).
pub(crate) const FIRST_VNI: u32 = 4097;
/// Largest 24-bit VNI.
pub(crate) const MAX_VNI: u32 = (1 << 24) - 1;

/// Whether two IPv4 subnets share an address.
pub(crate) fn overlaps4(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Whether two IPv6 subnets share an address.
pub(crate) fn overlaps6(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The n-th local default pool: 172.18–31.0.0/16, then 192.168.x.0/20 (IPAM-1).
fn local_pool(n: u32) -> Option<Ipv4Net> {
    if n < 14 {
        return Ipv4Net::new(Ipv4Addr::new(172, 18 + n as u8, 0, 0), 16).ok();
    }
    let k = n - 14;
    if k < 16 {
        return Ipv4Net::new(Ipv4Addr::new(192, 168, (k * 16) as u8, 0), 20).ok();
    }
    None
}

/// The n-th swarm (overlay) pool: 10.0.0.0/8 in /24s.
fn overlay_pool(n: u32) -> Option<Ipv4Net> {
    if n >= 1 << 16 {
        return None;
    }
    Ipv4Net::new(Ipv4Addr::new(10, (n >> 8) as u8, (n & 0xff) as u8, 0), 24).ok()
}

/// Hands out default pools to networks without a `subnet`, in file order,
/// skipping every subnet already taken.
#[derive(Debug)]
pub(crate) struct PoolPicker {
    taken: Vec<Ipv4Net>,
    local_next: u32,
    overlay_next: u32,
}

impl PoolPicker {
    /// `reserved`: every subnet declared in the file, the lan, 172.17.0.0/16.
    pub(crate) fn new(reserved: Vec<Ipv4Net>) -> Self {
        PoolPicker {
            taken: reserved,
            local_next: 0,
            overlay_next: 0,
        }
    }

    fn pick(&mut self, overlay: bool) -> Option<Ipv4Net> {
        loop {
            let pool = if overlay {
                let p = overlay_pool(self.overlay_next)?;
                self.overlay_next += 1;
                p
            } else {
                let p = local_pool(self.local_next)?;
                self.local_next += 1;
                p
            };
            if !self.taken.iter().any(|t| overlaps4(t, &pool)) {
                self.taken.push(pool);
                return Some(pool);
            }
        }
    }

    /// Next free local-scope pool (bridge, macvlan, ipvlan).
    pub(crate) fn local(&mut self) -> Option<Ipv4Net> {
        self.pick(false)
    }

    /// Next free swarm-scope pool (overlay).
    pub(crate) fn overlay(&mut self) -> Option<Ipv4Net> {
        self.pick(true)
    }
}

/// Why a reservation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reserve {
    /// Outside the subnet.
    Outside,
    /// Already reserved (gateway, aux, another container, network/broadcast).
    InUse,
}

/// One subnet's addresses (IPv4 or IPv6 as u128): lowest-free allocation
/// restricted to a range, with reservations anywhere in the subnet.
#[derive(Debug, Clone)]
pub(crate) struct AddrPool {
    first: u128,
    last: u128,
    range_first: u128,
    range_last: u128,
    used: BTreeSet<u128>,
    /// Every address of the range below this one is in use.
    cursor: u128,
}

impl AddrPool {
    fn with_bounds(first: u128, last: u128, range_first: u128, range_last: u128) -> Self {
        let range_first = range_first.max(first);
        let range_last = range_last.min(last);
        AddrPool {
            first,
            last,
            range_first,
            range_last,
            used: BTreeSet::new(),
            cursor: range_first,
        }
    }

    /// IPv4 subnet with dynamic allocation from `range` (a part of `net`).
    /// Network and broadcast addresses are reserved except on /31 and /32 (IPAM-4).
    pub(crate) fn v4(net: Ipv4Net, range: Ipv4Net) -> Self {
        let mut p = Self::with_bounds(
            u32::from(net.network()).into(),
            u32::from(net.broadcast()).into(),
            u32::from(range.network()).into(),
            u32::from(range.broadcast()).into(),
        );
        if net.prefix_len() < 31 {
            p.used.insert(p.first);
            p.used.insert(p.last);
        }
        p
    }

    /// IPv6 subnet; the subnet-router anycast address is reserved (IPAM-4).
    pub(crate) fn v6(net: Ipv6Net) -> Self {
        let first = u128::from(net.network());
        let last = u128::from(net.broadcast());
        let mut p = Self::with_bounds(first, last, first, last);
        if net.prefix_len() < 127 {
            p.used.insert(first);
        }
        p
    }

    /// Whether `a` lies in the subnet.
    pub(crate) fn contains(&self, a: u128) -> bool {
        self.first <= a && a <= self.last
    }

    /// Reserves one address of the subnet (inside or outside the range).
    pub(crate) fn reserve(&mut self, a: u128) -> Result<(), Reserve> {
        if !self.contains(a) {
            return Err(Reserve::Outside);
        }
        if !self.used.insert(a) {
            return Err(Reserve::InUse);
        }
        Ok(())
    }

    /// Lowest free address of the range, without taking it.
    pub(crate) fn peek(&mut self) -> Option<u128> {
        let mut a = self.cursor;
        while self.used.contains(&a) {
            a = a.checked_add(1)?;
        }
        self.cursor = a;
        (a <= self.range_last).then_some(a)
    }

    /// Takes the lowest free address of the range (IPAM-6, MV-10).
    pub(crate) fn alloc(&mut self) -> Option<u128> {
        let a = self.peek()?;
        self.used.insert(a);
        Some(a)
    }

    /// Gives an address back (a disconnected endpoint's, BUG-9): the next
    /// allocation may take it again.
    pub(crate) fn release(&mut self, a: u128) {
        if self.used.remove(&a) && a >= self.range_first {
            self.cursor = self.cursor.min(a);
        }
    }
}

/// u128 → IPv4 (the pool only holds IPv4 values when built with `v4`).
pub(crate) fn to_v4(a: u128) -> Ipv4Addr {
    Ipv4Addr::from(a as u32)
}

/// u128 → IPv6.
pub(crate) fn to_v6(a: u128) -> Ipv6Addr {
    Ipv6Addr::from(a)
}

/// IPv4 → u128.
pub(crate) fn n4(a: Ipv4Addr) -> u128 {
    u32::from(a).into()
}

/// IPv6 → u128.
pub(crate) fn n6(a: Ipv6Addr) -> u128 {
    u128::from(a)
}

/// A network's IPv4 subnets: dynamic addresses come from the first subnet
/// and spill to the next only when it is exhausted (IPAM-7).
#[derive(Debug, Clone, Default)]
pub(crate) struct NetAlloc {
    /// One pool per subnet, primary first.
    pub(crate) subnets: Vec<AddrPool>,
}

impl NetAlloc {
    /// Reserves `a` in whichever subnet holds it (`--ip` ignores the range, IPAM-8).
    pub(crate) fn reserve(&mut self, a: u128) -> Result<(), Reserve> {
        match self.subnets.iter_mut().find(|p| p.contains(a)) {
            Some(p) => p.reserve(a),
            None => Err(Reserve::Outside),
        }
    }

    /// Next dynamic address.
    pub(crate) fn alloc(&mut self) -> Option<u128> {
        self.subnets.iter_mut().find_map(AddrPool::alloc)
    }

    /// Gives `a` back to whichever subnet holds it.
    pub(crate) fn release(&mut self, a: u128) {
        if let Some(p) = self.subnets.iter_mut().find(|p| p.contains(a)) {
            p.release(a);
        }
    }
}

/// VNIs for overlay networks in file order: given ones kept, the others
/// from 4097 upward skipping every declared one (OV-3).
pub(crate) fn vnis(declared: &[Option<u32>]) -> Option<Vec<u32>> {
    let taken: BTreeSet<u32> = declared.iter().flatten().copied().collect();
    let mut next = FIRST_VNI;
    let mut out = Vec::with_capacity(declared.len());
    for d in declared {
        match d {
            Some(v) => out.push(*v),
            None => {
                while taken.contains(&next) {
                    next += 1;
                }
                if next > MAX_VNI {
                    return None;
                }
                out.push(next);
                next += 1;
            }
        }
    }
    Some(out)
}

/// The subnet id (third group) of a `fd00:5653:K::/64`.
pub(crate) fn ula64_index(net: &Ipv6Net) -> usize {
    usize::from(net.addr().segments()[2])
}

/// The first free default ULA /64 `fd00:5653:K::/64` with `K >= index`,
/// skipping taken ones.
pub(crate) fn ula64(index: usize, taken: &[Ipv6Net]) -> Option<Ipv6Net> {
    let mut k = u16::try_from(index).ok()?;
    loop {
        let net = Ipv6Net::new(Ipv6Addr::new(0xfd00, 0x5653, k, 0, 0, 0, 0, 0), 64).ok()?;
        if !taken.iter().any(|t| overlaps6(t, &net)) {
            return Some(net);
        }
        k = k.checked_add(1)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn default_pools_in_docker_order() {
        let mut p = PoolPicker::new(vec![DEFAULT_BRIDGE]);
        let got: Vec<String> = (0..16).map(|_| p.local().unwrap().to_string()).collect();
        assert_eq!(got[0], "172.18.0.0/16");
        assert_eq!(got[13], "172.31.0.0/16");
        assert_eq!(got[14], "192.168.0.0/20");
        assert_eq!(got[15], "192.168.16.0/20");
    }

    #[test]
    fn pools_skip_declared_subnets() {
        let mut p = PoolPicker::new(vec![
            DEFAULT_BRIDGE,
            net("172.18.5.0/24"),
            net("172.19.0.0/16"),
        ]);
        assert_eq!(p.local(), Some(net("172.20.0.0/16")));
        let mut o = PoolPicker::new(vec![net("10.0.0.0/23")]);
        assert_eq!(o.overlay(), Some(net("10.0.2.0/24")));
        assert_eq!(o.overlay(), Some(net("10.0.3.0/24")));
    }

    #[test]
    fn pools_exhaust() {
        let mut p = PoolPicker::new(vec![DEFAULT_BRIDGE, net("192.168.0.0/16")]);
        for _ in 0..14 {
            assert!(p.local().is_some());
        }
        assert_eq!(p.local(), None);
    }

    #[test]
    fn lowest_free_skips_gateway_and_aux() {
        let n = net("10.0.0.0/24");
        let mut a = AddrPool::v4(n, n);
        let gw = a.alloc().unwrap();
        assert_eq!(to_v4(gw), Ipv4Addr::new(10, 0, 0, 1));
        a.reserve(n4(Ipv4Addr::new(10, 0, 0, 3))).unwrap();
        assert_eq!(to_v4(a.alloc().unwrap()), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(to_v4(a.alloc().unwrap()), Ipv4Addr::new(10, 0, 0, 4));
        assert_eq!(
            a.reserve(n4(Ipv4Addr::new(10, 0, 0, 255))),
            Err(Reserve::InUse)
        );
        assert_eq!(
            a.reserve(n4(Ipv4Addr::new(10, 0, 1, 1))),
            Err(Reserve::Outside)
        );
    }

    #[test]
    fn gateway_comes_from_ip_range() {
        // BR-4/IPAM-5: first free address of the range; MV-10: the range's
        // own first address is usable.
        let mut a = AddrPool::v4(net("10.0.0.0/24"), net("10.0.0.128/25"));
        assert_eq!(to_v4(a.alloc().unwrap()), Ipv4Addr::new(10, 0, 0, 128));
        assert_eq!(to_v4(a.alloc().unwrap()), Ipv4Addr::new(10, 0, 0, 129));
        // Range covering the subnet start still skips the network address.
        let mut b = AddrPool::v4(net("10.0.0.0/24"), net("10.0.0.0/30"));
        assert_eq!(to_v4(b.alloc().unwrap()), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(to_v4(b.alloc().unwrap()), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(to_v4(b.alloc().unwrap()), Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(b.alloc(), None);
        // Statics may lie outside the range (IPAM-8).
        assert!(b.reserve(n4(Ipv4Addr::new(10, 0, 0, 200))).is_ok());
    }

    #[test]
    fn slash31_uses_both_addresses() {
        let n = net("192.168.135.0/31");
        let mut a = AddrPool::v4(n, n);
        assert_eq!(to_v4(a.alloc().unwrap()), Ipv4Addr::new(192, 168, 135, 0));
        assert_eq!(to_v4(a.alloc().unwrap()), Ipv4Addr::new(192, 168, 135, 1));
        assert_eq!(a.alloc(), None);
        let n = net("192.168.135.7/32");
        let mut b = AddrPool::v4(n, n);
        assert_eq!(to_v4(b.alloc().unwrap()), Ipv4Addr::new(192, 168, 135, 7));
        assert_eq!(b.alloc(), None);
    }

    #[test]
    fn exhaustion_and_spill_to_second_subnet() {
        let n1 = net("10.0.0.0/30");
        let n2 = net("10.0.1.0/30");
        let mut na = NetAlloc {
            subnets: vec![AddrPool::v4(n1, n1), AddrPool::v4(n2, n2)],
        };
        let got: Vec<Ipv4Addr> = std::iter::from_fn(|| na.alloc().map(to_v4)).collect();
        assert_eq!(
            got,
            ["10.0.0.1", "10.0.0.2", "10.0.1.1", "10.0.1.2"]
                .map(|s| s.parse::<Ipv4Addr>().unwrap())
        );
        assert_eq!(
            na.reserve(n4(Ipv4Addr::new(10, 0, 2, 1))),
            Err(Reserve::Outside)
        );
    }

    #[test]
    fn statics_first_then_lowest_free() {
        let n = net("10.0.0.0/29");
        let mut a = NetAlloc {
            subnets: vec![AddrPool::v4(n, n)],
        };
        a.alloc().unwrap(); // gateway .1
        a.reserve(n4(Ipv4Addr::new(10, 0, 0, 2))).unwrap();
        a.reserve(n4(Ipv4Addr::new(10, 0, 0, 4))).unwrap();
        assert_eq!(to_v4(a.alloc().unwrap()), Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(to_v4(a.alloc().unwrap()), Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(to_v4(a.alloc().unwrap()), Ipv4Addr::new(10, 0, 0, 6));
        assert_eq!(a.alloc(), None);
    }

    #[test]
    fn v6_pool_skips_anycast() {
        let n: Ipv6Net = "fd00:1::/64".parse().unwrap();
        let mut a = AddrPool::v6(n);
        assert_eq!(
            to_v6(a.alloc().unwrap()),
            "fd00:1::1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            a.reserve(n6("fd00:1::".parse().unwrap())),
            Err(Reserve::InUse)
        );
        let all: Ipv6Net = "::/0".parse().unwrap();
        let mut b = AddrPool::v6(all);
        b.reserve(u128::MAX).unwrap();
        assert_eq!(b.alloc(), Some(1));
    }

    #[test]
    fn vni_allocation() {
        assert_eq!(
            vnis(&[None, Some(4098), None, Some(42)]),
            Some(vec![4097, 4098, 4099, 42])
        );
        assert_eq!(vnis(&[Some(4097), None]), Some(vec![4097, 4098]));
    }

    #[test]
    fn ula_per_network_index() {
        let a = ula64(2, &[]).unwrap();
        assert_eq!(a.to_string(), "fd00:5653:2::/64");
        let b = ula64(2, &[a]).unwrap();
        assert_eq!(b.to_string(), "fd00:5653:3::/64");
    }
}
