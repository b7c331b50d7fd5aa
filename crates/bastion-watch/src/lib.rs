//! The monitor worker. It reads inference events in id order from an [`EventSource`] (the
//! store's event table by default), turns them into `bastion-monitor` observations, cuts each
//! model version's stream into windows, judges every closed window against that version's
//! training data, and feeds the signals to the alert rules. Alerts become incidents in the
//! store, committed in one transaction with the worker's position and state; the responses
//! they ask for are queued with them and carried out afterwards by the [`Responder`].
//!
//! The statistics are `bastion-monitor`'s and `bastion-data`'s; this crate knows nothing
//! about HTTP serving and never runs model code (reference predictions go through the same
//! parsers and predictors serving uses).

mod error;
pub mod history;
mod references;
pub mod respond;
pub mod source;
mod state;
pub mod worker;

pub use error::{WatchError, WatchResult};
pub use respond::{PipelineRunner, Responder};
pub use source::{EventSource, Events, NatsEvents, STORE_SOURCE, StoreEvents, Watched};
pub use worker::{Step, Worker};
