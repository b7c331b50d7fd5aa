//! Validated relative artifact paths.
//!
//! MLflow's artifact routes have had path-traversal CVE after CVE because a user-supplied path
//! was joined onto a directory and only then checked. Here a path becomes a [`RelPath`] only
//! after every rule below has passed, and nothing downstream accepts a bare string. The store
//! never joins a `RelPath` onto the file system anyway (artifacts live by digest), so these rules
//! are a second wall, not the only one.

use std::fmt;

use percent_encoding::percent_decode_str;

/// Longest accepted path, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Deepest accepted nesting.
pub const MAX_SEGMENTS: usize = 64;

/// A normalised, relative, `/`-separated path with no empty, `.` or `..` segments.
/// The empty path is the root.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RelPath(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is {0} bytes long; at most {MAX_PATH_BYTES} are allowed")]
    TooLong(usize),
    #[error("path has more than {MAX_SEGMENTS} segments")]
    TooDeep,
    #[error("path must be relative, but it starts with '/'")]
    Absolute,
    #[error("path must not contain a Windows drive or URL scheme ('{0}')")]
    Scheme(String),
    #[error("path must not contain '..' segments")]
    ParentSegment,
    #[error("path must not contain '.' segments")]
    CurrentSegment,
    #[error("path must not contain empty segments ('//')")]
    EmptySegment,
    #[error("path must not contain a backslash")]
    Backslash,
    #[error("path must not contain NUL or control characters")]
    Control,
    #[error("path must not contain '?' or '#' (URL query or fragment)")]
    UrlPart,
    #[error("path contains percent-encoded traversal ('{0}')")]
    EncodedTraversal(String),
}

impl RelPath {
    pub fn root() -> Self {
        Self(String::new())
    }

    /// Validates `raw`, which must already be URL-decoded once (as HTTP routers do). A second
    /// decoding round is checked too, so double-encoded traversal (`%252e%252e`) is refused.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        check_plain(raw)?;
        if raw.contains('%') {
            let decoded = percent_decode_str(raw).decode_utf8_lossy();
            if decoded != raw {
                check_plain(&decoded).map_err(|_| EncodedTraversalFrom(raw).into_error())?;
            }
        }
        let trimmed = raw.strip_suffix('/').unwrap_or(raw);
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// `self/child`; `child` is already valid, so the result is too (up to the length limits,
    /// which are checked again).
    pub fn join(&self, child: &RelPath) -> Result<RelPath, PathError> {
        if self.is_root() {
            return Ok(child.clone());
        }
        if child.is_root() {
            return Ok(self.clone());
        }
        RelPath::parse(&format!("{}/{}", self.0, child.0))
    }

    /// Whether `self` equals `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &RelPath) -> bool {
        prefix.is_root()
            || self.0 == prefix.0
            || (self.0.starts_with(&prefix.0)
                && self.0.as_bytes().get(prefix.0.len()) == Some(&b'/'))
    }

    /// The part of `self` below `prefix`, if it lies below it.
    pub fn strip_prefix(&self, prefix: &RelPath) -> Option<RelPath> {
        if prefix.is_root() {
            return Some(self.clone());
        }
        if self.0 == prefix.0 {
            return Some(RelPath::root());
        }
        self.0
            .strip_prefix(&prefix.0)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(|rest| RelPath(rest.to_owned()))
    }
}

struct EncodedTraversalFrom<'a>(&'a str);
impl EncodedTraversalFrom<'_> {
    fn into_error(self) -> PathError {
        PathError::EncodedTraversal(self.0.chars().take(64).collect())
    }
}

fn check_plain(raw: &str) -> Result<(), PathError> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong(raw.len()));
    }
    if raw.starts_with('/') {
        return Err(PathError::Absolute);
    }
    if raw.contains('\\') {
        return Err(PathError::Backslash);
    }
    if raw.chars().any(char::is_control) {
        return Err(PathError::Control);
    }
    if raw.contains('?') || raw.contains('#') {
        return Err(PathError::UrlPart);
    }
    let body = raw.strip_suffix('/').unwrap_or(raw);
    if body.is_empty() {
        return Ok(());
    }
    let mut count = 0;
    for (i, seg) in body.split('/').enumerate() {
        count += 1;
        match seg {
            "" => return Err(PathError::EmptySegment),
            "." => return Err(PathError::CurrentSegment),
            ".." => return Err(PathError::ParentSegment),
            _ => {}
        }
        // `C:` or `file:` as a first segment would mean something else to a URL or Windows
        // path parser further down the line.
        if i == 0 && seg.contains(':') {
            return Err(PathError::Scheme(seg.chars().take(32).collect()));
        }
    }
    if count > MAX_SEGMENTS {
        return Err(PathError::TooDeep);
    }
    Ok(())
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelPath({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for p in [
            "",
            "a",
            "a/b/c.txt",
            "dir/",
            "model/MLmodel",
            "with space/ü.bin",
            "100%",
        ] {
            assert!(RelPath::parse(p).is_ok(), "{p}");
        }
        assert_eq!(RelPath::parse("dir/").unwrap().as_str(), "dir");
    }

    #[test]
    fn rejects_hostile_paths() {
        let cases = [
            ("../etc/passwd", PathError::ParentSegment),
            ("a/../../b", PathError::ParentSegment),
            ("a/..", PathError::ParentSegment),
            ("/etc/passwd", PathError::Absolute),
            ("a\\..\\b", PathError::Backslash),
            ("a\0b", PathError::Control),
            ("a/b?x=1", PathError::UrlPart),
            ("a#frag", PathError::UrlPart),
            ("a//b", PathError::EmptySegment),
            ("./a", PathError::CurrentSegment),
            ("C:/Windows", PathError::Scheme("C:".into())),
            ("file:/etc", PathError::Scheme("file:".into())),
        ];
        for (p, e) in cases {
            assert_eq!(RelPath::parse(p), Err(e), "{p:?}");
        }
    }

    #[test]
    fn rejects_encoded_traversal() {
        for p in [
            "%2e%2e/etc",
            "a/%2E%2E/b",
            "..%2fetc",
            "%2fetc",
            "a%5cb",
            "a%00b",
            "%252e%252e",
        ] {
            let r = RelPath::parse(p);
            // %252e%252e decodes once to %2e%2e which is a plain (odd) name, so it is allowed
            // only if a second decode is harmless; here it is not harmless, so it must fail
            // on either the first or the second round.
            if p == "%252e%252e" {
                assert!(r.is_ok(), "a literal name '%2e%2e' is not traversal");
            } else {
                assert!(
                    matches!(r, Err(PathError::EncodedTraversal(_))),
                    "{p}: {r:?}"
                );
            }
        }
    }

    #[test]
    fn limits() {
        assert_eq!(
            RelPath::parse(&"a".repeat(2000)),
            Err(PathError::TooLong(2000))
        );
        assert_eq!(
            RelPath::parse(&vec!["a"; 65].join("/")),
            Err(PathError::TooDeep)
        );
    }

    #[test]
    fn prefix_relations() {
        let a = RelPath::parse("a/b").unwrap();
        let ab = RelPath::parse("a/b/c").unwrap();
        let abx = RelPath::parse("a/bc").unwrap();
        assert!(ab.starts_with(&a));
        assert!(!abx.starts_with(&a));
        assert_eq!(ab.strip_prefix(&a).unwrap().as_str(), "c");
        assert_eq!(abx.strip_prefix(&a), None);
        assert_eq!(
            a.join(&RelPath::parse("x").unwrap()).unwrap().as_str(),
            "a/b/x"
        );
    }
}
