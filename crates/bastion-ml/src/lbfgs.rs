//! L-BFGS (two-loop recursion, 10 correction pairs) with a backtracking Armijo line search:
//! the optimizer of the smooth, convex training objectives (logistic and softmax regression
//! with L2). Deterministic: no randomness, a fixed iteration order.

/// Why the optimizer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// The gradient's largest component fell below the tolerance.
    Converged,
    MaxIterations,
    /// No step along the search direction decreased the objective (at the precision of f64).
    LineSearch,
}

pub struct Outcome {
    pub x: Vec<f64>,
    pub value: f64,
    pub iterations: usize,
    pub stop: Stop,
    /// The objective after each iteration (for per-iteration training metrics).
    pub trace: Vec<f64>,
}

const HISTORY: usize = 10;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimises `f`, which returns the objective and writes its gradient into the second
/// argument, from `x0`.
pub fn minimize(
    mut f: impl FnMut(&[f64], &mut [f64]) -> f64,
    x0: Vec<f64>,
    max_iter: usize,
    tol: f64,
) -> Outcome {
    let n = x0.len();
    let mut x = x0;
    let mut g = vec![0.0; n];
    let mut value = f(&x, &mut g);
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut trace = Vec::new();
    let mut g_new = vec![0.0; n];
    let mut x_new = vec![0.0; n];
    for it in 0..max_iter {
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) <= tol {
            return Outcome {
                x,
                value,
                iterations: it,
                stop: Stop::Converged,
                trace,
            };
        }
        // Two-loop recursion: d = -H·g.
        let mut q = g.clone();
        let mut alpha = vec![0.0; s_hist.len()];
        for i in (0..s_hist.len()).rev() {
            let rho = 1.0 / dot(&y_hist[i], &s_hist[i]);
            alpha[i] = rho * dot(&s_hist[i], &q);
            q.iter_mut()
                .zip(&y_hist[i])
                .for_each(|(q, y)| *q -= alpha[i] * y);
        }
        let gamma = match (s_hist.last(), y_hist.last()) {
            (Some(s), Some(y)) => dot(s, y) / dot(y, y),
            _ => 1.0 / g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1.0),
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for i in 0..s_hist.len() {
            let rho = 1.0 / dot(&y_hist[i], &s_hist[i]);
            let beta = rho * dot(&y_hist[i], &q);
            q.iter_mut()
                .zip(&s_hist[i])
                .for_each(|(q, s)| *q += (alpha[i] - beta) * s);
        }
        let mut d: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            // Not a descent direction (curvature lost): restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            d = g.iter().map(|v| -v).collect();
            slope = dot(&g, &d);
        }
        let mut step = 1.0;
        let mut accepted = false;
        for _ in 0..60 {
            x_new
                .iter_mut()
                .zip(&x)
                .zip(&d)
                .for_each(|((xn, x), d)| *xn = x + step * d);
            let v = f(&x_new, &mut g_new);
            if v.is_finite() && v <= value + 1e-4 * step * slope {
                accepted = true;
                let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
                let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
                if dot(&s, &y) > 1e-12 * dot(&y, &y).max(f64::MIN_POSITIVE) {
                    if s_hist.len() == HISTORY {
                        s_hist.remove(0);
                        y_hist.remove(0);
                    }
                    s_hist.push(s);
                    y_hist.push(y);
                }
                std::mem::swap(&mut x, &mut x_new);
                std::mem::swap(&mut g, &mut g_new);
                value = v;
                break;
            }
            step *= 0.5;
        }
        trace.push(value);
        if !accepted {
            return Outcome {
                x,
                value,
                iterations: it + 1,
                stop: Stop::LineSearch,
                trace,
            };
        }
    }
    Outcome {
        x,
        value,
        iterations: max_iter,
        stop: Stop::MaxIterations,
        trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_the_rosenbrock_function() {
        let rosen = |x: &[f64], g: &mut [f64]| {
            let (a, b) = (x[0], x[1]);
            g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            g[1] = 200.0 * (b - a * a);
            (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
        };
        let out = minimize(rosen, vec![-1.2, 1.0], 500, 1e-10);
        assert_eq!(out.stop, Stop::Converged);
        assert!(
            (out.x[0] - 1.0).abs() < 1e-6 && (out.x[1] - 1.0).abs() < 1e-6,
            "{:?}",
            out.x
        );
        assert!(out.trace.windows(2).all(|w| w[1] <= w[0]), "monotone");
    }
}
