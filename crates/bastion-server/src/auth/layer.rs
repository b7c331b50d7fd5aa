//! The one place requests are let in or refused. For a matched route it: looks up the route's
//! rule (none: denied), applies the per-address rate limit, authenticates, applies the
//! per-principal rate limit, reads and hashes the body, resolves the resource and checks the
//! permission, then hands the handler a store that records its changes as this request.
//! Refusals, security events and writes that recorded nothing are appended to the audit log
//! here.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bastion_audit::entry::Outcome;
use bastion_core::ErrorCode;
use bastion_store::meta::{AuditContext, AuditDraft};
use sha2::{Digest, Sha256};

use super::Principal;
use super::policy::{self, Access, Rule};
use crate::error::{ApiError, SecurityEvent};
use crate::params::Params;
use crate::state::{AppState, Scoped};
use crate::tls::Peer;

const REQUEST_ID: &str = "x-request-id";

/// The request being decided, as the audit entries about it name it.
struct Pending {
    rule: &'static Rule,
    request_id: String,
}

fn refusal(code: ErrorCode, status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message).with_status(status)
}

impl AppState {
    /// Appends an entry that accompanies no change (a refusal, a failed write).
    async fn audit_event(&self, draft: AuditDraft) {
        if let Err(e) = self.meta.record_audit(&draft).await {
            tracing::error!(error = %e, action = %draft.action, "could not append to the audit log");
        }
    }
}

fn draft(
    r: &Pending,
    actor: String,
    action: &str,
    resource: String,
    outcome: Outcome,
) -> AuditDraft {
    AuditDraft {
        actor,
        action: action.to_owned(),
        resource,
        request_id: r.request_id.clone(),
        outcome,
        body_sha256: None,
    }
}

/// Whether the body of this route is streamed to the handler rather than read here (artifact
/// and dataset uploads can be gigabytes; their content is addressed by digest anyway;
/// inference bodies are not JSON parameters but tensors, with binary data, under their own
/// limit).
/// A call to a model's `infer` refused here (bad credentials, a locked-out account, a rate
/// limit) still reaches the monitor: as an inference event of that model with no version,
/// the identity the caller claimed as its actor, so the abuse detector counts it per caller.
/// The per-address limit comes first, so refusals cannot be recorded faster than it allows.
async fn record_refused_infer(
    state: &AppState,
    r: &Pending,
    parts: &mut axum::http::request::Parts,
    actor: String,
    status: u16,
    decision: &str,
) {
    if r.rule.action != "inference.infer" {
        return;
    }
    let Some(events) = &state.models.events else {
        return;
    };
    let Ok(params) = RawPathParams::from_request_parts(parts, state).await else {
        return;
    };
    let Some(model) = params
        .iter()
        .find(|(k, _)| *k == "model_name")
        .map(|(_, v)| v.to_owned())
    else {
        return;
    };
    events.record(bastion_store::meta::InferenceEvent {
        id: 0,
        time_ms: bastion_core::time::now_ms(),
        model_name: model,
        version: String::new(),
        route: "refused".into(),
        actor,
        request_id: r.request_id.clone(),
        latency_us: 0,
        status: i64::from(status),
        decision: decision.into(),
        input_digest: String::new(),
        rows: 0,
        features: serde_json::Value::Null,
        outputs: serde_json::Value::Null,
        guards: serde_json::Value::Null,
    });
}

fn streams_body(rule: &Rule) -> bool {
    matches!(
        rule.action,
        "artifacts.upload" | "datasets.add" | "inference.infer"
    )
}

pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let peer = parts.extensions.get::<ConnectInfo<Peer>>().map(|c| &c.0);
    let ip = peer
        .map(|p| p.addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let client_cert = peer.and_then(|p| p.client_cert.clone());
    let request_id = parts
        .headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let template = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let Some(rule) = policy::rule_for(&parts.method, &template) else {
        if policy::RULES.iter().any(|r| r.path == template) {
            // A known route, another method: the 405 the router would give, without running
            // anything (a handler without a rule must never be reachable).
            return refusal(
                ErrorCode::BadRequest,
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed for this endpoint",
            )
            .into_response();
        }
        tracing::error!(method = %parts.method, route = %template, "route has no access rule; denied");
        return refusal(
            ErrorCode::PermissionDenied,
            StatusCode::FORBIDDEN,
            "Permission denied: this endpoint has no access rule",
        )
        .into_response();
    };
    let r = Pending { rule, request_id };
    let auth = &state.auth;
    let reads_only = parts.method == Method::GET || parts.method == Method::HEAD;
    // The dashboard's session cookie acts on reads and on the dashboard's own forms (which
    // must then carry the session's form token); a cookie never reaches another API write.
    let dashboard = rule.action.starts_with("ui.");
    let session = if dashboard || reads_only {
        crate::dashboard::session::cookie(&parts.headers, crate::dashboard::session::SESSION_COOKIE)
            .map(str::to_owned)
    } else {
        None
    };

    if let Err(wait) = auth.limits.check_ip(ip) {
        record_refused_infer(&state, &r, &mut parts, format!("ip:{ip}"), 429, "limited").await;
        state
            .audit_event(draft(
                &r,
                format!("ip:{ip}"),
                "security.rate-limited",
                rule.action.into(),
                Outcome::Denied,
            ))
            .await;
        return refusal(
            ErrorCode::RequestLimitExceeded,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests from this address",
        )
        .with_retry_after(wait)
        .into_response();
    }

    let principal = if rule.access == Access::Public {
        None
    } else if state.config.insecure {
        Some(Principal::insecure())
    } else {
        match auth
            .credentials
            .authenticate(
                &parts.headers,
                ip,
                client_cert.as_deref(),
                session.as_deref(),
            )
            .await
        {
            Ok(p) => Some(p),
            Err(refused) => {
                let (action, decision) = if refused.status == 429 {
                    ("security.auth-locked", "auth-locked")
                } else {
                    ("security.auth-failed", "unauthenticated")
                };
                let caller = if refused.claimed.is_empty() {
                    format!("ip:{ip}")
                } else {
                    refused.claimed.clone()
                };
                record_refused_infer(&state, &r, &mut parts, caller, refused.status, decision)
                    .await;
                state
                    .audit_event(draft(
                        &r,
                        format!("{} from {ip}", refused.claimed),
                        action,
                        rule.action.into(),
                        Outcome::Denied,
                    ))
                    .await;
                let status =
                    StatusCode::from_u16(refused.status).unwrap_or(StatusCode::UNAUTHORIZED);
                let code = match refused.status {
                    429 => ErrorCode::RequestLimitExceeded,
                    401 => ErrorCode::Unauthenticated,
                    _ => ErrorCode::InternalError,
                };
                let mut err = refusal(code, status, refused.message);
                if let Some(w) = refused.retry_after {
                    err = err.with_retry_after(w);
                }
                let mut response = err.into_response();
                if status == StatusCode::UNAUTHORIZED {
                    response.headers_mut().insert(
                        WWW_AUTHENTICATE,
                        HeaderValue::from_static(
                            "Bearer realm=\"bastion\", Basic realm=\"bastion\"",
                        ),
                    );
                }
                return response;
            }
        }
    };
    let Some(principal) = principal else {
        return next.run(Request::from_parts(parts, body)).await;
    };

    if let Err(wait) = auth.limits.check_principal(&principal.name) {
        record_refused_infer(&state, &r, &mut parts, principal.actor(), 429, "limited").await;
        state
            .audit_event(draft(
                &r,
                principal.actor(),
                "security.rate-limited",
                rule.action.into(),
                Outcome::Denied,
            ))
            .await;
        return refusal(
            ErrorCode::RequestLimitExceeded,
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit exceeded for this caller",
        )
        .with_retry_after(wait)
        .into_response();
    }

    // The body: read (bounded), hashed for the audit entry and parsed once for both the
    // permission check and the handler.
    let (params, body, body_sha256) = if streams_body(rule) || reads_only {
        (Params::from_query(parts.uri.query()), body, None)
    } else {
        let limit = state.config.max_json_bytes;
        let bytes = match axum::body::to_bytes(body, limit).await {
            Ok(b) => b,
            Err(_) => {
                return refusal(
                    ErrorCode::RequestLimitExceeded,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("Request body exceeds the limit of {limit} bytes"),
                )
                .into_response();
            }
        };
        // A body carrying a password is not hashed: a fast hash of it could be brute-forced
        // from the audit log.
        let carries_secret = rule.action.starts_with("users.");
        let hash: Option<[u8; 32]> =
            (!bytes.is_empty() && !carries_secret).then(|| Sha256::digest(&bytes).into());
        let parsed = if dashboard {
            Ok(Params::parse_form(parts.uri.query(), &bytes))
        } else {
            Params::parse(parts.uri.query(), &bytes)
        };
        match parsed {
            Ok(p) => (p, Body::empty(), hash),
            Err(e) => return finish_failed(&state, &r, &principal, rule.action.into(), e).await,
        }
    };
    if let (super::AuthMethod::Session { .. }, Some(cookie), false) =
        (&principal.method, session.as_deref(), reads_only)
        && !crate::dashboard::session::csrf_ok(&params, cookie)
    {
        let e = refusal(
            ErrorCode::PermissionDenied,
            StatusCode::FORBIDDEN,
            "This form's token is missing or wrong (was it sent from another site?): reload the page and try again",
        )
        .security_event("csrf");
        return finish_failed(&state, &r, &principal, rule.action.into(), e).await;
    }
    let path_params: HashMap<String, String> =
        match RawPathParams::from_request_parts(&mut parts, &state).await {
            Ok(raw) => raw
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            Err(_) => HashMap::new(),
        };

    let (allowed, resource) = match auth
        .authorizer
        .decide(&principal, rule, &params, &path_params)
        .await
    {
        Ok(d) => d,
        Err(e) => return finish_failed(&state, &r, &principal, String::new(), e).await,
    };
    if !allowed {
        state
            .audit_event(draft(
                &r,
                principal.actor(),
                "security.permission-denied",
                format!("{} {resource}", rule.action),
                Outcome::Denied,
            ))
            .await;
        let needed = match rule.access {
            Access::Resource(_, p) => format!("{p} permission"),
            Access::Capability(c) => format!("the {c:?} capability"),
            _ => "access".into(),
        };
        return refusal(
            ErrorCode::PermissionDenied,
            StatusCode::FORBIDDEN,
            format!(
                "Permission denied: user '{}' ({}) lacks {needed} on {}",
                principal.name,
                principal.role,
                if resource.is_empty() {
                    rule.action
                } else {
                    &resource
                }
            ),
        )
        .into_response();
    }

    let ctx = AuditContext::new(AuditDraft {
        actor: principal.actor(),
        action: rule.action.into(),
        resource: resource.clone(),
        request_id: r.request_id.clone(),
        outcome: Outcome::Success,
        body_sha256,
    });
    let mut scoped = state.clone();
    scoped.meta = state.meta.audited(ctx.clone());
    parts
        .extensions
        .insert(Scoped::new(scoped, Arc::new(principal.clone())));
    parts.extensions.insert(params);
    let response = next.run(Request::from_parts(parts, body)).await;

    if let Some(SecurityEvent(kind)) = response.extensions().get::<SecurityEvent>().copied() {
        state
            .audit_event(AuditDraft {
                action: format!("security.{kind}"),
                outcome: Outcome::Denied,
                ..ctx.draft().clone()
            })
            .await;
    } else if rule.writes && !ctx.recorded() {
        let outcome = if response.status().is_success() {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        state
            .audit_event(AuditDraft {
                outcome,
                ..ctx.draft().clone()
            })
            .await;
    }
    response
}

/// A request refused before its handler ran, for a reason of its own making (bad parameters,
/// a missing resource, a traversal attempt).
async fn finish_failed(
    state: &AppState,
    r: &Pending,
    who: &Principal,
    resource: String,
    e: ApiError,
) -> Response {
    let (action, outcome) = match e.security {
        Some(kind) => (format!("security.{kind}"), Outcome::Denied),
        None => (r.rule.action.to_owned(), Outcome::Failure),
    };
    if r.rule.writes || e.security.is_some() {
        state
            .audit_event(draft(
                r,
                who.actor(),
                &action,
                if resource.is_empty() {
                    r.rule.action.into()
                } else {
                    resource
                },
                outcome,
            ))
            .await;
    }
    e.into_response()
}
