//! The artifact index: which digest each path of the artifact namespace names.

use std::collections::BTreeMap;

use bastion_core::{Digest, Error, RelPath, time};
use sqlx::Row;

use super::MetaStore;
use crate::error::{StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactEntry {
    pub digest: Digest,
    pub size: i64,
}

/// One entry of a directory listing; `path` is relative to the listed directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactListing {
    pub path: String,
    pub is_dir: bool,
    pub size: Option<i64>,
}

/// The half-open key range `[dir/, dir0)` holds exactly the paths below `dir` under bytewise
/// ordering (`0` is the byte after `/`); SQLite's BINARY and PostgreSQL's "C" collation are
/// bytewise.
fn subtree_range(dir: &RelPath) -> (String, String) {
    if dir.is_root() {
        (String::new(), "\u{10FFFF}".to_owned())
    } else {
        (format!("{dir}/"), format!("{dir}0"))
    }
}

impl MetaStore {
    /// Points `path` at `digest`, replacing what it named before (blobs themselves are never
    /// overwritten). A path cannot be both a file and a directory.
    pub async fn put_artifact(
        &self,
        path: &RelPath,
        digest: &Digest,
        size: i64,
    ) -> StoreResult<()> {
        if path.is_root() {
            return Err(Error::invalid("Cannot upload to the artifact root; name a file").into());
        }
        let (lo, hi) = subtree_range(path);
        let mut tx = self.begin_write().await?;
        let below = sqlx::query("SELECT 1 FROM artifacts WHERE path >= $1 AND path < $2 LIMIT 1")
            .bind(&lo)
            .bind(&hi)
            .fetch_optional(&mut *tx)
            .await?;
        if below.is_some() {
            return Err(Error::invalid(format!(
                "'{path}' is a directory of artifacts; cannot write a file there"
            ))
            .into());
        }
        // No ancestor may be a file.
        let mut ancestor = String::new();
        let segments: Vec<&str> = path.segments().collect();
        for seg in &segments[..segments.len().saturating_sub(1)] {
            if !ancestor.is_empty() {
                ancestor.push('/');
            }
            ancestor.push_str(seg);
            let file = sqlx::query("SELECT 1 FROM artifacts WHERE path = $1")
                .bind(&ancestor)
                .fetch_optional(&mut *tx)
                .await?;
            if file.is_some() {
                return Err(Error::invalid(format!(
                    "'{ancestor}' is a file; cannot write '{path}' below it"
                ))
                .into());
            }
        }
        sqlx::query(
            "INSERT INTO artifacts (path, digest, size, created_time) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (path) DO UPDATE SET digest = excluded.digest, size = excluded.size, created_time = excluded.created_time",
        )
        .bind(path.as_str())
        .bind(digest.hex())
        .bind(size)
        .bind(time::now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_artifact(&self, path: &RelPath) -> StoreResult<Option<ArtifactEntry>> {
        let row = sqlx::query("SELECT digest, size FROM artifacts WHERE path = $1")
            .bind(path.as_str())
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            let hex: String = r.try_get("digest")?;
            Ok(ArtifactEntry {
                digest: hex
                    .parse()
                    .map_err(|e| StoreError::Corrupt(format!("artifact digest: {e}")))?,
                size: r.try_get("size")?,
            })
        })
        .transpose()
    }

    /// Every file at or below `path` (a file or a directory) with its digest, in path order;
    /// at most `limit` of them.
    pub async fn artifact_files(
        &self,
        path: &RelPath,
        limit: i64,
    ) -> StoreResult<Vec<(String, ArtifactEntry)>> {
        let (lo, hi) = subtree_range(path);
        let rows = sqlx::query(
            "SELECT path, digest, size FROM artifacts WHERE path = $1 OR (path >= $2 AND path < $3) \
             ORDER BY path LIMIT $4",
        )
        .bind(path.as_str())
        .bind(&lo)
        .bind(&hi)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let hex: String = r.try_get("digest")?;
                Ok((
                    r.try_get("path")?,
                    ArtifactEntry {
                        digest: hex
                            .parse()
                            .map_err(|e| StoreError::Corrupt(format!("artifact digest: {e}")))?,
                        size: r.try_get("size")?,
                    },
                ))
            })
            .collect()
    }

    /// The immediate children of `dir`: files with sizes, and subdirectories. A file path or a
    /// missing directory lists as empty, as MLflow does.
    pub async fn list_artifacts(&self, dir: &RelPath) -> StoreResult<Vec<ArtifactListing>> {
        let (lo, hi) = subtree_range(dir);
        let rows = sqlx::query(
            "SELECT path, size FROM artifacts WHERE path >= $1 AND path < $2 ORDER BY path",
        )
        .bind(&lo)
        .bind(&hi)
        .fetch_all(&self.read)
        .await?;
        let mut children: BTreeMap<String, ArtifactListing> = BTreeMap::new();
        for r in rows {
            let full: String = r.try_get("path")?;
            let Some(rest) = full.strip_prefix(lo.as_str()) else {
                continue;
            };
            match rest.split_once('/') {
                Some((child, _)) => {
                    children
                        .entry(child.to_owned())
                        .or_insert_with(|| ArtifactListing {
                            path: child.to_owned(),
                            is_dir: true,
                            size: None,
                        });
                }
                None => {
                    children.insert(
                        rest.to_owned(),
                        ArtifactListing {
                            path: rest.to_owned(),
                            is_dir: false,
                            size: Some(r.try_get("size")?),
                        },
                    );
                }
            }
        }
        Ok(children.into_values().collect())
    }

    /// Removes a file, or a directory with everything below it. Returns how many files went.
    pub async fn delete_artifacts(&self, path: &RelPath) -> StoreResult<u64> {
        let (lo, hi) = subtree_range(path);
        let mut tx = self.begin_write().await?;
        let a = sqlx::query("DELETE FROM artifacts WHERE path = $1")
            .bind(path.as_str())
            .execute(&mut *tx)
            .await?;
        let b = sqlx::query("DELETE FROM artifacts WHERE path >= $1 AND path < $2")
            .bind(&lo)
            .bind(&hi)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(a.rows_affected() + b.rows_affected())
    }
}
