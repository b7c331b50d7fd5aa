//! Bastion's HTTP surface: an axum app whose cross-cutting behaviour (request ids, tracing,
//! metrics, the Host allowlist, CORS, panic containment, body limits) is composed as tower
//! layers around thin handlers. Business logic lives in `bastion-store`; authentication,
//! authorization, rate limits and auditing are one more layer (`auth::layer`).

mod admin;
pub mod auth;
mod dashboard;
mod datasets;
mod deployments;
mod error;
mod evidence;
mod feedback;
mod host;
mod incidents;
mod inference;
pub(crate) mod mlflow;
mod ops;
mod params;
mod rollout;
mod state;
pub mod tls;

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

pub use admin::ApiDoc;
pub use auth::credentials::OidcConfig;
pub use auth::limits::RateLimit;
pub use dashboard::CONTENT_SECURITY_POLICY;
pub use datasets::DIGEST_HEADER;
pub use error::{ApiError, ApiResult};
pub use ops::{prometheus, serve_metrics};
pub use state::{AppState, DatasetSettings, ServerConfig};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application, ready to serve.
pub fn app(state: AppState) -> Router {
    let cors = cors_layer(&state.config.cors_origins);
    let router = Router::new()
        .merge(mlflow::routes())
        .merge(admin::routes())
        .merge(evidence::routes())
        .merge(datasets::routes())
        .merge(inference::routes())
        .merge(deployments::routes())
        .merge(incidents::routes())
        .merge(feedback::routes())
        .merge(dashboard::routes())
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics_text))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::layer::guard,
        ))
        .route_layer(axum::middleware::from_fn(ops::track))
        .layer(axum::middleware::from_fn(inference::protocol_errors))
        .layer(axum::middleware::from_fn(dashboard::html_errors))
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

/// Serves `state` over plain HTTP on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(listener, state, shutdown).await
}

/// Serves `state` over HTTPS (and mutual TLS, if `tls` asks for client certificates).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: std::sync::Arc<rustls::ServerConfig>,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(tls::TlsListener::new(listener, tls)?, state, shutdown).await
}

async fn serve_on<L>(
    listener: L,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    for<'a> tls::Peer: axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let meta = state.meta.clone();
    let upkeep = tokio::spawn(upkeep(state.clone()));
    let app = app(state.clone());
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<tls::Peer>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    upkeep.abort();
    flush_token_use(&state).await;
    sign_head(&state).await;
    meta.close().await;
    Ok(())
}

/// Background upkeep while serving: records when tokens were last used, signs a new audit tree
/// head when the log has grown, and forgets idle rate-limit state (the server's and each
/// deployment's).
async fn upkeep(state: AppState) {
    let mut tick = tokio::time::interval(state.config.audit_sign_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        flush_token_use(&state).await;
        sign_head(&state).await;
        state.auth.limits.forget_idle();
        state.models.forget_idle();
    }
}

async fn flush_token_use(state: &AppState) {
    let used = state.auth.credentials.take_last_used();
    if !used.is_empty()
        && let Err(e) = state.meta.touch_tokens(&used).await
    {
        tracing::warn!(error = %e, "could not record token use");
    }
}

async fn sign_head(state: &AppState) {
    if let Some(key) = &state.audit_key
        && let Err(e) = state.meta.sign_audit_head(key).await
    {
        tracing::warn!(error = %e, "could not sign an audit tree head");
    }
}
