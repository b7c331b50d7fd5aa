//! A model's manifest: the digest of every file (or file shard), in the canonical order OpenSSF
//! model signing uses, and the root digest over them.
//!
//! The order is by path *components*, not by the path string: `a/x` < `a-b/x` < `a.txt`,
//! because `["a", "x"] < ["a-b", "x"]` although `"a/x" > "a-b/x"` byte-wise. The root digest
//! is SHA-256 over the resources' raw 32-byte digests concatenated in that order.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest as _, Sha256};

/// The hash every resource uses; the only one Bastion writes or accepts.
pub const HASH_TYPE: &str = "sha256";
/// `model_signing`'s default shard size.
pub const DEFAULT_SHARD_SIZE: u64 = 1_000_000_000;
/// The paths `model_signing` ignores unless told otherwise.
pub const GIT_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];

/// How files become resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// One digest per file.
    Files,
    /// One digest per `shard_size` bytes of each file; empty files have no shard.
    Shards { shard_size: u64 },
}

/// The parameters of the serialization, recorded in the signature so a verifier can hash the
/// model again the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serialization {
    pub method: Method,
    pub allow_symlinks: bool,
    /// Paths relative to the model root whose files (and folders' files) are not part of it.
    pub ignore_paths: Vec<String>,
}

/// A shard's byte range `[start, end)`.
pub type Range = (u64, u64);

/// One hashed file or shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Path components relative to the model root; empty when the model is a single file.
    pub components: Vec<String>,
    /// The byte range `[start, end)` of a shard.
    pub range: Option<(u64, u64)>,
    pub digest: [u8; 32],
}

impl Resource {
    /// The path as `model_signing` writes it: components joined by `/`, `.` for a single file.
    pub fn path(&self) -> String {
        if self.components.is_empty() {
            ".".to_owned()
        } else {
            self.components.join("/")
        }
    }

    /// The resource's name in a manifest: the path, with `:start:end` for a shard.
    pub fn name(&self) -> String {
        match self.range {
            None => self.path(),
            Some((start, end)) => format!("{}:{start}:{end}", self.path()),
        }
    }

    /// Parses a resource name written by a signer, for `method`.
    pub fn parse_name(name: &str, method: Method) -> Result<(Vec<String>, Option<Range>), String> {
        match method {
            Method::Files => Ok((components(name), None)),
            Method::Shards { .. } => {
                let parts: Vec<&str> = name.split(':').collect();
                let [path, start, end] = parts[..] else {
                    return Err(format!("shard resource {name:?} is not PATH:START:END"));
                };
                let start: u64 = start
                    .parse()
                    .map_err(|_| format!("shard resource {name:?}: start is not a number"))?;
                let end: u64 = end
                    .parse()
                    .map_err(|_| format!("shard resource {name:?}: end is not a number"))?;
                if end < start {
                    return Err(format!("shard resource {name:?}: end is before start"));
                }
                Ok((components(path), Some((start, end))))
            }
        }
    }

    fn key(&self) -> (&[String], Option<(u64, u64)>) {
        (&self.components, self.range)
    }
}

/// A relative path's components as Python's `PurePosixPath` sees them: empty and `.` parts
/// dropped.
pub fn components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_owned)
        .collect()
}

impl Ord for Resource {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Resource {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A model's resources in canonical order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The model's name (its folder's or file's base name); informative only.
    pub model_name: String,
    pub serialization: Serialization,
    resources: Vec<Resource>,
}

/// One way an actual model differs from the manifest it was signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// A file (or shard) whose content changed.
    Changed {
        name: String,
        expected: String,
        actual: String,
    },
    /// A file the signature does not cover.
    Extra(String),
    /// A signed file that is not there any more.
    Missing(String),
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Changed {
                name,
                expected,
                actual,
            } => write!(
                f,
                "{name}: content changed (signed sha256 {expected}, now {actual})"
            ),
            Self::Extra(name) => write!(f, "{name}: not covered by the signature (extra file)"),
            Self::Missing(name) => write!(f, "{name}: signed but missing"),
        }
    }
}

impl Manifest {
    /// A manifest over `resources`, which it puts in canonical order.
    pub fn new(
        model_name: String,
        serialization: Serialization,
        mut resources: Vec<Resource>,
    ) -> Self {
        resources.sort();
        Self {
            model_name,
            serialization,
            resources,
        }
    }

    /// A manifest whose resources keep the order a signer wrote them in (the root digest is
    /// over that order).
    pub(crate) fn in_given_order(
        model_name: String,
        serialization: Serialization,
        resources: Vec<Resource>,
    ) -> Self {
        Self {
            model_name,
            serialization,
            resources,
        }
    }

    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    /// SHA-256 over the resources' digests, in order.
    pub fn root_digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for r in &self.resources {
            hasher.update(r.digest);
        }
        hasher.finalize().into()
    }

    pub fn root_digest_hex(&self) -> String {
        hex::encode(self.root_digest())
    }

    /// How `actual` differs from this (expected) manifest, by resource name; empty if they
    /// hold the same resources with the same digests. Missing and extra resources come first,
    /// then changed ones, each sorted by name.
    pub fn diff(&self, actual: &Manifest) -> Vec<Mismatch> {
        let expected = by_name(&self.resources);
        let actual = by_name(&actual.resources);
        let mut out = Vec::new();
        for name in expected.keys().filter(|n| !actual.contains_key(*n)) {
            out.push(Mismatch::Missing(name.clone()));
        }
        for name in actual.keys().filter(|n| !expected.contains_key(*n)) {
            out.push(Mismatch::Extra(name.clone()));
        }
        for (name, want) in &expected {
            if let Some(got) = actual.get(name)
                && got != want
            {
                out.push(Mismatch::Changed {
                    name: name.clone(),
                    expected: hex::encode(want),
                    actual: hex::encode(got),
                });
            }
        }
        out
    }
}

fn by_name(resources: &[Resource]) -> BTreeMap<String, [u8; 32]> {
    resources.iter().map(|r| (r.name(), r.digest)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, byte: u8) -> Resource {
        Resource {
            components: components(path),
            range: None,
            digest: [byte; 32],
        }
    }

    fn files_manifest(resources: Vec<Resource>) -> Manifest {
        Manifest::new(
            "m".into(),
            Serialization {
                method: Method::Files,
                allow_symlinks: false,
                ignore_paths: vec![],
            },
            resources,
        )
    }

    #[test]
    fn orders_by_components_not_bytes() {
        let m = files_manifest(vec![file("a.txt", 1), file("a-b/x", 2), file("a/x", 3)]);
        let names: Vec<String> = m.resources().iter().map(Resource::name).collect();
        assert_eq!(names, ["a/x", "a-b/x", "a.txt"]);
    }

    #[test]
    fn shards_order_by_path_then_offsets() {
        let shard = |p: &str, s: u64, e: u64| Resource {
            components: components(p),
            range: Some((s, e)),
            digest: [0; 32],
        };
        let m = files_manifest(vec![
            shard("b", 0, 5),
            shard("a", 10, 12),
            shard("a", 2, 10),
        ]);
        let names: Vec<String> = m.resources().iter().map(Resource::name).collect();
        assert_eq!(names, ["a:2:10", "a:10:12", "b:0:5"]);
    }

    #[test]
    fn root_digest_is_over_raw_digests_in_order() {
        let m = files_manifest(vec![file("b", 2), file("a", 1)]);
        let mut h = Sha256::new();
        h.update([1u8; 32]);
        h.update([2u8; 32]);
        assert_eq!(m.root_digest(), <[u8; 32]>::from(h.finalize()));
    }

    #[test]
    fn diff_names_each_difference() {
        let signed = files_manifest(vec![file("a", 1), file("b", 2), file("c", 3)]);
        let now = files_manifest(vec![file("a", 1), file("b", 9), file("d", 4)]);
        let d = signed.diff(&now);
        assert_eq!(
            d,
            vec![
                Mismatch::Missing("c".into()),
                Mismatch::Extra("d".into()),
                Mismatch::Changed {
                    name: "b".into(),
                    expected: hex::encode([2u8; 32]),
                    actual: hex::encode([9u8; 32]),
                },
            ]
        );
        assert!(signed.diff(&signed).is_empty());
    }

    #[test]
    fn parses_shard_names() {
        let m = Method::Shards { shard_size: 10 };
        assert_eq!(
            Resource::parse_name("a/b:0:10", m).ok(),
            Some((vec!["a".to_owned(), "b".to_owned()], Some((0, 10))))
        );
        assert!(Resource::parse_name("a:b:0:10", m).is_err());
        assert!(Resource::parse_name("a:x:10", m).is_err());
        assert!(Resource::parse_name("a:10:2", m).is_err());
        assert_eq!(
            Resource::parse_name(".", Method::Files).ok(),
            Some((vec![], None))
        );
    }
}
