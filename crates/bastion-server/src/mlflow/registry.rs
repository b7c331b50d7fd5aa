use axum::Json;

use bastion_core::model::KeyValue;
use bastion_store::meta::ModelVersionDraft;
use serde_json::json;

use super::{JsonResult, empty, page_json, to_json};
use bastion_core::ErrorCode;

use crate::error::ApiError;
use crate::params::Params;
use crate::state::Scoped;

pub async fn create_model(s: Scoped, p: Params) -> JsonResult {
    let m = s
        .meta
        .create_registered_model(
            &p.str("name")?,
            &p.kv_list("tags")?,
            p.opt_str("description")?.as_deref(),
        )
        .await?;
    Ok(Json(json!({ "registered_model": to_json(&m) })))
}

pub async fn get_model(s: Scoped, p: Params) -> JsonResult {
    let m = s.meta.get_registered_model(&p.str("name")?).await?;
    Ok(Json(json!({ "registered_model": to_json(&m) })))
}

pub async fn search_models(s: Scoped, p: Params) -> JsonResult {
    let page = s
        .meta
        .search_registered_models(
            p.opt_str("filter")?.as_deref(),
            &p.str_list("order_by")?,
            p.opt_i64("max_results")?,
            p.opt_str("page_token")?.as_deref(),
        )
        .await?;
    page_json("registered_models", &page.items, page.next_page_token)
}

pub async fn rename_model(s: Scoped, p: Params) -> JsonResult {
    let m = s
        .meta
        .rename_registered_model(&p.str("name")?, &p.str("new_name")?)
        .await?;
    Ok(Json(json!({ "registered_model": to_json(&m) })))
}

pub async fn update_model(s: Scoped, p: Params) -> JsonResult {
    let m = s
        .meta
        .update_registered_model(&p.str("name")?, p.opt_str("description")?.as_deref())
        .await?;
    Ok(Json(json!({ "registered_model": to_json(&m) })))
}

pub async fn delete_model(s: Scoped, p: Params) -> JsonResult {
    s.meta.delete_registered_model(&p.str("name")?).await?;
    empty()
}

pub async fn set_model_tag(s: Scoped, p: Params) -> JsonResult {
    let tag = KeyValue::new(p.str("key")?, p.opt_str("value")?.unwrap_or_default());
    s.meta
        .set_registered_model_tag(&p.str("name")?, &tag)
        .await?;
    empty()
}

pub async fn delete_model_tag(s: Scoped, p: Params) -> JsonResult {
    s.meta
        .delete_registered_model_tag(&p.str("name")?, &p.str("key")?)
        .await?;
    empty()
}

pub async fn set_alias(s: Scoped, p: Params) -> JsonResult {
    let (name, alias, version) = (p.str("name")?, p.str("alias")?, p.str("version")?);
    if alias.eq_ignore_ascii_case(PRODUCTION) {
        require_clearance(&s, &name, &version, "the alias 'production'").await?;
    }
    s.meta
        .set_registered_model_alias(&name, &alias, &version)
        .await?;
    empty()
}

const PRODUCTION: &str = "production";

/// Production is where the gate stands: a version gets the `production` alias or the
/// Production stage only with a passing gate decision on its exact digest. A refusal is a
/// security event in the audit log.
async fn require_clearance(
    s: &Scoped,
    name: &str,
    version: &str,
    what: &str,
) -> Result<(), ApiError> {
    if !s.config.production_gate {
        return Ok(());
    }
    // The version must exist before its evidence means anything.
    s.meta.get_model_version(name, version).await?;
    let c = bastion_evidence::gate::clearance(
        &s.meta,
        &s.attestor,
        name,
        version,
        s.config.production_policy.as_ref(),
    )
    .await?;
    if c.ok {
        tracing::info!(model = name, version, decision = ?c.decision, "production gate passed");
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::PermissionDenied,
        format!(
            "{what} needs a passing gate decision for {name}/{version}: {}",
            c.detail
        ),
    )
    .security_event("production_gate"))
}

pub async fn delete_alias(s: Scoped, p: Params) -> JsonResult {
    s.meta
        .delete_registered_model_alias(&p.str("name")?, &p.str("alias")?)
        .await?;
    empty()
}

pub async fn get_by_alias(s: Scoped, p: Params) -> JsonResult {
    let v = s
        .meta
        .get_model_version_by_alias(&p.str("name")?, &p.str("alias")?)
        .await?;
    Ok(Json(json!({ "model_version": to_json(&v) })))
}

pub async fn latest_versions(s: Scoped, p: Params) -> JsonResult {
    let versions = s
        .meta
        .get_latest_versions(&p.str("name")?, &p.str_list("stages")?)
        .await?;
    let mut out = json!({});
    if !versions.is_empty() {
        out["model_versions"] = to_json(&versions);
    }
    Ok(Json(out))
}

pub async fn create_version(s: Scoped, p: Params) -> JsonResult {
    let draft = ModelVersionDraft {
        name: p.str("name")?,
        source: p.str("source")?,
        run_id: p.opt_str("run_id")?,
        tags: p.kv_list("tags")?,
        run_link: p.opt_str("run_link")?,
        description: p.opt_str("description")?,
        model_id: p.opt_str("model_id")?,
    };
    // Signed as registered, then every file scanned; a CRITICAL finding quarantines the
    // version, which the MLflow client reports as a failed registration with the reason.
    let v = bastion_evidence::register_model_version(
        &s.meta,
        s.blobs.as_ref(),
        &s.scans,
        &s.attestor,
        &draft,
        &s.principal.actor(),
    )
    .await?;
    Ok(Json(json!({ "model_version": to_json(&v) })))
}

pub async fn get_version(s: Scoped, p: Params) -> JsonResult {
    let v = s
        .meta
        .get_model_version(&p.str("name")?, &p.str("version")?)
        .await?;
    Ok(Json(json!({ "model_version": to_json(&v) })))
}

pub async fn update_version(s: Scoped, p: Params) -> JsonResult {
    let v = s
        .meta
        .update_model_version(
            &p.str("name")?,
            &p.str("version")?,
            p.opt_str("description")?.as_deref(),
        )
        .await?;
    Ok(Json(json!({ "model_version": to_json(&v) })))
}

pub async fn delete_version(s: Scoped, p: Params) -> JsonResult {
    s.meta
        .delete_model_version(&p.str("name")?, &p.str("version")?)
        .await?;
    empty()
}

pub async fn search_versions(s: Scoped, p: Params) -> JsonResult {
    let page = s
        .meta
        .search_model_versions(
            p.opt_str("filter")?.as_deref(),
            &p.str_list("order_by")?,
            p.opt_i64("max_results")?,
            p.opt_str("page_token")?.as_deref(),
        )
        .await?;
    page_json("model_versions", &page.items, page.next_page_token)
}

pub async fn transition_stage(s: Scoped, p: Params) -> JsonResult {
    let (name, version, stage) = (p.str("name")?, p.str("version")?, p.str("stage")?);
    if stage.eq_ignore_ascii_case(PRODUCTION) {
        require_clearance(&s, &name, &version, "the Production stage").await?;
    }
    let v = s
        .meta
        .transition_model_version_stage(
            &name,
            &version,
            &stage,
            p.opt_bool("archive_existing_versions")?.unwrap_or(false),
        )
        .await?;
    Ok(Json(json!({ "model_version": to_json(&v) })))
}

pub async fn set_version_tag(s: Scoped, p: Params) -> JsonResult {
    let tag = KeyValue::new(p.str("key")?, p.opt_str("value")?.unwrap_or_default());
    s.meta
        .set_model_version_tag(&p.str("name")?, &p.str("version")?, &tag)
        .await?;
    empty()
}

pub async fn delete_version_tag(s: Scoped, p: Params) -> JsonResult {
    s.meta
        .delete_model_version_tag(&p.str("name")?, &p.str("version")?, &p.str("key")?)
        .await?;
    empty()
}

pub async fn download_uri(s: Scoped, p: Params) -> JsonResult {
    let uri = s
        .meta
        .model_version_download_uri(&p.str("name")?, &p.str("version")?)
        .await?;
    Ok(Json(json!({ "artifact_uri": uri })))
}
