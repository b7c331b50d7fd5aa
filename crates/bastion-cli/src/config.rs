//! Configuration: command-line flags override environment variables, which override the TOML
//! file (`--config`, or `bastion.toml` in the home), which overrides the defaults.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bastion_server::tls::TlsFiles;
use bastion_store::meta::SqliteSync;
use clap::Args;
use serde::Deserialize;

/// Flags of `bastion server`; each also reads a `BASTION_*` environment variable.
#[derive(Debug, Args, Default)]
pub struct ServerArgs {
    /// Address to bind. Anything other than loopback exposes the server to the network.
    #[arg(long, env = "BASTION_HOST")]
    pub host: Option<IpAddr>,
    #[arg(long, short, env = "BASTION_PORT")]
    pub port: Option<u16>,
    /// Metadata store: sqlite:///path/to.db or postgresql://user:pass@host/db.
    /// Default: SQLite in the Bastion home.
    #[arg(long, env = "BASTION_BACKEND_STORE_URI")]
    pub backend_store_uri: Option<String>,
    /// Blob store: a folder, or s3://bucket/prefix (credentials from AWS_* variables).
    /// Default: `blobs/` in the Bastion home.
    #[arg(long, env = "BASTION_ARTIFACTS_DESTINATION")]
    pub artifacts_destination: Option<String>,
    /// Extra Host header values to accept (comma-separated; `*` accepts any).
    #[arg(long, env = "BASTION_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Option<Vec<String>>,
    /// Origins allowed to call the API from a browser (comma-separated). Default: CORS off.
    #[arg(long, env = "BASTION_CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Option<Vec<String>>,
    /// SQLite durability: `normal` survives process crashes, `full` also power loss.
    #[arg(long, env = "BASTION_SQLITE_SYNCHRONOUS")]
    pub sqlite_synchronous: Option<SqliteSync>,
    /// Largest accepted JSON request body, in bytes.
    #[arg(long, env = "BASTION_MAX_JSON_BYTES")]
    pub max_json_bytes: Option<usize>,
    /// Largest accepted artifact upload, in bytes.
    #[arg(long, env = "BASTION_MAX_ARTIFACT_BYTES")]
    pub max_artifact_bytes: Option<u64>,
    /// Largest accepted inference request (JSON and binary tensors), in bytes.
    #[arg(long, env = "BASTION_MAX_INFER_BYTES")]
    pub max_infer_bytes: Option<usize>,
    /// Seconds an inference request's body may take to arrive (slower: 408).
    #[arg(long, env = "BASTION_INFER_BODY_TIMEOUT")]
    pub infer_body_timeout: Option<u64>,
    /// Metadata-store connections.
    #[arg(long, env = "BASTION_DB_CONNECTIONS")]
    pub db_connections: Option<u32>,
    /// Turn authentication off: every caller acts as an admin. For throwaway local use only;
    /// a warning is logged on every start.
    #[arg(long, env = "BASTION_INSECURE")]
    pub insecure: bool,
    /// Requests per second allowed from one client address (burst: twice that; 0: no limit).
    #[arg(long, env = "BASTION_RATE_LIMIT_PER_IP")]
    pub rate_limit_per_ip: Option<u32>,
    /// Requests per second allowed for one user (burst: twice that; 0: no limit).
    #[arg(long, env = "BASTION_RATE_LIMIT_PER_USER")]
    pub rate_limit_per_user: Option<u32>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "BASTION_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "BASTION_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: ask clients for a certificate chaining to these PEM CA certificates; a
    /// verified certificate's subject CN is the Bastion user it authenticates.
    #[arg(long, env = "BASTION_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// With --tls-client-ca: refuse clients without a certificate (default: they may use
    /// tokens or passwords instead).
    #[arg(long, env = "BASTION_TLS_REQUIRE_CLIENT_CERT")]
    pub tls_require_client_cert: bool,
    /// Putting a version in production (the `production` alias, the Production stage) needs
    /// a passing `bastion gate` decision on its exact digest (default: true).
    #[arg(long, env = "BASTION_PRODUCTION_GATE")]
    pub production_gate: Option<bool>,
    /// The policy file production decisions must have applied (by its SHA-256); without it
    /// any passing decision counts.
    #[arg(long, env = "BASTION_PRODUCTION_POLICY")]
    pub production_policy: Option<PathBuf>,
    /// Serve only versions with a passing gate decision (default: false — a version whose
    /// newest decision failed is refused, one never gated is served).
    #[arg(long, env = "BASTION_SERVE_REQUIRES_GATE")]
    pub serve_requires_gate: Option<bool>,
    /// Run the monitor worker inside the server with these alert rules (TOML; see `bastion
    /// monitor`), as consumer `server`.
    #[arg(long, env = "BASTION_MONITOR_RULES")]
    pub monitor_rules: Option<PathBuf>,
    /// Publish inference events to this NATS JetStream server too (`nats://host:port`), for
    /// monitor workers anywhere (`bastion monitor --nats`); the monitor inside the server
    /// then reads them there. Every replica of a deployment publishes to the same stream.
    #[arg(long, env = "BASTION_NATS_URL")]
    pub nats: Option<String>,
    /// The JetStream stream of inference events (default: BASTION_EVENTS).
    #[arg(long, env = "BASTION_NATS_STREAM")]
    pub nats_stream: Option<String>,
}

/// The `[server]` table of the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub host: Option<IpAddr>,
    pub port: Option<u16>,
    pub backend_store_uri: Option<String>,
    pub artifacts_destination: Option<String>,
    pub allowed_hosts: Option<Vec<String>>,
    pub cors_allowed_origins: Option<Vec<String>>,
    pub sqlite_synchronous: Option<SqliteSync>,
    pub max_json_bytes: Option<usize>,
    pub max_artifact_bytes: Option<u64>,
    pub max_infer_bytes: Option<usize>,
    pub infer_body_timeout: Option<u64>,
    pub db_connections: Option<u32>,
    pub production_gate: Option<bool>,
    pub production_policy: Option<PathBuf>,
    pub serve_requires_gate: Option<bool>,
    pub monitor_rules: Option<PathBuf>,
    pub nats_url: Option<String>,
    pub nats_stream: Option<String>,
}

/// `[auth]`: rate limits and the OIDC identity provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    pub rate_limit_per_ip: Option<u32>,
    pub rate_limit_per_user: Option<u32>,
    pub oidc: Option<OidcFile>,
}

/// `[auth.oidc]`: bearer JWTs from an external identity provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcFile {
    pub issuer: String,
    pub audience: String,
    /// A JWKS file, or an https:// URL to fetch it from (refreshed hourly).
    pub jwks: String,
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    pub groups_claim: Option<String>,
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// `[[group, role], ...]`, first match wins, for users Bastion does not know.
    #[serde(default)]
    pub group_roles: Vec<(String, String)>,
    /// Role of unknown users in no mapped group; absent refuses them.
    pub default_role: Option<String>,
}

fn default_user_claim() -> String {
    "sub".into()
}

fn default_leeway() -> u64 {
    60
}

/// `[tls]`: HTTPS, and mutual TLS when `client_ca` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    #[serde(default)]
    pub require_client_cert: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerFile,
    #[serde(default)]
    pub auth: AuthFile,
    #[serde(default)]
    pub tls: TlsFile,
}

impl FileConfig {
    /// Reads `explicit` (which must exist) or `home/bastion.toml` (if it exists).
    pub fn load(explicit: Option<&Path>, home: &Path) -> Result<Self> {
        let (path, required) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => (home.join("bastion.toml"), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("invalid configuration file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Self::default()),
            Err(e) => {
                Err(e).with_context(|| format!("cannot read configuration file {}", path.display()))
            }
        }
    }
}

/// The settled configuration of `bastion server`.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    pub backend_store_uri: String,
    pub artifacts_destination: String,
    pub tmp_dir: PathBuf,
    pub allowed_hosts: Vec<String>,
    pub cors_allowed_origins: Vec<String>,
    pub sqlite_synchronous: SqliteSync,
    pub max_json_bytes: usize,
    pub max_artifact_bytes: u64,
    pub max_infer_bytes: usize,
    pub infer_body_timeout: u64,
    pub db_connections: u32,
    pub insecure: bool,
    pub rate_limit_per_ip: u32,
    pub rate_limit_per_user: u32,
    pub production_gate: bool,
    pub production_policy: Option<PathBuf>,
    pub serve_requires_gate: bool,
    pub monitor_rules: Option<PathBuf>,
    /// `None`: events go to the store only.
    pub nats: Option<bastion_nats::NatsSettings>,
    /// `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
}

/// Flags replace the file's `[tls]` table as a whole, so a certificate from one source is
/// never paired with a key from another. Relative paths in the file are relative to the home.
fn resolve_tls(args: &ServerArgs, file: &TlsFile, home: &Path) -> Result<Option<TlsFiles>> {
    let from_flags = args.tls_cert.is_some() || args.tls_client_ca.is_some();
    let (cert, key, client_ca, require) = if from_flags {
        (
            args.tls_cert.clone(),
            args.tls_key.clone(),
            args.tls_client_ca.clone(),
            args.tls_require_client_cert,
        )
    } else {
        let in_home = |p: &Option<PathBuf>| p.as_ref().map(|p| home.join(p));
        (
            in_home(&file.cert),
            in_home(&file.key),
            in_home(&file.client_ca),
            file.require_client_cert || args.tls_require_client_cert,
        )
    };
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert,
            key,
            client_ca,
            require_client_cert: require,
        })),
        (None, None) if client_ca.is_none() && !require => Ok(None),
        (None, None) => {
            bail!(
                "client certificates (mutual TLS) need HTTPS: set the TLS certificate and key too"
            )
        }
        _ => bail!("TLS needs both a certificate and its private key"),
    }
}

impl ServerSettings {
    pub fn resolve(
        args: ServerArgs,
        file: ServerFile,
        auth: &AuthFile,
        tls: &TlsFile,
        home: &Path,
    ) -> Result<Self> {
        let tls = resolve_tls(&args, tls, home)?;
        let host = args
            .host
            .or(file.host)
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let port = args.port.or(file.port).unwrap_or(5000);
        let backend_store_uri = args
            .backend_store_uri
            .or(file.backend_store_uri)
            .unwrap_or_else(|| format!("sqlite://{}", home.join("bastion.db").display()));
        let artifacts_destination = args
            .artifacts_destination
            .or(file.artifacts_destination)
            .unwrap_or_else(|| home.join("blobs").display().to_string());
        let max_json_bytes = args
            .max_json_bytes
            .or(file.max_json_bytes)
            .unwrap_or(4 * 1024 * 1024);
        if max_json_bytes < 1024 {
            bail!("max_json_bytes must be at least 1024");
        }
        Ok(Self {
            bind: SocketAddr::new(host, port),
            backend_store_uri,
            artifacts_destination,
            tmp_dir: home.join("tmp"),
            allowed_hosts: args
                .allowed_hosts
                .or(file.allowed_hosts)
                .unwrap_or_default(),
            cors_allowed_origins: args
                .cors_allowed_origins
                .or(file.cors_allowed_origins)
                .unwrap_or_default(),
            sqlite_synchronous: args
                .sqlite_synchronous
                .or(file.sqlite_synchronous)
                .unwrap_or_default(),
            max_json_bytes,
            max_artifact_bytes: args
                .max_artifact_bytes
                .or(file.max_artifact_bytes)
                .unwrap_or(5 * 1024 * 1024 * 1024),
            max_infer_bytes: args
                .max_infer_bytes
                .or(file.max_infer_bytes)
                .unwrap_or(32 << 20),
            infer_body_timeout: args
                .infer_body_timeout
                .or(file.infer_body_timeout)
                .unwrap_or(30)
                .max(1),
            db_connections: args.db_connections.or(file.db_connections).unwrap_or(4),
            insecure: args.insecure,
            rate_limit_per_ip: args
                .rate_limit_per_ip
                .or(auth.rate_limit_per_ip)
                .unwrap_or(2000),
            rate_limit_per_user: args
                .rate_limit_per_user
                .or(auth.rate_limit_per_user)
                .unwrap_or(1000),
            production_gate: args
                .production_gate
                .or(file.production_gate)
                .unwrap_or(true),
            // Relative paths in the file are relative to the home, as for TLS files.
            production_policy: args
                .production_policy
                .or_else(|| file.production_policy.map(|p| home.join(p))),
            serve_requires_gate: args
                .serve_requires_gate
                .or(file.serve_requires_gate)
                .unwrap_or(false),
            monitor_rules: args
                .monitor_rules
                .or_else(|| file.monitor_rules.map(|p| home.join(p))),
            nats: args.nats.or(file.nats_url).map(|url| {
                let mut n = bastion_nats::NatsSettings::new(&url);
                if let Some(stream) = args.nats_stream.or(file.nats_stream) {
                    n.stream = stream;
                }
                n
            }),
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_override_defaults() {
        let home = Path::new("/h");
        let file: FileConfig =
            toml::from_str("[server]\nport = 6000\nhost = \"0.0.0.0\"\n").unwrap();
        let args = ServerArgs {
            port: Some(7000),
            ..Default::default()
        };
        let s = ServerSettings::resolve(args, file.server, &file.auth, &file.tls, home).unwrap();
        assert!(s.tls.is_none());
        assert_eq!(s.bind, "0.0.0.0:7000".parse().unwrap());
        assert_eq!(s.backend_store_uri, "sqlite:///h/bastion.db");
        assert_eq!(s.artifacts_destination, "/h/blobs");
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<FileConfig>("[server]\nprot = 1\n").is_err());
        assert!(toml::from_str::<FileConfig>("[auth]\nrate = 1\n").is_err());
        let f: FileConfig = toml::from_str(
            "[auth.oidc]\nissuer = \"i\"\naudience = \"a\"\njwks = \"j.json\"\ngroup_roles = [[\"ml\", \"data-scientist\"]]\n",
        )
        .unwrap();
        assert!(toml::from_str::<FileConfig>("[tls]\ncertificate = \"c\"\n").is_err());
        let o = f.auth.oidc.unwrap();
        assert_eq!(o.user_claim, "sub");
        assert_eq!(o.group_roles, vec![("ml".into(), "data-scientist".into())]);
    }

    #[test]
    fn tls_comes_whole_from_flags_or_from_the_file() {
        let home = Path::new("/h");
        let file: FileConfig = toml::from_str(
            "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_ca = \"/etc/ca.pem\"\n",
        )
        .unwrap();
        let s = ServerSettings::resolve(
            ServerArgs::default(),
            file.server,
            &file.auth,
            &file.tls,
            home,
        )
        .unwrap();
        let tls = s.tls.unwrap();
        assert_eq!(tls.cert, Path::new("/h/c.pem"));
        assert_eq!(tls.client_ca.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert!(!tls.require_client_cert);

        let args = ServerArgs {
            tls_cert: Some("/x/c.pem".into()),
            tls_key: Some("/x/k.pem".into()),
            ..Default::default()
        };
        let file: FileConfig = toml::from_str("[tls]\nclient_ca = \"ca.pem\"\n").unwrap();
        let tls = ServerSettings::resolve(args, file.server, &file.auth, &file.tls, home)
            .unwrap()
            .tls
            .unwrap();
        assert_eq!(
            (tls.key.as_path(), tls.client_ca),
            (Path::new("/x/k.pem"), None)
        );

        for bad in [
            "[tls]\ncert = \"c.pem\"\n",
            "[tls]\nclient_ca = \"ca.pem\"\n",
            "[tls]\nrequire_client_cert = true\n",
        ] {
            let file: FileConfig = toml::from_str(bad).unwrap();
            let err = ServerSettings::resolve(
                ServerArgs::default(),
                file.server,
                &file.auth,
                &file.tls,
                home,
            )
            .unwrap_err();
            assert!(
                err.to_string().contains("TLS") || err.to_string().contains("HTTPS"),
                "{bad}: {err}"
            );
        }
    }
}
