//! Bastion's HTTP surface: an axum app whose cross-cutting behaviour (request ids, tracing,
//! metrics, the Host allowlist, CORS, panic containment, body limits) is composed as tower
//! layers around thin handlers. Business logic lives in `bastion-store`; authentication and
//! authorization will slot in as one more layer.

mod error;
mod host;
mod mlflow;
mod ops;
mod params;
mod state;

use std::future::Future;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bastion_core::ErrorCode;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use error::{ApiError, ApiResult};
pub use ops::prometheus;
pub use state::{AppState, ServerConfig};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application, ready to serve.
pub fn app(state: AppState) -> Router {
    let cors = cors_layer(&state.config.cors_origins);
    let router = Router::new()
        .merge(mlflow::routes())
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics_text))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(axum::middleware::from_fn(ops::track))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            host::check_host,
        ));
    let router = match cors {
        Some(c) => router.layer(c),
        None => router,
    };
    router
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(ErrorCode::InternalError, "Internal server error").into_response()
        }))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                axum::http::header::CONTENT_TYPE,
                axum::http::header::AUTHORIZATION,
            ]),
    )
}

async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError::new(
        ErrorCode::EndpointNotFound,
        format!(
            "No API endpoint at '{}'",
            bastion_core::limits::truncate(uri.path(), 200)
        ),
    )
    .into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(
        ErrorCode::BadRequest,
        "Method not allowed for this endpoint",
    )
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
    .into_response()
}

/// Serves `state` on `listener` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let meta = state.meta.clone();
    let app = app(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    meta.close().await;
    Ok(())
}
