//! Errors as MLflow clients expect them: `{"error_code": ..., "message": ...}` with MLflow's
//! status codes. Server faults are logged in full and reported with a generic message, so no
//! SQL, path or driver text ever reaches a client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bastion_core::{Error, ErrorCode};
use bastion_store::StoreError;
use bastion_store::blob::BlobError;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// An HTTP status other than the code's usual one (413, 405, 403 for hosts).
    pub status: Option<StatusCode>,
    /// Set when the request looked like an attack (a traversal attempt...): the auth layer
    /// records it in the audit log as a security event.
    pub security: Option<&'static str>,
    pub retry_after: Option<std::time::Duration>,
}

/// Marks a response as the refusal of a suspicious request, for the audit layer.
#[derive(Debug, Clone, Copy)]
pub struct SecurityEvent(pub &'static str);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            status: None,
            security: None,
            retry_after: None,
        }
    }
    pub fn security_event(mut self, kind: &'static str) -> Self {
        self.security = Some(kind);
        self
    }
    pub fn with_retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }
    fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            ErrorCode::InternalError,
            "Internal server error; the server log has the details",
        )
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self::new(e.code, e.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e.domain() {
            Some(d) => d.clone().into(),
            None => Self::internal(&e),
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Domain(d) => d.into(),
            other => Self::internal(&other),
        }
    }
}

impl From<bastion_evidence::EvidenceError> for ApiError {
    fn from(e: bastion_evidence::EvidenceError) -> Self {
        match e {
            bastion_evidence::EvidenceError::Store(e) => e.into(),
            bastion_evidence::EvidenceError::Blob(e) => e.into(),
            e @ bastion_evidence::EvidenceError::Unavailable(..) => {
                Error::invalid_state(e.to_string()).into()
            }
            other => ApiError::internal(&other),
        }
    }
}

impl From<bastion_evidence::datasets::DatasetError> for ApiError {
    fn from(e: bastion_evidence::datasets::DatasetError) -> Self {
        use bastion_data::DataError;
        use bastion_evidence::datasets::DatasetError as D;
        use bastion_store::crypt::CryptError;
        match e {
            D::Evidence(e) => e.into(),
            // What was wrong with the data or the request, with its line and column.
            D::Data(e @ DataError::Io { .. }) => ApiError::internal(&e),
            D::Data(e) => Error::invalid(e.to_string()).into(),
            // A stored blob that no longer matches its digest or will not decrypt: say so.
            D::Integrity(m) => Error::invalid_state(m).into(),
            D::Crypt(e @ (CryptError::Decrypt(_) | CryptError::Encrypt(_))) => {
                tracing::error!(error = %e, "dataset blob encryption");
                Error::invalid_state(e.to_string()).into()
            }
            other => ApiError::internal(&other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self
            .status
            .or_else(|| StatusCode::from_u16(self.code.http_status()).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({ "error_code": self.code.as_str(), "message": self.message });
        let mut response = (status, Json(body)).into_response();
        if let Some(kind) = self.security {
            response.extensions_mut().insert(SecurityEvent(kind));
        }
        if let Some(wait) = self.retry_after {
            // Whole seconds, rounded up: a client retrying early would only be refused again.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs.max(1)),
            );
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
