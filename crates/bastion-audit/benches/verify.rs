//! Target (issue 3): verifying the log checks at least 1,000,000 entries per second.
//! `cargo bench -p bastion-audit` reports throughput in elements (entries) per second.

use bastion_audit::entry::{AuditEntry, GENESIS, Outcome};
use bastion_audit::merkle;
use bastion_audit::tree_head::TreeHead;
use bastion_audit::verify::{StoredEntry, verify_log};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;

const ENTRIES: u64 = 200_000;
const HEAD_EVERY: u64 = 1_000;

fn log() -> (
    Vec<StoredEntry>,
    Vec<bastion_audit::SignedTreeHead>,
    SigningKey,
) {
    let key = SigningKey::from_bytes(&[9u8; 32]);
    let mut rows = Vec::new();
    let mut heads = Vec::new();
    let mut frontier = merkle::Frontier::default();
    let mut prev = GENESIS;
    for seq in 0..ENTRIES {
        let e = AuditEntry {
            seq,
            time_ms: 1_795_700_000_000 + seq as i64,
            actor: "token:3f2a9c".into(),
            action: "runs.log-metric".into(),
            resource: format!("run:{seq:032x}"),
            request_id: format!("0190f3c2-8a1b-7cde-9f01-{seq:012x}"),
            outcome: Outcome::Success,
            body_sha256: Some([seq as u8; 32]),
            prev_hash: prev,
        };
        prev = e.leaf_hash();
        frontier.push(prev);
        if frontier.size().is_multiple_of(HEAD_EVERY) {
            heads.push(
                TreeHead {
                    size: frontier.size(),
                    root: frontier.root(),
                    time_ms: 0,
                }
                .sign(&key),
            );
        }
        rows.push(StoredEntry {
            entry: e,
            stored_hash: prev,
        });
    }
    (rows, heads, key)
}

fn bench(c: &mut Criterion) {
    let (rows, heads, key) = log();
    let vk = key.verifying_key();
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(ENTRIES));
    group.sample_size(10);
    group.bench_function("verify_log (heads every 1000 entries)", |b| {
        b.iter(|| {
            let report = verify_log(rows.iter().cloned(), &heads, &vk).expect("intact log");
            assert_eq!(report.entries, ENTRIES);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
