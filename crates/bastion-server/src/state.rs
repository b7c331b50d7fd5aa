//! What every handler can reach.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use bastion_core::ErrorCode;
use bastion_store::{BlobStore, MetaStore};
use ed25519_dalek::SigningKey;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::Principal;
use crate::auth::credentials::Authenticator;
use crate::auth::limits::{RateLimit, RateLimits};
use crate::auth::policy::Authorizer;
use crate::error::ApiError;

/// Server settings that handlers and layers read.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    /// Host header values accepted (host part, any port). `*` accepts any.
    pub allowed_hosts: Vec<String>,
    /// Origins allowed by CORS; empty means CORS is off.
    pub cors_origins: Vec<String>,
    pub max_json_bytes: usize,
    pub max_artifact_bytes: u64,
    /// Largest inference request body (JSON header and binary tensors together).
    pub max_infer_bytes: usize,
    /// How long an inference request's body may take to arrive: a slow (or stalled) client
    /// gets 408 instead of holding its model's concurrency place.
    pub infer_body_timeout: std::time::Duration,
    /// No authentication: every caller acts as an admin. Only `--insecure` sets it.
    pub insecure: bool,
    pub rate_limit_per_ip: Option<RateLimit>,
    pub rate_limit_per_principal: Option<RateLimit>,
    /// How often the server signs a new audit tree head (when the log has grown).
    pub audit_sign_interval: std::time::Duration,
    /// Putting a version in production (the `production` alias or the Production stage)
    /// needs a passing gate decision on its exact digest.
    pub production_gate: bool,
    /// When set, the decision must have applied this policy (SHA-256 of its file).
    pub production_policy: Option<bastion_core::Digest>,
    /// The dashboard's cookies are sent over HTTPS only (set when serving TLS).
    pub secure_cookies: bool,
}

impl ServerConfig {
    pub fn local(bind: SocketAddr) -> Self {
        Self {
            bind,
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            max_json_bytes: crate::params::DEFAULT_MAX_JSON_BYTES,
            max_artifact_bytes: 5 * 1024 * 1024 * 1024,
            max_infer_bytes: 32 << 20,
            infer_body_timeout: std::time::Duration::from_secs(30),
            insecure: false,
            rate_limit_per_ip: Some(RateLimit {
                per_second: 2000,
                burst: 4000,
            }),
            rate_limit_per_principal: Some(RateLimit {
                per_second: 1000,
                burst: 2000,
            }),
            audit_sign_interval: std::time::Duration::from_secs(60),
            production_gate: true,
            production_policy: None,
            secure_cookies: false,
        }
    }
}

/// Authentication, authorization and rate limiting state, shared by all requests.
pub struct AuthState {
    pub credentials: Authenticator,
    pub authorizer: Authorizer,
    pub limits: RateLimits,
}

#[derive(Clone)]
pub struct AppState {
    pub meta: MetaStore,
    pub blobs: Arc<dyn BlobStore>,
    pub config: Arc<ServerConfig>,
    pub metrics: PrometheusHandle,
    pub auth: Arc<AuthState>,
    /// Signs audit tree heads; `None` leaves signing to `bastion audit`.
    pub audit_key: Option<Arc<SigningKey>>,
    /// Scans uploaded model files and records the results as evidence.
    pub scans: Arc<bastion_evidence::Scans>,
    /// Signs registered model versions and verifies them.
    pub attestor: Arc<bastion_evidence::Attestor>,
    pub datasets: Arc<DatasetSettings>,
    /// The model versions being served, admitted on first use.
    pub models: Arc<bastion_serve::Models>,
}

/// How dataset blobs are stored: encrypted when the home has a dataset key, and where
/// uploads and decrypted copies are staged.
pub struct DatasetSettings {
    pub cipher: Option<Arc<bastion_store::crypt::DatasetCipher>>,
    pub tmp: std::path::PathBuf,
}

impl AppState {
    pub fn new(
        meta: MetaStore,
        blobs: Arc<dyn BlobStore>,
        config: ServerConfig,
        metrics: PrometheusHandle,
        oidc: Option<crate::auth::credentials::OidcConfig>,
        audit_key: Option<Arc<SigningKey>>,
        attestor: Arc<bastion_evidence::Attestor>,
    ) -> Self {
        let auth = AuthState {
            credentials: Authenticator::new(meta.clone(), oidc, Default::default()),
            authorizer: Authorizer::new(meta.clone()),
            limits: RateLimits::new(config.rate_limit_per_ip, config.rate_limit_per_principal),
        };
        let scans = Arc::new(bastion_evidence::Scans::new(bastion_scan::Policy::builtin()));
        let models = Arc::new(bastion_serve::Models::new(
            meta.clone(),
            blobs.clone(),
            scans.clone(),
            attestor.clone(),
            bastion_serve::ServeConfig::new(std::env::temp_dir().join("bastion-serve")),
        ));
        Self {
            meta,
            blobs,
            config: Arc::new(config),
            metrics,
            auth: Arc::new(auth),
            audit_key,
            scans,
            attestor,
            models,
            datasets: Arc::new(DatasetSettings {
                cipher: None,
                tmp: std::env::temp_dir().join("bastion"),
            }),
        }
    }

    /// Stages dataset uploads in `tmp` (the home's) and encrypts dataset blobs with `cipher`.
    pub fn with_datasets(
        mut self,
        cipher: Option<Arc<bastion_store::crypt::DatasetCipher>>,
        tmp: std::path::PathBuf,
    ) -> Self {
        self.datasets = Arc::new(DatasetSettings { cipher, tmp });
        self
    }

    /// Serves models with `config` (where packages are staged, limits, re-check interval).
    /// Dataset blobs (guard references) are decrypted with the home's dataset key unless
    /// `config` names another.
    pub fn with_serving(mut self, mut config: bastion_serve::ServeConfig) -> Self {
        if config.dataset_cipher.is_none() {
            config.dataset_cipher = self.datasets.cipher.clone();
        }
        self.models = Arc::new(bastion_serve::Models::new(
            self.meta.clone(),
            self.blobs.clone(),
            self.scans.clone(),
            self.attestor.clone(),
            config,
        ));
        self
    }
}

/// The state of one authorized request: its `meta` records every change in the audit log as
/// this request, and `principal` is its caller. Only the auth layer creates it, so a handler
/// that takes it cannot run unauthorized.
#[derive(Clone)]
pub struct Scoped {
    pub state: AppState,
    pub principal: Arc<Principal>,
}

impl Scoped {
    pub fn new(state: AppState, principal: Arc<Principal>) -> Self {
        Self { state, principal }
    }
}

impl std::ops::Deref for Scoped {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.state
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Scoped {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Scoped>().cloned().ok_or_else(|| {
            tracing::error!(path = %parts.uri.path(), "handler reached without the auth layer");
            ApiError::new(ErrorCode::PermissionDenied, "Permission denied")
                .with_status(axum::http::StatusCode::FORBIDDEN)
        })
    }
}
