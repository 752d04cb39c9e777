//! A run's timeline as an SVG picture: operations per node over time (acknowledged above the
//! line, failed or unknown below, in red), the fault windows shaded, the heal marked.

use std::fmt::Write;

use crate::history::{Op, Outcome};

/// A shaded span of the run.
#[derive(Clone, Debug)]
pub struct Window {
    /// From, in ms since the run began.
    pub from_ms: u64,
    /// To.
    pub to_ms: u64,
    /// What happened.
    pub label: String,
}

const WIDTH: f64 = 960.0;
const LEFT: f64 = 90.0;
const ROW: f64 = 70.0;
const TOP: f64 = 40.0;
const BUCKET_MS: u64 = 250;

/// Draws the timeline of `history` over `span_ms`, with `windows` shaded; rows are the nodes
/// (`nodes` of them) and the session clients.
pub fn svg(title: &str, history: &[Op], nodes: usize, span_ms: u64, windows: &[Window]) -> String {
    let rows = nodes + 1;
    let height = TOP + ROW * rows as f64 + 40.0;
    let plot = WIDTH - LEFT - 20.0;
    let x = |ms: u64| LEFT + plot * (ms.min(span_ms) as f64) / (span_ms.max(1) as f64);
    let buckets = (span_ms / BUCKET_MS + 1) as usize;
    // counts[row][bucket] = (ok, not ok)
    let mut counts = vec![vec![(0u32, 0u32); buckets]; rows];
    for op in history {
        let row = op.node.unwrap_or(nodes);
        let bucket = (op.end_ms / BUCKET_MS) as usize;
        if let Some(slot) = counts.get_mut(row).and_then(|r| r.get_mut(bucket)) {
            if op.outcome == Outcome::Ok {
                slot.0 += 1;
            } else {
                slot.1 += 1;
            }
        }
    }
    let peak = counts.iter().flatten().map(|&(ok, bad)| ok.max(bad)).max().unwrap_or(1).max(1);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(out, r#"<text x="{LEFT}" y="18" font-size="14">{}</text>"#, escape(title));
    for window in windows {
        let (a, b) = (x(window.from_ms), x(window.to_ms));
        let _ = writeln!(
            out,
            r##"<rect x="{a:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="orange" fill-opacity="0.25"/><text x="{:.1}" y="{:.1}" fill="#a05000">{}</text>"##,
            (b - a).max(1.0),
            ROW * rows as f64,
            a + 3.0,
            TOP - 4.0,
            escape(&window.label)
        );
    }
    let half = ROW / 2.0 - 6.0;
    let bar = (plot / buckets as f64).max(1.0);
    for (row, counts) in counts.iter().enumerate() {
        let mid = TOP + ROW * row as f64 + ROW / 2.0;
        let name = if row < nodes { format!("node {row}") } else { "sessions".to_owned() };
        let _ = writeln!(out, r#"<text x="8" y="{:.1}">{name}</text>"#, mid + 4.0);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{mid:.1}" y2="{mid:.1}" stroke="#999"/>"##,
            LEFT + plot
        );
        for (bucket, &(ok, bad)) in counts.iter().enumerate() {
            let left = x(bucket as u64 * BUCKET_MS);
            if ok > 0 {
                let h = half * f64::from(ok) / f64::from(peak);
                let _ = writeln!(
                    out,
                    r##"<rect x="{left:.1}" y="{:.1}" width="{bar:.1}" height="{h:.1}" fill="#3a7"/>"##,
                    mid - h
                );
            }
            if bad > 0 {
                let h = half * f64::from(bad) / f64::from(peak);
                let _ = writeln!(
                    out,
                    r##"<rect x="{left:.1}" y="{mid:.1}" width="{bar:.1}" height="{h:.1}" fill="#d33"/>"##
                );
            }
        }
    }
    let axis = TOP + ROW * rows as f64 + 14.0;
    let step_s = if span_ms > 40_000 { 10 } else { 2 };
    for s in (0..=span_ms / 1000).step_by(step_s) {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{axis:.1}" text-anchor="middle">{s}s</text>"#,
            x(s * 1000)
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="{:.1}" fill="#555">green: acknowledged operations per {BUCKET_MS} ms (peak {peak}); red: failed or unknown</text>"##,
        axis + 18.0
    );
    out.push_str("</svg>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
