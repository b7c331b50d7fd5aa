use thiserror::Error;

#[derive(Debug, Error)]
pub enum ServeError {
    /// The request is malformed or does not fit the model (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// An input guard rejected the request (HTTP 400, counted as a guard rejection).
    #[error("{message}")]
    Guarded {
        /// Which guard: `range`, `nan`, `category` or `ood`.
        guard: &'static str,
        message: String,
    },
    /// Over a model's rate or concurrency limit (HTTP 429).
    #[error("{0}")]
    Limited(String),
    /// The caller is blocked on this model (HTTP 403).
    #[error("{0}")]
    Blocked(String),
    /// The deployment changed meanwhile (HTTP 409).
    #[error("{0}")]
    Conflict(String),
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
