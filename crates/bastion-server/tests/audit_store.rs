//! The audit log in the real databases: appends, signed heads, offline-verifiable proofs, and
//! tampering done with plain SQL (edit, delete, reorder, insert, truncate) that
//! `verify_audit` must catch and pin to the first bad entry.

mod common;

use bastion_audit::entry::Outcome;
use bastion_audit::merkle;
use bastion_audit::verify::Tamper;
use bastion_store::meta::{AuditDraft, AuditQuery};
use common::{Backend, TestServer};
use sqlx::Connection;

backend_tests!(
    audit_append_heads_and_proofs,
    audit_tampering_is_detected,
    audit_hundred_thousand_entries_verify
);

fn drafts(range: std::ops::Range<u64>) -> Vec<AuditDraft> {
    range
        .map(|i| AuditDraft {
            actor: if i % 3 == 0 {
                "alice".into()
            } else {
                "bob".into()
            },
            action: "runs.log-metric".into(),
            resource: format!("run:{:032x}", i % 7),
            request_id: format!("req-{i}"),
            outcome: if i % 10 == 0 {
                Outcome::Denied
            } else {
                Outcome::Success
            },
            body_sha256: (i % 2 == 0).then_some([i as u8; 32]),
        })
        .collect()
}

/// A log of 300 entries with signed heads at 150 and 300, signed with the server's own key
/// (its upkeep may sign the same heads first).
async fn build(b: Backend) -> TestServer {
    let s = TestServer::start(b).await;
    s.meta.record_audit_batch(&drafts(0..150)).await.unwrap();
    s.meta.sign_audit_head(&s.audit_key).await.unwrap();
    s.meta.record_audit_batch(&drafts(150..300)).await.unwrap();
    s.meta.sign_audit_head(&s.audit_key).await.unwrap();
    s
}

async fn tamper(s: &TestServer, statements: &[&str]) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&s.db_uri).await.unwrap();
    for stmt in statements {
        sqlx::query(sqlx::AssertSqlSafe(stmt.to_string()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

async fn verdict(s: &TestServer) -> Result<bastion_audit::VerifyReport, Tamper> {
    s.meta
        .verify_audit(&s.audit_key.verifying_key())
        .await
        .unwrap()
}

async fn audit_append_heads_and_proofs(b: Backend) {
    let s = build(b).await;
    let report = verdict(&s).await.unwrap();
    assert_eq!(
        (
            report.entries,
            report.heads_verified,
            report.signed_size,
            report.unsigned_tail
        ),
        (300, 2, 300, 0)
    );
    // Signing again without new entries returns the same head.
    let head = s.meta.sign_audit_head(&s.audit_key).await.unwrap().unwrap();
    assert_eq!(head.head.size, 300);
    assert_eq!(s.meta.audit_tree_heads().await.unwrap().len(), 2);

    let alice = s
        .meta
        .audit_entries(&AuditQuery {
            actor: Some("alice".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(alice.len(), 100);
    assert!(alice.iter().all(|e| e.actor == "alice"));
    let page = s
        .meta
        .audit_entries(&AuditQuery {
            after_seq: Some(10),
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [11, 12, 13, 14, 15]
    );

    // Proofs check offline with nothing but the public key.
    let public = s.audit_key.verifying_key();
    let (entry, head, proof) = s.meta.audit_inclusion_proof(123).await.unwrap();
    head.verify(&public).unwrap();
    assert_eq!(head.head.size, 300, "the newest head that covers the entry");
    assert!(merkle::verify_inclusion(
        &entry.leaf_hash(),
        123,
        head.head.size,
        &proof,
        &head.head.root
    ));
    let (old, new, proof) = s.meta.audit_consistency_proof(150, 300).await.unwrap();
    old.verify(&public).unwrap();
    new.verify(&public).unwrap();
    assert!(merkle::verify_consistency(
        150,
        300,
        &old.head.root,
        &new.head.root,
        &proof
    ));
    assert!(s.meta.audit_consistency_proof(150, 299).await.is_err());

    // Entries after the newest head are reported as not yet signed.
    s.meta.record_audit(&drafts(300..301)[0]).await.unwrap();
    let report = verdict(&s).await.unwrap();
    assert_eq!((report.entries, report.unsigned_tail), (301, 1));
    assert!(s.meta.audit_inclusion_proof(300).await.is_err());
}

async fn audit_tampering_is_detected(b: Backend) {
    let cases: &[(&[&str], u64)] = &[
        (
            &["UPDATE audit_log SET actor = 'mallory' WHERE seq = 42"],
            42,
        ),
        (
            &["UPDATE audit_log SET outcome = 'success' WHERE seq = 60"],
            60,
        ),
        (&["DELETE FROM audit_log WHERE seq = 77"], 77),
        // Reorder: two rows trade places.
        (
            &[
                "UPDATE audit_log SET seq = -1 WHERE seq = 10",
                "UPDATE audit_log SET seq = 10 WHERE seq = 11",
                "UPDATE audit_log SET seq = 11 WHERE seq = -1",
            ],
            10,
        ),
        // Insert a forged row at 200, renumbering the rest to make room.
        (
            &[
                "UPDATE audit_log SET seq = seq + 1000000 WHERE seq >= 200",
                "UPDATE audit_log SET seq = seq - 999999 WHERE seq >= 1000000",
                "INSERT INTO audit_log (seq, time_ms, actor, action, resource, request_id, outcome, body_sha256, prev_hash, entry_hash) \
                 SELECT 200, time_ms, 'mallory', 'models.delete', resource, request_id, outcome, body_sha256, prev_hash, entry_hash FROM audit_log WHERE seq = 201",
            ],
            200,
        ),
        // Delete a row and renumber to close the gap.
        (
            &[
                "DELETE FROM audit_log WHERE seq = 120",
                "UPDATE audit_log SET seq = seq - 1 WHERE seq > 120",
            ],
            120,
        ),
        // Values the log never writes: the row is pinned even though it cannot be decoded.
        (
            &["UPDATE audit_log SET entry_hash = 'not a hash' WHERE seq = 33"],
            33,
        ),
        (
            &["UPDATE audit_log SET outcome = 'quoted \"x\"' WHERE seq = 20"],
            20,
        ),
        // Cut off the newest entries.
        (&["DELETE FROM audit_log WHERE seq >= 290"], 290),
        // A forged tree head.
        (
            // Always a different first byte (a root may already start with 00).
            &[
                "UPDATE audit_tree_heads SET root = (CASE WHEN substr(root, 1, 2) = '00' THEN 'ff' ELSE '00' END) || substr(root, 3) WHERE size = 150",
            ],
            149,
        ),
    ];
    // SQLite columns take any type: a blob where text belongs.
    let sqlite_only: &[(&[&str], u64)] =
        &[(&["UPDATE audit_log SET actor = x'ff00' WHERE seq = 55"], 55)];
    let extra = if b == Backend::Sqlite {
        sqlite_only
    } else {
        &[]
    };
    for (statements, first_bad) in cases.iter().chain(extra) {
        let s = build(b).await;
        tamper(&s, statements).await;
        let err = verdict(&s)
            .await
            .expect_err(&format!("{statements:?} went unnoticed"));
        assert_eq!(err.first_bad_seq(), *first_bad, "{statements:?}: {err}");
    }
}

async fn audit_hundred_thousand_entries_verify(b: Backend) {
    let s = TestServer::start(b).await;
    for chunk in 0..10 {
        s.meta
            .record_audit_batch(&drafts(chunk * 10_000..(chunk + 1) * 10_000))
            .await
            .unwrap();
        s.meta.sign_audit_head(&s.audit_key).await.unwrap();
    }
    let report = verdict(&s).await.unwrap();
    assert_eq!(
        (report.entries, report.heads_verified, report.unsigned_tail),
        (100_000, 10, 0)
    );
}

/// Not a test: fills a Bastion home with a large audit log for `scripts/bench-audit-verify`
/// (`BASTION_BENCH_AUDIT_HOME`, `BASTION_BENCH_AUDIT_ENTRIES`).
#[tokio::test]
#[ignore]
async fn populate_audit_for_benchmark() {
    let home = std::path::PathBuf::from(std::env::var("BASTION_BENCH_AUDIT_HOME").expect("home"));
    let n: u64 = std::env::var("BASTION_BENCH_AUDIT_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    std::fs::create_dir_all(&home).unwrap();
    let key = bastion_store::keys::load_or_create_audit_key(&home).unwrap();
    let meta = bastion_store::meta::MetaStore::connect(
        &bastion_store::meta::MetaStoreOptions::sqlite_file(&home.join("bastion.db")),
    )
    .await
    .unwrap();
    let mut next = meta.audit_size().await.unwrap();
    while next < n {
        let end = (next + 100_000).min(n);
        meta.record_audit_batch(&drafts(next..end)).await.unwrap();
        meta.sign_audit_head(&key).await.unwrap();
        next = end;
    }
}
