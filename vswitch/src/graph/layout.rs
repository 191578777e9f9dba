//! A deterministic layered layout: title, externals, the `lan` bar,
//! machines side by side with one column per network, each container on a
//! row of its own under its first network (so the stubs joining it to its
//! other networks never cross another container), legend last.

use crate::scenario::plan::{Driver, Node, Plan};

/// Width of one network column.
pub(crate) const COL_W: f64 = 210.0;
/// Height of one text line.
pub(crate) const LINE: f64 = 13.0;
/// Characters that fit in a box of `w` pixels at the body font size.
pub(crate) fn fits(w: f64) -> usize {
    ((w - 12.0) / 6.7).max(4.0) as usize
}

/// An axis-aligned box.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub fn cx(&self) -> f64 {
        self.x + self.w / 2.0
    }
    pub fn cy(&self) -> f64 {
        self.y + self.h / 2.0
    }
    pub fn bottom(&self) -> f64 {
        self.y + self.h
    }
    pub fn right(&self) -> f64 {
        self.x + self.w
    }
    /// The point where the line from the centre towards `p` leaves the box.
    pub fn edge_towards(&self, p: (f64, f64)) -> (f64, f64) {
        let (cx, cy) = (self.cx(), self.cy());
        let (dx, dy) = (p.0 - cx, p.1 - cy);
        if dx == 0.0 && dy == 0.0 {
            return (cx, cy);
        }
        let tx = if dx == 0.0 {
            f64::INFINITY
        } else {
            (self.w / 2.0) / dx.abs()
        };
        let ty = if dy == 0.0 {
            f64::INFINITY
        } else {
            (self.h / 2.0) / dy.abs()
        };
        let t = tx.min(ty).min(1.0);
        (cx + dx * t, cy + dy * t)
    }
}

/// One network drawn inside one machine.
#[derive(Clone, Debug)]
pub(crate) struct Column {
    /// Index into `Plan::networks`.
    pub network: usize,
    /// The network's box.
    pub rect: Rect,
    /// x of its vertical bus line.
    pub bus_x: f64,
}

/// One machine.
#[derive(Clone, Debug)]
pub(crate) struct MachineBox {
    pub rect: Rect,
    /// The host-stack label (check arrows start and end here).
    pub header: Rect,
    pub columns: Vec<Column>,
}

/// Positions of everything.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub width: f64,
    pub height: f64,
    pub externals: Vec<Rect>,
    pub lan_y: f64,
    pub machines: Vec<MachineBox>,
    /// Per container (plan order).
    pub containers: Vec<Rect>,
    /// Per overlay network: the y of its tunnel line.
    pub tunnels: Vec<(usize, f64)>,
    /// Top of the legend.
    pub legend_y: f64,
}

/// Text lines of a container box after its name.
pub(crate) fn container_lines(plan: &Plan, c: usize) -> Vec<String> {
    let mut lines = super::endpoint_lines(plan, c);
    // NH-7: a container in another's namespace has no endpoints of its own.
    if let Some(owner) = plan.containers[c].netns_of {
        lines.push(format!(
            "network_mode container:{}",
            plan.containers[owner].name
        ));
    }
    lines.extend(super::publish_lines(plan, c));
    let serve = &plan.containers[c].serve;
    if !serve.is_empty() {
        let s: Vec<String> = serve
            .iter()
            .map(|s| format!("{}:{}", s.proto, s.port))
            .collect();
        lines.push(format!("serves {}", s.join(" ")));
    }
    lines
}

/// Text lines of an external box after its name.
pub(crate) fn external_lines(plan: &Plan, x: usize) -> Vec<String> {
    let e = &plan.externals[x];
    let mut lines = vec![e.ip.to_string()];
    if let Some(v) = e.vlan {
        lines.push(format!("vlan {v}"));
    }
    if e.gateway {
        lines.push("gateway of lan".into());
    }
    if !e.dns.is_empty() {
        lines.push(format!("dns server ({} names)", e.dns.len()));
    }
    if !e.serve.is_empty() {
        let s: Vec<String> = e
            .serve
            .iter()
            .map(|s| format!("{}:{}", s.proto, s.port))
            .collect();
        lines.push(format!("serves {}", s.join(" ")));
    }
    lines
}

/// Text lines of a network box after its name.
pub(crate) fn network_lines(plan: &Plan, n: usize) -> Vec<String> {
    let net = &plan.networks[n];
    let mut first = net.driver.to_string();
    if net.default {
        first.push_str(" (default)");
    }
    if let Some(s) = net.primary() {
        first.push_str(&format!(" {}", s.net));
    }
    let mut lines = vec![first];
    let mut extra = Vec::new();
    if let Some(p) = &net.parent {
        extra.push(format!("parent {}", p.name));
    }
    if let Some(m) = net.mode {
        extra.push(format!("{m:?}").to_lowercase());
    }
    if let Some(v) = net.vni {
        extra.push(format!("vni {v}"));
    }
    if net.internal {
        extra.push("internal".into());
    }
    if let Some(s6) = net.subnet6 {
        lines.push(s6.to_string());
    }
    if !extra.is_empty() {
        lines.push(extra.join(" · "));
    }
    lines
}

/// Box height for a name plus `lines` lines.
pub(crate) fn box_h(lines: usize) -> f64 {
    22.0 + LINE * lines as f64
}

/// The networks drawn in machine `m`, in plan order: its own, then the
/// overlays (every machine has those).
fn machine_networks(plan: &Plan, m: usize) -> Vec<usize> {
    let own = plan
        .networks
        .iter()
        .enumerate()
        .filter(|(_, n)| n.driver != Driver::Overlay && n.machine.unwrap_or(0) == m);
    let overlays = plan
        .networks
        .iter()
        .enumerate()
        .filter(|(_, n)| n.driver == Driver::Overlay);
    own.chain(overlays).map(|(i, _)| i).collect()
}

fn place_externals(plan: &Plan, top: f64) -> Vec<Rect> {
    let h = (0..plan.externals.len())
        .map(|x| box_h(external_lines(plan, x).len()))
        .fold(0.0, f64::max);
    (0..plan.externals.len())
        .map(|i| Rect {
            x: 20.0 + i as f64 * 200.0,
            y: top,
            w: 180.0,
            h,
        })
        .collect()
}

/// Lays `plan` out; `legend_lines` reserves room for the check legend and
/// `min_width` for the longest text line outside the boxes.
pub(crate) fn layout(plan: &Plan, legend_lines: usize, min_width: f64) -> Layout {
    let externals = place_externals(plan, 44.0);
    let ext_bottom = externals.iter().map(|r| r.bottom()).fold(44.0, f64::max);
    let lan_y = ext_bottom + 40.0;
    let top = lan_y + 50.0;
    let overlays: Vec<usize> = (0..plan.networks.len())
        .filter(|&n| plan.networks[n].driver == Driver::Overlay)
        .collect();
    let tunnels: Vec<(usize, f64)> = overlays
        .iter()
        .enumerate()
        .map(|(k, &n)| (n, top + 52.0 + k as f64 * 16.0))
        .collect();
    let net_y = top + 44.0 + overlays.len() as f64 * 16.0 + 4.0;
    let net_h = (0..plan.networks.len())
        .map(|n| box_h(network_lines(plan, n).len()))
        .fold(0.0, f64::max);
    let mut containers = vec![Rect::default(); plan.containers.len()];
    let mut machines = Vec::new();
    let mut x = 20.0;
    let mut bottom = net_y + net_h;
    for m in 0..plan.machines.len() {
        let nets = machine_networks(plan, m);
        let mach = &plan.machines[m];
        // Room for the header `machine NAME · host stack IP`.
        let header = (mach.name.len() + mach.ip.to_string().len() + 22) as f64 * 7.6 + 24.0;
        let w = (nets.len().max(1) as f64 * COL_W + 10.0)
            .max(240.0)
            .max(header);
        let columns: Vec<Column> = nets
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                let cx = x + 10.0 + k as f64 * COL_W;
                Column {
                    network: n,
                    rect: Rect {
                        x: cx + 14.0,
                        y: net_y,
                        w: COL_W - 24.0,
                        h: net_h,
                    },
                    bus_x: cx + 8.0,
                }
            })
            .collect();
        let mut y = net_y + net_h + 22.0;
        for (c, cont) in plan.containers.iter().enumerate() {
            if cont.machine != m {
                continue;
            }
            let first = cont.endpoints.first().map(|e| e.network);
            let k = columns
                .iter()
                .position(|col| Some(col.network) == first)
                .unwrap_or(0);
            let h = box_h(container_lines(plan, c).len());
            containers[c] = Rect {
                x: x + 10.0 + k as f64 * COL_W + 22.0,
                y,
                w: COL_W - 32.0,
                h,
            };
            y += h + 12.0;
        }
        bottom = bottom.max(y);
        machines.push(MachineBox {
            rect: Rect {
                x,
                y: top,
                w,
                h: 0.0,
            },
            header: Rect {
                x: x + 8.0,
                y: top + 6.0,
                w: w - 16.0,
                h: 26.0,
            },
            columns,
        });
        x += w + 40.0;
    }
    for mb in &mut machines {
        mb.rect.h = bottom + 10.0 - top;
    }
    let legend_y = bottom + 40.0;
    let height = legend_y + 40.0 + legend_lines as f64 * 16.0;
    let width = [
        x,
        externals.last().map_or(0.0, |r| r.right() + 20.0),
        760.0,
        min_width,
    ]
    .into_iter()
    .fold(0.0, f64::max);
    Layout {
        width,
        height,
        externals,
        lan_y,
        machines,
        containers,
        tunnels,
        legend_y,
    }
}

impl Layout {
    /// The box arrows to or from `node` attach to.
    pub fn rect_of(&self, node: Node) -> Rect {
        match node {
            Node::Container(i) => self.containers[i],
            Node::External(i) => self.externals[i],
            Node::Machine(i) => self.machines[i].header,
        }
    }
}
