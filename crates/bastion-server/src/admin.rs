//! Bastion's own HTTP API (`/api/bastion/v1`): the caller's identity and tokens, users,
//! grants and the audit log. Every handler calls the same store methods as the `bastion user
//! / token / grant / audit` commands; access is decided by the auth layer's rules.

use axum::Json;
use axum::Router;
use axum::extract::Path;
use axum::routing::{get, put};
use bastion_audit::proof::{ConsistencyBundle, InclusionBundle};
use bastion_auth::{Permission, ResourceKind, Role};
use bastion_core::{Error, time};
use bastion_store::meta::{AuditQuery, hash_password};
use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::error::{ApiError, ApiResult};
use crate::mlflow::to_json;
use crate::params::Params;
use crate::state::{AppState, Scoped};

type JsonResult = ApiResult<Json<Value>>;

pub fn routes() -> Router<AppState> {
    let v1 = "/api/bastion/v1";
    Router::new()
        .route("/api/bastion/openapi.json", get(openapi))
        .route(&format!("{v1}/whoami"), get(whoami))
        .route(
            &format!("{v1}/tokens"),
            get(list_own_tokens).post(create_own_token),
        )
        .route(
            &format!("{v1}/tokens/{{token_id}}"),
            axum::routing::delete(revoke_own_token),
        )
        .route(&format!("{v1}/users"), get(list_users).post(create_user))
        .route(
            &format!("{v1}/users/{{name}}"),
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route(
            &format!("{v1}/users/{{name}}/tokens"),
            get(list_user_tokens).post(create_user_token),
        )
        .route(
            &format!("{v1}/users/{{name}}/tokens/{{token_id}}"),
            axum::routing::delete(revoke_user_token),
        )
        .route(
            &format!("{v1}/grants"),
            put(set_grant).get(list_grants).delete(delete_grant),
        )
        .route(&format!("{v1}/audit/entries"), get(audit_entries))
        .route(&format!("{v1}/audit/verify"), get(audit_verify))
        .route(&format!("{v1}/audit/head"), get(audit_head))
        .route(
            &format!("{v1}/audit/inclusion/{{seq}}"),
            get(audit_inclusion),
        )
        .route(&format!("{v1}/audit/consistency"), get(audit_consistency))
}

fn parse<T: std::str::FromStr<Err = String>>(p: &Params, field: &str) -> Result<T, Error> {
    p.str(field)?
        .parse()
        .map_err(|e: String| Error::invalid(format!("{field}: {e}")))
}

fn opt_parse<T: std::str::FromStr<Err = String>>(
    p: &Params,
    field: &str,
) -> Result<Option<T>, Error> {
    p.opt_str(field)?
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|e: String| Error::invalid(format!("{field}: {e}")))
        })
        .transpose()
}

/// `expires_in_days` (1..=3650) to an absolute time; absent means the token never expires.
fn expiry(p: &Params) -> Result<Option<i64>, Error> {
    match p.opt_i64("expires_in_days")? {
        None => Ok(None),
        Some(d) if (1..=3650).contains(&d) => Ok(Some(time::now_ms() + d * 86_400_000)),
        Some(_) => Err(Error::invalid("expires_in_days must be between 1 and 3650")),
    }
}

/// The caller and how it authenticated.
#[utoipa::path(get, path = "/api/bastion/v1/whoami", tag = "identity",
    responses((status = 200, description = "The authenticated principal: name, role, groups, method")))]
async fn whoami(s: Scoped) -> JsonResult {
    Ok(Json(to_json(&*s.principal)))
}

/// The caller's own API tokens (never their secrets).
#[utoipa::path(get, path = "/api/bastion/v1/tokens", tag = "tokens",
    responses((status = 200, description = "`{tokens: [...]}`")))]
async fn list_own_tokens(s: Scoped) -> JsonResult {
    let tokens = s.meta.list_tokens(Some(&s.principal.name)).await?;
    Ok(Json(json!({ "tokens": to_json(&tokens) })))
}

async fn issue(s: &Scoped, user: &str, p: &Params) -> JsonResult {
    let description = p.opt_str("description")?.unwrap_or_default();
    let (secret, info) = s.meta.issue_token(user, &description, expiry(p)?).await?;
    Ok(Json(json!({ "token": secret, "info": to_json(&info) })))
}

/// Mints a token for the caller. The secret is in this response only.
#[utoipa::path(post, path = "/api/bastion/v1/tokens", tag = "tokens",
    request_body(content = Object, description = "`{description?, expires_in_days?}`"),
    responses((status = 200, description = "`{token, info}`: the secret, shown once")))]
async fn create_own_token(s: Scoped, p: Params) -> JsonResult {
    let user = s.principal.name.clone();
    issue(&s, &user, &p).await
}

/// Revokes one of the caller's tokens.
#[utoipa::path(delete, path = "/api/bastion/v1/tokens/{token_id}", tag = "tokens",
    params(("token_id" = String, Path)),
    responses((status = 200, description = "The revoked token"), (status = 404, description = "No such token of the caller")))]
async fn revoke_own_token(s: Scoped, Path(token_id): Path<String>) -> JsonResult {
    let token = s.meta.get_token(&token_id).await?;
    if token.user != s.principal.name {
        // Someone else's token: indistinguishable from none.
        return Err(Error::not_found(format!("No token with id '{token_id}'")).into());
    }
    revoke(&s, &token_id).await
}

async fn revoke(s: &Scoped, token_id: &str) -> JsonResult {
    let info = s.meta.revoke_token(token_id).await?;
    s.auth.credentials.invalidate();
    Ok(Json(json!({ "token": to_json(&info) })))
}

#[utoipa::path(get, path = "/api/bastion/v1/users", tag = "users",
    responses((status = 200, description = "`{users: [...]}`")))]
async fn list_users(s: Scoped) -> JsonResult {
    Ok(Json(
        json!({ "users": to_json(&s.meta.list_users().await?) }),
    ))
}

/// Creates a user with a role and, optionally, a password for HTTP Basic.
#[utoipa::path(post, path = "/api/bastion/v1/users", tag = "users",
    request_body(content = Object, description = "`{name, role, password?}`; roles: admin, maintainer, data-scientist, deployer, auditor, viewer"),
    responses((status = 200, description = "`{user}`"), (status = 400, description = "Invalid name, role or password")))]
async fn create_user(s: Scoped, p: Params) -> JsonResult {
    let name = p.str("name")?;
    let role: Role = parse(&p, "role")?;
    let hash = match p.opt_str("password")? {
        Some(pw) => Some(hash_password(pw).await?),
        None => None,
    };
    let user = s.meta.create_user(&name, role, hash.as_deref()).await?;
    Ok(Json(json!({ "user": to_json(&user) })))
}

#[utoipa::path(get, path = "/api/bastion/v1/users/{name}", tag = "users",
    params(("name" = String, Path)), responses((status = 200, description = "`{user}`")))]
async fn get_user(s: Scoped, Path(name): Path<String>) -> JsonResult {
    Ok(Json(
        json!({ "user": to_json(&s.meta.get_user(&name).await?) }),
    ))
}

/// Changes a user's role, password or disabled state.
#[utoipa::path(patch, path = "/api/bastion/v1/users/{name}", tag = "users",
    params(("name" = String, Path)),
    request_body(content = Object, description = "`{role?, password?, disabled?}`"),
    responses((status = 200, description = "`{user}`")))]
async fn update_user(s: Scoped, Path(name): Path<String>, p: Params) -> JsonResult {
    if let Some(role) = opt_parse::<Role>(&p, "role")? {
        s.meta.set_user_role(&name, role).await?;
    }
    if let Some(pw) = p.opt_str("password")? {
        let hash = hash_password(pw).await?;
        s.meta.set_user_password(&name, Some(&hash)).await?;
    }
    if let Some(disabled) = p.opt_bool("disabled")? {
        s.meta.set_user_disabled(&name, disabled).await?;
    }
    s.auth.credentials.invalidate();
    get_user(s, Path(name)).await
}

#[utoipa::path(delete, path = "/api/bastion/v1/users/{name}", tag = "users",
    params(("name" = String, Path)), responses((status = 200, description = "Deleted with its tokens and grants")))]
async fn delete_user(s: Scoped, Path(name): Path<String>) -> JsonResult {
    if name == s.principal.name {
        return Err(Error::invalid_state("You cannot delete your own account").into());
    }
    s.meta.delete_user(&name).await?;
    s.auth.credentials.invalidate();
    s.auth.authorizer.invalidate_grants();
    Ok(Json(json!({})))
}

#[utoipa::path(get, path = "/api/bastion/v1/users/{name}/tokens", tag = "tokens",
    params(("name" = String, Path)), responses((status = 200, description = "`{tokens: [...]}`")))]
async fn list_user_tokens(s: Scoped, Path(name): Path<String>) -> JsonResult {
    s.meta.get_user(&name).await?;
    let tokens = s.meta.list_tokens(Some(&name)).await?;
    Ok(Json(json!({ "tokens": to_json(&tokens) })))
}

#[utoipa::path(post, path = "/api/bastion/v1/users/{name}/tokens", tag = "tokens",
    params(("name" = String, Path)),
    request_body(content = Object, description = "`{description?, expires_in_days?}`"),
    responses((status = 200, description = "`{token, info}`: the secret, shown once")))]
async fn create_user_token(s: Scoped, Path(name): Path<String>, p: Params) -> JsonResult {
    issue(&s, &name, &p).await
}

#[utoipa::path(delete, path = "/api/bastion/v1/users/{name}/tokens/{token_id}", tag = "tokens",
    params(("name" = String, Path), ("token_id" = String, Path)),
    responses((status = 200, description = "The revoked token")))]
async fn revoke_user_token(
    s: Scoped,
    Path((name, token_id)): Path<(String, String)>,
) -> JsonResult {
    let token = s.meta.get_token(&token_id).await?;
    if token.user != name {
        return Err(Error::not_found(format!("User '{name}' has no token '{token_id}'")).into());
    }
    revoke(&s, &token_id).await
}

/// Grants a user (`user:<name>`) or group (`group:<name>`) a permission on one experiment or
/// registered model (`*`: all of them), above what their role gives.
#[utoipa::path(put, path = "/api/bastion/v1/grants", tag = "grants",
    request_body(content = Object, description = "`{principal, resource_kind: experiment|registered_model|dataset, resource, permission: READ|INVOKE|EDIT|DEPLOY|MANAGE}`"),
    responses((status = 200, description = "`{grant}`")))]
async fn set_grant(s: Scoped, p: Params) -> JsonResult {
    let kind: ResourceKind = parse(&p, "resource_kind")?;
    let permission: Permission = parse(&p, "permission")?;
    let grant = s
        .meta
        .set_grant(&p.str("principal")?, kind, &p.str("resource")?, permission)
        .await?;
    s.auth.authorizer.invalidate_grants();
    Ok(Json(json!({ "grant": to_json(&grant) })))
}

#[utoipa::path(get, path = "/api/bastion/v1/grants", tag = "grants",
    params(("principal" = Option<String>, Query)), responses((status = 200, description = "`{grants: [...]}`")))]
async fn list_grants(s: Scoped, p: Params) -> JsonResult {
    let grants = s
        .meta
        .list_grants(p.opt_str("principal")?.as_deref())
        .await?;
    Ok(Json(json!({ "grants": to_json(&grants) })))
}

#[utoipa::path(delete, path = "/api/bastion/v1/grants", tag = "grants",
    request_body(content = Object, description = "`{principal, resource_kind, resource}`"),
    responses((status = 200, description = "Removed")))]
async fn delete_grant(s: Scoped, p: Params) -> JsonResult {
    let kind: ResourceKind = parse(&p, "resource_kind")?;
    s.meta
        .delete_grant(&p.str("principal")?, kind, &p.str("resource")?)
        .await?;
    s.auth.authorizer.invalidate_grants();
    Ok(Json(json!({})))
}

/// Audit entries, oldest first, filtered by actor, resource and time.
#[utoipa::path(get, path = "/api/bastion/v1/audit/entries", tag = "audit",
    params(("actor" = Option<String>, Query), ("resource" = Option<String>, Query),
           ("since_ms" = Option<i64>, Query), ("until_ms" = Option<i64>, Query),
           ("after_seq" = Option<i64>, Query), ("limit" = Option<i64>, Query, description = "1..=10000, default 1000")),
    responses((status = 200, description = "`{entries: [...]}`")))]
async fn audit_entries(s: Scoped, p: Params) -> JsonResult {
    let limit = p.opt_i64("limit")?.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(Error::invalid("limit must be between 1 and 10000").into());
    }
    let after = p.opt_i64("after_seq")?;
    let entries = s
        .meta
        .audit_entries(&AuditQuery {
            actor: p.opt_str("actor")?,
            resource: p.opt_str("resource")?,
            since_ms: p.opt_i64("since_ms")?,
            until_ms: p.opt_i64("until_ms")?,
            after_seq: after.and_then(|a| u64::try_from(a).ok()),
            limit,
        })
        .await?;
    Ok(Json(json!({ "entries": to_json(&entries) })))
}

fn audit_key(s: &Scoped) -> Result<&ed25519_dalek::SigningKey, ApiError> {
    s.audit_key
        .as_deref()
        .ok_or_else(|| Error::invalid_state("This server holds no audit key").into())
}

/// Recomputes every entry's hash, the chain and each signed tree head.
#[utoipa::path(get, path = "/api/bastion/v1/audit/verify", tag = "audit",
    responses((status = 200, description = "`{ok: true, entries, tree_heads}` or `{ok: false, first_bad_seq, problem}`")))]
async fn audit_verify(s: Scoped) -> JsonResult {
    let key = audit_key(&s)?.verifying_key();
    Ok(Json(match s.meta.verify_audit(&key).await? {
        Ok(report) => json!({ "ok": true, "report": to_json(&report) }),
        Err(t) => {
            json!({ "ok": false, "first_bad_seq": t.first_bad_seq(), "problem": t.to_string() })
        }
    }))
}

/// Signs a tree head over the current log (if it grew) and returns the latest one.
#[utoipa::path(get, path = "/api/bastion/v1/audit/head", tag = "audit",
    responses((status = 200, description = "`{tree_head, public_key}`")))]
async fn audit_head(s: Scoped) -> JsonResult {
    let key = audit_key(&s)?;
    let head = s.state.meta.sign_audit_head(key).await?;
    Ok(Json(json!({
        "tree_head": to_json(&head),
        "public_key": hex::encode(key.verifying_key().as_bytes()),
    })))
}

/// An inclusion proof for one entry against the latest signed tree head covering it.
#[utoipa::path(get, path = "/api/bastion/v1/audit/inclusion/{seq}", tag = "audit",
    params(("seq" = u64, Path)), responses((status = 200, description = "An inclusion bundle, verifiable offline")))]
async fn audit_inclusion(s: Scoped, Path(seq): Path<String>) -> JsonResult {
    let seq: u64 = seq.parse().map_err(|_| {
        Error::invalid(format!(
            "seq must be a non-negative integer, not '{}'",
            bastion_core::limits::truncate(&seq, 40)
        ))
    })?;
    let (entry, head, proof) = s.meta.audit_inclusion_proof(seq).await?;
    Ok(Json(to_json(&InclusionBundle::new(entry, head, proof))))
}

/// A consistency proof between two signed tree heads, by size.
#[utoipa::path(get, path = "/api/bastion/v1/audit/consistency", tag = "audit",
    params(("from" = u64, Query), ("to" = u64, Query)),
    responses((status = 200, description = "A consistency bundle, verifiable offline")))]
async fn audit_consistency(s: Scoped, p: Params) -> JsonResult {
    let from = u64::try_from(p.i64("from")?).map_err(|_| Error::invalid("from must be >= 0"))?;
    let to = u64::try_from(p.i64("to")?).map_err(|_| Error::invalid("to must be >= 0"))?;
    let (a, b, proof) = s.meta.audit_consistency_proof(from, to).await?;
    Ok(Json(to_json(&ConsistencyBundle::new(a, b, proof))))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Bastion API", description = "Bastion's own API: identities, tokens, grants, the audit log and evidence (model-file scans, quarantine, signatures and provenance), and versioned datasets with their checks. Authenticate with `Authorization: Bearer <token>` (an API token or an OIDC JWT), HTTP Basic, or, when the server runs with a client CA, a client certificate whose subject CN is the user. The MLflow-compatible API lives under /api/2.0/mlflow."),
    paths(whoami, list_own_tokens, create_own_token, revoke_own_token, list_users, create_user,
          get_user, update_user, delete_user, list_user_tokens, create_user_token,
          revoke_user_token, set_grant, list_grants, delete_grant, audit_entries, audit_verify,
          audit_head, audit_inclusion, audit_consistency,
          crate::evidence::artifact_evidence, crate::evidence::version_evidence,
          crate::evidence::scan_version, crate::evidence::release_version,
          crate::evidence::version_attestations, crate::evidence::verify_version,
          crate::evidence::gate_version,
          crate::evidence::signing_key,
          crate::datasets::list, crate::datasets::add, crate::datasets::show,
          crate::datasets::download, crate::datasets::profile, crate::datasets::validate,
          crate::datasets::suggest, crate::datasets::pii, crate::datasets::redacted,
          crate::datasets::poison, crate::datasets::diff,
          crate::deployments::list, crate::deployments::show, crate::deployments::deploy,
          crate::deployments::promote, crate::deployments::rollback, crate::deployments::events,
          crate::incidents::list, crate::incidents::show, crate::incidents::acknowledge,
          crate::incidents::resolve, crate::feedback::record),
    modifiers(&Security),
    security(("bearer" = []), ("basic" = []), ("client_certificate" = []))
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
        components.add_security_scheme(
            "client_certificate",
            SecurityScheme::MutualTls {
                description: Some(
                    "A certificate issued by the server's client CA; its subject CN names the user"
                        .into(),
                ),
                extensions: None,
            },
        );
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
