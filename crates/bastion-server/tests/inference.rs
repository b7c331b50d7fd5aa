//! The Open Inference Protocol (KServe V2) over REST: metadata, readiness, JSON and binary
//! tensors, versions and aliases, admission refusals (tampered file, CRITICAL finding, wrong
//! key, files not stored here) and hostile requests.

mod common;

use bastion_ml::package;
use common::served::{get_json, infer, local_probabilities, metrics, register_model, request};
use common::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

backend_tests!(
    serves_a_builtin_model_with_json_and_binary_tensors,
    admission_refuses_tampered_critical_and_foreign_versions,
    hostile_requests_get_4xx_and_the_server_keeps_serving,
    output_policies_limit_what_answers_reveal
);

async fn serves_a_builtin_model_with_json_and_binary_tensors(b: Backend) {
    let s = TestServer::start(b).await;
    let (dir, _) = register_model(&s, "churn", &[]).await;

    let meta = s.client.get(s.url("/v2")).send().await.expect("v2");
    let meta: Value = meta.json().await.unwrap_or_default();
    assert_eq!(meta["name"], "bastion");
    assert!(
        meta["extensions"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("binary_tensor_data")))
    );
    for probe in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/churn/ready",
        "/v2/models/churn/versions/1/ready",
    ] {
        let st = s
            .client
            .get(s.url(probe))
            .send()
            .await
            .expect("probe")
            .status();
        assert_eq!(st, StatusCode::OK, "{probe}");
    }

    let m = get_json(&s, "/v2/models/churn").await;
    assert_eq!(m["name"], "churn");
    assert_eq!(m["versions"], json!(["1"]));
    assert_eq!(m["platform"], "bastion");
    let inputs: Vec<&str> = m["inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(inputs, vec!["a", "b", "colour"]);
    assert_eq!(m["inputs"][2]["datatype"], "BYTES");
    assert_eq!(
        m["outputs"][1],
        json!({"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]})
    );
    assert!(m["parameters"]["root_digest"].is_string());

    // JSON tensors, flat and nested, mixed datatypes.
    let rows = [(0.9, 0.8, "red"), (0.1, 0.2, "blue"), (0.5, 0.6, "green")];
    let (st, out) = infer(&s, "/v2/models/churn/infer", request(&rows)).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    assert_eq!(out["model_name"], "churn");
    assert_eq!(out["model_version"], "1");
    assert_eq!(out["id"], "req-1");
    assert_eq!(out["outputs"][0]["name"], "label");
    assert_eq!(out["outputs"][0]["shape"], json!([3]));
    assert_eq!(out["outputs"][0]["data"][0], "yes");
    assert_eq!(out["outputs"][0]["data"][1], "no");
    assert_eq!(out["outputs"][1]["shape"], json!([3, 2]));
    let got: Vec<f64> = out["outputs"][1]["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect();
    let want = local_probabilities(dir.path(), &rows);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }

    // Requested outputs, by version number and by alias.
    let mut req = request(&rows);
    req["outputs"] = json!([{"name": "label"}]);
    let (st, out) = infer(&s, "/v2/models/churn/versions/1/infer", req.clone()).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    assert_eq!(out["outputs"].as_array().map(Vec::len), Some(1));
    s.ok_post(
        "/registered-models/alias",
        json!({"name": "churn", "alias": "champion", "version": "1"}),
    )
    .await;
    let (st, out) = infer(&s, "/v2/models/churn/versions/champion/infer", req.clone()).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    assert_eq!(out["model_version"], "1");
    let (st, out) = infer(&s, "/v2/models/churn/versions/nightly/infer", req.clone()).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{out}");
    assert!(
        out["error"]
            .as_str()
            .is_some_and(|e| e.contains("no version, alias or stage 'nightly'")),
        "{out}"
    );
    let (st, out) = infer(&s, "/v2/models/nope/infer", req.clone()).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{out}");
    let (st, _) = infer(&s, "/v2/models/churn/versions/7/infer", req).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Per-model counters and latency for Prometheus.
    let text = metrics(&s).await;
    assert!(
        text.contains(
            r#"bastion_inference_requests_total{model="churn",version="1",route="direct",outcome="ok"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains("bastion_inference_duration_seconds"),
        "{text}"
    );

    // Binary tensors in and out: FP32 inputs, BYTES with length prefixes, binary outputs.
    let a: Vec<u8> = rows
        .iter()
        .flat_map(|r| (r.0 as f32).to_le_bytes())
        .collect();
    let colour: Vec<u8> = rows
        .iter()
        .flat_map(|r| {
            [
                (r.2.len() as u32).to_le_bytes().to_vec(),
                r.2.as_bytes().to_vec(),
            ]
            .concat()
        })
        .collect();
    let header = serde_json::to_vec(&json!({
        "inputs": [
            {"name": "a", "shape": [3], "datatype": "FP32", "parameters": {"binary_data_size": a.len()}},
            {"name": "b", "shape": [3], "datatype": "FP64", "data": rows.iter().map(|r| f64::from(r.1 as f32)).collect::<Vec<_>>()},
            {"name": "colour", "shape": [3], "datatype": "BYTES", "parameters": {"binary_data_size": colour.len()}},
        ],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}]
    })).unwrap_or_default();
    let n = header.len();
    let resp = s
        .client
        .post(s.url("/v2/models/churn/infer"))
        .header("Inference-Header-Content-Length", n.to_string())
        .header("Content-Type", "application/octet-stream")
        .body([header, a, colour].concat())
        .send()
        .await
        .expect("binary request");
    assert_eq!(resp.status(), StatusCode::OK);
    let hl: usize = resp
        .headers()
        .get("inference-header-content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("binary response header length");
    let body = resp.bytes().await.expect("body");
    let head: Value = serde_json::from_slice(&body[..hl]).unwrap_or_default();
    assert_eq!(
        head["outputs"][0]["parameters"]["binary_data_size"],
        json!(48)
    );
    let probs: Vec<f64> = body[hl..]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    let rows32: Vec<(f64, f64, &str)> = rows
        .iter()
        .map(|r| (f64::from(r.0 as f32), r.1, r.2))
        .collect();
    let want = local_probabilities(dir.path(), &rows32);
    for (g, w) in probs.iter().zip(&want) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }
}

async fn admission_refuses_tampered_critical_and_foreign_versions(b: Backend) {
    let s = TestServer::start(b).await;
    let rows = [(0.9, 0.8, "red")];

    // A CRITICAL finding (a pickle that runs a command) among the package's files.
    const EVIL: &[u8] = b"\x80\x02cos\nsystem\nX\x0a\x00\x00\x00echo pwned\x85R.";
    register_model(&s, "evil", &[("extra.pkl", EVIL)]).await;
    let (st, out) = infer(&s, "/v2/models/evil/infer", request(&rows)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{out}");
    let e = out["error"].as_str().unwrap_or_default();
    assert!(e.contains("not admitted") && e.contains("CRITICAL"), "{e}");
    // Asked again within the re-check interval: the same answer, no new admission.
    let (st, again) = infer(&s, "/v2/models/evil/infer", request(&rows)).await;
    assert_eq!((st, &again), (StatusCode::FORBIDDEN, &out));
    let st = s
        .client
        .get(s.url("/v2/models/evil/ready"))
        .send()
        .await
        .expect("ready")
        .status();
    assert!(st.is_client_error());

    // A stored file changed after signing: the digests no longer match.
    register_model(&s, "tampered", &[]).await;
    let listing = bastion_evidence::version_files(&s.meta, "tampered", "1")
        .await
        .expect("listing")
        .expect("stored here");
    let weights = listing
        .files
        .iter()
        .find(|f| f.path == package::WEIGHTS)
        .expect("weights file");
    let blob = s.blob_path(&weights.digest.hex());
    let mut bytes = std::fs::read(&blob).expect("blob");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&blob, bytes).expect("tamper");
    let (st, out) = infer(&s, "/v2/models/tampered/infer", request(&rows)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{out}");
    let e = out["error"].as_str().unwrap_or_default();
    assert!(e.contains("digests") || e.contains("does not match"), "{e}");

    // Files the server does not store.
    let _ = s
        .post("/registered-models/create", json!({"name": "remote"}))
        .await;
    s.ok_post(
        "/model-versions/create",
        json!({"name": "remote", "source": "s3://bucket/models/m1"}),
    )
    .await;
    let (st, out) = infer(&s, "/v2/models/remote/infer", request(&rows)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{out}");
    assert!(
        out["error"].as_str().is_some_and(|e| e.contains("files")),
        "{out}"
    );

    // The server's own key admits a clean version; a key it does not trust refuses it.
    register_model(&s, "foreign", &[]).await;
    let (st, out) = infer(&s, "/v2/models/foreign/infer", request(&rows)).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    let scans = bastion_evidence::Scans::new(bastion_scan::Policy::builtin());
    let other = bastion_evidence::Attestor::ephemeral().expect("key");
    let a = bastion_serve::admission::admit(
        &s.meta,
        s.blobs.as_ref(),
        &scans,
        &other,
        "foreign",
        "1",
        "test",
        false,
    )
    .await
    .expect("admission runs");
    assert!(!a.admitted());
    assert!(
        a.reasons()
            .iter()
            .any(|r| r.starts_with("signature:") && r.contains("key")),
        "{:?}",
        a.reasons()
    );

    // Every refusal and admission is in the audit log.
    let entries = s.audit_entries().await;
    let refused: Vec<&str> = entries
        .iter()
        .filter(|e| e.action == "serve.admission-refused")
        .map(|e| e.resource.as_str())
        .collect();
    assert_eq!(refused.iter().filter(|r| r.ends_with("evil/1")).count(), 1);
    for m in ["evil/1", "tampered/1", "remote/1"] {
        assert!(
            refused.iter().any(|r| r.ends_with(m)),
            "{m} not in {refused:?}"
        );
    }
    assert!(
        entries
            .iter()
            .any(|e| e.action == "serve.admitted" && e.resource.ends_with("foreign/1"))
    );
}

async fn hostile_requests_get_4xx_and_the_server_keeps_serving(b: Backend) {
    let s = TestServer::start_with(b, |c| c.max_infer_bytes = 1 << 20).await;
    register_model(&s, "m", &[]).await;
    let url = "/v2/models/m/infer";
    let send_raw = |body: Vec<u8>, header: Option<&str>| {
        let mut r = s.client.post(s.url(url)).body(body);
        if let Some(h) = header {
            r = r.header("Inference-Header-Content-Length", h);
        }
        r.send()
    };
    let cases: Vec<(Vec<u8>, Option<&str>, StatusCode, &str)> = vec![
        (b"not json".to_vec(), None, StatusCode::BAD_REQUEST, "not a valid inference request"),
        (format!("{{\"inputs\":[{{\"name\":\"a\",\"shape\":[1],\"datatype\":\"FP64\",\"data\":{}1{}}}]}}", "[".repeat(50_000), "]".repeat(50_000)).into_bytes(), None, StatusCode::BAD_REQUEST, "recursion"),
        (br#"{"inputs":[{"name":"a","shape":[4294967296,4294967296],"datatype":"FP64","data":[]}]}"#.to_vec(), None, StatusCode::BAD_REQUEST, "request limit"),
        (br#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP64","data":[1]}]}"#.to_vec(), Some("999"), StatusCode::BAD_REQUEST, "Inference-Header-Content-Length"),
        (br#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP64","data":[1]}]}"#.to_vec(), Some("x"), StatusCode::BAD_REQUEST, "byte count"),
    ];
    for (body, header, want, text) in cases {
        let r = send_raw(body, header).await.expect("request");
        let st = r.status();
        let v: Value = r.json().await.unwrap_or_default();
        assert_eq!(st, want, "{v}");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains(text)),
            "{text}: {v}"
        );
    }
    // Over the body limit: a 413, or the connection closed while the client still sends.
    // A client of its own, so that the closed connection is not reused by later requests.
    let big = reqwest::Client::new()
        .post(s.url(url))
        .body(vec![b'x'; 2 << 20])
        .send()
        .await;
    match big {
        Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    let rows = [(0.5, 0.5, "red")];
    let mut wrong = request(&rows);
    wrong["inputs"][0]["shape"] = json!([1, 3]);
    wrong["inputs"][0]["data"] = json!([[0.5, 0.5, 0.5]]);
    let (st, v) = infer(&s, url, wrong).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("values per row")),
        "{v}"
    );
    let mut unknown_colour = request(&rows);
    unknown_colour["inputs"][2]["data"] = json!(["ultraviolet"]);
    let (st, v) = infer(&s, url, unknown_colour).await;
    assert!(
        st == StatusCode::OK || st == StatusCode::BAD_REQUEST,
        "{st} {v}"
    );
    // NaN can only arrive as binary data; it is a missing value the model refuses or imputes.
    let nan = f64::NAN.to_le_bytes().to_vec();
    let header = serde_json::to_vec(&json!({"inputs": [
        {"name": "a", "shape": [1], "datatype": "FP64", "parameters": {"binary_data_size": 8}},
        {"name": "b", "shape": [1], "datatype": "FP64", "data": [0.5]},
        {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["red"]}]}))
    .unwrap_or_default();
    let n = header.len().to_string();
    let r = send_raw([header, nan].concat(), Some(&n))
        .await
        .expect("nan");
    assert!(
        r.status() == StatusCode::OK || r.status() == StatusCode::BAD_REQUEST,
        "{}",
        r.status()
    );

    // Concurrent requests, good and bad mixed, all answered.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = s.client.clone();
        let u = s.url(url);
        let body = if i % 2 == 0 {
            request(&rows)
        } else {
            json!({"inputs": "nope"})
        };
        tasks.push(tokio::spawn(async move {
            client.post(u).json(&body).send().await.map(|r| r.status())
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let st = t.await.expect("task").expect("response");
        assert_eq!(
            st,
            if i % 2 == 0 {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            }
        );
    }
    let (st, _) = infer(&s, url, request(&rows)).await;
    assert_eq!(st, StatusCode::OK);
}

async fn set_policy(s: &TestServer, model: &str, value: &str) {
    s.ok_post(
        "/registered-models/set-tag",
        json!({"name": model, "key": "bastion.output_policy", "value": value}),
    )
    .await;
}

async fn output_policies_limit_what_answers_reveal(b: Backend) {
    let s = TestServer::start(b).await;
    let rows = [(0.9, 0.8, "red"), (0.1, 0.2, "blue")];
    register_model(&s, "pol", &[]).await;
    set_policy(&s, "pol", "label").await;
    let (st, out) = infer(&s, "/v2/models/pol/infer", request(&rows)).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    let names: Vec<&str> = out["outputs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert_eq!(names, vec!["label"]);
    let meta = get_json(&s, "/v2/models/pol").await;
    assert_eq!(meta["outputs"].as_array().map(Vec::len), Some(1), "{meta}");
    let mut asks = request(&rows);
    asks["outputs"] = json!([{"name": "probabilities"}]);
    let (st, out) = infer(&s, "/v2/models/pol/infer", asks).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{out}");

    // A changed policy applies once the loaded version is re-checked.
    set_policy(&s, "pol", "round=1").await;
    tokio::time::sleep(std::time::Duration::from_millis(5200)).await;
    let (st, out) = infer(&s, "/v2/models/pol/infer", request(&rows)).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    for p in out["outputs"][1]["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
    {
        assert!(
            ((p * 10.0).round() - p * 10.0).abs() < 1e-9,
            "{p} is not rounded to 1 decimal"
        );
    }

    register_model(&s, "odd", &[]).await;
    set_policy(&s, "odd", "everything").await;
    let (st, out) = infer(&s, "/v2/models/odd/infer", request(&rows)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{out}");
    assert!(
        out["error"]
            .as_str()
            .is_some_and(|e| e.contains("output policy")),
        "{out}"
    );
}
