//! Blobs in an S3-compatible object store, through `object_store`.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bastion_core::Digest;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::{BlobError, BlobStore, ByteStream, LocalBlob, StoredBlob, blob_key, spool};

/// Bodies up to this size are sent in one conditional PUT; larger ones as a multipart upload.
const SINGLE_PUT_LIMIT: u64 = 64 * 1024 * 1024;

/// A client for `bucket`: endpoint, region and credentials from the `AWS_*` environment.
pub(crate) fn s3_store(bucket: &str) -> Result<object_store::aws::AmazonS3, BlobError> {
    // TLS for object_store's client uses rustls with the ring provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
        .build()?)
}

pub struct ObjectBlobStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    label: String,
    tmp: PathBuf,
}

impl ObjectBlobStore {
    /// The object's bytes as the bucket returns them; callers check the digest.
    async fn unverified(&self, digest: &Digest) -> Result<Option<(u64, ByteStream)>, BlobError> {
        match self.store.get(&self.key(digest)).await {
            Ok(result) => {
                let size = result.meta.size;
                let stream = result.into_stream().map_err(std::io::Error::other).boxed();
                Ok(Some((size, stream)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `s3://bucket/prefix`; endpoint, region and credentials come from the usual `AWS_*`
    /// environment variables (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP` for a local test server).
    pub fn s3(uri: &str, tmp: PathBuf) -> Result<Self, BlobError> {
        let rest = uri.strip_prefix("s3://").unwrap_or(uri);
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(BlobError::Config(format!("'{uri}' names no bucket")));
        }
        let store = s3_store(bucket)?;
        std::fs::create_dir_all(&tmp)?;
        Ok(Self::with_store(
            Arc::new(store),
            prefix,
            uri.to_owned(),
            tmp,
        ))
    }

    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        label: String,
        tmp: PathBuf,
    ) -> Self {
        Self {
            store,
            prefix: prefix.trim_matches('/').to_owned(),
            label,
            tmp,
        }
    }

    fn key(&self, d: &Digest) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(blob_key(d))
        } else {
            ObjectPath::from(format!("{}/{}", self.prefix, blob_key(d)))
        }
    }
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    async fn put(
        &self,
        body: ByteStream,
        max_bytes: u64,
        expected: Option<Digest>,
    ) -> Result<StoredBlob, BlobError> {
        let spooled = spool(&self.tmp, body, max_bytes, expected).await?;
        let key = self.key(&spooled.blob.digest);
        if self.exists(&spooled.blob.digest).await? {
            return Ok(spooled.blob);
        }
        if spooled.blob.size <= SINGLE_PUT_LIMIT {
            let bytes = tokio::fs::read(&spooled.file).await?;
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match self
                .store
                .put_opts(&key, PutPayload::from(bytes), opts)
                .await
            {
                Ok(_) => {}
                // Someone stored the same content first: same digest, same bytes.
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        } else {
            let mut upload =
                object_store::WriteMultipart::new(self.store.put_multipart(&key).await?);
            let file = tokio::fs::File::open(&spooled.file).await?;
            let mut chunks = tokio_util::io::ReaderStream::with_capacity(file, 8 * 1024 * 1024);
            while let Some(chunk) = chunks.next().await {
                upload.write(&chunk?);
            }
            upload.finish().await?;
        }
        Ok(spooled.blob)
    }

    async fn get(&self, digest: &Digest) -> Result<Option<(u64, ByteStream)>, BlobError> {
        Ok(self
            .unverified(digest)
            .await?
            .map(|(size, stream)| (size, super::verifying(*digest, stream))))
    }

    async fn local_file(&self, digest: &Digest) -> Result<Option<LocalBlob>, BlobError> {
        let Some((_, stream)) = self.unverified(digest).await? else {
            return Ok(None);
        };
        // The copy is hashed as it arrives: bytes that are not the blob are refused.
        let spooled = spool(&self.tmp, stream, u64::MAX, Some(*digest)).await?;
        Ok(Some(LocalBlob {
            path: spooled.file.to_path_buf(),
            _copy: Some(spooled.file),
        }))
    }

    async fn exists(&self, digest: &Digest) -> Result<bool, BlobError> {
        match self.store.head(&self.key(digest)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}
