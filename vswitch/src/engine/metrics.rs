//! Counters: per port (rx/tx, drops by reason) and per domain (FDB events).
//!
//! Every frame the engine drops has exactly one [`DropReason`], counted on
//! its ingress port. The counters are plain `u64`s bumped on the engine's
//! thread; the IO layer reads them through [`Metrics`] for its JSON report.

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value, json};

use super::{DomainId, PortId};

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Shorter than an Ethernet header (14 bytes).
    Malformed,
    /// The source MAC is a group (multicast or broadcast) address.
    MulticastSource,
    /// The source MAC is 00:00:00:00:00:00.
    ZeroSource,
    /// The ingress port is not configured.
    UnknownPort,
    /// An 802.1Q / 802.1ad tagged frame on a port without VLANs.
    VlanNotConfigured,
    /// A non-host port used its domain's gateway MAC as source.
    SpoofedGatewayMac,
    /// The destination is known to sit behind the ingress port itself.
    SamePort,
    /// Container → container delivery on a domain with `icc = false` (BR-8).
    IccDisabled,
    /// Addressed to the gateway MAC, but the domain has no host port.
    NoHostPort,
    /// A flood with no other port to go to.
    NoEgressPort,
    /// An ICMP echo request to the gateway with a wrong IPv4 or ICMP checksum.
    BadChecksum,
    /// Routed from one bridge network to another of the same machine (BR-12).
    Isolation,
    /// Routed off an internal network (BR-15).
    InternalNetwork,
    /// From outside to a container address: neither a tracked reply nor a published port (PUB-2).
    IngressDenied,
    /// A new flow while the connection table was full.
    ConntrackFull,
    /// A new flow for which NAT found no free port.
    NatPortsExhausted,
    /// TTL would reach 0 when routed (ICMP time exceeded sent).
    TtlExceeded,
    /// Larger than the egress MTU with DF set (ICMP fragmentation needed sent).
    FragNeeded,
    /// No route to the destination (ICMP network unreachable sent).
    NoRoute,
    /// The next hop's MAC was unknown and the ARP queue was full.
    NeighbourQueueFull,
    /// Waited for ARP that never answered.
    NeighbourUnresolved,
    /// Matches no flow and may not start one (a stray RST, an ICMP error about nothing tracked).
    InvalidState,
    /// A non-first IPv4 fragment that needs NAT (fragments are not reassembled).
    UntrackedFragment,
    /// An 802.1Q frame for a VLAN the lan does not carry.
    VlanUnknown,
    /// Between a macvlan/ipvlan child and its own machine's host stack (MV-7, IV-8).
    ParentIsolation,
    /// Between children of one parent in private/vepa/passthru mode (MV-3, IV-7).
    SiblingIsolation,
    /// Broadcast or multicast from an ipvlan l3/l3s child (IV-5).
    IpvlanL3Broadcast,
    /// From an ipvlan l3/l3s child off its network: no lan host routes back (BUG-13).
    IpvlanL3Egress,
    /// VXLAN to a machine for a VNI it has no overlay network of.
    VxlanUnknownVni,
    /// VXLAN to a machine whose headers are short or invalid.
    VxlanMalformed,
    /// Cleartext VXLAN for an encrypted overlay's VNI (OV-9: filter INPUT drops it).
    VxlanCleartext,
    /// ESP to a machine whose headers are short or inconsistent.
    EspMalformed,
    /// ESP whose SPI names no inbound SA of the receiving machine.
    EspUnknownSpi,
    /// ESP whose ICV did not verify.
    EspAuthFailed,
    /// ESP with a sequence number already received (anti-replay, RFC 4303 §3.4.3).
    EspReplayed,
    /// ESP with a sequence number left of the anti-replay window.
    EspTooOld,
    /// ESP whose padding or pad length is wrong after decryption.
    EspBadTrailer,
    /// An encrypted overlay frame with no outbound SA (or its sequence numbers spent): never sent in clear.
    EspNoSa,
    /// Lost on a faulted link (`fault = { loss }`).
    FaultLoss,
    /// Larger than a faulted link's MTU (`fault = { mtu }`).
    FaultMtu,
    /// The link is down (`fault = { down = true }`).
    LinkDown,
    /// Would have waited too long for a rate-limited link (`fault = { rate_mbit }`).
    FaultRate,
}

impl DropReason {
    /// Every reason, in a stable order (the report's order).
    pub const ALL: [DropReason; 42] = [
        DropReason::Malformed,
        DropReason::MulticastSource,
        DropReason::ZeroSource,
        DropReason::UnknownPort,
        DropReason::VlanNotConfigured,
        DropReason::SpoofedGatewayMac,
        DropReason::SamePort,
        DropReason::IccDisabled,
        DropReason::NoHostPort,
        DropReason::NoEgressPort,
        DropReason::BadChecksum,
        DropReason::Isolation,
        DropReason::InternalNetwork,
        DropReason::IngressDenied,
        DropReason::ConntrackFull,
        DropReason::NatPortsExhausted,
        DropReason::TtlExceeded,
        DropReason::FragNeeded,
        DropReason::NoRoute,
        DropReason::NeighbourQueueFull,
        DropReason::NeighbourUnresolved,
        DropReason::InvalidState,
        DropReason::UntrackedFragment,
        DropReason::VlanUnknown,
        DropReason::ParentIsolation,
        DropReason::SiblingIsolation,
        DropReason::IpvlanL3Broadcast,
        DropReason::IpvlanL3Egress,
        DropReason::VxlanUnknownVni,
        DropReason::VxlanMalformed,
        DropReason::VxlanCleartext,
        DropReason::EspMalformed,
        DropReason::EspUnknownSpi,
        DropReason::EspAuthFailed,
        DropReason::EspReplayed,
        DropReason::EspTooOld,
        DropReason::EspBadTrailer,
        DropReason::EspNoSa,
        DropReason::FaultLoss,
        DropReason::FaultMtu,
        DropReason::LinkDown,
        DropReason::FaultRate,
    ];

    /// Number of reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// Kebab-case name, as shown in reports and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::MulticastSource => "multicast-source",
            DropReason::ZeroSource => "zero-source",
            DropReason::UnknownPort => "unknown-port",
            DropReason::VlanNotConfigured => "vlan-not-configured",
            DropReason::SpoofedGatewayMac => "spoofed-gateway-mac",
            DropReason::SamePort => "same-port",
            DropReason::IccDisabled => "icc-disabled",
            DropReason::NoHostPort => "no-host-port",
            DropReason::NoEgressPort => "no-egress-port",
            DropReason::BadChecksum => "bad-checksum",
            DropReason::Isolation => "isolation",
            DropReason::InternalNetwork => "internal-network",
            DropReason::IngressDenied => "ingress-denied",
            DropReason::ConntrackFull => "conntrack-full",
            DropReason::NatPortsExhausted => "nat-ports-exhausted",
            DropReason::TtlExceeded => "ttl-exceeded",
            DropReason::FragNeeded => "frag-needed",
            DropReason::NoRoute => "no-route",
            DropReason::NeighbourQueueFull => "neighbour-queue-full",
            DropReason::NeighbourUnresolved => "neighbour-unresolved",
            DropReason::InvalidState => "invalid-state",
            DropReason::UntrackedFragment => "untracked-fragment",
            DropReason::VlanUnknown => "vlan-unknown",
            DropReason::ParentIsolation => "parent-isolation",
            DropReason::SiblingIsolation => "sibling-isolation",
            DropReason::IpvlanL3Broadcast => "ipvlan-no-broadcast",
            DropReason::IpvlanL3Egress => "ipvlan-no-route-back",
            DropReason::VxlanUnknownVni => "vxlan-unknown-vni",
            DropReason::VxlanMalformed => "vxlan-malformed",
            DropReason::VxlanCleartext => "vxlan-cleartext-encrypted-vni",
            DropReason::EspMalformed => "esp-malformed",
            DropReason::EspUnknownSpi => "esp-unknown-spi",
            DropReason::EspAuthFailed => "esp-auth-failed",
            DropReason::EspReplayed => "esp-replayed",
            DropReason::EspTooOld => "esp-too-old",
            DropReason::EspBadTrailer => "esp-bad-trailer",
            DropReason::EspNoSa => "esp-no-sa",
            DropReason::FaultLoss => "fault-loss",
            DropReason::FaultMtu => "fault-mtu",
            DropReason::LinkDown => "link-down",
            DropReason::FaultRate => "fault-rate",
        }
    }

    /// Index into per-reason arrays (position in [`DropReason::ALL`]).
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DropReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Drop counts by reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropCounts([u64; DropReason::COUNT]);

impl Default for DropCounts {
    fn default() -> Self {
        DropCounts([0; DropReason::COUNT])
    }
}

impl DropCounts {
    /// Count for one reason.
    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r.index()]
    }

    /// Sum over all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// (reason, count) for the non-zero reasons.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|&r| (r, self.get(r)))
            .filter(|&(_, n)| n != 0)
    }

    pub(crate) fn bump(&mut self, r: DropReason) {
        self.0[r.index()] += 1;
    }
}

/// Serialised as a map `{reason: count}` of the non-zero reasons.
impl Serialize for DropCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (r, n) in self.iter() {
            m.serialize_entry(r.as_str(), &n)?;
        }
        m.end()
    }
}

/// One port's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PortCounters {
    /// Frames received on the port (including the ones dropped).
    pub rx_frames: u64,
    /// Bytes received (frame bytes, without the vnet header).
    pub rx_bytes: u64,
    /// Frames sent out of the port (forwarded and engine-built).
    pub tx_frames: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames received on this port and dropped, by reason.
    pub drops: DropCounts,
}

/// One domain's forwarding-table counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FdbCounters {
    /// New MACs learned.
    pub learned: u64,
    /// Known MACs seen on another port (entry moved).
    pub moved: u64,
    /// Entries forgotten after `fdb_aging` idle.
    pub expired: u64,
    /// MACs not learned because the table was full.
    pub full: u64,
}

/// All of the engine's counters.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    ports: Vec<PortCounters>,
    fdb: Vec<FdbCounters>,
    unknown_port: u64,
    /// Stages noted while a frame is traced (`Engine::trace_frame`).
    pub(crate) trace: Option<Vec<super::trace::TraceEvent>>,
}

impl Metrics {
    pub(crate) fn new(ports: usize, domains: usize) -> Metrics {
        Metrics {
            ports: vec![PortCounters::default(); ports],
            fdb: vec![FdbCounters::default(); domains],
            unknown_port: 0,
            trace: None,
        }
    }

    /// A port's counters. Panics if `port` is not one of the engine's ports.
    pub fn port(&self, port: PortId) -> &PortCounters {
        &self.ports[usize::from(port.0)]
    }

    /// A domain's FDB counters. Panics if `domain` is not one of the engine's.
    pub fn fdb(&self, domain: DomainId) -> &FdbCounters {
        &self.fdb[usize::from(domain.0)]
    }

    /// Frames received on a port the engine does not know (reason
    /// `unknown-port`; there is no port to count them on).
    pub fn unknown_port_drops(&self) -> u64 {
        self.unknown_port
    }

    /// Drops by reason summed over all ports (including `unknown-port`).
    pub fn total_drops(&self) -> DropCounts {
        let mut t = DropCounts::default();
        for p in &self.ports {
            for (i, n) in p.drops.0.iter().enumerate() {
                t.0[i] += n;
            }
        }
        t.0[DropReason::UnknownPort.index()] += self.unknown_port;
        t
    }

    /// The report: `{"ports": {name: counters}, "domains": {name: {"fdb": …}},
    /// "unknown_port_drops": n}`. Names missing from the slices fall back to
    /// `port<N>` / `domain<N>`.
    pub fn snapshot(&self, port_names: &[&str], domain_names: &[&str]) -> Value {
        let mut ports = Map::new();
        for (i, c) in self.ports.iter().enumerate() {
            let name = port_names
                .get(i)
                .map_or_else(|| format!("port{i}"), |s| (*s).to_owned());
            ports.insert(name, json!(c));
        }
        let mut domains = Map::new();
        for (i, c) in self.fdb.iter().enumerate() {
            let name = domain_names
                .get(i)
                .map_or_else(|| format!("domain{i}"), |s| (*s).to_owned());
            domains.insert(name, json!({ "fdb": c }));
        }
        json!({
            "ports": ports,
            "domains": domains,
            "unknown_port_drops": self.unknown_port,
        })
    }

    #[inline]
    pub(crate) fn rx(&mut self, port: PortId, bytes: usize) {
        let c = &mut self.ports[usize::from(port.0)];
        c.rx_frames += 1;
        c.rx_bytes += bytes as u64;
    }

    #[inline]
    pub(crate) fn tx(&mut self, port: PortId, bytes: usize) {
        let c = &mut self.ports[usize::from(port.0)];
        c.tx_frames += 1;
        c.tx_bytes += bytes as u64;
    }

    #[inline]
    pub(crate) fn drop(&mut self, port: PortId, r: DropReason) {
        self.ports[usize::from(port.0)].drops.bump(r);
    }

    /// Notes a stage of a traced frame; nothing (one branch) otherwise.
    #[inline]
    pub(crate) fn note(&mut self, event: impl FnOnce() -> super::trace::TraceEvent) {
        if let Some(t) = self.trace.as_mut() {
            t.push(event());
        }
    }

    pub(crate) fn drop_unknown_port(&mut self) {
        self.unknown_port += 1;
    }

    #[inline]
    pub(crate) fn fdb_mut(&mut self, domain: DomainId) -> &mut FdbCounters {
        &mut self.fdb[usize::from(domain.0)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_indexed_in_order_and_named_in_kebab_case() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            let s = r.as_str();
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{s}");
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn snapshot_names_ports_and_lists_nonzero_drops() {
        let mut m = Metrics::new(2, 1);
        m.rx(PortId(0), 60);
        m.drop(PortId(0), DropReason::IccDisabled);
        m.tx(PortId(1), 60);
        m.fdb_mut(DomainId(0)).learned += 1;
        let v = m.snapshot(&["a/eth0"], &["n"]);
        assert_eq!(v["ports"]["a/eth0"]["rx_bytes"], 60);
        assert_eq!(v["ports"]["a/eth0"]["drops"]["icc-disabled"], 1);
        assert_eq!(v["ports"]["port1"]["tx_frames"], 1);
        assert!(v["ports"]["port1"]["drops"].as_object().unwrap().is_empty());
        assert_eq!(v["domains"]["n"]["fdb"]["learned"], 1);
        assert_eq!(m.total_drops().total(), 1);
    }
}
