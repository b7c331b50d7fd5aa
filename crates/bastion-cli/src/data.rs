//! `bastion data …`: versioned datasets and their checks on the home's stores. Every check
//! is recorded as evidence on the version's digest. Exit codes: 0 done (and passed), 1 a
//! check failed (`validate`), 2 the command could not run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use bastion_data::drift::{Correction, DriftOptions, diff_parquet};
use bastion_data::ingest::{Format, IngestOptions};
use bastion_data::pii::{Redaction, redact_parquet, scan_parquet};
use bastion_data::poison::{PoisonOptions, check_parquet, class_balance};
use bastion_data::profile::{ProfileOptions, profile_parquet};
use bastion_data::report;
use bastion_data::validate::{Constraints, suggest, validate_parquet};
use bastion_evidence::datasets::{
    DATA_DRIFT, DATA_PII, DATA_POISON, DATA_PROFILE, DATA_VALIDATION, Datasets, LocalParquet,
};
use bastion_store::crypt::{DATASET_KEY_FILE, DatasetCipher};
use bastion_store::meta::{DatasetVersion, MetaStore, parse_dataset_reference};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::attest::{RegistryArgs, open_registry, whoami, write_whole};
use crate::print_json;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Ingest a CSV, TSV, Parquet or JSON Lines file (or a folder of them) as the next
    /// version of a dataset; it is profiled and scanned for personal data on the way in.
    Add(AddArgs),
    /// The latest version of every dataset, or every version of one.
    List {
        name: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// A version's record: digest, lineage, schema and the evidence recorded on it.
    Show {
        /// NAME@vK (or NAME for the latest).
        dataset: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Download a version's canonical Parquet (digest-verified, decrypted if encrypted).
    Get {
        dataset: String,
        #[arg(long, short)]
        output: PathBuf,
        #[command(flatten)]
        registry: RegistryArgs,
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
        registry: RegistryArgs,
    },
    /// Propose constraints (TOML) from a version's profile.
    Suggest {
        dataset: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
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
    pub input: PathBuf,
    #[arg(long)]
    pub name: String,
    /// Read as this format instead of detecting it.
    #[arg(long)]
    pub format: Option<FormatArg>,
    /// Longest accepted line in bytes (CSV, JSON Lines).
    #[arg(long, default_value_t = 16 << 20)]
    pub max_line_bytes: usize,
    #[command(flatten)]
    pub registry: RegistryArgs,
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
    pub registry: RegistryArgs,
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
    pub registry: RegistryArgs,
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
    pub registry: RegistryArgs,
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
    pub registry: RegistryArgs,
}

struct Home {
    meta: MetaStore,
    blobs: Box<dyn bastion_store::BlobStore>,
    cipher: Option<Arc<DatasetCipher>>,
    tmp: PathBuf,
    actor: String,
}

impl Home {
    async fn open(home: &Path, registry: &RegistryArgs) -> Result<Self> {
        let (meta, blobs) = open_registry(home, registry).await?;
        let cipher = DatasetCipher::load(&home.join(DATASET_KEY_FILE))
            .context("loading the dataset encryption key")?
            .map(Arc::new);
        Ok(Self {
            meta,
            blobs,
            cipher,
            tmp: home.join("tmp"),
            actor: format!("cli:{}", whoami()),
        })
    }

    fn datasets(&self) -> Datasets<'_> {
        Datasets {
            meta: &self.meta,
            blobs: self.blobs.as_ref(),
            cipher: self.cipher.clone(),
            tmp: self.tmp.clone(),
        }
    }

    async fn version(&self, reference: &str) -> Result<DatasetVersion> {
        let (name, version) = parse_dataset_reference(reference)?;
        Ok(self.meta.get_dataset_version(&name, version).await?)
    }

    /// The version and its Parquet as a verified local file.
    async fn local(&self, reference: &str) -> Result<(DatasetVersion, LocalParquet)> {
        let v = self.version(reference).await?;
        let local = self.datasets().materialize(&v).await?;
        Ok((v, local))
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

fn emit(output: Option<&Path>, text: &str) -> Result<()> {
    match output {
        Some(p) => write_whole(p, text.as_bytes()),
        None => {
            println!("{text}");
            Ok(())
        }
    }
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
            let h = Home::open(home, &a.registry).await?;
            let bar = rows_bar("ingesting");
            let progress_bar = bar.clone();
            let opts = IngestOptions {
                max_line_bytes: a.max_line_bytes,
                format: a.format.map(|f| match f {
                    FormatArg::Csv => Format::Csv,
                    FormatArg::Tsv => Format::Tsv,
                    FormatArg::Parquet => Format::Parquet,
                    FormatArg::Jsonl => Format::Jsonl,
                }),
            };
            let source = a
                .input
                .canonicalize()
                .unwrap_or_else(|_| a.input.clone())
                .display()
                .to_string();
            let ds = h.datasets();
            let (v, summary, local) = ds
                .add(
                    &a.input,
                    &a.name,
                    &source,
                    &h.actor,
                    opts,
                    Arc::new(move |n| progress_bar.set_position(n)),
                )
                .await?;
            bar.finish_and_clear();
            let path = local.path().to_path_buf();
            let (profile, pii) = tokio::task::spawn_blocking(move || {
                let p = profile_parquet(&path, ProfileOptions::default(), &|_| {})?;
                let pii = scan_parquet(&path)?;
                Ok::<_, bastion_data::DataError>((p, pii))
            })
            .await??;
            ds.record(
                &v,
                DATA_PROFILE,
                "pass",
                serde_json::to_value(&profile)?,
                &h.actor,
            )
            .await?;
            let pii_verdict = if pii.pii_columns == 0 {
                "clean"
            } else {
                "findings"
            };
            ds.record(
                &v,
                DATA_PII,
                pii_verdict,
                serde_json::to_value(&pii)?,
                &h.actor,
            )
            .await?;
            print_json(&json!({
                "dataset": v.reference(),
                "version": v,
                "files": summary.files,
                "pii_columns": pii.pii_columns,
            }))?;
            Ok(0)
        }
        DataCommand::List { name, registry } => {
            let h = Home::open(home, &registry).await?;
            let list = h.meta.list_dataset_versions(name.as_deref()).await?;
            print_json(&list)?;
            Ok(0)
        }
        DataCommand::Show { dataset, registry } => {
            let h = Home::open(home, &registry).await?;
            let v = h.version(&dataset).await?;
            let evidence: Vec<serde_json::Value> = h
                .meta
                .evidence_for(&v.digest)
                .await?
                .into_iter()
                .map(|e| json!({"kind": e.kind, "tool": e.tool, "verdict": e.verdict, "created_by": e.created_by, "created_time": e.created_time}))
                .collect();
            print_json(&json!({ "dataset": v.reference(), "version": v, "evidence": evidence }))?;
            Ok(0)
        }
        DataCommand::Get {
            dataset,
            output,
            registry,
        } => {
            let h = Home::open(home, &registry).await?;
            let (v, local) = h.local(&dataset).await?;
            let dir = output
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
            std::fs::copy(local.path(), tmp.path())
                .with_context(|| format!("writing {}", output.display()))?;
            tmp.persist(&output)
                .with_context(|| format!("writing {}", output.display()))?;
            print_json(&json!({ "dataset": v.reference(), "digest": v.digest, "output": output }))?;
            Ok(0)
        }
        DataCommand::Diff(a) => {
            let h = Home::open(home, &a.registry).await?;
            let (va, vb) = (h.version(&a.a).await?, h.version(&a.b).await?);
            let ds = h.datasets();
            let (la, lb) = (ds.materialize(&va).await?, ds.materialize(&vb).await?);
            let opts = DriftOptions {
                alpha: a.alpha,
                correction: a.correction.parse::<Correction>()?,
                ..Default::default()
            };
            let (pa, pb) = (la.path().to_path_buf(), lb.path().to_path_buf());
            let diff = tokio::task::spawn_blocking(move || diff_parquet(&pa, &pb, &opts)).await??;
            let verdict = if diff.drift.dataset_drift {
                "drift"
            } else {
                "no-drift"
            };
            let body = json!({ "reference": va.reference(), "diff": diff });
            ds.record(&vb, DATA_DRIFT, verdict, body.clone(), &h.actor)
                .await?;
            match a.format {
                ReportFormat::Json => {
                    emit(a.output.as_deref(), &serde_json::to_string_pretty(&body)?)?
                }
                ReportFormat::Html => emit(
                    a.output.as_deref(),
                    &report::drift_html(
                        &format!("Drift {} → {}", va.reference(), vb.reference()),
                        &diff.drift,
                    ),
                )?,
            }
            Ok(0)
        }
        DataCommand::Profile(a) => {
            let h = Home::open(home, &a.registry).await?;
            let (v, local) = h.local(&a.dataset).await?;
            let ds = h.datasets();
            let path = local.path().to_path_buf();
            let bar = rows_bar("profiling");
            let b2 = bar.clone();
            let p = tokio::task::spawn_blocking(move || {
                profile_parquet(&path, ProfileOptions::default(), &|n| b2.set_position(n))
            })
            .await??;
            bar.finish_and_clear();
            ds.record(
                &v,
                DATA_PROFILE,
                "pass",
                serde_json::to_value(&p)?,
                &h.actor,
            )
            .await?;
            match a.format {
                ReportFormat::Json => {
                    emit(a.output.as_deref(), &serde_json::to_string_pretty(&p)?)?
                }
                ReportFormat::Html => emit(
                    a.output.as_deref(),
                    &report::profile_html(&format!("Profile of {}", v.reference()), &p),
                )?,
            }
            Ok(0)
        }
        DataCommand::Validate {
            dataset,
            constraints,
            registry,
        } => {
            let text = std::fs::read_to_string(&constraints)
                .with_context(|| format!("reading the constraints {}", constraints.display()))?;
            let c = Constraints::parse(&text).with_context(|| constraints.display().to_string())?;
            let h = Home::open(home, &registry).await?;
            let (v, local) = h.local(&dataset).await?;
            let ds = h.datasets();
            let path = local.path().to_path_buf();
            let r =
                tokio::task::spawn_blocking(move || validate_parquet(&path, &c, SystemTime::now()))
                    .await??;
            let verdict = if r.passed { "pass" } else { "fail" };
            ds.record(
                &v,
                DATA_VALIDATION,
                verdict,
                json!({ "constraints": text, "report": r }),
                &h.actor,
            )
            .await?;
            print_json(&r)?;
            for f in r.results.iter().filter(|x| !x.passed) {
                eprintln!(
                    "FAILED {}: {} ({} rows)",
                    f.constraint, f.description, f.failed_rows
                );
            }
            Ok(if r.passed { 0 } else { 1 })
        }
        DataCommand::Suggest {
            dataset,
            output,
            registry,
        } => {
            let h = Home::open(home, &registry).await?;
            let (v, local) = h.local(&dataset).await?;
            let path = local.path().to_path_buf();
            let p = tokio::task::spawn_blocking(move || {
                profile_parquet(&path, ProfileOptions::default(), &|_| {})
            })
            .await??;
            let text = format!(
                "# Constraints suggested from the profile of {}\n{}",
                v.reference(),
                suggest(&p).to_toml()
            );
            emit(output.as_deref(), &text)?;
            Ok(0)
        }
        DataCommand::Pii(a) => {
            let h = Home::open(home, &a.registry).await?;
            let (v, local) = h.local(&a.dataset).await?;
            let ds = h.datasets();
            let path = local.path().to_path_buf();
            let r = tokio::task::spawn_blocking(move || scan_parquet(&path)).await??;
            let verdict = if r.pii_columns == 0 {
                "clean"
            } else {
                "findings"
            };
            ds.record(&v, DATA_PII, verdict, serde_json::to_value(&r)?, &h.actor)
                .await?;
            let mut out = json!({ "dataset": v.reference(), "report": r });
            if let Some(how) = a.redact {
                let Some(target) = a.output.clone() else {
                    bail!("--redact needs --output FILE for the redacted copy");
                };
                let how = match how {
                    RedactArg::Mask => Redaction::Mask,
                    RedactArg::Hash => Redaction::Hash,
                };
                // A fresh key per copy: pseudonyms are consistent within one redacted copy.
                let key: [u8; 32] = rand::random();
                let path = local.path().to_path_buf();
                let dir = target
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf();
                let tmp = tempfile::NamedTempFile::new_in(&dir)?;
                let file = tmp.reopen()?;
                let changed =
                    tokio::task::spawn_blocking(move || redact_parquet(&path, file, how, &key))
                        .await??;
                tmp.persist(&target)
                    .with_context(|| format!("writing {}", target.display()))?;
                out["redacted"] = json!({ "output": target, "values_changed": changed });
            }
            print_json(&out)?;
            Ok(0)
        }
        DataCommand::Poison(a) => {
            let h = Home::open(home, &a.registry).await?;
            let (v, local) = h.local(&a.dataset).await?;
            let ds = h.datasets();
            let opts = PoisonOptions {
                label: a.label.clone(),
                k: a.k,
                max_rows: a.max_rows,
                ..Default::default()
            };
            let path = local.path().to_path_buf();
            let r = tokio::task::spawn_blocking(move || check_parquet(&path, &opts)).await??;
            let against = match (&a.against, v.parent_version) {
                (Some(r), _) => Some(h.version(r).await?),
                (None, Some(p)) => Some(h.meta.get_dataset_version(&v.name, Some(p)).await?),
                (None, None) => None,
            };
            let balance = match (&a.label, against) {
                (Some(label), Some(prev)) => {
                    let lp = ds.materialize(&prev).await?;
                    let (pa, pb, l) = (
                        lp.path().to_path_buf(),
                        local.path().to_path_buf(),
                        label.clone(),
                    );
                    let b =
                        tokio::task::spawn_blocking(move || class_balance(&pa, &pb, &l)).await??;
                    Some(json!({ "reference": prev.reference(), "label": b }))
                }
                _ => None,
            };
            let flagged = r.counts.values().sum::<u64>() > 0
                || balance
                    .as_ref()
                    .is_some_and(|b| b["label"]["drift"] == true);
            let body = json!({ "report": r, "class_balance": balance });
            ds.record(
                &v,
                DATA_POISON,
                if flagged { "findings" } else { "clean" },
                body.clone(),
                &h.actor,
            )
            .await?;
            print_json(&body)?;
            Ok(0)
        }
    }
}
