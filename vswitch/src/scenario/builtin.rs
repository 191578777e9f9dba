//! Docker's built-in networks, usable by name without a `[[network]]`
//! table, as on every Docker host: `bridge` (the default bridge, docker0,
//! 172.17.0.0/16 — BR-21), `host` (the machine's own stack, NH-3) and `none`
//! (loopback only, NH-1). A file that declares a network of that name uses
//! its own declaration instead.

use super::model::{NetworkDef, ScenarioDef};
use super::span::{FieldPath, Issue, VResult};

/// Built-in network names and their drivers.
const BUILTIN: &[(&str, &str)] = &[("bridge", "bridge"), ("host", "host"), ("none", "none")];

/// Appends a network table for each built-in network that a container
/// uses and the file does not declare, on the machine of the containers
/// that use it. A built-in network used on two machines must be declared
/// once per machine (network names are unique in a file).
pub(crate) fn add_implicit(def: &mut ScenarioDef, dual_stack: bool) -> VResult<()> {
    for &(name, driver) in BUILTIN {
        if def.network.iter().any(|n| n.name == name) {
            continue;
        }
        let mut machine: Option<(Option<String>, FieldPath)> = None;
        for (i, c) in def.container.iter().enumerate() {
            let Some(j) = c.networks.iter().position(|r| r.name() == name) else {
                continue;
            };
            let at = FieldPath::root().k("container").i(i).k("networks").i(j);
            match &machine {
                None => machine = Some((c.machine.clone(), at)),
                Some((m, _)) if *m == c.machine => {}
                Some((m, _)) => {
                    return Err(Issue::new(
                        at,
                        format!(
                            "the built-in network {name} is used on machines {} and {}: declare a [[network]] of driver {driver}{} for each machine, with its own name",
                            m.as_deref().unwrap_or("(default)"),
                            c.machine.as_deref().unwrap_or("(default)"),
                            if name == "bridge" {
                                " and default = true"
                            } else {
                                ""
                            },
                        ),
                    ));
                }
            }
        }
        let Some((machine, _)) = machine else {
            continue;
        };
        def.network.push(NetworkDef {
            name: name.to_string(),
            driver: Some(driver.to_string()),
            machine,
            default: (name == "bridge").then_some(true),
            ipv6: (name == "bridge" && dual_stack).then_some(true),
            ..NetworkDef::default()
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::scenario::parse_str;
    use crate::scenario::plan::Driver;

    fn parse(text: &str) -> Result<crate::scenario::plan::Plan, crate::scenario::ScenarioError> {
        parse_str(Path::new("b.toml"), text)
    }

    #[test]
    fn builtin_networks_need_no_table() {
        let p = parse(
            "name = \"b\"\n[[container]]\nname = \"a\"\nnetworks = [\"bridge\"]\n[[container]]\nname = \"h\"\nnetworks = [\"host\"]\n[[container]]\nname = \"n\"\nnetworks = [\"none\"]\n",
        )
        .unwrap();
        let by = |name: &str| p.networks.iter().find(|n| n.name == name).unwrap();
        assert!(by("bridge").default && by("bridge").driver == Driver::Bridge);
        assert_eq!(by("host").driver, Driver::Host);
        assert_eq!(by("none").driver, Driver::None);
        // BR-21: the default bridge's pool, first address to the container.
        assert_eq!(
            p.containers[0].endpoints[0].ip,
            Some("172.17.0.2".parse().unwrap())
        );
    }

    /// V6-6: in a file that uses IPv6 the implicit default bridge is dual
    /// stack from the daemon's fixed-cidr-v6, addresses from the MAC;
    /// without IPv6 in the file it stays IPv4 only.
    #[test]
    fn implicit_default_bridge_is_dual_stack_in_an_ipv6_file() {
        let base = "name = \"b\"\n[[container]]\nname = \"a\"\nnetworks = [\"bridge\"]\n[[container]]\nname = \"c\"\nnetworks = [\"bridge\"]\n";
        let p = parse(base).unwrap();
        assert!(!p.networks[0].ipv6);
        assert_eq!(p.containers[0].endpoints[0].ip6, None);
        let p = parse(&format!(
            "{base}[[check]]\nkind = \"ping\"\nfrom = \"a\"\nto = \"c\"\nipv6 = true\nexpect = \"ok\"\n"
        ))
        .unwrap();
        let n = &p.networks[0];
        assert!(n.ipv6);
        assert_eq!(n.subnet6, Some("fd00:dead:beef::/48".parse().unwrap()));
        assert_eq!(n.gateway6, Some("fd00:dead:beef::1".parse().unwrap()));
        assert_eq!(
            p.containers[1].endpoints[0].ip6,
            Some("fd00:dead:beef::242:ac11:3".parse().unwrap())
        );
    }

    #[test]
    fn a_declared_network_of_that_name_wins() {
        let p = parse(
            "name = \"b\"\n[[network]]\nname = \"bridge\"\nsubnet = \"10.9.0.0/24\"\n[[container]]\nname = \"a\"\nnetworks = [\"bridge\"]\n",
        )
        .unwrap();
        assert_eq!(p.networks.len(), 1);
        assert!(!p.networks[0].default);
        assert_eq!(
            p.containers[0].endpoints[0].ip,
            Some("10.9.0.2".parse().unwrap())
        );
    }

    #[test]
    fn one_builtin_on_two_machines_is_located() {
        let e = parse(
            "name = \"b\"\n[[machine]]\nname = \"m1\"\n[[machine]]\nname = \"m2\"\n[[container]]\nname = \"a\"\nmachine = \"m1\"\nnetworks = [\"bridge\"]\n[[container]]\nname = \"b\"\nmachine = \"m2\"\nnetworks = [\"bridge\"]\n",
        )
        .unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (13, "container[1].networks[0]"),
            "{e}"
        );
        assert!(e.message.contains("declare a [[network]]"), "{e}");
        let e = parse("name = \"b\"\n[[container]]\nname = \"a\"\nnetworks = [\"nope\"]\n")
            .unwrap_err();
        assert!(e.message.contains("network nope not found"), "{e}");
    }
}
