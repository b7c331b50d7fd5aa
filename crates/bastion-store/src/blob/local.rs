//! Blobs in a local folder.

use std::io;
use std::path::PathBuf;

use async_trait::async_trait;
use bastion_core::Digest;
use futures::StreamExt;

use super::{BlobError, BlobStore, ByteStream, LocalBlob, StoredBlob, blob_key, spool};

pub struct LocalBlobStore {
    root: PathBuf,
    tmp: PathBuf,
}

impl LocalBlobStore {
    pub fn new(root: PathBuf, tmp: PathBuf) -> Result<Self, BlobError> {
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(&tmp)?;
        Ok(Self { root, tmp })
    }

    fn path_of(&self, d: &Digest) -> PathBuf {
        self.root.join(blob_key(d))
    }

    /// The blob's file, if stored. Blobs are plain files; anything else (a planted symlink)
    /// is not ours to follow.
    async fn regular_file(
        &self,
        digest: &Digest,
    ) -> Result<Option<(PathBuf, std::fs::Metadata)>, BlobError> {
        let path = self.path_of(digest);
        let meta = match tokio::fs::symlink_metadata(&path).await {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if !meta.file_type().is_file() {
            return Err(BlobError::Config(format!(
                "blob {digest} is not a regular file"
            )));
        }
        Ok(Some((path, meta)))
    }
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn put(
        &self,
        body: ByteStream,
        max_bytes: u64,
        expected: Option<Digest>,
    ) -> Result<StoredBlob, BlobError> {
        let spooled = spool(&self.tmp, body, max_bytes, expected).await?;
        let target = self.path_of(&spooled.blob.digest);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        // A hard link publishes atomically and fails if the name exists, so a blob is never
        // overwritten; an existing blob already holds these exact bytes.
        match tokio::fs::hard_link(&spooled.file, &target).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(parent) = target.parent() {
            // Make the new directory entry durable too.
            if let Ok(dir) = tokio::fs::File::open(parent).await {
                let _ = dir.sync_all().await;
            }
        }
        Ok(spooled.blob)
    }

    async fn get(&self, digest: &Digest) -> Result<Option<(u64, ByteStream)>, BlobError> {
        let Some((path, meta)) = self.regular_file(digest).await? else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(&path).await?;
        Ok(Some((
            meta.len(),
            super::verifying(
                *digest,
                tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).boxed(),
            ),
        )))
    }

    async fn local_file(&self, digest: &Digest) -> Result<Option<LocalBlob>, BlobError> {
        Ok(self
            .regular_file(digest)
            .await?
            .map(|(path, _)| LocalBlob { path, _copy: None }))
    }

    async fn exists(&self, digest: &Digest) -> Result<bool, BlobError> {
        Ok(tokio::fs::symlink_metadata(self.path_of(digest))
            .await
            .is_ok_and(|m| m.is_file()))
    }

    fn describe(&self) -> String {
        format!("local:{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{body, read_all};
    use super::*;

    #[tokio::test]
    async fn put_get_dedup_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::new(dir.path().join("blobs"), dir.path().join("tmp")).unwrap();
        let a = store.put(body(&[b"hel", b"lo"]), 100, None).await.unwrap();
        assert_eq!(a.digest, Digest::of(b"hello"));
        assert_eq!(a.size, 5);
        let again = store
            .put(body(&[b"hello"]), 100, Some(a.digest))
            .await
            .unwrap();
        assert_eq!(again, a);
        let (size, s) = store.get(&a.digest).await.unwrap().unwrap();
        assert_eq!(size, 5);
        assert_eq!(read_all(s).await, b"hello");
        assert!(store.get(&Digest::of(b"nope")).await.unwrap().is_none());
        let local = store.local_file(&a.digest).await.unwrap().unwrap();
        assert_eq!(std::fs::read(local.path()).unwrap(), b"hello");
        assert!(
            store
                .local_file(&Digest::of(b"nope"))
                .await
                .unwrap()
                .is_none()
        );

        // Oversized and mismatching bodies publish nothing and leave no temporary files.
        assert!(store.put(body(&[b"0123456789"]), 5, None).await.is_err());
        assert!(
            store
                .put(body(&[b"other"]), 100, Some(a.digest))
                .await
                .is_err()
        );
        assert!(!store.exists(&Digest::of(b"other")).await.unwrap());
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn refuses_symlinked_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::new(dir.path().join("blobs"), dir.path().join("tmp")).unwrap();
        let d = Digest::of(b"x");
        let p = store.path_of(&d);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &p).unwrap();
        assert!(store.get(&d).await.is_err());
        assert!(store.local_file(&d).await.is_err());
    }

    #[tokio::test]
    async fn a_blob_changed_on_disk_fails_its_read() {
        use futures::StreamExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::new(dir.path().join("blobs"), dir.path().join("tmp")).unwrap();
        // Several read chunks, so the stream yields data before it can know.
        let original = vec![1u8; 1 << 20];
        let a = store.put(body(&[b"x"]), 100, None).await.unwrap();
        let big = store
            .put(
                futures::stream::iter([Ok(bytes::Bytes::from(original.clone()))]).boxed(),
                1 << 21,
                None,
            )
            .await
            .unwrap();
        for (digest, tampered) in [(a.digest, vec![b'y']), (big.digest, vec![2u8; 1 << 20])] {
            let p = store.path_of(&digest);
            let mut perms = std::fs::metadata(&p).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&p, perms).unwrap();
            std::fs::write(&p, &tampered).unwrap();
            let (_, mut s) = store.get(&digest).await.unwrap().unwrap();
            let mut received = 0;
            let mut last = None;
            while let Some(item) = s.next().await {
                if let Ok(chunk) = &item {
                    received += chunk.len();
                }
                last = Some(item);
            }
            let err = last.unwrap().unwrap_err();
            assert!(err.to_string().contains("is corrupt"), "{err}");
            assert!(
                received < tampered.len(),
                "the whole tampered blob was yielded"
            );
        }
        // An intact blob streams completely.
        let b = store.put(body(&[b"fine"]), 100, None).await.unwrap();
        let (_, s) = store.get(&b.digest).await.unwrap().unwrap();
        assert_eq!(read_all(s).await, b"fine");
    }
}
