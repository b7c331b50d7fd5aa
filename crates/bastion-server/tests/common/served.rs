//! Models for serving tests: a small classification dataset, a logistic regression trained
//! on it and registered through the API, and inference requests.

use bastion_ml::builtin::Kind;
use bastion_ml::package;
pub use bastion_ml::package::Training;
use bastion_ml::predictor::{ColumnData, Prediction, Table};
use bastion_ml::train::{TaskKind, TrainSpec, train};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::TestServer;

pub fn data(n: usize) -> Table {
    let a: Vec<Option<f64>> = (0..n).map(|i| Some((i % 17) as f64 / 17.0)).collect();
    let b: Vec<Option<f64>> = (0..n).map(|i| Some((i * 7 % 13) as f64 / 13.0)).collect();
    let colour: Vec<Option<String>> = (0..n)
        .map(|i| Some(["red", "blue", "green"][i % 3].to_owned()))
        .collect();
    let y = (0..n)
        .map(|i| {
            let s = a[i].unwrap_or(0.0) + b[i].unwrap_or(0.0) + if i % 3 == 0 { 0.3 } else { 0.0 };
            Some(if s > 1.0 { "yes" } else { "no" }.to_owned())
        })
        .collect();
    Table {
        names: vec!["a".into(), "b".into(), "colour".into(), "y".into()],
        columns: vec![
            ColumnData::Numeric(a),
            ColumnData::Numeric(b),
            ColumnData::Text(colour),
            ColumnData::Text(y),
        ],
    }
}

/// `data(300)` as CSV: the training set, for dataset uploads.
pub fn training_csv() -> String {
    let t = data(300);
    let mut out = String::from("a,b,colour,y\n");
    for r in 0..t.rows() {
        let cells: Vec<String> = t
            .columns
            .iter()
            .map(|c| match c {
                ColumnData::Numeric(v) => v[r].unwrap_or_default().to_string(),
                ColumnData::Text(v) => v[r].clone().unwrap_or_default(),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// Trains a logistic regression, stores its package as a run's artifacts and registers it.
/// Returns the local package folder (to compare predictions) and the run's artifact root.
pub async fn register_model(
    s: &TestServer,
    name: &str,
    extra: &[(&str, &[u8])],
) -> (tempfile::TempDir, String) {
    register_trained_model(s, name, extra, Training::default()).await
}

/// As [`register_model`], with what the package records about its training (e.g. the
/// dataset version, which the monitor compares live traffic with).
pub async fn register_trained_model(
    s: &TestServer,
    name: &str,
    extra: &[(&str, &[u8])],
    training: Training,
) -> (tempfile::TempDir, String) {
    let table = data(300);
    let features = vec!["a".to_owned(), "b".to_owned(), "colour".to_owned()];
    let spec = TrainSpec {
        kind: Kind::Logreg,
        target: "y",
        features: Some(&features),
        params: Default::default(),
        task: Some(TaskKind::Classification),
        test_fraction: 0.2,
        // Per model, so that no two test models share a weights blob.
        seed: name.bytes().map(u64::from).sum(),
    };
    let trained = train(&table, &spec, |_| {}).expect("training");
    let dir = tempfile::tempdir().expect("tempdir");
    let pkg = dir.path().join("model");
    let manifest = package::save(&pkg, &trained.model, training).expect("save");
    // One experiment per registration: a model may be registered more than once.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let exp = s.create_experiment(&format!("serve-{name}-{n}")).await;
    let run = s.create_run(&exp).await;
    let root = format!("{exp}/{run}/artifacts");
    let mut files: Vec<String> = manifest.files.keys().cloned().collect();
    files.push(package::MANIFEST.to_owned());
    for f in files {
        let bytes = std::fs::read(pkg.join(&f)).expect("package file");
        s.put_artifact(&format!("{root}/model/{f}"), &bytes).await;
    }
    for (f, bytes) in extra {
        s.put_artifact(&format!("{root}/model/{f}"), bytes).await;
    }
    let _ = s
        .post("/registered-models/create", json!({ "name": name }))
        .await;
    s.ok_post(
        "/model-versions/create",
        json!({ "name": name, "source": format!("runs:/{run}/model"), "run_id": run }),
    )
    .await;
    (dir, root)
}

pub async fn get_json(s: &TestServer, path: &str) -> Value {
    let r = s.client.get(s.url(path)).send().await.expect("request");
    r.json().await.unwrap_or_default()
}

pub async fn infer(s: &TestServer, path: &str, body: Value) -> (StatusCode, Value) {
    let r = s
        .client
        .post(s.url(path))
        .json(&body)
        .send()
        .await
        .expect("request");
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

pub fn request(rows: &[(f64, f64, &str)]) -> Value {
    json!({
        "id": "req-1",
        "inputs": [
            {"name": "a", "shape": [rows.len()], "datatype": "FP64", "data": rows.iter().map(|r| r.0).collect::<Vec<_>>()},
            {"name": "b", "shape": [rows.len(), 1], "datatype": "FP32", "data": rows.iter().map(|r| vec![r.1]).collect::<Vec<_>>()},
            {"name": "colour", "shape": [rows.len()], "datatype": "BYTES", "data": rows.iter().map(|r| r.2).collect::<Vec<_>>()},
        ]
    })
}

pub fn local_probabilities(dir: &std::path::Path, rows: &[(f64, f64, &str)]) -> Vec<f64> {
    let (_, model) = package::load_predictor(&dir.join("model"), Default::default()).expect("load");
    let table = Table {
        names: vec!["a".into(), "b".into(), "colour".into()],
        columns: vec![
            ColumnData::Numeric(rows.iter().map(|r| Some(r.0)).collect()),
            ColumnData::Numeric(rows.iter().map(|r| Some(f64::from(r.1 as f32))).collect()),
            ColumnData::Text(rows.iter().map(|r| Some(r.2.to_owned())).collect()),
        ],
    };
    match model.predict(&table).expect("predict") {
        Prediction::Classes(p) => p.iter().copied().collect(),
        Prediction::Values(v) => v.to_vec(),
    }
}

/// The Prometheus text the server exposes now.
pub async fn metrics(s: &TestServer) -> String {
    s.client
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default()
}
