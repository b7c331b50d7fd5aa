//! Grants raise a role's default on one resource; every write, refusal and security event
//! lands in the audit log; an audit entry commits with its change or not at all.

mod common;

use bastion_audit::Outcome;
use bastion_auth::Role;
use bastion_store::meta::{
    AuditContext, AuditDraft, AuditQuery, MetaStore, MetaStoreOptions, SqliteSync,
};
use common::{Backend, TestServer};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Connection;

async fn call(
    s: &TestServer,
    token: &str,
    method: Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let mut req = s.client.request(method, s.url(path)).bearer_auth(token);
    if !body.is_null() {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    let st = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        st,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

const API: &str = "/api/2.0/mlflow";

async fn setup(s: &TestServer) -> (String, String) {
    s.meta.create_user("root", Role::Admin, None).await.unwrap();
    let admin = s.meta.issue_token("root", "", None).await.unwrap().0;
    s.meta.create_user("vi", Role::Viewer, None).await.unwrap();
    let viewer = s.meta.issue_token("vi", "", None).await.unwrap().0;
    (admin, viewer)
}

async fn experiment_with_run(s: &TestServer, admin: &str, name: &str) -> (String, String) {
    let (_, v) = call(
        s,
        admin,
        Method::POST,
        &format!("{API}/experiments/create"),
        json!({"name": name}),
    )
    .await;
    let exp = v["experiment_id"].as_str().unwrap().to_owned();
    let (_, v) = call(
        s,
        admin,
        Method::POST,
        &format!("{API}/runs/create"),
        json!({"experiment_id": exp}),
    )
    .await;
    (exp, v["run"]["info"]["run_id"].as_str().unwrap().to_owned())
}

async fn entries(s: &TestServer) -> Vec<bastion_audit::AuditEntry> {
    s.meta
        .audit_entries(&AuditQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn grants_raise_permission_on_one_resource(b: Backend) {
    let s = TestServer::start_secure(b, |_| {}, None).await;
    let (admin, viewer) = setup(&s).await;
    let (exp_a, run_a) = experiment_with_run(&s, &admin, "a").await;
    let (_, run_b) = experiment_with_run(&s, &admin, "b").await;
    let metric = |run: &str| json!({"run_id": run, "key": "loss", "value": 0.5, "timestamp": 1});

    let (st, v) = call(
        &s,
        &viewer,
        Method::POST,
        &format!("{API}/runs/log-metric"),
        metric(&run_a),
    )
    .await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = call(&s, &admin, Method::PUT, "/api/bastion/v1/grants", json!({"principal": "user:vi", "resource_kind": "experiment", "resource": exp_a, "permission": "EDIT"})).await;
    assert_eq!(st, 200, "{v}");
    // Effective at once on experiment a, and only there.
    let (st, v) = call(
        &s,
        &viewer,
        Method::POST,
        &format!("{API}/runs/log-metric"),
        metric(&run_a),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = call(
        &s,
        &viewer,
        Method::POST,
        &format!("{API}/runs/log-metric"),
        metric(&run_b),
    )
    .await;
    assert_eq!(st, 403);
    // EDIT is not MANAGE: the viewer still cannot delete the experiment.
    let (st, _) = call(
        &s,
        &viewer,
        Method::POST,
        &format!("{API}/experiments/delete"),
        json!({"experiment_id": exp_a}),
    )
    .await;
    assert_eq!(st, 403);
    // Nor upload artifacts elsewhere.
    let (st, _) = call(
        &s,
        &viewer,
        Method::PUT,
        &format!("/api/2.0/mlflow-artifacts/artifacts/{exp_a}/{run_a}/artifacts/ok.txt"),
        json!({}),
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = call(
        &s,
        &viewer,
        Method::PUT,
        "/api/2.0/mlflow-artifacts/artifacts/999/x/artifacts/no.txt",
        json!({}),
    )
    .await;
    assert_eq!(st, 403);
    // A grant on '*' covers every experiment.
    call(&s, &admin, Method::PUT, "/api/bastion/v1/grants", json!({"principal": "user:vi", "resource_kind": "experiment", "resource": "*", "permission": "EDIT"})).await;
    let (st, _) = call(
        &s,
        &viewer,
        Method::POST,
        &format!("{API}/runs/log-metric"),
        metric(&run_b),
    )
    .await;
    assert_eq!(st, 200);
    // Revoked: gone at once.
    for resource in [exp_a.as_str(), "*"] {
        let (st, v) = call(
            &s,
            &admin,
            Method::DELETE,
            "/api/bastion/v1/grants",
            json!({"principal": "user:vi", "resource_kind": "experiment", "resource": resource}),
        )
        .await;
        assert_eq!(st, 200, "{v}");
    }
    let (st, _) = call(
        &s,
        &viewer,
        Method::POST,
        &format!("{API}/runs/log-metric"),
        metric(&run_a),
    )
    .await;
    assert_eq!(st, 403);
    // Bad grants are refused with the reason.
    let (st, v) = call(&s, &admin, Method::PUT, "/api/bastion/v1/grants", json!({"principal": "vi", "resource_kind": "experiment", "resource": "1", "permission": "EDIT"})).await;
    assert_eq!(st, 400);
    assert!(v["message"].as_str().unwrap().contains("principal"), "{v}");
    let (st, v) = call(&s, &admin, Method::PUT, "/api/bastion/v1/grants", json!({"principal": "user:vi", "resource_kind": "experiment", "resource": "1", "permission": "OWN"})).await;
    assert_eq!(st, 400);
    assert!(v["message"].as_str().unwrap().contains("permission"), "{v}");
}

async fn every_write_and_refusal_is_audited(b: Backend) {
    let s = TestServer::start_secure(b, |_| {}, None).await;
    let (admin, viewer) = setup(&s).await;
    let (exp, run) = experiment_with_run(&s, &admin, "audited").await;

    let body = json!({"run_id": run, "key": "acc", "value": 0.9, "timestamp": 5});
    let bytes = serde_json::to_vec(&body).unwrap();
    let resp = s
        .client
        .post(s.url(&format!("{API}/runs/log-metric")))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let log = entries(&s).await;
    let e = log
        .iter()
        .find(|e| e.request_id == request_id)
        .expect("log-metric entry");
    assert_eq!(e.action, "runs.log-metric");
    assert_eq!(e.resource, format!("run:{run}"));
    assert!(e.actor.starts_with("user:root (token "), "{}", e.actor);
    assert_eq!(e.outcome, Outcome::Success);
    let expected: [u8; 32] = Sha256::digest(&bytes).into();
    assert_eq!(e.body_sha256, Some(expected));
    assert_eq!(log.iter().filter(|x| x.request_id == request_id).count(), 1);

    // A refused write, a denial and a traversal attempt are each recorded.
    call(
        &s,
        &admin,
        Method::POST,
        &format!("{API}/runs/delete"),
        json!({"run_id": run}),
    )
    .await;
    let (st, _) = call(
        &s,
        &admin,
        Method::POST,
        &format!("{API}/runs/log-metric"),
        body.clone(),
    )
    .await;
    assert_eq!(st, 400);
    let (st, _) = call(
        &s,
        &viewer,
        Method::POST,
        &format!("{API}/experiments/delete"),
        json!({"experiment_id": exp}),
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = call(
        &s,
        &admin,
        Method::GET,
        "/api/2.0/mlflow-artifacts/artifacts/..%2F..%2Fetc%2Fpasswd",
        Value::Null,
    )
    .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .call(Method::GET, "/api/bastion/v1/whoami", Value::Null)
        .await
        .0
        .as_u16()
        .checked_add(0)
        .map(|c| (c, ()))
        .unwrap();
    assert_eq!(st, 401);
    let log = entries(&s).await;
    let has = |action: &str, outcome: Outcome| {
        log.iter()
            .any(|e| e.action == action && e.outcome == outcome)
    };
    assert!(
        has("runs.log-metric", Outcome::Failure),
        "failed write not recorded"
    );
    assert!(has("security.permission-denied", Outcome::Denied));
    assert!(has("security.path-traversal", Outcome::Denied));
    assert!(has("security.auth-failed", Outcome::Denied));
    // Reads are not recorded.
    assert!(
        !log.iter()
            .any(|e| e.action == "runs.get" || e.action == "whoami")
    );

    // Proof requests with a malformed position get a JSON error, not a bare rejection.
    let (st, v) = call(
        &s,
        &admin,
        Method::GET,
        "/api/bastion/v1/audit/inclusion/-1",
        Value::Null,
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error_code"], "INVALID_PARAMETER_VALUE");
    // No signed head covers entry 0 until one is signed (GET /audit/head signs one).
    let inclusion = "/api/bastion/v1/audit/inclusion/0";
    let (st, v) = call(&s, &admin, Method::GET, inclusion, Value::Null).await;
    assert_eq!(st, 404, "{v}");
    let (st, head) = call(
        &s,
        &admin,
        Method::GET,
        "/api/bastion/v1/audit/head",
        Value::Null,
    )
    .await;
    assert_eq!(st, 200, "{head}");
    let (st, v) = call(&s, &admin, Method::GET, inclusion, Value::Null).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["entry"]["seq"], 0);
    // The bundle verifies offline with the public key the server published.
    let bundle: bastion_audit::proof::InclusionBundle = serde_json::from_value(v).unwrap();
    let mut public = [0u8; 32];
    hex::decode_to_slice(head["public_key"].as_str().unwrap(), &mut public).unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    assert_eq!(bundle.verify(&key), Ok(()));

    // The whole log verifies against the server's key once a head is signed over it.
    let key = s.audit_key.clone();
    s.meta.sign_audit_head(&key).await.unwrap();
    let report = s
        .meta
        .verify_audit(&key.verifying_key())
        .await
        .unwrap()
        .expect("log verifies");
    assert_eq!(report.entries, log.len() as u64);
}

/// Another process (the CLI) appending to the log while the server runs: the server's cached
/// end of the log goes stale; its next write must still chain correctly.
async fn appends_from_another_process_keep_the_chain(b: Backend) {
    let s = TestServer::start_secure(b, |_| {}, None).await;
    let (admin, _) = setup(&s).await;
    let (_, run) = experiment_with_run(&s, &admin, "shared").await;
    let metric = |v: f64| json!({"run_id": run, "key": "m", "value": v, "timestamp": 1});
    call(
        &s,
        &admin,
        Method::POST,
        &format!("{API}/runs/log-metric"),
        metric(1.0),
    )
    .await;
    let other = MetaStore::connect(&MetaStoreOptions {
        uri: s.db_uri.clone(),
        max_connections: 1,
        sqlite_sync: SqliteSync::Normal,
    })
    .await
    .unwrap();
    let cli = other.audited(AuditContext::new(AuditDraft {
        actor: "cli:test".into(),
        action: "users.create".into(),
        resource: "user:zed".into(),
        request_id: String::new(),
        outcome: Outcome::Success,
        body_sha256: None,
    }));
    cli.create_user("zed", Role::Viewer, None).await.unwrap();
    for v in [2.0, 3.0] {
        let (st, body) = call(
            &s,
            &admin,
            Method::POST,
            &format!("{API}/runs/log-metric"),
            metric(v),
        )
        .await;
        assert_eq!(st, 200, "{body}");
    }
    let key = s.audit_key.clone();
    s.meta.sign_audit_head(&key).await.unwrap();
    s.meta
        .verify_audit(&key.verifying_key())
        .await
        .unwrap()
        .expect("log verifies");
    let log = entries(&s).await;
    assert_eq!(
        log.iter().filter(|e| e.action == "runs.log-metric").count(),
        3
    );
    assert!(log.iter().any(|e| e.actor == "cli:test"));
}

/// If the audit entry cannot be written, the change is not written either.
async fn no_change_without_its_audit_entry(b: Backend) {
    let s = TestServer::start_secure(b, |_| {}, None).await;
    let (admin, _) = setup(&s).await;
    let (exp, run) = experiment_with_run(&s, &admin, "atomic").await;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&s.db_uri).await.unwrap();
    let (block, unblock) = match b {
        Backend::Sqlite => (
            vec![
                "CREATE TRIGGER block_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END",
            ],
            vec!["DROP TRIGGER block_audit"],
        ),
        Backend::Postgres => (
            vec![
                "CREATE FUNCTION block_audit() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit unavailable'; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER block_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION block_audit()",
            ],
            vec![
                "DROP TRIGGER block_audit ON audit_log",
                "DROP FUNCTION block_audit()",
            ],
        ),
    };
    for stmt in block {
        sqlx::query(sqlx::AssertSqlSafe(stmt.to_string()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let before = entries(&s).await.len();
    for (path, body) in [
        (
            "runs/log-metric",
            json!({"run_id": run, "key": "lost", "value": 1, "timestamp": 1}),
        ),
        (
            "runs/log-parameter",
            json!({"run_id": run, "key": "lost", "value": "x"}),
        ),
        (
            "runs/set-tag",
            json!({"run_id": run, "key": "lost", "value": "x"}),
        ),
        (
            "experiments/set-experiment-tag",
            json!({"experiment_id": exp, "key": "lost", "value": "x"}),
        ),
        ("experiments/create", json!({"name": "lost"})),
    ] {
        let (st, v) = call(&s, &admin, Method::POST, &format!("{API}/{path}"), body).await;
        assert_eq!(st, 500, "{path}: {v}");
        assert!(
            !v.to_string().contains("audit unavailable"),
            "internals leaked: {v}"
        );
    }
    for stmt in unblock {
        sqlx::query(sqlx::AssertSqlSafe(stmt.to_string()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(entries(&s).await.len(), before);
    let (_, r) = call(
        &s,
        &admin,
        Method::GET,
        &format!("{API}/runs/get?run_id={run}"),
        Value::Null,
    )
    .await;
    let data = &r["run"]["data"];
    assert!(
        data.get("metrics").is_none() && data.get("params").is_none(),
        "{data}"
    );
    assert!(
        data["tags"]
            .as_array()
            .map(|t| t.iter().all(|x| x["key"] != "lost"))
            .unwrap_or(true),
        "{data}"
    );
    let (st, _) = call(
        &s,
        &admin,
        Method::GET,
        &format!("{API}/experiments/get-by-name?experiment_name=lost"),
        Value::Null,
    )
    .await;
    assert_eq!(st, 404);
    // Writes work again, and the log still verifies.
    let (st, _) = call(
        &s,
        &admin,
        Method::POST,
        &format!("{API}/runs/log-metric"),
        json!({"run_id": run, "key": "kept", "value": 1, "timestamp": 1}),
    )
    .await;
    assert_eq!(st, 200);
    let key = s.audit_key.clone();
    s.meta.sign_audit_head(&key).await.unwrap();
    s.meta
        .verify_audit(&key.verifying_key())
        .await
        .unwrap()
        .expect("log verifies");
}

backend_tests!(
    grants_raise_permission_on_one_resource,
    every_write_and_refusal_is_audited,
    appends_from_another_process_keep_the_chain,
    no_change_without_its_audit_entry,
);
