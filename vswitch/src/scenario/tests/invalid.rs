//! Scenarios that must be rejected, with where and why.

use super::{HEAD, err_at, ok};
use crate::scenario::plan::{Node, Proto};

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
        &c("networks = [\"n\"]\npublish = [\"80-82\"]"),
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
fn requires_names_kernel_features() {
    err_at(
        &format!("{HEAD}requires = [\"ipvlan\", \"warp-drive\"]\n"),
        2,
        "requires[1]",
        "unknown kernel feature \"warp-drive\"",
    );
    let p = ok(&format!("{HEAD}requires = [\"ipvlan\"]\n"));
    assert_eq!(p.requires, ["ipvlan"]);
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
    // A throughput check to an address nobody holds has no receiver.
    err_at(
        &k("kind = \"throughput\"\nfrom = \"c\"\nto = \"10.0.0.77\""),
        11,
        "check[0].to",
        "needs a node there to receive",
    );
    // One that somebody holds is valid, and received there.
    let p = ok(&k(
        "kind = \"throughput\"\nfrom = \"c\"\nto = \"10.0.0.2:5300\"",
    ));
    assert_eq!(
        p.receiver_of("10.0.0.2".parse().unwrap(), 5300, Proto::Tcp),
        Some((Node::Container(0), 5300))
    );
    // A known difference names the one backend it excuses.
    err_at(
        &k(
            "kind = \"ping\"\nfrom = \"c\"\nto = \"c\"\nexpect = \"ok\"\nknown_difference = \"why\"",
        ),
        13,
        "check[0].known_difference",
        "add backend",
    );
    // Loopback stays inside the namespace and the embedded DNS is 127.0.0.11.
    ok(&k(
        "kind = \"dns\"\nfrom = \"c\"\nquery = \"x\"\nserver = \"127.0.0.11\"\nexpect = \"servfail\"",
    ));
}

#[test]
fn passthru_takes_one_container() {
    err_at(
        &format!(
            "{HEAD}[[network]]\nname = \"p\"\ndriver = \"macvlan\"\nmode = \"passthru\"\nparent = \"eth0.7\"\n[[container]]\nname = \"a\"\nnetworks = [\"p\"]\n[[container]]\nname = \"b\"\nnetworks = [\"p\"]\n"
        ),
        12,
        "container[1].networks[0]",
        "takes only one container",
    );
}

/// Local-scope subnets are per machine: the same subnet on two machines is
/// accepted (macvlan of one lan subnet on two hosts, bridges of the same
/// subnet), on one machine or against an overlay it is refused (IPv4 and IPv6).
#[test]
fn same_subnet_is_refused_only_where_the_address_spaces_meet() {
    let two = "name = \"t\"\n[[machine]]\nname = \"h1\"\n[[machine]]\nname = \"h2\"\n";
    let ok = format!(
        "{two}[[network]]\nname = \"a\"\nmachine = \"h1\"\nsubnet = \"10.9.0.0/24\"\nipv6 = true\nsubnet6 = \"fd00:9::/64\"\n[[network]]\nname = \"b\"\nmachine = \"h2\"\nsubnet = \"10.9.0.0/24\"\nipv6 = true\nsubnet6 = \"fd00:9::/64\"\n"
    );
    crate::scenario::parse_str(std::path::Path::new("t.toml"), &ok).expect("accepted");
    let mv = format!(
        "{two}[[network]]\nname = \"a\"\nmachine = \"h1\"\ndriver = \"macvlan\"\nparent = \"eth0\"\nsubnet = \"198.18.0.0/24\"\nip_range = \"198.18.0.128/26\"\n[[network]]\nname = \"b\"\nmachine = \"h2\"\ndriver = \"macvlan\"\nparent = \"eth0\"\nsubnet = \"198.18.0.0/24\"\nip_range = \"198.18.0.192/26\"\n"
    );
    crate::scenario::parse_str(std::path::Path::new("t.toml"), &mv).expect("accepted");
    let same_machine = format!(
        "{two}[[network]]\nname = \"a\"\nmachine = \"h1\"\nsubnet = \"10.9.0.0/24\"\n[[network]]\nname = \"b\"\nmachine = \"h1\"\nsubnet = \"10.9.0.0/24\"\n"
    );
    let e = crate::scenario::parse_str(std::path::Path::new("t.toml"), &same_machine)
        .expect_err("refused");
    assert!(e.to_string().contains("Pool overlaps"), "{e}");
    let overlay = format!(
        "{two}[[network]]\nname = \"a\"\nmachine = \"h1\"\nsubnet = \"10.9.0.0/24\"\n[[network]]\nname = \"b\"\ndriver = \"overlay\"\nsubnet = \"10.9.0.0/25\"\n"
    );
    let e =
        crate::scenario::parse_str(std::path::Path::new("t.toml"), &overlay).expect_err("refused");
    assert!(e.to_string().contains("Pool overlaps"), "{e}");
    let v6 = format!(
        "{two}[[network]]\nname = \"a\"\nmachine = \"h1\"\nsubnet = \"10.9.0.0/24\"\nipv6 = true\nsubnet6 = \"fd00:9::/64\"\n[[network]]\nname = \"b\"\nmachine = \"h1\"\nsubnet = \"10.8.0.0/24\"\nipv6 = true\nsubnet6 = \"fd00:9::/64\"\n"
    );
    let e = crate::scenario::parse_str(std::path::Path::new("t.toml"), &v6).expect_err("refused");
    assert!(e.to_string().contains("Pool overlaps"), "{e}");
}
