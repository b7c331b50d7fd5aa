//! One closed window against the reference: feature drift (the data crate's tests, their
//! automatic choice and the multiple-testing correction, unchanged), prediction drift,
//! missing and out-of-range rates, and the serving health of the requests in it. The
//! result carries the named signals alert rules are written over.

use bastion_data::drift::{self, ColumnDrift, DriftOptions, DriftReport, SkippedColumn};
use bastion_data::schema::Kind;
use bastion_policy::{Facts, Value};
use serde::Serialize;

use crate::observation::Cell;
use crate::performance::Estimate;
use crate::reference::{Column, Reference, Values, category_counts};
use crate::window::Window;

/// Fewer sampled rows than this in a window: no drift verdict (it would be noise).
pub const MIN_DRIFT_ROWS: usize = 20;

/// Drift settings for live windows: the data crate's tests and correction, with two
/// choices made for windows.
/// - p-value tests (KS, chi-square) for every reference size: a fixed distance threshold
///   ignores how small a window is. Between two samples of one normal distribution (2,000
///   reference rows, 500-row windows), the normalised Wasserstein distance exceeded the
///   0.1 threshold in 9 of 12 windows, the KS test with the FDR correction in none
///   (`tests/simulation.rs`): it holds the dataset verdict's false-alarm rate near α per
///   window.
/// - the asymptotic KS p-value: the exact one costs reference × window steps per column
///   per window, and at these sizes the two agree to a few parts in a thousand.
pub fn window_drift_options() -> DriftOptions {
    DriftOptions {
        small_sample: u64::MAX,
        ks_exact_max_cells: 0,
        ..DriftOptions::default()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowReport {
    pub start_ms: i64,
    pub end_ms: i64,
    pub requests: usize,
    pub rows: usize,
    /// Rows whose features the server kept (what drift is measured on).
    pub sampled_rows: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction: Option<ColumnDrift>,
    /// Performance estimated from the answers' confidence (no labels needed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
    pub missing_rate: f64,
    pub out_of_range_rate: f64,
    pub error_rate: f64,
    pub rejected_rate: f64,
    pub flagged_rate: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_error_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_latency_p99_ms: Option<f64>,
    /// The window's signals by name, as alert rules see them.
    pub signals: Facts,
}

/// Evaluates a window against the reference.
pub fn evaluate(reference: &Reference, window: &Window, opts: &DriftOptions) -> WindowReport {
    let obs = &window.observations;
    let sampled_rows: usize = obs.iter().map(|o| o.sampled_rows()).sum();
    let (mut missing, mut out_of_range, mut cells) = (0usize, 0usize, 0usize);
    let mut compared = Vec::new();
    let mut skipped: Vec<SkippedColumn> = reference
        .skipped
        .iter()
        .map(|(c, why)| SkippedColumn {
            column: c.clone(),
            reason: why.clone(),
        })
        .collect();
    // Each observation's columns are walked once, not looked up once per column.
    let mut by_column: std::collections::HashMap<&str, Vec<&Cell>> = reference
        .columns
        .iter()
        .map(|c| (c.name.as_str(), Vec::with_capacity(sampled_rows)))
        .collect();
    for o in obs {
        for (name, values) in &o.features {
            if let Some(live) = by_column.get_mut(name.as_str()) {
                live.extend(values);
            }
        }
    }
    for col in &reference.columns {
        let live = by_column.remove(col.name.as_str()).unwrap_or_default();
        cells += live.len();
        missing += live.iter().filter(|c| c.is_missing()).count();
        out_of_range += live.iter().filter(|c| col.out_of_range(c)).count();
        if sampled_rows < MIN_DRIFT_ROWS {
            continue;
        }
        match compare(col, &live, opts) {
            Some(d) => compared.push(d),
            None => skipped.push(SkippedColumn {
                column: col.name.clone(),
                reason: "no values in this window".into(),
            }),
        }
    }
    // Without reference columns there is nothing to drift from: no verdict, not "no drift".
    let drift = (sampled_rows >= MIN_DRIFT_ROWS && !reference.columns.is_empty())
        .then(|| drift::finish_report(compared, skipped, opts));
    let predicted: Vec<&Cell> = obs.iter().flat_map(|o| &o.predictions).collect();
    let prediction = match &reference.predictions {
        Some(p) if predicted.len() >= MIN_DRIFT_ROWS => compare(p, &predicted, opts).map(|d| {
            // One test, so no correction: its own p-value decides.
            let mut r = drift::finish_report(vec![d], Vec::new(), opts);
            r.columns.remove(0)
        }),
        _ => None,
    };
    let estimate = reference.estimator.as_ref().and_then(|e| {
        let confidence: Vec<f64> = obs
            .iter()
            .flat_map(|o| o.confidence.iter().copied())
            .collect();
        let probabilities: Vec<Vec<f64>> = obs
            .iter()
            .flat_map(|o| o.probabilities.iter().cloned())
            .collect();
        (confidence.len() >= MIN_DRIFT_ROWS)
            .then(|| e.estimate(&confidence, &probabilities))
            .flatten()
    });
    let rate = |n: usize, of: usize| if of == 0 { 0.0 } else { n as f64 / of as f64 };
    let requests = obs.len();
    let share = |f: &dyn Fn(&crate::observation::Observation) -> bool| {
        rate(obs.iter().filter(|o| f(o)).count(), requests)
    };
    let latencies = |route: Option<&str>| -> Vec<f64> {
        let mut v: Vec<f64> = obs
            .iter()
            .filter(|o| route.is_none_or(|r| o.outcome.route == r))
            .map(|o| o.outcome.latency_us as f64 / 1000.0)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let all = latencies(None);
    let canary: Vec<_> = obs.iter().filter(|o| o.outcome.route == "canary").collect();
    let canary_error_rate = (!canary.is_empty())
        .then(|| rate(canary.iter().filter(|o| o.failed()).count(), canary.len()));
    let canary_latency_p99_ms =
        (!canary.is_empty()).then(|| percentile(&latencies(Some("canary")), 0.99));
    let mut r = WindowReport {
        start_ms: window.start_ms,
        end_ms: window.end_ms,
        requests,
        rows: window.rows(),
        sampled_rows,
        drift,
        prediction,
        estimate,
        missing_rate: rate(missing, cells),
        out_of_range_rate: rate(out_of_range, cells),
        error_rate: share(&|o| o.failed()),
        rejected_rate: share(&|o| o.outcome.decision == "rejected"),
        flagged_rate: share(&|o| o.outcome.decision == "flagged"),
        latency_p50_ms: percentile(&all, 0.5),
        latency_p99_ms: percentile(&all, 0.99),
        canary_error_rate,
        canary_latency_p99_ms,
        signals: Facts::new(),
    };
    r.signals = signals_of(&r);
    r
}

fn compare(col: &Column, live: &[&Cell], opts: &DriftOptions) -> Option<ColumnDrift> {
    match &col.values {
        Values::Numeric { sorted } => {
            let mut current: Vec<f64> = live
                .iter()
                .filter_map(|c| match c {
                    Cell::Number(v) if !v.is_nan() => Some(*v),
                    _ => None,
                })
                .collect();
            if current.is_empty() || sorted.is_empty() {
                return None;
            }
            current.sort_by(f64::total_cmp);
            Some(drift::compare_numeric(
                &col.name,
                Kind::Numeric,
                sorted,
                &current,
                opts,
            ))
        }
        Values::Categorical { counts } => {
            let current = category_counts(live.iter().copied());
            if current.is_empty() || counts.is_empty() {
                return None;
            }
            Some(drift::compare_categorical(
                &col.name,
                Kind::Text,
                counts,
                &current,
                opts,
            ))
        }
    }
}

/// The `q` quantile of sorted values by the nearest rank (0 for none).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn signals_of(r: &WindowReport) -> Facts {
    let mut f = Facts::new();
    let num = |v: f64| Value::Number(v);
    f.insert("requests".into(), num(r.requests as f64));
    f.insert("rows".into(), num(r.rows as f64));
    f.insert("missing.rate".into(), num(r.missing_rate));
    f.insert("out_of_range.rate".into(), num(r.out_of_range_rate));
    f.insert("error.rate".into(), num(r.error_rate));
    f.insert("rejected.rate".into(), num(r.rejected_rate));
    f.insert("flagged.rate".into(), num(r.flagged_rate));
    f.insert("latency.p50_ms".into(), num(r.latency_p50_ms));
    f.insert("latency.p99_ms".into(), num(r.latency_p99_ms));
    if let Some(d) = &r.drift {
        f.insert("drift.dataset".into(), Value::Bool(d.dataset_drift));
        f.insert("drift.share".into(), num(d.drifted_share));
        f.insert("drift.columns".into(), num(d.drifted_columns as f64));
        for c in &d.columns {
            f.insert(format!("drift.column.{}", c.column), Value::Bool(c.drift));
            f.insert(format!("drift.score.{}", c.column), num(c.score));
        }
    }
    if let Some(p) = &r.prediction {
        f.insert("prediction.drift".into(), Value::Bool(p.drift));
        f.insert("prediction.score".into(), num(p.score));
    }
    if let Some(e) = &r.estimate {
        f.insert("performance.estimated_accuracy".into(), num(e.accuracy));
        f.insert("performance.estimated_drop".into(), num(e.accuracy_drop));
        if let Some(auc) = e.roc_auc {
            f.insert("performance.estimated_auc".into(), num(auc));
        }
    }
    if let Some(e) = r.canary_error_rate {
        f.insert("canary.error_rate".into(), num(e));
    }
    if let Some(l) = r.canary_latency_p99_ms {
        f.insert("canary.latency_p99_ms".into(), num(l));
    }
    f
}
