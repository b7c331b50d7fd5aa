//! Prediction latency, one row and a batch of 1,000: built-in GBDT and logistic regression,
//! and ONNX models through ONNX Runtime. `scripts/bench-ml` prepares the data and the ONNX
//! models (the same ones it times with onnxruntime and scikit-learn in Python) in the
//! folder named by `BASTION_BENCH_ML_DIR`; without it this benchmark has nothing to run.

use std::path::{Path, PathBuf};

use bastion_ml::builtin::Kind;
use bastion_ml::onnx::{ImportOptions, OnnxModel, Scores, check, describe};
use bastion_ml::package::Limits;
use bastion_ml::predictor::{ColumnData, Predictor, Table};
use bastion_ml::train::{TaskKind, TrainSpec, train};
use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::Array2;
use serde_json::{Map, Value, json};

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::to_owned)
        .collect();
    let rows = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split(',')
                .map(|v| v.parse().unwrap_or(f64::NAN))
                .collect()
        })
        .collect();
    (header, rows)
}

fn table(names: &[String], rows: &[Vec<f64>]) -> Table {
    Table {
        names: names.to_vec(),
        columns: (0..names.len())
            .map(|j| ColumnData::Numeric(rows.iter().map(|r| Some(r[j])).collect()))
            .collect(),
    }
}

fn params(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let Some(dir) = std::env::var_os("BASTION_BENCH_ML_DIR").map(PathBuf::from) else {
        eprintln!("BASTION_BENCH_ML_DIR is not set: run scripts/bench-ml");
        return;
    };
    let (names, rows) = read_csv(&dir.join("rows.csv"));
    let x = Array2::from_shape_vec(
        (rows.len(), names.len()),
        rows.iter().flatten().copied().collect(),
    )
    .expect("rows.csv is rectangular");
    let (train_names, train_rows) = read_csv(&dir.join("train.csv"));
    let train_table = table(&train_names, &train_rows);

    let mut group = c.benchmark_group("predict");
    let builtins = [
        (
            "gbdt",
            Kind::Gbdt,
            params(json!({"n_estimators": 100, "num_leaves": 31})),
        ),
        ("logreg", Kind::Logreg, Map::new()),
    ];
    for (label, kind, p) in builtins {
        let spec = TrainSpec {
            kind,
            target: "y",
            features: Some(&names),
            params: p,
            task: Some(TaskKind::Classification),
            test_fraction: 0.2,
            seed: 0,
        };
        let model = train(&train_table, &spec, |_| {}).expect("training").model;
        // The feature matrix the model computes on (identity preprocessing for numbers
        // aside from scaling), so prediction alone is timed, as predict_proba is.
        let xm = model.features(&table(&names, &rows)).expect("features");
        group.bench_function(format!("builtin-{label}/1"), |b| {
            b.iter(|| model.predict_features(xm.slice(ndarray::s![0..1, ..])))
        });
        group.bench_function(format!("builtin-{label}/1000"), |b| {
            b.iter(|| model.predict_features(xm.view()))
        });
    }
    for (label, scores) in [("hgb", None), ("mlp", Some(Scores::Logits))] {
        let bytes = std::fs::read(dir.join(format!("{label}.onnx"))).expect("model file");
        let inspected = check::inspect(&bytes, Limits::default()).expect("valid model");
        let opts = ImportOptions {
            features: Some(names.clone()),
            scores,
            ..Default::default()
        };
        let (sig, spec) = describe(&inspected, &opts).expect("describable model");
        let model = OnnxModel::new(&bytes, sig, spec, Limits::default()).expect("runtime");
        group.bench_function(format!("onnx-{label}/1"), |b| {
            b.iter(|| model.predict_features(x.slice(ndarray::s![0..1, ..])))
        });
        group.bench_function(format!("onnx-{label}/1000"), |b| {
            b.iter(|| model.predict_features(x.view()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
