//! DSSE (Dead Simple Signing Envelope) v1: the signature is over the pre-authentication
//! encoding of the payload type and payload, never over re-serialized JSON, so the payload's
//! exact bytes are what is signed.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// `"DSSEv1" SP len(type) SP type SP len(body) SP body`, lengths in decimal bytes.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope as JSON (base64 payload and signatures).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload: String,
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnvelopeSignature {
    pub sig: String,
    #[serde(default)]
    pub keyid: String,
}

impl Envelope {
    /// Signs `payload` with `sign` (which receives the PAE bytes).
    pub fn sign(payload_type: &str, payload: &[u8], sign: impl FnOnce(&[u8]) -> Vec<u8>) -> Self {
        let signature = sign(&pae(payload_type, payload));
        Self {
            payload: b64(payload),
            payload_type: payload_type.to_owned(),
            signatures: vec![EnvelopeSignature {
                sig: b64(&signature),
                keyid: String::new(),
            }],
        }
    }

    /// The payload's bytes.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, String> {
        unb64(&self.payload).map_err(|e| format!("dsseEnvelope.payload: {e}"))
    }
}

pub(crate) fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Decodes base64 as protobuf's JSON mapping accepts it: standard or URL-safe alphabet, with
/// or without padding.
pub(crate) fn unb64(text: &str) -> Result<Vec<u8>, String> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let trimmed = text.trim_end_matches('=');
    STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed))
        .map_err(|e| format!("not base64 ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn base64_accepts_both_alphabets() {
        assert_eq!(unb64("+/8=").unwrap(), [0xfb, 0xff]);
        assert_eq!(unb64("-_8").unwrap(), [0xfb, 0xff]);
        assert!(unb64("***").is_err());
    }
}
