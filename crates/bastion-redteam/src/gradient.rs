//! White-box evasion: the fast gradient sign method (one step of size ε) and projected
//! gradient descent (several smaller steps, each projected back into the ε-ball and the
//! feature space), in L∞ or L2, as Goodfellow et al. and Madry et al. define them and as the
//! Adversarial Robustness Toolbox implements them (untargeted, on the true labels, no early
//! stop).

use ndarray::{Array2, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

use crate::error::{RedteamError, RedteamResult};
use crate::norm::Norm;
use crate::oracle::Oracle;
use crate::space::Space;

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
        for _ in 0..self.iterations {
            let mut g = oracle.gradient(adv.view(), y).ok_or_else(|| {
                RedteamError::invalid(
                    "the model has no input gradients (a white-box attack needs them)",
                )
            })??;
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
