//! The JSON shapes of `docker network inspect` and `docker inspect`, from a
//! plan (no root needed).

use std::path::Path;

use serde_json::Value;

use super::*;
use crate::scenario;

const WORLD: &str = r#"
name = "inspect"
[[network]]
name = "bridge"
default = true
[[network]]
name = "app"
subnet = "172.20.0.0/16"
ip_range = "172.20.5.0/24"
gateway = "172.20.0.254"
aux_addresses = { router = "172.20.5.1" }
ipv6 = true
subnet6 = "fd00:1::/64"
icc = false
mtu = 1400
internal = true
[[network]]
name = "mv"
driver = "macvlan"
parent = "eth0.10"
mode = "private"
subnet = "192.168.10.0/24"
[[container]]
name = "web"
networks = [{ name = "app", aliases = ["www"] }, "mv"]
serve = ["tcp:80"]
publish = ["8080:80", "127.0.0.1:8443:443"]
[[container]]
name = "old"
networks = ["bridge"]
[[external]]
name = "ns1"
ip = "198.18.0.53"
"#;

fn plan() -> Plan {
    scenario::parse_str(Path::new("i.toml"), WORLD).expect("valid")
}

#[test]
fn network_inspect_shape() {
    let plan = plan();
    let v = inspect(&plan, "vsw123456", Some("app")).unwrap();
    let n = &v[0];
    assert_eq!(n["Name"], "app");
    assert_eq!(n["Id"].as_str().unwrap().len(), 64);
    assert!(
        n["Id"]
            .as_str()
            .unwrap()
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
    );
    assert_eq!(n["Driver"], "bridge");
    assert_eq!(n["Scope"], "local");
    assert_eq!(n["Internal"], true);
    assert_eq!(n["EnableIPv6"], true);
    let cfg = n["IPAM"]["Config"].as_array().unwrap();
    assert_eq!(cfg.len(), 2);
    assert_eq!(cfg[0]["Subnet"], "172.20.0.0/16");
    assert_eq!(cfg[0]["Gateway"], "172.20.0.254");
    assert_eq!(cfg[0]["IPRange"], "172.20.5.0/24");
    assert_eq!(cfg[0]["AuxiliaryAddresses"]["router"], "172.20.5.1");
    assert_eq!(cfg[1]["Subnet"], "fd00:1::/64");
    assert_eq!(
        n["Options"]["com.docker.network.bridge.enable_icc"],
        "false"
    );
    assert_eq!(n["Options"]["com.docker.network.driver.mtu"], "1400");
    let cs = n["Containers"].as_object().unwrap();
    assert_eq!(cs.len(), 1);
    let (id, web) = cs.iter().next().unwrap();
    assert_eq!(id, &object_id("vsw123456", "container", "web"));
    assert_eq!(web["Name"], "web");
    let ep = &plan.containers[0].endpoints[0];
    assert_eq!(web["MacAddress"], ep.mac.to_string());
    assert_eq!(
        web["IPv4Address"],
        format!("{}/16", ep.ip.unwrap()).as_str()
    );
    assert!(
        web["IPv4Address"]
            .as_str()
            .unwrap()
            .starts_with("172.20.5.")
    );
    assert!(web["IPv6Address"].as_str().unwrap().starts_with("fd00:1::"));
    assert!(web["IPv6Address"].as_str().unwrap().ends_with("/64"));
}

#[test]
fn default_bridge_and_macvlan_options() {
    let plan = plan();
    let all = inspect(&plan, "vsw123456", None).unwrap();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 3);
    let b = &all[0];
    assert_eq!(b["Name"], "bridge");
    assert_eq!(
        b["Options"]["com.docker.network.bridge.default_bridge"],
        "true"
    );
    assert_eq!(b["Options"]["com.docker.network.bridge.name"], "docker0");
    assert_eq!(b["IPAM"]["Config"][0]["Subnet"], "172.17.0.0/16");
    assert_eq!(b["IPAM"]["Config"][0]["Gateway"], "172.17.0.1");
    assert!(b["IPAM"]["Config"][0].get("IPRange").is_none());
    let mv = &all[2];
    assert_eq!(mv["Driver"], "macvlan");
    assert_eq!(mv["Options"]["parent"], "eth0.10");
    assert_eq!(mv["Options"]["macvlan_mode"], "private");
    assert_eq!(mv["EnableIPv6"], false);
}

#[test]
fn container_network_settings_shape() {
    let plan = plan();
    let v = inspect(&plan, "vsw123456", Some("web")).unwrap();
    let c = &v[0];
    assert_eq!(c["Name"], "/web");
    let nets = c["NetworkSettings"]["Networks"].as_object().unwrap();
    assert_eq!(nets.keys().collect::<Vec<_>>(), ["app", "mv"]);
    let app = &nets["app"];
    let ep = &plan.containers[0].endpoints[0];
    assert_eq!(app["IPAddress"], ep.ip.unwrap().to_string());
    assert_eq!(app["IPPrefixLen"], 16);
    assert_eq!(app["Gateway"], "172.20.0.254");
    assert_eq!(app["MacAddress"], ep.mac.to_string());
    // 20.10: the aliases, then the short id.
    let short = &c["Id"].as_str().unwrap()[..12];
    assert_eq!(app["Aliases"], serde_json::json!(["www", short]));
    assert_eq!(app["DNSNames"], serde_json::json!(["web", "www"]));
    assert_eq!(app["NetworkID"], object_id("vsw123456", "network", "app"));
    assert_eq!(app["GlobalIPv6PrefixLen"], 64);
    assert_eq!(nets["mv"]["Interface"], "eth1");
    assert_eq!(nets["mv"]["IPPrefixLen"], 24);
    let ports = &c["NetworkSettings"]["Ports"];
    assert_eq!(ports["80/tcp"][0]["HostPort"], "8080");
    assert_eq!(ports["80/tcp"][0]["HostIp"], "0.0.0.0");
    assert_eq!(ports["80/tcp"][1]["HostIp"], "::");
    assert_eq!(ports["443/tcp"].as_array().unwrap().len(), 1);
    assert_eq!(ports["443/tcp"][0]["HostIp"], "127.0.0.1");
    // The default bridge: no aliases, no DNS names (DNS-1).
    let old = inspect(&plan, "vsw123456", Some("old")).unwrap();
    let b = &old[0]["NetworkSettings"]["Networks"]["bridge"];
    assert_eq!(b["Aliases"], Value::Null);
    assert_eq!(b["Gateway"], "172.17.0.1");
    assert_eq!(b["IPPrefixLen"], 16);
}

#[test]
fn names_prefixes_and_errors() {
    let plan = plan();
    let x = inspect(&plan, "r", Some("ns1")).unwrap();
    assert_eq!(x[0]["Kind"], "external");
    assert_eq!(x[0]["IPAddress"], "198.18.0.53");
    let m = inspect(&plan, "r", Some("machine:host")).unwrap();
    assert_eq!(m[0]["Kind"], "machine");
    let e = inspect(&plan, "r", Some("nope")).unwrap_err();
    assert!(e.to_string().contains("no container"), "{e}");
    assert!(e.to_string().contains("app, mv"), "{e}");
    assert!(inspect(&plan, "r", Some("container:app")).is_err());
    // Ids depend on the run and the name only.
    assert_eq!(
        object_id("a", "network", "x"),
        object_id("a", "network", "x")
    );
    assert_ne!(
        object_id("a", "network", "x"),
        object_id("b", "network", "x")
    );
    assert_ne!(
        object_id("a", "network", "x"),
        object_id("a", "container", "x")
    );
}

#[test]
fn a_name_shared_by_a_network_and_a_container_needs_a_prefix() {
    let text = "name = \"x\"\n[[network]]\nname = \"db\"\n[[container]]\nname = \"db\"\nnetworks = [\"db\"]\n";
    let Ok(plan) = scenario::parse_str(Path::new("x.toml"), text) else {
        // The loader may forbid the clash itself; then nothing is ambiguous.
        return;
    };
    assert!(matches!(
        inspect(&plan, "r", Some("db")),
        Err(InspectError::Ambiguous { .. })
    ));
    assert_eq!(
        inspect(&plan, "r", Some("network:db")).unwrap()[0]["Driver"],
        "bridge"
    );
    assert_eq!(
        inspect(&plan, "r", Some("container:db")).unwrap()[0]["Name"],
        "/db"
    );
}

/// The same world built by a real Docker daemon: `docker inspect` and
/// `docker network inspect` agree with vswitch's on every field that the
/// world decides (addresses, prefixes, gateways, MACs, aliases apart from
/// the short id, published ports, drivers, IPAM, options). Ids differ, as
/// do IPAMConfig (the docker backend pins each address) and the default
/// hostname (the short id there, the name here).
#[test]
fn agrees_with_docker_inspect() {
    use crate::backend::{BuildOptions, World};
    use crate::scenario::plan::BackendKind;
    use crate::world::RunId;
    const DOCKER_WORLD: &str = r#"
name = "inspect vs docker"
[[network]]
name = "insp"
subnet = "172.29.0.0/16"
ip_range = "172.29.5.0/24"
gateway = "172.29.0.254"
ipv6 = true
subnet6 = "fd00:29::/64"
icc = false
mtu = 1400
[[network]]
name = "inspback"
internal = true
[[container]]
name = "inspweb"
networks = [{ name = "insp", aliases = ["www", "api"] }, "inspback"]
serve = ["tcp:80"]
publish = ["8080:80", "127.0.0.1:8443:443/tcp"]
[[container]]
name = "inspold"
networks = ["bridge"]
"#;
    if !crate::sys::require_root("agrees_with_docker_inspect") {
        return;
    }
    if let Err(e) = crate::backend::docker::daemon_reachable() {
        crate::prereq::missing::<()>("agrees_with_docker_inspect", &format!("{e}")).or_panic();
        return;
    }
    let plan = scenario::parse_str(Path::new("d.toml"), DOCKER_WORLD).expect("valid");
    let run = RunId::new();
    let world = World::build(
        &run,
        &plan,
        BackendKind::Docker,
        &BuildOptions::default(),
        &|_| {},
    )
    .expect("docker builds the world");
    let docker = crate::backend::docker::client();
    let pick = |v: &Value, keys: &[&str]| -> Vec<(String, Value)> {
        keys.iter()
            .map(|k| (k.to_string(), v[*k].clone()))
            .collect()
    };
    for name in ["inspweb", "inspold"] {
        let ours = &inspect(&plan, run.as_str(), Some(name)).unwrap()[0];
        let real = docker.container_inspect(name).expect("docker inspect");
        assert_eq!(ours["Name"], real["Name"], "{name}");
        let (o, r) = (&ours["NetworkSettings"], &real["NetworkSettings"]);
        assert_eq!(o["Ports"], r["Ports"], "{name}: Ports");
        let nets = |v: &Value| {
            v["Networks"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        };
        let docker_nets: Vec<String> = nets(r)
            .into_iter()
            .map(|n| n.strip_prefix(&format!("{run}-")).unwrap_or(&n).to_string())
            .collect();
        assert_eq!(nets(o), docker_nets, "{name}: networks");
        for (net, oe) in o["Networks"].as_object().unwrap() {
            let key = if net == "bridge" {
                format!("{run}-bridge")
            } else {
                net.clone()
            };
            let re = r["Networks"]
                .get(net)
                .or_else(|| r["Networks"].get(&key))
                .unwrap();
            let fields = [
                "MacAddress",
                "Gateway",
                "IPAddress",
                "IPPrefixLen",
                "IPv6Gateway",
                "GlobalIPv6Address",
                "GlobalIPv6PrefixLen",
                "Links",
            ];
            assert_eq!(pick(oe, &fields), pick(re, &fields), "{name} on {net}");
            // Aliases: the same, each list ending in its own short id.
            let strip = |v: &Value, id: &str| -> Value {
                match v.as_array() {
                    Some(a) => Value::Array(
                        a.iter()
                            .filter(|x| x.as_str() != Some(&id[..12]))
                            .cloned()
                            .collect(),
                    ),
                    None => Value::Null,
                }
            };
            let (oid, rid) = (ours["Id"].as_str().unwrap(), real["Id"].as_str().unwrap());
            assert_eq!(
                strip(&oe["Aliases"], oid),
                strip(&re["Aliases"], rid),
                "{name} on {net}: Aliases"
            );
            assert_eq!(
                oe["Aliases"].as_array().map(|a| a.last().cloned()),
                re["Aliases"]
                    .as_array()
                    .map(|a| a.last().map(|_| Value::String(oid[..12].into()))),
                "{name} on {net}: the short id closes the aliases"
            );
        }
    }
    for net in ["insp", "inspback"] {
        let ours = &inspect(&plan, run.as_str(), Some(net)).unwrap()[0];
        let real = docker.network_inspect(net).expect("docker network inspect");
        let fields = [
            "Name",
            "Driver",
            "Scope",
            "EnableIPv6",
            "Internal",
            "Attachable",
            "Ingress",
        ];
        assert_eq!(pick(ours, &fields), pick(&real, &fields), "network {net}");
        let ipam = |v: &Value| v["IPAM"]["Config"].clone();
        assert_eq!(ipam(ours), ipam(&real), "network {net}: IPAM.Config");
        let containers = |v: &Value| {
            let mut c: Vec<(String, String, String)> = v["Containers"]
                .as_object()
                .unwrap()
                .values()
                .map(|e| {
                    let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                    (s("Name"), s("MacAddress"), s("IPv4Address"))
                })
                .collect();
            c.sort();
            c
        };
        assert_eq!(
            containers(ours),
            containers(&real),
            "network {net}: Containers"
        );
        // The options a user would give: Docker keeps each as given (the
        // docker backend passes a few defaults explicitly besides).
        for (k, v) in ours["Options"].as_object().unwrap() {
            assert_eq!(&real["Options"][k], v, "network {net}: option {k}");
        }
    }
    drop(world);
}
