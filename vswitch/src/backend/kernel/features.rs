//! What the kernel backend cannot build on this machine, found before
//! anything is created: link kinds the kernel lacks (probed for real in a
//! throwaway namespace), drivers and options this backend does not build
//! yet, and tools it needs.

use std::net::IpAddr;

use crate::backend::topology::features::{Env, features, refusals_of};
use crate::scenario::plan::{BackendKind, Check, CheckKind, Driver, Node, Plan, Proto};
use crate::sys::probe::{esp_supported, link_kind_supported};

/// Every reason this machine cannot build `plan` with the kernel backend,
/// one per item, each starting with `backend kernel: `.
pub fn unsupported(plan: &Plan) -> Vec<String> {
    let has = |kind: &str| {
        if kind == "esp" {
            esp_supported()
        } else {
            link_kind_supported(kind)
        }
    };
    unsupported_with(plan, &has, tool_available)
}

/// [`unsupported`] with the kernel probe and the `nft` check given, so the
/// reasoning can be tested without root.
pub(super) fn unsupported_with(
    plan: &Plan,
    has_kind: &dyn Fn(&str) -> bool,
    has_tool: fn(&str) -> bool,
) -> Vec<String> {
    let mut why = Vec::new();
    let mut say = |s: String| why.push(format!("backend kernel: {s}"));
    let lacks = |kind: &str, what: &str| {
        format!("{what} needs the kernel's {kind} link type, which this kernel lacks")
    };

    for kind in ["veth", "bridge"] {
        if !has_kind(kind) {
            say(lacks(kind, "the lan segment"));
        }
    }
    let env = Env { has_kind };
    let f = features(plan);
    let sections = [&f.machines, &f.externals, &f.networks];
    for r in refusals_of(
        BackendKind::Kernel,
        sections.into_iter().flatten(),
        plan,
        &env,
    ) {
        say(r);
    }
    let mut needs_nft = false;
    let mut needs_bridge_tool = false;
    for n in &plan.networks {
        match n.driver {
            Driver::Bridge => needs_nft = true,
            Driver::Overlay => {
                needs_bridge_tool = true;
                // docker_gwbridge is a bridge with masquerade (OV-8).
                needs_nft = true;
            }
            _ => {}
        }
    }
    for c in &plan.checks {
        if let Some(r) = proxied_v6(plan, c) {
            say(r);
        }
    }
    if needs_nft && !has_tool("nft") {
        say("nftables (nft) is not installed: apt-get install nftables (bridge networks' NAT and filtering)".to_string());
    }
    if needs_bridge_tool && !has_tool("bridge") {
        say(format!(
            "{} (overlay head-end replication FDB entries)",
            crate::tools::missing("bridge")
        ));
    }
    for r in crate::backend::topology::refusals(plan) {
        say(r);
    }
    let publishes = plan.containers.iter().any(|c| !c.publish.is_empty());
    if needs_nft && publishes && !has_tool("ip") {
        say(format!(
            "{} (bridge port hairpin mode for published ports)",
            crate::tools::missing("ip")
        ));
    }
    why.dedup();
    why
}

/// PUB-4, V6-5: a check over IPv6 to a machine's port that Docker serves
/// with docker-proxy (published by a container without IPv6 on its gateway
/// endpoint, or on a machine with `ip6tables = false`), which forwards to
/// the container's IPv4 address: nftables cannot translate IPv6 to IPv4.
fn proxied_v6(plan: &Plan, c: &Check) -> Option<String> {
    let (to, proto) = match &c.kind {
        CheckKind::Tcp { to, .. } => (to, Proto::Tcp),
        CheckKind::Udp { to, .. } => (to, Proto::Udp),
        CheckKind::Throughput { to, proto, .. } => (to, *proto),
        _ => return None,
    };
    let IpAddr::V6(a) = to.addr else { return None };
    let m = plan.machines.iter().position(|m| m.ip6 == Some(a))?;
    let port = to.port.unwrap_or(crate::scenario::plan::THROUGHPUT_PORT);
    let (Node::Container(ci), _) = plan.receiver_of(to.addr, port, proto)? else {
        return None;
    };
    let ctr = &plan.containers[ci];
    let has6 =
        super::layout::gateway_endpoint(plan, ci).is_some_and(|k| ctr.endpoints[k].ip6.is_some());
    if has6 && plan.machines[m].ip6tables {
        return None;
    }
    Some(format!(
        "check[{}] ({}): the IPv6 side of port {port} published by container `{}` is served by docker-proxy, which forwards to its IPv4 address (PUB-4, V6-5); nftables cannot translate IPv6 to IPv4",
        c.index,
        c.kind.name(),
        ctr.name
    ))
}

/// True when `tool` is on PATH.
fn tool_available(tool: &str) -> bool {
    crate::tools::find(tool).is_some()
}
