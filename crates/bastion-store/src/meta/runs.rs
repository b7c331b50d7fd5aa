//! Runs and what is logged to them: metrics, params, tags, inputs and outputs.

use std::collections::HashMap;

use bastion_core::limits::{
    self, KeyKind, MAX_PARAM_VALUE_LENGTH, MAX_RUN_NAME_LENGTH, MAX_TAG_VALUE_LENGTH,
};
use bastion_core::model::{
    DatasetInput, KeyValue, LifecycleStage, Metric, ModelRef, Run, RunData, RunInfo, RunInputs,
    RunOutputs, RunStatus,
};
use bastion_core::{Error, ids, time};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::MetaStore;
use super::names::random_run_name;
use super::rows::{self, ID_CHUNK};
use super::sql::{Bind, Sql};
use super::write::WriteOn;
use crate::error::StoreResult;

pub(crate) const RUN_NAME_TAG: &str = "mlflow.runName";

/// What a client supplies to create a run.
#[derive(Debug, Clone, Default)]
pub struct RunDraft {
    pub experiment_id: String,
    pub user_id: Option<String>,
    pub run_name: Option<String>,
    pub start_time: Option<i64>,
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, Default)]
pub struct RunUpdate {
    pub status: Option<RunStatus>,
    pub end_time: Option<i64>,
    pub run_name: Option<String>,
}

/// One `log-batch` request.
#[derive(Debug, Clone, Default)]
pub struct BatchLog {
    pub metrics: Vec<Metric>,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
}

pub(crate) const RUN_COLUMNS: &str = "r.run_uuid, r.experiment_id, r.name, r.user_id, r.status, r.start_time, r.end_time, r.artifact_uri, r.lifecycle_stage";

pub(crate) fn run_info(row: &AnyRow) -> StoreResult<RunInfo> {
    let id: String = row.try_get("run_uuid")?;
    let experiment_id: i64 = row.try_get("experiment_id")?;
    let status: String = row.try_get("status")?;
    Ok(RunInfo {
        run_uuid: id.clone(),
        experiment_id: experiment_id.to_string(),
        run_name: row.try_get("name")?,
        user_id: row.try_get("user_id")?,
        status: RunStatus::parse(&status)?,
        start_time: row.try_get("start_time")?,
        end_time: row.try_get("end_time")?,
        artifact_uri: row.try_get("artifact_uri")?,
        lifecycle_stage: rows::stage(row, "lifecycle_stage")?,
        run_id: id,
    })
}

fn validate_metric(m: &Metric) -> StoreResult<()> {
    limits::validate_key(KeyKind::Metric, &m.key)?;
    Ok(())
}

fn validate_param(p: &KeyValue) -> StoreResult<()> {
    limits::validate_key(KeyKind::Param, &p.key)?;
    limits::validate_length("Param value", &p.key, &p.value, MAX_PARAM_VALUE_LENGTH)?;
    Ok(())
}

pub(crate) fn validate_tag(t: &KeyValue) -> StoreResult<()> {
    limits::validate_key(KeyKind::Tag, &t.key)?;
    limits::validate_length("Tag value", &t.key, &t.value, MAX_TAG_VALUE_LENGTH)?;
    Ok(())
}

fn not_found(run_id: &str) -> Error {
    Error::not_found(format!(
        "Run with id={} not found",
        limits::truncate(run_id, 64)
    ))
}

/// The guard of every fast-path write: nothing is written unless run `$1` exists and is active.
const ACTIVE_RUN: &str =
    "EXISTS (SELECT 1 FROM runs WHERE run_uuid = $1 AND lifecycle_stage = 'active')";

/// Rows per multi-row INSERT of metrics (6 values each; params take the same).
const ROWS_PER_STATEMENT: usize = rows::rows_per_statement(6);

/// Inserts metrics with multi-row statements; duplicates are ignored, and the `metrics_latest`
/// trigger keeps `latest_metrics` current.
async fn insert_metrics(
    conn: &mut AnyConnection,
    run_id: &str,
    metrics: &[Metric],
) -> StoreResult<()> {
    for chunk in metrics.chunks(ROWS_PER_STATEMENT) {
        let mut q =
            Sql::new("INSERT INTO metrics (run_uuid, key, value, timestamp, step, is_nan) VALUES ");
        for (i, m) in chunk.iter().enumerate() {
            let (value, is_nan) = rows::stored_metric_value(m.value.0);
            q.push(if i == 0 { "(" } else { ", (" });
            q.bind(run_id)
                .push(", ")
                .bind(m.key.as_str())
                .push(", ")
                .bind(value)
                .push(", ");
            q.bind(m.timestamp)
                .push(", ")
                .bind(m.step)
                .push(", ")
                .bind(is_nan)
                .push(")");
        }
        q.push(" ON CONFLICT DO NOTHING");
        q.query().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Inserts params; a key already logged with another value is MLflow's "changing param values"
/// error (the caller's transaction then rolls back).
async fn insert_params(
    conn: &mut AnyConnection,
    run_id: &str,
    params: &[KeyValue],
) -> StoreResult<()> {
    for chunk in params.chunks(ROWS_PER_STATEMENT) {
        let mut q = Sql::new("INSERT INTO params (run_uuid, key, value) VALUES ");
        for (i, p) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            q.bind(run_id)
                .push(", ")
                .bind(p.key.as_str())
                .push(", ")
                .bind(p.value.as_str())
                .push(")");
        }
        q.push(" ON CONFLICT DO NOTHING");
        q.query().execute(&mut *conn).await?;
        let mut q = Sql::new("SELECT key, value FROM params WHERE run_uuid = ");
        q.bind(run_id)
            .push(" AND key IN ")
            .bind_list(chunk.iter().map(|p| p.key.as_str()));
        let stored: HashMap<String, String> = q
            .query()
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("key")?, r.try_get("value")?)))
            .collect::<StoreResult<_>>()?;
        for p in chunk {
            if let Some(old) = stored.get(&p.key)
                && *old != p.value
            {
                return Err(param_change(run_id, p, old));
            }
        }
    }
    Ok(())
}

fn param_change(run_id: &str, p: &KeyValue, old: &str) -> crate::StoreError {
    Error::invalid(format!(
        "Changing param values is not allowed. Param with key='{}' was already logged with value='{}' for run ID='{run_id}'. Attempted logging new value '{}'.",
        p.key,
        limits::truncate(old, 200),
        limits::truncate(&p.value, 200)
    ))
    .into()
}

/// Upserts tags with multi-row statements, keeping the run's name equal to `mlflow.runName`.
async fn upsert_tags(conn: &mut AnyConnection, run_id: &str, tags: &[KeyValue]) -> StoreResult<()> {
    let owner = [Bind::from(run_id)];
    rows::upsert_kv(
        conn,
        &rows::KvOwner {
            table: "tags",
            columns: "run_uuid",
            values: &owner,
        },
        tags,
    )
    .await?;
    if let Some(name) = tags.iter().rev().find(|t| t.key == RUN_NAME_TAG) {
        sqlx::query("UPDATE runs SET name = $1 WHERE run_uuid = $2")
            .bind(&name.value)
            .bind(run_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl MetaStore {
    pub async fn create_run(&self, draft: RunDraft) -> StoreResult<Run> {
        let experiment = self.active_experiment(&draft.experiment_id).await?;
        for t in &draft.tags {
            validate_tag(t)?;
        }
        let tag_name = draft
            .tags
            .iter()
            .find(|t| t.key == RUN_NAME_TAG)
            .map(|t| t.value.clone());
        let name = match (draft.run_name.filter(|n| !n.is_empty()), tag_name) {
            (Some(given), Some(tagged)) if given != tagged => {
                return Err(Error::invalid(format!(
                    "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values (run_name='{}', mlflow.runName='{}').",
                    limits::truncate(&given, 100),
                    limits::truncate(&tagged, 100)
                ))
                .into());
            }
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => random_run_name(),
        };
        limits::validate_length("Run name", &name, &name, MAX_RUN_NAME_LENGTH)?;
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let artifact_uri = format!(
            "{}/{run_id}/artifacts",
            experiment.artifact_location.trim_end_matches('/')
        );
        let start_time = draft.start_time.unwrap_or_else(time::now_ms);
        let user_id = draft.user_id.unwrap_or_default();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO runs (run_uuid, experiment_id, name, user_id, status, start_time, end_time, artifact_uri, lifecycle_stage) \
             VALUES ($1, $2, $3, $4, 'RUNNING', $5, NULL, $6, 'active')",
        )
        .bind(&run_id)
        .bind(experiment.experiment_id.parse::<i64>().unwrap_or_default())
        .bind(&name)
        .bind(&user_id)
        .bind(start_time)
        .bind(&artifact_uri)
        .execute(&mut *tx)
        .await?;
        let mut tags = draft.tags.clone();
        tags.retain(|t| t.key != RUN_NAME_TAG);
        tags.push(KeyValue::new(RUN_NAME_TAG, name.clone()));
        upsert_tags(&mut tx, &run_id, &tags).await?;
        tx.commit().await?;
        self.get_run(&run_id).await
    }

    async fn run_row(&self, run_id: &str) -> StoreResult<AnyRow> {
        query_fmt!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.run_uuid = $1")
            .bind(run_id)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| not_found(run_id).into())
    }

    pub async fn get_run_info(&self, run_id: &str) -> StoreResult<RunInfo> {
        run_info(&self.run_row(run_id).await?)
    }

    pub async fn get_run(&self, run_id: &str) -> StoreResult<Run> {
        let info = self.get_run_info(run_id).await?;
        let mut runs = self.attach_run_data(vec![info]).await?;
        runs.pop().ok_or_else(|| not_found(run_id).into())
    }

    /// Loads latest metrics, params, tags, inputs and outputs for many runs in a few queries.
    pub(crate) async fn attach_run_data(&self, infos: Vec<RunInfo>) -> StoreResult<Vec<Run>> {
        let ids: Vec<String> = infos.iter().map(|i| i.run_uuid.clone()).collect();
        let mut metrics: HashMap<String, Vec<Metric>> = HashMap::new();
        let mut inputs: HashMap<String, RunInputs> = HashMap::new();
        let mut outputs: HashMap<String, RunOutputs> = HashMap::new();
        for chunk in ids.chunks(ID_CHUNK) {
            let mut q = Sql::new(
                "SELECT run_uuid, key, CASE WHEN is_nan THEN NULL ELSE value END AS value, timestamp, step \
                 FROM latest_metrics WHERE run_uuid IN ",
            );
            q.bind_list(chunk.iter().cloned()).push(" ORDER BY key");
            for row in q.query().fetch_all(&self.read).await? {
                let id: String = row.try_get("run_uuid")?;
                metrics.entry(id).or_default().push(rows::metric(&row)?);
            }
            let mut q = Sql::new(
                "SELECT i.run_uuid, i.tags_json, d.name, d.digest, d.source_type, d.source, d.schema, d.profile \
                 FROM run_dataset_inputs i JOIN datasets d ON d.dataset_id = i.dataset_id WHERE i.run_uuid IN ",
            );
            q.bind_list(chunk.iter().cloned())
                .push(" ORDER BY d.dataset_id");
            for row in q.query().fetch_all(&self.read).await? {
                let id: String = row.try_get("run_uuid")?;
                let tags_json: String = row.try_get("tags_json")?;
                let tags: Vec<KeyValue> = serde_json::from_str(&tags_json)
                    .map_err(|e| crate::StoreError::Corrupt(format!("dataset input tags: {e}")))?;
                inputs
                    .entry(id)
                    .or_default()
                    .dataset_inputs
                    .push(DatasetInput {
                        tags,
                        dataset: bastion_core::model::Dataset {
                            name: row.try_get("name")?,
                            digest: row.try_get("digest")?,
                            source_type: row.try_get("source_type")?,
                            source: row.try_get("source")?,
                            schema: row.try_get("schema")?,
                            profile: row.try_get("profile")?,
                        },
                    });
            }
            let mut q = Sql::new(
                "SELECT run_uuid, direction, model_id, step FROM run_model_refs WHERE run_uuid IN ",
            );
            q.bind_list(chunk.iter().cloned())
                .push(" ORDER BY model_id");
            for row in q.query().fetch_all(&self.read).await? {
                let id: String = row.try_get("run_uuid")?;
                let direction: String = row.try_get("direction")?;
                let model = ModelRef {
                    model_id: row.try_get("model_id")?,
                    step: row.try_get("step")?,
                };
                if direction == "input" {
                    inputs.entry(id).or_default().model_inputs.push(model);
                } else {
                    outputs.entry(id).or_default().model_outputs.push(model);
                }
            }
        }
        let mut params = rows::kv_by_id(
            &self.read,
            "SELECT run_uuid AS id, key, value FROM params WHERE run_uuid IN ",
            " ORDER BY key",
            &ids,
        )
        .await?;
        let mut tags = rows::kv_by_id(
            &self.read,
            "SELECT run_uuid AS id, key, value FROM tags WHERE run_uuid IN ",
            " ORDER BY key",
            &ids,
        )
        .await?;
        Ok(infos
            .into_iter()
            .map(|info| {
                let id = info.run_uuid.clone();
                Run {
                    info,
                    data: RunData {
                        metrics: metrics.remove(&id).unwrap_or_default(),
                        params: params.remove(&id).unwrap_or_default(),
                        tags: tags.remove(&id).unwrap_or_default(),
                    },
                    inputs: inputs.remove(&id).unwrap_or_default(),
                    outputs: outputs.remove(&id).unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Fails unless the run exists and is active: logging to a deleted run is refused.
    pub(crate) async fn check_active_run(
        &self,
        tx: &mut AnyConnection,
        run_id: &str,
    ) -> StoreResult<()> {
        let stage: Option<String> =
            sqlx::query("SELECT lifecycle_stage FROM runs WHERE run_uuid = $1")
                .bind(run_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("lifecycle_stage"))
                .transpose()?;
        match stage.as_deref() {
            None => Err(not_found(run_id).into()),
            Some("active") => Ok(()),
            Some(other) => Err(Error::invalid_state(format!(
                "The run {run_id} must be in the 'active' state. Current state is {other}."
            ))
            .into()),
        }
    }

    pub async fn update_run(&self, run_id: &str, update: RunUpdate) -> StoreResult<RunInfo> {
        if let Some(name) = &update.run_name {
            limits::validate_length("Run name", name, name, MAX_RUN_NAME_LENGTH)?;
        }
        let mut tx = self.begin_write().await?;
        self.check_active_run(&mut tx, run_id).await?;
        let mut q = Sql::new("UPDATE runs SET run_uuid = run_uuid");
        if let Some(status) = update.status {
            q.push(", status = ").bind(status.as_str());
        }
        if let Some(end) = update.end_time {
            q.push(", end_time = ").bind(end);
        }
        q.push(" WHERE run_uuid = ").bind(run_id);
        q.query().execute(&mut *tx).await?;
        if let Some(name) = update.run_name.filter(|n| !n.is_empty()) {
            upsert_tags(&mut tx, run_id, &[KeyValue::new(RUN_NAME_TAG, name)]).await?;
        }
        tx.commit().await?;
        self.get_run_info(run_id).await
    }

    pub async fn delete_run(&self, run_id: &str) -> StoreResult<()> {
        self.set_run_stage(run_id, LifecycleStage::Deleted).await
    }

    pub async fn restore_run(&self, run_id: &str) -> StoreResult<()> {
        self.set_run_stage(run_id, LifecycleStage::Active).await
    }

    async fn set_run_stage(&self, run_id: &str, stage: LifecycleStage) -> StoreResult<()> {
        let deleted_time = (stage == LifecycleStage::Deleted).then(time::now_ms);
        let done = sqlx::query(
            "UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 WHERE run_uuid = $3",
        )
        .bind(stage.as_str())
        .bind(deleted_time)
        .bind(run_id)
        .write_on(self)
        .await?;
        if done == 0 {
            return Err(not_found(run_id).into());
        }
        Ok(())
    }

    /// One statement on the fast path: the insert is guarded by the run's state, and the
    /// trigger updates the latest value in the same statement.
    pub async fn log_metric(&self, run_id: &str, metric: &Metric) -> StoreResult<()> {
        validate_metric(metric)?;
        let (value, is_nan) = rows::stored_metric_value(metric.value.0);
        let mut q =
            Sql::new("INSERT INTO metrics (run_uuid, key, value, timestamp, step, is_nan) SELECT ");
        q.bind(run_id)
            .push(", ")
            .bind(metric.key.as_str())
            .push(", ");
        q.bind(value).push(", ").bind(metric.timestamp).push(", ");
        q.bind(metric.step).push(", ").bind(is_nan);
        q.push(&format!(" WHERE {ACTIVE_RUN} ON CONFLICT DO NOTHING"));
        let done = self.write_one(&q).await?;
        if done == 0 {
            // Either the run is missing or inactive (an error), or this exact metric exists.
            self.require_active_run(run_id).await?;
        }
        Ok(())
    }

    pub async fn log_param(&self, run_id: &str, param: &KeyValue) -> StoreResult<()> {
        validate_param(param)?;
        let mut q = Sql::new("INSERT INTO params (run_uuid, key, value) SELECT ");
        q.bind(run_id)
            .push(", ")
            .bind(param.key.as_str())
            .push(", ");
        q.bind(param.value.as_str());
        q.push(&format!(" WHERE {ACTIVE_RUN} ON CONFLICT DO NOTHING"));
        let done = self.write_one(&q).await?;
        if done == 0 {
            self.require_active_run(run_id).await?;
            let old: String =
                sqlx::query("SELECT value FROM params WHERE run_uuid = $1 AND key = $2")
                    .bind(run_id)
                    .bind(&param.key)
                    .fetch_one(&self.read)
                    .await?
                    .try_get("value")?;
            if old != param.value {
                return Err(param_change(run_id, param, &old));
            }
        }
        Ok(())
    }

    pub async fn set_tag(&self, run_id: &str, tag: &KeyValue) -> StoreResult<()> {
        validate_tag(tag)?;
        if tag.key == RUN_NAME_TAG {
            // Two rows change (the tag and the run's name): a transaction.
            let mut tx = self.begin_write().await?;
            self.check_active_run(&mut tx, run_id).await?;
            upsert_tags(&mut tx, run_id, std::slice::from_ref(tag)).await?;
            tx.commit().await?;
            return Ok(());
        }
        let mut q = Sql::new("INSERT INTO tags (run_uuid, key, value) SELECT ");
        q.bind(run_id).push(", ").bind(tag.key.as_str()).push(", ");
        q.bind(tag.value.as_str());
        q.push(&format!(
            " WHERE {ACTIVE_RUN} ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value"
        ));
        let done = self.write_one(&q).await?;
        if done == 0 {
            self.require_active_run(run_id).await?;
        }
        Ok(())
    }

    /// Ok if the run exists and is active; otherwise MLflow's not-found or invalid-state error.
    async fn require_active_run(&self, run_id: &str) -> StoreResult<()> {
        let info = self.get_run_info(run_id).await?;
        if info.lifecycle_stage != LifecycleStage::Active {
            return Err(Error::invalid_state(format!(
                "The run {run_id} must be in the 'active' state. Current state is {}.",
                info.lifecycle_stage.as_str()
            ))
            .into());
        }
        Ok(())
    }

    pub async fn delete_tag(&self, run_id: &str, key: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        self.check_active_run(&mut tx, run_id).await?;
        let done = sqlx::query("DELETE FROM tags WHERE run_uuid = $1 AND key = $2")
            .bind(run_id)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        rows::deleted_one(done.rows_affected(), || {
            format!(
                "No tag with name: {} in run with id {run_id}",
                limits::truncate(key, 64)
            )
        })?;
        tx.commit().await?;
        Ok(())
    }

    /// Logs a batch atomically: every item is validated first, and either all are stored or
    /// none is.
    pub async fn log_batch(&self, run_id: &str, batch: &BatchLog) -> StoreResult<()> {
        if batch.metrics.len() > limits::MAX_METRICS_PER_BATCH {
            return Err(Error::invalid(format!(
                "A batch logging request can contain at most {} metrics. Got {} metrics. Please split up metrics across multiple requests and try again.",
                limits::MAX_METRICS_PER_BATCH,
                batch.metrics.len()
            ))
            .into());
        }
        if batch.params.len() + batch.tags.len() > limits::MAX_PARAMS_TAGS_PER_BATCH {
            return Err(Error::invalid(format!(
                "A batch logging request can contain at most {} params and tags. Got {} params and {} tags.",
                limits::MAX_PARAMS_TAGS_PER_BATCH,
                batch.params.len(),
                batch.tags.len()
            ))
            .into());
        }
        let total = batch.metrics.len() + batch.params.len() + batch.tags.len();
        if total > limits::MAX_ENTITIES_PER_BATCH {
            return Err(Error::invalid(format!(
                "A batch logging request can contain at most {} metrics, params, and tags in total. Got {total}.",
                limits::MAX_ENTITIES_PER_BATCH
            ))
            .into());
        }
        batch.metrics.iter().try_for_each(validate_metric)?;
        batch.params.iter().try_for_each(validate_param)?;
        batch.tags.iter().try_for_each(validate_tag)?;
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for p in &batch.params {
            if let Some(prev) = seen.insert(&p.key, &p.value)
                && prev != p.value
            {
                return Err(Error::invalid(format!(
                    "Duplicate parameter keys have been submitted: ['{}']. Please ensure the request contains only one param value per param key.",
                    p.key
                ))
                .into());
            }
        }
        let mut tx = self.begin_write().await?;
        self.check_active_run(&mut tx, run_id).await?;
        insert_params(&mut tx, run_id, &batch.params).await?;
        insert_metrics(&mut tx, run_id, &batch.metrics).await?;
        upsert_tags(&mut tx, run_id, &batch.tags).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn metric_history(
        &self,
        run_id: &str,
        key: &str,
        max_results: Option<i64>,
        page_token: Option<&str>,
    ) -> StoreResult<(Vec<Metric>, Option<String>)> {
        self.get_run_info(run_id).await?;
        let limit = limits::max_results(
            max_results,
            limits::MAX_METRIC_HISTORY_RESULTS,
            limits::MAX_METRIC_HISTORY_RESULTS,
        )?;
        let offset = super::sql::decode_page_token(page_token)?;
        let rows = sqlx::query(
            "SELECT key, CASE WHEN is_nan THEN NULL ELSE value END AS value, timestamp, step FROM metrics \
             WHERE run_uuid = $1 AND key = $2 ORDER BY step, timestamp, value LIMIT $3 OFFSET $4",
        )
        .bind(run_id)
        .bind(key)
        .bind(limit + 1)
        .bind(offset)
        .fetch_all(&self.read)
        .await?;
        let (rows, next) = super::sql::split_page(rows, limit, offset);
        let metrics = rows
            .iter()
            .map(rows::metric)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((metrics, next))
    }

    pub async fn log_inputs(
        &self,
        run_id: &str,
        datasets: &[DatasetInput],
        models: &[ModelRef],
    ) -> StoreResult<()> {
        for d in datasets {
            for (field, v) in [
                ("name", &d.dataset.name),
                ("digest", &d.dataset.digest),
                ("source_type", &d.dataset.source_type),
                ("source", &d.dataset.source),
            ] {
                if v.is_empty() {
                    return Err(Error::missing(&format!("dataset.{field}")).into());
                }
            }
            d.tags.iter().try_for_each(validate_tag)?;
        }
        validate_model_refs(models)?;
        let mut tx = self.begin_write().await?;
        self.check_active_run(&mut tx, run_id).await?;
        let experiment_id: i64 = sqlx::query("SELECT experiment_id FROM runs WHERE run_uuid = $1")
            .bind(run_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("experiment_id")?;
        for d in datasets {
            let ds = &d.dataset;
            sqlx::query(
                "INSERT INTO datasets (experiment_id, name, digest, source_type, source, schema, profile) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (experiment_id, name, digest) DO NOTHING",
            )
            .bind(experiment_id)
            .bind(&ds.name)
            .bind(&ds.digest)
            .bind(&ds.source_type)
            .bind(&ds.source)
            .bind(ds.schema.clone())
            .bind(ds.profile.clone())
            .execute(&mut *tx)
            .await?;
            let dataset_id: i64 = sqlx::query("SELECT dataset_id FROM datasets WHERE experiment_id = $1 AND name = $2 AND digest = $3")
                .bind(experiment_id)
                .bind(&ds.name)
                .bind(&ds.digest)
                .fetch_one(&mut *tx)
                .await?
                .try_get("dataset_id")?;
            let context = d
                .tags
                .iter()
                .find(|t| t.key == "mlflow.data.context")
                .map(|t| t.value.clone());
            let tags_json = serde_json::to_string(&d.tags)
                .map_err(|e| crate::StoreError::Corrupt(e.to_string()))?;
            sqlx::query(
                "INSERT INTO run_dataset_inputs (run_uuid, dataset_id, context, tags_json) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (run_uuid, dataset_id) DO NOTHING",
            )
            .bind(run_id)
            .bind(dataset_id)
            .bind(context)
            .bind(tags_json)
            .execute(&mut *tx)
            .await?;
        }
        for m in models {
            insert_model_ref(&mut tx, run_id, "input", m).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn log_outputs(&self, run_id: &str, models: &[ModelRef]) -> StoreResult<()> {
        validate_model_refs(models)?;
        let mut tx = self.begin_write().await?;
        self.check_active_run(&mut tx, run_id).await?;
        for m in models {
            insert_model_ref(&mut tx, run_id, "output", m).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn validate_model_refs(models: &[ModelRef]) -> StoreResult<()> {
    match models
        .iter()
        .find(|m| !ids::is_logged_model_id(&m.model_id))
    {
        Some(m) => Err(Error::invalid(format!(
            "Invalid model_id '{}'",
            limits::truncate(&m.model_id, 64)
        ))
        .into()),
        None => Ok(()),
    }
}

async fn insert_model_ref(
    tx: &mut AnyConnection,
    run_id: &str,
    direction: &str,
    m: &ModelRef,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO run_model_refs (run_uuid, direction, model_id, step) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (run_uuid, direction, model_id) DO UPDATE SET step = excluded.step",
    )
    .bind(run_id)
    .bind(direction)
    .bind(&m.model_id)
    .bind(m.step)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
