//! What every handler can reach.

use std::net::SocketAddr;
use std::sync::Arc;

use bastion_store::{BlobStore, MetaStore};
use metrics_exporter_prometheus::PrometheusHandle;

/// Server settings that handlers and layers read.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    /// Host header values accepted (host part, any port). `*` accepts any.
    pub allowed_hosts: Vec<String>,
    /// Origins allowed by CORS; empty means CORS is off.
    pub cors_origins: Vec<String>,
    pub max_json_bytes: usize,
    pub max_artifact_bytes: u64,
}

impl ServerConfig {
    pub fn local(bind: SocketAddr) -> Self {
        Self {
            bind,
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            max_json_bytes: crate::params::DEFAULT_MAX_JSON_BYTES,
            max_artifact_bytes: 5 * 1024 * 1024 * 1024,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub meta: MetaStore,
    pub blobs: Arc<dyn BlobStore>,
    pub config: Arc<ServerConfig>,
    pub metrics: PrometheusHandle,
}
