//! Registered model versions are signed by the server (an OpenSSF model-signing bundle over
//! their files, and SLSA provenance); verification re-derives everything and quarantines a
//! version whose files no longer match; downloads of tampered blobs fail.

mod common;

use bastion_attest::hashing::{HashOptions, hash_model};
use bastion_attest::provenance::Provenance;
use bastion_attest::verify::{Trust, verify_bundle, verify_manifest};
use bastion_attest::{Bundle, PublicKey};
use common::{Backend, TestServer};
use serde_json::{Value, json};

backend_tests!(
    registration_signs_files_and_provenance,
    changed_files_fail_verification_and_quarantine,
    remote_versions_are_reported_unsigned
);

const ART: &str = "/api/2.0/mlflow-artifacts/artifacts";
const V1: &str = "/api/bastion/v1";
const FILES: [(&str, &[u8]); 3] = [
    ("MLmodel", b"flavors: {}\n"),
    ("weights.bin", &[7u8; 4096]),
    ("sub/a.txt", b""),
];

/// A run with a parameter and the three files under `model/`, registered as `name`.
async fn registered(s: &TestServer, name: &str) -> (String, String, Value) {
    let exp = s.create_experiment(&format!("exp-{name}")).await;
    let run = s.create_run(&exp).await;
    s.ok_post(
        "/runs/log-parameter",
        json!({"run_id": run, "key": "learning_rate", "value": "0.1"}),
    )
    .await;
    s.ok_post(
        "/runs/set-tag",
        json!({"run_id": run, "key": "mlflow.source.git.commit", "value": "0123456789abcdef0123456789abcdef01234567"}),
    )
    .await;
    let root = format!("{exp}/{run}/artifacts/model");
    for (path, bytes) in FILES {
        s.put_artifact(&format!("{root}/{path}"), bytes).await;
    }
    let _ = s
        .post("/registered-models/create", json!({ "name": name }))
        .await;
    let v = s
        .ok_post(
            "/model-versions/create",
            json!({"name": name, "source": format!("mlflow-artifacts:/{root}"), "run_id": run}),
        )
        .await["model_version"]
        .clone();
    (run, root, v)
}

async fn v1(s: &TestServer, method: reqwest::Method, path: &str) -> Value {
    let (st, body) = s.call(method, &format!("{V1}/{path}"), Value::Null).await;
    assert!(st.is_success(), "{path}: {st} {body}");
    body
}

fn bundle(v: &Value) -> Bundle {
    Bundle::from_json(v.to_string().as_bytes()).unwrap()
}

async fn registration_signs_files_and_provenance(b: Backend) {
    let s = TestServer::start(b).await;
    let (run, _, v) = registered(&s, "signed").await;
    assert_eq!(v["status"], "READY");
    let a = v1(
        &s,
        reqwest::Method::GET,
        "model-versions/attestations?name=signed&version=1",
    )
    .await;
    let root = a["root_digest"].as_str().unwrap().to_owned();
    let key = PublicKey::from_pem(a["public_key"].as_str().unwrap()).unwrap();
    let trust = Trust::Key(key.clone());

    // The signature is an OpenSSF model-signing bundle over exactly the version's files, with
    // the root digest model_signing computes for the same folder on disk.
    let manifest = verify_manifest(&bundle(&a["signature"]), &trust).unwrap();
    assert_eq!(manifest.root_digest_hex(), root);
    let names: Vec<String> = manifest.resources().iter().map(|r| r.name()).collect();
    assert_eq!(names, ["MLmodel", "sub/a.txt", "weights.bin"]);
    assert_eq!(manifest.model_name, "model");
    let dir = tempfile::tempdir().unwrap();
    for (path, bytes) in FILES {
        let p = dir.path().join("model").join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    let local = hash_model(&dir.path().join("model"), &HashOptions::default(), &|_| {}).unwrap();
    assert_eq!(local.root_digest_hex(), root);

    // The provenance names the run, its parameters and code, and the same root digest.
    let statement = verify_bundle(&bundle(&a["provenance"]), &trust).unwrap();
    let p = Provenance::from_statement(&statement).unwrap();
    assert_eq!(statement.subject[0].digest["sha256"], root);
    assert_eq!(statement.subject[0].name, "models:/signed/1");
    let ext = &p.build_definition.external_parameters;
    assert_eq!(ext["parameters"]["learning_rate"], "0.1");
    assert_eq!(ext["run_id"], run.as_str());
    assert_eq!(p.run_details.metadata.invocation_id, run);
    assert!(p.run_details.builder.id.starts_with("urn:bastion:server:"));
    assert!(p.run_details.metadata.started_on.is_some());
    let code = p
        .build_definition
        .resolved_dependencies
        .iter()
        .find(|d| d.name.as_deref() == Some("code"))
        .unwrap();
    assert_eq!(
        code.digest["gitCommit"],
        "0123456789abcdef0123456789abcdef01234567"
    );

    // End-to-end verification passes and re-reads every byte.
    let r = v1(
        &s,
        reqwest::Method::POST,
        "model-versions/verify?name=signed&version=1",
    )
    .await;
    assert_eq!(r["verified"], true, "{r}");
    assert_eq!(r["files_checked"], 3);
    assert_eq!(r["bytes_checked"], 4096 + 12);
    assert_eq!(r["current_root_digest"], root.as_str());
    assert_eq!(r["quarantine"], Value::Null);

    let k = v1(&s, reqwest::Method::GET, "signing-key").await;
    assert_eq!(k["public_key"], a["public_key"]);
    assert_eq!(k["hint"], key.hint());
    assert_eq!(k["algorithm"], "ecdsa-p256");
}

async fn changed_files_fail_verification_and_quarantine(b: Backend) {
    let s = TestServer::start(b).await;

    // An artifact overwritten after registration: the listed files no longer match.
    let (_, root, _) = registered(&s, "overwritten").await;
    s.put_artifact(&format!("{root}/weights.bin"), &[8u8; 4096])
        .await;
    let r = v1(
        &s,
        reqwest::Method::POST,
        "model-versions/verify?name=overwritten&version=1",
    )
    .await;
    assert_eq!(r["verified"], false);
    assert_eq!(r["signature"]["ok"], true, "{r}");
    let mismatches = r["mismatches"].to_string();
    assert!(mismatches.contains("weights.bin: content changed"), "{r}");
    assert!(
        r["quarantine"].as_str().unwrap().contains("weights.bin"),
        "{r}"
    );
    let v = s
        .ok_get(
            "/model-versions/get",
            &[("name", "overwritten"), ("version", "1")],
        )
        .await;
    assert_eq!(v["model_version"]["status"], "FAILED_REGISTRATION");
    let (st, _) = s
        .post(
            "/registered-models/alias",
            json!({"name": "overwritten", "alias": "prod", "version": "1"}),
        )
        .await;
    assert!(!st.is_success());

    // A file added after registration is reported as extra.
    let (_, root, _) = registered(&s, "extra").await;
    s.put_artifact(&format!("{root}/payload.py"), b"import os")
        .await;
    let r = v1(
        &s,
        reqwest::Method::POST,
        "model-versions/verify?name=extra&version=1",
    )
    .await;
    assert!(
        r["mismatches"]
            .to_string()
            .contains("payload.py: not covered"),
        "{r}"
    );

    // A blob changed on disk: the stored bytes no longer hash to their digest, verification
    // says which file, and downloading it fails rather than serving the changed bytes.
    let (_, root, _) = registered(&s, "corrupted").await;
    let digest = bastion_core::Digest::of(&[7u8; 4096]).hex();
    let blob = s.blob_path(&digest);
    let mut perms = std::fs::metadata(&blob).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&blob, perms).unwrap();
    std::fs::write(&blob, [9u8; 4096]).unwrap();
    let r = v1(
        &s,
        reqwest::Method::POST,
        "model-versions/verify?name=corrupted&version=1",
    )
    .await;
    assert_eq!(r["verified"], false);
    assert!(
        r["mismatches"]
            .to_string()
            .contains("weights.bin: its stored bytes changed"),
        "{r}"
    );
    assert!(r["quarantine"].is_string());
    // The response is cut short: before its headers when the blob is one chunk, else in the
    // body; either way the client never gets the changed bytes as a complete download.
    let served = match s
        .client
        .get(s.url(&format!("{ART}/{root}/weights.bin")))
        .send()
        .await
    {
        Ok(response) => response.bytes().await.is_ok(),
        Err(_) => false,
    };
    assert!(!served, "a tampered blob was served in full");
}

async fn remote_versions_are_reported_unsigned(b: Backend) {
    let s = TestServer::start(b).await;
    let _ = s
        .post("/registered-models/create", json!({ "name": "remote" }))
        .await;
    s.ok_post(
        "/model-versions/create",
        json!({"name": "remote", "source": "s3://elsewhere/model"}),
    )
    .await;
    let a = v1(
        &s,
        reqwest::Method::GET,
        "model-versions/attestations?name=remote&version=1",
    )
    .await;
    assert_eq!(a["root_digest"], Value::Null);
    assert_eq!(a["signature"], Value::Null);
    let r = v1(
        &s,
        reqwest::Method::POST,
        "model-versions/verify?name=remote&version=1",
    )
    .await;
    assert_eq!(r["verified"], false);
    assert!(
        r["signature"]["detail"]
            .as_str()
            .unwrap()
            .contains("no root digest")
    );
    assert_eq!(r["quarantine"], Value::Null);
}
