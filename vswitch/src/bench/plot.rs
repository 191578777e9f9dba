//! The chart of `vswitch bench --plot PATH`: per check, a bar per path at
//! the median of its headline figure (Gbit/s for TCP, received kpps for
//! UDP) with a min–max bar, drawn as plain SVG a browser opens. Written
//! here rather than with a plotting crate: a few rectangles and labels do
//! not need a font rasteriser or a drawing backend.

use std::fmt::Write;

use super::{BenchReport, CheckFigures};
use crate::scenario::plan::Proto;

const PANEL_H: f64 = 240.0;
const TOP: f64 = 40.0;
const LEFT: f64 = 70.0;
const BAR_W: f64 = 56.0;
const GAP: f64 = 34.0;
const COLOURS: [&str; 6] = [
    "#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#4a5568",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report as an SVG document.
pub fn to_svg(r: &BenchReport) -> String {
    let panels: Vec<(&str, &CheckFigures)> = r
        .scenarios
        .iter()
        .flat_map(|s| s.checks.iter().map(move |c| (s.file.as_str(), c)))
        .collect();
    let widest = panels.iter().map(|(_, c)| c.paths.len()).max().unwrap_or(1);
    let width = LEFT + widest as f64 * (BAR_W + GAP) + GAP + 20.0;
    let height = TOP + panels.len().max(1) as f64 * PANEL_H + 20.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="10" y="20" font-size="14">vswitch bench: {} rounds, {}, {}{}</text>"#,
        r.repeat,
        r.generator,
        esc(&r.date),
        r.commit
            .as_deref()
            .map(|c| format!(", {}", esc(c)))
            .unwrap_or_default()
    );
    for (i, (file, c)) in panels.iter().enumerate() {
        panel(&mut out, TOP + i as f64 * PANEL_H, file, c);
    }
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, y0: f64, file: &str, c: &CheckFigures) {
    let unit = match c.proto {
        Proto::Udp => "received kpps",
        Proto::Tcp => "Gbit/s",
    };
    let top = c
        .paths
        .iter()
        .filter_map(|p| p.headline(c.proto))
        .map(|s| s.max)
        .fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let plot_h = PANEL_H - 80.0;
    let base = y0 + 30.0 + plot_h;
    let _ = writeln!(
        out,
        r#"<text x="10" y="{:.1}" font-weight="bold">{} — {} ({unit})</text>"#,
        y0 + 18.0,
        esc(file),
        esc(&c.name)
    );
    let _ = writeln!(
        out,
        r#"<line x1="{LEFT}" y1="{:.1}" x2="{LEFT}" y2="{base:.1}" stroke="black"/>"#,
        y0 + 30.0
    );
    let right = LEFT + c.paths.len() as f64 * (BAR_W + GAP) + GAP;
    let _ = writeln!(
        out,
        r#"<line x1="{LEFT}" y1="{base:.1}" x2="{right:.1}" y2="{base:.1}" stroke="black"/>"#
    );
    for t in 0..=4 {
        let v = top * f64::from(t) / 4.0;
        let y = base - plot_h * f64::from(t) / 4.0;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            if top >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        );
    }
    for (j, p) in c.paths.iter().enumerate() {
        let x = LEFT + GAP + j as f64 * (BAR_W + GAP);
        let colour = COLOURS[j % COLOURS.len()];
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x + BAR_W / 2.0,
            base + 16.0,
            esc(&p.path)
        );
        let Some(s) = p.headline(c.proto) else {
            let _ = writeln!(
                out,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#c53030">no figure</text>"##,
                x + BAR_W / 2.0,
                base - 6.0
            );
            continue;
        };
        let h = |v: f64| plot_h * v / top;
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="{BAR_W}" height="{:.1}" fill="{colour}"><title>{}: median {:.2}, min {:.2}, max {:.2}</title></rect>"#,
            base - h(s.median),
            h(s.median),
            esc(&p.path),
            s.median,
            s.min,
            s.max
        );
        let cx = x + BAR_W / 2.0;
        let _ = writeln!(
            out,
            r#"<line x1="{cx:.1}" y1="{:.1}" x2="{cx:.1}" y2="{:.1}" stroke="black" stroke-width="2"/>"#,
            base - h(s.min),
            base - h(s.max)
        );
        let _ = writeln!(
            out,
            r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            base - h(s.max) - 6.0,
            if s.median >= 10.0 {
                format!("{:.0}", s.median)
            } else {
                format!("{:.2}", s.median)
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PathFigures, Sample, ScenarioFigures};
    use super::*;
    use crate::scenario::plan::Generator;

    #[test]
    fn every_path_gets_a_bar_or_a_note() {
        let mut ok = PathFigures {
            path: "userspace".into(),
            samples: vec![Sample {
                gbps: 18.0,
                kpps: 1500.0,
                loss: None,
            }],
            gbps: None,
            kpps: None,
            errors: Vec::new(),
        };
        ok.summarise();
        let none = PathFigures {
            path: "o<v>s".into(),
            samples: Vec::new(),
            gbps: None,
            kpps: None,
            errors: vec!["not installed".into()],
        };
        let r = BenchReport {
            date: "2026-12-01T00:00:00Z".into(),
            commit: Some("abc".into()),
            cpus: 2,
            generator: Generator::Iperf3,
            tap_io: crate::sys::uring::TapIo::IoUring,
            engine_workers: 1,
            offload: "off".into(),
            repeat: 3,
            scenarios: vec![ScenarioFigures {
                file: "s.toml".into(),
                checks: vec![CheckFigures {
                    name: "tcp".into(),
                    proto: Proto::Tcp,
                    size: 0,
                    streams: 1,
                    bidir: false,
                    seconds: 4,
                    paths: vec![ok, none],
                }],
            }],
            code: 0,
        };
        let svg = to_svg(&r);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect x=").count(), 1);
        assert!(svg.contains("no figure"));
        assert!(svg.contains("o&lt;v&gt;s"));
        assert!(svg.contains(">18.0<") || svg.contains(">18<"), "{svg}");
    }
}
