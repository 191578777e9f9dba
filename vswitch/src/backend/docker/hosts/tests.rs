//! Parsing of the mapping (CLI, TLS options, side file) and the tcp and
//! TLS transports against an in-process server; no root, no daemon.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::parse::{Host, TlsOptions, check_url, parse_cli, parse_file};
use super::{parse_proc_addr, resolve};
use crate::backend::docker::api::{ApiError, Client, Endpoint, TlsFiles};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls")
}

fn tls_files() -> TlsFiles {
    let d = fixtures();
    TlsFiles {
        ca: d.join("ca.pem"),
        client: Some((d.join("cert.pem"), d.join("key.pem"))),
    }
}

#[test]
fn cli_spec_maps_unix_and_tcp_and_gives_tls_to_tcp_only() {
    let tls = Some(tls_files());
    let v = parse_cli(
        "m1=unix:///run/a.sock, m2=tcp://127.0.0.1:2376,m3=tcp://[::1]:2375",
        &tls,
    )
    .unwrap();
    let got: Vec<(&str, &str, bool)> = v
        .iter()
        .map(|h| (h.machine.as_str(), h.url.as_str(), h.tls.is_some()))
        .collect();
    assert_eq!(
        got,
        [
            ("m1", "unix:///run/a.sock", false),
            ("m2", "tcp://127.0.0.1:2376", true),
            ("m3", "tcp://[::1]:2375", true),
        ]
    );
    assert!(v.iter().all(|h| h.origin == "--docker-host"));
}

#[test]
fn cli_spec_errors_name_the_item() {
    let cases = [
        ("m1", "`m1` is not MACHINE=URL"),
        ("=unix:///a", "names no machine"),
        ("m1=http://x:1", "neither unix:///path nor tcp://host:port"),
        ("m1=unix://rel/a.sock", "absolute path"),
        ("m1=tcp://10.0.0.1", "host:port"),
        ("m1=tcp://10.0.0.1:0", "host:port"),
        ("m1=tcp://10.0.0.1:99999", "host:port"),
        ("m1=tcp://:2375", "host:port"),
        ("m1=unix:///a,m1=unix:///b", "machine m1 is mapped twice"),
    ];
    for (spec, want) in cases {
        let e = parse_cli(spec, &None).unwrap_err();
        assert!(e.starts_with("--docker-host: "), "{spec}: {e}");
        assert!(e.contains(want), "{spec}: {e}");
    }
    assert!(check_url("tcp://docker.example:2376").is_ok());
}

#[test]
fn tls_options_follow_the_docker_cli() {
    let dir = fixtures();
    // Without --tlsverify: plain, and a cert option alone is refused.
    assert_eq!(TlsOptions::default().files(&dir).unwrap(), None);
    let lone = TlsOptions {
        cacert: Some("x.pem".into()),
        ..Default::default()
    };
    let e = lone.files(&dir).unwrap_err();
    assert!(e.contains("--tlscacert needs --tlsverify"), "{e}");
    // --tlsverify alone: ca.pem, cert.pem, key.pem of the cert dir.
    let verify = TlsOptions {
        verify: true,
        ..Default::default()
    };
    assert_eq!(verify.files(&dir).unwrap(), Some(tls_files()));
    // A cert dir without client files: server verified, no client cert.
    let tmp = tempdir("tlsopts");
    std::fs::copy(dir.join("ca.pem"), tmp.join("ca.pem")).unwrap();
    let f = verify.files(&tmp).unwrap().unwrap();
    assert_eq!((f.ca, f.client), (tmp.join("ca.pem"), None));
    // A missing CA is named.
    let e = TlsOptions {
        verify: true,
        cacert: Some(tmp.join("nope.pem")),
        ..Default::default()
    }
    .files(&dir)
    .unwrap_err();
    assert!(e.contains("nope.pem"), "{e}");
    // A file that is not PEM.
    let e = TlsOptions {
        verify: true,
        cacert: Some(dir.join("README.md")),
        ..Default::default()
    }
    .files(&dir)
    .unwrap_err();
    assert!(e.contains("no PEM certificate"), "{e}");
    std::fs::remove_dir_all(tmp).unwrap();
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vswitch-hosts-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn side_file_entries_strings_and_tables() {
    let dir = fixtures();
    let file = dir.join("hosts.toml");
    let text = r#"# the lab
[docker_hosts]
m1 = "unix:///run/a.sock"
m2 = { host = "tcp://127.0.0.1:2376", tlsverify = true, tlscacert = "ca.pem", tlscert = "cert.pem", tlskey = "key.pem" }
m3 = "tcp://127.0.0.1:2375"
m4 = { host = "tcp://127.0.0.1:2377", tlsverify = false }
m5 = { host = "tcp://127.0.0.1:2378", tlsverify = true, tlscacert = "ca.pem" }
"#;
    let global = Some(TlsFiles {
        ca: "/global/ca.pem".into(),
        client: None,
    });
    let v = parse_file(&file, text, &global, Path::new("/no/cert/dir")).unwrap();
    let by = |m: &str| v.iter().find(|h| h.machine == m).unwrap().clone();
    assert_eq!(
        by("m1"),
        Host {
            machine: "m1".into(),
            url: "unix:///run/a.sock".into(),
            tls: None,
            origin: format!("{}:3:1", file.display()),
        }
    );
    assert_eq!(by("m2").tls, Some(tls_files()));
    assert_eq!(
        by("m3").tls,
        global,
        "an entry without tls keys takes the CLI's"
    );
    assert_eq!(by("m4").tls, None, "tlsverify = false: plain");
    // Client pair defaults to the cert dir's files, which do not exist there.
    assert_eq!(
        by("m5").tls,
        Some(TlsFiles {
            ca: dir.join("ca.pem"),
            client: None,
        })
    );
}

/// `(text, line, column, field, message part)`.
const BAD_FILES: &[(&str, usize, usize, &str, &str)] = &[
    (
        "[docker_hosts]\nm1 = \"unix:///a\"\nm1 = \"unix:///b\"\n",
        3,
        1,
        "toml",
        "invalid TOML",
    ),
    ("[docker_hosts\n", 1, 14, "toml", "invalid TOML"),
    (
        "[hosts]\nm1 = \"unix:///a\"\n",
        1,
        2,
        "hosts",
        "one table, [docker_hosts]",
    ),
    ("# nothing\n", 1, 1, "docker_hosts", "missing table"),
    (
        "docker_hosts = 3\n",
        1,
        16,
        "docker_hosts",
        "expected a table",
    ),
    (
        "[docker_hosts]\nm1 = 3\n",
        2,
        6,
        "docker_hosts.m1",
        "found integer",
    ),
    (
        "[docker_hosts]\nm1 = \"ssh://x\"\n",
        2,
        6,
        "docker_hosts.m1",
        "neither unix",
    ),
    (
        "[docker_hosts]\nm1 = { tlsverify = true }\n",
        2,
        6,
        "docker_hosts.m1.host",
        "missing key `host`",
    ),
    (
        "[docker_hosts]\nm1 = { host = \"tcp://h:1\", port = 2 }\n",
        2,
        28,
        "docker_hosts.m1.port",
        "unknown key",
    ),
    (
        "[docker_hosts]\nm1 = { host = \"tcp://h:1\", tlsverify = \"yes\" }\n",
        2,
        40,
        "docker_hosts.m1.tlsverify",
        "expected a boolean, found string",
    ),
    (
        "[docker_hosts]\nm1 = { host = \"unix:///a\", tlsverify = true }\n",
        2,
        28,
        "docker_hosts.m1.tlsverify",
        "tcp:// hosts only",
    ),
    (
        "[docker_hosts]\nm1 = { host = \"tcp://h:1\", tlscacert = \"ca.pem\" }\n",
        2,
        40,
        "docker_hosts.m1.tlscacert",
        "needs tlsverify = true",
    ),
    (
        "[docker_hosts]\n\nm2 = { host = \"tcp://h:1\", tlsverify = true, tlscacert = \"missing.pem\" }\n",
        3,
        58,
        "docker_hosts.m2.tlscacert",
        "missing.pem",
    ),
    (
        "[docker_hosts]\nm2 = { host = \"tcp://h:1\", tlsverify = true, tlscacert = \"ca.pem\", tlscert = \"cert.pem\", tlskey = \"nokey.pem\" }\n",
        2,
        99,
        "docker_hosts.m2.tlskey",
        "nokey.pem",
    ),
    (
        "[docker_hosts]\nm2 = { host = \"tcp://h:1\", tlsverify = true, tlscacert = \"ca.pem\", tlskey = \"key.pem\" }\n",
        2,
        28,
        "docker_hosts.m2.tlsverify",
        "/no/cert/dir/cert.pem",
    ),
];

#[test]
fn side_file_errors_name_file_line_column_and_field() {
    let file = fixtures().join("hosts.toml");
    for (text, line, column, field, part) in BAD_FILES {
        let e = parse_file(&file, text, &None, Path::new("/no/cert/dir")).unwrap_err();
        let shown = e.to_string();
        assert_eq!(
            (e.line, e.column, e.field.as_str()),
            (*line, *column, *field),
            "{text:?}: {shown}"
        );
        assert_eq!(e.file, file, "{shown}");
        assert!(e.message.contains(part), "{text:?}: {shown}");
        assert!(shown.starts_with(&format!("{}:{line}:{column}: {field}: ", file.display())));
    }
}

#[test]
fn cli_and_side_file_may_not_map_one_machine_twice() {
    let tmp = tempdir("both");
    let file = tmp.join("hosts.toml");
    std::fs::write(
        &file,
        "[docker_hosts]\nh2 = \"unix:///b\"\nh1 = \"unix:///c\"\n",
    )
    .unwrap();
    let none = TlsOptions::default();
    let e = resolve(Some("h1=unix:///a"), Some(&file), &none, &tmp).unwrap_err();
    assert!(e.contains("machine h1 is mapped by --docker-host"), "{e}");
    assert!(e.contains(&format!("{}:3:1", file.display())), "{e}");
    let v = resolve(Some("h0=unix:///a"), Some(&file), &none, &tmp).unwrap();
    assert_eq!(v.len(), 3);
    // A missing side file is named.
    let e = resolve(None, Some(&tmp.join("none.toml")), &none, &tmp).unwrap_err();
    assert!(e.contains("none.toml") && e.contains("cannot read"), "{e}");
    // Explicit TLS paths without any host.
    let lone = TlsOptions {
        verify: true,
        key: Some("k.pem".into()),
        ..Default::default()
    };
    let e = resolve(None, None, &lone, &tmp).unwrap_err();
    assert!(e.contains("--tlskey applies to tcp:// daemons"), "{e}");
    std::fs::remove_dir_all(tmp).unwrap();
}

#[test]
fn proc_net_tcp_addresses() {
    let want: SocketAddr = "127.0.0.1:2376".parse().unwrap();
    let word = u32::from_ne_bytes([127, 0, 0, 1]);
    assert_eq!(parse_proc_addr(&format!("{word:08X}:0948")), Some(want));
    let v6: SocketAddr = "[::1]:80".parse().unwrap();
    let one = u32::from_ne_bytes([0, 0, 0, 1]);
    let text = format!("{:08X}{:08X}{:08X}{one:08X}:0050", 0, 0, 0);
    assert_eq!(parse_proc_addr(&text), Some(v6));
    assert_eq!(parse_proc_addr("zz:1"), None);
}

/// Serves one `GET /version` per connection on 127.0.0.1, over TLS when
/// `tls` is given (client certificates required, from `ca.pem`).
fn serve(tls: bool, conns: usize) -> (SocketAddr, std::thread::JoinHandle<()>) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let d = fixtures();
    let config = tls.then(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(d.join("ca.pem")).unwrap())
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .unwrap();
        let chain = vec![CertificateDer::from_pem_file(d.join("server-cert.pem")).unwrap()];
        let key = PrivateKeyDer::from_pem_file(d.join("server-key.pem")).unwrap();
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)
                .unwrap(),
        )
    });
    let h = std::thread::spawn(move || {
        for _ in 0..conns {
            let (s, _) = l.accept().unwrap();
            let answer = |mut c: Box<dyn ReadWriteBox>| {
                let mut req = Vec::new();
                let mut b = [0u8; 512];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                let body = r#"{"Version":"test","ApiVersion":"1.41"}"#;
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = c.flush();
                c.close();
            };
            match &config {
                None => answer(Box::new(Plain(s))),
                Some(cfg) => {
                    let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
                    answer(Box::new(rustls::StreamOwned::new(conn, s)));
                }
            }
        }
    });
    (addr, h)
}

trait ReadWriteBox: Read + Write {
    fn close(&mut self);
}

struct Plain(std::net::TcpStream);

impl Read for Plain {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(b)
    }
}

impl Write for Plain {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl ReadWriteBox for Plain {
    fn close(&mut self) {}
}

impl ReadWriteBox for rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream> {
    fn close(&mut self) {
        self.conn.send_close_notify();
        let _ = self.conn.complete_io(&mut self.sock);
    }
}

#[test]
fn plain_tcp_transport() {
    let (addr, h) = serve(false, 1);
    let c = Client::at(Endpoint::Tcp {
        addr: addr.to_string(),
        tls: None,
    });
    assert_eq!(c.version().unwrap().version, "test");
    assert_eq!(c.endpoint().to_string(), format!("tcp://{addr}"));
    h.join().unwrap();
}

#[test]
fn tls_transport_verifies_the_daemon() {
    let (addr, h) = serve(true, 3);
    let ok = Client::at(Endpoint::Tcp {
        addr: addr.to_string(),
        tls: Some(tls_files().config().unwrap()),
    });
    assert_eq!(ok.version().unwrap().version, "test");
    assert_eq!(ok.endpoint().to_string(), format!("tcp://{addr} (TLS)"));
    let wrong = TlsFiles {
        ca: fixtures().join("other-ca.pem"),
        ..tls_files()
    };
    let bad = Client::at(Endpoint::Tcp {
        addr: addr.to_string(),
        tls: Some(wrong.config().unwrap()),
    });
    let e = bad.version().unwrap_err();
    assert!(matches!(e, ApiError::Remote { .. }), "{e:?}");
    let e = e.to_string();
    assert!(
        e.contains(&format!(
            "cannot reach the Docker daemon at tcp://{addr} (TLS)"
        )) && e.contains("TLS handshake failed")
            && e.contains("UnknownIssuer"),
        "{e}"
    );
    // No client certificate where the daemon requires one.
    let anon = Client::at(Endpoint::Tcp {
        addr: addr.to_string(),
        tls: Some(
            TlsFiles {
                client: None,
                ..tls_files()
            }
            .config()
            .unwrap(),
        ),
    });
    let e = anon.version().unwrap_err().to_string();
    assert!(e.contains("refused the client certificate"), "{e}");
    h.join().unwrap();
}

#[test]
fn unreachable_tcp_daemon_is_a_remote_error() {
    // A port nothing listens on: bind, note it, close.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let c = Client::at(Endpoint::Tcp {
        addr: addr.to_string(),
        tls: None,
    });
    let e = c.version().unwrap_err().to_string();
    assert!(
        e.contains(&format!("tcp://{addr}")) && e.contains("refused"),
        "{e}"
    );
}

#[test]
fn every_truncated_side_file_is_an_error_or_a_mapping_never_a_panic() {
    let text = "[docker_hosts]\nm1 = \"unix:///run/a.sock\"\nm2 = { host = \"tcp://h:1\", tlsverify = true, tlscacert = \"ca.pem\", tlscert = \"cert.pem\", tlskey = \"key.pem\" }\n";
    let file = fixtures().join("hosts.toml");
    for end in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
        let _ = parse_file(&file, &text[..end], &None, &fixtures());
    }
}

#[test]
fn tls_files_are_needed_only_by_tcp_hosts_that_take_them() {
    let tmp = tempdir("lazy");
    let verify = TlsOptions {
        verify: true,
        ..Default::default()
    };
    // No ca.pem in the cert dir: fine for unix hosts and own-TLS entries.
    let v = resolve(Some("h1=unix:///a"), None, &verify, &tmp).unwrap();
    assert_eq!(v[0].tls, None);
    let file = tmp.join("hosts.toml");
    std::fs::write(
        &file,
        "[docker_hosts]\nh2 = { host = \"tcp://127.0.0.1:1\", tlsverify = false }\n",
    )
    .unwrap();
    assert!(resolve(None, Some(&file), &verify, &tmp).is_ok());
    // A tcp:// host on the command line takes them: the missing CA is named.
    let e = resolve(Some("h1=tcp://127.0.0.1:1"), None, &verify, &tmp).unwrap_err();
    assert!(e.contains("--tlsverify") && e.contains("ca.pem"), "{e}");
    std::fs::remove_dir_all(tmp).unwrap();
}
