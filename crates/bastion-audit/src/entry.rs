//! Audit entries and their canonical encoding. The encoding, not any serializer's output, is
//! what gets hashed, so the hash of an entry never depends on a library version.

use serde::{Deserialize, Serialize};

use crate::merkle;

pub type Hash = [u8; 32];

/// The hash an entry at position 0 names as its predecessor.
pub const GENESIS: Hash = [0u8; 32];

const DOMAIN: &[u8] = b"bastion-audit-entry-v1\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The action was carried out.
    Success,
    /// Refused by authentication, authorization, a rate limit or an input guard.
    Denied,
    /// Attempted and failed (bad input, missing resource, server fault).
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::Failure => "failure",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Self::Success),
            "denied" => Some(Self::Denied),
            "failure" => Some(Self::Failure),
            _ => None,
        }
    }
    fn code(self) -> u8 {
        match self {
            Self::Success => 1,
            Self::Denied => 2,
            Self::Failure => 3,
        }
    }
}

/// One audited event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 0; also the entry's leaf index in the Merkle tree.
    pub seq: u64,
    pub time_ms: i64,
    /// Who: a user, a token id, or `anonymous`.
    pub actor: String,
    /// What: e.g. `runs.log-metric`, `auth.login-failed`.
    pub action: String,
    /// On what: e.g. `experiment:1`, `run:346d…`, `path:/api/…`.
    pub resource: String,
    pub request_id: String,
    pub outcome: Outcome,
    /// SHA-256 of the request body, if there was one.
    #[serde(with = "opt_hex32", default)]
    pub body_sha256: Option<Hash>,
    /// The leaf hash of the entry before this one ([`GENESIS`] for the first).
    #[serde(with = "hex32")]
    pub prev_hash: Hash,
}

impl AuditEntry {
    /// The canonical bytes: a domain tag, then every field fixed-width or length-prefixed.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            DOMAIN.len()
                + 8
                + 8
                + 4 * 4
                + self.actor.len()
                + self.action.len()
                + self.resource.len()
                + self.request_id.len()
                + 1
                + 33
                + 32,
        );
        out.extend_from_slice(DOMAIN);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        for field in [&self.actor, &self.action, &self.resource, &self.request_id] {
            // Fields are capped far below 4 GiB by the writer; saturate rather than wrap.
            let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out.push(self.outcome.code());
        match &self.body_sha256 {
            Some(h) => {
                out.push(1);
                out.extend_from_slice(h);
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.prev_hash);
        out
    }

    /// The entry's Merkle leaf hash, which the next entry names as `prev_hash`.
    pub fn leaf_hash(&self) -> Hash {
        merkle::leaf_hash(&self.encode())
    }
}

pub(crate) mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

pub(crate) mod opt_hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match h {
            Some(h) => s.serialize_some(&hex::encode(h)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(Some(out))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn entry(seq: u64, prev: Hash) -> AuditEntry {
        AuditEntry {
            seq,
            time_ms: 1_795_700_000_000 + seq as i64,
            actor: "alice".into(),
            action: "runs.log-metric".into(),
            resource: format!("run:{seq:032x}"),
            request_id: format!("req-{seq}"),
            outcome: Outcome::Success,
            body_sha256: seq.is_multiple_of(2).then_some([seq as u8; 32]),
            prev_hash: prev,
        }
    }

    /// A valid chain of `n` entries.
    pub fn chain(n: u64) -> Vec<AuditEntry> {
        let mut out = Vec::new();
        let mut prev = GENESIS;
        for seq in 0..n {
            let e = entry(seq, prev);
            prev = e.leaf_hash();
            out.push(e);
        }
        out
    }

    #[test]
    fn encoding_is_unambiguous() {
        let a = entry(2, GENESIS);
        assert!(a.body_sha256.is_some());
        // Moving bytes between adjacent fields must change the encoding.
        let mut b = a.clone();
        b.actor = "alic".into();
        b.action = "eruns.log-metric".into();
        assert_ne!(a.encode(), b.encode());
        let mut c = a.clone();
        c.body_sha256 = None;
        assert_ne!(a.leaf_hash(), c.leaf_hash());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<AuditEntry>(&json).unwrap(), a);
    }
}
