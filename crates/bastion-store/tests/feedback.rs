//! Delayed labels in the store: joined to their events when kept, reported back when no
//! event matches, the first label of a row standing, and a bad batch keeping nothing.

use bastion_store::MetaStore;
use bastion_store::meta::{FeedbackItem, InferenceEvent, MetaStoreOptions};
use serde_json::{Value, json};

async fn store(dir: &tempfile::TempDir) -> MetaStore {
    MetaStore::connect(&MetaStoreOptions::sqlite_file(&dir.path().join("m.db")))
        .await
        .unwrap()
}

fn event(model: &str, request_id: &str, rows: i64) -> InferenceEvent {
    InferenceEvent {
        id: 0,
        time_ms: 1_000,
        model_name: model.into(),
        version: "1".into(),
        route: "stable".into(),
        actor: "app".into(),
        request_id: request_id.into(),
        latency_us: 10,
        status: 200,
        decision: "ok".into(),
        input_digest: "d".into(),
        rows,
        features: Value::Null,
        outputs: json!({"labels": vec!["yes"; rows as usize], "confidence": vec![0.9; rows as usize]}),
        guards: Value::Null,
    }
}

fn item(request_id: &str, labels: Value) -> FeedbackItem {
    FeedbackItem {
        request_id: request_id.into(),
        labels: serde_json::from_value(labels).unwrap(),
    }
}

#[tokio::test]
async fn labels_join_their_events_and_the_first_stands() {
    let dir = tempfile::tempdir().unwrap();
    let m = store(&dir).await;
    m.insert_inference_events(&[
        event("fraud", "r1", 2),
        event("fraud", "r2", 1),
        event("other", "r3", 1),
        // The id used again: the newer request has it.
        event("fraud", "r2", 1),
    ])
    .await
    .unwrap();
    let got = m
        .record_feedback(
            "fraud",
            &[
                item("r1", json!(["yes", "no"])),
                item("r2", json!([1])),
                item("r3", json!(["yes"])),
                item("nope", json!(["no"])),
            ],
            "alice",
        )
        .await
        .unwrap();
    assert_eq!((got.stored, got.duplicates), (3, 0));
    // r3 is another model's request.
    assert_eq!(got.unmatched, vec!["r3".to_owned(), "nope".to_owned()]);
    let again = m
        .record_feedback("fraud", &[item("r1", json!(["no"]))], "bob")
        .await
        .unwrap();
    assert_eq!((again.stored, again.duplicates), (0, 1));
    let kept = m.labelled_events(0, 100).await.unwrap();
    assert_eq!(kept.len(), 3);
    assert_eq!(
        kept.iter()
            .map(|k| (k.event_id, k.row_index, k.label.clone()))
            .collect::<Vec<_>>(),
        vec![(1, 0, json!("yes")), (1, 1, json!("no")), (4, 0, json!(1))]
    );
    assert_eq!(kept[0].outputs["labels"][1], json!("yes"));
    assert_eq!(
        m.labelled_events(kept[1].feedback_id, 100)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_bad_batch_keeps_nothing_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let m = store(&dir).await;
    m.insert_inference_events(&[event("fraud", "r1", 1), event("fraud", "r2", 1)])
        .await
        .unwrap();
    let cases: Vec<(Vec<FeedbackItem>, &str)> = vec![
        (vec![], "no items"),
        (
            vec![item("r1", json!(["yes"])), item("r2", json!(["a", "b"]))],
            "feedback item 1: request 'r2' answered 1 rows of 'fraud', but 2 labels",
        ),
        (
            vec![item("", json!(["yes"]))],
            "feedback item 0: request_id",
        ),
        (vec![item("r\n1", json!(["yes"]))], "printable"),
        (vec![item(&"x".repeat(300), json!(["yes"]))], "1-256"),
        (vec![item("r1", json!([]))], "give 1-10000 labels"),
        (vec![item("r1", json!([null]))], "row 0: a label is"),
        (vec![item("r1", json!([{"a": 1}]))], "not {\"a\":1}"),
        (vec![item("r1", json!([""]))], "a label is"),
        (
            vec![item("r1", json!(["x".repeat(1001)]))],
            "1-1000 characters",
        ),
    ];
    for (items, needle) in cases {
        let e = m.record_feedback("fraud", &items, "a").await.unwrap_err();
        assert!(e.to_string().contains(needle), "{needle}: {e}");
    }
    let many: Vec<FeedbackItem> = (0..10_001)
        .map(|i| item(&format!("q{i}"), json!([1])))
        .collect();
    let e = m.record_feedback("fraud", &many, "a").await.unwrap_err();
    assert!(e.to_string().contains("at most 10000"), "{e}");
    // The batch whose second item failed kept nothing of its first.
    assert!(m.labelled_events(0, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_labels_for_one_row_keep_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let m = store(&dir).await;
    m.insert_inference_events(&[event("fraud", "r1", 1)])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            m.record_feedback("fraud", &[item("r1", json!([format!("l{i}")]))], "a")
                .await
                .unwrap()
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += t.await.unwrap().stored;
    }
    assert_eq!(stored, 1);
    assert_eq!(m.labelled_events(0, 100).await.unwrap().len(), 1);
}
