//! Typed errors that say what could not be attacked and why.

#[derive(Debug, thiserror::Error)]
pub enum RedteamError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Model(#[from] bastion_ml::MlError),
}

impl RedteamError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}

pub type RedteamResult<T> = Result<T, RedteamError>;
