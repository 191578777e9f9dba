//! IPv6 in the kernel backend without root: layout (addresses, routes,
//! lan uplinks) and the nftables ruleset with `ip6tables` on and off.

use std::path::Path;

use super::features::unsupported_with;
use super::layout::{lan_iface, machine_layout};
use super::nft::machine_ruleset;
use crate::scenario::parse_str;
use crate::scenario::plan::{Node, Plan};

fn plan(text: &str) -> Plan {
    parse_str(Path::new("t.toml"), text).expect("test scenario is valid")
}

const V6: &str = r#"
name = "v6"
[[machine]]
name = "host"
[[external]]
name = "ext"
ip = "198.18.0.100"
ip6 = "2001:2::100"
gateway = true
[[external]]
name = "six"
ip = "2001:2::60"
[[network]]
name = "app"
ipv6 = true
subnet = "10.10.0.0/24"
subnet6 = "fd00:10::/64"
[[network]]
name = "priv"
ipv6 = true
internal = true
subnet = "10.12.0.0/24"
[[container]]
name = "web"
networks = ["app"]
publish = ["8080:80", "[::]:8081:80", "0.0.0.0:8082:80"]
[[container]]
name = "ic"
networks = ["priv"]
"#;

#[test]
fn v6_addresses_and_routes() {
    let p = plan(V6);
    let l = machine_layout(&p, 0);
    let app = &l.bridges[0];
    let addrs: Vec<String> = app
        .iface
        .addrs
        .iter()
        .map(|(a, n)| format!("{a}/{n}"))
        .collect();
    assert_eq!(addrs, ["10.10.0.1/24", "fd00:10::1/64"]);
    let web = l.links.iter().find(|k| k.container == 0).unwrap();
    let addrs: Vec<String> = web
        .iface
        .addrs
        .iter()
        .map(|(a, n)| format!("{a}/{n}"))
        .collect();
    assert_eq!(addrs, ["10.10.0.2/24", "fd00:10::2/64"]);
    let routes: Vec<String> = web
        .iface
        .routes
        .iter()
        .map(|(d, v)| format!("{d} via {}", v.unwrap()))
        .collect();
    assert_eq!(routes, ["0.0.0.0/0 via 10.10.0.1", "::/0 via fd00:10::1"]);
    // Internal: no route of either family.
    let ic = l.links.iter().find(|k| k.container == 1).unwrap();
    assert!(ic.iface.routes.is_empty(), "{:?}", ic.iface.routes);
    assert_eq!(ic.iface.addrs.len(), 2);
}

#[test]
fn lan_uplinks_carry_lan6() {
    let p = plan(V6);
    let m = lan_iface(&p, Node::Machine(0)).unwrap();
    let addrs: Vec<String> = m.addrs.iter().map(|(a, n)| format!("{a}/{n}")).collect();
    assert_eq!(addrs, ["198.18.0.1/24", "2001:2::1/64"]);
    assert_eq!(m.routes.len(), 2, "a default route per family via ext");
    let six = lan_iface(&p, Node::External(1)).unwrap();
    assert_eq!(six.addrs.len(), 1);
    assert_eq!(six.mac.to_string(), "02:57:00:00:00:60");
    assert!(
        six.routes.is_empty(),
        "ip6tables on: nothing is routed un-NATed"
    );
    // ip6tables = false: externals route the machine's IPv6 subnets to it.
    let off = V6.replace("name = \"host\"", "name = \"host\"\nip6tables = false");
    let p = plan(&off);
    let six = lan_iface(&p, Node::External(1)).unwrap();
    let routes: Vec<String> = six
        .routes
        .iter()
        .map(|(d, v)| format!("{d} via {}", v.unwrap()))
        .collect();
    assert_eq!(
        routes,
        ["fd00:10::/64 via 2001:2::1"],
        "not the internal one"
    );
}

#[test]
fn v6_4_ruleset_with_and_without_ip6tables() {
    let p = plan(V6);
    let l = machine_layout(&p, 0);
    let r = machine_ruleset(&p, 0, &l, "vsw000000", true).unwrap();
    for want in [
        "ip6 saddr fd00:10::/64 oifname != \"br-app\" masquerade",
        "meta nfproto ipv4 tcp dport 8080 dnat ip to 10.10.0.2:80",
        "meta nfproto ipv6 tcp dport 8080 dnat ip6 to [fd00:10::2]:80",
        "meta nfproto ipv6 tcp dport 8081 dnat ip6 to [fd00:10::2]:80",
        "meta nfproto ipv4 tcp dport 8082 dnat ip to 10.10.0.2:80",
        "snat ip6 to fd00:10::1",
    ] {
        assert!(r.contains(want), "missing {want:?} in\n{r}");
    }
    assert!(
        !r.contains("tcp dport 8081 dnat ip to"),
        "[::] is IPv6 only"
    );
    assert!(
        !r.contains("tcp dport 8082 dnat ip6"),
        "0.0.0.0 is IPv4 only"
    );
    assert!(!r.contains("meta nfproto ipv6 accept"));
    let off = V6.replace("name = \"host\"", "name = \"host\"\nip6tables = false");
    let p = plan(&off);
    let r = machine_ruleset(&p, 0, &l, "vsw000000", true).unwrap();
    assert!(r.contains("meta nfproto ipv6 accept"), "{r}");
    assert!(!r.contains("ip6 saddr"), "{r}");
    assert!(!r.contains("dnat ip6"), "{r}");
}

#[test]
fn ipv6_is_built_not_refused() {
    let p = plan(V6);
    assert!(unsupported_with(&p, &|_| true, |_| true).is_empty());
    // The IPv6 side of a port of an IPv4-only container is docker-proxy's.
    let text = format!(
        "{}[[network]]\nname = \"four\"\n[[container]]\nname = \"old\"\nnetworks = [\"four\"]\nserve = [\"tcp:80\"]\npublish = [\"9090:80\"]\n[[check]]\nkind = \"tcp\"\nfrom = \"six\"\nto = \"[2001:2::1]:9090\"\nexpect = \"ok\"\n",
        V6
    );
    let why = unsupported_with(&plan(&text), &|_| true, |_| true);
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(why[0].contains("served by docker-proxy"), "{why:?}");
}
