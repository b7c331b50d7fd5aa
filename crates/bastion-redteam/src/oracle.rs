//! The model under attack, as an attacker sees it: class probabilities (score-based), labels
//! (decision-based) or loss gradients (white-box), with every prediction query counted.

use std::sync::atomic::{AtomicU64, Ordering};

use bastion_ml::predictor::{Prediction, Predictor};
use bastion_ml::task::Target;
use ndarray::{Array2, ArrayView2};

use crate::error::{RedteamError, RedteamResult};

pub struct Oracle<'a> {
    model: &'a dyn Predictor,
    classes: usize,
    queries: AtomicU64,
}

impl<'a> Oracle<'a> {
    /// Only classifiers can be attacked for evasion: an attack changes a predicted class.
    pub fn new(model: &'a dyn Predictor) -> RedteamResult<Self> {
        let classes = model
            .signature()
            .classes()
            .map(<[String]>::len)
            .ok_or_else(|| {
                RedteamError::invalid(
                    "the model is a regressor; evasion and privacy attacks need a classifier",
                )
            })?;
        Ok(Self {
            model,
            classes,
            queries: AtomicU64::new(0),
        })
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn features(&self) -> usize {
        self.model.signature().features.len()
    }

    /// Rows predicted so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// `rows × classes` probabilities of feature rows.
    pub fn probabilities(&self, x: ArrayView2<f64>) -> RedteamResult<Array2<f64>> {
        self.queries.fetch_add(x.nrows() as u64, Ordering::Relaxed);
        match self.model.predict_features(x)? {
            Prediction::Classes(p) if p.ncols() == self.classes && p.nrows() == x.nrows() => Ok(p),
            _ => Err(RedteamError::invalid(
                "the model's output does not have one row per input and its declared classes",
            )),
        }
    }

    /// The predicted class of each row.
    pub fn labels(&self, x: ArrayView2<f64>) -> RedteamResult<Vec<usize>> {
        Ok(Prediction::Classes(self.probabilities(x)?)
            .labels()
            .unwrap_or_default())
    }

    /// ∂ cross-entropy / ∂ x for the given classes, if the model is differentiable.
    pub fn gradient(&self, x: ArrayView2<f64>, y: &[usize]) -> Option<RedteamResult<Array2<f64>>> {
        self.model
            .input_gradient(
                x,
                Target::Classes {
                    y,
                    classes: self.classes,
                },
            )
            .map(|r| r.map_err(RedteamError::from))
    }

    pub fn differentiable(&self, x: ArrayView2<f64>, y: &[usize]) -> bool {
        let n = x.nrows().min(1);
        self.gradient(x.slice(ndarray::s![..n, ..]), &y[..n])
            .is_some_and(|r| r.is_ok())
    }
}

/// The most probable class per row (the first on ties).
pub fn argmax_rows(p: &Array2<f64>) -> Vec<usize> {
    Prediction::Classes(p.clone()).labels().unwrap_or_default()
}

/// Probability of class `c` minus the best other class's: below 0, misclassified.
pub fn margin(row: ndarray::ArrayView1<f64>, c: usize) -> f64 {
    let other = row
        .iter()
        .enumerate()
        .filter(|&(k, _)| k != c)
        .fold(f64::NEG_INFINITY, |m, (_, &v)| m.max(v));
    row[c] - other
}

/// Cross-entropy of the true class per row, probabilities clipped as scikit-learn's
/// `log_loss` clips them.
pub fn losses(p: &Array2<f64>, y: &[usize]) -> Vec<f64> {
    y.iter()
        .enumerate()
        .map(|(i, &c)| -p[[i, c]].clamp(1e-15, 1.0).ln())
        .collect()
}
