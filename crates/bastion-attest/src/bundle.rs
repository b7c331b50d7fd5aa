//! The Sigstore bundle v0.3 (JSON) that carries a DSSE envelope and what verifies it: a
//! public-key hint (key-based signing, no transparency log) or an X.509 certificate chain.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dsse::{self, Envelope};

pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub media_type: String,
    pub verification_material: VerificationMaterial,
    pub dsse_envelope: Envelope,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKeyIdentifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_certificate_chain: Option<CertificateChain>,
    /// v0.3's single leaf certificate (Sigstore keyless); read, used as a one-element chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<RawCertificate>,
    #[serde(default)]
    pub tlog_entries: Vec<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct PublicKeyIdentifier {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertificateChain {
    pub certificates: Vec<RawCertificate>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RawCertificate {
    pub raw_bytes: String,
}

impl RawCertificate {
    pub fn from_der(der: &[u8]) -> Self {
        Self {
            raw_bytes: dsse::b64(der),
        }
    }
}

impl Bundle {
    /// Parses a bundle, saying which field is wrong when it is not one.
    pub fn from_json(text: &[u8]) -> Result<Self, String> {
        let bundle: Self =
            serde_json::from_slice(text).map_err(|e| format!("not a Sigstore bundle: {e}"))?;
        if bundle.media_type != BUNDLE_MEDIA_TYPE {
            return Err(format!(
                "mediaType is {:?}, expected {BUNDLE_MEDIA_TYPE:?}",
                bundle.media_type
            ));
        }
        Ok(bundle)
    }

    pub fn to_json(&self) -> String {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The certificates (DER) the bundle carries, leaf first; empty for a key-based bundle.
    pub fn certificates(&self) -> Result<Vec<Vec<u8>>, String> {
        let vm = &self.verification_material;
        let raw: Vec<&RawCertificate> = match (&vm.x509_certificate_chain, &vm.certificate) {
            (Some(chain), _) => chain.certificates.iter().collect(),
            (None, Some(c)) => vec![c],
            (None, None) => Vec::new(),
        };
        raw.iter()
            .enumerate()
            .map(|(i, c)| {
                dsse::unb64(&c.raw_bytes)
                    .map_err(|e| format!("verificationMaterial certificate {i}: {e}"))
            })
            .collect()
    }
}
