//! The web dashboard at `/`: server-rendered pages (markup from `bastion-web`) over the
//! same store, behind the same auth layer and permission table as the API. Each page is a
//! route with its own rule (`ui.*` in `auth::policy::RULES`); lists show only what the
//! caller may read, and actions appear only to those allowed to take them (the rule refuses
//! the rest anyway). This module fetches and serves; it decides nothing the API would not.

mod audit;
mod datasets;
mod deployments;
mod models;
mod overview;
mod runs;
pub(crate) mod session;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use bastion_auth::{Capability, Permission, ResourceKind};
use bastion_web::layout::{Chrome, bare};
use bastion_web::{Markup, html};

use crate::auth::AuthMethod;
use crate::error::ApiResult;
use crate::state::{AppState, Scoped};

/// What the dashboard's pages may load: only this origin's stylesheet and script, inline
/// SVG, forms posting here; never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes() -> Router<AppState> {
    let dep = "/ui/deployments/{model_name}";
    Router::new()
        .route("/", get(overview::page))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/ui/assets/{file}", get(asset))
        .route("/ui/experiments", get(runs::experiments))
        .route("/ui/runs", get(runs::runs))
        .route("/ui/run", get(runs::run))
        .route("/ui/compare", get(runs::compare))
        .route("/ui/models", get(models::list))
        .route("/ui/model", get(models::model))
        .route("/ui/model-version", get(models::version))
        .route("/ui/model-version/bom", get(models::bom))
        .route("/ui/datasets", get(datasets::list))
        .route("/ui/datasets/{name}", get(datasets::dataset))
        .route("/ui/datasets/{name}/diff", post(datasets::diff))
        .route("/ui/deployments", get(deployments::list))
        .route(dep, get(deployments::model))
        .route(&format!("{dep}/confirm"), get(deployments::confirm))
        .route(&format!("{dep}/change"), post(deployments::change))
        .route(
            &format!("{dep}/incidents/{{id}}/acknowledge"),
            post(deployments::acknowledge),
        )
        .route(
            &format!("{dep}/incidents/{{id}}/resolve"),
            post(deployments::resolve),
        )
        .route("/ui/audit", get(audit::page))
}

/// Whether a path is the dashboard's (so errors there are pages, not JSON).
fn is_dashboard(path: &str) -> bool {
    path == "/" || path == "/login" || path == "/logout" || path.starts_with("/ui/")
}

/// An HTML page as a response.
pub(crate) fn page_html(m: Markup) -> Html<String> {
    Html(m.into_string())
}

/// Every dashboard response gets the security headers; an error from the layers or a
/// handler (JSON, shaped for API clients) becomes a page saying the same thing; a page
/// asked for without credentials sends the browser to sign in.
pub async fn html_errors(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if !is_dashboard(&path) {
        return next.run(req).await;
    }
    let is_get = req.method() == Method::GET;
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let mut response = next.run(req).await;
    let status = response.status();
    let json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status == StatusCode::UNAUTHORIZED && is_get {
        let to = format!("/login{}", bastion_web::layout::query(&[("next", &target)]));
        response = StatusCode::SEE_OTHER.into_response();
        if let Ok(v) = HeaderValue::from_str(&to) {
            response.headers_mut().insert(LOCATION, v);
        }
    } else if (status.is_client_error() || status.is_server_error()) && json {
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 64 * 1024)
            .await
            .unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("Error").to_owned());
        let title = format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        let page = bare(
            &title,
            html! {
                div.card {
                    h1 { (title) }
                    div.error role="alert" { (message) }
                    p { a href="/" { "Back to the overview" } " · " a href="/login" { "Sign in as someone else" } }
                }
            },
        );
        let mut r = Response::from_parts(parts, Body::from(page.into_string()));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r.headers_mut().remove(axum::http::header::CONTENT_LENGTH);
        response = r;
    }
    let h = response.headers_mut();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if !path.starts_with("/ui/assets/") {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn asset(Path(file): Path<String>) -> Response {
    match bastion_web::assets::get(&file) {
        Some((kind, body)) => (
            [
                (CONTENT_TYPE, HeaderValue::from_static(kind)),
                (
                    CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=300"),
                ),
            ],
            body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// The chrome for this caller: who, what they may see, the session's form token.
pub(crate) fn chrome(s: &Scoped, headers: &axum::http::HeaderMap) -> Chrome {
    let session = matches!(s.principal.method, AuthMethod::Session { .. });
    let csrf = if session {
        session::cookie(headers, session::SESSION_COOKIE)
            .map(session::csrf_for)
            .unwrap_or_default()
    } else {
        String::new()
    };
    Chrome {
        user: s.principal.name.clone(),
        role: s.principal.role.to_string(),
        csrf,
        can_audit: s.principal.has(Capability::ReadAudit),
        session,
    }
}

/// The caller's permission on one registered model.
pub(crate) async fn model_permission(s: &Scoped, model: &str) -> ApiResult<Permission> {
    s.auth
        .authorizer
        .permission(&s.principal, ResourceKind::RegisteredModel, model)
        .await
}

/// The caller's permission on one experiment.
pub(crate) async fn experiment_permission(s: &Scoped, id: &str) -> ApiResult<Permission> {
    s.auth
        .authorizer
        .permission(&s.principal, ResourceKind::Experiment, id)
        .await
}

/// The caller's permission on one dataset.
pub(crate) async fn dataset_permission(s: &Scoped, name: &str) -> ApiResult<Permission> {
    s.auth
        .authorizer
        .permission(&s.principal, ResourceKind::Dataset, name)
        .await
}

/// One page of a list held in memory (`offset` from the query), with the links to the
/// pages before and after it (`href` makes a link from an offset).
pub(crate) struct Paged<T> {
    pub items: Vec<T>,
    pub prev: Option<String>,
    pub next: Option<String>,
}

pub(crate) fn paged<T>(
    all: Vec<T>,
    p: &crate::params::Params,
    href: impl Fn(usize) -> String,
) -> ApiResult<Paged<T>> {
    let per_page = page_size(p)? as usize;
    let offset = p.opt_i64("offset")?.unwrap_or(0);
    let offset = usize::try_from(offset)
        .map_err(|_| bastion_core::Error::invalid(format!("offset must be >= 0, not {offset}")))?;
    let total = all.len();
    let items: Vec<T> = all.into_iter().skip(offset).take(per_page).collect();
    Ok(Paged {
        prev: (offset > 0).then(|| href(offset.saturating_sub(per_page))),
        next: (offset + per_page < total).then(|| href(offset + per_page)),
        items,
    })
}

/// A page size from the query (10–500, default 50).
pub(crate) fn page_size(p: &crate::params::Params) -> ApiResult<i64> {
    let n = p.opt_i64("per_page")?.unwrap_or(50);
    if !(10..=500).contains(&n) {
        return Err(
            bastion_core::Error::invalid(format!("per_page must be 10-500, not {n}")).into(),
        );
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Params;

    #[test]
    fn lists_held_in_memory_page_with_links_both_ways() {
        let href = |o: usize| format!("?offset={o}");
        let all: Vec<u32> = (0..25).collect();
        let first = paged(all.clone(), &Params::from_query(Some("per_page=10")), href).unwrap();
        assert_eq!(first.items, (0..10).collect::<Vec<_>>());
        assert_eq!(
            (first.prev, first.next.as_deref()),
            (None, Some("?offset=10"))
        );
        let last = paged(
            all.clone(),
            &Params::from_query(Some("per_page=10&offset=20")),
            href,
        )
        .unwrap();
        assert_eq!(last.items, vec![20, 21, 22, 23, 24]);
        assert_eq!(
            (last.prev.as_deref(), last.next),
            (Some("?offset=10"), None)
        );
        assert!(paged(all.clone(), &Params::from_query(Some("offset=-1")), href).is_err());
        assert!(
            paged(
                all.clone(),
                &Params::from_query(Some("per_page=100000")),
                href
            )
            .is_err()
        );
        let beyond = paged(all, &Params::from_query(Some("offset=999")), href).unwrap();
        assert!(beyond.items.is_empty() && beyond.next.is_none());
    }
}
