//! Inference events over NATS JetStream, for deployments with several serving replicas.
//!
//! Every replica publishes its events to one stream (`EventPublisher`); monitor workers read
//! it through one durable consumer per consumer group (`EventConsumer`). The stream
//! sequence is an event's position: it is total over all replicas and assigned when the
//! stream stores the event, so a reader never waits for slow writers to commit, as it must
//! on the store's table.
//!
//! This crate knows nothing about windows, alerts or the metadata store's cursor: it hands
//! out events after a position and forgets what a committed position covers.

mod consume;
mod error;
mod publish;
mod settings;

pub use consume::EventConsumer;
pub use error::{NatsError, NatsResult};
pub use publish::{EventPublisher, Published};
pub use settings::{NatsSettings, check_name};

#[cfg(feature = "test-server")]
pub mod test_server;
