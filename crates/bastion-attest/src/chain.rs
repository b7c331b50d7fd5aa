//! X.509 certificate chains, checked against trust anchors given locally (no network, no
//! system store): each certificate is signed by the next, ends at a given root, every issuer
//! is a CA, all are valid at the leaf's `notBefore` (the only time a key-signed bundle without
//! a timestamp can vouch for, as `model_signing` also uses), and the leaf may sign code.

use std::time::Duration;

use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode, oid::ObjectIdentifier};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage};

use crate::keys::PublicKey;

const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
const MAX_DEPTH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("certificate {index}: not a DER X.509 certificate ({reason})")]
    Parse { index: usize, reason: String },
    #[error("the bundle carries no certificate")]
    Empty,
    #[error("{0}: no trusted root or carried certificate issued it (with a valid signature)")]
    Untrusted(String),
    #[error("{0}: not valid at the signing time (the leaf's notBefore)")]
    Expired(String),
    #[error("{0}: issues certificates but is not a CA")]
    NotCa(String),
    #[error("{0}: may not sign (no digitalSignature key usage or codeSigning extended key usage)")]
    NotForSigning(String),
    #[error("{0}: {1}")]
    Key(String, String),
    #[error("the chain is longer than {MAX_DEPTH} certificates")]
    TooLong,
}

/// A parsed certificate and its DER form.
struct Cert {
    der: Vec<u8>,
    cert: Certificate,
}

impl Cert {
    fn parse(index: usize, der: &[u8]) -> Result<Self, ChainError> {
        let cert = Certificate::from_der(der).map_err(|e| ChainError::Parse {
            index,
            reason: e.to_string(),
        })?;
        Ok(Self {
            der: der.to_vec(),
            cert,
        })
    }

    fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }

    fn public_key(&self) -> Result<PublicKey, ChainError> {
        let spki = self
            .cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| ChainError::Key(self.subject(), e.to_string()))?;
        PublicKey::from_spki_der(&spki).map_err(|e| ChainError::Key(self.subject(), e.to_string()))
    }

    fn valid_at(&self, at: Duration) -> bool {
        let v = &self.cert.tbs_certificate.validity;
        v.not_before.to_unix_duration() <= at && at <= v.not_after.to_unix_duration()
    }

    fn is_ca(&self) -> bool {
        matches!(
            self.cert.tbs_certificate.get::<BasicConstraints>(),
            Ok(Some((_, bc))) if bc.ca
        )
    }

    /// Whether `issuer`'s key made this certificate's signature.
    fn signed_by(&self, issuer: &Cert) -> bool {
        if self.cert.tbs_certificate.issuer != issuer.cert.tbs_certificate.subject {
            return false;
        }
        let Ok(key) = issuer.public_key() else {
            return false;
        };
        let Ok(tbs) = self.cert.tbs_certificate.to_der() else {
            return false;
        };
        let Some(sig) = self.cert.signature.as_bytes() else {
            return false;
        };
        verify_with(&key, &self.cert.signature_algorithm.oid, &tbs, sig)
    }
}

fn verify_with(key: &PublicKey, algorithm: &ObjectIdentifier, message: &[u8], sig: &[u8]) -> bool {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use sha2::Digest as _;
    let prehash: Vec<u8> = match *algorithm {
        ECDSA_SHA256 => sha2::Sha256::digest(message).to_vec(),
        ECDSA_SHA384 => sha2::Sha384::digest(message).to_vec(),
        ECDSA_SHA512 => sha2::Sha512::digest(message).to_vec(),
        ED25519 => {
            return matches!(key, PublicKey::Ed25519(_)) && key.verify(message, sig);
        }
        _ => return false,
    };
    match key {
        PublicKey::P256(k) => p256::ecdsa::Signature::from_der(sig)
            .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok()),
        PublicKey::P384(k) => p384::ecdsa::Signature::from_der(sig)
            .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok()),
        PublicKey::P521(k) => p521::ecdsa::Signature::from_der(sig)
            .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok()),
        PublicKey::Ed25519(_) => false,
    }
}

/// Checks `chain` (leaf first, then the intermediates a bundle carries) against `roots` and
/// returns the leaf's public key.
pub fn verify_chain(chain: &[Vec<u8>], roots: &[Vec<u8>]) -> Result<PublicKey, ChainError> {
    let carried = chain
        .iter()
        .enumerate()
        .map(|(i, der)| Cert::parse(i, der))
        .collect::<Result<Vec<_>, _>>()?;
    let anchors = roots
        .iter()
        .enumerate()
        .map(|(i, der)| Cert::parse(i, der))
        .collect::<Result<Vec<_>, _>>()?;
    let leaf = carried.first().ok_or(ChainError::Empty)?;
    let at = leaf
        .cert
        .tbs_certificate
        .validity
        .not_before
        .to_unix_duration();
    let mut current = leaf;
    for _ in 0..MAX_DEPTH {
        if !current.valid_at(at) {
            return Err(ChainError::Expired(current.subject()));
        }
        if anchors.iter().any(|a| a.der == current.der) {
            return usable_leaf(leaf);
        }
        if let Some(root) = anchors.iter().find(|a| current.signed_by(a)) {
            if !root.is_ca() {
                return Err(ChainError::NotCa(root.subject()));
            }
            if !root.valid_at(at) {
                return Err(ChainError::Expired(root.subject()));
            }
            return usable_leaf(leaf);
        }
        let next = carried[1..]
            .iter()
            .find(|c| c.der != current.der && current.signed_by(c))
            .ok_or_else(|| ChainError::Untrusted(current.subject()))?;
        if !next.is_ca() {
            return Err(ChainError::NotCa(next.subject()));
        }
        current = next;
    }
    Err(ChainError::TooLong)
}

fn usable_leaf(leaf: &Cert) -> Result<PublicKey, ChainError> {
    let tbs = &leaf.cert.tbs_certificate;
    let signs = matches!(tbs.get::<KeyUsage>(), Ok(Some((_, ku))) if ku.digital_signature())
        || matches!(tbs.get::<ExtendedKeyUsage>(), Ok(Some((_, eku))) if eku.0.contains(&CODE_SIGNING));
    if !signs {
        return Err(ChainError::NotForSigning(leaf.subject()));
    }
    leaf.public_key()
}
