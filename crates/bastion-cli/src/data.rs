//! `bastion data …`: versioned datasets and their checks, on the home's stores or, with
//! `--server`, through a Bastion server's API (same operations, same output). Every check is
//! recorded as evidence on the version's digest. Exit codes: 0 done (and passed), 1 a check
//! failed (`validate`), 2 the command could not run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bastion_data::drift::{Correction, DriftOptions};
use bastion_data::ingest::{Format, IngestOptions};
use bastion_data::pii::Redaction;
use bastion_data::poison::PoisonOptions;
use bastion_data::report;
use bastion_evidence::datasets::Datasets;
use bastion_store::crypt::{DATASET_KEY_FILE, DatasetCipher};
use bastion_store::meta::{DatasetVersion, MetaStore, parse_dataset_reference};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::attest::{RegistryArgs, open_registry, whoami, write_whole};
use crate::print_json;
pub(crate) mod remote;
pub(crate) mod versions;

use remote::Remote;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Ingest a CSV, TSV, Parquet or JSON Lines file (or a folder of them), an S3 object or
    /// prefix (s3://bucket/key), or the rows of a PostgreSQL query (postgresql://… --query)
    /// as the next version of a dataset; it is profiled and scanned for personal data on the
    /// way in.
    Add(AddArgs),
    /// Split a version into train, test (and validation) parts, each a version of its own
    /// (NAME-train, NAME-test, …); seeded, optionally stratified by a column.
    Split(versions::SplitArgs),
    /// Run a SQL query (SQLite dialect, read-only) over versions as tables; the result is the
    /// next version of --name, with its lineage.
    Transform(versions::TransformArgs),
    /// The latest version of every dataset, or every version of one.
    List {
        name: Option<String>,
        #[command(flatten)]
        at: Where,
    },
    /// A version's record: digest, lineage, schema and the evidence recorded on it.
    Show {
        /// NAME@vK (or NAME for the latest).
        dataset: String,
        #[command(flatten)]
        at: Where,
    },
    /// Download a version's canonical Parquet (digest-verified, decrypted if encrypted).
    Get {
        dataset: String,
        #[arg(long, short)]
        output: PathBuf,
        #[command(flatten)]
        at: Where,
    },
    /// Schema and row-count changes between two versions and per-column drift.
    Diff(DiffArgs),
    /// The profile of a version (JSON or a self-contained HTML report).
    Profile(ReportArgs),
    /// Check a version against a constraints file; exits 1 if any constraint fails.
    Validate {
        dataset: String,
        #[arg(long, short)]
        constraints: PathBuf,
        #[command(flatten)]
        at: Where,
    },
    /// Propose constraints (TOML) from a version's profile.
    Suggest {
        dataset: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        at: Where,
    },
    /// Find personal data; with --redact, write a redacted copy.
    Pii(PiiArgs),
    /// Duplicates, conflicting labels, outliers and label-noise candidates.
    Poison(PoisonArgs),
    /// Create the home's dataset encryption key (age X25519); from then on dataset blobs are
    /// stored encrypted.
    Keygen,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// A file or folder, s3://bucket/key (an object, or every object under the prefix), or a
    /// postgresql:// URL with --query.
    pub input: PathBuf,
    #[arg(long)]
    pub name: String,
    /// The query whose rows to ingest, when the input is a PostgreSQL URL (run read-only).
    #[arg(long)]
    pub query: Option<String>,
    /// Stop the PostgreSQL query after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// When the content equals the dataset's latest version, answer that version instead of
    /// adding a copy.
    #[arg(long)]
    pub if_changed: bool,
    /// Read as this format instead of detecting it.
    #[arg(long)]
    pub format: Option<FormatArg>,
    /// Longest accepted line in bytes (CSV, JSON Lines).
    #[arg(long, default_value_t = 16 << 20)]
    pub max_line_bytes: usize,
    #[command(flatten)]
    pub at: Where,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Csv,
    Tsv,
    Parquet,
    Jsonl,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The reference version.
    pub a: String,
    /// The current version.
    pub b: String,
    #[arg(long, default_value = "fdr")]
    pub correction: String,
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    #[arg(long, value_enum, default_value = "json")]
    pub format: ReportFormat,
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub at: Where,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Json,
    Html,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    pub dataset: String,
    #[arg(long, value_enum, default_value = "json")]
    pub format: ReportFormat,
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub at: Where,
}

#[derive(Debug, Args)]
pub struct PiiArgs {
    pub dataset: String,
    /// Write a copy (Parquet) with every detected value masked or keyed-hashed.
    #[arg(long, value_enum)]
    pub redact: Option<RedactArg>,
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub at: Where,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RedactArg {
    Mask,
    Hash,
}

#[derive(Debug, Args)]
pub struct PoisonArgs {
    pub dataset: String,
    /// The label column (enables conflicting-duplicate and label-noise checks).
    #[arg(long)]
    pub label: Option<String>,
    /// Compare the label's class balance with this version (default: the parent version).
    #[arg(long)]
    pub against: Option<String>,
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    #[arg(long, default_value_t = 20_000)]
    pub max_rows: usize,
    #[command(flatten)]
    pub at: Where,
}

/// Where the datasets are: this home's stores, or a Bastion server.
#[derive(Debug, Args)]
pub struct Where {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// A Bastion server (http[s]://host:port) to work through instead of this home's stores.
    #[arg(long, env = "BASTION_SERVER")]
    pub server: Option<String>,
    /// The API token for --server (default: $BASTION_TOKEN, then $MLFLOW_TRACKING_TOKEN).
    #[arg(long, env = "BASTION_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// This home's stores, for commands that work on dataset versions.
pub(crate) struct Home {
    pub home: PathBuf,
    pub meta: MetaStore,
    pub blobs: Box<dyn bastion_store::BlobStore>,
    pub cipher: Option<Arc<DatasetCipher>>,
    pub tmp: PathBuf,
    pub actor: String,
}

impl Home {
    pub async fn open(home: &Path, registry: &RegistryArgs) -> Result<Self> {
        let (meta, blobs) = open_registry(home, registry).await?;
        let cipher = DatasetCipher::load(&home.join(DATASET_KEY_FILE))
            .context("loading the dataset encryption key")?
            .map(Arc::new);
        Ok(Self {
            home: home.to_owned(),
            meta,
            blobs,
            cipher,
            tmp: home.join("tmp"),
            actor: format!("cli:{}", whoami()),
        })
    }

    pub fn datasets(&self) -> Datasets<'_> {
        Datasets {
            meta: &self.meta,
            blobs: self.blobs.as_ref(),
            cipher: self.cipher.clone(),
            tmp: self.tmp.clone(),
        }
    }

    pub async fn version(&self, reference: &str) -> Result<DatasetVersion> {
        let (name, version) = parse_dataset_reference(reference)?;
        Ok(self.meta.get_dataset_version(&name, version).await?)
    }
}

/// The API token for `--server`: `--token`, `$BASTION_TOKEN`, then `$MLFLOW_TRACKING_TOKEN`.
pub(crate) fn token_of(at: &Where) -> Option<String> {
    at.token
        .clone()
        .or_else(|| std::env::var("MLFLOW_TRACKING_TOKEN").ok())
        .filter(|t| !t.is_empty())
}

/// The stores a command works on.
enum Target {
    Home(Box<Home>),
    Remote(Remote),
}

impl Target {
    async fn open(home: &Path, at: &Where) -> Result<Self> {
        match &at.server {
            Some(url) => Ok(Self::Remote(Remote::new(url, token_of(at))?)),
            None => Ok(Self::Home(Box::new(Home::open(home, &at.registry).await?))),
        }
    }
}

fn rows_bar(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{spinner}} {{pos}} rows {{per_sec}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar
}

/// `text` to the file (written whole, or not at all), else to stdout.
pub(crate) fn emit(output: Option<&Path>, text: &str) -> Result<()> {
    match output {
        Some(p) => write_whole(p, text.as_bytes()),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

/// A temporary file beside `output`, to be persisted over it once complete.
fn beside(output: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))
}

fn to_value(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn pretty(v: &Value) -> Result<String> {
    Ok(serde_json::to_string_pretty(v)?)
}

pub async fn run(home: &Path, c: DataCommand) -> Result<i32> {
    match c {
        DataCommand::Keygen => {
            let path = home.join(DATASET_KEY_FILE);
            let cipher = DatasetCipher::create(&path)?;
            print_json(&json!({ "key_file": path, "public_key": cipher.public_key() }))?;
            Ok(0)
        }
        DataCommand::Add(a) => {
            let opts = IngestOptions {
                max_line_bytes: a.max_line_bytes,
                format: a.format.map(|f| match f {
                    FormatArg::Csv => Format::Csv,
                    FormatArg::Tsv => Format::Tsv,
                    FormatArg::Parquet => Format::Parquet,
                    FormatArg::Jsonl => Format::Jsonl,
                }),
            };
            let input = a.input.to_string_lossy().into_owned();
            let remote_source = input.starts_with("s3://")
                || input.starts_with("postgres://")
                || input.starts_with("postgresql://");
            if a.query.is_some() && !input.starts_with("postgres") {
                bail!("--query needs a postgresql:// URL as the input");
            }
            if remote_source {
                let Target::Home(h) = Target::open(home, &a.at).await? else {
                    bail!("--server takes local files; ingest {input} on the server's home");
                };
                let added = if input.starts_with("s3://") {
                    versions::add_s3(&h, &input, &a.name, opts, a.if_changed).await?
                } else {
                    let Some(query) = &a.query else {
                        bail!("a PostgreSQL input needs --query (the SELECT whose rows to ingest)");
                    };
                    versions::add_postgres(
                        &h,
                        &input,
                        query,
                        &a.name,
                        std::time::Duration::from_secs(a.timeout),
                        a.if_changed,
                    )
                    .await?
                };
                print_json(&added)?;
                return Ok(0);
            }
            let source = a
                .input
                .canonicalize()
                .unwrap_or_else(|_| a.input.clone())
                .display()
                .to_string();
            let out = match Target::open(home, &a.at).await? {
                Target::Home(h) => {
                    let bar = rows_bar("ingesting");
                    let progress_bar = bar.clone();
                    let added = h
                        .datasets()
                        .add_checked(
                            &a.input,
                            &a.name,
                            &source,
                            &h.actor,
                            opts,
                            a.if_changed,
                            Arc::new(move |n| progress_bar.set_position(n)),
                        )
                        .await?;
                    bar.finish_and_clear();
                    to_value(&added)
                }
                Target::Remote(r) => r.add(&a.input, &a.name, &source, &opts).await?,
            };
            print_json(&out)?;
            Ok(0)
        }
        DataCommand::Split(a) => {
            print_json(&versions::split(home, a).await?)?;
            Ok(0)
        }
        DataCommand::Transform(a) => {
            print_json(&versions::transform(home, a).await?)?;
            Ok(0)
        }
        DataCommand::List { name, at } => {
            let list = match Target::open(home, &at).await? {
                Target::Home(h) => to_value(&h.meta.list_dataset_versions(name.as_deref()).await?),
                Target::Remote(r) => r.list(name.as_deref()).await?,
            };
            print_json(&list)?;
            Ok(0)
        }
        DataCommand::Show { dataset, at } => {
            let out = match Target::open(home, &at).await? {
                Target::Home(h) => to_value(&h.datasets().show(h.version(&dataset).await?).await?),
                Target::Remote(r) => r.show(&dataset).await?,
            };
            print_json(&out)?;
            Ok(0)
        }
        DataCommand::Get {
            dataset,
            output,
            at,
        } => {
            let tmp = beside(&output)?;
            let (reference, digest) = match Target::open(home, &at).await? {
                Target::Home(h) => {
                    let v = h.version(&dataset).await?;
                    let local = h.datasets().materialize(&v).await?;
                    std::fs::copy(local.path(), tmp.path())
                        .with_context(|| format!("writing {}", output.display()))?;
                    (v.reference(), v.digest.to_string())
                }
                Target::Remote(r) => {
                    let d = r.download(&dataset, "parquet", &[], tmp.path()).await?;
                    (d.dataset, d.digest)
                }
            };
            tmp.persist(&output)
                .with_context(|| format!("writing {}", output.display()))?;
            print_json(&json!({ "dataset": reference, "digest": digest, "output": output }))?;
            Ok(0)
        }
        DataCommand::Diff(a) => {
            let opts = DriftOptions {
                alpha: a.alpha,
                correction: a.correction.parse::<Correction>()?,
                ..Default::default()
            };
            let html = matches!(a.format, ReportFormat::Html);
            let text = match Target::open(home, &a.at).await? {
                Target::Home(h) => {
                    let (va, vb) = (h.version(&a.a).await?, h.version(&a.b).await?);
                    let d = h.datasets().diff(&va, &vb, opts, &h.actor).await?;
                    if html {
                        report::drift_html(
                            &format!("Drift {} → {}", d.reference, d.current),
                            &d.diff.drift,
                        )
                    } else {
                        pretty(&to_value(&d))?
                    }
                }
                Target::Remote(r) => {
                    let body =
                        json!({ "against": a.a, "correction": a.correction, "alpha": a.alpha });
                    r.report(&a.b, "diff", &body, html).await?
                }
            };
            emit(a.output.as_deref(), &text)?;
            Ok(0)
        }
        DataCommand::Profile(a) => {
            let html = matches!(a.format, ReportFormat::Html);
            let text = match Target::open(home, &a.at).await? {
                Target::Home(h) => {
                    let v = h.version(&a.dataset).await?;
                    let bar = rows_bar("profiling");
                    let b2 = bar.clone();
                    let p = h
                        .datasets()
                        .profile(&v, &h.actor, Arc::new(move |n| b2.set_position(n)))
                        .await?;
                    bar.finish_and_clear();
                    if html {
                        report::profile_html(&format!("Profile of {}", v.reference()), &p)
                    } else {
                        pretty(&to_value(&p))?
                    }
                }
                Target::Remote(r) => r.report(&a.dataset, "profile", &json!({}), html).await?,
            };
            emit(a.output.as_deref(), &text)?;
            Ok(0)
        }
        DataCommand::Validate {
            dataset,
            constraints,
            at,
        } => {
            let text = std::fs::read_to_string(&constraints)
                .with_context(|| format!("reading the constraints {}", constraints.display()))?;
            let r = match Target::open(home, &at).await? {
                Target::Home(h) => {
                    let v = h.version(&dataset).await?;
                    to_value(
                        &h.datasets()
                            .validate(&v, &text, &h.actor)
                            .await
                            .with_context(|| constraints.display().to_string())?,
                    )
                }
                Target::Remote(r) => r
                    .post(&dataset, "validate", &json!({ "constraints": text }))
                    .await
                    .with_context(|| constraints.display().to_string())?,
            };
            print_json(&r)?;
            let passed = r["passed"] == true;
            for f in r["results"].as_array().into_iter().flatten() {
                if f["passed"] == false {
                    eprintln!(
                        "FAILED {}: {} ({} rows)",
                        f["constraint"].as_str().unwrap_or("?"),
                        f["description"].as_str().unwrap_or(""),
                        f["failed_rows"]
                    );
                }
            }
            Ok(if passed { 0 } else { 1 })
        }
        DataCommand::Suggest {
            dataset,
            output,
            at,
        } => {
            let text = match Target::open(home, &at).await? {
                Target::Home(h) => h.datasets().suggest(&h.version(&dataset).await?).await?,
                Target::Remote(r) => r.text(&dataset, "suggest").await?,
            };
            emit(output.as_deref(), &text)?;
            Ok(0)
        }
        DataCommand::Pii(a) => {
            let target = match (a.redact, &a.output) {
                (Some(how), Some(out)) => Some((
                    match how {
                        RedactArg::Mask => Redaction::Mask,
                        RedactArg::Hash => Redaction::Hash,
                    },
                    out.clone(),
                )),
                (Some(_), None) => bail!("--redact needs --output FILE for the redacted copy"),
                (None, _) => None,
            };
            let at = Target::open(home, &a.at).await?;
            // One exact version for the report and the copy, even if `name` (the latest)
            // gains a version meanwhile.
            let (reference, report) = match &at {
                Target::Home(h) => {
                    let v = h.version(&a.dataset).await?;
                    let r = h.datasets().pii(&v, &h.actor).await?;
                    (v.reference(), to_value(&r))
                }
                Target::Remote(r) => {
                    let shown = r.show(&a.dataset).await?;
                    let exact = shown["dataset"]
                        .as_str()
                        .unwrap_or(a.dataset.as_str())
                        .to_owned();
                    let report = r.post(&exact, "pii", &json!({})).await?;
                    (exact, report)
                }
            };
            let mut out = json!({ "dataset": reference, "report": report });
            if let Some((how, path)) = target {
                let tmp = beside(&path)?;
                let changed = match &at {
                    Target::Home(h) => {
                        let v = h.version(&reference).await?;
                        h.datasets().redact(&v, how, tmp.reopen()?).await?
                    }
                    Target::Remote(r) => {
                        let how = match how {
                            Redaction::Mask => "mask",
                            Redaction::Hash => "hash",
                        };
                        r.download(&reference, "redacted", &[("how", how)], tmp.path())
                            .await?
                            .values_changed
                    }
                };
                tmp.persist(&path)
                    .with_context(|| format!("writing {}", path.display()))?;
                out["redacted"] = json!({ "output": path, "values_changed": changed });
            }
            print_json(&out)?;
            Ok(0)
        }
        DataCommand::Poison(a) => {
            let body = match Target::open(home, &a.at).await? {
                Target::Home(h) => {
                    let v = h.version(&a.dataset).await?;
                    let opts = PoisonOptions {
                        label: a.label.clone(),
                        k: a.k,
                        max_rows: a.max_rows,
                        ..Default::default()
                    };
                    let against = match &a.against {
                        Some(r) => Some(h.version(r).await?),
                        None => None,
                    };
                    h.datasets().poison(&v, opts, against, &h.actor).await?
                }
                Target::Remote(r) => {
                    let body = json!({ "label": a.label, "against": a.against, "k": a.k, "max_rows": a.max_rows });
                    r.post(&a.dataset, "poison", &body).await?
                }
            };
            print_json(&body)?;
            Ok(0)
        }
    }
}
