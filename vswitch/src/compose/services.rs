//! Compose `services` → scenario containers.

use std::collections::BTreeSet;

use super::ports::{self, Port};
use super::run_opts::{self, Extra};
use super::yaml::{Entry, Node, Val};
use super::{ComposeError, ContOut, Ctx, NetOut, Origin, q, q_list};

/// Service keys that have no effect on networking: listed, not translated.
const NOTED: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "command",
    "configs",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "depends_on",
    "develop",
    "device_cgroup_rules",
    "devices",
    "domainname",
    "entrypoint",
    "env_file",
    "environment",
    "external_links",
    "gpus",
    "group_add",
    "healthcheck",
    "image",
    "init",
    "ipc",
    "isolation",
    "label_file",
    "labels",
    "logging",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "post_start",
    "pre_stop",
    "privileged",
    "provider",
    "pull_policy",
    "read_only",
    "restart",
    "runtime",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "use_api_socket",
    "user",
    "userns_mode",
    "uts",
    "volumes",
    "volumes_from",
    "working_dir",
];

/// One network attachment of a service.
#[derive(Clone, Debug, Default)]
struct Attach {
    key: String,
    aliases: Vec<String>,
    ip: Option<String>,
    ip6: Option<String>,
    mac: Option<String>,
    line: usize,
    col: usize,
}

/// A service as read.
#[derive(Clone, Debug, Default)]
struct Service {
    name: String,
    line: usize,
    col: usize,
    ports_at: Option<Origin>,
    dns_at: Option<Origin>,
    container_name: Option<String>,
    replicas: Option<(u32, usize)>,
    attach: Vec<Attach>,
    mode: Option<(String, usize, usize)>,
    ports: Vec<Port>,
    serve: BTreeSet<(String, u16)>,
    dns: Vec<String>,
    mac: Option<String>,
    /// hostname, dns_search, dns_opt, extra_hosts as scenario keys.
    extra: Vec<Extra>,
    /// `links`: (service, alias, origin).
    links: Vec<(String, String, Origin)>,
    /// `network_mode: service:X|container:X`: the container whose
    /// namespace is shared, once resolved.
    shares: Option<(String, Origin)>,
}

fn replicas(ctx: &Ctx, n: &Node, key: &str) -> Result<u32, ComposeError> {
    let parsed = match &n.val {
        Val::Int(i) => Some(*i),
        // Interpolated values are strings.
        Val::Str(t) => t.trim().parse().ok(),
        _ => None,
    };
    match parsed {
        Some(i) if (0..=64).contains(&i) => Ok(i as u32),
        _ => Err(ctx.err(
            n.line,
            n.col,
            key,
            format!(
                "expected a replica count 0..64, found {}",
                n.text().unwrap_or_else(|| n.kind().into())
            ),
        )),
    }
}

fn deploy(ctx: &mut Ctx, s: &mut Service, n: &Node, key: &str) -> Result<(), ComposeError> {
    for e in ctx.map(n, key)?.to_vec() {
        let k = format!("{key}.{}", e.key);
        match e.key.as_str() {
            "replicas" => s.replicas = Some((replicas(ctx, &e.value, &k)?, e.line)),
            "mode" if ctx.text(&e.value, &k)? == "replicated" => {}
            _ => ctx.note(e.line, &k, "not translated (only deploy.replicas is)"),
        }
    }
    Ok(())
}

fn attachment(ctx: &mut Ctx, e: &Entry, key: &str) -> Result<Attach, ComposeError> {
    let mut a = Attach {
        key: e.key.clone(),
        line: e.line,
        col: e.col,
        ..Attach::default()
    };
    for f in ctx.map(&e.value, key)?.to_vec() {
        let k = format!("{key}.{}", f.key);
        match f.key.as_str() {
            "aliases" => {
                for (i, al) in ctx.list(&f.value, &k)?.iter().enumerate() {
                    a.aliases.push(ctx.text(al, &format!("{k}[{i}]"))?);
                }
            }
            "ipv4_address" => a.ip = Some(ctx.ip(&f.value, &k)?.to_string()),
            "ipv6_address" => a.ip6 = Some(ctx.ip(&f.value, &k)?.to_string()),
            "mac_address" => a.mac = Some(ctx.text(&f.value, &k)?),
            "priority" | "gw_priority" | "link_local_ips" | "driver_opts" | "interface_name" => {
                ctx.note(f.line, &k, "not in the scenario format")
            }
            _ => return Err(ctx.err(f.line, f.col, &k, "unknown key of a service's network")),
        }
    }
    Ok(a)
}

fn networks(ctx: &mut Ctx, s: &mut Service, n: &Node, key: &str) -> Result<(), ComposeError> {
    match &n.val {
        Val::Seq(items) => {
            for (i, it) in items.iter().enumerate() {
                let name = ctx.text(it, &format!("{key}[{i}]"))?;
                s.attach.push(Attach {
                    key: name,
                    line: it.line,
                    col: it.col,
                    ..Attach::default()
                });
            }
        }
        Val::Map(m) => {
            for e in m {
                let a = attachment(ctx, e, &format!("{key}.{}", e.key))?;
                s.attach.push(a);
            }
        }
        _ => {
            return Err(ctx.err(
                n.line,
                n.col,
                key,
                format!("expected a list or mapping of networks, found {}", n.kind()),
            ));
        }
    }
    Ok(())
}

fn read_service(ctx: &mut Ctx, e: &Entry) -> Result<Service, ComposeError> {
    let base = format!("services.{}", e.key);
    let mut s = Service {
        name: e.key.clone(),
        line: e.line,
        col: e.col,
        ..Service::default()
    };
    // Keys without effect on networking: one note per service.
    let mut idle: Vec<(usize, String)> = Vec::new();
    for f in ctx.map(&e.value, &base)?.to_vec() {
        let k = format!("{base}.{}", f.key);
        match f.key.as_str() {
            "networks" => networks(ctx, &mut s, &f.value, &k)?,
            // Honoured by `translate`.
            "profiles" => {}
            "network_mode" => s.mode = Some((ctx.text(&f.value, &k)?, f.line, f.col)),
            "ports" => {
                s.ports = ports::ports(ctx, &f.value, &k)?;
                s.ports_at = Some(Origin::new(f.line, f.col, k.clone()));
            }
            "expose" => s.serve.extend(ports::expose(ctx, &f.value, &k)?),
            "dns" => {
                s.dns_at = Some(Origin::new(f.line, f.col, k.clone()));
                let items = match &f.value.val {
                    Val::Seq(v) => v.clone(),
                    _ => vec![f.value.clone()],
                };
                for (i, d) in items.iter().enumerate() {
                    s.dns.push(ctx.ip(d, &format!("{k}[{i}]"))?.to_string());
                }
            }
            "deploy" => deploy(ctx, &mut s, &f.value, &k)?,
            "scale" => s.replicas = Some((replicas(ctx, &f.value, &k)?, f.line)),
            "container_name" => s.container_name = Some(ctx.text(&f.value, &k)?),
            "mac_address" => s.mac = Some(ctx.text(&f.value, &k)?),
            _ if run_opts::read(ctx, &f, &k, &mut s.extra, &mut s.links)? => {}
            other if other.starts_with("x-") => {
                ctx.note(f.line, &k, "extension field not translated")
            }
            other if NOTED.contains(&other) => idle.push((f.line, f.key.clone())),
            _ => {
                return Err(ctx.err(
                    f.line,
                    f.col,
                    &k,
                    "unknown service key (see the Compose specification)",
                ));
            }
        }
    }
    if let Some((line, _)) = idle.first() {
        let keys: Vec<&str> = idle.iter().map(|(_, k)| k.as_str()).collect();
        let key = format!("{base}.{{{}}}", keys.join(", "));
        ctx.note(*line, &key, "no effect on networking: not translated");
    }
    for p in &s.ports {
        s.serve.insert((p.proto.clone(), p.target));
    }
    Ok(s)
}

/// Adds an implicit network (`default`, `host`, `none`, `bridge`) once.
fn ensure(ctx: &mut Ctx, key: &str, fields: &[(&str, &str)]) {
    if ctx.networks.iter().any(|n| n.key == key) {
        return;
    }
    // The network Compose makes for services without `networks` is
    // `<project>_default`: Docker refuses to create one named `default`
    // (a predefined network mode).
    let name = match key {
        "default" => format!("{}_default", ctx.project),
        k => k.to_string(),
    };
    let mut f = vec![("name".to_string(), q(&name))];
    f.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ctx.networks.push(NetOut {
        key: key.to_string(),
        name,
        fields: f,
        origin: None,
    });
}

/// The attachments of `s` after `network_mode` and the default network
/// (none when it shares another container's namespace: `s.shares`).
fn resolve(ctx: &mut Ctx, s: &mut Service) -> Result<Option<Vec<Attach>>, ComposeError> {
    let base = format!("services.{}", s.name);
    if let Some((mode, line, col)) = &s.mode {
        let k = format!("{base}.network_mode");
        if !s.attach.is_empty() {
            return Err(ctx.err(
                *line,
                *col,
                &k,
                "network_mode cannot be combined with networks",
            ));
        }
        let (key, fields): (&str, &[(&str, &str)]) = match mode.as_str() {
            "host" => ("host", &[("driver", "\"host\"")]),
            "none" => ("none", &[("driver", "\"none\"")]),
            "bridge" => ("bridge", &[("default", "true")]),
            m if m.starts_with("service:") || m.starts_with("container:") => {
                // NH-7: the first container of that service, or that
                // container, translated above this one.
                let (svc, other) = m.split_once(':').unwrap_or_default();
                let found = ctx
                    .containers
                    .iter()
                    .find(|c| {
                        if svc == "service" {
                            c.service == other
                        } else {
                            c.name == other
                        }
                    })
                    .map(|c| c.name.clone());
                let Some(name) = found else {
                    ctx.note(*line, &k, &format!("network_mode {mode:?}: no such {svc} above service {} in the file: not translated", s.name));
                    return Ok(None);
                };
                s.shares = Some((name, Origin::new(*line, *col, k)));
                return Ok(Some(Vec::new()));
            }
            _ => {
                ctx.note(*line, &k, &format!("network_mode {mode:?} is not a Docker network mode: service {} not translated", s.name));
                return Ok(None);
            }
        };
        ensure(ctx, key, fields);
        return Ok(Some(vec![Attach {
            key: key.into(),
            ..Attach::default()
        }]));
    }
    if s.attach.is_empty() {
        ensure(ctx, "default", &[]);
        return Ok(Some(vec![Attach {
            key: "default".into(),
            ..Attach::default()
        }]));
    }
    for a in &s.attach {
        if !ctx.networks.iter().any(|n| n.key == a.key) {
            if a.key == "default" {
                ensure(ctx, "default", &[]);
                continue;
            }
            return Err(ctx.err(
                a.line,
                a.col,
                &format!("{base}.networks"),
                format!("service {} refers to undefined network {:?}", s.name, a.key),
            ));
        }
    }
    Ok(Some(s.attach.clone()))
}

/// One `networks` entry of a container.
fn endpoint(ctx: &Ctx, a: &Attach, alias: Option<&str>, statics: bool) -> String {
    let name = ctx
        .networks
        .iter()
        .find(|n| n.key == a.key)
        .map_or(a.key.clone(), |n| n.name.clone());
    let mut aliases = a.aliases.clone();
    if let Some(al) = alias
        && !aliases.iter().any(|x| x == al)
    {
        aliases.insert(0, al.to_string());
    }
    let mut parts = vec![format!("name = {}", q(&name))];
    if statics {
        if let Some(ip) = &a.ip {
            parts.push(format!("ip = {}", q(ip)));
        }
        if let Some(ip6) = &a.ip6 {
            parts.push(format!("ip6 = {}", q(ip6)));
        }
        if let Some(mac) = &a.mac {
            parts.push(format!("mac = {}", q(mac)));
        }
    }
    if !aliases.is_empty() {
        parts.push(format!("aliases = {}", q_list(&aliases)));
    }
    if parts.len() == 1 {
        q(&name)
    } else {
        format!("{{ {} }}", parts.join(", "))
    }
}

fn containers(ctx: &mut Ctx, s: &Service, attach: &mut [Attach]) -> Result<(), ComposeError> {
    let base = format!("services.{}", s.name);
    let (n, line) = s.replicas.unwrap_or((1, s.line));
    if let Some(mac) = &s.mac
        && let Some(first) = attach.first_mut()
        && first.mac.is_none()
    {
        first.mac = Some(mac.clone());
    }
    if n == 0 {
        ctx.note(line, &base, "0 replicas: no container");
        return Ok(());
    }
    if n > 1 && s.container_name.is_some() {
        return Err(ctx.err(
            line,
            1,
            &format!("{base}.container_name"),
            "container_name cannot be set on a service with more than one replica",
        ));
    }
    let statics = attach
        .iter()
        .any(|a| a.ip.is_some() || a.ip6.is_some() || a.mac.is_some());
    if n > 1 && statics {
        ctx.note(
            line,
            &base,
            "static addresses/MACs are not given to the replicas of a service (they would clash)",
        );
    }
    let publish: Vec<String> = s.ports.iter().filter_map(Port::publish).collect();
    if n > 1 && !publish.is_empty() {
        ctx.note(
            line,
            &format!("{base}.ports"),
            "published only by the first replica (each host port once)",
        );
    }
    let (links, links_at) = links(ctx, s, attach);
    for i in 1..=n {
        let name = match (&s.container_name, n) {
            (Some(c), _) => c.clone(),
            (None, 1) => s.name.clone(),
            (None, _) => format!("{}-{i}", s.name),
        };
        let alias = (name != s.name).then_some(s.name.as_str());
        let networks = attach
            .iter()
            .map(|a| endpoint(ctx, a, alias, n == 1))
            .collect();
        let service_at = Origin::new(s.line, s.col, base.clone());
        let net_origins = attach
            .iter()
            .map(|a| {
                if a.line == 0 {
                    service_at.clone()
                } else {
                    Origin::new(a.line, a.col, format!("{base}.networks.{}", a.key))
                }
            })
            .collect();
        let mut extra = s.extra.clone();
        if let Some((other, at)) = &s.shares {
            extra.push((
                "network_mode".into(),
                q(&format!("container:{other}")),
                at.clone(),
            ));
        }
        if !links.is_empty() {
            let v: Vec<String> = links.iter().map(|(c, a)| format!("{c}:{a}")).collect();
            extra.push(("links".into(), q_list(&v), links_at.clone()));
        }
        ctx.containers.push(ContOut {
            extra,
            name,
            service: s.name.clone(),
            networks,
            publish: if i == 1 { publish.clone() } else { Vec::new() },
            serve: s.serve.clone(),
            dns: s.dns.clone(),
            origin: service_at,
            net_origins,
            ports_origin: s.ports_at.clone(),
            dns_origin: s.dns_at.clone(),
        });
    }
    Ok(())
}

/// `links` (BR-20) as `container:alias` pairs: to the first container of
/// each linked service above this one, on the default bridge only (on a
/// user-defined network the service name resolves through DNS already).
fn links(ctx: &mut Ctx, s: &Service, attach: &[Attach]) -> (Vec<(String, String)>, Origin) {
    let mut out = Vec::new();
    let at = s
        .links
        .first()
        .map(|(_, _, o)| o.clone())
        .unwrap_or_default();
    let on_default = attach.iter().any(|a| a.key == "bridge");
    for (svc, alias, o) in &s.links {
        if !on_default {
            ctx.note(o.line, &o.key, &format!("link to {svc}: links are translated on the default bridge only (network_mode: bridge); on a compose network {svc} resolves by name"));
            continue;
        }
        match ctx
            .containers
            .iter()
            .find(|c| c.service == *svc || c.name == *svc)
        {
            Some(c) => out.push((c.name.clone(), alias.clone())),
            None => ctx.note(
                o.line,
                &o.key,
                &format!("link to {svc}: no such service above this one: not translated"),
            ),
        }
    }
    (out, at)
}

/// Every service, in file order.
pub(crate) fn translate(ctx: &mut Ctx, services: &Entry) -> Result<(), ComposeError> {
    for e in ctx.map(&services.value, "services")?.to_vec() {
        if let Some(p) = e.value.get("profiles") {
            let key = format!("services.{}.profiles", e.key);
            let mut names = Vec::new();
            for (i, n) in ctx.list(p, &key)?.iter().enumerate() {
                names.push(ctx.text(n, &format!("{key}[{i}]"))?);
            }
            if !names
                .iter()
                .any(|n| ctx.profiles.contains(n) || ctx.profiles.iter().any(|a| a == "*"))
            {
                let why = format!(
                    "only started with profile {} (COMPOSE_PROFILES): service {} not translated",
                    names.join(" or "),
                    e.key
                );
                ctx.note(e.line, &key, &why);
                continue;
            }
        }
        let mut s = read_service(ctx, &e)?;
        let Some(mut attach) = resolve(ctx, &mut s)? else {
            continue;
        };
        containers(ctx, &s, &mut attach)?;
    }
    Ok(())
}
