//! The artifact proxy and the hostile-input surface: traversal in every encoding, oversized and
//! malformed bodies, unknown routes, Host-header checks, and the operations endpoints.

mod common;

use common::{Backend, TestServer, assert_error};
use serde_json::{Value, json};

backend_tests!(
    artifact_round_trip_and_listing,
    traversal_is_refused_everywhere,
    hostile_requests_get_clean_errors
);

const ART: &str = "/api/2.0/mlflow-artifacts/artifacts";

async fn put(s: &TestServer, path: &str, bytes: Vec<u8>) -> reqwest::StatusCode {
    s.client
        .put(s.url(&format!("{ART}/{path}")))
        .body(bytes)
        .send()
        .await
        .unwrap()
        .status()
}

async fn artifact_round_trip_and_listing(b: Backend) {
    let s = TestServer::start(b).await;
    let exp = s.create_experiment("art").await;
    let run = s.create_run(&exp).await;
    let root = format!("{exp}/{run}/artifacts");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    assert!(
        put(&s, &format!("{root}/hello.txt"), b"hi".to_vec())
            .await
            .is_success()
    );
    assert!(
        put(&s, &format!("{root}/sub/deep/data.bin"), big.clone())
            .await
            .is_success()
    );
    assert!(
        put(&s, &format!("{root}/sub/same.bin"), big.clone())
            .await
            .is_success(),
        "same bytes under a second name"
    );

    let (st, v) = s
        .call(
            reqwest::Method::GET,
            &format!("{ART}?path={root}"),
            Value::Null,
        )
        .await;
    assert!(st.is_success());
    assert_eq!(
        v["files"],
        json!([{"path": "hello.txt", "is_dir": false, "file_size": 2}, {"path": "sub", "is_dir": true}])
    );
    let (_, v) = s
        .call(
            reqwest::Method::GET,
            &format!("{ART}?path={root}/sub"),
            Value::Null,
        )
        .await;
    assert_eq!(
        v["files"],
        json!([{"path": "deep", "is_dir": true}, {"path": "same.bin", "is_dir": false, "file_size": 3_000_000}])
    );
    let (_, v) = s
        .call(
            reqwest::Method::GET,
            &format!("{ART}?path={root}/hello.txt"),
            Value::Null,
        )
        .await;
    assert_eq!(v, json!({}), "listing a file is empty, as in MLflow");

    let resp = s
        .client
        .get(s.url(&format!("{ART}/{root}/sub/deep/data.bin")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        big.as_slice(),
        "byte-identical download"
    );
    let resp = s
        .client
        .get(s.url(&format!("{ART}/{root}/hello.txt")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");

    // The run-scoped listing (MlflowClient.list_artifacts) and overwrite semantics.
    let v = s
        .ok_get("/artifacts/list", &[("run_id", &run), ("path", "sub")])
        .await;
    assert_eq!(v["root_uri"], format!("mlflow-artifacts:/{root}"));
    assert_eq!(v["files"][1]["path"], "sub/same.bin");
    assert!(
        put(&s, &format!("{root}/hello.txt"), b"changed".to_vec())
            .await
            .is_success()
    );
    let text = s
        .client
        .get(s.url(&format!("{ART}/{root}/hello.txt")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "changed");
    // A file cannot become a directory or the other way round.
    assert_eq!(
        put(&s, &format!("{root}/hello.txt/x"), b"x".to_vec())
            .await
            .as_u16(),
        400
    );
    assert_eq!(
        put(&s, &format!("{root}/sub"), b"x".to_vec())
            .await
            .as_u16(),
        400
    );

    let (st, _) = s
        .call(
            reqwest::Method::DELETE,
            &format!("{ART}/{root}/sub"),
            Value::Null,
        )
        .await;
    assert!(st.is_success());
    let (_, v) = s
        .call(
            reqwest::Method::GET,
            &format!("{ART}?path={root}"),
            Value::Null,
        )
        .await;
    assert_eq!(v["files"].as_array().unwrap().len(), 1);
    let (st, err) = s
        .call(
            reqwest::Method::GET,
            &format!("{ART}/{root}/sub/same.bin"),
            Value::Null,
        )
        .await;
    assert_error(st, &err, 404, "RESOURCE_DOES_NOT_EXIST", "not found");

    // Uploads over the configured limit are refused and store nothing.
    let small = TestServer::start_with(b, |c| c.max_artifact_bytes = 1000).await;
    let status = put(&small, "0/x/artifacts/too-big.bin", vec![0u8; 5000]).await;
    assert_eq!(status.as_u16(), 413);
    let (_, v) = small
        .call(
            reqwest::Method::GET,
            &format!("{ART}?path=0/x/artifacts"),
            Value::Null,
        )
        .await;
    assert_eq!(v, json!({}));
}

async fn traversal_is_refused_everywhere(b: Backend) {
    let s = TestServer::start(b).await;
    let host = format!("Host: 127.0.0.1:{}\r\n", s.addr.port());
    for target in [
        "/api/2.0/mlflow-artifacts/artifacts/../../etc/passwd",
        "/api/2.0/mlflow-artifacts/artifacts/1/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/2.0/mlflow-artifacts/artifacts/%2e%2e/%2e%2e/etc/passwd",
        "/api/2.0/mlflow-artifacts/artifacts/1/%252e%252e%252f%252e%252e%252fetc",
        "/api/2.0/mlflow-artifacts/artifacts/%2Fetc%2Fpasswd",
        "/api/2.0/mlflow-artifacts/artifacts/1/a%5c..%5c..%5cwin.ini",
        "/api/2.0/mlflow-artifacts/artifacts/1/a%00.txt",
        "/api/2.0/mlflow-artifacts/artifacts?path=..%2F..%2Fetc",
        "/api/2.0/mlflow-artifacts/artifacts?path=%2Fetc",
        "/api/2.0/mlflow-artifacts/artifacts?path=1%2F%2e%2e%2F%2e%2e",
    ] {
        for method in ["GET", "PUT", "DELETE"] {
            let body = if method == "PUT" {
                "Content-Length: 1\r\n\r\nx"
            } else {
                "Content-Length: 0\r\n\r\n"
            };
            let resp = s
                .raw(&format!(
                    "{method} {target} HTTP/1.1\r\n{host}Connection: close\r\n{body}"
                ))
                .await;
            let status_line = resp.lines().next().unwrap_or("");
            assert!(
                status_line.contains(" 400 ")
                    || status_line.contains(" 404 ")
                    || status_line.contains(" 405 "),
                "{method} {target}: {status_line}"
            );
            assert!(!resp.contains("root:"), "{method} {target} leaked a file");
            if status_line.contains(" 400 ") {
                assert!(resp.contains("INVALID_PARAMETER_VALUE"), "{resp}");
            }
        }
    }
    // Nothing was written by any of those.
    let (_, v) = s.call(reqwest::Method::GET, ART, Value::Null).await;
    assert_eq!(v, json!({}));

    let (st, err) = s
        .get(
            "/artifacts/list",
            &[
                ("run_id", "0123456789abcdef0123456789abcdef"),
                ("path", "../x"),
            ],
        )
        .await;
    assert_eq!(st.as_u16(), 404, "{err}");
    let exp = s.create_experiment("t").await;
    let run = s.create_run(&exp).await;
    let (st, err) = s
        .get("/artifacts/list", &[("run_id", &run), ("path", "../../x")])
        .await;
    assert_error(st, &err, 400, "INVALID_PARAMETER_VALUE", "Invalid path");
}

async fn hostile_requests_get_clean_errors(b: Backend) {
    let s = TestServer::start_with(b, |c| c.max_json_bytes = 64 * 1024).await;
    // Unknown routes: JSON 404, never an HTML page.
    let (st, v) = s
        .call(
            reqwest::Method::GET,
            "/api/2.0/mlflow/does-not-exist",
            Value::Null,
        )
        .await;
    assert_error(st, &v, 404, "ENDPOINT_NOT_FOUND", "does-not-exist");
    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            "/api/2.0/mlflow/runs/create",
            Value::Null,
        )
        .await;
    assert_eq!(st.as_u16(), 405, "{v}");
    assert_eq!(v["error_code"], "BAD_REQUEST");

    // Malformed and wrongly-shaped bodies.
    let resp = s
        .client
        .post(s.url("/api/2.0/mlflow/runs/log-metric"))
        .header("content-type", "application/json")
        .body("{bad")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error_code"], "INVALID_PARAMETER_VALUE");
    let (st, v) = s
        .call(
            reqwest::Method::POST,
            "/api/2.0/mlflow/experiments/create",
            json!([1, 2]),
        )
        .await;
    assert_error(
        st,
        &v,
        400,
        "INVALID_PARAMETER_VALUE",
        "expected a JSON object",
    );
    let (st, v) = s
        .post("/experiments/create", json!({"name": {"nested": true}}))
        .await;
    assert_error(st, &v, 400, "INVALID_PARAMETER_VALUE", "'name'");
    let exp = s.create_experiment("hostile").await;
    let run = s.create_run(&exp).await;
    let (st, v) = s
        .post(
            "/runs/log-metric",
            json!({"run_id": [run], "key": 5, "value": true, "timestamp": "x"}),
        )
        .await;
    assert_eq!(st.as_u16(), 400, "{v}");

    // Oversized bodies: 413 with a JSON error, and the server keeps serving.
    let huge = json!({"name": "x".repeat(100 * 1024)});
    let (st, v) = s.post("/experiments/create", huge).await;
    assert_error(st, &v, 413, "REQUEST_LIMIT_EXCEEDED", "exceeds the limit");
    let long_name = "n".repeat(501);
    let (st, v) = s
        .post("/experiments/create", json!({"name": long_name}))
        .await;
    assert_error(
        st,
        &v,
        400,
        "INVALID_PARAMETER_VALUE",
        "exceeded length limit of 500",
    );

    // Errors never carry SQL or paths, even for a duplicate insert (MLflow's leaks its SQL).
    s.create_experiment("dup").await;
    let (_, v) = s.post("/experiments/create", json!({"name": "dup"})).await;
    let msg = v["message"].as_str().unwrap().to_lowercase();
    for leak in ["insert", "select", "sqlite", "unique constraint", "/tmp"] {
        assert!(!msg.contains(leak), "{msg}");
    }

    // Host header allowlist (DNS rebinding).
    let resp = s
        .client
        .get(s.url("/api/2.0/mlflow/experiments/get?experiment_id=0"))
        .header("host", "evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("Invalid Host header")
    );
    let resp = s
        .client
        .get(s.url("/health"))
        .header("host", "localhost:1234")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let open =
        TestServer::start_with(b, |c| c.allowed_hosts = vec!["mlflow.internal".into()]).await;
    let resp = open
        .client
        .get(open.url("/health"))
        .header("host", "mlflow.internal")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    // CORS is off unless configured.
    let resp = s
        .client
        .get(s.url("/health"))
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    // Operations endpoints.
    let health = s.client.get(s.url("/health")).send().await.unwrap();
    assert_eq!(health.text().await.unwrap(), "OK");
    let resp = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    assert!(text.contains("bastion_http_requests_total{method=\"POST\",route=\"/api/2.0/mlflow/experiments/create\""), "{text}");
    assert!(
        text.contains("bastion_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("bastion_db_pool_connections"), "{text}");
    let resp = s.client.get(s.url("/health")).send().await.unwrap();
    assert!(resp.headers().contains_key("x-request-id"));
    let info = s
        .client
        .get(s.url("/api/3.0/mlflow/server-info"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(info["store_type"], "SqlStore");
}
