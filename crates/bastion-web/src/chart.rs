//! Charts as inline SVG: line charts over any range (metrics by step, drift by window,
//! several runs overlaid) and bar charts (histograms, from the data crate's reports).

use maud::{Markup, PreEscaped, html};

use crate::fmt::num;

const COLOURS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A bound drawn across a chart (a threshold).
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub y: f64,
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-12 {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// Several series as lines with points, axes with five ticks each, and a legend. The
/// ranges fit the data; non-finite points are left out. Each point has a tooltip.
pub fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    rule: Option<Rule>,
) -> Markup {
    const W: f64 = 480.0;
    const H: f64 = 240.0;
    const L: f64 = 64.0;
    const R: f64 = 16.0;
    const T: f64 = 16.0;
    const B: f64 = 44.0;
    let (x0, x1) = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
    let (y0, y1) = range(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain(rule.map(|r| r.y)),
    );
    let px = |x: f64| L + (x - x0) / (x1 - x0) * (W - L - R);
    let py = |y: f64| T + (1.0 - (y - y0) / (y1 - y0)) * (H - T - B);
    let legend_h = 18.0 * series.len() as f64;
    let total_h = H + legend_h + 4.0;
    html! {
        figure {
            svg xmlns="http://www.w3.org/2000/svg" viewBox={"0 0 " (W) " " (total_h)} width=(W) height=(total_h) role="img" aria-label=(title) {
                title { (title) }
                rect x=(L) y=(T) width=(W - L - R) height=(H - T - B) fill="none" stroke="#c8ccd4" {}
                @for i in 0..=4 {
                    @let fx = x0 + (x1 - x0) * i as f64 / 4.0;
                    @let fy = y0 + (y1 - y0) * i as f64 / 4.0;
                    text x=(px(fx)) y=(H - B + 14.0) font-size="12" text-anchor="middle" { (num(fx)) }
                    text x=(L - 4.0) y=(py(fy) + 3.0) font-size="12" text-anchor="end" { (num(fy)) }
                    line x1=(L) x2=(W - R) y1=(py(fy)) y2=(py(fy)) stroke="#eef0f3" {}
                }
                text x=((L + W - R) / 2.0) y=(H - 6.0) font-size="13" text-anchor="middle" { (x_label) }
                text x="12" y=((T + H - B) / 2.0) font-size="13" text-anchor="middle" transform={"rotate(-90 12 " ((T + H - B) / 2.0) ")"} { (y_label) }
                @if let Some(r) = rule {
                    line x1=(L) x2=(W - R) y1=(py(r.y)) y2=(py(r.y)) stroke="#b3261e" stroke-dasharray="4 3" {
                        title { "threshold " (num(r.y)) }
                    }
                }
                @for (i, s) in series.iter().enumerate() {
                    @let colour = COLOURS[i % COLOURS.len()];
                    @let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
                    @let path = pts.iter().map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1))).collect::<Vec<_>>().join(" ");
                    polyline points=(path) fill="none" stroke=(colour) stroke-width="1.8" {}
                    @if pts.len() <= 200 {
                        @for p in &pts {
                            circle cx=(format!("{:.1}", px(p.0))) cy=(format!("{:.1}", py(p.1))) r="2.5" fill=(colour) {
                                title { (s.name) ": " (num(p.0)) " → " (num(p.1)) }
                            }
                        }
                    }
                    rect x=(L) y=(H + 4.0 + 18.0 * i as f64) width="10" height="10" fill=(colour) {}
                    text x=(L + 14.0) y=(H + 14.0 + 18.0 * i as f64) font-size="13" { (s.name) }
                }
            }
        }
    }
}

/// Bars with a label each; two series are drawn side by side as shares of their totals.
pub fn bars(labels: &[String], series: &[(&str, &[u64])]) -> Markup {
    // The data crate's reports draw the same histograms; its SVG escapes every label.
    html! { figure { (PreEscaped(bastion_data::report::bars_svg(labels, series))) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_fit_the_data_and_escape_names() {
        let svg = lines(
            "loss",
            "step",
            "value",
            &[Series {
                name: "<run a>".into(),
                points: vec![(0.0, 5.0), (1.0, 3.0), (2.0, f64::NAN)],
            }],
            Some(Rule { y: 4.0 }),
        )
        .into_string();
        assert!(svg.contains("&lt;run a&gt;"));
        assert!(svg.contains("polyline"));
        assert_eq!(
            svg.matches("<circle").count(),
            2,
            "the NaN point is left out"
        );
        assert!(svg.contains("threshold 4"));
        // A flat or empty series still draws.
        let flat = lines(
            "x",
            "x",
            "y",
            &[Series {
                name: "c".into(),
                points: vec![(1.0, 1.0)],
            }],
            None,
        );
        assert!(flat.into_string().contains("<circle"));
        assert!(
            lines("x", "x", "y", &[], None)
                .into_string()
                .contains("<svg")
        );
    }
}
