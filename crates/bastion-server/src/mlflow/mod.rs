//! The MLflow REST API (tracking, registry, logged models, artifact proxy), as the official
//! `mlflow` client calls it. Handlers only translate between HTTP and `bastion-store` calls.

mod artifacts;
mod experiments;
mod logged_models;
mod registry;
mod runs;

use axum::Json;
use axum::Router;
use axum::routing::{delete, get, patch, post};
use serde_json::{Value, json};

use crate::error::ApiResult;
use crate::state::AppState;

pub(crate) type JsonResult = ApiResult<Json<Value>>;

pub(crate) fn empty() -> JsonResult {
    Ok(Json(json!({})))
}

/// Serializes a value known to be serializable (the data model), falling back to null rather
/// than panicking.
pub fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// `{key: [...], "next_page_token": "..."}`, leaving out what is empty, as protobuf JSON does.
pub(crate) fn page_json<T: serde::Serialize>(
    key: &str,
    items: &[T],
    next: Option<String>,
) -> JsonResult {
    let mut out = json!({});
    if !items.is_empty() {
        out[key] = to_json(&items);
    }
    if let Some(t) = next {
        out["next_page_token"] = json!(t);
    }
    Ok(Json(out))
}

pub fn routes() -> Router<AppState> {
    let api = "/api/2.0/mlflow";
    Router::new()
        // experiments
        .route(
            &format!("{api}/experiments/create"),
            post(experiments::create),
        )
        .route(&format!("{api}/experiments/get"), get(experiments::get))
        .route(
            &format!("{api}/experiments/get-by-name"),
            get(experiments::get_by_name),
        )
        .route(
            &format!("{api}/experiments/search"),
            get(experiments::search).post(experiments::search),
        )
        .route(
            &format!("{api}/experiments/update"),
            post(experiments::update),
        )
        .route(
            &format!("{api}/experiments/delete"),
            post(experiments::delete),
        )
        .route(
            &format!("{api}/experiments/restore"),
            post(experiments::restore),
        )
        .route(
            &format!("{api}/experiments/set-experiment-tag"),
            post(experiments::set_tag),
        )
        .route(
            &format!("{api}/experiments/delete-experiment-tag"),
            post(experiments::delete_tag),
        )
        // runs
        .route(&format!("{api}/runs/create"), post(runs::create))
        .route(&format!("{api}/runs/get"), get(runs::get))
        .route(&format!("{api}/runs/update"), post(runs::update))
        .route(&format!("{api}/runs/delete"), post(runs::delete))
        .route(&format!("{api}/runs/restore"), post(runs::restore))
        .route(
            &format!("{api}/runs/search"),
            post(runs::search).get(runs::search),
        )
        .route(&format!("{api}/runs/log-metric"), post(runs::log_metric))
        .route(&format!("{api}/runs/log-parameter"), post(runs::log_param))
        .route(&format!("{api}/runs/log-batch"), post(runs::log_batch))
        .route(&format!("{api}/runs/set-tag"), post(runs::set_tag))
        .route(&format!("{api}/runs/delete-tag"), post(runs::delete_tag))
        .route(&format!("{api}/runs/log-inputs"), post(runs::log_inputs))
        .route(&format!("{api}/runs/outputs"), post(runs::log_outputs))
        .route(
            &format!("{api}/metrics/get-history"),
            get(runs::metric_history),
        )
        .route(&format!("{api}/artifacts/list"), get(artifacts::list_run))
        // registered models
        .route(
            &format!("{api}/registered-models/create"),
            post(registry::create_model),
        )
        .route(
            &format!("{api}/registered-models/get"),
            get(registry::get_model),
        )
        .route(
            &format!("{api}/registered-models/search"),
            get(registry::search_models),
        )
        .route(
            &format!("{api}/registered-models/rename"),
            post(registry::rename_model),
        )
        .route(
            &format!("{api}/registered-models/update"),
            patch(registry::update_model),
        )
        .route(
            &format!("{api}/registered-models/delete"),
            delete(registry::delete_model),
        )
        .route(
            &format!("{api}/registered-models/set-tag"),
            post(registry::set_model_tag),
        )
        .route(
            &format!("{api}/registered-models/delete-tag"),
            delete(registry::delete_model_tag),
        )
        .route(
            &format!("{api}/registered-models/alias"),
            post(registry::set_alias)
                .delete(registry::delete_alias)
                .get(registry::get_by_alias),
        )
        .route(
            &format!("{api}/registered-models/get-latest-versions"),
            post(registry::latest_versions).get(registry::latest_versions),
        )
        // model versions
        .route(
            &format!("{api}/model-versions/create"),
            post(registry::create_version),
        )
        .route(
            &format!("{api}/model-versions/get"),
            get(registry::get_version),
        )
        .route(
            &format!("{api}/model-versions/update"),
            patch(registry::update_version),
        )
        .route(
            &format!("{api}/model-versions/delete"),
            delete(registry::delete_version),
        )
        .route(
            &format!("{api}/model-versions/search"),
            get(registry::search_versions),
        )
        .route(
            &format!("{api}/model-versions/transition-stage"),
            post(registry::transition_stage),
        )
        .route(
            &format!("{api}/model-versions/set-tag"),
            post(registry::set_version_tag),
        )
        .route(
            &format!("{api}/model-versions/delete-tag"),
            delete(registry::delete_version_tag),
        )
        .route(
            &format!("{api}/model-versions/get-download-uri"),
            get(registry::download_uri),
        )
        // logged models (MLflow 3)
        .route(&format!("{api}/logged-models"), post(logged_models::create))
        .route(
            &format!("{api}/logged-models/search"),
            post(logged_models::search),
        )
        .route(
            &format!("{api}/logged-models/{{model_id}}"),
            get(logged_models::get)
                .patch(logged_models::finalize)
                .delete(logged_models::delete),
        )
        .route(
            &format!("{api}/logged-models/{{model_id}}/tags"),
            patch(logged_models::set_tags),
        )
        .route(
            &format!("{api}/logged-models/{{model_id}}/tags/{{key}}"),
            delete(logged_models::delete_tag),
        )
        .route(
            &format!("{api}/logged-models/{{model_id}}/params"),
            post(logged_models::log_params),
        )
        .route(
            &format!("{api}/logged-models/{{model_id}}/artifacts/directories"),
            get(artifacts::list_logged_model),
        )
        // artifact proxy
        .route("/api/2.0/mlflow-artifacts/artifacts", get(artifacts::list))
        .route(
            "/api/2.0/mlflow-artifacts/artifacts/{*path}",
            get(artifacts::download)
                .put(artifacts::upload)
                .delete(artifacts::delete),
        )
        .route("/api/3.0/mlflow/server-info", get(server_info))
}

async fn server_info() -> JsonResult {
    Ok(Json(json!({
        "store_type": "SqlStore",
        "workspaces_enabled": false,
        "trace_archival_enabled": false,
        "multipart_uploads_enabled": false,
        "multipart_downloads_enabled": false,
        "presigned_upload_run_id_supported": false,
        "presigned_upload_model_id_supported": false,
        "features_enabled": {"gateway": false}
    })))
}
