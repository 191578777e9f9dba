//! `vswitch import --checks`: checks that what Compose promises holds in
//! the translated world. For every service, one other container that shares
//! exactly one user-defined network with it asks the embedded DNS for the
//! service name and must get exactly the addresses answering to that name
//! on that network (its containers, replicas, and any container with that
//! alias there: DNS-4, DNS-8); on a bridge network with inter-container
//! communication on, it also reaches each TCP port the service serves.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::q;
use crate::scenario::plan::{Driver, Plan, Proto};

/// Addresses answering to `name` on network `n` (IPv4, sorted).
fn answers(plan: &Plan, n: usize, name: &str) -> Vec<String> {
    let mut v: Vec<IpAddr> = plan
        .containers
        .iter()
        .flat_map(|c| {
            c.endpoints
                .iter()
                .filter(move |e| {
                    e.network == n && (c.name == name || e.aliases.iter().any(|a| a == name))
                })
                .filter_map(|e| e.ip.map(IpAddr::V4))
        })
        .collect();
    v.sort();
    v.into_iter().map(|a| a.to_string()).collect()
}

/// `[[check]]` tables for the services of an import (see the module doc).
pub fn discovery_checks(plan: &Plan, services: &[(String, Vec<String>)]) -> String {
    let mut o = String::new();
    let index = |name: &str| plan.containers.iter().position(|c| c.name == name);
    for (service, members) in services {
        let Some(first) = members.first().and_then(|m| index(m)) else {
            continue;
        };
        let target_nets: Vec<usize> = plan.containers[first]
            .endpoints
            .iter()
            .map(|e| e.network)
            .filter(|&n| plan.networks[n].has_embedded_dns())
            .collect();
        let client = plan.containers.iter().find_map(|c| {
            if members.contains(&c.name) {
                return None;
            }
            let shared: Vec<usize> = c
                .endpoints
                .iter()
                .map(|e| e.network)
                .filter(|n| target_nets.contains(n))
                .collect();
            // The name must mean one thing to this client: no other of its
            // networks may have it.
            let elsewhere = c.endpoints.iter().any(|e| {
                !shared.contains(&e.network)
                    && plan.networks[e.network].has_embedded_dns()
                    && !answers(plan, e.network, service).is_empty()
            });
            (shared.len() == 1 && !elsewhere).then(|| (c, shared[0]))
        });
        let Some((client, n)) = client else {
            continue;
        };
        let net = &plan.networks[n];
        let want = answers(plan, n, service);
        if want.is_empty() {
            continue;
        }
        let _ = writeln!(
            o,
            "\n[[check]]\nname = {}\nkind = \"dns\"\nfrom = {}\nquery = {}\nexpect = [{}]",
            q(&format!(
                "compose: {service} resolves on {} (DNS-4, DNS-8)",
                net.name
            )),
            q(&client.name),
            q(service),
            want.iter().map(|a| q(a)).collect::<Vec<_>>().join(", ")
        );
        if net.driver != Driver::Bridge
            || !net.icc
            || plan.containers[first]
                .endpoints
                .iter()
                .all(|e| e.network != n || e.ip.is_none())
        {
            continue;
        }
        for s in plan.containers[first]
            .serve
            .iter()
            .filter(|s| s.proto == Proto::Tcp)
        {
            let _ = writeln!(
                o,
                "\n[[check]]\nname = {}\nkind = \"tcp\"\nfrom = {}\nto = {}\nexpect = \"ok\"",
                q(&format!(
                    "compose: {} reaches {service}:{} on {} (BR-7)",
                    client.name, s.port, net.name
                )),
                q(&client.name),
                q(&format!(
                    "{}@{}:{}",
                    plan.containers[first].name, net.name, s.port
                )),
            );
        }
    }
    o
}
