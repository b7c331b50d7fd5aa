//! Run search (filter and order_by in SQL), the model registry and MLflow 3 logged models.

mod common;

use common::{Backend, TestServer, assert_error};
use serde_json::{Value, json};

backend_tests!(
    run_search_filters_and_ordering,
    registry_models_versions_aliases,
    logged_models_crud_and_search
);

fn names(v: &Value) -> Vec<String> {
    v["runs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["info"]["run_name"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn run_search_filters_and_ordering(b: Backend) {
    let s = TestServer::start(b).await;
    let exp = s.create_experiment("search").await;
    let other = s.create_experiment("other").await;
    // r0..r4: loss = 0.5 - i/10, param opt alternates, tag owner only on even runs.
    for i in 0..5i64 {
        let v = s.ok_post("/runs/create", json!({"experiment_id": exp, "run_name": format!("r{i}"), "start_time": 100 + i, "user_id": if i == 0 { "Alice" } else { "bob" }})).await;
        let run = v["run"]["info"]["run_id"].as_str().unwrap().to_owned();
        if i != 4 {
            s.ok_post("/runs/log-metric", json!({"run_id": run, "key": "loss", "value": 0.5 - i as f64 / 10.0, "timestamp": 1})).await;
        }
        s.ok_post(
            "/runs/log-parameter",
            json!({"run_id": run, "key": "opt", "value": if i % 2 == 0 { "adam" } else { "sgd" }}),
        )
        .await;
        if i % 2 == 0 {
            s.ok_post(
                "/runs/set-tag",
                json!({"run_id": run, "key": "owner", "value": format!("team-{i}")}),
            )
            .await;
        }
    }
    let v = s
        .ok_post(
            "/runs/create",
            json!({"experiment_id": exp, "run_name": "nan", "start_time": 1}),
        )
        .await;
    let nan_run = v["run"]["info"]["run_id"].as_str().unwrap().to_owned();
    s.ok_post(
        "/runs/log-metric",
        json!({"run_id": nan_run, "key": "loss", "value": "NaN", "timestamp": 1}),
    )
    .await;
    let x = s.create_run(&other).await;
    s.ok_post(
        "/runs/log-metric",
        json!({"run_id": x, "key": "loss", "value": 0.0, "timestamp": 1}),
    )
    .await;

    let q = |filter: &str, order: Vec<&str>| json!({"experiment_ids": [exp], "filter": filter, "order_by": order});
    let v = s
        .ok_post(
            "/runs/search",
            q("metrics.loss < 0.35", vec!["metrics.loss ASC"]),
        )
        .await;
    assert_eq!(names(&v), ["r3", "r2"]);
    let v = s
        .ok_post("/runs/search", q("", vec!["metrics.loss DESC"]))
        .await;
    assert_eq!(
        names(&v),
        ["r0", "r1", "r2", "r3", "nan", "r4"],
        "runs without the metric sort last"
    );
    let v = s
        .ok_post("/runs/search", q("", vec!["metrics.loss ASC"]))
        .await;
    assert_eq!(
        names(&v),
        ["r3", "r2", "r1", "r0", "nan", "r4"],
        "and last ascending too"
    );
    let v = s
        .ok_post(
            "/runs/search",
            q(
                "params.opt = 'adam' AND metrics.loss >= 0.3",
                vec!["attributes.start_time DESC"],
            ),
        )
        .await;
    assert_eq!(names(&v), ["r2", "r0"]);
    let v = s
        .ok_post("/runs/search", q("params.opt != 'adam'", vec![]))
        .await;
    assert_eq!(names(&v), ["r3", "r1"], "default order: start_time DESC");
    let v = s
        .ok_post(
            "/runs/search",
            q("tags.owner LIKE 'team-%'", vec!["tags.owner DESC"]),
        )
        .await;
    assert_eq!(names(&v), ["r4", "r2", "r0"]);
    let v = s
        .ok_post("/runs/search", q("tags.`owner` IS NULL", vec!["run_name"]))
        .await;
    assert_eq!(names(&v), ["nan", "r1", "r3"]);
    let v = s
        .ok_post("/runs/search", q("attributes.user_id LIKE 'alice'", vec![]))
        .await;
    assert!(names(&v).is_empty(), "LIKE is case-sensitive");
    let v = s
        .ok_post(
            "/runs/search",
            q("attributes.user_id ILIKE 'alice'", vec![]),
        )
        .await;
    assert_eq!(names(&v), ["r0"]);
    let v = s
        .ok_post(
            "/runs/search",
            q(
                "run_name IN ('r1', 'r4') AND status = 'RUNNING'",
                vec!["run_name DESC"],
            ),
        )
        .await;
    assert_eq!(names(&v), ["r4", "r1"]);
    let v = s
        .ok_post(
            "/runs/search",
            q(
                "attributes.run_name NOT IN ('r1', 'r4') AND start_time > 100",
                vec!["run_name"],
            ),
        )
        .await;
    assert_eq!(names(&v), ["r2", "r3"]);
    let v = s
        .ok_post(
            "/runs/search",
            json!({"experiment_ids": [exp, other], "filter": "metrics.loss <= 0.0"}),
        )
        .await;
    assert_eq!(
        v["runs"].as_array().unwrap().len(),
        1,
        "searches span the listed experiments"
    );

    // The same search through GET and the query string.
    let v = s
        .ok_get(
            "/runs/search",
            &[
                ("experiment_ids", &exp),
                ("filter", "metrics.loss < 0.35"),
                ("order_by", "metrics.loss ASC"),
            ],
        )
        .await;
    assert_eq!(names(&v), ["r3", "r2"]);

    // Pagination over the same ordering returns every run exactly once.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body =
            json!({"experiment_ids": [exp], "max_results": 2, "order_by": ["metrics.loss DESC"]});
        if let Some(t) = &token {
            body["page_token"] = json!(t);
        }
        let v = s.ok_post("/runs/search", body).await;
        seen.extend(names(&v));
        match v["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["r0", "r1", "r2", "r3", "nan", "r4"]);

    // Bad filters get precise messages; injection attempts are just values.
    for (filter, msg) in [
        (
            "metrics.loss LIKE '%'",
            "Invalid comparator 'LIKE' for metric 'loss'",
        ),
        (
            "metrics.loss < 'x'",
            "Expected numeric value type for metric 'loss'",
        ),
        ("params.opt = 1", "Expected a quoted string value"),
        ("attributes.bogus = 'x'", "Invalid attribute key 'bogus'"),
        ("metrics.loss < 1 OR 1=1", "OR is not supported"),
        ("metrics.loss <", "expected a value"),
        ("foo.bar = 'x'", "invalid entity type 'foo'"),
    ] {
        let (st, err) = s.post("/runs/search", q(filter, vec![])).await;
        assert_error(st, &err, 400, "INVALID_PARAMETER_VALUE", msg);
    }
    let v = s
        .ok_post(
            "/runs/search",
            q("params.opt = 'adam'' OR ''1''=''1'", vec![]),
        )
        .await;
    assert!(names(&v).is_empty());
    let (st, err) = s
        .post(
            "/runs/search",
            json!({"experiment_ids": [exp], "order_by": ["metrics.loss SIDEWAYS"]}),
        )
        .await;
    assert_error(
        st,
        &err,
        400,
        "INVALID_PARAMETER_VALUE",
        "expected ASC or DESC",
    );
    let (st, err) = s
        .post(
            "/runs/search",
            json!({"experiment_ids": ["1; DROP TABLE runs"]}),
        )
        .await;
    assert_error(
        st,
        &err,
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid experiment ID",
    );
}

async fn registry_models_versions_aliases(b: Backend) {
    // MLflow's registry semantics; the production gate has its own tests (production_gate.rs).
    let s = TestServer::start_with(b, |c| c.production_gate = false).await;
    let exp = s.create_experiment("reg").await;
    let run = s.create_run(&exp).await;
    let v = s
        .ok_post(
            "/registered-models/create",
            json!({"name": "m", "tags": [{"key": "o", "value": "me"}], "description": "d"}),
        )
        .await;
    assert_eq!(v["registered_model"]["name"], "m");
    assert_eq!(v["registered_model"]["description"], "d");
    let (st, err) = s
        .post("/registered-models/create", json!({"name": "m"}))
        .await;
    assert_error(st, &err, 400, "RESOURCE_ALREADY_EXISTS", "already exists");
    let (st, err) = s.get("/registered-models/get", &[("name", "nope")]).await;
    assert_error(
        st,
        &err,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Registered Model with name=nope not found",
    );
    s.ok_post("/registered-models/create", json!({"name": "prompt"}))
        .await;
    s.ok_post(
        "/registered-models/set-tag",
        json!({"name": "prompt", "key": "mlflow.prompt.is_prompt", "value": "true"}),
    )
    .await;

    // What the MLflow client sends: untagged models match `!=`.
    let v = s
        .ok_get(
            "/registered-models/search",
            &[
                ("filter", "tag.`mlflow.prompt.is_prompt` != 'true'"),
                ("max_results", "100"),
            ],
        )
        .await;
    let found: Vec<&str> = v["registered_models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(found, ["m"]);
    let v = s
        .ok_get("/registered-models/search", &[("filter", "name LIKE 'p%'")])
        .await;
    assert_eq!(v["registered_models"][0]["name"], "prompt");

    for (source, ok) in [
        (format!("runs:/{run}/model"), true),
        ("mlflow-artifacts:/1/x".to_owned(), true),
        ("s3://bucket/model".to_owned(), true),
        ("/etc/passwd".to_owned(), false),
        ("file:///etc".to_owned(), false),
        (format!("runs:/{run}/../../../etc"), false),
    ] {
        let (st, body) = s
            .post(
                "/model-versions/create",
                json!({"name": "m", "source": source, "run_id": run}),
            )
            .await;
        assert_eq!(st.is_success(), ok, "{source}: {body}");
        if !ok {
            assert_error(st, &body, 400, "INVALID_PARAMETER_VALUE", "source");
        }
    }
    let v = s
        .ok_get("/model-versions/get", &[("name", "m"), ("version", "1")])
        .await;
    let mv = &v["model_version"];
    assert_eq!(
        (
            mv["version"].as_str(),
            mv["current_stage"].as_str(),
            mv["status"].as_str()
        ),
        (Some("1"), Some("None"), Some("READY"))
    );
    assert_eq!(mv["run_id"], run.as_str());
    let u = s
        .ok_get(
            "/model-versions/get-download-uri",
            &[("name", "m"), ("version", "1")],
        )
        .await;
    assert_eq!(
        u["artifact_uri"],
        format!("mlflow-artifacts:/{exp}/{run}/artifacts/model")
    );

    let call = |m: reqwest::Method, p: &'static str, body: Value| {
        let s = &s;
        async move { s.call(m, &format!("/api/2.0/mlflow{p}"), body).await }
    };
    let (st, v) = call(
        reqwest::Method::PATCH,
        "/model-versions/update",
        json!({"name": "m", "version": "2", "description": "two"}),
    )
    .await;
    assert!(st.is_success(), "{v}");
    assert_eq!(v["model_version"]["description"], "two");
    s.ok_post(
        "/model-versions/set-tag",
        json!({"name": "m", "version": "1", "key": "k", "value": "v"}),
    )
    .await;
    let v = s.ok_post("/model-versions/transition-stage", json!({"name": "m", "version": "1", "stage": "production", "archive_existing_versions": false})).await;
    assert_eq!(v["model_version"]["current_stage"], "Production");
    let v = s.ok_post("/model-versions/transition-stage", json!({"name": "m", "version": "2", "stage": "Production", "archive_existing_versions": true})).await;
    assert_eq!(v["model_version"]["current_stage"], "Production");
    let one = s
        .ok_get("/model-versions/get", &[("name", "m"), ("version", "1")])
        .await;
    assert_eq!(one["model_version"]["current_stage"], "Archived");
    let (st, err) = s
        .post(
            "/model-versions/transition-stage",
            json!({"name": "m", "version": "1", "stage": "Prod"}),
        )
        .await;
    assert_error(
        st,
        &err,
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid Model Version stage",
    );

    s.ok_post(
        "/registered-models/alias",
        json!({"name": "m", "alias": "champion", "version": "2"}),
    )
    .await;
    let v = s
        .ok_get(
            "/registered-models/alias",
            &[("name", "m"), ("alias", "champion")],
        )
        .await;
    assert_eq!(v["model_version"]["version"], "2");
    assert_eq!(v["model_version"]["aliases"], json!(["champion"]));
    for bad in ["latest", "v3", "a b"] {
        let (st, err) = s
            .post(
                "/registered-models/alias",
                json!({"name": "m", "alias": bad, "version": "1"}),
            )
            .await;
        assert_error(st, &err, 400, "INVALID_PARAMETER_VALUE", "");
    }
    let (st, err) = s
        .post(
            "/registered-models/alias",
            json!({"name": "m", "alias": "x", "version": "99"}),
        )
        .await;
    assert_error(st, &err, 404, "RESOURCE_DOES_NOT_EXIST", "version=99");
    let m = s.ok_get("/registered-models/get", &[("name", "m")]).await;
    assert_eq!(
        m["registered_model"]["aliases"],
        json!([{"alias": "champion", "version": "2"}])
    );
    let stages: Vec<&str> = m["registered_model"]["latest_versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["current_stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["Archived", "Production", "None"]);
    let v = s
        .ok_post(
            "/registered-models/get-latest-versions",
            json!({"name": "m", "stages": ["Production"]}),
        )
        .await;
    assert_eq!(v["model_versions"][0]["version"], "2");
    let v = s
        .ok_get(
            "/registered-models/get-latest-versions",
            &[("name", "m"), ("stages", "Archived")],
        )
        .await;
    assert_eq!(v["model_versions"][0]["version"], "1");
    let v = s
        .ok_get(
            "/model-versions/search",
            &[
                ("filter", &format!("name='m' AND run_id='{run}'")),
                ("max_results", "10000"),
            ],
        )
        .await;
    let versions: Vec<&str> = v["model_versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["3", "2", "1"]);
    let v = s
        .ok_get("/model-versions/search", &[("filter", "tags.k = 'v'")])
        .await;
    assert_eq!(v["model_versions"].as_array().unwrap().len(), 1);

    let (st, _) = s
        .call(
            reqwest::Method::DELETE,
            "/api/2.0/mlflow/registered-models/alias",
            json!({"name": "m", "alias": "champion"}),
        )
        .await;
    assert!(st.is_success());
    let (st, err) = s
        .get(
            "/registered-models/alias",
            &[("name", "m"), ("alias", "champion")],
        )
        .await;
    assert_error(
        st,
        &err,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "alias champion not found",
    );
    let (st, _) = s
        .call(
            reqwest::Method::DELETE,
            "/api/2.0/mlflow/model-versions/delete-tag",
            json!({"name": "m", "version": "1", "key": "k"}),
        )
        .await;
    assert!(st.is_success());
    let (st, _) = s
        .call(
            reqwest::Method::DELETE,
            "/api/2.0/mlflow/model-versions/delete",
            json!({"name": "m", "version": "3"}),
        )
        .await;
    assert!(st.is_success());
    let (st, err) = s
        .get("/model-versions/get", &[("name", "m"), ("version", "3")])
        .await;
    assert_error(st, &err, 404, "RESOURCE_DOES_NOT_EXIST", "not found");
    let v = s
        .ok_post(
            "/model-versions/create",
            json!({"name": "m", "source": "s3://b/x"}),
        )
        .await;
    assert_eq!(
        v["model_version"]["version"], "4",
        "version numbers are never reused"
    );

    let v = s
        .ok_post(
            "/registered-models/rename",
            json!({"name": "m", "new_name": "m2"}),
        )
        .await;
    assert_eq!(v["registered_model"]["name"], "m2");
    let (st, err) = s
        .post(
            "/registered-models/rename",
            json!({"name": "m2", "new_name": "prompt"}),
        )
        .await;
    assert_error(st, &err, 400, "RESOURCE_ALREADY_EXISTS", "");
    let (st, v) = s
        .call(
            reqwest::Method::PATCH,
            "/api/2.0/mlflow/registered-models/update",
            json!({"name": "m2", "description": "new"}),
        )
        .await;
    assert!(st.is_success());
    assert_eq!(v["registered_model"]["description"], "new");
    let (st, _) = s
        .call(
            reqwest::Method::DELETE,
            "/api/2.0/mlflow/registered-models/delete-tag",
            json!({"name": "m2", "key": "o"}),
        )
        .await;
    assert!(st.is_success());
    let (st, _) = s
        .call(
            reqwest::Method::DELETE,
            "/api/2.0/mlflow/registered-models/delete",
            json!({"name": "m2"}),
        )
        .await;
    assert!(st.is_success());
    let (st, _) = s
        .get("/model-versions/get", &[("name", "m2"), ("version", "1")])
        .await;
    assert_eq!(st.as_u16(), 404);
}

async fn logged_models_crud_and_search(b: Backend) {
    let s = TestServer::start(b).await;
    let exp = s.create_experiment("lm").await;
    let run = s.create_run(&exp).await;
    let v = s
        .ok_post("/logged-models", json!({"experiment_id": exp, "name": "model", "source_run_id": run, "tags": [{"key": "t", "value": "1"}], "params": [{"key": "alpha", "value": "0.1"}]}))
        .await;
    let info = &v["model"]["info"];
    let id = info["model_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("m-"));
    assert_eq!(info["status"], "LOGGED_MODEL_PENDING");
    assert_eq!(
        info["artifact_uri"],
        format!("mlflow-artifacts:/{exp}/models/{id}/artifacts")
    );
    let patch = |p: String, body: Value| {
        let s = &s;
        async move {
            s.call(reqwest::Method::PATCH, &format!("/api/2.0/mlflow{p}"), body)
                .await
        }
    };
    let (st, v) = patch(
        format!("/logged-models/{id}"),
        json!({"model_id": id, "status": "LOGGED_MODEL_READY"}),
    )
    .await;
    assert!(st.is_success(), "{v}");
    assert_eq!(v["model"]["info"]["status"], "LOGGED_MODEL_READY");
    let (st, _) = patch(
        format!("/logged-models/{id}/tags"),
        json!({"tags": [{"key": "u", "value": "2"}]}),
    )
    .await;
    assert!(st.is_success());
    s.ok_post(
        &format!("/logged-models/{id}/params"),
        json!({"params": [{"key": "beta", "value": "2"}]}),
    )
    .await;
    let v = s.ok_get(&format!("/logged-models/{id}"), &[]).await;
    assert_eq!(
        v["model"]["info"]["tags"],
        json!([{"key": "t", "value": "1"}, {"key": "u", "value": "2"}])
    );
    assert_eq!(v["model"]["data"]["params"].as_array().unwrap().len(), 2);
    let (st, _) = s
        .call(
            reqwest::Method::DELETE,
            &format!("/api/2.0/mlflow/logged-models/{id}/tags/t"),
            Value::Null,
        )
        .await;
    assert!(st.is_success());

    s.ok_post(
        "/logged-models",
        json!({"experiment_id": exp, "name": "other"}),
    )
    .await;
    let v = s
        .ok_post(
            "/logged-models/search",
            json!({"experiment_ids": [exp], "filter": "name = 'model'"}),
        )
        .await;
    assert_eq!(v["models"].as_array().unwrap().len(), 1);
    let v = s
        .ok_post(
            "/logged-models/search",
            json!({"experiment_ids": [exp], "filter": "params.beta = '2'"}),
        )
        .await;
    assert_eq!(v["models"][0]["info"]["model_id"], id.as_str());
    let v = s.ok_post("/logged-models/search", json!({"experiment_ids": [exp], "order_by": [{"field_name": "name", "ascending": false}]})).await;
    let order: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["info"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["other", "model"]);
    let v = s
        .ok_post(
            "/logged-models/search",
            json!({"experiment_ids": [exp], "filter": "name = 'sub'"}),
        )
        .await;
    assert_eq!(
        v,
        json!({}),
        "no match is an empty object, as MLflow answers"
    );

    let (st, err) = s
        .post("/logged-models", json!({"experiment_id": "12345"}))
        .await;
    assert_error(st, &err, 404, "RESOURCE_DOES_NOT_EXIST", "12345");
    let (st, err) = patch(format!("/logged-models/{id}"), json!({"status": "DONE"})).await;
    assert_error(
        st,
        &err,
        400,
        "INVALID_PARAMETER_VALUE",
        "Invalid logged model status",
    );
    let (st, err) = s
        .get("/logged-models/m-00000000000000000000000000000000", &[])
        .await;
    assert_error(st, &err, 404, "RESOURCE_DOES_NOT_EXIST", "not found");

    // A version registered from a logged model takes its run and its artifact location.
    s.ok_post("/registered-models/create", json!({"name": "reg"}))
        .await;
    let v = s
        .ok_post(
            "/model-versions/create",
            json!({"name": "reg", "source": format!("models:/{id}"), "model_id": id}),
        )
        .await;
    assert_eq!(v["model_version"]["run_id"], run.as_str());
    let u = s
        .ok_get(
            "/model-versions/get-download-uri",
            &[("name", "reg"), ("version", "1")],
        )
        .await;
    assert_eq!(
        u["artifact_uri"],
        format!("mlflow-artifacts:/{exp}/models/{id}/artifacts")
    );

    let (st, _) = s
        .call(
            reqwest::Method::DELETE,
            &format!("/api/2.0/mlflow/logged-models/{id}"),
            Value::Null,
        )
        .await;
    assert!(st.is_success());
    let (st, _) = s.get(&format!("/logged-models/{id}"), &[]).await;
    assert_eq!(st.as_u16(), 404);
}
