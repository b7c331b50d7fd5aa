//! MLflow 3 logged models: what `mlflow.<flavor>.log_model` creates before it uploads files.

use std::collections::HashMap;

use bastion_core::limits::{self, KeyKind, MAX_PARAM_VALUE_LENGTH};
use bastion_core::model::{
    KeyValue, LoggedModel, LoggedModelData, LoggedModelInfo, LoggedModelStatus, Metric,
};
use bastion_core::{Error, ids, time};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::MetaStore;
use super::rows;
use super::run_search::Page;
use super::runs::validate_tag;
use super::sql::{self, Attr, AttrKind, Bind, KvTable, PageSpec, SearchTarget, Sql};
use super::write::WriteOn;
use crate::error::StoreResult;

const MODELS: SearchTarget = SearchTarget {
    what: "logged models",
    attributes: &[
        Attr {
            key: "name",
            column: "lm.name",
            kind: AttrKind::Text,
        },
        Attr {
            key: "model_id",
            column: "lm.model_id",
            kind: AttrKind::Text,
        },
        Attr {
            key: "status",
            column: "lm.status",
            kind: AttrKind::Text,
        },
        Attr {
            key: "model_type",
            column: "lm.model_type",
            kind: AttrKind::Text,
        },
        Attr {
            key: "source_run_id",
            column: "lm.source_run_id",
            kind: AttrKind::Text,
        },
        Attr {
            key: "creation_timestamp",
            column: "lm.creation_time",
            kind: AttrKind::Number,
        },
        Attr {
            key: "creation_time",
            column: "lm.creation_time",
            kind: AttrKind::Number,
        },
        Attr {
            key: "last_updated_timestamp",
            column: "lm.last_updated_time",
            kind: AttrKind::Number,
        },
    ],
    metrics: Some(KvTable {
        table: "logged_model_metrics",
        join: "x.model_id = lm.model_id",
    }),
    params: Some(KvTable {
        table: "logged_model_params",
        join: "x.model_id = lm.model_id",
    }),
    tags: Some(KvTable {
        table: "logged_model_tags",
        join: "x.model_id = lm.model_id",
    }),
    datasets: None,
    ne_includes_missing: false,
};

const COLUMNS: &str = "lm.model_id, lm.experiment_id, lm.name, lm.artifact_location, lm.creation_time, lm.last_updated_time, \
     lm.status, lm.status_message, lm.model_type, lm.source_run_id";

fn not_found(model_id: &str) -> Error {
    Error::not_found(format!(
        "Logged model with ID '{}' not found.",
        limits::truncate(model_id, 64)
    ))
}

fn validate_param(p: &KeyValue) -> StoreResult<()> {
    limits::validate_key(KeyKind::Param, &p.key)?;
    limits::validate_length("Param value", &p.key, &p.value, MAX_PARAM_VALUE_LENGTH)?;
    Ok(())
}

fn info_from_row(row: &AnyRow) -> StoreResult<LoggedModelInfo> {
    let experiment_id: i64 = row.try_get("experiment_id")?;
    Ok(LoggedModelInfo {
        model_id: row.try_get("model_id")?,
        experiment_id: experiment_id.to_string(),
        name: row.try_get("name")?,
        creation_timestamp_ms: row.try_get("creation_time")?,
        last_updated_timestamp_ms: row.try_get("last_updated_time")?,
        artifact_uri: row.try_get("artifact_location")?,
        status: row.try_get("status")?,
        model_type: row.try_get("model_type")?,
        source_run_id: row.try_get("source_run_id")?,
        status_message: row.try_get("status_message")?,
        tags: Vec::new(),
    })
}

impl MetaStore {
    pub async fn create_logged_model(
        &self,
        experiment_id: &str,
        name: Option<&str>,
        source_run_id: Option<&str>,
        model_type: Option<&str>,
        tags: &[KeyValue],
        params: &[KeyValue],
    ) -> StoreResult<LoggedModel> {
        let experiment = self.active_experiment(experiment_id).await?;
        tags.iter().try_for_each(validate_tag)?;
        params.iter().try_for_each(validate_param)?;
        let name = name
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(super::names::random_run_name);
        limits::validate_length("Model name", &name, &name, 500)?;
        if let Some(r) = source_run_id.filter(|r| !r.is_empty()) {
            self.get_run_info(r).await?;
        }
        let model_id = format!("m-{}", uuid::Uuid::new_v4().simple());
        let artifact_location = format!(
            "{}/models/{model_id}/artifacts",
            experiment.artifact_location.trim_end_matches('/')
        );
        let now = time::now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO logged_models (model_id, experiment_id, name, artifact_location, creation_time, last_updated_time, \
             status, status_message, model_type, source_run_id, lifecycle_stage) VALUES ($1, $2, $3, $4, $5, $5, $6, NULL, $7, $8, 'active')",
        )
        .bind(&model_id)
        .bind(experiment.experiment_id.parse::<i64>().unwrap_or_default())
        .bind(&name)
        .bind(&artifact_location)
        .bind(now)
        .bind(LoggedModelStatus::Pending.as_str())
        .bind(model_type.unwrap_or_default())
        .bind(source_run_id.filter(|r| !r.is_empty()).map(str::to_owned))
        .execute(&mut *tx)
        .await?;
        let owner = [Bind::from(model_id.as_str())];
        for (table, kvs) in [("logged_model_tags", tags), ("logged_model_params", params)] {
            rows::upsert_kv(
                &mut tx,
                &rows::KvOwner {
                    table,
                    columns: "model_id",
                    values: &owner,
                },
                kvs,
            )
            .await?;
        }
        tx.commit().await?;
        self.get_logged_model(&model_id).await
    }

    pub async fn get_logged_model(&self, model_id: &str) -> StoreResult<LoggedModel> {
        if !ids::is_logged_model_id(model_id) {
            return Err(not_found(model_id).into());
        }
        let row = query_fmt!("SELECT {COLUMNS} FROM logged_models lm WHERE lm.model_id = $1 AND lm.lifecycle_stage = 'active'")
            .bind(model_id)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| not_found(model_id))?;
        let mut out = self.logged_models_from_rows(&[row]).await?;
        out.pop().ok_or_else(|| not_found(model_id).into())
    }

    async fn logged_models_from_rows(&self, rows: &[AnyRow]) -> StoreResult<Vec<LoggedModel>> {
        let infos = rows
            .iter()
            .map(info_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let ids: Vec<String> = infos.iter().map(|i| i.model_id.clone()).collect();
        let mut tags = rows::kv_by_id(
            &self.read,
            "SELECT model_id AS id, key, value FROM logged_model_tags WHERE model_id IN ",
            " ORDER BY key",
            &ids,
        )
        .await?;
        let mut params = rows::kv_by_id(
            &self.read,
            "SELECT model_id AS id, key, value FROM logged_model_params WHERE model_id IN ",
            " ORDER BY key",
            &ids,
        )
        .await?;
        let mut metrics: HashMap<String, Vec<Metric>> = HashMap::new();
        for chunk in ids.chunks(rows::ID_CHUNK) {
            let mut q = Sql::new(
                "SELECT model_id, run_id, key, CASE WHEN is_nan THEN NULL ELSE value END AS value, timestamp, step \
                 FROM logged_model_metrics WHERE model_id IN ",
            );
            q.bind_list(chunk.iter().cloned())
                .push(" ORDER BY key, step, timestamp");
            for r in q.query().fetch_all(&self.read).await? {
                let mut m = rows::metric(&r)?;
                m.run_id = Some(r.try_get("run_id")?);
                metrics.entry(r.try_get("model_id")?).or_default().push(m);
            }
        }
        Ok(infos
            .into_iter()
            .map(|mut info| {
                info.tags = tags.remove(&info.model_id).unwrap_or_default();
                let id = info.model_id.clone();
                LoggedModel {
                    info,
                    data: LoggedModelData {
                        params: params.remove(&id).unwrap_or_default(),
                        metrics: metrics.remove(&id).unwrap_or_default(),
                    },
                }
            })
            .collect())
    }

    pub async fn finalize_logged_model(
        &self,
        model_id: &str,
        status: &str,
    ) -> StoreResult<LoggedModel> {
        let status = LoggedModelStatus::parse(status)?;
        self.get_logged_model(model_id).await?;
        sqlx::query(
            "UPDATE logged_models SET status = $1, last_updated_time = $2 WHERE model_id = $3",
        )
        .bind(status.as_str())
        .bind(time::now_ms())
        .bind(model_id)
        .write_on(self)
        .await?;
        self.get_logged_model(model_id).await
    }

    pub async fn delete_logged_model(&self, model_id: &str) -> StoreResult<()> {
        self.get_logged_model(model_id).await?;
        sqlx::query("UPDATE logged_models SET lifecycle_stage = 'deleted', last_updated_time = $1 WHERE model_id = $2")
            .bind(time::now_ms())
            .bind(model_id)
            .write_on(self)
            .await?;
        Ok(())
    }

    pub async fn set_logged_model_tags(
        &self,
        model_id: &str,
        tags: &[KeyValue],
    ) -> StoreResult<()> {
        tags.iter().try_for_each(validate_tag)?;
        self.upsert_logged_model_kv(model_id, "logged_model_tags", tags)
            .await
    }

    pub async fn log_logged_model_params(
        &self,
        model_id: &str,
        params: &[KeyValue],
    ) -> StoreResult<()> {
        params.iter().try_for_each(validate_param)?;
        self.upsert_logged_model_kv(model_id, "logged_model_params", params)
            .await
    }

    async fn upsert_logged_model_kv(
        &self,
        model_id: &str,
        table: &'static str,
        kvs: &[KeyValue],
    ) -> StoreResult<()> {
        self.get_logged_model(model_id).await?;
        let mut tx = self.begin_write().await?;
        let owner = [Bind::from(model_id)];
        rows::upsert_kv(
            &mut tx,
            &rows::KvOwner {
                table,
                columns: "model_id",
                values: &owner,
            },
            kvs,
        )
        .await?;
        sqlx::query("UPDATE logged_models SET last_updated_time = $1 WHERE model_id = $2")
            .bind(time::now_ms())
            .bind(model_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> StoreResult<()> {
        self.get_logged_model(model_id).await?;
        let done = sqlx::query("DELETE FROM logged_model_tags WHERE model_id = $1 AND key = $2")
            .bind(model_id)
            .bind(key)
            .write_on(self)
            .await?;
        rows::deleted_one(done, || {
            format!(
                "No tag with key '{}' on logged model {model_id}",
                limits::truncate(key, 64)
            )
        })?;
        Ok(())
    }

    pub async fn search_logged_models(
        &self,
        experiment_ids: &[String],
        filter: Option<&str>,
        order_by: &[String],
        max_results: Option<i64>,
        page_token: Option<&str>,
    ) -> StoreResult<Page<LoggedModel>> {
        let experiments = experiment_ids
            .iter()
            .map(|e| ids::parse_experiment_id(e))
            .collect::<Result<Vec<i64>, Error>>()?;
        if experiments.is_empty() {
            return Err(Error::invalid(
                "At least one experiment ID must be specified in 'experiment_ids'",
            )
            .into());
        }
        let mut q = Sql::new(&format!(
            "SELECT {COLUMNS} FROM logged_models lm WHERE lm.lifecycle_stage = 'active' AND lm.experiment_id IN "
        ));
        q.bind_list(experiments);
        let spec = PageSpec {
            filter,
            order_by,
            max_results,
            page_token,
            default_results: 100,
            max_allowed: limits::MAX_SEARCH_RESULTS,
        };
        let (rows, next_page_token) = sql::fetch_page(
            &self.read,
            q,
            &MODELS,
            spec,
            "lm.creation_time DESC, lm.model_id ASC",
        )
        .await?;
        let items = self.logged_models_from_rows(&rows).await?;
        Ok(Page {
            items,
            next_page_token,
        })
    }
}
