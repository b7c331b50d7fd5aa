//! The monitor end to end, against a running server on both databases: live traffic that
//! drifts from a version's training data opens an incident, posts a signed webhook and
//! rolls the deployment back (the previous version then answers); incidents are
//! acknowledged and resolved through the API; responders block and throttle a caller; and
//! workers sharing a consumer name judge each event once, across restarts.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use bastion_monitor::AlertRules;
use bastion_store::meta::AlertDraft;
use bastion_watch::respond::{SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};
use bastion_watch::{Events, NatsEvents, Responder, StoreEvents, Worker};
use common::served::{Training, data, infer, register_trained_model, training_csv};
use common::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

backend_tests!(
    drift_on_a_new_version_rolls_it_back_with_a_signed_webhook,
    responders_block_and_throttle_a_caller,
    labels_sent_back_measure_accuracy_and_confidence_estimates_it,
    a_served_file_changed_while_serving_is_caught_and_quarantined,
    workers_sharing_a_consumer_judge_each_event_once,
    a_worker_killed_mid_stream_on_nats_loses_and_repeats_nothing,
    a_lease_lets_one_worker_read_and_passes_on_when_it_lapses,
    refused_logins_to_a_model_reach_the_abuse_detector
);

const KEY: &[u8] = b"webhook-test-key";

/// An alert for every window of 20 rows: the alerts count the windows judged.
const TRAFFIC_RULES: &str = r#"
[window]
size = 20

[[alert]]
name = "traffic"
when = "requests >= 1"
cooldown = "0s"
"#;

type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A webhook receiver on a free port: what it received, and its URL.
async fn receiver() -> (Received, String) {
    let got: Received = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let keep = keep.clone();
            async move {
                if let Ok(mut g) = keep.lock() {
                    g.push((headers, body));
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (got, format!("http://{addr}/hook"))
}

/// A server keeping every request's rows, with `model` registered twice (versions 1 and 2),
/// both trained on dataset `mon-train@v1`.
async fn setup(b: Backend, model: &str) -> TestServer {
    let s = TestServer::start_serving(b, |c| {
        c.event_sample = 1.0;
        c.recheck = std::time::Duration::from_millis(100);
    })
    .await;
    setup_models(&s, model).await;
    s
}

/// `model` registered twice (versions 1 and 2), both trained on dataset `mon-train@v1`.
async fn setup_models(s: &TestServer, model: &str) {
    let r = s
        .client
        .post(s.url("/api/bastion/v1/datasets/mon-train/versions?filename=train.csv"))
        .body(training_csv())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for _ in 0..2 {
        let training = Training {
            dataset: Some("mon-train@v1".into()),
            target: Some("y".into()),
            ..Training::default()
        };
        register_trained_model(s, model, &[], training).await;
    }
}

async fn deploy(s: &TestServer, model: &str, change: Value) -> Value {
    let r = s
        .client
        .post(s.url(&format!("/api/bastion/v1/deployments/{model}")))
        .json(&json!({ "change": change }))
        .send()
        .await
        .unwrap();
    let st = r.status();
    let out: Value = r.json().await.unwrap_or_default();
    assert_eq!(st, StatusCode::OK, "{out}");
    out
}

/// Two rows from the training distribution (rows `i`, `i + 1` of it), `a` moved by `shift`.
fn rows(i: usize, shift: f64) -> Value {
    let t = data(i + 2);
    let num = |c: usize, r: usize| match &t.columns[c] {
        bastion_ml::predictor::ColumnData::Numeric(v) => v[r].unwrap_or(0.0),
        _ => 0.0,
    };
    let text = |r: usize| match &t.columns[2] {
        bastion_ml::predictor::ColumnData::Text(v) => v[r].clone().unwrap_or_default(),
        _ => String::new(),
    };
    json!({
        "inputs": [
            {"name": "a", "shape": [2], "datatype": "FP64", "data": [num(0, i) + shift, num(0, i + 1) + shift]},
            {"name": "b", "shape": [2], "datatype": "FP64", "data": [num(1, i), num(1, i + 1)]},
            {"name": "colour", "shape": [2], "datatype": "BYTES", "data": [text(i), text(i + 1)]},
        ]
    })
}

async fn send(s: &TestServer, model: &str, requests: std::ops::Range<usize>, shift: f64) {
    for k in requests {
        let (st, out) = infer(
            s,
            &format!("/v2/models/{model}/infer"),
            rows(2 * k % 290, shift),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{out}");
    }
    if let Some(e) = &s.models.events {
        e.flush().await;
    }
}

async fn worker(s: &TestServer, consumer: &str, rules: &str) -> Worker<StoreEvents> {
    let rules = AlertRules::parse(rules).unwrap();
    let responder = Responder::new(s.meta.clone(), s.models.clone(), rules.respond.clone())
        .with_webhook_key(KEY);
    let source = StoreEvents::new(s.meta.clone(), 0);
    Worker::start(
        s.meta.clone(),
        s.models.clone(),
        source,
        consumer,
        rules,
        responder,
    )
    .await
    .unwrap()
    .with_batch(25)
}

/// Steps until the stream is judged; returns the alerts raised.
async fn drain(w: &mut Worker<StoreEvents>) -> usize {
    let mut alerts = 0;
    loop {
        let step = w.step(bastion_core::time::now_ms()).await.unwrap();
        alerts += step.alerts;
        if step.events == 0 {
            return alerts;
        }
    }
}

/// A `/api/bastion/v1` call (`path` with its query) and its answer.
async fn v1(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    s.call(method, &format!("/api/bastion/v1/{path}"), body)
        .await
}

async fn v1_ok(s: &TestServer, method: reqwest::Method, path: &str, body: Value) -> Value {
    let (st, out) = v1(s, method, path, body).await;
    assert_eq!(st, StatusCode::OK, "{path}: {out}");
    out
}

async fn answering_version(s: &TestServer, model: &str) -> String {
    let (st, out) = infer(s, &format!("/v2/models/{model}/infer"), rows(0, 0.0)).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    out["model_version"].as_str().unwrap_or("").to_owned()
}

async fn drift_on_a_new_version_rolls_it_back_with_a_signed_webhook(b: Backend) {
    let m = "mon-drift";
    let s = setup(b, m).await;
    let (got, url) = receiver().await;
    deploy(&s, m, json!({"action": "stable", "version": "1"})).await;
    deploy(&s, m, json!({"action": "stable", "version": "2"})).await;
    assert_eq!(answering_version(&s, m).await, "2");
    let rules = format!(
        r#"
[window]
size = 40

[[alert]]
name = "feature drift"
when = "drift.dataset = true"
for = 2
severity = "high"
respond = ["log", "webhook", "rollback"]

[[alert]]
name = "errors"
when = "error.rate > 0.5"

[respond]
webhook = "{url}"
"#
    );
    let mut w = worker(&s, "test", &rules).await;
    // Two windows like the training data (the probe above is one more request): no alert.
    send(&s, m, 0..39, 0.0).await;
    assert_eq!(drain(&mut w).await, 0);
    assert!(
        s.meta
            .list_incidents(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    // `a` moves by 3 (its training range is [0, 1)): the second drifted window alerts, and
    // the cool-down keeps the next two quiet.
    send(&s, m, 39..120, 3.0).await;
    assert_eq!(drain(&mut w).await, 1);

    let incidents = s.meta.list_incidents(&Default::default()).await.unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let i = &incidents[0];
    assert_eq!(
        (
            i.rule.as_str(),
            i.version.as_str(),
            i.severity.as_str(),
            i.status.as_str()
        ),
        ("feature drift", "2", "HIGH", "open")
    );
    assert_eq!(i.key, format!("feature drift/{m}/2"));
    let window = &i.evidence["window"];
    assert_eq!(window["drift"]["dataset_drift"], json!(true), "{window}");
    let drifted: Vec<&str> = window["drift"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["drift"] == json!(true))
        .filter_map(|c| c["column"].as_str())
        .collect();
    assert_eq!(drifted, vec!["a"], "{window}");
    assert_eq!(i.evidence["reference"], json!("mon-train@v1"));

    // Each closed window (40 rows, 20 requests) is kept for the dashboard, in order: the
    // first two without drift in `a`, the shifted ones with it, each with its score.
    let kept = s.meta.monitor_windows(m, "window", 100).await.unwrap();
    assert_eq!(kept.len(), 6, "{kept:?}");
    assert!(kept.windows(2).all(|w| w[0].end_ms <= w[1].end_ms));
    let a_drift: Vec<bool> = kept
        .iter()
        .map(|w| w.report["features"]["a"]["drift"] == json!(true))
        .collect();
    assert_eq!(
        a_drift,
        vec![false, false, true, true, true, true],
        "{kept:?}"
    );
    assert!(kept[2].report["features"]["a"]["score"].is_number());
    assert_eq!(kept[0].report["requests"], json!(20));
    assert_eq!(
        s.meta.monitor_windows(m, "window", 2).await.unwrap(),
        kept[4..]
    );

    // Every response was carried out and recorded.
    let (_, responses) = s.meta.get_incident(i.id).await.unwrap();
    let done: Vec<(&str, &str)> = responses
        .iter()
        .map(|r| (r.response.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(
        done,
        vec![("log", "done"), ("webhook", "done"), ("rollback", "done")],
        "{responses:?}"
    );
    assert!(
        responses[2].detail.contains("now serves version 1"),
        "{responses:?}"
    );
    // The rollback is real: version 1 answers again.
    assert_eq!(answering_version(&s, m).await, "1");

    // One signed webhook, verifiable with the key over `timestamp.body`.
    let hooks = got.lock().unwrap().clone();
    assert_eq!(hooks.len(), 1);
    let (headers, body) = &hooks[0];
    let ts = headers[TIMESTAMP_HEADER].to_str().unwrap();
    assert_eq!(
        headers[SIGNATURE_HEADER].to_str().unwrap(),
        signature(KEY, ts, body)
    );
    assert_ne!(
        headers[SIGNATURE_HEADER].to_str().unwrap(),
        signature(b"wrong", ts, body)
    );
    let posted: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(posted["incident"]["id"], json!(i.id));
    assert_eq!(posted["incident"]["rule"], json!("feature drift"));

    // The alert and each response are in the audit log, as the monitor.
    let entries = s.audit_entries().await;
    let by_monitor: Vec<&str> = entries
        .iter()
        .filter(|e| e.actor == "system:monitor")
        .map(|e| e.action.as_str())
        .collect();
    for action in [
        "monitor.alert",
        "monitor.respond.log",
        "monitor.respond.webhook",
        "deployment.rollback",
        "monitor.respond.rollback",
    ] {
        assert!(by_monitor.contains(&action), "{action}: {by_monitor:?}");
    }

    // Through the API: listed, acknowledged once, resolved once.
    use reqwest::Method;
    let listed = v1_ok(&s, Method::GET, "incidents?status=open", Value::Null).await;
    assert_eq!(listed["incidents"][0]["id"], json!(i.id), "{listed}");
    let one = format!("deployments/{m}/incidents/{}", i.id);
    let shown = v1_ok(&s, Method::GET, &one, Value::Null).await;
    assert_eq!(shown["responses"].as_array().map(Vec::len), Some(3));
    let (st, _) = v1(
        &s,
        Method::GET,
        &format!("deployments/other/incidents/{}", i.id),
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let acked = v1_ok(
        &s,
        Method::POST,
        &format!("{one}/acknowledge"),
        json!({"note": "looking"}),
    )
    .await;
    assert_eq!(acked["incident"]["status"], json!("acknowledged"));
    assert_eq!(acked["incident"]["note"], json!("looking"));
    let (st, out) = v1(&s, Method::POST, &format!("{one}/acknowledge"), json!({})).await;
    assert!(st.is_client_error(), "{st} {out}");
    assert!(
        out.to_string().contains("cannot become acknowledged"),
        "{out}"
    );
    let resolved = v1_ok(&s, Method::POST, &format!("{one}/resolve"), json!({})).await;
    assert_eq!(resolved["incident"]["status"], json!("resolved"));
    let (st, _) = v1(&s, Method::GET, "incidents?status=closed", Value::Null).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // A rollback for a version no longer in service does nothing, and says so.
    let again = AlertDraft {
        key: format!("feature drift/{m}/2"),
        rule: "feature drift".into(),
        severity: "HIGH".into(),
        model_name: m.into(),
        version: "2".into(),
        actor: String::new(),
        time_ms: 0,
        evidence: json!({}),
        responses: vec!["rollback".into(), "block_actor".into()],
    };
    let position = w.position();
    let opened = s
        .meta
        .commit_monitor("manual", 0, position, &json!({}), &[again], &[])
        .await
        .unwrap();
    // The first incident is resolved, so the same key opens a new one.
    assert_ne!(opened[0].0.id, i.id);
    let responder = Responder::new(s.meta.clone(), s.models.clone(), Default::default());
    assert_eq!(responder.carry_out_pending().await.unwrap(), 2);
    let (_, responses) = s.meta.get_incident(opened[0].0.id).await.unwrap();
    assert_eq!(responses[0].status, "skipped", "{responses:?}");
    assert!(
        responses[0].detail.contains("nothing to roll back"),
        "{responses:?}"
    );
    assert_eq!(responses[1].status, "skipped", "{responses:?}");
    assert!(
        responses[1].detail.contains("no one to restrict"),
        "{responses:?}"
    );
    assert_eq!(answering_version(&s, m).await, "1");
}

async fn responders_block_and_throttle_a_caller(b: Backend) {
    let m = "mon-block";
    let s = setup(b, m).await;
    deploy(&s, m, json!({"action": "stable", "version": "1"})).await;
    let actor = "anonymous (insecure mode)";
    let alert = |response: &str| AlertDraft {
        key: format!("probing/{m}/1/{actor}"),
        rule: "probing".into(),
        severity: "HIGH".into(),
        model_name: m.into(),
        version: "1".into(),
        actor: actor.into(),
        time_ms: 1,
        evidence: json!({"score": 0.99}),
        responses: vec![response.into()],
    };
    let settings = bastion_monitor::RespondSettings {
        restrict_for_ms: Some(3_600_000),
        ..Default::default()
    };
    let responder = Responder::new(s.meta.clone(), s.models.clone(), settings);
    s.meta
        .commit_monitor("manual", 0, 1, &json!({}), &[alert("block_actor")], &[])
        .await
        .unwrap();
    assert_eq!(responder.carry_out_pending().await.unwrap(), 1);
    let (st, out) = infer(&s, &format!("/v2/models/{m}/infer"), rows(0, 0.0)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{out}");
    assert!(out.to_string().contains("is blocked on model"), "{out}");
    let shown = v1_ok(
        &s,
        reqwest::Method::GET,
        &format!("deployments/{m}"),
        Value::Null,
    )
    .await;
    let restriction = &shown["deployment"]["restricted"][actor];
    assert!(
        restriction["reason"].as_str().unwrap().contains("probing"),
        "{shown}"
    );
    assert!(restriction.get("rate").is_none(), "{shown}");
    if let Some(e) = &s.models.events {
        e.flush().await;
    }
    let events = v1_ok(
        &s,
        reqwest::Method::GET,
        &format!("inference-events?name={m}&max_results=100"),
        Value::Null,
    )
    .await;
    let last = events["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["status"].clone(), last["decision"].clone()),
        (json!(403), json!("blocked"))
    );

    // Lifted by a person: served again.
    deploy(&s, m, json!({"action": "lift", "actor": actor})).await;
    let (st, out) = infer(&s, &format!("/v2/models/{m}/infer"), rows(0, 0.0)).await;
    assert_eq!(st, StatusCode::OK, "{out}");

    // Throttled: one request per second passes, the next at once is refused.
    s.meta
        .commit_monitor("manual", 1, 2, &json!({}), &[alert("throttle_actor")], &[])
        .await
        .unwrap();
    assert_eq!(responder.carry_out_pending().await.unwrap(), 1);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (st, _) = infer(&s, &format!("/v2/models/{m}/infer"), rows(0, 0.0)).await;
        statuses.push(st);
    }
    assert_eq!(statuses[0], StatusCode::OK, "{statuses:?}");
    assert!(
        statuses[1..].contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );

    // Both alerts joined one incident (same key), with both responses recorded.
    let incidents = s.meta.list_incidents(&Default::default()).await.unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].alerts, 2);
    let (_, responses) = s.meta.get_incident(incidents[0].id).await.unwrap();
    let statuses: Vec<&str> = responses.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(statuses, vec!["done", "done"], "{responses:?}");
    // A moved cursor refuses a stale commit.
    let e = s
        .meta
        .commit_monitor("manual", 1, 3, &json!({}), &[], &[])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("another worker committed"), "{e}");
}

async fn workers_sharing_a_consumer_judge_each_event_once(b: Backend) {
    let m = "mon-share";
    let s = setup(b, m).await;
    deploy(&s, m, json!({"action": "stable", "version": "1"})).await;
    let rules = TRAFFIC_RULES;
    let mut a = worker(&s, "shared", rules).await;
    let mut b2 = worker(&s, "shared", rules).await;
    send(&s, m, 0..100, 0.0).await;
    // Alternate steps: whichever commits second finds the cursor moved, reloads and goes on
    // from there.
    let mut alerts = 0;
    let mut reloads = 0;
    for _ in 0..40 {
        for w in [&mut a, &mut b2] {
            let step = w.step(bastion_core::time::now_ms()).await.unwrap();
            alerts += step.alerts;
            reloads += usize::from(step.reloaded);
        }
    }
    // 100 requests of 2 rows: ten windows of 20 rows, one alert each, none twice.
    assert_eq!(alerts, 10);
    assert!(reloads > 0);
    let incident = &s.meta.list_incidents(&Default::default()).await.unwrap()[0];
    assert_eq!(incident.alerts, 10);

    // A restarted worker goes on from the saved position and the open window.
    send(&s, m, 100..105, 0.0).await;
    drop(a);
    let mut c = worker(&s, "shared", rules).await;
    assert_eq!(drain(&mut c).await, 0);
    assert_eq!(c.buffered(), 5);
    drop(c);
    send(&s, m, 105..110, 0.0).await;
    let mut d = worker(&s, "shared", rules).await;
    assert_eq!(drain(&mut d).await, 1);
    assert_eq!(d.buffered(), 0);
}

/// Events published to NATS by the server; two workers of one consumer group read them
/// through the durable consumer. The reading one is killed (its task aborted, wherever it
/// was) mid-stream; the other takes the lease when it lapses, gets back what the dead one
/// had fetched but not committed, and the verdicts count every event exactly once.
async fn a_worker_killed_mid_stream_on_nats_loses_and_repeats_nothing(b: Backend) {
    let Some(nats) = bastion_nats::test_server::NatsServer::start() else {
        return;
    };
    let settings = bastion_nats::NatsSettings {
        ack_wait: std::time::Duration::from_millis(700),
        ..nats.settings()
    };
    let publisher = Arc::new(
        bastion_nats::EventPublisher::connect(&settings)
            .await
            .unwrap(),
    );
    let m = "mon-nats";
    let s = TestServer::start_serving(b, |c| {
        c.event_sample = 1.0;
        c.publisher = Some(publisher);
    })
    .await;
    setup_models(&s, m).await;
    deploy(&s, m, json!({"action": "stable", "version": "1"})).await;
    let rules = TRAFFIC_RULES;
    let nats_worker = |holder: &'static str| {
        let (s, settings) = (&s, &settings);
        async move {
            let consumer = bastion_nats::EventConsumer::join(settings, "group", 0)
                .await
                .unwrap();
            let rules = AlertRules::parse(rules).unwrap();
            let responder = Responder::new(s.meta.clone(), s.models.clone(), rules.respond.clone());
            Worker::start(
                s.meta.clone(),
                s.models.clone(),
                Events::Nats(Box::new(NatsEvents { consumer })),
                "group",
                rules,
                responder,
            )
            .await
            .unwrap()
            .with_batch(7)
            .with_lease(holder, std::time::Duration::from_millis(600))
        }
    };
    let a = nats_worker("a").await;
    let killed = tokio::spawn(a.run(std::time::Duration::from_millis(20), std::future::pending()));
    // 150 requests of two rows: fifteen windows of 20 rows.
    send(&s, m, 0..150, 0.0).await;
    let mut at = 0;
    for _ in 0..500 {
        at = s
            .meta
            .monitor_cursor("group")
            .await
            .unwrap()
            .map_or(0, |c| c.after_id);
        if at >= 40 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(at >= 40, "worker a did not get going: at {at}");
    killed.abort();
    assert!(killed.await.unwrap_err().is_cancelled());

    let mut b2 = nats_worker("b").await;
    let started = std::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "worker b stuck at {} of 150",
            b2.position()
        );
        let now = bastion_core::time::now_ms();
        if b2.acquire_lease(now).await.unwrap() {
            b2.step(now).await.unwrap();
            if b2.position() == 150 {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Every event judged once: fifteen full windows, nothing left over, one alert each.
    assert_eq!(b2.buffered(), 0);
    let incidents = s.meta.list_incidents(&Default::default()).await.unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0].alerts, 15);
    // The store has every event too, for labels to join.
    let stored = s
        .meta
        .inference_events(&bastion_store::meta::EventQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 150);
    // A consumer's position counts in one stream: the table source refuses it.
    let rules = AlertRules::parse(rules).unwrap();
    let responder = Responder::new(s.meta.clone(), s.models.clone(), rules.respond.clone());
    let store = Events::Store(StoreEvents::new(s.meta.clone(), 0));
    let e = Worker::start(
        s.meta.clone(),
        s.models.clone(),
        store,
        "group",
        rules,
        responder,
    )
    .await
    .err()
    .unwrap();
    let expected = format!("has a position in nats:{} events", settings.stream);
    assert!(e.to_string().contains(&expected), "{e}");
}

/// Only the lease holder reads; a second worker waits, takes over once the first gives the
/// lease up (or lets it lapse), and goes on from the first one's commit.
async fn a_lease_lets_one_worker_read_and_passes_on_when_it_lapses(b: Backend) {
    let m = "mon-lease";
    let s = setup(b, m).await;
    deploy(&s, m, json!({"action": "stable", "version": "1"})).await;
    let rules = "[window]\nsize = 10\n\n[[alert]]\nname = \"t\"\nwhen = \"requests >= 1\"\n";
    let ttl = std::time::Duration::from_millis(300);
    let mut a = worker(&s, "leased", rules).await.with_lease("a", ttl);
    let mut b2 = worker(&s, "leased", rules).await.with_lease("b", ttl);
    let now = bastion_core::time::now_ms();
    assert!(a.acquire_lease(now).await.unwrap());
    assert!(!b2.acquire_lease(now).await.unwrap());
    send(&s, m, 0..10, 0.0).await;
    drain(&mut a).await;
    assert_eq!(a.position(), 10);
    // Renewed while a third is left, so still a's well after the first grant.
    assert!(a.acquire_lease(now + 250).await.unwrap());
    assert!(!b2.acquire_lease(now + 300).await.unwrap());
    // a stops renewing: b takes the lease when it lapses and reloads a's position.
    assert!(b2.acquire_lease(now + 600).await.unwrap());
    assert_eq!(b2.position(), 10);
    assert!(!a.acquire_lease(now + 600).await.unwrap());
    // Given up on purpose, the lease passes at once.
    b2.stop().await;
    assert!(a.acquire_lease(now + 650).await.unwrap());
    assert_eq!(a.position(), 10);
}

/// Calls to a model's `infer` refused for bad credentials reach the monitor as events of
/// that model (no version, the claimed identity as the caller), and the abuse detector's
/// count of them raises the alert.
async fn refused_logins_to_a_model_reach_the_abuse_detector(b: Backend) {
    let s = TestServer::start_secure(b, |_| {}, None).await;
    let token = format!("bst_{:012x}_{}", 7, "A".repeat(43));
    for _ in 0..50 {
        let r = s
            .client
            .post(s.url("/v2/models/fraud/infer"))
            .bearer_auth(&token)
            .json(&json!({"inputs": []}))
            .send()
            .await
            .unwrap();
        assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&r.status()),
            "{}",
            r.status()
        );
    }
    if let Some(e) = &s.models.events {
        e.flush().await;
    }
    let events = s
        .meta
        .inference_events(&bastion_store::meta::EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 50);
    let actor = events[0].actor.clone();
    assert!(actor.contains("000000000007"), "{actor}");
    for e in &events {
        assert_eq!((e.model_name.as_str(), e.version.as_str()), ("fraud", ""));
        assert!(
            ["unauthenticated", "auth-locked"].contains(&e.decision.as_str()),
            "{e:?}"
        );
        assert_eq!(e.actor, actor);
    }
    let rules = r#"
[[alert]]
name = "guessing"
when = "abuse.auth_failures >= 50"
"#;
    let mut w = worker(&s, "abuse", rules).await;
    assert_eq!(drain(&mut w).await, 1);
    let incident = &s.meta.list_incidents(&Default::default()).await.unwrap()[0];
    assert_eq!(
        (incident.rule.as_str(), incident.actor.as_str()),
        ("guessing", actor.as_str())
    );
}

/// One request of two training rows (`i`, `i + 1`) under the request id `id`; returns the
/// true labels of its rows.
async fn labelled_request(s: &TestServer, model: &str, id: &str, i: usize) -> Vec<String> {
    let r = s
        .client
        .post(s.url(&format!("/v2/models/{model}/infer")))
        .header("x-request-id", id)
        .json(&rows(i, 0.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-request-id"], id);
    let t = data(i + 2);
    match &t.columns[3] {
        bastion_ml::predictor::ColumnData::Text(v) => v[i..i + 2]
            .iter()
            .map(|y| y.clone().unwrap_or_default())
            .collect(),
        _ => Vec::new(),
    }
}

async fn feedback(s: &TestServer, body: Value) -> (StatusCode, Value) {
    s.call(reqwest::Method::POST, "/api/bastion/feedback", body)
        .await
}

async fn labels_sent_back_measure_accuracy_and_confidence_estimates_it(b: Backend) {
    let m = "mon-labels";
    let s = setup(b, m).await;
    deploy(&s, m, json!({"action": "stable", "version": "1"})).await;
    let rules = r#"
[window]
size = 40

[performance]
window = 20

[[alert]]
name = "accuracy"
when = "performance.accuracy < 0.5"
severity = "high"

[[alert]]
name = "estimate"
when = "performance.estimated_accuracy > 0"
severity = "info"
"#;
    let mut w = worker(&s, "labels", rules).await.with_label_settle(0);
    let mut truth = Vec::new();
    for k in 0..20 {
        truth.push(labelled_request(&s, m, &format!("fb-{k}"), 2 * k).await);
    }
    if let Some(e) = &s.models.events {
        e.flush().await;
    }
    // The first ten requests' labels are the truth; the next ten are wrong on purpose
    // (the world changed): accuracy falls and the rule fires on that window only.
    let item = |k: usize, flip: bool| {
        let labels: Vec<&str> = truth[k]
            .iter()
            .map(|y| match (y.as_str(), flip) {
                ("yes", true) => "no",
                ("no", true) => "yes",
                (y, _) => y,
            })
            .collect();
        json!({"request_id": format!("fb-{k}"), "labels": labels})
    };
    let first: Vec<Value> = (0..10).map(|k| item(k, false)).collect();
    let (st, out) = feedback(&s, json!({"model": m, "feedback": first})).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    assert_eq!(out, json!({"stored": 20, "duplicates": 0, "unmatched": []}));
    let mut second: Vec<Value> = (10..20).map(|k| item(k, true)).collect();
    second.push(json!({"request_id": "never-sent", "label": "yes"}));
    second.push(item(0, true));
    let (st, out) = feedback(&s, json!({"model": m, "feedback": second})).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    assert_eq!(
        out,
        json!({"stored": 20, "duplicates": 2, "unmatched": ["never-sent"]})
    );
    // Mistakes are refused whole, with the item named.
    for (body, needle) in [
        (
            json!({"model": m, "feedback": [{"request_id": "fb-1", "labels": ["yes", "no", "yes"]}]}),
            "feedback item 0: request 'fb-1' answered 2 rows",
        ),
        (
            json!({"model": m, "feedback": [{"request_id": "fb-1", "label": "yes", "labels": ["no"]}]}),
            "either `label`",
        ),
        (
            json!({"model": m, "feedback": [{"request_id": "fb-1", "label": null}]}),
            "either `label`",
        ),
        (json!({"model": m}), "missing field `feedback`"),
    ] {
        let (st, out) = feedback(&s, body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{out}");
        assert!(
            out["message"].as_str().unwrap_or("").contains(needle),
            "{needle}: {out}"
        );
    }

    let mut steps = Vec::new();
    loop {
        let step = w.step(bastion_core::time::now_ms()).await.unwrap();
        let done = step.events == 0 && step.labels == 0;
        steps.push(step);
        if done {
            break;
        }
    }
    assert_eq!(steps.iter().map(|s| s.labels).sum::<usize>(), 40);
    assert_eq!(
        steps.iter().map(|s| s.performance_windows).sum::<usize>(),
        2
    );
    let incidents = s.meta.list_incidents(&Default::default()).await.unwrap();
    let accuracy: Vec<_> = incidents.iter().filter(|i| i.rule == "accuracy").collect();
    assert_eq!(accuracy.len(), 1, "{incidents:?}");
    let p = &accuracy[0].evidence["performance"];
    assert_eq!(p["labelled"], json!(20), "{p}");
    let acc = p["accuracy"].as_f64().unwrap();
    assert!(acc < 0.5, "{p}");
    assert!(
        p["roc_auc"].as_f64().is_some() && p["ece"].as_f64().is_some(),
        "{p}"
    );
    assert_eq!(accuracy[0].version, "1");
    // The label-free estimate was made on the (unlabelled) traffic window from confidence
    // calibrated on the training labels.
    let est: Vec<_> = incidents.iter().filter(|i| i.rule == "estimate").collect();
    assert_eq!(est.len(), 1, "{incidents:?}");
    let e = &est[0].evidence["window"]["estimate"];
    let estimated = e["accuracy"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&estimated), "{e}");
    assert_eq!(e["rows"], json!(40), "{e}");
    // A restarted worker has nothing left to read.
    let mut again = worker(&s, "labels", rules).await.with_label_settle(0);
    let step = again.step(bastion_core::time::now_ms()).await.unwrap();
    assert_eq!((step.events, step.labels), (0, 0));
}

async fn a_served_file_changed_while_serving_is_caught_and_quarantined(b: Backend) {
    let m = "mon-integrity";
    let s = setup(b, m).await;
    deploy(&s, m, json!({"action": "stable", "version": "2"})).await;
    assert_eq!(answering_version(&s, m).await, "2");
    let rules = r#"
[integrity]
every = "1s"

[[alert]]
name = "integrity"
when = "integrity.mismatch = true"
severity = "critical"
"#;
    // Untouched files: checked, nothing to say.
    let mut w = worker(&s, "integrity", rules).await;
    let step = w.step(bastion_core::time::now_ms()).await.unwrap();
    assert_eq!((step.integrity_checked, step.alerts), (1, 0));
    // Not again before the interval.
    let step = w.step(bastion_core::time::now_ms()).await.unwrap();
    assert_eq!(step.integrity_checked, 0);

    // A byte of the serving version's weights changes in the blob store.
    let listing = bastion_evidence::version_files(&s.meta, m, "2")
        .await
        .unwrap()
        .unwrap();
    let weights = listing
        .files
        .iter()
        .find(|f| f.path == bastion_ml::package::WEIGHTS)
        .unwrap();
    let blob = s.blob_path(&weights.digest.hex());
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&blob, bytes).unwrap();

    let step = w.step(bastion_core::time::now_ms() + 1_000).await.unwrap();
    assert_eq!((step.integrity_checked, step.alerts), (1, 1));
    let incidents = s.meta.list_incidents(&Default::default()).await.unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let i = &incidents[0];
    assert_eq!(
        (i.rule.as_str(), i.version.as_str(), i.severity.as_str()),
        ("integrity", "2", "CRITICAL")
    );
    let found = &i.evidence["integrity"];
    assert!(
        found["mismatches"][0]
            .as_str()
            .unwrap_or("")
            .contains(bastion_ml::package::WEIGHTS),
        "{found}"
    );
    assert!(found["quarantine"].as_str().is_some(), "{found}");
    // The version is quarantined: serving refuses it at its next re-check.
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let (st, out) = infer(&s, &format!("/v2/models/{m}/infer"), rows(0, 0.0)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{out}");
}
