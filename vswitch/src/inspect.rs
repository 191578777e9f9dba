//! `vswitch inspect RUN [NODE|NETWORK]`: a live world described in the
//! JSON shapes of `docker network inspect` (a network) and `docker inspect`
//! (a container's `NetworkSettings`), from the plan the world was built
//! from: every address, gateway and MAC is the plan's.
//!
//! Ids are not Docker's (there is no daemon): they are 64 hex digits derived
//! from the run id and the object's name, stable for the life of the run.

use std::net::IpAddr;

use serde_json::{Map, Value, json};

use crate::scenario::plan::{Driver, Mode, Network, Node, Plan};

/// What `inspect` could not find.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// No node or network has this name.
    #[error(
        "no container, external, machine or network named {name:?} in this world (it has: {known})"
    )]
    NotFound {
        /// Name asked for.
        name: String,
        /// Every name it has.
        known: String,
    },
    /// A network and a node share the name.
    #[error(
        "{name:?} is both a network and a node: say `network:{name}` or `container:{name}` (or `external:`, `machine:`)"
    )]
    Ambiguous {
        /// Name asked for.
        name: String,
    },
}

/// A 64-hex-digit id for `kind`/`name` in run `run` (FNV-1a, four lanes).
pub fn object_id(run: &str, kind: &str, name: &str) -> String {
    let mut out = String::with_capacity(64);
    for lane in 0u64..4 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ lane.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for b in run
            .bytes()
            .chain([0])
            .chain(kind.bytes())
            .chain([0])
            .chain(name.bytes())
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

fn scope(n: &Network) -> &'static str {
    if n.driver == Driver::Overlay {
        "swarm"
    } else {
        "local"
    }
}

fn mode_word(m: Mode) -> &'static str {
    match m {
        Mode::Bridge => "bridge",
        Mode::Vepa => "vepa",
        Mode::Private => "private",
        Mode::Passthru => "passthru",
        Mode::L2 => "l2",
        Mode::L3 => "l3",
        Mode::L3s => "l3s",
    }
}

/// The driver options Docker shows for this network.
fn options(n: &Network) -> Map<String, Value> {
    let mut o = Map::new();
    let mut put = |k: &str, v: String| {
        o.insert(k.to_string(), Value::String(v));
    };
    match n.driver {
        Driver::Bridge if n.default => {
            put("com.docker.network.bridge.default_bridge", "true".into());
            put("com.docker.network.bridge.enable_icc", n.icc.to_string());
            put(
                "com.docker.network.bridge.enable_ip_masquerade",
                n.masquerade.to_string(),
            );
            put(
                "com.docker.network.bridge.host_binding_ipv4",
                "0.0.0.0".into(),
            );
            put("com.docker.network.bridge.name", "docker0".into());
            put("com.docker.network.driver.mtu", n.mtu.to_string());
        }
        Driver::Bridge => {
            if !n.icc {
                put("com.docker.network.bridge.enable_icc", "false".into());
            }
            if !n.masquerade {
                put(
                    "com.docker.network.bridge.enable_ip_masquerade",
                    "false".into(),
                );
            }
        }
        Driver::Macvlan | Driver::Ipvlan => {
            if let Some(p) = &n.parent {
                put("parent", p.name.clone());
            }
            let key = if n.driver == Driver::Macvlan {
                "macvlan_mode"
            } else {
                "ipvlan_mode"
            };
            if let Some(m) = n.mode {
                put(key, mode_word(m).into());
            }
            if let Some(f) = n.flag {
                put("ipvlan_flag", format!("{f:?}").to_lowercase());
            }
        }
        Driver::Overlay => {
            if let Some(v) = n.vni {
                put(
                    "com.docker.network.driver.overlay.vxlanid_list",
                    v.to_string(),
                );
            }
            // `docker network create --opt encrypted` keeps the option as
            // given, with an empty value (OV-9).
            if n.encrypted {
                put("encrypted", String::new());
            }
        }
        Driver::None | Driver::Host => {}
    }
    if n.mtu_explicit && !n.default {
        put("com.docker.network.driver.mtu", n.mtu.to_string());
    }
    o
}

fn ipam_config(n: &Network) -> Vec<Value> {
    let mut v = Vec::new();
    for s in &n.subnets {
        let mut c = Map::new();
        c.insert("Subnet".into(), json!(s.net.to_string()));
        if s.ip_range != s.net {
            c.insert("IPRange".into(), json!(s.ip_range.to_string()));
        }
        if let Some(g) = s.gateway {
            c.insert("Gateway".into(), json!(g.to_string()));
        }
        if !n.aux_addresses.is_empty() && v.is_empty() {
            let aux: Map<String, Value> = n
                .aux_addresses
                .iter()
                .map(|(k, a)| (k.clone(), json!(a.to_string())))
                .collect();
            c.insert("AuxiliaryAddresses".into(), Value::Object(aux));
        }
        v.push(Value::Object(c));
    }
    if let Some(s6) = n.subnet6 {
        let mut c = Map::new();
        c.insert("Subnet".into(), json!(s6.to_string()));
        if let Some(g) = n.gateway6 {
            c.insert("Gateway".into(), json!(g.to_string()));
        }
        v.push(Value::Object(c));
    }
    v
}

/// Prefix length of `ip` on network `n` (0 when outside every subnet).
fn prefix_len(n: &Network, ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(a) => n
            .subnets
            .iter()
            .find(|s| s.net.contains(&a))
            .map_or(0, |s| s.net.prefix_len()),
        IpAddr::V6(a) => n
            .subnet6
            .filter(|s| s.contains(&a))
            .map_or(0, |s| s.prefix_len()),
    }
}

/// `docker network inspect NETWORK` (one element of its array).
pub fn network_json(plan: &Plan, run: &str, n: usize) -> Value {
    let net = &plan.networks[n];
    let mut containers = Map::new();
    for c in &plan.containers {
        for e in c.endpoints.iter().filter(|e| e.network == n) {
            let v4 =
                e.ip.map(|a| format!("{a}/{}", prefix_len(net, IpAddr::V4(a))))
                    .unwrap_or_default();
            let v6 = e
                .ip6
                .map(|a| format!("{a}/{}", prefix_len(net, IpAddr::V6(a))))
                .unwrap_or_default();
            containers.insert(
                object_id(run, "container", &c.name),
                json!({
                    "Name": c.name,
                    "EndpointID": object_id(run, "endpoint", &format!("{}@{}", c.name, net.name)),
                    "MacAddress": if net.driver == Driver::Ipvlan || e.ip.is_none() && e.ip6.is_none() {
                        String::new()
                    } else {
                        e.mac.to_string()
                    },
                    "IPv4Address": v4,
                    "IPv6Address": v6,
                }),
            );
        }
    }
    json!({
        "Name": net.name,
        "Id": object_id(run, "network", &net.name),
        "Scope": scope(net),
        "Driver": net.driver.to_string(),
        "EnableIPv4": !net.subnets.is_empty(),
        "EnableIPv6": net.ipv6,
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": ipam_config(net),
        },
        "Internal": net.internal,
        // A scenario's containers join its overlays: `--attachable`.
        "Attachable": net.driver == Driver::Overlay,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": containers,
        "Options": options(net),
        "Labels": { "vswitch.run": run },
    })
}

/// One `NetworkSettings.Networks` entry of container `c`'s endpoint `k`.
fn endpoint_json(plan: &Plan, run: &str, c: usize, k: usize) -> Value {
    let cont = &plan.containers[c];
    let e = &cont.endpoints[k];
    let net = &plan.networks[e.network];
    let user_defined = net.has_embedded_dns();
    let gateway =
        e.ip.and_then(|a| net.subnets.iter().find(|s| s.net.contains(&a)))
            .and_then(|s| s.gateway)
            .map(|g| g.to_string())
            .unwrap_or_default();
    let (aliases, dns_names) = if user_defined {
        let mut names = vec![cont.name.clone()];
        names.extend(e.aliases.iter().cloned());
        // Engine 20.10 lists a running container's network-scoped aliases,
        // then its short id (DNS-4).
        let short = object_id(run, "container", &cont.name)[..12].to_string();
        let mut aliases = e.aliases.clone();
        aliases.push(short);
        (json!(aliases), json!(names))
    } else {
        (Value::Null, Value::Null)
    };
    let has_addr = e.ip.is_some() || e.ip6.is_some();
    json!({
        "IPAMConfig": Value::Null,
        "Links": Value::Null,
        "Aliases": aliases,
        "MacAddress": if has_addr && net.driver != Driver::Ipvlan { e.mac.to_string() } else { String::new() },
        "DriverOpts": Value::Null,
        "NetworkID": object_id(run, "network", &net.name),
        "EndpointID": object_id(run, "endpoint", &format!("{}@{}", cont.name, net.name)),
        "Gateway": gateway,
        "IPAddress": e.ip.map(|a| a.to_string()).unwrap_or_default(),
        "IPPrefixLen": e.ip.map_or(0, |a| prefix_len(net, IpAddr::V4(a))),
        "IPv6Gateway": if e.ip6.is_some() { net.gateway6.map(|g| g.to_string()).unwrap_or_default() } else { String::new() },
        "GlobalIPv6Address": e.ip6.map(|a| a.to_string()).unwrap_or_default(),
        "GlobalIPv6PrefixLen": e.ip6.map_or(0, |a| prefix_len(net, IpAddr::V6(a))),
        "DNSNames": dns_names,
        "Interface": format!("eth{k}"),
    })
}

/// `docker inspect CONTAINER` (one element of its array), networking parts.
pub fn container_json(plan: &Plan, run: &str, c: usize) -> Value {
    let cont = &plan.containers[c];
    let networks: Map<String, Value> = (0..cont.endpoints.len())
        .map(|k| {
            let net = &plan.networks[cont.endpoints[k].network];
            (net.name.clone(), endpoint_json(plan, run, c, k))
        })
        .collect();
    let mut ports = Map::new();
    for s in &cont.serve {
        ports.insert(format!("{}/{}", s.port, s.proto), Value::Null);
    }
    for p in &cont.publish {
        let key = format!("{}/{}", p.container_port, p.proto);
        // Engine 20.10 lists a port published on every address twice, as
        // docker-proxy binds it: 0.0.0.0 and ::.
        let hosts = match p.host_ip {
            Some(a) => vec![a.to_string()],
            None => vec!["0.0.0.0".to_string(), "::".to_string()],
        };
        for host in hosts {
            let binding = json!({ "HostIp": host, "HostPort": p.host_port.to_string() });
            match ports.get_mut(&key) {
                Some(Value::Array(a)) => a.push(binding),
                _ => {
                    ports.insert(key.clone(), json!([binding]));
                }
            }
        }
    }
    let mode = match cont.netns_of {
        // NH-7, as Docker shows it: `container:<id>`.
        Some(o) => format!(
            "container:{}",
            object_id(run, "container", &plan.containers[o].name)
        ),
        None => cont.endpoints.first().map_or("none".to_string(), |e| {
            plan.networks[e.network].name.clone()
        }),
    };
    json!({
        "Id": object_id(run, "container", &cont.name),
        "Name": format!("/{}", cont.name),
        "Config": { "Hostname": plan.containers[cont.netns_of.unwrap_or(c)].host_name() },
        "HostConfig": { "NetworkMode": mode, "Dns": cont.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>() },
        "NetworkSettings": {
            "Ports": ports,
            "Networks": networks,
        },
        "Machine": plan.machines[cont.machine].name,
    })
}

/// An external or machine: no Docker shape exists; its addresses on `lan`.
fn host_json(plan: &Plan, node: Node) -> Value {
    match node {
        Node::External(i) => {
            let x = &plan.externals[i];
            json!({
                "Name": x.name,
                "Kind": "external",
                "IPAddress": x.ip.to_string(),
                "VLAN": x.vlan,
                "Gateway": x.gateway,
                "DNSNames": x.dns.keys().collect::<Vec<_>>(),
            })
        }
        Node::Machine(i) => {
            let m = &plan.machines[i];
            json!({
                "Name": m.name,
                "Kind": "machine",
                "Interface": "eth0",
                "IPAddress": m.ip.to_string(),
                "IPPrefixLen": plan.lan.prefix_len(),
                "Resolvers": m.resolvers.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            })
        }
        Node::Container(_) => Value::Null,
    }
}

fn known_names(plan: &Plan) -> String {
    let mut v: Vec<&str> = plan.networks.iter().map(|n| n.name.as_str()).collect();
    v.extend(plan.containers.iter().map(|c| c.name.as_str()));
    v.extend(plan.externals.iter().map(|x| x.name.as_str()));
    v.extend(plan.machines.iter().map(|m| m.name.as_str()));
    v.join(", ")
}

/// The answer to `vswitch inspect RUN [WHAT]`, always an array as Docker
/// prints one: every network when `what` is None; otherwise the network or
/// node of that name (`network:`, `container:`, `external:`, `machine:`
/// prefixes pick one when names collide).
pub fn inspect(plan: &Plan, run: &str, what: Option<&str>) -> Result<Value, InspectError> {
    let Some(what) = what else {
        let all: Vec<Value> = (0..plan.networks.len())
            .map(|n| network_json(plan, run, n))
            .collect();
        return Ok(Value::Array(all));
    };
    let (kind, name) = match what.split_once(':') {
        Some((k, n)) if ["network", "container", "external", "machine"].contains(&k) => {
            (Some(k), n)
        }
        _ => (None, what),
    };
    let net = plan
        .networks
        .iter()
        .position(|n| n.name == name)
        .filter(|_| kind.is_none_or(|k| k == "network"));
    let node = plan
        .containers
        .iter()
        .position(|c| c.name == name)
        .map(Node::Container)
        .filter(|_| kind.is_none_or(|k| k == "container"))
        .or_else(|| {
            plan.externals
                .iter()
                .position(|x| x.name == name)
                .map(Node::External)
                .filter(|_| kind.is_none_or(|k| k == "external"))
        })
        .or_else(|| {
            plan.machines
                .iter()
                .position(|m| m.name == name)
                .map(Node::Machine)
                .filter(|_| kind.is_none_or(|k| k == "machine"))
        });
    match (net, node) {
        (Some(_), Some(_)) => Err(InspectError::Ambiguous {
            name: name.to_string(),
        }),
        (Some(n), None) => Ok(json!([network_json(plan, run, n)])),
        (None, Some(Node::Container(c))) => Ok(json!([container_json(plan, run, c)])),
        (None, Some(node)) => Ok(json!([host_json(plan, node)])),
        (None, None) => Err(InspectError::NotFound {
            name: name.to_string(),
            known: known_names(plan),
        }),
    }
}

#[cfg(test)]
mod tests;
