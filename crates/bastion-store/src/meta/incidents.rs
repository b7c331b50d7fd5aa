//! What monitoring keeps: incidents (alerts with one key grouped until someone resolves
//! them), the responses each alert asked for (an outbox: written pending with the alert,
//! then marked with what happened), and each monitor consumer's place in the event stream
//! with its state. A consumer's progress, its state and the alerts it raised commit in one
//! transaction, guarded by the position it started from, so two workers sharing a consumer
//! name never both judge the same events, and a worker that dies loses nothing it committed.

use bastion_audit::entry::Outcome;
use bastion_core::{Error, time};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::MetaStore;
use super::audit::{AuditDraft, Tail, append_in};
use super::sql::Sql;
use crate::error::{StoreError, StoreResult};

pub const STATUS_OPEN: &str = "open";
pub const STATUS_ACKNOWLEDGED: &str = "acknowledged";
pub const STATUS_RESOLVED: &str = "resolved";

/// What the monitor measured over one window (`kind` [`WINDOW`]) or the detector scores of a
/// model's callers (`kind` [`CALLERS`], no version), kept for looking back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRecord {
    pub kind: String,
    pub model_name: String,
    pub version: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub report: serde_json::Value,
}

pub const WINDOW: &str = "window";
pub const CALLERS: &str = "callers";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: i64,
    /// Alerts with one key belong to one incident until it is resolved.
    pub key: String,
    pub rule: String,
    pub severity: String,
    pub model_name: String,
    pub version: String,
    /// The caller a per-caller detector named ("" for model-wide alerts).
    pub actor: String,
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    pub opened_time: i64,
    pub updated_time: i64,
    /// Alerts that joined it, the first included.
    pub alerts: i64,
    /// The newest alert: its condition, value and signals.
    pub evidence: serde_json::Value,
    pub updated_by: String,
    pub note: String,
}

/// One alert as the monitor raises it, with the responses its rule asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertDraft {
    pub key: String,
    pub rule: String,
    pub severity: String,
    pub model_name: String,
    pub version: String,
    pub actor: String,
    pub time_ms: i64,
    pub evidence: serde_json::Value,
    pub responses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentResponse {
    pub id: i64,
    pub incident_id: i64,
    pub response: String,
    /// `pending`, `running`, `done`, `failed` or `skipped`.
    pub status: String,
    pub detail: String,
    pub created_time: i64,
    pub updated_time: i64,
}

/// A consumer's place: events up to `after_id` are judged; `state` is its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorCursor {
    pub consumer: String,
    pub after_id: i64,
    /// Bumped by every commit; a commit names the revision it read.
    pub revision: i64,
    pub state: serde_json::Value,
    pub updated_time: i64,
}

/// Which incidents to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    pub status: Option<String>,
    pub model_name: Option<String>,
    /// Only incidents with an id below this (the next page).
    pub before_id: Option<i64>,
    /// At most this many (1-10000; 0 for 100).
    pub limit: i64,
}

const INCIDENT_COLUMNS: &str = "id, alert_key, rule, severity, model_name, version, actor, \
     status, opened_time, updated_time, alerts, evidence, updated_by, note";
const RESPONSE_COLUMNS: &str =
    "id, incident_id, response, status, detail, created_time, updated_time";

fn json_text(v: &serde_json::Value, what: &str) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn json_of(text: &str, what: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn incident_from_row(r: &AnyRow) -> StoreResult<Incident> {
    let evidence: String = r.try_get("evidence")?;
    Ok(Incident {
        id: r.try_get("id")?,
        key: r.try_get("alert_key")?,
        rule: r.try_get("rule")?,
        severity: r.try_get("severity")?,
        model_name: r.try_get("model_name")?,
        version: r.try_get("version")?,
        actor: r.try_get("actor")?,
        status: r.try_get("status")?,
        opened_time: r.try_get("opened_time")?,
        updated_time: r.try_get("updated_time")?,
        alerts: r.try_get("alerts")?,
        evidence: json_of(&evidence, "incident evidence")?,
        updated_by: r.try_get("updated_by")?,
        note: r.try_get("note")?,
    })
}

fn response_from_row(r: &AnyRow) -> StoreResult<IncidentResponse> {
    Ok(IncidentResponse {
        id: r.try_get("id")?,
        incident_id: r.try_get("incident_id")?,
        response: r.try_get("response")?,
        status: r.try_get("status")?,
        detail: r.try_get("detail")?,
        created_time: r.try_get("created_time")?,
        updated_time: r.try_get("updated_time")?,
    })
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl MetaStore {
    /// A consumer's place in the event stream (none before its first commit).
    pub async fn monitor_cursor(&self, consumer: &str) -> StoreResult<Option<MonitorCursor>> {
        let row = sqlx::query(
            "SELECT consumer, after_id, revision, state, updated_time FROM monitor_cursors \
             WHERE consumer = $1",
        )
        .bind(consumer)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            let state: String = r.try_get("state")?;
            Ok(MonitorCursor {
                consumer: r.try_get("consumer")?,
                after_id: r.try_get("after_id")?,
                revision: r.try_get("revision")?,
                state: json_of(&state, "monitor state")?,
                updated_time: r.try_get("updated_time")?,
            })
        })
        .transpose()
    }

    /// Commits a consumer's progress to `after_id` with its new state and the alerts it
    /// raised, in one transaction, if the cursor is still at `revision` (as the worker read
    /// it; 0 before the first commit). The cursor's revision becomes `revision + 1`. Each
    /// alert joins the open or acknowledged incident with its key or opens one, queues its
    /// responses as pending, and is audited as `monitor.alert` with the SHA-256 of its
    /// evidence. If another worker committed meanwhile, nothing is written and the error
    /// says so (`INVALID_STATE`): the caller reloads and goes on from there.
    pub async fn commit_monitor(
        &self,
        consumer: &str,
        revision: i64,
        after_id: i64,
        state: &serde_json::Value,
        alerts: &[AlertDraft],
        windows: &[WindowRecord],
    ) -> StoreResult<Vec<(Incident, Vec<IncidentResponse>)>> {
        let state = json_text(state, "monitor state")?;
        let now = time::now_ms();
        let mut tx = self.write.begin().await?;
        let mut tail = self.audit_tail.lock().await;
        *tail = None;
        let moved = if revision == 0 {
            sqlx::query(
                "INSERT INTO monitor_cursors (consumer, after_id, revision, state, updated_time) \
                 VALUES ($1, $2, 1, $3, $4) ON CONFLICT (consumer) DO NOTHING",
            )
            .bind(consumer)
            .bind(after_id)
            .bind(&state)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        } else {
            sqlx::query(
                "UPDATE monitor_cursors SET after_id = $1, state = $2, updated_time = $3, \
                 revision = revision + 1 WHERE consumer = $4 AND revision = $5",
            )
            .bind(after_id)
            .bind(&state)
            .bind(now)
            .bind(consumer)
            .bind(revision)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        };
        if moved == 0 {
            return Err(Error::invalid_state(format!(
                "monitor consumer '{consumer}' is no longer at revision {revision}: another \
                 worker committed meanwhile"
            ))
            .into());
        }
        let mut out = Vec::with_capacity(alerts.len());
        let mut drafts = Vec::with_capacity(alerts.len());
        for a in alerts {
            let evidence = json_text(&a.evidence, "alert evidence")?;
            let open = sqlx::query(
                "SELECT id FROM incidents WHERE alert_key = $1 AND status <> 'resolved' \
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(&a.key)
            .fetch_optional(&mut *tx)
            .await?;
            let id: i64 = match open {
                Some(r) => {
                    let id: i64 = r.try_get("id")?;
                    sqlx::query(
                        "UPDATE incidents SET alerts = alerts + 1, evidence = $1, \
                         updated_time = $2, severity = $3 WHERE id = $4",
                    )
                    .bind(&evidence)
                    .bind(a.time_ms)
                    .bind(&a.severity)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    id
                }
                None => sqlx::query(
                    "INSERT INTO incidents (alert_key, rule, severity, model_name, version, \
                     actor, status, opened_time, updated_time, alerts, evidence, updated_by, \
                     note) VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $7, 1, $8, \
                     'system:monitor', '') RETURNING id",
                )
                .bind(&a.key)
                .bind(&a.rule)
                .bind(&a.severity)
                .bind(&a.model_name)
                .bind(&a.version)
                .bind(&a.actor)
                .bind(a.time_ms)
                .bind(&evidence)
                .fetch_one(&mut *tx)
                .await?
                .try_get("id")?,
            };
            for r in &a.responses {
                sqlx::query(
                    "INSERT INTO incident_responses (incident_id, response, status, detail, \
                     created_time, updated_time) VALUES ($1, $2, 'pending', '', $3, $3)",
                )
                .bind(id)
                .bind(r)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let incident = query_fmt!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let responses = query_fmt!(
                "SELECT {RESPONSE_COLUMNS} FROM incident_responses WHERE incident_id = $1 \
                 AND status = 'pending' ORDER BY id"
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            drafts.push(AuditDraft {
                actor: "system:monitor".into(),
                action: "monitor.alert".into(),
                resource: format!("incident:{id}"),
                request_id: String::new(),
                outcome: Outcome::Success,
                body_sha256: Some(sha256(&evidence)),
            });
            out.push((
                incident_from_row(&incident)?,
                responses
                    .iter()
                    .map(response_from_row)
                    .collect::<StoreResult<_>>()?,
            ));
        }
        for w in windows {
            sqlx::query(
                "INSERT INTO monitor_windows (consumer, kind, model_name, version, start_ms, \
                 end_ms, report) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(consumer)
            .bind(&w.kind)
            .bind(&w.model_name)
            .bind(&w.version)
            .bind(w.start_ms)
            .bind(w.end_ms)
            .bind(json_text(&w.report, "window report")?)
            .execute(&mut *tx)
            .await?;
        }
        let entries = if drafts.is_empty() {
            Vec::new()
        } else {
            append_in(&mut tx, self.backend, &drafts).await?
        };
        tx.commit().await?;
        *tail = entries.last().map(Tail::after);
        Ok(out)
    }

    /// The newest `limit` records of `kind` for `model`, oldest first.
    pub async fn monitor_windows(
        &self,
        model: &str,
        kind: &str,
        limit: i64,
    ) -> StoreResult<Vec<WindowRecord>> {
        let rows = sqlx::query(
            "SELECT kind, model_name, version, start_ms, end_ms, report FROM monitor_windows \
             WHERE model_name = $1 AND kind = $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(model)
        .bind(kind)
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.read)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                let report: String = r.try_get("report")?;
                Ok(WindowRecord {
                    kind: r.try_get("kind")?,
                    model_name: r.try_get("model_name")?,
                    version: r.try_get("version")?,
                    start_ms: r.try_get("start_ms")?,
                    end_ms: r.try_get("end_ms")?,
                    report: json_of(&report, "window report")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }

    /// Takes or renews the lease of `consumer` for `holder` until `until_ms`, if it is free,
    /// expired at `now_ms`, or already `holder`'s. Returns whether `holder` has it now.
    pub async fn acquire_monitor_lease(
        &self,
        consumer: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreResult<bool> {
        let taken = sqlx::query(
            "INSERT INTO monitor_leases (consumer, holder, until_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (consumer) DO UPDATE SET holder = excluded.holder, \
             until_ms = excluded.until_ms \
             WHERE monitor_leases.holder = excluded.holder OR monitor_leases.until_ms < $4",
        )
        .bind(consumer)
        .bind(holder)
        .bind(until_ms)
        .bind(now_ms)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(taken == 1)
    }

    /// Gives the lease up, if `holder` has it, so a standby worker takes over at once.
    pub async fn release_monitor_lease(&self, consumer: &str, holder: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM monitor_leases WHERE consumer = $1 AND holder = $2")
            .bind(consumer)
            .bind(holder)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Takes a pending response for this worker to carry out (`running`); false when another
    /// worker took it first. A response is carried out at most once: one left `running` by
    /// a worker that died stays so, for a person to look at, rather than being repeated.
    pub async fn claim_response(&self, id: i64) -> StoreResult<bool> {
        let mut sql = Sql::new("UPDATE incident_responses SET status = 'running', updated_time = ");
        sql.bind(time::now_ms())
            .push(" WHERE id = ")
            .bind(id)
            .push(" AND status = 'pending'");
        Ok(sql.query().execute(&self.write).await?.rows_affected() == 1)
    }

    /// Records what became of a running response, audited as `monitor.respond.<response>`
    /// (denied when it failed) with the SHA-256 of its detail. The return says whether this
    /// call recorded it (false: it was not running).
    pub async fn finish_response(
        &self,
        response: &IncidentResponse,
        status: &str,
        detail: &str,
    ) -> StoreResult<bool> {
        let now = time::now_ms();
        let mut tx = self.write.begin().await?;
        let mut tail = self.audit_tail.lock().await;
        *tail = None;
        let changed = sqlx::query(
            "UPDATE incident_responses SET status = $1, detail = $2, updated_time = $3 \
             WHERE id = $4 AND status = 'running'",
        )
        .bind(status)
        .bind(detail)
        .bind(now)
        .bind(response.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        let draft = AuditDraft {
            actor: "system:monitor".into(),
            action: format!("monitor.respond.{}", response.response),
            resource: format!("incident:{}", response.incident_id),
            request_id: String::new(),
            outcome: if status == "failed" {
                Outcome::Denied
            } else {
                Outcome::Success
            },
            body_sha256: Some(sha256(detail)),
        };
        let entries = append_in(&mut tx, self.backend, std::slice::from_ref(&draft)).await?;
        tx.commit().await?;
        *tail = entries.last().map(Tail::after);
        Ok(true)
    }

    /// Responses still pending, oldest first (what a starting worker carries out).
    pub async fn pending_responses(&self, limit: i64) -> StoreResult<Vec<IncidentResponse>> {
        let rows = query_fmt!(
            "SELECT {RESPONSE_COLUMNS} FROM incident_responses WHERE status = 'pending' \
             ORDER BY id LIMIT $1"
        )
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(response_from_row).collect()
    }

    pub async fn get_incident(&self, id: i64) -> StoreResult<(Incident, Vec<IncidentResponse>)> {
        let row = query_fmt!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| StoreError::from(Error::not_found(format!("no incident {id}"))))?;
        let responses = query_fmt!(
            "SELECT {RESPONSE_COLUMNS} FROM incident_responses WHERE incident_id = $1 ORDER BY id"
        )
        .bind(id)
        .fetch_all(&self.read)
        .await?;
        Ok((
            incident_from_row(&row)?,
            responses
                .iter()
                .map(response_from_row)
                .collect::<StoreResult<_>>()?,
        ))
    }

    pub async fn list_incidents(&self, q: &IncidentQuery) -> StoreResult<Vec<Incident>> {
        let mut sql = Sql::new(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE 1 = 1"
        ));
        if let Some(s) = &q.status {
            sql.push(" AND status = ").bind(s.as_str());
        }
        if let Some(m) = &q.model_name {
            sql.push(" AND model_name = ").bind(m.as_str());
        }
        if let Some(id) = q.before_id {
            sql.push(" AND id < ").bind(id);
        }
        sql.push(" ORDER BY id DESC LIMIT ")
            // No limit given (0): a page of 100.
            .bind(if q.limit <= 0 {
                100
            } else {
                q.limit.min(10_000)
            });
        let rows = sql.query().fetch_all(&self.read).await?;
        rows.iter().map(incident_from_row).collect()
    }

    /// Acknowledges or resolves an incident (audited as the handle's request). Open →
    /// acknowledged → resolved; resolved is final, and going back is refused.
    pub async fn set_incident_status(
        &self,
        id: i64,
        status: &str,
        by: &str,
        note: &str,
    ) -> StoreResult<Incident> {
        let allowed_from: &[&str] = match status {
            STATUS_ACKNOWLEDGED => &[STATUS_OPEN],
            STATUS_RESOLVED => &[STATUS_OPEN, STATUS_ACKNOWLEDGED],
            other => {
                return Err(Error::invalid(format!(
                    "an incident can be set to acknowledged or resolved, not '{}'",
                    other.escape_debug()
                ))
                .into());
            }
        };
        let (current, _) = self.get_incident(id).await?;
        if !allowed_from.contains(&current.status.as_str()) {
            return Err(Error::invalid_state(format!(
                "incident {id} is {}; it cannot become {status}",
                current.status
            ))
            .into());
        }
        let mut sql = Sql::new("UPDATE incidents SET status = ");
        sql.bind(status)
            .push(", updated_by = ")
            .bind(by)
            .push(", note = ")
            .bind(note)
            .push(", updated_time = ")
            .bind(time::now_ms())
            .push(" WHERE id = ")
            .bind(id)
            .push(" AND status = ")
            .bind(current.status.as_str());
        if self.write_one(&sql).await? == 0 {
            return Err(Error::invalid_state(format!(
                "incident {id} changed meanwhile; read it again"
            ))
            .into());
        }
        Ok(self.get_incident(id).await?.0)
    }
}
