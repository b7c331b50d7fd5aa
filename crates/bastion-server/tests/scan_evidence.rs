//! Model files are scanned as they are uploaded and when a model version is registered; the
//! results are evidence on the files' digests, visible over the API, and a CRITICAL finding
//! quarantines the version (no alias, no promotion) until an audited release.

mod common;

use common::{Backend, TestServer, assert_error};
use serde_json::{Value, json};

backend_tests!(
    uploads_are_scanned_and_critical_versions_are_quarantined,
    files_without_evidence_are_scanned_at_registration,
    clean_and_remote_versions_stay_ready
);

const V1: &str = "/api/bastion/v1";
/// `os.system("echo pwned")` as protocol-2 pickle.
const EVIL: &[u8] = b"\x80\x02cos\nsystem\nX\x0a\x00\x00\x00echo pwned\x85R.";
/// `{"w": [1.0, 2.0]}` as protocol-2 pickle.
const BENIGN: &[u8] = b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01]q\x02(G?\xf0\x00\x00\x00\x00\x00\x00G@\x00\x00\x00\x00\x00\x00\x00es.";

async fn v1_get(s: &TestServer, path: &str, query: &str) -> (reqwest::StatusCode, Value) {
    s.call(
        reqwest::Method::GET,
        &format!("{V1}/{path}?{query}"),
        Value::Null,
    )
    .await
}

async fn v1_post(s: &TestServer, path: &str, body: Value) -> (reqwest::StatusCode, Value) {
    s.call(reqwest::Method::POST, &format!("{V1}/{path}"), body)
        .await
}

async fn register(s: &TestServer, model: &str, source: &str, run: Option<&str>) -> Value {
    let _ = s
        .post("/registered-models/create", json!({ "name": model }))
        .await;
    let mut body = json!({ "name": model, "source": source });
    if let Some(r) = run {
        body["run_id"] = json!(r);
    }
    s.ok_post("/model-versions/create", body).await["model_version"].clone()
}

async fn uploads_are_scanned_and_critical_versions_are_quarantined(b: Backend) {
    let s = TestServer::start(b).await;
    let exp = s.create_experiment("scan").await;
    let run = s.create_run(&exp).await;
    let root = format!("{exp}/{run}/artifacts");
    s.put_artifact(&format!("{root}/model/model.pkl"), EVIL)
        .await;
    s.put_artifact(&format!("{root}/model/MLmodel"), b"flavors: {}\n")
        .await;

    // The upload's scan is evidence on the file's digest.
    let (st, ev) = v1_get(
        &s,
        "artifacts/evidence",
        &format!("path={root}/model/model.pkl"),
    )
    .await;
    assert!(st.is_success(), "{ev}");
    let scan = &ev["evidence"][0];
    assert_eq!(scan["kind"], "scan");
    assert_eq!(scan["verdict"], "findings");
    assert_eq!(scan["worst"], "CRITICAL");
    assert!(scan["tool"].as_str().unwrap().starts_with("bastion-scan/"));
    assert_eq!(scan["result"]["findings"][0]["subject"], "os.system");
    assert_eq!(ev["evidence"].as_array().unwrap().len(), 1);
    let (st, ev) = v1_get(
        &s,
        "artifacts/evidence",
        &format!("path={root}/model/MLmodel"),
    )
    .await;
    assert!(st.is_success());
    assert_eq!(ev["evidence"][0]["verdict"], "clean");

    // Registering the version quarantines it: the MLflow client sees a failed registration.
    let v = register(&s, "evil", &format!("runs:/{run}/model"), Some(&run)).await;
    assert_eq!(v["status"], "FAILED_REGISTRATION", "{v}");
    let message = v["status_message"].as_str().unwrap();
    assert!(
        message.contains("quarantined")
            && message.contains("model.pkl")
            && message.contains("os.system"),
        "{message}"
    );
    let (_, again) = s
        .get("/model-versions/get", &[("name", "evil"), ("version", "1")])
        .await;
    assert_eq!(again["model_version"]["status"], "FAILED_REGISTRATION");

    let (st, e) = v1_get(&s, "model-versions/evidence", "name=evil&version=1").await;
    assert!(st.is_success(), "{e}");
    assert_eq!(e["quarantined"], true);
    assert_eq!(e["status"], "findings");
    let files: Vec<&str> = e["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["MLmodel", "model.pkl"]);
    // No second scan of bytes already scanned.
    let (_, ev) = v1_get(
        &s,
        "artifacts/evidence",
        &format!("path={root}/model/model.pkl"),
    )
    .await;
    assert_eq!(ev["evidence"].as_array().unwrap().len(), 1);

    // Quarantined: no alias, no promotion.
    let (st, body) = s
        .post(
            "/registered-models/alias",
            json!({ "name": "evil", "alias": "prod", "version": "1" }),
        )
        .await;
    assert_error(st, &body, 400, "INVALID_STATE", "quarantined");
    let (st, body) = s
        .post("/model-versions/transition-stage", json!({ "name": "evil", "version": "1", "stage": "Staging", "archive_existing_versions": false }))
        .await;
    assert_error(st, &body, 400, "INVALID_STATE", "cannot be promoted");
    // Archiving is still allowed.
    let (st, _) = s
        .post("/model-versions/transition-stage", json!({ "name": "evil", "version": "1", "stage": "Archived", "archive_existing_versions": false }))
        .await;
    assert!(st.is_success());

    // An explicit release (audited) makes it usable again; releasing twice is an error.
    let (st, body) = v1_post(
        &s,
        "model-versions/release",
        json!({ "name": "evil", "version": "1" }),
    )
    .await;
    assert!(st.is_success(), "{body}");
    assert_eq!(body["reviewed_files"], 1);
    // The review is evidence on the file: a re-check does not quarantine the version again.
    let (st, e) = v1_post(
        &s,
        "model-versions/scan",
        json!({ "name": "evil", "version": "1" }),
    )
    .await;
    assert!(st.is_success(), "{e}");
    assert_eq!(e["quarantined"], false, "{e}");
    let pkl = &e["files"][1];
    assert_eq!(pkl["review"]["verdict"], "accepted");
    assert_eq!(pkl["review"]["kind"], "review");
    assert_eq!(pkl["review"]["result"]["scan_evidence"], pkl["scan"]["id"]);
    let (st, body) = v1_post(
        &s,
        "model-versions/release",
        json!({ "name": "evil", "version": "1" }),
    )
    .await;
    assert_error(st, &body, 400, "INVALID_PARAMETER_VALUE", "not quarantined");
    let v = s
        .ok_get("/model-versions/get", &[("name", "evil"), ("version", "1")])
        .await;
    assert_eq!(v["model_version"]["status"], "READY");
    s.ok_post(
        "/registered-models/alias",
        json!({ "name": "evil", "alias": "prod", "version": "1" }),
    )
    .await;
    let entries = s
        .meta
        .audit_entries(&bastion_store::meta::AuditQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.contains(&"evidence.release-model-version"),
        "{actions:?}"
    );

    // Bad requests get clear errors.
    let (st, body) = v1_get(&s, "artifacts/evidence", "path=../etc/passwd").await;
    assert_error(st, &body, 400, "INVALID_PARAMETER_VALUE", "Invalid path");
    let (st, body) = v1_get(&s, "artifacts/evidence", &format!("path={root}/none.pkl")).await;
    assert_error(st, &body, 404, "RESOURCE_DOES_NOT_EXIST", "not found");
    let (st, body) = v1_get(&s, "model-versions/evidence", "name=evil&version=7").await;
    assert_eq!(st.as_u16(), 404, "{body}");
}

async fn files_without_evidence_are_scanned_at_registration(b: Backend) {
    let s = TestServer::start(b).await;
    let exp = s.create_experiment("late").await;
    let run = s.create_run(&exp).await;
    // Files indexed without going through the upload handler (as after an import): no
    // evidence yet.
    let stored = s
        .blobs
        .put(
            Box::pin(futures::stream::iter([Ok(bytes::Bytes::from_static(EVIL))])),
            1 << 20,
            None,
        )
        .await
        .unwrap();
    let path = bastion_core::RelPath::parse(&format!("{exp}/{run}/artifacts/m/data.pkl")).unwrap();
    s.meta
        .put_artifact(&path, &stored.digest, stored.size as i64)
        .await
        .unwrap();
    assert!(
        s.meta
            .evidence_for(&stored.digest)
            .await
            .unwrap()
            .is_empty()
    );

    let (st, e) = v1_get(&s, "model-versions/evidence", "name=late&version=1").await;
    assert_eq!(st.as_u16(), 404, "{e}");
    let v = register(
        &s,
        "late",
        &format!("mlflow-artifacts:/{exp}/{run}/artifacts/m"),
        None,
    )
    .await;
    assert_eq!(v["status"], "FAILED_REGISTRATION", "{v}");
    let found = s.meta.evidence_for(&stored.digest).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].worst.as_deref(), Some("CRITICAL"));

    // A re-check finds nothing new to scan and keeps the quarantine.
    let (st, e) = v1_post(
        &s,
        "model-versions/scan",
        json!({ "name": "late", "version": "1" }),
    )
    .await;
    assert!(st.is_success(), "{e}");
    assert_eq!(e["quarantined"], true);
    assert_eq!(s.meta.evidence_for(&stored.digest).await.unwrap().len(), 1);
}

async fn clean_and_remote_versions_stay_ready(b: Backend) {
    let s = TestServer::start(b).await;
    let exp = s.create_experiment("clean").await;
    let run = s.create_run(&exp).await;
    let root = format!("{exp}/{run}/artifacts");
    s.put_artifact(&format!("{root}/model/model.pkl"), BENIGN)
        .await;
    s.put_artifact(&format!("{root}/model/weights/part-0.bin"), &[7u8; 4096])
        .await;
    let v = register(&s, "good", &format!("runs:/{run}/model"), Some(&run)).await;
    assert_eq!(v["status"], "READY", "{v}");
    let (_, e) = v1_get(&s, "model-versions/evidence", "name=good&version=1").await;
    assert_eq!(e["quarantined"], false);
    assert_eq!(e["status"], "clean", "{e}");
    assert_eq!(e["files"].as_array().unwrap().len(), 2);
    assert_eq!(e["files"][1]["path"], "weights/part-0.bin");

    // Files this server does not hold cannot be scanned: said so, not called clean.
    let v = register(&s, "remote", "s3://bucket/models/m1", None).await;
    assert_eq!(v["status"], "READY");
    let (_, e) = v1_get(&s, "model-versions/evidence", "name=remote&version=1").await;
    assert_eq!(e["status"], "unavailable", "{e}");
    assert!(
        e["unavailable"]
            .as_str()
            .unwrap()
            .contains("s3://bucket/models/m1")
    );
}
