//! Walks a stored log and its signed tree heads, and says where it was tampered with.
//!
//! Checks, in one pass: positions are contiguous from 0 (deletions, insertions and reorderings
//! show as gaps or repeats); each entry's recomputed hash equals the hash stored beside it
//! (edits); each entry names its predecessor's hash (the chain); and at every signed tree head
//! the Merkle root of the entries so far equals the signed root and the signature is the
//! server's (a rewrite that recomputed every stored hash is still caught there, because the
//! rewriter cannot sign).

use ed25519_dalek::VerifyingKey;

use crate::entry::{AuditEntry, GENESIS, Hash};
use crate::merkle::Frontier;
use crate::tree_head::SignedTreeHead;

/// An entry as read back from storage, with the hash that was stored beside it.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub entry: AuditEntry,
    pub stored_hash: Hash,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tamper {
    #[error(
        "entry {seq} is missing: the log jumps from {before} to {found} (deleted or reordered)"
    )]
    Missing { seq: u64, before: i128, found: u64 },
    #[error(
        "entry {seq} appears again where entry {expected} should be (inserted, duplicated or reordered)"
    )]
    OutOfPlace { seq: u64, expected: u64 },
    #[error("entry {seq} was modified: its content no longer matches its stored hash")]
    Modified { seq: u64 },
    #[error("an entry was inserted at {seq}, and the entries after it renumbered")]
    InsertedRenumbered { seq: u64 },
    #[error("entry {seq} was removed or moved, and the entries after it renumbered")]
    RemovedRenumbered { seq: u64 },
    #[error(
        "entry {seq} does not follow entry {prev}: one of them was rewritten or {seq} was inserted"
    )]
    BrokenChain { seq: u64, prev: u64 },
    #[error(
        "the signed tree head of size {size} does not match entries 0..{size}: an entry before {size} was rewritten"
    )]
    RootMismatch { size: u64 },
    #[error("the tree head of size {size} is not validly signed by the audit key")]
    BadSignature { size: u64 },
    #[error(
        "a signed tree head covers {signed} entries but only {present} are stored: entries from {present} on were deleted"
    )]
    Truncated { signed: u64, present: u64 },
    #[error("signed tree heads are not in increasing size order at size {size}")]
    HeadOrder { size: u64 },
}

impl Tamper {
    /// The earliest entry the verifier can prove is bad, or the end of the last range it can.
    pub fn first_bad_seq(&self) -> u64 {
        match *self {
            Self::Missing { seq, .. }
            | Self::Modified { seq }
            | Self::InsertedRenumbered { seq }
            | Self::RemovedRenumbered { seq } => seq,
            // Two rows claim `seq`: the conflict starts there.
            Self::OutOfPlace { seq, .. } => seq,
            Self::BrokenChain { prev, .. } => prev,
            Self::RootMismatch { size } | Self::BadSignature { size } => size.saturating_sub(1),
            Self::Truncated { present, .. } => present,
            Self::HeadOrder { size } => size,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub entries: u64,
    pub heads_verified: u64,
    /// Size of the largest signed head checked (0 if none).
    pub signed_size: u64,
    /// Entries after the last signed head: consistent, but not yet covered by a signature.
    pub unsigned_tail: u64,
    #[serde(with = "crate::entry::hex32")]
    pub root: Hash,
}

/// The verifier, fed one stored entry at a time, so a log of any size is checked in
/// O(log n) memory.
pub struct Verifier<'a> {
    heads: &'a [SignedTreeHead],
    key: &'a VerifyingKey,
    next_head: usize,
    frontier: Frontier,
    prev: Hash,
    verified: u64,
    signed_size: u64,
}

impl<'a> Verifier<'a> {
    /// `heads` must be in ascending size order.
    pub fn new(heads: &'a [SignedTreeHead], key: &'a VerifyingKey) -> Result<Self, Tamper> {
        for pair in heads.windows(2) {
            if pair[1].head.size <= pair[0].head.size {
                return Err(Tamper::HeadOrder {
                    size: pair[1].head.size,
                });
            }
        }
        let mut v = Self {
            heads,
            key,
            next_head: 0,
            frontier: Frontier::default(),
            prev: GENESIS,
            verified: 0,
            signed_size: 0,
        };
        v.check_heads()?;
        Ok(v)
    }

    /// Checks the next stored entry.
    pub fn push(&mut self, stored: StoredEntry) -> Result<(), Tamper> {
        let expected = self.frontier.size();
        let e = &stored.entry;
        if e.seq > expected {
            return Err(Tamper::Missing {
                seq: expected,
                before: i128::from(expected) - 1,
                found: e.seq,
            });
        }
        if e.seq < expected {
            return Err(Tamper::OutOfPlace {
                seq: e.seq,
                expected,
            });
        }
        let leaf = e.leaf_hash();
        if leaf != stored.stored_hash {
            return Err(diagnose_mismatch(e, &stored.stored_hash));
        }
        if e.prev_hash != self.prev {
            return Err(Tamper::BrokenChain {
                seq: e.seq,
                prev: e.seq.saturating_sub(1),
            });
        }
        self.prev = leaf;
        self.frontier.push(leaf);
        self.check_heads()
    }

    /// Every head whose size the log has reached: signed by the key, and rooted where the
    /// recomputed tree is.
    fn check_heads(&mut self) -> Result<(), Tamper> {
        while let Some(h) = self
            .heads
            .get(self.next_head)
            .filter(|h| h.head.size == self.frontier.size())
        {
            h.verify(self.key)
                .map_err(|_| Tamper::BadSignature { size: h.head.size })?;
            if h.head.root != self.frontier.root() {
                return Err(Tamper::RootMismatch { size: h.head.size });
            }
            self.verified += 1;
            self.signed_size = h.head.size;
            self.next_head += 1;
        }
        Ok(())
    }

    /// After the last entry: no signed head may claim more entries than were stored.
    pub fn finish(self) -> Result<VerifyReport, Tamper> {
        if let Some(h) = self.heads.get(self.next_head) {
            return Err(Tamper::Truncated {
                signed: h.head.size,
                present: self.frontier.size(),
            });
        }
        Ok(VerifyReport {
            entries: self.frontier.size(),
            heads_verified: self.verified,
            signed_size: self.signed_size,
            unsigned_tail: self.frontier.size() - self.signed_size,
            root: self.frontier.root(),
        })
    }
}

/// An entry whose content does not match its stored hash: if it matches under the position
/// just before or after, the rows were renumbered around an insertion or a removal, and the
/// tampering started there rather than at this row.
fn diagnose_mismatch(e: &AuditEntry, stored: &Hash) -> Tamper {
    let matches_at = |seq: u64| AuditEntry { seq, ..e.clone() }.leaf_hash() == *stored;
    if e.seq > 0 && matches_at(e.seq - 1) {
        return Tamper::InsertedRenumbered { seq: e.seq - 1 };
    }
    if matches_at(e.seq + 1) {
        return Tamper::RemovedRenumbered { seq: e.seq };
    }
    Tamper::Modified { seq: e.seq }
}

/// Verifies `entries` (in stored order) against `heads` (ascending by size).
pub fn verify_log<I>(
    entries: I,
    heads: &[SignedTreeHead],
    key: &VerifyingKey,
) -> Result<VerifyReport, Tamper>
where
    I: IntoIterator<Item = StoredEntry>,
{
    let mut v = Verifier::new(heads, key)?;
    for stored in entries {
        v.push(stored)?;
    }
    v.finish()
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::entry::tests::chain;
    use crate::merkle;
    use crate::tree_head::TreeHead;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[42u8; 32])
    }

    fn stored(entries: &[AuditEntry]) -> Vec<StoredEntry> {
        entries
            .iter()
            .map(|e| StoredEntry {
                entry: e.clone(),
                stored_hash: e.leaf_hash(),
            })
            .collect()
    }

    fn heads_every(entries: &[AuditEntry], every: usize) -> Vec<SignedTreeHead> {
        let leaves: Vec<Hash> = entries.iter().map(AuditEntry::leaf_hash).collect();
        (every..=leaves.len())
            .step_by(every)
            .map(|n| {
                TreeHead {
                    size: n as u64,
                    root: merkle::root(&leaves[..n]),
                    time_ms: n as i64,
                }
                .sign(&key())
            })
            .collect()
    }

    fn check(rows: Vec<StoredEntry>, heads: &[SignedTreeHead]) -> Result<VerifyReport, Tamper> {
        verify_log(rows, heads, &key().verifying_key())
    }

    #[test]
    fn intact_log_verifies() {
        let log = chain(100);
        let heads = heads_every(&log, 10);
        let r = check(stored(&log), &heads).unwrap();
        assert_eq!(
            (r.entries, r.heads_verified, r.signed_size, r.unsigned_tail),
            (100, 10, 100, 0)
        );
        let r = check(stored(&log[..95]), &heads[..9]).unwrap();
        assert_eq!(r.unsigned_tail, 5);
        assert_eq!(check(Vec::new(), &[]).unwrap().root, merkle::empty_root());
    }

    #[test]
    fn edits_deletions_reorders_and_insertions_name_the_first_bad_entry() {
        let log = chain(50);
        let heads = heads_every(&log, 10);

        let mut rows = stored(&log);
        rows[17].entry.actor = "mallory".into();
        assert_eq!(check(rows, &heads), Err(Tamper::Modified { seq: 17 }));

        let mut rows = stored(&log);
        rows.remove(23);
        assert_eq!(check(rows, &heads).unwrap_err().first_bad_seq(), 23);

        // Two rows swap places (their seq columns are swapped too).
        let mut rows = stored(&log);
        rows.swap(30, 31);
        let (a, b) = (rows[30].entry.seq, rows[31].entry.seq);
        rows[30].entry.seq = b;
        rows[31].entry.seq = a;
        assert_eq!(check(rows, &heads).unwrap_err().first_bad_seq(), 30);

        // A forged entry inserted at 12, with a correct-looking hash and link, later ones shifted.
        let mut rows = stored(&log);
        let mut forged = log[12].clone();
        forged.action = "forged".into();
        rows.insert(
            12,
            StoredEntry {
                stored_hash: forged.leaf_hash(),
                entry: forged,
            },
        );
        assert_eq!(check(rows, &heads).unwrap_err().first_bad_seq(), 12);

        // Insertion and removal with the later rows renumbered to hide the gap.
        let mut rows = stored(&log);
        let mut forged = log[20].clone();
        forged.action = "forged".into();
        rows.insert(
            20,
            StoredEntry {
                stored_hash: forged.leaf_hash(),
                entry: forged,
            },
        );
        for r in rows.iter_mut().skip(21) {
            r.entry.seq += 1;
        }
        assert_eq!(
            check(rows, &heads),
            Err(Tamper::InsertedRenumbered { seq: 20 })
        );
        let mut rows = stored(&log);
        rows.remove(33);
        for r in rows.iter_mut().skip(33) {
            r.entry.seq -= 1;
        }
        assert_eq!(
            check(rows, &heads),
            Err(Tamper::RemovedRenumbered { seq: 33 })
        );

        // Deleting the newest entries is caught by the last signed head.
        assert_eq!(
            check(stored(&log[..45]), &heads),
            Err(Tamper::Truncated {
                signed: 50,
                present: 45
            })
        );
    }

    #[test]
    fn a_rewrite_with_recomputed_hashes_fails_at_the_next_signed_head() {
        let log = chain(40);
        let heads = heads_every(&log, 10);
        // Rewrite entry 25 and everything after it, recomputing every stored hash and link.
        let mut rewritten = log[..25].to_vec();
        let mut prev = log[24].leaf_hash();
        for e in &log[25..] {
            let mut e = e.clone();
            e.prev_hash = prev;
            if e.seq == 25 {
                e.outcome = crate::Outcome::Denied;
            }
            prev = e.leaf_hash();
            rewritten.push(e);
        }
        assert_eq!(
            check(stored(&rewritten), &heads),
            Err(Tamper::RootMismatch { size: 30 })
        );
        // A head signed by another key is refused.
        let mut forged_heads = heads.clone();
        forged_heads[1] = TreeHead { ..heads[1].head }.sign(&SigningKey::from_bytes(&[1u8; 32]));
        assert_eq!(
            check(stored(&log), &forged_heads),
            Err(Tamper::BadSignature { size: 20 })
        );
    }
}
