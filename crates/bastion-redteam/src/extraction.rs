//! Model extraction (Tramèr et al., 2016, label-only): the attacker sends N queries near
//! rows of its own data (jittered by 0.1 feature units and kept in the feature space),
//! learns a surrogate MLP from the returned labels alone, and is scored by fidelity (how
//! often the surrogate agrees with the model on rows it never queried) and by accuracy.

use bastion_ml::mlp::{Mlp, MlpParams};
use bastion_ml::task::Target;
use ndarray::{Array2, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::Serialize;

use crate::error::{RedteamError, RedteamResult};
use crate::oracle::{Oracle, argmax_rows};
use crate::space::Space;

/// Jitter of each query around a pool row, in feature units.
pub const JITTER: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Extracted {
    pub queries: usize,
    /// Agreement with the model on the held-out rows.
    pub fidelity: f64,
    /// Accuracy of the surrogate on the held-out rows' true classes.
    pub accuracy: f64,
}

/// Fidelity for each query budget: the queries of a larger budget include the smaller's.
pub fn extraction(
    oracle: &Oracle,
    space: &Space,
    pool: ArrayView2<f64>,
    eval: (ArrayView2<f64>, &[usize]),
    budgets: &[usize],
    seed: u64,
) -> RedteamResult<Vec<Extracted>> {
    if pool.nrows() == 0 || eval.0.nrows() == 0 {
        return Err(RedteamError::invalid(
            "model extraction needs rows to query near and rows to compare on",
        ));
    }
    let most = budgets.iter().copied().max().unwrap_or(0);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0, JITTER).map_err(|e| RedteamError::invalid(e.to_string()))?;
    let mut queries = Array2::zeros((most, pool.ncols()));
    for mut q in queries.axis_iter_mut(Axis(0)) {
        let origin = pool.row(rng.random_range(0..pool.nrows()));
        q.assign(&origin);
        for (j, v) in q.iter_mut().enumerate() {
            if space.mutable[j] {
                *v += normal.sample(&mut rng);
            }
        }
        space.project(q, origin, None);
    }
    let answers = oracle.labels(queries.view())?;
    let truth_model = oracle.labels(eval.0)?;
    let mut out = Vec::with_capacity(budgets.len());
    for &n in budgets {
        let (xq, yq) = (queries.slice(ndarray::s![..n, ..]), &answers[..n]);
        let predicted = surrogate(xq, yq, oracle.classes(), eval.0, seed)?;
        let agree = |truth: &[usize]| {
            predicted.iter().zip(truth).filter(|(a, b)| a == b).count() as f64 / truth.len() as f64
        };
        out.push(Extracted {
            queries: n,
            fidelity: agree(&truth_model),
            accuracy: agree(eval.1),
        });
    }
    Ok(out)
}

/// The surrogate's labels for `eval`: an MLP on the answers, or the only label it saw.
fn surrogate(
    x: ArrayView2<f64>,
    y: &[usize],
    classes: usize,
    eval: ArrayView2<f64>,
    seed: u64,
) -> RedteamResult<Vec<usize>> {
    let seen: std::collections::BTreeSet<usize> = y.iter().copied().collect();
    if seen.len() < 2 {
        let only = seen.into_iter().next().unwrap_or(0);
        return Ok(vec![only; eval.nrows()]);
    }
    let params = MlpParams {
        hidden: vec![32],
        learning_rate: 1e-2,
        batch_size: 64,
        epochs: 200,
        seed,
        ..MlpParams::default()
    };
    let (m, _) = Mlp::fit(x, Target::Classes { y, classes }, &params, |_, _| {})?;
    Ok(argmax_rows(&m.predict(eval)?))
}
