/// Why a pipeline file was refused, with the line when there is one.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PipelineError {
    /// Not valid TOML, or a key the format does not know (the TOML reader's line and column).
    #[error("{0}")]
    Toml(String),
    #[error("line {line}: step '{step}': {message}")]
    Step {
        line: usize,
        step: String,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}
