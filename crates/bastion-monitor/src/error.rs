use thiserror::Error;

#[derive(Debug, Error)]
pub enum MonitorError {
    /// A rules file that cannot be used, with the line it is on.
    #[error("rules, line {line}: {message}")]
    Rules { line: usize, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl MonitorError {
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::Invalid(m.into())
    }
}

pub type MonitorResult<T> = Result<T, MonitorError>;
