//! How well a model version does on live traffic: measured where true labels came back
//! (delayed feedback joined to the answers), and estimated from the model's own confidence
//! where they have not (confidence-based performance estimation, as NannyML's CBPE does).
//!
//! The metrics are `bastion-ml`'s (the ones `bastion evaluate` reports and the tests check
//! against scikit-learn), applied to windows of labelled rows. The estimate needs a
//! calibrated confidence: it is calibrated on the reference, where the training labels are
//! known, by isotonic regression of "the answer was right" on the confidence. Under
//! covariate shift (inputs move, the relation between inputs and labels does not) the
//! calibrated confidence keeps meaning the probability of being right, so its mean over a
//! window estimates the window's accuracy. Under concept drift it does not: only labels
//! show that, which is why both are watched.

use bastion_ml::metrics;
use bastion_policy::{Facts, Value};
use serde::{Deserialize, Serialize};

use crate::observation::Cell;
use crate::reference::category;

/// Reliability bins for the windowed calibration error (as `bastion evaluate`).
pub const ECE_BINS: usize = 10;

/// Fewer labelled rows of the reference than this: no estimate (the calibration would be
/// noise).
pub const MIN_CALIBRATION_ROWS: usize = 100;

/// One answered row whose true label came back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Labelled {
    /// When the request was answered.
    pub time_ms: i64,
    pub prediction: Cell,
    /// The class probabilities answered, in the model's class order (empty when not
    /// recorded, or for a regressor).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probabilities: Vec<f64>,
    pub label: Cell,
}

/// A window of labelled rows, measured.
#[derive(Debug, Clone, Serialize)]
pub struct PerformanceReport {
    pub start_ms: i64,
    pub end_ms: i64,
    pub labelled: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// ROC AUC of the probabilities (binary, or macro one-vs-rest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roc_auc: Option<f64>,
    /// Expected calibration error over [`ECE_BINS`] bins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ece: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mae: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rmse: Option<f64>,
    /// Why a metric is missing (one class only in the window, no probabilities recorded…).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub signals: Facts,
}

/// Measures a window of labelled rows of a model whose classes are `classes` (empty for a
/// regressor).
pub fn measure(rows: &[Labelled], classes: &[String]) -> PerformanceReport {
    let mut r = PerformanceReport {
        start_ms: rows.iter().map(|l| l.time_ms).min().unwrap_or(0),
        end_ms: rows.iter().map(|l| l.time_ms).max().unwrap_or(0),
        labelled: rows.len(),
        accuracy: None,
        roc_auc: None,
        ece: None,
        mae: None,
        rmse: None,
        notes: Vec::new(),
        signals: Facts::new(),
    };
    if rows.is_empty() {
        return r;
    }
    // A model of unknown classes that answers with names is still a classifier.
    let classifier =
        !classes.is_empty() || rows.iter().any(|l| matches!(l.prediction, Cell::Text(_)));
    if classifier {
        classification(rows, classes, &mut r);
    } else {
        regression(rows, &mut r);
    }
    r.signals = signals_of(&r);
    r
}

fn regression(rows: &[Labelled], r: &mut PerformanceReport) {
    let pairs: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|l| match (&l.label, &l.prediction) {
            (Cell::Number(y), Cell::Number(p)) if y.is_finite() && p.is_finite() => Some((*y, *p)),
            _ => None,
        })
        .collect();
    if pairs.len() < rows.len() {
        r.notes.push(format!(
            "{} of {} rows had a label or an answer that is not a number",
            rows.len() - pairs.len(),
            rows.len()
        ));
    }
    let (y, p): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
    if let Ok(s) = metrics::regression(&y, &p) {
        r.mae = Some(s.mae);
        r.rmse = Some(s.rmse);
    }
}

fn classification(rows: &[Labelled], classes: &[String], r: &mut PerformanceReport) {
    let right = rows
        .iter()
        .filter(|l| category(&l.prediction) == category(&l.label))
        .count();
    r.accuracy = Some(right as f64 / rows.len() as f64);
    let k = classes.len();
    if k == 0 {
        r.notes
            .push("the model's classes are unknown: no AUC or calibration".into());
        return;
    }
    let mut y = Vec::with_capacity(rows.len());
    let mut proba = Vec::with_capacity(rows.len() * k);
    let mut unknown = 0usize;
    for l in rows.iter().filter(|l| l.probabilities.len() == k) {
        match classes.iter().position(|c| *c == category(&l.label)) {
            Some(i) => {
                y.push(i);
                proba.extend_from_slice(&l.probabilities);
            }
            None => unknown += 1,
        }
    }
    if unknown > 0 {
        r.notes.push(format!(
            "{unknown} labels are not among the model's classes: counted as wrong, left out of AUC and calibration"
        ));
    }
    if y.is_empty() {
        r.notes
            .push("no probabilities were recorded: no AUC or calibration".into());
        return;
    }
    match metrics::roc_auc_proba(&y, &proba, k) {
        Ok(auc) => r.roc_auc = Some(auc),
        Err(e) => r.notes.push(format!("no ROC AUC: {e}")),
    }
    match metrics::calibration(&y, &proba, k, ECE_BINS) {
        Ok(c) => r.ece = Some(c.ece),
        Err(e) => r.notes.push(format!("no calibration error: {e}")),
    }
}

fn signals_of(r: &PerformanceReport) -> Facts {
    let mut f = Facts::new();
    f.insert(
        "performance.labelled".into(),
        Value::Number(r.labelled as f64),
    );
    for (name, v) in [
        ("performance.accuracy", r.accuracy),
        ("performance.auc", r.roc_auc),
        ("performance.ece", r.ece),
        ("performance.mae", r.mae),
        ("performance.rmse", r.rmse),
    ] {
        if let Some(v) = v {
            f.insert(name.into(), Value::Number(v));
        }
    }
    f
}

/// A monotone map fitted by isotonic regression (pool adjacent violators): blocks of
/// inputs with one fitted value each, interpolated linearly between blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Isotonic {
    /// (lowest input, highest input, fitted value), by input.
    blocks: Vec<(f64, f64, f64)>,
}

impl Isotonic {
    /// Fits `y` (non-decreasing in `x`) to pairs; `None` without finite pairs.
    pub fn fit(pairs: &[(f64, f64)]) -> Option<Self> {
        let mut sorted: Vec<(f64, f64)> = pairs
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        // (lo, hi, sum of y, weight)
        let mut stack: Vec<(f64, f64, f64, f64)> = Vec::new();
        for (x, y) in sorted {
            // Equal inputs share one value.
            match stack.last_mut() {
                Some(top) if top.1 == x => {
                    top.2 += y;
                    top.3 += 1.0;
                }
                _ => stack.push((x, x, y, 1.0)),
            }
            while stack.len() >= 2 {
                let n = stack.len();
                let (a, b) = (stack[n - 2], stack[n - 1]);
                if a.2 / a.3 <= b.2 / b.3 {
                    break;
                }
                stack.truncate(n - 2);
                stack.push((a.0, b.1, a.2 + b.2, a.3 + b.3));
            }
        }
        Some(Self {
            blocks: stack
                .into_iter()
                .map(|(lo, hi, s, w)| (lo, hi, s / w))
                .collect(),
        })
    }

    /// The identity map: inputs already are the probabilities.
    pub fn identity() -> Self {
        Self {
            blocks: vec![(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)],
        }
    }

    /// Calibrates probabilities only where that helps, as NannyML does: fitted on one half
    /// of the pairs and checked on the other (both ways), the calibrated map must score
    /// better (a lower Brier score) than the probabilities as they are. Otherwise refitting
    /// only adds the noise of its steps (a calibrated model stays as it is).
    pub fn fit_if_better(pairs: &[(f64, f64)]) -> Option<Self> {
        let fitted = Self::fit(pairs)?;
        let half = |parity: usize| -> Vec<(f64, f64)> {
            pairs.iter().skip(parity).step_by(2).copied().collect()
        };
        let (even, odd) = (half(0), half(1));
        let (Some(on_even), Some(on_odd)) = (Self::fit(&even), Self::fit(&odd)) else {
            return Some(fitted);
        };
        let raw = brier(&odd, |x| x) + brier(&even, |x| x);
        let calibrated = brier(&odd, |x| on_even.predict(x)) + brier(&even, |x| on_odd.predict(x));
        Some(if calibrated < raw {
            fitted
        } else {
            Self::identity()
        })
    }

    pub fn predict(&self, x: f64) -> f64 {
        let Some(first) = self.blocks.first() else {
            return f64::NAN;
        };
        let i = self.blocks.partition_point(|b| b.1 < x);
        let Some(b) = self.blocks.get(i) else {
            return self.blocks.last().map_or(first.2, |b| b.2);
        };
        if x >= b.0 || i == 0 {
            return b.2;
        }
        let a = self.blocks[i - 1];
        let t = (x - a.1) / (b.0 - a.1);
        a.2 + t * (b.2 - a.2)
    }
}

/// Mean squared error of `map`'s probabilities against the outcomes (the Brier score):
/// it rewards calibration without the binning choices of a calibration error.
fn brier(pairs: &[(f64, f64)], map: impl Fn(f64) -> f64) -> f64 {
    let n = pairs.len().max(1) as f64;
    pairs
        .iter()
        .map(|&(x, y)| (map(x).clamp(0.0, 1.0) - y).powi(2))
        .sum::<f64>()
        / n
}

/// Performance estimated without labels from calibrated confidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimator {
    /// P(the answer is right | the winning class's probability).
    right: Isotonic,
    /// Two classes: P(the label is the second class | its probability).
    positive: Option<Isotonic>,
    /// Accuracy on the reference (the training data, so optimistic): the estimate there.
    pub reference_accuracy: f64,
    pub reference_rows: usize,
}

/// What the estimator makes of a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub rows: usize,
    pub accuracy: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roc_auc: Option<f64>,
    /// Reference accuracy minus the estimate: how much worse the window is expected to be.
    pub accuracy_drop: f64,
}

impl Estimator {
    /// Calibrates on the reference: the model's answers on it (label, the winning class's
    /// probability, all probabilities) and the true labels. `None` for too few rows or a
    /// model without probabilities.
    pub fn fit(
        predictions: &[Cell],
        confidence: &[f64],
        probabilities: &[Vec<f64>],
        labels: &[Cell],
        classes: &[String],
    ) -> Option<Self> {
        let n = predictions.len().min(confidence.len()).min(labels.len());
        if n < MIN_CALIBRATION_ROWS || classes.is_empty() {
            return None;
        }
        let right: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                let hit = category(&predictions[i]) == category(&labels[i]);
                (confidence[i], if hit { 1.0 } else { 0.0 })
            })
            .collect();
        let reference_accuracy = right.iter().map(|p| p.1).sum::<f64>() / n as f64;
        let positive = (classes.len() == 2 && probabilities.len() >= n)
            .then(|| {
                let pairs: Vec<(f64, f64)> = (0..n)
                    .filter(|&i| probabilities[i].len() == 2)
                    .map(|i| {
                        let is = category(&labels[i]) == classes[1];
                        (probabilities[i][1], if is { 1.0 } else { 0.0 })
                    })
                    .collect();
                Isotonic::fit_if_better(&pairs)
            })
            .flatten();
        Some(Self {
            right: Isotonic::fit_if_better(&right)?,
            positive,
            reference_accuracy,
            reference_rows: n,
        })
    }

    /// The expected accuracy (and, for two classes, ROC AUC) of answers given with these
    /// confidences and probabilities; `None` for no answers.
    pub fn estimate(&self, confidence: &[f64], probabilities: &[Vec<f64>]) -> Option<Estimate> {
        let conf: Vec<f64> = confidence
            .iter()
            .copied()
            .filter(|c| c.is_finite())
            .collect();
        if conf.is_empty() {
            return None;
        }
        let accuracy = conf.iter().map(|&c| self.right.predict(c)).sum::<f64>() / conf.len() as f64;
        let roc_auc = self.positive.as_ref().and_then(|cal| {
            let scored: Vec<(f64, f64)> = probabilities
                .iter()
                .filter(|p| p.len() == 2 && p[1].is_finite())
                .map(|p| (p[1], cal.predict(p[1])))
                .collect();
            expected_auc(scored)
        });
        Some(Estimate {
            rows: conf.len(),
            accuracy,
            roc_auc,
            accuracy_drop: self.reference_accuracy - accuracy,
        })
    }
}

/// The ROC AUC expected when each row is positive with its calibrated probability: the
/// curve of expected true and false positives as the threshold falls through the scores.
fn expected_auc(mut scored: Vec<(f64, f64)>) -> Option<f64> {
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let pos: f64 = scored.iter().map(|s| s.1).sum();
    let neg: f64 = scored.iter().map(|s| 1.0 - s.1).sum();
    if pos <= 0.0 || neg <= 0.0 {
        return None;
    }
    let (mut tp, mut fp, mut auc) = (0.0, 0.0, 0.0);
    let mut i = 0;
    while i < scored.len() {
        // Tied scores move together: one diagonal step of the curve.
        let (mut dtp, mut dfp) = (0.0, 0.0);
        let s = scored[i].0;
        while i < scored.len() && scored[i].0 == s {
            dtp += scored[i].1;
            dfp += 1.0 - scored[i].1;
            i += 1;
        }
        auc += dfp / neg * (tp + dtp / 2.0) / pos;
        tp += dtp;
        fp += dfp;
    }
    debug_assert!(fp > 0.0);
    Some(auc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Cell {
        Cell::Text(s.into())
    }

    #[test]
    fn isotonic_pools_violators_and_interpolates() {
        let f = Isotonic::fit(&[(0.1, 0.0), (0.2, 1.0), (0.3, 0.0), (0.9, 1.0)]).unwrap();
        // 0.2 and 0.3 pool to 0.5.
        assert_eq!(f.predict(0.25), 0.5);
        assert_eq!(f.predict(0.0), 0.0);
        assert_eq!(f.predict(1.0), 1.0);
        // Between the pooled block (ends at 0.3) and 0.9: linear.
        assert!((f.predict(0.6) - 0.75).abs() < 1e-12);
        assert!(Isotonic::fit(&[(f64::NAN, 1.0)]).is_none());
    }

    #[test]
    fn measured_metrics_are_the_evaluation_crates() {
        let classes = vec!["no".to_owned(), "yes".to_owned()];
        let rows: Vec<Labelled> = [
            ("yes", 0.9, "yes"),
            ("yes", 0.7, "no"),
            ("no", 0.2, "no"),
            ("no", 0.4, "yes"),
            ("yes", 0.6, "yes"),
        ]
        .iter()
        .enumerate()
        .map(|(i, (p, prob, y))| Labelled {
            time_ms: i as i64,
            prediction: text(p),
            probabilities: vec![1.0 - prob, *prob],
            label: text(y),
        })
        .collect();
        let r = measure(&rows, &classes);
        assert_eq!(r.accuracy, Some(0.6));
        let y = [1, 0, 0, 1, 1];
        let proba: Vec<f64> = rows.iter().flat_map(|l| l.probabilities.clone()).collect();
        assert_eq!(r.roc_auc, metrics::roc_auc_proba(&y, &proba, 2).ok());
        assert_eq!(
            r.ece,
            metrics::calibration(&y, &proba, 2, ECE_BINS)
                .ok()
                .map(|c| c.ece)
        );
        assert_eq!(
            r.signals.get("performance.accuracy"),
            Some(&Value::Number(0.6))
        );
        assert_eq!((r.start_ms, r.end_ms), (0, 4));
    }

    #[test]
    fn one_class_windows_and_foreign_labels_are_explained() {
        let classes = vec!["a".to_owned(), "b".to_owned()];
        let rows = vec![
            Labelled {
                time_ms: 0,
                prediction: text("a"),
                probabilities: vec![0.8, 0.2],
                label: text("a"),
            },
            Labelled {
                time_ms: 1,
                prediction: text("a"),
                probabilities: vec![0.6, 0.4],
                label: text("zebra"),
            },
        ];
        let r = measure(&rows, &classes);
        assert_eq!(r.accuracy, Some(0.5));
        assert!(r.roc_auc.is_none());
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("not among the model's classes")),
            "{:?}",
            r.notes
        );
        assert!(
            r.notes.iter().any(|n| n.contains("no ROC AUC")),
            "{:?}",
            r.notes
        );
        assert!(!r.signals.contains_key("performance.auc"));
    }

    #[test]
    fn regression_windows_measure_errors() {
        let rows: Vec<Labelled> = [(1.0, 2.0), (3.0, 3.0), (5.0, 2.0)]
            .iter()
            .map(|(p, y)| Labelled {
                time_ms: 0,
                prediction: Cell::Number(*p),
                probabilities: Vec::new(),
                label: Cell::Number(*y),
            })
            .collect();
        let r = measure(&rows, &[]);
        assert!((r.mae.unwrap() - 4.0 / 3.0).abs() < 1e-12);
        assert!((r.rmse.unwrap() - (10.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!(r.accuracy.is_none());
    }

    #[test]
    fn expected_auc_of_certain_labels_is_the_auc() {
        // Calibrated probabilities of 0 and 1 are labels: the expected AUC is the real one.
        let scored = vec![(0.9, 1.0), (0.8, 0.0), (0.7, 1.0), (0.1, 0.0)];
        let auc = expected_auc(scored).unwrap();
        let y = [true, false, true, false];
        let real = metrics::roc_auc(&y, &[0.9, 0.8, 0.7, 0.1]).unwrap();
        assert!((auc - real).abs() < 1e-12, "{auc} vs {real}");
        assert!(expected_auc(vec![(0.5, 1.0)]).is_none());
    }
}
