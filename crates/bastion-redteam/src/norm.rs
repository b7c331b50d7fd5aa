//! The size of a perturbation: L∞ (the largest change of one feature) or L2 (Euclidean).

use ndarray::{ArrayView1, ArrayViewMut1};
use serde::{Deserialize, Serialize};

/// Refuses a perturbation size that is negative, NaN or infinite.
pub fn check_eps(eps: f64) -> crate::error::RedteamResult<()> {
    if eps >= 0.0 && eps.is_finite() {
        Ok(())
    } else {
        Err(crate::error::RedteamError::invalid(format!(
            "epsilon must be a finite number >= 0, got {eps}"
        )))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    Linf,
    L2,
}

impl Norm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linf => "linf",
            Self::L2 => "l2",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "linf" | "inf" | "l_inf" => Some(Self::Linf),
            "l2" | "2" => Some(Self::L2),
            _ => None,
        }
    }

    pub fn of(self, v: impl Iterator<Item = f64>) -> f64 {
        match self {
            Self::Linf => v.fold(0.0, |m, x| m.max(x.abs())),
            Self::L2 => v.map(|x| x * x).sum::<f64>().sqrt(),
        }
    }

    pub fn distance(self, a: ArrayView1<f64>, b: ArrayView1<f64>) -> f64 {
        self.of(a.iter().zip(b.iter()).map(|(x, y)| x - y))
    }

    /// The steepest-ascent direction of unit size for gradient `g`: its sign (L∞) or `g`
    /// over its length (L2).
    pub fn direction(self, mut g: ArrayViewMut1<f64>) {
        match self {
            Self::Linf => g.mapv_inplace(|v| {
                if v > 0.0 {
                    1.0
                } else if v < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }),
            Self::L2 => {
                let n = Self::L2.of(g.iter().copied());
                if n > 0.0 {
                    g.mapv_inplace(|v| v / n);
                }
            }
        }
    }

    /// Moves `x` into the ball of radius `eps` around `x0`.
    pub fn project(self, x: &mut [f64], x0: &[f64], eps: f64) {
        match self {
            Self::Linf => {
                for (v, &o) in x.iter_mut().zip(x0) {
                    *v = v.clamp(o - eps, o + eps);
                }
            }
            Self::L2 => {
                let n = self.of(x.iter().zip(x0).map(|(a, b)| a - b));
                if n > eps {
                    let f = eps / n;
                    for (v, &o) in x.iter_mut().zip(x0) {
                        *v = o + (*v - o) * f;
                    }
                }
            }
        }
    }

    pub fn switch_cost(self) -> f64 {
        match self {
            Self::Linf => 1.0,
            Self::L2 => std::f64::consts::SQRT_2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn projections_land_on_the_ball() {
        let x0 = [0.0, 0.0];
        let mut x = [3.0, 4.0];
        Norm::L2.project(&mut x, &x0, 1.0);
        assert!(
            (Norm::L2.distance(array![x[0], x[1]].view(), array![0.0, 0.0].view()) - 1.0).abs()
                < 1e-6
        );
        let mut x = [3.0, -0.5];
        Norm::Linf.project(&mut x, &x0, 1.0);
        assert_eq!(x, [1.0, -0.5]);
    }

    #[test]
    fn directions_have_unit_size() {
        let mut g = array![3.0, -4.0, 0.0];
        Norm::Linf.direction(g.view_mut());
        assert_eq!(g, array![1.0, -1.0, 0.0]);
        let mut g = array![3.0, -4.0];
        Norm::L2.direction(g.view_mut());
        assert!((Norm::L2.of(g.iter().copied()) - 1.0).abs() < 1e-6);
    }
}
