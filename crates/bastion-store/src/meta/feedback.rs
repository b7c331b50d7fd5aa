//! Delayed labels: the true answers to requests a model served, sent back later by the
//! application that called it. Each label is joined to its inference event when it
//! arrives (by the request id the caller saw), so the monitor reads labels with the
//! answers they judge; labels for requests the store has no event for are reported back,
//! not kept.

use bastion_core::{Error, time};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::sql::Sql;
use super::{MetaStore, rows};
use crate::error::{StoreError, StoreResult};

/// Requests per feedback call, at most.
pub const MAX_FEEDBACK_ITEMS: usize = 10_000;
/// Labels per request, at most (a request answers at most this many rows in practice).
pub const MAX_LABELS_PER_REQUEST: usize = 10_000;
/// A text label's length, at most.
pub const MAX_LABEL_CHARS: usize = 1_000;
const MAX_REQUEST_ID_CHARS: usize = 256;
/// Rows per INSERT: 6 bound values each.
const ROWS_PER_STATEMENT: usize = rows::rows_per_statement(6);

/// The true labels of one request's rows, in row order from the first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackItem {
    pub request_id: String,
    pub labels: Vec<serde_json::Value>,
}

/// What happened to a batch of feedback.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedbackReceipt {
    /// Labels that matched an answered row and were kept.
    pub stored: u64,
    /// Labels for rows that already had one (the first label stands).
    pub duplicates: u64,
    /// Request ids with no inference event of this model (not kept; the event may have
    /// been dropped under load, or the id is wrong).
    pub unmatched: Vec<String>,
}

/// A kept label with the answer it judges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledEvent {
    pub feedback_id: i64,
    pub event_id: i64,
    pub received_time: i64,
    /// When the request was answered.
    pub time_ms: i64,
    pub model_name: String,
    pub version: String,
    pub row_index: i64,
    pub label: serde_json::Value,
    /// The event's recorded outputs (all rows).
    pub outputs: serde_json::Value,
}

/// Checks a batch before anything is written: every problem names the item it is in.
fn check(items: &[FeedbackItem]) -> StoreResult<()> {
    if items.is_empty() {
        return Err(
            Error::invalid("feedback: no items; send {request_id, labels} per request").into(),
        );
    }
    if items.len() > MAX_FEEDBACK_ITEMS {
        return Err(Error::invalid(format!(
            "feedback: {} items in one call; send at most {MAX_FEEDBACK_ITEMS} per call",
            items.len()
        ))
        .into());
    }
    for (i, it) in items.iter().enumerate() {
        let bad = |what: String| Error::invalid(format!("feedback item {i}: {what}"));
        let id = &it.request_id;
        if id.is_empty()
            || id.chars().count() > MAX_REQUEST_ID_CHARS
            || id.chars().any(char::is_control)
        {
            return Err(bad(format!(
                "request_id must be 1-{MAX_REQUEST_ID_CHARS} printable characters, not '{}'",
                bastion_core::limits::truncate(&id.escape_debug().to_string(), 64)
            ))
            .into());
        }
        if it.labels.is_empty() || it.labels.len() > MAX_LABELS_PER_REQUEST {
            return Err(bad(format!(
                "request '{id}': give 1-{MAX_LABELS_PER_REQUEST} labels, not {}",
                it.labels.len()
            ))
            .into());
        }
        for (r, label) in it.labels.iter().enumerate() {
            let ok = match label {
                serde_json::Value::String(s) => {
                    !s.is_empty() && s.chars().count() <= MAX_LABEL_CHARS
                }
                serde_json::Value::Number(n) => n.as_f64().is_some_and(f64::is_finite),
                serde_json::Value::Bool(_) => true,
                _ => false,
            };
            if !ok {
                return Err(bad(format!(
                    "request '{id}', row {r}: a label is a class name (1-{MAX_LABEL_CHARS} characters), a finite number or a boolean, not {}",
                    bastion_core::limits::truncate(&label.to_string(), 64)
                ))
                .into());
            }
        }
    }
    Ok(())
}

impl MetaStore {
    /// Joins labels to `model`'s answered requests and keeps them, in one transaction: a
    /// request given more labels than it answered rows fails the whole batch, and nothing
    /// of it is kept. When a request id was used twice, the newest request has it.
    pub async fn record_feedback(
        &self,
        model: &str,
        items: &[FeedbackItem],
        by: &str,
    ) -> StoreResult<FeedbackReceipt> {
        check(items)?;
        let now = time::now_ms();
        let mut receipt = FeedbackReceipt::default();
        let mut rows: Vec<(i64, i64, String)> = Vec::new();
        let mut tx = self.write.begin().await?;
        for (i, it) in items.iter().enumerate() {
            let found = sqlx::query(
                "SELECT id, rows_count FROM inference_events WHERE model_name = $1 \
                 AND request_id = $2 ORDER BY id DESC LIMIT 1",
            )
            .bind(model)
            .bind(it.request_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(found) = found else {
                receipt.unmatched.push(it.request_id.clone());
                continue;
            };
            let (event_id, answered): (i64, i64) =
                (found.try_get("id")?, found.try_get("rows_count")?);
            if it.labels.len() as i64 > answered {
                return Err(Error::invalid(format!(
                    "feedback item {i}: request '{}' answered {answered} rows of '{model}', but {} labels were given",
                    it.request_id,
                    it.labels.len()
                ))
                .into());
            }
            for (r, label) in it.labels.iter().enumerate() {
                let text = serde_json::to_string(label)
                    .map_err(|e| StoreError::Corrupt(format!("label: {e}")))?;
                rows.push((event_id, r as i64, text));
            }
        }
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut sql = Sql::new(
                "INSERT INTO inference_feedback (event_id, row_index, model_name, label, \
                 received_time, received_by) VALUES ",
            );
            for (n, (event_id, row, label)) in chunk.iter().enumerate() {
                if n > 0 {
                    sql.push(", ");
                }
                sql.push("(")
                    .bind(*event_id)
                    .push(", ")
                    .bind(*row)
                    .push(", ")
                    .bind(model)
                    .push(", ")
                    .bind(label.as_str())
                    .push(", ")
                    .bind(now)
                    .push(", ")
                    .bind(by)
                    .push(")");
            }
            sql.push(" ON CONFLICT (event_id, row_index) DO NOTHING");
            receipt.stored += sql.query().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        receipt.duplicates = rows.len() as u64 - receipt.stored;
        Ok(receipt)
    }

    /// Kept labels with id above `after_id`, in id order, with the answers they judge.
    pub async fn labelled_events(
        &self,
        after_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<LabelledEvent>> {
        let rows = sqlx::query(
            "SELECT f.id AS feedback_id, f.event_id, f.row_index, f.label, f.received_time, \
             e.time_ms, e.model_name, e.version, e.outputs \
             FROM inference_feedback f JOIN inference_events e ON e.id = f.event_id \
             WHERE f.id > $1 ORDER BY f.id LIMIT $2",
        )
        .bind(after_id)
        .bind(limit.clamp(1, 100_000))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let label: String = r.try_get("label")?;
                let outputs: Option<String> = r.try_get("outputs")?;
                Ok(LabelledEvent {
                    feedback_id: r.try_get("feedback_id")?,
                    event_id: r.try_get("event_id")?,
                    received_time: r.try_get("received_time")?,
                    time_ms: r.try_get("time_ms")?,
                    model_name: r.try_get("model_name")?,
                    version: r.try_get("version")?,
                    row_index: r.try_get("row_index")?,
                    label: serde_json::from_str(&label)
                        .map_err(|e| StoreError::Corrupt(format!("feedback label: {e}")))?,
                    outputs: match outputs {
                        None => serde_json::Value::Null,
                        Some(t) => serde_json::from_str(&t).map_err(|e| {
                            StoreError::Corrupt(format!("inference event outputs: {e}"))
                        })?,
                    },
                })
            })
            .collect()
    }
}
