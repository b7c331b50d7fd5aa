//! Where inference events come from. Every source hands out events in increasing id order
//! after a position, so a worker's progress is one number.

use std::future::Future;

use bastion_monitor::{Observation, Outcome, RecordedFeatures, RecordedOutputs};
use bastion_store::MetaStore;
use bastion_store::meta::RecordedEvent;
use serde::Deserialize;

use crate::error::WatchResult;

/// One event as the worker judges it: its position, whose it is, and what it carried.
#[derive(Debug, Clone)]
pub struct Watched {
    pub id: i64,
    pub model: String,
    /// Empty when the request was refused before a version was chosen.
    pub version: String,
    pub observation: Observation,
}

/// What the monitor needs of an event, from either source: decoded from the published
/// JSON (an `InferenceEvent`'s, its other fields skipped unread) or moved out of the
/// store's row, with the recorded parts decoded in place.
#[derive(Deserialize)]
struct EventFields {
    time_ms: i64,
    model_name: String,
    version: String,
    route: String,
    actor: String,
    latency_us: i64,
    status: i64,
    decision: String,
    rows: i64,
    #[serde(default)]
    features: RecordedFeatures,
    #[serde(default)]
    outputs: RecordedOutputs,
}

impl EventFields {
    fn watched(self, id: i64) -> Watched {
        let observation = Observation {
            time_ms: self.time_ms,
            actor: self.actor,
            rows: usize::try_from(self.rows).unwrap_or(0),
            features: std::collections::BTreeMap::new(),
            predictions: Vec::new(),
            confidence: Vec::new(),
            probabilities: Vec::new(),
            outcome: Outcome {
                status: self.status,
                latency_us: self.latency_us,
                route: self.route,
                decision: self.decision,
            },
        }
        .with_parts(self.features, self.outputs);
        Watched {
            id,
            model: self.model_name,
            version: self.version,
            observation,
        }
    }
}

/// What `StoreEvents` positions count in.
pub const STORE_SOURCE: &str = "store";

pub trait EventSource: Send + Sync {
    /// Up to `max` events with an id above `after_id`, in id order. Every event up to
    /// `after_id` is committed: a source may forget it.
    fn next(
        &self,
        after_id: i64,
        max: usize,
    ) -> impl Future<Output = WatchResult<Vec<Watched>>> + Send;

    /// The stream positions count in, saved with them: a consumer's position is refused in
    /// another stream.
    fn describe(&self) -> String;

    /// The worker is no longer the one reading (it lost its lease, or another worker
    /// committed first): give back anything held for it, for the next reader.
    fn release(&self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// The store's `inference_events` table, which every `bastion serve` on the same store
/// writes to.
///
/// Ids are handed out when a writer inserts, but writers commit in their own time: on
/// PostgreSQL an event with a lower id can become visible after one with a higher id. So
/// only events at least `settle_ms` old (when the read began) are taken, and reading stops
/// at the first younger one, which leaves writers that long to commit.
///
/// After a full batch the next one is read and decoded ahead, on another thread, while the
/// worker judges this one: reading and decoding take about as long as judging.
pub struct StoreEvents {
    meta: MetaStore,
    settle_ms: i64,
    ahead: tokio::sync::Mutex<Option<Ahead>>,
}

/// A batch being read ahead: the position and size it was asked for.
struct Ahead {
    after_id: i64,
    max: usize,
    read: tokio::task::JoinHandle<WatchResult<Vec<Watched>>>,
}

impl StoreEvents {
    pub fn new(meta: MetaStore, settle_ms: i64) -> Self {
        Self {
            meta,
            settle_ms: settle_ms.max(0),
            ahead: tokio::sync::Mutex::default(),
        }
    }
}

async fn read_store(
    meta: MetaStore,
    after_id: i64,
    max: usize,
    settle_ms: i64,
) -> WatchResult<Vec<Watched>> {
    let cutoff = bastion_core::time::now_ms() - settle_ms;
    let mut events = meta.recorded_events(after_id, max).await?;
    if let Some(young) = events.iter().position(|e| e.time_ms > cutoff) {
        events.truncate(young);
    }
    Ok(events.into_iter().map(watched).collect())
}

impl EventSource for StoreEvents {
    async fn next(&self, after_id: i64, max: usize) -> WatchResult<Vec<Watched>> {
        let mut ahead = self.ahead.lock().await;
        let batch = match ahead.take() {
            Some(a) if a.after_id == after_id && a.max == max => a
                .read
                .await
                .map_err(|e| crate::error::WatchError::Source(format!("reading ahead: {e}")))??,
            other => {
                if let Some(a) = other {
                    a.read.abort();
                }
                read_store(self.meta.clone(), after_id, max, self.settle_ms).await?
            }
        };
        if batch.len() == max
            && let Some(last) = batch.last()
        {
            *ahead = Some(Ahead {
                after_id: last.id,
                max,
                read: tokio::spawn(read_store(self.meta.clone(), last.id, max, self.settle_ms)),
            });
        }
        Ok(batch)
    }

    async fn release(&self) {
        if let Some(a) = self.ahead.lock().await.take() {
            a.read.abort();
        }
    }

    fn describe(&self) -> String {
        STORE_SOURCE.to_owned()
    }
}

/// A NATS JetStream stream that every `bastion serve` replica publishes to, read through
/// the consumer group's durable consumer. Positions are stream sequences.
pub struct NatsEvents {
    pub consumer: bastion_nats::EventConsumer,
}

impl EventSource for NatsEvents {
    async fn next(&self, after_id: i64, max: usize) -> WatchResult<Vec<Watched>> {
        let events: Vec<(u64, EventFields)> = self
            .consumer
            .after(u64::try_from(after_id).unwrap_or(0), max)
            .await
            .map_err(|e| crate::error::WatchError::Source(e.to_string()))?;
        Ok(events
            .into_iter()
            .map(|(seq, e)| e.watched(i64::try_from(seq).unwrap_or(i64::MAX)))
            .collect())
    }

    fn describe(&self) -> String {
        self.consumer.describe()
    }

    async fn release(&self) {
        self.consumer.release().await;
    }
}

fn watched(e: RecordedEvent) -> Watched {
    EventFields {
        time_ms: e.time_ms,
        model_name: e.model_name,
        version: e.version,
        route: e.route,
        actor: e.actor,
        latency_us: e.latency_us,
        status: e.status,
        decision: e.decision,
        rows: e.rows,
        features: RecordedFeatures::parse(&e.features),
        outputs: RecordedOutputs::parse(&e.outputs),
    }
    .watched(e.id)
}

/// Either source, chosen at start-up.
pub enum Events {
    Store(StoreEvents),
    Nats(Box<NatsEvents>),
}

impl EventSource for Events {
    async fn next(&self, after_id: i64, max: usize) -> WatchResult<Vec<Watched>> {
        match self {
            Self::Store(s) => s.next(after_id, max).await,
            Self::Nats(s) => s.next(after_id, max).await,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Store(s) => s.describe(),
            Self::Nats(s) => s.describe(),
        }
    }

    async fn release(&self) {
        match self {
            Self::Store(s) => s.release().await,
            Self::Nats(s) => s.release().await,
        }
    }
}
