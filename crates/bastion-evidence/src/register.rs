//! Registering a model version, the same way from the server and the CLI: the version is
//! created, its files are signed with their provenance, and every file is scanned (a
//! CRITICAL finding quarantines it).

use bastion_core::model::ModelVersion;
use bastion_store::meta::ModelVersionDraft;
use bastion_store::{BlobStore, MetaStore};

use crate::{Attestor, EvidenceError, Scans};

pub async fn register_model_version(
    meta: &MetaStore,
    blobs: &dyn BlobStore,
    scans: &Scans,
    attestor: &Attestor,
    draft: &ModelVersionDraft,
    actor: &str,
) -> Result<ModelVersion, EvidenceError> {
    let mut v = meta.create_model_version(draft).await?;
    // The registration stands even if it cannot be signed; verification then reports the
    // version as unsigned.
    if let Err(e) = attestor
        .attest_model_version(meta, &v.name, &v.version, actor)
        .await
    {
        tracing::warn!(model = %v.name, version = %v.version, error = %e, "model version not signed");
    }
    let checked = scans
        .check_model_version(meta, blobs, &v.name, &v.version, actor)
        .await?;
    if checked.quarantine.is_some() {
        v = meta.get_model_version(&v.name, &v.version).await?;
    }
    Ok(v)
}
