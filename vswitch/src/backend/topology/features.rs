//! What each backend refuses of a plan, from one table: the plan's
//! features that some backend cannot build are found once ([`features`]),
//! each backend's verdict on each is [`refusal`] — a single match over
//! (backend, feature) holding every such refusal string. What depends on
//! this machine (link kinds the kernel lacks, ESP, dummy links) comes in
//! through [`Env`]. Each backend lists the verdicts in its own order of
//! sections and adds what only it checks (tools, a daemon that answers).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::scenario::plan::{
    BackendKind, CheckKind, Driver, Endpoint, Generator, MacAddr, Mode, Plan,
};

/// What this machine has, for the verdicts that depend on it.
pub struct Env<'a> {
    /// Whether the kernel has link kind `kind` (`"esp"`: IPsec ESP).
    pub has_kind: &'a dyn Fn(&str) -> bool,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").finish_non_exhaustive()
    }
}

/// A feature of a plan that some backend does not build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Feature {
    /// `machine[i]` names a backend of its own.
    MixedBackend(usize, BackendKind),
    /// `machine[i]` has a loopback resolver.
    LoopbackResolver(usize, IpAddr),
    /// `external[i]` is on a lan VLAN.
    LanVlan(usize, u16),
    /// Network `i` is macvlan (a kernel link kind).
    Macvlan(usize),
    /// Network `i`'s parent is an 802.1Q sub-interface.
    VlanParent(usize),
    /// Network `i`'s parent is not the machine's `eth0`.
    OtherParent(usize),
    /// Network `i` is macvlan with an explicit MTU.
    MacvlanMtu(usize),
    /// Network `i` is macvlan without a parent (MV-6: a dummy link).
    ParentlessMacvlan(usize),
    /// Network `i` is macvlan passthru with this many containers.
    PassthruShared(usize, usize),
    /// Network `i` is ipvlan.
    Ipvlan(usize),
    /// Network `i` is an overlay (a vxlan link per machine).
    Overlay(usize),
    /// Network `i` is an encrypted overlay (OV-9).
    EncryptedOverlay(usize),
    /// Network `i` is an overlay with IPv6.
    OverlayIpv6(usize),
    /// Network `i` is the default bridge with IPv6 other than the daemon's.
    DefaultBridgeIpv6(usize),
    /// Network `i` is the default bridge with settings other than the daemon's.
    DefaultBridgeSettings(usize),
    /// Container `i`'s endpoint on network `n` (not its first) has a MAC
    /// other than Docker's.
    SecondMac(usize, usize),
    /// Network `i` is named `default`, a predefined network mode to Docker.
    NamedDefault(usize),
    /// Check `i` is throughput with generator iperf3 (a real binary).
    Iperf3(usize),
}

/// The plan's features, by section: machines, externals, networks,
/// containers, checks; within each in plan order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// Of machines.
    pub machines: Vec<Feature>,
    /// Of externals.
    pub externals: Vec<Feature>,
    /// Of networks.
    pub networks: Vec<Feature>,
    /// Of containers.
    pub containers: Vec<Feature>,
    /// Of checks.
    pub checks: Vec<Feature>,
}

/// The shared Docker daemon's uplink, the only macvlan parent it has.
pub const DOCKER_UPLINK: &str = "eth0";

/// Finds the plan's features once.
pub fn features(plan: &Plan) -> Features {
    let mut f = Features::default();
    for (i, m) in plan.machines.iter().enumerate() {
        if let Some(b) = m.backend {
            f.machines.push(Feature::MixedBackend(i, b));
        }
        for r in &m.resolvers {
            if r.is_loopback() {
                f.machines.push(Feature::LoopbackResolver(i, *r));
            }
        }
    }
    for (i, x) in plan.externals.iter().enumerate() {
        if let Some(v) = x.vlan {
            f.externals.push(Feature::LanVlan(i, v));
        }
    }
    for (i, n) in plan.networks.iter().enumerate() {
        let mut add = |x| f.networks.push(x);
        if n.name == "default" {
            add(Feature::NamedDefault(i));
        }
        match n.driver {
            Driver::Macvlan => {
                add(Feature::Macvlan(i));
                match &n.parent {
                    Some(p) if p.vlan.is_some() => add(Feature::VlanParent(i)),
                    Some(p) if p.name != DOCKER_UPLINK => add(Feature::OtherParent(i)),
                    _ => {}
                }
                if n.mtu_explicit {
                    add(Feature::MacvlanMtu(i));
                }
                if n.parent.is_none() {
                    add(Feature::ParentlessMacvlan(i));
                }
                if n.mode == Some(Mode::Passthru) {
                    let users = plan
                        .containers
                        .iter()
                        .filter(|c| c.endpoints.iter().any(|e| e.network == i))
                        .count();
                    if users > 1 {
                        add(Feature::PassthruShared(i, users));
                    }
                }
            }
            Driver::Ipvlan => add(Feature::Ipvlan(i)),
            Driver::Overlay => {
                add(Feature::Overlay(i));
                if n.encrypted {
                    add(Feature::EncryptedOverlay(i));
                }
                if n.ipv6 {
                    add(Feature::OverlayIpv6(i));
                }
            }
            _ => {}
        }
        if n.ipv6 && n.default && !daemon_default_ipv6(plan, i) {
            add(Feature::DefaultBridgeIpv6(i));
        }
        if n.default && n.driver == Driver::Bridge && !daemon_default_bridge(n) {
            add(Feature::DefaultBridgeSettings(i));
        }
    }
    for (i, c) in plan.containers.iter().enumerate() {
        for (k, e) in c.endpoints.iter().enumerate() {
            if k > 0
                && let Some(ip) = e.ip
                && e.mac != MacAddr::docker_from_ipv4(ip)
            {
                f.containers.push(Feature::SecondMac(i, e.network));
            }
        }
    }
    for (i, c) in plan.checks.iter().enumerate() {
        if let CheckKind::Throughput {
            generator: Generator::Iperf3,
            ..
        } = c.kind
        {
            f.checks.push(Feature::Iperf3(i));
        }
    }
    f
}

/// V6-6: the default bridge's IPv6 is the daemon's fixed-cidr-v6,
/// container addresses derived from their MACs.
fn daemon_default_ipv6(plan: &Plan, ni: usize) -> bool {
    let n = &plan.networks[ni];
    let daemon6: Ipv6Net = "fd00:dead:beef::/48".parse().expect("valid");
    let gw6: Ipv6Addr = "fd00:dead:beef::1".parse().expect("valid");
    let derived = |e: &Endpoint| {
        let mut o = daemon6.network().octets();
        o[10..16].copy_from_slice(&e.mac.0);
        e.ip6.is_none_or(|a| a == Ipv6Addr::from(o))
    };
    let on_it = |e: &&Endpoint| plan.networks[e.network].name == n.name;
    n.subnet6 == Some(daemon6)
        && n.gateway6 == Some(gw6)
        && plan
            .containers
            .iter()
            .flat_map(|c| &c.endpoints)
            .filter(on_it)
            .all(derived)
}

/// The daemon's own default bridge: 172.17.0.0/16, gateway .1, ICC and
/// masquerade on, MTU 1500.
fn daemon_default_bridge(n: &crate::scenario::plan::Network) -> bool {
    let expected = Ipv4Net::new(Ipv4Addr::new(172, 17, 0, 0), 16).expect("valid");
    n.subnets.len() == 1
        && n.subnets[0].net == expected
        && n.subnets[0].gateway == Some(Ipv4Addr::new(172, 17, 0, 1))
        && n.subnets[0].ip_range == expected
        && n.aux_addresses.is_empty()
        && !n.internal
        && n.icc
        && n.masquerade
        && n.mtu == 1500
}

fn lacks(kind: &str, what: &str) -> String {
    format!("{what} needs the kernel's {kind} link type, which this kernel lacks")
}

const ESP_MISSING: &str = "encrypted overlay needs IPsec ESP (xfrm rfc4106(gcm(aes))), which this kernel lacks: ESP missing";

/// The table: what `backend` says of feature `f` (`None`: it builds it),
/// without the `backend X: ` prefix.
pub fn refusal(backend: BackendKind, f: &Feature, plan: &Plan, env: &Env) -> Option<String> {
    use BackendKind::{Docker, Kernel, Sim, Userspace};
    use Feature as F;
    let has = env.has_kind;
    let net = |i: usize| format!("network[{i}] `{}`", plan.networks[i].name);
    let parent = |i: usize| {
        plan.networks[i]
            .parent
            .as_ref()
            .map_or(String::new(), |p| p.name.clone())
    };
    Some(match (backend, f) {
        (Kernel, F::MixedBackend(i, BackendKind::Userspace)) => format!(
            "mixed backends (machine[{i}] `{}` backend = userspace) not supported yet",
            plan.machines[*i].name
        ),
        (Sim, F::MixedBackend(i, _)) => format!(
            "mixed runs (machine `{}` sets backend) need the kernel backend's namespaces; the sim builds only the engine's data path",
            plan.machines[*i].name
        ),
        (Docker, F::MixedBackend(i, b)) => format!(
            "mixed backends (machine[{i}] `{}` backend = {b}) not supported",
            plan.machines[*i].name
        ),
        (Docker, F::LoopbackResolver(i, r)) => format!(
            "loopback resolver {r} (machine[{i}] `{}`): the daemon's own resolv.conf is not the scenario's",
            plan.machines[*i].name
        ),
        (Kernel, F::LanVlan(i, v)) if has("vlan") => format!(
            "VLAN {v} on lan (external[{i}] `{}`) needs VLAN filtering on the lan bridge, not supported yet",
            plan.externals[*i].name
        ),
        (Kernel, F::LanVlan(i, v)) => format!(
            "VLAN {v} on lan (external[{i}] `{}`) needs 802.1Q vlan devices or bridge VLAN filtering, which this kernel lacks",
            plan.externals[*i].name
        ),
        (Docker, F::LanVlan(i, _)) => format!(
            "VLANs on lan not supported (external[{i}] `{}`)",
            plan.externals[*i].name
        ),
        (Kernel, F::Macvlan(i)) if !has("macvlan") => {
            format!("{} ({})", lacks("macvlan", "driver macvlan"), net(*i))
        }
        (Kernel, F::VlanParent(i)) if has("vlan") => format!(
            "parent {} (802.1Q sub-interface) not supported yet ({})",
            parent(*i),
            net(*i)
        ),
        (Kernel, F::VlanParent(i)) => format!(
            "parent {} needs 802.1Q vlan devices, which this kernel lacks ({})",
            parent(*i),
            net(*i)
        ),
        (Docker, F::VlanParent(i)) => {
            format!("802.1Q parent `{}` not supported ({})", parent(*i), net(*i))
        }
        (Docker, F::OtherParent(i)) => format!(
            "parent `{}` not supported: only `{DOCKER_UPLINK}` ({})",
            parent(*i),
            net(*i)
        ),
        (Docker, F::MacvlanMtu(i)) => format!("mtu on macvlan not supported ({})", net(*i)),
        (Docker, F::ParentlessMacvlan(i)) if !has("dummy") => format!(
            "parent-less macvlan: Docker makes a dummy link its parent (MV-6), and this kernel has no dummy links ({})",
            net(*i)
        ),
        (Userspace | Kernel, F::PassthruShared(i, users)) => format!(
            "macvlan passthru gives its parent to one container; {users} are attached ({})",
            net(*i)
        ),
        (Kernel, F::Ipvlan(i)) if has("ipvlan") => {
            format!("driver ipvlan not supported yet ({})", net(*i))
        }
        (Kernel, F::Ipvlan(i)) => format!("{} ({})", lacks("ipvlan", "driver ipvlan"), net(*i)),
        (Docker, F::Ipvlan(i)) => format!("driver ipvlan not supported ({})", net(*i)),
        // moby runconfig: `default` is a predefined network mode.
        (Docker, F::NamedDefault(i)) => format!(
            "a network named `default` ({}): the daemon refuses to create it (operation is not permitted on predefined default network)",
            net(*i)
        ),
        (Kernel, F::Overlay(i)) if !has("vxlan") => {
            format!("{} ({})", lacks("vxlan", "driver overlay"), net(*i))
        }
        (Kernel, F::EncryptedOverlay(i)) if has("esp") => format!(
            "encrypted overlay (IPsec ESP between machines, OV-9) not supported yet ({})",
            net(*i)
        ),
        (Kernel | Docker, F::EncryptedOverlay(i)) if !has("esp") => {
            format!("{ESP_MISSING} ({})", net(*i))
        }
        // An encrypted overlay this kernel cannot carry is refused for that.
        (Docker, F::OverlayIpv6(i)) if !plan.networks[*i].encrypted || has("esp") => format!(
            "IPv6 on an overlay: Engine 20.10's swarm allocator does not take a container's planned IPv6Address on an attachable overlay (observed: fd00:9::3 for a planned fd00:9::2), so its addresses cannot be the plan's ({})",
            net(*i)
        ),
        (Docker, F::DefaultBridgeIpv6(i)) => format!(
            "ipv6 on the default bridge other than the daemon's: its IPv6 is the daemon's fixed-cidr-v6 (fd00:dead:beef::/48, gateway ::1, addresses from the MAC, V6-6), a daemon-wide setting ({})",
            net(*i)
        ),
        (Docker, F::DefaultBridgeSettings(i)) => format!(
            "the default bridge is the daemon's (172.17.0.0/16, gateway .1, ICC and masquerade on, MTU 1500): other settings are daemon-wide ({})",
            net(*i)
        ),
        (Docker, F::SecondMac(i, n)) => format!(
            "a MAC address on a second network needs Engine API 1.44 (container[{i}] `{}` network `{}`)",
            plan.containers[*i].name, plan.networks[*n].name
        ),
        (Sim, F::Iperf3(i)) => format!(
            "throughput with generator iperf3 runs the real iperf3 binary, which needs a network namespace (check[{i}]): use generator = \"builtin\""
        ),
        _ => return None,
    })
}

/// `backend`'s verdicts on `feats`, in order.
pub fn refusals_of<'a>(
    backend: BackendKind,
    feats: impl IntoIterator<Item = &'a Feature>,
    plan: &Plan,
    env: &Env,
) -> Vec<String> {
    feats
        .into_iter()
        .filter_map(|f| refusal(backend, f, plan, env))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = r#"
name = "t"
[[machine]]
name = "m1"
resolvers = ["127.0.0.53"]
[[machine]]
name = "m2"
backend = "kernel"
[[external]]
name = "x10"
ip = "198.18.0.90"
vlan = 10
[[network]]
name = "iv"
driver = "ipvlan"
parent = "eth0"
subnet = "198.21.0.0/24"
machine = "m1"
[[network]]
name = "ov"
driver = "overlay"
encrypted = true
[[container]]
name = "a"
machine = "m1"
networks = ["iv"]
[[container]]
name = "c"
machine = "m2"
networks = ["ov"]
"#;

    /// One feature, each backend's own verdict; what the machine has
    /// changes the kernel's wording.
    #[test]
    fn one_table_gives_each_backend_its_verdict() {
        let plan = crate::scenario::parse_str(std::path::Path::new("t.toml"), PLAN).unwrap();
        let f = features(&plan);
        assert!(f.networks.contains(&Feature::Ipvlan(0)));
        let none = |_: &str| false;
        let all = |_: &str| true;
        let (bare, full) = (Env { has_kind: &none }, Env { has_kind: &all });
        let ipvlan = Feature::Ipvlan(0);
        assert_eq!(refusal(BackendKind::Userspace, &ipvlan, &plan, &bare), None);
        assert_eq!(
            refusal(BackendKind::Kernel, &ipvlan, &plan, &full).as_deref(),
            Some("driver ipvlan not supported yet (network[0] `iv`)")
        );
        assert!(
            refusal(BackendKind::Kernel, &ipvlan, &plan, &bare)
                .unwrap()
                .contains("which this kernel lacks")
        );
        assert_eq!(
            refusal(BackendKind::Docker, &ipvlan, &plan, &bare).as_deref(),
            Some("driver ipvlan not supported (network[0] `iv`)")
        );
        let enc = Feature::EncryptedOverlay(1);
        assert_eq!(refusal(BackendKind::Docker, &enc, &plan, &full), None);
        assert!(refusal(BackendKind::Docker, &enc, &plan, &bare).is_some());
        let docker = refusals_of(BackendKind::Docker, &f.machines, &plan, &bare);
        assert_eq!(docker.len(), 2, "{docker:?}");
        assert!(refusals_of(BackendKind::Userspace, &f.machines, &plan, &bare).is_empty());
    }

    /// The sim's verdicts are in the same table: a mixed run, named by
    /// machine, and iperf3 (a real binary), named by check; what the
    /// userspace engine builds, it builds.
    #[test]
    fn the_sims_verdicts() {
        let text = format!(
            "{PLAN}[[check]]\nkind = \"throughput\"\nfrom = \"a\"\nto = \"a\"\nseconds = 1\n"
        );
        let mut plan = crate::scenario::parse_str(std::path::Path::new("t.toml"), &text).unwrap();
        assert!(features(&plan).checks.is_empty(), "builtin is no feature");
        // `vswitch bench` runs iperf3 when it is installed.
        if let CheckKind::Throughput { generator, .. } = &mut plan.checks[0].kind {
            *generator = Generator::Iperf3;
        }
        let f = features(&plan);
        assert_eq!(f.checks, vec![Feature::Iperf3(0)]);
        let all = |_: &str| true;
        let env = Env { has_kind: &all };
        let sim = refusals_of(
            BackendKind::Sim,
            f.machines.iter().chain(&f.checks),
            &plan,
            &env,
        );
        assert_eq!(
            sim,
            vec![
                "mixed runs (machine `m2` sets backend) need the kernel backend's namespaces; the sim builds only the engine's data path",
                "throughput with generator iperf3 runs the real iperf3 binary, which needs a network namespace (check[0]): use generator = \"builtin\"",
            ]
        );
        for b in [
            BackendKind::Userspace,
            BackendKind::Kernel,
            BackendKind::Docker,
        ] {
            assert_eq!(refusal(b, &Feature::Iperf3(0), &plan, &env), None);
        }
        assert!(refusals_of(BackendKind::Sim, &f.networks, &plan, &env).is_empty());
        let why = crate::backend::sim::unsupported(&plan);
        assert_eq!(
            why[..2],
            sim.iter()
                .map(|r| format!("backend sim: {r}"))
                .collect::<Vec<_>>()[..]
        );
    }
}
