//! Signing: a statement becomes a DSSE envelope in a Sigstore bundle whose verification
//! material is the key's hint or the signing certificate and its chain.

use std::path::Path;

use crate::bundle::{
    BUNDLE_MEDIA_TYPE, Bundle, CertificateChain, PublicKeyIdentifier, RawCertificate,
    VerificationMaterial,
};
use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::hashing::{HashError, HashOptions, hash_model};
use crate::keys::{PrivateKey, PublicKey};
use crate::manifest::Manifest;
use crate::statement::Statement;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("the signing certificate: {0}")]
    Certificate(String),
    #[error("the signing certificate's public key is not the private key's")]
    CertificateKeyMismatch,
}

/// What a bundle tells the verifier about the key.
#[derive(Debug, Clone, Default)]
pub enum Material {
    /// The SHA-256 hint of the public key (the verifier brings the key).
    #[default]
    KeyHint,
    /// The signing certificate (DER) followed by the rest of its chain.
    Certificates(Vec<Vec<u8>>),
}

/// Signs `statement` with `key`.
pub fn sign_statement(
    statement: &Statement,
    key: &PrivateKey,
    material: &Material,
) -> Result<Bundle, SignError> {
    let verification_material = match material {
        Material::KeyHint => VerificationMaterial {
            public_key: Some(PublicKeyIdentifier {
                hint: Some(key.public_key().hint()),
            }),
            ..VerificationMaterial::default()
        },
        Material::Certificates(chain) => {
            let leaf = chain
                .first()
                .ok_or_else(|| SignError::Certificate("no certificate given".into()))?;
            let cert = <x509_cert::Certificate as x509_cert::der::Decode>::from_der(leaf)
                .map_err(|e| SignError::Certificate(e.to_string()))?;
            let spki =
                x509_cert::der::Encode::to_der(&cert.tbs_certificate.subject_public_key_info)
                    .map_err(|e| SignError::Certificate(e.to_string()))?;
            let cert_key = PublicKey::from_spki_der(&spki)
                .map_err(|e| SignError::Certificate(e.to_string()))?;
            if cert_key != key.public_key() {
                return Err(SignError::CertificateKeyMismatch);
            }
            VerificationMaterial {
                x509_certificate_chain: Some(CertificateChain {
                    certificates: chain.iter().map(|c| RawCertificate::from_der(c)).collect(),
                }),
                ..VerificationMaterial::default()
            }
        }
    };
    // Serializing a statement (plain data) cannot fail.
    let payload = serde_json::to_vec(statement).unwrap_or_default();
    Ok(Bundle {
        media_type: BUNDLE_MEDIA_TYPE.to_owned(),
        verification_material,
        dsse_envelope: Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, |pae| key.sign(pae)),
    })
}

/// Hashes the model at `path` and signs its manifest.
pub fn sign_model(
    path: &Path,
    options: &HashOptions,
    key: &PrivateKey,
    material: &Material,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Manifest, Bundle), SignError> {
    let manifest = hash_model(path, options, progress)?;
    let bundle = sign_statement(&Statement::for_manifest(&manifest), key, material)?;
    Ok((manifest, bundle))
}
