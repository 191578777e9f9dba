//! `[[step]]`, `after`, `seed` and ping RTT bounds: what is accepted, and
//! where and why the rest is refused.

use std::time::Duration;

use super::{HEAD, err_at, ok, v4};
use crate::scenario::plan::{CheckKind, LinkRef, StepAction};

/// Two networks, `web` on n1 and `api` on n2 (BUG-2's world).
fn world() -> String {
    format!(
        "{HEAD}seed = 7\n[[network]]\nname = \"n1\"\nsubnet = \"10.1.0.0/24\"\n[[network]]\nname = \"n2\"\nsubnet = \"10.2.0.0/24\"\n[[container]]\nname = \"web\"\nnetworks = [\"n1\"]\n[[container]]\nname = \"api\"\nnetworks = [\"n2\"]\n[[container]]\nname = \"c2\"\nnetworks = [\"n1\"]\n"
    )
}

#[test]
fn steps_resolve_in_file_order_and_checks_bind_to_them() {
    let text = format!(
        "{}[[step]]\nname = \"join\"\nconnect = {{ container = \"web\", network = \"n2\", aliases = [\"www\"] }}\n[[step]]\nname = \"lossy\"\nfault = {{ link = \"web@n2\", loss = 0.25, delay_ms = 20, jitter_ms = 5, reorder = 0.1 }}\n[[step]]\nname = \"healed\"\nclear = \"web@n2\"\n[[step]]\nname = \"pause\"\nwait_ms = 50\n[[check]]\nkind = \"ping\"\nfrom = \"api\"\nto = \"web\"\nexpect = \"fail\"\n[[check]]\nkind = \"ping\"\nfrom = \"api\"\nto = \"web@n2\"\nexpect = \"ok\"\nafter = \"join\"\nmax_rtt_ms = 100\nmin_rtt_ms = 10.5\n",
        world()
    );
    let p = ok(&text);
    assert_eq!(p.seed, 7);
    assert_eq!(p.steps.len(), 4);
    let StepAction::Connect {
        container,
        endpoint,
    } = &p.steps[0].action
    else {
        panic!("{:?}", p.steps[0].action);
    };
    assert_eq!(*container, 0);
    assert_eq!(endpoint.network, 1);
    // Lowest free on n2 after api's .2 (IPAM-6).
    assert_eq!(endpoint.ip, Some(v4("10.2.0.3")));
    assert_eq!(endpoint.aliases, vec!["www".to_string()]);
    let StepAction::Fault { link, fault } = &p.steps[1].action else {
        panic!()
    };
    assert_eq!(
        *link,
        LinkRef::Endpoint {
            container: 0,
            network: 1
        }
    );
    assert_eq!(fault.loss, 0.25);
    assert_eq!(fault.delay, Duration::from_millis(20));
    assert_eq!(fault.jitter, Duration::from_millis(5));
    assert!(matches!(p.steps[3].action, StepAction::Wait(d) if d == Duration::from_millis(50)));
    assert_eq!(p.checks[0].after, None);
    assert_eq!(p.checks[1].after, Some(0));
    let CheckKind::Ping {
        to,
        min_rtt_ms,
        max_rtt_ms,
        ..
    } = &p.checks[1].kind
    else {
        panic!()
    };
    // The target is resolved against the world after the step.
    assert_eq!(to.addr.to_string(), "10.2.0.3");
    assert_eq!((*min_rtt_ms, *max_rtt_ms), (Some(10.5), Some(100.0)));
    // The plan as it stands after each step.
    assert_eq!(p.after_steps(0).containers[0].endpoints.len(), 1);
    assert_eq!(p.after_steps(1).containers[0].endpoints.len(), 2);
}

#[test]
fn disconnect_gives_the_address_back_bug9() {
    // BUG-9: c2 leaves n1 (.3 free), api joins and takes .3 (lowest free),
    // c2 comes back and gets .4.
    let text = format!(
        "{}[[step]]\nname = \"rm\"\ndisconnect = {{ container = \"c2\", network = \"n1\" }}\n[[step]]\nname = \"other\"\nconnect = {{ container = \"api\", network = \"n1\" }}\n[[step]]\nname = \"back\"\nconnect = {{ container = \"c2\", network = \"n1\" }}\n[[check]]\nkind = \"ping\"\nfrom = \"web\"\nto = \"10.1.0.3\"\nexpect = \"ok\"\nafter = \"back\"\n",
        world()
    );
    let p = ok(&text);
    let ip = |k: usize| match &p.steps[k].action {
        StepAction::Connect { endpoint, .. } => endpoint.ip,
        _ => None,
    };
    assert_eq!(ip(1), Some(v4("10.1.0.3")));
    assert_eq!(ip(2), Some(v4("10.1.0.4")));
    assert!(p.after_steps(1).containers[2].endpoints.is_empty());
}

#[test]
fn stop_keeps_addresses_and_start_brings_the_container_back() {
    let text = format!(
        "{}[[step]]\nname = \"down\"\nstop = \"c2\"\n[[step]]\nname = \"join\"\nconnect = {{ container = \"api\", network = \"n1\" }}\n[[step]]\nname = \"up\"\nrestart = \"c2\"\n",
        world()
    );
    let p = ok(&text);
    // c2's .3 stays reserved while it is stopped: api gets .4.
    match &p.steps[1].action {
        StepAction::Connect { endpoint, .. } => assert_eq!(endpoint.ip, Some(v4("10.1.0.4"))),
        a => panic!("{a:?}"),
    }
    assert!(!p.after_steps(1).containers[2].running);
    assert!(p.after_steps(3).containers[2].running);
}

#[test]
fn step_errors_name_line_and_field() {
    let w = world();
    let wl = w.lines().count();
    let bad = |step: &str, line: usize, field: &str, msg: &str| {
        err_at(&format!("{w}[[step]]\n{step}"), wl + line, field, msg);
    };
    bad("name = \"s\"\n", 2, "step[0].name", "has no action");
    bad(
        "name = \"s\"\nstop = \"web\"\nstart = \"web\"\n",
        4,
        "step[0].start",
        "exactly one action",
    );
    bad(
        "name = \"s\"\nstop = \"nobody\"\n",
        3,
        "step[0].stop",
        "no container named",
    );
    bad(
        "name = \"s\"\nconnect = { container = \"web\", network = \"n1\" }\n",
        3,
        "step[0].connect.network",
        "already exists in network n1",
    );
    bad(
        "name = \"s\"\nconnect = { container = \"web\", network = \"n2\", ip = \"10.2.0.2\" }\n",
        3,
        "step[0].connect.ip",
        "Address already in use",
    );
    bad(
        "name = \"s\"\ndisconnect = { container = \"web\", network = \"n2\" }\n",
        3,
        "step[0].disconnect.network",
        "not connected to network n2",
    );
    bad(
        "name = \"s\"\nfault = { link = \"web\", loss = 1.5 }\n",
        3,
        "step[0].fault.loss",
        "a probability is 0..1",
    );
    bad(
        "name = \"s\"\nfault = { link = \"web\" }\n",
        3,
        "step[0].fault.link",
        "changes nothing",
    );
    bad(
        "name = \"s\"\nfault = { link = \"nobody\", down = true }\n",
        3,
        "step[0].fault.link",
        "no container, external or machine",
    );
    bad(
        "name = \"s\"\nfault = { link = \"web\", mtu = 20 }\n",
        3,
        "step[0].fault.mtu",
        "68-65535",
    );
    bad(
        "name = \"s\"\nfault = { link = \"web\", reorder = 0.2 }\n",
        3,
        "step[0].fault.reorder",
        "needs delay_ms",
    );
    bad(
        "name = \"s\"\nfault = { link = \"web\", loss = 0.1, bogus = 1 }\n",
        3,
        "step[0].fault.bogus",
        "unknown field",
    );
    bad(
        "name = \"s\"\nwait_ms = -1\n",
        3,
        "step[0].wait_ms",
        "out of range",
    );
    bad(
        "name = \"s\"\nscale = { service = \"web\", replicas = 2 }\n",
        3,
        "step[0].scale.service",
        "no service named",
    );
    err_at(
        &format!("{w}[[step]]\nname = \"s\"\nwait_ms = 1\n[[step]]\nname = \"s\"\nwait_ms = 2\n"),
        wl + 5,
        "step[1].name",
        "duplicate step name",
    );
}

#[test]
fn after_seed_and_rtt_errors_are_located() {
    let w = world();
    let wl = w.lines().count();
    let check = "[[check]]\nkind = \"ping\"\nfrom = \"web\"\nto = \"c2\"\nexpect = \"ok\"\n";
    err_at(
        &format!("{w}{check}after = \"nope\"\n"),
        wl + 6,
        "check[0].after",
        "no step named \"nope\"",
    );
    err_at(
        &format!("{w}{check}max_rtt_ms = 5\nmin_rtt_ms = 10\n"),
        wl + 6,
        "check[0].max_rtt_ms",
        "below min_rtt_ms",
    );
    err_at(
        &format!(
            "{w}[[check]]\nkind = \"tcp\"\nfrom = \"web\"\nto = \"c2:80\"\nexpect = \"ok\"\nmax_rtt_ms = 5\n"
        ),
        wl + 6,
        "check[0].max_rtt_ms",
        "not valid for a tcp check",
    );
    err_at(&format!("{HEAD}seed = -1\n"), 2, "seed", "out of range");
    // A check from a container stopped at that point cannot run.
    err_at(
        &format!("{w}[[step]]\nname = \"down\"\nstop = \"web\"\n{check}after = \"down\"\n"),
        wl + 6,
        "check[0].from",
        "is stopped after step \"down\"",
    );
    // A target that exists only after a step is unknown before it.
    err_at(
        &format!(
            "{w}[[step]]\nname = \"join\"\nconnect = {{ container = \"web\", network = \"n2\" }}\n[[check]]\nkind = \"ping\"\nfrom = \"api\"\nto = \"web@n2\"\nexpect = \"ok\"\n"
        ),
        wl + 7,
        "check[0].to",
        "not on network n2",
    );
}

#[test]
fn udp_checks_take_a_source_port() {
    let check = |kind: &str, sport: &str| {
        format!(
            "{}[[check]]\nkind = \"{kind}\"\nfrom = \"web\"\nto = \"c2:53\"\nsport = {sport}\nexpect = \"ok\"\n",
            world()
        )
    };
    let p = ok(&check("udp", "40001"));
    assert!(matches!(
        p.checks[0].kind,
        CheckKind::Udp {
            sport: Some(40001),
            ..
        }
    ));
    let line = world().lines().count() + 5;
    err_at(&check("udp", "0"), line, "check[0].sport", "out of range");
    err_at(&check("tcp", "40001"), line, "check[0].sport", "sport");
}
