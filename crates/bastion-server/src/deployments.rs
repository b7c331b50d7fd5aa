//! `/api/bastion/v1/deployments`: each registered model's route table and serving settings
//! (see `bastion-serve::deployment`), read with READ and changed with DEPLOY on the model;
//! every change is audited with the request. `/api/bastion/v1/inference-events` reads what
//! serving recorded, for monitoring.

use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use bastion_auth::{Permission, ResourceKind};
use bastion_core::{Error, ErrorCode};
use bastion_serve::ServeError;
use bastion_serve::deployment::{Change, DeployRequest, Deployment};
use bastion_store::meta::EventQuery;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::inference::caller_of;
use crate::params::Params;
use crate::state::Scoped;

type JsonResult = ApiResult<Json<Value>>;

pub fn routes() -> Router<crate::state::AppState> {
    let d = "/api/bastion/v1/deployments/{model_name}";
    Router::new()
        .route("/api/bastion/v1/deployments", get(list))
        .route(d, get(show).post(deploy))
        .route(&format!("{d}/promote"), post(promote))
        .route(&format!("{d}/rollback"), post(rollback))
        .route("/api/bastion/v1/inference-events", get(events))
}

impl From<ServeError> for ApiError {
    fn from(e: ServeError) -> Self {
        match e {
            ServeError::BadRequest(m) | ServeError::Guarded { message: m, .. } => {
                Error::invalid(m).into()
            }
            ServeError::NotFound(m) => Error::not_found(m).into(),
            e @ ServeError::Refused { .. } => Error::invalid_state(e.to_string()).into(),
            ServeError::Conflict(m) => ApiError::from(Error::invalid_state(m))
                .with_status(axum::http::StatusCode::CONFLICT),
            ServeError::Limited(m) => Error::new(ErrorCode::RequestLimitExceeded, m).into(),
            ServeError::Blocked(m) => Error::new(ErrorCode::PermissionDenied, m).into(),
            ServeError::Load(m) => ApiError::from(Error::invalid_state(m))
                .with_status(axum::http::StatusCode::SERVICE_UNAVAILABLE),
            ServeError::Store(e) => e.into(),
            ServeError::Evidence(e) => e.into(),
            e @ ServeError::Model(_) => {
                ApiError::from(Error::new(ErrorCode::InternalError, e.to_string()))
            }
        }
    }
}

fn shown(name: &str, d: &Deployment, revision: i64) -> Value {
    json!({ "model": name, "revision": revision, "deployment": d })
}

/// Every deployment of a model the caller may read.
#[utoipa::path(get, path = "/api/bastion/v1/deployments", tag = "deployments",
    responses((status = 200, description = "`{deployments: [{model, revision, deployment, updated_by, updated_time}]}`")))]
pub(crate) async fn list(s: Scoped) -> JsonResult {
    let all = s.meta.list_deployments().await?;
    let mut out = Vec::new();
    for d in all {
        // Only the models this caller may read.
        let allowed = s
            .auth
            .authorizer
            .permission(&s.principal, ResourceKind::RegisteredModel, &d.model_name)
            .await?;
        if allowed >= Permission::Read {
            out.push(json!({
                "model": d.model_name,
                "revision": d.revision,
                "deployment": d.body,
                "updated_by": d.updated_by,
                "updated_time": d.updated_time,
            }));
        }
    }
    Ok(Json(json!({ "deployments": out })))
}

/// One model's deployment (revision 0 and no stable version when it has none).
#[utoipa::path(get, path = "/api/bastion/v1/deployments/{model_name}", tag = "deployments",
    params(("model_name" = String, Path)),
    responses((status = 200, description = "`{model, revision, deployment}`"), (status = 404, description = "No such registered model")))]
pub(crate) async fn show(s: Scoped, Path(name): Path<String>) -> JsonResult {
    s.meta.get_registered_model(&name).await?;
    let (d, revision) = s.models.deployment(&name).await?;
    Ok(Json(shown(&name, &d, revision)))
}

pub(crate) async fn apply(
    s: &Scoped,
    headers: &axum::http::HeaderMap,
    name: &str,
    request: DeployRequest,
) -> JsonResult {
    let actor = s.principal.actor();
    let (d, revision) = s
        .models
        .change(name, &request, &s.meta, caller_of(headers, &actor))
        .await?;
    Ok(Json(shown(name, &d, revision)))
}

/// Changes a model's deployment: `{change: {action: stable|canary|shadow|clear_shadow|pin|unpin|promote|rollback|configure, …}, guards?, limits?, batching?, rollback?, expected_revision?}`. The version put into service is admitted first.
#[utoipa::path(post, path = "/api/bastion/v1/deployments/{model_name}", tag = "deployments",
    params(("model_name" = String, Path)),
    request_body(content = Object, description = "a deploy request"),
    responses((status = 200, description = "`{model, revision, deployment}`"),
              (status = 400, description = "A change that makes no sense now, or a version admission refuses"),
              (status = 409, description = "The deployment changed since `expected_revision`")))]
pub(crate) async fn deploy(
    s: Scoped,
    headers: axum::http::HeaderMap,
    Path(name): Path<String>,
    p: Params,
) -> JsonResult {
    let request: DeployRequest = p.typed("deploy request")?;
    apply(&s, &headers, &name, request).await
}

/// The canary becomes the stable version.
#[utoipa::path(post, path = "/api/bastion/v1/deployments/{model_name}/promote", tag = "deployments",
    params(("model_name" = String, Path)), responses((status = 200, description = "`{model, revision, deployment}`")))]
pub(crate) async fn promote(
    s: Scoped,
    headers: axum::http::HeaderMap,
    Path(name): Path<String>,
) -> JsonResult {
    apply(&s, &headers, &name, DeployRequest::new(Change::Promote)).await
}

/// Drops the canary, or returns to the previous stable version.
#[utoipa::path(post, path = "/api/bastion/v1/deployments/{model_name}/rollback", tag = "deployments",
    params(("model_name" = String, Path)), responses((status = 200, description = "`{model, revision, deployment}`")))]
pub(crate) async fn rollback(
    s: Scoped,
    headers: axum::http::HeaderMap,
    Path(name): Path<String>,
) -> JsonResult {
    apply(&s, &headers, &name, DeployRequest::new(Change::Rollback)).await
}

/// Inference events of a model in id order (page with `after_id`).
#[utoipa::path(get, path = "/api/bastion/v1/inference-events", tag = "deployments",
    params(("name" = String, Query, description = "the registered model"), ("version" = Option<String>, Query),
           ("since_ms" = Option<i64>, Query), ("after_id" = Option<i64>, Query), ("max_results" = Option<i64>, Query, description = "1-10000, default 1000")),
    responses((status = 200, description = "`{events: [...], next_after_id}`")))]
pub(crate) async fn events(s: Scoped, p: Params) -> JsonResult {
    let limit = p.opt_i64("max_results")?.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(Error::invalid(format!("max_results must be 1-10000, not {limit}")).into());
    }
    let q = EventQuery {
        model_name: Some(p.str("name")?),
        version: p.opt_str("version")?,
        since_ms: p.opt_i64("since_ms")?,
        after_id: p.opt_i64("after_id")?,
        limit,
    };
    let events = s.meta.inference_events(&q).await?;
    let next = events.last().map(|e| e.id);
    Ok(Json(json!({ "events": events, "next_after_id": next })))
}
