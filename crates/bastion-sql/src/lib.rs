//! SQL to Arrow. Two sources of rows for datasets:
//!
//! - [`transform`]: a `SELECT` over dataset versions (Parquet files, each a named table) on
//!   an in-memory SQLite that can read nothing else: one read-only statement, no `ATTACH`,
//!   no `PRAGMA`, no extensions, a time budget and a row cap.
//! - [`postgres`]: a query against PostgreSQL in a read-only transaction with a statement
//!   timeout, streamed into Parquet.
//!
//! Both write the canonical Parquet of `bastion-data`; neither knows the registry.

pub mod error;
pub mod postgres;
mod rows;
pub mod transform;

pub use error::{SqlError, SqlResult};
pub use transform::{Limits, Summary, Table, transform};
