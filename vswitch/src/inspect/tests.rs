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
    assert_eq!(app["Aliases"], serde_json::json!(["www"]));
    assert_eq!(app["DNSNames"], serde_json::json!(["web", "www"]));
    assert_eq!(app["NetworkID"], object_id("vsw123456", "network", "app"));
    assert_eq!(app["GlobalIPv6PrefixLen"], 64);
    assert_eq!(nets["mv"]["Interface"], "eth1");
    assert_eq!(nets["mv"]["IPPrefixLen"], 24);
    let ports = &c["NetworkSettings"]["Ports"];
    assert_eq!(ports["80/tcp"][0]["HostPort"], "8080");
    assert_eq!(ports["80/tcp"][0]["HostIp"], "0.0.0.0");
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
