//! Operations endpoints: `/health` and Prometheus `/metrics`, and the layer that measures every
//! request by its route template (not its raw path, which would explode label cardinality).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

const LATENCY: &str = "bastion_http_request_duration_seconds";

/// The process-wide Prometheus recorder (installed once; later calls share it).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(LATENCY.to_owned()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(h) => h,
                // Another recorder is installed (a host application's): keep a private one.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("bastion_http_requests_total", &labels).increment(1);
    metrics::histogram!(LATENCY, &labels[..2]).record(start.elapsed().as_secs_f64());
    response
}

pub async fn health(State(state): State<AppState>) -> Response {
    match state.meta.ping().await {
        Ok(()) => (StatusCode::OK, "OK").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "metadata store unavailable",
            )
                .into_response()
        }
    }
}

pub async fn metrics_text(State(state): State<AppState>) -> Response {
    let pool = state.meta.pool_stats();
    metrics::gauge!("bastion_db_pool_connections").set(f64::from(pool.size));
    metrics::gauge!("bastion_db_pool_idle_connections").set(f64::from(pool.idle));
    let body = state.metrics.render();
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// `/metrics` and `/health` alone, for a process that serves nothing else (`bastion monitor
/// --metrics`), on the process-wide recorder.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = prometheus();
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let body = handle.render();
                async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
            }),
        )
        .route("/health", axum::routing::get(|| async { "OK" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}
