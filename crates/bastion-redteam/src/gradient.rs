//! White-box evasion: the fast gradient sign method (one step of size ε) and projected
//! gradient descent (several smaller steps, each projected back into the ε-ball and the
//! feature space), in L∞ or L2, as Goodfellow et al. and Madry et al. define them and as the
//! Adversarial Robustness Toolbox implements them (untargeted, on the true labels, no early
//! stop).

use ndarray::{Array2, ArrayView2, Axis, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{RedteamError, RedteamResult};
use crate::norm::Norm;
use crate::oracle::Oracle;
use crate::space::Space;

/// Rows × steps below which an attack runs on one thread.
const PARALLEL_ROW_STEPS: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GradientAttack {
    pub norm: Norm,
    pub eps: f64,
    /// Size of each step.
    pub step: f64,
    pub iterations: usize,
    /// Start from a uniformly random point of the ball instead of the row itself.
    pub random_start: bool,
}

impl GradientAttack {
    pub fn fgsm(norm: Norm, eps: f64) -> Self {
        Self {
            norm,
            eps,
            step: eps,
            iterations: 1,
            random_start: false,
        }
    }

    /// PGD with Madry et al.'s step: 2.5 ε over the number of steps.
    pub fn pgd(norm: Norm, eps: f64, iterations: usize, random_start: bool) -> Self {
        let iterations = iterations.max(1);
        Self {
            norm,
            eps,
            step: 2.5 * eps / iterations as f64,
            iterations,
            random_start,
        }
    }

    /// Adversarial versions of the rows of `x` (true classes `y`), within the ball and the
    /// space.
    pub fn run(
        &self,
        oracle: &Oracle,
        space: &Space,
        x: ArrayView2<f64>,
        y: &[usize],
        seed: u64,
    ) -> RedteamResult<Array2<f64>> {
        self.run_from(oracle, space, x, y, seed, None)
    }

    /// As [`run`](Self::run), given the loss gradient at the rows themselves: without a
    /// random start the first step of every ε (FGSM's only step) is along it, so a sweep
    /// over ε computes it once.
    pub fn run_from(
        &self,
        oracle: &Oracle,
        space: &Space,
        x: ArrayView2<f64>,
        y: &[usize],
        seed: u64,
        at_rows: Option<ArrayView2<f64>>,
    ) -> RedteamResult<Array2<f64>> {
        let at_rows = at_rows.filter(|g| !self.random_start && g.dim() == x.dim());
        crate::norm::check_eps(self.eps)?;
        crate::norm::check_eps(self.step)?;
        let mut adv = x.to_owned();
        if self.random_start {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for (i, mut row) in adv.axis_iter_mut(Axis(0)).enumerate() {
                let noise = ball_sample(&mut rng, self.norm, self.eps, row.len());
                row += &noise;
                space.project(row, x.row(i), Some((self.norm, self.eps)));
            }
        }
        // Rows are attacked independently (each row's loss depends on that row only), so
        // blocks of rows run on all cores; the result does not depend on the split. Waking
        // the other threads costs more than a few row-steps, so small attacks stay on one.
        let threads = if x.nrows() * self.iterations < PARALLEL_ROW_STEPS {
            1
        } else {
            rayon::current_num_threads().max(1)
        };
        if threads == 1 {
            return self.steps(oracle, space, x, y, adv, at_rows);
        }
        let block = x.nrows().div_ceil(threads).max(1);
        let blocks: Vec<Array2<f64>> = (0..x.nrows())
            .step_by(block)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|start| {
                let rows = start..(start + block).min(x.nrows());
                self.steps(
                    oracle,
                    space,
                    x.slice(s![rows.clone(), ..]),
                    &y[rows.clone()],
                    adv.slice(s![rows.clone(), ..]).to_owned(),
                    at_rows.map(|g| g.slice_move(s![rows, ..])),
                )
            })
            .collect::<RedteamResult<_>>()?;
        let views: Vec<ArrayView2<f64>> = blocks.iter().map(Array2::view).collect();
        if views.is_empty() {
            return Ok(adv);
        }
        ndarray::concatenate(Axis(0), &views)
            .map_err(|e| RedteamError::invalid(format!("joining attacked rows: {e}")))
    }

    /// The attack's steps from `adv` for rows `x` with classes `y`; `first`, the gradient
    /// at `adv`, if known.
    fn steps(
        &self,
        oracle: &Oracle,
        space: &Space,
        x: ArrayView2<f64>,
        y: &[usize],
        mut adv: Array2<f64>,
        first: Option<ArrayView2<f64>>,
    ) -> RedteamResult<Array2<f64>> {
        for k in 0..self.iterations {
            let mut g = match first {
                Some(g) if k == 0 => g.to_owned(),
                _ => loss_gradient(oracle, adv.view(), y)?,
            };
            for (i, (mut gi, mut row)) in g
                .axis_iter_mut(Axis(0))
                .zip(adv.axis_iter_mut(Axis(0)))
                .enumerate()
            {
                for (j, v) in gi.iter_mut().enumerate() {
                    if !space.mutable[j] {
                        *v = 0.0;
                    }
                }
                self.norm.direction(gi.view_mut());
                row.scaled_add(self.step, &gi);
                space.project(row, x.row(i), Some((self.norm, self.eps)));
            }
        }
        Ok(adv)
    }
}

/// ∂ loss / ∂ x of the rows, or why the model cannot give it.
pub fn loss_gradient(
    oracle: &Oracle,
    x: ArrayView2<f64>,
    y: &[usize],
) -> RedteamResult<Array2<f64>> {
    oracle.gradient(x, y).ok_or_else(|| {
        RedteamError::invalid("the model has no input gradients (a white-box attack needs them)")
    })?
}

/// A uniformly random point of the ball of radius `eps` around 0 in `d` dimensions.
pub(crate) fn ball_sample(
    rng: &mut ChaCha8Rng,
    norm: Norm,
    eps: f64,
    d: usize,
) -> ndarray::Array1<f64> {
    match norm {
        Norm::Linf => ndarray::Array1::from_shape_fn(d, |_| rng.random_range(-eps..=eps)),
        Norm::L2 => {
            let mut v = ndarray::Array1::from_shape_fn(d, |_| StandardNormal.sample(rng));
            let n = Norm::L2.of(v.iter().copied()).max(f64::MIN_POSITIVE);
            let r = eps * rng.random::<f64>().powf(1.0 / d.max(1) as f64);
            v.mapv_inplace(|x: f64| x / n * r);
            v
        }
    }
}
