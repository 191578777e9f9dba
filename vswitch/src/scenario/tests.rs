//! Validation tests on whole scenario texts.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use super::plan::*;
use super::{ScenarioError, parse_str};

fn ok(text: &str) -> Plan {
    match parse_str(Path::new("t.toml"), text) {
        Ok(p) => p,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn err(text: &str) -> ScenarioError {
    match parse_str(Path::new("t.toml"), text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

/// Asserts line, field and a message substring.
fn err_at(text: &str, line: usize, field: &str, msg: &str) {
    let e = err(text);
    assert_eq!((e.line, e.field.as_str()), (line, field), "{e}");
    assert!(e.message.contains(msg), "{e}\n  wanted: {msg}");
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

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
networks = ["mv", { name = "six", ip6 = "fd00:5653:1::99" }]
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
    assert_eq!(six.subnet6.unwrap().to_string(), "fd00:5653:1::/64");
    assert_eq!(six.gateway6.unwrap().to_string(), "fd00:5653:1::1");
    assert_eq!(
        p.containers[0].endpoints[1].ip6.unwrap().to_string(),
        "fd00:5653:1::99"
    );
    assert_eq!(
        p.containers[1].endpoints[0].ip6.unwrap().to_string(),
        "fd00:5653:1::2"
    );
    match &p.checks[0].kind {
        CheckKind::Ping { to, ipv6, .. } => {
            assert!(*ipv6);
            assert_eq!(to.addr.to_string(), "fd00:5653:1::2");
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

const HEAD: &str = "name = \"x\"\n";

#[test]
fn syntax_and_unknown_keys_are_located() {
    err_at(
        "name = \"x\"\n[[network]]\nname = \"a\"\nbogus = 1\n",
        4,
        "network[0].bogus",
        "unknown field `bogus`",
    );
    err_at(
        "name = \"x\"\n[[network]]\nname = \"a\"\n\n[[network]]\nsubnet = \"10.0.0.0/24\"\n",
        5,
        "network[1].name",
        "missing field `name`",
    );
    err_at("name = \"x\"\nlan = 10.0.0.0/24\n", 2, "lan", "");
    err_at(
        "version = 2\nname = \"x\"\n",
        1,
        "version",
        "only version 1",
    );
    err_at("nam = \"x\"\n", 1, "nam", "unknown field");
}

#[test]
fn names_are_checked() {
    err_at(
        &format!(
            "{HEAD}[[container]]\nname = \"a\"\nnetworks = [\"n\"]\n[[external]]\nname = \"a\"\nip = \"198.18.0.5\"\n"
        ),
        6,
        "external[0].name",
        "duplicate name \"a\"",
    );
    err_at(
        &format!("{HEAD}[[network]]\nname = \"-bad\"\n"),
        3,
        "network[0].name",
        "invalid network name",
    );
    err_at(
        &format!("{HEAD}[[network]]\nname = \"a\"\n[[network]]\nname = \"a\"\n"),
        5,
        "network[1].name",
        "already exists",
    );
    err_at(
        &format!("{HEAD}[[external]]\nname = \"host\"\nip = \"198.18.0.5\"\n"),
        3,
        "external[0].name",
        "implicit machine",
    );
}

#[test]
fn network_errors() {
    let net = |body: &str| format!("{HEAD}[[network]]\nname = \"n\"\n{body}\n");
    err_at(
        &net("subnet = \"10.0.0.1/24\""),
        4,
        "network[0].subnet",
        "use 10.0.0.0/24",
    );
    err_at(
        &net("subnet = [\"10.0.0.0/24\", \"bad\"]"),
        4,
        "network[0].subnet[1]",
        "invalid CIDR",
    );
    err_at(
        &net("subnet = \"10.0.0.0/24\"\ngateway = \"10.0.1.1\""),
        5,
        "network[0].gateway",
        "no matching subnet for gateway 10.0.1.1",
    );
    err_at(
        &net("gateway = \"10.0.1.1\""),
        4,
        "network[0].gateway",
        "every ip-range or gateway must have a corresponding subnet",
    );
    err_at(
        &net("subnet = \"10.0.0.0/24\"\nip_range = \"10.0.1.0/25\""),
        5,
        "network[0].ip_range",
        "no matching subnet for range",
    );
    err_at(
        &net("subnet = \"10.0.0.0/24\"\naux_addresses = { r = \"10.0.1.1\" }"),
        5,
        "network[0].aux_addresses.r",
        "must belong to the master pool",
    );
    err_at(
        &net("subnet = \"10.0.0.0/24\"\naux_addresses = { r = \"10.0.0.1\" }"),
        5,
        "network[0].aux_addresses.r",
        "Address already in use",
    );
    err_at(
        &net("subnet = \"198.18.0.0/25\""),
        4,
        "network[0].subnet",
        "overlaps the lan",
    );
    err_at(
        &net("driver = \"macvlan\"\nmode = \"foo\""),
        5,
        "network[0].mode",
        "requested macvlan mode 'foo' is not valid",
    );
    err_at(
        &net("driver = \"ipvlan\"\nmode = \"l4\""),
        5,
        "network[0].mode",
        "requested ipvlan mode 'l4' is not valid",
    );
    err_at(
        &net("driver = \"ipvlan\"\nflag = \"x\""),
        5,
        "network[0].flag",
        "requested ipvlan flag 'x'",
    );
    err_at(
        &net("driver = \"macvlan\"\nflag = \"private\""),
        5,
        "network[0].flag",
        "only for the ipvlan driver",
    );
    err_at(
        &net("driver = \"macvlan\"\nparent = \"lo\""),
        5,
        "network[0].parent",
        "loopback interface is not a valid macvlan parent link",
    );
    err_at(
        &net("driver = \"macvlan\"\nparent = \"eth1\""),
        5,
        "network[0].parent",
        "invalid subinterface vlan name",
    );
    err_at(
        &net("driver = \"macvlan\"\nparent = \"eth0.4095\""),
        5,
        "network[0].parent",
        "invalid subinterface vlan name",
    );
    err_at(
        &net("icc = false\ndriver = \"macvlan\""),
        4,
        "network[0].icc",
        "only for the bridge driver",
    );
    err_at(
        &net("driver = \"none\"\nsubnet = \"10.0.0.0/24\""),
        5,
        "network[0].subnet",
        "not valid for the none driver",
    );
    err_at(
        &net("vni = 5"),
        4,
        "network[0].vni",
        "only for the overlay driver",
    );
    err_at(
        &net("driver = \"overlay\"\nvni = 0"),
        5,
        "network[0].vni",
        "invalid VNI",
    );
    err_at(&net("mtu = 67"), 4, "network[0].mtu", "invalid MTU");
    err_at(
        &net("driver = \"macvlan\"\ndefault = true"),
        5,
        "network[0].default",
        "only a bridge network",
    );
    err_at(
        &net("driver = \"weird\""),
        4,
        "network[0].driver",
        "unknown driver",
    );
    err_at(
        &net("subnet6 = \"fd00::/64\""),
        4,
        "network[0].subnet6",
        "needs ipv6 = true",
    );
    err_at(
        &net("ipv6 = true\nsubnet6 = \"fd00::/64\"\ngateway6 = \"fd01::1\""),
        6,
        "network[0].gateway6",
        "no matching subnet",
    );
    err_at(
        &net("machine = \"nope\""),
        4,
        "network[0].machine",
        "no machine named",
    );
    err_at(
        &format!(
            "{HEAD}[[network]]\nname = \"a\"\nsubnet = \"10.0.0.0/16\"\n[[network]]\nname = \"b\"\nsubnet = \"10.0.3.0/24\"\n"
        ),
        7,
        "network[1].subnet",
        "Pool overlaps with other one on this address space",
    );
    err_at(
        &format!(
            "{HEAD}[[network]]\nname = \"a\"\ndefault = true\n[[network]]\nname = \"b\"\nsubnet = \"172.17.3.0/24\"\n"
        ),
        7,
        "network[1].subnet",
        "Pool overlaps",
    );
    err_at(
        &format!(
            "{HEAD}[[network]]\nname = \"a\"\ndefault = true\n[[network]]\nname = \"b\"\ndefault = true\n"
        ),
        7,
        "network[1].default",
        "already the default network",
    );
    err_at(
        &format!(
            "{HEAD}[[network]]\nname = \"a\"\ndriver = \"ipvlan\"\nparent = \"eth0.5\"\n[[network]]\nname = \"b\"\ndriver = \"ipvlan\"\nparent = \"eth0.5\"\nsubnet = \"10.1.0.0/24\"\n"
        ),
        9,
        "network[1].parent",
        "already using parent interface eth0.5",
    );
    err_at(
        &format!(
            "{HEAD}[[network]]\nname = \"a\"\ndriver = \"macvlan\"\nparent = \"eth0.5\"\n[[network]]\nname = \"b\"\ndriver = \"macvlan\"\nmode = \"passthru\"\nparent = \"eth0.5\"\n"
        ),
        10,
        "network[1].parent",
        "cannot use mode passthru",
    );
    err_at(
        &format!(
            "{HEAD}[[network]]\nname = \"a\"\ndriver = \"overlay\"\nvni = 7\n[[network]]\nname = \"b\"\ndriver = \"overlay\"\nvni = 7\n"
        ),
        9,
        "network[1].vni",
        "VNI 7 is already used",
    );
    err_at(
        &format!(
            "{HEAD}[[machine]]\nname = \"a\"\n[[machine]]\nname = \"b\"\n[[network]]\nname = \"n\"\n"
        ),
        6,
        "network[0].machine",
        "needs `machine`",
    );
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
fn container_errors() {
    let two = "[[network]]\nname = \"n\"\nsubnet = \"10.0.0.0/30\"\n[[network]]\nname = \"bridge\"\ndefault = true\n[[network]]\nname = \"none\"\ndriver = \"none\"\n";
    let c = |body: &str| format!("{HEAD}{two}[[container]]\nname = \"c\"\n{body}\n");
    // line 13 is the first line after `name = "c"`.
    err_at(
        &c("networks = [\"nope\"]"),
        13,
        "container[0].networks[0]",
        "network nope not found",
    );
    err_at(
        &c("networks = [{ name = \"n\", ip = \"10.0.1.2\" }]"),
        13,
        "container[0].networks[0].ip",
        "no configured subnet contains IP address 10.0.1.2",
    );
    err_at(
        &c("networks = [{ name = \"n\", ip = \"10.0.0.1\" }]"),
        13,
        "container[0].networks[0].ip",
        "Address already in use",
    );
    err_at(
        &c("networks = [{ name = \"n\", ip = \"10.0.0.3\" }]"),
        13,
        "container[0].networks[0].ip",
        "Address already in use",
    );
    err_at(
        &c("networks = [{ name = \"bridge\", ip = \"172.17.0.9\" }]"),
        13,
        "container[0].networks[0].ip",
        "user-specified IP address is supported on user-defined networks only",
    );
    err_at(
        &c("networks = [{ name = \"bridge\", aliases = [\"x\"] }]"),
        13,
        "container[0].networks[0].aliases",
        "network-scoped aliases are only supported for user-defined networks",
    );
    err_at(
        &c("networks = [\"n\", \"none\"]"),
        13,
        "container[0].networks[1]",
        "private (none) mode",
    );
    err_at(
        &c("networks = [\"n\", \"n\"]"),
        13,
        "container[0].networks[1]",
        "listed twice",
    );
    err_at(
        &c("networks = [{ name = \"n\", ip6 = \"fd00::2\" }]"),
        13,
        "container[0].networks[0].ip6",
        "has no IPv6",
    );
    err_at(
        &c("networks = [\"n\"]\npublish = [\"80\"]"),
        14,
        "container[0].publish[0]",
        "invalid published port",
    );
    err_at(
        &c("networks = [\"n\"]\nserve = [\"sctp:1\"]"),
        14,
        "container[0].serve[0]",
        "invalid service",
    );
    err_at(
        &c("networks = []"),
        13,
        "container[0].networks",
        "at least one network",
    );
    // 10.0.0.0/30 holds the gateway and one container.
    let full = format!(
        "{}[[container]]\nname = \"d\"\nnetworks = [\"n\"]\n",
        c("networks = [\"n\"]")
    );
    err_at(
        &full,
        16,
        "container[1].networks",
        "no available IPv4 addresses on this network's address pools",
    );
    let publ = format!(
        "{}[[container]]\nname = \"d\"\nnetworks = [\"bridge\"]\npublish = [\"0.0.0.0:8080:81\"]\n",
        c("networks = [\"n\"]\npublish = [\"8080:80\"]")
    );
    err_at(
        &publ,
        18,
        "container[1].publish[0]",
        "Bind for 0.0.0.0:8080 failed: port is already allocated",
    );
    // Different protocols do not clash.
    ok(&format!(
        "{}[[container]]\nname = \"d\"\nnetworks = [\"bridge\"]\npublish = [\"8080:81/udp\"]\n",
        c("networks = [\"n\"]\npublish = [\"8080:80\"]")
    ));
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
fn check_errors() {
    let base = "[[network]]\nname = \"n\"\nsubnet = \"10.0.0.0/24\"\n[[container]]\nname = \"c\"\nnetworks = [\"n\"]\n[[check]]\n";
    // Line 9 is the first key of the check.
    let k = |body: &str| format!("{HEAD}{base}{body}\n");
    err_at(
        &k("kind = \"pong\"\nfrom = \"c\""),
        9,
        "check[0].kind",
        "expected one of ping, tcp, udp, dns, reach, throughput",
    );
    err_at(
        &k("kind = \"tcp\"\nfrom = \"c\"\nto = \"c:80\"\nexpect = \"ok\"\ncount = 3"),
        13,
        "check[0].count",
        "count is not valid for a tcp check",
    );
    err_at(
        &k("kind = \"tcp\"\nfrom = \"c\"\nto = \"c\"\nexpect = \"ok\""),
        11,
        "check[0].to",
        "needs a port",
    );
    err_at(
        &k("kind = \"ping\"\nfrom = \"c\"\nto = \"c:80\"\nexpect = \"ok\""),
        11,
        "check[0].to",
        "takes no port",
    );
    err_at(
        &k("kind = \"ping\"\nfrom = \"c\"\nto = \"c\"\nexpect = \"maybe\""),
        12,
        "check[0].expect",
        "\"ok\" or \"fail\"",
    );
    err_at(
        &k("kind = \"ping\"\nfrom = \"c\"\nto = \"c\""),
        8,
        "check[0].expect",
        "\"ok\" or \"fail\"",
    );
    err_at(
        &k("kind = \"ping\"\nfrom = \"zz\"\nto = \"c\"\nexpect = \"ok\""),
        10,
        "check[0].from",
        "no container, external or machine named \"zz\"",
    );
    err_at(
        &k("kind = \"ping\"\nfrom = \"c\"\nto = \"ghost\"\nexpect = \"ok\""),
        11,
        "check[0].to",
        "named \"ghost\"",
    );
    err_at(
        &k("kind = \"ping\"\nfrom = \"c\"\nto = \"8.8.8.8\"\nexpect = \"ok\""),
        11,
        "check[0].to",
        "address 8.8.8.8 is not part of the scenario",
    );
    err_at(
        &k("kind = \"ping\"\nfrom = \"c\"\nto = \"c@other\"\nexpect = \"ok\""),
        11,
        "check[0].to",
        "network other not found",
    );
    err_at(
        &k("kind = \"dns\"\nfrom = \"c\"\nquery = \"x\"\nexpect = \"10.0.0.2\""),
        12,
        "check[0].expect",
        "list of answers",
    );
    err_at(
        &k("kind = \"dns\"\nfrom = \"c\"\nquery = \"x\"\ntype = \"SRV\"\nexpect = []"),
        12,
        "check[0].type",
        "unknown query type",
    );
    err_at(
        &k("kind = \"dns\"\nfrom = \"c\"\nquery = \"x\"\nserver = \"9.9.9.9\"\nexpect = []"),
        12,
        "check[0].server",
        "not part of the scenario",
    );
    err_at(
        &k("kind = \"ping\"\nfrom = [\"c\"]\nto = \"c\"\nexpect = \"ok\""),
        10,
        "check[0].from",
        "only reach checks take a list",
    );
    err_at(
        &k("kind = \"ping\"\nfrom = \"c\"\nto = \"c\"\nexpect = \"ok\"\nipv6 = true"),
        11,
        "check[0].to",
        "no IPv6 address",
    );
    err_at(
        &k("kind = \"ping\"\nfrom = \"c\"\nto = \"c\"\nexpect = \"ok\"\nbackend = \"kernel\""),
        13,
        "check[0].backend",
        "add known_difference",
    );
    // Loopback stays inside the namespace and the embedded DNS is 127.0.0.11.
    ok(&k(
        "kind = \"dns\"\nfrom = \"c\"\nquery = \"x\"\nserver = \"127.0.0.11\"\nexpect = \"servfail\"",
    ));
}
