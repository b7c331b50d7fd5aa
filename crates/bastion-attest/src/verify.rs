//! Verification: the bundle's signature against a trusted key (or a certificate chain against
//! trusted roots), then the signed manifest against the model as it is now. Each failure
//! says exactly what failed.

use std::collections::BTreeSet;
use std::path::Path;

use crate::bundle::{BUNDLE_MEDIA_TYPE, Bundle};
use crate::chain::{ChainError, verify_chain};
use crate::dsse::{IN_TOTO_PAYLOAD_TYPE, pae, unb64};
use crate::hashing::{HashError, HashOptions, hash_model};
use crate::keys::PublicKey;
use crate::manifest::{Manifest, Mismatch};
use crate::statement::Statement;

/// What the verifier trusts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Exactly this public key.
    Key(PublicKey),
    /// Certificate chains ending at one of these roots (DER).
    Roots(Vec<Vec<u8>>),
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed bundle: {0}")]
    Malformed(String),
    #[error("the bundle's payload type is {0:?}, expected \"application/vnd.in-toto+json\"")]
    PayloadType(String),
    #[error("the bundle holds no signature")]
    NoSignature,
    #[error(
        "key mismatch: the bundle was signed by the key with hint {bundle}, not the given key (hint {given})"
    )]
    KeyMismatch { bundle: String, given: String },
    #[error("the signature does not verify with the {0}")]
    BadSignature(&'static str),
    #[error("the bundle has no certificate chain to check against the trusted roots")]
    NoCertificates,
    #[error("certificate chain: {0}")]
    Chain(#[from] ChainError),
    #[error("the signed statement: {0}")]
    Statement(String),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("the model does not match its signature:\n  {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Mismatch(Vec<Mismatch>),
}

/// Verifier settings beyond the trust.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Paths to leave out besides those the signature lists.
    pub ignore_paths: Vec<String>,
    pub ignore_git_paths: bool,
    /// Files the signature does not cover are not an error.
    pub ignore_unsigned_files: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            ignore_paths: Vec::new(),
            ignore_git_paths: true,
            ignore_unsigned_files: false,
        }
    }
}

/// Checks the bundle's signature and returns the statement it signs.
pub fn verify_bundle(bundle: &Bundle, trust: &Trust) -> Result<Statement, VerifyError> {
    if bundle.media_type != BUNDLE_MEDIA_TYPE {
        return Err(VerifyError::Malformed(format!(
            "mediaType is {:?}, expected {BUNDLE_MEDIA_TYPE:?}",
            bundle.media_type
        )));
    }
    let envelope = &bundle.dsse_envelope;
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(VerifyError::PayloadType(envelope.payload_type.clone()));
    }
    let payload = envelope.payload_bytes().map_err(VerifyError::Malformed)?;
    if envelope.signatures.is_empty() {
        return Err(VerifyError::NoSignature);
    }
    let (key, what) = match trust {
        Trust::Key(key) => {
            let hint = bundle
                .verification_material
                .public_key
                .as_ref()
                .and_then(|k| k.hint.as_deref());
            if let Some(hint) = hint
                && !hint.eq_ignore_ascii_case(&key.hint())
            {
                return Err(VerifyError::KeyMismatch {
                    bundle: hint.to_owned(),
                    given: key.hint(),
                });
            }
            (key.clone(), "given public key")
        }
        Trust::Roots(roots) => {
            let chain = bundle.certificates().map_err(VerifyError::Malformed)?;
            if chain.is_empty() {
                return Err(VerifyError::NoCertificates);
            }
            (verify_chain(&chain, roots)?, "signing certificate's key")
        }
    };
    let signed = pae(&envelope.payload_type, &payload);
    let mut any = false;
    for (i, s) in envelope.signatures.iter().enumerate() {
        let sig = unb64(&s.sig).map_err(|e| {
            VerifyError::Malformed(format!("dsseEnvelope.signatures[{i}].sig: {e}"))
        })?;
        any |= key.verify(&signed, &sig);
    }
    if !any {
        return Err(VerifyError::BadSignature(what));
    }
    serde_json::from_slice(&payload)
        .map_err(|e| VerifyError::Statement(format!("not an in-toto statement: {e}")))
}

/// Checks the bundle's signature and returns the model manifest it signs.
pub fn verify_manifest(bundle: &Bundle, trust: &Trust) -> Result<Manifest, VerifyError> {
    verify_bundle(bundle, trust)?
        .to_manifest()
        .map_err(VerifyError::Statement)
}

/// Verifies the model at `path` against `bundle`: the signature, then every file.
pub fn verify_model(
    path: &Path,
    bundle: &Bundle,
    trust: &Trust,
    options: &VerifyOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Manifest, VerifyError> {
    let signed = verify_manifest(bundle, trust)?;
    let mut ignore_paths = signed.serialization.ignore_paths.clone();
    ignore_paths.extend(options.ignore_paths.iter().cloned());
    let only = options.ignore_unsigned_files.then(|| {
        signed
            .resources()
            .iter()
            .map(|r| r.path())
            .collect::<BTreeSet<_>>()
    });
    let hash_options = HashOptions {
        method: signed.serialization.method,
        allow_symlinks: signed.serialization.allow_symlinks,
        ignore_paths,
        ignore_git_paths: options.ignore_git_paths,
        only,
    };
    let actual = hash_model(path, &hash_options, progress)?;
    let mismatches = signed.diff(&actual);
    if !mismatches.is_empty() {
        return Err(VerifyError::Mismatch(mismatches));
    }
    Ok(signed)
}
