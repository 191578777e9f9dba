//! Format 1.1 IPv6 keys: `lan6`, machine `ip6`/`ip6tables`, external
//! `ip6`, default /64s, IPv6 check targets, `seen_as` and `publish`.

use std::net::{IpAddr, Ipv6Addr};

use super::super::plan::*;
use super::{HEAD, err_at, ok};

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

const DUAL: &str = r#"name = "dual stack"
[[machine]]
name = "m1"
[[machine]]
name = "m2"
ip6 = "2001:2::1"
ip6tables = false
[[external]]
name = "peer"
ip = "198.18.0.50"
ip6 = "2001:2::50"
serve = ["tcp:80", "udp:53"]
[[external]]
name = "only6"
ip = "2001:2::60"
serve = ["tcp:80"]
[[network]]
name = "a"
machine = "m1"
ipv6 = true
[[network]]
name = "v4only"
machine = "m1"
[[network]]
name = "b"
machine = "m2"
ipv6 = true
[[network]]
name = "c"
machine = "m2"
ipv6 = true
subnet6 = "fd00:5653::/64"
[[container]]
name = "web"
machine = "m1"
networks = ["a"]
serve = ["tcp:80", "udp:53"]
publish = ["8080:80", "[::]:8081:80", "[2001:2::2]:8082:80", "0.0.0.0:8083:80"]
[[container]]
name = "x"
machine = "m2"
networks = ["b", { name = "c", ip6 = "fd00:5653::99" }]
[[check]]
kind = "tcp"
from = "web"
to = "peer:80"
ipv6 = true
seen_as = "m1"
expect = "ok"
[[check]]
kind = "udp"
from = "web"
to = "[2001:2::50]:53"
seen_as = "2001:0002:0:0::2"
expect = "ok"
[[check]]
kind = "reach"
from = ["web", "x"]
to = ["peer", "only6", "m1", "web"]
ipv6 = true
expect = "ok"
[[check]]
kind = "throughput"
from = "peer"
to = "m1:8080"
ipv6 = true
[[check]]
kind = "tcp"
from = "only6"
to = "[2001:2::2]:8081"
expect = "ok"
"#;

#[test]
fn lan6_machines_externals() {
    let p = ok(DUAL);
    assert_eq!(p.lan6.unwrap().to_string(), "2001:2::/64");
    // m2 took ::1 explicitly; the externals hold ::50 and ::60; m1 gets ::2.
    assert_eq!(p.machines[0].ip6, Some(v6("2001:2::2")));
    assert_eq!(p.machines[1].ip6, Some(v6("2001:2::1")));
    assert!(p.machines[0].ip6tables);
    assert!(!p.machines[1].ip6tables);
    assert_eq!(p.externals[0].ip6, Some(v6("2001:2::50")));
    assert_eq!(p.externals[0].ip4(), Some("198.18.0.50".parse().unwrap()));
    assert_eq!(p.externals[1].ip, IpAddr::V6(v6("2001:2::60")));
    assert_eq!(p.externals[1].ip6, Some(v6("2001:2::60")));
    assert_eq!(p.externals[1].ip4(), None);
}

#[test]
fn default_subnet6_in_file_order() {
    let p = ok(DUAL);
    // "a" takes the first free /64; "c" declares fd00:5653::/64, so the
    // first free one is fd00:5653:1::/64, and "b" takes the next.
    let s6 = |i: usize| p.networks[i].subnet6.map(|n| n.to_string());
    assert_eq!(s6(0).as_deref(), Some("fd00:5653:1::/64"));
    assert_eq!(s6(1), None);
    assert!(!p.networks[1].ipv6);
    assert_eq!(s6(2).as_deref(), Some("fd00:5653:2::/64"));
    assert_eq!(s6(3).as_deref(), Some("fd00:5653::/64"));
    assert_eq!(p.networks[0].gateway6, Some(v6("fd00:5653:1::1")));
    assert_eq!(p.containers[0].endpoints[0].ip6, Some(v6("fd00:5653:1::2")));
    assert_eq!(p.containers[1].endpoints[1].ip6, Some(v6("fd00:5653::99")));
}

#[test]
fn v6_checks_resolve_to_v6_addresses() {
    let p = ok(DUAL);
    let m1 = IpAddr::V6(v6("2001:2::2"));
    match &p.checks[0].kind {
        CheckKind::Tcp { to, seen_as } => {
            assert_eq!(to.addr, IpAddr::V6(v6("2001:2::50")));
            assert_eq!(*seen_as, Some(m1));
        }
        k => panic!("{k:?}"),
    }
    match &p.checks[1].kind {
        // Literal target, and seen_as in canonical form.
        CheckKind::Udp { to, seen_as, .. } => {
            assert_eq!((to.addr, to.port), (IpAddr::V6(v6("2001:2::50")), Some(53)));
            assert_eq!(*seen_as, Some(m1));
        }
        k => panic!("{k:?}"),
    }
    match &p.checks[2].kind {
        CheckKind::Reach { to } => {
            let got: Vec<String> = to.iter().map(|t| t.addr.to_string()).collect();
            assert_eq!(
                got,
                ["2001:2::50", "2001:2::60", "2001:2::2", "fd00:5653:1::2"]
            );
        }
        k => panic!("{k:?}"),
    }
    match &p.checks[3].kind {
        CheckKind::Throughput { to, .. } => assert_eq!(to.addr, m1),
        k => panic!("{k:?}"),
    }
}

#[test]
fn publish_families() {
    let p = ok(DUAL);
    let web = &p.containers[0];
    let any6: IpAddr = "::".parse().unwrap();
    assert_eq!(web.publish[1].host_ip, Some(any6));
    assert_eq!(web.publish[2].host_ip, Some(IpAddr::V6(v6("2001:2::2"))));
    let m1_6 = IpAddr::V6(v6("2001:2::2"));
    let m1_4 = IpAddr::V4(p.machines[0].ip);
    // H:C on both families (PUB-4); [::] only IPv6; 0.0.0.0 only IPv4.
    assert!(web.publish[0].listens_on(m1_6) && web.publish[0].listens_on(m1_4));
    assert!(web.publish[1].listens_on(m1_6) && !web.publish[1].listens_on(m1_4));
    assert!(web.publish[2].listens_on(m1_6) && !web.publish[2].listens_on(m1_4));
    assert!(!web.publish[3].listens_on(m1_6) && web.publish[3].listens_on(m1_4));
    for port in [8080, 8081, 8082] {
        assert_eq!(
            p.receiver_of(m1_6, port, Proto::Tcp),
            Some((Node::Container(0), 80)),
            "{port}"
        );
    }
    assert_eq!(
        p.receiver_of(m1_6, 8083, Proto::Tcp),
        Some((Node::Machine(0), 8083))
    );
    assert_eq!(
        p.receiver_of(IpAddr::V6(v6("2001:2::60")), 80, Proto::Tcp),
        Some((Node::External(1), 80))
    );
}

#[test]
fn no_lan6_without_ipv6() {
    let p = ok(&format!(
        "{HEAD}[[network]]\nname = \"n\"\n[[container]]\nname = \"c\"\nnetworks = [\"n\"]\n"
    ));
    assert_eq!(p.lan6, None);
    assert_eq!(p.machines[0].ip6, None);
    assert!(p.machines[0].ip6tables);
}

#[test]
fn explicit_lan6_gives_every_machine_an_ip6() {
    let p = ok(&format!("{HEAD}lan6 = \"2001:db8:7::/64\"\n"));
    assert_eq!(p.lan6.unwrap().to_string(), "2001:db8:7::/64");
    assert_eq!(p.machines[0].ip6, Some(v6("2001:db8:7::1")));
    // An IPv6 check alone makes the lan6 default apply.
    let p = ok(&format!(
        "{HEAD}[[check]]\nkind = \"ping\"\nfrom = \"host\"\nto = \"host\"\nipv6 = true\nexpect = \"ok\"\n"
    ));
    assert_eq!(p.machines[0].ip6, Some(v6("2001:2::1")));
    match &p.checks[0].kind {
        CheckKind::Ping { to, ipv6, .. } => {
            assert!(*ipv6);
            assert_eq!(to.addr, IpAddr::V6(v6("2001:2::1")));
        }
        k => panic!("{k:?}"),
    }
}

fn m(extra: &str) -> String {
    format!("{HEAD}[[machine]]\nname = \"m\"\n{extra}\n")
}

#[test]
fn bad_lan6_and_machine_keys() {
    err_at(
        &format!("{HEAD}lan6 = \"10.0.0.0/24\"\n"),
        2,
        "lan6",
        "IPv4 subnet",
    );
    err_at(
        &format!("{HEAD}lan6 = \"2001:2::1/64\"\n"),
        2,
        "lan6",
        "host bits",
    );
    err_at(
        &format!("{HEAD}lan6 = \"2001:2::/124\"\n"),
        2,
        "lan6",
        "too small",
    );
    err_at(
        &m("ip6 = \"2001:3::1\""),
        4,
        "machine[0].ip6",
        "not in the lan6",
    );
    err_at(&m("ip6 = \"2001:2::\""), 4, "machine[0].ip6", "anycast");
    err_at(
        &m("ip6 = \"198.18.0.9\""),
        4,
        "machine[0].ip6",
        "IPv4 address",
    );
    err_at(&m("ip6tables = 1"), 4, "machine[0].ip6tables", "bool");
    err_at(
        &format!(
            "{HEAD}[[external]]\nname = \"e\"\nip = \"198.18.0.9\"\nip6 = \"2001:2::9\"\n[[machine]]\nname = \"m\"\nip6 = \"2001:2::9\"\n"
        ),
        8,
        "machine[0].ip6",
        "already used by external e",
    );
}

fn x(extra: &str) -> String {
    format!("{HEAD}[[external]]\nname = \"e\"\n{extra}\n")
}

#[test]
fn bad_external_ip6() {
    err_at(
        &x("ip = \"198.18.0.9\"\nip6 = \"2001:3::9\""),
        5,
        "external[0].ip6",
        "not in the lan6",
    );
    err_at(
        &x("ip = \"2001:3::9\""),
        4,
        "external[0].ip",
        "not in the lan6 2001:2::/64",
    );
    err_at(
        &x("ip = \"2001:2::9\"\nip6 = \"2001:2::8\""),
        5,
        "external[0].ip6",
        "already IPv6",
    );
    err_at(
        &x("ip = \"198.18.0.9\"\nip6 = \"fe80\""),
        5,
        "external[0].ip6",
        "invalid IPv6",
    );
    err_at(
        &format!(
            "{HEAD}[[external]]\nname = \"e\"\nip = \"2001:2::9\"\n[[external]]\nname = \"f\"\nip = \"198.18.0.3\"\nip6 = \"2001:2::9\"\n"
        ),
        8,
        "external[1].ip6",
        "already used by external e",
    );
}

#[test]
fn subnet6_overlaps_and_statics() {
    err_at(
        &format!("{HEAD}[[network]]\nname = \"n\"\nipv6 = true\nsubnet6 = \"2001:2::/48\"\n"),
        5,
        "network[0].subnet6",
        "overlaps the lan6",
    );
    err_at(
        &format!(
            "{HEAD}[[network]]\nname = \"n\"\nipv6 = true\nsubnet6 = \"fd00:1::/64\"\n[[network]]\nname = \"o\"\nipv6 = true\nsubnet6 = \"fd00:1::/80\"\n"
        ),
        9,
        "network[1].subnet6",
        "overlaps",
    );
    err_at(
        &format!(
            "{HEAD}[[network]]\nname = \"n\"\nipv6 = true\nsubnet6 = \"fd00:1::/64\"\n[[container]]\nname = \"c\"\nnetworks = [{{ name = \"n\", ip6 = \"fd00:2::5\" }}]\n"
        ),
        8,
        "container[0].networks[0].ip6",
        "no configured subnet contains",
    );
    err_at(
        &format!(
            "{HEAD}[[network]]\nname = \"n\"\nipv6 = true\nsubnet6 = \"fd00:1::/64\"\n[[container]]\nname = \"c\"\nnetworks = [{{ name = \"n\", ip6 = \"fd00:1::1\" }}]\n"
        ),
        8,
        "container[0].networks[0].ip6",
        "IPv6 gateway",
    );
    // A macvlan network on parent eth0 may share the lan6, and then skips
    // the lan6 addresses of machines and externals.
    let p = ok(&format!(
        "{HEAD}[[external]]\nname = \"e\"\nip = \"2001:2::2\"\n[[network]]\nname = \"mv\"\ndriver = \"macvlan\"\nparent = \"eth0\"\nsubnet = \"198.18.0.0/24\"\nipv6 = true\nsubnet6 = \"2001:2::/64\"\n[[container]]\nname = \"c\"\nnetworks = [\"mv\"]\n"
    ));
    // As for IPv4, the gateway is the first address (a macvlan gateway is
    // the lan's router, not held by the machine); c skips ::1 (machine,
    // gateway) and ::2 (external) and gets ::3.
    assert_eq!(p.machines[0].ip6, Some(v6("2001:2::1")));
    assert_eq!(p.networks[0].gateway6, Some(v6("2001:2::1")));
    assert_eq!(p.containers[0].endpoints[0].ip6, Some(v6("2001:2::3")));
}

fn k(check: &str) -> String {
    format!(
        "{HEAD}[[network]]\nname = \"n\"\n[[external]]\nname = \"e\"\nip = \"198.18.0.9\"\nserve = [\"tcp:80\"]\n[[container]]\nname = \"c\"\nnetworks = [\"n\"]\n[[check]]\n{check}\n"
    )
}

#[test]
fn v6_checks_to_nodes_without_ipv6() {
    err_at(
        &k("kind = \"tcp\"\nfrom = \"c\"\nto = \"c:80\"\nipv6 = true\nexpect = \"ok\""),
        14,
        "check[0].to",
        "container c has no IPv6 address on network n",
    );
    err_at(
        &k("kind = \"udp\"\nfrom = \"c\"\nto = \"e:80\"\nipv6 = true\nexpect = \"ok\""),
        14,
        "check[0].to",
        "external e has no IPv6 address",
    );
    err_at(
        &k("kind = \"reach\"\nfrom = \"c\"\nto = [\"host\", \"c\"]\nipv6 = true\nexpect = \"ok\""),
        14,
        "check[0].to[1]",
        "no IPv6 address",
    );
    err_at(
        &k("kind = \"throughput\"\nfrom = \"e\"\nto = \"c\"\nipv6 = true"),
        14,
        "check[0].to",
        "no IPv6 address",
    );
    err_at(
        &k("kind = \"tcp\"\nfrom = \"c\"\nto = \"[2001:db8::1]:80\"\nexpect = \"ok\""),
        14,
        "check[0].to",
        "not part of the scenario",
    );
    err_at(
        &k("kind = \"tcp\"\nfrom = \"c\"\nto = \"[2001:2::9:80\"\nexpect = \"ok\""),
        14,
        "check[0].to",
        "missing ']'",
    );
    err_at(
        &k("kind = \"dns\"\nfrom = \"c\"\nquery = \"c\"\nipv6 = true\nexpect = []"),
        15,
        "check[0].ipv6",
        "not valid for a dns check",
    );
    err_at(
        &k("kind = \"tcp\"\nfrom = \"c\"\nto = \"e:80\"\nipv6 = \"yes\"\nexpect = \"ok\""),
        15,
        "check[0].ipv6",
        "bool",
    );
}

#[test]
fn bad_v6_publish() {
    let c = |p: &str| {
        format!(
            "{HEAD}[[network]]\nname = \"n\"\nipv6 = true\n[[container]]\nname = \"c\"\nnetworks = [\"n\"]\npublish = [\"{p}\"]\n"
        )
    };
    err_at(
        &c("[::]8080:80"),
        8,
        "container[0].publish[0]",
        "expected ':'",
    );
    err_at(
        &c("[zz]:8080:80"),
        8,
        "container[0].publish[0]",
        "bad IPv6 host address",
    );
    err_at(
        &c("[::]:8080"),
        8,
        "container[0].publish[0]",
        "both a host and a container port",
    );
}
