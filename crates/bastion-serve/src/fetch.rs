//! A registered version's package, copied out of the blob store into a private folder: each
//! file checked against its size limit before it is copied and against its digest as it is.
//! Only flat packages are accepted (a model package has no subfolders), so a listed path
//! never names anything outside the folder.

use std::path::Path;

use bastion_evidence::{VersionFile, version_files};
use bastion_ml::package::Limits;
use bastion_store::{BlobStore, MetaStore};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::error::ServeError;

/// The copied package and the listing it was copied from.
pub struct Fetched {
    pub dir: tempfile::TempDir,
    pub files: Vec<VersionFile>,
}

pub async fn fetch_package(
    meta: &MetaStore,
    blobs: &dyn BlobStore,
    name: &str,
    version: &str,
    staging: &Path,
    limits: Limits,
) -> Result<Fetched, ServeError> {
    let at = |m: String| ServeError::Load(format!("model {name} version {version}: {m}"));
    let listing = version_files(meta, name, version).await?.map_err(at)?;
    if listing.truncated {
        return Err(at(
            "the version lists too many files to be a model package".into()
        ));
    }
    tokio::fs::create_dir_all(staging)
        .await
        .map_err(|e| at(format!("creating {}: {e}", staging.display())))?;
    let dir = tempfile::tempdir_in(staging).map_err(|e| at(format!("staging folder: {e}")))?;
    for f in &listing.files {
        if f.path.contains('/') || f.path.starts_with('.') || f.path.contains('\\') {
            return Err(at(format!("'{}' is not a file of a model package", f.path)));
        }
        if u64::try_from(f.size).map_or(true, |s| s > limits.max_file_bytes) {
            return Err(at(format!(
                "'{}' is {} bytes, over the {}-byte limit for a package file",
                f.path, f.size, limits.max_file_bytes
            )));
        }
        let (_, mut stream) = blobs
            .get(&f.digest)
            .await
            .map_err(|e| at(e.to_string()))?
            .ok_or_else(|| at(format!("blob {} of '{}' is missing", f.digest, f.path)))?;
        let mut hasher = bastion_core::digest::Hasher::new();
        let target = dir.path().join(&f.path);
        let mut out = tokio::fs::File::create(&target)
            .await
            .map_err(|e| at(format!("writing '{}': {e}", f.path)))?;
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| at(e.to_string()))?;
            written += chunk.len() as u64;
            if written > limits.max_file_bytes {
                return Err(at(format!("'{}' grew over its size limit", f.path)));
            }
            hasher.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(|e| at(format!("writing '{}': {e}", f.path)))?;
        }
        out.flush()
            .await
            .map_err(|e| at(format!("writing '{}': {e}", f.path)))?;
        if hasher.finish() != f.digest {
            return Err(at(format!("'{}' does not match its digest", f.path)));
        }
    }
    Ok(Fetched {
        dir,
        files: listing.files,
    })
}
