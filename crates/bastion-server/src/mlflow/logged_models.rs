use axum::Json;
use axum::extract::Path;
use bastion_core::Error;
use serde_json::json;

use super::{JsonResult, empty, page_json, to_json};
use crate::params::Params;
use crate::state::Scoped;

pub async fn create(s: Scoped, p: Params) -> JsonResult {
    let m = s
        .meta
        .create_logged_model(
            &p.str("experiment_id")?,
            p.opt_str("name")?.as_deref(),
            p.opt_str("source_run_id")?.as_deref(),
            p.opt_str("model_type")?.as_deref(),
            &p.kv_list("tags")?,
            &p.kv_list("params")?,
        )
        .await?;
    Ok(Json(json!({ "model": to_json(&m) })))
}

pub async fn get(s: Scoped, Path(model_id): Path<String>) -> JsonResult {
    let m = s.meta.get_logged_model(&model_id).await?;
    Ok(Json(json!({ "model": to_json(&m) })))
}

pub async fn finalize(s: Scoped, Path(model_id): Path<String>, p: Params) -> JsonResult {
    let m = s
        .meta
        .finalize_logged_model(&model_id, &p.str("status")?)
        .await?;
    Ok(Json(json!({ "model": to_json(&m) })))
}

pub async fn delete(s: Scoped, Path(model_id): Path<String>) -> JsonResult {
    s.meta.delete_logged_model(&model_id).await?;
    empty()
}

pub async fn set_tags(s: Scoped, Path(model_id): Path<String>, p: Params) -> JsonResult {
    s.meta
        .set_logged_model_tags(&model_id, &p.kv_list("tags")?)
        .await?;
    empty()
}

pub async fn delete_tag(s: Scoped, Path((model_id, key)): Path<(String, String)>) -> JsonResult {
    s.meta.delete_logged_model_tag(&model_id, &key).await?;
    empty()
}

pub async fn log_params(s: Scoped, Path(model_id): Path<String>, p: Params) -> JsonResult {
    s.meta
        .log_logged_model_params(&model_id, &p.kv_list("params")?)
        .await?;
    empty()
}

/// `order_by` here is a list of `{"field_name", "ascending"}` objects.
fn order_by(p: &Params) -> Result<Vec<String>, Error> {
    p.objects("order_by")?
        .iter()
        .map(|o| {
            let field = o.str("field_name")?;
            let asc = o.opt_bool("ascending")?.unwrap_or(true);
            // Field names are identifiers; quote them so a key with spaces stays one token.
            let quoted = match field.split_once('.') {
                Some((prefix, key)) if matches!(prefix, "metrics" | "params" | "tags") => {
                    format!("{prefix}.`{}`", key.replace('`', ""))
                }
                _ => field.clone(),
            };
            Ok(format!("{quoted} {}", if asc { "ASC" } else { "DESC" }))
        })
        .collect()
}

pub async fn search(s: Scoped, p: Params) -> JsonResult {
    let page = s
        .meta
        .search_logged_models(
            &p.str_list("experiment_ids")?,
            p.opt_str("filter")?.as_deref(),
            &order_by(&p)?,
            p.opt_i64("max_results")?,
            p.opt_str("page_token")?.as_deref(),
        )
        .await?;
    page_json("models", &page.items, page.next_page_token)
}
