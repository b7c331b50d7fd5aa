//! Whether what is in service is still what was signed: every version a deployment routes
//! to (stable, canary, shadow, pins) has its stored files hashed again and compared with
//! its signed manifest. Admission checks this when a version loads; this check catches a
//! file changed afterwards, while the version is serving. A mismatch quarantines the
//! version (serving refuses it at its next re-check) and is reported for the monitor's
//! integrity signals.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::deployment::Deployment;
use crate::error::ServeError;
use crate::models::Models;

/// One version's files, hashed again.
#[derive(Debug, Clone, Serialize)]
pub struct Integrity {
    pub model: String,
    pub version: String,
    pub files_checked: usize,
    pub bytes_checked: u64,
    /// What no longer matches (empty: all files do).
    pub mismatches: Vec<String>,
    /// The version's quarantine, if it is (now) quarantined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
}

impl Deployment {
    /// Every version the deployment routes traffic to.
    pub fn serving_versions(&self) -> BTreeSet<&str> {
        let mut v: BTreeSet<&str> = self.pins.values().map(String::as_str).collect();
        v.extend(self.stable.as_deref());
        v.extend(self.canary.as_ref().map(|c| c.version.as_str()));
        v.extend(self.shadow.as_deref());
        v
    }
}

impl Models {
    /// Hashes again the files of every version in service, model by model. Versions with
    /// no signed root digest are skipped: admission never let them serve.
    pub async fn check_integrity(&self) -> Result<Vec<Integrity>, ServeError> {
        let mut out = Vec::new();
        for stored in self.meta.list_deployments().await? {
            let (deployment, _) = self.deployment(&stored.model_name).await?;
            for version in deployment.serving_versions() {
                let root = self
                    .meta
                    .model_version_root_digest(&stored.model_name, version)
                    .await?;
                if root.is_none() {
                    continue;
                }
                let v = self
                    .attestor
                    .verify_model_version(
                        &self.meta,
                        self.blobs.as_ref(),
                        &stored.model_name,
                        version,
                        "system:monitor",
                    )
                    .await?;
                out.push(Integrity {
                    model: stored.model_name.clone(),
                    version: version.to_owned(),
                    files_checked: v.files_checked,
                    bytes_checked: v.bytes_checked,
                    mismatches: v.mismatches,
                    quarantine: v.quarantine,
                });
            }
        }
        Ok(out)
    }
}
