//! Graphviz DOT text of a scenario: one cluster per machine holding its
//! host stack, networks and containers; the `lan`, externals and overlays
//! outside; checks as coloured directed edges.

use std::fmt::Write as _;

use super::{CheckArrow, driver_colour, lan_vlans, layout};
use crate::scenario::plan::{Driver, Node, Plan};

/// A DOT double-quoted string.
fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A label of several lines.
fn lines(name: &str, rest: &[String]) -> String {
    let mut all = vec![name.to_string()];
    all.extend(rest.iter().cloned());
    q(&all.join("\n")).replace("\n", "\\n")
}

/// The DOT id of a node.
fn node_id(plan: &Plan, n: Node) -> String {
    match n {
        Node::Container(i) => q(&format!("container:{}", plan.containers[i].name)),
        Node::External(i) => q(&format!("external:{}", plan.externals[i].name)),
        Node::Machine(i) => q(&format!("machine:{}", plan.machines[i].name)),
    }
}

fn net_id(plan: &Plan, n: usize) -> String {
    q(&format!("network:{}", plan.networks[n].name))
}

fn write_machine(o: &mut String, plan: &Plan, m: usize) {
    let mach = &plan.machines[m];
    let _ = writeln!(o, "  subgraph {} {{", q(&format!("cluster_{}", mach.name)));
    let _ = writeln!(
        o,
        "    label={}; style=rounded; color=\"#444444\";",
        q(&format!("machine {}", mach.name))
    );
    let _ = writeln!(
        o,
        "    {} [label={}, shape=box, style=filled, fillcolor=\"#ececec\"];",
        node_id(plan, Node::Machine(m)),
        lines(
            &format!("{} host stack", mach.name),
            &[format!("eth0 {}", mach.ip)]
        )
    );
    for (n, net) in plan.networks.iter().enumerate() {
        if net.driver == Driver::Overlay || net.machine.unwrap_or(0) != m {
            continue;
        }
        let _ = writeln!(
            o,
            "    {} [label={}, shape=box, style=\"rounded,filled\", fillcolor=\"{}\"];",
            net_id(plan, n),
            lines(
                &format!("network {}", net.name),
                &layout::network_lines(plan, n)
            ),
            driver_colour(net.driver)
        );
    }
    for (c, cont) in plan.containers.iter().enumerate() {
        if cont.machine == m {
            let _ = writeln!(
                o,
                "    {} [label={}, shape=box];",
                node_id(plan, Node::Container(c)),
                lines(&cont.name, &layout::container_lines(plan, c))
            );
        }
    }
    o.push_str("  }\n");
}

/// The DOT text of `plan`, with `arrows` (from a report) as coloured edges.
pub fn to_dot(plan: &Plan, arrows: &[CheckArrow]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "digraph {} {{", q(&plan.name));
    o.push_str("  rankdir=TB; compound=true; fontname=\"DejaVu Sans\";\n");
    o.push_str("  node [fontname=\"DejaVu Sans\", fontsize=10];\n");
    o.push_str("  edge [fontname=\"DejaVu Sans\", fontsize=10];\n");
    let _ = writeln!(o, "  label={};", q(&plan.name));
    let mut lan = vec![plan.lan.to_string()];
    let vlans = lan_vlans(plan);
    if !vlans.is_empty() {
        let v: Vec<String> = vlans.iter().map(u16::to_string).collect();
        lan.push(format!("802.1Q VLANs {}", v.join(", ")));
    }
    let _ = writeln!(
        o,
        "  \"lan\" [label={}, shape=box, style=filled, fillcolor=\"#555555\", fontcolor=white];",
        lines("lan", &lan)
    );
    for (i, x) in plan.externals.iter().enumerate() {
        let id = node_id(plan, Node::External(i));
        let _ = writeln!(
            o,
            "  {id} [label={}, shape=box, style=filled, fillcolor=\"#fff8dc\"];",
            lines(
                &format!("external {}", x.name),
                &layout::external_lines(plan, i)
            )
        );
        let style = x
            .vlan
            .map(|v| format!(", style=dashed, label={}", q(&format!("vlan {v}"))))
            .unwrap_or_default();
        let _ = writeln!(o, "  {id} -> \"lan\" [dir=none{style}];");
    }
    for (n, net) in plan.networks.iter().enumerate() {
        if net.driver == Driver::Overlay {
            let _ = writeln!(
                o,
                "  {} [label={}, shape=box, style=\"rounded,filled,dashed\", fillcolor=\"{}\"];",
                net_id(plan, n),
                lines(
                    &format!("overlay {}", net.name),
                    &layout::network_lines(plan, n)
                ),
                driver_colour(net.driver)
            );
        }
    }
    for m in 0..plan.machines.len() {
        write_machine(&mut o, plan, m);
        let _ = writeln!(
            o,
            "  \"lan\" -> {} [dir=none];",
            node_id(plan, Node::Machine(m))
        );
    }
    for (n, net) in plan.networks.iter().enumerate() {
        if net.driver == Driver::Overlay {
            for m in 0..plan.machines.len() {
                let _ = writeln!(
                    o,
                    "  {} -> {} [dir=none, style=dashed, color=\"#c0692a\", label=\"vxlan\"];",
                    node_id(plan, Node::Machine(m)),
                    net_id(plan, n)
                );
            }
        } else if net.parent.is_some() {
            let m = net.machine.unwrap_or(0);
            let _ = writeln!(
                o,
                "  {} -> {} [dir=none, style=dotted, label={}];",
                node_id(plan, Node::Machine(m)),
                net_id(plan, n),
                q(&net
                    .parent
                    .as_ref()
                    .map_or(String::new(), |p| p.name.clone()))
            );
        }
    }
    for (c, cont) in plan.containers.iter().enumerate() {
        for e in &cont.endpoints {
            let _ = writeln!(
                o,
                "  {} -> {} [dir=none];",
                net_id(plan, e.network),
                node_id(plan, Node::Container(c))
            );
        }
    }
    for a in arrows {
        for &(from, to) in &a.pairs {
            let _ = writeln!(
                o,
                "  {} -> {} [color=\"{}\", fontcolor=\"{}\", penwidth=2, constraint=false, label={}, tooltip={}];",
                node_id(plan, from),
                node_id(plan, to),
                a.status.colour(),
                a.status.colour(),
                q(&format!("#{}", a.index)),
                q(&format!("{} — {}", a.label, a.status.word()))
            );
        }
    }
    o.push_str("}\n");
    o
}
