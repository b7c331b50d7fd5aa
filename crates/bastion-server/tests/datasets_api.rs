//! The dataset API: uploads (a file, or a folder as multipart) become versions with the same
//! content digest a local ingest gives; downloads are digest-checked (and decrypted when the
//! home has a dataset key); every check is recorded as evidence; hostile, malformed, oversized
//! and concurrent uploads are refused cleanly and store nothing; access is per dataset.

mod common;

use bastion_auth::{Permission, ResourceKind, Role};
use common::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Digest as _;

backend_tests!(
    upload_read_and_check_a_dataset,
    folder_uploads_match_a_local_ingest,
    hostile_and_malformed_uploads_store_nothing,
    concurrent_uploads_get_consecutive_versions,
    encrypted_blobs_decrypt_on_download_and_tampering_is_reported,
    access_is_decided_per_dataset
);

const DS: &str = "/api/bastion/v1/datasets";

/// `n` rows of a small tabular dataset; `shift` moves the numeric columns (drift).
fn csv(n: usize, shift: f64) -> String {
    let mut s = String::from("id,age,income,city,email,label\n");
    for i in 0..n {
        let age = 20.0 + (i % 50) as f64 + shift;
        let income = 1000.0 + ((i * 37) % 900) as f64 * 3.0 + shift * 100.0;
        let city = ["paris", "lyon", "nice", "lille"][i % 4];
        let label = if age + income / 1000.0 > 45.0 { 1 } else { 0 };
        s.push_str(&format!(
            "{i},{age},{income},{city},user{i}@example.com,{label}\n"
        ));
    }
    s
}

async fn upload(s: &TestServer, name: &str, body: &str, query: &str) -> (StatusCode, Value) {
    let resp = s
        .client
        .post(s.url(&format!("{DS}/{name}/versions?{query}")))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let st = resp.status();
    (st, resp.json().await.unwrap_or(Value::Null))
}

async fn call(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let sep = if path.is_empty() || path.starts_with('?') {
        ""
    } else {
        "/"
    };
    s.call(method, &format!("{DS}{sep}{path}"), body).await
}

async fn ok(s: &TestServer, method: reqwest::Method, path: &str, body: Value) -> Value {
    let (st, v) = call(s, method, path, body).await;
    assert_eq!(st, StatusCode::OK, "{path}: {v}");
    v
}

async fn audit(s: &TestServer) -> Vec<bastion_audit::AuditEntry> {
    s.meta
        .audit_entries(&bastion_store::meta::AuditQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
}

/// The kinds of evidence recorded on a version, newest first.
async fn evidence_kinds(s: &TestServer, version: &str) -> Vec<String> {
    ok(s, reqwest::Method::GET, version, Value::Null).await["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// The raw response of a dataset endpoint (files, HTML, headers).
async fn fetch(s: &TestServer, method: reqwest::Method, path: &str) -> reqwest::Response {
    s.client
        .request(method, s.url(&format!("{DS}/{path}")))
        .send()
        .await
        .unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

async fn upload_read_and_check_a_dataset(b: Backend) {
    use reqwest::Method;
    let s = TestServer::start(b).await;
    let (st, v1) = upload(
        &s,
        "census",
        &csv(400, 0.0),
        "filename=census.csv&source=s3://bucket/census.csv",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v1}");
    assert_eq!(v1["dataset"], "census@v1");
    assert_eq!(v1["version"]["rows"], 400);
    assert_eq!(v1["version"]["format"], "csv");
    assert_eq!(v1["version"]["source"], "s3://bucket/census.csv");
    assert_eq!(v1["pii_columns"], 1, "the email column: {v1}");
    // The original bytes' digest is recorded beside the canonical Parquet's.
    assert_eq!(
        v1["version"]["source_digest"],
        sha256(csv(400, 0.0).as_bytes())
    );

    // Profile and PII scan were recorded at ingest.
    let kinds = evidence_kinds(&s, "census/versions/1").await;
    assert!(
        kinds.iter().any(|k| k == "data.profile") && kinds.iter().any(|k| k == "data.pii"),
        "{kinds:?}"
    );
    assert_eq!(
        ok(&s, Method::GET, "census/versions/latest", Value::Null).await["dataset"],
        "census@v1"
    );

    // Download: the bytes hash to the version's digest, stated in a header.
    let resp = fetch(&s, reqwest::Method::GET, "census/versions/v1/parquet").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let stated = resp.headers()["x-bastion-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(resp.headers()["x-bastion-dataset"], "census@v1");
    let bytes = resp.bytes().await.unwrap();
    assert!(bytes.starts_with(b"PAR1"));
    assert_eq!(sha256(&bytes), stated);
    assert_eq!(stated, v1["version"]["digest"]);

    // Profile as JSON and as a sandboxed HTML report.
    let p = ok(&s, Method::POST, "census/versions/1/profile", json!({})).await;
    assert_eq!(p["rows"], 400);
    let age = p["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "age")
        .unwrap();
    assert_eq!(age["numeric"]["min"], 20.0);
    let resp = fetch(
        &s,
        reqwest::Method::POST,
        "census/versions/1/profile?format=html",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    let html = resp.text().await.unwrap();
    assert!(html.contains("<svg") && html.contains("census@v1"));

    // Validation: a passing and a failing constraints file; both recorded.
    let pass = ok(&s, Method::POST, "census/versions/1/validate", json!({"constraints": "[dataset]\nrows = { min = 100 }\n[columns.age]\nnot_null = true\nmin = 0\nmax = 120\n"})).await;
    assert_eq!(pass["passed"], true, "{pass}");
    let fail = ok(
        &s,
        Method::POST,
        "census/versions/1/validate",
        json!({"constraints": "[columns.age]\nmax = 30\n"}),
    )
    .await;
    assert_eq!(fail["passed"], false);
    let failed = fail["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["passed"] == false)
        .unwrap();
    assert!(
        failed["failed_rows"].as_u64().unwrap() > 0
            && !failed["examples"].as_array().unwrap().is_empty(),
        "{failed}"
    );
    // A malformed constraints file is a 400 naming the problem, and records nothing.
    let before = ok(&s, Method::GET, "census/versions/1", Value::Null).await["evidence"]
        .as_array()
        .unwrap()
        .len();
    let (st, e) = call(
        &s,
        Method::POST,
        "census/versions/1/validate",
        json!({"constraints": "[columns.age]\nmax = \"five\"\n"}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("constraints"),
        "{e}"
    );
    let after = ok(&s, Method::GET, "census/versions/1", Value::Null).await["evidence"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);

    // Suggested constraints are TOML that validate the version they came from.
    let resp = fetch(&s, reqwest::Method::GET, "census/versions/1/suggest").await;
    let toml = resp.text().await.unwrap();
    assert!(toml.contains("[columns.age]"), "{toml}");
    let own = ok(
        &s,
        Method::POST,
        "census/versions/1/validate",
        json!({"constraints": toml}),
    )
    .await;
    assert_eq!(own["passed"], true, "{own}");

    // PII report, and a masked copy.
    let pii = ok(&s, Method::POST, "census/versions/1/pii", json!({})).await;
    assert_eq!(pii["pii_columns"], 1);
    let resp = fetch(
        &s,
        reqwest::Method::GET,
        "census/versions/1/redacted?how=mask",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-bastion-values-changed"], "400");
    let red = resp.bytes().await.unwrap();
    assert!(red.starts_with(b"PAR1") && !red.windows(12).any(|w| w == b"@example.com"));
    let (st, _) = call(
        &s,
        Method::GET,
        "census/versions/1/redacted?how=rot13",
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // A second version with shifted numbers: lineage, then drift against v1.
    let (st, v2) = upload(&s, "census", &csv(400, 15.0), "filename=census.csv").await;
    assert_eq!(st, StatusCode::OK, "{v2}");
    assert_eq!(v2["version"]["parent_version"], 1);
    let d = ok(
        &s,
        Method::POST,
        "census/versions/2/diff",
        json!({"against": "census@v1", "correction": "bonferroni"}),
    )
    .await;
    assert_eq!(d["reference"], "census@v1");
    assert_eq!(d["current"], "census@v2");
    assert_eq!(d["diff"]["drift"]["dataset_drift"], true, "{d}");
    let resp = s
        .client
        .post(s.url(&format!("{DS}/census/versions/2/diff?format=html")))
        .json(&json!({"against": "census@1"}))
        .send()
        .await
        .unwrap();
    assert!(resp.text().await.unwrap().contains("<svg"));
    let (st, e) = call(&s, Method::POST, "census/versions/2/diff", json!({})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let (st, _) = call(
        &s,
        Method::POST,
        "census/versions/2/diff",
        json!({"against": "census@v1", "alpha": 7}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Poisoning checks with a label, balance compared with the parent.
    let pz = ok(
        &s,
        Method::POST,
        "census/versions/2/poison",
        json!({"label": "label", "k": 5}),
    )
    .await;
    assert_eq!(pz["class_balance"]["reference"], "census@v1", "{pz}");
    let (st, e) = call(
        &s,
        Method::POST,
        "census/versions/2/poison",
        json!({"label": "nope"}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let (st, _) = call(
        &s,
        Method::POST,
        "census/versions/2/poison",
        json!({"k": -1}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Every check is evidence on v2's digest.
    let kinds = evidence_kinds(&s, "census/versions/2").await;
    assert!(
        kinds.iter().any(|k| k == "data.drift") && kinds.iter().any(|k| k == "data.poison"),
        "{kinds:?}"
    );

    let list = ok(&s, Method::GET, "", Value::Null).await;
    assert_eq!(list["versions"].as_array().unwrap().len(), 1);
    assert_eq!(list["versions"][0]["version"], 2);
    let all = ok(&s, Method::GET, "?name=census", Value::Null).await;
    assert_eq!(all["versions"].as_array().unwrap().len(), 2);

    // Missing versions and datasets are 404s; a malformed version is a 400.
    let (st, _) = call(&s, Method::GET, "census/versions/9", Value::Null).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(&s, Method::GET, "nope/versions/latest/parquet", Value::Null).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(&s, Method::GET, "census/versions/x1", Value::Null).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Uploads and checks are in the audit log as the caller's actions.
    let entries = audit(&s).await;
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "datasets.add",
        "datasets.validate",
        "datasets.diff",
        "datasets.poison",
    ] {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }
}

async fn upload_folder(
    s: &TestServer,
    name: &str,
    form: reqwest::multipart::Form,
) -> (StatusCode, Value) {
    let resp = s
        .client
        .post(s.url(&format!("{DS}/{name}/versions")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let st = resp.status();
    (st, resp.json().await.unwrap_or(Value::Null))
}

fn folder(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("2026/11")).unwrap();
    std::fs::write(dir.join("a.csv"), csv(50, 0.0)).unwrap();
    std::fs::write(dir.join("2026/11/b.csv"), csv(70, 1.0)).unwrap();
    std::fs::write(dir.join(".hidden"), "ignored").unwrap();
}

fn multipart(parts: &[(&str, String)]) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new();
    for (name, body) in parts {
        form = form.part(
            "file",
            reqwest::multipart::Part::text(body.clone()).file_name(name.to_string()),
        );
    }
    form
}

async fn folder_uploads_match_a_local_ingest(b: Backend) {
    let s = TestServer::start(b).await;
    let tmp = tempfile::tempdir().unwrap();
    folder(tmp.path());
    let mut canonical = Vec::new();
    let local =
        bastion_data::ingest::ingest(tmp.path(), &mut canonical, &Default::default(), &|_| {})
            .unwrap();

    let form = multipart(&[("a.csv", csv(50, 0.0)), ("2026/11/b.csv", csv(70, 1.0))]);
    let (st, v) = upload_folder(&s, "parts", form).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["version"]["rows"], 120);
    assert_eq!(
        v["version"]["source_digest"],
        local.source_digest.to_string()
    );
    assert_eq!(
        v["version"]["digest"],
        sha256(&canonical),
        "same canonical Parquet as a local ingest"
    );
    let files: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["2026/11/b.csv", "a.csv"]);
}

async fn hostile_and_malformed_uploads_store_nothing(b: Backend) {
    use reqwest::Method;
    let s = TestServer::start_with(b, |c| c.max_artifact_bytes = 4096).await;

    // A traversal in a part's filename is refused as a security event.
    for evil in ["../../etc/x.csv", "/abs.csv", "a\\b.csv", "a/../../b.csv"] {
        let form = multipart(&[(evil, csv(3, 0.0))]);
        let (st, e) = upload_folder(&s, "evil", form).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{evil}: {e}");
    }
    let entries = audit(&s).await;
    assert!(
        entries
            .iter()
            .any(|e| e.action == "security.path-traversal")
    );
    let (st, _) = upload(&s, "evil", &csv(3, 0.0), "filename=../x.csv").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = upload(&s, "evil", &csv(3, 0.0), "filename=dir/x.csv").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // One name as both a file and a folder, in either order.
    for parts in [["a", "a/b.csv"], ["a/b.csv", "a"]] {
        let form = multipart(&[(parts[0], csv(3, 0.0)), (parts[1], csv(3, 0.0))]);
        let (st, e) = upload_folder(&s, "clash", form).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("uses 'a' both as a file and as a folder"),
            "{e}"
        );
    }
    // An oversized lineage source.
    let long = format!("filename=x.csv&source={}", "s".repeat(5000));
    let (st, _) = upload(&s, "bad", "a\n1\n", &long).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // A line bound above the server's ceiling.
    let (st, e) = upload(
        &s,
        "bad",
        "a\n1\n",
        "filename=x.csv&max_line_bytes=1000000000",
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    // The same path twice, and an empty folder.
    let form = multipart(&[("a.csv", csv(3, 0.0)), ("a.csv", csv(3, 0.0))]);
    assert_eq!(
        upload_folder(&s, "dup", form).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        upload_folder(&s, "dup", reqwest::multipart::Form::new())
            .await
            .0,
        StatusCode::BAD_REQUEST
    );

    // Malformed CSV: the error names the file and line as uploaded, never a server path.
    let (st, e) = upload(
        &s,
        "bad",
        "a,b\n1,2\n3,\"unterminated\n",
        "filename=bad.csv",
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.starts_with("bad.csv: line 3"), "{msg}");
    let (st, e) = upload(&s, "bad", "a,b\n1,2,3\n", "filename=bad.csv").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert!(!e["message"].as_str().unwrap().contains("/tmp"), "{e}");
    // A lying format, a line longer than allowed, an unknown format, an invalid name.
    let (st, _) = upload(&s, "bad", "not parquet", "filename=x.bin&format=parquet").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, e) = upload(
        &s,
        "bad",
        &format!("a\n{}\n", "x".repeat(200)),
        "filename=x.csv&max_line_bytes=64",
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let (st, _) = upload(&s, "bad", "a\n1\n", "format=xml").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = upload(&s, ".hidden", "a\n1\n", "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = upload(&s, "bad", "", "filename=empty.csv").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Over the upload limit: 413, as a file and as a folder.
    let (st, _) = upload(&s, "big", &csv(400, 0.0), "filename=big.csv").await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    let form = multipart(&[("a.csv", csv(100, 0.0)), ("b.csv", csv(100, 0.0))]);
    assert_eq!(
        upload_folder(&s, "big", form).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Garbage that claims to be multipart.
    let resp = s
        .client
        .post(s.url(&format!("{DS}/bad/versions")))
        .header("content-type", "multipart/form-data; boundary=xyz")
        .body("--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nno end")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let list = ok(&s, Method::GET, "", Value::Null).await;
    assert_eq!(list["versions"], json!([]), "nothing stored");
    // The server still works after all of it.
    let (st, _) = upload(&s, "fine", "a\n1\n", "filename=fine.csv").await;
    assert_eq!(st, StatusCode::OK);
}

async fn concurrent_uploads_get_consecutive_versions(b: Backend) {
    let s = std::sync::Arc::new(TestServer::start(b).await);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            upload(&s, "busy", &csv(30 + i, i as f64), "filename=busy.csv").await
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        let (st, v) = t.await.unwrap();
        assert_eq!(st, StatusCode::OK, "{v}");
        versions.push(v["version"]["version"].as_i64().unwrap());
    }
    versions.sort();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
}

async fn encrypted_blobs_decrypt_on_download_and_tampering_is_reported(b: Backend) {
    let s = TestServer::start_with_dataset_key(b).await;
    let (st, v) = upload(&s, "secret", &csv(100, 0.0), "filename=s.csv").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["version"]["encrypted"], true);
    let blob = v["version"]["blob_digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    assert_ne!(v["version"]["blob_digest"], v["version"]["digest"]);
    let stored = std::fs::read(s.blob_path(&blob)).unwrap();
    assert!(
        stored.starts_with(b"age-encryption.org/v1"),
        "stored as age ciphertext"
    );

    let resp = fetch(&s, reqwest::Method::GET, "secret/versions/1/parquet").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(sha256(&bytes), v["version"]["digest"]);

    // One changed byte in the ciphertext: a clear refusal, not a corrupt download.
    let mut bad = stored.clone();
    let at = bad.len() - 40;
    bad[at] ^= 1;
    std::fs::write(s.blob_path(&blob), &bad).unwrap();
    let (st, e) = call(
        &s,
        reqwest::Method::GET,
        "secret/versions/1/parquet",
        Value::Null,
    )
    .await;
    assert!(
        st.is_client_error() && st != StatusCode::NOT_FOUND,
        "{st} {e}"
    );
    assert!(e["message"].as_str().unwrap().contains("decrypt"), "{e}");
}

async fn access_is_decided_per_dataset(b: Backend) {
    let s = TestServer::start_secure(b, |_| {}, None).await;
    s.meta.create_user("viv", Role::Viewer, None).await.unwrap();
    let (viewer, _) = s.meta.issue_token("viv", "", None).await.unwrap();
    s.meta
        .create_user("dana", Role::DataScientist, None)
        .await
        .unwrap();
    let (scientist, _) = s.meta.issue_token("dana", "", None).await.unwrap();
    s.meta
        .set_grant(
            "user:viv",
            ResourceKind::Dataset,
            "shared",
            Permission::Edit,
        )
        .await
        .unwrap();

    let post = |token: &str, name: &str| {
        s.client
            .post(s.url(&format!("{DS}/{name}/versions?filename=d.csv")))
            .bearer_auth(token)
            .body(csv(20, 0.0))
            .send()
    };
    assert_eq!(
        post(&scientist, "own").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        post(&viewer, "own").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&viewer, "shared").await.unwrap().status(),
        StatusCode::OK,
        "the grant lets the viewer add to 'shared'"
    );
    let resp = s
        .client
        .post(s.url(&format!("{DS}/own/versions/1/profile")))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = s
        .client
        .get(s.url(&format!("{DS}/own/versions/1/parquet")))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "viewers read");
    let resp = s.client.get(s.url(DS)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let entries = audit(&s).await;
    assert!(entries.iter().any(|e| e.action == "security.permission-denied" && e.resource.contains("dataset:own")));
}
