//! The tamper-evident audit log, as pure functions over bytes.
//!
//! Every entry is canonically encoded and hashed; the hashes are the leaves of an RFC 6962
//! Merkle tree, whose signed tree heads let anyone holding only the public key check that an
//! entry is in the log (inclusion proof) and that a later log extends an earlier one without
//! rewriting it (consistency proof). Each entry also carries the hash of its predecessor, so a
//! verifier walking the log can name the first entry that was edited, deleted, reordered or
//! inserted. Storage lives elsewhere (`bastion-store`); this crate performs no IO.

pub mod entry;
pub mod merkle;
pub mod proof;
pub mod tree_head;
pub mod verify;

pub use entry::{AuditEntry, Hash, Outcome};
pub use tree_head::{SignedTreeHead, TreeHead};
pub use verify::{Tamper, VerifyReport, verify_log};
