//! Why a credential was refused. Messages name the problem, never the credential.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("malformed credentials: {0}")]
    Malformed(&'static str),
    #[error("unknown or invalid credentials")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the token has been revoked")]
    Revoked,
    #[error("the account is disabled")]
    Disabled,
    #[error("token rejected: {0}")]
    Jwt(String),
    #[error("invalid password: {0}")]
    WeakPassword(&'static str),
    #[error("password hashing failed")]
    Hashing,
    #[error("invalid JWKS: {0}")]
    Jwks(String),
}
