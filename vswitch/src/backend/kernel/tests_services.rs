//! Kernel services without root: the nftables text of VIPs, ingress
//! sandboxes and published service ports (golden), the machines overlay
//! devices go to, and gwbridge addresses that hold across `scale` steps.

use std::path::Path;

use super::services::{
    container_ruleset, machine_ruleset, overlay_machines, sandbox_ruleset, with_gwbridge,
};
use crate::scenario::parse_str;
use crate::scenario::plan::Plan;

const WORLD: &str = r#"
name = "services"
[[machine]]
name = "m1"
[[machine]]
name = "m2"
[[machine]]
name = "m3"
[[network]]
name = "front"
driver = "overlay"
subnet = "10.1.0.0/24"
[[service]]
name = "web"
replicas = 3
machines = ["m1", "m2"]
networks = ["front"]
serve = ["tcp:80", "udp:53"]
publish = ["8080:80", "5353:53/udp"]
[[service]]
name = "api"
replicas = 2
machines = ["m1", "m2"]
endpoint_mode = "dnsrr"
networks = ["front"]
serve = ["tcp:80"]
publish = ["published=9090,target=80,mode=host"]
[[container]]
name = "client"
machine = "m3"
networks = ["front"]
[[step]]
name = "down"
scale = { service = "web", replicas = 1 }
[[step]]
name = "up"
scale = { service = "web", replicas = 4 }
"#;

fn plan() -> Plan {
    parse_str(Path::new("t.toml"), WORLD).expect("valid")
}

fn container(p: &Plan, name: &str) -> usize {
    p.containers.iter().position(|c| c.name == name).unwrap()
}

/// SVC-3: every container on `front` DNATs the VIP round robin over the
/// running tasks (TCP and UDP, every port) and SNATs what it sends from
/// the VIP to its own address; a dnsrr service has no VIP.
#[test]
fn svc3_vip_table_of_a_client() {
    let p = plan();
    let c = container(&p, "client");
    assert_eq!(
        container_ruleset(&p, c, "vswtest").unwrap(),
        "table ip vswtest {
  chain vip_output {
    type nat hook output priority -100; policy accept;
    ip daddr 10.1.0.2 meta l4proto { tcp, udp } ct mark set numgen inc mod 3 map { 0 : 0x0a010003, 1 : 0x0a010004, 2 : 0x0a010005 } dnat to ct mark map { 0x0a010003 : 10.1.0.3, 0x0a010004 : 10.1.0.4, 0x0a010005 : 10.1.0.5 }
  }
  chain vip_postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 10.1.0.2 ct status dnat snat to 10.1.0.8
  }
}
"
    );
    // A task balances too (its own ingress endpoint carries no VIP here).
    let t = container(&p, "api.1");
    let r = container_ruleset(&p, t, "vswtest").unwrap();
    assert!(r.contains("snat to 10.1.0.6"), "{r}");
}

/// SVC-6: scaled down, the map holds the one task left; scaled up, the
/// new tasks join it in task order.
#[test]
fn svc6_scale_rewrites_the_vip_map() {
    let p = plan();
    let c = container(&p, "client");
    let down = p.after_steps(1);
    let r = container_ruleset(&down, c, "t").unwrap();
    assert!(
        r.contains(
            "numgen inc mod 1 map { 0 : 0x0a010003 } dnat to ct mark map { 0x0a010003 : 10.1.0.3 }"
        ),
        "{r}"
    );
    let up = p.after_steps(2);
    let r = container_ruleset(&up, c, "t").unwrap();
    assert!(
        r.contains("numgen inc mod 4 map { 0 : 0x0a010003, 1 : 0x0a010004, 2 : 0x0a010005, 3 : "),
        "{r}"
    );
}

/// SVC-4: each machine's ingress sandbox balances every published
/// ingress port over every task's ingress address (any machine) at the
/// target port, and SNATs to its own ingress address.
#[test]
fn svc4_ingress_sandbox_table() {
    let p = plan();
    assert_eq!(
        sandbox_ruleset(&p, 2, "vswtest").unwrap(),
        "table ip vswtest {
  chain ingress_prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname \"eth1\" ip daddr 10.0.0.4 tcp dport 8080 ct mark set numgen inc mod 3 map { 0 : 0x0a000006, 1 : 0x0a000007, 2 : 0x0a000008 } dnat ip addr . port to ct mark map { 0x0a000006 : 10.0.0.6 . 80, 0x0a000007 : 10.0.0.7 . 80, 0x0a000008 : 10.0.0.8 . 80 }
    iifname \"eth1\" ip daddr 10.0.0.4 udp dport 5353 ct mark set numgen inc mod 3 map { 0 : 0x0a000006, 1 : 0x0a000007, 2 : 0x0a000008 } dnat ip addr . port to ct mark map { 0x0a000006 : 10.0.0.6 . 53, 0x0a000007 : 10.0.0.7 . 53, 0x0a000008 : 10.0.0.8 . 53 }
  }
  chain ingress_postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"eth0\" ct status dnat snat to 10.0.0.4
  }
}
"
    );
    // Scaled to zero nothing is balanced: the sandbox refuses the port.
    let mut zero = p.clone();
    zero.services[0].replicas = 0;
    assert!(!sandbox_ruleset(&zero, 0, "t").unwrap().contains("dport"));
}

/// SVC-4, SVC-5: every machine DNATs ingress ports to its sandbox; only
/// a machine running an api task DNATs the host-mode port, to that task's
/// docker_gwbridge address.
#[test]
fn svc5_machine_tables() {
    let p = with_gwbridge(&plan());
    let m3 = machine_ruleset(&p, 2, "t").unwrap();
    assert!(
        m3.contains("fib daddr type local tcp dport 8080 dnat to 10.0.0.4:8080"),
        "{m3}"
    );
    assert!(!m3.contains("9090"), "{m3}");
    let m1 = machine_ruleset(&p, 0, "t").unwrap();
    let gw = p.containers[container(&p, "api.1")]
        .endpoints
        .iter()
        .find(|e| p.networks[e.network].name == "docker_gwbridge")
        .and_then(|e| e.ip)
        .unwrap();
    assert!(
        m1.contains(&format!("tcp dport 9090 dnat to {gw}:80")),
        "{m1}"
    );
    assert_eq!(m1.matches("dport 9090").count(), 2, "prerouting and output");
}

/// Overlay devices go to every machine a task of the network may ever run
/// on, and `ingress` to every machine (its sandboxes).
#[test]
fn overlay_devices_where_tasks_may_run() {
    let p = plan();
    let front = p.networks.iter().position(|n| n.name == "front").unwrap();
    assert_eq!(overlay_machines(&p, front), vec![0, 1, 2]);
    let ing = p.ingress.as_ref().unwrap().network;
    assert_eq!(overlay_machines(&p, ing), vec![0, 1, 2]);
}

/// A task a scale step starts takes a gwbridge address no running
/// container has, and running ones keep theirs.
#[test]
fn gwbridge_addresses_hold_across_scale() {
    let p = plan();
    // (name, (machine, address)): each machine has its own gwbridge.
    type Addrs = Vec<(String, Option<(usize, std::net::Ipv4Addr)>)>;
    let addrs = |p: &Plan| -> Addrs {
        let g = with_gwbridge(p);
        g.containers
            .iter()
            .map(|c| {
                let a = c
                    .endpoints
                    .iter()
                    .find(|e| g.networks[e.network].name == "docker_gwbridge")
                    .and_then(|e| e.ip);
                (c.name.clone(), a.map(|a| (c.machine, a)))
            })
            .collect()
    };
    let at_build = addrs(&p);
    let up = addrs(&p.after_steps(2));
    for ((n, a), (_, b)) in at_build.iter().zip(&up) {
        if a.is_some() {
            assert_eq!(a, b, "{n} kept its address");
        }
    }
    let web4 = up.iter().find(|(n, _)| n == "web.4").unwrap().1.unwrap();
    assert!(
        !at_build.iter().any(|(_, a)| *a == Some(web4)),
        "web.4 took a used address: {at_build:?} {up:?}"
    );
}

// ---------------------------------------------------------------- root

/// The world built for real: each machine has its ingress sandbox
/// namespace (`<run>-i-<machine>`) holding the table the plan calls for,
/// the client holds the VIP on `lo` and its VIP table, and teardown
/// leaves no namespace of the run.
#[test]
fn services_world_built_and_removed() {
    use crate::backend::{BuildOptions, World};
    use crate::run_id::RunId;
    use crate::scenario::plan::{BackendKind, Node};
    if !crate::sys::require_root("services_world_built_and_removed") {
        return;
    }
    let p = plan();
    if !super::features::unsupported(&p).is_empty() {
        crate::prereq::missing::<()>(
            "services_world_built_and_removed",
            &super::features::unsupported(&p).join("; "),
        )
        .or_panic();
        return;
    }
    let run = RunId::new();
    let world = World::build(
        &run,
        &p,
        BackendKind::Kernel,
        &BuildOptions::default(),
        &|_| {},
    )
    .expect("world builds");
    let sandboxes = crate::netns::list(&format!("{run}-i-"));
    assert_eq!(sandboxes.len(), 3, "{sandboxes:?}");
    let listed = |ns: &crate::netns::NetNs| {
        ns.run(|| {
            let out = std::process::Command::new("nft")
                .args(["list", "ruleset"])
                .output()
                .expect("nft runs");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .expect("namespace")
    };
    let sb = crate::netns::NetNs::open(&format!("{run}-i-m3")).expect("m3's sandbox");
    let rules = listed(&sb);
    assert!(
        rules.contains("dnat ip to ct mark map { 0x0a000006 : 10.0.0.6 . 80, 0x0a000007 : 10.0.0.7 . 80, 0x0a000008 : 10.0.0.8 . 80 }"),
        "{rules}"
    );
    drop(sb);
    let client = Node::Container(container(&p, "client"));
    let rules = listed(world.ns(client));
    assert!(
        rules.contains("dnat to ct mark map { 0x0a010003 : 10.1.0.3, 0x0a010004 : 10.1.0.4, 0x0a010005 : 10.1.0.5 }"),
        "{rules}"
    );
    let lo = world
        .ns(client)
        .run(|| crate::sys::netlink::Netlink::new().and_then(|mut nl| nl.addr_list("lo")))
        .expect("namespace")
        .expect("addresses of lo");
    assert!(
        lo.contains(&("10.1.0.2".parse().unwrap(), 32)),
        "VIP on lo: {lo:?}"
    );
    let results = crate::run::run_checks(&world, &p, &|_| {});
    world.teardown();
    let left = crate::netns::list(&format!("{run}-"));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(results.is_empty(), "this world has no checks: {results:?}");
}

/// SVC-6 with IPVS's `expire_nodest_conn`: a UDP flow stays on its task
/// (conntrack), and once a scale step removes that task the flow's next
/// datagram is balanced afresh onto a running one instead of going
/// nowhere until conntrack forgets it.
#[test]
fn udp_flow_to_a_removed_task_moves() {
    use std::net::{SocketAddr, UdpSocket};
    use std::time::Duration;

    use crate::backend::{BuildOptions, World};
    use crate::run_id::RunId;
    use crate::scenario::plan::{BackendKind, Node};
    if !crate::sys::require_root("udp_flow_to_a_removed_task_moves") {
        return;
    }
    let p = parse_str(
        Path::new("u.toml"),
        r#"
name = "udp"
[[machine]]
name = "m1"
[[machine]]
name = "m2"
[[network]]
name = "front"
driver = "overlay"
subnet = "10.1.0.0/24"
[[service]]
name = "web"
replicas = 2
machines = ["m1", "m2"]
networks = ["front"]
serve = ["udp:53"]
[[container]]
name = "client"
machine = "m1"
networks = ["front"]
[[step]]
name = "down"
scale = { service = "web", replicas = 1 }
"#,
    )
    .expect("valid");
    if !super::features::unsupported(&p).is_empty() {
        crate::prereq::missing::<()>(
            "udp_flow_to_a_removed_task_moves",
            &super::features::unsupported(&p).join("; "),
        )
        .or_panic();
        return;
    }
    let run = RunId::new();
    let mut world = World::build(
        &run,
        &p,
        BackendKind::Kernel,
        &BuildOptions::default(),
        &|_| {},
    )
    .expect("world builds");
    let client = Node::Container(container(&p, "client"));
    // Datagrams from one source port: who answered each.
    let ask = |world: &World, port: u16, n: usize| -> Vec<String> {
        world
            .ns(client)
            .run(move || {
                let s = UdpSocket::bind(("0.0.0.0", port)).expect("bind");
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let vip: SocketAddr = "10.1.0.2:53".parse().unwrap();
                let mut by = Vec::new();
                for _ in 0..n {
                    s.send_to(b"x", vip).unwrap();
                    let mut buf = [0u8; 256];
                    let got = s.recv(&mut buf).map(|k| {
                        let line = String::from_utf8_lossy(&buf[..k]).into_owned();
                        line.split_whitespace().nth(3).unwrap_or("?").to_string()
                    });
                    by.push(got.unwrap_or_else(|_| "timeout".to_string()));
                }
                by
            })
            .expect("namespace")
    };
    // Round robin: the first flow goes to web.1, the second to web.2.
    assert_eq!(ask(&world, 39999, 1), ["web.1"]);
    assert_eq!(ask(&world, 40000, 2), ["web.2", "web.2"], "sticky");
    let after = p.after_steps(1);
    world
        .apply_step(&p, &after, &p.steps[0].action)
        .expect("scale step");
    assert_eq!(ask(&world, 40000, 2), ["web.1", "web.1"], "moved");
    world.teardown();
    let left = crate::netns::list(&format!("{run}-"));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
