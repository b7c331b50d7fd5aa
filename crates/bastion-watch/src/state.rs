//! What a worker carries from one batch to the next, saved with its position: the open
//! windows of every model version and the alert rules' streaks and cool-downs.

use bastion_monitor::AlerterState;
use bastion_monitor::Windower;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct WorkerState {
    pub windows: Vec<VersionWindows>,
    pub alerter: AlerterState,
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
    pub windows: Vec<SavingWindows<'a>>,
    pub alerter: AlerterState,
}

#[derive(Serialize)]
pub(crate) struct SavingWindows<'a> {
    pub model: &'a str,
    pub version: &'a str,
    pub windower: &'a Windower,
}
