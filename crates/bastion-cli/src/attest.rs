//! `bastion keygen`, `bastion sign`, `bastion verify` and `bastion bom`: model signatures in the
//! OpenSSF model-signing format, checked locally or against the registry, and ML-BOMs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bastion_attest::bom::ModelBom;
use bastion_attest::hashing::{HashOptions, hash_model};
use bastion_attest::manifest::{DEFAULT_SHARD_SIZE, Method};
use bastion_attest::sign::{Material, sign_model};
use bastion_attest::verify::{Trust, VerifyError, VerifyOptions, verify_model};
use bastion_attest::{Bundle, KeyAlgorithm, PrivateKey, PublicKey};
use bastion_evidence::Attestor;
use bastion_store::MetaStore;
use clap::Args;
use serde_json::json;

use crate::config::FileConfig;
use crate::{StoreArgs, open_store, print_json};

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// ecdsa-p256, ecdsa-p384 or ecdsa-p521 (all verifiable by OpenSSF `model_signing`), or
    /// ed25519 (Bastion only).
    #[arg(long, default_value = "ecdsa-p256")]
    pub algorithm: KeyAlgorithm,
    /// Writes PREFIX.key.pem (mode 0600) and PREFIX.pub.pem; refuses to overwrite either.
    #[arg(long, default_value = "bastion-signing")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The model: a file or a folder.
    pub model: PathBuf,
    /// Private key (PEM: PKCS#8, or SEC1 as `openssl ecparam -genkey` writes it).
    #[arg(long)]
    pub key: PathBuf,
    /// Where to write the signature (a Sigstore bundle). Default: model.sig in the current
    /// folder. A signature inside the model folder is left out of what it signs.
    #[arg(long, default_value = "model.sig")]
    pub signature: PathBuf,
    /// Sign with this certificate (PEM) for the key instead of a key hint.
    #[arg(long)]
    pub certificate: Option<PathBuf>,
    /// Further certificates (PEM) of the signing certificate's chain to carry in the bundle.
    #[arg(long, requires = "certificate")]
    pub certificate_chain: Vec<PathBuf>,
    #[command(flatten)]
    pub hashing: HashingArgs,
    /// Hash in shards of this many bytes (the `shards` method) instead of whole files.
    #[arg(long, num_args = 0..=1, default_missing_value = "1000000000")]
    pub shard_size: Option<u64>,
    /// Follow symbolic links to files (default: refuse them).
    #[arg(long)]
    pub allow_symlinks: bool,
}

#[derive(Debug, Args)]
pub struct HashingArgs {
    /// Paths relative to the model to leave out.
    #[arg(long = "ignore-paths", num_args = 1..)]
    pub ignore_paths: Vec<String>,
    /// Also count .git, .gitattributes, .github and .gitignore (left out by default).
    #[arg(long)]
    pub no_ignore_git_paths: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A model file or folder, or a registered version: models:/NAME/VERSION or
    /// models:/NAME@ALIAS (checked end to end in this home's registry).
    pub model: String,
    /// The signature to check a file or folder against.
    #[arg(long, default_value = "model.sig")]
    pub signature: PathBuf,
    /// The signer's public key (PEM).
    #[arg(long, conflicts_with = "certificate_chain")]
    pub key: Option<PathBuf>,
    /// Trusted root (or intermediate) certificates (PEM) for a certificate-chain bundle.
    #[arg(long)]
    pub certificate_chain: Vec<PathBuf>,
    #[command(flatten)]
    pub hashing: HashingArgs,
    /// Files the signature does not cover are not an error.
    #[arg(long)]
    pub ignore_unsigned_files: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RegistryArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Blob store (default: as `bastion server` would use).
    #[arg(long, env = "BASTION_ARTIFACTS_DESTINATION")]
    pub artifacts_destination: Option<String>,
}

#[derive(Debug, Args)]
pub struct BomArgs {
    /// A registered version (models:/NAME/VERSION or models:/NAME@ALIAS) or a model folder.
    pub model: String,
    /// Write the BOM here instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// The model's name, for a folder (default: the folder's name).
    #[arg(long)]
    pub name: Option<String>,
    /// The model's version, for a folder.
    #[arg(long, default_value = "0")]
    pub version: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Writes `bytes` to `path` through a temporary file in the same folder, so an interrupted
/// run leaves the old file or none, never a half-written one.
pub(crate) fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn read(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading the {what} {}", path.display()))
}

pub fn keygen(args: &KeygenArgs) -> Result<()> {
    let base = args.out.display().to_string();
    let private = PathBuf::from(format!("{base}.key.pem"));
    let public = PathBuf::from(format!("{base}.pub.pem"));
    for p in [&private, &public] {
        if p.exists() {
            bail!("{} already exists; not overwriting a key", p.display());
        }
    }
    let key = PrivateKey::generate(args.algorithm)?;
    let pem = key.to_pem()?;
    bastion_store::keys::write_private(&private, pem.as_bytes())?;
    let public_key = key.public_key();
    write_whole(&public, public_key.to_pem().as_bytes())?;
    print_json(&json!({
        "algorithm": args.algorithm.as_str(),
        "private_key": private,
        "public_key": public,
        "hint": public_key.hint(),
        "openssf_compatible": args.algorithm.openssf_compatible(),
    }))
}

/// A progress bar over the bytes a model holds.
fn bytes_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bar:30}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn total_size(path: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => std::fs::read_dir(p)
                .map(|d| d.flatten().map(|e| walk(&e.path())).sum())
                .unwrap_or(0),
            Ok(m) => m.len(),
            Err(_) => 0,
        }
    }
    walk(path)
}

/// The signature path relative to the model, when it lies inside it (so it is not signed).
fn inside(model: &Path, file: &Path) -> Option<String> {
    let model = model.canonicalize().ok()?;
    let parent = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = parent.canonicalize().ok()?;
    let rel = dir.strip_prefix(&model).ok()?;
    let name = file.file_name()?.to_str()?;
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.push(name.to_owned());
    Some(parts.join("/"))
}

fn read_certificates(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let mut reader = std::io::BufReader::new(&text[..]);
        let certs: Vec<_> = rustls_pemfile_certs(&mut reader)
            .with_context(|| format!("{}: not PEM certificates", p.display()))?;
        if certs.is_empty() {
            bail!("{}: holds no PEM certificate", p.display());
        }
        out.extend(certs);
    }
    Ok(out)
}

/// The DER certificates in a PEM stream.
fn rustls_pemfile_certs(reader: &mut dyn std::io::BufRead) -> Result<Vec<Vec<u8>>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut text = Vec::new();
    reader.read_to_end(&mut text)?;
    CertificateDer::pem_slice_iter(&text)
        .map(|c| c.map(|c| c.to_vec()).map_err(|e| anyhow::anyhow!("{e:?}")))
        .collect()
}

pub fn sign(args: &SignArgs) -> Result<()> {
    let key = PrivateKey::from_pem(&read(&args.key, "private key")?)
        .with_context(|| format!("reading the private key {}", args.key.display()))?;
    let material = match &args.certificate {
        None => Material::KeyHint,
        Some(cert) => {
            let mut chain = read_certificates(std::slice::from_ref(cert))?;
            chain.truncate(1);
            chain.extend(read_certificates(&args.certificate_chain)?);
            Material::Certificates(chain)
        }
    };
    let mut ignore_paths = args.hashing.ignore_paths.clone();
    if let Some(rel) = inside(&args.model, &args.signature) {
        ignore_paths.push(rel);
    }
    let options = HashOptions {
        method: match args.shard_size {
            None => Method::Files,
            Some(0) => bail!("--shard-size must be at least 1 byte"),
            Some(shard_size) => Method::Shards { shard_size },
        },
        allow_symlinks: args.allow_symlinks,
        ignore_paths,
        ignore_git_paths: !args.hashing.no_ignore_git_paths,
        only: None,
    };
    let bar = bytes_bar(total_size(&args.model), "hashing");
    let start = Instant::now();
    let bytes = AtomicU64::new(0);
    let (manifest, bundle) = sign_model(&args.model, &options, &key, &material, &|n| {
        bytes.fetch_add(n, Ordering::Relaxed);
        bar.inc(n);
    })
    .with_context(|| format!("signing {}", args.model.display()))?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    write_whole(&args.signature, bundle.to_json().as_bytes())?;
    let bytes = bytes.load(Ordering::Relaxed);
    print_json(&json!({
        "signature": args.signature,
        "model": manifest.model_name,
        "root_digest": manifest.root_digest_hex(),
        "resources": manifest.resources().len(),
        "bytes": bytes,
        "seconds": seconds,
        "key_algorithm": key.algorithm().as_str(),
        "key_hint": key.public_key().hint(),
    }))?;
    if args.shard_size == Some(DEFAULT_SHARD_SIZE) {
        tracing::debug!("shards of the default size");
    }
    Ok(())
}

/// Runs `bastion verify` and returns the exit code: 0 verified, 1 not verified.
pub fn verify(home: &Path, args: &VerifyArgs) -> Result<i32> {
    if let Some(rest) = args.model.strip_prefix("models:/") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        return runtime.block_on(verify_registered(home, rest, args));
    }
    let trust = match (&args.key, args.certificate_chain.is_empty()) {
        (Some(k), _) => Trust::Key(
            PublicKey::from_pem(&read(k, "public key")?)
                .with_context(|| format!("reading the public key {}", k.display()))?,
        ),
        (None, false) => Trust::Roots(read_certificates(&args.certificate_chain)?),
        (None, true) => {
            bail!("give the signer's --key, or --certificate-chain for a certificate bundle")
        }
    };
    let text = std::fs::read(&args.signature)
        .with_context(|| format!("reading the signature {}", args.signature.display()))?;
    let bundle = match Bundle::from_json(&text) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "Verification failed: malformed bundle {}: {e}",
                args.signature.display()
            );
            return Ok(1);
        }
    };
    let model = PathBuf::from(&args.model);
    let mut ignore_paths = args.hashing.ignore_paths.clone();
    if let Some(rel) = inside(&model, &args.signature) {
        ignore_paths.push(rel);
    }
    let options = VerifyOptions {
        ignore_paths,
        ignore_git_paths: !args.hashing.no_ignore_git_paths,
        ignore_unsigned_files: args.ignore_unsigned_files,
    };
    let bar = bytes_bar(total_size(&model), "verifying");
    let outcome = verify_model(&model, &bundle, &trust, &options, &|n| bar.inc(n));
    bar.finish_and_clear();
    match outcome {
        Ok(manifest) => {
            print_json(&json!({
                "verified": true,
                "model": manifest.model_name,
                "root_digest": manifest.root_digest_hex(),
                "resources": manifest.resources().len(),
            }))?;
            Ok(0)
        }
        Err(VerifyError::Hash(e)) => Err(e).context("hashing the model"),
        Err(e) => {
            eprintln!("Verification failed: {e}");
            print_json(&json!({"verified": false, "error": e.to_string()}))?;
            Ok(1)
        }
    }
}

/// `NAME/VERSION` or `NAME@ALIAS` → (name, version).
pub(crate) async fn resolve(meta: &MetaStore, reference: &str) -> Result<(String, String)> {
    if let Some((name, alias)) = reference.split_once('@') {
        let v = meta
            .get_model_version_by_alias(name, alias)
            .await
            .with_context(|| format!("resolving models:/{reference}"))?;
        return Ok((v.name, v.version));
    }
    let Some((name, version)) = reference.rsplit_once('/') else {
        bail!("models:/{reference}: expected models:/NAME/VERSION or models:/NAME@ALIAS");
    };
    let v = meta
        .get_model_version(name, version)
        .await
        .with_context(|| format!("resolving models:/{reference}"))?;
    Ok((v.name, v.version))
}

pub(crate) async fn open_registry(
    home: &Path,
    args: &RegistryArgs,
) -> Result<(MetaStore, Box<dyn bastion_store::BlobStore>)> {
    let file = FileConfig::load(None, home)?;
    let meta = open_store(home, &file, &args.store).await?;
    let destination = args
        .artifacts_destination
        .clone()
        .or_else(|| file.server.artifacts_destination.clone())
        .unwrap_or_else(|| home.join("blobs").display().to_string());
    let blobs = bastion_store::blob::open(&destination, home.join("tmp"))
        .with_context(|| format!("opening the blob store {destination}"))?;
    Ok((meta, blobs))
}

async fn verify_registered(home: &Path, reference: &str, args: &VerifyArgs) -> Result<i32> {
    let (meta, blobs) = open_registry(home, &args.registry).await?;
    let (name, version) = resolve(&meta, reference).await?;
    let attestor = Attestor::load_or_create(home).context("loading the model-signing key")?;
    let actor = format!("cli:{}", whoami());
    let report = attestor
        .verify_model_version(&meta, blobs.as_ref(), &name, &version, &actor)
        .await?;
    print_json(&report)?;
    match report.failure() {
        None => Ok(0),
        Some(why) => {
            eprintln!("Verification failed for models:/{name}/{version}: {why}");
            Ok(1)
        }
    }
}

pub(crate) fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned())
}

pub async fn bom(home: &Path, args: &BomArgs) -> Result<()> {
    let mut bom = match args.model.strip_prefix("models:/") {
        Some(reference) => registered_bom(home, reference, &args.registry).await?,
        None => folder_bom(Path::new(&args.model), args)?,
    };
    bom.timestamp = bastion_core::time::rfc3339(bastion_core::time::now_ms());
    bom.serial_number = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    let text = serde_json::to_string_pretty(&bom.to_json())?;
    match &args.output {
        Some(p) => write_whole(p, text.as_bytes()),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

fn folder_bom(path: &Path, args: &BomArgs) -> Result<ModelBom> {
    let manifest = hash_model(path, &HashOptions::default(), &|_| {})
        .with_context(|| format!("hashing {}", path.display()))?;
    Ok(ModelBom {
        name: args
            .name
            .clone()
            .unwrap_or_else(|| manifest.model_name.clone()),
        version: args.version.clone(),
        root_sha256: Some(manifest.root_digest_hex()),
        files: manifest
            .resources()
            .iter()
            .map(|r| (r.name(), hex::encode(r.digest)))
            .collect(),
        ..ModelBom::default()
    })
}

async fn registered_bom(home: &Path, reference: &str, args: &RegistryArgs) -> Result<ModelBom> {
    let (meta, _) = open_registry(home, args).await?;
    let (name, version) = resolve(&meta, reference).await?;
    Ok(bastion_evidence::bom::model_version_bom(&meta, &name, &version).await?)
}
