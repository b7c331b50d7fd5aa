//! Content-addressed blob storage. Bytes are streamed into a temporary file while being hashed;
//! only then are they published under their SHA-256 digest, and a published blob is never
//! overwritten. Readers can therefore trust that a blob's name is its content.

mod fetch;
mod local;
mod object;

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bastion_core::Digest;
use bastion_core::digest::Hasher;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::AsyncWriteExt;

pub use fetch::{S3Source, SourceObject};
pub use local::LocalBlobStore;
pub use object::ObjectBlobStore;

pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(transparent)]
    Domain(#[from] bastion_core::Error),
    #[error("io: {0}")]
    Io(#[from] io::Error),
    #[error("object store: {0}")]
    Object(#[from] object_store::Error),
    #[error("blob {0} is missing from the blob store")]
    Missing(Digest),
    #[error("blob store configuration: {0}")]
    Config(String),
}

/// Passes `stream` through while hashing it. The last chunk is held back until the whole
/// content is hashed: if the bytes turn out not to be `digest` (a blob changed on disk or in
/// the bucket), the stream ends with an error and a reader never receives the complete
/// tampered content (a sized HTTP response is cut short).
pub fn verifying(digest: Digest, stream: ByteStream) -> ByteStream {
    struct State {
        inner: ByteStream,
        hasher: Hasher,
        held: Option<Bytes>,
    }
    let start = State {
        inner: stream,
        hasher: Hasher::new(),
        held: None,
    };
    futures::stream::unfold(Some(start), move |state| async move {
        let mut st = state?;
        loop {
            match st.inner.next().await {
                Some(Ok(chunk)) => {
                    st.hasher.update(&chunk);
                    if let Some(previous) = st.held.replace(chunk) {
                        return Some((Ok(previous), Some(st)));
                    }
                }
                Some(Err(e)) => return Some((Err(e), None)),
                None => {
                    let got = st.hasher.clone().finish();
                    if got != digest {
                        let e = io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("blob {digest} is corrupt: its bytes now hash to {got}"),
                        );
                        return Some((Err(e), None));
                    }
                    return st.held.take().map(|last| (Ok(last), None));
                }
            }
        }
    })
    .boxed()
}

/// What `put` stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Streams `body` in, refusing more than `max_bytes`; if `expected` is given, a body with
    /// another digest is refused and nothing is published.
    async fn put(
        &self,
        body: ByteStream,
        max_bytes: u64,
        expected: Option<Digest>,
    ) -> Result<StoredBlob, BlobError>;

    /// The blob's size and a stream of its bytes, or `None` if it is not stored.
    async fn get(&self, digest: &Digest) -> Result<Option<(u64, ByteStream)>, BlobError>;

    async fn exists(&self, digest: &Digest) -> Result<bool, BlobError>;

    /// The blob as a file on this machine, for readers that need to seek (the model
    /// scanner): the stored file itself when the store is local, otherwise a verified
    /// temporary copy that is deleted when the [`LocalBlob`] is dropped.
    async fn local_file(&self, digest: &Digest) -> Result<Option<LocalBlob>, BlobError>;

    /// A short description for logs (`local:/path`, `s3://bucket/prefix`).
    fn describe(&self) -> String;
}

/// A blob readable as a local file (see [`BlobStore::local_file`]).
pub struct LocalBlob {
    path: PathBuf,
    /// A temporary copy, removed on drop.
    _copy: Option<tempfile::TempPath>,
}

impl LocalBlob {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `sha256/ab/cd/abcd…`: two levels of fan-out keep directories small.
pub(crate) fn blob_key(d: &Digest) -> String {
    let hex = d.hex();
    format!("sha256/{}/{}/{hex}", &hex[..2], &hex[2..4])
}

/// A hashed temporary copy of an incoming body, deleted on drop unless published.
pub(crate) struct Spooled {
    pub file: tempfile::TempPath,
    pub blob: StoredBlob,
}

/// Streams `body` into a temporary file under `tmp_dir`, hashing as it goes, and syncs it to
/// disk so that a later rename publishes durable bytes.
pub(crate) async fn spool(
    tmp_dir: &Path,
    mut body: ByteStream,
    max_bytes: u64,
    expected: Option<Digest>,
) -> Result<Spooled, BlobError> {
    tokio::fs::create_dir_all(tmp_dir).await?;
    let named = tempfile::Builder::new()
        .prefix("upload-")
        .tempfile_in(tmp_dir)?;
    let (std_file, path) = named.into_parts();
    let mut file = tokio::fs::File::from_std(std_file);
    let mut hasher = Hasher::new();
    let mut size: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        if size > max_bytes {
            return Err(bastion_core::Error::new(
                bastion_core::ErrorCode::RequestLimitExceeded,
                format!("upload exceeds the limit of {max_bytes} bytes"),
            )
            .into());
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    file.sync_all().await?;
    drop(file);
    let digest = hasher.finish();
    if let Some(want) = expected
        && want != digest
    {
        return Err(bastion_core::Error::invalid(format!(
            "content digest mismatch: expected {want}, received {digest}"
        ))
        .into());
    }
    Ok(Spooled {
        file: path,
        blob: StoredBlob { digest, size },
    })
}

/// Opens the blob store named by `uri`: a local folder path (or `file://` URI) or `s3://bucket/prefix`.
/// `tmp_dir` holds uploads while they are hashed.
pub fn open(uri: &str, tmp_dir: PathBuf) -> Result<Box<dyn BlobStore>, BlobError> {
    if uri.starts_with("s3://") {
        return Ok(Box::new(ObjectBlobStore::s3(uri, tmp_dir)?));
    }
    let path = uri.strip_prefix("file://").unwrap_or(uri);
    if path.contains("://") {
        return Err(BlobError::Config(format!(
            "unsupported blob store URI '{uri}': use a folder path or s3://bucket/prefix"
        )));
    }
    Ok(Box::new(LocalBlobStore::new(PathBuf::from(path), tmp_dir)?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn body(parts: &[&'static [u8]]) -> ByteStream {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
        .boxed()
    }

    pub async fn read_all(s: ByteStream) -> Vec<u8> {
        s.map(|c| c.unwrap().to_vec())
            .collect::<Vec<_>>()
            .await
            .concat()
    }

    #[test]
    fn key_layout() {
        let d = Digest::of(b"abc");
        assert_eq!(blob_key(&d), format!("sha256/ba/78/{}", d.hex()));
    }
}
