//! A small synchronous client for the Docker Engine API.
//!
//! Plain HTTP/1.1 with `serde_json` over one of three transports
//! ([`Endpoint`]): a unix socket, `tcp://host:port`, or TCP with TLS
//! (rustls, the server verified against a given CA, optionally a client
//! certificate, as `docker --tlsverify` does). One connection per request
//! (`Connection: close`, so a response ends at EOF); no endpoint used is
//! streaming or hijacked (no attach, exec or logs), so every call works the
//! same over each transport. A world needs a
//! few dozen calls, each answered in milliseconds; bollard would bring tokio
//! and hyper into a crate that is otherwise synchronous, and compile for
//! minutes on the project's 2 cores. API version 1.41 (Engine 20.10, the
//! reference engine) is pinned in every path; newer engines still serve it.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

/// The API version every request asks for (Engine 20.10).
pub const API_VERSION: &str = "1.41";

/// Errors of the Engine API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The socket could not be reached.
    #[error("no Docker daemon at {}: start one with `ci/docker-daemon.sh start` ({source})", socket.display())]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// A `tcp://` daemon could not be reached, or its TLS handshake failed.
    #[error("cannot reach the Docker daemon at {endpoint}: {what}")]
    Remote {
        /// The endpoint (`tcp://127.0.0.1:2376 (TLS)`).
        endpoint: String,
        /// What failed.
        what: String,
    },
    /// Reading or writing the connection failed.
    #[error("{method} {path}: {source}")]
    Io {
        /// HTTP method.
        method: &'static str,
        /// Request path.
        path: String,
        /// Cause.
        source: io::Error,
    },
    /// The daemon answered with an error status.
    #[error("{method} {path}: HTTP {status}: {message}")]
    Status {
        /// HTTP method.
        method: &'static str,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The daemon's `message`, or the body.
        message: String,
    },
    /// The answer was not HTTP or not the JSON expected.
    #[error("{method} {path}: unexpected answer: {what}")]
    Malformed {
        /// HTTP method.
        method: &'static str,
        /// Request path.
        path: String,
        /// What was wrong.
        what: String,
    },
}

impl ApiError {
    /// The HTTP status, when the daemon answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Where a daemon listens, and how to speak to it.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// `unix:///path`.
    Unix(PathBuf),
    /// `tcp://host:port`, plain or with TLS.
    Tcp {
        /// `host:port`.
        addr: String,
        /// TLS client settings; `None`: plain HTTP.
        tls: Option<Arc<rustls::ClientConfig>>,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp { addr, tls: None } => write!(f, "tcp://{addr}"),
            Endpoint::Tcp { addr, tls: Some(_) } => write!(f, "tcp://{addr} (TLS)"),
        }
    }
}

/// The PEM files of a TLS connection to a daemon (`docker --tlsverify`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s) the daemon's certificate must chain to.
    pub ca: PathBuf,
    /// Client certificate chain and its key, when the daemon asks for one.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// The rustls settings: the server verified against `ca` (name or IP
    /// address of the endpoint), the client certificate presented if any.
    pub fn config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs = |p: &Path| -> Result<Vec<CertificateDer<'static>>, String> {
            let v = CertificateDer::pem_file_iter(p)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: {e}", p.display()))?;
            if v.is_empty() {
                return Err(format!("{}: no PEM certificate in it", p.display()));
            }
            Ok(v)
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(&self.ca)? {
            roots
                .add(c)
                .map_err(|e| format!("{}: not a CA certificate: {e}", self.ca.display()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let config = match &self.client {
            None => builder.with_no_client_auth(),
            Some((cert, key_file)) => {
                let chain = certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key_file)
                    .map_err(|e| format!("{}: {e}", key_file.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("{} with {}: {e}", cert.display(), key_file.display()))?
            }
        };
        Ok(Arc::new(config))
    }
}

/// A byte stream to a daemon, whatever the transport.
trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// A client bound to one daemon.
#[derive(Clone, Debug)]
pub struct Client {
    endpoint: Endpoint,
    timeout: Duration,
}

/// What `GET /version` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// Engine version (`20.10.24+dfsg1`).
    pub version: String,
    /// Highest API version the engine serves.
    pub api_version: String,
}

/// A container or network: its id, name (without the leading `/`) and the
/// value of the label it was listed by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// Full id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The label's value.
    pub label: String,
}

impl Client {
    /// A client for the daemon listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client::at(Endpoint::Unix(socket.into()))
    }

    /// A client for the daemon at `endpoint`.
    pub fn at(endpoint: Endpoint) -> Client {
        Client {
            endpoint,
            timeout: Duration::from_secs(120),
        }
    }

    /// The socket this client talks to (unix endpoints).
    pub fn socket(&self) -> Option<&Path> {
        match &self.endpoint {
            Endpoint::Unix(p) => Some(p),
            Endpoint::Tcp { .. } => None,
        }
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A connection with timeouts set, the TLS handshake done.
    fn connect(&self) -> Result<Box<dyn Conn>, ApiError> {
        let (addr, tls) = match &self.endpoint {
            Endpoint::Unix(socket) => {
                let connect_err = |source| ApiError::Connect {
                    socket: socket.clone(),
                    source,
                };
                let s = UnixStream::connect(socket).map_err(connect_err)?;
                s.set_read_timeout(Some(self.timeout))
                    .map_err(connect_err)?;
                s.set_write_timeout(Some(self.timeout))
                    .map_err(connect_err)?;
                return Ok(Box::new(s));
            }
            Endpoint::Tcp { addr, tls } => (addr, tls),
        };
        let remote = |what: String| ApiError::Remote {
            endpoint: self.endpoint.to_string(),
            what,
        };
        let tcp = tcp_connect(addr, self.timeout).map_err(|e| remote(e.to_string()))?;
        let Some(config) = tls else {
            return Ok(Box::new(tcp));
        };
        let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = rustls_pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| remote(format!("`{host}` is not a server name: {e}")))?;
        let mut conn = rustls::ClientConnection::new(config.clone(), name)
            .map_err(|e| remote(format!("TLS: {e}")))?;
        let mut tcp = tcp;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)
                .map_err(|e| remote(format!("TLS handshake failed: {e}{}", tls_hint(&e))))?;
        }
        Ok(Box::new(rustls::StreamOwned::new(conn, tcp)))
    }

    fn request(
        &self,
        method: &'static str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<(u16, Vec<u8>), ApiError> {
        let full = format!("/v{API_VERSION}{path}");
        let io_err = |source: io::Error| match source.get_ref() {
            // TLS 1.3: a refused client certificate shows after the handshake.
            Some(x) if x.is::<rustls::Error>() => ApiError::Remote {
                endpoint: self.endpoint.to_string(),
                what: format!("{method} {full}: TLS: {source}{}", tls_hint(&source)),
            },
            _ => ApiError::Io {
                method,
                path: full.clone(),
                source,
            },
        };
        let mut s = self.connect()?;
        let mut head = format!("{method} {full} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n");
        match body {
            Some((ctype, b)) => head.push_str(&format!(
                "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                b.len()
            )),
            None => head.push_str("Content-Length: 0\r\n\r\n"),
        }
        s.write_all(head.as_bytes()).map_err(io_err)?;
        if let Some((_, b)) = body {
            s.write_all(b).map_err(io_err)?;
        }
        let mut raw = Vec::new();
        match s.read_to_end(&mut raw) {
            // A TLS peer that closes without close_notify: the response is
            // still checked whole below (headers, chunks).
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            r => r.map(|_| ()).map_err(io_err)?,
        }
        let (status, body) = parse_response(&raw).map_err(|what| ApiError::Malformed {
            method,
            path: full.clone(),
            what,
        })?;
        if status >= 400 {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
            return Err(ApiError::Status {
                method,
                path: full,
                status,
                message,
            });
        }
        Ok((status, body))
    }

    fn json(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let (_, out) = self.request(
            method,
            path,
            bytes.as_deref().map(|b| ("application/json", b)),
        )?;
        if out.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out).map_err(|e| ApiError::Malformed {
            method,
            path: path.to_string(),
            what: format!("not JSON: {e}"),
        })
    }

    /// `GET /version`.
    pub fn version(&self) -> Result<Version, ApiError> {
        let v = self.json("GET", "/version", None)?;
        let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Ok(Version {
            version: field("Version"),
            api_version: field("ApiVersion"),
        })
    }

    /// `POST /swarm/init`: a one-node swarm advertising (and listening
    /// on) `addr`, its default address pool `pool` (so that the ingress
    /// network does not take a scenario's subnet).
    pub fn swarm_init(&self, addr: &str, pool: &str) -> Result<(), ApiError> {
        let body = json!({
            "ListenAddr": format!("{addr}:2377"),
            "AdvertiseAddr": addr,
            "DataPathAddr": addr,
            "DefaultAddrPool": [pool],
            "SubnetSize": 24,
        });
        self.json("POST", "/swarm/init", Some(&body)).map(|_| ())
    }

    /// The worker join token of the swarm this daemon manages.
    pub fn swarm_worker_token(&self) -> Result<String, ApiError> {
        let v = self.json("GET", "/swarm", None)?;
        v["JoinTokens"]["Worker"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ApiError::Malformed {
                method: "GET",
                path: "/swarm".into(),
                what: "no JoinTokens.Worker".into(),
            })
    }

    /// `POST /swarm/join` as a worker of the manager at `manager`, advertising `addr`.
    pub fn swarm_join(&self, addr: &str, manager: &str, token: &str) -> Result<(), ApiError> {
        let body = json!({
            "ListenAddr": format!("{addr}:2377"),
            "AdvertiseAddr": addr,
            "DataPathAddr": addr,
            "RemoteAddrs": [format!("{manager}:2377")],
            "JoinToken": token,
        });
        self.json("POST", "/swarm/join", Some(&body)).map(|_| ())
    }

    /// How many nodes of the swarm this manager sees `ready`.
    pub fn swarm_ready_nodes(&self) -> Result<usize, ApiError> {
        let v = self.json("GET", "/nodes", None)?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter(|n| n["Status"]["State"].as_str() == Some("ready"))
                    .count()
            })
            .unwrap_or(0))
    }

    /// `GET /info`.
    pub fn info(&self) -> Result<Value, ApiError> {
        self.json("GET", "/info", None)
    }

    /// Whether an image with this reference exists.
    pub fn image_exists(&self, reference: &str) -> Result<bool, ApiError> {
        match self.json("GET", &format!("/images/{reference}/json"), None) {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Imports a root filesystem tar as `repo:tag` (`POST /images/create?fromSrc=-`).
    pub fn image_import(&self, repo: &str, tag: &str, tar: &[u8]) -> Result<(), ApiError> {
        let path = format!(
            "/images/create?fromSrc=-&repo={}&tag={}",
            query_escape(repo),
            query_escape(tag)
        );
        let (_, out) = self.request("POST", &path, Some(("application/x-tar", tar)))?;
        // A stream of JSON progress objects; a failure is one with "error".
        let stream = serde_json::Deserializer::from_slice(&out).into_iter::<Value>();
        for v in stream.flatten() {
            if let Some(e) = v.get("error").and_then(Value::as_str) {
                return Err(ApiError::Status {
                    method: "POST",
                    path,
                    status: 500,
                    message: e.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Removes an image (tests).
    pub fn image_remove(&self, reference: &str) -> Result<(), ApiError> {
        self.json("DELETE", &format!("/images/{reference}?force=1"), None)
            .map(|_| ())
    }

    /// `POST /networks/create`; returns the id.
    pub fn network_create(&self, body: &Value) -> Result<String, ApiError> {
        let v = self.json("POST", "/networks/create", Some(body))?;
        id_of(&v, "/networks/create")
    }

    /// `GET /networks/{id}`.
    pub fn network_inspect(&self, id: &str) -> Result<Value, ApiError> {
        self.json("GET", &format!("/networks/{id}"), None)
    }

    /// Networks carrying label `key` (any value).
    pub fn networks_labeled(&self, key: &str) -> Result<Vec<Object>, ApiError> {
        let filters = json!({ "label": [key] }).to_string();
        let v = self.json(
            "GET",
            &format!("/networks?filters={}", query_escape(&filters)),
            None,
        )?;
        Ok(labeled(&v, key, |n| {
            n.get("Name")?.as_str().map(str::to_string)
        }))
    }

    /// `DELETE /networks/{id}`; a network already gone is not an error.
    pub fn network_remove(&self, id: &str) -> Result<(), ApiError> {
        match self.json("DELETE", &format!("/networks/{id}"), None) {
            Err(e) if e.status() == Some(404) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// `POST /networks/{id}/connect`.
    pub fn network_connect(
        &self,
        network: &str,
        container: &str,
        endpoint: &Value,
    ) -> Result<(), ApiError> {
        let body = json!({ "Container": container, "EndpointConfig": endpoint });
        self.json("POST", &format!("/networks/{network}/connect"), Some(&body))
            .map(|_| ())
    }

    /// `POST /networks/{id}/disconnect`.
    pub fn network_disconnect(&self, network: &str, container: &str) -> Result<(), ApiError> {
        let body = json!({ "Container": container, "Force": false });
        self.json(
            "POST",
            &format!("/networks/{network}/disconnect"),
            Some(&body),
        )
        .map(|_| ())
    }

    /// `POST /containers/create?name=NAME`; returns the id.
    pub fn container_create(&self, name: &str, body: &Value) -> Result<String, ApiError> {
        let path = format!("/containers/create?name={}", query_escape(name));
        let v = self.json("POST", &path, Some(body))?;
        id_of(&v, &path)
    }

    /// `POST /containers/{id}/start`.
    pub fn container_start(&self, id: &str) -> Result<(), ApiError> {
        self.json("POST", &format!("/containers/{id}/start"), None)
            .map(|_| ())
    }

    /// `POST /containers/{id}/stop?t=1` (Docker's stop: SIGTERM, then SIGKILL after 1 s).
    pub fn container_stop(&self, id: &str) -> Result<(), ApiError> {
        match self.json("POST", &format!("/containers/{id}/stop?t=1"), None) {
            // 304: already stopped.
            Err(e) if e.status() == Some(304) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// `GET /containers/{id}/json`.
    pub fn container_inspect(&self, id: &str) -> Result<Value, ApiError> {
        self.json("GET", &format!("/containers/{id}/json"), None)
    }

    /// Containers (running or not) carrying label `key` (any value).
    pub fn containers_labeled(&self, key: &str) -> Result<Vec<Object>, ApiError> {
        let filters = json!({ "label": [key] }).to_string();
        let v = self.json(
            "GET",
            &format!("/containers/json?all=1&filters={}", query_escape(&filters)),
            None,
        )?;
        Ok(labeled(&v, key, |c| {
            let first = c.get("Names")?.as_array()?.first()?.as_str()?;
            Some(first.trim_start_matches('/').to_string())
        }))
    }

    /// `DELETE /containers/{id}?force=1&v=1`; a container already gone is not an error.
    pub fn container_remove(&self, id: &str) -> Result<(), ApiError> {
        match self.json("DELETE", &format!("/containers/{id}?force=1&v=1"), None) {
            Err(e) if e.status() == Some(404) => Ok(()),
            r => r.map(|_| ()),
        }
    }
}

/// What a failed handshake most likely means, in the docker CLI's terms.
fn tls_hint(e: &io::Error) -> &'static str {
    use rustls::{AlertDescription as A, Error as E};
    match e.get_ref().and_then(|x| x.downcast_ref::<E>()) {
        Some(E::InvalidCertificate(_)) => {
            " (the daemon's certificate does not verify against the CA given: tlscacert / ca.pem)"
        }
        Some(E::AlertReceived(A::CertificateRequired | A::BadCertificate | A::UnknownCA)) => {
            " (the daemon refused the client certificate: tlscert / tlskey)"
        }
        Some(E::InvalidMessage(_)) => {
            " (is the daemon serving TLS there? without --tlsverify it is plain)"
        }
        _ => "",
    }
}

/// A TCP connection to `addr` (`host:port`), trying each address it names.
fn tcp_connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout.min(Duration::from_secs(10))) {
            Ok(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The objects of a list answer that carry label `key`.
fn labeled(v: &Value, key: &str, name: impl Fn(&Value) -> Option<String>) -> Vec<Object> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| {
            Some(Object {
                id: o.get("Id")?.as_str()?.to_string(),
                name: name(o)?,
                label: o.get("Labels")?.get(key)?.as_str()?.to_string(),
            })
        })
        .collect()
}

fn id_of(v: &Value, path: &str) -> Result<String, ApiError> {
    v.get("Id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ApiError::Malformed {
            method: "POST",
            path: path.to_string(),
            what: format!("no Id in {v}"),
        })
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits an HTTP/1.1 response read to EOF into status and body, undoing
/// chunked transfer encoding.
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &raw[end + 4..];
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let nl = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&rest[..nl]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[nl + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        if rest.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

/// Swarm services, tasks and nodes (the manager's API), for the
/// backend's `[[service]]` tables (`services.rs`).
impl Client {
    /// `POST /services/create`; returns the service id.
    pub fn service_create(&self, spec: &Value) -> Result<String, ApiError> {
        let v = self.json("POST", "/services/create", Some(spec))?;
        v.get("ID")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ApiError::Malformed {
                method: "POST",
                path: "/services/create".into(),
                what: format!("no ID in {v}"),
            })
    }

    /// `GET /services/{id}`.
    pub fn service_inspect(&self, id: &str) -> Result<Value, ApiError> {
        self.json("GET", &format!("/services/{id}"), None)
    }

    /// Sets a service's replica count (`docker service scale`).
    pub fn service_scale(&self, id: &str, replicas: usize) -> Result<(), ApiError> {
        let v = self.service_inspect(id)?;
        let version = v["Version"]["Index"].as_u64().unwrap_or(0);
        let mut spec = v["Spec"].clone();
        spec["Mode"] = json!({ "Replicated": { "Replicas": replicas } });
        self.json(
            "POST",
            &format!("/services/{id}/update?version={version}"),
            Some(&spec),
        )
        .map(|_| ())
    }

    /// `DELETE /services/{id}`; a service already gone is not an error.
    pub fn service_remove(&self, id: &str) -> Result<(), ApiError> {
        match self.json("DELETE", &format!("/services/{id}"), None) {
            Err(e) if e.status() == Some(404) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// `GET /networks/{id}?verbose=true`: with the swarm's service records.
    pub fn network_inspect_verbose(&self, id: &str) -> Result<Value, ApiError> {
        self.json("GET", &format!("/networks/{id}?verbose=true"), None)
    }

    /// `GET /tasks`: every task the manager knows.
    pub fn tasks(&self) -> Result<Vec<Value>, ApiError> {
        let v = self.json("GET", "/tasks", None)?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// This daemon's swarm node id (`GET /info`).
    pub fn node_id(&self) -> Result<String, ApiError> {
        let v = self.info()?;
        v["Swarm"]["NodeID"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| ApiError::Malformed {
                method: "GET",
                path: "/info".into(),
                what: "no Swarm.NodeID (not in a swarm)".into(),
            })
    }

    /// Sets a node's availability (`active`, `pause`, `drain`).
    pub fn node_availability(&self, id: &str, availability: &str) -> Result<(), ApiError> {
        let v = self.json("GET", &format!("/nodes/{id}"), None)?;
        let version = v["Version"]["Index"].as_u64().unwrap_or(0);
        let mut spec = v["Spec"].clone();
        spec["Availability"] = json!(availability);
        self.json(
            "POST",
            &format!("/nodes/{id}/update?version={version}"),
            Some(&spec),
        )
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), (200, b"{}".to_vec()));
        let chunked = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (201, b"abcde".to_vec()));
        let empty = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(parse_response(empty).unwrap(), (204, Vec::new()));
        assert!(parse_response(b"garbage").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
                .is_err()
        );
    }

    #[test]
    fn escapes_queries() {
        assert_eq!(query_escape("vswitch/busybox"), "vswitch%2Fbusybox");
        assert_eq!(
            query_escape(r#"{"name":["^/vsw"]}"#),
            "%7B%22name%22%3A%5B%22%5E%2Fvsw%22%5D%7D"
        );
        assert_eq!(query_escape("a-b_c.d~1"), "a-b_c.d~1");
    }

    #[test]
    fn missing_socket_names_the_start_command() {
        let c = Client::new("/nonexistent/vswitch-docker.sock");
        let e = c.version().unwrap_err().to_string();
        assert!(e.contains("ci/docker-daemon.sh start"), "{e}");
        assert!(e.contains("/nonexistent/vswitch-docker.sock"), "{e}");
    }
}
