//! nftables for one machine namespace, equivalent to what Docker programs
//! with iptables (golden dumps cited in docker-semantics.md), in one table
//! named after the run (`table inet vswXXXXXX`), loaded with `nft -f -` from
//! a thread inside that namespace.
//!
//! - filter forward: replies accepted; published (DNATed) connections
//!   accepted (PUB-2); same-bridge traffic accepted or, with `icc = false`,
//!   dropped (BR-8; bridged frames reach this hook through br_netfilter,
//!   BR-9); traffic between two bridges dropped (BR-12); anything else into
//!   a bridge dropped (PUB-2); an internal bridge's egress dropped (BR-15).
//! - nat: `ip saddr <subnet> oifname != <bridge> masquerade` (BR-10/11,
//!   PUB-9); published ports DNAT from prerouting and output when the
//!   destination is a local address (PUB-1, PUB-11, host IP PUB-4).
//! - userland proxy (PUB-7, `userland_proxy = true`): docker-proxy makes the
//!   container see the bridge gateway as source for connections from the
//!   machine itself and from containers (hairpin). Here those connections
//!   are DNATed too, marked, and SNATed to the gateway: the same
//!   observation without a proxy process. External clients keep their
//!   address (PUB-3).
//! - hairpin NAT (PUB-8, `userland_proxy = false`): no `! -i bridge`
//!   restriction, MASQUERADE for locally-sourced traffic into a bridge and
//!   for a container calling its own published port.
//! - Without br_netfilter, `icc = false` is done in a `bridge` family table
//!   instead (frames between two ports of the bridge).

use std::fmt::Write as _;
use std::net::IpAddr;

use super::layout::{MachineLayout, gateway_endpoint};
use crate::backend::linux::{LinuxError, run_tool};
use crate::scenario::plan::{Driver, Plan, Proto};

/// Conntrack mark of connections that stand for docker-proxy's (PUB-7).
const PROXY_MARK: u32 = 0x7673_7750;

/// One published port of a container on this machine, in one family.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Publish {
    /// A specific host address (`None`: every address of the family).
    host_ip: Option<IpAddr>,
    host_port: u16,
    proto: Proto,
    /// The container's address of the family (IPv4 or IPv6).
    container_ip: IpAddr,
    container_port: u16,
}

impl Publish {
    /// `ip` or `ip6`: the nft keyword of the mapping's family.
    fn fam(&self) -> &'static str {
        if self.container_ip.is_ipv6() {
            "ip6"
        } else {
            "ip"
        }
    }

    /// `ipv4` or `ipv6`, for `meta nfproto`.
    fn nfproto(&self) -> &'static str {
        if self.container_ip.is_ipv6() {
            "ipv6"
        } else {
            "ipv4"
        }
    }

    /// The DNAT target: `a:p` or `[a6]:p`.
    fn to(&self) -> String {
        std::net::SocketAddr::new(self.container_ip, self.container_port).to_string()
    }
}

fn publishes(plan: &Plan, m: usize) -> Vec<Publish> {
    let mut out = Vec::new();
    for (ci, c) in plan.containers.iter().enumerate() {
        if c.machine != m {
            continue;
        }
        // BR-17: only on the gateway endpoint; PUB-10: only bridge networks.
        let Some(k) = gateway_endpoint(plan, ci) else {
            continue;
        };
        let e = &c.endpoints[k];
        let (Some(ip), Driver::Bridge) = (e.ip, plan.networks[e.network].driver) else {
            continue;
        };
        // V6-4: IPv6 DNAT to the container's IPv6 address with ip6tables.
        let ip6 = e.ip6.filter(|_| plan.machines[m].ip6tables);
        for p in &c.publish {
            let targets = [Some(IpAddr::V4(ip)), ip6.map(IpAddr::V6)];
            for target in targets.into_iter().flatten() {
                // PUB-4: without a host IP on both families; `0.0.0.0`
                // and `[::]` on theirs only.
                if p.host_ip.is_some_and(|h| h.is_ipv4() != target.is_ipv4()) {
                    continue;
                }
                out.push(Publish {
                    host_ip: p.host_ip.filter(|h| !h.is_unspecified()),
                    host_port: p.host_port,
                    proto: p.proto,
                    container_ip: target,
                    container_port: p.container_port,
                });
            }
        }
    }
    out
}

fn quoted_set(names: &[&str]) -> String {
    let items: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!("{{ {} }}", items.join(", "))
}

/// What every chain of a machine's ruleset is written from.
struct Rules<'a> {
    plan: &'a Plan,
    layout: &'a MachineLayout,
    /// Every bridge of the machine, as an nft set.
    all: String,
    proxy: bool,
    ip6tables: bool,
    pubs: Vec<Publish>,
}

/// The ruleset of machine `m`, or None when the machine has no bridge
/// network (nothing to filter or translate).
pub(super) fn machine_ruleset(
    plan: &Plan,
    m: usize,
    layout: &MachineLayout,
    table: &str,
    br_netfilter: bool,
) -> Option<String> {
    if layout.bridges.is_empty() {
        return None;
    }
    let bridges: Vec<&str> = layout
        .bridges
        .iter()
        .map(|b| b.iface.name.as_str())
        .collect();
    let r = Rules {
        plan,
        layout,
        all: quoted_set(&bridges),
        proxy: plan.machines[m].userland_proxy,
        ip6tables: plan.machines[m].ip6tables,
        pubs: publishes(plan, m),
    };
    let mut s = String::new();
    let _ = writeln!(s, "table inet {table} {{");
    r.filter_forward(&mut s);
    r.publish_chains(&mut s);
    r.nat_postrouting(&mut s);
    let _ = writeln!(s, "}}");
    if !br_netfilter {
        r.bridge_table(&mut s, table);
    }
    Some(s)
}

impl Rules<'_> {
    /// Forwarding between bridges, within them and out of them.
    fn filter_forward(&self, s: &mut String) {
        let (plan, layout, all) = (self.plan, self.layout, &self.all);
        let _ = writeln!(
            s,
            "  chain filter_forward {{\n    type filter hook forward priority filter; policy accept;\n    ct state established,related accept"
        );
        if !self.ip6tables {
            // V6-4, ip6tables off: IPv6 is routed, unfiltered and un-NATed.
            let _ = writeln!(s, "    meta nfproto ipv6 accept");
        }
        if !self.proxy {
            // Hairpin NAT goes bridge → bridge: ICC decides it (golden:icc=false).
            for b in layout
                .bridges
                .iter()
                .filter(|b| !plan.networks[b.network].icc)
            {
                let n = &b.iface.name;
                let _ = writeln!(
                    s,
                    "    iifname \"{n}\" oifname \"{n}\" drop comment \"icc-disabled\""
                );
            }
        }
        // Isolation between bridges (BR-12) comes before the published-port
        // accept, as DOCKER-ISOLATION-STAGE-1 comes before the DOCKER chain: a
        // hairpin-NATed connection from another network is dropped. Connections
        // that stand for docker-proxy's (marked) are the machine's own and pass.
        for b in &layout.bridges {
            let n = &b.iface.name;
            let _ = writeln!(
                s,
                "    iifname \"{n}\" oifname != \"{n}\" oifname {all} ct mark != {PROXY_MARK:#x} drop comment \"isolation\""
            );
        }
        let _ = writeln!(s, "    ct status dnat accept");
        for b in &layout.bridges {
            let n = &b.iface.name;
            let verdict = if plan.networks[b.network].icc {
                "accept"
            } else {
                "drop comment \"icc-disabled\""
            };
            let _ = writeln!(s, "    iifname \"{n}\" oifname \"{n}\" {verdict}");
        }
        let _ = writeln!(s, "    iifname {all} oifname {all} drop");
        let _ = writeln!(s, "    oifname {all} drop");
        let internal: Vec<&str> = layout
            .bridges
            .iter()
            .filter(|b| plan.networks[b.network].internal)
            .map(|b| b.iface.name.as_str())
            .collect();
        if !internal.is_empty() {
            let _ = writeln!(
                s,
                "    iifname {} drop comment \"internal-network\"",
                quoted_set(&internal)
            );
        }
        let _ = writeln!(s, "  }}");
    }

    /// Published ports: DNAT from outside, from the bridges (standing for
    /// docker-proxy) and from the machine itself.
    fn publish_chains(&self, s: &mut String) {
        let (proxy, all) = (self.proxy, &self.all);
        let dnat_rule = |p: &Publish, mark: bool| {
            let mut r = String::from("    ");
            match p.host_ip {
                Some(h) => {
                    let _ = write!(r, "{} daddr {h} ", p.fam());
                }
                None => {
                    let _ = write!(r, "meta nfproto {} ", p.nfproto());
                }
            }
            let _ = write!(r, "{} dport {} ", p.proto, p.host_port);
            if mark {
                let _ = write!(r, "ct mark set {PROXY_MARK:#x} ");
            }
            let _ = writeln!(r, "dnat {} to {}", p.fam(), p.to());
            r
        };
        let _ = writeln!(s, "  chain publish {{");
        for p in &self.pubs {
            s.push_str(&dnat_rule(p, false));
        }
        let _ = writeln!(s, "  }}");
        let _ = writeln!(s, "  chain publish_local {{");
        for p in &self.pubs {
            s.push_str(&dnat_rule(p, proxy));
        }
        let _ = writeln!(s, "  }}");
        // From the machine itself. IPv6 (observed on 20.10): ip6tables' OUTPUT
        // DNAT takes the connection, not docker-proxy, and the container sees
        // the machine's own address; IPv4 as from a container.
        let _ = writeln!(s, "  chain publish_host {{");
        for p in &self.pubs {
            s.push_str(&dnat_rule(p, proxy && !p.container_ip.is_ipv6()));
        }
        let _ = writeln!(s, "  }}");
        let _ = writeln!(
            s,
            "  chain nat_prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;"
        );
        if proxy {
            let _ = writeln!(
                s,
                "    fib daddr type local iifname {all} jump publish_local"
            );
        }
        let _ = writeln!(s, "    fib daddr type local jump publish\n  }}");
        let _ = writeln!(
            s,
            "  chain nat_output {{\n    type nat hook output priority -100; policy accept;\n    fib daddr type local jump publish_host\n  }}"
        );
    }

    /// Source NAT: masquerade, and the addresses docker-proxy would use.
    fn nat_postrouting(&self, s: &mut String) {
        let (plan, proxy, ip6tables) = (self.plan, self.proxy, self.ip6tables);
        let _ = writeln!(
            s,
            "  chain nat_postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;"
        );
        for b in &self.layout.bridges {
            let n = &b.iface.name;
            let net = &plan.networks[b.network];
            if proxy {
                if let Some((gw, _)) = b.iface.addrs.iter().find(|(a, _)| a.is_ipv4()) {
                    let _ = writeln!(
                        s,
                        "    meta nfproto ipv4 ct mark {PROXY_MARK:#x} oifname \"{n}\" snat ip to {gw}"
                    );
                }
                if ip6tables && let Some(gw6) = net.gateway6 {
                    let _ = writeln!(
                        s,
                        "    meta nfproto ipv6 ct mark {PROXY_MARK:#x} oifname \"{n}\" snat ip6 to {gw6}"
                    );
                }
            }
            if net.masquerade && !net.internal {
                for sub in &b.subnets {
                    let _ = writeln!(s, "    ip saddr {sub} oifname != \"{n}\" masquerade");
                }
                // V6-4: POSTROUTING -s <subnet6> ! -o <bridge> -j MASQUERADE.
                if ip6tables && let Some(sub6) = net.subnet6 {
                    let _ = writeln!(s, "    ip6 saddr {sub6} oifname != \"{n}\" masquerade");
                }
            }
            if !proxy {
                let _ = writeln!(s, "    oifname \"{n}\" fib saddr type local masquerade");
            }
        }
        if !proxy {
            for p in &self.pubs {
                let _ = writeln!(
                    s,
                    "    {f} saddr {ip} {f} daddr {ip} {} dport {} masquerade",
                    p.proto,
                    p.container_port,
                    f = p.fam(),
                    ip = p.container_ip
                );
            }
        }
        let _ = writeln!(s, "  }}");
    }

    /// Without br_netfilter the inet hooks never see bridged frames: ICC
    /// off is a bridge-family table of its own.
    fn bridge_table(&self, s: &mut String, table: &str) {
        let ports: Vec<&str> = self
            .layout
            .bridges
            .iter()
            .filter(|b| !self.plan.networks[b.network].icc)
            .flat_map(|b| b.ports.iter().map(String::as_str))
            .collect();
        if ports.is_empty() {
            return;
        }
        let set = quoted_set(&ports);
        let types = if self.ip6tables && self.plan.lan6.is_some() {
            "{ ip, ip6 }"
        } else {
            "ip"
        };
        let _ = writeln!(
            s,
            "table bridge {table} {{\n  chain filter_forward {{\n    type filter hook forward priority filter; policy accept;\n    iifname {set} oifname {set} ether type {types} drop comment \"icc-disabled\"\n  }}\n}}"
        );
    }
}

/// Loads `ruleset` with `nft -f -` in the calling thread's namespace.
pub(super) fn apply(ruleset: &str) -> Result<(), LinuxError> {
    run_tool("nft", &["-f", "-"], ruleset)
}
