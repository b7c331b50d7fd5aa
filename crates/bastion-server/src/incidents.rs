//! `/api/bastion/v1/incidents`: what the monitor's alerts opened, with the responses carried
//! out. Listing shows the incidents of models the caller may read; one incident is addressed
//! under its model (`/deployments/{model}/incidents/{id}`), read with READ and acknowledged
//! or resolved with DEPLOY on the model, audited with the request.

use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use bastion_auth::{Permission, ResourceKind};
use bastion_core::Error;
use bastion_store::meta::{
    Incident, IncidentQuery, STATUS_ACKNOWLEDGED, STATUS_OPEN, STATUS_RESOLVED,
};
use serde_json::{Value, json};

use crate::error::ApiResult;
use crate::params::Params;
use crate::state::Scoped;

type JsonResult = ApiResult<Json<Value>>;

pub fn routes() -> Router<crate::state::AppState> {
    let one = "/api/bastion/v1/deployments/{model_name}/incidents/{id}";
    Router::new()
        .route("/api/bastion/v1/incidents", get(list))
        .route(one, get(show))
        .route(&format!("{one}/acknowledge"), post(acknowledge))
        .route(&format!("{one}/resolve"), post(resolve))
}

/// Incidents newest first: `status` (open, acknowledged, resolved), `model`, `before_id`
/// (the next page), `max_results` (1-1000, default 100); only models the caller may read.
#[utoipa::path(get, path = "/api/bastion/v1/incidents", tag = "monitoring",
    params(("status" = Option<String>, Query), ("model" = Option<String>, Query),
           ("before_id" = Option<i64>, Query), ("max_results" = Option<i64>, Query)),
    responses((status = 200, description = "`{incidents: [...], next_before_id}`")))]
pub(crate) async fn list(s: Scoped, p: Params) -> JsonResult {
    let limit = p.opt_i64("max_results")?.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid(format!("max_results must be 1-1000, not {limit}")).into());
    }
    let status = p.opt_str("status")?;
    if let Some(st) = &status
        && ![STATUS_OPEN, STATUS_ACKNOWLEDGED, STATUS_RESOLVED].contains(&st.as_str())
    {
        return Err(Error::invalid(format!(
            "status must be open, acknowledged or resolved, not '{}'",
            st.escape_debug()
        ))
        .into());
    }
    let q = IncidentQuery {
        status,
        model_name: p.opt_str("model")?,
        before_id: p.opt_i64("before_id")?,
        limit,
    };
    let found = s.meta.list_incidents(&q).await?;
    let next = (found.len() as i64 == limit).then(|| found.last().map(|i| i.id));
    let mut out = Vec::with_capacity(found.len());
    for i in found {
        if readable(&s, &i).await? {
            out.push(i);
        }
    }
    Ok(Json(
        json!({ "incidents": out, "next_before_id": next.flatten() }),
    ))
}

async fn readable(s: &Scoped, i: &Incident) -> ApiResult<bool> {
    let p = s
        .auth
        .authorizer
        .permission(&s.principal, ResourceKind::RegisteredModel, &i.model_name)
        .await?;
    Ok(p >= Permission::Read)
}

/// The incident and its responses, if it is this model's (the route's permission is on the
/// model).
async fn incident_of(s: &Scoped, model: &str, id: i64) -> JsonResult {
    let (incident, responses) = s.meta.get_incident(id).await?;
    if incident.model_name != model {
        return Err(Error::not_found(format!("model '{model}' has no incident {id}")).into());
    }
    Ok(Json(
        json!({ "incident": incident, "responses": responses }),
    ))
}

/// One incident with the responses carried out for it.
#[utoipa::path(get, path = "/api/bastion/v1/deployments/{model_name}/incidents/{id}", tag = "monitoring",
    params(("model_name" = String, Path), ("id" = i64, Path)),
    responses((status = 200, description = "`{incident, responses}`"), (status = 404, description = "No such incident of this model")))]
pub(crate) async fn show(s: Scoped, Path((model, id)): Path<(String, i64)>) -> JsonResult {
    incident_of(&s, &model, id).await
}

pub(crate) async fn set_status(
    s: Scoped,
    model: String,
    id: i64,
    p: Params,
    status: &str,
) -> JsonResult {
    let Json(_) = incident_of(&s, &model, id).await?;
    let note = p.opt_str("note")?.unwrap_or_default();
    if note.len() > 4096 {
        return Err(Error::invalid("note: at most 4096 bytes").into());
    }
    let by = s.principal.actor();
    s.meta.set_incident_status(id, status, &by, &note).await?;
    incident_of(&s, &model, id).await
}

/// Marks the incident as seen by someone who handles it: `{note?}`.
#[utoipa::path(post, path = "/api/bastion/v1/deployments/{model_name}/incidents/{id}/acknowledge", tag = "monitoring",
    params(("model_name" = String, Path), ("id" = i64, Path)),
    responses((status = 200, description = "`{incident, responses}`"), (status = 400, description = "Not open")))]
pub(crate) async fn acknowledge(
    s: Scoped,
    Path((model, id)): Path<(String, i64)>,
    p: Params,
) -> JsonResult {
    set_status(s, model, id, p, STATUS_ACKNOWLEDGED).await
}

/// Closes the incident: `{note?}`. A later alert with its key opens a new one.
#[utoipa::path(post, path = "/api/bastion/v1/deployments/{model_name}/incidents/{id}/resolve", tag = "monitoring",
    params(("model_name" = String, Path), ("id" = i64, Path)),
    responses((status = 200, description = "`{incident, responses}`"), (status = 400, description = "Already resolved")))]
pub(crate) async fn resolve(
    s: Scoped,
    Path((model, id)): Path<(String, i64)>,
    p: Params,
) -> JsonResult {
    set_status(s, model, id, p, STATUS_RESOLVED).await
}
