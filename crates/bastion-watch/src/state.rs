//! What a worker carries from one batch to the next, saved with its position: the open
//! windows of every model version, the labelled rows of unfinished performance windows
//! with the position in the feedback, and the alert rules' streaks and cool-downs.

use bastion_monitor::{AlerterState, Labelled, Windower};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct WorkerState {
    /// The event source the position counts in (`EventSource::describe`; empty in states
    /// saved before there was a choice, which were all in the store's table).
    #[serde(default)]
    pub source: String,
    pub windows: Vec<VersionWindows>,
    pub alerter: AlerterState,
    /// Every label with a feedback id up to this one has been read.
    #[serde(default)]
    pub labels_after: i64,
    #[serde(default)]
    pub labelled: Vec<VersionLabelled>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct VersionLabelled {
    pub model: String,
    pub version: String,
    pub rows: Vec<Labelled>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct VersionWindows {
    pub model: String,
    pub version: String,
    pub windower: Windower,
}

/// The same, borrowed, for saving.
#[derive(Serialize)]
pub(crate) struct SavingState<'a> {
    pub source: String,
    pub windows: Vec<SavingWindows<'a>>,
    pub alerter: AlerterState,
    pub labels_after: i64,
    pub labelled: Vec<SavingLabelled<'a>>,
}

#[derive(Serialize)]
pub(crate) struct SavingLabelled<'a> {
    pub model: &'a str,
    pub version: &'a str,
    pub rows: &'a [Labelled],
}

#[derive(Serialize)]
pub(crate) struct SavingWindows<'a> {
    pub model: &'a str,
    pub version: &'a str,
    pub windower: &'a Windower,
}
