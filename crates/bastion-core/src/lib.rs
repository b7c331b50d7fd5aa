//! The vocabulary every other Bastion crate speaks.
//!
//! This crate performs no IO, spawns no tasks and knows nothing about HTTP or SQL: it holds
//! the types (digests, validated relative paths, the tracking and registry model), the rules
//! that are pure functions of input (key/value limits, the search grammar) and the error kinds
//! those rules report.

pub mod digest;
pub mod error;
pub mod html;
pub mod ids;
pub mod limits;
pub mod model;
pub mod path;
pub mod search;
pub mod severity;
pub mod time;
pub mod uri;

pub use digest::Digest;
pub use error::{Error, ErrorCode, Result};
pub use path::RelPath;
