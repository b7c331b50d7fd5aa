//! Serving replicas publish their inference events to the stream.

use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::jetstream::{self, message::PublishMessage};
use bastion_store::meta::InferenceEvent;
use bytes::Bytes;

use crate::error::{NatsError, NatsResult};
use crate::settings::NatsSettings;

/// Room left in a message for its headers.
const HEADER_ROOM: usize = 256;

/// Attempts at publishing one event before it counts as lost.
const ATTEMPTS: usize = 3;

pub struct EventPublisher {
    client: async_nats::Client,
    js: jetstream::Context,
    subject: String,
    /// Message ids are this publisher's unique prefix and a counter: a retried publish
    /// keeps its id, so the stream stores the event once.
    prefix: String,
    next: AtomicU64,
}

impl std::fmt::Debug for EventPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventPublisher")
            .field("subject", &self.subject)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// What a `publish` call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub stored: usize,
    /// Published without their input rows, which did not fit in a message.
    pub trimmed: usize,
    /// Not stored after every attempt.
    pub lost: usize,
}

impl EventPublisher {
    pub async fn connect(settings: &NatsSettings) -> NatsResult<Self> {
        let (client, js, _) = settings.open().await?;
        // An inbox name ends in a unique random token (a NUID).
        let inbox = client.new_inbox();
        let prefix = inbox.rsplit('.').next().unwrap_or(&inbox).to_owned();
        Ok(Self {
            client,
            js,
            subject: settings.subject.clone(),
            prefix,
            next: AtomicU64::new(0),
        })
    }

    /// Publishes `events` in order and waits until the stream has stored them. Publishes
    /// are pipelined; each failed one is retried with the same message id.
    pub async fn publish(&self, events: &[InferenceEvent]) -> NatsResult<Published> {
        let mut out = Published::default();
        let mut pending: Vec<(String, Bytes)> = Vec::with_capacity(events.len());
        for e in events {
            let (body, trimmed) = self.encode(e)?;
            out.trimmed += usize::from(trimmed);
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            pending.push((format!("{}-{n}", self.prefix), body));
        }
        let mut last_error = String::new();
        for _ in 0..ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            let mut acks = Vec::with_capacity(pending.len());
            for (id, body) in &pending {
                let sent = self
                    .js
                    .send_publish(
                        self.subject.clone(),
                        PublishMessage::build().payload(body.clone()).message_id(id),
                    )
                    .await;
                acks.push(sent);
            }
            let mut failed = Vec::new();
            for ((id, body), sent) in pending.into_iter().zip(acks) {
                let stored = match sent {
                    Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match stored {
                    Ok(()) => out.stored += 1,
                    Err(e) => {
                        last_error = e;
                        failed.push((id, body));
                    }
                }
            }
            pending = failed;
        }
        out.lost = pending.len();
        if out.lost > 0 {
            tracing::warn!(lost = out.lost, error = %last_error, "inference events not published");
        }
        Ok(out)
    }

    /// The event as JSON; without its input rows when it would not fit in a message.
    fn encode(&self, e: &InferenceEvent) -> NatsResult<(Bytes, bool)> {
        let json = |e: &InferenceEvent| {
            serde_json::to_vec(e).map_err(|err| NatsError::jetstream("encoding an event", err))
        };
        let limit = self
            .client
            .server_info()
            .max_payload
            .saturating_sub(HEADER_ROOM);
        let body = json(e)?;
        if body.len() <= limit || e.features.is_null() {
            return Ok((Bytes::from(body), false));
        }
        let lean = InferenceEvent {
            features: serde_json::Value::Null,
            ..e.clone()
        };
        Ok((Bytes::from(json(&lean)?), true))
    }
}
