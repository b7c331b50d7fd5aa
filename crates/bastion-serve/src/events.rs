//! Inference events leave the request path through a bounded queue: `record` never waits,
//! and when the queue is full the event is counted as dropped
//! (`bastion_inference_events_dropped_total`) instead of slowing inference down. One writer
//! task drains the queue in batches into the store and, when a NATS stream is configured,
//! publishes each batch there too, for monitor workers on other hosts. The store keeps
//! every event either way: labels sent back later are joined to them there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bastion_nats::EventPublisher;
use bastion_store::MetaStore;
use bastion_store::meta::InferenceEvent;
use tokio::sync::{Notify, mpsc, oneshot};

/// Events written per store transaction, at most.
const BATCH: usize = 1000;

/// How long the writer lets events gather after the first one before writing them: one
/// transaction per interval instead of one per wake-up, so under load the writer costs the
/// request path a few short bursts a second rather than thousands of wake-ups and commits
/// (which showed in the serving p99). Events reach the store this much later at most; a
/// flush cuts the wait short.
const LINGER: Duration = Duration::from_millis(25);

enum Message {
    Event(Box<InferenceEvent>),
    Flush(oneshot::Sender<()>),
}

/// What the writer hands the publishing task.
enum ToPublish {
    Batch(Vec<InferenceEvent>),
    /// Answered once everything before it is published.
    Flush(oneshot::Sender<()>),
}

pub struct EventSink {
    tx: mpsc::Sender<Message>,
    /// Wakes a lingering writer when a flush is queued.
    flushing: Arc<Notify>,
    dropped: AtomicU64,
    written: Arc<AtomicU64>,
}

impl EventSink {
    /// Starts the writer on the current Tokio runtime with a queue of `capacity` events,
    /// publishing them with `publisher` too when there is one.
    pub fn start(
        meta: MetaStore,
        capacity: usize,
        publisher: Option<Arc<EventPublisher>>,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let written = Arc::new(AtomicU64::new(0));
        // Publishing has its own task and queue, so a slow or unreachable NATS never holds
        // up the store's writes (nor the other way round).
        let publishing = publisher.map(|p| {
            let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
            tokio::spawn(publish_batches(p, rx));
            tx
        });
        let flushing = Arc::new(Notify::new());
        tokio::spawn(write_events(
            meta,
            publishing,
            rx,
            flushing.clone(),
            written.clone(),
        ));
        Arc::new(Self {
            tx,
            flushing,
            dropped: AtomicU64::new(0),
            written,
        })
    }

    /// Queues an event, or counts it as dropped if the queue is full.
    pub fn record(&self, event: InferenceEvent) {
        if self.tx.try_send(Message::Event(Box::new(event))).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("bastion_inference_events_dropped_total").increment(1);
        }
    }

    /// Waits until every event queued before this call is written (tests, shutdown).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            self.flushing.notify_one();
            let _ = wait.await;
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

async fn write_events(
    meta: MetaStore,
    publishing: Option<mpsc::Sender<ToPublish>>,
    mut rx: mpsc::Receiver<Message>,
    flushing: Arc<Notify>,
    written: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        take(first, &mut batch, &mut waiting);
        drain(&mut rx, &mut batch, &mut waiting);
        if batch.len() < BATCH && waiting.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(LINGER) => {}
                _ = flushing.notified() => {}
            }
            drain(&mut rx, &mut batch, &mut waiting);
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            let mut attempt = 0;
            loop {
                match meta.insert_inference_events(&batch).await {
                    Ok(()) => {
                        written.fetch_add(n, Ordering::Relaxed);
                        metrics::counter!("bastion_inference_events_written_total").increment(n);
                        break;
                    }
                    Err(e) if attempt < 3 => {
                        attempt += 1;
                        tracing::warn!(error = %e, attempt, "writing inference events failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, events = n, "inference events lost");
                        metrics::counter!("bastion_inference_events_dropped_total").increment(n);
                        break;
                    }
                }
            }
            if let Some(tx) = &publishing
                && tx
                    .try_send(ToPublish::Batch(std::mem::take(&mut batch)))
                    .is_err()
            {
                tracing::warn!(
                    events = n,
                    "the NATS publishing queue is full: events not published"
                );
                metrics::counter!("bastion_inference_events_unpublished_total").increment(n);
            }
            batch.clear();
        }
        for done in waiting.drain(..) {
            // With publishing, a flush is answered once what came before it is published.
            match &publishing {
                Some(tx) => {
                    if let Err(mpsc::error::SendError(ToPublish::Flush(done))) =
                        tx.send(ToPublish::Flush(done)).await
                    {
                        let _ = done.send(());
                    }
                }
                None => {
                    let _ = done.send(());
                }
            }
        }
    }
}

fn take(m: Message, batch: &mut Vec<InferenceEvent>, waiting: &mut Vec<oneshot::Sender<()>>) {
    match m {
        Message::Event(e) => batch.push(*e),
        Message::Flush(done) => waiting.push(done),
    }
}

/// Takes what is queued, up to a full batch.
fn drain(
    rx: &mut mpsc::Receiver<Message>,
    batch: &mut Vec<InferenceEvent>,
    waiting: &mut Vec<oneshot::Sender<()>>,
) {
    while batch.len() < BATCH {
        match rx.try_recv() {
            Ok(m) => take(m, batch, waiting),
            Err(_) => break,
        }
    }
}

/// Batches waiting to be published, at most (beyond: counted as unpublished).
const PUBLISH_QUEUE: usize = 64;

async fn publish_batches(publisher: Arc<EventPublisher>, mut rx: mpsc::Receiver<ToPublish>) {
    while let Some(m) = rx.recv().await {
        match m {
            ToPublish::Batch(batch) => publish(&publisher, &batch).await,
            ToPublish::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

async fn publish(publisher: &EventPublisher, batch: &[InferenceEvent]) {
    match publisher.publish(batch).await {
        Ok(out) => {
            metrics::counter!("bastion_inference_events_published_total")
                .increment(out.stored as u64);
            metrics::counter!("bastion_inference_events_unpublished_total")
                .increment(out.lost as u64);
            if out.trimmed > 0 {
                tracing::debug!(
                    trimmed = out.trimmed,
                    "events published without their input rows (too large for a message)"
                );
            }
        }
        Err(e) => {
            tracing::error!(error = %e, events = batch.len(), "inference events not published");
            metrics::counter!("bastion_inference_events_unpublished_total")
                .increment(batch.len() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bastion_store::MetaStoreOptions;
    use bastion_store::meta::{EventQuery, SqliteSync};

    fn event(i: i64) -> InferenceEvent {
        InferenceEvent {
            id: 0,
            time_ms: i,
            model_name: "m".into(),
            version: "1".into(),
            route: "stable".into(),
            actor: "a".into(),
            request_id: format!("r{i}"),
            latency_us: 10,
            status: 200,
            decision: "ok".into(),
            input_digest: String::new(),
            rows: 1,
            features: serde_json::Value::Null,
            outputs: serde_json::json!({ "labels": ["x"] }),
            guards: serde_json::Value::Null,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::connect(&MetaStoreOptions {
            uri: format!("sqlite://{}", dir.path().join("t.db").display()),
            max_connections: 2,
            sqlite_sync: SqliteSync::Normal,
        })
        .await
        .unwrap();
        let sink = EventSink::start(meta.clone(), 8, None);
        // The writer cannot run until this task yields: 8 fit, the rest are dropped at once.
        for i in 0..100 {
            sink.record(event(i));
        }
        assert_eq!(sink.dropped(), 92);
        sink.flush().await;
        assert_eq!(sink.written(), 8);
        // Once drained, the queue takes events again.
        for i in 100..150 {
            sink.record(event(i));
            tokio::task::yield_now().await;
        }
        sink.flush().await;
        let stored = meta
            .inference_events(&EventQuery {
                model_name: Some("m".into()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(stored.len() as u64, sink.written());
        assert_eq!(sink.written() + sink.dropped(), 150);
        assert_eq!(stored[0].request_id, "r0");
        assert_eq!(stored[0].outputs["labels"][0], "x");
        let after = meta
            .inference_events(&EventQuery {
                model_name: Some("m".into()),
                after_id: Some(stored[5].id),
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(after.len(), 2);
        assert_eq!(after[0].id, stored[6].id);
    }
}
