//! The Square attack (Andriushchenko et al., 2020), L∞, score-based: it needs class
//! probabilities but no gradients. Each iteration sets a random subset of the features to a
//! corner of the ε-ball (±ε) and keeps the change when the margin between the true class and
//! the best other class shrinks. On images the subset is a square of pixels; for a table it
//! is a random set of features whose size follows the paper's schedule. All rows still
//! standing are queried together, one batch per iteration.

use ndarray::{Array2, ArrayView2, Axis};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::RedteamResult;
use crate::norm::Norm;
use crate::oracle::{Oracle, margin};
use crate::space::Space;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Square {
    pub eps: f64,
    /// Iterations (one query per standing row each).
    pub max_iter: usize,
    /// Share of the features changed at first.
    pub p_init: f64,
}

impl Square {
    pub fn new(eps: f64, max_iter: usize) -> Self {
        Self {
            eps,
            max_iter,
            p_init: 0.8,
        }
    }

    /// Adversarial versions of `x`'s rows (or the best tries), and the queries spent.
    pub fn run(
        &self,
        oracle: &Oracle,
        space: &Space,
        x: ArrayView2<f64>,
        y: &[usize],
        seed: u64,
    ) -> RedteamResult<(Array2<f64>, u64)> {
        crate::norm::check_eps(self.eps)?;
        let before = oracle.queries();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let ball = Some((Norm::Linf, self.eps));
        let mutable: Vec<usize> = (0..x.ncols()).filter(|&j| space.mutable[j]).collect();
        let mut best = x.to_owned();
        for (i, mut row) in best.axis_iter_mut(Axis(0)).enumerate() {
            for &j in &mutable {
                row[j] += if rng.random::<bool>() {
                    self.eps
                } else {
                    -self.eps
                };
            }
            space.project(row, x.row(i), ball);
        }
        let mut margin = margins(&oracle.probabilities(best.view())?, y);
        for it in 0..self.max_iter {
            let standing: Vec<usize> = (0..x.nrows()).filter(|&i| margin[i] > 0.0).collect();
            if standing.is_empty() || mutable.is_empty() {
                break;
            }
            let share = self.p_init * schedule(it, self.max_iter);
            let k = ((share * mutable.len() as f64).round() as usize).clamp(1, mutable.len());
            let mut tries = best.select(Axis(0), &standing);
            for (t, &i) in standing.iter().enumerate() {
                let mut row = tries.row_mut(t);
                for pick in sample(&mut rng, mutable.len(), k) {
                    let j = mutable[pick];
                    row[j] = x[[i, j]]
                        + if rng.random::<bool>() {
                            self.eps
                        } else {
                            -self.eps
                        };
                }
                space.project(row, x.row(i), ball);
            }
            let ys: Vec<usize> = standing.iter().map(|&i| y[i]).collect();
            let m = margins(&oracle.probabilities(tries.view())?, &ys);
            for (t, &i) in standing.iter().enumerate() {
                if m[t] < margin[i] {
                    margin[i] = m[t];
                    best.row_mut(i).assign(&tries.row(t));
                }
            }
        }
        Ok((best, oracle.queries() - before))
    }
}

/// Each row's margin against its true class.
fn margins(p: &Array2<f64>, y: &[usize]) -> Vec<f64> {
    p.rows()
        .into_iter()
        .zip(y)
        .map(|(r, &c)| margin(r, c))
        .collect()
}

/// The paper's halving schedule for the share of features changed, at iteration `it` of
/// `n` (rescaled to the paper's 10,000 iterations).
fn schedule(it: usize, n: usize) -> f64 {
    let i = (it as f64 / n.max(1) as f64 * 10_000.0) as usize;
    match i {
        0..=10 => 1.0,
        11..=50 => 0.5,
        51..=200 => 0.25,
        201..=500 => 0.125,
        501..=1000 => 1.0 / 16.0,
        1001..=2000 => 1.0 / 32.0,
        2001..=4000 => 1.0 / 64.0,
        4001..=6000 => 1.0 / 128.0,
        6001..=8000 => 1.0 / 256.0,
        _ => 1.0 / 512.0,
    }
}
