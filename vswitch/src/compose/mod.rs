//! `vswitch import FILE.yml`: a Compose file (the Compose specification's
//! networking part) translated into a scenario in the TOML format.
//!
//! Networks keep their driver (`bridge`, `macvlan`, `ipvlan`, `overlay`,
//! `host`, `none`), `internal`, `enable_ipv6`, `ipam.config` and the driver
//! options the scenario format has (`mtu`, `parent`, `macvlan_mode`,
//! `ipvlan_mode`, `ipvlan_flag`, the bridge's `enable_icc` and
//! `enable_ip_masquerade`). Each service becomes a container named after it
//! (`deploy.replicas`/`scale` N > 1: `NAME-1` … `NAME-N`, all answering to
//! the service name as a DNS alias), with its networks (aliases, static
//! addresses, MACs), `network_mode` `host`/`none`/`bridge` and
//! `service:X`/`container:X` (a shared namespace), published ports (short
//! and long syntax, ranges, host ports Docker chooses), `hostname`,
//! `dns_search`, `dns_opt`, `extra_hosts`, `links` (on the default bridge),
//! and a TCP/UDP echo service on every exposed or published container port. Everything else is listed — as comments at the
//! top of the output, and by the caller on standard error — never dropped
//! silently. Invalid YAML and Compose errors name file, line, column and key.

mod checks;
mod interpolate;
mod ports;
mod run_opts;
mod services;
mod yaml;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use yaml::{Entry, Node, Val};

/// A Compose file that cannot be translated, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {key}: {message}", file.display())]
pub struct ComposeError {
    /// The compose file.
    pub file: PathBuf,
    /// 1-based line (0 when the file could not be read).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Offending key, e.g. `services.web.ports[1]`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// The translation of one Compose file.
#[derive(Clone, Debug)]
pub struct Imported {
    /// Scenario text (format 1.1), the notes as comments at its top.
    pub toml: String,
    /// What was not translated, one line each (`KEY (line N): why`).
    pub notes: Vec<String>,
    /// Each translated service and the containers it became.
    pub services: Vec<(String, Vec<String>)>,
    /// Scenario field prefix (`container[2].networks[0]`) → Compose origin.
    pub origins: Vec<(String, Origin)>,
}

impl Imported {
    /// Where the scenario field `field` (as a scenario error names it) came
    /// from in the Compose file: the longest known prefix.
    pub fn origin_of(&self, field: &str) -> Option<&Origin> {
        self.origins
            .iter()
            .filter(|(p, _)| {
                field == p
                    || field
                        .strip_prefix(p.as_str())
                        .is_some_and(|r| r.starts_with('.') || r.starts_with('['))
            })
            .max_by_key(|(p, _)| p.len())
            .map(|(_, o)| o)
    }
}

fn origins(ctx: &Ctx) -> Vec<(String, Origin)> {
    let mut v = Vec::new();
    for (i, n) in ctx.networks.iter().enumerate() {
        if let Some(o) = &n.origin {
            v.push((format!("network[{i}]"), o.clone()));
        }
    }
    for (i, c) in ctx.containers.iter().enumerate() {
        v.push((format!("container[{i}]"), c.origin.clone()));
        for (j, o) in c.net_origins.iter().enumerate() {
            v.push((format!("container[{i}].networks[{j}]"), o.clone()));
        }
        if let Some(o) = &c.ports_origin {
            v.push((format!("container[{i}].publish"), o.clone()));
            v.push((format!("container[{i}].serve"), o.clone()));
        }
        if let Some(o) = &c.dns_origin {
            v.push((format!("container[{i}].dns"), o.clone()));
        }
        for (k, _, o) in &c.extra {
            v.push((format!("container[{i}].{k}"), o.clone()));
        }
    }
    v
}

/// True for `.yml` / `.yaml` files: those are read as Compose files.
pub fn is_compose_path(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"))
}

/// Reads and translates a Compose file (`-`: standard input).
pub fn import_file(path: &Path) -> Result<Imported, ComposeError> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    };
    match text {
        Ok(t) => import_str(path, &t),
        Err(e) => Err(ComposeError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: "file".into(),
            message: format!("cannot read compose file: {e}"),
        }),
    }
}

/// Where in the Compose file something of the scenario came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Compose key, e.g. `services.web.networks.front`.
    pub key: String,
}

impl Origin {
    pub(crate) fn new(line: usize, column: usize, key: impl Into<String>) -> Origin {
        Origin {
            line,
            column,
            key: key.into(),
        }
    }
}

/// A network of the scenario being written.
#[derive(Clone, Debug, Default)]
pub(crate) struct NetOut {
    /// The name services refer to it by (the compose key).
    pub key: String,
    /// Its name in the scenario (`name:` or the key).
    pub name: String,
    /// `key = value` lines (values already TOML), `name` first.
    pub fields: Vec<(String, String)>,
    /// Its `networks.KEY` entry (None: implicit).
    pub origin: Option<Origin>,
}

/// A container of the scenario being written.
#[derive(Clone, Debug, Default)]
pub(crate) struct ContOut {
    pub name: String,
    /// The service it is (a replica of).
    pub service: String,
    /// The service's entry.
    pub origin: Origin,
    /// Per entry of `networks`: where the service attached it.
    pub net_origins: Vec<Origin>,
    /// The service's `ports`, `dns`.
    pub ports_origin: Option<Origin>,
    pub dns_origin: Option<Origin>,
    /// TOML values of `networks` (strings or inline tables).
    pub networks: Vec<String>,
    pub publish: Vec<String>,
    pub serve: BTreeSet<(String, u16)>,
    pub dns: Vec<String>,
    /// Further scenario keys (hostname, dns_search, dns_opt, extra_hosts,
    /// links, network_mode) with their TOML values and origins.
    pub extra: Vec<(String, String, Origin)>,
}

/// Translation state: the file, the notes, what has been written.
pub(crate) struct Ctx<'a> {
    pub file: &'a Path,
    /// (line, text) of what was not translated.
    pub notes: Vec<(usize, String)>,
    pub networks: Vec<NetOut>,
    pub containers: Vec<ContOut>,
    /// Active profiles (`COMPOSE_PROFILES`).
    pub profiles: Vec<String>,
    /// The project name: the top-level `name`, else `COMPOSE_PROJECT_NAME`,
    /// else the file's directory, as Compose takes it.
    pub project: String,
}

/// A TOML string.
pub(crate) fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A TOML array of strings.
pub(crate) fn q_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| q(s)).collect();
    format!("[{}]", items.join(", "))
}

impl Ctx<'_> {
    /// An error at `node` under `key`.
    pub fn err(
        &self,
        line: usize,
        col: usize,
        key: &str,
        message: impl Into<String>,
    ) -> ComposeError {
        ComposeError {
            file: self.file.to_path_buf(),
            line,
            column: col,
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// Records something not translated.
    pub fn note(&mut self, line: usize, key: &str, why: &str) {
        self.notes
            .push((line, format!("{key} (line {line}): {why}")));
    }

    /// A scalar as text, or an error naming what it is instead.
    pub fn text(&self, n: &Node, key: &str) -> Result<String, ComposeError> {
        n.text().ok_or_else(|| {
            self.err(
                n.line,
                n.col,
                key,
                format!("expected a string, found {}", n.kind()),
            )
        })
    }

    /// A boolean (`true`/`false`, also as strings as Compose allows).
    pub fn boolean(&self, n: &Node, key: &str) -> Result<bool, ComposeError> {
        match (&n.val, n.text().as_deref()) {
            (Val::Bool(b), _) => Ok(*b),
            (_, Some("true")) => Ok(true),
            (_, Some("false")) => Ok(false),
            _ => Err(self.err(
                n.line,
                n.col,
                key,
                format!("expected true or false, found {}", n.kind()),
            )),
        }
    }

    /// A mapping's entries, or an error.
    pub fn map<'n>(&self, n: &'n Node, key: &str) -> Result<&'n [Entry], ComposeError> {
        match &n.val {
            Val::Map(m) => Ok(m),
            Val::Null => Ok(&[]),
            _ => Err(self.err(
                n.line,
                n.col,
                key,
                format!("expected a mapping, found {}", n.kind()),
            )),
        }
    }

    /// A list's items, or an error.
    pub fn list<'n>(&self, n: &'n Node, key: &str) -> Result<&'n [Node], ComposeError> {
        match &n.val {
            Val::Seq(v) => Ok(v),
            Val::Null => Ok(&[]),
            _ => Err(self.err(
                n.line,
                n.col,
                key,
                format!("expected a list, found {}", n.kind()),
            )),
        }
    }

    /// An IP address.
    pub fn ip(&self, n: &Node, key: &str) -> Result<IpAddr, ComposeError> {
        let t = self.text(n, key)?;
        t.parse()
            .map_err(|_| self.err(n.line, n.col, key, format!("invalid IP address {t:?}")))
    }

    /// A CIDR subnet.
    pub fn cidr(&self, n: &Node, key: &str) -> Result<IpNet, ComposeError> {
        let t = self.text(n, key)?;
        t.parse().map_err(|_| {
            self.err(
                n.line,
                n.col,
                key,
                format!("invalid subnet {t:?} (expected CIDR, e.g. 172.28.0.0/16)"),
            )
        })
    }
}

const NETWORK_NOTED: &[(&str, &str)] = &[
    (
        "attachable",
        "attachable has no meaning without Swarm services here",
    ),
    ("labels", "labels have no effect on networking"),
    (
        "enable_ipv4",
        "enable_ipv4 is not in the scenario format (IPv4 is always on)",
    ),
    (
        "external",
        "an external network is created here like any other",
    ),
];

fn driver_opt(ctx: &mut Ctx, net: &mut NetOut, e: &Entry, key: &str) -> Result<(), ComposeError> {
    let v = ctx.text(&e.value, key)?;
    let field = match e.key.as_str() {
        "com.docker.network.driver.mtu" | "mtu" => {
            let mtu: u16 = v.parse().map_err(|_| {
                ctx.err(e.value.line, e.value.col, key, format!("invalid MTU {v:?}"))
            })?;
            Some(("mtu", mtu.to_string()))
        }
        "parent" => Some(("parent", q(&v))),
        "macvlan_mode" | "ipvlan_mode" => Some(("mode", q(&v))),
        "ipvlan_flag" => Some(("flag", q(&v))),
        "com.docker.network.bridge.enable_icc" => {
            Some(("icc", ctx.boolean(&e.value, key)?.to_string()))
        }
        "com.docker.network.bridge.enable_ip_masquerade" => {
            Some(("masquerade", ctx.boolean(&e.value, key)?.to_string()))
        }
        _ => None,
    };
    match field {
        Some((k, val)) => net.fields.push((k.into(), val)),
        None => ctx.note(e.line, key, "driver option not in the scenario format"),
    }
    Ok(())
}

fn ipam(ctx: &mut Ctx, net: &mut NetOut, n: &Node, key: &str) -> Result<(), ComposeError> {
    let mut v4: Vec<String> = Vec::new();
    let mut out = NetOut::default();
    for e in ctx.map(n, key)? {
        let k = format!("{key}.{}", e.key);
        match e.key.as_str() {
            "driver" => {
                let d = ctx.text(&e.value, &k)?;
                if d != "default" {
                    ctx.note(
                        e.line,
                        &k,
                        &format!("IPAM driver {d:?} not translated; the default IPAM allocates"),
                    );
                }
            }
            "options" => ctx.note(e.line, &k, "IPAM driver options not translated"),
            "config" => {
                for (i, c) in ctx.list(&e.value, &k)?.iter().enumerate() {
                    let ck = format!("{k}[{i}]");
                    ipam_config(ctx, &mut out, c, &ck, &mut v4)?;
                }
            }
            _ => return Err(ctx.err(e.line, e.col, &k, "unknown IPAM key")),
        }
    }
    match v4.len() {
        0 => {}
        1 => net.fields.push(("subnet".into(), q(&v4[0]))),
        _ => net.fields.push(("subnet".into(), q_list(&v4))),
    }
    net.fields.append(&mut out.fields);
    Ok(())
}

fn ipam_config(
    ctx: &mut Ctx,
    net: &mut NetOut,
    c: &Node,
    key: &str,
    v4: &mut Vec<String>,
) -> Result<(), ComposeError> {
    let subnet = match c.get("subnet") {
        Some(s) => Some(ctx.cidr(s, &format!("{key}.subnet"))?),
        None => None,
    };
    let six = subnet.is_some_and(|s| matches!(s, IpNet::V6(_)));
    if let Some(s) = subnet {
        if six {
            net.fields.push(("subnet6".into(), q(&s.to_string())));
        } else {
            v4.push(s.to_string());
        }
    }
    let first_v4 = !six && v4.len() <= 1;
    for e in ctx.map(c, key)? {
        let k = format!("{key}.{}", e.key);
        match e.key.as_str() {
            "subnet" => {}
            "gateway" => {
                let g = ctx.ip(&e.value, &k)?;
                match (six, first_v4) {
                    (true, _) => net.fields.push(("gateway6".into(), q(&g.to_string()))),
                    (false, true) => net.fields.push(("gateway".into(), q(&g.to_string()))),
                    (false, false) => ctx.note(
                        e.line,
                        &k,
                        "the scenario format has one IPv4 gateway per network: the first subnet's",
                    ),
                }
            }
            "ip_range" => {
                let r = ctx.cidr(&e.value, &k)?;
                if first_v4 && !six {
                    net.fields.push(("ip_range".into(), q(&r.to_string())));
                } else {
                    ctx.note(
                        e.line,
                        &k,
                        "the scenario format has one ip_range per network: the first IPv4 subnet's",
                    );
                }
            }
            "aux_addresses" => {
                let mut items = Vec::new();
                for a in ctx.map(&e.value, &k)? {
                    let ip = ctx.ip(&a.value, &format!("{k}.{}", a.key))?;
                    items.push(format!("{} = {}", q(&a.key), q(&ip.to_string())));
                }
                net.fields.push((
                    "aux_addresses".into(),
                    format!("{{ {} }}", items.join(", ")),
                ));
            }
            _ => return Err(ctx.err(e.line, e.col, &k, "unknown IPAM config key")),
        }
    }
    Ok(())
}

/// One top-level network.
fn network(ctx: &mut Ctx, e: &Entry) -> Result<NetOut, ComposeError> {
    let base = format!("networks.{}", e.key);
    let mut net = NetOut {
        key: e.key.clone(),
        name: String::new(),
        fields: Vec::new(),
        origin: Some(Origin::new(e.line, e.col, base.clone())),
    };
    let mut name = e.key.clone();
    let entries = ctx.map(&e.value, &base)?.to_vec();
    let mut driver = "bridge".to_string();
    for f in &entries {
        let k = format!("{base}.{}", f.key);
        match f.key.as_str() {
            "name" => name = ctx.text(&f.value, &k)?,
            "driver" => {
                let d = ctx.text(&f.value, &k)?;
                if ["bridge", "macvlan", "ipvlan", "overlay", "host", "none"].contains(&d.as_str())
                {
                    driver = d;
                } else {
                    ctx.note(
                        f.line,
                        &k,
                        &format!(
                            "driver {d:?} is not one the scenario format has: built as bridge"
                        ),
                    );
                }
            }
            "internal" => net
                .fields
                .push(("internal".into(), ctx.boolean(&f.value, &k)?.to_string())),
            "enable_ipv6" => net
                .fields
                .push(("ipv6".into(), ctx.boolean(&f.value, &k)?.to_string())),
            "ipam" => ipam(ctx, &mut net, &f.value, &k)?,
            "driver_opts" => {
                for o in ctx.map(&f.value, &k)?.to_vec() {
                    driver_opt(ctx, &mut net, &o, &format!("{k}.{}", o.key))?;
                }
            }
            other if other.starts_with("x-") => {
                ctx.note(f.line, &k, "extension field not translated")
            }
            other => match NETWORK_NOTED.iter().find(|(n, _)| *n == other) {
                Some((_, why)) => ctx.note(f.line, &k, why),
                None => {
                    return Err(ctx.err(
                        f.line,
                        f.col,
                        &k,
                        "unknown network key (see the Compose specification)",
                    ));
                }
            },
        }
    }
    net.fields.insert(0, ("name".into(), q(&name)));
    net.name = name;
    if driver != "bridge" {
        net.fields.insert(1, ("driver".into(), q(&driver)));
    }
    Ok(net)
}

const TOP_NOTED: &[(&str, &str)] = &[
    ("version", "obsolete in the Compose specification"),
    ("volumes", "volumes have no effect on networking"),
    ("configs", "configs have no effect on networking"),
    ("secrets", "secrets have no effect on networking"),
    ("include", "included files are not read"),
    ("models", "models have no effect on networking"),
];

fn write_scenario(ctx: &Ctx, title: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Translated from {} by `vswitch import` (Compose specification).",
        ctx.file.display()
    );
    if ctx.notes.is_empty() {
        o.push_str("# Everything in it was translated.\n");
    } else {
        o.push_str("# Not translated:\n");
        for (_, n) in &ctx.notes {
            let _ = writeln!(o, "#   {n}");
        }
    }
    let _ = writeln!(o, "\nname = {}", q(title));
    let _ = writeln!(
        o,
        "description = {}",
        q(&format!("Imported from {}", ctx.file.display()))
    );
    o.push_str("tags = [\"compose\"]\n");
    for n in &ctx.networks {
        o.push_str("\n[[network]]\n");
        for (k, v) in &n.fields {
            let _ = writeln!(o, "{k} = {v}");
        }
    }
    for c in &ctx.containers {
        o.push_str("\n[[container]]\n");
        let _ = writeln!(o, "name = {}", q(&c.name));
        if !c.networks.is_empty() {
            let _ = writeln!(o, "networks = [{}]", c.networks.join(", "));
        }
        for (k, v, _) in &c.extra {
            let _ = writeln!(o, "{k} = {v}");
        }
        if !c.publish.is_empty() {
            let _ = writeln!(o, "publish = {}", q_list(&c.publish));
        }
        if !c.serve.is_empty() {
            let s: Vec<String> = c.serve.iter().map(|(p, n)| format!("{p}:{n}")).collect();
            let _ = writeln!(o, "serve = {}", q_list(&s));
        }
        if !c.dns.is_empty() {
            let _ = writeln!(o, "dns = {}", q_list(&c.dns));
        }
    }
    o
}

/// Services in order, with their containers.
fn grouped(containers: &[ContOut]) -> Vec<(String, Vec<String>)> {
    let mut v: Vec<(String, Vec<String>)> = Vec::new();
    for c in containers {
        match v.iter_mut().find(|(s, _)| *s == c.service) {
            Some((_, names)) => names.push(c.name.clone()),
            None => v.push((c.service.clone(), vec![c.name.clone()])),
        }
    }
    v
}

pub use checks::discovery_checks;

/// Translates Compose text; `file` names it in messages. Variables are
/// interpolated from the environment.
pub fn import_str(file: &Path, text: &str) -> Result<Imported, ComposeError> {
    import_with_env(file, text, &|name| std::env::var(name).ok())
}

/// [`import_str`] with variables looked up by `env`.
pub fn import_with_env(
    file: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Imported, ComposeError> {
    let mut ctx = Ctx {
        file,
        notes: Vec::new(),
        networks: Vec::new(),
        containers: Vec::new(),
        profiles: env("COMPOSE_PROFILES")
            .unwrap_or_default()
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        project: project_name(env("COMPOSE_PROJECT_NAME").as_deref(), file),
    };
    let mut root = yaml::parse(text).map_err(|e| ctx.err(e.line, e.col, "yaml", e.message))?;
    let mut unset = Vec::new();
    interpolate::interpolate(&mut root, env, &mut unset)
        .map_err(|e| ctx.err(e.line, e.col, "interpolation", e.message))?;
    for (line, name) in unset {
        ctx.note(
            line,
            &format!("${name}"),
            "variable is not set: an empty string was substituted",
        );
    }
    let top = match &root.val {
        Val::Map(m) => m.clone(),
        _ => {
            return Err(ctx.err(
                root.line,
                root.col,
                "compose",
                format!("a compose file is a mapping, this is {}", root.kind()),
            ));
        }
    };
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "compose".into());
    let mut title = format!("compose: {stem}");
    let mut services = None;
    for e in &top {
        match e.key.as_str() {
            "name" => {
                let name = ctx.text(&e.value, "name")?;
                ctx.project = normalize_project(&name);
                title = format!("compose: {name}");
            }
            "services" => services = Some(e.clone()),
            "networks" => {
                for n in ctx.map(&e.value, "networks")?.to_vec() {
                    let net = network(&mut ctx, &n)?;
                    ctx.networks.push(net);
                }
            }
            k if k.starts_with("x-") => ctx.note(e.line, k, "extension field not translated"),
            k => match TOP_NOTED.iter().find(|(n, _)| *n == k) {
                Some((_, why)) => ctx.note(e.line, k, why),
                None => {
                    return Err(ctx.err(
                        e.line,
                        e.col,
                        k,
                        "unknown top-level key (see the Compose specification)",
                    ));
                }
            },
        }
    }
    let Some(services) = services else {
        return Err(ctx.err(
            root.line,
            root.col,
            "services",
            "a compose file needs `services`",
        ));
    };
    services::translate(&mut ctx, &services)?;
    ctx.notes.sort_by_key(|(line, _)| *line);
    let toml = write_scenario(&ctx, &title);
    let origins = origins(&ctx);
    Ok(Imported {
        toml,
        notes: ctx.notes.into_iter().map(|(_, n)| n).collect(),
        services: grouped(&ctx.containers),
        origins,
    })
}

/// Compose's project name when the file does not give one: the environment's
/// `COMPOSE_PROJECT_NAME`, else the basename of the file's directory.
fn project_name(from_env: Option<&str>, file: &Path) -> String {
    let parent = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir = std::fs::canonicalize(parent)
        .ok()
        .and_then(|d| d.file_name().map(|d| d.to_string_lossy().into_owned()));
    let name = from_env
        .map(str::to_string)
        .or(dir)
        .unwrap_or_else(|| "compose".into());
    normalize_project(&name)
}

/// A project name as Compose normalises it: lower case, only `a-z`, `0-9`,
/// `_` and `-` kept, starting with a letter or digit.
fn normalize_project(name: &str) -> String {
    let n: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    let n = n.trim_start_matches(['_', '-']).to_string();
    if n.is_empty() { "compose".into() } else { n }
}

#[cfg(test)]
mod tests;
