//! Deployments and the guarded request path: weighted canaries (within statistical
//! tolerance), pinned variants, promote and rollback (audited), automatic rollback under
//! injected failures and latency with no failed request, shadow traffic compared and never
//! returned, per-model limits, input guards against the training data, micro-batching, hot
//! swap under load, and the inference events all of it leaves.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bastion_audit::entry::Outcome;
use common::served::{infer, local_probabilities, metrics, register_model, request, training_csv};
use common::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

backend_tests!(
    canary_weights_pins_promote_and_rollback,
    a_failing_or_slow_canary_rolls_back_without_failed_requests,
    shadow_traffic_is_compared_and_never_returned,
    per_model_rate_and_concurrency_limits,
    a_stalled_body_times_out_and_frees_its_place,
    guards_compare_inputs_with_the_training_data,
    micro_batching_and_hot_swap_under_load
);

async fn deploy(s: &TestServer, model: &str, body: Value) -> (StatusCode, Value) {
    let r = s
        .client
        .post(s.url(&format!("/api/bastion/v1/deployments/{model}")))
        .json(&body)
        .send()
        .await
        .expect("deploy");
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn ok_deploy(s: &TestServer, model: &str, body: Value) -> Value {
    let (st, out) = deploy(s, model, body).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    out
}

async fn deployment(s: &TestServer, model: &str) -> Value {
    let (st, out) = s
        .call(
            reqwest::Method::GET,
            &format!("/api/bastion/v1/deployments/{model}"),
            Value::Null,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{out}");
    out
}

async fn v1_post(s: &TestServer, path: &str) -> Value {
    let (st, out) = s
        .call(
            reqwest::Method::POST,
            &format!("/api/bastion/v1/{path}"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{out}");
    out
}

const ROWS: [(f64, f64, &str); 2] = [(0.2, 0.9, "red"), (0.8, 0.1, "blue")];

/// Sends `n` unversioned requests (with `variant` pinned if given) and counts the answers
/// per version; every answer must be 200.
async fn versions_answering(
    s: &TestServer,
    model: &str,
    n: usize,
    variant: Option<&str>,
) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        let mut r = s
            .client
            .post(s.url(&format!("/v2/models/{model}/infer")))
            .json(&request(&ROWS));
        if let Some(v) = variant {
            r = r.header("x-bastion-variant", v);
        }
        let resp = r.send().await.expect("infer");
        let st = resp.status();
        let out: Value = resp.json().await.unwrap_or_default();
        assert_eq!(st, StatusCode::OK, "{out}");
        *counts
            .entry(out["model_version"].as_str().unwrap_or("").to_owned())
            .or_insert(0) += 1;
    }
    counts.into_iter().collect()
}

async fn events(s: &TestServer, model: &str) -> Vec<Value> {
    if let Some(e) = &s.models.events {
        e.flush().await;
    }
    let (st, out) = s
        .call(
            reqwest::Method::GET,
            &format!("/api/bastion/v1/inference-events?name={model}&max_results=10000"),
            Value::Null,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{out}");
    out["events"].as_array().cloned().unwrap_or_default()
}

/// Version 1 stable, version 2 a 50% canary judged by `rule`.
async fn stable_and_canary(s: &TestServer, model: &str, rule: Value) {
    ok_deploy(
        s,
        model,
        json!({"change": {"action": "stable", "version": "1"}}),
    )
    .await;
    ok_deploy(
        s,
        model,
        json!({"change": {"action": "canary", "version": "2", "percent": 50}, "rollback": rule}),
    )
    .await;
}

/// Whether the model's canary is gone within `tries` rounds (each sending `load` requests,
/// or waiting 100 ms when `load` is 0).
async fn canary_gone(s: &TestServer, model: &str, tries: usize, load: usize) -> bool {
    for _ in 0..tries {
        if load > 0 {
            versions_answering(s, model, load, None).await;
        }
        if deployment(s, model).await["deployment"]
            .get("canary")
            .is_none()
        {
            return true;
        }
        if load == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    false
}

async fn two_versions(s: &TestServer, model: &str) -> tempfile::TempDir {
    let (dir, _) = register_model(s, model, &[]).await;
    register_model(s, model, &[]).await;
    dir
}

async fn canary_weights_pins_promote_and_rollback(b: Backend) {
    let s = TestServer::start(b).await;
    two_versions(&s, "churn").await;
    // Without a deployment: the latest version.
    assert_eq!(
        versions_answering(&s, "churn", 1, None).await,
        vec![("2".into(), 1)]
    );

    let out = ok_deploy(
        &s,
        "churn",
        json!({"change": {"action": "stable", "version": "1"}}),
    )
    .await;
    assert_eq!(out["revision"], 1);
    let out = ok_deploy(
        &s,
        "churn",
        json!({"change": {"action": "canary", "version": "2", "percent": 20}}),
    )
    .await;
    assert_eq!(out["deployment"]["canary"]["percent"], 20.0);

    // 400 draws at 20%: mean 80, standard deviation 8; 4.5 standard deviations either side.
    let counts = versions_answering(&s, "churn", 400, None).await;
    let canary = counts.iter().find(|(v, _)| v == "2").map_or(0, |c| c.1);
    assert!((44..=116).contains(&canary), "{counts:?}");

    assert_eq!(
        versions_answering(&s, "churn", 5, Some("canary")).await,
        vec![("2".into(), 5)]
    );
    assert_eq!(
        versions_answering(&s, "churn", 5, Some("stable")).await,
        vec![("1".into(), 5)]
    );
    ok_deploy(
        &s,
        "churn",
        json!({"change": {"action": "pin", "label": "blue", "version": "1"}}),
    )
    .await;
    assert_eq!(
        versions_answering(&s, "churn", 5, Some("blue")).await,
        vec![("1".into(), 5)]
    );
    let r = s
        .client
        .post(s.url("/v2/models/churn/infer"))
        .header("x-bastion-variant", "green")
        .json(&request(&ROWS))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let out: Value = r.json().await.unwrap();
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("no variant 'green'"),
        "{out}"
    );
    // A versioned URL is not routed.
    let (st, out) = infer(&s, "/v2/models/churn/versions/2/infer", request(&ROWS)).await;
    assert_eq!(
        (st, out["model_version"].as_str()),
        (StatusCode::OK, Some("2"))
    );

    // Bad changes are refused with the reason and change nothing.
    for (body, status, text) in [
        (
            json!({"change": {"action": "canary", "version": "2", "percent": 120}}),
            StatusCode::BAD_REQUEST,
            "less than 100%",
        ),
        (
            json!({"change": {"action": "stable", "version": "9"}}),
            StatusCode::NOT_FOUND,
            "no version 9",
        ),
        (
            json!({"change": {"action": "promote"}, "expected_revision": 1}),
            StatusCode::CONFLICT,
            "revision 3",
        ),
        (
            json!({"change": {"action": "teleport"}}),
            StatusCode::BAD_REQUEST,
            "deploy request",
        ),
        (
            json!({"change": {"action": "configure"}, "limits": {"concurrency": 0}}),
            StatusCode::BAD_REQUEST,
            "limit of 0",
        ),
    ] {
        let (st, out) = deploy(&s, "churn", body.clone()).await;
        assert_eq!(st, status, "{body}: {out}");
        assert!(
            out["message"].as_str().unwrap_or("").contains(text),
            "{body}: {out}"
        );
    }
    let (st, _) = deploy(
        &s,
        "nope",
        json!({"change": {"action": "stable", "version": "1"}}),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(deployment(&s, "churn").await["revision"], 3);

    let out = v1_post(&s, "deployments/churn/promote").await;
    assert_eq!(out["deployment"]["stable"], "2");
    assert_eq!(
        versions_answering(&s, "churn", 5, None).await,
        vec![("2".into(), 5)]
    );
    let out = v1_post(&s, "deployments/churn/rollback").await;
    assert_eq!(out["deployment"]["stable"], "1");
    assert_eq!(
        versions_answering(&s, "churn", 5, None).await,
        vec![("1".into(), 5)]
    );

    // The refused attempts are audited too, as failures.
    let entries = s.audit_entries().await;
    let failed = entries
        .iter()
        .filter(|e| e.action.starts_with("deployment.") && e.outcome != Outcome::Success)
        .count();
    assert_eq!(failed, 6);
    let actions: Vec<String> = entries
        .into_iter()
        .filter(|e| e.outcome == Outcome::Success)
        .map(|e| e.action)
        .filter(|a| a.starts_with("deployment."))
        .collect();
    assert_eq!(
        actions,
        ["deploy", "deploy", "deploy", "promote", "rollback"].map(|a| format!("deployment.{a}")),
    );

    let ev = events(&s, "churn").await;
    assert!(ev.len() >= 428, "{}", ev.len());
    for route in ["canary", "stable", "pinned", "direct"] {
        assert!(ev.iter().any(|e| e["route"] == route), "no {route} event");
    }
    let e = &ev[0];
    assert_eq!(
        (
            e["status"].as_i64(),
            e["decision"].as_str(),
            e["rows"].as_i64()
        ),
        (Some(200), Some("ok"), Some(2))
    );
    assert_eq!(e["input_digest"].as_str().map(str::len), Some(64));
    assert_eq!(e["outputs"]["labels"].as_array().map(Vec::len), Some(2));
    let text = metrics(&s).await;
    assert!(text.contains(r#"route="canary""#), "{text}");
}

async fn a_failing_or_slow_canary_rolls_back_without_failed_requests(b: Backend) {
    let s = TestServer::start_serving(b, |c| c.recheck = Duration::from_millis(300)).await;
    two_versions(&s, "churn").await;
    stable_and_canary(
        &s,
        "churn",
        json!({"max_error_rate": 0.1, "max_p99_ms": null, "min_requests": 5, "window": 50}),
    )
    .await;
    // The canary breaks: it is quarantined, so it is no longer admitted.
    s.meta
        .quarantine_model_version("churn", "2", "injected failure")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let counts = versions_answering(&s, "churn", 60, None).await;
    assert_eq!(
        counts,
        vec![("1".into(), 60)],
        "the stable version answers for the canary"
    );
    assert!(
        canary_gone(&s, "churn", 50, 0).await,
        "{}",
        deployment(&s, "churn").await
    );
    let entries = s.audit_entries().await;
    let auto = entries
        .iter()
        .find(|e| e.action == "deployment.auto-rollback")
        .expect("an audited automatic rollback");
    assert_eq!(auto.actor, "system:auto-rollback");
    assert_eq!(auto.resource, "registered_model:churn/2");
    assert!(metrics(&s).await.contains("bastion_canary_fallbacks_total"));

    // A canary slower than its bound goes the same way.
    two_versions(&s, "slow").await;
    stable_and_canary(
        &s,
        "slow",
        json!({"max_error_rate": null, "max_p99_ms": 0.000001, "min_requests": 3, "window": 20}),
    )
    .await;
    assert!(
        canary_gone(&s, "slow", 100, 5).await,
        "{}",
        deployment(&s, "slow").await
    );
    assert_eq!(
        versions_answering(&s, "slow", 10, None).await,
        vec![("1".into(), 10)]
    );
}

async fn shadow_traffic_is_compared_and_never_returned(b: Backend) {
    // Metrics are per process, shared by the SQLite and PostgreSQL runs: one name each.
    let m = format!("churn-{b:?}").to_lowercase();
    let s = TestServer::start(b).await;
    two_versions(&s, &m).await;
    ok_deploy(
        &s,
        &m,
        json!({"change": {"action": "stable", "version": "1"}}),
    )
    .await;
    let (st, out) = deploy(&s, &m, json!({"change": {"action": "clear_shadow"}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{out}");
    ok_deploy(
        &s,
        &m,
        json!({"change": {"action": "shadow", "version": "2"}}),
    )
    .await;
    assert_eq!(
        versions_answering(&s, &m, 20, None).await,
        vec![("1".into(), 20)]
    );
    // Shadow answers are recorded in the background.
    let mut shadows = Vec::new();
    for _ in 0..50 {
        shadows = events(&s, &m)
            .await
            .into_iter()
            .filter(|e| e["route"] == "shadow")
            .collect();
        if shadows.len() == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(shadows.len(), 20);
    assert!(
        shadows
            .iter()
            .all(|e| e["version"] == "2" && e["outputs"]["agreement"] == 1.0)
    );
    let want =
        format!(r#"bastion_shadow_comparisons_total{{model="{m}",version="2",result="agree"}} 20"#);
    assert!(metrics(&s).await.contains(&want), "{want}");
    ok_deploy(&s, &m, json!({"change": {"action": "clear_shadow"}})).await;
}

async fn per_model_rate_and_concurrency_limits(b: Backend) {
    let s = TestServer::start(b).await;
    register_model(&s, "churn", &[]).await;
    ok_deploy(
        &s,
        "churn",
        json!({
            "change": {"action": "stable", "version": "1"},
            "limits": {"rate": 2, "rate_per_caller": null, "burst": 3, "concurrency": null}
        }),
    )
    .await;
    let mut limited = 0;
    for _ in 0..10 {
        let (st, out) = infer(&s, "/v2/models/churn/infer", request(&ROWS)).await;
        if st == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
            assert!(
                out["error"].as_str().unwrap().contains("rate limit"),
                "{out}"
            );
        } else {
            assert_eq!(st, StatusCode::OK, "{out}");
        }
    }
    assert!(limited >= 5, "{limited} of 10 limited");
    assert!(
        events(&s, "churn")
            .await
            .iter()
            .any(|e| e["decision"] == "limited" && e["status"] == 429)
    );

    // One request at a time: concurrent large requests are refused, not queued.
    ok_deploy(
        &s,
        "churn",
        json!({
            "change": {"action": "configure"},
            "limits": {"rate": null, "rate_per_caller": null, "burst": null, "concurrency": 1}
        }),
    )
    .await;
    let big: Vec<(f64, f64, &str)> = (0..20_000)
        .map(|i| ((i % 10) as f64 / 10.0, 0.5, "red"))
        .collect();
    let body = request(&big);
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (client, url, body) = (
            s.client.clone(),
            s.url("/v2/models/churn/infer"),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status())
                .ok()
        }));
    }
    // A refused request's body is not read: the client may see the 429 or the connection
    // closed before it finished sending.
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert!(statuses.contains(&Some(StatusCode::OK)), "{statuses:?}");
    assert!(
        statuses.iter().any(|s| *s != Some(StatusCode::OK)),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| matches!(
            *s,
            None | Some(StatusCode::OK | StatusCode::TOO_MANY_REQUESTS)
        )),
        "{statuses:?}"
    );
    assert!(
        metrics(&s)
            .await
            .contains("bastion_inference_limited_total"),
        "the refusals are counted"
    );
}

/// The training data of `register_model` as CSV.
async fn guards_compare_inputs_with_the_training_data(b: Backend) {
    // Metrics are per process, shared by the SQLite and PostgreSQL runs: one name each.
    let m = format!("churn-{b:?}").to_lowercase();
    let url = format!("/v2/models/{m}/infer");
    let s = TestServer::start(b).await;
    register_model(&s, &m, &[]).await;
    let r = s
        .client
        .post(s.url("/api/bastion/v1/datasets/churn-train/versions?filename=train.csv"))
        .body(training_csv())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let guards = |range: &str, ood: &str| {
        json!({"range": range, "nan": "reject", "category": "reject", "ood": ood,
               "ood_quantile": 0.999, "ood_threshold": null, "range_margin": 0.0,
               "reference": "churn-train@v1"})
    };
    let (st, out) = deploy(
        &s,
        &m,
        json!({"change": {"action": "stable", "version": "1"},
               "guards": {"reference": "nothing@v1"}}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{out}");
    ok_deploy(
        &s,
        &m,
        json!({"change": {"action": "stable", "version": "1"}, "guards": guards("reject", "log")}),
    )
    .await;
    let (st, out) = infer(&s, &url, request(&ROWS)).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    assert!(
        out.get("parameters")
            .is_none_or(|p| p.get("bastion_guard").is_none()),
        "{out}"
    );
    let (st, out) = infer(&s, &url, request(&[(0.5, 0.5, "red"), (5.0, 0.5, "red")])).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{out}");
    let e = out["error"].as_str().unwrap();
    assert!(
        e.contains("input 'a' row 1: 5 is outside the training range [0, 0.94"),
        "{e}"
    );
    let (st, out) = infer(&s, &url, request(&[(0.5, 0.5, "purple")])).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{out}");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("'purple' is not a category seen in training"),
        "{out}"
    );

    // Flag: answered, with what was noticed.
    ok_deploy(
        &s,
        &m,
        json!({"change": {"action": "configure"}, "guards": guards("flag", "flag")}),
    )
    .await;
    let (st, out) = infer(&s, &url, request(&[(5.0, 0.5, "red")])).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    let noticed: Value =
        serde_json::from_str(out["parameters"]["bastion_guard"].as_str().unwrap()).unwrap();
    assert_eq!(noticed["counts"]["range"], 1, "{noticed}");
    assert_eq!(noticed["flags"][0]["input"], "a");
    assert!(
        out["parameters"]["bastion_ood_score"].as_f64().unwrap() > 1.0,
        "{out}"
    );

    // Clip: the value is clamped into the range, so the answer equals the one at the bound.
    ok_deploy(
        &s,
        &m,
        json!({"change": {"action": "configure"}, "guards": guards("clip", "log")}),
    )
    .await;
    let (_, clipped) = infer(&s, &url, request(&[(5.0, 0.5, "red")])).await;
    let (_, bound) = infer(&s, &url, request(&[(16.0 / 17.0, 0.5, "red")])).await;
    assert_eq!(
        clipped["outputs"][1]["data"], bound["outputs"][1]["data"],
        "{clipped} {bound}"
    );

    // Out of distribution, within every range: a and b are independent in training, so
    // the corner (max, max) alone is not far; far beyond both is.
    ok_deploy(
        &s,
        &m,
        json!({"change": {"action": "configure"}, "guards": guards("log", "reject")}),
    )
    .await;
    let (st, out) = infer(&s, &url, request(&[(0.5, 0.5, "red")])).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    let (st, out) = infer(&s, &url, request(&[(3.0, 3.0, "red")])).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{out}");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("out of distribution"),
        "{out}"
    );

    let ev = events(&s, &m).await;
    for d in ["ok", "rejected", "flagged"] {
        assert!(ev.iter().any(|e| e["decision"] == d), "no {d} event");
    }
    let text = metrics(&s).await;
    for want in [
        r#"guard="range",action="reject"} 1"#,
        r#"guard="category",action="reject"} 1"#,
        r#"guard="ood",action="reject"} 1"#,
        r#"guard="range",action="flag"} 1"#,
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
}

async fn micro_batching_and_hot_swap_under_load(b: Backend) {
    // Every request keeps its rows in its event, batched or not.
    let s = Arc::new(TestServer::start_serving(b, |c| c.event_sample = 1.0).await);
    let dir = two_versions(&s, "churn").await;
    ok_deploy(
        &s,
        "churn",
        json!({"change": {"action": "stable", "version": "1"},
               "batching": {"max_batch": 64, "max_wait_us": 5000}}),
    )
    .await;
    let want = local_probabilities(dir.path(), &ROWS);
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            infer(&s, "/v2/models/churn/infer", request(&ROWS)).await
        }));
    }
    for t in tasks {
        let (st, out) = t.await.unwrap();
        assert_eq!(st, StatusCode::OK, "{out}");
        let got: Vec<f64> = out["outputs"][1]["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
        }
    }
    let text = metrics(&s).await;
    assert!(text.contains("bastion_inference_batch_rows"), "{text}");
    let ev = events(&s, "churn").await;
    assert_eq!(ev.len(), 40);
    for e in &ev {
        assert_eq!(e["rows"], 2, "{e}");
        assert_eq!(e["features"]["a"], json!([0.2, 0.8]), "{e}");
        assert_eq!(
            e["outputs"]["labels"].as_array().map(Vec::len),
            Some(2),
            "{e}"
        );
    }

    // Hot swap: clients keep sending while the stable version changes back and forth.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (s, stop, failed, seen) = (s.clone(), stop.clone(), failed.clone(), seen.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Acquire) {
                let (st, out) = infer(&s, "/v2/models/churn/infer", request(&ROWS)).await;
                if st != StatusCode::OK {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("failed during swap: {st} {out}");
                }
                if let Some(v) = out["model_version"].as_str() {
                    seen.lock().unwrap().insert(v.to_owned());
                }
                n += 1;
            }
            n
        }));
    }
    for change in [
        json!({"change": {"action": "stable", "version": "2"}}),
        json!({"change": {"action": "rollback"}}),
        json!({"change": {"action": "stable", "version": "2"}}),
    ] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ok_deploy(&s, "churn", change).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Release);
    let mut total = 0;
    for c in clients {
        total += c.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "of {total} requests");
    assert!(total > 20, "{total}");
    assert_eq!(
        seen.lock().unwrap().iter().cloned().collect::<Vec<_>>(),
        vec!["1".to_owned(), "2".to_owned()]
    );
}

async fn a_stalled_body_times_out_and_frees_its_place(b: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start_with(b, |c| c.infer_body_timeout = Duration::from_millis(400)).await;
    register_model(&s, "churn", &[]).await;
    ok_deploy(
        &s,
        "churn",
        json!({"change": {"action": "stable", "version": "1"},
               "limits": {"rate": null, "rate_per_caller": null, "burst": null, "concurrency": 1}}),
    )
    .await;
    // Headers and the start of a body, then nothing.
    let mut slow = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /v2/models/churn/infer HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"inputs\"",
        s.addr
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // While it stalls, it holds the model's one place.
    let (st, out) = infer(&s, "/v2/models/churn/infer", request(&ROWS)).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{out}");
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut answer))
        .await
        .expect("an answer, not a hang")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("did not arrive within 0.4 s"), "{text}");
    // The place is free again.
    let (st, out) = infer(&s, "/v2/models/churn/infer", request(&ROWS)).await;
    assert_eq!(st, StatusCode::OK, "{out}");
}
