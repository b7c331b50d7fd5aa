//! A small multi-layer perceptron, as scikit-learn's `MLPClassifier`/`MLPRegressor`: dense
//! layers with ReLU, a softmax (several classes), sigmoid (two) or identity (values)
//! output, cross-entropy or half squared error plus an L2 penalty, trained with Adam on
//! shuffled mini-batches. Deterministic for a seed (ChaCha8 for initial weights and
//! shuffling). The backward pass also runs down to the input, which is what white-box
//! attacks need.

use std::sync::OnceLock;

use ndarray::{Array1, Array2, ArrayView2, Axis, LinalgScalar};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{MlError, MlResult};
use crate::linear::{check_features, check_input};
use crate::link::{sigmoid, softmax_rows};
use crate::task::Target;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlpParams {
    pub hidden: Vec<usize>,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub epochs: usize,
    /// L2 penalty, as scikit-learn's `alpha`.
    pub alpha: f64,
    /// Stop after `patience` epochs that improve the training loss by less than `tol`.
    pub tol: f64,
    pub patience: usize,
    pub seed: u64,
    /// Adversarial training (Goodfellow et al.; Madry et al.): when above 0, each batch is
    /// trained together with its adversarial copy, made against the current weights within
    /// this L∞ radius (in feature units).
    pub adversarial_eps: f64,
    /// Gradient steps that make the adversarial copy: 1 is FGSM, more is PGD with steps of
    /// 2.5 ε / steps.
    pub adversarial_steps: usize,
}

impl Default for MlpParams {
    fn default() -> Self {
        Self {
            hidden: vec![64],
            learning_rate: 1e-3,
            batch_size: 200,
            epochs: 200,
            alpha: 1e-4,
            tol: 1e-4,
            patience: 10,
            seed: 0,
            adversarial_eps: 0.0,
            adversarial_steps: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// Three or more classes.
    Softmax,
    /// Two classes, one unit scoring class 1.
    Sigmoid,
    Identity,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dense<A = f64> {
    /// `inputs × outputs`.
    pub w: Array2<A>,
    pub b: Array1<A>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    pub layers: Vec<Dense>,
    pub output: Output,
    /// Classes for classifiers, 1 for regression.
    pub classes: usize,
    /// The layers in single precision, made on the first prediction.
    single: SingleLayers,
}

/// Inference (predictions and input gradients) runs in f32, as ONNX and PyTorch models do:
/// twice the arithmetic per instruction, with a rounding (about 1e-7 relative) far below
/// any difference between classes a model can learn. Training stays in f64 and never
/// fills this copy, so it is made from the finished weights; a clone starts without it,
/// so a changed clone cannot predict with its original's weights.
#[derive(Debug, Default)]
struct SingleLayers(OnceLock<Vec<Dense<f32>>>);

impl Clone for SingleLayers {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for SingleLayers {
    /// A cache of the layers, which the models compare on.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Per-row targets as the output layer sees them.
enum Labels<'a> {
    Classes(&'a [usize]),
    Values(&'a [f64]),
}

impl Mlp {
    pub fn features(&self) -> usize {
        self.layers.first().map_or(0, |l| l.w.nrows())
    }

    pub fn fit(
        x: ArrayView2<f64>,
        target: Target,
        p: &MlpParams,
        mut on_epoch: impl FnMut(usize, f64),
    ) -> MlResult<(Self, Vec<f64>)> {
        check_features("mlp", x)?;
        target.check("mlp", x.nrows())?;
        let bad = |m: String| Err(MlError::invalid(format!("mlp: {m}")));
        if p.hidden.contains(&0) || p.hidden.len() > 16 || p.hidden.iter().any(|&h| h > 4096) {
            return bad("hidden layers must hold 1 to 4096 units, at most 16 layers".into());
        }
        if !(p.learning_rate > 0.0 && p.learning_rate.is_finite()) {
            return bad(format!(
                "learning_rate must be positive, got {}",
                p.learning_rate
            ));
        }
        if !(p.alpha >= 0.0 && p.alpha.is_finite()) {
            return bad(format!("alpha must be >= 0, got {}", p.alpha));
        }
        if p.batch_size == 0 || p.epochs == 0 {
            return bad("batch_size and epochs must be at least 1".into());
        }
        let adversarial_ok = p.adversarial_eps >= 0.0
            && p.adversarial_eps.is_finite()
            && (1..=100).contains(&p.adversarial_steps);
        if !adversarial_ok {
            return bad(format!(
                "adversarial_eps must be >= 0 and adversarial_steps 1 to 100, got {} and {}",
                p.adversarial_eps, p.adversarial_steps
            ));
        }
        let (n, d) = x.dim();
        let (output, classes, labels) = match target {
            Target::Classes { y, classes: 2 } => (Output::Sigmoid, 2, Labels::Classes(y)),
            Target::Classes { y, classes } => (Output::Softmax, classes, Labels::Classes(y)),
            Target::Values(y) => (Output::Identity, 1, Labels::Values(y)),
        };
        let out_units = if output == Output::Softmax {
            classes
        } else {
            1
        };
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let mut sizes = vec![d];
        sizes.extend(&p.hidden);
        sizes.push(out_units);
        let layers: Vec<Dense> = sizes
            .windows(2)
            .map(|w| {
                // Glorot uniform, as scikit-learn.
                let bound = (6.0 / (w[0] + w[1]) as f64).sqrt();
                Dense {
                    w: Array2::from_shape_fn((w[0], w[1]), |_| rng.random_range(-bound..bound)),
                    b: Array1::from_shape_fn(w[1], |_| rng.random_range(-bound..bound)),
                }
            })
            .collect();
        let mut model = Self::new(layers, output, classes);
        let mut adam = Adam::new(&model.layers, p.learning_rate);
        let batch = p.batch_size.min(n);
        let mut order: Vec<usize> = (0..n).collect();
        let mut losses = Vec::new();
        let (mut best, mut stale) = (f64::INFINITY, 0);
        for epoch in 0..p.epochs {
            order.shuffle(&mut rng);
            let mut total = 0.0;
            for idx in order.chunks(batch) {
                let xb = x.select(Axis(0), idx);
                let (loss, grads) = if p.adversarial_eps > 0.0 {
                    let adv = model.adversarial(xb.view(), &labels, idx, p);
                    let both = ndarray::concatenate(Axis(0), &[xb.view(), adv.view()])
                        .map_err(|e| MlError::invalid(format!("mlp: {e}")))?;
                    let twice: Vec<usize> = idx.iter().chain(idx).copied().collect();
                    model.backward(both.view(), &labels, &twice, p.alpha)
                } else {
                    model.backward(xb.view(), &labels, idx, p.alpha)
                };
                total += loss * idx.len() as f64;
                adam.step(&mut model.layers, &grads);
            }
            let loss = total / n as f64;
            if !loss.is_finite() {
                return bad(format!(
                    "training diverged at epoch {} (loss {loss}); lower the learning rate or scale the features",
                    epoch + 1
                ));
            }
            losses.push(loss);
            on_epoch(epoch + 1, loss);
            if loss > best - p.tol {
                stale += 1;
                if stale >= p.patience {
                    break;
                }
            } else {
                stale = 0;
            }
            best = best.min(loss);
        }
        Ok((model, losses))
    }

    /// Activations of every layer (the input first) and the output layer's raw scores.
    fn forward(&self, x: ArrayView2<f64>) -> (Vec<Array2<f64>>, Array2<f64>) {
        forward(&self.layers, x.to_owned())
    }

    /// A model of these layers.
    pub fn new(layers: Vec<Dense>, output: Output, classes: usize) -> Self {
        Self {
            layers,
            output,
            classes,
            single: SingleLayers::default(),
        }
    }

    fn layers_f32(&self) -> &[Dense<f32>] {
        self.single.0.get_or_init(|| {
            self.layers
                .iter()
                .map(|l| Dense {
                    w: l.w.mapv(|v| v as f32),
                    b: l.b.mapv(|v| v as f32),
                })
                .collect()
        })
    }

    /// The loss of a batch, averaged over rows with the L2 penalty, and its gradient with
    /// respect to every weight.
    fn backward(
        &self,
        x: ArrayView2<f64>,
        labels: &Labels,
        rows: &[usize],
        alpha: f64,
    ) -> (f64, Vec<Dense>) {
        let (acts, z) = self.forward(x);
        let b = x.nrows() as f64;
        let (loss, mut delta) = self.output_error(z, labels, rows);
        delta.mapv_inplace(|v| v / b);
        let mut grads = Vec::with_capacity(self.layers.len());
        let mut penalty = 0.0;
        for (i, l) in self.layers.iter().enumerate().rev() {
            let mut gw = acts[i].t().dot(&delta);
            gw.scaled_add(alpha / b, &l.w);
            penalty += l.w.iter().map(|w| w * w).sum::<f64>();
            let gb = delta.sum_axis(Axis(0));
            grads.push(Dense { w: gw, b: gb });
            if i > 0 {
                delta = delta.dot(&l.w.t()) * &acts[i].mapv(|a| if a > 0.0 { 1.0 } else { 0.0 });
            }
        }
        grads.reverse();
        (loss / b + 0.5 * alpha * penalty / b, grads)
    }

    /// Summed loss and d loss / d z for the output layer's raw scores.
    fn output_error(
        &self,
        mut z: Array2<f64>,
        labels: &Labels,
        rows: &[usize],
    ) -> (f64, Array2<f64>) {
        let mut loss = 0.0;
        match (self.output, labels) {
            (Output::Identity, Labels::Values(y)) => {
                for (k, &r) in rows.iter().enumerate() {
                    let e = z[[k, 0]] - y[r];
                    loss += 0.5 * e * e;
                    z[[k, 0]] = e;
                }
            }
            (Output::Sigmoid, Labels::Classes(y)) => {
                for (k, &r) in rows.iter().enumerate() {
                    let p = sigmoid(z[[k, 0]]).clamp(1e-15, 1.0 - 1e-15);
                    let t = if y[r] == 1 { 1.0 } else { 0.0 };
                    loss -= t * p.ln() + (1.0 - t) * (1.0 - p).ln();
                    z[[k, 0]] = p - t;
                }
            }
            (Output::Softmax, Labels::Classes(y)) => {
                softmax_rows(&mut z);
                for (k, mut row) in z.rows_mut().into_iter().enumerate() {
                    let t = y[rows[k]];
                    loss -= row[t].max(1e-15).ln();
                    row[t] -= 1.0;
                }
            }
            _ => {}
        }
        (loss, z)
    }

    fn check_input(&self, x: ArrayView2<f64>) -> MlResult<()> {
        check_input("mlp", x, self.features())
    }

    /// The batch's adversarial copy against the current weights: FGSM, or PGD in L∞.
    fn adversarial(
        &self,
        xb: ArrayView2<f64>,
        labels: &Labels,
        rows: &[usize],
        p: &MlpParams,
    ) -> Array2<f64> {
        let eps = p.adversarial_eps;
        let step = if p.adversarial_steps == 1 {
            eps
        } else {
            2.5 * eps / p.adversarial_steps as f64
        };
        let mut adv = xb.to_owned();
        for _ in 0..p.adversarial_steps {
            let g = self.input_delta(adv.view(), labels, rows);
            ndarray::Zip::from(&mut adv)
                .and(&g)
                .and(xb)
                .for_each(|a, &gi, &x0| {
                    let moved = *a
                        + step
                            * if gi > 0.0 {
                                1.0
                            } else if gi < 0.0 {
                                -1.0
                            } else {
                                0.0
                            };
                    *a = moved.clamp(x0 - eps, x0 + eps);
                });
        }
        adv
    }

    /// Class probabilities (`n × classes`) or values (`n × 1`).
    pub fn predict(&self, x: ArrayView2<f64>) -> MlResult<Array2<f64>> {
        self.check_input(x)?;
        let (_, z) = forward(self.layers_f32(), x.mapv(|v| v as f32));
        let mut z = z.mapv(f64::from);
        Ok(match self.output {
            Output::Identity => z,
            Output::Sigmoid => Array2::from_shape_fn((z.nrows(), 2), |(i, c)| {
                let p = sigmoid(z[[i, 0]]);
                if c == 1 { p } else { 1.0 - p }
            }),
            Output::Softmax => {
                softmax_rows(&mut z);
                z
            }
        })
    }

    /// ∂ loss / ∂ x per row: cross-entropy of `classes[i]`, or half squared error against
    /// `values[i]` for regression.
    pub fn input_gradient(&self, x: ArrayView2<f64>, target: Target) -> MlResult<Array2<f64>> {
        self.check_input(x)?;
        let labels = match target {
            Target::Classes { y, .. } if self.output != Output::Identity => {
                if y.len() != x.nrows() || y.iter().any(|&c| c >= self.classes) {
                    return Err(MlError::invalid(
                        "input gradient: one target class in range per row is needed",
                    ));
                }
                Labels::Classes(y)
            }
            Target::Values(y) if self.output == Output::Identity && y.len() == x.nrows() => {
                Labels::Values(y)
            }
            _ => {
                return Err(MlError::invalid(
                    "input gradient: the target does not fit the model's task",
                ));
            }
        };
        let rows: Vec<usize> = (0..x.nrows()).collect();
        let layers = self.layers_f32();
        let (acts, z) = forward(layers, x.mapv(|v| v as f32));
        let (_, delta) = self.output_error(z.mapv(f64::from), &labels, &rows);
        let g = delta_to_input(layers, &acts, delta.mapv(|v| v as f32));
        Ok(g.mapv(f64::from))
    }

    /// The backward pass down to the input only: no weight gradients, which attacks (one
    /// call per step) never use.
    fn input_delta(&self, x: ArrayView2<f64>, labels: &Labels, rows: &[usize]) -> Array2<f64> {
        let (acts, z) = self.forward(x);
        let (_, delta) = self.output_error(z, labels, rows);
        delta_to_input(&self.layers, &acts, delta)
    }

    /// Validates a model read from a file: consecutive layer shapes fit, finite weights.
    pub fn validate(&self) -> MlResult<()> {
        let bad = |m: String| Err(MlError::invalid(format!("mlp: {m}")));
        if self.layers.is_empty() {
            return bad("no layers".into());
        }
        for (i, l) in self.layers.iter().enumerate() {
            if l.b.len() != l.w.ncols() {
                return bad(format!("layer {i}: bias length does not match its units"));
            }
            if let Some(next) = self.layers.get(i + 1)
                && next.w.nrows() != l.w.ncols()
            {
                return bad(format!("layer {} does not take layer {i}'s outputs", i + 1));
            }
            if l.w.iter().chain(l.b.iter()).any(|v| !v.is_finite()) {
                return bad(format!("layer {i} holds a non-finite weight"));
            }
        }
        let units = self.layers.last().map_or(0, |l| l.w.ncols());
        let want = match self.output {
            Output::Softmax => self.classes,
            _ => 1,
        };
        if units != want || (self.output == Output::Softmax && self.classes < 3) {
            return bad(format!(
                "{units} output units do not fit a {:?} output over {} classes",
                self.output, self.classes
            ));
        }
        Ok(())
    }
}

/// Adam (Kingma & Ba) with scikit-learn's defaults: β₁ 0.9, β₂ 0.999, ε 1e-8.
struct Adam {
    lr: f64,
    t: i32,
    m: Vec<Dense>,
    v: Vec<Dense>,
}

impl Adam {
    fn new(layers: &[Dense], lr: f64) -> Self {
        let zeros = || {
            layers
                .iter()
                .map(|l| Dense {
                    w: Array2::zeros(l.w.raw_dim()),
                    b: Array1::zeros(l.b.len()),
                })
                .collect::<Vec<_>>()
        };
        Self {
            lr,
            t: 0,
            m: zeros(),
            v: zeros(),
        }
    }

    fn step(&mut self, layers: &mut [Dense], grads: &[Dense]) {
        const B1: f64 = 0.9;
        const B2: f64 = 0.999;
        const EPS: f64 = 1e-8;
        self.t += 1;
        let lr = self.lr * (1.0 - B2.powi(self.t)).sqrt() / (1.0 - B1.powi(self.t));
        for (((l, g), m), v) in layers
            .iter_mut()
            .zip(grads)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            let update = |p: &mut f64, g: f64, m: &mut f64, v: &mut f64| {
                *m = B1 * *m + (1.0 - B1) * g;
                *v = B2 * *v + (1.0 - B2) * g * g;
                *p -= lr * *m / (v.sqrt() + EPS);
            };
            ndarray::Zip::from(&mut l.w)
                .and(&g.w)
                .and(&mut m.w)
                .and(&mut v.w)
                .for_each(|p, &g, m, v| update(p, g, m, v));
            ndarray::Zip::from(&mut l.b)
                .and(&g.b)
                .and(&mut m.b)
                .and(&mut v.b)
                .for_each(|p, &g, m, v| update(p, g, m, v));
        }
    }
}

/// Activations of every layer (the input first) and the output layer's raw scores.
fn forward<A: LinalgScalar + PartialOrd>(
    layers: &[Dense<A>],
    x: Array2<A>,
) -> (Vec<Array2<A>>, Array2<A>) {
    let rows = x.nrows();
    let mut acts = vec![x];
    let last = layers.len().saturating_sub(1);
    for (i, l) in layers.iter().enumerate() {
        let mut z = acts[i].dot(&l.w);
        // Bias and ReLU row by row over slices: a broadcast `+ &b` walks the matrix
        // element by element, which costs as much as the product.
        let relu = |v: A| if v > A::zero() { v } else { A::zero() };
        match (z.as_slice_mut(), l.b.as_slice()) {
            (Some(zs), Some(bs)) if !bs.is_empty() => {
                for row in zs.chunks_exact_mut(bs.len()) {
                    for (v, &b) in row.iter_mut().zip(bs) {
                        *v = *v + b;
                    }
                    if i != last {
                        row.iter_mut().for_each(|v| *v = relu(*v));
                    }
                }
            }
            _ => {
                ndarray::Zip::from(z.rows_mut()).for_each(|mut row| {
                    row.zip_mut_with(&l.b, |v, &b| *v = *v + b);
                });
                if i != last {
                    z.mapv_inplace(relu);
                }
            }
        }
        if i == last {
            return (acts, z);
        }
        acts.push(z);
    }
    (acts, Array2::zeros((rows, 0)))
}

/// The output layer's error carried back through every layer to the input.
fn delta_to_input<A: LinalgScalar + PartialOrd>(
    layers: &[Dense<A>],
    acts: &[Array2<A>],
    mut delta: Array2<A>,
) -> Array2<A> {
    for (i, l) in layers.iter().enumerate().rev() {
        let mut prev = delta.dot(&l.w.t());
        if i > 0 {
            // A select, not a conditional store, so that it vectorises.
            ndarray::Zip::from(&mut prev)
                .and(&acts[i])
                .for_each(|p, &a| *p = if a > A::zero() { *p } else { A::zero() });
        }
        delta = prev;
    }
    delta
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::s;

    fn xor(n: usize) -> (Array2<f64>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let x = Array2::from_shape_fn((n, 2), |_| rng.random_range(-1.0..1.0));
        let y = x
            .rows()
            .into_iter()
            .map(|r| usize::from(r[0] * r[1] > 0.0))
            .collect();
        (x, y)
    }

    #[test]
    fn learns_xor_which_no_linear_model_can() {
        let (x, y) = xor(600);
        let p = MlpParams {
            hidden: vec![16],
            learning_rate: 0.01,
            ..Default::default()
        };
        let (m, losses) = Mlp::fit(
            x.view(),
            Target::Classes { y: &y, classes: 2 },
            &p,
            |_, _| {},
        )
        .unwrap();
        assert!(losses.last().unwrap() < &0.2, "{losses:?}");
        let proba = m.predict(x.view()).unwrap();
        let acc = y
            .iter()
            .enumerate()
            .filter(|&(i, &t)| usize::from(proba[[i, 1]] > 0.5) == t)
            .count() as f64
            / y.len() as f64;
        assert!(acc > 0.95, "accuracy {acc}");
        // Same seed, same model.
        let (again, _) = Mlp::fit(
            x.view(),
            Target::Classes { y: &y, classes: 2 },
            &p,
            |_, _| {},
        )
        .unwrap();
        assert_eq!(m, again);
    }

    #[test]
    fn single_precision_predictions_follow_the_weights() {
        let (x, y) = xor(200);
        let p = MlpParams {
            hidden: vec![8],
            epochs: 20,
            ..Default::default()
        };
        let (m, _) = Mlp::fit(
            x.view(),
            Target::Classes { y: &y, classes: 2 },
            &p,
            |_, _| {},
        )
        .unwrap();
        // The f32 answers are the f64 network's up to single-precision rounding.
        let (_, z) = m.forward(x.view());
        let exact = z.mapv(crate::link::sigmoid);
        let got = m.predict(x.view()).unwrap();
        for i in 0..x.nrows() {
            assert!((got[[i, 1]] - exact[[i, 0]]).abs() < 1e-5, "row {i}");
        }
        // A changed clone predicts with its own weights, not its original's cached copy.
        let mut changed = m.clone();
        for l in &mut changed.layers {
            l.w.mapv_inplace(|v| -v);
            l.b.mapv_inplace(|v| -v);
        }
        let (_, z) = changed.forward(x.view());
        let flipped = changed.predict(x.view()).unwrap();
        for i in 0..x.nrows() {
            assert!((flipped[[i, 1]] - crate::link::sigmoid(z[[i, 0]])).abs() < 1e-5);
        }
        assert!(flipped != got);
    }

    #[test]
    fn input_gradient_matches_finite_differences() {
        let (x, y) = xor(200);
        let p = MlpParams {
            hidden: vec![8, 8],
            epochs: 20,
            ..Default::default()
        };
        for target in [
            Target::Classes { y: &y, classes: 2 },
            Target::Values(&x.column(0).mapv(|v| 3.0 * v).to_vec()),
        ] {
            let (m, _) = Mlp::fit(x.view(), target, &p, |_, _| {}).unwrap();
            let rows = x.slice(s![..5, ..]).to_owned();
            let t5 = match target {
                Target::Classes { y, classes } => Target::Classes {
                    y: &y[..5],
                    classes,
                },
                Target::Values(v) => Target::Values(&v[..5]),
            };
            let g = m.input_gradient(rows.view(), t5).unwrap();
            let labels = match t5 {
                Target::Classes { y, .. } => Labels::Classes(y),
                Target::Values(v) => Labels::Values(v),
            };
            let h = 1e-6;
            for i in 0..5 {
                for j in 0..2 {
                    let loss_at = |dx: f64| {
                        let mut r = rows.slice(s![i..i + 1, ..]).to_owned();
                        r[[0, j]] += dx;
                        let (_, z) = m.forward(r.view());
                        m.output_error(z, &labels, &[i]).0
                    };
                    let fd = (loss_at(h) - loss_at(-h)) / (2.0 * h);
                    assert!((fd - g[[i, j]]).abs() < 1e-6, "{fd} vs {}", g[[i, j]]);
                }
            }
        }
    }

    #[test]
    fn refuses_bad_parameters_and_inputs() {
        let (x, y) = xor(50);
        let t = Target::Classes { y: &y, classes: 2 };
        for p in [
            MlpParams {
                hidden: vec![0],
                ..Default::default()
            },
            MlpParams {
                learning_rate: f64::NAN,
                ..Default::default()
            },
            MlpParams {
                batch_size: 0,
                ..Default::default()
            },
        ] {
            assert!(Mlp::fit(x.view(), t, &p, |_, _| {}).is_err());
        }
        let (m, _) = Mlp::fit(
            x.view(),
            t,
            &MlpParams {
                epochs: 2,
                ..Default::default()
            },
            |_, _| {},
        )
        .unwrap();
        let wide = Array2::zeros((3, 5));
        assert!(
            m.predict(wide.view())
                .unwrap_err()
                .to_string()
                .contains("takes 2 features")
        );
        let mut broken = m.clone();
        broken.layers[0].b = Array1::zeros(3);
        assert!(broken.validate().is_err());
    }
}
