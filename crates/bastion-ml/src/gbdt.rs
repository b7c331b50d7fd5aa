//! Gradient-boosted decision trees in the manner of LightGBM: histogram-binned features,
//! leaf-wise trees of at most `num_leaves` leaves, Newton leaf values `-G/(H+λ)` shrunk by
//! the learning rate; logistic loss (two classes), softmax (one tree per class per round)
//! or squared error. Deterministic for a seed: feature and row sampling draw from ChaCha8,
//! and parallel work only ever sums in a fixed order.

use ndarray::{Array2, ArrayView2};
use rand::seq::index::sample;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{MlError, MlResult};
use crate::linear::{check_features, check_input};
use crate::link::{sigmoid, softmax_rows};
use crate::task::Target;
use crate::tree::Tree;
use crate::tree::bins::Binned;
use crate::tree::flat::{Flat, FlatCache};
use crate::tree::grow::{GrowParams, Grown, Targets, grow};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GbdtParams {
    pub n_estimators: usize,
    pub learning_rate: f64,
    pub num_leaves: usize,
    pub max_depth: Option<usize>,
    pub min_data_in_leaf: usize,
    pub min_sum_hessian_in_leaf: f64,
    pub lambda_l2: f64,
    pub max_bins: usize,
    /// Fewest rows (of those sampled to place bin bounds) a bin may hold; 0 counts as 1.
    pub min_data_in_bin: usize,
    /// Share of features each tree may use.
    pub feature_fraction: f64,
    /// Share of rows each round trains on (sampled without replacement).
    pub bagging_fraction: f64,
    /// Stop when the validation loss has not improved for this many rounds.
    pub early_stopping_rounds: Option<usize>,
    pub seed: u64,
}

impl Default for GbdtParams {
    /// LightGBM's defaults.
    fn default() -> Self {
        Self {
            n_estimators: 100,
            learning_rate: 0.1,
            num_leaves: 31,
            max_depth: None,
            min_data_in_leaf: 20,
            min_sum_hessian_in_leaf: 1e-3,
            lambda_l2: 0.0,
            max_bins: 255,
            min_data_in_bin: 3,
            feature_fraction: 1.0,
            bagging_fraction: 1.0,
            early_stopping_rounds: None,
            seed: 0,
        }
    }
}

impl GbdtParams {
    fn check(&self) -> MlResult<()> {
        let bad = |m: String| Err(MlError::invalid(format!("gbdt: {m}")));
        if self.n_estimators == 0 {
            return bad("n_estimators must be at least 1".into());
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad(format!(
                "learning_rate must be positive, got {}",
                self.learning_rate
            ));
        }
        if self.num_leaves < 2 {
            return bad(format!(
                "num_leaves must be at least 2, got {}",
                self.num_leaves
            ));
        }
        if self.max_depth == Some(0) {
            return bad("max_depth must be at least 1".into());
        }
        if !(self.lambda_l2 >= 0.0 && self.lambda_l2.is_finite()) {
            return bad(format!("lambda_l2 must be >= 0, got {}", self.lambda_l2));
        }
        if !(self.min_sum_hessian_in_leaf >= 0.0 && self.min_sum_hessian_in_leaf.is_finite()) {
            return bad("min_sum_hessian_in_leaf must be >= 0".into());
        }
        for (name, v) in [
            ("feature_fraction", self.feature_fraction),
            ("bagging_fraction", self.bagging_fraction),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return bad(format!("{name} must be in (0, 1], got {v}"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    Regression,
    Binary,
    Multiclass,
}

/// A fitted ensemble: `init` plus the sum of the trees, per output (`outputs` = classes for
/// softmax, else 1). Trees are stored round by round, `outputs` per round.
#[derive(Debug, Clone, PartialEq)]
pub struct Gbdt {
    pub objective: Objective,
    pub outputs: usize,
    pub features: usize,
    pub init: Vec<f64>,
    pub trees: Vec<Tree>,
    /// The trees laid out for prediction, made on the first prediction (the trees do not
    /// change after that).
    pub flat: FlatCache,
}

/// Losses per round, for tracking, and the round kept.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BoostReport {
    pub train_loss: Vec<f64>,
    pub valid_loss: Vec<f64>,
    pub best_round: usize,
}

/// Below this many training rows, the class trees of a round grow side by side.
const CLASS_PARALLEL_ROWS: usize = 1 << 15;

/// Rows the per-round training loss is measured on (evenly spaced): tracking the curve
/// does not need every row, and a full pass per round would cost more than a tree.
const LOSS_ROWS: usize = 1 << 16;

/// Mean loss of raw scores (row-major, `outputs` per row) against the target, on at most
/// [`LOSS_ROWS`] evenly spaced rows.
fn loss(objective: Objective, scores: &[f64], target: Target) -> f64 {
    let step = target.len().div_ceil(LOSS_ROWS).max(1);
    let n = target.len().div_ceil(step).max(1) as f64;
    match (objective, target) {
        (Objective::Regression, Target::Values(y)) => {
            scores
                .iter()
                .zip(y)
                .step_by(step)
                .map(|(s, t)| (s - t).powi(2))
                .sum::<f64>()
                / n
        }
        (Objective::Binary, Target::Classes { y, .. }) => {
            scores
                .iter()
                .zip(y)
                .step_by(step)
                .map(|(&s, &t)| {
                    let p = sigmoid(s).clamp(1e-15, 1.0 - 1e-15);
                    if t == 1 { -p.ln() } else { -(1.0 - p).ln() }
                })
                .sum::<f64>()
                / n
        }
        (Objective::Multiclass, Target::Classes { y, classes }) => {
            scores
                .chunks_exact(classes)
                .zip(y)
                .step_by(step)
                .map(|(z, &t)| {
                    let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                    let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
                    lse - z[t]
                })
                .sum::<f64>()
                / n
        }
        _ => f64::NAN,
    }
}

impl Gbdt {
    pub fn fit(
        x: ArrayView2<f64>,
        target: Target,
        p: GbdtParams,
        valid: Option<(ArrayView2<f64>, Target)>,
        mut on_round: impl FnMut(usize, &BoostReport),
    ) -> MlResult<(Self, BoostReport)> {
        p.check()?;
        check_features("gbdt", x)?;
        target.check("gbdt", x.nrows())?;
        if let Some((vx, vt)) = valid {
            check_features("gbdt validation data", vx)?;
            if vx.ncols() != x.ncols() {
                return Err(MlError::invalid(format!(
                    "gbdt: validation data has {} features, training data {}",
                    vx.ncols(),
                    x.ncols()
                )));
            }
            vt.check("gbdt validation data", vx.nrows())?;
        }
        let (n, d) = x.dim();
        let (objective, k, init) = match target {
            Target::Values(y) => (
                Objective::Regression,
                1,
                vec![y.iter().sum::<f64>() / n as f64],
            ),
            Target::Classes { y, classes } => {
                let mut counts = vec![0usize; classes];
                y.iter().for_each(|&c| counts[c] += 1);
                // An absent class starts far below the others rather than at log 0.
                let prior = |c: usize| (counts[c].max(1) as f64 / n as f64).ln();
                if classes == 2 {
                    (Objective::Binary, 1, vec![prior(1) - prior(0)])
                } else {
                    (
                        Objective::Multiclass,
                        classes,
                        (0..classes).map(prior).collect(),
                    )
                }
            }
        };
        let data = Binned::fit(x, p.max_bins, p.min_data_in_bin, p.seed)?;
        // A feature with one bin (one value in the training rows) can never split; no
        // histogram is built for it.
        let splittable: Vec<usize> = (0..d).filter(|&j| data.bins(j) > 1).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let mut scores: Vec<f64> = init.iter().copied().cycle().take(n * k).collect();
        let mut valid_scores: Vec<f64> = valid
            .map(|(vx, _)| init.iter().copied().cycle().take(vx.nrows() * k).collect())
            .unwrap_or_default();
        let mut grad = vec![0.0; n * k];
        let mut hess = vec![0.0; n * k];
        let grow_params = GrowParams {
            max_leaves: p.num_leaves,
            max_depth: p.max_depth,
            min_data_in_leaf: p.min_data_in_leaf,
            min_hessian: p.min_sum_hessian_in_leaf,
            lambda: p.lambda_l2,
            min_gain: 0.0,
            count_by_weight: false,
            features_per_split: None,
            parallel: true,
        };
        let mut model = Self {
            objective,
            outputs: k,
            features: d,
            init,
            trees: Vec::with_capacity(p.n_estimators * k),
            flat: FlatCache::default(),
        };
        let mut report = BoostReport::default();
        let mut best = (f64::INFINITY, 0usize);
        for round in 0..p.n_estimators {
            gradients(objective, target, &scores, &mut grad, &mut hess);
            let rows: Vec<u32> = if p.bagging_fraction < 1.0 {
                let take = ((n as f64 * p.bagging_fraction).ceil() as usize).max(1);
                let mut r: Vec<u32> = sample(&mut rng, n, take)
                    .into_iter()
                    .map(|i| i as u32)
                    .collect();
                r.sort_unstable();
                r
            } else {
                (0..n as u32).collect()
            };
            let allowed: Vec<usize> = if p.feature_fraction < 1.0 && !splittable.is_empty() {
                let all = splittable.len();
                let take = ((all as f64 * p.feature_fraction).ceil() as usize).max(1);
                let mut f: Vec<usize> = sample(&mut rng, all, take)
                    .into_iter()
                    .map(|i| splittable[i])
                    .collect();
                f.sort_unstable();
                f
            } else {
                splittable.clone()
            };
            let in_bag = rows.len() == n;
            // A round's class trees depend only on the round's gradients. On small data
            // each grows whole on its own thread (a histogram of a few thousand rows is too
            // little work to share); on large data they grow one after another, each
            // histogram filled on all threads. Growing with every allowed feature draws
            // nothing from a tree's generator; each still gets its own stream, so the
            // model is the same either way.
            let by_class = k > 1 && n < CLASS_PARALLEL_ROWS;
            let grow_class = |c: usize, seed: u64| {
                let own: (Vec<f64>, Vec<f64>);
                let targets = if k == 1 {
                    Targets {
                        outputs: 1,
                        grad: &grad,
                        hess: &hess,
                    }
                } else {
                    own = (
                        (0..n).map(|i| grad[i * k + c]).collect(),
                        (0..n).map(|i| hess[i * k + c]).collect(),
                    );
                    Targets {
                        outputs: 1,
                        grad: &own.0,
                        hess: &own.1,
                    }
                };
                let params = GrowParams {
                    parallel: !by_class,
                    ..grow_params
                };
                let mut tree_rng = ChaCha8Rng::seed_from_u64(seed);
                grow(
                    &data,
                    &targets,
                    rows.clone(),
                    &allowed,
                    params,
                    &mut tree_rng,
                )
            };
            let seeds: Vec<u64> = (0..k).map(|_| rng.next_u64()).collect();
            let grown: Vec<Grown> = if by_class {
                seeds
                    .into_par_iter()
                    .enumerate()
                    .map(|(c, seed)| grow_class(c, seed))
                    .collect()
            } else {
                seeds
                    .into_iter()
                    .enumerate()
                    .map(|(c, seed)| grow_class(c, seed))
                    .collect()
            };
            for (c, mut grown) in grown.into_iter().enumerate() {
                grown
                    .tree
                    .values
                    .iter_mut()
                    .for_each(|v| *v *= p.learning_rate);
                if in_bag {
                    for (l, range) in grown.leaf_ranges.iter().enumerate() {
                        let v = grown.tree.values[l];
                        for &r in &grown.order[range.clone()] {
                            scores[r as usize * k + c] += v;
                        }
                    }
                } else {
                    for (i, row) in x.rows().into_iter().enumerate() {
                        scores[i * k + c] += grown.tree.value(row)[0];
                    }
                }
                if let Some((vx, _)) = valid {
                    for (i, row) in vx.rows().into_iter().enumerate() {
                        valid_scores[i * k + c] += grown.tree.value(row)[0];
                    }
                }
                model.trees.push(grown.tree);
            }
            report.train_loss.push(loss(objective, &scores, target));
            report.best_round = round + 1;
            if let Some((_, vt)) = valid {
                let vl = loss(objective, &valid_scores, vt);
                report.valid_loss.push(vl);
                if vl < best.0 {
                    best = (vl, round + 1);
                }
                // Only early stopping chooses a round by the validation loss; otherwise the
                // validation curve is reported and every round is kept.
                if p.early_stopping_rounds.is_some() {
                    report.best_round = best.1;
                }
                on_round(round + 1, &report);
                if p.early_stopping_rounds
                    .is_some_and(|s| round + 1 - best.1 >= s)
                {
                    break;
                }
            } else {
                on_round(round + 1, &report);
            }
        }
        model.trees.truncate(report.best_round * k);
        Ok((model, report))
    }

    pub fn rounds(&self) -> usize {
        self.trees.len() / self.outputs.max(1)
    }

    fn check_input(&self, x: ArrayView2<f64>) -> MlResult<()> {
        check_input("gbdt", x, self.features)
    }

    /// Raw scores (`n × outputs`): the sum of the trees before the link function.
    pub fn raw(&self, x: ArrayView2<f64>) -> MlResult<Array2<f64>> {
        self.check_input(x)?;
        let k = self.outputs;
        let mut out = Array2::from_shape_fn((x.nrows(), k), |(_, c)| self.init[c]);
        let flat = self
            .flat
            .get(|| Flat::new(&self.trees, self.features, |i| i % k.max(1)));
        flat.add_to(x, &mut out);
        Ok(out)
    }

    /// Class probabilities (`n × classes`) for classifiers.
    pub fn predict_proba(&self, x: ArrayView2<f64>) -> MlResult<Array2<f64>> {
        let raw = self.raw(x)?;
        match self.objective {
            Objective::Regression => Err(MlError::invalid(
                "gbdt: a regression model has no class probabilities",
            )),
            Objective::Binary => Ok(Array2::from_shape_fn((raw.nrows(), 2), |(i, c)| {
                let p = sigmoid(raw[[i, 0]]);
                if c == 1 { p } else { 1.0 - p }
            })),
            Objective::Multiclass => {
                let mut p = raw;
                softmax_rows(&mut p);
                Ok(p)
            }
        }
    }

    /// Validates a model read from a file.
    pub fn validate(&self) -> MlResult<()> {
        let k = match self.objective {
            Objective::Multiclass => self.outputs,
            _ => 1,
        };
        if self.outputs != k || k == 0 || self.init.len() != k {
            return Err(MlError::invalid(format!(
                "gbdt: {} outputs and {} initial scores do not fit a {:?} model",
                self.outputs,
                self.init.len(),
                self.objective
            )));
        }
        if !self.trees.len().is_multiple_of(k) {
            return Err(MlError::invalid(
                "gbdt: the trees do not divide into whole rounds",
            ));
        }
        if self.init.iter().any(|v| !v.is_finite()) {
            return Err(MlError::invalid("gbdt: an initial score is not finite"));
        }
        for (i, t) in self.trees.iter().enumerate() {
            if t.outputs != 1 {
                return Err(MlError::invalid(format!(
                    "gbdt: tree {i} has {} outputs, boosting trees have one",
                    t.outputs
                )));
            }
            t.validate(self.features)
                .map_err(|e| MlError::invalid(format!("gbdt: tree {i}: {e}")))?;
        }
        Ok(())
    }
}

/// First and second derivatives of the loss with respect to each raw score.
fn gradients(objective: Objective, target: Target, scores: &[f64], g: &mut [f64], h: &mut [f64]) {
    match (objective, target) {
        (Objective::Regression, Target::Values(y)) => {
            g.par_iter_mut()
                .zip(h.par_iter_mut())
                .zip(scores.par_iter().zip(y))
                .for_each(|((g, h), (s, t))| {
                    *g = s - t;
                    *h = 1.0;
                });
        }
        (Objective::Binary, Target::Classes { y, .. }) => {
            g.par_iter_mut()
                .zip(h.par_iter_mut())
                .zip(scores.par_iter().zip(y))
                .for_each(|((g, h), (&s, &t))| {
                    let p = sigmoid(s);
                    *g = p - if t == 1 { 1.0 } else { 0.0 };
                    *h = (p * (1.0 - p)).max(1e-16);
                });
        }
        (Objective::Multiclass, Target::Classes { y, classes }) => {
            let factor = classes as f64 / (classes as f64 - 1.0);
            g.par_chunks_mut(classes)
                .zip(h.par_chunks_mut(classes))
                .zip(scores.par_chunks(classes).zip(y))
                .for_each(|((g, h), (z, &t))| {
                    let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                    let mut sum = 0.0;
                    for (gc, &zc) in g.iter_mut().zip(z) {
                        *gc = (zc - m).exp();
                        sum += *gc;
                    }
                    for (c, (gc, hc)) in g.iter_mut().zip(h.iter_mut()).enumerate() {
                        let p = *gc / sum;
                        *gc = p - if c == t { 1.0 } else { 0.0 };
                        *hc = (factor * p * (1.0 - p)).max(1e-16);
                    }
                });
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// Two informative features with an interaction, three noise features.
    fn data(n: usize, seed: u64) -> (Array2<f64>, Vec<usize>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x: Array2<f64> = Array2::from_shape_fn((n, 5), |_| rng.random_range(-2.0..2.0));
        let f: Vec<f64> = x
            .rows()
            .into_iter()
            .map(|r| r[0] * r[1] + (2.0 * r[2]).sin())
            .collect();
        let y = f.iter().map(|&v| usize::from(v > 0.0)).collect();
        (x, y, f)
    }

    #[test]
    fn fits_binary_multiclass_and_regression_and_is_deterministic() {
        let (x, y, f) = data(3000, 1);
        let (xt, yt, ft) = data(1000, 2);
        let p = GbdtParams::default();
        let (m, report) = Gbdt::fit(
            x.view(),
            Target::Classes { y: &y, classes: 2 },
            p,
            None,
            |_, _| {},
        )
        .unwrap();
        assert_eq!(report.train_loss.len(), 100);
        assert!(report.train_loss.windows(2).all(|w| w[1] <= w[0] + 1e-12));
        let proba = m.predict_proba(xt.view()).unwrap();
        let acc = yt
            .iter()
            .enumerate()
            .filter(|&(i, &t)| usize::from(proba[[i, 1]] > 0.5) == t)
            .count() as f64
            / 1000.0;
        assert!(acc > 0.9, "binary accuracy {acc}");
        let (again, _) = Gbdt::fit(
            x.view(),
            Target::Classes { y: &y, classes: 2 },
            p,
            None,
            |_, _| {},
        )
        .unwrap();
        assert_eq!(m, again);

        let y3: Vec<usize> = f
            .iter()
            .map(|&v| {
                if v < -0.5 {
                    0
                } else if v < 0.5 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let (m3, _) = Gbdt::fit(
            x.view(),
            Target::Classes { y: &y3, classes: 3 },
            p,
            None,
            |_, _| {},
        )
        .unwrap();
        assert_eq!(m3.trees.len(), 300);
        let p3 = m3.predict_proba(xt.view()).unwrap();
        assert!(p3.rows().into_iter().all(|r| (r.sum() - 1.0).abs() < 1e-12));
        m3.validate().unwrap();

        let (mr, _) = Gbdt::fit(x.view(), Target::Values(&f), p, None, |_, _| {}).unwrap();
        let pred = mr.raw(xt.view()).unwrap();
        let mse = ft
            .iter()
            .enumerate()
            .map(|(i, t)| (pred[[i, 0]] - t).powi(2))
            .sum::<f64>()
            / 1000.0;
        let var = {
            let m = ft.iter().sum::<f64>() / 1000.0;
            ft.iter().map(|v| (v - m).powi(2)).sum::<f64>() / 1000.0
        };
        assert!(mse < 0.1 * var, "mse {mse} vs variance {var}");
        assert!(mr.predict_proba(xt.view()).is_err());
    }

    #[test]
    fn early_stopping_keeps_the_best_round_and_sampling_is_seeded() {
        let (x, y, _) = data(2000, 3);
        let (xv, yv, _) = data(500, 4);
        let p = GbdtParams {
            n_estimators: 500,
            learning_rate: 0.3,
            early_stopping_rounds: Some(10),
            feature_fraction: 0.6,
            bagging_fraction: 0.7,
            ..Default::default()
        };
        let t = Target::Classes { y: &y, classes: 2 };
        let v = Some((xv.view(), Target::Classes { y: &yv, classes: 2 }));
        let (m, r) = Gbdt::fit(x.view(), t, p, v, |_, _| {}).unwrap();
        assert!(r.valid_loss.len() < 500, "stopped early");
        assert_eq!(r.valid_loss.len(), r.best_round + 10);
        let best = r.valid_loss[r.best_round - 1];
        assert!(r.valid_loss.iter().all(|&l| l >= best));
        assert_eq!(m.rounds(), r.best_round);
        let (again, _) = Gbdt::fit(x.view(), t, p, v, |_, _| {}).unwrap();
        assert_eq!(m, again);
        let (other, _) = Gbdt::fit(x.view(), t, GbdtParams { seed: 9, ..p }, v, |_, _| {}).unwrap();
        assert_ne!(m, other);
    }

    #[test]
    fn refuses_bad_input_and_broken_trees() {
        let (x, y, _) = data(100, 5);
        let t = Target::Classes { y: &y, classes: 2 };
        for p in [
            GbdtParams {
                num_leaves: 1,
                ..Default::default()
            },
            GbdtParams {
                learning_rate: 0.0,
                ..Default::default()
            },
            GbdtParams {
                bagging_fraction: 1.5,
                ..Default::default()
            },
            GbdtParams {
                max_bins: 300,
                ..Default::default()
            },
        ] {
            assert!(Gbdt::fit(x.view(), t, p, None, |_, _| {}).is_err(), "{p:?}");
        }
        let one = vec![1; 100];
        let e = Gbdt::fit(
            x.view(),
            Target::Classes {
                y: &one,
                classes: 2,
            },
            GbdtParams::default(),
            None,
            |_, _| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("single class"), "{e}");
        let mut bad = x.clone();
        bad[[7, 3]] = f64::NAN;
        let e = Gbdt::fit(bad.view(), t, GbdtParams::default(), None, |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("feature 3 of row 7"), "{e}");

        let (m, _) = Gbdt::fit(
            x.view(),
            t,
            GbdtParams {
                n_estimators: 3,
                ..Default::default()
            },
            None,
            |_, _| {},
        )
        .unwrap();
        m.validate().unwrap();
        let mut cyc = m.clone();
        if cyc.trees[0].left.len() > 1 {
            cyc.trees[0].left[1] = 0;
            assert!(cyc.validate().is_err());
        }
        let mut far = m.clone();
        far.trees[0].feature[0] = 99;
        assert!(
            far.validate()
                .unwrap_err()
                .to_string()
                .contains("feature 99")
        );
        let mut short = m;
        short.trees[0].values.pop();
        assert!(short.validate().is_err());
    }
}
