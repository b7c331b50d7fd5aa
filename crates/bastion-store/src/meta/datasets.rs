//! Versioned datasets: `name@vK` rows naming a canonical Parquet digest, the blob holding it,
//! and lineage. Versions are numbered 1, 2, … per name and never changed.

use bastion_core::{Digest, Error, time};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::MetaStore;
use crate::error::{StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatasetVersion {
    pub name: String,
    pub version: i64,
    /// SHA-256 of the canonical Parquet (plaintext): the dataset's identity and the digest
    /// evidence is recorded on.
    pub digest: Digest,
    /// The stored blob: `digest` itself, or its age ciphertext's digest when encrypted.
    pub blob_digest: Digest,
    pub encrypted: bool,
    pub bytes: i64,
    pub rows: i64,
    pub format: String,
    pub source: String,
    pub source_digest: Digest,
    pub schema: serde_json::Value,
    pub files: serde_json::Value,
    pub parent_version: Option<i64>,
    pub created_by: String,
    pub created_time: i64,
}

impl DatasetVersion {
    /// `name@vK`
    pub fn reference(&self) -> String {
        format!("{}@v{}", self.name, self.version)
    }
}

/// What an ingest produced, before the store numbers it.
#[derive(Debug, Clone)]
pub struct DatasetVersionDraft {
    pub name: String,
    pub digest: Digest,
    pub blob_digest: Digest,
    pub encrypted: bool,
    pub bytes: i64,
    pub rows: i64,
    pub format: String,
    pub source: String,
    pub source_digest: Digest,
    pub schema: serde_json::Value,
    pub files: serde_json::Value,
    pub created_by: String,
}

/// Dataset names: 1–128 letters, digits, `.`, `_` or `-` (no `@`, which separates the
/// version, and no `/`).
pub fn validate_dataset_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid dataset name '{}': use 1-128 letters, digits, '.', '_' or '-', not starting with '.'",
            name.escape_debug()
        )))
    }
}

/// `name@vK`, `name@K` or `name` (the latest version) → (name, version).
pub fn parse_dataset_reference(reference: &str) -> Result<(String, Option<i64>), Error> {
    let (name, version) = match reference.split_once('@') {
        Some((n, v)) => {
            let digits = v.strip_prefix('v').unwrap_or(v);
            let k: i64 = digits.parse().ok().filter(|k| *k >= 1).ok_or_else(|| {
                Error::invalid(format!(
                    "invalid dataset version '{}' in '{}': use NAME@vK with K ≥ 1",
                    v.escape_debug(),
                    reference.escape_debug()
                ))
            })?;
            (n, Some(k))
        }
        None => (reference, None),
    };
    validate_dataset_name(name)?;
    Ok((name.to_string(), version))
}

const COLUMNS: &str = "name, version, digest, blob_digest, encrypted, bytes, rows_count, format, source, \
     source_digest, schema_json, files_json, parent_version, created_by, created_time";

fn parse_digest(r: &AnyRow, col: &str) -> StoreResult<Digest> {
    let s: String = r.try_get(col)?;
    s.parse()
        .map_err(|e| StoreError::Corrupt(format!("dataset {col}: {e}")))
}

fn parse_json(r: &AnyRow, col: &str) -> StoreResult<serde_json::Value> {
    let s: String = r.try_get(col)?;
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("dataset {col}: {e}")))
}

fn version_from_row(r: &AnyRow) -> StoreResult<DatasetVersion> {
    Ok(DatasetVersion {
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        digest: parse_digest(r, "digest")?,
        blob_digest: parse_digest(r, "blob_digest")?,
        encrypted: r.try_get::<i64, _>("encrypted")? != 0,
        bytes: r.try_get("bytes")?,
        rows: r.try_get("rows_count")?,
        format: r.try_get("format")?,
        source: r.try_get("source")?,
        source_digest: parse_digest(r, "source_digest")?,
        schema: parse_json(r, "schema_json")?,
        files: parse_json(r, "files_json")?,
        parent_version: r.try_get("parent_version")?,
        created_by: r.try_get("created_by")?,
        created_time: r.try_get("created_time")?,
    })
}

impl MetaStore {
    /// Records the next version of `draft.name` (creating the dataset on its first version),
    /// with the previous latest version as its parent. One transaction, audited.
    pub async fn create_dataset_version(
        &self,
        draft: &DatasetVersionDraft,
    ) -> StoreResult<DatasetVersion> {
        validate_dataset_name(&draft.name)?;
        let now = time::now_ms();
        let mut tx = self.begin_write().await?;
        // An upsert that always touches the name's row: on PostgreSQL it holds the row lock
        // until commit, so concurrent ingests of one dataset are numbered in turn.
        sqlx::query(
            "INSERT INTO dataset_names (name, created_by, created_time) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET name = excluded.name",
        )
        .bind(&draft.name)
        .bind(&draft.created_by)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT MAX(version) AS v FROM dataset_versions WHERE name = $1")
            .bind(&draft.name)
            .fetch_one(&mut *tx)
            .await?;
        let parent: Option<i64> = row.try_get("v")?;
        let version = parent.unwrap_or(0) + 1;
        let schema = draft.schema.to_string();
        let files = draft.files.to_string();
        query_fmt!("INSERT INTO dataset_versions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)")
            .bind(&draft.name)
            .bind(version)
            .bind(draft.digest.hex())
            .bind(draft.blob_digest.hex())
            .bind(i64::from(draft.encrypted))
            .bind(draft.bytes)
            .bind(draft.rows)
            .bind(&draft.format)
            .bind(&draft.source)
            .bind(draft.source_digest.hex())
            .bind(&schema)
            .bind(&files)
            .bind(parent)
            .bind(&draft.created_by)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(DatasetVersion {
            name: draft.name.clone(),
            version,
            digest: draft.digest,
            blob_digest: draft.blob_digest,
            encrypted: draft.encrypted,
            bytes: draft.bytes,
            rows: draft.rows,
            format: draft.format.clone(),
            source: draft.source.clone(),
            source_digest: draft.source_digest,
            schema: draft.schema.clone(),
            files: draft.files.clone(),
            parent_version: parent,
            created_by: draft.created_by.clone(),
            created_time: now,
        })
    }

    /// A version by `name@vK`, or the latest when no version is given.
    pub async fn get_dataset_version(
        &self,
        name: &str,
        version: Option<i64>,
    ) -> StoreResult<DatasetVersion> {
        validate_dataset_name(name)?;
        let row = match version {
            Some(v) => query_fmt!("SELECT {COLUMNS} FROM dataset_versions WHERE name = $1 AND version = $2")
                .bind(name)
                .bind(v)
                .fetch_optional(&self.read)
                .await?,
            None => query_fmt!("SELECT {COLUMNS} FROM dataset_versions WHERE name = $1 ORDER BY version DESC LIMIT 1")
                .bind(name)
                .fetch_optional(&self.read)
                .await?,
        };
        match row {
            Some(r) => version_from_row(&r),
            None => Err(Error::not_found(match version {
                Some(v) => format!("dataset version '{name}@v{v}' not found"),
                None => format!("dataset '{name}' not found"),
            })
            .into()),
        }
    }

    /// Every version of `name` (newest first), or the latest version of every dataset.
    pub async fn list_dataset_versions(
        &self,
        name: Option<&str>,
    ) -> StoreResult<Vec<DatasetVersion>> {
        let rows = match name {
            Some(n) => {
                validate_dataset_name(n)?;
                query_fmt!(
                    "SELECT {COLUMNS} FROM dataset_versions WHERE name = $1 ORDER BY version DESC"
                )
                .bind(n)
                .fetch_all(&self.read)
                .await?
            }
            None => {
                query_fmt!(
                    "SELECT {COLUMNS} FROM dataset_versions d WHERE version = \
                 (SELECT MAX(version) FROM dataset_versions x WHERE x.name = d.name) ORDER BY name"
                )
                .fetch_all(&self.read)
                .await?
            }
        };
        rows.iter().map(version_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_names_are_checked() {
        assert_eq!(
            parse_dataset_reference("iris@v3").ok(),
            Some(("iris".into(), Some(3)))
        );
        assert_eq!(
            parse_dataset_reference("iris@2").ok(),
            Some(("iris".into(), Some(2)))
        );
        assert_eq!(
            parse_dataset_reference("iris").ok(),
            Some(("iris".into(), None))
        );
        for bad in [
            "iris@v0", "iris@vx", "../x", "a/b", "", ".hidden", "a@b@c", "x\0y",
        ] {
            assert!(parse_dataset_reference(bad).is_err(), "{bad}");
        }
    }
}
