//! Every write to the metadata store goes through here, so that the audit entry of a request
//! commits in the same transaction as the change it records: neither can exist without the
//! other. A store handle carries the request's [`AuditContext`]; [`WriteTx::commit`] appends
//! it just before committing.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Executor, Row, Transaction};

use super::audit::{AuditDraft, Tail, append_in, entries_after, push_entry_values};
use super::sql::Sql;
use super::{Backend, MetaStore};
use crate::error::StoreResult;

/// Who is writing and why: the audit entry every change made through a handle records.
#[derive(Debug)]
pub struct AuditContext {
    draft: AuditDraft,
    recorded: AtomicBool,
}

impl AuditContext {
    pub fn new(draft: AuditDraft) -> Arc<Self> {
        Arc::new(Self {
            draft,
            recorded: AtomicBool::new(false),
        })
    }

    pub fn draft(&self) -> &AuditDraft {
        &self.draft
    }

    /// Whether an entry for this context has been committed with a change.
    pub fn recorded(&self) -> bool {
        self.recorded.load(Ordering::Acquire)
    }

    fn mark_recorded(&self) {
        self.recorded.store(true, Ordering::Release);
    }
}

/// A write transaction. Dropping it without [`WriteTx::commit`] rolls everything back.
pub(crate) struct WriteTx<'s> {
    tx: Transaction<'static, Any>,
    store: &'s MetaStore,
}

impl Deref for WriteTx<'_> {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

impl WriteTx<'_> {
    /// Appends the handle's audit entry (if it carries one) and commits both together.
    pub async fn commit(mut self) -> StoreResult<()> {
        let Some(ctx) = self.store.audit.clone() else {
            self.tx.commit().await?;
            return Ok(());
        };
        // The cached tail serves SQLite's single writer; on PostgreSQL the advisory lock in
        // `append_in` orders appends, and holding this lock there would serialize every
        // writer's whole commit behind it.
        let mut tail = match self.store.backend {
            Backend::Sqlite => Some(self.store.audit_tail.lock().await),
            Backend::Postgres => None,
        };
        let appended = append_in(
            &mut self.tx,
            self.store.backend,
            std::slice::from_ref(&ctx.draft),
        )
        .await;
        let entries = match appended {
            Ok(e) => e,
            Err(e) => {
                if let Some(t) = tail.as_mut() {
                    **t = None;
                }
                return Err(e);
            }
        };
        match self.tx.commit().await {
            Ok(()) => {
                if let Some(t) = tail.as_mut() {
                    **t = entries.last().map(Tail::after);
                }
                ctx.mark_recorded();
                Ok(())
            }
            Err(e) => {
                if let Some(t) = tail.as_mut() {
                    **t = None;
                }
                Err(e.into())
            }
        }
    }
}

/// `query.write_on(store)`: runs one write statement in its own audited transaction and
/// returns the number of rows it changed. A statement that changed nothing records nothing.
pub(crate) trait WriteOn {
    fn write_on(self, store: &MetaStore) -> impl Future<Output = StoreResult<u64>> + Send;
}

impl WriteOn for Query<'_, Any, AnyArguments> {
    async fn write_on(self, store: &MetaStore) -> StoreResult<u64> {
        let mut tx = store.begin_write().await?;
        let changed = self.execute(&mut *tx).await?.rows_affected();
        if changed > 0 {
            tx.commit().await?;
        }
        Ok(changed)
    }
}

impl MetaStore {
    /// This store, with every change made through it recorded as `ctx`.
    pub fn audited(&self, ctx: Arc<AuditContext>) -> MetaStore {
        let mut s = self.clone();
        s.audit = Some(ctx);
        s
    }

    pub(crate) async fn begin_write(&self) -> StoreResult<WriteTx<'_>> {
        Ok(WriteTx {
            tx: self.write.begin().await?,
            store: self,
        })
    }

    /// Runs one statement that changes at most one row and returns the number of rows it
    /// changed, with its audit entry when it changed one.
    ///
    /// This is the hot path of tracking (log-metric, log-param, set-tag). On SQLite, with the
    /// log's tail known, the statement, the audit insert and the commit travel to the database
    /// as one batch: every extra statement costs a round trip to sqlx's SQLite worker (~70 µs),
    /// as much as the statement itself. The audit insert is guarded by `changes() = 1`, so a
    /// statement that changed nothing records nothing. If another process appended to the log
    /// meanwhile, the insert collides on its sequence number; the batch is rolled back and the
    /// ordinary transaction below re-reads the tail.
    pub(crate) async fn write_one(&self, stmt: &Sql) -> StoreResult<u64> {
        if let (Backend::Sqlite, Some(ctx)) = (self.backend, &self.audit) {
            // Lock order everywhere: the write connection, then the tail.
            let mut conn = self.write.acquire().await?;
            let mut tail = self.audit_tail.lock().await;
            if let Some(t) = *tail {
                let entries = entries_after(t, std::slice::from_ref(&ctx.draft));
                let mut batch = Sql::new("BEGIN IMMEDIATE; ");
                batch.append(stmt);
                batch.push("; INSERT INTO audit_log (seq, time_ms, actor, action, resource, request_id, outcome, body_sha256, prev_hash, entry_hash) SELECT ");
                for (entry, hash) in &entries {
                    push_entry_values(&mut batch, entry, hash)?;
                }
                // rows_affected is no use here: SQLite's changes() is not reset by BEGIN or
                // COMMIT, so the batch reports what the audit insert did with a SELECT. Every
                // row is fetched, so the stream runs through the COMMIT.
                batch.push(" WHERE changes() = 1; SELECT changes() AS audited; COMMIT");
                match batch.query().fetch_all(&mut *conn).await {
                    Ok(rows) => {
                        let changed = rows
                            .first()
                            .and_then(|r| r.try_get::<i64, _>("audited").ok())
                            .unwrap_or(0) as u64;
                        if changed > 0 {
                            *tail = entries.last().map(|(e, h)| Tail {
                                next_seq: e.seq + 1,
                                hash: *h,
                            });
                            ctx.mark_recorded();
                        }
                        return Ok(changed.min(1));
                    }
                    Err(e) => {
                        // Nothing of the batch may stay pending on the shared write connection.
                        let _ = conn.execute("ROLLBACK").await;
                        *tail = None;
                        tracing::debug!(error = %e, "batched audited write failed; retrying as a transaction");
                    }
                }
            }
            // Release both before the transaction below takes them again.
            drop(tail);
            drop(conn);
        }
        stmt.query().write_on(self).await
    }
}
