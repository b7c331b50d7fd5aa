//! Store errors. Domain errors pass through unchanged; database and IO failures keep their
//! cause for the logs but are never shown verbatim to a client (they may carry SQL or paths).

use bastion_core::Error as DomainError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("blob store: {0}")]
    Blob(#[from] crate::blob::BlobError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("unsupported backend store URI '{0}': use sqlite:///path or postgresql://...")]
    UnsupportedUri(String),
}

impl StoreError {
    /// The domain error, if this is one (a client's mistake rather than a server fault).
    pub fn domain(&self) -> Option<&DomainError> {
        match self {
            Self::Domain(e) => Some(e),
            Self::Blob(crate::blob::BlobError::Domain(e)) => Some(e),
            _ => None,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
