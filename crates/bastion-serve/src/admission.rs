//! Whether a model version may be served. Zero trust: the version is admitted only when
//! every check passes — it is not quarantined, its files are all stored here and none has a
//! CRITICAL scan finding that no review accepted (files not scanned yet are scanned now),
//! and its signature verifies against the server's key over exactly the files it has now
//! (each rehashed from the blob store). A failed check is a reason; the refusal names them
//! all. The newest gate decision on the version's digest must not have failed, and when the
//! server requires gates there must be a passing one.

use bastion_evidence::{Attestor, Scans};
use bastion_store::{BlobStore, MetaStore};
use serde::Serialize;

use crate::error::ServeError;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Admission {
    pub model: String,
    pub version: String,
    /// The signed root digest of the version's files, when one is recorded.
    pub root_digest: Option<String>,
    pub checks: Vec<Check>,
}

impl Admission {
    pub fn admitted(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    pub fn reasons(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect()
    }

    pub fn refusal(&self) -> ServeError {
        ServeError::Refused {
            model: self.model.clone(),
            version: self.version.clone(),
            reasons: self.reasons(),
        }
    }
}

fn check(name: &'static str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok,
        detail: detail.into(),
    }
}

/// Runs every check on `name`/`version` (which must exist).
#[allow(clippy::too_many_arguments)]
pub async fn admit(
    meta: &MetaStore,
    blobs: &dyn BlobStore,
    scans: &Scans,
    attestor: &Attestor,
    name: &str,
    version: &str,
    actor: &str,
    require_gate: bool,
) -> Result<Admission, ServeError> {
    let mut checks = Vec::new();
    let evidence = scans
        .check_model_version(meta, blobs, name, version, actor)
        .await?;
    checks.push(match &evidence.unavailable {
        Some(why) => check("files", false, why.clone()),
        None if evidence.truncated => check("files", false, "too many files to check"),
        None if evidence.files.is_empty() => check("files", false, "the version has no files"),
        None => check(
            "files",
            true,
            format!("{} files stored by this server", evidence.files.len()),
        ),
    });
    checks.push(match evidence.critical() {
        Some(finding) => check("scan", false, format!("CRITICAL finding: {finding}")),
        None if evidence.files.iter().any(|f| f.scan.is_none()) => {
            check("scan", false, "some files have no scan")
        }
        None => check("scan", true, "no CRITICAL finding"),
    });
    let verification = attestor
        .verify_model_version(meta, blobs, name, version, actor)
        .await?;
    checks.push(check(
        "signature",
        verification.signature.ok,
        verification.signature.detail.clone(),
    ));
    checks.push(check(
        "provenance",
        verification.provenance.ok,
        verification.provenance.detail.clone(),
    ));
    checks.push(if verification.mismatches.is_empty() {
        check(
            "digests",
            true,
            format!(
                "{} files, {} bytes rehashed",
                verification.files_checked, verification.bytes_checked
            ),
        )
    } else {
        check("digests", false, verification.mismatches.join("; "))
    });
    let gate = bastion_evidence::gate::clearance(meta, attestor, name, version, None).await?;
    checks.push(match (gate.ok, gate.decision, require_gate) {
        (true, _, _) => check("gate", true, gate.detail),
        (false, Some(_), _) | (false, None, true) => check("gate", false, gate.detail),
        (false, None, false) => check(
            "gate",
            true,
            "no gate decision recorded (this server does not require one)",
        ),
    });
    // Read last: the checks above may have quarantined the version.
    let quarantine = meta.model_version_quarantine(name, version).await?;
    checks.push(match quarantine {
        Some(why) => check("quarantine", false, why),
        None => check("quarantine", true, "not quarantined"),
    });
    Ok(Admission {
        model: name.to_owned(),
        version: version.to_owned(),
        root_digest: verification.root_digest.clone(),
        checks,
    })
}
