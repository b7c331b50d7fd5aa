//! Who is calling: API tokens and OIDC JWTs as `Authorization: Bearer`, users' passwords as
//! `Authorization: Basic`. Verified credentials are cached briefly so that a client sending
//! its password with every request pays for argon2 once a minute, not per request; revoking a
//! token or disabling a user through this server takes effect at once, through another
//! process within [`CACHE_TTL`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bastion_auth::backoff::{BackoffPolicy, FailureTracker};
use bastion_auth::oidc::{OidcSettings, OidcVerifier};
use bastion_auth::{AuthError, Role, password, token};
use bastion_core::time;
use bastion_store::MetaStore;
use sha2::{Digest, Sha256};

use super::{AuthMethod, Principal};
use crate::tls::ClientCert;

/// How long a verified credential is trusted without asking the store again.
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// `Authorization` headers longer than this are refused unread.
pub const MAX_AUTHORIZATION_BYTES: usize = 16 * 1024;
const CACHE_CAPACITY: usize = 10_000;

/// OIDC as configured: the verifier (its JWKS may be refreshed) and how identities map to
/// roles.
pub struct OidcConfig {
    pub verifier: RwLock<Arc<OidcVerifier>>,
    pub settings: OidcSettings,
    /// Groups that confer a role, first match wins, for users Bastion does not know.
    pub group_roles: Vec<(String, Role)>,
    /// The role of an unknown user in no mapped group; `None` refuses them.
    pub default_role: Option<Role>,
}

/// Why a request was not let in.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// Who the request claimed to be, for the audit log (never the secret).
    pub claimed: String,
}

impl Refusal {
    /// The store could not be asked: a server fault, never a verdict on the credential.
    fn unavailable(claimed: &str) -> Self {
        Self {
            status: 503,
            message: "Authentication is unavailable; retry shortly".into(),
            retry_after: Some(Duration::from_secs(1)),
            claimed: claimed.into(),
        }
    }

    fn unauthenticated(message: impl Into<String>, claimed: impl Into<String>) -> Self {
        Self {
            status: 401,
            message: message.into(),
            retry_after: None,
            claimed: claimed.into(),
        }
    }
}

pub struct Authenticator {
    meta: MetaStore,
    oidc: Option<OidcConfig>,
    verified: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    failures: Mutex<FailureTracker>,
    last_used: Mutex<HashMap<String, i64>>,
}

fn cache_key(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

fn auth_error(e: &AuthError, claimed: String) -> Refusal {
    Refusal::unauthenticated(format!("Authentication failed: {e}"), claimed)
}

impl Authenticator {
    pub fn new(meta: MetaStore, oidc: Option<OidcConfig>, backoff: BackoffPolicy) -> Self {
        Self {
            meta,
            oidc,
            verified: Mutex::new(HashMap::new()),
            failures: Mutex::new(FailureTracker::new(backoff, 100_000)),
            last_used: Mutex::new(HashMap::new()),
        }
    }

    pub fn oidc(&self) -> Option<&OidcConfig> {
        self.oidc.as_ref()
    }

    /// Forgets every cached credential (after a revocation, a role change, a disabled user).
    pub fn invalidate(&self) {
        if let Ok(mut v) = self.verified.lock() {
            v.clear();
        }
    }

    /// Token ids used since the last call, with when, for the store's last-used column.
    pub fn take_last_used(&self) -> Vec<(String, i64)> {
        self.last_used
            .lock()
            .map(|mut m| m.drain().collect())
            .unwrap_or_default()
    }

    /// An `Authorization` header, when present, is the credential; otherwise a client
    /// certificate verified by the TLS handshake is; otherwise the dashboard's session cookie
    /// (`session`, which the caller passes only where a cookie may act).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        ip: IpAddr,
        client_cert: Option<&ClientCert>,
        session: Option<&str>,
    ) -> Result<Principal, Refusal> {
        let ip_key = format!("ip:{ip}");
        let result = match (headers.get(AUTHORIZATION), client_cert, session) {
            (Some(value), _, _) => self.authorization(value, &ip_key).await,
            (None, Some(cert), _) => self.certificate(cert).await,
            (None, None, Some(cookie)) => self.session(cookie).await,
            (None, None, None) => {
                return Err(Refusal::unauthenticated(
                    "Authentication required: send an API token (Authorization: Bearer) or a user's password (Basic)",
                    "anonymous",
                ));
            }
        };
        self.settle(&result, &ip_key);
        result
    }

    /// A user's name and password from the dashboard's login form, throttled exactly as
    /// Basic credentials are.
    pub async fn login(&self, user: &str, pass: &str, ip: IpAddr) -> Result<Principal, Refusal> {
        let ip_key = format!("ip:{ip}");
        let result = if bastion_store::meta::validate_name("user", user).is_err() {
            Err(Refusal::unauthenticated(
                "Authentication failed: invalid credentials",
                "anonymous",
            ))
        } else {
            self.password(user, pass, &ip_key).await
        };
        self.settle(&result, &ip_key);
        result
    }

    /// Counts a failure against the address (and the user it named), clears them on
    /// success, and notes when a token was used.
    fn settle(&self, result: &Result<Principal, Refusal>, ip_key: &str) {
        match result {
            Ok(p) => {
                if let Ok(mut f) = self.failures.lock() {
                    f.succeed(ip_key);
                    f.succeed(&format!("user:{}", p.name));
                }
                if let AuthMethod::Token { token_id } | AuthMethod::Session { token_id } = &p.method
                    && let Ok(mut m) = self.last_used.lock()
                {
                    m.insert(token_id.clone(), time::now_ms());
                }
            }
            Err(r) if r.status == 401 => {
                let user_key = r.claimed.strip_prefix("user:").map(|u| format!("user:{u}"));
                match user_key {
                    Some(k) => self.fail(&[ip_key, &k]),
                    None => self.fail(&[ip_key]),
                }
            }
            Err(_) => {}
        }
    }

    /// The dashboard's session cookie: a token minted at login, refused once revoked
    /// (logout) or expired.
    async fn session(&self, cookie: &str) -> Result<Principal, Refusal> {
        let id = token::parse(cookie).map_err(|e| auth_error(&e, "session".to_string()))?;
        let mut p = self.api_token(cookie, id).await?;
        if let AuthMethod::Token { token_id } = p.method {
            p.method = AuthMethod::Session { token_id };
        }
        Ok(p)
    }

    /// The credential in an `Authorization` header (failures are counted by the caller).
    async fn authorization(&self, value: &HeaderValue, ip_key: &str) -> Result<Principal, Refusal> {
        if value.len() > MAX_AUTHORIZATION_BYTES {
            return Err(Refusal::unauthenticated(
                "Authorization header too large",
                "anonymous",
            ));
        }
        let Ok(value) = value.to_str() else {
            return Err(Refusal::unauthenticated(
                "Authorization header is not ASCII",
                "anonymous",
            ));
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            self.bearer(rest).await
        } else if scheme.eq_ignore_ascii_case("basic") {
            self.basic(rest, ip_key).await
        } else {
            Err(Refusal::unauthenticated(
                "Unsupported authorization scheme: use Bearer or Basic",
                "anonymous",
            ))
        }
    }

    fn check_lockout(&self, key: &str, claimed: &str) -> Result<(), Refusal> {
        let locked = self
            .failures
            .lock()
            .ok()
            .and_then(|f| f.locked_for(key, Instant::now()));
        match locked {
            Some(wait) => Err(Refusal {
                status: 429,
                message: format!(
                    "Too many failed authentication attempts; retry in {} s",
                    wait.as_secs().max(1)
                ),
                retry_after: Some(wait),
                claimed: claimed.into(),
            }),
            None => Ok(()),
        }
    }

    fn fail(&self, keys: &[&str]) {
        if let Ok(mut f) = self.failures.lock() {
            let now = Instant::now();
            for k in keys {
                f.fail(k, now);
            }
        }
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Principal> {
        let mut v = self.verified.lock().ok()?;
        match v.get(key) {
            Some((p, at)) if at.elapsed() < CACHE_TTL => Some(p.clone()),
            Some(_) => {
                v.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember(&self, key: [u8; 32], p: &Principal) {
        if let Ok(mut v) = self.verified.lock() {
            if v.len() >= CACHE_CAPACITY {
                v.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
                if v.len() >= CACHE_CAPACITY {
                    v.clear();
                }
            }
            v.insert(key, (p.clone(), Instant::now()));
        }
    }

    async fn bearer(&self, credential: &str) -> Result<Principal, Refusal> {
        if credential.is_empty() {
            return Err(Refusal::unauthenticated("Empty bearer token", "anonymous"));
        }
        match token::parse(credential) {
            Ok(id) => self.api_token(credential, id).await,
            Err(_) if self.oidc.is_some() && credential.matches('.').count() == 2 => {
                self.jwt(credential).await
            }
            Err(e) => Err(auth_error(&e, "anonymous".to_string())),
        }
    }

    async fn api_token(&self, credential: &str, id: &str) -> Result<Principal, Refusal> {
        let claimed = format!("token {id}");
        let key = cache_key(&[b"token", credential.as_bytes()]);
        if let Some(p) = self.cached(&key) {
            return Ok(p);
        }
        let hash = token::hash(credential);
        let found = self
            .meta
            .token_by_hash(&hash.0)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "token lookup failed");
                Refusal::unavailable(&claimed)
            })?
            .filter(|o| o.token.token_id == id)
            .ok_or_else(|| auth_error(&AuthError::Invalid, claimed.clone()))?;
        if found.token.revoked_time.is_some() {
            return Err(auth_error(&AuthError::Revoked, claimed));
        }
        if found
            .token
            .expires_time
            .is_some_and(|e| e <= time::now_ms())
        {
            return Err(auth_error(&AuthError::Expired, claimed));
        }
        if found.user.disabled {
            return Err(auth_error(&AuthError::Disabled, claimed));
        }
        let p = Principal {
            name: found.user.name,
            role: found.user.role,
            groups: Vec::new(),
            method: AuthMethod::Token {
                token_id: found.token.token_id,
            },
        };
        // A token that expires within the cache's lifetime is not cached.
        let expires_soon = found
            .token
            .expires_time
            .is_some_and(|e| e <= time::now_ms() + CACHE_TTL.as_millis() as i64);
        if !expires_soon {
            self.remember(key, &p);
        }
        Ok(p)
    }

    /// Passwords are the guessable credential, so they alone are throttled: while the user or
    /// the client address is locked out, no password is even checked. (Tokens carry 256
    /// random bits and JWTs a signature; refusing them after failures from a shared address
    /// would only lock out its honest users.)
    async fn basic(&self, encoded: &str, ip_key: &str) -> Result<Principal, Refusal> {
        let malformed = || Refusal::unauthenticated("Malformed Basic credentials", "anonymous");
        let decoded = STANDARD.decode(encoded).map_err(|_| malformed())?;
        let text = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (user, pass) = text.split_once(':').ok_or_else(malformed)?;
        if bastion_store::meta::validate_name("user", user).is_err() {
            return Err(malformed());
        }
        self.password(user, pass, ip_key).await
    }

    async fn password(&self, user: &str, pass: &str, ip_key: &str) -> Result<Principal, Refusal> {
        let claimed = format!("user:{user}");
        self.check_lockout(&claimed, &claimed)?;
        self.check_lockout(ip_key, &claimed)?;
        let key = cache_key(&[b"basic", user.as_bytes(), pass.as_bytes()]);
        if let Some(p) = self.cached(&key) {
            return Ok(p);
        }
        let creds = self.meta.user_credentials(user).await.map_err(|e| {
            tracing::error!(error = %e, "user lookup failed");
            Refusal::unavailable(&claimed)
        })?;
        let pass = pass.to_owned();
        let verified = match creds {
            Some(c) => {
                let phc = c.password_hash.clone();
                let ok = tokio::task::spawn_blocking(move || {
                    phc.is_some_and(|h| password::verify(&pass, &h))
                })
                .await
                .unwrap_or(false);
                ok.then_some(c.user)
            }
            None => {
                let _ = tokio::task::spawn_blocking(move || password::verify_dummy(&pass)).await;
                None
            }
        };
        let user = verified.ok_or_else(|| auth_error(&AuthError::Invalid, claimed.clone()))?;
        if user.disabled {
            return Err(auth_error(&AuthError::Disabled, claimed));
        }
        let p = Principal {
            name: user.name,
            role: user.role,
            groups: Vec::new(),
            method: AuthMethod::Basic,
        };
        self.remember(key, &p);
        Ok(p)
    }

    /// A client certificate the handshake verified: its subject's common name is the user.
    /// Failures are not throttled: the CA vouched for the certificate, so there is nothing
    /// to guess.
    async fn certificate(&self, cert: &ClientCert) -> Result<Principal, Refusal> {
        let claimed = format!(
            "cert:{}",
            bastion_core::limits::truncate(&cert.subject, 200)
        );
        let Some(name) = cert.common_name.as_deref() else {
            return Err(Refusal::unauthenticated(
                "Client certificate has no subject common name (CN) to name a Bastion user",
                claimed,
            ));
        };
        if bastion_store::meta::validate_name("user", name).is_err() {
            return Err(Refusal::unauthenticated(
                "Client certificate common name is not a valid Bastion user name",
                claimed,
            ));
        }
        let key = cache_key(&[b"cert", cert.subject.as_bytes()]);
        if let Some(p) = self.cached(&key) {
            return Ok(p);
        }
        let user = self
            .meta
            .user_credentials(name)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "user lookup failed");
                Refusal::unavailable(&claimed)
            })?
            .ok_or_else(|| {
                Refusal::unauthenticated(
                    format!(
                        "Authentication failed: the client certificate names '{name}', who has no Bastion account"
                    ),
                    claimed.clone(),
                )
            })?
            .user;
        if user.disabled {
            return Err(auth_error(&AuthError::Disabled, claimed));
        }
        let p = Principal {
            name: user.name,
            role: user.role,
            groups: Vec::new(),
            method: AuthMethod::Certificate {
                subject: cert.subject.clone(),
            },
        };
        self.remember(key, &p);
        Ok(p)
    }

    async fn jwt(&self, credential: &str) -> Result<Principal, Refusal> {
        let Some(oidc) = &self.oidc else {
            return Err(auth_error(&AuthError::Invalid, "anonymous".into()));
        };
        // Not cached: a JWT's own expiry must hold to the second, and verifying costs ~0.1 ms.
        let verifier = oidc
            .verifier
            .read()
            .map(|v| v.clone())
            .map_err(|_| auth_error(&AuthError::Invalid, "anonymous".into()))?;
        let identity = verifier
            .verify(credential)
            .map_err(|e| auth_error(&e, "oidc".into()))?;
        let claimed = format!("user:{}", identity.user);
        let known = self
            .meta
            .user_credentials(&identity.user)
            .await
            .map_err(|e| {
                // Not "unknown user": that would hand a disabled account its group's role.
                tracing::error!(error = %e, "user lookup failed");
                Refusal::unavailable(&claimed)
            })?;
        let role = match known {
            Some(c) if c.user.disabled => return Err(auth_error(&AuthError::Disabled, claimed)),
            Some(c) => c.user.role,
            None => oidc
                .group_roles
                .iter()
                .find(|(g, _)| identity.groups.contains(g))
                .map(|(_, r)| *r)
                .or(oidc.default_role)
                .ok_or_else(|| {
                    Refusal::unauthenticated(
                        format!(
                            "Authentication failed: '{}' has no Bastion account and no mapped group",
                            identity.user
                        ),
                        claimed.clone(),
                    )
                })?,
        };
        let p = Principal {
            name: identity.user,
            role,
            groups: identity.groups,
            method: AuthMethod::Oidc,
        };
        Ok(p)
    }
}
