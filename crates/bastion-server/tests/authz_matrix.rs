//! Drives every cell of `docs/authz-matrix.tsv` (every route × every role, plus anonymous)
//! against a running server with authentication on, and checks that the matrix and the
//! server's rule table list the same routes.

mod common;

use std::collections::BTreeSet;

use bastion_auth::Role;
use common::{Backend, TestServer};
use reqwest::Method;
use serde_json::{Value, json};

const MATRIX: &str = include_str!("../../../docs/authz-matrix.tsv");
const COLUMNS: [&str; 7] = [
    "anonymous",
    "admin",
    "maintainer",
    "data-scientist",
    "deployer",
    "auditor",
    "viewer",
];

struct Row {
    method: Method,
    path: String,
    expected: Vec<bool>,
}

fn matrix() -> Vec<Row> {
    let mut lines = MATRIX.lines().filter(|l| !l.starts_with('#'));
    let header: Vec<&str> = lines.next().expect("header").split('\t').collect();
    assert_eq!(&header[2..], &COLUMNS, "matrix columns");
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split('\t').collect();
            assert_eq!(cells.len(), 2 + COLUMNS.len(), "row {l:?}");
            Row {
                method: cells[0].parse().expect("method"),
                path: cells[1].to_owned(),
                expected: cells[2..]
                    .iter()
                    .map(|c| match *c {
                        "allow" => true,
                        "deny" => false,
                        other => panic!("cell {other:?} in {l:?}"),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// What each row's request acts on: created afresh for every row, so that a delete or rename
/// in one row cannot change the outcome of another.
struct Fixture {
    experiment: String,
    experiment_name: String,
    run: String,
    model: String,
    logged_model: String,
    user: String,
    token_id: String,
}

async fn send(
    s: &TestServer,
    token: Option<&str>,
    method: Method,
    path: &str,
    params: &Value,
) -> (u16, Value, String) {
    let mut url = s.url(path);
    if method == Method::GET {
        let mut q: Vec<(String, String)> = Vec::new();
        for (k, v) in params.as_object().into_iter().flatten() {
            match v {
                Value::Array(items) => q.extend(
                    items
                        .iter()
                        .map(|i| (k.clone(), i.as_str().unwrap_or("").to_owned())),
                ),
                Value::String(x) => q.push((k.clone(), x.clone())),
                other => q.push((k.clone(), other.to_string())),
            }
        }
        let enc = |x: &str| {
            percent_encoding::utf8_percent_encode(x, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let qs: Vec<String> = q
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        url = format!("{url}?{}", qs.join("&"));
    }
    let mut req = s.client.request(method.clone(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req = if method == Method::GET {
        req
    } else if method == Method::PUT && path.contains("mlflow-artifacts") {
        req.body("artifact bytes")
    } else {
        req.json(params)
    };
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let landed = resp.url().path().to_owned();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        landed,
    )
}

/// Whether the dashboard refused: a page asked for without credentials goes to the login
/// page; other refusals are error pages carrying the auth layer's message.
fn dashboard_refused(row_path: &str, status: u16, body: &Value, landed: &str) -> bool {
    let text = body.as_str().unwrap_or("");
    (landed == "/login" && row_path != "/login" && row_path != "/logout")
        || (matches!(status, 401 | 403)
            && (text.contains("Permission denied") || text.contains("Authentication required")))
}

async fn fixture(s: &TestServer, admin: &str, n: usize) -> Fixture {
    let ok = |what: &str, (st, v, _): (u16, Value, String)| {
        assert_eq!(st, 200, "fixture {what}: {v}");
        v
    };
    let api = "/api/2.0/mlflow";
    let experiment_name = format!("exp-{n}");
    let v = ok(
        "experiment",
        send(
            s,
            Some(admin),
            Method::POST,
            &format!("{api}/experiments/create"),
            &json!({"name": experiment_name}),
        )
        .await,
    );
    let experiment = v["experiment_id"].as_str().unwrap().to_owned();
    let v = ok(
        "run",
        send(
            s,
            Some(admin),
            Method::POST,
            &format!("{api}/runs/create"),
            &json!({"experiment_id": experiment}),
        )
        .await,
    );
    let run = v["run"]["info"]["run_id"].as_str().unwrap().to_owned();
    let model = format!("model-{n}");
    ok(
        "model",
        send(
            s,
            Some(admin),
            Method::POST,
            &format!("{api}/registered-models/create"),
            &json!({"name": model}),
        )
        .await,
    );
    ok(
        "version",
        send(
            s,
            Some(admin),
            Method::POST,
            &format!("{api}/model-versions/create"),
            &json!({"name": model, "source": format!("mlflow-artifacts:/{experiment}/{run}/artifacts/model"), "run_id": run}),
        )
        .await,
    );
    let v = ok(
        "logged model",
        send(
            s,
            Some(admin),
            Method::POST,
            &format!("{api}/logged-models"),
            &json!({"experiment_id": experiment, "name": "lm"}),
        )
        .await,
    );
    let logged_model = v["model"]["info"]["model_id"].as_str().unwrap().to_owned();
    ok(
        "artifact",
        send(
            s,
            Some(admin),
            Method::PUT,
            &format!("/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run}/artifacts/f.txt"),
            &Value::Null,
        )
        .await,
    );
    let user = format!("target-{n}");
    s.meta.create_user(&user, Role::Viewer, None).await.unwrap();
    let (_, info) = s.meta.issue_token(&user, "", None).await.unwrap();
    Fixture {
        experiment,
        experiment_name,
        run,
        model,
        logged_model,
        user,
        token_id: info.token_id,
    }
}

fn request(row: &Row, f: &Fixture, caller: &str) -> (String, Value) {
    let path = row
        .path
        .replace("{model_id}", &f.logged_model)
        .replace("{model_name}", &f.model)
        .replace("{model_version}", "1")
        .replace("{key}", "k")
        .replace(
            "{*path}",
            &format!("{}/{}/artifacts/f.txt", f.experiment, f.run),
        )
        .replace("{token_id}", &f.token_id)
        .replace("{seq}", "0")
        .replace("{version}", "1")
        .replace("{name}", &f.user);
    let params = json!({
        "experiment_id": f.experiment,
        "experiment_ids": [f.experiment],
        "experiment_name": f.experiment_name,
        "run_id": f.run,
        "name": f.model,
        "new_name": format!("{}-{caller}", f.model),
        "version": "1",
        "alias": "champion",
        "stage": "Staging",
        "key": "k",
        "value": "v",
        "timestamp": 1,
        "path": format!("{}/{}/artifacts", f.experiment, f.run),
        "principal": "user:nobody",
        "resource_kind": "experiment",
        "resource": f.experiment,
        "permission": "READ",
        "from": 0,
        "to": 0,
        "role": "viewer",
        "description": "matrix",
        "model": f.model,
        "feedback": [{"request_id": "matrix", "label": "x"}],
    });
    (path, params)
}

async fn every_route_and_role_matches_the_matrix(b: Backend) {
    let s = TestServer::start_secure(b, |_| {}, None).await;
    let mut tokens = Vec::new();
    for role in &COLUMNS[1..] {
        let name = format!("as-{role}");
        s.meta
            .create_user(&name, role.parse().unwrap(), None)
            .await
            .unwrap();
        tokens.push(s.meta.issue_token(&name, "matrix", None).await.unwrap().0);
    }
    let admin = tokens[0].clone();
    let rows = matrix();

    let listed: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.method.to_string(), r.path.clone()))
        .collect();
    let ruled: BTreeSet<(String, String)> = bastion_server::auth::policy::RULES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    assert_eq!(
        listed, ruled,
        "the matrix and the rule table list different routes"
    );

    let mut mismatches = Vec::new();
    // Least privileged first, so a delete by an allowed role comes after every denial.
    let order = [0usize, 6, 5, 4, 3, 2, 1];
    for (n, row) in rows.iter().enumerate() {
        let f = fixture(&s, &admin, n).await;
        for &col in &order {
            let caller = COLUMNS[col];
            let token = (col > 0).then(|| tokens[col - 1].as_str());
            let (path, params) = request(row, &f, caller);
            let (status, body, landed) = send(&s, token, row.method.clone(), &path, &params).await;
            let dashboard = row.path == "/"
                || row.path.starts_with("/ui/")
                || row.path.ends_with("login")
                || row.path == "/logout";
            // An inference route may answer 403 after authorization for a model version that
            // admission refuses; that answer has the protocol's `error`, not an error code.
            let allowed = if dashboard {
                !dashboard_refused(&row.path, status, &body, &landed)
            } else {
                !(matches!(status, 401 | 403) && body.get("error_code").is_some())
            };
            if allowed != row.expected[col] || status == 429 || status >= 500 {
                mismatches.push(format!(
                    "{} {} as {caller}: expected {}, got {status} {body}",
                    row.method,
                    row.path,
                    if row.expected[col] { "allow" } else { "deny" }
                ));
            }
            if !allowed && row.path.starts_with("/v2") {
                // Inference clients read the protocol's `error` field.
                assert_eq!(body["error"], body["message"], "{body}");
            }
            if dashboard {
                continue;
            }
            if !allowed && col > 0 {
                assert_eq!(body["error_code"], "PERMISSION_DENIED", "{body}");
            }
            if !allowed && col == 0 {
                assert_eq!(body["error_code"], "UNAUTHENTICATED", "{body}");
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} cells differ from docs/authz-matrix.tsv:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

backend_tests!(every_route_and_role_matches_the_matrix);
