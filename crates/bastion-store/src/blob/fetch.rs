//! Copies of S3 objects in a local folder, for ingesting data that lives in a bucket:
//! `s3://bucket/key` is that object, or every object under `key/` when there is no object
//! of that exact name. The listing (keys, sizes, ETags) says whether the source changed
//! without downloading it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bastion_core::RelPath;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::BlobError;
use super::object::s3_store;

/// One object of the source: its key relative to the named key or prefix.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SourceObject {
    pub key: String,
    pub relative: String,
    pub size: u64,
    pub e_tag: Option<String>,
}

pub struct S3Source {
    store: Arc<dyn ObjectStore>,
    uri: String,
    objects: Vec<SourceObject>,
    /// Whether the URI names one object (rather than a prefix).
    single: bool,
}

fn describe(meta: &ObjectMeta, relative: String) -> SourceObject {
    SourceObject {
        key: meta.location.to_string(),
        relative,
        size: meta.size,
        e_tag: meta.e_tag.clone(),
    }
}

impl S3Source {
    /// Finds what `uri` names (credentials and endpoint from the `AWS_*` environment).
    pub async fn open(uri: &str) -> Result<Self, BlobError> {
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| BlobError::Config(format!("'{uri}' is not an s3:// URI")))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let key = key.trim_matches('/');
        if bucket.is_empty() {
            return Err(BlobError::Config(format!("'{uri}' names no bucket")));
        }
        let store: Arc<dyn ObjectStore> = Arc::new(s3_store(bucket)?);
        Self::with_store(store, uri, key).await
    }

    pub async fn with_store(
        store: Arc<dyn ObjectStore>,
        uri: &str,
        key: &str,
    ) -> Result<Self, BlobError> {
        let prefix = (!key.is_empty()).then(|| ObjectPath::from(key));
        let mut listed: Vec<ObjectMeta> = store.list(prefix.as_ref()).try_collect().await?;
        listed.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
        let mut objects = Vec::with_capacity(listed.len());
        for meta in &listed {
            let full = meta.location.as_ref();
            let relative = if key.is_empty() {
                full
            } else {
                full.strip_prefix(key)
                    .map(|r| r.trim_start_matches('/'))
                    .unwrap_or(full)
            };
            RelPath::parse(relative).map_err(|e| {
                BlobError::Config(format!("{uri}: object '{full}' cannot be copied: {e}"))
            })?;
            objects.push(describe(meta, relative.to_owned()));
        }
        if objects.is_empty() && !key.is_empty() {
            // Nothing under it as a folder: the key itself (a folder is listed first, as
            // some servers fail a HEAD on a folder's name).
            match store.head(&ObjectPath::from(key)).await {
                Ok(meta) => {
                    let name = key.rsplit('/').next().unwrap_or(key).to_owned();
                    return Ok(Self {
                        store,
                        uri: uri.to_owned(),
                        objects: vec![describe(&meta, name)],
                        single: true,
                    });
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if objects.is_empty() {
            return Err(BlobError::Config(format!(
                "{uri}: no object by that name and none under it"
            )));
        }
        Ok(Self {
            store,
            uri: uri.to_owned(),
            objects,
            single: false,
        })
    }

    pub fn objects(&self) -> &[SourceObject] {
        &self.objects
    }

    /// Downloads the objects into `dir` (which must exist) and returns what to ingest: the
    /// one file, or `dir` itself for a prefix.
    pub async fn download(&self, dir: &Path) -> Result<PathBuf, BlobError> {
        for o in &self.objects {
            let rel = RelPath::parse(&o.relative)
                .map_err(|e| BlobError::Config(format!("{}: {}: {e}", self.uri, o.key)))?;
            let target = dir.join(rel.as_str());
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            let got = self.store.get(&ObjectPath::from(o.key.as_str())).await?;
            let mut stream = got.into_stream();
            let mut file = tokio::fs::File::create(&target).await?;
            while let Some(chunk) = stream.try_next().await? {
                file.write_all(&chunk).await?;
            }
            file.flush().await?;
        }
        Ok(match (self.single, self.objects.first()) {
            (true, Some(o)) => dir.join(&o.relative),
            _ => dir.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use object_store::PutPayload;
    use object_store::memory::InMemory;

    use super::*;

    async fn bucket() -> Arc<dyn ObjectStore> {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for (k, v) in [
            ("data/a.csv", "x\n1\n"),
            ("data/sub/b.csv", "x\n2\n"),
            ("other.csv", "x\n3\n"),
        ] {
            store
                .put(
                    &ObjectPath::from(k),
                    PutPayload::from(v.as_bytes().to_vec()),
                )
                .await
                .unwrap();
        }
        store
    }

    #[tokio::test]
    async fn an_object_or_a_prefix_is_copied_with_its_layout() {
        let store = bucket().await;
        let one = S3Source::with_store(store.clone(), "s3://b/other.csv", "other.csv")
            .await
            .unwrap();
        assert_eq!(one.objects().len(), 1);
        let dir = tempfile::tempdir().unwrap();
        let path = one.download(dir.path()).await.unwrap();
        assert_eq!(std::fs::read_to_string(path).unwrap(), "x\n3\n");

        let many = S3Source::with_store(store, "s3://b/data", "data")
            .await
            .unwrap();
        let rel: Vec<&str> = many.objects().iter().map(|o| o.relative.as_str()).collect();
        assert_eq!(rel, vec!["a.csv", "sub/b.csv"]);
        let dir = tempfile::tempdir().unwrap();
        let path = many.download(dir.path()).await.unwrap();
        assert_eq!(path, dir.path());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sub/b.csv")).unwrap(),
            "x\n2\n"
        );
    }

    #[tokio::test]
    async fn nothing_there_or_a_hostile_key_is_refused() {
        let store = bucket().await;
        let e = S3Source::with_store(store.clone(), "s3://b/none", "none")
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no object by that name"), "{e}");
        store
            .put(
                &ObjectPath::from("evil/x\\y.csv"),
                PutPayload::from(b"x".to_vec()),
            )
            .await
            .unwrap();
        let e = S3Source::with_store(store, "s3://b/evil", "evil")
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cannot be copied"), "{e}");
    }
}
