//! Decoding helpers shared by the entity modules.

use std::collections::HashMap;

use bastion_core::model::{KeyValue, LifecycleStage, Metric, MetricValue};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::sql::{Bind, Sql};
use crate::error::{StoreError, StoreResult};

/// Bound values per multi-row INSERT, about. SQLite finds each bound parameter's name by a
/// linear scan, so binding a statement costs the square of its parameter count: a few
/// hundred per statement is cheaper than the round trips saved by more (measured on a
/// 1000-metric batch: 50 rows of 6 values beat 25 and 100 rows, and 500 rows was almost three
/// times slower; 500 inference events of 14 values a statement had SQLite's thread spend
/// 42% of a serving benchmark's CPU in `sqlite3_bind_parameter_name`).
const PARAMS_PER_STATEMENT: usize = 300;

/// Rows per multi-row INSERT for rows of `values` bound values each.
pub(crate) const fn rows_per_statement(values: usize) -> usize {
    let rows = PARAMS_PER_STATEMENT / if values == 0 { 1 } else { values };
    if rows == 0 { 1 } else { rows }
}

/// How many ids go into one `IN (...)` list; stays under every backend's bind-parameter limit.
pub(crate) const ID_CHUNK: usize = 500;

pub(crate) fn stage(row: &AnyRow, col: &str) -> StoreResult<LifecycleStage> {
    let s: String = row.try_get(col)?;
    LifecycleStage::parse(&s)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown lifecycle stage '{s}'")))
}

/// The value as stored → the value as MLflow reports it: `value` is NULL for NaN rows
/// (queries select `CASE WHEN is_nan THEN NULL ELSE value END AS value`).
pub(crate) fn metric(row: &AnyRow) -> StoreResult<Metric> {
    let value: Option<f64> = row.try_get("value")?;
    Ok(Metric {
        key: row.try_get("key")?,
        value: MetricValue(value.unwrap_or(f64::NAN)),
        timestamp: row.try_get("timestamp")?,
        step: row.try_get("step")?,
        run_id: None,
    })
}

/// MLflow's SQL stores cannot hold ±Inf, so they store ±f64::MAX, and NaN as 0 with a flag.
/// Bastion keeps that behaviour so results match what MLflow users see.
pub(crate) fn stored_metric_value(v: f64) -> (f64, bool) {
    if v.is_nan() {
        (0.0, true)
    } else if v == f64::INFINITY {
        (f64::MAX, false)
    } else if v == f64::NEG_INFINITY {
        (f64::MIN, false)
    } else {
        (v, false)
    }
}

/// Runs `select` (which must end in `IN ` and select an `id` column plus `key`, `value`) for
/// every chunk of `ids`, grouping key/value pairs by id.
pub(crate) async fn kv_by_id(
    pool: &sqlx::AnyPool,
    select: &str,
    order: &str,
    ids: &[String],
) -> StoreResult<HashMap<String, Vec<KeyValue>>> {
    let mut out: HashMap<String, Vec<KeyValue>> = HashMap::new();
    for chunk in ids.chunks(ID_CHUNK) {
        let mut sql = Sql::new(select);
        sql.bind_list(chunk.iter().cloned()).push(order);
        for row in sql.query().fetch_all(pool).await? {
            let id: String = row.try_get("id")?;
            out.entry(id).or_default().push(KeyValue {
                key: row.try_get("key")?,
                value: row.try_get("value")?,
            });
        }
    }
    Ok(out)
}

/// A key/value table and the columns (with their values) that name the owner of the pairs.
pub(crate) struct KvOwner<'a> {
    pub table: &'static str,
    pub columns: &'static str,
    pub values: &'a [Bind],
}

/// Upserts `kvs` for one owner with multi-row statements. The last value of a repeated key
/// wins, as in MLflow; collapsing repeats first also matters because PostgreSQL refuses a
/// statement that updates the same row twice.
pub(crate) async fn upsert_kv(
    conn: &mut sqlx::AnyConnection,
    owner: &KvOwner<'_>,
    kvs: &[KeyValue],
) -> StoreResult<()> {
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, kv) in kvs.iter().enumerate() {
        last.insert(&kv.key, i);
    }
    let kvs: Vec<&KeyValue> = kvs
        .iter()
        .enumerate()
        .filter(|(i, kv)| last.get(kv.key.as_str()) == Some(i))
        .map(|(_, kv)| kv)
        .collect();
    for chunk in kvs.chunks(rows_per_statement(owner.values.len() + 2)) {
        let mut q = Sql::new(&format!(
            "INSERT INTO {} ({}, key, value) VALUES ",
            owner.table, owner.columns
        ));
        for (i, kv) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            for v in owner.values {
                q.bind(v.clone()).push(", ");
            }
            q.bind(kv.key.as_str())
                .push(", ")
                .bind(kv.value.as_str())
                .push(")");
        }
        q.push(&format!(
            " ON CONFLICT ({}, key) DO UPDATE SET value = excluded.value",
            owner.columns
        ));
        q.query().execute(&mut *conn).await?;
    }
    Ok(())
}

/// A delete that matched no row is MLflow's RESOURCE_DOES_NOT_EXIST, with `message`.
pub(crate) fn deleted_one(changed: u64, message: impl FnOnce() -> String) -> StoreResult<()> {
    if changed == 0 {
        return Err(bastion_core::Error::not_found(message()).into());
    }
    Ok(())
}

/// Key/value rows of one owner.
pub(crate) async fn kv_of(pool: &sqlx::AnyPool, sql: Sql) -> StoreResult<Vec<KeyValue>> {
    sql.query()
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(KeyValue {
                key: r.try_get("key")?,
                value: r.try_get("value")?,
            })
        })
        .collect()
}
