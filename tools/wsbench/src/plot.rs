//! Latency percentile curves as a hand-written SVG: x is the percentile on a
//! log scale of 1/(1-p) (50%, 90%, 99%, 99.9%, ...), y is the latency on a
//! log scale, one line per run.

use std::fmt::Write;

use crate::stats::Report;

const W: f64 = 820.0;
const H: f64 = 480.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 8] =
    ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// x position of percentile `p` (0..100): log10(1/(1-p)), capped at 6 nines.
fn nines(p: f64) -> f64 {
    let q = (1.0 - p / 100.0).max(1e-6);
    -q.log10()
}

/// Draws one curve per report (its label, or `run N`) into an SVG document.
pub fn svg(title: &str, reports: &[&Report]) -> String {
    let series: Vec<(String, Vec<(f64, f64)>)> = reports
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.latency.curve.is_empty())
        .map(|(i, r)| {
            let name = if r.label.is_empty() { format!("run {}", i + 1) } else { r.label.clone() };
            let pts = r.latency.curve.iter().map(|&(p, v)| (nines(p), v.max(0.001))).collect();
            (name, pts)
        })
        .collect();
    let max_x = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(1.0f64, f64::max)
        .ceil()
        .max(2.0);
    let (mut lo, mut hi) = (f64::MAX, 0.0f64);
    for (_, p) in &series {
        for &(_, v) in p {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if series.is_empty() {
        lo = 1.0;
        hi = 10.0;
    }
    let ylo = lo.log10().floor();
    let yhi = hi.log10().ceil().max(ylo + 1.0);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let sx = |x: f64| LEFT + pw * x / max_x;
    let sy = |v: f64| TOP + ph * (1.0 - (v.log10() - ylo) / (yhi - ylo));

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" font-size="15" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        esc(title)
    );
    // Grid and axes.
    for i in 0..=(max_x as usize) {
        let x = sx(i as f64);
        let label = match i {
            0 => "0%".to_string(),
            1 => "90%".to_string(),
            n => format!("99.{}%", "9".repeat(n - 2)).replace("99.%", "99%"),
        };
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            TOP + ph
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            TOP + ph + 18.0
        );
    }
    let mut d = ylo as i32;
    while d <= yhi as i32 {
        let v = 10f64.powi(d);
        let y = sy(v);
        let label = if v >= 1e6 {
            format!("{} s", v / 1e6)
        } else if v >= 1e3 {
            format!("{} ms", v / 1e3)
        } else {
            format!("{v} us")
        };
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            LEFT + pw
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
            LEFT - 6.0,
            y + 4.0
        );
        d += 1;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + pw / 2.0,
        H - 15.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">latency</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    // Curves and legend.
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> =
            pts.iter().map(|&(x, v)| format!("{:.1},{:.1}", sx(x), sy(v))).collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let ly = TOP + 10.0 + 20.0 * i as f64;
        let lx = LEFT + pw + 12.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/>"#,
            lx + 22.0
        );
        let _ = writeln!(s, r#"<text x="{}" y="{}">{}</text>"#, lx + 28.0, ly + 4.0, esc(name));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Latency, new_histogram};

    #[test]
    fn draws_curves() {
        let mut h = new_histogram();
        for v in 1..1000u64 {
            h.record(v * 1000).unwrap();
        }
        let r = Report {
            label: "a<b".into(),
            latency: Latency::from_histogram(&h),
            ..Default::default()
        };
        let out = svg("t", &[&r]);
        assert!(out.starts_with("<svg"));
        assert!(out.contains("polyline"));
        assert!(out.contains("a&lt;b"));
        assert!(out.contains("99.9%"));
    }
}
