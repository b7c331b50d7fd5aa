use thiserror::Error;

#[derive(Debug, Error)]
pub enum NatsError {
    #[error("invalid NATS setting: {0}")]
    Setting(String),
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("JetStream {what}: {reason}")]
    JetStream { what: &'static str, reason: String },
}

impl NatsError {
    pub(crate) fn jetstream(what: &'static str, e: impl std::fmt::Display) -> Self {
        Self::JetStream {
            what,
            reason: e.to_string(),
        }
    }
}

pub type NatsResult<T> = Result<T, NatsError>;
