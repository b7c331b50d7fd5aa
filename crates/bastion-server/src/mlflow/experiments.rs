use axum::Json;

use bastion_core::model::ViewType;
use serde_json::json;

use super::{JsonResult, empty, page_json, to_json};
use crate::params::Params;
use crate::state::Scoped;

pub async fn create(s: Scoped, p: Params) -> JsonResult {
    let name = p.str("name")?;
    let location = p.opt_str("artifact_location")?;
    let tags = p.kv_list("tags")?;
    let id = s
        .meta
        .create_experiment(&name, location.as_deref(), &tags)
        .await?;
    Ok(Json(json!({ "experiment_id": id })))
}

pub async fn get(s: Scoped, p: Params) -> JsonResult {
    let e = s.meta.get_experiment(&p.str("experiment_id")?).await?;
    Ok(Json(json!({ "experiment": to_json(&e) })))
}

pub async fn get_by_name(s: Scoped, p: Params) -> JsonResult {
    let e = s
        .meta
        .get_experiment_by_name(&p.str("experiment_name")?)
        .await?;
    Ok(Json(json!({ "experiment": to_json(&e) })))
}

pub async fn search(s: Scoped, p: Params) -> JsonResult {
    let view = match p.opt_str("view_type")? {
        Some(v) if !v.is_empty() => ViewType::parse(&v)?,
        _ => ViewType::ActiveOnly,
    };
    let (experiments, next) = s
        .meta
        .search_experiments(
            p.opt_str("filter")?.as_deref(),
            &p.str_list("order_by")?,
            p.opt_i64("max_results")?,
            p.opt_str("page_token")?.as_deref(),
            view,
        )
        .await?;
    page_json("experiments", &experiments, next)
}

pub async fn update(s: Scoped, p: Params) -> JsonResult {
    let id = p.str("experiment_id")?;
    if let Some(name) = p.opt_str("new_name")?.filter(|n| !n.is_empty()) {
        s.meta.rename_experiment(&id, &name).await?;
    } else {
        s.meta.get_experiment(&id).await?;
    }
    empty()
}

pub async fn delete(s: Scoped, p: Params) -> JsonResult {
    s.meta.delete_experiment(&p.str("experiment_id")?).await?;
    empty()
}

pub async fn restore(s: Scoped, p: Params) -> JsonResult {
    s.meta.restore_experiment(&p.str("experiment_id")?).await?;
    empty()
}

pub async fn set_tag(s: Scoped, p: Params) -> JsonResult {
    let tag =
        bastion_core::model::KeyValue::new(p.str("key")?, p.opt_str("value")?.unwrap_or_default());
    s.meta
        .set_experiment_tag(&p.str("experiment_id")?, &tag)
        .await?;
    empty()
}

pub async fn delete_tag(s: Scoped, p: Params) -> JsonResult {
    s.meta
        .delete_experiment_tag(&p.str("experiment_id")?, &p.str("key")?)
        .await?;
    empty()
}
