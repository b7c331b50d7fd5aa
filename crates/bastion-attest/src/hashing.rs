//! Hashing a model on disk into a [`Manifest`], as `model_signing` does: a file or a folder
//! walked completely, ignored paths left out, symbolic links refused unless allowed (then a
//! link to a file counts as that file's content and a link to a folder is not followed).
//!
//! Files (or shards) are hashed in parallel, largest first, each streamed through a fixed
//! buffer, so memory does not grow with the model.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::manifest::{self, GIT_PATHS, Manifest, Method, Resource, Serialization};

const BUFFER: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: is a symbolic link; links are refused unless symlinks are allowed")]
    Symlink(PathBuf),
    #[error("{0}: is neither a file nor a folder (or is a broken link)")]
    NotFileOrFolder(PathBuf),
    #[error("{0}: the name is not valid UTF-8, which a signature cannot name portably")]
    NotUtf8(PathBuf),
    #[error("{0}: the shard size must be at least 1 byte")]
    ShardSize(u64),
    #[error("{path}: the file became shorter while it was hashed ({got} of {want} bytes read)")]
    Shrank { path: PathBuf, got: u64, want: u64 },
}

/// How to hash a model.
#[derive(Debug, Clone)]
pub struct HashOptions {
    pub method: Method,
    pub allow_symlinks: bool,
    /// Paths relative to the model root to leave out.
    pub ignore_paths: Vec<String>,
    /// Also leave out `.git`, `.gitattributes`, `.github` and `.gitignore` (the default).
    pub ignore_git_paths: bool,
    /// Hash only these resource paths (a verifier's `--ignore-unsigned-files`).
    pub only: Option<BTreeSet<String>>,
}

impl Default for HashOptions {
    fn default() -> Self {
        Self {
            method: Method::Files,
            allow_symlinks: false,
            ignore_paths: Vec::new(),
            ignore_git_paths: true,
            only: None,
        }
    }
}

impl HashOptions {
    /// The serialization these options record in a signature: the ignored paths as given,
    /// plus the git paths when those are ignored, sorted and without repeats.
    pub fn serialization(&self) -> Serialization {
        let mut ignore: BTreeSet<String> = self.ignore_paths.iter().cloned().collect();
        if self.ignore_git_paths {
            ignore.extend(GIT_PATHS.iter().map(|p| (*p).to_owned()));
        }
        Serialization {
            method: self.method,
            allow_symlinks: self.allow_symlinks,
            ignore_paths: ignore.into_iter().collect(),
        }
    }
}

/// One unit of hashing work.
struct Job {
    full: PathBuf,
    components: Vec<String>,
    range: Option<(u64, u64)>,
    size: u64,
}

/// Hashes the model at `path` (a file or a folder). `progress` is told every chunk of bytes
/// hashed, from several threads at once.
pub fn hash_model(
    path: &Path,
    options: &HashOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Manifest, HashError> {
    if let Method::Shards { shard_size: 0 } = options.method {
        return Err(HashError::ShardSize(0));
    }
    let serialization = options.serialization();
    let ignored: Vec<Vec<String>> = serialization
        .ignore_paths
        .iter()
        .map(|p| manifest::components(p))
        .collect();
    let mut files = Vec::new();
    let root = classify(path, options.allow_symlinks)?;
    match root {
        Kind::File(size) => files.push((path.to_path_buf(), Vec::new(), size)),
        Kind::Folder => walk(path, &[], options.allow_symlinks, &ignored, &mut files)?,
        Kind::LinkedFolder => {}
    }
    if let Some(only) = &options.only {
        files.retain(|(_, components, _)| only.contains(&components_path(components)));
    }
    let mut jobs = Vec::new();
    for (full, components, size) in files {
        match options.method {
            Method::Files => jobs.push(Job {
                full,
                components,
                range: None,
                size,
            }),
            Method::Shards { shard_size } => {
                let mut start = 0;
                while start < size {
                    let end = size.min(start.saturating_add(shard_size));
                    jobs.push(Job {
                        full: full.clone(),
                        components: components.clone(),
                        range: Some((start, end)),
                        size: end - start,
                    });
                    start = end;
                }
            }
        }
    }
    // Largest first, so one big file does not start last and finish alone; one job per task
    // (rayon would otherwise hand one thread a contiguous run of the biggest files and leave
    // the other idle once the small ones are done).
    jobs.sort_by_key(|j| std::cmp::Reverse(j.size));
    let resources = jobs
        .into_par_iter()
        .with_max_len(1)
        .map(|job| hash_job(job, progress))
        .collect::<Result<Vec<Resource>, HashError>>()?;
    Ok(Manifest::new(model_name(path), serialization, resources))
}

fn components_path(components: &[String]) -> String {
    if components.is_empty() {
        ".".to_owned()
    } else {
        components.join("/")
    }
}

/// The model's name as `model_signing` records it: the last component of the path, or of
/// the resolved path when the given one has none (`.`).
fn model_name(path: &Path) -> String {
    let named = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n != "..")
    };
    named(path)
        .or_else(|| path.canonicalize().ok().as_deref().and_then(named))
        .unwrap_or_default()
}

enum Kind {
    File(u64),
    Folder,
    /// A link to a folder, allowed but not followed.
    LinkedFolder,
}

fn classify(path: &Path, allow_symlinks: bool) -> Result<Kind, HashError> {
    let io = |source| HashError::Io {
        path: path.to_path_buf(),
        source,
    };
    let link = std::fs::symlink_metadata(path).map_err(io)?;
    let is_link = link.file_type().is_symlink();
    if is_link && !allow_symlinks {
        return Err(HashError::Symlink(path.to_path_buf()));
    }
    let meta = if is_link {
        std::fs::metadata(path).map_err(|_| HashError::NotFileOrFolder(path.to_path_buf()))?
    } else {
        link
    };
    if meta.is_file() {
        Ok(Kind::File(meta.len()))
    } else if meta.is_dir() && is_link {
        Ok(Kind::LinkedFolder)
    } else if meta.is_dir() {
        Ok(Kind::Folder)
    } else {
        Err(HashError::NotFileOrFolder(path.to_path_buf()))
    }
}

fn is_ignored(components: &[String], ignored: &[Vec<String>]) -> bool {
    ignored.iter().any(|i| components.starts_with(i))
}

fn walk(
    dir: &Path,
    prefix: &[String],
    allow_symlinks: bool,
    ignored: &[Vec<String>],
    out: &mut Vec<(PathBuf, Vec<String>, u64)>,
) -> Result<(), HashError> {
    let io = |source| HashError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let full = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| HashError::NotUtf8(full.clone()))?;
        let mut components = prefix.to_vec();
        components.push(name);
        // Ignored folders are not entered at all (`model_signing` walks them and would
        // refuse a link inside one; their content is not part of the model either way).
        if is_ignored(&components, ignored) {
            continue;
        }
        match classify(&full, allow_symlinks)? {
            Kind::File(size) => out.push((full, components, size)),
            Kind::Folder => walk(&full, &components, allow_symlinks, ignored, out)?,
            Kind::LinkedFolder => {}
        }
    }
    Ok(())
}

fn hash_job(job: Job, progress: &(dyn Fn(u64) + Sync)) -> Result<Resource, HashError> {
    let io = |source| HashError::Io {
        path: job.full.clone(),
        source,
    };
    let mut file = File::open(&job.full).map_err(io)?;
    let mut want = u64::MAX;
    if let Some((start, end)) = job.range {
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        want = end - start;
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; BUFFER];
    let mut got = 0u64;
    while got < want {
        let room = usize::try_from(want - got).map_or(BUFFER, |w| w.min(BUFFER));
        let n = match file.read(&mut buffer[..room]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        hasher.update(&buffer[..n]);
        got += n as u64;
        progress(n as u64);
    }
    if job.range.is_some() && got < want {
        return Err(HashError::Shrank {
            path: job.full,
            got,
            want,
        });
    }
    Ok(Resource {
        components: job.components,
        range: job.range,
        digest: hasher.finalize().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(m: &Manifest) -> Vec<String> {
        m.resources().iter().map(Resource::name).collect()
    }

    fn write(root: &Path, rel: &str, data: &[u8]) {
        let p = root.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, data).unwrap();
    }

    #[test]
    fn folder_walk_orders_ignores_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("model");
        write(&root, "a/x", b"hi\n");
        write(&root, "a-b/x", b"yo\n");
        write(&root, "a.txt", b"");
        write(&root, ".git/config", b"x");
        write(&root, "skip/me", b"x");
        let opts = HashOptions {
            ignore_paths: vec!["skip".into()],
            ..HashOptions::default()
        };
        let m = hash_model(&root, &opts, &|_| {}).unwrap();
        assert_eq!(names(&m), ["a/x", "a-b/x", "a.txt"]);
        assert_eq!(m.model_name, "model");
        // Recorded by model_signing 1.1.1 for the same three files.
        assert_eq!(
            m.root_digest_hex(),
            "80375e9e4380647539f09d6e2aaa245d9c264c8a33f31163d48f5996e4a63184"
        );
        assert_eq!(
            m.serialization.ignore_paths,
            [".git", ".gitattributes", ".github", ".gitignore", "skip"]
        );
    }

    #[test]
    fn single_file_is_named_dot() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "w.bin", b"abc");
        let m = hash_model(&dir.path().join("w.bin"), &HashOptions::default(), &|_| {}).unwrap();
        assert_eq!(names(&m), ["."]);
        assert_eq!(m.model_name, "w.bin");
    }

    #[test]
    fn shards_split_files_and_skip_empty_ones() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "big", &[7u8; 25]);
        write(dir.path(), "empty", b"");
        let opts = HashOptions {
            method: Method::Shards { shard_size: 10 },
            ..HashOptions::default()
        };
        let m = hash_model(dir.path(), &opts, &|_| {}).unwrap();
        assert_eq!(names(&m), ["big:0:10", "big:10:20", "big:20:25"]);
        assert_eq!(
            m.resources()[2].digest,
            <[u8; 32]>::from(Sha256::digest([7u8; 5]))
        );
        let zero = HashOptions {
            method: Method::Shards { shard_size: 0 },
            ..HashOptions::default()
        };
        assert!(matches!(
            hash_model(dir.path(), &zero, &|_| {}),
            Err(HashError::ShardSize(0))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "real", b"data");
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("broken")).unwrap();
        let err = hash_model(dir.path(), &HashOptions::default(), &|_| {}).unwrap_err();
        assert!(matches!(err, HashError::Symlink(_)), "{err}");
        std::fs::remove_file(dir.path().join("broken")).unwrap();
        let allow = HashOptions {
            allow_symlinks: true,
            ..HashOptions::default()
        };
        let m = hash_model(dir.path(), &allow, &|_| {}).unwrap();
        assert_eq!(names(&m), ["link", "real"]);
        assert_eq!(m.resources()[0].digest, m.resources()[1].digest);
        std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("broken")).unwrap();
        let err = hash_model(dir.path(), &allow, &|_| {}).unwrap_err();
        assert!(matches!(err, HashError::NotFileOrFolder(_)), "{err}");
    }

    #[test]
    fn only_restricts_to_listed_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a", b"1");
        write(dir.path(), "b/c", b"2");
        let opts = HashOptions {
            only: Some(["b/c".to_owned()].into_iter().collect()),
            ..HashOptions::default()
        };
        let m = hash_model(dir.path(), &opts, &|_| {}).unwrap();
        assert_eq!(names(&m), ["b/c"]);
    }

    #[test]
    fn missing_model_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            hash_model(&dir.path().join("nope"), &HashOptions::default(), &|_| {}).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
