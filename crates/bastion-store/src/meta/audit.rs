//! The audit log's storage: appending entries inside the transaction of the change they
//! record, reading them back, signing tree heads, and producing proofs. Hashing, proofs and
//! verification themselves are `bastion-audit`'s.

use std::borrow::Cow;

use bastion_audit::entry::{AuditEntry, GENESIS, Hash, Outcome};
use bastion_audit::merkle::{self, Frontier};
use bastion_audit::tree_head::{SignedTreeHead, TreeHead};
use bastion_audit::verify::{StoredEntry, Tamper, Verifier, VerifyReport};
use bastion_core::{Error, time};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::sql::Sql;
use super::{Backend, MetaStore};
use crate::error::{StoreError, StoreResult};

/// Rows read per query while streaming the whole log.
const PAGE: i64 = 10_000;
/// An arbitrary constant naming the advisory lock that serializes appends on PostgreSQL.
const APPEND_LOCK: i64 = 0x6261_7374_696f_6e01;

/// What a caller records; the store adds position, time and the chain.
#[derive(Debug, Clone)]
pub struct AuditDraft {
    pub actor: String,
    pub action: String,
    pub resource: String,
    pub request_id: String,
    pub outcome: Outcome,
    pub body_sha256: Option<Hash>,
}

/// Filters for `bastion audit log`.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub resource: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub after_seq: Option<u64>,
    pub limit: i64,
}

fn hash_of(row: &AnyRow, col: &str) -> StoreResult<Hash> {
    let text: String = row.try_get(col)?;
    parse_hash(&text).ok_or_else(|| StoreError::Corrupt(format!("audit {col} is not a hash")))
}

fn seq_of(row: &AnyRow) -> StoreResult<u64> {
    let seq: i64 = row.try_get("seq")?;
    u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("negative audit sequence {seq}")))
}

/// A stored row as the verifier sees it. A row whose fields cannot even be decoded counts as
/// modified at its position (its content cannot match any hash).
fn stored_entry(row: &AnyRow) -> StoreResult<StoredEntry> {
    let text = |col: &str| row.try_get::<String, _>(col).map(Cow::Owned);
    let seq: i64 = row.try_get("seq")?;
    let body: Option<String> = row.try_get("body_sha256")?;
    let (outcome, prev, hash): (String, String, String) = (
        row.try_get("outcome")?,
        row.try_get("prev_hash")?,
        row.try_get("entry_hash")?,
    );
    PackedEntry(
        seq,
        row.try_get("time_ms")?,
        text("actor")?,
        text("action")?,
        text("resource")?,
        text("request_id")?,
        &outcome,
        body.as_deref(),
        &prev,
        &hash,
    )
    .unpack()
    .ok_or_else(|| StoreError::Corrupt(format!("audit entry {seq} has an invalid field")))
}

fn head_of(row: &AnyRow) -> StoreResult<SignedTreeHead> {
    let size: i64 = row.try_get("size")?;
    let sig: String = row.try_get("signature")?;
    Ok(SignedTreeHead {
        head: TreeHead {
            size: u64::try_from(size)
                .map_err(|_| StoreError::Corrupt("negative tree head size".into()))?,
            root: hash_of(row, "root")?,
            time_ms: row.try_get("time_ms")?,
        },
        signature: hex::decode(sig)
            .map_err(|_| StoreError::Corrupt("tree head signature is not hex".into()))?,
    })
}

/// An entry's columns in [`ENTRY_COLUMNS`] order, borrowed from whatever read them (a packed
/// JSON page or an SQLite row) where possible. Hashes and the outcome are plain ASCII as the
/// log writes them; one with JSON escapes was edited by hand and fails to parse.
#[derive(serde::Deserialize)]
pub(super) struct PackedEntry<'a>(
    pub i64,
    pub i64,
    #[serde(borrow)] pub Cow<'a, str>,
    #[serde(borrow)] pub Cow<'a, str>,
    #[serde(borrow)] pub Cow<'a, str>,
    #[serde(borrow)] pub Cow<'a, str>,
    pub &'a str,
    pub Option<&'a str>,
    pub &'a str,
    pub &'a str,
);

/// Decodes with SIMD: verification decodes three hashes per entry, and the portable decoder
/// made that a fifth of `bastion audit verify`.
fn parse_hash(text: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    faster_hex::hex_decode(text.as_bytes(), &mut out).ok()?;
    Some(out)
}

impl PackedEntry<'_> {
    /// `None` if a field cannot be what the log writes (the row was edited by hand).
    pub fn unpack(self) -> Option<StoredEntry> {
        let body_sha256 = match self.7 {
            None => None,
            Some(h) => Some(parse_hash(h)?),
        };
        Some(StoredEntry {
            entry: AuditEntry {
                seq: u64::try_from(self.0).ok()?,
                time_ms: self.1,
                actor: self.2.into_owned(),
                action: self.3.into_owned(),
                resource: self.4.into_owned(),
                request_id: self.5.into_owned(),
                outcome: Outcome::parse(self.6)?,
                body_sha256,
                prev_hash: parse_hash(self.8)?,
            },
            stored_hash: parse_hash(self.9)?,
        })
    }
}

pub(super) const ENTRY_COLUMNS: &str = "seq, time_ms, actor, action, resource, request_id, outcome, body_sha256, prev_hash, entry_hash";

/// Where the log ends: the next sequence number and the hash of the last entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tail {
    pub next_seq: u64,
    pub hash: Hash,
}

impl Tail {
    pub const EMPTY: Tail = Tail {
        next_seq: 0,
        hash: GENESIS,
    };

    pub fn after(entry: &AuditEntry) -> Tail {
        Tail {
            next_seq: entry.seq + 1,
            hash: entry.leaf_hash(),
        }
    }
}

/// The entries `drafts` become when appended after `tail`, each with its leaf hash.
pub(crate) fn entries_after(tail: Tail, drafts: &[AuditDraft]) -> Vec<(AuditEntry, Hash)> {
    let now = time::now_ms();
    let (mut seq, mut prev_hash) = (tail.next_seq, tail.hash);
    drafts
        .iter()
        .map(|d| {
            let entry = AuditEntry {
                seq,
                time_ms: now,
                actor: d.actor.clone(),
                action: d.action.clone(),
                resource: d.resource.clone(),
                request_id: d.request_id.clone(),
                outcome: d.outcome,
                body_sha256: d.body_sha256,
                prev_hash,
            };
            prev_hash = entry.leaf_hash();
            seq += 1;
            (entry, prev_hash)
        })
        .collect()
}

/// `$seq, $time, ... , $entry_hash`: one row's values in [`ENTRY_COLUMNS`] order.
pub(crate) fn push_entry_values(q: &mut Sql, e: &AuditEntry, hash: &Hash) -> StoreResult<()> {
    let seq = i64::try_from(e.seq).map_err(|_| StoreError::Corrupt("audit log is full".into()))?;
    q.bind(seq)
        .push(", ")
        .bind(e.time_ms)
        .push(", ")
        .bind(e.actor.as_str())
        .push(", ");
    q.bind(e.action.as_str())
        .push(", ")
        .bind(e.resource.as_str())
        .push(", ")
        .bind(e.request_id.as_str())
        .push(", ");
    q.bind(e.outcome.as_str()).push(", ");
    match e.body_sha256 {
        Some(h) => q.bind(hex::encode(h)),
        None => q.push("NULL"),
    };
    q.push(", ")
        .bind(hex::encode(e.prev_hash))
        .push(", ")
        .bind(hex::encode(hash));
    Ok(())
}

/// Appends entries on `conn`, which must be inside the transaction of the change they record,
/// so that neither commits without the other. The tail is read inside that transaction.
pub(crate) async fn append_in(
    conn: &mut AnyConnection,
    backend: Backend,
    drafts: &[AuditDraft],
) -> StoreResult<Vec<AuditEntry>> {
    if backend == Backend::Postgres {
        // Appends read the tail and write after it: one at a time. (SQLite has one writer.)
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    let last = sqlx::query("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    let tail = match last {
        Some(row) => Tail {
            next_seq: seq_of(&row)? + 1,
            hash: hash_of(&row, "entry_hash")?,
        },
        None => Tail::EMPTY,
    };
    let entries = entries_after(tail, drafts);
    // One bound value per column of ENTRY_COLUMNS.
    for chunk in entries.chunks(super::rows::rows_per_statement(10)) {
        let mut q = Sql::new(&format!("INSERT INTO audit_log ({ENTRY_COLUMNS}) VALUES "));
        for (i, (e, hash)) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            push_entry_values(&mut q, e, hash)?;
            q.push(")");
        }
        q.query().execute(&mut *conn).await?;
    }
    Ok(entries.into_iter().map(|(e, _)| e).collect())
}

impl MetaStore {
    /// Records an event that changes nothing else (a login failure, a refused request).
    pub async fn record_audit(&self, draft: &AuditDraft) -> StoreResult<AuditEntry> {
        let mut entries = self.record_audit_batch(std::slice::from_ref(draft)).await?;
        entries
            .pop()
            .ok_or_else(|| StoreError::Corrupt("audit append returned nothing".into()))
    }

    /// Appends many entries in one transaction (imports, bulk jobs).
    pub async fn record_audit_batch(&self, drafts: &[AuditDraft]) -> StoreResult<Vec<AuditEntry>> {
        // Connection first, then the tail: every holder of the tail lock already holds the
        // write connection, so no one waits for a connection while holding the lock.
        let mut tx = self.write.begin().await?;
        let mut tail = self.audit_tail.lock().await;
        *tail = None;
        let entries = append_in(&mut tx, self.backend, drafts).await?;
        tx.commit().await?;
        *tail = entries.last().map(Tail::after);
        Ok(entries)
    }

    pub async fn audit_size(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_log")
            .fetch_one(&self.read)
            .await?
            .try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub async fn audit_entries(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        let mut sql = Sql::new(&format!(
            "SELECT {ENTRY_COLUMNS} FROM audit_log WHERE 1 = 1"
        ));
        if let Some(a) = &q.actor {
            sql.push(" AND actor = ").bind(a.as_str());
        }
        if let Some(r) = &q.resource {
            sql.push(" AND resource = ").bind(r.as_str());
        }
        if let Some(t) = q.since_ms {
            sql.push(" AND time_ms >= ").bind(t);
        }
        if let Some(t) = q.until_ms {
            sql.push(" AND time_ms < ").bind(t);
        }
        if let Some(s) = q.after_seq {
            sql.push(" AND seq > ")
                .bind(i64::try_from(s).unwrap_or(i64::MAX));
        }
        sql.push(" ORDER BY seq LIMIT ")
            .bind(q.limit.clamp(1, 100_000));
        sql.query()
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|r| stored_entry(r).map(|s| s.entry))
            .collect()
    }

    /// One page of the log packed by the database into a single JSON array: one row per page
    /// instead of one per entry, because sqlx hands rows over one at a time (~6 µs each, six
    /// times the cost of verifying the entry).
    async fn packed_page(self, after: i64) -> StoreResult<Option<String>> {
        let sql = match self.backend {
            Backend::Sqlite => format!(
                "SELECT json_group_array(json_array({ENTRY_COLUMNS})) AS page FROM \
                 (SELECT {ENTRY_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2)"
            ),
            Backend::Postgres => format!(
                "SELECT json_agg(json_build_array({ENTRY_COLUMNS}) ORDER BY seq)::text AS page FROM \
                 (SELECT {ENTRY_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2) t"
            ),
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .bind(PAGE)
            .fetch_one(&self.read)
            .await?;
        Ok(row.try_get("page")?)
    }

    /// Every stored entry in order, a page at a time, as the verifier wants them. The next
    /// page is read while the current one is checked.
    async fn for_each_stored(
        &self,
        mut f: impl FnMut(StoredEntry) -> Result<(), Tamper>,
    ) -> StoreResult<Result<(), Tamper>> {
        let mut after: i64 = -1;
        let mut pending = Some(tokio::spawn(self.clone().packed_page(after)));
        while let Some(reading) = pending.take() {
            let page = reading
                .await
                .map_err(|e| StoreError::Corrupt(format!("audit reader failed: {e}")))??;
            let parsed = page
                .as_deref()
                .map(serde_json::from_str::<Vec<PackedEntry>>)
                .unwrap_or(Ok(Vec::new()));
            let entries = match parsed {
                Ok(e) => e,
                // A value of the wrong type (edited by hand): the row-by-row reader names it.
                Err(_) => return self.check_rows(after, &mut f).await,
            };
            let Some(last) = entries.last() else {
                return Ok(Ok(()));
            };
            let full = entries.len() as i64 == PAGE;
            let last_seq = last.0;
            if full {
                pending = Some(tokio::spawn(self.clone().packed_page(last_seq)));
            }
            for packed in entries {
                let seq = packed.0;
                let Some(stored) = packed.unpack() else {
                    return Ok(Err(Tamper::Modified {
                        seq: seq.max(0) as u64,
                    }));
                };
                if let Err(t) = f(stored) {
                    return Ok(Err(t));
                }
            }
            after = last_seq;
        }
        Ok(Ok(()))
    }

    /// The page after `after`, row by row, to pin down a row the packed reader cannot parse.
    async fn check_rows(
        &self,
        after: i64,
        f: &mut impl FnMut(StoredEntry) -> Result<(), Tamper>,
    ) -> StoreResult<Result<(), Tamper>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENTRY_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
        )))
        .bind(after)
        .bind(PAGE)
        .fetch_all(&self.read)
        .await?;
        for row in &rows {
            let stored = match stored_entry(row) {
                Ok(s) => s,
                Err(StoreError::Corrupt(_)) | Err(StoreError::Database(_)) => {
                    let seq = row
                        .try_get::<i64, _>("seq")
                        .map(|s| s.max(0) as u64)
                        .unwrap_or(0);
                    return Ok(Err(Tamper::Modified { seq }));
                }
                Err(e) => return Err(e),
            };
            if let Err(t) = f(stored) {
                return Ok(Err(t));
            }
        }
        Err(StoreError::Corrupt(
            "an audit page could not be parsed, yet each of its rows could".into(),
        ))
    }

    pub async fn audit_tree_heads(&self) -> StoreResult<Vec<SignedTreeHead>> {
        sqlx::query("SELECT size, root, time_ms, signature FROM audit_tree_heads ORDER BY size")
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(head_of)
            .collect()
    }

    /// Recomputes everything: the Ok value is the verdict (a report, or the first tampering).
    pub async fn verify_audit(
        &self,
        key: &VerifyingKey,
    ) -> StoreResult<Result<VerifyReport, Tamper>> {
        let heads = self.audit_tree_heads().await?;
        if let Some(path) = self.sqlite_file.clone() {
            let key = *key;
            return tokio::task::spawn_blocking(move || {
                super::audit_file::verify(&path, &heads, &key)
            })
            .await
            .map_err(|e| StoreError::Corrupt(format!("audit verification failed: {e}")))?;
        }
        let mut verifier = match Verifier::new(&heads, key) {
            Ok(v) => v,
            Err(t) => return Ok(Err(t)),
        };
        if let Err(t) = self.for_each_stored(|s| verifier.push(s)).await? {
            return Ok(Err(t));
        }
        Ok(verifier.finish())
    }

    /// The leaf hashes of entries `0..size`, as stored.
    async fn audit_leaves(&self, size: u64) -> StoreResult<Vec<Hash>> {
        let rows = sqlx::query("SELECT entry_hash FROM audit_log WHERE seq < $1 ORDER BY seq")
            .bind(i64::try_from(size).unwrap_or(i64::MAX))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| hash_of(r, "entry_hash")).collect()
    }

    /// Signs a tree head over the whole log if it grew since the last head; returns the newest
    /// head either way (None for an empty log with no head).
    pub async fn sign_audit_head(&self, key: &SigningKey) -> StoreResult<Option<SignedTreeHead>> {
        let heads = self.audit_tree_heads().await?;
        let size = self.audit_size().await?;
        if let Some(last) = heads.last()
            && last.head.size >= size
        {
            return Ok(Some(last.clone()));
        }
        if size == 0 {
            return Ok(None);
        }
        let leaves = self.audit_leaves(size).await?;
        let mut frontier = Frontier::default();
        for l in &leaves {
            frontier.push(*l);
        }
        let sth = TreeHead {
            size,
            root: frontier.root(),
            time_ms: time::now_ms(),
        }
        .sign(key);
        sqlx::query("INSERT INTO audit_tree_heads (size, root, time_ms, signature) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(i64::try_from(size).unwrap_or(i64::MAX))
            .bind(hex::encode(sth.head.root))
            .bind(sth.head.time_ms)
            .bind(hex::encode(&sth.signature))
            .execute(&self.write)
            .await?;
        Ok(Some(sth))
    }

    /// Entry `seq` with its inclusion proof against the newest signed head that covers it.
    pub async fn audit_inclusion_proof(
        &self,
        seq: u64,
    ) -> StoreResult<(AuditEntry, SignedTreeHead, Vec<Hash>)> {
        let heads = self.audit_tree_heads().await?;
        let head = heads
            .iter()
            .rev()
            .find(|h| h.head.size > seq)
            .cloned()
            .ok_or_else(|| {
                Error::not_found(format!(
                    "No signed tree head covers audit entry {seq} yet; sign one first"
                ))
            })?;
        let leaves = self.audit_leaves(head.head.size).await?;
        let proof = usize::try_from(seq)
            .ok()
            .and_then(|i| merkle::inclusion_proof(&leaves, i))
            .ok_or_else(|| Error::not_found(format!("Audit entry {seq} not found")))?;
        let entry = self
            .audit_entries(&AuditQuery {
                after_seq: seq.checked_sub(1),
                limit: 1,
                ..Default::default()
            })
            .await?
            .into_iter()
            .find(|e| e.seq == seq)
            .ok_or_else(|| Error::not_found(format!("Audit entry {seq} not found")))?;
        Ok((entry, head, proof))
    }

    /// A consistency proof between two stored signed heads.
    pub async fn audit_consistency_proof(
        &self,
        old: u64,
        new: u64,
    ) -> StoreResult<(SignedTreeHead, SignedTreeHead, Vec<Hash>)> {
        let heads = self.audit_tree_heads().await?;
        let find = |size: u64| {
            heads
                .iter()
                .find(|h| h.head.size == size)
                .cloned()
                .ok_or_else(|| Error::not_found(format!("No signed tree head of size {size}")))
        };
        let (a, b) = (find(old)?, find(new)?);
        if old > new {
            return Err(
                Error::invalid("The first tree head must not be larger than the second").into(),
            );
        }
        let leaves = self.audit_leaves(new).await?;
        let proof = usize::try_from(old)
            .ok()
            .and_then(|m| merkle::consistency_proof(&leaves, m))
            .ok_or_else(|| Error::invalid("tree head sizes out of range"))?;
        Ok((a, b, proof))
    }
}
