//! Experiments and runs over HTTP, on every backend.

mod common;

use common::{Backend, TestServer, assert_error};
use serde_json::{Value, json};

backend_tests!(
    experiments_lifecycle,
    experiment_search_and_pagination,
    run_logging_semantics,
    log_batch_is_atomic_and_limited,
    run_lifecycle_and_state_checks,
    inputs_and_outputs,
    concurrent_writers_on_one_run,
);

async fn experiments_lifecycle(b: Backend) {
    let s = TestServer::start(b).await;
    let v = s
        .ok_post(
            "/experiments/create",
            json!({"name": "exp", "tags": [{"key": "team", "value": "x"}]}),
        )
        .await;
    let id = v["experiment_id"].as_str().unwrap().to_owned();
    assert_ne!(id, "0", "0 is the Default experiment");

    let e = s
        .ok_get("/experiments/get", &[("experiment_id", &id)])
        .await;
    assert_eq!(e["experiment"]["name"], "exp");
    assert_eq!(
        e["experiment"]["artifact_location"],
        format!("mlflow-artifacts:/{id}")
    );
    assert_eq!(e["experiment"]["lifecycle_stage"], "active");
    assert_eq!(
        e["experiment"]["tags"],
        json!([{"key": "team", "value": "x"}])
    );
    let by_name = s
        .ok_get("/experiments/get-by-name", &[("experiment_name", "exp")])
        .await;
    assert_eq!(by_name["experiment"]["experiment_id"], id.as_str());
    let default = s
        .ok_get("/experiments/get", &[("experiment_id", "0")])
        .await;
    assert_eq!(default["experiment"]["name"], "Default");

    let (st, err) = s.post("/experiments/create", json!({"name": "exp"})).await;
    assert_error(
        st,
        &err,
        400,
        "RESOURCE_ALREADY_EXISTS",
        "Experiment(name=exp) already exists",
    );
    let (st, err) = s.post("/experiments/create", json!({})).await;
    assert_error(
        st,
        &err,
        400,
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'name'",
    );
    let (st, err) = s
        .get("/experiments/get", &[("experiment_id", "999999")])
        .await;
    assert_error(
        st,
        &err,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "No Experiment with id=999999 exists",
    );
    let (st, err) = s
        .get("/experiments/get-by-name", &[("experiment_name", "nope")])
        .await;
    assert_error(
        st,
        &err,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Could not find experiment with name 'nope'",
    );
    for loc in ["/etc", "file:///etc", "mlflow-artifacts:/../../etc"] {
        let (st, err) = s
            .post(
                "/experiments/create",
                json!({"name": format!("bad{loc}"), "artifact_location": loc}),
            )
            .await;
        assert_error(
            st,
            &err,
            400,
            "INVALID_PARAMETER_VALUE",
            "artifact_location",
        );
    }

    s.ok_post(
        "/experiments/update",
        json!({"experiment_id": id, "new_name": "renamed"}),
    )
    .await;
    s.ok_post(
        "/experiments/set-experiment-tag",
        json!({"experiment_id": id, "key": "k", "value": "v"}),
    )
    .await;
    s.ok_post(
        "/experiments/delete-experiment-tag",
        json!({"experiment_id": id, "key": "team"}),
    )
    .await;
    let e = s
        .ok_get("/experiments/get", &[("experiment_id", &id)])
        .await;
    assert_eq!(e["experiment"]["name"], "renamed");
    assert_eq!(e["experiment"]["tags"], json!([{"key": "k", "value": "v"}]));
    let (st, err) = s
        .post(
            "/experiments/delete-experiment-tag",
            json!({"experiment_id": id, "key": "absent"}),
        )
        .await;
    assert_error(st, &err, 404, "RESOURCE_DOES_NOT_EXIST", "absent");

    let run = s.create_run(&id).await;
    s.ok_post("/experiments/delete", json!({"experiment_id": id}))
        .await;
    let e = s
        .ok_get("/experiments/get", &[("experiment_id", &id)])
        .await;
    assert_eq!(e["experiment"]["lifecycle_stage"], "deleted");
    let r = s.ok_get("/runs/get", &[("run_id", &run)]).await;
    assert_eq!(
        r["run"]["info"]["lifecycle_stage"], "deleted",
        "runs follow their experiment"
    );
    let (st, err) = s.post("/runs/create", json!({"experiment_id": id})).await;
    assert_error(
        st,
        &err,
        400,
        "INVALID_STATE",
        "must be in the 'active' state",
    );
    let (st, err) = s
        .post(
            "/experiments/update",
            json!({"experiment_id": id, "new_name": "x"}),
        )
        .await;
    assert_error(st, &err, 400, "INVALID_STATE", "non-active");
    s.ok_post("/experiments/restore", json!({"experiment_id": id}))
        .await;
    let r = s.ok_get("/runs/get", &[("run_id", &run)]).await;
    assert_eq!(r["run"]["info"]["lifecycle_stage"], "active");
}

async fn experiment_search_and_pagination(b: Backend) {
    let s = TestServer::start(b).await;
    for i in 0..5 {
        let id = s.create_experiment(&format!("search-{i}")).await;
        s.ok_post("/experiments/set-experiment-tag", json!({"experiment_id": id, "key": "parity", "value": if i % 2 == 0 { "even" } else { "odd" }})).await;
    }
    let v = s
        .ok_post(
            "/experiments/search",
            json!({"filter": "tags.parity = 'even'", "order_by": ["name DESC"], "max_results": 10}),
        )
        .await;
    let names: Vec<&str> = v["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["search-4", "search-2", "search-0"]);

    let v = s
        .ok_get(
            "/experiments/search",
            &[
                ("filter", "name LIKE 'search-%'"),
                ("max_results", "2"),
                ("order_by", "name ASC"),
            ],
        )
        .await;
    assert_eq!(v["experiments"].as_array().unwrap().len(), 2);
    let token = v["next_page_token"].as_str().unwrap().to_owned();
    let mut seen = 2;
    let mut token = Some(token);
    while let Some(t) = token {
        let v = s
            .ok_get(
                "/experiments/search",
                &[
                    ("filter", "name LIKE 'search-%'"),
                    ("max_results", "2"),
                    ("order_by", "name ASC"),
                    ("page_token", &t),
                ],
            )
            .await;
        seen += v["experiments"].as_array().map(Vec::len).unwrap_or(0);
        token = v["next_page_token"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, 5);

    let (st, err) = s
        .post(
            "/experiments/search",
            json!({"filter": "name = 'a' OR name = 'b'"}),
        )
        .await;
    assert_error(
        st,
        &err,
        400,
        "INVALID_PARAMETER_VALUE",
        "OR is not supported",
    );
    let (st, err) = s
        .post("/experiments/search", json!({"page_token": "not-a-token"}))
        .await;
    assert_error(
        st,
        &err,
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid page token",
    );
    let (st, err) = s
        .post("/experiments/search", json!({"max_results": 0}))
        .await;
    assert_error(st, &err, 400, "INVALID_PARAMETER_VALUE", "max_results");
    let v = s
        .ok_post(
            "/experiments/search",
            json!({"view_type": "ALL", "filter": "name = 'Default'"}),
        )
        .await;
    assert_eq!(v["experiments"][0]["experiment_id"], "0");
}

async fn run_logging_semantics(b: Backend) {
    let s = TestServer::start(b).await;
    let exp = s.create_experiment("runs").await;
    let v = s
        .ok_post("/runs/create", json!({"experiment_id": exp, "user_id": "alice", "run_name": "r1", "start_time": 5, "tags": [{"key": "k", "value": "v"}]}))
        .await;
    let info = &v["run"]["info"];
    let run = info["run_id"].as_str().unwrap().to_owned();
    assert_eq!(run.len(), 32);
    assert_eq!(info["run_uuid"], run.as_str());
    assert_eq!(info["run_name"], "r1");
    assert_eq!(info["status"], "RUNNING");
    assert_eq!(
        info["artifact_uri"],
        format!("mlflow-artifacts:/{exp}/{run}/artifacts")
    );
    assert!(info.get("end_time").is_none());
    let unnamed = s
        .ok_post("/runs/create", json!({"experiment_id": exp}))
        .await;
    assert!(
        unnamed["run"]["info"]["run_name"]
            .as_str()
            .unwrap()
            .contains('-'),
        "a generated name"
    );

    // Metrics: both id spellings, NaN and infinities as protobuf JSON writes them, dedup.
    for (value, step) in [
        (json!(0.5), 1),
        (json!(0.5), 1),
        (json!(0.25), 2),
        (json!("NaN"), 3),
        (json!("Infinity"), 4),
        (json!("-Infinity"), 5),
    ] {
        s.ok_post(
            "/runs/log-metric",
            json!({"run_uuid": run, "key": "loss", "value": value, "timestamp": 10, "step": step}),
        )
        .await;
    }
    let h = s
        .ok_get(
            "/metrics/get-history",
            &[("run_id", &run), ("metric_key", "loss")],
        )
        .await;
    let hist = h["metrics"].as_array().unwrap();
    assert_eq!(
        hist.len(),
        5,
        "identical metric logged twice is stored once: {h}"
    );
    assert_eq!(hist[2]["value"], "NaN");
    assert_eq!(
        hist[3]["value"],
        json!(f64::MAX),
        "MLflow stores +Inf as the largest float"
    );
    assert_eq!(hist[4]["value"], json!(f64::MIN));
    let (st, err) = s
        .post(
            "/runs/log-metric",
            json!({"run_id": run, "key": "loss", "value": "abc", "timestamp": 1}),
        )
        .await;
    assert_error(st, &err, 400, "INVALID_PARAMETER_VALUE", "'value'");
    let (st, err) = s
        .post(
            "/runs/log-metric",
            json!({"run_id": run, "key": "../x", "value": 1, "timestamp": 1}),
        )
        .await;
    assert_error(
        st,
        &err,
        400,
        "INVALID_PARAMETER_VALUE",
        "must not resolve to other names",
    );
    let (st, err) = s
        .post(
            "/runs/log-metric",
            json!({"run_id": "nope", "key": "a", "value": 1, "timestamp": 1}),
        )
        .await;
    assert_error(
        st,
        &err,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Run with id=nope not found",
    );
    let (st, err) = s
        .post(
            "/runs/log-metric",
            json!({"key": "a", "value": 1, "timestamp": 1}),
        )
        .await;
    assert_error(st, &err, 400, "INVALID_PARAMETER_VALUE", "'run_id'");

    // Latest value: greatest step wins, regardless of arrival order.
    s.ok_post(
        "/runs/log-metric",
        json!({"run_id": run, "key": "acc", "value": 0.9, "timestamp": 50, "step": 9}),
    )
    .await;
    s.ok_post(
        "/runs/log-metric",
        json!({"run_id": run, "key": "acc", "value": 0.1, "timestamp": 99, "step": 1}),
    )
    .await;

    // Params are immutable; the same value again is fine.
    s.ok_post(
        "/runs/log-parameter",
        json!({"run_id": run, "key": "lr", "value": "0.01"}),
    )
    .await;
    s.ok_post(
        "/runs/log-parameter",
        json!({"run_id": run, "key": "lr", "value": "0.01"}),
    )
    .await;
    let (st, err) = s
        .post(
            "/runs/log-parameter",
            json!({"run_id": run, "key": "lr", "value": "0.02"}),
        )
        .await;
    assert_error(
        st,
        &err,
        400,
        "INVALID_PARAMETER_VALUE",
        "Changing param values is not allowed",
    );
    let (st, err) = s
        .post(
            "/runs/log-parameter",
            json!({"run_id": run, "key": "big", "value": "x".repeat(6001)}),
        )
        .await;
    assert_error(
        st,
        &err,
        400,
        "INVALID_PARAMETER_VALUE",
        "exceeded length limit of 6000",
    );

    s.ok_post(
        "/runs/set-tag",
        json!({"run_id": run, "key": "stage", "value": "dev"}),
    )
    .await;
    s.ok_post("/runs/delete-tag", json!({"run_id": run, "key": "k"}))
        .await;
    let (st, err) = s
        .post("/runs/delete-tag", json!({"run_id": run, "key": "k"}))
        .await;
    assert_error(
        st,
        &err,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "No tag with name: k",
    );
    s.ok_post(
        "/runs/set-tag",
        json!({"run_id": run, "key": "mlflow.runName", "value": "renamed"}),
    )
    .await;

    let r = s.ok_get("/runs/get", &[("run_id", &run)]).await;
    let data = &r["run"]["data"];
    let metrics: Vec<(&str, &Value)> = data["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["key"].as_str().unwrap(), &m["value"]))
        .collect();
    assert_eq!(metrics, [("acc", &json!(0.9)), ("loss", &json!(f64::MIN))]);
    assert_eq!(data["params"], json!([{"key": "lr", "value": "0.01"}]));
    let tags: Vec<&str> = data["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["mlflow.runName", "stage"]);
    assert_eq!(
        r["run"]["info"]["run_name"], "renamed",
        "the name follows the tag"
    );

    let u = s
        .ok_post(
            "/runs/update",
            json!({"run_id": run, "status": "FINISHED", "end_time": 77}),
        )
        .await;
    assert_eq!(u["run_info"]["status"], "FINISHED");
    assert_eq!(u["run_info"]["end_time"], 77);
    let (st, err) = s
        .post("/runs/update", json!({"run_id": run, "status": "DONE"}))
        .await;
    assert_error(
        st,
        &err,
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid run status",
    );

    // History pagination.
    for step in 0..30 {
        s.ok_post(
            "/runs/log-metric",
            json!({"run_id": run, "key": "p", "value": step, "timestamp": 1, "step": step}),
        )
        .await;
    }
    let h = s
        .ok_get(
            "/metrics/get-history",
            &[("run_id", &run), ("metric_key", "p"), ("max_results", "20")],
        )
        .await;
    assert_eq!(h["metrics"].as_array().unwrap().len(), 20);
    let t = h["next_page_token"].as_str().unwrap();
    let h = s
        .ok_get(
            "/metrics/get-history",
            &[
                ("run_id", &run),
                ("metric_key", "p"),
                ("max_results", "20"),
                ("page_token", t),
            ],
        )
        .await;
    assert_eq!(h["metrics"].as_array().unwrap().len(), 10);
    assert!(h.get("next_page_token").is_none());
}

async fn log_batch_is_atomic_and_limited(b: Backend) {
    let s = TestServer::start(b).await;
    let exp = s.create_experiment("batch").await;
    let run = s.create_run(&exp).await;
    let metrics: Vec<Value> = (0..998)
        .map(|i| json!({"key": "m", "value": i, "timestamp": 1, "step": i}))
        .collect();
    s.ok_post("/runs/log-batch", json!({"run_id": run, "metrics": metrics, "params": [{"key": "p", "value": "1"}], "tags": [{"key": "t", "value": "1"}]})).await;
    let h = s
        .ok_get(
            "/metrics/get-history",
            &[("run_id", &run), ("metric_key", "m")],
        )
        .await;
    assert_eq!(h["metrics"].as_array().unwrap().len(), 998);

    let too_many: Vec<Value> = (0..1001)
        .map(|i| json!({"key": "m", "value": i, "timestamp": 1}))
        .collect();
    let (st, err) = s
        .post(
            "/runs/log-batch",
            json!({"run_id": run, "metrics": too_many}),
        )
        .await;
    assert_error(
        st,
        &err,
        400,
        "INVALID_PARAMETER_VALUE",
        "at most 1000 metrics",
    );
    let params: Vec<Value> = (0..101)
        .map(|i| json!({"key": format!("p{i}"), "value": "v"}))
        .collect();
    let (st, err) = s
        .post("/runs/log-batch", json!({"run_id": run, "params": params}))
        .await;
    assert_error(
        st,
        &err,
        400,
        "INVALID_PARAMETER_VALUE",
        "at most 100 params and tags",
    );
    let (st, err) = s
        .post(
            "/runs/log-batch",
            json!({"run_id": run, "tags": [{"key": "big", "value": "x".repeat(1_000_001)}]}),
        )
        .await;
    assert_error(
        st,
        &err,
        400,
        "INVALID_PARAMETER_VALUE",
        "at most 1000000 bytes",
    );

    // A conflicting param anywhere in the batch: nothing from the batch is stored.
    let (st, err) = s
        .post("/runs/log-batch", json!({"run_id": run, "metrics": [{"key": "new", "value": 1, "timestamp": 1}], "params": [{"key": "q", "value": "1"}, {"key": "p", "value": "2"}], "tags": [{"key": "new", "value": "x"}]}))
        .await;
    assert_error(
        st,
        &err,
        400,
        "INVALID_PARAMETER_VALUE",
        "Changing param values is not allowed",
    );
    let r = s.ok_get("/runs/get", &[("run_id", &run)]).await;
    let data = &r["run"]["data"];
    assert!(
        !data["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["key"] == "new"),
        "{data}"
    );
    assert!(
        !data["params"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["key"] == "q"),
        "{data}"
    );
    assert!(
        !data["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "new"),
        "{data}"
    );
    // A key repeated in one batch: the last value wins (and PostgreSQL does not choke on it).
    s.ok_post("/runs/log-batch", json!({"run_id": run, "tags": [{"key": "rep", "value": "1"}, {"key": "rep", "value": "2"}], "params": [{"key": "same", "value": "x"}, {"key": "same", "value": "x"}]})).await;
    let r = s.ok_get("/runs/get", &[("run_id", &run)]).await;
    assert!(
        r["run"]["data"]["tags"]
            .as_array()
            .unwrap()
            .contains(&json!({"key": "rep", "value": "2"}))
    );
    let (st, err) = s.post("/runs/log-batch", json!({"run_id": run, "params": [{"key": "d", "value": "1"}, {"key": "d", "value": "2"}]})).await;
    assert_error(
        st,
        &err,
        400,
        "INVALID_PARAMETER_VALUE",
        "Duplicate parameter keys",
    );
    let (st, err) = s
        .post(
            "/runs/log-batch",
            json!({"run_id": run, "metrics": [{"key": "x", "value": 1}]}),
        )
        .await;
    assert_error(st, &err, 400, "INVALID_PARAMETER_VALUE", "'timestamp'");
}

async fn run_lifecycle_and_state_checks(b: Backend) {
    let s = TestServer::start(b).await;
    let exp = s.create_experiment("life").await;
    let run = s.create_run(&exp).await;
    s.ok_post("/runs/delete", json!({"run_id": run})).await;
    let r = s.ok_get("/runs/get", &[("run_id", &run)]).await;
    assert_eq!(r["run"]["info"]["lifecycle_stage"], "deleted");
    let (st, err) = s
        .post(
            "/runs/log-metric",
            json!({"run_id": run, "key": "a", "value": 1, "timestamp": 1}),
        )
        .await;
    assert_error(
        st,
        &err,
        400,
        "INVALID_STATE",
        "must be in the 'active' state",
    );
    let v = s
        .ok_post("/runs/search", json!({"experiment_ids": [exp]}))
        .await;
    assert!(
        v.get("runs").is_none(),
        "deleted runs are hidden by default"
    );
    let v = s
        .ok_post(
            "/runs/search",
            json!({"experiment_ids": [exp], "run_view_type": "DELETED_ONLY"}),
        )
        .await;
    assert_eq!(v["runs"].as_array().unwrap().len(), 1);
    s.ok_post("/runs/restore", json!({"run_id": run})).await;
    s.ok_post(
        "/runs/log-metric",
        json!({"run_id": run, "key": "a", "value": 1, "timestamp": 1}),
    )
    .await;
    let (st, err) = s
        .post(
            "/runs/delete",
            json!({"run_id": "0123456789abcdef0123456789abcdef"}),
        )
        .await;
    assert_error(st, &err, 404, "RESOURCE_DOES_NOT_EXIST", "not found");
}

async fn inputs_and_outputs(b: Backend) {
    let s = TestServer::start(b).await;
    let exp = s.create_experiment("io").await;
    let run = s.create_run(&exp).await;
    let ds = json!({"name": "train", "digest": "abc123", "source_type": "local", "source": "{\"uri\": \"x\"}", "schema": "{}"});
    s.ok_post("/runs/log-inputs", json!({"run_id": run, "datasets": [{"tags": [{"key": "mlflow.data.context", "value": "training"}], "dataset": ds}]})).await;
    s.ok_post(
        "/runs/log-inputs",
        json!({"run_id": run, "datasets": [{"dataset": ds}]}),
    )
    .await;
    let lm = s
        .ok_post("/logged-models", json!({"experiment_id": exp, "name": "m"}))
        .await;
    let model_id = lm["model"]["info"]["model_id"].as_str().unwrap().to_owned();
    s.ok_post(
        "/runs/outputs",
        json!({"run_id": run, "models": [{"model_id": model_id, "step": 3}]}),
    )
    .await;
    let r = s.ok_get("/runs/get", &[("run_id", &run)]).await;
    let inputs = r["run"]["inputs"]["dataset_inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 1, "the same dataset is linked once");
    assert_eq!(inputs[0]["dataset"]["name"], "train");
    assert_eq!(
        r["run"]["outputs"]["model_outputs"],
        json!([{"model_id": model_id, "step": 3}])
    );
    let v = s
        .ok_post(
            "/runs/search",
            json!({"experiment_ids": [exp], "filter": "datasets.context = 'training'"}),
        )
        .await;
    assert_eq!(v["runs"].as_array().unwrap().len(), 1);
    let (st, err) = s
        .post(
            "/runs/log-inputs",
            json!({"run_id": run, "datasets": [{"dataset": {"name": "x"}}]}),
        )
        .await;
    assert_error(st, &err, 400, "INVALID_PARAMETER_VALUE", "digest");
}

async fn concurrent_writers_on_one_run(b: Backend) {
    let s = std::sync::Arc::new(TestServer::start(b).await);
    let exp = s.create_experiment("conc").await;
    let run = s.create_run(&exp).await;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                s.ok_post(
                    "/runs/log-metric",
                    json!({"run_id": run, "key": "c", "value": i, "timestamp": w, "step": i}),
                )
                .await;
                // Every writer logs the same param value: all must succeed.
                s.ok_post(
                    "/runs/log-parameter",
                    json!({"run_id": run, "key": "shared", "value": "same"}),
                )
                .await;
                s.ok_post(
                    "/runs/set-tag",
                    json!({"run_id": run, "key": format!("w{w}"), "value": i.to_string()}),
                )
                .await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let h = s
        .ok_get(
            "/metrics/get-history",
            &[("run_id", &run), ("metric_key", "c")],
        )
        .await;
    assert_eq!(h["metrics"].as_array().unwrap().len(), 200);
    let r = s.ok_get("/runs/get", &[("run_id", &run)]).await;
    assert_eq!(r["run"]["data"]["tags"].as_array().unwrap().len(), 9);
    assert_eq!(r["run"]["data"]["metrics"][0]["value"], json!(24.0));
}
