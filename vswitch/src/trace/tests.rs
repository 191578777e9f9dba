//! Traces on engines built from small worlds, no root: each names the
//! stage that decided (docker-semantics ids in the test names).

use std::path::Path;

use super::*;
use crate::scenario;

const WORLD: &str = r#"
name = "trace"
[[external]]
name = "far"
ip = "198.18.0.50"
serve = ["tcp:80"]

[[network]]
name = "front"
subnet = "10.70.0.0/24"

[[network]]
name = "quiet"
subnet = "10.71.0.0/24"
icc = false

[[container]]
name = "web"
networks = ["front"]
serve = ["tcp:80"]
publish = ["8080:80"]

[[container]]
name = "client"
networks = ["front"]

[[container]]
name = "q1"
networks = ["quiet"]

[[container]]
name = "q2"
networks = ["quiet"]
serve = ["tcp:80"]
"#;

fn plan() -> Plan {
    scenario::parse_str(Path::new("t.toml"), WORLD).expect("valid")
}

fn run(from: &str, to: &str, proto: TraceProto) -> Trace {
    trace(&plan(), from, &Target::parse(to).unwrap(), proto).unwrap()
}

#[test]
fn same_network_is_switched_by_the_fdb() {
    let t = run("client", "web:80", TraceProto::Tcp);
    assert_eq!(t.verdict, "delivered to web", "{}", t.text);
    assert!(
        t.text
            .contains("switch front: FDB lookup: destination behind web-eth0"),
        "{}",
        t.text
    );
    assert!(t.text.contains("tcp 40000 → 80 [SYN]"), "{}", t.text);
}

#[test]
fn icc_false_names_the_icc_drop_br_8() {
    let t = run("q1", "q2:80", TraceProto::Tcp);
    assert_eq!(t.verdict, "dropped:icc-disabled", "{}", t.text);
    assert!(t.text.contains("drop: icc-disabled"), "{}", t.text);
}

#[test]
fn another_network_is_isolated_br_12() {
    let t = run("client", "q2:80", TraceProto::Tcp);
    assert_eq!(t.verdict, "dropped:isolation", "{}", t.text);
    assert!(
        t.text.contains("router host: from a container network"),
        "{}",
        t.text
    );
}

#[test]
fn egress_is_masqueraded_to_the_machine_address_pub_9() {
    let t = run("client", "far:80", TraceProto::Tcp);
    assert_eq!(t.verdict, "delivered to far", "{}", t.text);
    let machine = plan().machines[0].ip;
    assert!(
        t.text
            .contains(&format!("SNAT 10.70.0.3:40000 → {machine}:40000")),
        "{}",
        t.text
    );
}

#[test]
fn a_published_port_is_dnated_to_the_container_pub_1() {
    let machine = plan().machines[0].ip;
    let t = run("far", &format!("{machine}:8080"), TraceProto::Tcp);
    assert_eq!(t.verdict, "delivered to web", "{}", t.text);
    assert!(
        t.text.contains("router host: inbound, from lan"),
        "{}",
        t.text
    );
    assert!(
        t.text
            .contains(&format!("DNAT {machine}:8080 → 10.70.0.2:80")),
        "{}",
        t.text
    );
}

#[test]
fn an_unpublished_port_from_outside_is_denied_pub_2() {
    let machine = plan().machines[0].ip;
    let t = run("far", &format!("{machine}:9999"), TraceProto::Tcp);
    assert!(
        t.verdict.starts_with("dropped:") || t.verdict.starts_with("delivered to host"),
        "{}",
        t.text
    );
}

#[test]
fn the_gateway_answers_ping_itself() {
    let t = run("client", "10.70.0.1", TraceProto::Icmp);
    assert_eq!(t.verdict, "answered by the engine", "{}", t.text);
    assert!(t.text.contains("to the gateway MAC"), "{}", t.text);
    assert!(t.text.contains("EchoReply"), "{}", t.text);
}

#[test]
fn bad_requests_are_named_errors() {
    let p = plan();
    let e = trace(
        &p,
        "nobody",
        &Target::parse("web:80").unwrap(),
        TraceProto::Tcp,
    )
    .unwrap_err();
    assert!(matches!(e, TraceError::UnknownNode(_)), "{e}");
    let e = trace(
        &p,
        "client",
        &Target::parse("web").unwrap(),
        TraceProto::Tcp,
    )
    .unwrap_err();
    assert!(matches!(e, TraceError::NoPort("tcp")), "{e}");
    assert!(Target::parse("web:x").is_err());
    assert_eq!(
        Target::parse("[fd00::1]:53").unwrap().addr,
        Some("fd00::1".parse().unwrap())
    );
}

#[test]
fn an_overlay_frame_is_encapsulated_between_machines_ov_1() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/overlay-two-machines.toml");
    let p = scenario::load_file(&root).expect("valid");
    let t = trace(&p, "a", &Target::parse("b:80").unwrap(), TraceProto::Tcp).unwrap();
    assert_eq!(t.verdict, "delivered to b", "{}", t.text);
    assert!(t.text.contains("vxlan: encapsulated in VNI"), "{}", t.text);
}

/// Every tcp check between two containers in the repository's scenarios
/// (without steps or faults) towards a port the target serves: the trace's verdict agrees with what the
/// check expects, which the scenario suite observes on real worlds.
#[test]
fn traces_agree_with_the_repository_scenarios_container_checks() {
    use crate::scenario::plan::{CheckKind, Expect};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let (mut compared, mut disagree) = (0, Vec::new());
    for f in files {
        let Ok(p) = scenario::load_file(&f) else {
            continue;
        };
        if !p.steps.is_empty() {
            continue;
        }
        for c in &p.checks {
            let CheckKind::Tcp { to, .. } = &c.kind else {
                continue;
            };
            let (Node::Container(a), Some(Node::Container(b))) = (c.from[0], to.node) else {
                continue;
            };
            let Some(port) = to.port else { continue };
            // A refusal by the container itself is no network verdict.
            let serves = p.containers[b]
                .serve
                .iter()
                .any(|s| s.port == port && s.proto == crate::scenario::plan::Proto::Tcp);
            if !serves {
                continue;
            }
            let (from, to_name) = (&p.containers[a].name, &p.containers[b].name);
            let target = Target {
                node: None,
                addr: Some(to.addr),
                port: Some(port),
            };
            let Ok(t) = trace(&p, from, &target, TraceProto::Tcp) else {
                continue;
            };
            // Delivered to a container holding the address: the one named,
            // or a local one with the same address (bridge-same-subnet).
            let delivered = t.verdict == format!("delivered to {to_name}")
                || p.containers.iter().any(|c| {
                    t.verdict == format!("delivered to {}", c.name)
                        && c.endpoints
                            .iter()
                            .any(|e| e.ip.map(IpAddr::V4) == Some(to.addr))
                });
            let expected = c.expect == Expect::Ok;
            compared += 1;
            if delivered != expected {
                disagree.push(format!(
                    "{} #{}: {}\n{}",
                    f.display(),
                    c.index,
                    t.verdict,
                    t.text
                ));
            }
        }
    }
    assert!(compared > 10, "only {compared} checks compared");
    assert!(disagree.is_empty(), "{}", disagree.join("\n"));
}

fn repo(file: &str) -> Plan {
    let f = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(file);
    scenario::load_file(&f).expect("valid")
}

#[test]
fn the_stages_of_vlan_conntrack_and_esp_are_named() {
    let p = repo("overlay-encrypted.toml");
    let t = trace(&p, "a", &Target::parse("b:7").unwrap(), TraceProto::Tcp).unwrap();
    assert!(t.text.contains("esp: VNI 4097 is encrypted"), "{}", t.text);
    assert_eq!(t.verdict, "delivered to b", "{}", t.text);
    let p = repo("nat-masquerade.toml");
    let t = trace(
        &p,
        "app",
        &Target::parse("router:80").unwrap(),
        TraceProto::Tcp,
    )
    .unwrap();
    assert!(
        t.text.contains("conntrack: new flow (Masquerade)"),
        "{}",
        t.text
    );
    let p = repo("vlan-external-access.toml");
    let t = trace(
        &p,
        "tagged",
        &Target::parse("in10").unwrap(),
        TraceProto::Icmp,
    )
    .unwrap();
    assert!(t.text.contains("vlan: on VLAN 10"), "{}", t.text);
    assert_eq!(t.verdict, "delivered to in10", "{}", t.text);
}
