//! Datasets over HTTP (`/api/bastion/v1/datasets`): upload a file (or a folder, as
//! multipart) as the next version, read versions, download their Parquet, and run the data
//! checks. The operations are `bastion-evidence`'s, the same the CLI runs on a home; this
//! module only moves bytes and parameters. Access is decided per dataset name by the auth
//! layer's rules; a second dataset a request names (`against`) is checked here.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, RawQuery, Request};
use axum::http::header::{
    CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bastion_auth::{Permission, ResourceKind};
use bastion_core::{Error, ErrorCode, RelPath};
use bastion_data::drift::{Correction, DriftOptions};
use bastion_data::ingest::{Format, IngestOptions};
use bastion_data::pii::Redaction;
use bastion_data::poison::PoisonOptions;
use bastion_data::report;
use bastion_evidence::datasets::{DatasetError, Datasets};
use bastion_store::meta::{DatasetVersion, parse_dataset_reference};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::state::{AppState, Scoped};

type JsonResult = ApiResult<Json<Value>>;

/// The longest CSV / JSON Lines line an upload may ask the server to accept.
const MAX_LINE_BYTES: usize = 64 << 20;

/// The header carrying a downloaded version's digest (`sha256:<hex>`), to check it by.
pub const DIGEST_HEADER: HeaderName = HeaderName::from_static("x-bastion-digest");

pub fn routes() -> Router<AppState> {
    let one = "/api/bastion/v1/datasets/{name}/versions/{version}";
    Router::new()
        .route("/api/bastion/v1/datasets", get(list))
        .route("/api/bastion/v1/datasets/{name}/versions", post(add))
        .route(one, get(show))
        .route(&format!("{one}/parquet"), get(download))
        .route(&format!("{one}/profile"), post(profile))
        .route(&format!("{one}/validate"), post(validate))
        .route(&format!("{one}/suggest"), get(suggest))
        .route(&format!("{one}/pii"), post(pii))
        .route(&format!("{one}/redacted"), get(redacted))
        .route(&format!("{one}/poison"), post(poison))
        .route(&format!("{one}/diff"), post(diff))
}

impl Scoped {
    /// The dataset registry as this request: its writes are audited as the caller's.
    pub(crate) fn datasets(&self) -> Datasets<'_> {
        Datasets {
            meta: &self.meta,
            blobs: self.blobs.as_ref(),
            cipher: self.datasets.cipher.clone(),
            tmp: self.datasets.tmp.clone(),
        }
    }

    /// The version a `{name}` / `{version}` pair names (`latest`, `K` or `vK`).
    pub(crate) async fn version(&self, name: &str, version: &str) -> ApiResult<DatasetVersion> {
        let reference = if version == "latest" {
            name.to_owned()
        } else {
            format!("{name}@{version}")
        };
        self.reference(&reference).await
    }

    async fn reference(&self, reference: &str) -> ApiResult<DatasetVersion> {
        let (name, version) = parse_dataset_reference(reference)?;
        Ok(self.meta.get_dataset_version(&name, version).await?)
    }

    /// A second dataset a request reads (the reference of a diff): the rule checked the
    /// dataset in the path only.
    pub(crate) async fn readable(&self, reference: &str) -> ApiResult<DatasetVersion> {
        let (name, _) = parse_dataset_reference(reference)?;
        let has = self
            .auth
            .authorizer
            .permission(&self.principal, ResourceKind::Dataset, &name)
            .await?;
        if has < Permission::Read {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "Permission denied: user '{}' ({}) lacks READ permission on dataset:{name}",
                    self.principal.name, self.principal.role
                ),
            )
            .with_status(StatusCode::FORBIDDEN)
            .security_event("permission-denied"));
        }
        self.reference(reference).await
    }
}

fn to_json(v: &impl serde::Serialize) -> Json<Value> {
    Json(serde_json::to_value(v).unwrap_or(Value::Null))
}

/// Every dataset's latest version, or with `name` every version of one.
#[utoipa::path(get, path = "/api/bastion/v1/datasets", tag = "datasets",
    params(("name" = Option<String>, Query, description = "list every version of this dataset")),
    responses((status = 200, description = "`{versions: [...]}`")))]
pub(crate) async fn list(s: Scoped, p: Params) -> JsonResult {
    let name = p.opt_str("name")?;
    let versions = s.meta.list_dataset_versions(name.as_deref()).await?;
    Ok(Json(json!({ "versions": versions })))
}

/// Ingests the request body (one file; or `multipart/form-data` with one part per file of a
/// folder, each part's filename its path in the folder) as the next version of `{name}`,
/// then profiles it and scans it for personal data.
#[utoipa::path(post, path = "/api/bastion/v1/datasets/{name}/versions", tag = "datasets",
    params(("name" = String, Path),
           ("filename" = Option<String>, Query, description = "the uploaded file's name (for format detection and errors)"),
           ("format" = Option<String>, Query, description = "csv, tsv, parquet or jsonl instead of detecting it"),
           ("max_line_bytes" = Option<i64>, Query), ("source" = Option<String>, Query, description = "where the data came from, for lineage")),
    request_body(content = Vec<u8>, description = "the file, or multipart/form-data for a folder"),
    responses((status = 200, description = "`{dataset, version, files, pii_columns}`"),
              (status = 413, description = "larger than the server's upload limit")))]
pub(crate) async fn add(
    s: Scoped,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    req: Request,
) -> JsonResult {
    bastion_store::meta::validate_dataset_name(&name)?;
    let p = Params::from_query(query.as_deref());
    let mut opts = IngestOptions::default();
    if let Some(f) = p.opt_str("format")? {
        opts.format = Some(parse_format(&f)?);
    }
    if let Some(n) = p.opt_i64("max_line_bytes")? {
        // A line is held whole in memory while parsed: a client may lower the bound, and raise
        // it only up to the server's ceiling.
        opts.max_line_bytes = usize::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_LINE_BYTES).contains(n))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "max_line_bytes must be between 1 and {MAX_LINE_BYTES}"
                ))
            })?;
    }
    let source = p.opt_str("source")?;
    if source
        .as_ref()
        .is_some_and(|s| s.len() > 4096 || s.contains('\0'))
    {
        return Err(Error::invalid("source must be at most 4096 bytes, without NUL").into());
    }
    tokio::fs::create_dir_all(&s.datasets.tmp)
        .await
        .map_err(internal)?;
    let dir = tempfile::tempdir_in(&s.datasets.tmp).map_err(internal)?;
    let is_multipart = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("multipart/form-data"));
    let limit = s.config.max_artifact_bytes;
    let (input, default_source) = if is_multipart {
        let mp = Multipart::from_request(req, &())
            .await
            .map_err(|e| Error::invalid(format!("Malformed multipart body: {e}")))?;
        receive_folder(mp, dir.path(), limit).await?;
        (dir.path().to_path_buf(), format!("upload:{name}/"))
    } else {
        let filename = p.opt_str("filename")?.unwrap_or_else(|| "upload".into());
        let file = single_segment(&filename)?;
        let path = dir.path().join(file.as_str());
        receive(req.into_body(), &path, limit, &mut 0).await?;
        (path, format!("upload:{file}"))
    };
    let source = source.unwrap_or(default_source);
    let added = s
        .datasets()
        .add_checked(
            &input,
            &name,
            &source,
            &s.principal.actor(),
            opts,
            false,
            Arc::new(|_| {}),
        )
        .await
        .map_err(|e| relative_to(e, dir.path()))?;
    Ok(to_json(&added))
}

fn parse_format(f: &str) -> ApiResult<Format> {
    Ok(match f {
        "csv" => Format::Csv,
        "tsv" => Format::Tsv,
        "parquet" => Format::Parquet,
        "jsonl" => Format::Jsonl,
        other => {
            return Err(Error::invalid(format!(
                "Invalid format '{}': use csv, tsv, parquet or jsonl",
                bastion_core::limits::truncate(other, 40)
            ))
            .into());
        }
    })
}

fn single_segment(name: &str) -> ApiResult<RelPath> {
    let p = RelPath::parse(name)
        .map_err(|e| ApiError::from(Error::invalid(format!("Invalid filename: {e}"))))?;
    if p.is_root() || p.segments().count() != 1 {
        return Err(Error::invalid("Invalid filename: give a file name without folders").into());
    }
    Ok(p)
}

/// Errors about uploaded files name them as the client did, not by the server's folder.
fn relative_to(e: DatasetError, dir: &FsPath) -> ApiError {
    let mut err = ApiError::from(e);
    err.message = err.message.replace(&format!("{}/", dir.display()), "");
    err
}

fn internal(e: std::io::Error) -> ApiError {
    ApiError::from(DatasetError::Io(e))
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        ErrorCode::RequestLimitExceeded,
        format!("Upload exceeds the limit of {limit} bytes"),
    )
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

/// Streams a body to `path`, counting into `total` against `limit`.
async fn receive(body: Body, path: &FsPath, limit: u64, total: &mut u64) -> ApiResult<()> {
    let mut out = tokio::fs::File::create(path).await.map_err(internal)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::invalid(format!("Upload interrupted: {e}")))?;
        *total += chunk.len() as u64;
        if *total > limit {
            return Err(too_large(limit));
        }
        out.write_all(&chunk).await.map_err(internal)?;
    }
    out.flush().await.map_err(internal)?;
    Ok(())
}

/// Writes each part of a folder upload under `dir` at its validated relative path.
async fn receive_folder(mut mp: Multipart, dir: &FsPath, limit: u64) -> ApiResult<()> {
    let mut total = 0u64;
    let mut files = 0usize;
    let mut files_seen = std::collections::HashSet::new();
    let mut folders_seen = std::collections::HashSet::new();
    let malformed = |e: axum::extract::multipart::MultipartError| {
        ApiError::from(Error::invalid(format!("Malformed multipart body: {e}")))
    };
    while let Some(mut field) = mp.next_field().await.map_err(malformed)? {
        let raw = field.file_name().unwrap_or_default().to_owned();
        let rel = RelPath::parse(&raw).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidParameterValue,
                format!("Invalid file path in the upload: {e}"),
            )
            .security_event("path-traversal")
        })?;
        if rel.is_root() {
            return Err(Error::invalid("Every part of a folder upload needs a filename").into());
        }
        // Each name is a file once, and never also a folder of another part.
        let name = rel.as_str().to_owned();
        if files_seen.contains(&name) {
            return Err(Error::invalid(format!("The upload names '{rel}' twice")).into());
        }
        let ancestors: Vec<String> = name
            .match_indices('/')
            .map(|(i, _)| name[..i].to_owned())
            .collect();
        let clash = if folders_seen.contains(&name) {
            Some(name.as_str())
        } else {
            ancestors
                .iter()
                .find(|a| files_seen.contains(*a))
                .map(String::as_str)
        };
        if let Some(c) = clash {
            return Err(Error::invalid(format!(
                "The upload uses '{c}' both as a file and as a folder"
            ))
            .into());
        }
        files_seen.insert(name);
        folders_seen.extend(ancestors);
        let path: PathBuf = rel.segments().fold(dir.to_path_buf(), |p, s| p.join(s));
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(internal)?;
        }
        let mut out = tokio::fs::File::create(&path).await.map_err(internal)?;
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            total += chunk.len() as u64;
            if total > limit {
                return Err(too_large(limit));
            }
            out.write_all(&chunk).await.map_err(internal)?;
        }
        out.flush().await.map_err(internal)?;
        files += 1;
    }
    if files == 0 {
        return Err(Error::invalid("The folder upload has no files").into());
    }
    Ok(())
}

/// A version's record, lineage and the evidence recorded on it.
#[utoipa::path(get, path = "/api/bastion/v1/datasets/{name}/versions/{version}", tag = "datasets",
    params(("name" = String, Path), ("version" = String, Path, description = "`latest`, `K` or `vK`")),
    responses((status = 200, description = "`{dataset, version, evidence}`")))]
pub(crate) async fn show(s: Scoped, Path((name, version)): Path<(String, String)>) -> JsonResult {
    let v = s.version(&name, &version).await?;
    Ok(to_json(&s.datasets().show(v).await?))
}

/// Streams a file that may already be unlinked (an open handle keeps it readable).
async fn file_response(
    path: &FsPath,
    content_type: &'static str,
    extra: Vec<(HeaderName, String)>,
) -> ApiResult<Response> {
    let f = tokio::fs::File::open(path).await.map_err(internal)?;
    let len = f.metadata().await.map_err(internal)?.len();
    let mut response =
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(f, 1 << 16)).into_response();
    let h = response.headers_mut();
    let mut set = |k: HeaderName, v: String| {
        if let Ok(v) = v.parse() {
            h.insert(k, v);
        }
    };
    set(CONTENT_TYPE, content_type.into());
    set(CONTENT_LENGTH, len.to_string());
    set(X_CONTENT_TYPE_OPTIONS, "nosniff".into());
    for (k, v) in extra {
        set(k, v);
    }
    Ok(response)
}

fn named(v: &DatasetVersion) -> (HeaderName, String) {
    (HeaderName::from_static("x-bastion-dataset"), v.reference())
}

fn attachment(v: &DatasetVersion, suffix: &str) -> (HeaderName, String) {
    (
        CONTENT_DISPOSITION,
        format!(
            "attachment; filename=\"{}-v{}{suffix}.parquet\"",
            v.name, v.version
        ),
    )
}

/// The version's canonical Parquet, checked against its digest (and decrypted) before it is
/// sent; the digest is in `X-Bastion-Digest` for the client to check again.
#[utoipa::path(get, path = "/api/bastion/v1/datasets/{name}/versions/{version}/parquet", tag = "datasets",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, description = "the Parquet bytes; header `X-Bastion-Digest`")))]
pub(crate) async fn download(
    s: Scoped,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    let v = s.version(&name, &version).await?;
    let local = s.datasets().materialize(&v).await?;
    file_response(
        local.path(),
        "application/vnd.apache.parquet",
        vec![
            (DIGEST_HEADER, v.digest.to_string()),
            named(&v),
            attachment(&v, ""),
        ],
    )
    .await
}

/// Reports are user content rendered as HTML: sandboxed, no scripts, nothing fetched.
fn html(body: String) -> Response {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:",
            ),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

fn wants_html(p: &Params) -> ApiResult<bool> {
    match p.opt_str("format")?.as_deref() {
        None | Some("json") => Ok(false),
        Some("html") => Ok(true),
        Some(other) => Err(Error::invalid(format!(
            "Invalid format '{}': use json or html",
            bastion_core::limits::truncate(other, 40)
        ))
        .into()),
    }
}

/// Profiles the version (recorded as evidence); `format=html` renders the report.
#[utoipa::path(post, path = "/api/bastion/v1/datasets/{name}/versions/{version}/profile", tag = "datasets",
    params(("name" = String, Path), ("version" = String, Path), ("format" = Option<String>, Query, description = "json (default) or html")),
    responses((status = 200, description = "the profile, as JSON or a self-contained HTML report")))]
pub(crate) async fn profile(
    s: Scoped,
    Path((name, version)): Path<(String, String)>,
    p: Params,
) -> ApiResult<Response> {
    let as_html = wants_html(&p)?;
    let v = s.version(&name, &version).await?;
    let profile = s
        .datasets()
        .profile(&v, &s.principal.actor(), Arc::new(|_| {}))
        .await?;
    Ok(if as_html {
        html(report::profile_html(
            &format!("Profile of {}", v.reference()),
            &profile,
        ))
    } else {
        to_json(&profile).into_response()
    })
}

/// Checks the version against constraints (the TOML text in `constraints`); the report says
/// `passed: false` when any fails. Recorded as evidence either way.
#[utoipa::path(post, path = "/api/bastion/v1/datasets/{name}/versions/{version}/validate", tag = "datasets",
    params(("name" = String, Path), ("version" = String, Path)),
    request_body(content = Object, description = "`{constraints: \"<TOML>\"}`"),
    responses((status = 200, description = "`{passed, results: [...]}`")))]
pub(crate) async fn validate(
    s: Scoped,
    Path((name, version)): Path<(String, String)>,
    p: Params,
) -> JsonResult {
    let constraints = p.str("constraints")?;
    let v = s.version(&name, &version).await?;
    let r = s
        .datasets()
        .validate(&v, &constraints, &s.principal.actor())
        .await?;
    Ok(to_json(&r))
}

/// Constraints (TOML) proposed from the version's profile.
#[utoipa::path(get, path = "/api/bastion/v1/datasets/{name}/versions/{version}/suggest", tag = "datasets",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, description = "TOML constraints (text/plain)")))]
pub(crate) async fn suggest(
    s: Scoped,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    let v = s.version(&name, &version).await?;
    let text = s.datasets().suggest(&v).await?;
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// Scans the version for personal data (recorded as evidence).
#[utoipa::path(post, path = "/api/bastion/v1/datasets/{name}/versions/{version}/pii", tag = "datasets",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, description = "`{pii_columns, columns: [...]}`")))]
pub(crate) async fn pii(s: Scoped, Path((name, version)): Path<(String, String)>) -> JsonResult {
    let v = s.version(&name, &version).await?;
    let r = s.datasets().pii(&v, &s.principal.actor()).await?;
    Ok(to_json(&r))
}

/// A copy of the version (Parquet) with every detected personal value masked (`how=mask`) or
/// replaced by a keyed hash (`how=hash`; the key is fresh for each copy).
#[utoipa::path(get, path = "/api/bastion/v1/datasets/{name}/versions/{version}/redacted", tag = "datasets",
    params(("name" = String, Path), ("version" = String, Path), ("how" = Option<String>, Query, description = "mask (default) or hash")),
    responses((status = 200, description = "the redacted Parquet; header `X-Bastion-Values-Changed`")))]
pub(crate) async fn redacted(
    s: Scoped,
    Path((name, version)): Path<(String, String)>,
    p: Params,
) -> ApiResult<Response> {
    let how = match p.opt_str("how")?.as_deref() {
        None | Some("mask") => Redaction::Mask,
        Some("hash") => Redaction::Hash,
        Some(other) => {
            return Err(Error::invalid(format!(
                "Invalid how '{}': use mask or hash",
                bastion_core::limits::truncate(other, 40)
            ))
            .into());
        }
    };
    let v = s.version(&name, &version).await?;
    tokio::fs::create_dir_all(&s.datasets.tmp)
        .await
        .map_err(internal)?;
    let out = tempfile::NamedTempFile::new_in(&s.datasets.tmp).map_err(internal)?;
    let file = out.reopen().map_err(internal)?;
    let changed = s.datasets().redact(&v, how, file).await?;
    file_response(
        out.path(),
        "application/vnd.apache.parquet",
        vec![
            (
                HeaderName::from_static("x-bastion-values-changed"),
                changed.to_string(),
            ),
            named(&v),
            attachment(&v, "-redacted"),
        ],
    )
    .await
}

/// Duplicates, conflicting labels, outliers and label-noise candidates (recorded as evidence).
#[utoipa::path(post, path = "/api/bastion/v1/datasets/{name}/versions/{version}/poison", tag = "datasets",
    params(("name" = String, Path), ("version" = String, Path)),
    request_body(content = Object, description = "`{label?, against?: \"NAME@vK\", k?, max_rows?}`"),
    responses((status = 200, description = "`{dataset, report, class_balance}`")))]
pub(crate) async fn poison(
    s: Scoped,
    Path((name, version)): Path<(String, String)>,
    p: Params,
) -> JsonResult {
    let mut opts = PoisonOptions {
        label: p.opt_str("label")?,
        ..Default::default()
    };
    if let Some(k) = positive(&p, "k")? {
        opts.k = k;
    }
    if let Some(n) = positive(&p, "max_rows")? {
        opts.max_rows = n;
    }
    let v = s.version(&name, &version).await?;
    let against = match p.opt_str("against")? {
        Some(r) => Some(s.readable(&r).await?),
        None => None,
    };
    let body = s
        .datasets()
        .poison(&v, opts, against, &s.principal.actor())
        .await?;
    Ok(Json(body))
}

fn positive(p: &Params, field: &str) -> ApiResult<Option<usize>> {
    match p.opt_i64(field)? {
        None => Ok(None),
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| Error::invalid(format!("'{field}' must be a positive integer")).into()),
    }
}

/// Schema and row-count changes from `against` (the reference) to this version, with
/// per-column drift; recorded on this version.
#[utoipa::path(post, path = "/api/bastion/v1/datasets/{name}/versions/{version}/diff", tag = "datasets",
    params(("name" = String, Path), ("version" = String, Path),
           ("format" = Option<String>, Query, description = "json (default) or html")),
    request_body(content = Object, description = "`{against: \"NAME@vK\", correction?: fdr|bonferroni|none, alpha?}`"),
    responses((status = 200, description = "`{reference, current, diff}` or an HTML drift report")))]
pub(crate) async fn diff(
    s: Scoped,
    Path((name, version)): Path<(String, String)>,
    p: Params,
) -> ApiResult<Response> {
    let as_html = wants_html(&p)?;
    let mut opts = DriftOptions::default();
    if let Some(c) = p.opt_str("correction")? {
        opts.correction = c
            .parse::<Correction>()
            .map_err(|e| Error::invalid(e.to_string()))?;
    }
    if let Some(a) = p.opt_str("alpha")? {
        opts.alpha = a
            .parse::<f64>()
            .ok()
            .filter(|a| *a > 0.0 && *a < 1.0)
            .ok_or_else(|| Error::invalid("'alpha' must be a number between 0 and 1"))?;
    }
    let b = s.version(&name, &version).await?;
    let a = s.readable(&p.str("against")?).await?;
    let d = s
        .datasets()
        .diff(&a, &b, opts, &s.principal.actor())
        .await?;
    Ok(if as_html {
        html(report::drift_html(
            &format!("Drift {} → {}", d.reference, d.current),
            &d.diff.drift,
        ))
    } else {
        to_json(&d).into_response()
    })
}
