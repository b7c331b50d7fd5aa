//! Where the event stream is and how it is kept.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::error::{NatsError, NatsResult};

#[derive(Debug, Clone)]
pub struct NatsSettings {
    /// `nats://host:port` (several, comma-separated, for a cluster).
    pub url: String,
    /// The JetStream stream holding the events.
    pub stream: String,
    /// The one subject events are published on.
    pub subject: String,
    /// How long a message delivered to a worker that does not acknowledge it (because it
    /// died) waits before it is delivered again.
    pub ack_wait: Duration,
    /// How long the stream keeps an event (the store's table keeps them all).
    pub max_age: Duration,
    /// Messages a consumer group may have delivered and not yet acknowledged: a worker's
    /// batches, those it holds behind a gap, what a dead worker had. At least four of a
    /// worker's batches (5,000 events).
    pub max_pending: i64,
}

impl NatsSettings {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            stream: "BASTION_EVENTS".into(),
            subject: "bastion.events".into(),
            ack_wait: Duration::from_secs(30),
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_pending: 20_000,
        }
    }

    /// Connects, and creates the stream if it does not exist yet.
    pub(crate) async fn open(
        &self,
    ) -> NatsResult<(async_nats::Client, jetstream::Context, stream::Stream)> {
        check_name("stream", &self.stream)?;
        check_subject(&self.subject)?;
        if self.ack_wait.is_zero() {
            return Err(NatsError::Setting("the ack wait must be positive".into()));
        }
        let client = async_nats::ConnectOptions::new()
            .name("bastion")
            .connection_timeout(Duration::from_secs(5))
            .connect(self.url.as_str())
            .await
            .map_err(|e| NatsError::Connect {
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
        let js = jetstream::new(client.clone());
        let stream = js
            .get_or_create_stream(stream::Config {
                name: self.stream.clone(),
                subjects: vec![self.subject.clone()],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                max_age: self.max_age,
                // Publishers retry with the same message id within this window, and the
                // stream keeps one copy.
                duplicate_window: Duration::from_secs(120),
                ..stream::Config::default()
            })
            .await
            .map_err(|e| NatsError::jetstream("opening the event stream", e))?;
        Ok((client, js, stream))
    }
}

/// Stream and consumer names: letters, digits, `-` and `_`, at most 64 (NATS refuses `.`,
/// `*`, `>`, spaces and path separators, and names become file names on the server).
pub fn check_name(what: &str, name: &str) -> NatsResult<()> {
    if name.is_empty() || name.len() > 64 {
        return Err(NatsError::Setting(format!(
            "the {what} name must have 1 to 64 characters, not {}",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(NatsError::Setting(format!(
            "the {what} name '{name}' has {c:?}: use letters, digits, '-' and '_'"
        )));
    }
    Ok(())
}

/// A literal subject: dot-separated tokens of the name characters, no wildcards.
fn check_subject(subject: &str) -> NatsResult<()> {
    if subject.len() > 255 {
        return Err(NatsError::Setting("the subject is longer than 255".into()));
    }
    for token in subject.split('.') {
        check_name("subject token", token)
            .map_err(|e| NatsError::Setting(format!("subject '{subject}': {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_subjects_are_checked() {
        assert!(check_name("consumer", "server").is_ok());
        assert!(check_name("consumer", "group_1-a").is_ok());
        for bad in ["", "a.b", "a*", "a>", "a b", "a/b", "é", &"x".repeat(65)] {
            let e = check_name("consumer", bad).unwrap_err().to_string();
            assert!(e.contains("consumer name"), "{bad}: {e}");
        }
        assert!(check_subject("bastion.events").is_ok());
        for bad in ["", "a..b", "a.*", "a.>", ".a", "a."] {
            assert!(check_subject(bad).is_err(), "{bad}");
        }
    }
}
