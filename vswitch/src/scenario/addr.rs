//! Parsers for the small string syntaxes of the format: CIDRs, addresses,
//! services, published ports, parent links, MACs and names. Each returns a
//! message suitable for a [`super::span::Issue`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::plan::{MacAddr, Parent, Proto, Service};

/// Checks a container, network, machine or external name.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok_first = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok_first || !ok_rest {
        return Err(format!(
            "invalid {what} name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        ));
    }
    if name.len() > 63 {
        return Err(format!("{what} name {name:?} is longer than 63 characters"));
    }
    Ok(())
}

/// An IPv4 subnet with no host bits set.
pub(crate) fn cidr4(s: &str) -> Result<Ipv4Net, String> {
    if let Ok(n) = s.parse::<Ipv4Net>() {
        if n.network() != n.addr() {
            return Err(format!(
                "invalid subnet {s}: host bits are set, use {}",
                n.trunc()
            ));
        }
        return Ok(n);
    }
    if s.parse::<Ipv6Net>().is_ok() {
        return Err(format!(
            "{s} is an IPv6 subnet; an IPv4 CIDR is required here"
        ));
    }
    Err(format!(
        "invalid CIDR {s:?}: expected an IPv4 subnet like 10.1.0.0/24"
    ))
}

/// An IPv6 subnet with no host bits set.
pub(crate) fn cidr6(s: &str) -> Result<Ipv6Net, String> {
    if let Ok(n) = s.parse::<Ipv6Net>() {
        if n.network() != n.addr() {
            return Err(format!(
                "invalid subnet {s}: host bits are set, use {}",
                n.trunc()
            ));
        }
        return Ok(n);
    }
    if s.parse::<Ipv4Net>().is_ok() {
        return Err(format!(
            "{s} is an IPv4 subnet; an IPv6 CIDR is required here"
        ));
    }
    Err(format!(
        "invalid CIDR {s:?}: expected an IPv6 subnet like fd00:1::/64"
    ))
}

/// Any IP address.
pub(crate) fn ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>()
        .map_err(|_| format!("invalid IP address {s:?}"))
}

/// An IPv4 address.
pub(crate) fn ipv4(s: &str) -> Result<Ipv4Addr, String> {
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => Ok(a),
        Ok(IpAddr::V6(_)) => Err(format!(
            "{s} is an IPv6 address; an IPv4 address is required here"
        )),
        Err(_) => Err(format!("invalid IPv4 address {s:?}")),
    }
}

/// An IPv6 address.
pub(crate) fn ipv6(s: &str) -> Result<Ipv6Addr, String> {
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V6(a)) => Ok(a),
        Ok(IpAddr::V4(_)) => Err(format!(
            "{s} is an IPv4 address; an IPv6 address is required here"
        )),
        Err(_) => Err(format!("invalid IPv6 address {s:?}")),
    }
}

/// A port number 1–65535.
pub(crate) fn port(s: &str) -> Result<u16, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port {s:?}: expected a number 1-65535"));
    }
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("invalid port {s}: must be 1-65535")),
    }
}

/// `tcp`/`udp`.
pub(crate) fn proto(s: &str) -> Result<Proto, String> {
    match s {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        _ => Err(format!("invalid protocol {s:?}: expected tcp or udp")),
    }
}

/// A service `PROTO:PORT`.
pub(crate) fn service(s: &str) -> Result<Service, String> {
    let Some((p, n)) = s.split_once(':') else {
        return Err(format!(
            "invalid service {s:?}: expected \"tcp:PORT\" or \"udp:PORT\""
        ));
    };
    let proto = proto(p)
        .map_err(|_| format!("invalid service {s:?}: expected \"tcp:PORT\" or \"udp:PORT\""))?;
    let port = port(n).map_err(|e| format!("invalid service {s:?}: {e}"))?;
    Ok(Service { proto, port })
}

/// A `publish` entry before host ports are chosen: Docker's
/// `[HOSTIP:][HOSTPORT[-END]:]CONTAINERPORT[-END][/tcp|/udp]` (PUB-6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PublishSpec {
    /// Optional host IP.
    pub host_ip: Option<IpAddr>,
    /// Host ports as written: None for an automatically chosen one.
    pub host: Option<(u16, u16)>,
    /// Container ports (first, last).
    pub container: (u16, u16),
    /// Protocol.
    pub proto: Proto,
}

impl PublishSpec {
    /// Whether one host port is to be picked (automatically, or from a
    /// host range for a single container port) rather than given.
    pub fn picks(&self) -> bool {
        match self.host {
            None => true,
            Some((a, b)) => a != b && self.container.0 == self.container.1,
        }
    }
}

/// `80` or `8000-8002`.
fn port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(s)?;
            (p, p)
        }
    };
    if b < a {
        return Err(format!(
            "invalid port range {s}: the end is below the start"
        ));
    }
    Ok((a, b))
}

/// A `publish` entry (see [`PublishSpec`]).
pub(crate) fn publish_spec(s: &str) -> Result<PublishSpec, String> {
    let bad = |why: &str| {
        format!(
            "invalid published port {s:?}: {why} (expected [HOSTIP:][HOSTPORT[-END]:]CONTAINERPORT[-END][/tcp|/udp])"
        )
    };
    let (spec, proto) = match s.rsplit_once('/') {
        Some((spec, p)) => (
            spec,
            proto(p).map_err(|_| bad("protocol must be tcp or udp"))?,
        ),
        None => (s, Proto::Tcp),
    };
    let (host_ip, ports) = if let Some(rest) = spec.strip_prefix('[') {
        let (h, rest) = rest
            .split_once(']')
            .ok_or_else(|| bad("missing ']' after the IPv6 host address"))?;
        let h: Ipv6Addr = h.parse().map_err(|_| bad("bad IPv6 host address"))?;
        let rest = rest
            .strip_prefix(':')
            .ok_or_else(|| bad("expected ':' after the host address"))?;
        if !rest.contains(':') {
            return Err(bad(
                "both a host and a container port are required after a host address (an empty host port: `[::]::80`)",
            ));
        }
        (Some(IpAddr::V6(h)), rest)
    } else {
        match spec.matches(':').count() {
            0 | 1 => (None, spec),
            2 => {
                let (h, rest) = spec.split_once(':').unwrap_or_default();
                let h: Ipv4Addr = h.parse().map_err(|_| bad("bad host address"))?;
                (Some(IpAddr::V4(h)), rest)
            }
            _ => return Err(bad("wrong number of ':'")),
        }
    };
    let (h, c) = match ports.split_once(':') {
        Some((h, c)) => (h, c),
        None => ("", ports),
    };
    if h.is_empty() && ports.starts_with(':') && host_ip.is_none() {
        return Err(bad(
            "an empty host port needs a host address (`IP::PORT`), or write just the container port",
        ));
    }
    let container = port_range(c).map_err(|e| bad(&e))?;
    let host = if h.is_empty() {
        None
    } else {
        Some(port_range(h).map_err(|e| bad(&e))?)
    };
    if let Some((a, b)) = host
        && container.0 != container.1
        && b - a != container.1 - container.0
    {
        return Err(bad("host and container port ranges differ in size"));
    }
    if host.is_none() && container.0 != container.1 {
        // Docker takes one automatic port per container port; kept simple.
        return Err(bad(
            "a container port range needs a host port range of the same size",
        ));
    }
    Ok(PublishSpec {
        host_ip,
        host,
        container,
        proto,
    })
}

/// A published port with a fixed host port, `[HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]`.
pub(crate) fn publish(s: &str) -> Result<super::plan::PortMapping, String> {
    let p = publish_spec(s)?;
    match p.host {
        Some((a, b)) if a == b && p.container.0 == p.container.1 => Ok(super::plan::PortMapping {
            host_ip: p.host_ip,
            host_port: a,
            container_port: p.container.0,
            proto: p.proto,
            auto: None,
        }),
        _ => Err(format!("{s}: not one fixed port")),
    }
}

/// A macvlan/ipvlan parent: `eth0` or `eth0.VID`.
pub(crate) fn parent(s: &str, driver: &str) -> Result<Parent, String> {
    if s == "lo" || s.starts_with("lo.") {
        return Err(format!(
            "loopback interface is not a valid {driver} parent link"
        ));
    }
    if s == "eth0" {
        return Ok(Parent {
            name: s.to_string(),
            vlan: None,
        });
    }
    let vid = s
        .strip_prefix("eth0.")
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u16>().ok());
    match vid {
        Some(v) if (1..=4094).contains(&v) => Ok(Parent {
            name: s.to_string(),
            vlan: Some(v),
        }),
        _ => Err(format!(
            "invalid subinterface vlan name {s}, example formatting is eth0.10 (the machine's only link is eth0; VLAN ids are 1-4094)"
        )),
    }
}

/// A unicast MAC address.
pub(crate) fn mac(s: &str) -> Result<MacAddr, String> {
    let m: MacAddr = s.parse()?;
    if m.is_multicast() {
        return Err(format!("MAC address {s} is a multicast address"));
    }
    if m.0 == [0; 6] {
        return Err(format!("MAC address {s} is all zeros"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_forms() {
        let p = publish("8080:80").unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.proto),
            (None, 8080, 80, Proto::Tcp)
        );
        let p = publish("127.0.0.1:53:5353/udp").unwrap();
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(p.proto, Proto::Udp);
        let p = publish("[::1]:8080:80").unwrap();
        assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
        for bad in [
            "0:80",
            "8080:70000",
            "x:1:2",
            "1:2/sctp",
            "[::1:80:80",
            "a:b:c:d",
            ":80",
            "8000-8001:80-82",
            "80-82",
            "82-80:80",
        ] {
            assert!(publish(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidr_host_bits() {
        let e = cidr4("10.0.0.1/24").unwrap_err();
        assert!(e.contains("use 10.0.0.0/24"), "{e}");
        assert!(cidr4("10.0.0.0/33").is_err());
        assert!(cidr4("fd00::/64").is_err());
        assert!(cidr6("fd00::1/64").unwrap_err().contains("fd00::/64"));
    }

    #[test]
    fn parents() {
        assert_eq!(parent("eth0.10", "macvlan").unwrap().vlan, Some(10));
        assert!(parent("lo", "macvlan").unwrap_err().contains("loopback"));
        assert!(
            parent("eth0.0", "macvlan")
                .unwrap_err()
                .contains("invalid subinterface")
        );
        assert!(parent("eth0.4095", "macvlan").is_err());
        assert!(parent("eth1", "ipvlan").is_err());
    }

    #[test]
    fn names_and_services() {
        assert!(check_name("container", "a.b-c_d").is_ok());
        assert!(check_name("container", "-a").is_err());
        assert!(check_name("container", "").is_err());
        assert!(check_name("container", &"a".repeat(64)).is_err());
        assert_eq!(service("udp:53").unwrap().port, 53);
        assert!(service("tcp:0").is_err());
        assert!(service("icmp:1").is_err());
        assert!(mac("03:00:00:00:00:01").is_err());
        assert!(mac("02:42:ac:11:00:02").is_ok());
    }
}
