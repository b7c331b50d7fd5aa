//! Where inference events come from. Every source hands out events in increasing id order
//! after a position, so a worker's progress is one number.

use std::future::Future;

use bastion_store::MetaStore;
use bastion_store::meta::{EventQuery, InferenceEvent};

use crate::error::WatchResult;

pub trait EventSource: Send + Sync {
    /// Up to `max` events with an id above `after_id`, in id order.
    fn next(
        &self,
        after_id: i64,
        max: usize,
    ) -> impl Future<Output = WatchResult<Vec<InferenceEvent>>> + Send;
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
}
