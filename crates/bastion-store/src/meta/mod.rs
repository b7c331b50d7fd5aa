//! The metadata store: experiments, runs, the model registry, logged models and the artifact
//! index, in SQLite or PostgreSQL through one `sqlx::Any` code path. Queries use `$N`
//! placeholders, which both drivers accept; the few dialect differences are named in
//! [`Backend`].

// First: its `query_fmt!` macro is used by the modules below.
#[macro_use]
mod sql;
mod artifacts;
mod audit;
mod audit_file;
mod datasets;
mod evidence;
mod experiments;
mod feedback;
mod identity;
mod incidents;
mod logged_models;
mod names;
mod registry;
mod rows;
mod run_search;
mod runs;
mod serving;
mod write;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::error::{StoreError, StoreResult};

pub use artifacts::{ArtifactEntry, ArtifactListing};
pub use audit::{AuditDraft, AuditQuery};
pub use datasets::{
    DatasetVersion, DatasetVersionDraft, parse_dataset_reference, validate_dataset_name,
};
pub use evidence::{Evidence, EvidenceDraft};
pub use feedback::{
    FeedbackItem, FeedbackReceipt, LabelledEvent, MAX_FEEDBACK_ITEMS, MAX_LABELS_PER_REQUEST,
};
pub use identity::{
    Grant, TokenDraft, TokenInfo, TokenOwner, User, UserCredentials, hash_password, validate_name,
    validate_principal,
};
pub use incidents::{
    AlertDraft, CALLERS, Incident, IncidentQuery, IncidentResponse, MonitorCursor,
    STATUS_ACKNOWLEDGED, STATUS_OPEN, STATUS_RESOLVED, WINDOW, WindowRecord,
};
pub use registry::ModelVersionDraft;
pub use run_search::{Page, SearchRequest};
pub use runs::{BatchLog, RunDraft, RunUpdate};
pub use serving::{EventQuery, InferenceEvent, RecordedEvent, StoredDeployment};
pub use write::AuditContext;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgresql",
        }
    }
}

/// SQLite's durability setting. `Normal` in WAL mode survives a process crash (kill -9) with
/// every committed transaction; `Full` also survives power loss, at an fsync per commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    #[default]
    Normal,
    Full,
}

impl FromStr for SqliteSync {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "normal" => Ok(Self::Normal),
            "full" => Ok(Self::Full),
            other => Err(format!("expected 'normal' or 'full', got '{other}'")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MetaStoreOptions {
    /// `sqlite:///abs/path.db`, `sqlite://relative.db`, `sqlite::memory:` or `postgresql://...`.
    pub uri: String,
    /// Connections for readers (and, on PostgreSQL, writers).
    pub max_connections: u32,
    pub sqlite_sync: SqliteSync,
}

impl MetaStoreOptions {
    pub fn sqlite_file(path: &Path) -> Self {
        Self {
            uri: format!("sqlite://{}", path.display()),
            max_connections: 4,
            sqlite_sync: SqliteSync::Normal,
        }
    }
}

/// A handle to the metadata store; cheap to clone.
#[derive(Clone)]
pub struct MetaStore {
    /// Readers. On PostgreSQL also the writers.
    read: AnyPool,
    /// On SQLite one connection, so writers queue in-process instead of racing for the file
    /// lock; SQLite allows one writer at a time anyway.
    write: AnyPool,
    backend: Backend,
    /// The SQLite database file; `None` on PostgreSQL and for in-memory databases.
    sqlite_file: Option<std::path::PathBuf>,
    /// What changes made through this handle are recorded as (see `write.rs`).
    audit: Option<std::sync::Arc<AuditContext>>,
    /// The audit log's end as this process last wrote it; `None` when unknown.
    audit_tail: std::sync::Arc<tokio::sync::Mutex<Option<audit::Tail>>>,
}

static INSTALL_DRIVERS: std::sync::Once = std::sync::Once::new();

impl MetaStore {
    pub async fn connect(opts: &MetaStoreOptions) -> StoreResult<Self> {
        INSTALL_DRIVERS.call_once(sqlx::any::install_default_drivers);
        let uri = opts.uri.trim();
        let backend = if uri.starts_with("sqlite:") {
            Backend::Sqlite
        } else if uri.starts_with("postgresql://") || uri.starts_with("postgres://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUri(redact(uri)));
        };
        let store = match backend {
            Backend::Sqlite => {
                let url = sqlite_url(uri);
                let sync = opts.sqlite_sync;
                let connect = |max: u32| {
                    AnyPoolOptions::new()
                        .max_connections(max)
                        // A local file cannot drop a connection; the pre-acquire ping would
                        // double the round trips of every query.
                        .test_before_acquire(false)
                        .acquire_timeout(Duration::from_secs(30))
                        .after_connect(move |conn, _| {
                            Box::pin(async move {
                                conn.execute("PRAGMA journal_mode = WAL").await?;
                                let sync = match sync {
                                    SqliteSync::Normal => "PRAGMA synchronous = NORMAL",
                                    SqliteSync::Full => "PRAGMA synchronous = FULL",
                                };
                                conn.execute(sync).await?;
                                conn.execute("PRAGMA foreign_keys = ON").await?;
                                conn.execute("PRAGMA busy_timeout = 15000").await?;
                                // MLflow's LIKE is case-sensitive (ILIKE is not).
                                conn.execute("PRAGMA case_sensitive_like = ON").await?;
                                Ok(())
                            })
                        })
                };
                let options = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
                let file = sqlx::sqlite::SqliteConnectOptions::from_str(&url)?
                    .get_filename()
                    .to_owned();
                let sqlite_file = (!uri.contains(":memory:")).then_some(file);
                let write = connect(1).connect_with(options.clone()).await?;
                // Migrate before the readers open, so they see the final schema.
                sqlx::migrate!("./migrations/sqlite").run(&write).await?;
                let read = connect(opts.max_connections.max(1))
                    .connect_with(options)
                    .await?;
                Self {
                    read,
                    write,
                    backend,
                    sqlite_file,
                    audit: None,
                    audit_tail: Default::default(),
                }
            }
            Backend::Postgres => {
                let options = AnyConnectOptions::from_str(uri)?.disable_statement_logging();
                let pool = AnyPoolOptions::new()
                    .max_connections(opts.max_connections.max(2))
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options)
                    .await?;
                sqlx::migrate!("./migrations/postgres").run(&pool).await?;
                Self {
                    read: pool.clone(),
                    write: pool,
                    backend,
                    sqlite_file: None,
                    audit: None,
                    audit_tail: Default::default(),
                }
            }
        };
        store.ensure_default_experiment().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// (open connections, idle connections) over both pools, for `/metrics`.
    pub fn pool_stats(&self) -> PoolStats {
        let (mut size, mut idle) = (self.read.size(), self.read.num_idle() as u32);
        if self.backend == Backend::Sqlite {
            size += self.write.size();
            idle += self.write.num_idle() as u32;
        }
        PoolStats { size, idle }
    }

    /// Runs `SELECT 1` on a reader, for `/health`.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Closes both pools, letting in-flight queries finish.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
}

/// `sqlite:///abs/x.db` → `sqlite:///abs/x.db?mode=rwc` (create if missing).
fn sqlite_url(uri: &str) -> String {
    if uri.contains(":memory:") || uri.contains('?') {
        return uri.to_owned();
    }
    format!("{uri}?mode=rwc")
}

/// The URI without its password, for error messages and logs.
pub fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &uri[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &uri[..s + 3], &uri[at..]),
                None => uri.to_owned(),
            }
        }
        _ => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgresql://u:secret@h/db"),
            "postgresql://u:***@h/db"
        );
        assert_eq!(redact("sqlite:///x.db"), "sqlite:///x.db");
    }
}
