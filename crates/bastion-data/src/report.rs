//! Self-contained HTML reports: no scripts, no external assets; histograms as inline SVG.

use std::fmt::Write;

use crate::drift::{Bins, DriftReport};
use crate::profile::{Histogram, Profile};

pub use bastion_core::html::escape;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#222}\
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}\
th{background:#f3f3f3}td.l,th.l{text-align:left}section{margin-bottom:2rem}.drift{color:#b00;font-weight:bold}\
svg{background:#fafafa;border:1px solid #ddd}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body><h1>{t}</h1>{body}</body></html>\n",
        t = escape(title)
    )
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-3) {
        format!("{v:.4e}")
    } else {
        format!("{:.4}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// Bars as an SVG chart, with a title per bar for hover.
pub fn bars_svg(labels: &[String], series: &[(&str, &[u64])]) -> String {
    let (w, h, pad) = (480.0, 160.0, 20.0);
    let n = labels.len().max(1);
    let max = series
        .iter()
        .flat_map(|(_, s)| s.iter())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let totals: Vec<f64> = series
        .iter()
        .map(|(_, s)| s.iter().sum::<u64>().max(1) as f64)
        .collect();
    let share_mode = series.len() > 1;
    let max_share = series
        .iter()
        .zip(&totals)
        .flat_map(|((_, s), t)| s.iter().map(move |&c| c as f64 / t))
        .fold(0.0f64, f64::max)
        .max(1e-12);
    let slot = (w - 2.0 * pad) / n as f64;
    let bw = slot / series.len().max(1) as f64 * 0.9;
    let colors = ["#4a7fb5", "#d9822b"];
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\">"
    );
    for (si, ((name, counts), total)) in series.iter().zip(&totals).enumerate() {
        for (i, &c) in counts.iter().enumerate() {
            let frac = if share_mode {
                c as f64 / total / max_share
            } else {
                c as f64 / max
            };
            let bh = frac * (h - 2.0 * pad);
            let x = pad + i as f64 * slot + si as f64 * bw;
            let y = h - pad - bh;
            let label = labels.get(i).map(String::as_str).unwrap_or("");
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>{}: {} = {c}</title></rect>",
                colors[si % 2],
                escape(name),
                escape(label)
            );
        }
    }
    if let (Some(first), Some(last)) = (labels.first(), labels.last()) {
        let _ = write!(
            svg,
            "<text x=\"{pad}\" y=\"{}\" font-size=\"10\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            h - 5.0,
            escape(first),
            w - pad,
            h - 5.0,
            escape(last)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn histogram_svg(hist: &Histogram) -> String {
    let labels: Vec<String> = hist
        .edges
        .windows(2)
        .map(|e| format!("[{}, {})", num(e[0]), num(e[1])))
        .collect();
    bars_svg(&labels, &[("count", &hist.counts)])
}

pub fn profile_html(title: &str, p: &Profile) -> String {
    let mut body = format!("<p>{} rows, {} columns</p>", p.rows, p.columns.len());
    body.push_str("<table><tr><th class=\"l\">column</th><th class=\"l\">type</th><th>count</th><th>nulls</th><th>distinct</th><th>min</th><th>mean</th><th>std</th><th>max</th></tr>");
    for c in &p.columns {
        let (mn, mean, sd, mx) = c
            .numeric
            .as_ref()
            .map(|n| (num(n.min), num(n.mean), num(n.std), num(n.max)))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{mn}</td><td>{mean}</td><td>{sd}</td><td>{mx}</td></tr>",
            escape(&c.schema.name),
            escape(&c.schema.dtype),
            c.count,
            c.nulls,
            c.distinct,
            if c.distinct_exact { "" } else { " (est.)" }
        );
    }
    body.push_str("</table>");
    for c in &p.columns {
        let _ = write!(body, "<section><h2>{}</h2>", escape(&c.schema.name));
        if let Some(n) = &c.numeric {
            body.push_str("<table><tr>");
            for q in &n.quantiles {
                let _ = write!(body, "<th>p{}</th>", num(q.q * 100.0));
            }
            body.push_str("</tr><tr>");
            for q in &n.quantiles {
                let _ = write!(body, "<td>{}</td>", num(q.value));
            }
            body.push_str("</tr></table>");
            if !n.histogram.counts.is_empty() {
                body.push_str(&histogram_svg(&n.histogram));
            }
        }
        if !c.top.is_empty() {
            let labels: Vec<String> = c.top.iter().map(|v| v.value.clone()).collect();
            let counts: Vec<u64> = c.top.iter().map(|v| v.count).collect();
            body.push_str(&bars_svg(&labels, &[("count", &counts)]));
            body.push_str("<table><tr><th class=\"l\">value</th><th>count</th></tr>");
            for v in &c.top {
                let _ = write!(
                    body,
                    "<tr><td class=\"l\">{}</td><td>{}</td></tr>",
                    escape(&v.value),
                    v.count
                );
            }
            body.push_str("</table>");
        }
        body.push_str("</section>");
    }
    page(title, &body)
}

pub fn drift_html(title: &str, d: &DriftReport) -> String {
    let mut body = format!(
        "<p>Dataset drift: <b class=\"{}\">{}</b> — {} of {} columns drifted (correction: {:?}, α = {}, distance threshold {})</p>",
        if d.dataset_drift { "drift" } else { "" },
        if d.dataset_drift { "yes" } else { "no" },
        d.drifted_columns,
        d.columns.len(),
        d.options.correction,
        d.options.alpha,
        d.options.distance_threshold
    );
    body.push_str("<table><tr><th class=\"l\">column</th><th class=\"l\">test</th><th>score</th><th>threshold</th><th>KS D</th><th>PSI</th><th>JS</th><th>Hellinger</th><th>W/σ</th><th class=\"l\">drift</th></tr>");
    for c in &d.columns {
        let _ = write!(
            body,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{:?}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l{}\">{}</td></tr>",
            escape(&c.column),
            c.test,
            num(c.score),
            num(c.threshold),
            c.ks.map(|k| num(k.statistic)).unwrap_or_default(),
            num(c.psi),
            num(c.jensen_shannon),
            num(c.hellinger),
            c.wasserstein_normalized.map(num).unwrap_or_default(),
            if c.drift { " drift" } else { "" },
            if c.drift { "yes" } else { "no" }
        );
    }
    body.push_str("</table>");
    for c in &d.columns {
        let _ = write!(body, "<section><h2>{}</h2>", escape(&c.column));
        match &c.bins {
            Bins::Numeric {
                edges,
                reference,
                current,
            } => {
                let mut labels = vec![format!(
                    "< {}",
                    edges.first().map(|e| num(*e)).unwrap_or_default()
                )];
                labels.extend(
                    edges
                        .windows(2)
                        .map(|e| format!("[{}, {})", num(e[0]), num(e[1]))),
                );
                labels.push(format!(
                    "≥ {}",
                    edges.last().map(|e| num(*e)).unwrap_or_default()
                ));
                body.push_str(&bars_svg(
                    &labels,
                    &[("reference", reference), ("current", current)],
                ));
            }
            Bins::Categorical {
                categories,
                reference,
                current,
            } => {
                body.push_str(&bars_svg(
                    categories,
                    &[("reference", reference), ("current", current)],
                ));
            }
        }
        body.push_str("</section>");
    }
    page(title, &body)
}
