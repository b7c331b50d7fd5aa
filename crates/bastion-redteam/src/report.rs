//! A campaign's report as one self-contained HTML page: the robustness curve (accuracy
//! against ε, one line per attack) as inline SVG, then the tables.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bastion_core::html::escape;
use bastion_ml::report::line_chart;

use crate::campaign::Report;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#222}\
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}\
th{background:#f3f3f3}td.l,th.l{text-align:left}svg{background:#fafafa;border:1px solid #ddd}";

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "–".into()
    }
}

pub fn html(title: &str, r: &Report) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<p>{} rows ({}), clean accuracy {}, seed {}; the model {} input gradients.</p>",
        r.rows,
        escape(r.rows_from),
        num(r.clean_accuracy),
        r.seed,
        if r.differentiable { "has" } else { "has no" }
    );
    // The robustness curve: accuracy at ε = 0 is the clean accuracy for every attack.
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for e in &r.evasion {
        series
            .entry(format!("{} {}", e.attack.as_str(), e.norm.as_str()))
            .or_insert_with(|| vec![(0.0, r.clean_accuracy)])
            .push((e.eps, e.robust_accuracy));
    }
    if !series.is_empty() {
        let x_max = r.evasion.iter().map(|e| e.eps).fold(0.0, f64::max);
        let series: Vec<(String, Vec<(f64, f64)>)> = series.into_iter().collect();
        b.push_str("<h2>Robustness curve</h2>");
        b.push_str(&line_chart(
            "Accuracy under attack",
            "epsilon (feature units)",
            "accuracy",
            x_max,
            &series,
            false,
        ));
        b.push_str("<h2>Evasion</h2><table><tr><th class=\"l\">attack</th><th class=\"l\">norm</th><th>ε</th><th>robust accuracy</th><th>success rate</th><th>queries</th><th>seconds</th></tr>");
        for e in &r.evasion {
            let _ = write!(
                b,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td></tr>",
                e.attack.as_str(),
                e.norm.as_str(),
                e.eps,
                num(e.robust_accuracy),
                num(e.success_rate),
                e.queries,
                e.seconds
            );
        }
        b.push_str("</table><h2>Minimal perturbation</h2><table><tr><th class=\"l\">attack</th><th class=\"l\">norm</th><th>median</th><th>turned</th><th>rows</th></tr>");
        for m in &r.minimal_perturbation {
            let _ = write!(
                b,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                m.attack.as_str(),
                m.norm.as_str(),
                m.median.map_or("above the largest ε".into(), num),
                m.turned,
                m.rows
            );
        }
        b.push_str("</table>");
    }
    if let Some(m) = &r.membership {
        let _ = write!(
            b,
            "<h2>Membership inference</h2><p>{} members against {} non-members (0.5 AUC and 0 advantage: no leak).</p><table><tr><th class=\"l\">attack</th><th>AUC</th><th>advantage</th></tr><tr><td class=\"l\">loss threshold</td><td>{}</td><td>{}</td></tr>",
            m.members,
            m.non_members,
            num(m.loss_threshold.auc),
            num(m.loss_threshold.advantage)
        );
        if let Some(s) = &m.shadow {
            let _ = write!(
                b,
                "<tr><td class=\"l\">shadow model</td><td>{}</td><td>{}</td></tr>",
                num(s.auc),
                num(s.advantage)
            );
        }
        b.push_str("</table>");
    }
    if !r.extraction.is_empty() {
        b.push_str("<h2>Model extraction (label-only)</h2><table><tr><th>queries</th><th>fidelity</th><th>surrogate accuracy</th></tr>");
        for x in &r.extraction {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                x.queries,
                num(x.fidelity),
                num(x.accuracy)
            );
        }
        b.push_str("</table>");
    }
    if !r.poisoning.is_empty() {
        b.push_str("<h2>Poisoning (flipped training labels)</h2><table><tr><th>flipped</th><th>rows</th><th>accuracy</th><th>drop</th></tr>");
        for p in &r.poisoning {
            let _ = write!(
                b,
                "<tr><td>{:.0}%</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                p.flipped * 100.0,
                p.rows_flipped,
                num(p.accuracy),
                num(p.drop)
            );
        }
        b.push_str("</table>");
    }
    if let Some(d) = &r.defence {
        let _ = write!(
            b,
            "<h2>Defence: adversarial training</h2><p>The same training with {} adversarial copies of each batch (ε {}). Clean accuracy {} without, {} with.</p><table><tr><th class=\"l\">attack</th><th class=\"l\">norm</th><th>ε</th><th>robust accuracy without</th><th>with</th></tr>",
            if d.train_steps == 1 {
                "FGSM".to_owned()
            } else {
                format!("{}-step PGD", d.train_steps)
            },
            d.train_eps,
            num(d.clean_accuracy.without),
            num(d.clean_accuracy.with)
        );
        for a in &d.robust {
            let _ = write!(
                b,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                a.attack.as_str(),
                a.norm.as_str(),
                a.eps,
                num(a.robust_accuracy.without),
                num(a.robust_accuracy.with)
            );
        }
        b.push_str("</table>");
    }
    if !r.skipped.is_empty() {
        b.push_str("<h2>Not run</h2><ul>");
        for s in &r.skipped {
            let _ = write!(b, "<li>{}: {}</li>", s.check.as_str(), escape(&s.why));
        }
        b.push_str("</ul>");
    }
    b.push_str("<h2>Metrics</h2><table><tr><th class=\"l\">name</th><th>value</th></tr>");
    for (k, v) in &r.metrics {
        let _ = write!(
            b,
            "<tr><td class=\"l\">{}</td><td>{}</td></tr>",
            escape(k),
            num(*v)
        );
    }
    b.push_str("</table>");
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body><h1>{t}</h1>{b}</body></html>\n",
        t = escape(title)
    )
}
