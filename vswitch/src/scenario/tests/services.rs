//! `[[service]]` tables: placement, the address order, ingress, targets,
//! scale steps and their errors (docker-semantics SVC-1..SVC-6, OV-10).

use super::*;

const WORLD: &str = r#"name = "s"
[[machine]]
name = "m1"
[[machine]]
name = "m2"
[[machine]]
name = "m3"
[[network]]
name = "front"
driver = "overlay"
subnet = "10.10.0.0/24"
[[network]]
name = "back"
driver = "overlay"
subnet = "10.20.0.0/24"
"#;

/// 1-based line of the first line of `text` that starts with `key`, after
/// the first line that contains `after`.
fn line(text: &str, after: &str, key: &str) -> usize {
    let start = text.lines().position(|l| l.contains(after)).unwrap();
    start
        + 1
        + text
            .lines()
            .skip(start)
            .position(|l| l.starts_with(key))
            .unwrap()
}

/// `err_at` with the line found by [`line`].
fn err_on(text: &str, after: &str, key: &str, field: &str, msg: &str) {
    err_at(text, line(text, after, key), field, msg);
}

fn ctr<'a>(p: &'a Plan, name: &str) -> &'a Container {
    p.containers.iter().find(|c| c.name == name).unwrap()
}

fn ip_on(p: &Plan, name: &str, net: &str) -> Option<Ipv4Addr> {
    let n = p.networks.iter().position(|x| x.name == net).unwrap();
    ctr(p, name)
        .endpoints
        .iter()
        .find(|e| e.network == n)
        .and_then(|e| e.ip)
}

/// SVC-2: the VIP first, then the tasks, then the [[container]] tables;
/// round-robin placement over every machine by default.
#[test]
fn svc2_vip_then_tasks_then_containers() {
    let p = ok(&format!(
        "{WORLD}[[container]]\nname = \"client\"\nmachine = \"m1\"\nnetworks = [\"front\"]\n\
         [[service]]\nname = \"web\"\nreplicas = 4\nnetworks = [\"front\"]\nserve = [\"tcp:80\"]\n\
         [[service]]\nname = \"db\"\nreplicas = 2\nmachines = [\"m3\", \"m2\"]\nendpoint_mode = \"dnsrr\"\nnetworks = [\"front\", \"back\"]\n"
    ));
    let web = &p.services[0];
    assert_eq!(web.mode, EndpointMode::Vip);
    assert_eq!(web.networks[0].vip, Some(v4("10.10.0.2")));
    for (k, ip) in ["10.10.0.3", "10.10.0.4", "10.10.0.5", "10.10.0.6"]
        .iter()
        .enumerate()
    {
        let name = format!("web.{}", k + 1);
        assert_eq!(ip_on(&p, &name, "front"), Some(v4(ip)), "{name}");
        assert_eq!(ctr(&p, &name).machine, k % 3, "{name}");
        assert_eq!(
            ctr(&p, &name).serve,
            vec![Service {
                proto: Proto::Tcp,
                port: 80
            }]
        );
    }
    // dnsrr: no VIP; tasks follow web's on front, first on back.
    assert_eq!(p.services[1].networks[0].vip, None);
    assert_eq!(ip_on(&p, "db.1", "front"), Some(v4("10.10.0.7")));
    assert_eq!(ip_on(&p, "db.2", "back"), Some(v4("10.20.0.3")));
    assert_eq!(ctr(&p, "db.1").machine, 2);
    assert_eq!(ctr(&p, "db.2").machine, 1);
    assert_eq!(ip_on(&p, "client", "front"), Some(v4("10.10.0.9")));
    // The file's containers keep their indices; tasks come after them.
    assert_eq!(p.containers[0].name, "client");
    assert_eq!(p.task_of(1), Some((0, 1)));
    // Every swarm has ingress, 10.0.0.0/24, one sandbox per machine.
    let ing = p.ingress.as_ref().unwrap();
    assert_eq!(p.networks[ing.network].name, "ingress");
    assert_eq!(
        ing.sandboxes,
        vec![v4("10.0.0.2"), v4("10.0.0.3"), v4("10.0.0.4")]
    );
}

/// SVC-4: an ingress port attaches the tasks to ingress after the
/// sandboxes, with a VIP there; a static container address is skipped.
#[test]
fn svc4_ingress_addresses_and_static_skip() {
    let p = ok(&format!(
        "{WORLD}[[service]]\nname = \"web\"\nreplicas = 2\nnetworks = [\"front\"]\nserve = [\"tcp:80\"]\npublish = [\"8080:80\"]\n\
         [[container]]\nname = \"pinned\"\nmachine = \"m2\"\nnetworks = [{{ name = \"front\", ip = \"10.10.0.3\" }}]\n"
    ));
    let web = &p.services[0];
    assert_eq!(web.ingress_vip, Some(v4("10.0.0.5")));
    assert_eq!(ip_on(&p, "web.1", "ingress"), Some(v4("10.0.0.6")));
    assert_eq!(ip_on(&p, "web.2", "ingress"), Some(v4("10.0.0.7")));
    // front: VIP .2, .3 is pinned, so tasks .4 and .5.
    assert_eq!(web.networks[0].vip, Some(v4("10.10.0.2")));
    assert_eq!(ip_on(&p, "web.1", "front"), Some(v4("10.10.0.4")));
    assert_eq!(ip_on(&p, "web.2", "front"), Some(v4("10.10.0.5")));
    assert_eq!(ip_on(&p, "pinned", "front"), Some(v4("10.10.0.3")));
    // Service networks first, ingress last.
    assert_eq!(
        p.networks[ctr(&p, "web.1").endpoints[0].network].name,
        "front"
    );
    assert_eq!(
        web.publish,
        vec![ServicePort {
            published: 8080,
            target: 80,
            proto: Proto::Tcp,
            mode: PublishMode::Ingress
        }]
    );
}

#[test]
fn long_form_publish_and_targets() {
    let p = ok(&format!(
        "{WORLD}[[container]]\nname = \"client\"\nmachine = \"m1\"\nnetworks = [\"back\"]\n\
         [[service]]\nname = \"web\"\nreplicas = 2\nnetworks = [\"front\", {{ name = \"back\", aliases = [\"www\"] }}]\nserve = [\"udp:53\"]\n\
         publish = [\"published=9090,target=53,protocol=udp,mode=host\"]\n\
         [[check]]\nkind = \"tcp\"\nfrom = \"client\"\nto = \"web:53\"\nexpect = \"ok\"\n\
         [[check]]\nkind = \"tcp\"\nfrom = \"client\"\nto = \"web@front:53\"\nexpect = \"ok\"\n\
         [[check]]\nkind = \"spread\"\nfrom = \"client\"\nto = \"web.2:53\"\nexpect = 1\n"
    ));
    let web = &p.services[0];
    assert_eq!(web.publish[0].mode, PublishMode::Host);
    assert_eq!(web.publish[0].proto, Proto::Udp);
    assert_eq!(web.networks[1].aliases, vec!["www".to_string()]);
    // No ingress port: tasks are not on ingress.
    assert_eq!(ctr(&p, "web.1").endpoints.len(), 2);
    // SVC-6: the VIP on the network the client shares (back), or the named one.
    let to = |i: usize| match &p.checks[i].kind {
        CheckKind::Tcp { to, .. } | CheckKind::Spread { to, .. } => to.addr,
        _ => unreachable!(),
    };
    assert_eq!(to(0), std::net::IpAddr::V4(v4("10.20.0.2")));
    assert_eq!(to(1), std::net::IpAddr::V4(v4("10.10.0.2")));
    assert_eq!(p.checks[2].expect, Expect::Count(1));
    match &p.checks[2].kind {
        CheckKind::Spread { connections, .. } => assert_eq!(*connections, 20),
        k => panic!("{k:?}"),
    }
}

/// Scale down removes the highest numbers and frees their addresses;
/// scale up takes the next numbers and the lowest free addresses (SVC-6).
#[test]
fn scale_steps() {
    let p = ok(&format!(
        "{WORLD}[[service]]\nname = \"web\"\nreplicas = 3\nnetworks = [\"front\"]\nserve = [\"tcp:80\"]\n\
         [[step]]\nname = \"down\"\nscale = {{ service = \"web\", replicas = 1 }}\n\
         [[step]]\nname = \"join\"\nconnect = {{ container = \"late\", network = \"front\" }}\n\
         [[step]]\nname = \"up\"\nscale = {{ service = \"web\", replicas = 4 }}\n\
         [[container]]\nname = \"late\"\nmachine = \"m1\"\nnetworks = [\"back\"]\n"
    ));
    assert_eq!(p.services[0].tasks.len(), 4);
    assert!(!ctr(&p, "web.4").running);
    let down = p.after_steps(1);
    assert_eq!(down.services[0].replicas, 1);
    assert_eq!(down.services[0].running_tasks().len(), 1);
    assert!(!ctr(&down, "web.3").running && ctr(&down, "web.3").endpoints.is_empty());
    let up = p.after_steps(3);
    // late took .4 (lowest free after the scale down) at its connect.
    assert_eq!(ip_on(&up, "late", "front"), Some(v4("10.10.0.4")));
    assert_eq!(ip_on(&up, "web.2", "front"), Some(v4("10.10.0.5")));
    assert_eq!(ip_on(&up, "web.3", "front"), Some(v4("10.10.0.6")));
    assert_eq!(ip_on(&up, "web.4", "front"), Some(v4("10.10.0.7")));
    assert_eq!(ctr(&up, "web.4").machine, 0);
    assert_eq!(up.services[0].running_tasks().len(), 4);
}

#[test]
fn service_errors_are_located() {
    let svc = |body: &str| format!("{WORLD}[[service]]\nname = \"web\"\n{body}");
    // Line 21 is the service's name, 22 its first key.
    err_on(
        &svc("replicas = -1\n"),
        "[[service]]",
        "replicas",
        "service[0].replicas",
        "out of range",
    );
    err_on(
        &svc("machines = [\"m9\"]\n"),
        "[[service]]",
        "machines",
        "service[0].machines[0]",
        "no machine named",
    );
    err_on(
        &format!(
            "{WORLD}[[network]]\nname = \"br\"\nmachine = \"m1\"\n[[service]]\nname = \"web\"\nnetworks = [\"br\"]\n"
        ),
        "[[service]]",
        "networks",
        "service[0].networks[0]",
        "overlay networks only",
    );
    err_on(
        &svc("endpoint_mode = \"rr\"\n"),
        "[[service]]",
        "endpoint_mode",
        "service[0].endpoint_mode",
        "vip or dnsrr",
    );
    err_on(
        &svc("endpoint_mode = \"dnsrr\"\npublish = [\"80:80\"]\n"),
        "[[service]]",
        "publish",
        "service[0].publish[0]",
        "dnsrr",
    );
    // OV-10/SVC-5: host mode binds once per machine.
    err_on(
        &svc("replicas = 4\npublish = [\"published=80,target=80,mode=host\"]\n"),
        "[[service]]",
        "publish",
        "service[0].publish[0]",
        "already bound on machine m1",
    );
    // Ingress listens on every machine: a container's port clashes.
    err_on(
        &format!(
            "{WORLD}[[network]]\nname = \"br\"\nmachine = \"m2\"\n[[container]]\nname = \"c\"\nmachine = \"m2\"\nnetworks = [\"br\"]\npublish = [\"8080:80\"]\n\
             [[service]]\nname = \"web\"\npublish = [\"8080:80\"]\n"
        ),
        "[[service]]",
        "publish",
        "service[0].publish[0]",
        "already allocated (by container c)",
    );
    err_on(
        &svc("publish = [\"published=80\"]\n"),
        "[[service]]",
        "publish",
        "service[0].publish[0]",
        "target is required",
    );
    err_on(
        &format!(
            "{WORLD}[[container]]\nname = \"web\"\nmachine = \"m1\"\nnetworks = [\"front\"]\n[[service]]\nname = \"web\"\n"
        ),
        "[[service]]",
        "name",
        "service[0].name",
        "already the name of a container",
    );
    err_on(
        &svc("networks = [{ name = \"front\", ip = \"10.10.0.9\" }]\n"),
        "[[service]]",
        "networks",
        "service[0].networks[0].ip",
        "not valid for a service",
    );
}

#[test]
fn check_and_step_errors() {
    let base = format!(
        "{WORLD}[[container]]\nname = \"client\"\nmachine = \"m1\"\nnetworks = [\"front\"]\n\
         [[service]]\nname = \"db\"\nendpoint_mode = \"dnsrr\"\nnetworks = [\"front\"]\n"
    );
    // Line 29: the check's `to`.
    err_on(
        &format!(
            "{base}[[check]]\nkind = \"tcp\"\nfrom = \"client\"\nto = \"db:5432\"\nexpect = \"ok\"\n"
        ),
        "[[check]]",
        "to",
        "check[0].to",
        "dnsrr mode",
    );
    err_on(
        &format!(
            "{base}[[check]]\nkind = \"spread\"\nfrom = \"client\"\nto = \"db.1:5432\"\nexpect = \"ok\"\n"
        ),
        "[[check]]",
        "expect",
        "check[0].expect",
        "integer",
    );
    err_on(
        &format!("{base}[[step]]\nname = \"s\"\nscale = {{ service = \"nope\", replicas = 2 }}\n"),
        "[[step]]",
        "scale",
        "step[0].scale.service",
        "no service named",
    );
    err_on(
        &format!("{base}[[step]]\nname = \"s\"\nscale = {{ service = \"db\", replicas = -2 }}\n"),
        "[[step]]",
        "scale",
        "step[0].scale.replicas",
        "out of range",
    );
}

/// DNS-25, SVC-1, SVC-2, SVC-6: names, tasks.NAME, aliases, per-network
/// VIPs, and answers that follow scale steps.
#[test]
fn dns25_service_records_follow_scale() {
    use crate::dns::{Family, NameTable};
    let p = ok(&format!(
        "{WORLD}[[container]]\nname = \"client\"\nmachine = \"m1\"\nnetworks = [\"front\", \"back\"]\n\
         [[container]]\nname = \"onlyback\"\nmachine = \"m2\"\nnetworks = [\"back\"]\n\
         [[service]]\nname = \"web\"\nreplicas = 2\nnetworks = [{{ name = \"front\", aliases = [\"www\"] }}, \"back\"]\n\
         [[service]]\nname = \"db\"\nreplicas = 2\nendpoint_mode = \"dnsrr\"\nnetworks = [\"back\"]\n\
         [[step]]\nname = \"down\"\nscale = {{ service = \"db\", replicas = 1 }}\n\
         [[step]]\nname = \"none\"\nscale = {{ service = \"web\", replicas = 0 }}\n"
    ));
    let t = NameTable::from_plan(&p);
    let (client, back) = (0, 1);
    let a = |t: &NameTable, q: usize, n: &str| {
        t.lookup(q, n, Family::V4)
            .map(|v| v.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    };
    let s = |v: &[&str]| Some(v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    // vip: one VIP per network, the querier's first network first.
    assert_eq!(a(&t, client, "web"), s(&["10.10.0.2"]));
    assert_eq!(a(&t, back, "web"), s(&["10.20.0.2"]));
    assert_eq!(a(&t, client, "www"), s(&["10.10.0.2"]));
    assert_eq!(a(&t, back, "www"), None, "an alias is per network");
    assert_eq!(a(&t, client, "tasks.web"), s(&["10.10.0.3", "10.10.0.4"]));
    assert_eq!(a(&t, back, "tasks.web"), s(&["10.20.0.3", "10.20.0.4"]));
    // dnsrr: the name answers every task.
    assert_eq!(a(&t, back, "db"), s(&["10.20.0.5", "10.20.0.6"]));
    assert_eq!(a(&t, back, "tasks.db"), s(&["10.20.0.5", "10.20.0.6"]));
    // A task resolves on its own networks like any container.
    let web1 = p.services[0].tasks[0];
    assert_eq!(a(&t, web1, "tasks.db"), s(&["10.20.0.5", "10.20.0.6"]));
    let t = NameTable::from_plan(&p.after_steps(1));
    assert_eq!(a(&t, back, "db"), s(&["10.20.0.5"]));
    assert_eq!(a(&t, back, "tasks.db"), s(&["10.20.0.5"]));
    let t = NameTable::from_plan(&p.after_steps(2));
    assert_eq!(a(&t, client, "web"), s(&["10.10.0.2"]), "the VIP stays");
    assert_eq!(a(&t, client, "tasks.web"), None);
}

/// Throughput receivers: a VIP and a service port are received by a task.
#[test]
fn receivers_of_service_addresses() {
    let p = ok(&format!(
        "{WORLD}[[service]]\nname = \"web\"\nreplicas = 2\nmachines = [\"m2\", \"m3\"]\nnetworks = [\"front\"]\nserve = [\"tcp:5201\"]\n\
         publish = [\"8080:5201\", \"published=9090,target=5201,mode=host\"]\n"
    ));
    let web1 = Node::Container(p.services[0].tasks[0]);
    let web2 = Node::Container(p.services[0].tasks[1]);
    let ip = |s: &str| std::net::IpAddr::V4(v4(s));
    assert_eq!(
        p.receiver_of(ip("10.10.0.2"), 5201, Proto::Tcp),
        Some((web1, 5201))
    );
    let m = |i: usize| std::net::IpAddr::V4(p.machines[i].ip);
    // OV-10: ingress on every machine (m1 runs no task), host mode where a task runs.
    assert_eq!(p.receiver_of(m(0), 8080, Proto::Tcp), Some((web1, 5201)));
    assert_eq!(p.receiver_of(m(2), 9090, Proto::Tcp), Some((web2, 5201)));
    assert_eq!(
        p.receiver_of(m(0), 9090, Proto::Tcp),
        Some((Node::Machine(0), 9090))
    );
}
