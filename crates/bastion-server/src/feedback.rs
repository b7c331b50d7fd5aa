//! `POST /api/bastion/feedback`: the true labels of answered requests, sent back by the
//! application once it knows them (a chargeback confirmed, a ticket closed). They are joined
//! to the answers by the request id the caller saw (`x-request-id`) and measured by the
//! monitor in windows of labelled rows. Sending labels needs INVOKE on the model: whoever
//! may ask the model may tell it how it did.

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use bastion_auth::{Permission, ResourceKind};
use bastion_core::{Error, ErrorCode};
use bastion_store::meta::FeedbackItem;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::state::Scoped;

pub fn routes() -> Router<crate::state::AppState> {
    Router::new().route("/api/bastion/feedback", post(record))
}

#[derive(Deserialize)]
struct Body {
    model: String,
    feedback: Vec<Item>,
}

/// One request's labels: `label` for a one-row request, `labels` (row order) for more.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    request_id: String,
    #[serde(default)]
    label: Option<Value>,
    #[serde(default)]
    labels: Option<Vec<Value>>,
}

/// Keeps labels for a model's answered requests:
/// `{model, feedback: [{request_id, label | labels}]}` (at most 10,000 requests). Answers
/// `{stored, duplicates, unmatched}`: labels kept, labels for rows already labelled (the
/// first stands), and request ids with no answer of this model (not kept).
#[utoipa::path(post, path = "/api/bastion/feedback", tag = "monitoring",
    responses((status = 200, description = "`{stored, duplicates, unmatched: [request_id]}`"),
              (status = 400, description = "A malformed item (named), or more labels than the request answered rows"),
              (status = 403, description = "No INVOKE permission on the model")))]
pub(crate) async fn record(s: Scoped, p: Params) -> ApiResult<Json<Value>> {
    let body: Body = p.typed("feedback")?;
    let has = s
        .auth
        .authorizer
        .permission(&s.principal, ResourceKind::RegisteredModel, &body.model)
        .await?;
    if has < Permission::Invoke {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "Permission denied: user '{}' ({}) lacks INVOKE permission on registered_model:{}",
                s.principal.name, s.principal.role, body.model
            ),
        )
        .with_status(StatusCode::FORBIDDEN));
    }
    let mut items = Vec::with_capacity(body.feedback.len());
    for (i, it) in body.feedback.into_iter().enumerate() {
        let labels = match (it.label, it.labels) {
            (Some(l), None) => vec![l],
            (None, Some(ls)) => ls,
            _ => {
                return Err(Error::invalid(format!(
                    "feedback item {i}: give either `label` (one row) or `labels` (row order)"
                ))
                .into());
            }
        };
        items.push(FeedbackItem {
            request_id: it.request_id,
            labels,
        });
    }
    let receipt = s
        .meta
        .record_feedback(&body.model, &items, &s.principal.actor())
        .await?;
    // Only models that got labels become series: a name alone must not add one.
    if receipt.stored > 0 {
        metrics::counter!("bastion_feedback_labels_total", "model" => body.model.clone())
            .increment(receipt.stored);
    }
    Ok(Json(json!(receipt)))
}
