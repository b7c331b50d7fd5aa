//! Typed errors that say what was wrong and where (which metric, row, class, column).

#[derive(Debug, thiserror::Error)]
pub enum MlError {
    #[error("{0}")]
    Invalid(String),
}

impl MlError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}

pub type MlResult<T> = Result<T, MlError>;
