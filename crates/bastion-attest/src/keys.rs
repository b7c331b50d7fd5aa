//! Signing keys: ECDSA over P-256, P-384 and P-521 (the curves OpenSSF model signing accepts,
//! each with its matching SHA-2) and Ed25519 (for Bastion's own attestations). Private keys
//! are read as PKCS#8 or SEC1 PEM and written as PKCS#8 PEM; public keys as SubjectPublicKeyInfo
//! PEM.

use std::fmt;

use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Malformed(String),
    #[error(
        "the private key is encrypted; decrypt it first (e.g. `openssl pkey -in KEY -out PLAIN`)"
    )]
    Encrypted,
    #[error("unsupported key: {0} (supported: ECDSA P-256, P-384, P-521 and Ed25519)")]
    Unsupported(String),
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// The kinds of key Bastion signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    Ed25519,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 4] = [
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::EcdsaP521,
        Self::Ed25519,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::EcdsaP521 => "ecdsa-p521",
            Self::Ed25519 => "ed25519",
        }
    }

    /// Whether `model_signing` (the reference OpenSSF tool) can verify this key's signatures.
    pub fn openssf_compatible(self) -> bool {
        self != Self::Ed25519
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| KeyError::Unsupported(format!("algorithm {s:?}")))
    }
}

/// A private key.
pub enum PrivateKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

/// A public key.
#[derive(Clone)]
pub enum PublicKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        // The SubjectPublicKeyInfo names algorithm, curve and point: equal keys encode equally.
        self.to_pem() == other.to_pem()
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({})", self.algorithm())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, {})", self.algorithm(), self.hint())
    }
}

fn random_bytes(buf: &mut [u8]) -> Result<(), KeyError> {
    use rand::TryRngCore;
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .map_err(|e| KeyError::Random(e.to_string()))
}

fn malformed(what: &str) -> impl Fn(String) -> KeyError + '_ {
    move |e| KeyError::Malformed(format!("{what}: {e}"))
}

impl PrivateKey {
    /// A new key from the operating system's random source.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, KeyError> {
        // Scalars are drawn until one is valid (non-zero and below the group order), which
        // for these curves almost always means the first.
        loop {
            let key = match algorithm {
                KeyAlgorithm::EcdsaP256 => {
                    let mut b = Zeroizing::new([0u8; 32]);
                    random_bytes(b.as_mut())?;
                    p256::ecdsa::SigningKey::from_slice(b.as_ref())
                        .ok()
                        .map(Self::P256)
                }
                KeyAlgorithm::EcdsaP384 => {
                    let mut b = Zeroizing::new([0u8; 48]);
                    random_bytes(b.as_mut())?;
                    p384::ecdsa::SigningKey::from_slice(b.as_ref())
                        .ok()
                        .map(Self::P384)
                }
                KeyAlgorithm::EcdsaP521 => {
                    let mut b = Zeroizing::new([0u8; 66]);
                    random_bytes(b.as_mut())?;
                    b[0] &= 0x01;
                    p521::ecdsa::SigningKey::from_slice(b.as_ref())
                        .ok()
                        .map(Self::P521)
                }
                KeyAlgorithm::Ed25519 => {
                    let mut b = Zeroizing::new([0u8; 32]);
                    random_bytes(b.as_mut())?;
                    Some(Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(&b)))
                }
            };
            if let Some(key) = key {
                return Ok(key);
            }
        }
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            Self::P256(_) => KeyAlgorithm::EcdsaP256,
            Self::P384(_) => KeyAlgorithm::EcdsaP384,
            Self::P521(_) => KeyAlgorithm::EcdsaP521,
            Self::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// Reads a PEM private key: PKCS#8 (`PRIVATE KEY`) of any supported algorithm, or SEC1
    /// (`EC PRIVATE KEY`, what `openssl ecparam -genkey` writes) for the ECDSA curves.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let label = pem_label(text)?;
        match label.as_str() {
            "ENCRYPTED PRIVATE KEY" => Err(KeyError::Encrypted),
            "PRIVATE KEY" => Self::from_pkcs8_pem(text),
            "EC PRIVATE KEY" => {
                if text.contains("Proc-Type: 4,ENCRYPTED") {
                    return Err(KeyError::Encrypted);
                }
                if let Ok(k) = p256::SecretKey::from_sec1_pem(text) {
                    return Ok(Self::P256(k.into()));
                }
                if let Ok(k) = p384::SecretKey::from_sec1_pem(text) {
                    return Ok(Self::P384(k.into()));
                }
                if let Ok(k) = p521::SecretKey::from_sec1_pem(text) {
                    let key = p521::ecdsa::SigningKey::from_bytes(&k.to_bytes())
                        .map_err(|e| malformed("P-521 key")(e.to_string()))?;
                    return Ok(Self::P521(key));
                }
                Err(KeyError::Unsupported(
                    "an EC key on a curve other than P-256, P-384 or P-521".into(),
                ))
            }
            other => Err(KeyError::Malformed(format!(
                "expected a PEM private key, found a {other:?} block"
            ))),
        }
    }

    fn from_pkcs8_pem(text: &str) -> Result<Self, KeyError> {
        if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(text) {
            return Ok(Self::P256(k));
        }
        if let Ok(k) = p384::ecdsa::SigningKey::from_pkcs8_pem(text) {
            return Ok(Self::P384(k));
        }
        if let Ok(k) = p521::SecretKey::from_pkcs8_pem(text) {
            let key = p521::ecdsa::SigningKey::from_bytes(&k.to_bytes())
                .map_err(|e| malformed("P-521 key")(e.to_string()))?;
            return Ok(Self::P521(key));
        }
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(text) {
            return Ok(Self::Ed25519(k));
        }
        Err(KeyError::Unsupported(
            "a PKCS#8 key that is not ECDSA P-256/P-384/P-521 or Ed25519 (RSA keys are not accepted)"
                .into(),
        ))
    }

    /// The key as PKCS#8 PEM.
    pub fn to_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let pem = match self {
            Self::P256(k) => k.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string()),
            Self::P384(k) => k.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string()),
            Self::P521(k) => p521::SecretKey::from_bytes(&k.to_bytes())
                .map_err(|e| e.to_string())
                .and_then(|s| s.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())),
            Self::Ed25519(k) => k
                .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                .map_err(|e| e.to_string()),
        };
        pem.map_err(malformed("encoding the private key"))
    }

    pub fn public_key(&self) -> PublicKey {
        match self {
            Self::P256(k) => PublicKey::P256(*k.verifying_key()),
            Self::P384(k) => PublicKey::P384(*k.verifying_key()),
            Self::P521(k) => PublicKey::P521(p521::ecdsa::VerifyingKey::from(k)),
            Self::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
        }
    }

    /// Signs `message`: ECDSA with the curve's SHA-2 (DER-encoded signature) or Ed25519.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer as _;
        use p256::ecdsa::signature::Signer as _;
        match self {
            Self::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign(message);
                s.to_der().as_bytes().to_vec()
            }
            Self::P384(k) => {
                let s: p384::ecdsa::Signature = k.sign(message);
                s.to_der().as_bytes().to_vec()
            }
            Self::P521(k) => {
                let s: p521::ecdsa::Signature = p521::ecdsa::signature::Signer::sign(k, message);
                s.to_der().as_bytes().to_vec()
            }
            Self::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
        }
    }
}

impl PublicKey {
    /// Reads a SubjectPublicKeyInfo PEM (`PUBLIC KEY`) public key.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let label = pem_label(text)?;
        if label != "PUBLIC KEY" {
            return Err(KeyError::Malformed(format!(
                "expected a PEM public key (\"PUBLIC KEY\"), found a {label:?} block"
            )));
        }
        let (_, der) = p256::pkcs8::der::Document::from_pem(text)
            .map_err(|e| KeyError::Malformed(format!("public key PEM: {e}")))?;
        Self::from_spki_der(der.as_bytes())
    }

    /// Reads a DER SubjectPublicKeyInfo (as found in a certificate).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(der) {
            return Ok(Self::P256(k));
        }
        if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_der(der) {
            return Ok(Self::P384(k));
        }
        if let Ok(k) = p521::PublicKey::from_public_key_der(der) {
            return Self::p521_from_sec1(&k.to_sec1_bytes());
        }
        if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_der(der) {
            return Ok(Self::Ed25519(k));
        }
        Err(KeyError::Unsupported(
            "a public key that is not ECDSA P-256/P-384/P-521 or Ed25519".into(),
        ))
    }

    fn p521_from_sec1(bytes: &[u8]) -> Result<Self, KeyError> {
        p521::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
            .map(Self::P521)
            .map_err(|e| malformed("P-521 public key")(e.to_string()))
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            Self::P256(_) => KeyAlgorithm::EcdsaP256,
            Self::P384(_) => KeyAlgorithm::EcdsaP384,
            Self::P521(_) => KeyAlgorithm::EcdsaP521,
            Self::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// The key as SubjectPublicKeyInfo PEM with LF line endings (the form whose SHA-256 is
    /// the bundle's key hint).
    pub fn to_pem(&self) -> String {
        let pem = match self {
            Self::P256(k) => k
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| e.to_string()),
            Self::P384(k) => k
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| e.to_string()),
            Self::P521(k) => {
                p521::PublicKey::from_sec1_bytes(&k.to_encoded_point(false).to_bytes())
                    .map_err(|e| e.to_string())
                    .and_then(|p| {
                        p.to_public_key_pem(LineEnding::LF)
                            .map_err(|e| e.to_string())
                    })
            }
            Self::Ed25519(k) => k
                .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                .map_err(|e| e.to_string()),
        };
        // Encoding a valid in-memory public key cannot fail; an empty string would only
        // make the hint match nothing.
        pem.unwrap_or_default()
    }

    /// Hex SHA-256 of the PEM text: `verificationMaterial.publicKey.hint` in a bundle.
    pub fn hint(&self) -> String {
        hex::encode(Sha256::digest(self.to_pem().as_bytes()))
    }

    /// Checks `signature` over `message`. ECDSA signatures are DER; Ed25519 ones 64 bytes.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        match self {
            Self::P256(k) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
            Self::P384(k) => p384::ecdsa::Signature::from_der(signature)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
            Self::P521(k) => p521::ecdsa::Signature::from_der(signature)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
            Self::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify_strict(message, &s).is_ok()),
        }
    }
}

/// The label of the first PEM block in `text`.
fn pem_label(text: &str) -> Result<String, KeyError> {
    let start = text
        .find("-----BEGIN ")
        .ok_or_else(|| KeyError::Malformed("not PEM: no \"-----BEGIN\" line".into()))?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let end = rest
        .find("-----")
        .ok_or_else(|| KeyError::Malformed("not PEM: unterminated BEGIN line".into()))?;
    Ok(rest[..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_round_trips_through_pem_and_signs() {
        for alg in KeyAlgorithm::ALL {
            let key = PrivateKey::generate(alg).unwrap();
            let pem = key.to_pem().unwrap();
            let back = PrivateKey::from_pem(&pem).unwrap();
            assert_eq!(back.algorithm(), alg);
            let public = PublicKey::from_pem(&key.public_key().to_pem()).unwrap();
            assert_eq!(public, back.public_key());
            let sig = back.sign(b"message");
            assert!(public.verify(b"message", &sig), "{alg}");
            assert!(!public.verify(b"messagE", &sig), "{alg}");
            assert!(!public.verify(b"message", &sig[..sig.len() - 1]), "{alg}");
            let other = PrivateKey::generate(alg).unwrap().public_key();
            assert!(!other.verify(b"message", &sig), "{alg}");
            assert_eq!(public.hint().len(), 64);
        }
    }

    #[test]
    fn reads_openssl_sec1_keys_and_matches_python_hint() {
        // `openssl ecparam -name prime256v1 -genkey -noout` and its public key; the hint was
        // recorded from model_signing 1.1.1 for this key.
        let key = PrivateKey::from_pem(include_str!("../tests/data/p256-sec1.pem")).unwrap();
        assert_eq!(key.algorithm(), KeyAlgorithm::EcdsaP256);
        let public = PublicKey::from_pem(include_str!("../tests/data/p256-pub.pem")).unwrap();
        assert_eq!(key.public_key(), public);
        assert_eq!(public.to_pem(), include_str!("../tests/data/p256-pub.pem"));
        assert_eq!(
            public.hint(),
            include_str!("../tests/data/p256-hint.txt").trim()
        );
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        assert!(matches!(
            PrivateKey::from_pem(
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
            ),
            Err(KeyError::Encrypted)
        ));
        assert!(matches!(
            PrivateKey::from_pem("hello"),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            PublicKey::from_pem(
                &PrivateKey::generate(KeyAlgorithm::EcdsaP256)
                    .unwrap()
                    .to_pem()
                    .unwrap()
            ),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            PrivateKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            Err(KeyError::Unsupported(_))
        ));
        assert!("rsa".parse::<KeyAlgorithm>().is_err());
    }
}
