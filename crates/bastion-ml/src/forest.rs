//! Random forests in the manner of scikit-learn's: each tree sees a bootstrap sample of the
//! rows and a random subset of features at each split (√d for classes, all for values),
//! grows until leaves are pure or hold `min_samples_leaf` rows, and the forest averages
//! the trees' class proportions or values. Splits are on histogram bins (up to 255 per
//! feature) rather than every distinct value. Trees grow in parallel, each from its own
//! ChaCha8 stream, so the forest is the same for a seed whatever the thread count.

use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{MlError, MlResult};
use crate::linear::{check_features, check_input};
use crate::task::Target;
use crate::tree::Tree;
use crate::tree::bins::Binned;
use crate::tree::flat::{Flat, FlatCache};
use crate::tree::grow::{GrowParams, Targets, grow};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxFeatures {
    Sqrt,
    All,
    Fraction(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForestParams {
    pub n_estimators: usize,
    pub max_depth: Option<usize>,
    pub min_samples_leaf: usize,
    /// `None`: √d for classification, all features for regression (scikit-learn's defaults).
    pub max_features: Option<MaxFeatures>,
    pub bootstrap: bool,
    pub max_bins: usize,
    pub seed: u64,
}

impl Default for ForestParams {
    fn default() -> Self {
        Self {
            n_estimators: 100,
            max_depth: None,
            min_samples_leaf: 1,
            max_features: None,
            bootstrap: true,
            max_bins: 255,
            seed: 0,
        }
    }
}

/// A fitted forest; `outputs` is the number of classes, or 1 for regression.
#[derive(Debug, Clone, PartialEq)]
pub struct Forest {
    pub classification: bool,
    pub outputs: usize,
    pub features: usize,
    pub trees: Vec<Tree>,
    /// The trees laid out for prediction, made on the first prediction.
    pub flat: FlatCache,
}

impl Forest {
    pub fn fit(x: ArrayView2<f64>, target: Target, p: ForestParams) -> MlResult<Self> {
        check_features("random forest", x)?;
        target.check("random forest", x.nrows())?;
        if p.n_estimators == 0 {
            return Err(MlError::invalid(
                "random forest: n_estimators must be at least 1",
            ));
        }
        if p.max_depth == Some(0) {
            return Err(MlError::invalid(
                "random forest: max_depth must be at least 1",
            ));
        }
        let (n, d) = x.dim();
        let (classification, m) = match target {
            Target::Classes { classes, .. } => (true, classes),
            Target::Values(_) => (false, 1),
        };
        let per_split = match p.max_features.unwrap_or(if classification {
            MaxFeatures::Sqrt
        } else {
            MaxFeatures::All
        }) {
            MaxFeatures::Sqrt => (d as f64).sqrt() as usize,
            MaxFeatures::All => d,
            MaxFeatures::Fraction(f) if f > 0.0 && f <= 1.0 => (d as f64 * f).ceil() as usize,
            MaxFeatures::Fraction(f) => {
                return Err(MlError::invalid(format!(
                    "random forest: max_features fraction must be in (0, 1], got {f}"
                )));
            }
        }
        .clamp(1, d);
        // Forests' deep trees keep one bin per distinct value up to `max_bins`.
        let data = Binned::fit(x, p.max_bins, 1, p.seed)?;
        let grow_params = GrowParams {
            max_leaves: usize::MAX,
            max_depth: p.max_depth,
            min_data_in_leaf: p.min_samples_leaf.max(1),
            min_hessian: 0.0,
            lambda: 0.0,
            min_gain: 1e-12,
            count_by_weight: true,
            features_per_split: (per_split < d).then_some(per_split),
            parallel: false,
        };
        let allowed: Vec<usize> = (0..d).collect();
        let trees = (0..p.n_estimators)
            .into_par_iter()
            .map(|t| {
                let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
                rng.set_stream(t as u64 + 1);
                let mut weight = vec![0u32; n];
                if p.bootstrap {
                    for _ in 0..n {
                        weight[rng.random_range(0..n)] += 1;
                    }
                } else {
                    weight.iter_mut().for_each(|w| *w = 1);
                }
                let rows: Vec<u32> = (0..n as u32).filter(|&i| weight[i as usize] > 0).collect();
                let hess: Vec<f64> = weight.iter().map(|&w| w as f64).collect();
                let mut grad = vec![0.0; n * m];
                match target {
                    Target::Classes { y, .. } => {
                        for (i, &c) in y.iter().enumerate() {
                            grad[i * m + c] = -hess[i];
                        }
                    }
                    Target::Values(y) => {
                        for (i, v) in y.iter().enumerate() {
                            grad[i] = -hess[i] * v;
                        }
                    }
                }
                let targets = Targets {
                    outputs: m,
                    grad: &grad,
                    hess: &hess,
                };
                grow(&data, &targets, rows, &allowed, grow_params, &mut rng).tree
            })
            .collect();
        Ok(Self {
            classification,
            outputs: m,
            features: d,
            trees,
            flat: FlatCache::default(),
        })
    }

    /// The average of the trees' leaf values: class proportions (`n × classes`) or values
    /// (`n × 1`).
    pub fn predict_raw(&self, x: ArrayView2<f64>) -> MlResult<Array2<f64>> {
        check_input("random forest", x, self.features)?;
        let scale = 1.0 / self.trees.len().max(1) as f64;
        let mut out = Array2::zeros((x.nrows(), self.outputs));
        self.flat
            .get(|| Flat::new(&self.trees, self.features, |_| 0))
            .add_to(x, &mut out);
        out.mapv_inplace(|v| v * scale);
        Ok(out)
    }

    pub fn validate(&self) -> MlResult<()> {
        if self.outputs == 0 || (!self.classification && self.outputs != 1) {
            return Err(MlError::invalid(format!(
                "random forest: {} outputs do not fit the task",
                self.outputs
            )));
        }
        for (i, t) in self.trees.iter().enumerate() {
            if t.outputs != self.outputs {
                return Err(MlError::invalid(format!(
                    "random forest: tree {i} has {} outputs, the forest {}",
                    t.outputs, self.outputs
                )));
            }
            t.validate(self.features)
                .map_err(|e| MlError::invalid(format!("random forest: tree {i}: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forest_classifies_and_regresses_deterministically() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let x: Array2<f64> = Array2::from_shape_fn((1500, 4), |_| rng.random_range(-1.0..1.0));
        let y: Vec<usize> = x
            .rows()
            .into_iter()
            .map(|r| usize::from(r[0] + r[1] * r[1] > 0.3))
            .collect();
        let (train, test) = (
            x.slice(ndarray::s![..1000, ..]),
            x.slice(ndarray::s![1000.., ..]),
        );
        let p = ForestParams {
            n_estimators: 30,
            ..Default::default()
        };
        let f = Forest::fit(
            train,
            Target::Classes {
                y: &y[..1000],
                classes: 2,
            },
            p,
        )
        .unwrap();
        f.validate().unwrap();
        let proba = f.predict_raw(test).unwrap();
        assert!(
            proba
                .rows()
                .into_iter()
                .all(|r| (r.sum() - 1.0).abs() < 1e-9)
        );
        let acc = (0..500)
            .filter(|&i| usize::from(proba[[i, 1]] > 0.5) == y[1000 + i])
            .count() as f64
            / 500.0;
        assert!(acc > 0.9, "accuracy {acc}");
        let again = Forest::fit(
            train,
            Target::Classes {
                y: &y[..1000],
                classes: 2,
            },
            p,
        )
        .unwrap();
        assert_eq!(f, again);

        let v: Vec<f64> = x.rows().into_iter().map(|r| 2.0 * r[0] - r[2]).collect();
        let r = Forest::fit(train, Target::Values(&v[..1000]), p).unwrap();
        let pred = r.predict_raw(test).unwrap();
        let mae = (0..500)
            .map(|i| (pred[[i, 0]] - v[1000 + i]).abs())
            .sum::<f64>()
            / 500.0;
        assert!(mae < 0.15, "mae {mae}");
    }
}
