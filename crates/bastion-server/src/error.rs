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
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            status: None,
        }
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self
            .status
            .or_else(|| StatusCode::from_u16(self.code.http_status()).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({ "error_code": self.code.as_str(), "message": self.message });
        (status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
