//! Docker's `docker run` vocabulary on `[[container]]` beyond networks:
//! `hostname`, `dns_search`, `dns_opt`, `extra_hosts` (DNS-2, DNS-20),
//! `network_mode` (NH-7), legacy `links` (BR-20) and the host ports that
//! `publish` leaves to be chosen (PUB-6).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::addr::{self, PublishSpec};
use super::model::ContainerDef;
use super::plan::{Container, EPHEMERAL_PORTS, Link, PortMapping, Proto};
use super::span::{FieldPath, Issue, VResult};

/// What `network_mode` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NetMode {
    /// Absent: the `networks` list.
    Networks,
    /// A network by name (`bridge`, `host`, `none`, or a declared one):
    /// the same as `networks = [NAME]`.
    Network(String),
    /// `container:NAME`: index of the container whose namespace is shared.
    Container(usize),
}

/// Reads `network_mode`. `earlier` maps the names of the containers before
/// this one to their index (Docker needs the other container to exist).
pub(crate) fn network_mode(
    d: &ContainerDef,
    c: &FieldPath,
    earlier: &HashMap<&str, usize>,
    containers: &[Container],
) -> VResult<NetMode> {
    let Some(mode) = &d.network_mode else {
        return Ok(NetMode::Networks);
    };
    let at = c.k("network_mode");
    if !d.networks.is_empty() {
        return Err(Issue::new(
            at,
            "network_mode and networks are exclusive: give one of them",
        ));
    }
    let Some(other) = mode.strip_prefix("container:") else {
        if mode.is_empty() {
            return Err(Issue::new(at, "network_mode is empty"));
        }
        return Ok(NetMode::Network(mode.clone()));
    };
    let Some(&o) = earlier.get(other) else {
        return Err(Issue::new(
            at,
            format!(
                "container {other:?} not found among the containers above this one (Docker starts the shared one first)"
            ),
        ));
    };
    // Docker's own refusals (runconfig validateNetContainerMode).
    let conflict =
        |key: &str, msg: &str| Issue::new(c.k(key), format!("conflicting options: {msg}"));
    if d.hostname.is_some() {
        return Err(conflict("hostname", "hostname and the network mode"));
    }
    if !d.publish.is_empty() {
        return Err(conflict(
            "publish",
            "port publishing and the container type network mode",
        ));
    }
    if !d.links.is_empty() {
        return Err(conflict(
            "links",
            "container type network can't be used with links. This would result in undefined behavior",
        ));
    }
    for key in ["dns", "dns_search", "dns_opt"] {
        let set = match key {
            "dns" => !d.dns.is_empty(),
            "dns_search" => !d.dns_search.is_empty(),
            _ => !d.dns_opt.is_empty(),
        };
        if set {
            return Err(conflict(key, "dns and the network mode"));
        }
    }
    if !d.extra_hosts.is_empty() {
        return Err(conflict(
            "extra_hosts",
            "custom host-to-IP mapping and the network mode",
        ));
    }
    // Sharing a sharer shares the first one's namespace.
    Ok(NetMode::Container(containers[o].netns_of.unwrap_or(o)))
}

/// `hostname`, `dns_search`, `dns_opt`, `extra_hosts` onto `out`.
pub(crate) fn dns_files(d: &ContainerDef, c: &FieldPath, out: &mut Container) -> VResult<()> {
    if let Some(h) = &d.hostname {
        hostname(h).map_err(|m| Issue::new(c.k("hostname"), m))?;
        out.hostname = Some(h.clone());
    }
    for (j, s) in d.dns_search.iter().enumerate() {
        let domain = s.strip_suffix('.').unwrap_or(s);
        if s != "." {
            hostname(domain).map_err(|m| {
                Issue::new(
                    c.k("dns_search").i(j),
                    format!("invalid search domain: {m}"),
                )
            })?;
        }
        out.dns_search.push(s.clone());
    }
    for (j, s) in d.dns_opt.iter().enumerate() {
        if s.is_empty() || s.chars().any(char::is_whitespace) {
            return Err(Issue::new(
                c.k("dns_opt").i(j),
                format!("invalid DNS option {s:?}: one resolv.conf option, e.g. \"ndots:2\""),
            ));
        }
        if let Some(n) = s.strip_prefix("ndots:")
            && n.parse::<u32>().is_err()
        {
            // Docker refuses the container at start.
            return Err(Issue::new(
                c.k("dns_opt").i(j),
                format!("invalid number for ndots option: {n}"),
            ));
        }
        out.dns_opt.push(s.clone());
    }
    for (j, s) in d.extra_hosts.iter().enumerate() {
        let at = c.k("extra_hosts").i(j);
        // Docker's `--add-host host:ip` (split at the first ':', so the
        // address may be IPv6); compose also writes `host=ip`.
        let (name, ip) = s
            .split_once('=')
            .or_else(|| s.split_once(':'))
            .ok_or_else(|| {
                Issue::new(
                    at.clone(),
                    format!("bad format for add-host: {s:?} (expected NAME:IP)"),
                )
            })?;
        hostname(name).map_err(|m| Issue::new(at.clone(), m))?;
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        let ip = addr::ip(ip)
            .map_err(|m| Issue::new(at.clone(), format!("invalid IP address in add-host: {m}")))?;
        out.extra_hosts.push((name.to_string(), ip));
    }
    Ok(())
}

/// A hostname or domain: labels of `[A-Za-z0-9-]`, not starting or ending
/// with `-`, at most 63 characters each and 253 in all.
fn hostname(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("invalid hostname {s:?}"))
    }
}

/// `links = ["NAME", "NAME:ALIAS"]`: resolved against the containers above
/// this one (Docker links only to existing containers). `on_default` says
/// whether the container is on the default bridge, the only place links
/// are modelled (BR-20).
pub(crate) fn links(
    d: &ContainerDef,
    c: &FieldPath,
    earlier: &HashMap<&str, usize>,
    on_default: bool,
) -> VResult<Vec<Link>> {
    let mut out = Vec::with_capacity(d.links.len());
    for (j, s) in d.links.iter().enumerate() {
        let at = c.k("links").i(j);
        if !on_default {
            return Err(Issue::new(
                at,
                "links are modelled on the default bridge only (on a user-defined network, use an alias)",
            ));
        }
        let (name, alias) = s.split_once(':').unwrap_or((s, s));
        let Some(&k) = earlier.get(name) else {
            return Err(Issue::new(
                at,
                format!(
                    "could not get container for {name}: no such container among those above this one"
                ),
            ));
        };
        hostname(alias).map_err(|m| Issue::new(at.clone(), format!("invalid link alias: {m}")))?;
        out.push(Link {
            container: k,
            alias: alias.to_string(),
        });
    }
    Ok(out)
}

/// Turns every container's `publish` specs into mappings, choosing host
/// ports where the spec leaves them open: per machine, protocol and host
/// address, the first port of the range that no mapping above holds and no
/// fixed mapping anywhere in the file asks for, in file order, as a freshly
/// started Docker daemon's allocator picks them (PUB-6). Returns, per
/// container, the `publish` entry each mapping came from.
pub(crate) fn resolve_publish(
    specs: &[Vec<PublishSpec>],
    containers: &mut [Container],
) -> VResult<Vec<Vec<usize>>> {
    let mut origin = vec![Vec::new(); containers.len()];
    let mut fixed: HashSet<(usize, Proto, u16)> = HashSet::new();
    for (i, list) in specs.iter().enumerate() {
        for p in list.iter().filter(|p| !p.picks()) {
            if let Some((a, b)) = p.host {
                for h in a..=b {
                    fixed.insert((containers[i].machine, p.proto, h));
                }
            }
        }
    }
    let mut taken: Vec<(usize, PortMapping)> = Vec::new();
    for (i, list) in specs.iter().enumerate() {
        let m = containers[i].machine;
        for (j, p) in list.iter().enumerate() {
            let at = FieldPath::root().k("container").i(i).k("publish").i(j);
            let maps: Vec<PortMapping> = if p.picks() {
                let range = p.host.unwrap_or(EPHEMERAL_PORTS);
                let free = (range.0..=range.1).find(|&h| {
                    !fixed.contains(&(m, p.proto, h))
                        && !taken.iter().any(|(tm, t)| {
                            *tm == m
                                && t.proto == p.proto
                                && t.host_port == h
                                && ips_overlap(t.host_ip, p.host_ip)
                        })
                });
                let Some(h) = free else {
                    return Err(Issue::new(
                        at,
                        format!(
                            "all ports are allocated: no free host port in {}-{}",
                            range.0, range.1
                        ),
                    ));
                };
                vec![PortMapping {
                    host_ip: p.host_ip,
                    host_port: h,
                    container_port: p.container.0,
                    proto: p.proto,
                    auto: Some(range),
                }]
            } else {
                let (a, _) = p.host.unwrap_or(p.container);
                (p.container.0..=p.container.1)
                    .map(|cp| PortMapping {
                        host_ip: p.host_ip,
                        host_port: a + (cp - p.container.0),
                        container_port: cp,
                        proto: p.proto,
                        auto: None,
                    })
                    .collect()
            };
            for pm in maps {
                taken.push((m, pm));
                containers[i].publish.push(pm);
                origin[i].push(j);
            }
        }
    }
    Ok(origin)
}

fn ips_overlap(a: Option<IpAddr>, b: Option<IpAddr>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => true,
        (Some(x), Some(y)) => {
            x == y || (x.is_ipv4() == y.is_ipv4() && (x.is_unspecified() || y.is_unspecified()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::scenario::parse_str;
    use crate::scenario::plan::Plan;

    fn plan(text: &str) -> Plan {
        parse_str(Path::new("t.toml"), text).expect("valid")
    }

    /// (host port, container port, range it was chosen from).
    type Chosen = (u16, u16, Option<(u16, u16)>);

    fn ports(p: &Plan, c: usize) -> Vec<Chosen> {
        p.containers[c]
            .publish
            .iter()
            .map(|m| (m.host_port, m.container_port, m.auto))
            .collect()
    }

    /// PUB-6: ranges map one to one; open ports take the first free one of
    /// their range in file order, skipping ports fixed anywhere in the file.
    #[test]
    fn host_ports_are_chosen_in_file_order() {
        let p = plan(
            r#"name = "t"
[[container]]
name = "a"
networks = ["bridge"]
publish = ["8000-8002:80-82", "80", "127.0.0.1::81", "9000-9001:90"]
[[container]]
name = "b"
networks = ["bridge"]
publish = ["90/udp", "9000:91", "32769:92"]
"#,
        );
        let e = Some(crate::scenario::plan::EPHEMERAL_PORTS);
        assert_eq!(
            ports(&p, 0),
            vec![
                (8000, 80, None),
                (8001, 81, None),
                (8002, 82, None),
                (32768, 80, e),
                // 32769 is fixed by b (both families), so loopback gets 32770.
                (32770, 81, e),
                // 9000 is fixed by b.
                (9001, 90, Some((9000, 9001))),
            ]
        );
        assert_eq!(
            ports(&p, 1),
            vec![(32768, 90, e), (9000, 91, None), (32769, 92, None)]
        );
    }

    #[test]
    fn files_options_and_shared_namespace() {
        let p = plan(
            r#"name = "t"
[[container]]
name = "web"
networks = ["bridge"]
hostname = "h.example"
dns_search = ["corp.example"]
dns_opt = ["ndots:3"]
extra_hosts = ["db:10.0.0.9", "v6:[fd00::9]"]
[[container]]
name = "side"
network_mode = "container:web"
[[container]]
name = "side2"
network_mode = "container:side"
[[container]]
name = "app"
network_mode = "bridge"
links = ["web:www", "side"]
"#,
        );
        let web = &p.containers[0];
        assert_eq!(web.host_name(), "h.example");
        assert_eq!(
            web.extra_hosts[1].1,
            "fd00::9".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(p.containers[1].netns_of, Some(0));
        assert!(p.containers[1].endpoints.is_empty());
        assert_eq!(
            p.containers[2].netns_of,
            Some(0),
            "a sharer's sharer shares the first"
        );
        assert_eq!(p.containers[3].endpoints.len(), 1);
        assert_eq!(p.containers[3].links[0].alias, "www");
        assert_eq!(p.containers[3].links[1].alias, "side");
        let r = crate::backend::resolv_conf(&p, 1);
        assert!(r.starts_with("search corp.example\n"), "{r}");
        assert!(r.ends_with("options ndots:3\n"), "{r}");
        let h = crate::backend::hosts_file(&p, 3);
        assert!(h.contains("\twww h.example web\n"), "{h}");
        assert_eq!(crate::backend::hostname_file(&p, 2), "h.example\n");
    }
}
