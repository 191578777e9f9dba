//! The SVG drawing of a [`Layout`]. Plain SVG 1.1 elements with
//! presentation attributes only, so browsers and rsvg render it alike.

use std::fmt::Write as _;

use super::layout::{self, LINE, Layout, Rect, fits};
use super::{CheckArrow, Status, driver_colour, lan_vlans};
use crate::scenario::plan::{Driver, Plan};

/// XML-escapes text and attribute values.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

/// Cuts `s` to `n` characters, marking the cut.
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

struct Svg(String);

impl Svg {
    fn text(&mut self, x: f64, y: f64, size: f64, bold: bool, fill: &str, s: &str) {
        let weight = if bold { " font-weight=\"bold\"" } else { "" };
        let _ = writeln!(
            self.0,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\"{weight} fill=\"{fill}\">{}</text>",
            esc(s)
        );
    }

    fn rect(&mut self, r: &Rect, fill: &str, stroke: &str, extra: &str) {
        let _ = writeln!(
            self.0,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"5\" fill=\"{fill}\" stroke=\"{stroke}\"{extra}/>",
            r.x, r.y, r.w, r.h
        );
    }

    fn line(&mut self, a: (f64, f64), b: (f64, f64), stroke: &str, width: f64, extra: &str) {
        let _ = writeln!(
            self.0,
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{stroke}\" stroke-width=\"{width}\"{extra}/>",
            a.0, a.1, b.0, b.1
        );
    }

    /// A box with a bold name and body lines.
    /// A box with a bold name and body lines; a browser shows the whole
    /// text (lines cut to the box included) as its tooltip.
    fn labelled_box(&mut self, r: &Rect, fill: &str, stroke: &str, name: &str, lines: &[String]) {
        let mut all = vec![name.to_string()];
        all.extend(lines.iter().cloned());
        let _ = writeln!(self.0, "<g><title>{}</title>", esc(&all.join("\n")));
        self.rect(r, fill, stroke, "");
        let n = fits(r.w);
        self.text(r.x + 6.0, r.y + 15.0, 12.0, true, "#111", &cut(name, n));
        for (i, l) in lines.iter().enumerate() {
            let y = r.y + 15.0 + LINE * (i as f64 + 1.0);
            self.text(r.x + 6.0, y, 10.5, false, "#333", &cut(l, n + 2));
        }
        self.0.push_str("</g>\n");
    }
}

const DASH: &str = " stroke-dasharray=\"6 4\"";

fn draw_lan(s: &mut Svg, plan: &Plan, l: &Layout) {
    let bar = Rect {
        x: 14.0,
        y: l.lan_y - 3.0,
        w: l.width - 28.0,
        h: 6.0,
    };
    s.rect(&bar, "#555555", "#555555", "");
    let mut label = format!("lan {}", plan.lan);
    let vlans = lan_vlans(plan);
    if !vlans.is_empty() {
        let v: Vec<String> = vlans.iter().map(u16::to_string).collect();
        label.push_str(&format!(" · 802.1Q VLANs {}", v.join(", ")));
    }
    s.text(bar.x + 4.0, l.lan_y + 18.0, 12.0, true, "#333", &label);
    for (i, r) in l.externals.iter().enumerate() {
        let x = &plan.externals[i];
        let extra = if x.vlan.is_some() { DASH } else { "" };
        s.line((r.cx(), r.bottom()), (r.cx(), l.lan_y), "#555", 2.0, extra);
        if let Some(v) = x.vlan {
            let y = (r.bottom() + l.lan_y) / 2.0 + 4.0;
            s.text(r.cx() + 5.0, y, 10.5, false, "#555", &format!("vlan {v}"));
        }
        s.labelled_box(
            r,
            "#fff8dc",
            "#8a7a3a",
            &format!("external {}", x.name),
            &layout::external_lines(plan, i),
        );
    }
}

fn draw_machine(s: &mut Svg, plan: &Plan, l: &Layout, m: usize) {
    let mb = &l.machines[m];
    let mach = &plan.machines[m];
    s.line(
        (mb.rect.cx(), mb.rect.y),
        (mb.rect.cx(), l.lan_y),
        "#555",
        2.0,
        "",
    );
    let up = format!("eth0 {}", mach.ip);
    s.text(mb.rect.cx() + 5.0, l.lan_y + 34.0, 10.5, false, "#333", &up);
    s.rect(&mb.rect, "#fafafa", "#444", " stroke-width=\"1.5\"");
    s.rect(&mb.header, "#ececec", "#bbb", "");
    let title = format!("machine {} · host stack {}", mach.name, mach.ip);
    s.text(
        mb.header.x + 6.0,
        mb.header.y + 17.0,
        12.5,
        true,
        "#111",
        &title,
    );
    for col in &mb.columns {
        let net = &plan.networks[col.network];
        let attached: Vec<usize> = plan
            .containers
            .iter()
            .enumerate()
            .filter(|(_, c)| c.machine == m && c.endpoints.iter().any(|e| e.network == col.network))
            .map(|(i, _)| i)
            .collect();
        if let Some(&last) = attached.last() {
            let end = l.containers[last].y + 11.0;
            s.line(
                (col.bus_x, col.rect.y + 10.0),
                (col.bus_x, end),
                "#555",
                1.5,
                "",
            );
            s.line(
                (col.bus_x, col.rect.y + 10.0),
                (col.rect.x, col.rect.y + 10.0),
                "#555",
                1.5,
                "",
            );
        }
        for &c in &attached {
            let r = l.containers[c];
            let y = r.y + 11.0;
            let to = if r.x > col.bus_x { r.x } else { r.right() };
            s.line((col.bus_x, y), (to, y), "#555", 1.5, "");
            let _ = writeln!(
                s.0,
                "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"#555\"/>",
                col.bus_x
            );
        }
        let stroke = if net.driver == Driver::Overlay {
            "#c0692a"
        } else {
            "#555"
        };
        s.labelled_box(
            &col.rect,
            driver_colour(net.driver),
            stroke,
            &format!("network {}", net.name),
            &layout::network_lines(plan, col.network),
        );
    }
    for (c, cont) in plan.containers.iter().enumerate() {
        if cont.machine == m {
            let lines = layout::container_lines(plan, c);
            s.labelled_box(&l.containers[c], "#ffffff", "#333", &cont.name, &lines);
        }
    }
}

fn draw_tunnels(s: &mut Svg, plan: &Plan, l: &Layout) {
    for &(n, y) in &l.tunnels {
        let xs: Vec<(f64, f64)> = l
            .machines
            .iter()
            .flat_map(|mb| mb.columns.iter())
            .filter(|c| c.network == n)
            .map(|c| (c.rect.cx(), c.rect.y))
            .collect();
        let (Some(first), Some(last)) = (xs.first(), xs.last()) else {
            continue;
        };
        let colour = "#c0692a";
        s.line((first.0, y), (last.0, y), colour, 2.5, DASH);
        for &(x, top) in &xs {
            s.line((x, y), (x, top), colour, 2.0, DASH);
        }
        let vni = plan.networks[n]
            .vni
            .map(|v| format!(" vni {v}"))
            .unwrap_or_default();
        let label = format!("overlay {} (VXLAN{vni})", plan.networks[n].name);
        s.text(first.0 + 6.0, y - 3.0, 10.0, false, colour, &label);
    }
}

fn draw_arrows(s: &mut Svg, l: &Layout, arrows: &[CheckArrow]) {
    let mut k = 0usize;
    for a in arrows {
        let colour = a.status.colour();
        let mut labelled = false;
        for &(from, to) in &a.pairs {
            if from == to {
                continue;
            }
            let (ra, rb) = (l.rect_of(from), l.rect_of(to));
            let (ax, ay, bx, by) = (ra.cx(), ra.cy(), rb.cx(), rb.cy());
            let (dx, dy) = (bx - ax, by - ay);
            let len = (dx * dx + dy * dy).sqrt().max(1.0);
            // Bend each arrow a little differently so parallel ones part;
            // between boxes of one column, out to the right of the column
            // so the curve clears the boxes in between.
            let bend = 30.0 + 12.0 * (k % 5) as f64;
            let ((mx, my), (x1, y1), (x2, y2)) = if dx.abs() < 1.0 {
                let c = (ra.right() + 10.0 + bend + 0.4 * dy.abs(), (ay + by) / 2.0);
                (c, (ra.right(), ay - 4.0), (rb.right(), by + 4.0))
            } else {
                let c = (
                    (ax + bx) / 2.0 - dy / len * bend,
                    (ay + by) / 2.0 + dx / len * bend,
                );
                (c, ra.edge_towards(c), rb.edge_towards(c))
            };
            let _ = writeln!(
                s.0,
                "<path d=\"M {x1:.1} {y1:.1} Q {mx:.1} {my:.1} {x2:.1} {y2:.1}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" stroke-opacity=\"0.85\" marker-end=\"url(#arrow-{})\"/>",
                a.status.word().replace(' ', "-")
            );
            // One label per check (a reach check has many arrows).
            if !labelled {
                let (lx, ly) = ((x1 + 2.0 * mx + x2) / 4.0, (y1 + 2.0 * my + y2) / 4.0);
                let label = format!("#{}", a.index);
                s.text(lx + 3.0, ly - 3.0, 11.0, true, colour, &label);
                labelled = true;
            }
            k += 1;
        }
    }
}

fn legend_line(a: &CheckArrow) -> String {
    let mut t = format!("{} — {}", a.label, a.status.word());
    if !a.observed.is_empty() {
        t.push_str(&format!(" (observed {})", a.observed));
    }
    if a.pairs.is_empty() {
        t.push_str(" [target not drawn]");
    }
    t
}

fn draw_legend(s: &mut Svg, l: &Layout, arrows: &[CheckArrow]) {
    let mut x = 20.0;
    let y = l.legend_y;
    for d in [
        Driver::Bridge,
        Driver::Macvlan,
        Driver::Ipvlan,
        Driver::Overlay,
        Driver::None,
        Driver::Host,
    ] {
        let r = Rect {
            x,
            y: y - 10.0,
            w: 14.0,
            h: 12.0,
        };
        s.rect(&r, driver_colour(d), "#555", "");
        s.text(x + 18.0, y, 11.0, false, "#333", &d.to_string());
        x += 90.0;
    }
    for (i, a) in arrows.iter().enumerate() {
        let y = y + 22.0 + 16.0 * i as f64;
        let r = Rect {
            x: 20.0,
            y: y - 10.0,
            w: 12.0,
            h: 12.0,
        };
        s.rect(&r, a.status.colour(), a.status.colour(), "");
        let t = legend_line(a);
        s.text(38.0, y, 11.0, false, "#222", &cut(&t, fits(l.width - 40.0)));
    }
}

/// The SVG document of `plan`, with `arrows` (from a report) drawn over it.
pub fn to_svg(plan: &Plan, arrows: &[CheckArrow]) -> String {
    let title = format!("{} — {}", plan.source.display(), plan.name);
    let longest = arrows
        .iter()
        .map(|a| legend_line(a).chars().count() as f64 * 6.7 + 60.0)
        .fold(title.chars().count() as f64 * 9.5 + 40.0, f64::max);
    let l = layout::layout(plan, arrows.len(), longest.min(2400.0));
    let mut s = Svg(String::new());
    let _ = writeln!(
        s.0,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" font-family=\"DejaVu Sans, Verdana, sans-serif\">",
        w = l.width,
        h = l.height
    );
    s.0.push_str("<defs>\n");
    for st in [Status::Pass, Status::Fail, Status::Error, Status::NotRun] {
        let _ = writeln!(
            s.0,
            "<marker id=\"arrow-{}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"{}\"/></marker>",
            st.word().replace(' ', "-"),
            st.colour()
        );
    }
    s.0.push_str("</defs>\n");
    let _ = writeln!(
        s.0,
        "<rect x=\"0\" y=\"0\" width=\"{:.0}\" height=\"{:.0}\" fill=\"#ffffff\"/>",
        l.width, l.height
    );
    s.text(20.0, 26.0, 15.0, true, "#111", &title);
    draw_lan(&mut s, plan, &l);
    for m in 0..plan.machines.len() {
        draw_machine(&mut s, plan, &l, m);
    }
    draw_tunnels(&mut s, plan, &l);
    draw_arrows(&mut s, &l, arrows);
    draw_legend(&mut s, &l, arrows);
    s.0.push_str("</svg>\n");
    s.0
}
