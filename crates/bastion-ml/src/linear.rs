//! Linear models, deterministic: logistic regression with an L2 penalty (binary: one weight
//! vector and the logistic loss; three or more classes: softmax over one vector per class),
//! fitted with L-BFGS, as scikit-learn's `LogisticRegression(solver="lbfgs")`; and linear
//! regression (ordinary least squares, or ridge), solved exactly from the normal equations.
//! Both expose the gradient of their loss with respect to the input, for white-box attacks.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{MlError, MlResult};
use crate::lbfgs::{self, Stop};
use crate::link::{log1p_exp, sigmoid, softmax_in_place, softmax_rows};
use crate::task::Target;

/// [`check_features`], and that `x` has the `width` columns a fitted model takes.
pub fn check_input(what: &str, x: ArrayView2<f64>, width: usize) -> MlResult<()> {
    check_features(what, x)?;
    if x.ncols() != width {
        return Err(MlError::invalid(format!(
            "{what}: the model takes {width} features, the input has {}",
            x.ncols()
        )));
    }
    Ok(())
}

/// Refuses empty, ragged or non-finite feature matrices, naming the first bad cell.
pub fn check_features(what: &str, x: ArrayView2<f64>) -> MlResult<()> {
    if x.nrows() == 0 || x.ncols() == 0 {
        return Err(MlError::invalid(format!(
            "{what}: the feature matrix is empty ({} rows × {} columns)",
            x.nrows(),
            x.ncols()
        )));
    }
    // One pass without early exit (it vectorises); the search for the cell only on failure.
    // x·0 is 0 for finite x and NaN otherwise; eight independent sums vectorise.
    let finite = |v: &[f64]| {
        let mut acc = [0.0f64; 8];
        let chunks = v.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for (a, x) in acc.iter_mut().zip(c) {
                *a += x * 0.0;
            }
        }
        acc.iter().all(|a| *a == 0.0) && rest.iter().all(|x| x.is_finite())
    };
    let all_finite = match x.as_slice_memory_order() {
        Some(all) => finite(all),
        None => x
            .rows()
            .into_iter()
            .all(|r| r.iter().all(|v| v.is_finite())),
    };
    if all_finite {
        return Ok(());
    }
    for (i, row) in x.rows().into_iter().enumerate() {
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(MlError::invalid(format!(
                "{what}: feature {j} of row {i} is {} (impute or drop it first)",
                row[j]
            )));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogisticParams {
    /// Inverse regularisation strength, as scikit-learn's `C`.
    pub c: f64,
    pub max_iter: usize,
    /// Stop when the gradient's largest component is below this.
    pub tol: f64,
    /// Adversarial training: when above 0, every row is trained together with its
    /// adversarial copy, made against the current weights within this L∞ radius (in
    /// feature units). For two classes one FGSM step is the exact worst case of a linear
    /// model (the margin falls by ε‖w‖₁).
    pub adversarial_eps: f64,
    /// Gradient steps that make the adversarial copy: 1 is FGSM, more is PGD with steps of
    /// 2.5 ε / steps.
    pub adversarial_steps: usize,
}

impl Default for LogisticParams {
    fn default() -> Self {
        Self {
            c: 1.0,
            max_iter: 1000,
            tol: 1e-8,
            adversarial_eps: 0.0,
            adversarial_steps: 1,
        }
    }
}

/// A fitted logistic regression. `coef` is `classes × features` (one row for two classes,
/// scoring class 1), `intercept` one value per row.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticRegression {
    pub classes: usize,
    pub coef: Array2<f64>,
    pub intercept: Array1<f64>,
}

/// How a fit went: the objective per iteration and why it stopped.
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    pub iterations: usize,
    pub stop: Stop,
    pub loss: Vec<f64>,
}

impl LogisticRegression {
    /// Fits on `x` (n × d, finite) and labels `y` in `0..classes`.
    pub fn fit(
        x: ArrayView2<f64>,
        y: &[usize],
        classes: usize,
        p: LogisticParams,
    ) -> MlResult<(Self, FitReport)> {
        check_features("logistic regression", x)?;
        let (n, d) = x.dim();
        Target::Classes { y, classes }.check("logistic regression", n)?;
        if !(p.c > 0.0 && p.c.is_finite()) {
            return Err(MlError::invalid("logistic regression: C must be positive"));
        }
        let rows = if classes == 2 { 1 } else { classes };
        let width = d + 1;
        let adversarial_ok = p.adversarial_eps >= 0.0
            && p.adversarial_eps.is_finite()
            && (1..=100).contains(&p.adversarial_steps);
        if !adversarial_ok {
            return Err(MlError::invalid(format!(
                "logistic regression: adversarial_eps must be >= 0 and adversarial_steps 1 to 100, got {} and {}",
                p.adversarial_eps, p.adversarial_steps
            )));
        }
        let adversarial = p.adversarial_eps > 0.0;
        // With adversarial training each row counts twice: itself and its adversarial copy.
        let inv_n = if adversarial { 0.5 } else { 1.0 } / n as f64;
        let penalty = 1.0 / (n as f64 * p.c);
        // Parameters: for each output row, d weights then the intercept (not penalised).
        let objective = |w: &[f64], g: &mut [f64]| -> f64 {
            g.iter_mut().for_each(|v| *v = 0.0);
            let mut loss = 0.0;
            let mut z = vec![0.0; rows];
            let mut xadv = vec![0.0; d];
            for (i, xi) in x.rows().into_iter().enumerate() {
                loss += row_loss(w, xi.iter().copied(), y[i], d, &mut z, g);
                if adversarial {
                    let xi = xi.as_slice().map_or_else(|| xi.to_vec(), <[f64]>::to_vec);
                    perturb(w, &xi, y[i], d, rows, p, &mut xadv);
                    loss += row_loss(w, xadv.iter().copied(), y[i], d, &mut z, g);
                }
            }
            let mut reg = 0.0;
            for r in 0..rows {
                for j in 0..d {
                    let k = r * width + j;
                    reg += w[k] * w[k];
                    g[k] = g[k] * inv_n + penalty * w[k];
                }
                g[r * width + d] *= inv_n;
            }
            loss * inv_n + 0.5 * penalty * reg
        };
        let out = lbfgs::minimize(objective, vec![0.0; rows * width], p.max_iter, p.tol);
        let w = Array2::from_shape_vec((rows, width), out.x)
            .map_err(|e| MlError::invalid(format!("logistic regression: {e}")))?;
        let model = Self {
            classes,
            coef: w.slice(ndarray::s![.., ..d]).to_owned(),
            intercept: w.column(d).to_owned(),
        };
        Ok((
            model,
            FitReport {
                iterations: out.iterations,
                stop: out.stop,
                loss: out.trace,
            },
        ))
    }

    pub fn features(&self) -> usize {
        self.coef.ncols()
    }

    fn check_input(&self, x: ArrayView2<f64>) -> MlResult<()> {
        check_input("logistic regression", x, self.features())
    }

    /// Class probabilities, `n × classes`.
    pub fn predict_proba(&self, x: ArrayView2<f64>) -> MlResult<Array2<f64>> {
        self.check_input(x)?;
        // One matrix-vector product per class: no packing for a general matrix product.
        let mut z = Array2::zeros((x.nrows(), self.coef.nrows()));
        for ((mut zc, w), &b) in z
            .columns_mut()
            .into_iter()
            .zip(self.coef.rows())
            .zip(&self.intercept)
        {
            if x.t().is_standard_layout() {
                // Columns are contiguous (features built column by column): z += wⱼ·xⱼ.
                for (xj, &wj) in x.columns().into_iter().zip(w) {
                    zc.scaled_add(wj, &xj);
                }
            } else {
                zc.assign(&x.dot(&w));
            }
            zc += b;
        }
        if self.classes != 2 {
            softmax_rows(&mut z);
            return Ok(z);
        }
        let p1 = z.column(0).mapv(sigmoid);
        let out = Array2::from_shape_fn(
            (x.nrows(), 2),
            |(i, c)| {
                if c == 1 { p1[i] } else { 1.0 - p1[i] }
            },
        );
        Ok(out)
    }

    /// ∂ (cross-entropy of `target`) / ∂ x, per row: `(p − onehot(target))·W`.
    pub fn input_gradient(&self, x: ArrayView2<f64>, target: &[usize]) -> MlResult<Array2<f64>> {
        let p = self.predict_proba(x)?;
        if target.len() != x.nrows() || target.iter().any(|&t| t >= self.classes) {
            return Err(MlError::invalid(
                "input gradient: one target class in range per row is needed",
            ));
        }
        let mut err = p;
        for (i, &t) in target.iter().enumerate() {
            err[[i, t]] -= 1.0;
        }
        Ok(if self.classes == 2 {
            // One weight row scores class 1: dL/dz = p1 − t.
            let e = err.column(1).to_owned().insert_axis(Axis(1));
            e.dot(&self.coef)
        } else {
            err.dot(&self.coef)
        })
    }
}

/// Least squares with an optional ridge penalty `alpha·‖w‖²` (the intercept unpenalised).
#[derive(Debug, Clone, PartialEq)]
pub struct LinearRegression {
    pub coef: Array1<f64>,
    pub intercept: f64,
}

impl LinearRegression {
    pub fn fit(x: ArrayView2<f64>, y: &[f64], alpha: f64) -> MlResult<Self> {
        check_features("linear regression", x)?;
        let (n, d) = x.dim();
        if y.len() != n {
            return Err(MlError::invalid(format!(
                "linear regression: {n} rows but {} targets",
                y.len()
            )));
        }
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            return Err(MlError::invalid(format!(
                "linear regression: target at row {i} is {}",
                y[i]
            )));
        }
        if !(alpha >= 0.0 && alpha.is_finite()) {
            return Err(MlError::invalid("linear regression: alpha must be ≥ 0"));
        }
        // Centre, so the intercept drops out of the normal equations.
        let mean_x = x.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(d));
        let mean_y = y.iter().sum::<f64>() / n as f64;
        let xc = &x - &mean_x;
        let yc = Array1::from_iter(y.iter().map(|v| v - mean_y));
        let mut a = xc.t().dot(&xc);
        for j in 0..d {
            a[[j, j]] += alpha;
        }
        let b = xc.t().dot(&yc);
        let coef = solve_spd(a, b).ok_or_else(|| {
            MlError::invalid(
                "linear regression: the features are collinear (the normal equations are singular); use ridge (alpha > 0) or drop a feature",
            )
        })?;
        let intercept = mean_y - mean_x.dot(&coef);
        Ok(Self { coef, intercept })
    }

    pub fn predict(&self, x: ArrayView2<f64>) -> MlResult<Array1<f64>> {
        check_features("linear regression", x)?;
        if x.ncols() != self.coef.len() {
            return Err(MlError::invalid(format!(
                "linear regression: the model takes {} features, the input has {}",
                self.coef.len(),
                x.ncols()
            )));
        }
        Ok(x.dot(&self.coef) + self.intercept)
    }

    /// ∂ (½(ŷ − y)²) / ∂ x per row: `(ŷ − y)·w`.
    pub fn input_gradient(&self, x: ArrayView2<f64>, y: &[f64]) -> MlResult<Array2<f64>> {
        let pred = self.predict(x)?;
        if y.len() != x.nrows() {
            return Err(MlError::invalid(
                "input gradient: one target per row is needed",
            ));
        }
        let err = Array1::from_iter(pred.iter().zip(y).map(|(p, t)| p - t));
        Ok(err
            .insert_axis(Axis(1))
            .dot(&self.coef.view().insert_axis(Axis(0))))
    }
}

/// Solves `a·x = b` for symmetric positive definite `a` by Cholesky; `None` when `a` is not
/// (numerically) positive definite.
/// One row's cross-entropy under weights `w` (rows of d weights then the intercept; one
/// row for two classes), adding its gradient to `g`. `z` holds one score per weight row.
fn row_loss(
    w: &[f64],
    xi: impl Iterator<Item = f64> + Clone,
    yi: usize,
    d: usize,
    z: &mut [f64],
    g: &mut [f64],
) -> f64 {
    let width = d + 1;
    for (r, zr) in z.iter_mut().enumerate() {
        let wr = &w[r * width..(r + 1) * width];
        *zr = wr[d] + xi.clone().zip(wr).map(|(a, b)| a * b).sum::<f64>();
    }
    let loss = if z.len() == 1 {
        let t = if yi == 1 { 1.0 } else { 0.0 };
        // -log σ(z) for t = 1, -log(1 - σ(z)) for t = 0.
        let l = log1p_exp(z[0]) - t * z[0];
        z[0] = sigmoid(z[0]) - t;
        l
    } else {
        let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        let l = lse - z[yi];
        softmax_in_place(z);
        z[yi] -= 1.0;
        l
    };
    for (r, &err) in z.iter().enumerate() {
        let gr = &mut g[r * width..(r + 1) * width];
        for (gj, xj) in gr.iter_mut().zip(xi.clone()) {
            *gj += err * xj;
        }
        gr[d] += err;
    }
    loss
}

/// The adversarial copy of row `xi` against weights `w`: FGSM, or PGD in the L∞ ball of
/// radius `p.adversarial_eps`, written to `out`.
fn perturb(
    w: &[f64],
    xi: &[f64],
    yi: usize,
    d: usize,
    rows: usize,
    p: LogisticParams,
    out: &mut [f64],
) {
    let eps = p.adversarial_eps;
    let step = if p.adversarial_steps == 1 {
        eps
    } else {
        2.5 * eps / p.adversarial_steps as f64
    };
    let width = d + 1;
    out.copy_from_slice(xi);
    let mut z = vec![0.0; rows];
    for _ in 0..p.adversarial_steps {
        for (r, zr) in z.iter_mut().enumerate() {
            let wr = &w[r * width..(r + 1) * width];
            *zr = wr[d] + out.iter().zip(wr).map(|(a, b)| a * b).sum::<f64>();
        }
        // The loss gradient in the scores; the input gradient is its product with the weights.
        if rows == 1 {
            z[0] = sigmoid(z[0]) - if yi == 1 { 1.0 } else { 0.0 };
        } else {
            softmax_in_place(&mut z);
            z[yi] -= 1.0;
        }
        for j in 0..d {
            let grad: f64 = (0..rows).map(|r| z[r] * w[r * width + j]).sum();
            let moved = match grad.partial_cmp(&0.0) {
                Some(std::cmp::Ordering::Greater) => out[j] + step,
                Some(std::cmp::Ordering::Less) => out[j] - step,
                _ => out[j],
            };
            out[j] = moved.clamp(xi[j] - eps, xi[j] + eps);
        }
    }
}

fn solve_spd(a: Array2<f64>, b: Array1<f64>) -> Option<Array1<f64>> {
    let d = b.len();
    let scale = (0..d).map(|i| a[[i, i]].abs()).fold(0.0, f64::max).max(1.0);
    let mut l = Array2::<f64>::zeros((d, d));
    for i in 0..d {
        for j in 0..=i {
            let s = a[[i, j]] - (0..j).map(|k| l[[i, k]] * l[[j, k]]).sum::<f64>();
            if i == j {
                if s <= 1e-12 * scale {
                    return None;
                }
                l[[i, i]] = s.sqrt();
            } else {
                l[[i, j]] = s / l[[j, j]];
            }
        }
    }
    let mut z = vec![0.0; d];
    for i in 0..d {
        z[i] = (b[i] - (0..i).map(|k| l[[i, k]] * z[k]).sum::<f64>()) / l[[i, i]];
    }
    let mut x = Array1::zeros(d);
    for i in (0..d).rev() {
        x[i] = (z[i] - (i + 1..d).map(|k| l[[k, i]] * x[k]).sum::<f64>()) / l[[i, i]];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Three Gaussian blobs in 2-D.
    fn blobs(n: usize, seed: u64) -> (Array2<f64>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centres = [(0.0, 0.0), (4.0, 0.0), (0.0, 4.0)];
        let mut x = Array2::zeros((n, 2));
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let c = i % 3;
            x[[i, 0]] = centres[c].0 + rng.random_range(-1.5..1.5);
            x[[i, 1]] = centres[c].1 + rng.random_range(-1.5..1.5);
            y.push(c);
        }
        (x, y)
    }

    #[test]
    fn softmax_regression_separates_blobs_and_is_deterministic() {
        let (x, y) = blobs(300, 7);
        let (m, report) =
            LogisticRegression::fit(x.view(), &y, 3, LogisticParams::default()).unwrap();
        assert_eq!(report.stop, Stop::Converged);
        let p = m.predict_proba(x.view()).unwrap();
        let pred: Vec<usize> = p
            .rows()
            .into_iter()
            .map(|r| (0..3).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap())
            .collect();
        assert!(crate::metrics::accuracy(&y, &pred).unwrap() > 0.97);
        let (again, _) =
            LogisticRegression::fit(x.view(), &y, 3, LogisticParams::default()).unwrap();
        assert_eq!(m, again);
        for r in p.rows() {
            assert!((r.sum() - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn adversarial_training_optimises_the_exact_robust_loss_for_two_classes() {
        // Two classes: one FGSM step is the worst case in the ε-ball, so the trained
        // objective is the closed form Σ log(1 + exp(-s (w·x + b) + ε‖w‖₁)).
        let (x, y3) = blobs(300, 3);
        let y: Vec<usize> = y3.iter().map(|&c| usize::from(c == 1)).collect();
        let eps = 0.5;
        let p = LogisticParams {
            adversarial_eps: eps,
            ..LogisticParams::default()
        };
        let (m, report) = LogisticRegression::fit(x.view(), &y, 2, p).unwrap();
        let (plain, _) =
            LogisticRegression::fit(x.view(), &y, 2, LogisticParams::default()).unwrap();
        let robust_objective = |m: &LogisticRegression| -> f64 {
            let w = m.coef.row(0);
            let l1: f64 = w.iter().map(|v| v.abs()).sum();
            let n = y.len() as f64;
            x.rows()
                .into_iter()
                .zip(&y)
                .map(|(xi, &t)| {
                    let z = m.intercept[0] + xi.dot(&w);
                    let s = if t == 1 { 1.0 } else { -1.0 };
                    0.5 * (log1p_exp(-s * z) + log1p_exp(-s * z + eps * l1))
                })
                .sum::<f64>()
                / n
                + 0.5 / n * w.iter().map(|v| v * v).sum::<f64>()
        };
        let closed = robust_objective(&m);
        let last = *report.loss.last().unwrap();
        assert!((closed - last).abs() < 1e-9, "{closed} vs {last}");
        // It is the minimum of that objective: the plain fit does worse on it.
        assert!(
            closed < robust_objective(&plain),
            "{closed} vs {}",
            robust_objective(&plain)
        );
        assert!(
            report.iterations < 1000,
            "{:?} after {}",
            report.stop,
            report.iterations
        );
    }

    #[test]
    fn input_gradients_match_finite_differences() {
        let (x, y) = blobs(90, 3);
        for classes in [2usize, 3] {
            let y: Vec<usize> = y.iter().map(|&c| c % classes).collect();
            let (m, _) =
                LogisticRegression::fit(x.view(), &y, classes, LogisticParams::default()).unwrap();
            let row = x.slice(ndarray::s![5..6, ..]).to_owned();
            let g = m.input_gradient(row.view(), &y[5..6]).unwrap();
            let loss = |r: &Array2<f64>| -m.predict_proba(r.view()).unwrap()[[0, y[5]]].ln();
            for j in 0..2 {
                let h = 1e-6;
                let (mut a, mut b) = (row.clone(), row.clone());
                a[[0, j]] += h;
                b[[0, j]] -= h;
                let numeric = (loss(&a) - loss(&b)) / (2.0 * h);
                assert!(
                    (numeric - g[[0, j]]).abs() < 1e-6,
                    "{numeric} vs {}",
                    g[[0, j]]
                );
            }
        }
    }

    #[test]
    fn least_squares_recovers_exact_coefficients() {
        let x = array![[1.0, 2.0], [2.0, 1.0], [3.0, 5.0], [4.0, 2.0], [0.5, -1.0]];
        let y: Vec<f64> = x
            .rows()
            .into_iter()
            .map(|r| 3.0 - 2.0 * r[0] + 0.5 * r[1])
            .collect();
        let m = LinearRegression::fit(x.view(), &y, 0.0).unwrap();
        assert!((m.coef[0] + 2.0).abs() < 1e-10 && (m.coef[1] - 0.5).abs() < 1e-10);
        assert!((m.intercept - 3.0).abs() < 1e-10);
        let ridge = LinearRegression::fit(x.view(), &y, 10.0).unwrap();
        assert!(ridge.coef[0].abs() < 2.0, "ridge shrinks");
        let g = m.input_gradient(x.view(), &y).unwrap();
        assert!(
            g.iter().all(|v| v.abs() < 1e-9),
            "zero error, zero gradient"
        );
    }

    #[test]
    fn bad_training_input_is_named() {
        let x = array![[1.0, f64::NAN], [2.0, 1.0]];
        let e = LogisticRegression::fit(x.view(), &[0, 1], 2, LogisticParams::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("feature 1 of row 0"), "{e}");
        let x = array![[1.0], [2.0], [3.0]];
        let e = LogisticRegression::fit(x.view(), &[1, 1, 1], 2, LogisticParams::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("single class"), "{e}");
        let e = LinearRegression::fit(
            array![[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]].view(),
            &[1.0, 2.0, 3.0],
            0.0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("collinear"), "{e}");
        let (m, _) =
            LogisticRegression::fit(x.view(), &[0, 1, 1], 2, LogisticParams::default()).unwrap();
        let e = m
            .predict_proba(array![[1.0, 2.0]].view())
            .unwrap_err()
            .to_string();
        assert!(e.contains("takes 1 features"), "{e}");
    }
}
