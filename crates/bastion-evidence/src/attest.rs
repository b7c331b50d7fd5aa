//! Signatures and provenance of registered model versions.
//!
//! At registration the server computes the version's OpenSSF model-signing manifest from the
//! artifact metadata (each file's blob digest is its SHA-256, so nothing is re-read), records
//! the root digest on the version, and records two signed attestations as evidence on that
//! root digest: the model signature (verifiable with `model_signing verify key` and the
//! server's public key) and a SLSA provenance v1 statement.
//!
//! Verification re-derives everything: the signature and provenance against the server's key,
//! the files listed now against the signed manifest, and every blob's bytes against its
//! digest. A version that fails is quarantined with the reason.

use std::collections::BTreeMap;
use std::path::Path;

use bastion_attest::manifest::{Manifest, Method, Resource, Serialization, components};
use bastion_attest::provenance::{
    BuildDefinition, BuildMetadata, Builder, Provenance, ResourceDescriptor, RunDetails,
};
use bastion_attest::sign::{Material, sign_statement};
use bastion_attest::statement::{Statement, Subject};
use bastion_attest::verify::{Trust, verify_bundle};
use bastion_attest::{Bundle, KeyAlgorithm, PrivateKey, PublicKey};
use bastion_core::Digest;
use bastion_core::model::Run;
use bastion_store::meta::{Evidence, EvidenceDraft};
use bastion_store::{BlobStore, MetaStore};
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::{Value, json};

use crate::EvidenceError;
use crate::files::{VersionFile, version_files};

/// The evidence kind of a model signature (an OpenSSF model-signing bundle).
pub const SIGNATURE: &str = "signature";
/// The evidence kind of a SLSA provenance statement (a bundle).
pub const PROVENANCE: &str = "provenance";
/// The build type of a model version registered from a run's artifacts.
pub const REGISTRATION_BUILD_TYPE: &str =
    "https://bastion.invalid/provenance/model-registration/v1";
/// The server's model-signing key in the Bastion home, and its public half.
pub const SIGNING_KEY_FILE: &str = "model-signing-key.pem";
pub const SIGNING_PUBLIC_KEY_FILE: &str = "model-signing-key.pub.pem";
/// The run or version tag that names the model a version was fine-tuned from
/// (`models:/name/version` or `models:/name@alias`).
pub const BASE_MODEL_TAG: &str = "bastion.base_model";
/// The run tag holding the pipeline configuration that produced the run.
pub const PIPELINE_CONFIG_TAG: &str = "bastion.pipeline.config";

/// Signs model versions with the server's key.
pub struct Attestor {
    key: PrivateKey,
    tool: String,
    builder_id: String,
}

/// What is recorded about a version's signature and provenance.
#[derive(Debug, Clone, Serialize)]
pub struct VersionAttestations {
    pub root_digest: Option<String>,
    pub signature: Option<Value>,
    pub provenance: Option<Value>,
    /// The server's public key (PEM), to verify them offline.
    pub public_key: String,
}

/// The outcome of one check within a verification.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub ok: bool,
    pub detail: String,
}

impl Check {
    fn ok(detail: impl Into<String>) -> Self {
        Self {
            ok: true,
            detail: detail.into(),
        }
    }
    fn failed(detail: impl Into<String>) -> Self {
        Self {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// A version checked end to end.
#[derive(Debug, Clone, Serialize)]
pub struct VersionVerification {
    pub name: String,
    pub version: String,
    /// The root digest recorded at registration.
    pub root_digest: Option<String>,
    /// The root digest of the files listed now.
    pub current_root_digest: Option<String>,
    pub files_checked: usize,
    pub bytes_checked: u64,
    pub signature: Check,
    pub provenance: Check,
    /// Each file that differs from what was signed, or whose stored bytes changed.
    pub mismatches: Vec<String>,
    pub verified: bool,
    /// Why the version is quarantined (now or before), if it is.
    pub quarantine: Option<String>,
}

impl VersionVerification {
    /// Why the version does not verify (the first mismatch, else the signature's or the
    /// provenance's failure), or `None` when it does.
    pub fn failure(&self) -> Option<String> {
        if self.verified {
            return None;
        }
        Some(
            self.mismatches
                .first()
                .cloned()
                .or_else(|| (!self.signature.ok).then(|| self.signature.detail.clone()))
                .unwrap_or_else(|| self.provenance.detail.clone()),
        )
    }
}

impl Attestor {
    pub fn new(key: PrivateKey) -> Self {
        let hint = key.public_key().hint();
        Self {
            key,
            tool: format!("bastion-attest/{}", env!("CARGO_PKG_VERSION")),
            // The server is known by its key: provenance from another key is another builder.
            builder_id: format!("urn:bastion:server:{}", &hint[..16]),
        }
    }

    /// An attestor with a new key that lives only in memory (tests, throwaway servers).
    pub fn ephemeral() -> Result<Self, EvidenceError> {
        PrivateKey::generate(KeyAlgorithm::EcdsaP256)
            .map(Self::new)
            .map_err(|e| EvidenceError::Key(e.to_string()))
    }

    /// The server's key from `home`, created (ECDSA P-256, so the reference `model_signing`
    /// tool can verify its signatures) with mode 0600 on first use; the public key is
    /// written beside it.
    pub fn load_or_create(home: &Path) -> Result<Self, EvidenceError> {
        let path = home.join(SIGNING_KEY_FILE);
        let key_err =
            |e: &dyn std::fmt::Display| EvidenceError::Key(format!("{}: {e}", path.display()));
        let key = match std::fs::read_to_string(&path) {
            Ok(text) => {
                bastion_store::keys::check_private(&path).map_err(|e| key_err(&e))?;
                PrivateKey::from_pem(&text).map_err(|e| key_err(&e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).map_err(|e| key_err(&e))?;
                let pem = key.to_pem().map_err(|e| key_err(&e))?;
                bastion_store::keys::write_private(&path, pem.as_bytes())
                    .map_err(|e| key_err(&e))?;
                key
            }
            Err(e) => return Err(key_err(&e)),
        };
        let public = home.join(SIGNING_PUBLIC_KEY_FILE);
        std::fs::write(&public, key.public_key().to_pem())
            .map_err(|e| EvidenceError::Key(format!("{}: {e}", public.display())))?;
        Ok(Self::new(key))
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// The tool name its evidence carries.
    pub fn tool(&self) -> &str {
        &self.tool
    }

    /// Records the root digest, signature and provenance of a newly registered version.
    /// Returns the root digest, or `None` when the version's files are not stored here.
    pub async fn attest_model_version(
        &self,
        meta: &MetaStore,
        name: &str,
        version: &str,
        actor: &str,
    ) -> Result<Option<Digest>, EvidenceError> {
        let Some((manifest, files)) = current_manifest(meta, name, version).await? else {
            return Ok(None);
        };
        let root = Digest::from_bytes(manifest.root_digest());
        let statement = Statement::for_manifest(&manifest);
        let signature = self.sign(&statement)?;
        let provenance = self.provenance(meta, name, version, &root).await?;
        let provenance = self.sign(&provenance)?;
        meta.set_model_version_root_digest(name, version, &root)
            .await?;
        for (kind, bundle) in [(SIGNATURE, &signature), (PROVENANCE, &provenance)] {
            meta.record_evidence(&EvidenceDraft {
                digest: root,
                kind: kind.to_owned(),
                tool: self.tool.clone(),
                verdict: "signed".to_owned(),
                worst: None,
                body: json!({
                    "model": name,
                    "version": version,
                    "files": files.len(),
                    "key_hint": self.key.public_key().hint(),
                    "bundle": serde_json::to_value(bundle).unwrap_or(Value::Null),
                }),
                created_by: actor.to_owned(),
            })
            .await?;
        }
        tracing::info!(model = name, version, root = %root, files = files.len(), "model version signed");
        Ok(Some(root))
    }

    pub(crate) fn sign(&self, statement: &Statement) -> Result<Bundle, EvidenceError> {
        sign_statement(statement, &self.key, &Material::KeyHint)
            .map_err(|e| EvidenceError::Key(e.to_string()))
    }

    /// The SLSA provenance of a version registered from a run: the run's parameters and
    /// pipeline configuration as external parameters; its datasets, code commit and base
    /// model as resolved dependencies; the run's times as the build's.
    async fn provenance(
        &self,
        meta: &MetaStore,
        name: &str,
        version: &str,
        root: &Digest,
    ) -> Result<Statement, EvidenceError> {
        let mv = meta.get_model_version(name, version).await?;
        let run: Option<Run> = if mv.run_id.is_empty() {
            None
        } else {
            meta.get_run(&mv.run_id).await.ok()
        };
        let run_tags: BTreeMap<&str, &str> = run
            .iter()
            .flat_map(|r| r.data.tags.iter())
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect();
        let mut external = json!({
            "registered_model": name,
            "version": version,
            "source": mv.source,
        });
        let mut dependencies = Vec::new();
        if let Some(run) = &run {
            let params: BTreeMap<&str, &str> = run
                .data
                .params
                .iter()
                .map(|p| (p.key.as_str(), p.value.as_str()))
                .collect();
            external["run_id"] = json!(run.info.run_id);
            external["experiment_id"] = json!(run.info.experiment_id);
            external["parameters"] = json!(params);
            if let Some(config) = run_tags.get(PIPELINE_CONFIG_TAG) {
                external["pipeline"] =
                    serde_json::from_str(config).unwrap_or_else(|_| json!(config));
            }
            for input in &run.inputs.dataset_inputs {
                let d = &input.dataset;
                let algorithm =
                    if d.digest.len() == 64 && d.digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                        "sha256"
                    } else {
                        "mlflowDatasetDigest"
                    };
                let context = input
                    .tags
                    .iter()
                    .find(|t| t.key == "mlflow.data.context")
                    .map(|t| t.value.clone());
                dependencies.push(ResourceDescriptor {
                    uri: d.source_uri(),
                    name: Some(d.name.clone()),
                    digest: BTreeMap::from([(algorithm.to_owned(), d.digest.clone())]),
                    annotations: Some(json!({"kind": "dataset", "source_type": d.source_type, "context": context})),
                });
            }
            if let Some(commit) = run_tags.get("mlflow.source.git.commit") {
                let repo = run_tags
                    .get("mlflow.source.git.repoURL")
                    .or_else(|| run_tags.get("mlflow.source.name"))
                    .map(|r| format!("git+{r}"));
                dependencies.push(ResourceDescriptor {
                    uri: repo,
                    name: Some("code".to_owned()),
                    digest: BTreeMap::from([("gitCommit".to_owned(), (*commit).to_owned())]),
                    annotations: Some(json!({"kind": "code"})),
                });
            }
        }
        let base = mv
            .tags
            .iter()
            .find(|t| t.key == BASE_MODEL_TAG)
            .map(|t| t.value.as_str())
            .or_else(|| run_tags.get(BASE_MODEL_TAG).copied());
        if let Some(base) = base {
            let digest = base_model_root(meta, base).await?;
            dependencies.push(ResourceDescriptor {
                uri: Some(base.to_owned()),
                name: Some("base-model".to_owned()),
                digest: digest
                    .map(|d| BTreeMap::from([("sha256".to_owned(), d.hex())]))
                    .unwrap_or_default(),
                annotations: Some(json!({"kind": "base-model"})),
            });
        }
        let registered = bastion_core::time::rfc3339(mv.creation_timestamp);
        let provenance = Provenance {
            build_definition: BuildDefinition {
                build_type: REGISTRATION_BUILD_TYPE.to_owned(),
                external_parameters: external,
                internal_parameters: Some(json!({"registered_on": registered})),
                resolved_dependencies: dependencies,
            },
            run_details: RunDetails {
                builder: Builder {
                    id: self.builder_id.clone(),
                    version: BTreeMap::from([(
                        "bastion".to_owned(),
                        env!("CARGO_PKG_VERSION").to_owned(),
                    )]),
                },
                metadata: BuildMetadata {
                    invocation_id: run.as_ref().map_or_else(
                        || format!("models:/{name}/{version}"),
                        |r| r.info.run_id.clone(),
                    ),
                    started_on: Some(run.as_ref().map_or_else(
                        || registered.clone(),
                        |r| bastion_core::time::rfc3339(r.info.start_time),
                    )),
                    finished_on: Some(
                        run.as_ref()
                            .and_then(|r| r.info.end_time)
                            .map_or_else(|| registered.clone(), bastion_core::time::rfc3339),
                    ),
                },
                byproducts: Vec::new(),
            },
        };
        Ok(provenance.statement(vec![Subject::sha256(
            format!("models:/{name}/{version}"),
            root.hex(),
        )]))
    }

    /// What is recorded about a version's signature and provenance.
    pub async fn attestations(
        &self,
        meta: &MetaStore,
        name: &str,
        version: &str,
    ) -> Result<VersionAttestations, EvidenceError> {
        let root = meta.model_version_root_digest(name, version).await?;
        let (mut signature, mut provenance) = (None, None);
        if let Some(root) = &root {
            signature = latest(meta, root, SIGNATURE)
                .await?
                .map(|e| e.body["bundle"].clone());
            provenance = latest(meta, root, PROVENANCE)
                .await?
                .map(|e| e.body["bundle"].clone());
        }
        Ok(VersionAttestations {
            root_digest: root.map(|r| r.hex()),
            signature,
            provenance,
            public_key: self.public_key().to_pem(),
        })
    }

    /// Checks a version end to end and quarantines it if its files no longer match what was
    /// signed.
    pub async fn verify_model_version(
        &self,
        meta: &MetaStore,
        blobs: &dyn BlobStore,
        name: &str,
        version: &str,
        actor: &str,
    ) -> Result<VersionVerification, EvidenceError> {
        let mut out = VersionVerification {
            name: name.to_owned(),
            version: version.to_owned(),
            root_digest: None,
            current_root_digest: None,
            files_checked: 0,
            bytes_checked: 0,
            signature: Check::failed("not checked"),
            provenance: Check::failed("not checked"),
            mismatches: Vec::new(),
            verified: false,
            quarantine: meta.model_version_quarantine(name, version).await?,
        };
        let Some(root) = meta.model_version_root_digest(name, version).await? else {
            out.signature = Check::failed(
                "no root digest was recorded for this version (registered before signing, or its files are not stored by this server)",
            );
            return Ok(out);
        };
        out.root_digest = Some(root.hex());
        let trust = Trust::Key(self.public_key());
        let signed = match latest(meta, &root, SIGNATURE).await? {
            None => {
                out.signature = Check::failed("no signature is recorded for the root digest");
                None
            }
            Some(e) => match signed_manifest(&e, &trust) {
                Err(why) => {
                    out.signature = Check::failed(why);
                    None
                }
                Ok(m) if m.root_digest() != *root.as_bytes() => {
                    out.signature = Check::failed(format!(
                        "the signature covers root digest {}, not the recorded {root}",
                        m.root_digest_hex()
                    ));
                    None
                }
                Ok(m) => {
                    out.signature = Check::ok(format!(
                        "signed by the server key {} over {} files",
                        self.public_key().hint(),
                        m.resources().len()
                    ));
                    Some(m)
                }
            },
        };
        out.provenance = match latest(meta, &root, PROVENANCE).await? {
            None => Check::failed("no provenance is recorded for the root digest"),
            Some(e) => check_provenance(&e, &trust, &root),
        };
        match current_manifest(meta, name, version).await? {
            None => out
                .mismatches
                .push("the version's files are no longer listed".to_owned()),
            Some((current, files)) => {
                out.current_root_digest = Some(current.root_digest_hex());
                if let Some(signed) = &signed {
                    out.mismatches
                        .extend(signed.diff(&current).iter().map(ToString::to_string));
                }
                for f in &files {
                    match rehash(blobs, f).await {
                        Ok(size) => out.bytes_checked += size,
                        Err(why) => out.mismatches.push(format!("{}: {why}", f.path)),
                    }
                    out.files_checked += 1;
                }
            }
        }
        out.verified = out.signature.ok && out.provenance.ok && out.mismatches.is_empty();
        let tampered = !out.mismatches.is_empty() || (!out.signature.ok && signed.is_none());
        if tampered && out.quarantine.is_none() {
            let first = out
                .mismatches
                .first()
                .cloned()
                .unwrap_or_else(|| format!("signature: {}", out.signature.detail));
            let more = out.mismatches.len().saturating_sub(1);
            let reason = if more > 0 {
                format!(
                    "quarantined by Bastion: the files no longer match their signature: {first} (and {more} more)"
                )
            } else {
                format!(
                    "quarantined by Bastion: the files no longer match their signature: {first}"
                )
            };
            meta.quarantine_model_version(name, version, &reason)
                .await?;
            tracing::warn!(model = name, version, by = actor, %reason, "model version quarantined");
            out.quarantine = Some(reason);
        }
        Ok(out)
    }
}

/// The newest evidence of `kind` on `root`, from any version of the tool.
pub(crate) async fn latest(
    meta: &MetaStore,
    root: &Digest,
    kind: &str,
) -> Result<Option<Evidence>, EvidenceError> {
    Ok(meta
        .evidence_for(root)
        .await?
        .into_iter()
        .find(|e| e.kind == kind))
}

fn recorded_bundle(e: &Evidence) -> Result<Bundle, String> {
    serde_json::to_vec(&e.body["bundle"])
        .map_err(|e| e.to_string())
        .and_then(|b| Bundle::from_json(&b))
}

fn signed_manifest(e: &Evidence, trust: &Trust) -> Result<Manifest, String> {
    let bundle = recorded_bundle(e)?;
    let statement = verify_bundle(&bundle, trust).map_err(|e| e.to_string())?;
    statement.to_manifest()
}

/// The statement a recorded bundle carries, once its signature verifies against `trust`.
pub(crate) fn verified_statement(e: &Evidence, trust: &Trust) -> Result<Statement, String> {
    recorded_bundle(e).and_then(|b| verify_bundle(&b, trust).map_err(|e| e.to_string()))
}

fn check_provenance(e: &Evidence, trust: &Trust, root: &Digest) -> Check {
    let statement = match verified_statement(e, trust) {
        Ok(s) => s,
        Err(why) => return Check::failed(why),
    };
    if let Err(why) = Provenance::from_statement(&statement) {
        return Check::failed(why);
    }
    let covers = statement
        .subject
        .iter()
        .any(|s| s.digest.get("sha256").is_some_and(|d| *d == root.hex()));
    if covers {
        Check::ok("SLSA provenance v1 signed by the server key")
    } else {
        Check::failed("the provenance's subject is not the recorded root digest")
    }
}

/// The manifest of the files a version lists now (`None` when they are not stored here or
/// are too many to sign).
async fn current_manifest(
    meta: &MetaStore,
    name: &str,
    version: &str,
) -> Result<Option<(Manifest, Vec<VersionFile>)>, EvidenceError> {
    let listed = match version_files(meta, name, version).await? {
        Ok(l) if !l.truncated => l,
        Ok(_) => {
            return Err(EvidenceError::Unavailable(
                format!("{name}/{version}"),
                format!(
                    "more than {} files; too many to sign",
                    crate::MAX_VERSION_FILES
                ),
            ));
        }
        Err(_) => return Ok(None),
    };
    let model_name = listed.root.segments().last().unwrap_or(name).to_owned();
    let resources = listed
        .files
        .iter()
        .map(|f| Resource {
            // A source that names one file is a single-file model, named "." as
            // model_signing names it.
            components: if f.path == listed.root.as_str() {
                Vec::new()
            } else {
                components(&f.path)
            },
            range: None,
            digest: *f.digest.as_bytes(),
        })
        .collect();
    let manifest = Manifest::new(
        model_name,
        Serialization {
            method: Method::Files,
            allow_symlinks: false,
            ignore_paths: Vec::new(),
        },
        resources,
    );
    Ok(Some((manifest, listed.files)))
}

/// Reads a file's blob in full; the blob store's reads check the digest, ending in an error
/// when the stored bytes no longer match it.
async fn rehash(blobs: &dyn BlobStore, f: &VersionFile) -> Result<u64, String> {
    let Some((_, mut stream)) = blobs.get(&f.digest).await.map_err(|e| e.to_string())? else {
        return Err("its stored bytes are missing".to_owned());
    };
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("its stored bytes changed ({e})"))?;
        size += chunk.len() as u64;
    }
    Ok(size)
}

/// The recorded root digest of the model a `models:/name/version` or `models:/name@alias`
/// URI names, if it is registered here and was signed.
async fn base_model_root(meta: &MetaStore, uri: &str) -> Result<Option<Digest>, EvidenceError> {
    let Some(rest) = uri.strip_prefix("models:/") else {
        return Ok(None);
    };
    let resolved = if let Some((name, alias)) = rest.split_once('@') {
        meta.get_model_version_by_alias(name, alias).await.ok()
    } else if let Some((name, version)) = rest.rsplit_once('/') {
        meta.get_model_version(name, version).await.ok()
    } else {
        None
    };
    match resolved {
        Some(v) => Ok(meta.model_version_root_digest(&v.name, &v.version).await?),
        None => Ok(None),
    }
}
