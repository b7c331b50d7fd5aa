//! HopSkipJump (Chen, Jordan and Wainwright, 2020): a decision-based attack that needs only
//! the predicted label. From a misclassified starting point it walks along the decision
//! boundary towards the row: binary search to the boundary, a Monte Carlo estimate of the
//! boundary's normal from label queries, a geometric step along it. Untargeted; L2 or L∞.
//! The result is a minimal perturbation per row, not one bounded by ε: robust accuracy at ε
//! counts the rows whose perturbation is larger than ε.

use ndarray::{Array1, Array2, ArrayView1, Axis};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::RedteamResult;
use crate::norm::Norm;
use crate::oracle::Oracle;
use crate::space::Space;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HopSkipJump {
    pub norm: Norm,
    pub max_iter: usize,
    /// Label queries for the first gradient estimate; grows with √iteration.
    pub init_eval: usize,
    pub max_eval: usize,
    /// Random points tried to find a misclassified start.
    pub init_size: usize,
    /// Sets the binary-search tolerance θ = γ / d^1.5 (L2) or γ / d² (L∞).
    pub gamma: f64,
    /// Queries per row, at most (the attack stops when they are spent).
    pub max_queries: u64,
}

impl Default for HopSkipJump {
    fn default() -> Self {
        // ART's defaults, with a query budget.
        Self {
            norm: Norm::L2,
            max_iter: 50,
            init_eval: 100,
            max_eval: 10_000,
            init_size: 100,
            gamma: 1.0,
            max_queries: 25_000,
        }
    }
}

/// What the attack found for one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The adversarial point, if one was found.
    pub adversarial: Option<Array1<f64>>,
    /// Its distance to the row in the attack's norm (∞ when none was found).
    pub distance: f64,
    pub queries: u64,
}

/// One row's attack: its own RNG, its own query count.
struct Walk<'a> {
    oracle: &'a Oracle<'a>,
    space: &'a Space,
    x0: ArrayView1<'a, f64>,
    y: usize,
    /// Xoshiro, not ChaCha: the walk draws a normal per feature per query (millions per
    /// run) and needs statistical quality, not unpredictability.
    rng: Xoshiro256PlusPlus,
    queries: u64,
}

impl Walk<'_> {
    /// Which of the points are misclassified (adversarial).
    fn adversarial(&mut self, pts: &Array2<f64>) -> RedteamResult<Vec<bool>> {
        self.queries += pts.nrows() as u64;
        Ok(self
            .oracle
            .labels(pts.view())?
            .into_iter()
            .map(|l| l != self.y)
            .collect())
    }

    fn is_adversarial(&mut self, p: &Array1<f64>) -> RedteamResult<bool> {
        let m = p.view().insert_axis(Axis(0)).to_owned();
        Ok(self.adversarial(&m)?.first().copied().unwrap_or(false))
    }

    fn projected(&self, mut p: Array1<f64>) -> Array1<f64> {
        self.space.project(p.view_mut(), self.x0, None);
        p
    }

    /// A misclassified point: random points of the space until one is, then a binary
    /// search on the segment to the row.
    fn start(&mut self, a: &HopSkipJump) -> RedteamResult<Option<Array1<f64>>> {
        let d = self.x0.len();
        for _ in 0..a.init_size {
            let p = Array1::from_shape_fn(d, |j| {
                let (lo, hi) = (self.space.lo[j], self.space.hi[j]);
                let (lo, hi) = if lo.is_finite() && hi.is_finite() && hi > lo {
                    (lo, hi)
                } else {
                    (self.x0[j] - 3.0, self.x0[j] + 3.0)
                };
                self.rng.random_range(lo..=hi)
            });
            let p = self.projected(p);
            if self.is_adversarial(&p)? {
                let (mut low, mut high) = (0.0, 1.0);
                while high - low > 0.001 {
                    let mid = (low + high) / 2.0;
                    let blend = self.projected(&self.x0 * (1.0 - mid) + &p * mid);
                    if self.is_adversarial(&blend)? {
                        high = mid;
                    } else {
                        low = mid;
                    }
                }
                return Ok(Some(self.projected(&self.x0 * (1.0 - high) + &p * high)));
            }
        }
        Ok(None)
    }

    /// The point between the row and `x` at fraction `alpha` of the way, in the norm's sense.
    fn interpolate(&self, x: &Array1<f64>, alpha: f64, norm: Norm) -> Array1<f64> {
        let p = match norm {
            Norm::L2 => &self.x0 * (1.0 - alpha) + x * alpha,
            Norm::Linf => Array1::from_shape_fn(x.len(), |j| {
                x[j].clamp(self.x0[j] - alpha, self.x0[j] + alpha)
            }),
        };
        self.projected(p)
    }

    /// Binary search from adversarial `x` towards the row, to within `theta` of the
    /// boundary.
    fn boundary_from(
        &mut self,
        x: &Array1<f64>,
        norm: Norm,
        theta: f64,
    ) -> RedteamResult<Array1<f64>> {
        let (mut high, threshold) = match norm {
            Norm::L2 => (1.0, theta),
            Norm::Linf => {
                let up = Norm::Linf.distance(x.view(), self.x0);
                (up, (up * theta).min(theta))
            }
        };
        let mut low = 0.0;
        while high - low > threshold {
            let mid = (low + high) / 2.0;
            let p = self.interpolate(x, mid, norm);
            if self.is_adversarial(&p)? {
                high = mid;
            } else {
                low = mid;
            }
        }
        Ok(self.interpolate(x, high, norm))
    }

    /// The boundary's normal at `x`, estimated from `n` label queries at distance `delta`.
    fn normal(
        &mut self,
        x: &Array1<f64>,
        n: usize,
        delta: f64,
        norm: Norm,
    ) -> RedteamResult<Array1<f64>> {
        let d = x.len();
        let mutable: Vec<usize> = (0..d).filter(|&j| self.space.mutable[j]).collect();
        let mut noise = Array2::<f64>::zeros((n, d));
        let mut pts = Array2::zeros((n, d));
        // A local generator stays in registers; through `self` it is reloaded per draw.
        let mut rng = self.rng.clone();
        for (mut u, mut p) in noise.axis_iter_mut(Axis(0)).zip(pts.axis_iter_mut(Axis(0))) {
            for &j in &mutable {
                u[j] = match norm {
                    Norm::L2 => StandardNormal.sample(&mut rng),
                    Norm::Linf => rng.random_range(-1.0..=1.0),
                };
            }
            let len = Norm::L2.of(u.iter().copied()).max(f64::MIN_POSITIVE);
            let step = delta / len;
            ndarray::Zip::from(&mut p)
                .and(x)
                .and(&u)
                .for_each(|p, &x, &u| *p = x + step * u);
            self.space.project(p.view_mut(), self.x0, None);
            // The direction actually taken, after the space moved the point.
            ndarray::Zip::from(&mut u)
                .and(&p)
                .and(x)
                .for_each(|u, &p, &x| *u = (p - x) / delta);
        }
        self.rng = rng;
        let hits = self.adversarial(&pts)?;
        let f: Vec<f64> = hits.iter().map(|&h| if h { 1.0 } else { -1.0 }).collect();
        let mean = f.iter().sum::<f64>() / n as f64;
        let centre = if mean.abs() == 1.0 { 0.0 } else { mean };
        let mut g = Array1::<f64>::zeros(d);
        for (u, fv) in noise.axis_iter(Axis(0)).zip(&f) {
            g.scaled_add(fv - centre, &u);
        }
        g /= n as f64;
        Ok(match norm {
            Norm::L2 => {
                let len = Norm::L2.of(g.iter().copied());
                if len > 0.0 { g / len } else { g }
            }
            Norm::Linf => g.mapv(f64::signum),
        })
    }
}

impl HopSkipJump {
    /// Runs the attack on each row of `x` (true classes `y`) that the model classifies
    /// correctly; misclassified rows are reported at distance 0.
    pub fn run(
        &self,
        oracle: &Oracle,
        space: &Space,
        x: ndarray::ArrayView2<f64>,
        y: &[usize],
        seed: u64,
    ) -> RedteamResult<Vec<Found>> {
        let clean = oracle.labels(x)?;
        (0..x.nrows())
            .into_par_iter()
            .map(|i| {
                if clean[i] != y[i] {
                    return Ok(Found {
                        adversarial: Some(x.row(i).to_owned()),
                        distance: 0.0,
                        queries: 0,
                    });
                }
                let mut w = Walk {
                    oracle,
                    space,
                    x0: x.row(i),
                    y: y[i],
                    rng: Xoshiro256PlusPlus::seed_from_u64(
                        seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    ),
                    queries: 0,
                };
                self.walk(&mut w)
            })
            .collect()
    }

    fn walk(&self, w: &mut Walk) -> RedteamResult<Found> {
        let d = w.x0.len().max(1) as f64;
        let theta = match self.norm {
            Norm::L2 => self.gamma / (d * d.sqrt()),
            Norm::Linf => self.gamma / (d * d),
        };
        let Some(mut current) = w.start(self)? else {
            return Ok(Found {
                adversarial: None,
                distance: f64::INFINITY,
                queries: w.queries,
            });
        };
        let mut best = current.clone();
        for t in 0..self.max_iter {
            if w.queries >= self.max_queries {
                break;
            }
            current = w.boundary_from(&current, self.norm, theta)?;
            best = current.clone();
            let dist = self.norm.distance(current.view(), w.x0);
            let delta = if t == 0 {
                0.1 * space_width(w.space, w.x0)
            } else {
                match self.norm {
                    Norm::L2 => d.sqrt() * theta * dist,
                    Norm::Linf => d * theta * dist,
                }
            };
            let evals = ((self.init_eval as f64 * ((t + 1) as f64).sqrt()) as usize)
                .clamp(1, self.max_eval);
            let budget = self.max_queries.saturating_sub(w.queries) as usize;
            if budget < evals + 1 {
                break;
            }
            let update = w.normal(&current, evals, delta.max(1e-12), self.norm)?;
            let mut eps = 2.0 * dist / ((t + 1) as f64).sqrt();
            let mut moved = None;
            for _ in 0..30 {
                eps /= 2.0;
                let p = w.projected(&current + &(&update * eps));
                if w.is_adversarial(&p)? {
                    moved = Some(p);
                    break;
                }
            }
            match moved {
                Some(p) => current = p,
                None => break,
            }
        }
        // The last step left the boundary: search back to it, keep the closer point.
        let last = w.boundary_from(&current, self.norm, theta)?;
        if self.norm.distance(last.view(), w.x0) < self.norm.distance(best.view(), w.x0) {
            best = last;
        }
        let distance = self.norm.distance(best.view(), w.x0);
        Ok(Found {
            adversarial: Some(best),
            distance,
            queries: w.queries,
        })
    }
}

/// The typical width of the space around a row: the mean finite feature range (1 where
/// features are unbounded), as ART's first δ uses `clip_max - clip_min`.
fn space_width(space: &Space, x0: ArrayView1<f64>) -> f64 {
    let widths: Vec<f64> = (0..x0.len())
        .map(|j| space.hi[j] - space.lo[j])
        .filter(|w| w.is_finite() && *w > 0.0)
        .collect();
    if widths.is_empty() {
        1.0
    } else {
        widths.iter().sum::<f64>() / widths.len() as f64
    }
}
