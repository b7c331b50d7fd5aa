//! Bastion's identities and credentials, with no HTTP and no database: API tokens, argon2id
//! passwords, OIDC JWT verification, roles and permissions, and the back-off that slows
//! credential guessing. The server's authentication layer and the store compose these.

pub mod backoff;
pub mod error;
pub mod oidc;
pub mod password;
pub mod role;
pub mod token;

pub use error::AuthError;
pub use role::{Capability, Permission, ResourceKind, Role};
