//! Scenarios that must be accepted, and what they resolve to.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::super::parse_str;
use super::super::plan::*;
use super::{HEAD, err_at, ok, v4};

const EXAMPLE: &str = r#"name = "user-defined bridge resolves names; default bridge does not"

[[network]]
name = "bridge"
default = true

[[network]]
name = "appnet"
subnet = "172.20.0.0/24"

[[container]]
name = "web"
networks = ["appnet"]
serve = ["tcp:80"]

[[container]]
name = "client"
networks = ["appnet"]

[[container]]
name = "old"
networks = ["bridge"]

[[check]]
kind = "dns"
from = "client"
query = "web"
expect = ["172.20.0.2"]

[[check]]
kind = "tcp"
from = "client"
to = "web:80"
expect = "ok"

[[check]]
kind = "ping"
from = "old"
to = "web"
expect = "fail"
"#;

#[test]
fn format_example_resolves() {
    let p = ok(EXAMPLE);
    assert_eq!(p.lan.to_string(), "198.18.0.0/24");
    assert_eq!(p.machines.len(), 1);
    assert_eq!(p.machines[0].name, "host");
    assert_eq!(p.machines[0].ip, v4("198.18.0.1"));
    let br = &p.networks[0];
    assert!(br.default && !br.has_embedded_dns());
    assert_eq!(br.subnets[0].net.to_string(), "172.17.0.0/16");
    assert_eq!(br.subnets[0].gateway, Some(v4("172.17.0.1")));
    assert_eq!(p.networks[1].subnets[0].gateway, Some(v4("172.20.0.1")));
    assert_eq!(p.networks[1].mtu, 1500);
    let ips: Vec<_> = p
        .containers
        .iter()
        .map(|c| c.endpoints[0].ip.unwrap())
        .collect();
    assert_eq!(ips, [v4("172.20.0.2"), v4("172.20.0.3"), v4("172.17.0.2")]);
    assert_eq!(
        p.containers[0].endpoints[0].mac.to_string(),
        "02:42:ac:14:00:02"
    );
    assert_eq!(
        p.containers[0].serve,
        [Service {
            proto: Proto::Tcp,
            port: 80
        }]
    );
    assert_eq!(p.checks.len(), 3);
    assert_eq!(
        p.checks[0].expect,
        Expect::Dns(DnsExpect::Answers(vec!["172.20.0.2".into()]))
    );
    assert_eq!(p.checks[0].timeout, Duration::from_millis(5000));
    match &p.checks[1].kind {
        CheckKind::Tcp { to, seen_as } => {
            assert_eq!(to.node, Some(Node::Container(0)));
            assert_eq!(to.addr, IpAddr::V4(v4("172.20.0.2")));
            assert_eq!(to.port, Some(80));
            assert_eq!(*seen_as, None);
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(p.checks[1].from, [Node::Container(1)]);
    match &p.checks[2].kind {
        CheckKind::Ping {
            count,
            size,
            df,
            ipv6,
            ..
        } => {
            assert_eq!((*count, *size, *df, *ipv6), (3, 56, false, false));
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(p.checks[2].timeout, Duration::from_millis(2000));
}

#[test]
fn default_pools_skip_declared_subnets() {
    let p = ok(r#"
name = "pools"
[[network]]
name = "a"
[[network]]
name = "b"
subnet = "172.18.128.0/24"
[[network]]
name = "c"
driver = "macvlan"
[[network]]
name = "o"
driver = "overlay"
"#);
    let nets: Vec<String> = p
        .networks
        .iter()
        .map(|n| n.subnets[0].net.to_string())
        .collect();
    assert_eq!(
        nets,
        [
            "172.19.0.0/16",
            "172.18.128.0/24",
            "172.20.0.0/16",
            "10.0.0.0/24"
        ]
    );
    assert_eq!(p.networks[3].vni, Some(4097));
    assert_eq!(p.networks[3].mtu, 1450);
    assert_eq!(p.networks[3].machine, None);
    assert_eq!(p.networks[2].mode, Some(Mode::Bridge));
    assert!(
        p.networks[2].internal,
        "parent-less macvlan is internal (MV-6)"
    );
}

#[test]
fn multi_machine_overlay_allocates_network_wide() {
    let p = ok(r#"
name = "overlay"
[[machine]]
name = "m1"
[[machine]]
name = "m2"
ip = "198.18.0.1"
[[external]]
name = "router"
ip = "198.18.0.2"
gateway = true
[[network]]
name = "ov"
driver = "overlay"
mtu = 1500
vni = 4097
[[network]]
name = "ov2"
driver = "overlay"
[[network]]
name = "b1"
machine = "m1"
[[container]]
name = "a"
machine = "m1"
networks = ["ov", "b1"]
[[container]]
name = "b"
machine = "m2"
networks = ["ov"]
[[check]]
kind = "ping"
from = "a"
to = "b"
expect = "ok"
count = 10
[[check]]
kind = "reach"
from = ["a", "b"]
to = ["m1", "router", "a@b1"]
expect = "ok"
"#);
    assert_eq!(p.machines[0].ip, v4("198.18.0.3"));
    assert_eq!(p.machines[1].ip, v4("198.18.0.1"));
    assert_eq!(p.networks[0].mtu, 1450);
    assert!(p.networks[0].mtu_explicit);
    assert_eq!(p.networks[1].vni, Some(4098));
    assert_eq!(p.containers[0].endpoints[0].ip, Some(v4("10.0.0.2")));
    assert_eq!(p.containers[1].endpoints[0].ip, Some(v4("10.0.0.3")));
    assert_eq!(p.containers[0].endpoints[1].ip, Some(v4("172.18.0.2")));
    assert_eq!(p.checks[0].timeout, Duration::from_millis(3000));
    match &p.checks[1].kind {
        CheckKind::Reach { to } => {
            let addrs: Vec<String> = to.iter().map(|t| t.addr.to_string()).collect();
            assert_eq!(addrs, ["198.18.0.3", "198.18.0.2", "172.18.0.2"]);
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(p.checks[1].timeout, Duration::from_millis(12_000));
    assert_eq!(p.checks[1].from_text, "a, b");
}

#[test]
fn statics_first_then_dynamic_with_range_and_aux() {
    let p = ok(r#"
name = "ipam"
[[network]]
name = "n"
subnet = "10.9.0.0/24"
ip_range = "10.9.0.128/25"
aux_addresses = { router = "10.9.0.129", low = "10.9.0.5" }
[[container]]
name = "a"
networks = ["n"]
[[container]]
name = "b"
networks = [{ name = "n", ip = "10.9.0.130", aliases = ["bee"], mac = "02:00:00:00:00:01" }]
[[container]]
name = "c"
networks = ["n"]
"#);
    let n = &p.networks[0];
    assert_eq!(n.subnets[0].gateway, Some(v4("10.9.0.128")));
    assert_eq!(n.aux_addresses.len(), 2);
    let ips: Vec<_> = p
        .containers
        .iter()
        .map(|c| c.endpoints[0].ip.unwrap())
        .collect();
    assert_eq!(ips, [v4("10.9.0.131"), v4("10.9.0.130"), v4("10.9.0.132")]);
    assert_eq!(p.containers[1].endpoints[0].aliases, ["bee"]);
    assert_eq!(
        p.containers[1].endpoints[0].mac.to_string(),
        "02:00:00:00:00:01"
    );
}

#[test]
fn ipv6_and_macvlan_on_the_lan() {
    let p = ok(r#"
name = "v6"
[[external]]
name = "gw"
ip = "198.18.0.1"
gateway = true
dns = { "Example.COM." = "198.18.0.1", "multi.example" = ["198.18.0.1", "fd00::1"] }
[[network]]
name = "mv"
driver = "macvlan"
parent = "eth0"
subnet = "198.18.0.0/24"
[[network]]
name = "six"
ipv6 = true
[[container]]
name = "a"
networks = ["mv", { name = "six", ip6 = "fd00:5653::99" }]
[[container]]
name = "b"
networks = ["six"]
[[check]]
kind = "ping"
from = "a"
to = "b"
ipv6 = true
expect = "ok"
"#);
    // Gateway .1 is the router; the machine took .2, so a gets .3.
    assert_eq!(p.machines[0].ip, v4("198.18.0.2"));
    assert_eq!(p.containers[0].endpoints[0].ip, Some(v4("198.18.0.3")));
    assert!(!p.networks[0].internal);
    let six = &p.networks[1];
    // The first /64 of fd00:5653::/48 for the first IPv6 network.
    assert_eq!(six.subnet6.unwrap().to_string(), "fd00:5653::/64");
    assert_eq!(six.gateway6.unwrap().to_string(), "fd00:5653::1");
    assert_eq!(
        p.containers[0].endpoints[1].ip6.unwrap().to_string(),
        "fd00:5653::99"
    );
    assert_eq!(
        p.containers[1].endpoints[0].ip6.unwrap().to_string(),
        "fd00:5653::2"
    );
    match &p.checks[0].kind {
        CheckKind::Ping { to, ipv6, .. } => {
            assert!(*ipv6);
            assert_eq!(to.addr.to_string(), "fd00:5653::2");
        }
        k => panic!("{k:?}"),
    }
    let dns = &p.externals[0].dns;
    assert!(dns.contains_key("example.com"));
    assert_eq!(dns["multi.example"].len(), 2);
}

#[test]
fn check_defaults_and_kinds() {
    let p = ok(r#"
name = "checks"
[[external]]
name = "up"
ip = "198.18.0.9"
serve = ["udp:53"]
dns = { "a.example" = "198.18.0.9" }
[[machine]]
name = "h"
resolvers = ["up", "198.18.0.9"]
[[network]]
name = "n"
[[container]]
name = "c"
networks = ["n"]
publish = ["8080:80", "127.0.0.1:5353:53/udp"]
[[check]]
kind = "udp"
from = "c"
to = "up:53"
seen_as = "h"
expect = "fail"
known_difference = "why"
backend = "userspace"
[[check]]
kind = "dns"
from = "c"
query = "A.Example."
type = "mx"
transport = "tcp"
server = "up"
expect = ["Mail.Example."]
[[check]]
kind = "dns"
from = "c"
query = "nothing"
expect = "nxdomain"
[[check]]
kind = "throughput"
from = "c"
to = "up"
proto = "udp"
seconds = 5
min_gbps = 1
[[check]]
kind = "tcp"
from = "h"
to = "172.18.0.2:80"
expect = "ok"
timeout_ms = 700
"#);
    assert_eq!(p.machines[0].resolvers.len(), 2);
    assert_eq!(p.containers[0].publish.len(), 2);
    let c = &p.checks;
    match &c[0].kind {
        CheckKind::Udp { seen_as, .. } => assert_eq!(*seen_as, Some(IpAddr::V4(v4("198.18.0.1")))),
        k => panic!("{k:?}"),
    }
    assert_eq!(
        c[0].known_difference.as_ref().unwrap().backend.as_deref(),
        Some("userspace")
    );
    match &c[1].kind {
        CheckKind::Dns {
            qtype, tcp, server, ..
        } => {
            assert_eq!((*qtype, *tcp), (QueryType::MX, true));
            assert_eq!(*server, Some(IpAddr::V4(v4("198.18.0.9"))));
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(
        c[1].expect,
        Expect::Dns(DnsExpect::Answers(vec!["mail.example".into()]))
    );
    assert_eq!(c[2].expect, Expect::Dns(DnsExpect::NxDomain));
    assert_eq!(c[3].expect, Expect::Figures);
    assert_eq!(c[3].timeout, Duration::from_millis(15_000));
    match &c[3].kind {
        CheckKind::Throughput {
            proto,
            seconds,
            streams,
            size,
            min_gbps,
            ..
        } => {
            assert_eq!(
                (*proto, *seconds, *streams, *size),
                (Proto::Udp, 5, 1, 1400)
            );
            assert_eq!(*min_gbps, Some(1.0));
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(c[4].timeout, Duration::from_millis(700));
    assert_eq!(c[4].from, [Node::Machine(0)]);
}

#[test]
fn two_default_bridges_on_two_machines_share_172_17() {
    let p = ok(&format!(
        "{HEAD}[[machine]]\nname = \"a\"\n[[machine]]\nname = \"b\"\n[[network]]\nname = \"d1\"\ndefault = true\nmachine = \"a\"\n[[network]]\nname = \"d2\"\ndefault = true\nmachine = \"b\"\n[[network]]\nname = \"u\"\nmachine = \"b\"\n"
    ));
    assert_eq!(p.networks[1].subnets[0].net.to_string(), "172.17.0.0/16");
    assert_eq!(p.networks[2].subnets[0].net.to_string(), "172.18.0.0/16");
}

#[test]
fn host_and_none_networks() {
    let p = ok(&format!(
        "{HEAD}[[network]]\nname = \"host\"\ndriver = \"host\"\n[[container]]\nname = \"c\"\nnetworks = [\"host\"]\n[[check]]\nkind = \"ping\"\nfrom = \"c\"\nto = \"c\"\nexpect = \"ok\"\n"
    ));
    assert!(p.networks[0].subnets.is_empty());
    assert_eq!(p.containers[0].endpoints[0].ip, None);
    assert!(!p.containers[0].endpoints[0].mac.is_multicast());
    match &p.checks[0].kind {
        CheckKind::Ping { to, .. } => assert_eq!(to.addr, IpAddr::V4(p.machines[0].ip)),
        k => panic!("{k:?}"),
    }
    err_at(
        &format!(
            "{HEAD}[[network]]\nname = \"host\"\ndriver = \"host\"\n[[network]]\nname = \"n\"\n[[container]]\nname = \"c\"\nnetworks = [\"host\", \"n\"]\n"
        ),
        9,
        "container[0].networks[1]",
        "cannot be connected to any other network",
    );
}

#[test]
fn deep_nesting_and_big_inputs_are_rejected_quickly() {
    for text in [
        format!("name = \"x\"\na = {}", "[".repeat(100_000)),
        format!(
            "name = \"x\"\na = {}1{}",
            "[".repeat(5_000),
            "]".repeat(5_000)
        ),
        format!("name = \"x\"\na = {}", "{ b = ".repeat(50_000)),
        format!(
            "name = \"x\"\n{}",
            "[[network]]\nname = \"n\"\n".repeat(3000)
        ),
    ] {
        let t = std::time::Instant::now();
        let _ = parse_str(Path::new("deep.toml"), &text);
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}

/// OV-6: an encrypted overlay's containers get 1424 by default (1450 − 26,
/// a multiple of 4); with `mtu = M` (the underlay) M − 76 rounded down to a
/// multiple of 4; a plain overlay beside it keeps 1450.
#[test]
fn encrypted_overlay_mtu() {
    let p = ok(r#"
name = "enc"
[[machine]]
name = "m1"
[[machine]]
name = "m2"
[[network]]
name = "secure"
driver = "overlay"
encrypted = true
[[network]]
name = "small"
driver = "overlay"
encrypted = true
mtu = 1403
[[network]]
name = "plain"
driver = "overlay"
encrypted = false
"#);
    assert!(p.networks[0].encrypted);
    assert_eq!(p.networks[0].mtu, 1424);
    // 1403 − 50 − 26 = 1327 → 1324.
    assert_eq!(p.networks[1].mtu, 1324);
    assert!(!p.networks[2].encrypted);
    assert_eq!(p.networks[2].mtu, 1450);
}
