//! Serde model of a scenario file, format version 1.
//!
//! Everything here is exactly what the file says: strings stay strings and
//! integers stay `i64`, so that `validate` can report ranges and syntax with
//! the scenario's own wording and location. Unknown keys are errors.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScenarioDef {
    pub version: Option<i64>,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub lan: Option<String>,
    /// Format 1.1: IPv6 addressing of `lan`.
    pub lan6: Option<String>,
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(default)]
    pub machine: Vec<MachineDef>,
    #[serde(default)]
    pub external: Vec<ExternalDef>,
    #[serde(default)]
    pub network: Vec<NetworkDef>,
    #[serde(default)]
    pub container: Vec<ContainerDef>,
    #[serde(default)]
    pub check: Vec<CheckDef>,
    /// Seed of every random choice of the run (faults); default 0.
    pub seed: Option<i64>,
    #[serde(default)]
    pub step: Vec<StepDef>,
    /// Format 1.1: swarm services (`[[service]]`).
    #[serde(default)]
    pub service: Vec<ServiceDef>,
}

/// `[[service]]`: a swarm service (see `services`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceDef {
    pub name: String,
    pub replicas: Option<i64>,
    pub machines: Option<Vec<String>>,
    #[serde(default)]
    pub networks: Vec<NetRef>,
    pub endpoint_mode: Option<String>,
    #[serde(default)]
    pub serve: Vec<String>,
    #[serde(default)]
    pub publish: Vec<String>,
}

/// `[[step]]`: a name and exactly one action (`steps` checks that).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepDef {
    pub name: String,
    pub connect: Option<ConnectDef>,
    pub disconnect: Option<DisconnectDef>,
    pub restart: Option<String>,
    pub stop: Option<String>,
    pub start: Option<String>,
    pub scale: Option<ScaleDef>,
    pub fault: Option<FaultDef>,
    pub clear: Option<String>,
    pub wait_ms: Option<i64>,
}

/// `connect = { container, network, ip?, ip6?, aliases? }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectDef {
    pub container: String,
    pub network: String,
    pub ip: Option<String>,
    pub ip6: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// `disconnect = { container, network }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DisconnectDef {
    pub container: String,
    pub network: String,
}

/// `scale = { service, replicas }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScaleDef {
    pub service: String,
    pub replicas: i64,
}

/// `fault = { link, loss, delay_ms, ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultDef {
    pub link: String,
    pub loss: Option<f64>,
    pub delay_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub duplicate: Option<f64>,
    pub reorder: Option<f64>,
    pub corrupt: Option<f64>,
    pub rate_mbit: Option<f64>,
    pub mtu: Option<i64>,
    pub down: Option<bool>,
}

/// `[[machine]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MachineDef {
    pub name: String,
    pub ip: Option<String>,
    /// Format 1.1: the uplink's IPv6 address on `lan6`.
    pub ip6: Option<String>,
    /// Format 1.1: Docker's `ip6tables` daemon option.
    pub ip6tables: Option<bool>,
    pub backend: Option<String>,
    pub userland_proxy: Option<bool>,
    #[serde(default)]
    pub resolvers: Vec<String>,
}

/// `[[external]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExternalDef {
    pub name: String,
    pub ip: String,
    /// Format 1.1: the host's IPv6 address on `lan6`.
    pub ip6: Option<String>,
    pub vlan: Option<i64>,
    #[serde(default)]
    pub gateway: bool,
    #[serde(default)]
    pub serve: Vec<String>,
    #[serde(default)]
    pub dns: BTreeMap<String, OneOrMany>,
}

/// `[[network]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NetworkDef {
    pub name: String,
    pub driver: Option<String>,
    pub machine: Option<String>,
    pub default: Option<bool>,
    pub subnet: Option<OneOrMany>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub aux_addresses: Option<BTreeMap<String, String>>,
    pub ipv6: Option<bool>,
    pub subnet6: Option<String>,
    pub gateway6: Option<String>,
    pub internal: Option<bool>,
    pub icc: Option<bool>,
    pub masquerade: Option<bool>,
    pub mtu: Option<i64>,
    pub parent: Option<String>,
    pub mode: Option<String>,
    pub flag: Option<String>,
    pub vni: Option<i64>,
    pub encrypted: Option<bool>,
}

/// `[[container]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContainerDef {
    pub name: String,
    pub machine: Option<String>,
    #[serde(default)]
    pub networks: Vec<NetRef>,
    #[serde(default)]
    pub publish: Vec<String>,
    #[serde(default)]
    pub serve: Vec<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--dns-search`.
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// `--dns-opt`.
    #[serde(default)]
    pub dns_opt: Vec<String>,
    /// `--add-host NAME:IP`.
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    /// `--network MODE`: a network name, `host`, `none`, or `container:NAME`.
    pub network_mode: Option<String>,
    /// `--link NAME[:ALIAS]` (default bridge).
    #[serde(default)]
    pub links: Vec<String>,
}

/// Table form of a container's network attachment.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttachDef {
    pub name: String,
    pub ip: Option<String>,
    pub ip6: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub mac: Option<String>,
}

/// `[[check]]`: every key of every kind; `checks` rejects keys foreign to
/// the kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckDef {
    pub kind: String,
    pub from: OneOrMany,
    pub to: Option<OneOrMany>,
    pub expect: Option<OneOrMany>,
    pub name: Option<String>,
    pub timeout_ms: Option<i64>,
    pub count: Option<i64>,
    pub size: Option<i64>,
    pub df: Option<bool>,
    pub ipv6: Option<bool>,
    pub seen_as: Option<String>,
    pub sport: Option<i64>,
    pub query: Option<String>,
    #[serde(rename = "type")]
    pub qtype: Option<String>,
    pub transport: Option<String>,
    pub server: Option<String>,
    pub rotate: Option<bool>,
    pub proto: Option<String>,
    pub seconds: Option<i64>,
    pub streams: Option<i64>,
    pub min_gbps: Option<f64>,
    pub min_kpps: Option<f64>,
    pub known_difference: Option<String>,
    pub backend: Option<String>,
    pub after: Option<String>,
    pub min_rtt_ms: Option<f64>,
    pub max_rtt_ms: Option<f64>,
    /// `spread`: how many connections to make.
    pub connections: Option<i64>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings, whichever form was written.
    pub fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(s.to_string()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(s))
            }
            // `expect = 3` of a `spread` check: kept as its decimal text.
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(n.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    v.push(s);
                }
                Ok(OneOrMany::Many(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A container's network: a name or a table.
#[derive(Debug)]
pub(crate) enum NetRef {
    Name(String),
    Table(AttachDef),
}

impl NetRef {
    /// The network name.
    pub fn name(&self) -> &str {
        match self {
            NetRef::Name(n) => n,
            NetRef::Table(t) => &t.name,
        }
    }
}

impl<'de> Deserialize<'de> for NetRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NetRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a network name or a table { name, ip, ip6, aliases, mac }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<NetRef, E> {
                Ok(NetRef::Name(s.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<NetRef, A::Error> {
                AttachDef::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(NetRef::Table)
            }
        }
        d.deserialize_any(V)
    }
}
