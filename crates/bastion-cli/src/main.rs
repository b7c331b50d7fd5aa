//! `bastion`: the command line. It parses arguments, sets up logging and calls the library
//! crates; it holds no business logic of its own.

mod config;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use bastion_server::{AppState, ServerConfig};
use bastion_store::meta::{MetaStore, MetaStoreOptions, redact};
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use config::{FileConfig, ServerArgs, ServerSettings};

#[derive(Parser)]
#[command(
    name = "bastion",
    version,
    about = "Secure MLOps platform: tracking, registry and artifacts with security built in"
)]
struct Cli {
    /// Bastion home: the default place for the database, blobs and keys.
    #[arg(long, env = "BASTION_HOME", default_value = ".bastion", global = true)]
    home: PathBuf,
    /// Configuration file (TOML). Default: bastion.toml in the home, if present.
    #[arg(long, env = "BASTION_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log output format.
    #[arg(
        long,
        env = "BASTION_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the tracking, registry and artifact server (MLflow REST API compatible).
    Server(ServerArgs),
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => run_server(&cli.home, cli.config.as_deref(), args).await,
        }
    })
}

async fn run_server(
    home: &std::path::Path,
    config: Option<&std::path::Path>,
    args: ServerArgs,
) -> Result<()> {
    std::fs::create_dir_all(home)
        .with_context(|| format!("creating the Bastion home {}", home.display()))?;
    let home = home
        .canonicalize()
        .with_context(|| format!("resolving {}", home.display()))?;
    let file = FileConfig::load(config, &home)?;
    let settings = ServerSettings::resolve(args, file.server, &home)?;

    let meta = MetaStore::connect(&MetaStoreOptions {
        uri: settings.backend_store_uri.clone(),
        max_connections: settings.db_connections,
        sqlite_sync: settings.sqlite_synchronous,
    })
    .await
    .with_context(|| {
        format!(
            "opening the metadata store {}",
            redact(&settings.backend_store_uri)
        )
    })?;
    let blobs =
        bastion_store::blob::open(&settings.artifacts_destination, settings.tmp_dir.clone())
            .with_context(|| {
                format!("opening the blob store {}", settings.artifacts_destination)
            })?;

    let config = ServerConfig {
        bind: settings.bind,
        allowed_hosts: settings.allowed_hosts.clone(),
        cors_origins: settings.cors_allowed_origins.clone(),
        max_json_bytes: settings.max_json_bytes,
        max_artifact_bytes: settings.max_artifact_bytes,
    };
    let state = AppState {
        meta,
        blobs: Arc::from(blobs),
        config: Arc::new(config),
        metrics: bastion_server::prometheus(),
    };
    if !settings.bind.ip().is_loopback() {
        tracing::warn!(bind = %settings.bind, "listening on a non-loopback address: the server is reachable from the network");
    }
    let listener = tokio::net::TcpListener::bind(settings.bind)
        .await
        .with_context(|| format!("binding {}", settings.bind))?;
    let local = listener.local_addr()?;
    tracing::info!(
        address = %local,
        backend = %redact(&settings.backend_store_uri),
        artifacts = %state.blobs.describe(),
        "bastion server listening"
    );
    println!("Bastion server listening on http://{local}");
    bastion_server::serve(listener, state, shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("bastion server stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; draining in-flight requests");
}
