//! `bastion train`, `evaluate` and `predict` end to end on a shipped dataset: the run is
//! tracked (parameters, curves, test metrics, the dataset digest as input), the package is
//! stored as the run's artifacts, registered, signed, and readable back; bad input fails
//! with the reason.

mod common;

use std::process::Output;

use common::{bastion, json_of};
use sqlx::Row;

fn shipped(name: &str) -> String {
    format!("{}/../../datasets/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// One value from the home's database.
async fn one<T>(db: &sqlx::SqlitePool, sql: &'static str, run_id: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    sqlx::query(sql)
        .bind(run_id)
        .fetch_one(db)
        .await
        .unwrap()
        .get(0)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn train_register_evaluate_and_predict_on_breast_cancer() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    json_of(&bastion(
        home,
        &["data", "add", &shipped("breast_cancer.csv"), "--name", "bc"],
    ));
    let out = json_of(&bastion(
        home,
        &[
            "train",
            "--data",
            "bc@v1",
            "--target",
            "diagnosis",
            "--model",
            "gbdt",
            "--param",
            "n_estimators=60",
            "--param",
            "learning_rate=0.1",
            "--seed",
            "3",
            "--cv",
            "4",
            "--register",
            "cancer",
            "--experiment",
            "screening",
        ],
    ));
    let cv = &out["cross_validation"];
    assert_eq!(cv["folds"].as_array().unwrap().len(), 4, "{out}");
    assert!(cv["mean"]["roc_auc"].as_f64().unwrap() > 0.95, "{out}");
    let run_id = out["run_id"].as_str().unwrap().to_owned();
    assert!(out["metrics"]["roc_auc"].as_f64().unwrap() > 0.97, "{out}");
    assert!(out["metrics"]["accuracy"].as_f64().unwrap() > 0.9, "{out}");
    assert_eq!(
        out["train_rows"].as_u64().unwrap() + out["test_rows"].as_u64().unwrap(),
        569
    );
    assert_eq!(out["registered"]["version"], "1");
    assert_eq!(out["registered"]["status"], "READY");
    assert_eq!(out["params"]["n_estimators"], "60");

    // What the run recorded, read from the store itself.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", home.join("bastion.db").display()))
        .await
        .unwrap();
    let status: String = one(&db, "SELECT status FROM runs WHERE run_uuid = ?", &run_id).await;
    assert_eq!(status, "FINISHED");
    let steps: i64 = one(
        &db,
        "SELECT COUNT(*) FROM metrics WHERE run_uuid = ? AND key = 'train_loss'",
        &run_id,
    )
    .await;
    assert_eq!(steps, 60, "one training-loss point per round");
    let auc: f64 = one(
        &db,
        "SELECT value FROM metrics WHERE run_uuid = ? AND key = 'test_roc_auc'",
        &run_id,
    )
    .await;
    assert_eq!(auc, out["metrics"]["roc_auc"].as_f64().unwrap());
    let cv_auc: f64 = one(
        &db,
        "SELECT value FROM metrics WHERE run_uuid = ? AND key = 'cv_roc_auc_mean'",
        &run_id,
    )
    .await;
    // serde_json's float parsing may be one ulp off the printed value.
    assert!((cv_auc - cv["mean"]["roc_auc"].as_f64().unwrap()).abs() < 1e-12);
    let digest: String = one(&db, "SELECT d.digest FROM datasets d JOIN run_dataset_inputs i ON i.dataset_id = d.dataset_id WHERE i.run_uuid = ?", &run_id).await;
    assert_eq!(digest, out["dataset_digest"].as_str().unwrap());
    db.close().await;

    // Signed at registration, with provenance naming the dataset.
    let verified = bastion(home, &["verify", "models:/cancer/1"]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    let v = json_of(&verified);
    assert_eq!(v["signature"]["ok"], true);

    // Evaluation of the registered version on the whole dataset, with slices.
    let e = json_of(&bastion(
        home,
        &["evaluate", "models:/cancer/1", "--data", "bc@v1"],
    ));
    let acc = e["evaluation"]["metrics"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.95, "{e}");
    let cm = &e["evaluation"]["classes"]["confusion"];
    let total: u64 = cm
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 569);
    let html_path = home.join("report.html");
    let h = bastion(
        home,
        &[
            "evaluate",
            "models:/cancer/1",
            "--data",
            "bc@v1",
            "--format",
            "html",
            "--output",
            html_path.to_str().unwrap(),
        ],
    );
    assert!(h.status.success(), "{}", stderr(&h));
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        3,
        "ROC, PR and reliability charts"
    );

    // Predictions, one line per row; the same as a package written with --output.
    let p = bastion(home, &["predict", "models:/cancer/1", "--data", "bc@v1"]);
    assert!(p.status.success(), "{}", stderr(&p));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&p.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 569);
    assert!(["benign", "malignant"].contains(&lines[0]["label"].as_str().unwrap()));
    let pkg = home.join("pkg");
    json_of(&bastion(
        home,
        &[
            "train",
            "--data",
            "bc@v1",
            "--target",
            "diagnosis",
            "--model",
            "gbdt",
            "--param",
            "n_estimators=60",
            "--param",
            "learning_rate=0.1",
            "--seed",
            "3",
            "--output",
            pkg.to_str().unwrap(),
        ],
    ));
    let again = bastion(home, &["predict", pkg.to_str().unwrap(), "--data", "bc@v1"]);
    assert_eq!(
        again.stdout, p.stdout,
        "same data, params and seed: same model"
    );
}

#[test]
fn bad_requests_fail_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    json_of(&bastion(
        home,
        &[
            "data",
            "add",
            &shipped("diabetes.csv"),
            "--name",
            "diabetes",
        ],
    ));
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "train",
                "--data",
                "diabetes@v1",
                "--target",
                "nope",
                "--model",
                "gbdt",
            ],
            "no target column 'nope'",
        ),
        (
            &[
                "train",
                "--data",
                "diabetes@v1",
                "--target",
                "progression",
                "--model",
                "gbdt",
                "--param",
                "num_leafs=3",
            ],
            "unknown field `num_leafs`",
        ),
        (
            &[
                "train",
                "--data",
                "diabetes@v1",
                "--target",
                "progression",
                "--model",
                "logreg",
                "--task",
                "regression",
            ],
            "cannot do",
        ),
        (
            &[
                "train",
                "--data",
                "diabetes@v1",
                "--target",
                "progression",
                "--model",
                "gbdt",
                "--param",
                "oops",
            ],
            "expected NAME=VALUE",
        ),
        (
            &["predict", "models:/none/1", "--data", "diabetes@v1"],
            "none",
        ),
    ];
    for (args, want) in cases {
        let o = bastion(home, args);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    // A model trained on other columns names the one it misses.
    let pkg = home.join("m");
    json_of(&bastion(
        home,
        &[
            "train",
            "--data",
            "diabetes@v1",
            "--target",
            "progression",
            "--model",
            "linear",
            "--output",
            pkg.to_str().unwrap(),
        ],
    ));
    json_of(&bastion(
        home,
        &["data", "add", &shipped("breast_cancer.csv"), "--name", "bc"],
    ));
    let o = bastion(home, &["predict", pkg.to_str().unwrap(), "--data", "bc@v1"]);
    assert!(stderr(&o).contains("no column 'age'"), "{}", stderr(&o));
    // A tampered package is refused before it is used.
    let w = pkg.join("weights.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&w, bytes).unwrap();
    let o = bastion(
        home,
        &["predict", pkg.to_str().unwrap(), "--data", "diabetes@v1"],
    );
    assert!(
        stderr(&o).contains("does not match its digest"),
        "{}",
        stderr(&o)
    );
}
