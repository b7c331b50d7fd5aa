//! Continuous monitoring of served models.
//!
//! Inference events become [`Observation`]s (rows a request carried, what the model
//! answered, how the request went). A [`Windower`] cuts each model version's stream into
//! tumbling or sliding windows, by rows or by time. Each closed window is compared with the
//! [`Reference`] (the training data) by [`signals::evaluate`], which uses `bastion-data`'s
//! drift statistics, and yields named signals (`drift.dataset`, `missing.rate`,
//! `error.rate`…). [`AlertRules`] (a TOML file) say when signals make an alert; the
//! [`Alerter`] applies their persistence (`for = 3` windows), de-duplication and cool-down.
//!
//! Where true labels come back, [`performance::measure`] scores windows of labelled rows;
//! until they do, the reference's [`Estimator`] estimates accuracy from the model's
//! calibrated confidence.
//!
//! Nothing here reads the event table, sends a webhook or changes a deployment: callers
//! feed events in and act on the alerts that come out.

pub mod alert;
pub mod detectors;
pub mod error;
pub mod observation;
pub mod performance;
pub mod recorded;
pub mod reference;
pub mod rules;
pub mod shapiro;
pub mod signals;
pub mod window;

pub use alert::{Alert, Alerter, AlerterState, Subject};
pub use detectors::{CallerSignals, DetectorSettings, Detectors, Scale};
pub use error::{MonitorError, MonitorResult};
pub use observation::{Cell, Observation, Outcome};
pub use performance::{Estimate, Estimator, Labelled, PerformanceReport};
pub use recorded::{RecordedFeatures, RecordedOutputs};
pub use reference::Reference;
pub use rules::{AlertRule, AlertRules, RespondSettings, Response};
pub use signals::{WindowReport, evaluate};
pub use window::{Window, WindowSpec, Windower};
