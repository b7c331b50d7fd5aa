//! Where inference events come from. Every source hands out events in increasing id order
//! after a position, so a worker's progress is one number.

use std::future::Future;

use bastion_store::MetaStore;
use bastion_store::meta::{EventQuery, InferenceEvent};

use crate::error::WatchResult;

/// What `StoreEvents` positions count in.
pub const STORE_SOURCE: &str = "store";

pub trait EventSource: Send + Sync {
    /// Up to `max` events with an id above `after_id`, in id order. Every event up to
    /// `after_id` is committed: a source may forget it.
    fn next(
        &self,
        after_id: i64,
        max: usize,
    ) -> impl Future<Output = WatchResult<Vec<InferenceEvent>>> + Send;

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
/// only events at least `settle_ms` old are read, and reading stops at the first younger
/// one, which leaves writers that long to commit.
#[derive(Clone)]
pub struct StoreEvents {
    pub meta: MetaStore,
    pub settle_ms: i64,
}

impl EventSource for StoreEvents {
    async fn next(&self, after_id: i64, max: usize) -> WatchResult<Vec<InferenceEvent>> {
        let q = EventQuery {
            after_id: Some(after_id),
            limit: i64::try_from(max).unwrap_or(i64::MAX),
            ..EventQuery::default()
        };
        let mut events = self.meta.inference_events(&q).await?;
        let cutoff = bastion_core::time::now_ms() - self.settle_ms;
        if let Some(young) = events.iter().position(|e| e.time_ms > cutoff) {
            events.truncate(young);
        }
        Ok(events)
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
    async fn next(&self, after_id: i64, max: usize) -> WatchResult<Vec<InferenceEvent>> {
        self.consumer
            .after(u64::try_from(after_id).unwrap_or(0), max)
            .await
            .map_err(|e| crate::error::WatchError::Source(e.to_string()))
    }

    fn describe(&self) -> String {
        self.consumer.describe()
    }

    async fn release(&self) {
        self.consumer.release().await;
    }
}

/// Either source, chosen at start-up.
pub enum Events {
    Store(StoreEvents),
    Nats(Box<NatsEvents>),
}

impl EventSource for Events {
    async fn next(&self, after_id: i64, max: usize) -> WatchResult<Vec<InferenceEvent>> {
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
