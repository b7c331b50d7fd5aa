//! Signed tree heads: the log's size and Merkle root at a moment, signed with the server's
//! ed25519 key. With only the public key anyone can check proofs against them offline.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::entry::{Hash, hex32};

const DOMAIN: &[u8] = b"bastion-audit-tree-head-v1\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHead {
    pub size: u64,
    #[serde(with = "hex32")]
    pub root: Hash,
    pub time_ms: i64,
}

impl TreeHead {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(DOMAIN.len() + 8 + 32 + 8);
        out.extend_from_slice(DOMAIN);
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.root);
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        out
    }

    pub fn sign(self, key: &SigningKey) -> SignedTreeHead {
        SignedTreeHead {
            head: self,
            signature: key.sign(&self.signed_bytes()).to_bytes().to_vec(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTreeHead {
    #[serde(flatten)]
    pub head: TreeHead,
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeHeadError {
    #[error("tree head of size {0} has a malformed signature")]
    Malformed(u64),
    #[error("tree head of size {0} is not signed by this key")]
    BadSignature(u64),
}

impl SignedTreeHead {
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), TreeHeadError> {
        let sig = Signature::from_slice(&self.signature)
            .map_err(|_| TreeHeadError::Malformed(self.head.size))?;
        key.verify(&self.head.signed_bytes(), &sig)
            .map_err(|_| TreeHeadError::BadSignature(self.head.size))
    }
}

/// A short, stable name for a public key: the first 8 bytes of its SHA-256, in hex.
pub fn key_id(key: &VerifyingKey) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_reject() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let sth = TreeHead {
            size: 10,
            root: [1u8; 32],
            time_ms: 5,
        }
        .sign(&key);
        sth.verify(&key.verifying_key()).unwrap();
        assert_eq!(
            sth.verify(&other.verifying_key()),
            Err(TreeHeadError::BadSignature(10))
        );
        let mut changed = sth.clone();
        changed.head.size = 11;
        assert!(changed.verify(&key.verifying_key()).is_err());
        let mut garbled = sth.clone();
        garbled.signature.truncate(10);
        assert_eq!(
            garbled.verify(&key.verifying_key()),
            Err(TreeHeadError::Malformed(10))
        );
        let json = serde_json::to_string(&sth).unwrap();
        assert_eq!(serde_json::from_str::<SignedTreeHead>(&json).unwrap(), sth);
        assert_eq!(key_id(&key.verifying_key()).len(), 16);
    }
}
