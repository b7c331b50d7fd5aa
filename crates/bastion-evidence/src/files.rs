//! The files of a model version, as the artifact metadata lists them under its source.

use bastion_core::uri::{self, ArtifactUri};
use bastion_core::{Digest, RelPath};
use bastion_store::MetaStore;

use crate::{EvidenceError, MAX_VERSION_FILES};

/// One file of a model version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFile {
    /// Relative to the version's source folder.
    pub path: String,
    pub digest: Digest,
    pub size: i64,
}

pub struct VersionFiles {
    /// The source folder (its last segment names the model in signatures).
    pub root: RelPath,
    pub files: Vec<VersionFile>,
    /// More than [`MAX_VERSION_FILES`]; the rest are not listed.
    pub truncated: bool,
}

/// The version's files, or why they cannot be listed (they are not stored by this server).
pub async fn version_files(
    meta: &MetaStore,
    name: &str,
    version: &str,
) -> Result<Result<VersionFiles, String>, EvidenceError> {
    let location = meta.model_version_download_uri(name, version).await?;
    let root = match uri::parse("source", &location) {
        Ok(ArtifactUri::Proxied(root)) => root,
        _ => {
            return Ok(Err(format!(
                "the version's files are at '{}', which this server does not store",
                bastion_core::limits::truncate(&location, 200)
            )));
        }
    };
    let rows = meta.artifact_files(&root, MAX_VERSION_FILES + 1).await?;
    let truncated = rows.len() as i64 > MAX_VERSION_FILES;
    let files = rows
        .into_iter()
        .take(MAX_VERSION_FILES as usize)
        .map(|(path, entry)| VersionFile {
            path: relative_to(&root, &path),
            digest: entry.digest,
            size: entry.size,
        })
        .collect();
    Ok(Ok(VersionFiles {
        root,
        files,
        truncated,
    }))
}

fn relative_to(root: &RelPath, path: &str) -> String {
    if root.is_root() {
        return path.to_owned();
    }
    path.strip_prefix(root.as_str())
        .map(|p| p.trim_start_matches('/'))
        .filter(|p| !p.is_empty())
        .unwrap_or(path)
        .to_owned()
}
