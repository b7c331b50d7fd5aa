use thiserror::Error;

#[derive(Debug, Error)]
pub enum ServeError {
    /// The request is malformed or does not fit the model (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// No such model, version or alias (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The version exists but may not be served; the reasons say why (HTTP 403).
    #[error("model {model} version {version} is not admitted for serving: {}", reasons.join("; "))]
    Refused {
        model: String,
        version: String,
        reasons: Vec<String>,
    },
    /// The model failed on valid input (HTTP 500, and counted as an error of the model).
    #[error("the model failed: {0}")]
    Model(String),
    #[error(transparent)]
    Store(#[from] bastion_store::StoreError),
    #[error(transparent)]
    Evidence(#[from] bastion_evidence::EvidenceError),
    #[error("loading the model: {0}")]
    Load(String),
}
