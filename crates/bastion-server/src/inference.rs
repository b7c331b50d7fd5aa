//! The Open Inference Protocol (KServe V2) over REST. The auth layer has already checked the
//! caller's INVOKE (inference) or READ (metadata) permission on the model; these handlers
//! resolve the version (number, alias or stage), get it admitted and loaded through
//! `bastion-serve`, and translate tensors. Errors use the protocol's `{"error": "…"}` body.

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bastion_ml::predictor::Field;
use bastion_serve::{Caller, ServeError, Served};
use serde_json::{Value, json};
use std::sync::Arc;

use crate::state::{AppState, Scoped};

/// The binary tensor extension's header: the JSON part's length in a mixed body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

pub fn routes() -> Router<AppState> {
    let m = "/v2/models/{model_name}";
    let v = "/v2/models/{model_name}/versions/{model_version}";
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route(m, get(metadata))
        .route(&format!("{m}/ready"), get(model_ready))
        .route(v, get(version_metadata))
        .route(&format!("{v}/ready"), get(version_ready))
        .merge(
            Router::new()
                .route(&format!("{m}/infer"), post(infer))
                .route(&format!("{v}/infer"), post(version_infer))
                .route_layer(axum::middleware::from_fn(crate::rollout::limits)),
        )
}

/// A protocol error: `{"error": message}` with its status.
pub(crate) struct OipError(pub StatusCode, pub String);

/// The status a serving error answers with.
pub(crate) fn status_of(e: &ServeError) -> StatusCode {
    match e {
        ServeError::BadRequest(_) | ServeError::Guarded { .. } => StatusCode::BAD_REQUEST,
        ServeError::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
        ServeError::Blocked(_) => StatusCode::FORBIDDEN,
        ServeError::Conflict(_) => StatusCode::CONFLICT,
        ServeError::NotFound(_) => StatusCode::NOT_FOUND,
        ServeError::Refused { .. } => StatusCode::FORBIDDEN,
        ServeError::Load(_) => StatusCode::SERVICE_UNAVAILABLE,
        ServeError::Model(_) | ServeError::Store(_) | ServeError::Evidence(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl From<ServeError> for OipError {
    fn from(e: ServeError) -> Self {
        let status = status_of(&e);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "inference failed");
            return OipError(status, "internal error while serving the model".into());
        }
        OipError(status, e.to_string())
    }
}

impl IntoResponse for OipError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(crate) type OipResult<T> = Result<T, OipError>;

/// Refusals made before a handler runs (authentication, permissions, rate limits) carry
/// Bastion's `{error_code, message}`; on the protocol's routes they also get the `error`
/// field its clients read, so a tritonclient user sees why.
pub async fn protocol_errors(req: Request, next: axum::middleware::Next) -> Response {
    let oip = req.uri().path() == "/v2" || req.uri().path().starts_with("/v2/");
    let response = next.run(req).await;
    if !oip || response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, 64 << 10).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let mut value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => return Response::from_parts(parts, Body::from(bytes)),
    };
    if value.get("error").is_none()
        && let Some(message) = value.get("message").cloned()
    {
        value["error"] = message;
        let body = serde_json::to_vec(&value).unwrap_or_else(|_| bytes.to_vec());
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from(body));
    }
    Response::from_parts(parts, Body::from(bytes))
}

pub(crate) fn caller_of<'a>(headers: &'a HeaderMap, actor: &'a str) -> Caller<'a> {
    Caller {
        actor,
        request_id: headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    }
}

async fn served(
    s: &Scoped,
    headers: &HeaderMap,
    name: &str,
    reference: Option<&str>,
) -> OipResult<Arc<Served>> {
    let version = s.models.resolve(name, reference).await?;
    let actor = s.principal.actor();
    Ok(s.models
        .get(name, &version, caller_of(headers, &actor))
        .await?)
}

async fn server_metadata() -> Response {
    axum::Json(json!({
        "name": "bastion",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
    .into_response()
}

async fn live() -> StatusCode {
    StatusCode::OK
}

async fn ready(axum::extract::State(state): axum::extract::State<AppState>) -> StatusCode {
    match state.meta.ping().await {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn field_json(f: &Field) -> Value {
    json!({ "name": f.name, "datatype": f.dtype, "shape": f.shape })
}

fn metadata_of(m: &Served) -> Value {
    let sig = &m.manifest.signature;
    json!({
        "name": m.name,
        "versions": [m.version],
        "platform": match m.manifest.framework {
            bastion_ml::package::Framework::Bastion => "bastion",
            bastion_ml::package::Framework::Onnx => "onnx",
        },
        "inputs": sig.inputs.iter().map(field_json).collect::<Vec<_>>(),
        "outputs": sig
            .outputs
            .iter()
            .filter(|f| m.policy.serves(&f.name))
            .map(field_json)
            .collect::<Vec<_>>(),
        "parameters": {
            "root_digest": m.admission.root_digest,
            "admission": m.admission.checks,
        },
    })
}

async fn metadata(s: Scoped, headers: HeaderMap, Path(name): Path<String>) -> OipResult<Response> {
    let m = served(&s, &headers, &name, None).await?;
    Ok(axum::Json(metadata_of(&m)).into_response())
}

async fn version_metadata(
    s: Scoped,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
) -> OipResult<Response> {
    let m = served(&s, &headers, &name, Some(&version)).await?;
    Ok(axum::Json(metadata_of(&m)).into_response())
}

/// 200 when the version is admitted and loaded; 4xx (with the reason) when not.
async fn readiness(s: &Scoped, headers: &HeaderMap, name: &str, v: Option<&str>) -> Response {
    match served(s, headers, name, v).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn model_ready(s: Scoped, headers: HeaderMap, Path(name): Path<String>) -> Response {
    readiness(&s, &headers, &name, None).await
}

async fn version_ready(
    s: Scoped,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    readiness(&s, &headers, &name, Some(&version)).await
}

async fn infer(s: Scoped, Path(name): Path<String>, req: Request) -> Response {
    crate::rollout::run(s, name, None, req).await
}

async fn version_infer(
    s: Scoped,
    Path((name, version)): Path<(String, String)>,
    req: Request,
) -> Response {
    crate::rollout::run(s, name, Some(version), req).await
}

/// The answer as a response: JSON, or JSON header plus binary tensors.
pub(crate) fn encoded(body: Vec<u8>, header_len: Option<usize>) -> Response {
    let mut r = Response::new(Body::from(body));
    match header_len {
        Some(n) => {
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r.headers_mut().insert(HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    r
}
