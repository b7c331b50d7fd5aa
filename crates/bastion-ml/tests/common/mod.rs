//! A table both the cross-validation and the tuning tests learn from.

use bastion_ml::builtin::Kind;
use bastion_ml::predictor::{ColumnData, Table};
use bastion_ml::train::{TaskKind, TrainSpec};
use serde_json::Map;

/// `n` rows of two numeric features and a yes/no label that follows a linear rule, broken
/// on every 13th row (so folds and candidates differ).
pub fn noisy_rule(n: usize) -> Table {
    let x: Vec<Option<f64>> = (0..n)
        .map(|i| Some((i as f64 * 0.37).sin() * 3.0))
        .collect();
    let z: Vec<Option<f64>> = (0..n).map(|i| Some((i as f64 * 0.11).cos())).collect();
    let y: Vec<Option<String>> = x
        .iter()
        .zip(&z)
        .enumerate()
        .map(|(i, (a, b))| {
            let v = a.unwrap_or(0.0) + b.unwrap_or(0.0) > 0.0;
            Some(if (i % 13 == 0) ^ v { "yes" } else { "no" }.to_owned())
        })
        .collect();
    Table {
        names: vec!["x".into(), "z".into(), "y".into()],
        columns: vec![
            ColumnData::Numeric(x),
            ColumnData::Numeric(z),
            ColumnData::Text(y),
        ],
    }
}

/// Logistic regression on it, 20 % held out, seed 3.
pub fn logreg_spec() -> TrainSpec<'static> {
    TrainSpec {
        kind: Kind::Logreg,
        target: "y",
        features: None,
        params: Map::new(),
        task: Some(TaskKind::Classification),
        test_fraction: 0.2,
        seed: 3,
    }
}
