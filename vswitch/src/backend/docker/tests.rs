//! Tests of the docker backend. Those that talk to the daemon need root and
//! the project's daemon (`ci/docker-daemon.sh start`); without them they
//! skip with a message, unless `VSWITCH_REQUIRE_ROOT=1`, when they fail and
//! name the start command.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::backend::{BuildOptions, World};
use crate::scenario;

fn plan(text: &str) -> Plan {
    scenario::parse_str(Path::new("test.toml"), text).expect("valid scenario")
}

/// `container_body` of container `ci` with the silent resolver 198.18.0.254.
fn body_silent(p: &Plan, ci: usize, nets: &[String], run: &RunId) -> serde_json::Value {
    container_body(
        p,
        &Topology::of(p),
        ci,
        nets,
        run,
        Ipv4Addr::new(198, 18, 0, 254),
    )
}

/// Root and a reachable daemon, or a skip (a failure under CI).
fn require_daemon(test: &str) -> bool {
    if !crate::sys::require_root(test) {
        return false;
    }
    match daemon_reachable() {
        Ok(_) => true,
        Err(e) => crate::prereq::missing::<()>(test, &format!("{e}"))
            .or_panic()
            .is_some(),
    }
}

const TINY: &str = r#"
name = "tiny"
[[external]]
name = "peer"
ip = "198.18.0.9"
serve = ["tcp:80"]
[[network]]
name = "tinynet"
subnet = "10.123.0.0/24"
[[container]]
name = "x"
networks = ["tinynet"]
serve = ["tcp:7"]
[[container]]
name = "web1"
networks = [{ name = "tinynet", aliases = ["www"] }]
[[check]]
kind = "ping"
from = "x"
to = "web1"
expect = "ok"
"#;

#[test]
fn names_docker_accepts() {
    assert!(docker_accepts_container_name("web"));
    assert!(docker_accepts_container_name("a1.b_c-d"));
    assert!(!docker_accepts_container_name("a"));
    assert!(!docker_accepts_container_name("-ab"));
    assert!(!docker_accepts_container_name("a b"));
    let run = RunId::parse("vsw0a1b2c").unwrap();
    assert_eq!(container_name(&run, "web"), "web");
    assert_eq!(container_name(&run, "a"), "vsw0a1b2c-a");
    assert_eq!(network_name(&run, "app"), "app");
    assert_eq!(network_name(&run, "host"), "vsw0a1b2c-host");
}

#[test]
fn silent_resolver_is_an_unused_lan_address() {
    let p = plan(TINY);
    let ip = silent_resolver(&p);
    assert!(p.lan.contains(&ip));
    assert_ne!(ip, p.machines[0].ip);
    assert_ne!(IpAddr::V4(ip), p.externals[0].ip);
    assert_eq!(ip, Ipv4Addr::new(198, 18, 0, 254));
}

#[test]
fn bodies_carry_the_plan() {
    let p = plan(TINY);
    let run = RunId::parse("vsw0a1b2c").unwrap();
    let n = network_body("tinynet", &run, &p.networks[0]);
    assert_eq!(n["Driver"], "bridge");
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "10.123.0.0/24");
    assert_eq!(n["IPAM"]["Config"][0]["Gateway"], "10.123.0.1");
    assert_eq!(n["Labels"][LABEL_RUN], "vsw0a1b2c");
    assert_eq!(n["Options"]["com.docker.network.bridge.enable_icc"], "true");
    let nets = vec!["tinynet".to_string()];
    let c = body_silent(&p, 1, &nets, &run);
    let ep = &c["NetworkingConfig"]["EndpointsConfig"]["tinynet"];
    assert_eq!(ep["IPAMConfig"]["IPv4Address"], "10.123.0.3");
    assert_eq!(ep["Aliases"], json!(["www"]));
    // No resolvers anywhere in the scenario: the silent lan address, never a public one.
    assert_eq!(c["HostConfig"]["Dns"], json!(["198.18.0.254"]));
    assert_eq!(c["MacAddress"], "02:42:0a:7b:00:03");
    // A one-letter container keeps its plain name as an alias.
    let c = body_silent(&p, 0, &nets, &run);
    let ep = &c["NetworkingConfig"]["EndpointsConfig"]["tinynet"];
    assert_eq!(ep["Aliases"], json!(["x"]));
}

/// V6-1, V6-2: an IPv6 network's body carries EnableIPv6 and its v6
/// subnet and gateway; an endpoint its planned IPv6Address.
#[test]
fn ipv6_bodies_carry_the_plan() {
    let p = plan(
        r#"
name = "v6"
[[network]]
name = "dual"
ipv6 = true
subnet = "10.124.0.0/24"
subnet6 = "fd00:124::/64"
aux_addresses = { spare = "fd00:124::99" }
[[container]]
name = "web"
networks = [{ name = "dual", ip6 = "fd00:124::80" }]
"#,
    );
    let run = RunId::parse("vsw0a1b2c").unwrap();
    let n = network_body("dual", &run, &p.networks[0]);
    assert_eq!(n["EnableIPv6"], true);
    assert_eq!(n["IPAM"]["Config"][1]["Subnet"], "fd00:124::/64");
    assert_eq!(n["IPAM"]["Config"][1]["Gateway"], "fd00:124::1");
    assert_eq!(
        n["IPAM"]["Config"][1]["AuxiliaryAddresses"]["spare"],
        "fd00:124::99"
    );
    assert!(n["IPAM"]["Config"][0]["AuxiliaryAddresses"].is_null());
    let nets = vec!["dual".to_string()];
    let c = body_silent(&p, 0, &nets, &run);
    let ep = &c["NetworkingConfig"]["EndpointsConfig"]["dual"];
    assert_eq!(ep["IPAMConfig"]["IPv4Address"], "10.124.0.2");
    assert_eq!(ep["IPAMConfig"]["IPv6Address"], "fd00:124::80");
    // IPv4-only networks stay so.
    let p4 = plan(TINY);
    assert_eq!(
        network_body("tinynet", &run, &p4.networks[0])["EnableIPv6"],
        false
    );
}

/// Which worlds run on daemons of their own, and the options each gets.
#[test]
fn own_daemons_and_their_options() {
    let one = plan(TINY);
    assert!(!own_daemons(&one));
    let p = plan(
        r#"
name = "two"
[[machine]]
name = "h1"
userland_proxy = false
[[machine]]
name = "h2"
ip6tables = false
"#,
    );
    assert!(own_daemons(&p));
    let run = RunId::parse("vsw0a1b2c").unwrap();
    let root = std::path::Path::new("/run/vswitch/dockerd/vsw0a1b2c/m0");
    let a = super::daemon::daemon_args(&run, 0, &p.machines[0], root);
    assert!(a.contains(&"--userland-proxy=false".to_string()), "{a:?}");
    assert!(a.contains(&"--ip6tables=true".to_string()), "{a:?}");
    assert!(a.contains(&"--exec-root=/run/vswitch/dockerd/vsw0a1b2c/m0/exec".to_string()));
    assert!(a.contains(&"--cgroup-parent=/vswitch-vsw0a1b2c/c0".to_string()));
    let b = super::daemon::daemon_args(&run, 1, &p.machines[1], root);
    assert!(b.contains(&"--ip6tables=false".to_string()), "{b:?}");
    assert!(b.contains(&"--userland-proxy=true".to_string()), "{b:?}");
    let single_overlay = plan(
        "name = \"o\"\n[[network]]\nname = \"ov\"\ndriver = \"overlay\"\nsubnet = \"10.0.9.0/24\"\n",
    );
    assert!(own_daemons(&single_overlay));
    // The overlay's load-balancer range holds no planned address.
    let r = super::own::overlay_lb_range(&single_overlay, 0).expect("a free /29");
    assert_eq!(r.to_string(), "10.0.9.248/29");
}

#[test]
fn unsupported_names_each_reason() {
    let p = plan(
        r#"
name = "too much"
[[machine]]
name = "h1"
userland_proxy = false
ip6tables = false
[[machine]]
name = "h2"
[[network]]
name = "bridge"
default = true
ipv6 = true
subnet6 = "fd00:1::/64"
machine = "h2"
[[network]]
name = "v"
driver = "ipvlan"
machine = "h1"
parent = "eth0"
subnet = "198.18.0.0/24"
[[network]]
name = "m"
driver = "macvlan"
machine = "h1"
parent = "eth0.10"
subnet = "10.10.0.0/24"
[[container]]
name = "c1"
machine = "h1"
networks = ["v"]
"#,
    );
    let why = unsupported(&p).join("\n");
    // Several machines and their daemon-wide settings are no longer
    // refused: each machine gets a daemon of its own.
    assert!(own_daemons(&p));
    for gone in ["one machine per scenario", "userland_proxy", "ip6tables"] {
        assert!(!why.contains(gone), "{gone:?} still refused:\n{why}");
    }
    for want in [
        "ipv6 on the default bridge other than the daemon's",
        "driver ipvlan not supported",
        "802.1Q parent `eth0.10`",
    ] {
        assert!(why.contains(want), "missing {want:?} in:\n{why}");
    }
    assert!(why.lines().all(|l| l.starts_with("backend docker: ")));
}

#[test]
fn api_version_and_idempotent_image_import() {
    if !require_daemon("api_version_and_idempotent_image_import") {
        return;
    }
    let c = client();
    let v = c.version().expect("version");
    assert!(!v.version.is_empty());
    let api: Vec<u32> = v
        .api_version
        .split('.')
        .filter_map(|x| x.parse().ok())
        .collect();
    assert!(
        api >= vec![1, 41],
        "engine API {} is older than 1.41",
        v.api_version
    );
    // The project's image: importing is a no-op once it is there.
    ensure_image(&c).expect("first import");
    ensure_image(&c).expect("second import");
    let reference = format!("{}:{}", image::IMAGE_REPO, image::IMAGE_TAG);
    assert!(c.image_exists(&reference).unwrap());
    // A throwaway tag: import twice, both succeed, one image.
    let tag = format!("test{}", std::process::id());
    let tar = image::rootfs_tar(Path::new(image::BUSYBOX)).expect("busybox-static");
    c.image_import("vswitch/busybox-test", &tag, &tar).unwrap();
    c.image_import("vswitch/busybox-test", &tag, &tar).unwrap();
    let r = format!("vswitch/busybox-test:{tag}");
    assert!(c.image_exists(&r).unwrap());
    c.image_remove(&r).unwrap();
    assert!(!c.image_exists(&r).unwrap());
    assert!(!c.image_exists("vswitch/no-such-image:0").unwrap());
}

#[test]
fn tiny_world_is_built_and_leaves_nothing() {
    if !require_daemon("tiny_world_is_built_and_leaves_nothing") {
        return;
    }
    let p = plan(TINY);
    assert!(unsupported(&p).is_empty(), "{:?}", unsupported(&p));
    for teardown in [true, false] {
        let run = RunId::new();
        let w = World::build(
            &run,
            &p,
            BackendKind::Docker,
            &BuildOptions::default(),
            &|_| {},
        )
        .expect("build");
        // The world is what the plan says, seen from inside.
        let ns = w.ns(Node::Container(1)).try_clone().unwrap();
        let addrs = ns
            .run(|| Netlink::new().unwrap().addr_list("eth0").unwrap())
            .unwrap();
        assert!(addrs.contains(&(IpAddr::V4(Ipv4Addr::new(10, 123, 0, 3)), 24)));
        assert_eq!(w.ns(Node::Machine(0)).name(), DAEMON_NETNS);
        let r = crate::run::run_checks(&w, &p, &|_| {});
        assert!(r.iter().all(|c| c.pass), "{r:?}");
        assert!(!traces(&run).is_empty());
        if teardown {
            let m = w.teardown();
            assert_eq!(m["engine"].as_str().map(|s| s.is_empty()), Some(false));
        } else {
            drop(w);
        }
        assert_eq!(traces(&run), Vec::<String>::new(), "teardown={teardown}");
    }
    // The daemon namespace is borrowed, never deleted.
    assert!(netns::list(DAEMON_NETNS).contains(&DAEMON_NETNS.to_string()));
}

#[test]
fn leftovers_of_a_dead_run_are_found_and_removed() {
    if !require_daemon("leftovers_of_a_dead_run_are_found_and_removed") {
        return;
    }
    let c = client();
    // A run that never had a record: dead by definition.
    let dead = RunId::new();
    let net = c
        .network_create(&json!({
            "Name": format!("{dead}-orphan"),
            "Driver": "bridge",
            "Labels": { LABEL_RUN: dead.as_str() },
        }))
        .unwrap();
    // An object without the label is never ours, whatever its name.
    let foreign = c
        .network_create(&json!({ "Name": format!("{dead}-foreign"), "Driver": "bridge" }))
        .unwrap();
    assert!(leftover_runs().contains(&dead));
    let removed = remove_run(&dead);
    assert_eq!(removed, vec![format!("docker network {dead}-orphan")]);
    assert!(!leftover_runs().contains(&dead));
    assert!(c.network_inspect(&net).is_err());
    assert!(c.network_inspect(&foreign).is_ok());
    c.network_remove(&foreign).unwrap();
}

#[test]
fn lock_serializes_runs() {
    if !crate::sys::require_root("lock_serializes_runs") {
        return;
    }
    let held = acquire_lock(Duration::from_secs(60)).expect("lock");
    let t0 = Instant::now();
    let e = acquire_lock(Duration::from_millis(200)).expect_err("second lock");
    assert!(t0.elapsed() >= Duration::from_millis(200));
    assert!(e.to_string().contains(LOCK_FILE), "{e}");
    drop(held);
}
