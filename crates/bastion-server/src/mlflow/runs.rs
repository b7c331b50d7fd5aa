use axum::Json;

use bastion_core::model::{
    Dataset, DatasetInput, KeyValue, Metric, MetricValue, ModelRef, RunStatus, ViewType,
};
use bastion_core::{Error, limits};
use bastion_store::meta::{BatchLog, RunDraft, RunUpdate, SearchRequest};
use serde_json::json;

use super::{JsonResult, empty, page_json, to_json};
use crate::params::Params;
use crate::state::Scoped;

const RUN_ID: &[&str] = &["run_id", "run_uuid"];

pub async fn create(s: Scoped, p: Params) -> JsonResult {
    let draft = RunDraft {
        experiment_id: p
            .opt_str("experiment_id")?
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "0".into()),
        user_id: p.opt_str("user_id")?,
        run_name: p.opt_str("run_name")?,
        start_time: p.opt_i64("start_time")?,
        tags: p.kv_list("tags")?,
    };
    let run = s.meta.create_run(draft).await?;
    Ok(Json(json!({ "run": to_json(&run) })))
}

pub async fn get(s: Scoped, p: Params) -> JsonResult {
    let run = s.meta.get_run(&p.str_any(RUN_ID)?).await?;
    Ok(Json(json!({ "run": to_json(&run) })))
}

pub async fn update(s: Scoped, p: Params) -> JsonResult {
    let update = RunUpdate {
        status: p
            .opt_str("status")?
            .filter(|v| !v.is_empty())
            .map(|v| RunStatus::parse(&v))
            .transpose()?,
        end_time: p.opt_i64("end_time")?,
        run_name: p.opt_str("run_name")?,
    };
    let info = s.meta.update_run(&p.str_any(RUN_ID)?, update).await?;
    Ok(Json(json!({ "run_info": to_json(&info) })))
}

pub async fn delete(s: Scoped, p: Params) -> JsonResult {
    s.meta.delete_run(&p.str_any(RUN_ID)?).await?;
    empty()
}

pub async fn restore(s: Scoped, p: Params) -> JsonResult {
    s.meta.restore_run(&p.str_any(RUN_ID)?).await?;
    empty()
}

fn metric(p: &Params) -> Result<Metric, Error> {
    Ok(Metric {
        key: p.str("key")?,
        value: MetricValue(p.metric_value("value")?),
        timestamp: p.i64("timestamp")?,
        step: p.opt_i64("step")?.unwrap_or(0),
        run_id: None,
    })
}

pub async fn log_metric(s: Scoped, p: Params) -> JsonResult {
    let run_id = p.str_any(RUN_ID)?;
    s.meta.log_metric(&run_id, &metric(&p)?).await?;
    empty()
}

pub async fn log_param(s: Scoped, p: Params) -> JsonResult {
    let run_id = p.str_any(RUN_ID)?;
    let param = KeyValue::new(p.str("key")?, p.opt_str("value")?.unwrap_or_default());
    s.meta.log_param(&run_id, &param).await?;
    empty()
}

pub async fn set_tag(s: Scoped, p: Params) -> JsonResult {
    let run_id = p.str_any(RUN_ID)?;
    let tag = KeyValue::new(p.str("key")?, p.opt_str("value")?.unwrap_or_default());
    s.meta.set_tag(&run_id, &tag).await?;
    empty()
}

pub async fn delete_tag(s: Scoped, p: Params) -> JsonResult {
    s.meta
        .delete_tag(&p.str_any(RUN_ID)?, &p.str("key")?)
        .await?;
    empty()
}

pub async fn log_batch(s: Scoped, mut p: Params) -> JsonResult {
    if p.body_len > limits::MAX_BATCH_REQUEST_BYTES {
        return Err(Error::invalid(format!(
            "Batched logging API requests must be at most {} bytes, got a request of {} bytes",
            limits::MAX_BATCH_REQUEST_BYTES,
            p.body_len
        ))
        .into());
    }
    let run_id = p.str_any(RUN_ID)?;
    let batch = BatchLog {
        metrics: p
            .take_objects("metrics")?
            .iter()
            .map(metric)
            .collect::<Result<_, _>>()?,
        params: p.kv_list("params")?,
        tags: p.kv_list("tags")?,
    };
    s.meta.log_batch(&run_id, &batch).await?;
    empty()
}

fn model_refs(p: &Params, field: &str) -> Result<Vec<ModelRef>, Error> {
    p.objects(field)?
        .iter()
        .map(|m| {
            Ok(ModelRef {
                model_id: m.str("model_id")?,
                step: m.opt_i64("step")?,
            })
        })
        .collect()
}

pub async fn log_inputs(s: Scoped, p: Params) -> JsonResult {
    let run_id = p.str_any(RUN_ID)?;
    let datasets = p
        .objects("datasets")?
        .iter()
        .map(|d| {
            let ds = d
                .object("dataset")?
                .ok_or_else(|| Error::missing("datasets.dataset"))?;
            Ok(DatasetInput {
                tags: d.kv_list("tags")?,
                dataset: Dataset {
                    name: ds.str("name")?,
                    digest: ds.str("digest")?,
                    source_type: ds.str("source_type")?,
                    source: ds.str("source")?,
                    schema: ds.opt_str("schema")?,
                    profile: ds.opt_str("profile")?,
                },
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    s.meta
        .log_inputs(&run_id, &datasets, &model_refs(&p, "models")?)
        .await?;
    empty()
}

pub async fn log_outputs(s: Scoped, p: Params) -> JsonResult {
    s.meta
        .log_outputs(&p.str_any(RUN_ID)?, &model_refs(&p, "models")?)
        .await?;
    empty()
}

pub async fn search(s: Scoped, p: Params) -> JsonResult {
    let view = match p.opt_str("run_view_type")? {
        Some(v) if !v.is_empty() => ViewType::parse(&v)?,
        _ => ViewType::ActiveOnly,
    };
    let req = SearchRequest {
        experiment_ids: p.str_list("experiment_ids")?,
        filter: p.opt_str("filter")?,
        order_by: p.str_list("order_by")?,
        max_results: p.opt_i64("max_results")?,
        page_token: p.opt_str("page_token")?,
        view,
    };
    let page = s.meta.search_runs(&req).await?;
    page_json("runs", &page.items, page.next_page_token)
}

pub async fn metric_history(s: Scoped, p: Params) -> JsonResult {
    let (metrics, next) = s
        .meta
        .metric_history(
            &p.str_any(RUN_ID)?,
            &p.str("metric_key")?,
            p.opt_i64("max_results")?,
            p.opt_str("page_token")?.as_deref(),
        )
        .await?;
    page_json("metrics", &metrics, next)
}
