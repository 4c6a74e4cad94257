//! Charts of a `benches/compare.sh` run: connections/s and p99 latency
//! versus concurrency, one line per proxy, per workload and backend count.
//!
//! `cargo run --release --example plot -- RESULTS.jsonl OUT_DIR`
//! writes `OUT_DIR/conn_per_s.png` and `OUT_DIR/p99.png`. Text is drawn
//! with DejaVu Sans (`fonts-dejavu-core`, installed by `make deps`).

use std::collections::BTreeMap;
use std::error::Error;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const PROXIES: [(&str, RGBColor); 4] = [
    ("direct", RGBColor(120, 120, 120)),
    ("lastack", RGBColor(200, 40, 40)),
    ("haproxy", RGBColor(40, 90, 200)),
    ("nginx", RGBColor(30, 150, 60)),
];

#[derive(Debug, Clone)]
struct Row {
    proxy: String,
    workload: String,
    flows: u32,
    backends: u32,
    conn_per_s: f64,
    p99_ms: f64,
}

fn rows(path: &Path) -> Result<Vec<Row>, Box<dyn Error>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        out.push(Row {
            proxy: v["proxy"].as_str().unwrap_or("?").to_string(),
            workload: v["workload"].as_str().unwrap_or("?").to_string(),
            flows: v["flows"].as_u64().unwrap_or(0) as u32,
            backends: v["backends"].as_u64().unwrap_or(0) as u32,
            conn_per_s: v["conn_per_s"].as_f64().unwrap_or(0.0),
            p99_ms: v["p99_ms"].as_f64().unwrap_or(0.0),
        });
    }
    Ok(out)
}

/// One PNG: a panel per (workload, backends), `value` against flows.
fn chart(
    rows: &[Row],
    out: &Path,
    title: &str,
    value: fn(&Row) -> f64,
) -> Result<(), Box<dyn Error>> {
    // Only the concurrency sweep (not the sustained run, nor the kept-alive
    // run K: one concurrency, measured per request, in the table).
    let mut panels: BTreeMap<(String, u32), Vec<&Row>> = BTreeMap::new();
    let swept = |r: &&Row| !r.workload.contains("sustained") && !r.workload.starts_with('K');
    for r in rows.iter().filter(swept) {
        panels
            .entry((r.workload.clone(), r.backends))
            .or_default()
            .push(r);
    }
    let count = panels.len().max(1);
    let rows = if count > 3 { 2 } else { 1 };
    let cols = count.div_ceil(rows);
    let root =
        BitMapBackend::new(out, (420 * cols as u32, 40 + 400 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    for (area, ((workload, backends), points)) in
        root.split_evenly((rows, cols)).iter().zip(&panels)
    {
        let max_flows = points.iter().map(|r| r.flows).max().unwrap_or(1);
        let min_flows = points.iter().map(|r| r.flows).min().unwrap_or(1);
        let top = points.iter().map(|r| value(r)).fold(0.0, f64::max) * 1.15 + 1e-9;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{workload}, {backends} backend(s)"),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d((min_flows as f64 * 0.8)..(max_flows as f64 * 1.2), 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc("flows")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(("sans-serif", 12))
            .draw()?;
        for (proxy, color) in PROXIES {
            let mut line: Vec<(f64, f64)> = points
                .iter()
                .filter(|r| r.proxy == proxy)
                .map(|r| (r.flows as f64, value(r)))
                .collect();
            if line.is_empty() {
                continue;
            }
            line.sort_by(|a, b| a.0.total_cmp(&b.0));
            line.dedup_by(|a, b| a.0 == b.0);
            chart
                .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
                .label(proxy)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart.draw_series(
                line.iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        return Err("usage: plot RESULTS.jsonl OUT_DIR".into());
    }
    let font: &'static [u8] = Box::leak(
        std::fs::read(FONT)
            .map_err(|e| format!("{FONT}: {e} (apt install fonts-dejavu-core)"))?
            .into_boxed_slice(),
    );
    register_font("sans-serif", FontStyle::Normal, font).map_err(|_| "bad font")?;
    let rows = rows(Path::new(&args[1]))?;
    let out = Path::new(&args[2]);
    chart(
        &rows,
        &out.join("conn_per_s.png"),
        "Connections/s vs concurrency (higher is better)",
        |r| r.conn_per_s,
    )?;
    chart(
        &rows,
        &out.join("p99.png"),
        "p99 transaction latency, ms (lower is better)",
        |r| r.p99_ms,
    )?;
    println!("charts: {}", out.display());
    Ok(())
}
