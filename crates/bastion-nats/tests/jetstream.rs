//! The event stream against a real `nats-server`: events come out in stream order with the
//! sequence as their id; what a dead worker held comes back, in order, after the ack wait;
//! what a committed position covers is never handed out again; a released batch goes to
//! the next reader at once; and gaps nothing will fill (a deleted or unreadable message)
//! are skipped.

use std::time::Duration;

use bastion_nats::test_server::NatsServer;
use bastion_nats::{EventConsumer, EventPublisher, NatsSettings};
use bastion_store::meta::InferenceEvent;
use serde_json::{Value, json};

fn event(i: usize) -> InferenceEvent {
    InferenceEvent {
        id: 0,
        time_ms: i as i64,
        model_name: "m".into(),
        version: "1".into(),
        route: "stable".into(),
        actor: "app".into(),
        request_id: format!("r{i}"),
        latency_us: 10,
        status: 200,
        decision: "ok".into(),
        input_digest: String::new(),
        rows: 1,
        features: Value::Null,
        outputs: json!({"labels": ["x"]}),
        guards: Value::Null,
    }
}

fn settings(nats: &NatsServer) -> NatsSettings {
    NatsSettings {
        ack_wait: Duration::from_millis(800),
        ..nats.settings()
    }
}

async fn publish(p: &EventPublisher, range: std::ops::Range<usize>) {
    let events: Vec<_> = range.map(event).collect();
    let out = p.publish(&events).await.unwrap();
    assert_eq!((out.stored, out.lost), (events.len(), 0));
}

/// Reads as a worker does, committing each batch, until `n` events came or `tries` reads
/// found nothing new. Returns the request ids read, in order, and the final position.
async fn read(c: &EventConsumer, mut after: u64, n: usize, tries: usize) -> (Vec<String>, u64) {
    let mut got = Vec::new();
    let mut idle = 0;
    while got.len() < n && idle < tries {
        let batch: Vec<(u64, InferenceEvent)> = c.after(after, 30).await.unwrap();
        if batch.is_empty() {
            idle += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        for (seq, e) in batch {
            assert!(seq > after, "event {seq} at or below {after}");
            after = seq;
            got.push(e.request_id);
        }
    }
    (got, after)
}

fn ids(range: impl Iterator<Item = usize>) -> Vec<String> {
    range.map(|i| format!("r{i}")).collect()
}

#[tokio::test]
async fn events_come_out_in_stream_order_once() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let s = settings(&nats);
    let p = EventPublisher::connect(&s).await.unwrap();
    publish(&p, 0..100).await;
    let c = EventConsumer::join(&s, "group", 0).await.unwrap();
    assert_eq!(c.describe(), format!("nats:{}", s.stream));
    let first: Vec<(u64, InferenceEvent)> = c.after(0, 40).await.unwrap();
    let seqs: Vec<u64> = first.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    // Not committed yet: the same events again.
    assert_eq!(c.after::<InferenceEvent>(0, 40).await.unwrap(), first);
    let (rest, at) = read(&c, 40, 60, 3).await;
    assert_eq!(rest, ids(40..100));
    assert_eq!(at, 100);
    assert!(c.after::<InferenceEvent>(100, 40).await.unwrap().is_empty());

    // A consumer joining the group later starts after the group's position.
    publish(&p, 100..110).await;
    let (more, _) = read(&c, 100, 10, 3).await;
    assert_eq!(more, ids(100..110));
}

#[tokio::test]
async fn what_a_dead_worker_held_comes_back_in_order_and_committed_events_do_not() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let s = settings(&nats);
    let p = EventPublisher::connect(&s).await.unwrap();
    publish(&p, 0..90).await;
    // Worker A reads 1..=60 in two batches, commits 30, and dies before acknowledging
    // anything (its connection goes with it).
    let a = EventConsumer::join(&s, "g", 0).await.unwrap();
    assert_eq!(a.after::<InferenceEvent>(0, 30).await.unwrap().len(), 30);
    assert_eq!(a.after::<InferenceEvent>(0, 60).await.unwrap().len(), 60);
    drop(a);
    publish(&p, 90..120).await;
    // Worker B goes on from the committed position 30. The first fetch brings 61..=120
    // only; 31..=60 come back after the ack wait, and nothing is handed out before them.
    let b = EventConsumer::join(&s, "g", 30).await.unwrap();
    assert!(b.after::<InferenceEvent>(30, 200).await.unwrap().is_empty());
    let (got, at) = read(&b, 30, 90, 30).await;
    assert_eq!(got, ids(30..120));
    assert_eq!(at, 120);
}

/// What a reader holds (fetched, not yet acknowledged) is bounded by the group's
/// `max_pending`, not by the traffic: while a dead reader's messages wait for the ack
/// wait, and while a reader fetches without committing.
#[tokio::test]
async fn what_a_reader_holds_is_bounded() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let s = NatsSettings {
        max_pending: 50,
        ..settings(&nats)
    };
    let p = EventPublisher::connect(&s).await.unwrap();
    publish(&p, 0..300).await;
    let a = EventConsumer::join(&s, "g", 0).await.unwrap();
    assert_eq!(a.after::<InferenceEvent>(0, 20).await.unwrap().len(), 20);
    drop(a);
    let b = EventConsumer::join(&s, "g", 0).await.unwrap();
    for _ in 0..10 {
        b.after::<InferenceEvent>(0, 40).await.unwrap();
        assert!(b.held().await <= 50, "{}", b.held().await);
    }
    let (got, _) = read(&b, 0, 300, 60).await;
    assert_eq!(got, ids(0..300));
}

#[tokio::test]
async fn a_released_batch_goes_to_the_next_reader_at_once() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let s = NatsSettings {
        // Long enough that only the release can explain a quick delivery.
        ack_wait: Duration::from_secs(60),
        ..settings(&nats)
    };
    let p = EventPublisher::connect(&s).await.unwrap();
    publish(&p, 0..20).await;
    let a = EventConsumer::join(&s, "g", 0).await.unwrap();
    assert_eq!(a.after::<InferenceEvent>(0, 20).await.unwrap().len(), 20);
    a.release().await;
    let b = EventConsumer::join(&s, "g", 0).await.unwrap();
    let (got, _) = read(&b, 0, 20, 20).await;
    assert_eq!(got, ids(0..20));
}

#[tokio::test]
async fn gaps_nothing_will_fill_are_skipped() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let s = settings(&nats);
    let p = EventPublisher::connect(&s).await.unwrap();
    publish(&p, 0..5).await;
    // An unreadable message at sequence 6, then a deleted one at 8.
    let client = async_nats::connect(&nats.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.publish(s.subject.clone(), "not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    publish(&p, 5..9).await;
    let stream = js.get_stream(&s.stream).await.unwrap();
    assert!(stream.delete_message(8).await.unwrap());
    let c = EventConsumer::join(&s, "g", 0).await.unwrap();
    let (got, at) = read(&c, 0, 8, 30).await;
    // r5 was sequence 7; r6 (sequence 8) was deleted.
    assert_eq!(got, ["r0", "r1", "r2", "r3", "r4", "r5", "r7", "r8"]);
    assert_eq!(at, 10);
}

#[tokio::test]
async fn bad_names_are_refused_before_connecting() {
    let s = NatsSettings::new("nats://127.0.0.1:1");
    let e = EventConsumer::join(&s, "a.b", 0).await.err().unwrap();
    assert!(e.to_string().contains("consumer name 'a.b'"), "{e}");
    let s = NatsSettings {
        stream: "x y".into(),
        ..NatsSettings::new("nats://127.0.0.1:1")
    };
    let e = EventPublisher::connect(&s).await.err().unwrap();
    assert!(e.to_string().contains("stream name 'x y'"), "{e}");
    // Nothing listens on port 1.
    let e = EventPublisher::connect(&NatsSettings::new("nats://127.0.0.1:1"))
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("cannot connect to NATS at"), "{e}");
}
