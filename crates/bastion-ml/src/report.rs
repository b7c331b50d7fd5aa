//! An evaluation as a self-contained HTML page: the metrics, the confusion matrix, the
//! reliability table, per-slice metrics, and ROC, precision-recall and reliability curves as
//! inline SVG (no scripts, no external resources).

use std::fmt::Write as _;

use bastion_core::html::escape;

use crate::evaluate::Evaluation;
use crate::metrics::Curve;

const COLOURS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// A square chart of several polylines, with axis labels and a legend: `y` in [0, 1], `x` in
/// [0, `x_max`].
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    x_max: f64,
    series: &[(String, Vec<(f64, f64)>)],
    diagonal: bool,
) -> String {
    const S: f64 = 260.0;
    const M: f64 = 40.0;
    let x_max = if x_max > 0.0 && x_max.is_finite() {
        x_max
    } else {
        1.0
    };
    let px = |x: f64| M + (x / x_max).clamp(0.0, 1.0) * S;
    let py = |y: f64| M + (1.0 - y.clamp(0.0, 1.0)) * S;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{t}\">",
        w = S + 2.0 * M + 140.0,
        h = S + 2.0 * M,
        t = escape(title)
    );
    let _ = write!(
        svg,
        "<rect x=\"{M}\" y=\"{M}\" width=\"{S}\" height=\"{S}\" fill=\"none\" stroke=\"#999\"/>"
    );
    let tick = |v: f64| {
        let t = format!("{v:.3}");
        t.trim_end_matches('0').trim_end_matches('.').to_owned()
    };
    for i in 0..=4 {
        let v = i as f64 / 4.0;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{v}</text>",
            px(v * x_max),
            M + S + 14.0,
            tick(v * x_max),
            M - 4.0,
            py(v) + 3.0
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text><text x=\"12\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 12 {})\">{}</text><text x=\"{}\" y=\"20\" font-size=\"13\" text-anchor=\"middle\">{}</text>",
        M + S / 2.0,
        M + S + 32.0,
        escape(x_label),
        M + S / 2.0,
        M + S / 2.0,
        escape(y_label),
        M + S / 2.0,
        escape(title)
    );
    if diagonal {
        let _ = write!(
            svg,
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#ccc\" stroke-dasharray=\"4\"/>",
            px(0.0),
            py(0.0),
            px(x_max),
            py(1.0)
        );
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.2},{:.2}", px(x), py(y)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/><rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>",
            points.join(" "),
            M + S + 12.0,
            M + 14.0 * i as f64,
            M + S + 26.0,
            M + 9.0 + 14.0 * i as f64,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn metrics_table(m: &std::collections::BTreeMap<String, f64>) -> String {
    let mut t = String::from("<table><tr><th>metric</th><th>value</th></tr>");
    for (k, v) in m {
        let _ = write!(t, "<tr><td>{}</td><td>{v:.6}</td></tr>", escape(k));
    }
    t.push_str("</table>");
    t
}

/// Named curves as chart series.
fn points(curves: &[(String, Curve)]) -> Vec<(String, Vec<(f64, f64)>)> {
    curves
        .iter()
        .map(|(n, c)| {
            (
                n.clone(),
                c.x.iter().copied().zip(c.y.iter().copied()).collect(),
            )
        })
        .collect()
}

pub fn evaluation_html(title: &str, e: &Evaluation) -> String {
    let mut body = format!(
        "<h1>{}</h1><p>{} rows evaluated.</p><h2>Metrics</h2>{}",
        escape(title),
        e.rows,
        metrics_table(&e.metrics)
    );
    if let Some(c) = &e.classes {
        let (roc, pr) = (points(&c.roc), points(&c.pr));
        let reliability = vec![(
            "observed".to_owned(),
            c.calibration
                .bins
                .iter()
                .map(|b| (b.confidence, b.observed))
                .collect(),
        )];
        body.push_str("<h2>Curves</h2><div class=\"charts\">");
        body.push_str(&line_chart(
            "ROC",
            "false positive rate",
            "true positive rate",
            1.0,
            &roc,
            true,
        ));
        body.push_str(&line_chart(
            "Precision-recall",
            "recall",
            "precision",
            1.0,
            &pr,
            false,
        ));
        body.push_str(&line_chart(
            "Reliability",
            "mean predicted probability",
            "observed frequency",
            1.0,
            &reliability,
            true,
        ));
        body.push_str("</div><h2>Per class</h2><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>");
        for (name, s) in c.names.iter().zip(&c.report.per_class) {
            if let Some(s) = s {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr>",
                    escape(name),
                    s.precision,
                    s.recall,
                    s.f1,
                    s.support
                );
            }
        }
        body.push_str("</table><h2>Confusion matrix</h2><table><tr><th>true \\ predicted</th>");
        for n in &c.names {
            let _ = write!(body, "<th>{}</th>", escape(n));
        }
        body.push_str("</tr>");
        for (n, row) in c.names.iter().zip(&c.confusion) {
            let _ = write!(body, "<tr><th>{}</th>", escape(n));
            for v in row {
                let _ = write!(body, "<td>{v}</td>");
            }
            body.push_str("</tr>");
        }
        let _ = write!(
            body,
            "</table><h2>Calibration</h2><p>ECE {:.4}, MCE {:.4}</p><table><tr><th>bin</th><th>rows</th><th>mean confidence</th><th>observed</th></tr>",
            c.calibration.ece, c.calibration.mce
        );
        for b in &c.calibration.bins {
            let _ = write!(
                body,
                "<tr><td>{:.1}–{:.1}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td></tr>",
                b.lower, b.upper, b.count, b.confidence, b.observed
            );
        }
        body.push_str("</table>");
    }
    if !e.slices.is_empty() {
        body.push_str("<h2>Slices</h2>");
        for (k, s) in &e.slices {
            let _ = write!(
                body,
                "<h3>{} ({} rows)</h3>{}",
                escape(k),
                s.rows,
                metrics_table(&s.metrics)
            );
        }
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}.charts{{display:flex;flex-wrap:wrap;gap:1em}}</style></head><body>{body}</body></html>",
        escape(title)
    )
}
