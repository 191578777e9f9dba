//! Compose files through `import`, then the scenario loader: every
//! translated key lands in the plan, every refusal is listed, every error
//! names file, line, column and key.

use std::net::IpAddr;
use std::path::Path;

use super::*;
use crate::scenario::{
    self,
    plan::{Driver, Mode, Plan, Proto},
};

fn imp(text: &str) -> Imported {
    import_str(Path::new("c.yml"), text).unwrap_or_else(|e| panic!("import failed: {e}"))
}

fn plan_of(text: &str) -> (Plan, Imported) {
    let i = imp(text);
    let p = scenario::parse_str(Path::new("c.toml"), &i.toml)
        .unwrap_or_else(|e| panic!("translated scenario invalid: {e}\n{}", i.toml));
    (p, i)
}

fn err(text: &str) -> ComposeError {
    match import_str(Path::new("c.yml"), text) {
        Ok(i) => panic!("expected an error, got:\n{}", i.toml),
        Err(e) => e,
    }
}

fn net<'a>(p: &'a Plan, name: &str) -> &'a crate::scenario::plan::Network {
    p.networks
        .iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no network {name}"))
}

fn cont<'a>(p: &'a Plan, name: &str) -> &'a crate::scenario::plan::Container {
    p.containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

const NETWORKS: &str = r#"
name: nets
services:
  a:
    networks: [front, back, mv, iv, ov]
networks:
  front:
    driver: bridge
    ipam:
      driver: default
      config:
        - subnet: 172.28.0.0/16
          ip_range: 172.28.5.0/24
          gateway: 172.28.0.254
          aux_addresses:
            router: 172.28.5.1
    driver_opts:
      com.docker.network.driver.mtu: "1400"
      com.docker.network.bridge.enable_icc: "false"
      com.docker.network.bridge.enable_ip_masquerade: "false"
  back:
    internal: true
    enable_ipv6: true
    ipam:
      config:
        - subnet: 10.9.0.0/24
        - subnet: fd00:9::/64
          gateway: fd00:9::1
  mv:
    driver: macvlan
    driver_opts:
      parent: eth0.10
      macvlan_mode: private
    ipam:
      config:
        - subnet: 198.18.10.0/24
  iv:
    driver: ipvlan
    driver_opts:
      parent: eth0.20
      ipvlan_mode: l3
    ipam:
      config:
        - subnet: 198.18.20.0/24
  ov:
    driver: overlay
    ipam:
      config:
        - subnet: 10.0.7.0/24
"#;

#[test]
fn networks_translate_every_key() {
    let (p, i) = plan_of(NETWORKS);
    assert!(i.notes.is_empty(), "{:?}", i.notes);
    assert_eq!(p.name, "compose: nets");
    let f = net(&p, "front");
    assert_eq!(f.driver, Driver::Bridge);
    let s = f.primary().unwrap();
    assert_eq!(s.net.to_string(), "172.28.0.0/16");
    assert_eq!(s.ip_range.to_string(), "172.28.5.0/24");
    assert_eq!(s.gateway.unwrap().to_string(), "172.28.0.254");
    assert_eq!(f.aux_addresses["router"].to_string(), "172.28.5.1");
    assert_eq!(f.mtu, 1400);
    assert!(!f.icc && !f.masquerade);
    let b = net(&p, "back");
    assert!(b.internal && b.ipv6);
    assert_eq!(b.subnet6.unwrap().to_string(), "fd00:9::/64");
    assert_eq!(b.gateway6.unwrap().to_string(), "fd00:9::1");
    let mv = net(&p, "mv");
    assert_eq!(mv.driver, Driver::Macvlan);
    assert_eq!(mv.parent.as_ref().unwrap().vlan, Some(10));
    assert_eq!(mv.mode, Some(Mode::Private));
    let iv = net(&p, "iv");
    assert_eq!(iv.driver, Driver::Ipvlan);
    assert_eq!(iv.mode, Some(Mode::L3));
    assert_eq!(net(&p, "ov").driver, Driver::Overlay);
    assert_eq!(cont(&p, "a").endpoints.len(), 5);
}

const SERVICES: &str = r#"
x-dns: &dns
  dns: [9.9.9.9, 1.1.1.1]
services:
  web:
    <<: *dns
    image: nginx:alpine
    volumes: [./html:/usr/share/nginx/html]
    depends_on: [api]
    ports:
      - "8080:80"
      - 127.0.0.1:8443:443
      - "[::1]:9443:443"
      - "5353:53/udp"
      - "7000-7001:7000-7001"
      - target: 8000
        published: "18000"
        host_ip: 0.0.0.0
        protocol: tcp
        mode: host
      - "9999"
    expose: ["3000", "4000-4001/udp", 5000]
    networks:
      front:
        aliases: [www, site]
        ipv4_address: 172.30.0.10
        mac_address: 02:42:ac:1e:00:99
      back:
  api:
    deploy:
      replicas: 3
      resources: { limits: { cpus: "0.5" } }
    expose: ["8080"]
    networks:
      back:
        aliases: [backend]
  tool:
    network_mode: host
  sealed:
    network_mode: none
  legacy:
    network_mode: bridge
  plain: {}
  sidecar:
    network_mode: "service:web"
networks:
  front:
    ipam:
      config: [{ subnet: 172.30.0.0/24 }]
  back: {}
"#;

#[test]
fn services_translate_every_key() {
    let (p, i) = plan_of(SERVICES);
    let web = cont(&p, "web");
    let front = &web.endpoints[0];
    assert_eq!(p.networks[front.network].name, "front");
    assert_eq!(front.ip.unwrap().to_string(), "172.30.0.10");
    assert_eq!(front.mac.to_string(), "02:42:ac:1e:00:99");
    assert_eq!(front.aliases, ["www", "site"]);
    assert_eq!(p.networks[web.endpoints[1].network].name, "back");
    let dns: Vec<String> = web.dns.iter().map(IpAddr::to_string).collect();
    assert_eq!(dns, ["9.9.9.9", "1.1.1.1"]);
    let publish: Vec<(Option<String>, u16, u16, Proto)> = web
        .publish
        .iter()
        .map(|m| {
            (
                m.host_ip.map(|a| a.to_string()),
                m.host_port,
                m.container_port,
                m.proto,
            )
        })
        .collect();
    assert_eq!(
        publish,
        [
            (None, 8080, 80, Proto::Tcp),
            (Some("127.0.0.1".into()), 8443, 443, Proto::Tcp),
            (Some("::1".into()), 9443, 443, Proto::Tcp),
            (None, 5353, 53, Proto::Udp),
            (None, 7000, 7000, Proto::Tcp),
            (None, 7001, 7001, Proto::Tcp),
            (Some("0.0.0.0".into()), 18000, 8000, Proto::Tcp),
            // `9999`: a host port chosen from the ephemeral range (PUB-6).
            (None, 32768, 9999, Proto::Tcp),
        ]
    );
    let serve: Vec<String> = web
        .serve
        .iter()
        .map(|s| format!("{}:{}", s.proto, s.port))
        .collect();
    for want in [
        "tcp:80", "tcp:443", "udp:53", "tcp:7000", "tcp:7001", "tcp:8000", "tcp:9999", "tcp:3000",
        "udp:4000", "udp:4001", "tcp:5000",
    ] {
        assert!(
            serve.contains(&want.to_string()),
            "{want} not served: {serve:?}"
        );
    }
    // Replicas: NAME-1..N, the service name and its aliases on each.
    for n in 1..=3 {
        let c = cont(&p, &format!("api-{n}"));
        assert_eq!(c.endpoints[0].aliases, ["api", "backend"]);
        assert_eq!(c.serve.len(), 1);
    }
    assert!(p.containers.iter().all(|c| c.name != "api"));
    assert_eq!(net(&p, "host").driver, Driver::Host);
    assert_eq!(
        p.networks[cont(&p, "tool").endpoints[0].network].name,
        "host"
    );
    assert_eq!(net(&p, "none").driver, Driver::None);
    assert!(net(&p, "bridge").default);
    // Compose's `<project>_default` (Docker refuses a network named
    // `default`); the project is the file's directory here.
    assert_eq!(
        p.networks[cont(&p, "plain").endpoints[0].network].name,
        "vswitch_default"
    );
    // Refusals: listed in the output and in `notes`, in line order.
    // NH-7: `service:web` shares web's namespace.
    let web_i = p.containers.iter().position(|c| c.name == "web").unwrap();
    assert_eq!(cont(&p, "sidecar").netns_of, Some(web_i));
    let notes = i.notes.join("\n");
    for want in [
        "x-dns (line 2)",
        "services.web.{image, volumes, depends_on} (line 7): no effect on networking",
        "services.api.deploy.resources",
    ] {
        assert!(notes.contains(want), "{want:?} not in notes:\n{notes}");
    }
    for n in &i.notes {
        assert!(i.toml.contains(&format!("#   {n}\n")), "{n} not a comment");
    }
    let lines: Vec<usize> = i
        .notes
        .iter()
        .map(|n| {
            n.split("(line ")
                .nth(1)
                .unwrap()
                .split(')')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
}

#[test]
fn replicas_drop_statics_and_publish_once() {
    let (p, i) = plan_of(
        "services:\n  w:\n    scale: 2\n    ports: [\"8080:80\"]\n    networks:\n      n:\n        ipv4_address: 10.1.0.5\nnetworks:\n  n:\n    ipam:\n      config: [{subnet: 10.1.0.0/24}]\n",
    );
    assert_eq!(cont(&p, "w-1").publish.len(), 1);
    assert!(cont(&p, "w-2").publish.is_empty());
    assert_ne!(
        cont(&p, "w-1").endpoints[0].ip.unwrap().to_string(),
        "10.1.0.5"
    );
    let notes = i.notes.join("\n");
    assert!(notes.contains("static addresses"), "{notes}");
    assert!(notes.contains("first replica"), "{notes}");
    let (p, _) = plan_of("services:\n  w:\n    deploy: {replicas: 0}\n  x: {}\n");
    assert_eq!(p.containers.len(), 1);
    let (p, _) = plan_of("services:\n  w:\n    container_name: web01\n");
    assert_eq!(p.containers[0].name, "web01");
    assert_eq!(p.containers[0].endpoints[0].aliases, ["w"]);
}

#[test]
fn errors_name_file_line_column_and_key() {
    let cases: &[(&str, usize, &str, &str)] = &[
        (
            "services:\n  web:\n    ports: [\n",
            4,
            "yaml",
            "invalid YAML",
        ),
        (
            "services:\n  web: {}\n  web: {}\n",
            3,
            "yaml",
            "duplicated key",
        ),
        ("- a\n- b\n", 1, "compose", "is a mapping"),
        ("networks: {}\n", 1, "services", "needs `services`"),
        ("servics: {}\n", 1, "servics", "unknown top-level key"),
        (
            "services:\n  web:\n    imag: x\n",
            3,
            "services.web.imag",
            "unknown service key",
        ),
        (
            "services:\n  web:\n    networks: [nope]\n",
            3,
            "services.web.networks",
            "undefined network \"nope\"",
        ),
        (
            "services:\n  web:\n    ports: [\"80:80:80:80\"]\n",
            3,
            "services.web.ports[0]",
            "invalid",
        ),
        (
            "services:\n  web:\n    ports: [\"8080:80/icmp\"]\n",
            3,
            "services.web.ports[0]",
            "invalid protocol",
        ),
        (
            "services:\n  web:\n    ports:\n      - published: 80\n",
            4,
            "services.web.ports[0].target",
            "needs `target`",
        ),
        (
            "services:\n  web:\n    dns: 1.2.3\n",
            3,
            "services.web.dns[0]",
            "invalid IP address",
        ),
        (
            "services:\n  web:\n    network_mode: host\n    networks: [a]\nnetworks:\n  a: {}\n",
            3,
            "services.web.network_mode",
            "cannot be combined",
        ),
        (
            "services:\n  web:\n    scale: 2\n    container_name: x\n",
            3,
            "services.web.container_name",
            "more than one replica",
        ),
        (
            "services:\n  web: {}\nnetworks:\n  n:\n    ipam:\n      config:\n        - subnet: 10.0.0.0/33\n",
            7,
            "networks.n.ipam.config[0].subnet",
            "invalid subnet",
        ),
        (
            "services:\n  web: {}\nnetworks:\n  n:\n    drivr: bridge\n",
            5,
            "networks.n.drivr",
            "unknown network key",
        ),
        (
            "services:\n  web:\n    deploy: {replicas: many}\n",
            3,
            "services.web.deploy.replicas",
            "replica count",
        ),
    ];
    for &(text, line, key, msg) in cases {
        let e = err(text);
        assert_eq!(e.file, Path::new("c.yml"));
        assert_eq!((e.line, e.key.as_str()), (line, key), "{text:?}: {e}");
        assert!(e.column >= 1, "{e}");
        assert!(e.message.contains(msg), "{text:?}: {e}");
        assert!(e.to_string().starts_with(&format!("c.yml:{line}:")), "{e}");
    }
}

#[test]
fn refusals_are_listed_never_dropped() {
    let (_, i) = plan_of(
        "version: \"3.9\"\nservices:\n  w:\n    ports: [\"9000/sctp\"]\n    networks:\n      n:\n        priority: 10\nnetworks:\n  n:\n    driver: weave\n    labels: {a: b}\n    driver_opts:\n      com.docker.network.bridge.name: br-x\n    ipam:\n      driver: custom\n      config:\n        - subnet: 10.2.0.0/24\n        - subnet: 10.3.0.0/24\n          gateway: 10.3.0.1\nvolumes: {}\nsecrets: {}\n",
    );
    let notes = i.notes.join("\n");
    for want in [
        "version (line 1)",
        "services.w.ports[0] (line 4): sctp",
        "services.w.networks.n.priority (line 7)",
        "networks.n.driver (line 10): driver \"weave\"",
        "networks.n.labels (line 11)",
        "networks.n.driver_opts.com.docker.network.bridge.name (line 13)",
        "networks.n.ipam.driver (line 15)",
        "networks.n.ipam.config[1].gateway (line 19)",
        "volumes (line 20)",
        "secrets (line 21)",
    ] {
        assert!(notes.contains(want), "{want:?} not in:\n{notes}");
    }
    assert!(i.toml.starts_with("# Translated from c.yml"));
    let (_, clean) = plan_of("services:\n  w: {}\n");
    assert!(clean.notes.is_empty());
    assert!(clean.toml.contains("# Everything in it was translated."));
}

#[test]
fn the_repository_compose_example_round_trips() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/compose/webapp.yml");
    let i = import_file(&path).expect("imports");
    let p = scenario::parse_str(&path, &i.toml).expect("valid scenario");
    assert!(!p.containers.is_empty());
}

fn with_env(text: &str, vars: &[(&str, &str)]) -> Result<Imported, ComposeError> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    import_with_env(Path::new("c.yml"), text, &|name| {
        vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
}

#[test]
fn variables_are_interpolated() {
    let text = "services:\n  web:\n    ports: [\"${PORT:-8080}:80\", \"$OTHER:81\", \"${UNSET}82:82\"]\n    deploy:\n      replicas: ${N-2}\n    dns: ${DNS:?needs a resolver}\n    environment:\n      PRICE: $$5\n";
    let i = with_env(text, &[("OTHER", "9091"), ("DNS", "9.9.9.9")]).unwrap();
    let p = scenario::parse_str(Path::new("c.toml"), &i.toml)
        .unwrap_or_else(|e| panic!("{e}\n{}", i.toml));
    let web = cont(&p, "web-1");
    let hp: Vec<u16> = web.publish.iter().map(|m| m.host_port).collect();
    assert_eq!(hp, [8080, 9091, 82]);
    assert_eq!(p.containers.len(), 2);
    assert_eq!(web.dns[0].to_string(), "9.9.9.9");
    assert!(
        i.notes
            .iter()
            .any(|n| n.starts_with("$UNSET (line 3): variable is not set")),
        "{:?}",
        i.notes
    );
    // Set but empty: `:-` takes the default, `-` does not.
    let i = with_env(
        "services:\n  w:\n    ports: [\"${P:-7000}:80\"]\n",
        &[("P", "")],
    )
    .unwrap();
    assert!(i.toml.contains("publish = [\"7000:80\"]"), "{}", i.toml);
    let e = with_env(text, &[]).unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (6, "interpolation"));
    assert!(
        e.message
            .contains("required variable DNS is missing a value: needs a resolver"),
        "{e}"
    );
    let e = with_env("services:\n  w:\n    image: \"${oops\"\n", &[]).unwrap_err();
    assert!(e.message.contains("unclosed"), "{e}");
}

#[test]
fn profiles_choose_services() {
    let text = "services:\n  web: {}\n  debug:\n    profiles: [tools]\n    networks: [nope]\n";
    let i = with_env(text, &[]).unwrap();
    assert!(!i.toml.contains("name = \"debug\""));
    assert!(
        i.notes
            .iter()
            .any(|n| n.contains("only started with profile tools")),
        "{:?}",
        i.notes
    );
    // Active: translated (and its error found).
    let e = with_env(text, &[("COMPOSE_PROFILES", "x,tools")]).unwrap_err();
    assert!(e.message.contains("undefined network"), "{e}");
}

#[test]
fn discovery_checks_expect_what_docker_answers() {
    let text = "services:\n  web:\n    expose: [\"80\", \"53/udp\"]\n    networks: [front, back]\n  api:\n    scale: 2\n    networks:\n      back:\n        aliases: [svc]\n  other:\n    networks:\n      back:\n        aliases: [api]\n  lone:\n    networks: [island]\nnetworks:\n  front: {}\n  back: {}\n  island:\n    driver_opts:\n      com.docker.network.bridge.enable_icc: \"false\"\n";
    let i = imp(text);
    assert_eq!(
        i.services,
        [
            ("web".to_string(), vec!["web".to_string()]),
            (
                "api".to_string(),
                vec!["api-1".to_string(), "api-2".to_string()]
            ),
            ("other".to_string(), vec!["other".to_string()]),
            ("lone".to_string(), vec!["lone".to_string()]),
        ]
    );
    let p = scenario::parse_str(Path::new("c.toml"), &i.toml).unwrap();
    let checks = discovery_checks(&p, &i.services);
    let full = format!("{}{checks}", i.toml);
    let p2 =
        scenario::parse_str(Path::new("c.toml"), &full).unwrap_or_else(|e| panic!("{e}\n{full}"));
    let addr = |c: &str| {
        let c = cont(&p, c);
        let back = p.networks.iter().position(|n| n.name == "back").unwrap();
        c.endpoints
            .iter()
            .find(|e| e.network == back)
            .unwrap()
            .ip
            .unwrap()
            .to_string()
    };
    // `api` answers both replicas and the container aliased api (DNS-8).
    let mut api = [addr("api-1"), addr("api-2"), addr("other")];
    api.sort_by_key(|a| a.parse::<std::net::IpAddr>().unwrap());
    let want = format!(
        "query = \"api\"\nexpect = [{}]",
        api.iter().map(|a| q(a)).collect::<Vec<_>>().join(", ")
    );
    assert!(checks.contains(&want), "{checks}");
    // web shares front and back with nobody twice: asked from api-1 on back.
    assert!(
        checks.contains("from = \"api-1\"\nquery = \"web\""),
        "{checks}"
    );
    assert!(checks.contains("to = \"web@back:80\""), "{checks}");
    assert!(!checks.contains(":53"), "UDP is not probed: {checks}");
    // lone is alone on its network: nobody asks for it.
    assert!(!checks.contains("query = \"lone\""), "{checks}");
    assert!(p2.checks.len() >= 4);
}

#[test]
fn loader_errors_point_back_into_the_compose_file() {
    let text = "services:\n  web:\n    networks:\n      n:\n        ipv4_address: 10.9.9.9\nnetworks:\n  n:\n    driver: macvlan\n    ipam:\n      config: [{subnet: 10.1.0.0/24}]\n";
    let i = imp(text);
    let e = scenario::parse_str(Path::new("c.toml"), &i.toml).unwrap_err();
    assert_eq!(e.field, "container[0].networks[0].ip");
    let o = i.origin_of(&e.field).expect("an origin");
    assert_eq!(
        (o.line, o.column, o.key.as_str()),
        (4, 7, "services.web.networks.n")
    );
    let bad_mode = "services:\n  web:\n    networks: [n]\nnetworks:\n  n:\n    driver: macvlan\n    driver_opts:\n      macvlan_mode: sideways\n";
    let i = imp(bad_mode);
    let e = scenario::parse_str(Path::new("c.toml"), &i.toml).unwrap_err();
    assert!(e.field.starts_with("network[0]"), "{e}");
    let o = i.origin_of(&e.field).expect("an origin");
    assert_eq!((o.line, o.key.as_str()), (5, "networks.n"));
    // A prefix only counts at a field boundary.
    assert!(i.origin_of("container[0]x").is_none());
}

/// Docker's run vocabulary in compose: hostname, dns_search, dns_opt,
/// extra_hosts (list and mapping), links on the default bridge,
/// `network_mode: service:X` / `container:X`, port ranges.
const RUN_OPTS: &str = r#"services:
  db:
    network_mode: bridge
    hostname: db-host
    expose: ["5432"]
  app:
    network_mode: bridge
    links: [db, "db:database"]
    hostname: app.example
    dns_search: corp.example
    dns_opt: [ndots:2]
    extra_hosts:
      - "legacy:10.9.9.9"
      - "other=10.9.9.8"
    ports: ["8000-8002:80-82", "9000-9009:90", "127.0.0.1::91"]
  side:
    network_mode: "service:app"
  side2:
    network_mode: "container:db"
  web:
    extra_hosts:
      mirror: 10.9.9.7
    links: [db]
"#;

#[test]
fn run_vocabulary_translates() {
    let (p, i) = plan_of(RUN_OPTS);
    let app = cont(&p, "app");
    assert_eq!(app.host_name(), "app.example");
    assert_eq!(app.dns_search, ["corp.example"]);
    assert_eq!(app.dns_opt, ["ndots:2"]);
    let hosts: Vec<String> = app
        .extra_hosts
        .iter()
        .map(|(h, ip)| format!("{h}:{ip}"))
        .collect();
    assert_eq!(hosts, ["legacy:10.9.9.9", "other:10.9.9.8"]);
    let links: Vec<&str> = app.links.iter().map(|l| l.alias.as_str()).collect();
    assert_eq!(links, ["db", "database"]);
    let ports: Vec<(u16, u16)> = app
        .publish
        .iter()
        .map(|m| (m.host_port, m.container_port))
        .collect();
    assert_eq!(
        ports,
        [(8000, 80), (8001, 81), (8002, 82), (9000, 90), (32768, 91)]
    );
    let idx = |n: &str| p.containers.iter().position(|c| c.name == n).unwrap();
    assert_eq!(cont(&p, "side").netns_of, Some(idx("app")));
    assert_eq!(cont(&p, "side2").netns_of, Some(idx("db")));
    assert_eq!(cont(&p, "web").extra_hosts[0].0, "mirror");
    let notes = i.notes.join("\n");
    assert!(
        notes.contains("services.web.links[0]") && notes.contains("default bridge only"),
        "{notes}"
    );
    for k in ["hostname", "dns_search", "dns_opt", "extra_hosts"] {
        assert!(!notes.contains(&format!("services.app.{k}")), "{notes}");
        assert!(!notes.contains(k), "{k} listed as untranslated: {notes}");
    }
}

/// The default network is `<project>_default`, the project named as Compose
/// names it: top-level `name`, else COMPOSE_PROJECT_NAME, else the directory.
#[test]
fn default_network_takes_the_project_name() {
    let text = "services:\n  a:\n    image: x\n";
    let default_net = |i: &Imported| {
        let p = scenario::parse_str(Path::new("c.toml"), &i.toml).unwrap();
        p.networks[p.containers[0].endpoints[0].network]
            .name
            .clone()
    };
    let named = imp(&format!("name: My_App.2\n{text}"));
    assert_eq!(default_net(&named), "my_app2_default");
    let env = |k: &str| (k == "COMPOSE_PROJECT_NAME").then(|| "ci-run".to_string());
    let from_env = import_with_env(Path::new("/tmp/x/c.yml"), text, &env).unwrap();
    assert_eq!(default_net(&from_env), "ci-run_default");
    let dir = std::env::temp_dir().join("Shop Front");
    std::fs::create_dir_all(&dir).unwrap();
    let from_dir = import_with_env(&dir.join("compose.yml"), text, &|_| None).unwrap();
    assert_eq!(default_net(&from_dir), "shopfront_default");
}
