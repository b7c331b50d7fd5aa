//! Signatures and attestations over models.
//!
//! - [`manifest`] and [`hashing`]: a model's per-file (or per-shard) SHA-256 digests and root
//!   digest, computed exactly as OpenSSF model signing (`model_signing` 1.x) computes them.
//! - [`keys`]: ECDSA P-256/P-384/P-521 and Ed25519 keys as PEM.
//! - [`dsse`], [`statement`], [`bundle`]: the DSSE envelope, in-toto statement v1 and Sigstore
//!   bundle v0.3 that carry a signature.
//! - [`sign`] and [`verify`]: signing a model and verifying a model against a bundle, with a
//!   public key or a certificate chain checked against locally given roots ([`chain`]).
//! - [`provenance`]: SLSA provenance v1 statements; [`bom`]: CycloneDX 1.6 ML-BOMs.
//!
//! The crate reads files and bytes; it knows nothing of the registry, HTTP or the database.

pub mod bom;
pub mod bundle;
pub mod chain;
pub mod dsse;
pub mod hashing;
pub mod keys;
pub mod manifest;
pub mod provenance;
pub mod sign;
pub mod statement;
pub mod verify;

pub use bundle::Bundle;
pub use hashing::{HashOptions, hash_model};
pub use keys::{KeyAlgorithm, PrivateKey, PublicKey};
pub use manifest::{Manifest, Method, Mismatch, Resource, Serialization};
pub use statement::Statement;
pub use verify::{Trust, VerifyError, VerifyOptions};
