//! Dataset versions: ingest into the blob store (encrypted when the home has a dataset key),
//! materialise a version as a digest-verified local Parquet file, and record the data checks
//! as evidence on the version's digest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bastion_core::digest::{Digest, Hasher, HashingWriter};
use bastion_data::ingest::{IngestOptions, IngestSummary, ingest};
use bastion_store::crypt::DatasetCipher;
use bastion_store::meta::{DatasetVersion, DatasetVersionDraft, Evidence, EvidenceDraft};
use bastion_store::{BlobStore, MetaStore};
use futures::StreamExt;

use crate::EvidenceError;

/// Evidence kinds of the data checks.
pub const DATA_PROFILE: &str = "data.profile";
pub const DATA_VALIDATION: &str = "data.validation";
pub const DATA_PII: &str = "data.pii";
pub const DATA_POISON: &str = "data.poison";
pub const DATA_DRIFT: &str = "data.drift";
/// How a version was made from other versions (a split, a SQL transform).
pub const DATA_LINEAGE: &str = "data.lineage";
pub const DATA_TOOL: &str = concat!("bastion-data ", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Data(#[from] bastion_data::DataError),
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    #[error(transparent)]
    Crypt(#[from] bastion_store::crypt::CryptError),
    #[error("{0}")]
    Integrity(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("a background task failed: {0}")]
    Task(String),
}

impl From<bastion_store::StoreError> for DatasetError {
    fn from(e: bastion_store::StoreError) -> Self {
        Self::Evidence(e.into())
    }
}

impl From<bastion_store::blob::BlobError> for DatasetError {
    fn from(e: bastion_store::blob::BlobError) -> Self {
        Self::Evidence(e.into())
    }
}

/// The dataset registry over a metadata store and a blob store.
pub struct Datasets<'a> {
    pub meta: &'a MetaStore,
    pub blobs: &'a dyn BlobStore,
    pub cipher: Option<Arc<DatasetCipher>>,
    /// Where temporary files go (the home's `tmp`).
    pub tmp: PathBuf,
}

/// A version's Parquet as a local file, removed on drop when it is a temporary copy.
pub struct LocalParquet {
    path: PathBuf,
    _tmp: Option<tempfile::TempPath>,
    _blob: Option<bastion_store::LocalBlob>,
}

impl LocalParquet {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn hash_file(path: &Path) -> std::io::Result<Digest> {
    let mut h = Hasher::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut h)?;
    Ok(h.finish())
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DatasetError> + Send + 'static,
) -> Result<T, DatasetError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DatasetError::Task(e.to_string()))?
}

impl Datasets<'_> {
    /// Ingests `input` as the next version of `name`. Nothing is recorded unless the whole
    /// input was read: a failed ingest leaves no version behind (a blob already published
    /// for it is content-addressed and harmless).
    ///
    /// With `reuse_unchanged`, content equal to the dataset's latest version is not added
    /// again: that version is answered (flagged `true` in the result), so re-ingesting an
    /// unchanged source (an S3 object, a query) leaves the version, and what depends on it,
    /// as it was.
    #[allow(clippy::too_many_arguments)]
    pub async fn add(
        &self,
        input: &Path,
        name: &str,
        source: &str,
        actor: &str,
        opts: IngestOptions,
        reuse_unchanged: bool,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<(DatasetVersion, IngestSummary, LocalParquet, bool), DatasetError> {
        bastion_store::meta::validate_dataset_name(name)
            .map_err(bastion_store::StoreError::from)?;
        std::fs::create_dir_all(&self.tmp)?;
        let tmp = self.tmp.clone();
        let input = input.to_path_buf();
        let (parquet, summary, digest, bytes) = {
            let tmp = tmp.clone();
            blocking(move || {
                let parquet = tempfile::NamedTempFile::new_in(&tmp)?;
                let mut out = HashingWriter::new(parquet.as_file());
                let summary = ingest(&input, &mut out, &opts, progress.as_ref())?;
                let (digest, bytes) = out.finish();
                Ok((parquet, summary, digest, bytes))
            })
            .await?
        };
        let local = |parquet: tempfile::NamedTempFile| LocalParquet {
            path: parquet.path().to_path_buf(),
            _tmp: Some(parquet.into_temp_path()),
            _blob: None,
        };
        // Checked before encrypting and uploading: an unchanged source costs one read.
        if reuse_unchanged {
            match self.meta.get_dataset_version(name, None).await {
                Ok(latest) if latest.digest == digest => {
                    return Ok((latest, summary, local(parquet), true));
                }
                Ok(_) => {}
                Err(e)
                    if e.domain().is_some_and(|d| {
                        d.code == bastion_core::error::ErrorCode::ResourceDoesNotExist
                    }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let stored = match self.cipher.clone() {
            Some(c) => {
                let plain = parquet.path().to_path_buf();
                Some(
                    blocking(move || {
                        let ct = tempfile::NamedTempFile::new_in(&tmp)?;
                        c.encrypt(std::fs::File::open(&plain)?, ct.as_file())?;
                        Ok(ct)
                    })
                    .await?,
                )
            }
            None => None,
        };
        let upload = stored.as_ref().map(|c| c.path()).unwrap_or(parquet.path());
        let blob = self.put_file(upload).await?;
        let draft = DatasetVersionDraft {
            name: name.to_string(),
            digest,
            blob_digest: blob,
            encrypted: stored.is_some(),
            bytes: bytes as i64,
            rows: summary.rows as i64,
            format: summary.format.as_str().to_string(),
            source: source.to_string(),
            source_digest: summary.source_digest,
            schema: serde_json::to_value(&summary.columns).unwrap_or_default(),
            files: serde_json::to_value(&summary.files).unwrap_or_default(),
            created_by: actor.to_string(),
        };
        let v = self.meta.create_dataset_version(&draft).await?;
        // The plaintext just written is the version's content: checks at ingest read it
        // instead of fetching (and decrypting) the blob again.
        Ok((v, summary, local(parquet), false))
    }

    async fn put_file(&self, path: &Path) -> Result<Digest, DatasetError> {
        let f = tokio::fs::File::open(path).await?;
        let stream = tokio_util::io::ReaderStream::with_capacity(f, 1 << 20).boxed();
        let stored = self.blobs.put(stream, u64::MAX, None).await?;
        Ok(stored.digest)
    }

    /// The version's canonical Parquet as a local file whose plaintext digest was checked
    /// against the version's digest (decrypted first when the blob is encrypted).
    pub async fn materialize(&self, v: &DatasetVersion) -> Result<LocalParquet, DatasetError> {
        let blob = self
            .blobs
            .local_file(&v.blob_digest)
            .await?
            .ok_or(EvidenceError::Missing(v.blob_digest))?;
        let want = v.digest;
        let reference = v.reference();
        if !v.encrypted {
            let path = blob.path().to_path_buf();
            let check = path.clone();
            let got = blocking(move || Ok(hash_file(&check)?)).await?;
            if got != want {
                return Err(DatasetError::Integrity(format!(
                    "{reference}: the stored bytes have digest {got}, not the version's {want}"
                )));
            }
            return Ok(LocalParquet {
                path,
                _tmp: None,
                _blob: Some(blob),
            });
        }
        let Some(cipher) = self.cipher.clone() else {
            return Err(DatasetError::Integrity(format!(
                "{reference} is encrypted and this home has no dataset key ({})",
                bastion_store::crypt::DATASET_KEY_FILE
            )));
        };
        std::fs::create_dir_all(&self.tmp)?;
        let tmp = self.tmp.clone();
        let src = blob.path().to_path_buf();
        let out = blocking(move || {
            let out = tempfile::NamedTempFile::new_in(&tmp)?;
            let mut w = HashingWriter::new(out.as_file());
            cipher.decrypt(std::fs::File::open(&src)?, &mut w)?;
            let (got, _) = w.finish();
            if got != want {
                return Err(DatasetError::Integrity(format!(
                    "{reference}: the decrypted bytes have digest {got}, not the version's {want}"
                )));
            }
            Ok(out.into_temp_path())
        })
        .await?;
        Ok(LocalParquet {
            path: out.to_path_buf(),
            _tmp: Some(out),
            _blob: None,
        })
    }

    /// Records a data check's result on the version's digest.
    pub async fn record(
        &self,
        v: &DatasetVersion,
        kind: &str,
        verdict: &str,
        body: serde_json::Value,
        actor: &str,
    ) -> Result<Evidence, DatasetError> {
        let body = serde_json::json!({ "dataset": v.reference(), "result": body });
        Ok(self
            .meta
            .record_evidence(&EvidenceDraft {
                digest: v.digest,
                kind: kind.to_string(),
                tool: DATA_TOOL.to_string(),
                verdict: verdict.to_string(),
                worst: None,
                body,
                created_by: actor.to_string(),
            })
            .await?)
    }
}
