//! Tabular data checks for Bastion. Files and bytes in, reports out: this crate knows
//! nothing of the registry, SQL or HTTP, and never evaluates what it reads.

pub mod columns;
pub mod drift;
pub mod error;
pub mod ingest;
pub mod parts;
pub mod pii;
pub mod poison;
pub mod profile;
pub mod read;
pub mod report;
pub mod schema;
pub mod sketch;
pub mod stats;
pub mod validate;
pub mod values;
pub mod write;

pub use error::{DataError, DataResult};
