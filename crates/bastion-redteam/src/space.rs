//! Where an attack may move a row: the model's feature space with tabular realism. Each
//! feature keeps to the range seen in the data, immutable features never change, features
//! whose raw values are integers stay integers (rounded towards the original, so rounding
//! never leaves the perturbation ball), and a one-hot group stays one-hot (it switches
//! category only when the ball is large enough for a switch).

use std::borrow::Cow;
use std::ops::Range;

use bastion_ml::predictor::Table;
use bastion_ml::preprocess::{Encoding, Preprocessor, Step};
use ndarray::{Array1, ArrayView1, ArrayView2, ArrayViewMut1};
use serde::Serialize;

use crate::error::{RedteamError, RedteamResult};
use crate::norm::Norm;

/// A feature whose raw value is `x · scale + mean` and must be an integer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IntegerGrid {
    pub mean: f64,
    pub scale: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    pub features: Vec<String>,
    pub lo: Array1<f64>,
    pub hi: Array1<f64>,
    pub mutable: Vec<bool>,
    pub integer: Vec<Option<IntegerGrid>>,
    /// Column ranges of one-hot encoded categories.
    pub one_hot: Vec<Range<usize>>,
}

impl Space {
    /// No constraints at all: every feature free on the whole real line.
    pub fn free(features: Vec<String>) -> Self {
        let d = features.len();
        Self {
            features,
            lo: Array1::from_elem(d, f64::NEG_INFINITY),
            hi: Array1::from_elem(d, f64::INFINITY),
            mutable: vec![true; d],
            integer: vec![None; d],
            one_hot: Vec::new(),
        }
    }

    pub fn dim(&self) -> usize {
        self.features.len()
    }

    /// Bounds from the observed feature matrix `x` (each feature's min and max), for models
    /// whose features are their raw inputs.
    pub fn observed(features: Vec<String>, x: ArrayView2<f64>) -> RedteamResult<Self> {
        if x.ncols() != features.len() {
            return Err(RedteamError::invalid(format!(
                "{} features named for a matrix of {} columns",
                features.len(),
                x.ncols()
            )));
        }
        let mut s = Self::free(features);
        for (j, col) in x.columns().into_iter().enumerate() {
            let (lo, hi) = min_max(col.iter().copied());
            s.lo[j] = lo;
            s.hi[j] = hi;
            if col.iter().all(|v| v.fract() == 0.0) {
                s.integer[j] = Some(IntegerGrid {
                    mean: 0.0,
                    scale: 1.0,
                });
            }
        }
        Ok(s)
    }

    /// The space of a built-in model: numeric features within the range `table` holds
    /// (in the model's scaled units) and integers where every value is; categories one-hot
    /// groups, or ordinal codes as integers within their range.
    pub fn of_preprocessor(pre: &Preprocessor, table: &Table) -> RedteamResult<Self> {
        let mut s = Self::free(pre.feature_names());
        let mut at = 0;
        for step in &pre.steps {
            match step {
                Step::Numeric {
                    name, mean, scale, ..
                } => {
                    let values = match table.column(name) {
                        Some(bastion_ml::predictor::ColumnData::Numeric(v)) => v,
                        _ => {
                            return Err(RedteamError::invalid(format!(
                                "the data has no numeric column '{name}', which the model takes"
                            )));
                        }
                    };
                    let present = values.iter().flatten().copied().filter(|v| v.is_finite());
                    let (lo, hi) = min_max(present.clone());
                    if lo.is_finite() {
                        s.lo[at] = (lo - mean) / scale;
                        s.hi[at] = (hi - mean) / scale;
                    }
                    if present.clone().next().is_some()
                        && present.into_iter().all(|v| v.fract() == 0.0)
                    {
                        s.integer[at] = Some(IntegerGrid {
                            mean: *mean,
                            scale: *scale,
                        });
                    }
                    at += 1;
                }
                Step::Categorical {
                    categories,
                    encoding: Encoding::OneHot,
                    ..
                } => {
                    let k = categories.len();
                    for j in at..at + k {
                        s.lo[j] = 0.0;
                        s.hi[j] = 1.0;
                    }
                    s.one_hot.push(at..at + k);
                    at += k;
                }
                Step::Categorical {
                    categories,
                    encoding: Encoding::Ordinal,
                    ..
                } => {
                    s.lo[at] = 0.0;
                    s.hi[at] = categories.len().saturating_sub(1) as f64;
                    s.integer[at] = Some(IntegerGrid {
                        mean: 0.0,
                        scale: 1.0,
                    });
                    at += 1;
                }
            }
        }
        Ok(s)
    }

    /// Marks features immutable by name: a feature, or every one-hot column of a category.
    pub fn freeze(&mut self, names: &[String]) -> RedteamResult<()> {
        for name in names {
            let prefix = format!("{name}=");
            let mut found = false;
            for (j, f) in self.features.iter().enumerate() {
                if f == name || f.starts_with(&prefix) {
                    self.mutable[j] = false;
                    found = true;
                }
            }
            if !found {
                return Err(RedteamError::invalid(format!(
                    "immutable feature '{name}' is not one of the model's features"
                )));
            }
        }
        Ok(())
    }

    /// Drops the range bounds (keeps immutability, integers and one-hot groups).
    pub fn unbounded(mut self) -> Self {
        self.lo.fill(f64::NEG_INFINITY);
        self.hi.fill(f64::INFINITY);
        for r in &self.one_hot {
            for j in r.clone() {
                self.lo[j] = 0.0;
                self.hi[j] = 1.0;
            }
        }
        self
    }

    /// Moves `x` (a perturbed copy of `x0`) into the space and, when `ball` is given, into
    /// the ball of that norm and radius around `x0`.
    pub fn project(
        &self,
        mut x: ArrayViewMut1<f64>,
        x0: ArrayView1<f64>,
        ball: Option<(Norm, f64)>,
    ) {
        // Rows of standard matrices are slices, which the loops below vectorise; anything
        // else goes through a copy.
        let x0: Cow<[f64]> = x0
            .as_slice()
            .map_or_else(|| x0.to_vec().into(), Cow::Borrowed);
        match x.as_slice_mut() {
            Some(xs) => self.project_slice(xs, &x0, ball),
            None => {
                let mut xs = x.to_vec();
                self.project_slice(&mut xs, &x0, ball);
                x.assign(&ArrayView1::from(&xs));
            }
        }
    }

    fn project_slice(&self, x: &mut [f64], x0: &[f64], ball: Option<(Norm, f64)>) {
        for ((v, &v0), &m) in x.iter_mut().zip(x0).zip(&self.mutable) {
            if !m || !v.is_finite() {
                *v = v0;
            }
        }
        if let Some((norm, eps)) = ball {
            norm.project(x, x0, eps);
        }
        for ((v, &lo), &hi) in x.iter_mut().zip(&self.lo).zip(&self.hi) {
            *v = v.clamp(lo, hi);
        }
        for ((v, &v0), grid) in x.iter_mut().zip(x0).zip(&self.integer) {
            if let Some(g) = grid {
                let raw = *v * g.scale + g.mean;
                let raw0 = v0 * g.scale + g.mean;
                // Towards the original value: never further away than before rounding.
                let r = if raw >= raw0 { raw.floor() } else { raw.ceil() };
                *v = (r - g.mean) / g.scale;
            }
        }
        for group in &self.one_hot {
            let (Some(g0), Some(g)) = (x0.get(group.clone()), x.get(group.clone())) else {
                continue;
            };
            let orig = argmax(g0.iter().copied());
            let best = argmax(g.iter().copied());
            let frozen = !self.mutable[group.start];
            let fits = ball.is_none_or(|(norm, eps)| norm.switch_cost() <= eps);
            let pick = if frozen || !fits { orig } else { best };
            for (k, j) in group.clone().enumerate() {
                x[j] = match pick {
                    Some(p) if p == k => 1.0,
                    Some(_) => 0.0,
                    None => x0[j],
                };
            }
        }
    }
}

fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// Index of the largest value (the first on ties); `None` when all are zero or empty, for
/// a category that was unseen in training.
fn argmax(values: impl Iterator<Item = f64>) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, v) in values.enumerate() {
        if v > 0.0 && best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn space() -> Space {
        let mut s = Space::free(vec!["a".into(), "n".into(), "c=x".into(), "c=y".into()]);
        s.lo = array![-1.0, 0.0, 0.0, 0.0];
        s.hi = array![1.0, 10.0, 1.0, 1.0];
        s.integer[1] = Some(IntegerGrid {
            mean: 0.0,
            scale: 1.0,
        });
        s.one_hot.push(2..4);
        s
    }

    #[test]
    fn projection_clips_rounds_towards_the_original_and_keeps_one_hot() {
        let s = space();
        let x0 = array![0.0, 3.0, 1.0, 0.0];
        let mut x = array![5.0, 4.7, 0.2, 0.9];
        s.project(x.view_mut(), x0.view(), None);
        assert_eq!(x, array![1.0, 4.0, 0.0, 1.0]);
        let mut x = array![-5.0, 2.2, 0.2, 0.9];
        s.project(x.view_mut(), x0.view(), Some((Norm::Linf, 0.9)));
        // The ball keeps `a` within 0.9 and `n` within 0.9 of 3 (rounded up to 3); a
        // category switch (a change of 1) does not fit in the ball.
        assert_eq!(x, array![-0.9, 3.0, 1.0, 0.0]);
    }

    #[test]
    fn frozen_features_do_not_move() {
        let mut s = space();
        s.freeze(&["a".into(), "c".into()]).unwrap();
        let x0 = array![0.5, 3.0, 1.0, 0.0];
        let mut x = array![0.9, 3.0, 0.0, 1.0];
        s.project(x.view_mut(), x0.view(), None);
        assert_eq!(x, array![0.5, 3.0, 1.0, 0.0]);
        assert!(s.freeze(&["nope".into()]).is_err());
    }
}
