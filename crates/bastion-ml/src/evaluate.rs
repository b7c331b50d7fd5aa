//! A model's evaluation on labelled rows: every metric of [`crate::metrics`] for its task,
//! the curves behind them, and the same metrics per slice (rows grouped by a column's value)
//! so that gaps between groups are visible.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{MlError, MlResult};
use crate::metrics::{self, Calibration, ClassificationReport, Curve};
use crate::predictor::Prediction;

/// Bins of the reliability table.
pub const CALIBRATION_BINS: usize = 10;

/// Truth for the evaluated rows.
#[derive(Debug, Clone, Copy)]
pub enum Truth<'a> {
    Classes(&'a [usize]),
    Values(&'a [f64]),
}

#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub rows: usize,
    /// Flat name → value, as logged to a run (`accuracy`, `roc_auc`, `rmse`, …).
    pub metrics: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<ClassDetail>,
    /// Metrics per value of the slicing column, when one was given.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub slices: BTreeMap<String, SliceMetrics>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassDetail {
    pub names: Vec<String>,
    pub report: ClassificationReport,
    pub confusion: Vec<Vec<u64>>,
    pub calibration: Calibration,
    /// One-vs-rest curves: for two classes the positive class only.
    pub roc: Vec<(String, Curve)>,
    pub pr: Vec<(String, Curve)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SliceMetrics {
    pub rows: usize,
    pub metrics: BTreeMap<String, f64>,
}

/// Flat metrics for a set of rows; AUC-type metrics are left out where the rows hold only
/// one class (they are undefined there).
fn flat_metrics(pred: &Prediction, truth: Truth) -> MlResult<BTreeMap<String, f64>> {
    let mut m = BTreeMap::new();
    match (pred, truth) {
        (Prediction::Classes(p), Truth::Classes(y)) => {
            let k = p.ncols();
            let flat: Vec<f64> = p.iter().copied().collect();
            let labels = pred.labels().unwrap_or_default();
            let report = metrics::classification_report(y, &labels, k)?;
            m.insert("accuracy".into(), metrics::accuracy(y, &labels)?);
            m.insert("precision_macro".into(), report.macro_avg.precision);
            m.insert("recall_macro".into(), report.macro_avg.recall);
            m.insert("f1_macro".into(), report.macro_avg.f1);
            m.insert("f1_weighted".into(), report.weighted_avg.f1);
            m.insert("log_loss".into(), metrics::log_loss(y, &flat, k)?);
            m.insert("brier".into(), metrics::brier(y, &flat, k)?);
            m.insert(
                "ece".into(),
                metrics::calibration(y, &flat, k, CALIBRATION_BINS)?.ece,
            );
            if let Ok(auc) = metrics::roc_auc_proba(y, &flat, k) {
                m.insert("roc_auc".into(), auc);
            }
            if let Ok(ap) = metrics::average_precision_proba(y, &flat, k) {
                m.insert("pr_auc".into(), ap);
            }
        }
        (Prediction::Values(p), Truth::Values(y)) => {
            let r = metrics::regression(y, &p.to_vec())?;
            m.insert("mae".into(), r.mae);
            m.insert("rmse".into(), r.rmse);
            m.insert("r2".into(), r.r2);
        }
        _ => {
            return Err(MlError::invalid(
                "evaluation: the labels do not fit the model's task",
            ));
        }
    }
    Ok(m)
}

impl Evaluation {
    /// The evaluation of a model trained without held-out rows: no rows, no metrics.
    pub fn empty() -> Self {
        Self {
            rows: 0,
            metrics: BTreeMap::new(),
            classes: None,
            slices: BTreeMap::new(),
        }
    }
}

/// Evaluates predictions against the truth; `slices` groups rows by a key (e.g. a column's
/// value) and repeats the flat metrics per group.
pub fn evaluate(
    pred: &Prediction,
    truth: Truth,
    class_names: Option<&[String]>,
    slices: Option<&[String]>,
) -> MlResult<Evaluation> {
    let n = match truth {
        Truth::Classes(y) => y.len(),
        Truth::Values(y) => y.len(),
    };
    if n != pred.rows() {
        return Err(MlError::invalid(format!(
            "evaluation: {} predictions for {n} labels",
            pred.rows()
        )));
    }
    if n == 0 {
        return Err(MlError::invalid("evaluation: no rows to evaluate"));
    }
    let metrics = flat_metrics(pred, truth)?;
    let classes = match (pred, truth) {
        (Prediction::Classes(p), Truth::Classes(y)) => {
            let k = p.ncols();
            let names: Vec<String> = class_names
                .map(<[String]>::to_vec)
                .unwrap_or_else(|| (0..k).map(|c| c.to_string()).collect());
            if names.len() != k {
                return Err(MlError::invalid(format!(
                    "evaluation: {} class names for {k} classes",
                    names.len()
                )));
            }
            let flat: Vec<f64> = p.iter().copied().collect();
            let labels = pred.labels().unwrap_or_default();
            let mut roc = Vec::new();
            let mut pr = Vec::new();
            let shown: Vec<usize> = if k == 2 { vec![1] } else { (0..k).collect() };
            for c in shown {
                let positive: Vec<bool> = y.iter().map(|&t| t == c).collect();
                let score: Vec<f64> = p.column(c).to_vec();
                if let Ok(curve) = metrics::roc_curve(&positive, &score) {
                    roc.push((names[c].clone(), curve));
                }
                if let Ok(curve) = metrics::precision_recall_curve(&positive, &score) {
                    pr.push((names[c].clone(), curve));
                }
            }
            Some(ClassDetail {
                report: metrics::classification_report(y, &labels, k)?,
                confusion: metrics::confusion_matrix(y, &labels, k)?,
                calibration: metrics::calibration(y, &flat, k, CALIBRATION_BINS)?,
                names,
                roc,
                pr,
            })
        }
        _ => None,
    };
    let mut by_slice = BTreeMap::new();
    if let Some(keys) = slices {
        if keys.len() != n {
            return Err(MlError::invalid(format!(
                "evaluation: {} slice keys for {n} rows",
                keys.len()
            )));
        }
        for (key, rows) in crate::split::slices(keys) {
            let sub_pred = match pred {
                Prediction::Classes(p) => Prediction::Classes(p.select(ndarray::Axis(0), &rows)),
                Prediction::Values(v) => Prediction::Values(v.select(ndarray::Axis(0), &rows)),
            };
            let sub_y: Vec<usize>;
            let sub_v: Vec<f64>;
            let sub_truth = match truth {
                Truth::Classes(y) => {
                    sub_y = rows.iter().map(|&i| y[i]).collect();
                    Truth::Classes(&sub_y)
                }
                Truth::Values(y) => {
                    sub_v = rows.iter().map(|&i| y[i]).collect();
                    Truth::Values(&sub_v)
                }
            };
            by_slice.insert(
                key,
                SliceMetrics {
                    rows: rows.len(),
                    metrics: flat_metrics(&sub_pred, sub_truth)?,
                },
            );
        }
    }
    Ok(Evaluation {
        rows: n,
        metrics,
        classes,
        slices: by_slice,
    })
}
