//! Self-contained proofs, as JSON files that anyone holding only the log's public key can
//! check offline: that an entry is in the log ([`InclusionBundle`]) and that a later tree
//! head extends an earlier one ([`ConsistencyBundle`]).

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::entry::{AuditEntry, Hash, hex32};
use crate::merkle;
use crate::tree_head::SignedTreeHead;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("tree head of size {0} is not signed by this key")]
    BadSignature(u64),
    #[error("entry {seq} is not in the tree of size {size}: the proof does not lead to its root")]
    NotIncluded { seq: u64, size: u64 },
    #[error("the tree of size {new} does not extend the tree of size {old}")]
    Inconsistent { old: u64, new: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct HexHash(#[serde(with = "hex32")] Hash);

/// An entry, a signed tree head covering it, and the audit path between them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionBundle {
    pub entry: AuditEntry,
    pub tree_head: SignedTreeHead,
    proof: Vec<HexHash>,
}

impl InclusionBundle {
    pub fn new(entry: AuditEntry, tree_head: SignedTreeHead, proof: Vec<Hash>) -> Self {
        Self {
            entry,
            tree_head,
            proof: proof.into_iter().map(HexHash).collect(),
        }
    }

    /// The audit path's hashes, leaf side first.
    pub fn proof(&self) -> impl Iterator<Item = &Hash> {
        self.proof.iter().map(|h| &h.0)
    }

    /// Checks the head's signature, then that the entry (re-hashed from its fields) sits at its
    /// sequence number under the head's root.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), ProofError> {
        let head = &self.tree_head.head;
        self.tree_head
            .verify(key)
            .map_err(|_| ProofError::BadSignature(head.size))?;
        let proof: Vec<Hash> = self.proof.iter().map(|h| h.0).collect();
        if merkle::verify_inclusion(
            &self.entry.leaf_hash(),
            self.entry.seq,
            head.size,
            &proof,
            &head.root,
        ) {
            Ok(())
        } else {
            Err(ProofError::NotIncluded {
                seq: self.entry.seq,
                size: head.size,
            })
        }
    }
}

/// Two signed tree heads and the proof that the second extends the first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyBundle {
    pub old: SignedTreeHead,
    pub new: SignedTreeHead,
    proof: Vec<HexHash>,
}

impl ConsistencyBundle {
    pub fn new(old: SignedTreeHead, new: SignedTreeHead, proof: Vec<Hash>) -> Self {
        Self {
            old,
            new,
            proof: proof.into_iter().map(HexHash).collect(),
        }
    }

    pub fn verify(&self, key: &VerifyingKey) -> Result<(), ProofError> {
        for h in [&self.old, &self.new] {
            h.verify(key)
                .map_err(|_| ProofError::BadSignature(h.head.size))?;
        }
        let proof: Vec<Hash> = self.proof.iter().map(|h| h.0).collect();
        let (o, n) = (&self.old.head, &self.new.head);
        if merkle::verify_consistency(o.size, n.size, &o.root, &n.root, &proof) {
            Ok(())
        } else {
            Err(ProofError::Inconsistent {
                old: o.size,
                new: n.size,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::entry::{GENESIS, Outcome};
    use crate::merkle::{Frontier, consistency_proof, inclusion_proof};
    use crate::tree_head::TreeHead;

    fn log(n: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS;
        (0..n)
            .map(|seq| {
                let e = AuditEntry {
                    seq,
                    time_ms: 1_700_000_000_000 + seq as i64,
                    actor: "user:ada".into(),
                    action: "runs.log-metric".into(),
                    resource: format!("run:{seq}"),
                    request_id: format!("r{seq}"),
                    outcome: Outcome::Success,
                    body_sha256: None,
                    prev_hash: prev,
                };
                prev = e.leaf_hash();
                e
            })
            .collect()
    }

    fn head(leaves: &[Hash], key: &SigningKey) -> SignedTreeHead {
        let mut f = Frontier::default();
        leaves.iter().for_each(|l| f.push(*l));
        TreeHead {
            size: leaves.len() as u64,
            root: f.root(),
            time_ms: 0,
        }
        .sign(key)
    }

    #[test]
    fn bundles_round_trip_through_json_and_verify() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let entries = log(13);
        let leaves: Vec<Hash> = entries.iter().map(AuditEntry::leaf_hash).collect();
        let sth = head(&leaves, &key);
        let b = InclusionBundle::new(
            entries[5].clone(),
            sth.clone(),
            inclusion_proof(&leaves, 5).unwrap(),
        );
        let b: InclusionBundle = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        assert_eq!(b.verify(&key.verifying_key()), Ok(()));

        let old = head(&leaves[..6], &key);
        let c = ConsistencyBundle::new(old, sth, consistency_proof(&leaves, 6).unwrap());
        let c: ConsistencyBundle =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(c.verify(&key.verifying_key()), Ok(()));
    }

    #[test]
    fn edited_entries_foreign_keys_and_swapped_heads_fail() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let entries = log(9);
        let leaves: Vec<Hash> = entries.iter().map(AuditEntry::leaf_hash).collect();
        let sth = head(&leaves, &key);
        let mut b = InclusionBundle::new(
            entries[3].clone(),
            sth.clone(),
            inclusion_proof(&leaves, 3).unwrap(),
        );
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert_eq!(b.verify(&other), Err(ProofError::BadSignature(9)));
        b.entry.actor = "user:mallory".into();
        assert_eq!(
            b.verify(&key.verifying_key()),
            Err(ProofError::NotIncluded { seq: 3, size: 9 })
        );
        let old = head(&leaves[..4], &key);
        let c = ConsistencyBundle::new(sth, old, consistency_proof(&leaves, 4).unwrap());
        assert!(c.verify(&key.verifying_key()).is_err());
    }
}
