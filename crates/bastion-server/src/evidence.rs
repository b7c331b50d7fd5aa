//! Evidence over HTTP (`/api/bastion/v1`): the scans recorded on an artifact's digest and on
//! each file of a model version, a re-check, and the release of a quarantined version. The
//! checks themselves live in `bastion-evidence`; access is decided by the auth layer's rules.

use axum::Json;
use axum::Router;
use axum::routing::{get, post};
use bastion_core::{Error, RelPath};
use bastion_evidence::{FileEvidence, VersionEvidence};
use bastion_store::meta::Evidence;
use serde_json::{Value, json};

use crate::error::ApiResult;
use crate::params::Params;
use crate::state::{AppState, Scoped};

type JsonResult = ApiResult<Json<Value>>;

pub fn routes() -> Router<AppState> {
    let v1 = "/api/bastion/v1";
    Router::new()
        .route(&format!("{v1}/artifacts/evidence"), get(artifact_evidence))
        .route(
            &format!("{v1}/model-versions/evidence"),
            get(version_evidence),
        )
        .route(&format!("{v1}/model-versions/scan"), post(scan_version))
        .route(
            &format!("{v1}/model-versions/release"),
            post(release_version),
        )
        .route(
            &format!("{v1}/model-versions/attestations"),
            get(version_attestations),
        )
        .route(&format!("{v1}/model-versions/verify"), post(verify_version))
        .route(&format!("{v1}/model-versions/gate"), post(gate_version))
        .route(&format!("{v1}/signing-key"), get(signing_key))
}

pub(crate) fn evidence_json(e: &Evidence) -> Value {
    json!({
        "id": e.id,
        "digest": e.digest.to_string(),
        "kind": e.kind,
        "tool": e.tool,
        "verdict": e.verdict,
        "worst": e.worst,
        "result": e.body,
        "created_by": e.created_by,
        "created_time": e.created_time,
    })
}

fn file_json(f: &FileEvidence) -> Value {
    json!({
        "path": f.path,
        "digest": f.digest.to_string(),
        "size": f.size,
        "scan": f.scan.as_ref().map(evidence_json),
        "review": f.review.as_ref().map(evidence_json),
    })
}

fn version_json(name: &str, version: &str, v: &VersionEvidence) -> Value {
    let scanned = v.files.iter().filter(|f| f.scan.is_some()).count();
    let status = if v.unavailable.is_some() {
        "unavailable"
    } else if scanned < v.files.len() || v.truncated {
        "incomplete"
    } else if v
        .files
        .iter()
        .any(|f| f.scan.as_ref().is_some_and(|s| s.verdict == "error"))
    {
        "error"
    } else if v
        .files
        .iter()
        .any(|f| f.scan.as_ref().is_some_and(|s| s.verdict == "findings"))
    {
        "findings"
    } else {
        "clean"
    };
    json!({
        "name": name,
        "version": version,
        "status": status,
        "quarantined": v.quarantine.is_some(),
        "quarantine_reason": v.quarantine,
        "unavailable": v.unavailable,
        "truncated": v.truncated,
        "files": v.files.iter().map(file_json).collect::<Vec<_>>(),
    })
}

/// The evidence recorded on the digest an artifact path names (newest first).
#[utoipa::path(get, path = "/api/bastion/v1/artifacts/evidence", tag = "evidence",
    params(("path" = String, Query, description = "artifact path, as in the MLflow artifact API")),
    responses((status = 200, description = "`{path, digest, size, evidence: [...]}`")))]
pub(crate) async fn artifact_evidence(s: Scoped, p: Params) -> JsonResult {
    let raw = p.str("path")?;
    let path = RelPath::parse(&raw).map_err(|e| Error::invalid(format!("Invalid path: {e}")))?;
    let entry = s
        .meta
        .get_artifact(&path)
        .await?
        .ok_or_else(|| Error::not_found(format!("Artifact '{path}' not found")))?;
    let evidence = s.meta.evidence_for(&entry.digest).await?;
    Ok(Json(json!({
        "path": path.as_str(),
        "digest": entry.digest.to_string(),
        "size": entry.size,
        "evidence": evidence.iter().map(evidence_json).collect::<Vec<_>>(),
    })))
}

/// What is recorded about each file of a model version, and whether it is quarantined.
#[utoipa::path(get, path = "/api/bastion/v1/model-versions/evidence", tag = "evidence",
    params(("name" = String, Query), ("version" = String, Query)),
    responses((status = 200, description = "`{status, quarantined, quarantine_reason, files: [{path, digest, size, scan}]}`")))]
pub(crate) async fn version_evidence(s: Scoped, p: Params) -> JsonResult {
    let (name, version) = (p.str("name")?, p.str("version")?);
    let v = s
        .scans
        .model_version_evidence(&s.meta, &name, &version)
        .await?;
    Ok(Json(version_json(&name, &version, &v)))
}

/// Scans the files of a model version that have no scan by the current scanner yet (a
/// CRITICAL finding quarantines the version).
#[utoipa::path(post, path = "/api/bastion/v1/model-versions/scan", tag = "evidence",
    params(("name" = String, Query), ("version" = String, Query)),
    responses((status = 200, description = "as GET /model-versions/evidence")))]
pub(crate) async fn scan_version(s: Scoped, p: Params) -> JsonResult {
    let (name, version) = (p.str("name")?, p.str("version")?);
    let v = s
        .scans
        .check_model_version(
            &s.meta,
            s.blobs.as_ref(),
            &name,
            &version,
            &s.principal.actor(),
        )
        .await?;
    Ok(Json(version_json(&name, &version, &v)))
}

/// Lifts a quarantine after review, recording the review on each condemning file's digest
/// (so re-checks do not quarantine the same bytes again); audited like every write.
#[utoipa::path(post, path = "/api/bastion/v1/model-versions/release", tag = "evidence",
    params(("name" = String, Query), ("version" = String, Query)),
    responses((status = 200, description = "`{reviewed_files}`"), (status = 400, description = "not quarantined")))]
pub(crate) async fn release_version(s: Scoped, p: Params) -> JsonResult {
    let (name, version) = (p.str("name")?, p.str("version")?);
    let reviewed = s
        .scans
        .release_model_version(&s.meta, &name, &version, &s.principal.actor())
        .await?;
    Ok(Json(json!({ "reviewed_files": reviewed })))
}

/// A version's root digest, its signature (an OpenSSF model-signing bundle) and its SLSA
/// provenance (a bundle), with the server's public key to check them offline.
#[utoipa::path(get, path = "/api/bastion/v1/model-versions/attestations", tag = "evidence",
    params(("name" = String, Query), ("version" = String, Query)),
    responses((status = 200, description = "`{root_digest, signature, provenance, public_key}`")))]
pub(crate) async fn version_attestations(s: Scoped, p: Params) -> JsonResult {
    let (name, version) = (p.str("name")?, p.str("version")?);
    let a = s.attestor.attestations(&s.meta, &name, &version).await?;
    Ok(Json(serde_json::to_value(a).unwrap_or(Value::Null)))
}

/// Checks a version end to end: signature and provenance against the server key, the files
/// listed now against the signed manifest, every stored byte against its digest. A version
/// whose files no longer match is quarantined.
#[utoipa::path(post, path = "/api/bastion/v1/model-versions/verify", tag = "evidence",
    params(("name" = String, Query), ("version" = String, Query)),
    responses((status = 200, description = "`{verified, root_digest, current_root_digest, signature, provenance, mismatches, quarantine, files_checked, bytes_checked}`")))]
pub(crate) async fn verify_version(s: Scoped, p: Params) -> JsonResult {
    let (name, version) = (p.str("name")?, p.str("version")?);
    let v = s
        .attestor
        .verify_model_version(
            &s.meta,
            s.blobs.as_ref(),
            &name,
            &version,
            &s.principal.actor(),
        )
        .await?;
    Ok(Json(serde_json::to_value(v).unwrap_or(Value::Null)))
}

/// The public key (PEM) the server signs models and provenance with.
#[utoipa::path(get, path = "/api/bastion/v1/signing-key", tag = "evidence",
    responses((status = 200, description = "`{public_key, hint, algorithm}`")))]
pub(crate) async fn signing_key(s: Scoped) -> JsonResult {
    let key = s.attestor.public_key();
    Ok(Json(json!({
        "public_key": key.to_pem(),
        "hint": key.hint(),
        "algorithm": key.algorithm().as_str(),
    })))
}

/// Evaluates a policy (TOML, in `policy`) on a version's evidence and records the signed
/// decision on its root digest (unless `dry_run`). A malformed policy is a 400 naming the
/// line.
#[utoipa::path(post, path = "/api/bastion/v1/model-versions/gate", tag = "evidence",
    params(("name" = String, Query), ("version" = String, Query), ("policy" = String, Query),
           ("policy_name" = Option<String>, Query), ("dry_run" = Option<bool>, Query)),
    responses((status = 200, description = "`{model, digest, policy, passed, errors, warnings, rules, facts, datasets, evidence}`")))]
pub(crate) async fn gate_version(s: Scoped, p: Params) -> JsonResult {
    let (name, version, text) = (p.str("name")?, p.str("version")?, p.str("policy")?);
    let default_name = p
        .opt_str("policy_name")?
        .unwrap_or_else(|| "policy".to_owned());
    let policy = bastion_policy::Policy::parse(&text, &default_name)
        .map_err(|e| Error::invalid(format!("Invalid policy: {e}")))?;
    s.meta.get_model_version(&name, &version).await?;
    let actor = s.principal.actor();
    let request = bastion_evidence::gate::GateRequest {
        name: &name,
        version: &version,
        policy: &policy,
        policy_digest: bastion_core::Digest::of(text.as_bytes()),
        record: !p.opt_bool("dry_run")?.unwrap_or(false),
        actor: &actor,
    };
    let gated =
        bastion_evidence::gate::decide(&s.meta, s.blobs.as_ref(), &s.scans, &s.attestor, &request)
            .await?;
    Ok(Json(gated.to_json(&request)))
}
