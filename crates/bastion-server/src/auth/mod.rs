//! Zero-trust access: every request is authenticated ([`credentials`]), rate-limited
//! ([`limits`]), authorized against the route's rule ([`policy`]) and recorded in the audit
//! log — all in one tower layer ([`layer`]), so no handler checks anything itself.

pub mod credentials;
pub mod layer;
pub mod limits;
pub mod policy;

use bastion_auth::{Capability, Permission, ResourceKind, Role};
use serde::Serialize;

/// How a principal proved who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum AuthMethod {
    Token {
        token_id: String,
    },
    Basic,
    /// The dashboard's session cookie (a token minted at login).
    Session {
        token_id: String,
    },
    Oidc,
    /// A client certificate verified by the TLS handshake (mutual TLS).
    Certificate {
        subject: String,
    },
    /// `--insecure`: nobody was asked.
    Insecure,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub groups: Vec<String>,
    #[serde(flatten)]
    pub method: AuthMethod,
}

impl Principal {
    pub fn insecure() -> Self {
        Self {
            name: "anonymous".into(),
            role: Role::Admin,
            groups: Vec::new(),
            method: AuthMethod::Insecure,
        }
    }

    /// The audit log's name for this caller.
    pub fn actor(&self) -> String {
        match &self.method {
            AuthMethod::Token { token_id } => format!("user:{} (token {token_id})", self.name),
            AuthMethod::Basic => format!("user:{} (password)", self.name),
            AuthMethod::Session { token_id } => {
                format!("user:{} (web session {token_id})", self.name)
            }
            AuthMethod::Oidc => format!("user:{} (oidc)", self.name),
            AuthMethod::Certificate { .. } => format!("user:{} (client certificate)", self.name),
            AuthMethod::Insecure => "anonymous (insecure mode)".into(),
        }
    }

    /// The grant principals this caller acts as.
    pub fn grant_principals(&self) -> Vec<String> {
        let mut out = vec![format!("user:{}", self.name)];
        out.extend(self.groups.iter().map(|g| format!("group:{g}")));
        out
    }

    pub fn has(&self, c: Capability) -> bool {
        self.role.has(c)
    }

    pub fn role_permission(&self, kind: ResourceKind) -> Permission {
        self.role.default_permission(kind)
    }
}
