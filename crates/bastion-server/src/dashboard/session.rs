//! Signing in to the dashboard: a login form (name and password, throttled exactly like
//! Basic credentials), a session cookie holding a token minted for the session (12 hours,
//! revoked at sign-out, so every check a token gets applies to it), and the form token every
//! state-changing dashboard form carries. The cookie is `HttpOnly` and `SameSite=Strict`;
//! the auth layer accepts it only on reads and on the dashboard's own forms, and those only
//! with the form token, which is derived from the cookie and so unknown to other sites.

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bastion_audit::entry::Outcome;
use bastion_store::meta::AuditDraft;
use bastion_web::layout::bare;
use bastion_web::{Markup, html};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::auth::AuthMethod;
use crate::error::ApiResult;
use crate::params::Params;
use crate::state::{AppState, Scoped};
use crate::tls::Peer;

pub const SESSION_COOKIE: &str = "bastion_session";
const LOGIN_COOKIE: &str = "bastion_login";
/// How long a dashboard session lasts.
pub const SESSION_HOURS: i64 = 12;

/// The value of cookie `name`, from any `Cookie` header.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The form token of a session: a hash of its secret, so only a page that was served to
/// the cookie's holder can know it.
pub fn csrf_for(session: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"bastion dashboard form token\0");
    h.update(session.as_bytes());
    hex::encode(&h.finalize()[..16])
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether a form sent with session cookie `session` carries its form token.
pub fn csrf_ok(params: &Params, session: &str) -> bool {
    matches!(params.opt_str("csrf"), Ok(Some(t)) if same(&t, &csrf_for(session)))
}

fn set_cookie(state: &AppState, name: &str, value: &str, path: &str, max_age: i64) -> HeaderValue {
    let secure = if state.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Where to go after signing in: a path on this site only (no scheme, no `//host`, no
/// backslashes), else the overview.
fn local_target(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control)
                && n.len() <= 2000 =>
        {
            n.to_owned()
        }
        _ => "/".into(),
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

fn form(token: &str, next: &str, error: Option<&str>) -> Markup {
    bare(
        "Sign in",
        html! {
            div.login.card {
                h1 { "Sign in to Bastion" }
                @if let Some(e) = error { div.error role="alert" { (e) } }
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(token);
                    input type="hidden" name="next" value=(next);
                    label for="user" { "User name" }
                    input #user type="text" name="user" autocomplete="username" required autofocus;
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="current-password" required;
                    p { button type="submit" { "Sign in" } }
                }
                p.muted { "API clients send a token instead: " code { "Authorization: Bearer bst_…" } }
            }
        },
    )
}

/// A fresh login form, with its form token also set as a cookie (double submit: the
/// login has no session yet to derive one from).
fn login_form(state: &AppState, status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let mut r = (status, super::page_html(form(&token, next, error))).into_response();
    r.headers_mut().append(
        SET_COOKIE,
        set_cookie(state, LOGIN_COOKIE, &token, "/login", 3600),
    );
    r
}

pub async fn login_page(State(state): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    login_form(
        &state,
        StatusCode::OK,
        &local_target(q.next.as_deref()),
        None,
    )
}

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Params::parse_form(None, &body);
    let field = |k: &str| form.opt_str(k).ok().flatten().unwrap_or_default();
    let (user, password, csrf) = (field("user"), field("password"), field("csrf"));
    let next = local_target(
        Some(&field("next"))
            .filter(|n| !n.is_empty())
            .map(String::as_str),
    );
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !same(expected, &csrf) {
        return login_form(
            &state,
            StatusCode::FORBIDDEN,
            &next,
            Some("The sign-in form expired or was not sent by this site; please sign in again."),
        );
    }
    let ip = peer.addr.ip();
    let audit = |actor: String, action: &str, outcome: Outcome| AuditDraft {
        actor,
        action: action.into(),
        resource: "dashboard".into(),
        request_id: headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .into(),
        outcome,
        body_sha256: None,
    };
    let principal = match state.auth.credentials.login(&user, &password, ip).await {
        Ok(p) => p,
        Err(refused) => {
            let draft = audit(
                format!("{} from {ip}", refused.claimed),
                "security.auth-failed",
                Outcome::Denied,
            );
            if let Err(e) = state.meta.record_audit(&draft).await {
                tracing::error!(error = %e, "could not append to the audit log");
            }
            let status = StatusCode::from_u16(refused.status).unwrap_or(StatusCode::UNAUTHORIZED);
            let message = if refused.status == 401 {
                "Wrong user name or password.".to_owned()
            } else {
                refused.message
            };
            return login_form(&state, status, &next, Some(&message));
        }
    };
    let expires = bastion_core::time::now_ms() + SESSION_HOURS * 3_600_000;
    let (secret, info) = match state
        .meta
        .issue_token(&principal.name, "dashboard session", Some(expires))
        .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "could not start a dashboard session");
            return login_form(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                &next,
                Some("Signing in is unavailable; retry shortly."),
            );
        }
    };
    let actor = format!("user:{} (web session {})", principal.name, info.token_id);
    if let Err(e) = state
        .meta
        .record_audit(&audit(actor, "session.login", Outcome::Success))
        .await
    {
        tracing::error!(error = %e, "could not append to the audit log");
    }
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    h.insert(
        LOCATION,
        HeaderValue::from_str(&next).unwrap_or(HeaderValue::from_static("/")),
    );
    h.append(
        SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, &secret, "/", SESSION_HOURS * 3600),
    );
    h.append(
        SET_COOKIE,
        set_cookie(&state, LOGIN_COOKIE, "", "/login", 0),
    );
    r
}

/// Ends the session: its token is revoked (audited), the cookie cleared.
pub async fn logout(s: Scoped) -> ApiResult<Response> {
    if let AuthMethod::Session { token_id } = &s.principal.method {
        s.meta.revoke_token(token_id).await?;
        s.auth.credentials.invalidate();
    }
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    h.insert(LOCATION, HeaderValue::from_static("/login"));
    h.append(SET_COOKIE, set_cookie(&s.state, SESSION_COOKIE, "", "/", 0));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_targets_and_form_tokens() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; bastion_session=bst_x_y"),
        );
        h.append(COOKIE, HeaderValue::from_static("other=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("bst_x_y"));
        assert_eq!(cookie(&h, "other"), Some("2"));
        assert_eq!(cookie(&h, "missing"), None);
        assert_eq!(local_target(Some("/ui/run?run_id=1")), "/ui/run?run_id=1");
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil",
            "javascript:x",
            "/a\nb",
        ] {
            assert_eq!(local_target(Some(bad)), "/", "{bad}");
        }
        assert_ne!(csrf_for("a"), csrf_for("b"));
        assert_eq!(csrf_for("a").len(), 32);
        let p = Params::parse_form(None, format!("csrf={}", csrf_for("s")).as_bytes());
        assert!(csrf_ok(&p, "s"));
        assert!(!csrf_ok(&p, "t"));
        assert!(!csrf_ok(&Params::parse_form(None, b"x=1"), "s"));
    }
}
