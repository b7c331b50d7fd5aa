//! The artifact proxy. A path is validated into a `RelPath` before anything else happens; it
//! then names an index row, and the bytes come from the blob store by digest. No request path
//! ever becomes a file-system path.

use axum::Json;
use axum::body::Body;
use axum::extract::Path;
use axum::http::header::{
    CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use axum::response::{IntoResponse, Response};
use bastion_core::uri::{self, ArtifactUri};
use bastion_core::{Error, RelPath};
use bastion_store::meta::ArtifactListing;
use futures::TryStreamExt;
use serde_json::{Value, json};

use super::{JsonResult, empty};
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::state::{AppState, Scoped};

fn rel_path(raw: &str) -> Result<RelPath, Error> {
    RelPath::parse(raw).map_err(|e| {
        tracing::warn!(path = %bastion_core::limits::truncate(raw, 200), reason = %e, "refused artifact path");
        Error::invalid(format!("Invalid path: {e}"))
    })
}

fn files_json(entries: &[ArtifactListing], prefix: &RelPath) -> Value {
    let files: Vec<Value> = entries
        .iter()
        .map(|e| {
            let path = if prefix.is_root() {
                e.path.clone()
            } else {
                format!("{prefix}/{}", e.path)
            };
            let mut f = json!({ "path": path, "is_dir": e.is_dir });
            if let Some(size) = e.size {
                f["file_size"] = json!(size);
            }
            f
        })
        .collect();
    Value::Array(files)
}

pub async fn list(s: Scoped, p: Params) -> JsonResult {
    let dir = rel_path(&p.opt_str("path")?.unwrap_or_default())?;
    let entries = s.meta.list_artifacts(&dir).await?;
    let mut out = json!({});
    if !entries.is_empty() {
        out["files"] = files_json(&entries, &RelPath::root());
    }
    Ok(Json(out))
}

/// Never `text/html` or anything else a browser would execute: artifacts are user content.
fn content_type(path: &RelPath) -> &'static str {
    let name = path.segments().last().unwrap_or("");
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" | "md" | "yaml" | "yml" | "csv" | "py" | "toml" | "cfg" | "ini" => {
            "text/plain; charset=utf-8"
        }
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        _ if name == "MLmodel" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

pub async fn download(s: Scoped, Path(raw): Path<String>) -> ApiResult<Response> {
    let path = rel_path(&raw)?;
    let entry = s
        .meta
        .get_artifact(&path)
        .await?
        .ok_or_else(|| Error::not_found(format!("Artifact '{path}' not found")))?;
    let (size, stream) = s
        .blobs
        .get(&entry.digest)
        .await?
        .ok_or_else(|| ApiError::from(bastion_store::blob::BlobError::Missing(entry.digest)))?;
    let headers = [
        (CONTENT_TYPE, content_type(&path).to_owned()),
        (CONTENT_LENGTH, size.to_string()),
        (X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (CONTENT_DISPOSITION, "attachment".to_owned()),
    ];
    Ok((headers, Body::from_stream(stream)).into_response())
}

pub async fn upload(s: Scoped, Path(raw): Path<String>, body: Body) -> JsonResult {
    let path = rel_path(&raw)?;
    if path.is_root() {
        return Err(Error::invalid("Invalid path: name a file to upload").into());
    }
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let stored = s
        .blobs
        .put(Box::pin(stream), s.config.max_artifact_bytes, None)
        .await
        .map_err(|e| {
            // Too large is a property of this request, not of the client's request rate.
            let e = ApiError::from(e);
            if e.code == bastion_core::ErrorCode::RequestLimitExceeded {
                e.with_status(axum::http::StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                e
            }
        })?;
    let size = i64::try_from(stored.size).map_err(|_| Error::invalid("artifact too large"))?;
    s.meta.put_artifact(&path, &stored.digest, size).await?;
    tracing::debug!(%path, digest = %stored.digest, size, "artifact stored");
    // The upload stands even if the scan cannot be recorded now: registering a model version
    // scans whatever of its files has no scan yet.
    let name = path.segments().last().unwrap_or("artifact");
    if let Err(e) = s
        .scans
        .scan_blob(
            &s.meta,
            s.blobs.as_ref(),
            &stored.digest,
            name,
            &s.principal.actor(),
        )
        .await
    {
        tracing::warn!(%path, digest = %stored.digest, error = %e, "upload scan not recorded");
    }
    empty()
}

pub async fn delete(s: Scoped, Path(raw): Path<String>) -> JsonResult {
    let path = rel_path(&raw)?;
    if path.is_root() {
        return Err(Error::invalid("Invalid path: refusing to delete the artifact root").into());
    }
    s.meta.delete_artifacts(&path).await?;
    empty()
}

/// The proxied root an `artifact_uri` names, or an error if the server does not hold it.
fn proxied_root(artifact_uri: &str) -> Result<RelPath, Error> {
    match uri::parse("artifact_uri", artifact_uri)? {
        ArtifactUri::Proxied(root) => Ok(root),
        _ => Err(Error::invalid(format!(
            "Artifacts at '{}' are not stored by this server; the client reads them from that store directly",
            bastion_core::limits::truncate(artifact_uri, 200)
        ))),
    }
}

async fn list_under(s: &AppState, artifact_uri: &str, sub: Option<String>) -> JsonResult {
    let root = proxied_root(artifact_uri)?;
    let sub = rel_path(&sub.unwrap_or_default())?;
    let dir = root
        .join(&sub)
        .map_err(|e| Error::invalid(format!("Invalid path: {e}")))?;
    let entries = s.meta.list_artifacts(&dir).await?;
    let mut out = json!({ "root_uri": artifact_uri });
    if !entries.is_empty() {
        out["files"] = files_json(&entries, &sub);
    }
    Ok(Json(out))
}

pub async fn list_run(s: Scoped, p: Params) -> JsonResult {
    let info = s
        .meta
        .get_run_info(&p.str_any(&["run_id", "run_uuid"])?)
        .await?;
    list_under(&s, &info.artifact_uri, p.opt_str("path")?).await
}

pub async fn list_logged_model(s: Scoped, Path(model_id): Path<String>, p: Params) -> JsonResult {
    let model = s.meta.get_logged_model(&model_id).await?;
    list_under(
        &s,
        &model.info.artifact_uri,
        p.opt_str("artifact_directory_path")?,
    )
    .await
}
