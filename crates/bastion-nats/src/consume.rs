//! Monitor workers read the stream through one durable pull consumer per consumer group.
//!
//! The group's position (the last stream sequence whose verdicts are committed) lives in
//! the metadata store, committed in one transaction with the worker's state. JetStream's
//! own acknowledgement cannot be part of that transaction, so it only follows it: a
//! message is acknowledged once a committed position covers it. What that leaves to this
//! side:
//! - a message delivered again (its worker died after committing, before acknowledging) is
//!   at or below the position: acknowledged and dropped;
//! - messages a dead worker had fetched but not committed come back only after the ack
//!   wait, after newer ones: events are handed out only as an unbroken run of sequences
//!   after the position, and the newer ones wait, held, until the gap fills;
//! - a gap nothing will fill (the stream dropped those events by age, or a message was
//!   unreadable and terminated) is recognised when no other delivery is outstanding, and
//!   skipped.

use std::collections::BTreeMap;

use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::error::{NatsError, NatsResult};
use crate::settings::{NatsSettings, check_name};

pub struct EventConsumer {
    stream: String,
    consumer: consumer::PullConsumer,
    held: Mutex<BTreeMap<u64, Held>>,
}

/// A fetched message; decoded each time it is handed out (normally once).
struct Held {
    message: jetstream::Message,
}

impl EventConsumer {
    /// Joins consumer group `group` (creating its durable consumer if needed, from just
    /// after `after`, the group's committed position).
    pub async fn join(settings: &NatsSettings, group: &str, after: u64) -> NatsResult<Self> {
        check_name("consumer", group)?;
        let (_, _, stream) = settings.open().await?;
        let deliver_policy = if after == 0 {
            consumer::DeliverPolicy::All
        } else {
            consumer::DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            }
        };
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                group,
                consumer::pull::Config {
                    durable_name: Some(group.to_owned()),
                    description: Some("Bastion monitor workers".into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: settings.ack_wait,
                    deliver_policy,
                    // What may be delivered and not yet acknowledged: the batches a worker
                    // judges and holds behind a gap, and what a dead worker had. Past it the
                    // server delivers only redeliveries, so the messages held here (about
                    // 10 MB of events at most) are bounded by this, not by the ack wait
                    // times the traffic.
                    max_ack_pending: settings.max_pending,
                    ..consumer::pull::Config::default()
                },
            )
            .await
            .map_err(|e| NatsError::jetstream("opening the consumer", e))?;
        Ok(Self {
            stream: settings.stream.clone(),
            consumer,
            held: Mutex::default(),
        })
    }

    /// What positions count in: `nats:<stream>`.
    pub fn describe(&self) -> String {
        format!("nats:{}", self.stream)
    }

    /// Up to `max` events with a stream sequence above `after` (the committed position),
    /// in order, with their sequence, decoded from JSON as `T`. Messages at or below
    /// `after` are acknowledged. Fewer than `max` when the stream is caught up, a gap waits
    /// for a redelivery, or a message could not be decoded (it is dropped, and the run
    /// ends before it).
    pub async fn after<T: DeserializeOwned>(
        &self,
        after: u64,
        max: usize,
    ) -> NatsResult<Vec<(u64, T)>> {
        let mut held = self.held.lock().await;
        let newer = held.split_off(&(after + 1));
        let committed = std::mem::replace(&mut *held, newer);
        for h in committed.into_values() {
            ack(&h.message, AckKind::Ack).await;
        }
        let want = max.saturating_sub(run_length(&held, after));
        if want > 0 {
            self.fetch(&mut held, after, want).await?;
        }
        let mut start = after;
        if let Some(&first) = held.keys().next()
            && first > after + 1
            && self.gap_is_final(held.len()).await?
        {
            tracing::warn!(
                from = after + 1,
                to = first - 1,
                "events missing from the stream (expired, deleted or unreadable): skipped"
            );
            metrics::counter!("bastion_monitor_events_skipped_total").increment(first - after - 1);
            start = first - 1;
        }
        let mut out = Vec::with_capacity(max.min(held.len()));
        let mut unreadable = None;
        let run = held
            .range(start + 1..)
            .zip(start + 1..)
            .take_while(|((seq, _), expect)| *seq == expect)
            .take(max);
        for ((&seq, h), _) in run {
            match serde_json::from_slice::<T>(&h.message.payload) {
                Ok(event) => out.push((seq, event)),
                Err(e) => {
                    tracing::warn!(seq, error = %e, "an unreadable inference event: dropped");
                    unreadable = Some(seq);
                    break;
                }
            }
        }
        // Never delivered again: the gap it leaves is skipped like any other.
        if let Some(h) = unreadable.and_then(|seq| held.remove(&seq)) {
            metrics::counter!("bastion_monitor_events_unreadable_total").increment(1);
            ack(&h.message, AckKind::Term).await;
        }
        Ok(out)
    }

    /// Messages fetched and not yet acknowledged or given back.
    pub async fn held(&self) -> usize {
        self.held.lock().await.len()
    }

    /// Gives back every held message at once (negative acknowledgement), for whichever
    /// worker reads next.
    pub async fn release(&self) {
        let mut held = self.held.lock().await;
        for h in std::mem::take(&mut *held).into_values() {
            ack(&h.message, AckKind::Nak(None)).await;
        }
    }

    async fn fetch(
        &self,
        held: &mut BTreeMap<u64, Held>,
        after: u64,
        want: usize,
    ) -> NatsResult<()> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(want)
            .messages()
            .await
            .map_err(|e| NatsError::jetstream("fetching events", e))?;
        while let Some(m) = batch.next().await {
            let message = m.map_err(|e| NatsError::jetstream("fetching events", e))?;
            let seq = match message.info() {
                Ok(info) => info.stream_sequence,
                Err(e) => {
                    tracing::warn!(error = %e, "a message without JetStream metadata: ignored");
                    continue;
                }
            };
            if seq <= after {
                ack(&message, AckKind::Ack).await;
                continue;
            }
            held.insert(seq, Held { message });
        }
        Ok(())
    }

    /// A gap before the held messages is final when every message delivered and not yet
    /// acknowledged is held here: nothing else can fill it.
    async fn gap_is_final(&self, held: usize) -> NatsResult<bool> {
        let info = self
            .consumer
            .get_info()
            .await
            .map_err(|e| NatsError::jetstream("reading the consumer", e))?;
        Ok(info.num_ack_pending <= held)
    }
}

/// How many sequences right after `after` are held without a break.
fn run_length(held: &BTreeMap<u64, Held>, after: u64) -> usize {
    held.keys()
        .zip(after + 1..)
        .take_while(|(seq, expect)| *seq == expect)
        .count()
}

/// Acknowledgements are best effort: one that is lost only means the message comes back
/// after the ack wait, and is dropped then.
async fn ack(message: &jetstream::Message, kind: AckKind) {
    if let Err(e) = message.ack_with(kind).await {
        tracing::debug!(error = %e, "acknowledging a message");
    }
}
