//! What serving keeps: each registered model's deployment (a JSON document the store does not
//! interpret, changed by compare-and-set on its revision) and inference events (telemetry
//! appended in batches, outside the audit log).

use bastion_core::{Error, time};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::sql::Sql;
use super::write::WriteOn;
use super::{MetaStore, rows};
use crate::error::{StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDeployment {
    pub model_name: String,
    pub body: serde_json::Value,
    /// 1 for the first deployment, one more with every change.
    pub revision: i64,
    pub updated_by: String,
    pub updated_time: i64,
}

/// One inference request as monitoring sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceEvent {
    /// Assigned by the store; 0 before it is written.
    #[serde(default)]
    pub id: i64,
    pub time_ms: i64,
    pub model_name: String,
    pub version: String,
    /// How the request reached the version: `stable`, `canary`, `shadow`, `pinned`, `direct`.
    pub route: String,
    pub actor: String,
    pub request_id: String,
    pub latency_us: i64,
    /// The HTTP status answered (a shadow's is what it would have answered).
    pub status: i64,
    /// `ok`, `flagged`, `rejected`, `refused` or `error`.
    pub decision: String,
    /// SHA-256 of the request body.
    pub input_digest: String,
    pub rows: i64,
    /// The decoded input rows, when this request was sampled.
    pub features: serde_json::Value,
    pub outputs: serde_json::Value,
    pub guards: serde_json::Value,
}

/// Which events to read: a model (and version), from a time, after an id, at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub model_name: Option<String>,
    pub version: Option<String>,
    pub since_ms: Option<i64>,
    pub after_id: Option<i64>,
    pub limit: i64,
}

fn deployment_from_row(r: &AnyRow) -> StoreResult<StoredDeployment> {
    let body: String = r.try_get("body")?;
    Ok(StoredDeployment {
        model_name: r.try_get("model_name")?,
        body: serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("deployment body: {e}")))?,
        revision: r.try_get("revision")?,
        updated_by: r.try_get("updated_by")?,
        updated_time: r.try_get("updated_time")?,
    })
}

fn json_column(r: &AnyRow, name: &str) -> StoreResult<serde_json::Value> {
    let text: Option<String> = r.try_get(name)?;
    match text {
        None => Ok(serde_json::Value::Null),
        Some(t) => serde_json::from_str(&t)
            .map_err(|e| StoreError::Corrupt(format!("inference event {name}: {e}"))),
    }
}

/// An inference event as the monitor reads it: only what it judges, with the recorded JSON
/// left as text for it to decode straight into its own shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub id: i64,
    pub time_ms: i64,
    pub model_name: String,
    pub version: String,
    pub route: String,
    pub actor: String,
    pub latency_us: i64,
    pub status: i64,
    pub decision: String,
    pub rows: i64,
    /// JSON text (empty when the column is NULL).
    pub features: String,
    pub outputs: String,
}

fn recorded_from_row(r: &AnyRow) -> StoreResult<RecordedEvent> {
    let text = |name: &str| -> StoreResult<String> {
        Ok(r.try_get::<Option<String>, _>(name)?.unwrap_or_default())
    };
    Ok(RecordedEvent {
        id: r.try_get("id")?,
        time_ms: r.try_get("time_ms")?,
        model_name: r.try_get("model_name")?,
        version: r.try_get("version")?,
        route: r.try_get("route")?,
        actor: r.try_get("actor")?,
        latency_us: r.try_get("latency_us")?,
        status: r.try_get("status")?,
        decision: r.try_get("decision")?,
        rows: r.try_get("rows_count")?,
        features: text("features")?,
        outputs: text("outputs")?,
    })
}

fn event_from_row(r: &AnyRow) -> StoreResult<InferenceEvent> {
    Ok(InferenceEvent {
        id: r.try_get("id")?,
        time_ms: r.try_get("time_ms")?,
        model_name: r.try_get("model_name")?,
        version: r.try_get("version")?,
        route: r.try_get("route")?,
        actor: r.try_get("actor")?,
        request_id: r.try_get("request_id")?,
        latency_us: r.try_get("latency_us")?,
        status: r.try_get("status")?,
        decision: r.try_get("decision")?,
        input_digest: r.try_get("input_digest")?,
        rows: r.try_get("rows_count")?,
        features: json_column(r, "features")?,
        outputs: json_column(r, "outputs")?,
        guards: json_column(r, "guards")?,
    })
}

const EVENT_COLUMNS: &str = "id, time_ms, model_name, version, route, actor, request_id, \
     latency_us, status, decision, input_digest, rows_count, features, outputs, guards";

/// Rows per INSERT: 14 bound values each.
const EVENTS_PER_STATEMENT: usize = rows::rows_per_statement(14);

impl MetaStore {
    pub async fn get_deployment(&self, model_name: &str) -> StoreResult<Option<StoredDeployment>> {
        let row = sqlx::query(
            "SELECT model_name, body, revision, updated_by, updated_time FROM deployments \
             WHERE model_name = $1",
        )
        .bind(model_name)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(deployment_from_row).transpose()
    }

    pub async fn list_deployments(&self) -> StoreResult<Vec<StoredDeployment>> {
        let rows = sqlx::query(
            "SELECT model_name, body, revision, updated_by, updated_time FROM deployments \
             ORDER BY model_name",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(deployment_from_row).collect()
    }

    /// Writes a model's deployment if its revision is still `expected` (0: there is none
    /// yet), and returns the new revision. A change made meanwhile by someone else is an
    /// `INVALID_STATE` error, so no change is lost silently. Audited as the handle's request.
    pub async fn put_deployment(
        &self,
        model_name: &str,
        body: &serde_json::Value,
        expected: i64,
        updated_by: &str,
    ) -> StoreResult<i64> {
        let text = serde_json::to_string(body)
            .map_err(|e| StoreError::Corrupt(format!("deployment body: {e}")))?;
        let now = time::now_ms();
        let changed = if expected == 0 {
            sqlx::query(
                "INSERT INTO deployments (model_name, body, revision, updated_by, updated_time) \
                 VALUES ($1, $2, 1, $3, $4) ON CONFLICT (model_name) DO NOTHING",
            )
            .bind(model_name)
            .bind(text)
            .bind(updated_by)
            .bind(now)
            .write_on(self)
            .await?
        } else {
            sqlx::query(
                "UPDATE deployments SET body = $1, revision = revision + 1, updated_by = $2, \
                 updated_time = $3 WHERE model_name = $4 AND revision = $5",
            )
            .bind(text)
            .bind(updated_by)
            .bind(now)
            .bind(model_name)
            .bind(expected)
            .write_on(self)
            .await?
        };
        if changed == 0 {
            return Err(Error::invalid_state(format!(
                "the deployment of '{model_name}' was changed by someone else meanwhile \
                 (expected revision {expected}); read it again and retry"
            ))
            .into());
        }
        Ok(expected + 1)
    }

    /// Appends inference events in one transaction, outside the audit log.
    pub async fn insert_inference_events(&self, events: &[InferenceEvent]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let json = |v: &serde_json::Value| {
            serde_json::to_string(v)
                .map_err(|e| StoreError::Corrupt(format!("inference event: {e}")))
        };
        let mut tx = self.write.begin().await?;
        for chunk in events.chunks(EVENTS_PER_STATEMENT) {
            let mut sql = Sql::new(
                "INSERT INTO inference_events (time_ms, model_name, version, route, actor, \
                 request_id, latency_us, status, decision, input_digest, rows_count, features, \
                 outputs, guards) VALUES ",
            );
            for (i, e) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.push("(")
                    .bind(e.time_ms)
                    .push(", ")
                    .bind(e.model_name.as_str())
                    .push(", ")
                    .bind(e.version.as_str())
                    .push(", ")
                    .bind(e.route.as_str())
                    .push(", ")
                    .bind(e.actor.as_str())
                    .push(", ")
                    .bind(e.request_id.as_str())
                    .push(", ")
                    .bind(e.latency_us)
                    .push(", ")
                    .bind(e.status)
                    .push(", ")
                    .bind(e.decision.as_str())
                    .push(", ")
                    .bind(e.input_digest.as_str())
                    .push(", ")
                    .bind(e.rows)
                    .push(", ")
                    .bind(json(&e.features)?)
                    .push(", ")
                    .bind(json(&e.outputs)?)
                    .push(", ")
                    .bind(json(&e.guards)?)
                    .push(")");
            }
            sql.query().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Events in id order.
    pub async fn inference_events(&self, q: &EventQuery) -> StoreResult<Vec<InferenceEvent>> {
        let mut sql = Sql::new(&format!(
            "SELECT {EVENT_COLUMNS} FROM inference_events WHERE 1 = 1"
        ));
        if let Some(m) = &q.model_name {
            sql.push(" AND model_name = ").bind(m.as_str());
        }
        if let Some(v) = &q.version {
            sql.push(" AND version = ").bind(v.as_str());
        }
        if let Some(t) = q.since_ms {
            sql.push(" AND time_ms >= ").bind(t);
        }
        if let Some(id) = q.after_id {
            sql.push(" AND id > ").bind(id);
        }
        sql.push(" ORDER BY id LIMIT ")
            .bind(q.limit.clamp(1, 100_000));
        let rows = sql.query().fetch_all(&self.read).await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Up to `limit` events with an id above `after_id`, in id order, as the monitor reads
    /// them.
    pub async fn recorded_events(
        &self,
        after_id: i64,
        limit: usize,
    ) -> StoreResult<Vec<RecordedEvent>> {
        let rows = sqlx::query(
            "SELECT id, time_ms, model_name, version, route, actor, latency_us, status, \
             decision, rows_count, features, outputs FROM inference_events WHERE id > $1 \
             ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(i64::try_from(limit.clamp(1, 100_000)).unwrap_or(100_000))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(recorded_from_row).collect()
    }
}
