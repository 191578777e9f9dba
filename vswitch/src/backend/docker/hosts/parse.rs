//! The mapping's inputs: `--docker-host MACHINE=URL,...`, the docker CLI's
//! TLS options (`--tlsverify`, `--tlscacert`, `--tlscert`, `--tlskey`,
//! `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`) and the side file of
//! `--docker-hosts FILE`:
//!
//! ```toml
//! [docker_hosts]
//! m1 = "unix:///run/a.sock"
//! m2 = { host = "tcp://10.1.2.3:2376", tlsverify = true, tlscacert = "ca.pem" }
//! ```
//!
//! A side-file entry with any `tls*` key has its own TLS settings (paths
//! relative to the file); one without them takes the command line's.
//! Problems name the file, line, column and field like scenario errors.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::super::api::TlsFiles;
use crate::scenario::ScenarioError;
use crate::scenario::span::line_col;

/// One machine mapped to a daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The scenario machine.
    pub machine: String,
    /// `unix:///path` or `tcp://host:port`.
    pub url: String,
    /// TLS settings (`tcp://` only); `None`: plain.
    pub tls: Option<TlsFiles>,
    /// Where it was given: `--docker-host` or `FILE:LINE:COLUMN`.
    pub origin: String,
}

/// The docker CLI's TLS options, as given on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// `--tlsverify` (or `DOCKER_TLS_VERIFY` set and not empty).
    pub verify: bool,
    /// `--tlscacert`.
    pub cacert: Option<PathBuf>,
    /// `--tlscert`.
    pub cert: Option<PathBuf>,
    /// `--tlskey`.
    pub key: Option<PathBuf>,
}

/// Where the docker CLI looks for `ca.pem`, `cert.pem`, `key.pem`:
/// `$DOCKER_CERT_PATH`, else `~/.docker`.
pub fn cert_dir() -> PathBuf {
    match std::env::var_os("DOCKER_CERT_PATH") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".docker"),
    }
}

/// The TLS files of `ca`, `cert`, `key` (each `None`: its default in `dir`).
/// The client pair is used when either is given, or both defaults exist.
fn files(dir: &Path, ca: Option<PathBuf>, cert: Option<PathBuf>, key: Option<PathBuf>) -> TlsFiles {
    let explicit = cert.is_some() || key.is_some();
    let cert = cert.unwrap_or_else(|| dir.join("cert.pem"));
    let key = key.unwrap_or_else(|| dir.join("key.pem"));
    let client = (explicit || (cert.exists() && key.exists())).then_some((cert, key));
    TlsFiles {
        ca: ca.unwrap_or_else(|| dir.join("ca.pem")),
        client,
    }
}

impl TlsOptions {
    /// The files these options name, `None` without `--tlsverify`.
    pub fn files(&self, dir: &Path) -> Result<Option<TlsFiles>, String> {
        if !self.verify {
            let given = [
                ("--tlscacert", &self.cacert),
                ("--tlscert", &self.cert),
                ("--tlskey", &self.key),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, v)| v.is_some()) {
                return Err(format!(
                    "{flag} needs --tlsverify (or DOCKER_TLS_VERIFY): vswitch speaks TLS only with the daemon verified"
                ));
            }
            return Ok(None);
        }
        let f = files(
            dir,
            self.cacert.clone(),
            self.cert.clone(),
            self.key.clone(),
        );
        f.config().map_err(|e| format!("--tlsverify: {e}"))?;
        Ok(Some(f))
    }
}

/// Checks a URL: `unix:///absolute/path` or `tcp://host:port`.
pub fn check_url(url: &str) -> Result<(), String> {
    if let Some(p) = url.strip_prefix("unix://") {
        if !p.starts_with('/') {
            return Err(format!("`{url}`: unix://, then an absolute path"));
        }
        return Ok(());
    }
    let Some(addr) = url.strip_prefix("tcp://") else {
        return Err(format!(
            "`{url}` is neither unix:///path nor tcp://host:port"
        ));
    };
    let port = addr.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
    match port {
        Some((h, Ok(p))) if !h.is_empty() && p != 0 && !h.contains('/') => Ok(()),
        _ => Err(format!("`{url}`: tcp://, then host:port (port 1 to 65535)")),
    }
}

/// `--docker-host MACHINE=URL,...`; `tcp://` hosts get `tls`.
pub fn parse_cli(spec: &str, tls: &Option<TlsFiles>) -> Result<Vec<Host>, String> {
    let mut v: Vec<Host> = Vec::new();
    for item in spec.split(',').filter(|s| !s.trim().is_empty()) {
        let Some((m, url)) = item.split_once('=') else {
            return Err(format!(
                "--docker-host: `{item}` is not MACHINE=URL (unix:///path or tcp://host:port)"
            ));
        };
        let (m, url) = (m.trim(), url.trim());
        if m.is_empty() {
            return Err(format!("--docker-host: `{item}` names no machine"));
        }
        check_url(url).map_err(|e| format!("--docker-host: machine {m}: {e}"))?;
        if v.iter().any(|h| h.machine == m) {
            return Err(format!("--docker-host: machine {m} is mapped twice"));
        }
        v.push(Host {
            machine: m.to_string(),
            url: url.to_string(),
            tls: tls.clone().filter(|_| url.starts_with("tcp://")),
            origin: "--docker-host".into(),
        });
    }
    Ok(v)
}

/// Reads the side file `path`.
pub fn load_file(
    path: &Path,
    tls: &Option<TlsFiles>,
    dir: &Path,
) -> Result<Vec<Host>, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        field: "file".into(),
        message: format!("cannot read the docker hosts file: {e}"),
    })?;
    parse_file(path, &text, tls, dir)
}

const TLS_KEYS: [&str; 4] = ["tlsverify", "tlscacert", "tlscert", "tlskey"];

/// Parses side-file text; relative paths are taken from `path`'s directory,
/// defaults from `dir` (see [`cert_dir`]).
pub fn parse_file(
    path: &Path,
    text: &str,
    tls: &Option<TlsFiles>,
    dir: &Path,
) -> Result<Vec<Host>, ScenarioError> {
    let err = |span: Range<usize>, field: &str, message: String| {
        let (line, column) = line_col(text, span.start);
        ScenarioError {
            file: path.to_path_buf(),
            line,
            column,
            field: field.to_string(),
            message,
        }
    };
    let root = DeTable::parse(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        err(
            span,
            "toml",
            format!("invalid TOML: {}", e.message().trim()),
        )
    })?;
    for (k, _) in root.get_ref().iter() {
        if k.get_ref() != "docker_hosts" {
            return Err(err(
                k.span(),
                k.get_ref(),
                "unknown key: the file holds one table, [docker_hosts]".into(),
            ));
        }
    }
    let Some(table) = root.get_ref().get("docker_hosts") else {
        return Err(err(
            0..0,
            "docker_hosts",
            "missing table [docker_hosts] (MACHINE = \"URL\" lines)".into(),
        ));
    };
    let Some(entries) = table.get_ref().as_table() else {
        return Err(err(
            table.span(),
            "docker_hosts",
            format!("expected a table, found {}", table.get_ref().type_str()),
        ));
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut hosts = Vec::new();
    for (k, v) in entries.iter() {
        let machine = k.get_ref().to_string();
        let field = format!("docker_hosts.{machine}");
        let (line, column) = line_col(text, k.span().start);
        let origin = format!("{}:{line}:{column}", path.display());
        let (url, tls) = match v.get_ref() {
            DeValue::String(s) => {
                let url = s.to_string();
                check_url(&url).map_err(|e| err(v.span(), &field, e))?;
                let tls = tls.clone().filter(|_| url.starts_with("tcp://"));
                (url, tls)
            }
            DeValue::Table(t) => entry(t, v.span(), &field, base, dir, tls, &err)?,
            other => {
                return Err(err(
                    v.span(),
                    &field,
                    format!(
                        "expected \"URL\" or {{ host = \"URL\", tlsverify = ... }}, found {}",
                        other.type_str()
                    ),
                ));
            }
        };
        hosts.push(Host {
            machine,
            url,
            tls,
            origin,
        });
    }
    Ok(hosts)
}

type ErrAt<'a> = dyn Fn(Range<usize>, &str, String) -> ScenarioError + 'a;

/// One `{ host = ..., tlsverify = ..., ... }` entry.
fn entry(
    t: &DeTable<'_>,
    span: Range<usize>,
    field: &str,
    base: &Path,
    dir: &Path,
    tls: &Option<TlsFiles>,
    err: &ErrAt<'_>,
) -> Result<(String, Option<TlsFiles>), ScenarioError> {
    let mut url = None;
    let mut verify: Option<(bool, Range<usize>)> = None;
    let mut paths: [Option<(PathBuf, Range<usize>)>; 3] = [None, None, None];
    for (k, v) in t.iter() {
        let key = k.get_ref().as_ref();
        let f = format!("{field}.{key}");
        let want = |ty: &str| {
            err(
                v.span(),
                &f,
                format!("expected a {ty}, found {}", v.get_ref().type_str()),
            )
        };
        match key {
            "host" => {
                let s = v.get_ref().as_str().ok_or_else(|| want("string"))?;
                check_url(s).map_err(|e| err(v.span(), &f, e))?;
                url = Some(s.to_string());
            }
            "tlsverify" => {
                let b = v.get_ref().as_bool().ok_or_else(|| want("boolean"))?;
                verify = Some((b, k.span()));
            }
            "tlscacert" | "tlscert" | "tlskey" => {
                let s = v
                    .get_ref()
                    .as_str()
                    .ok_or_else(|| want("string (a path)"))?;
                let i = TLS_KEYS.iter().position(|x| *x == key).unwrap_or(1) - 1;
                paths[i] = Some((base.join(s), v.span()));
            }
            _ => {
                return Err(err(
                    k.span(),
                    &f,
                    "unknown key (host, tlsverify, tlscacert, tlscert, tlskey)".into(),
                ));
            }
        }
    }
    let Some(url) = url else {
        return Err(err(
            span,
            &format!("{field}.host"),
            "missing key `host` (unix:///path or tcp://host:port)".into(),
        ));
    };
    let first_path = paths
        .iter()
        .enumerate()
        .find_map(|(i, p)| Some((i, p.as_ref()?)));
    let own = verify.is_some() || first_path.is_some();
    if !url.starts_with("tcp://") {
        if let Some((i, (_, s))) = first_path {
            return Err(err(
                s.clone(),
                &format!("{field}.{}", TLS_KEYS[i + 1]),
                "TLS options apply to tcp:// hosts only".into(),
            ));
        }
        if let Some((_, s)) = verify {
            return Err(err(
                s,
                &format!("{field}.tlsverify"),
                "TLS options apply to tcp:// hosts only".into(),
            ));
        }
        return Ok((url, None));
    }
    if !own {
        return Ok((url, tls.clone()));
    }
    if verify.as_ref().is_none_or(|(b, _)| !b) {
        if let Some((i, (_, s))) = first_path {
            return Err(err(
                s.clone(),
                &format!("{field}.{}", TLS_KEYS[i + 1]),
                "needs tlsverify = true: vswitch speaks TLS only with the daemon verified".into(),
            ));
        }
        return Ok((url, None));
    }
    let [ca, cert, key] = paths;
    let spans: Vec<(usize, Range<usize>)> = [&ca, &cert, &key]
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p.as_ref()?.1.clone())))
        .collect();
    let f = files(dir, ca.map(|p| p.0), cert.map(|p| p.0), key.map(|p| p.0));
    if let Err(e) = f.config() {
        // Point at the key whose file is named in the message, if given.
        let hit = spans.iter().find(|(i, _)| {
            let p = match i {
                0 => Some(&f.ca),
                1 => f.client.as_ref().map(|c| &c.0),
                _ => f.client.as_ref().map(|c| &c.1),
            };
            p.is_some_and(|p| e.contains(&p.display().to_string()))
        });
        let (name, s) = match hit {
            Some((i, s)) => (TLS_KEYS[i + 1], s.clone()),
            None => ("tlsverify", verify.map_or(span, |v| v.1)),
        };
        return Err(err(s, &format!("{field}.{name}"), e));
    }
    Ok((url, Some(f)))
}
