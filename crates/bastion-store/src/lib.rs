//! Where Bastion keeps things: a metadata store (SQLite by default, PostgreSQL for teams) and a
//! content-addressed blob store (a local folder by default, S3-compatible stores for scale).
//!
//! This crate knows nothing about HTTP. Every operation a user can reach is a method here, so
//! the server and the CLI are two thin shells over the same calls.

pub mod blob;
pub mod crypt;
pub mod error;
pub mod keys;
pub mod meta;

pub use blob::{BlobStore, LocalBlob, StoredBlob};
pub use error::{StoreError, StoreResult};
pub use meta::{Backend, MetaStore, MetaStoreOptions};
