//! `bastion`: the command line. It parses arguments, sets up logging and calls the library
//! crates; it holds no business logic of its own.

/// Monitoring, serving and ingestion allocate many small, short-lived values (decoded JSON,
/// rows, windows); mimalloc serves them faster than the system allocator
/// (`docs/benchmarks.md`, monitor throughput).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod attest;
mod audit;
mod config;
mod data;
mod deploy;
mod feedback;
mod gate;
mod identity;
mod import;
mod model;
mod monitor;
mod pipeline;
mod quickstart;
mod redteam;
mod scan;
mod server;
mod tune;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bastion_store::meta::{MetaStore, MetaStoreOptions, redact};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use config::{FileConfig, ServerArgs};

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

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// A model to admit and load at start: NAME, NAME@VERSION or NAME@ALIAS (repeatable).
    #[arg(long = "model", value_name = "NAME[@VERSION]")]
    models: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the tracking, registry and artifact server (MLflow REST API compatible), with
    /// model serving over the Open Inference Protocol at /v2.
    Server(ServerArgs),
    /// Serve models over the Open Inference Protocol (the same server as `bastion server`),
    /// admitting the named versions before it listens: it does not start if one is refused.
    Serve(ServeArgs),
    /// Manage users (roles, passwords, disabling).
    #[command(subcommand)]
    User(identity::UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(identity::TokenCommand),
    /// Manage per-resource grants.
    #[command(subcommand)]
    Grant(identity::GrantCommand),
    /// Read, verify and prove the tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Scan model files, folders and archives for code execution, without loading them.
    /// Exits 0 if clean, 1 on findings at or above --fail-on, 2 if anything could not be
    /// scanned.
    Scan(scan::ScanArgs),
    /// Create a signing key pair (PEM; the private key with mode 0600).
    Keygen(attest::KeygenArgs),
    /// Sign a model file or folder: an OpenSSF model-signing bundle (Sigstore bundle v0.3).
    Sign(attest::SignArgs),
    /// Verify a model against its signature, or a registered version end to end. Exits 0
    /// if verified, 1 if not, 2 if the check could not run.
    Verify(attest::VerifyArgs),
    /// Write a CycloneDX 1.6 ML-BOM of a registered version or a model folder.
    Bom(attest::BomArgs),
    /// Versioned datasets and their checks: profile, validation, drift, PII, poisoning.
    /// Exits 1 when `validate` finds a failed constraint, 2 when a command could not run.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Train a built-in model (logreg, linear, gbdt, forest, mlp) on a dataset version,
    /// tracked as a run; optionally register it.
    Train(model::TrainArgs),
    /// Evaluate a model package or registered version on a dataset version (JSON or HTML).
    Evaluate(model::EvaluateArgs),
    /// Predict with a model package or registered version for a dataset version.
    Predict(model::PredictArgs),
    /// Attack a model on a dataset version: evasion (FGSM, PGD, HopSkipJump, Square),
    /// membership inference, extraction and poisoning; tracked as a run, recorded as
    /// evidence on a registered version.
    Redteam(redteam::RedteamArgs),
    /// Run the shipped example pipeline on the breast-cancer data, then serve the model it
    /// deploys (prints the URL, a fresh admin token and a curl line).
    Quickstart(quickstart::QuickstartArgs),
    /// Run a pipeline (TOML): its steps in dependency order, unchanged steps from the cache.
    Run(pipeline::RunArgs),
    /// Evaluate a policy on a registered version's evidence, record the signed decision,
    /// exit 1 if it fails (JUnit XML and SARIF for CI).
    Gate(gate::GateArgs),
    /// Put a registered model version into service: as the stable version, a canary
    /// (--canary 10%), the shadow or a pinned variant; and set the model's serving settings
    /// (guards, limits, batching, automatic rollback). Admitted first, audited.
    Deploy(deploy::DeployArgs),
    /// Make a model's canary its stable version.
    Promote(deploy::ModelArgs),
    /// Drop a model's canary, or return to its previous stable version.
    Rollback(deploy::ModelArgs),
    /// Show deployments (route tables and serving settings).
    Deployments(deploy::ListArgs),
    /// Watch served models: drift, serving health and alert rules over the inference
    /// events, with automatic responses (webhook, rollback, label-only, quarantine, block or
    /// throttle a caller, re-run a pipeline).
    Monitor(monitor::MonitorArgs),
    /// What the monitor found: list, show, acknowledge and resolve incidents.
    #[command(subcommand)]
    Incidents(monitor::IncidentsCommand),
    /// True labels for answered requests, for the monitor's performance windows.
    #[command(subcommand)]
    Feedback(feedback::FeedbackCommand),
    /// Models from elsewhere: `import` checks an ONNX model, wraps it in a package and
    /// registers it.
    #[command(subcommand)]
    Model(import::ModelCommand),
}

/// Where the metadata lives, for commands that work on the store directly.
#[derive(Debug, Args, Clone, Default)]
pub struct StoreArgs {
    /// Metadata store URI (default: as `bastion server` would use).
    #[arg(long, env = "BASTION_BACKEND_STORE_URI")]
    pub backend_store_uri: Option<String>,
}

fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,ort=warn"));
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
    if let Command::Scan(args) = &cli.command {
        // Its own exit codes: 1 means findings, so an error must not be 1 as well.
        exit_with(scan::run(args));
    }
    // Local key and file work needs no home, store or runtime.
    match &cli.command {
        Command::Keygen(args) => return attest::keygen(args),
        Command::Sign(args) => return attest::sign(args),
        _ => {}
    }
    if let Command::Verify(args) = &cli.command {
        // 1 means "not verified", so an error that stopped the check must be another code.
        exit_with(prepare_home(&cli.home).and_then(|home| attest::verify(&home, args)));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The compute pool starts with the runtime: its threads then exist before the first
    // parallel step (an attack, a training) needs them, not inside its time.
    // Not fatal: without it the pool starts on first use, as it would anyway.
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("bastion-compute-{i}"))
        .build_global()
    {
        tracing::warn!(error = %e, "starting the compute threads early failed");
    }
    // These commands' exit codes carry their verdict (1: a step, a rule or a check failed),
    // so an error that stopped them exits 2.
    let command = match cli.command {
        Command::Run(a) => {
            exit_with(runtime.block_on(async { pipeline::run(&prepare_home(&cli.home)?, a).await }))
        }
        Command::Gate(a) => {
            exit_with(runtime.block_on(async { gate::run(&prepare_home(&cli.home)?, a).await }))
        }
        Command::Data(c) => {
            exit_with(runtime.block_on(async { data::run(&prepare_home(&cli.home)?, c).await }))
        }
        other => other,
    };
    runtime.block_on(async move {
        let home = prepare_home(&cli.home)?;
        let file = FileConfig::load(cli.config.as_deref(), &home)?;
        match command {
            Command::Server(args) => server::run(&home, file, args, &[]).await,
            Command::Serve(args) => server::run(&home, file, args.server, &args.models).await,
            Command::User(c) => identity::user(&home, &file, c).await,
            Command::Token(c) => identity::token(&home, &file, c).await,
            Command::Grant(c) => identity::grant(&home, &file, c).await,
            Command::Audit(c) => audit::run(&home, &file, c).await,
            Command::Bom(args) => attest::bom(&home, &args).await,
            Command::Train(args) => model::train_command(&home, args).await,
            Command::Evaluate(args) => model::evaluate_command(&home, args).await,
            Command::Predict(args) => model::predict_command(&home, args).await,
            Command::Redteam(args) => redteam::redteam_command(&home, args).await,
            Command::Quickstart(args) => {
                let code = quickstart::run(&home, args).await?;
                if code != 0 {
                    std::process::exit(code);
                }
                Ok(())
            }
            Command::Model(cmd) => import::run(&home, cmd).await,
            Command::Deploy(args) => deploy::deploy(&home, args).await,
            Command::Promote(args) => deploy::promote(&home, args).await,
            Command::Rollback(args) => deploy::rollback(&home, args).await,
            Command::Deployments(args) => deploy::list(&home, args).await,
            Command::Monitor(args) => monitor::monitor(&home, args).await,
            Command::Incidents(c) => monitor::incidents(&home, c).await,
            Command::Feedback(c) => feedback::feedback(&home, c).await,
            Command::Scan(_)
            | Command::Verify(_)
            | Command::Keygen(_)
            | Command::Sign(_)
            | Command::Data(_)
            | Command::Gate(_)
            | Command::Run(_) => unreachable_scan(),
        }
    })
}

/// Exits with a command's verdict, or 2 (after saying why) when an error stopped it.
fn exit_with(result: Result<i32>) -> ! {
    std::process::exit(result.unwrap_or_else(|e| {
        eprintln!("Error: {e:#}");
        2
    }))
}

/// `scan`, `verify`, `keygen`, `sign`, `data`, `gate` and `run` returned before this point.
fn unreachable_scan() -> Result<()> {
    anyhow::bail!("this command is handled before the runtime starts")
}

fn prepare_home(home: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(home)
        .with_context(|| format!("creating the Bastion home {}", home.display()))?;
    home.canonicalize()
        .with_context(|| format!("resolving {}", home.display()))
}

/// Opens the metadata store the server of this home would use.
pub async fn open_store(home: &Path, file: &FileConfig, args: &StoreArgs) -> Result<MetaStore> {
    let uri = args
        .backend_store_uri
        .clone()
        .or_else(|| file.server.backend_store_uri.clone())
        .unwrap_or_else(|| format!("sqlite://{}", home.join("bastion.db").display()));
    MetaStore::connect(&MetaStoreOptions {
        uri: uri.clone(),
        max_connections: 2,
        sqlite_sync: file.server.sqlite_synchronous.unwrap_or_default(),
    })
    .await
    .with_context(|| format!("opening the metadata store {}", redact(&uri)))
}

/// Prints a value as pretty JSON on stdout: every command's machine-readable output.
pub fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
