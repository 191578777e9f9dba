//! What the Engine API is asked for: network and container bodies built
//! from the plan, and the names objects get in the daemon.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::{Value, json};

use super::{LABEL_RUN, image};
use crate::backend::topology::Topology;
use crate::run_id::RunId;
use crate::scenario::plan::{Driver, Endpoint, Network, Plan};

/// `POST /networks/create` body of a bridge or macvlan network.
pub(super) fn network_body(name: &str, run: &RunId, n: &Network) -> Value {
    let config: Vec<Value> = n
        .subnets
        .iter()
        .map(|s| {
            let mut c = json!({ "Subnet": s.net.to_string() });
            if let Some(g) = s.gateway {
                c["Gateway"] = json!(g.to_string());
            }
            if s.ip_range != s.net {
                c["IPRange"] = json!(s.ip_range.to_string());
            }
            let aux: serde_json::Map<String, Value> = n
                .aux_addresses
                .iter()
                .filter(|(_, ip)| match ip {
                    IpAddr::V4(v4) => s.net.contains(v4),
                    IpAddr::V6(_) => false,
                })
                .map(|(k, ip)| (k.clone(), json!(ip.to_string())))
                .collect();
            if !aux.is_empty() {
                c["AuxiliaryAddresses"] = Value::Object(aux);
            }
            c
        })
        .collect();
    let mut config = config;
    // V6-1: the IPv6 subnet and gateway (and IPv6 aux addresses) as a
    // second IPAM config.
    if let (true, Some(net6)) = (n.ipv6, n.subnet6) {
        let mut c = json!({ "Subnet": net6.to_string() });
        if let Some(g) = n.gateway6 {
            c["Gateway"] = json!(g.to_string());
        }
        let aux: serde_json::Map<String, Value> = n
            .aux_addresses
            .iter()
            .filter(|(_, ip)| matches!(ip, IpAddr::V6(v6) if net6.contains(v6)))
            .map(|(k, ip)| (k.clone(), json!(ip.to_string())))
            .collect();
        if !aux.is_empty() {
            c["AuxiliaryAddresses"] = Value::Object(aux);
        }
        config.push(c);
    }
    let mut options = serde_json::Map::new();
    let driver = match n.driver {
        Driver::Macvlan => {
            if let Some(p) = &n.parent {
                options.insert("parent".into(), json!(p.name));
            }
            if let Some(m) = n.mode {
                let mode = serde_json::to_value(m).unwrap_or(Value::Null);
                options.insert("macvlan_mode".into(), mode);
            }
            "macvlan"
        }
        Driver::Overlay => {
            // OV-*: the scenario's VNI where Docker takes one; the
            // container MTU is Docker's (1450) unless the file set one.
            if let Some(vni) = n.vni {
                options.insert(
                    "com.docker.network.driver.overlay.vxlanid_list".into(),
                    json!(vni.to_string()),
                );
            }
            if n.mtu_explicit {
                // Docker takes the file's value and subtracts the VXLAN
                // overhead itself (BUG-7); the plan's is already minus 50.
                options.insert(
                    "com.docker.network.driver.mtu".into(),
                    json!((n.mtu + 50).to_string()),
                );
            }
            "overlay"
        }
        _ => {
            let flag = |b: bool| json!(if b { "true" } else { "false" });
            options.insert("com.docker.network.bridge.enable_icc".into(), flag(n.icc));
            options.insert(
                "com.docker.network.bridge.enable_ip_masquerade".into(),
                flag(n.masquerade),
            );
            options.insert(
                "com.docker.network.driver.mtu".into(),
                json!(n.mtu.to_string()),
            );
            "bridge"
        }
    };
    json!({
        "Name": name,
        "CheckDuplicate": true,
        "Driver": driver,
        "Internal": n.internal,
        "EnableIPv6": n.ipv6,
        // Containers join an overlay as `docker run --network` does only
        // when it is attachable; local drivers take the flag as given.
        "Attachable": n.driver == Driver::Overlay,
        "IPAM": { "Driver": "default", "Config": config },
        "Options": options,
        "Labels": { LABEL_RUN: run.as_str(), "vswitch.network": n.name },
    })
}

/// An endpoint's settings: the planned address and aliases on user-defined
/// networks; nothing on the default bridge, where Docker refuses both (BR-19).
pub(super) fn endpoint_config(plan: &Plan, ci: usize, e: &Endpoint) -> Value {
    let n = &plan.networks[e.network];
    if n.default || matches!(n.driver, Driver::None | Driver::Host) {
        return json!({});
    }
    let mut v = json!({});
    let mut ipam = serde_json::Map::new();
    if let Some(ip) = e.ip {
        ipam.insert("IPv4Address".into(), json!(ip.to_string()));
    }
    if let Some(ip6) = e.ip6 {
        ipam.insert("IPv6Address".into(), json!(ip6.to_string()));
    }
    if !ipam.is_empty() {
        v["IPAMConfig"] = Value::Object(ipam);
    }
    let mut aliases = e.aliases.clone();
    let name = &plan.containers[ci].name;
    if !docker_accepts_container_name(name) {
        // Named `<run>-<name>` in the daemon: the plain name as an alias.
        aliases.insert(0, name.clone());
    }
    if !aliases.is_empty() {
        v["Aliases"] = json!(aliases);
    }
    v
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub(super) fn docker_accepts_container_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

/// A container's name in the daemon: the scenario's where Docker accepts it.
pub(super) fn container_name(run: &RunId, name: &str) -> String {
    if docker_accepts_container_name(name) {
        name.to_string()
    } else {
        format!("{run}-{name}")
    }
}

/// A network's name in the daemon: the scenario's unless it is a built-in one.
pub(super) fn network_name(run: &RunId, name: &str) -> String {
    if matches!(name, "bridge" | "host" | "none") {
        format!("{run}-{name}")
    } else {
        name.to_string()
    }
}

/// `POST /containers/create` body: the first network, its endpoint, DNS,
/// published ports.
pub(super) fn container_body(
    plan: &Plan,
    topology: &Topology,
    ci: usize,
    nets: &[String],
    run: &RunId,
    silent: Ipv4Addr,
) -> Value {
    let c = &plan.containers[ci];
    let mut body = json!({
        "Image": format!("{}:{}", image::IMAGE_REPO, image::IMAGE_TAG),
        "Cmd": ["sleep", "2000000000"],
        "Labels": { LABEL_RUN: run.as_str(), "vswitch.container": c.name },
    });
    if let Some(o) = c.netns_of {
        // NH-7: `--network container:NAME`; nothing network-related may
        // come with it (the plan refuses it all).
        let other = container_name(run, &plan.containers[o].name);
        body["HostConfig"] = json!({ "NetworkMode": format!("container:{other}") });
        return body;
    }
    let first = &c.endpoints[0];
    let first_net = &plan.networks[first.network];
    let mode = nets[first.network].clone();
    let mut host = json!({ "NetworkMode": mode });
    body["NetworkingConfig"] =
        json!({ "EndpointsConfig": { mode.clone(): endpoint_config(plan, ci, first) } });
    docker_run_options(plan, run, ci, &mut body, &mut host);
    if first_net.driver != Driver::Host {
        let dns: Vec<String> = if !c.dns.is_empty() {
            c.dns.iter().map(IpAddr::to_string).collect()
        } else if !plan.machines[c.machine].resolvers.is_empty() {
            plan.machines[c.machine]
                .resolvers
                .iter()
                .map(IpAddr::to_string)
                .collect()
        } else {
            vec![silent.to_string()]
        };
        host["Dns"] = json!(dns);
    }
    if let Some(eth0) = topology.endpoint(ci, 0) {
        body["MacAddress"] = json!(eth0.mac.to_string());
    }
    if !c.publish.is_empty() {
        let mut bindings = serde_json::Map::new();
        let mut exposed = serde_json::Map::new();
        for p in &c.publish {
            let key = format!("{}/{}", p.container_port, p.proto);
            exposed.insert(key.clone(), json!({}));
            let b = json!({
                "HostIp": p.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                "HostPort": p.host_port.to_string(),
            });
            match bindings.get_mut(&key).and_then(Value::as_array_mut) {
                Some(list) => list.push(b),
                None => {
                    bindings.insert(key, json!([b]));
                }
            }
        }
        host["PortBindings"] = Value::Object(bindings);
        body["ExposedPorts"] = Value::Object(exposed);
    }
    body["HostConfig"] = host;
    body
}

/// `--hostname`, `--dns-search`, `--dns-opt`, `--add-host`, `--link`.
///
/// Host ports vswitch chose (PUB-6) are requested by number: Docker 20.10
/// picks one port per family for `-p 80` (observed: `[::]:32768` and
/// `0.0.0.0:32769`) from a position that depends on the daemon's history,
/// while checks and `inspect` go by the plan's single port.
fn docker_run_options(plan: &Plan, run: &RunId, ci: usize, body: &mut Value, host: &mut Value) {
    let c = &plan.containers[ci];
    if let Some(h) = &c.hostname {
        body["Hostname"] = json!(h);
    }
    if !c.dns_search.is_empty() {
        host["DnsSearch"] = json!(c.dns_search);
    }
    if !c.dns_opt.is_empty() {
        host["DnsOptions"] = json!(c.dns_opt);
    }
    if !c.extra_hosts.is_empty() {
        let v: Vec<String> = c
            .extra_hosts
            .iter()
            .map(|(n, ip)| format!("{n}:{ip}"))
            .collect();
        host["ExtraHosts"] = json!(v);
    }
    if !c.links.is_empty() {
        let v: Vec<String> = c
            .links
            .iter()
            .map(|l| {
                format!(
                    "{}:{}",
                    container_name(run, &plan.containers[l.container].name),
                    l.alias
                )
            })
            .collect();
        host["Links"] = json!(v);
    }
}

/// An address of `lan` that nothing in the scenario holds: the DNS server
/// given to containers when the scenario names none, so that the embedded
/// DNS forwards nowhere outside the scenario and unknown names fail.
pub(super) fn silent_resolver(plan: &Plan) -> Ipv4Addr {
    let mut used: Vec<Ipv4Addr> = plan.machines.iter().map(|m| m.ip).collect();
    used.extend(plan.externals.iter().filter_map(|x| match x.ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }));
    let in_networks = |ip: &Ipv4Addr| {
        plan.networks
            .iter()
            .any(|n| n.subnets.iter().any(|s| s.net.contains(ip)))
    };
    plan.lan
        .hosts()
        .rev()
        .find(|ip| !used.contains(ip) && !in_networks(ip))
        .unwrap_or(plan.lan.broadcast())
}
