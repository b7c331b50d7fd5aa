//! Host-header allowlist: a browser tricked by DNS rebinding sends the attacker's host name,
//! which is refused here before any handler runs.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::HOST;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bastion_core::ErrorCode;

use crate::error::ApiError;
use crate::state::AppState;

/// The host part of a Host header value: `[::1]:5000` → `::1`, `a.b:80` → `a.b`.
fn host_part(value: &str) -> &str {
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    value
        .rsplit_once(':')
        .map(|(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                value
            }
        })
        .unwrap_or(value)
}

pub(crate) fn is_allowed(state: &AppState, host_header: Option<&str>) -> bool {
    let Some(value) = host_header else {
        return false;
    };
    let host = host_part(value).to_ascii_lowercase();
    let cfg = &state.config;
    if cfg
        .allowed_hosts
        .iter()
        .any(|h| h == "*" || h.eq_ignore_ascii_case(&host))
    {
        return true;
    }
    let bound = cfg.bind.ip();
    matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1")
        || (!bound.is_unspecified() && host == bound.to_string())
}

pub async fn check_host(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().host());
    if !is_allowed(&state, host) {
        tracing::warn!(
            host = host.unwrap_or("<none>"),
            "refused request with a Host header outside the allowlist"
        );
        return ApiError::new(
            ErrorCode::PermissionDenied,
            "Invalid Host header - possible DNS rebinding attack detected",
        )
        .with_status(StatusCode::FORBIDDEN)
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::host_part;

    #[test]
    fn host_parts() {
        assert_eq!(host_part("localhost:5000"), "localhost");
        assert_eq!(host_part("[::1]:80"), "::1");
        assert_eq!(host_part("example.com"), "example.com");
    }
}
