use thiserror::Error;

#[derive(Debug, Error)]
pub enum WatchError {
    #[error(transparent)]
    Store(#[from] bastion_store::StoreError),
    #[error(transparent)]
    Monitor(#[from] bastion_monitor::MonitorError),
    #[error("the monitor's saved state is unreadable: {0}")]
    State(String),
    #[error("the event source failed: {0}")]
    Source(String),
}

pub type WatchResult<T> = Result<T, WatchError>;
