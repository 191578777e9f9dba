//! The resolved, validated form of a scenario: every default applied, every
//! name turned into an index, every address allocated. Backends and the
//! runner consume only this; nothing downstream looks at TOML again.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;

pub use crate::wire::MacAddr;

impl std::str::FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!(
                "invalid MAC address {s:?}: expected six hex octets"
            ));
        }
        let mut m = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            m[i] = u8::from_str_radix(p, 16)
                .map_err(|_| format!("invalid MAC address {s:?}: bad octet {p:?}"))?;
        }
        Ok(MacAddr(m))
    }
}

/// Which data path builds a machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The vswitch engine behind TAP devices.
    Userspace,
    /// Linux bridge, macvlan, ipvlan, vxlan and nftables.
    Kernel,
    /// A real Docker daemon (the oracle).
    Docker,
    /// The whole world in one process: the engine and smoltcp host
    /// stacks in memory, in virtual time, without root.
    Sim,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Userspace => "userspace",
            BackendKind::Kernel => "kernel",
            BackendKind::Docker => "docker",
            BackendKind::Sim => "sim",
        })
    }
}

/// A validated scenario.
#[derive(Clone, Debug)]
pub struct Plan {
    /// File it came from (`-` for standard input).
    pub source: PathBuf,
    /// One-line title.
    pub name: String,
    /// What it reproduces or proves.
    pub description: String,
    /// Free labels.
    pub tags: Vec<String>,
    /// Addressing of the `lan` segment.
    pub lan: Ipv4Net,
    /// IPv6 addressing of the `lan` segment (format 1.1 `lan6`): set when
    /// anything in the file is IPv6 (default `2001:2::/64`), else `None`.
    /// When set, every machine has an [`Machine::ip6`] on it.
    pub lan6: Option<Ipv6Net>,
    /// Kernel features the scenario needs (`requires`, link kinds such as
    /// `ipvlan`): when every backend refuses it and one of these is absent
    /// here, that is a named skip rather than a failure.
    pub requires: Vec<String>,
    /// Docker hosts; never empty (an implicit `host` when the file has none).
    pub machines: Vec<Machine>,
    /// Hosts on `lan`.
    pub externals: Vec<External>,
    /// Docker networks.
    pub networks: Vec<Network>,
    /// Containers.
    pub containers: Vec<Container>,
    /// Checks, in file order.
    pub checks: Vec<Check>,
    /// Seed of every random choice of the run (faults), so runs repeat.
    pub seed: u64,
    /// Steps, in file order (a world that changes).
    pub steps: Vec<Step>,
    /// Swarm services (`[[service]]`), in file order. Their tasks are
    /// containers of [`Plan::containers`] (see [`SwarmService::tasks`]).
    pub services: Vec<SwarmService>,
    /// The `ingress` overlay and its per-machine sandboxes: `Some` exactly
    /// when the scenario has services.
    pub ingress: Option<Ingress>,
}

/// How a service's name resolves and how it is reached (SVC-1, SVC-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    /// One virtual IP per network, balanced over the tasks (default).
    Vip,
    /// The name answers every task address.
    Dnsrr,
}

/// A service's attachment to one overlay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceNet {
    /// Index into `Plan::networks`.
    pub network: usize,
    /// The service's virtual IP there (`vip` mode), allocated before its
    /// tasks' addresses.
    pub vip: Option<Ipv4Addr>,
    /// Extra names that answer like the service name on this network.
    pub aliases: Vec<String>,
}

/// How a service port is published (OV-10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    /// The routing mesh: every machine listens, SNAT to its ingress
    /// sandbox (SVC-4).
    Ingress,
    /// Only machines running a task listen; the client address is kept (SVC-5).
    Host,
}

/// A published service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Port on the machines.
    pub published: u16,
    /// Port of the tasks.
    pub target: u16,
    /// Protocol.
    pub proto: Proto,
    /// Ingress or host mode.
    pub mode: PublishMode,
}

/// A swarm service: tasks `NAME.N` placed round robin over `machines`.
#[derive(Clone, Debug)]
pub struct SwarmService {
    /// Name (also its DNS name).
    pub name: String,
    /// `vip` or `dnsrr`.
    pub mode: EndpointMode,
    /// Overlays it is attached to, in file order (not `ingress`).
    pub networks: Vec<ServiceNet>,
    /// Machines tasks are placed on, round robin in this order.
    pub machines: Vec<usize>,
    /// Echo services of every task.
    pub serve: Vec<Service>,
    /// Published ports.
    pub publish: Vec<ServicePort>,
    /// Its VIP on the `ingress` network (`vip` mode with ingress ports).
    pub ingress_vip: Option<Ipv4Addr>,
    /// `tasks[n - 1]` is the index into `Plan::containers` of task `NAME.n`,
    /// for every task any step ever runs; those beyond `replicas` are not
    /// running and have no endpoints.
    pub tasks: Vec<usize>,
    /// Replicas running now.
    pub replicas: usize,
}

impl SwarmService {
    /// Container indices of the tasks running now, by task number.
    pub fn running_tasks(&self) -> &[usize] {
        &self.tasks[..self.replicas.min(self.tasks.len())]
    }

    /// The VIP on network `n`, if the service has one there.
    pub fn vip_on(&self, n: usize) -> Option<Ipv4Addr> {
        self.networks
            .iter()
            .find(|s| s.network == n)
            .and_then(|s| s.vip)
    }

    /// Whether any port is published through the routing mesh.
    pub fn uses_ingress(&self) -> bool {
        self.publish.iter().any(|p| p.mode == PublishMode::Ingress)
    }

    /// The machine task number `n` (1-based) runs on.
    pub fn machine_of_task(&self, n: usize) -> usize {
        self.machines[(n - 1) % self.machines.len()]
    }
}

/// The swarm's `ingress` overlay (SVC-4).
#[derive(Clone, Debug)]
pub struct Ingress {
    /// Index into `Plan::networks` (declared, or added as `10.0.0.0/24`).
    pub network: usize,
    /// Each machine's ingress-sandbox address on it, by machine index.
    pub sandboxes: Vec<Ipv4Addr>,
}

/// A Docker host.
#[derive(Clone, Debug)]
pub struct Machine {
    /// Name from the file (or `host`).
    pub name: String,
    /// Uplink address on `lan`.
    pub ip: Ipv4Addr,
    /// Uplink IPv6 address on `lan6`: given, or the next free one; `Some`
    /// for every machine exactly when [`Plan::lan6`] is.
    pub ip6: Option<Ipv6Addr>,
    /// Docker's `ip6tables` daemon option (default true): container IPv6
    /// gets the same masquerade, published-port DNAT, isolation and ICC
    /// rules as IPv4. `false`: IPv6 is routed without NAT or filtering (V6-4).
    pub ip6tables: bool,
    /// Per-machine backend override.
    pub backend: Option<BackendKind>,
    /// Docker's userland proxy (PUB-7/PUB-8).
    pub userland_proxy: bool,
    /// The machine's own resolv.conf nameservers.
    pub resolvers: Vec<IpAddr>,
}

/// A host on `lan`.
#[derive(Clone, Debug)]
pub struct External {
    /// Name from the file.
    pub name: String,
    /// Address on `lan` (or its VLAN) as written in `ip`: IPv6 for an
    /// IPv6-only host.
    pub ip: IpAddr,
    /// IPv6 address on `lan6`: the `ip6` key, or `ip` itself when that is
    /// IPv6. `None` for an IPv4-only host.
    pub ip6: Option<Ipv6Addr>,
    /// 802.1Q VLAN of `lan` it sits on.
    pub vlan: Option<u16>,
    /// Default router of `lan`.
    pub gateway: bool,
    /// Echo services.
    pub serve: Vec<Service>,
    /// Authoritative DNS table (lower-case names without trailing dot → addresses).
    pub dns: BTreeMap<String, Vec<IpAddr>>,
}

impl External {
    /// The IPv4 address, if the host has one (`ip` may be IPv6).
    pub fn ip4(&self) -> Option<Ipv4Addr> {
        match self.ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }

    /// Whether the host holds `a` (either family).
    pub fn holds(&self, a: IpAddr) -> bool {
        self.ip == a || matches!(a, IpAddr::V6(v6) if self.ip6 == Some(v6))
    }
}

impl Machine {
    /// Whether the uplink holds `a` (either family).
    pub fn holds(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(v4) => self.ip == v4,
            IpAddr::V6(v6) => self.ip6 == Some(v6),
        }
    }
}

/// Docker network driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// Linux bridge (docker0 / br-*).
    Bridge,
    /// macvlan children of a parent.
    Macvlan,
    /// ipvlan children of a parent.
    Ipvlan,
    /// VXLAN overlay across machines.
    Overlay,
    /// Loopback only.
    None,
    /// The machine's own namespace.
    Host,
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Driver::Bridge => "bridge",
            Driver::Macvlan => "macvlan",
            Driver::Ipvlan => "ipvlan",
            Driver::Overlay => "overlay",
            Driver::None => "none",
            Driver::Host => "host",
        })
    }
}

/// macvlan/ipvlan mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// macvlan bridge (default).
    Bridge,
    /// macvlan vepa.
    Vepa,
    /// macvlan private.
    Private,
    /// macvlan passthru.
    Passthru,
    /// ipvlan l2 (default).
    L2,
    /// ipvlan l3.
    L3,
    /// ipvlan l3s.
    L3s,
}

/// ipvlan flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpvlanFlag {
    /// Children talk directly (default).
    Bridge,
    /// No child↔child.
    Private,
    /// Child↔child via the external switch.
    Vepa,
}

/// The parent link of a macvlan/ipvlan network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parent {
    /// As written (`eth0`, `eth0.10`).
    pub name: String,
    /// The 802.1Q VLAN id for `eth0.N`.
    pub vlan: Option<u16>,
}

/// One IPv4 subnet of a network.
#[derive(Clone, Debug)]
pub struct Subnet4 {
    /// The subnet.
    pub net: Ipv4Net,
    /// Gateway address (None where the driver allocates none).
    pub gateway: Option<Ipv4Addr>,
    /// Where dynamic addresses come from.
    pub ip_range: Ipv4Net,
}

/// A Docker network.
#[derive(Clone, Debug)]
pub struct Network {
    /// Unique name.
    pub name: String,
    /// Driver.
    pub driver: Driver,
    /// Index into `Plan::machines`; `None` for overlay (every machine).
    pub machine: Option<usize>,
    /// Docker's default `bridge` network.
    pub default: bool,
    /// IPv4 subnets, first is primary. Empty for `none`/`host`.
    pub subnets: Vec<Subnet4>,
    /// Reserved addresses.
    pub aux_addresses: BTreeMap<String, IpAddr>,
    /// Dual stack (`ipv6 = true`): every endpoint also has an IPv6 address.
    pub ipv6: bool,
    /// IPv6 subnet: `subnet6`, or the next free /64 of `fd00:5653::/48` in
    /// file order. `Some` exactly when `ipv6`.
    pub subnet6: Option<Ipv6Net>,
    /// IPv6 gateway (`gateway6`, default the first address of `subnet6`),
    /// held by the bridge. `Some` exactly when `ipv6`.
    pub gateway6: Option<Ipv6Addr>,
    /// No route or NAT beyond the network.
    pub internal: bool,
    /// Inter-container communication.
    pub icc: bool,
    /// SNAT on egress.
    pub masquerade: bool,
    /// MTU of container interfaces (overlay: already minus 50).
    pub mtu: u16,
    /// macvlan/ipvlan parent.
    pub parent: Option<Parent>,
    /// macvlan/ipvlan mode.
    pub mode: Option<Mode>,
    /// ipvlan flag.
    pub flag: Option<IpvlanFlag>,
    /// Overlay VNI.
    pub vni: Option<u32>,
    /// Whether the file set `mtu` explicitly.
    pub mtu_explicit: bool,
    /// Encrypted overlay (`encrypted = true`, OV-6, OV-9): VXLAN between
    /// machines inside IPsec ESP.
    pub encrypted: bool,
}

impl Network {
    /// Primary IPv4 subnet, if any.
    pub fn primary(&self) -> Option<&Subnet4> {
        self.subnets.first()
    }

    /// Whether containers on this network get Docker's embedded DNS (DNS-1).
    pub fn has_embedded_dns(&self) -> bool {
        !self.default && !matches!(self.driver, Driver::None | Driver::Host)
    }
}

/// A container's attachment to one network.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Index into `Plan::networks`.
    pub network: usize,
    /// IPv4 address (allocated or given).
    pub ip: Option<Ipv4Addr>,
    /// IPv6 address.
    pub ip6: Option<Ipv6Addr>,
    /// Network-scoped aliases.
    pub aliases: Vec<String>,
    /// MAC address (given, or `02:42:<ip>`).
    pub mac: MacAddr,
}

/// Transport protocol of a service, mapping or probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// An echo service `PROTO:PORT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Service {
    /// Protocol.
    pub proto: Proto,
    /// Port.
    pub port: u16,
}

/// A published port `[HOSTIP:]HOSTPORT:CONTAINERPORT[/proto]`; the host IP
/// may be `[::]` or `[v6addr]`. Without a host IP the port is published on
/// both families (PUB-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortMapping {
    /// Optional host IP (`None`: 0.0.0.0 and [::]).
    pub host_ip: Option<IpAddr>,
    /// Host port.
    pub host_port: u16,
    /// Container port.
    pub container_port: u16,
    /// Protocol.
    pub proto: Proto,
    /// When vswitch chose the host port (PUB-6): the range it was picked
    /// from (`80` and `IP::80`: the ephemeral range; `8000-8009:80`: that
    /// range). None: the file gave the port.
    pub auto: Option<(u16, u16)>,
}

/// Docker's automatic host-port range: the kernel's default
/// `ip_local_port_range` (PUB-6).
pub const EPHEMERAL_PORTS: (u16, u16) = (32768, 60999);

impl PortMapping {
    /// Whether this mapping listens on host address `addr` (PUB-4): any
    /// address of either family without a host IP, any address of its
    /// family for `0.0.0.0` / `[::]`, else only the host IP itself.
    pub fn listens_on(&self, addr: IpAddr) -> bool {
        match self.host_ip {
            None => true,
            Some(h) if h.is_unspecified() => h.is_ipv4() == addr.is_ipv4(),
            Some(h) => h == addr,
        }
    }
}

/// A container.
#[derive(Clone, Debug)]
pub struct Container {
    /// Name (also its DNS name).
    pub name: String,
    /// Index into `Plan::machines`.
    pub machine: usize,
    /// Attachments, in file order (eth0, eth1, …).
    pub endpoints: Vec<Endpoint>,
    /// Published ports.
    pub publish: Vec<PortMapping>,
    /// Echo services.
    pub serve: Vec<Service>,
    /// Custom upstreams for the embedded DNS.
    pub dns: Vec<IpAddr>,
    /// Running (false after a `stop` step: addresses stay reserved, DNS
    /// records go, DNS-23).
    pub running: bool,
    /// `hostname` (None: the container's name stands for Docker's short id).
    pub hostname: Option<String>,
    /// `dns_search`: the resolv.conf `search` line (DNS-2).
    pub dns_search: Vec<String>,
    /// `dns_opt`: the resolv.conf `options` (DNS-2, DNS-14).
    pub dns_opt: Vec<String>,
    /// `extra_hosts`: `/etc/hosts` lines (DNS-20), in file order.
    pub extra_hosts: Vec<(String, IpAddr)>,
    /// `links` on the default bridge (BR-20).
    pub links: Vec<Link>,
    /// `network_mode = "container:NAME"` (NH-7): index of the container
    /// whose network namespace (and resolv.conf, hosts) this one shares. It
    /// has no endpoints of its own.
    pub netns_of: Option<usize>,
}

/// A legacy link (BR-20): `links = ["NAME:ALIAS"]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Index into `Plan::containers` of the linked container.
    pub container: usize,
    /// The alias (the linked container's name when none is given).
    pub alias: String,
}

impl Container {
    /// The hostname: `hostname`, else the name (vswitch's stand-in for
    /// Docker's 12-character id).
    pub fn host_name(&self) -> &str {
        self.hostname.as_deref().unwrap_or(&self.name)
    }
}

/// Something a check runs from or targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// Index into `Plan::containers`.
    Container(usize),
    /// Index into `Plan::externals`.
    External(usize),
    /// Index into `Plan::machines` (its host stack).
    Machine(usize),
}

/// A resolved check target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// As written in the file (`web`, `web@net`, `10.0.0.1:80`).
    pub text: String,
    /// The node, when the target named one.
    pub node: Option<Node>,
    /// The address to probe. Its family is the family of the check: an
    /// IPv6 address for `ipv6 = true` (or a literal IPv6 target) on every
    /// kind, including `tcp`, `udp`, `reach` and `throughput`.
    pub addr: IpAddr,
    /// Port, where the kind takes one.
    pub port: Option<u16>,
}

/// DNS query type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum QueryType {
    /// A.
    A,
    /// AAAA.
    AAAA,
    /// PTR.
    PTR,
    /// CNAME.
    CNAME,
    /// MX.
    MX,
    /// TXT.
    TXT,
}

/// What a check expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// `ok`.
    Ok,
    /// `fail`.
    Fail,
    /// A DNS outcome.
    Dns(DnsExpect),
    /// Throughput checks: only the optional minimums.
    Figures,
    /// `spread` checks: this many distinct nodes answered.
    Count(u32),
}

/// A DNS check's expected outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsExpect {
    /// NOERROR with exactly these answers (set comparison; names lower-case, no trailing dot).
    Answers(Vec<String>),
    /// NXDOMAIN.
    NxDomain,
    /// SERVFAIL.
    ServFail,
    /// REFUSED.
    Refused,
    /// No answer at all.
    NoAnswer,
}

/// The kind-specific part of a check.
#[derive(Clone, Debug)]
pub enum CheckKind {
    /// ICMP echo.
    Ping {
        /// Target.
        to: Target,
        /// Echo requests.
        count: u32,
        /// ICMP payload size.
        size: u16,
        /// Don't-fragment.
        df: bool,
        /// Use IPv6.
        ipv6: bool,
        /// The median round-trip time must be at least this (ms).
        min_rtt_ms: Option<f64>,
        /// The median round-trip time must be at most this (ms).
        max_rtt_ms: Option<f64>,
    },
    /// TCP connect to an echo service.
    Tcp {
        /// Target with port.
        to: Target,
        /// Expected source address seen by the echo (compare as `IpAddr`:
        /// canonical form).
        seen_as: Option<IpAddr>,
    },
    /// UDP exchange with an echo service.
    Udp {
        /// Target with port.
        to: Target,
        /// Expected source address seen by the echo.
        seen_as: Option<IpAddr>,
        /// The probe's own source port (`sport`; default: an ephemeral
        /// one), so that checks can continue one flow across steps.
        sport: Option<u16>,
    },
    /// DNS query.
    Dns {
        /// Name (or address for PTR).
        query: String,
        /// Query type.
        qtype: QueryType,
        /// TCP instead of UDP.
        tcp: bool,
        /// Server; None = first nameserver of `from`'s resolv.conf.
        server: Option<IpAddr>,
        /// Require answer order to vary.
        rotate: bool,
    },
    /// Every (from, to) pair pinged.
    Reach {
        /// Targets.
        to: Vec<Target>,
    },
    /// Many connections to one address; counts the distinct nodes that
    /// answered (from the echo greeting's `by <node>`).
    Spread {
        /// Target with port.
        to: Target,
        /// Protocol (`tcp`).
        proto: Proto,
        /// Connections to make.
        connections: u32,
    },
    /// Throughput measurement.
    Throughput {
        /// Target (port optional).
        to: Target,
        /// Protocol.
        proto: Proto,
        /// Duration.
        seconds: u32,
        /// Parallel streams.
        streams: u32,
        /// UDP payload size.
        size: u16,
        /// Minimum Gbit/s.
        min_gbps: Option<f64>,
        /// Minimum kpps.
        min_kpps: Option<f64>,
        /// What sends and counts: the built-in generator (scenario files)
        /// or iperf3 (`vswitch bench` when it is installed).
        generator: Generator,
        /// Both directions at once (iperf3 `--bidir`; `vswitch bench --bidir`).
        bidir: bool,
    },
}

/// What measures a throughput check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Generator {
    /// vswitch's own sender and sink threads.
    #[default]
    Builtin,
    /// iperf3 server and client processes in the namespaces.
    Iperf3,
}

impl std::fmt::Display for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Generator::Builtin => "builtin",
            Generator::Iperf3 => "iperf3",
        })
    }
}

impl CheckKind {
    /// The `kind` string of the format.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Ping { .. } => "ping",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Udp { .. } => "udp",
            CheckKind::Dns { .. } => "dns",
            CheckKind::Reach { .. } => "reach",
            CheckKind::Throughput { .. } => "throughput",
            CheckKind::Spread { .. } => "spread",
        }
    }
}

/// A documented departure of one backend from Docker.
#[derive(Clone, Debug)]
pub struct KnownDifference {
    /// Why.
    pub reason: String,
    /// Which backend departs (None: any).
    pub backend: Option<String>,
}

/// One check.
#[derive(Clone, Debug)]
pub struct Check {
    /// 0-based position in the file.
    pub index: usize,
    /// Optional label.
    pub name: Option<String>,
    /// Where it runs from (several only for `reach`).
    pub from: Vec<Node>,
    /// `from` as written.
    pub from_text: String,
    /// Kind and its keys.
    pub kind: CheckKind,
    /// Expected outcome.
    pub expect: Expect,
    /// Deadline for the whole check.
    pub timeout: Duration,
    /// Documented difference.
    pub known_difference: Option<KnownDifference>,
    /// Index into `Plan::steps` of the step it runs after (None: before the first).
    pub after: Option<usize>,
}

/// The port a throughput check's receiver listens on when `to` names none.
pub const THROUGHPUT_PORT: u16 = 5201;

impl Plan {
    /// Where the receiving end of traffic to `addr:port` runs, and the port
    /// it listens on there: the container, external or machine that holds
    /// `addr`; for a machine address, the container that publishes `port`
    /// on it (listening on its container port), as Docker would deliver it.
    pub fn receiver_of(&self, addr: IpAddr, port: u16, proto: Proto) -> Option<(Node, u16)> {
        let on_addr = |ip: Option<IpAddr>| ip == Some(addr);
        for (i, c) in self.containers.iter().enumerate() {
            if c.endpoints
                .iter()
                .filter(|e| self.networks[e.network].driver != Driver::Host)
                .any(|e| on_addr(e.ip.map(IpAddr::V4)) || on_addr(e.ip6.map(IpAddr::V6)))
            {
                return Some((Node::Container(i), port));
            }
        }
        if let Some(i) = self.externals.iter().position(|x| x.holds(addr)) {
            return Some((Node::External(i), port));
        }
        // A VIP: its first running task (services, SVC-3).
        for s in &self.services {
            if s.networks
                .iter()
                .any(|n| n.vip.map(IpAddr::V4) == Some(addr))
                && let Some(&t) = s.running_tasks().first()
            {
                return Some((Node::Container(t), port));
            }
        }
        let m = self.machines.iter().position(|m| m.holds(addr))?;
        let published = self.containers.iter().enumerate().find_map(|(i, c)| {
            let p = c
                .publish
                .iter()
                .find(|p| p.proto == proto && p.host_port == port && p.listens_on(addr))?;
            (c.machine == m).then_some((Node::Container(i), p.container_port))
        });
        // A service port: the routing mesh's first running task, or the
        // task of this machine in host mode (OV-10).
        let service = || {
            self.services.iter().find_map(|s| {
                let p = s
                    .publish
                    .iter()
                    .find(|p| p.proto == proto && p.published == port)?;
                let t =
                    s.running_tasks().iter().copied().find(|&t| {
                        p.mode == PublishMode::Ingress || self.containers[t].machine == m
                    })?;
                Some((Node::Container(t), p.target))
            })
        };
        Some(
            published
                .or_else(service)
                .unwrap_or((Node::Machine(m), port)),
        )
    }

    /// The service and 1-based task number of a container that is a task.
    pub fn task_of(&self, container: usize) -> Option<(usize, usize)> {
        self.services.iter().enumerate().find_map(|(s, svc)| {
            svc.tasks
                .iter()
                .position(|&c| c == container)
                .map(|k| (s, k + 1))
        })
    }

    /// Human name of a node.
    pub fn node_name(&self, n: Node) -> &str {
        match n {
            Node::Container(i) => &self.containers[i].name,
            Node::External(i) => &self.externals[i].name,
            Node::Machine(i) => &self.machines[i].name,
        }
    }
}

/// One `[[step]]`: a change to a running world.
#[derive(Clone, Debug)]
pub struct Step {
    /// Unique name (checks bind to it with `after`).
    pub name: String,
    /// What it does.
    pub action: StepAction,
}

/// The action of a step, resolved: indices and allocated addresses.
#[derive(Clone, Debug)]
pub enum StepAction {
    /// `docker network connect`: the new endpoint, addresses allocated.
    Connect {
        /// Index into `Plan::containers`.
        container: usize,
        /// The endpoint it gains (its `network` says which).
        endpoint: Endpoint,
    },
    /// `docker network disconnect`: its records and addresses go.
    Disconnect {
        /// Index into `Plan::containers`.
        container: usize,
        /// Index into `Plan::networks`.
        network: usize,
    },
    /// `docker restart`.
    Restart(usize),
    /// `docker stop`.
    Stop(usize),
    /// `docker start`.
    Start(usize),
    /// `docker service scale`: tasks above `replicas` go (their addresses
    /// are given back), new ones come with their endpoints allocated.
    Scale {
        /// Index into `Plan::services`.
        service: usize,
        /// Replicas after the step.
        replicas: usize,
        /// Tasks that start, with the endpoints they get (container index).
        added: Vec<(usize, Vec<Endpoint>)>,
        /// Tasks that go (container index), highest number first.
        removed: Vec<usize>,
    },
    /// Impair a link (replaces that link's earlier fault).
    Fault {
        /// Which link.
        link: LinkRef,
        /// The impairment.
        fault: LinkFault,
    },
    /// Remove a link's faults.
    Clear(LinkRef),
    /// Let time pass.
    Wait(Duration),
}

impl StepAction {
    /// The action's key in the format.
    pub fn name(&self) -> &'static str {
        match self {
            StepAction::Connect { .. } => "connect",
            StepAction::Disconnect { .. } => "disconnect",
            StepAction::Restart(_) => "restart",
            StepAction::Stop(_) => "stop",
            StepAction::Start(_) => "start",
            StepAction::Scale { .. } => "scale",
            StepAction::Fault { .. } => "fault",
            StepAction::Clear(_) => "clear",
            StepAction::Wait(_) => "wait_ms",
        }
    }
}

/// A link a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkRef {
    /// A container's interface on one network.
    Endpoint {
        /// Index into `Plan::containers`.
        container: usize,
        /// Index into `Plan::networks`.
        network: usize,
    },
    /// An external's interface on `lan`.
    External(usize),
    /// A machine's uplink.
    Uplink(usize),
    /// Every port of `lan`.
    Lan,
}

pub use crate::engine::fault::LinkFault;

impl Plan {
    /// Applies one step's change of topology to this plan (connect,
    /// disconnect, stop, start); the other actions change no topology.
    pub fn apply(&mut self, action: &StepAction) {
        match action {
            StepAction::Connect {
                container,
                endpoint,
            } => self.containers[*container].endpoints.push(endpoint.clone()),
            StepAction::Disconnect { container, network } => self.containers[*container]
                .endpoints
                .retain(|e| e.network != *network),
            StepAction::Stop(c) => self.containers[*c].running = false,
            StepAction::Start(c) | StepAction::Restart(c) => self.containers[*c].running = true,
            StepAction::Scale {
                service,
                replicas,
                added,
                removed,
            } => {
                for &c in removed {
                    self.containers[c].running = false;
                    self.containers[c].endpoints.clear();
                }
                for (c, eps) in added {
                    self.containers[*c].endpoints = eps.clone();
                    self.containers[*c].running = true;
                }
                self.services[*service].replicas = *replicas;
            }
            StepAction::Fault { .. } | StepAction::Clear(_) | StepAction::Wait(_) => {}
        }
    }

    /// The plan as it stands once steps `0..n` have taken effect (`n = 0`:
    /// as built). Its `steps` and `checks` are left as they are.
    pub fn after_steps(&self, n: usize) -> Plan {
        let mut p = self.clone();
        for s in &self.steps[..n.min(self.steps.len())] {
            p.apply(&s.action);
        }
        p
    }

    /// Human name of a link.
    pub fn link_name(&self, l: LinkRef) -> String {
        match l {
            LinkRef::Endpoint { container, network } => format!(
                "{}@{}",
                self.containers[container].name, self.networks[network].name
            ),
            LinkRef::External(i) => self.externals[i].name.clone(),
            LinkRef::Uplink(i) => self.machines[i].name.clone(),
            LinkRef::Lan => "lan".to_string(),
        }
    }
}
