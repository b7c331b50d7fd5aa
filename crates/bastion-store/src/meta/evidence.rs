//! Evidence records (what a check found about the bytes with a given digest) and the
//! quarantine of model versions that evidence condemns. The store keeps both as data; which
//! checks run and what condemns a version is decided above it.

use bastion_core::{Digest, Error, time};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::MetaStore;
use super::write::WriteOn;
use crate::error::{StoreError, StoreResult};

/// One evidence record as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub id: i64,
    pub digest: Digest,
    /// What kind of check: `scan`, …
    pub kind: String,
    /// The tool and version that produced it (a newer tool's result supersedes an older one).
    pub tool: String,
    /// `clean`, `findings` or `error`.
    pub verdict: String,
    /// The most severe finding, if any.
    pub worst: Option<String>,
    /// The tool's full result (JSON).
    pub body: serde_json::Value,
    pub created_by: String,
    pub created_time: i64,
}

/// What a check recorded, before the store numbers it.
#[derive(Debug, Clone)]
pub struct EvidenceDraft {
    pub digest: Digest,
    pub kind: String,
    pub tool: String,
    pub verdict: String,
    pub worst: Option<String>,
    pub body: serde_json::Value,
    pub created_by: String,
}

const EVIDENCE_COLUMNS: &str =
    "id, digest, kind, tool, verdict, worst, body, created_by, created_time";

fn evidence_from_row(r: &AnyRow) -> StoreResult<Evidence> {
    let hex: String = r.try_get("digest")?;
    let body: String = r.try_get("body")?;
    Ok(Evidence {
        id: r.try_get("id")?,
        digest: hex
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("evidence digest: {e}")))?,
        kind: r.try_get("kind")?,
        tool: r.try_get("tool")?,
        verdict: r.try_get("verdict")?,
        worst: r.try_get("worst")?,
        body: serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("evidence body: {e}")))?,
        created_by: r.try_get("created_by")?,
        created_time: r.try_get("created_time")?,
    })
}

impl MetaStore {
    /// Appends an evidence record (audited as the handle's request).
    pub async fn record_evidence(&self, draft: &EvidenceDraft) -> StoreResult<Evidence> {
        let body = serde_json::to_string(&draft.body)
            .map_err(|e| StoreError::Corrupt(format!("evidence body: {e}")))?;
        let now = time::now_ms();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO evidence (digest, kind, tool, verdict, worst, body, created_by, created_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(draft.digest.hex())
        .bind(&draft.kind)
        .bind(&draft.tool)
        .bind(&draft.verdict)
        .bind(draft.worst.clone())
        .bind(&body)
        .bind(&draft.created_by)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = row.try_get("id")?;
        tx.commit().await?;
        Ok(Evidence {
            id,
            digest: draft.digest,
            kind: draft.kind.clone(),
            tool: draft.tool.clone(),
            verdict: draft.verdict.clone(),
            worst: draft.worst.clone(),
            body: draft.body.clone(),
            created_by: draft.created_by.clone(),
            created_time: now,
        })
    }

    /// The newest record of `kind` about `digest` made by exactly `tool`.
    pub async fn latest_evidence(
        &self,
        digest: &Digest,
        kind: &str,
        tool: &str,
    ) -> StoreResult<Option<Evidence>> {
        let row = query_fmt!(
            "SELECT {EVIDENCE_COLUMNS} FROM evidence WHERE digest = $1 AND kind = $2 AND tool = $3 \
             ORDER BY id DESC LIMIT 1"
        )
        .bind(digest.hex())
        .bind(kind)
        .bind(tool)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(evidence_from_row).transpose()
    }

    /// Every record about `digest`, newest first.
    pub async fn evidence_for(&self, digest: &Digest) -> StoreResult<Vec<Evidence>> {
        let rows = query_fmt!(
            "SELECT {EVIDENCE_COLUMNS} FROM evidence WHERE digest = $1 ORDER BY id DESC"
        )
        .bind(digest.hex())
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(evidence_from_row).collect()
    }

    /// Holds a version back: its status becomes `FAILED_REGISTRATION` with `reason` as the
    /// message (what MLflow clients show), and aliases and promotion are refused until an
    /// explicit release.
    pub async fn quarantine_model_version(
        &self,
        name: &str,
        version: &str,
        reason: &str,
    ) -> StoreResult<()> {
        let (pk, v, _) = self.version_row(name, version).await?;
        sqlx::query(
            "UPDATE model_versions SET quarantine = $1, status = 'FAILED_REGISTRATION', status_message = $1, \
             last_updated_time = $2 WHERE model_pk = $3 AND version = $4",
        )
        .bind(reason)
        .bind(time::now_ms())
        .bind(pk)
        .bind(v)
        .write_on(self)
        .await?;
        Ok(())
    }

    /// Records the root digest of a version's files (set once, at registration).
    pub async fn set_model_version_root_digest(
        &self,
        name: &str,
        version: &str,
        root: &Digest,
    ) -> StoreResult<()> {
        let (pk, v, _) = self.version_row(name, version).await?;
        sqlx::query(
            "UPDATE model_versions SET root_digest = $1 WHERE model_pk = $2 AND version = $3",
        )
        .bind(root.hex())
        .bind(pk)
        .bind(v)
        .write_on(self)
        .await?;
        Ok(())
    }

    /// The root digest recorded for a version's files, if one was.
    pub async fn model_version_root_digest(
        &self,
        name: &str,
        version: &str,
    ) -> StoreResult<Option<Digest>> {
        let (_, _, row) = self.version_row(name, version).await?;
        let text: Option<String> = row.try_get("root_digest")?;
        text.map(|t| {
            t.parse()
                .map_err(|e| StoreError::Corrupt(format!("model version root digest: {e}")))
        })
        .transpose()
    }

    /// Why the version is quarantined, if it is.
    pub async fn model_version_quarantine(
        &self,
        name: &str,
        version: &str,
    ) -> StoreResult<Option<String>> {
        let (_, _, row) = self.version_row(name, version).await?;
        Ok(row.try_get("quarantine")?)
    }

    /// Lifts a quarantine (a reviewed false alarm): the version is `READY` again.
    pub async fn release_model_version(&self, name: &str, version: &str) -> StoreResult<()> {
        let (pk, v, row) = self.version_row(name, version).await?;
        if row.try_get::<Option<String>, _>("quarantine")?.is_none() {
            return Err(Error::invalid(format!(
                "Model version {name}/{version} is not quarantined"
            ))
            .into());
        }
        sqlx::query(
            "UPDATE model_versions SET quarantine = NULL, status = 'READY', status_message = NULL, \
             last_updated_time = $1 WHERE model_pk = $2 AND version = $3",
        )
        .bind(time::now_ms())
        .bind(pk)
        .bind(v)
        .write_on(self)
        .await?;
        Ok(())
    }
}
