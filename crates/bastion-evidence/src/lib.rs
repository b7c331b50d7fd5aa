//! Evidence about stored artifacts. Checks run on the bytes a digest names (read from the blob
//! store, never from a user path), their results are recorded once per digest and tool, and
//! a model version whose files carry a CRITICAL finding is quarantined.
//!
//! Nothing here knows HTTP; the server and the CLI call the same functions.

use std::sync::Arc;

use bastion_core::Digest;
use bastion_scan::{FileReport, Policy, Scanner, Severity};
use bastion_store::meta::{Evidence, EvidenceDraft};
use bastion_store::{BlobStore, MetaStore};

mod attest;
pub mod bom;
pub mod dataset_checks;
pub mod datasets;
mod files;
pub mod gate;
mod register;

pub use attest::{
    Attestor, PIPELINE_CONFIG_TAG, PROVENANCE, SIGNATURE, VersionAttestations, VersionVerification,
};
pub use files::{VersionFile, VersionFiles, version_files};
pub use register::register_model_version;

/// The evidence kind of a model-file scan.
pub const SCAN: &str = "scan";
/// The evidence kind of a person's review that accepted a file's CRITICAL findings (a
/// quarantine release); it covers the scans made before it.
pub const REVIEW: &str = "review";
const REVIEW_TOOL: &str = "bastion-release";
/// Files of one model version looked at, at most.
pub const MAX_VERSION_FILES: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(transparent)]
    Store(#[from] bastion_store::StoreError),
    #[error(transparent)]
    Blob(#[from] bastion_store::blob::BlobError),
    #[error("blob {0} is missing from the blob store")]
    Missing(Digest),
    #[error("the scanner stopped unexpectedly: {0}")]
    Scanner(String),
    #[error("the signing key: {0}")]
    Key(String),
    #[error("model version {0}: {1}")]
    Unavailable(String, String),
}

/// One file of a model version and what is known about it.
#[derive(Debug, Clone)]
pub struct FileEvidence {
    pub path: String,
    pub digest: Digest,
    pub size: i64,
    /// The scan by the current scanner, if there is one yet.
    pub scan: Option<Evidence>,
    /// The latest review that accepted this file's findings, if any.
    pub review: Option<Evidence>,
}

impl FileEvidence {
    /// Whether its scan has a CRITICAL finding no later review accepted.
    pub fn condemned(&self) -> bool {
        let Some(scan) = &self.scan else {
            return false;
        };
        scan.worst.as_deref() == Some(Severity::Critical.as_str())
            && self.review.as_ref().is_none_or(|r| r.id < scan.id)
    }
}

/// What the evidence says about a model version's files.
#[derive(Debug, Clone, Default)]
pub struct VersionEvidence {
    pub files: Vec<FileEvidence>,
    /// Why the version is quarantined, if it is.
    pub quarantine: Option<String>,
    /// Why its files could not be looked at (they are not stored by this server), if so.
    pub unavailable: Option<String>,
    /// More files than [`MAX_VERSION_FILES`]: the rest were not looked at.
    pub truncated: bool,
}

impl VersionEvidence {
    /// The first CRITICAL finding no review accepted, described, if there is one.
    pub fn critical(&self) -> Option<String> {
        condemning(&self.files)
    }

    /// The worst finding over every file's scan (`NONE` when all are clean), or `None`
    /// when some file has no scan or the files could not be looked at.
    pub fn max_severity(&self) -> Option<&str> {
        if self.unavailable.is_some() || self.files.iter().any(|f| f.scan.is_none()) {
            return None;
        }
        Some(
            self.files
                .iter()
                .filter_map(|f| f.scan.as_ref()?.worst.as_deref())
                .max_by_key(|w| w.parse::<Severity>().ok())
                .unwrap_or("NONE"),
        )
    }
}

/// Runs the model-file scanner on stored blobs.
pub struct Scans {
    scanner: Arc<Scanner>,
    tool: String,
}

impl Scans {
    pub fn new(policy: Policy) -> Self {
        Self {
            scanner: Arc::new(Scanner::new(policy)),
            tool: format!("bastion-scan/{}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// The tool name evidence from this scanner carries.
    pub fn tool(&self) -> &str {
        &self.tool
    }

    /// The scan of `digest`: recorded evidence from this scanner if there is some, otherwise
    /// a new scan, recorded as `actor`. `name` is how findings name the file.
    pub async fn scan_blob(
        &self,
        meta: &MetaStore,
        blobs: &dyn BlobStore,
        digest: &Digest,
        name: &str,
        actor: &str,
    ) -> Result<Evidence, EvidenceError> {
        if let Some(e) = meta.latest_evidence(digest, SCAN, &self.tool).await? {
            return Ok(e);
        }
        let file = blobs
            .local_file(digest)
            .await?
            .ok_or(EvidenceError::Missing(*digest))?;
        let scanner = self.scanner.clone();
        let display = name.to_owned();
        let report = tokio::task::spawn_blocking(move || {
            let report = scanner.scan_file(file.path(), &display);
            drop(file);
            report
        })
        .await
        .map_err(|e| EvidenceError::Scanner(e.to_string()))?;
        let draft = draft(digest, &self.tool, &report, actor);
        tracing::info!(%digest, verdict = %draft.verdict, worst = ?draft.worst, "model-file scan recorded");
        Ok(meta.record_evidence(&draft).await?)
    }

    /// Scans every file of a model version that has no scan yet and quarantines the version
    /// if any file has a CRITICAL finding.
    pub async fn check_model_version(
        &self,
        meta: &MetaStore,
        blobs: &dyn BlobStore,
        name: &str,
        version: &str,
        actor: &str,
    ) -> Result<VersionEvidence, EvidenceError> {
        let mut out = self.model_version_evidence(meta, name, version).await?;
        for f in &mut out.files {
            if f.scan.is_none() {
                let file_name = f.path.rsplit('/').next().unwrap_or(&f.path);
                f.scan = Some(
                    self.scan_blob(meta, blobs, &f.digest, file_name, actor)
                        .await?,
                );
            }
        }
        if out.quarantine.is_none()
            && let Some(reason) = condemning(&out.files)
        {
            meta.quarantine_model_version(name, version, &reason)
                .await?;
            tracing::warn!(model = name, version, %reason, "model version quarantined");
            out.quarantine = Some(reason);
        }
        Ok(out)
    }

    /// Lifts a version's quarantine after a person reviewed it, and records that review on
    /// each condemning file's digest so that re-checks (of this version, or of a version with
    /// the same bytes) do not quarantine it again. The release comes first: if recording a
    /// review fails, a later check quarantines again rather than letting anything through.
    pub async fn release_model_version(
        &self,
        meta: &MetaStore,
        name: &str,
        version: &str,
        actor: &str,
    ) -> Result<usize, EvidenceError> {
        let evidence = self.model_version_evidence(meta, name, version).await?;
        meta.release_model_version(name, version).await?;
        let mut reviewed = 0;
        for f in evidence.files.iter().filter(|f| f.condemned()) {
            let scan_id = f.scan.as_ref().map(|s| s.id);
            meta.record_evidence(&EvidenceDraft {
                digest: f.digest,
                kind: REVIEW.to_owned(),
                tool: REVIEW_TOOL.to_owned(),
                verdict: "accepted".to_owned(),
                worst: None,
                body: serde_json::json!({
                    "released": format!("{name}/{version}"),
                    "path": f.path,
                    "scan_evidence": scan_id,
                }),
                created_by: actor.to_owned(),
            })
            .await?;
            reviewed += 1;
        }
        tracing::warn!(
            model = name,
            version,
            by = actor,
            reviewed,
            "quarantine released"
        );
        Ok(reviewed)
    }

    /// What is recorded about a version's files, without scanning anything.
    pub async fn model_version_evidence(
        &self,
        meta: &MetaStore,
        name: &str,
        version: &str,
    ) -> Result<VersionEvidence, EvidenceError> {
        let quarantine = meta.model_version_quarantine(name, version).await?;
        let listed = match files::version_files(meta, name, version).await? {
            Ok(listed) => listed,
            Err(unavailable) => {
                return Ok(VersionEvidence {
                    quarantine,
                    unavailable: Some(unavailable),
                    ..Default::default()
                });
            }
        };
        let truncated = listed.truncated;
        let mut files = Vec::with_capacity(listed.files.len());
        for f in listed.files {
            let scan = meta.latest_evidence(&f.digest, SCAN, &self.tool).await?;
            let review = meta.latest_evidence(&f.digest, REVIEW, REVIEW_TOOL).await?;
            files.push(FileEvidence {
                path: f.path,
                digest: f.digest,
                size: f.size,
                scan,
                review,
            });
        }
        Ok(VersionEvidence {
            files,
            quarantine,
            unavailable: None,
            truncated,
        })
    }
}

/// The evidence record for a scan report.
fn draft(digest: &Digest, tool: &str, report: &FileReport, actor: &str) -> EvidenceDraft {
    let worst = report.findings.iter().map(|f| f.severity).max();
    let verdict = if !report.errors.is_empty() {
        "error"
    } else if worst.is_some_and(|w| w > Severity::Info) {
        "findings"
    } else {
        "clean"
    };
    EvidenceDraft {
        digest: *digest,
        kind: SCAN.to_owned(),
        tool: tool.to_owned(),
        verdict: verdict.to_owned(),
        worst: worst.map(|w| w.as_str().to_owned()),
        body: serde_json::to_value(report).unwrap_or(serde_json::Value::Null),
        created_by: actor.to_owned(),
    }
}

/// The reason to quarantine, from the first file with a CRITICAL finding not accepted by a
/// later review.
fn condemning(files: &[FileEvidence]) -> Option<String> {
    files.iter().filter(|f| f.condemned()).find_map(|f| {
        let scan = f.scan.as_ref()?;
        let finding = scan.body.get("findings")?.as_array()?.iter().find(|x| {
            x.get("severity").and_then(|s| s.as_str()) == Some(Severity::Critical.as_str())
        });
        let detail = finding
            .map(|x| {
                let rule = x.get("rule").and_then(|s| s.as_str()).unwrap_or("");
                match x.get("subject").and_then(|s| s.as_str()) {
                    Some(subject) => format!("{rule} ({subject})"),
                    None => rule.to_owned(),
                }
            })
            .unwrap_or_default();
        Some(format!(
            "quarantined by Bastion: CRITICAL scan finding in '{}': {detail}",
            f.path
        ))
    })
}
