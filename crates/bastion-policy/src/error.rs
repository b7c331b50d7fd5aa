/// Why a policy file was refused: what was wrong and on which line.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PolicyError {
    /// The file is not valid TOML or has a key the format does not know; the message from
    /// the TOML reader names the line and column.
    #[error("{0}")]
    Toml(String),
    /// A rule's expression is wrong.
    #[error("line {line}: rule '{rule}': {message}")]
    Rule {
        line: usize,
        rule: String,
        message: String,
    },
    #[error("line {line}: {message}")]
    Invalid { line: usize, message: String },
}
