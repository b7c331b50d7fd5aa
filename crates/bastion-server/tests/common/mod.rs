//! Test harness: a real server on an ephemeral loopback port, backed by SQLite in a temporary
//! folder or, when `BASTION_TEST_POSTGRES_URL` is set, by a fresh PostgreSQL database.
#![allow(dead_code)]

pub mod served;

use std::net::SocketAddr;
use std::sync::Arc;

use bastion_server::{AppState, ServerConfig};
use bastion_store::meta::{MetaStore, MetaStoreOptions, SqliteSync};
use reqwest::StatusCode;
use serde_json::Value;

/// A change to the serving settings a test server starts with.
type ServingTweak<'a> = Box<dyn FnOnce(&mut bastion_serve::ServeConfig) + 'a>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    pub base: String,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub meta: MetaStore,
    pub blobs: Arc<dyn bastion_store::BlobStore>,
    pub audit_key: Arc<ed25519_dalek::SigningKey>,
    /// The metadata store's URI, for tests that tamper with the database directly.
    pub db_uri: String,
    /// The served models (to flush inference events, read deployments).
    pub models: Arc<bastion_serve::Models>,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The admin URL for PostgreSQL tests, if this run has one. CI sets it; a developer machine
/// without PostgreSQL runs the SQLite half only.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("BASTION_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

async fn fresh_postgres_db(admin: &str) -> String {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let name = format!("bastion_test_{}", uuid_like());
    let mut conn = sqlx::AnyConnection::connect(admin)
        .await
        .expect("connect to PostgreSQL admin URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    format!("{base}/{name}")
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}_{}_{}",
        std::process::id(),
        t % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// A server in `--insecure` mode: for tests of behaviour other than access control.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::start_full(
            backend,
            |c| {
                c.insecure = true;
                tweak(c)
            },
            None,
            None,
            false,
            None,
        )
        .await
    }

    /// An `--insecure` server with serving settings changed by `tweak` (e.g. a shorter
    /// `recheck` than production's 5 s).
    pub async fn start_serving(
        backend: Backend,
        tweak: impl FnOnce(&mut bastion_serve::ServeConfig),
    ) -> Self {
        Self::start_full(
            backend,
            |c| c.insecure = true,
            None,
            None,
            false,
            Some(Box::new(tweak)),
        )
        .await
    }

    /// An `--insecure` server whose home has a dataset key: dataset blobs are stored encrypted.
    pub async fn start_with_dataset_key(backend: Backend) -> Self {
        Self::start_full(backend, |c| c.insecure = true, None, None, true, None).await
    }

    /// A server that requires authentication, as `bastion server` runs by default.
    pub async fn start_secure(
        backend: Backend,
        tweak: impl FnOnce(&mut ServerConfig),
        oidc: Option<bastion_server::OidcConfig>,
    ) -> Self {
        Self::start_full(backend, tweak, oidc, None, false, None).await
    }

    /// A secure server speaking HTTPS (mutual TLS if `tls` asks for client certificates) at
    /// `https://127.0.0.1:PORT`.
    pub async fn start_tls(backend: Backend, tls: Arc<rustls::ServerConfig>) -> Self {
        Self::start_full(backend, |_| {}, None, Some(tls), false, None).await
    }

    async fn start_full(
        backend: Backend,
        tweak: impl FnOnce(&mut ServerConfig),
        oidc: Option<bastion_server::OidcConfig>,
        tls: Option<Arc<rustls::ServerConfig>>,
        dataset_key: bool,
        serving: Option<ServingTweak<'_>>,
    ) -> Self {
        // reqwest is built without a default TLS provider (the workspace uses ring's).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let uri = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("t.db").display()),
            Backend::Postgres => {
                fresh_postgres_db(&postgres_admin_url().expect("postgres url")).await
            }
        };
        let meta = MetaStore::connect(&MetaStoreOptions {
            uri: uri.clone(),
            max_connections: 4,
            sqlite_sync: SqliteSync::Normal,
        })
        .await
        .expect("open metadata store");
        let blobs = bastion_store::blob::open(
            &dir.path().join("blobs").display().to_string(),
            dir.path().join("tmp"),
        )
        .expect("open blob store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = ServerConfig::local(addr);
        tweak(&mut config);
        let audit_key = Arc::new(ed25519_dalek::SigningKey::from_bytes(&rand_seed()));
        let blobs: Arc<dyn bastion_store::BlobStore> = Arc::from(blobs);
        let state = AppState::new(
            meta.clone(),
            blobs.clone(),
            config,
            bastion_server::prometheus(),
            oidc,
            Some(audit_key.clone()),
            Arc::new(bastion_evidence::Attestor::ephemeral().unwrap()),
        )
        .with_datasets(
            dataset_key.then(|| {
                let key = dir.path().join(bastion_store::crypt::DATASET_KEY_FILE);
                Arc::new(bastion_store::crypt::DatasetCipher::create(&key).expect("dataset key"))
            }),
            dir.path().join("tmp"),
        );
        let mut serve = bastion_serve::ServeConfig::new(dir.path().join("tmp").join("serve"));
        if let Some(tweak) = serving {
            tweak(&mut serve);
        }
        let state = state.with_serving(serve);
        let models = state.models.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let scheme = if tls.is_some() { "https" } else { "http" };
        tokio::spawn(async move {
            let stop = async {
                let _ = rx.await;
            };
            let _ = match tls {
                Some(tls) => bastion_server::serve_tls(listener, tls, state, stop).await,
                None => bastion_server::serve(listener, state, stop).await,
            };
        });
        Self {
            base: format!("{scheme}://{addr}"),
            addr,
            client: reqwest::Client::new(),
            meta,
            blobs,
            audit_key,
            db_uri: uri,
            models,
            _dir: dir,
            shutdown: Some(tx),
        }
    }

    /// Uploads an artifact through the MLflow artifact proxy and asserts it was stored.
    pub async fn put_artifact(&self, path: &str, bytes: &[u8]) {
        let st = self
            .client
            .put(self.url(&format!("/api/2.0/mlflow-artifacts/artifacts/{path}")))
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap()
            .status();
        assert!(st.is_success(), "{path}: {st}");
    }

    /// The first thousand audit entries.
    pub async fn audit_entries(&self) -> Vec<bastion_audit::entry::AuditEntry> {
        self.meta
            .audit_entries(&bastion_store::meta::AuditQuery {
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("audit entries")
    }

    /// Where the local blob store keeps the blob with this hex digest (to tamper with it).
    pub fn blob_path(&self, hex: &str) -> std::path::PathBuf {
        self._dir
            .path()
            .join("blobs")
            .join(format!("sha256/{}/{}/{hex}", &hex[..2], &hex[2..4]))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn decode(resp: reqwest::Response) -> (StatusCode, Value) {
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let req = self.client.request(method, self.url(path));
        let req = if body.is_null() { req } else { req.json(&body) };
        Self::decode(req.send().await.expect("request")).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::POST,
            &format!("/api/2.0/mlflow{path}"),
            body,
        )
        .await
    }

    /// GET with query parameters (repeated keys for lists).
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> (StatusCode, Value) {
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                )
            })
            .collect();
        let url = format!("/api/2.0/mlflow{path}?{}", qs.join("&"));
        Self::decode(
            self.client
                .get(self.url(&url))
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn ok_post(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.post(path, body).await;
        assert_eq!(s, StatusCode::OK, "POST {path}: {v}");
        v
    }

    pub async fn ok_get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let (s, v) = self.get(path, query).await;
        assert_eq!(s, StatusCode::OK, "GET {path}: {v}");
        v
    }

    /// Sends raw bytes on a TCP connection, so paths reach the server exactly as written
    /// (HTTP clients normalise `..` away).
    pub async fn raw(&self, request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    pub async fn create_experiment(&self, name: &str) -> String {
        let v = self
            .ok_post("/experiments/create", serde_json::json!({ "name": name }))
            .await;
        v["experiment_id"]
            .as_str()
            .expect("experiment_id")
            .to_owned()
    }

    pub async fn create_run(&self, experiment_id: &str) -> String {
        let v = self
            .ok_post(
                "/runs/create",
                serde_json::json!({ "experiment_id": experiment_id, "start_time": 1000 }),
            )
            .await;
        v["run"]["info"]["run_id"]
            .as_str()
            .expect("run_id")
            .to_owned()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn assert_error(
    status: StatusCode,
    body: &Value,
    want_status: u16,
    code: &str,
    message_part: &str,
) {
    assert_eq!(status.as_u16(), want_status, "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    let msg = body["message"].as_str().unwrap_or("");
    assert!(
        msg.contains(message_part),
        "message {msg:?} lacks {message_part:?}"
    );
}

/// Generates one `#[tokio::test]` per backend for each listed async fn taking a `Backend`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::common::postgres_admin_url().is_none() {
                        assert!(
                            std::env::var_os("BASTION_TEST_REQUIRE_BACKENDS").is_none(),
                            "BASTION_TEST_REQUIRE_BACKENDS is set but BASTION_TEST_POSTGRES_URL is not"
                        );
                        eprintln!("BASTION_TEST_POSTGRES_URL is not set: PostgreSQL half skipped");
                        return;
                    }
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}

fn rand_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    seed[..16].copy_from_slice(&t.to_le_bytes());
    seed[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    seed
}
