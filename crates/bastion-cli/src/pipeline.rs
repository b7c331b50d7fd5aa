//! `bastion run PIPELINE.toml`: runs a pipeline's steps in dependency order. Each built-in
//! step is the matching `bastion` command run as a child process on the same home (its JSON
//! answer gives the step's outputs); `command` steps run any program. A step whose cache key
//! (kind, resolved parameters, digests of the files it reads) matches its last success is
//! not run again. A failed step stops the steps that depend on it, and the others go on.
//! The pipeline is a tracked run; the runs its steps make are its children.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use bastion_core::{Digest, RelPath};
use bastion_evidence::PIPELINE_CONFIG_TAG;
use bastion_pipeline::{Kind, Pipeline, State, Step, StepRecord, cache_key, refs};
use bastion_store::meta::RunDraft;
use clap::Args;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::attest::{RegistryArgs, write_whole};
use crate::data::Home;
use crate::model::{experiment_id, finish_run, kv};

/// Environment a step's child process reads to tag its run as the pipeline's child.
pub const PARENT_RUN_ENV: &str = "BASTION_PIPELINE_PARENT_RUN";
pub const CONFIG_ENV: &str = "BASTION_PIPELINE_CONFIG";

#[derive(Args)]
pub struct RunArgs {
    /// The pipeline file (TOML).
    pub pipeline: PathBuf,
    /// Run every step, even those whose cached result still holds.
    #[arg(long)]
    pub force: bool,
    /// Print one JSON document with every step's outcome instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Ran and succeeded.
    Ran,
    /// Its last result still holds: not run.
    Cached,
    Failed,
    /// Not run: a step it depends on failed.
    Blocked,
}

impl Status {
    /// As `--json` and the run's `bastion.step.*` tags name it.
    fn as_str(self) -> &'static str {
        match self {
            Status::Ran => "ran",
            Status::Cached => "cached",
            Status::Failed => "failed",
            Status::Blocked => "blocked",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    pub id: String,
    pub kind: &'static str,
    pub status: Status,
    pub outputs: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub key: Option<String>,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub pipeline: String,
    pub run_id: String,
    pub experiment_id: String,
    pub ok: bool,
    pub steps: Vec<StepOutcome>,
}

/// Tags for a run made by a pipeline's step: its parent (the pipeline's run) and the
/// pipeline configuration provenance records. Read from the environment the pipeline set;
/// malformed values are ignored.
pub fn child_tags() -> Vec<bastion_core::model::KeyValue> {
    let mut tags = Vec::new();
    if let Ok(parent) = std::env::var(PARENT_RUN_ENV)
        && parent.len() == 32
        && parent.bytes().all(|b| b.is_ascii_hexdigit())
    {
        tags.push(kv("mlflow.parentRunId", parent));
    }
    if let Ok(config) = std::env::var(CONFIG_ENV)
        && config.len() <= 4000
        && serde_json::from_str::<Value>(&config).is_ok()
    {
        tags.push(kv(PIPELINE_CONFIG_TAG, config));
    }
    tags
}

/// Runs the command: 0 when every step succeeded, 1 when one failed.
pub async fn run(home: &Path, a: RunArgs) -> Result<i32> {
    let outcome = run_pipeline(home, &a.pipeline, a.force, &a.registry, !a.json).await?;
    if a.json {
        crate::print_json(&outcome)?;
    } else {
        print!("{}", table(&outcome));
    }
    Ok(if outcome.ok { 0 } else { 1 })
}

pub fn table(o: &Outcome) -> String {
    let width = o.steps.iter().map(|s| s.id.len()).max().unwrap_or(0);
    let mut out = format!("pipeline {} (run {})\n", o.pipeline, o.run_id);
    for s in &o.steps {
        let status = match s.status {
            Status::Failed => "FAILED",
            other => other.as_str(),
        };
        let detail = match &s.reason {
            Some(r) => r.clone(),
            None => s
                .outputs
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "exit_code"))
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                    )
                })
                .collect::<Vec<_>>()
                .join(" "),
        };
        out.push_str(&format!(
            "  {:<width$}  {:<9} {:<7} {:>6.1}s  {detail}\n",
            s.id, s.kind, status, s.seconds
        ));
    }
    out.push_str(if o.ok {
        "pipeline succeeded\n"
    } else {
        "pipeline FAILED\n"
    });
    out
}

/// Runs `file` on `home`; `progress` draws a bar on the terminal.
pub async fn run_pipeline(
    home: &Path,
    file: &Path,
    force: bool,
    registry: &RegistryArgs,
    progress: bool,
) -> Result<Outcome> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the pipeline {}", file.display()))?;
    let pipeline = Pipeline::parse(&text)
        .with_context(|| format!("the pipeline {} is not valid", file.display()))?;
    let base = file
        .canonicalize()
        .with_context(|| format!("resolving {}", file.display()))?
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("{} has no folder", file.display()))?;
    let h = Home::open(home, registry).await?;
    let state_path = home
        .join("pipelines")
        .join(format!("{}.json", pipeline.name));
    let mut state: State = match std::fs::read(&state_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %state_path.display(), error = %e, "unreadable pipeline state: every step runs");
            State::default()
        }),
        Err(_) => State::default(),
    };

    let experiment_id = experiment_id(&h, &pipeline.experiment).await?;
    let file_digest = Digest::of(text.as_bytes());
    let run = h
        .meta
        .create_run(RunDraft {
            experiment_id: experiment_id.clone(),
            user_id: Some(h.actor.clone()),
            run_name: Some(format!("pipeline {}", pipeline.name)),
            start_time: None,
            tags: vec![
                kv("mlflow.source.name", "bastion run"),
                kv("mlflow.source.type", "PIPELINE"),
                kv("bastion.pipeline", pipeline.name.clone()),
                kv("bastion.pipeline.file_sha256", file_digest.hex()),
            ],
        })
        .await?;
    let run_id = run.info.run_id.clone();
    let child_env = ChildEnv {
        home: home.to_path_buf(),
        registry: registry.clone(),
        parent_run: run_id.clone(),
        experiment: pipeline.experiment.clone(),
        config: json!({"pipeline": pipeline.name, "file_sha256": file_digest.hex(), "parent_run_id": run_id}),
    };

    let bar = if progress {
        indicatif::ProgressBar::new(pipeline.steps.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(pipeline.name.clone());

    let mut outputs: HashMap<String, Map<String, Value>> = HashMap::new();
    let mut failed: BTreeSet<String> = BTreeSet::new();
    let mut steps = Vec::new();
    for step in &pipeline.steps {
        bar.set_message(format!("{} ({})", step.id, step.kind.as_str()));
        let started = Instant::now();
        let mut outcome = StepOutcome {
            id: step.id.clone(),
            kind: step.kind.as_str(),
            status: Status::Blocked,
            outputs: Map::new(),
            reason: None,
            key: None,
            seconds: 0.0,
        };
        if let Some(dep) = step.after.iter().find(|d| failed.contains(*d)) {
            outcome.reason = Some(format!("not run: it needs '{dep}', which did not succeed"));
            failed.insert(step.id.clone());
            steps.push(outcome);
            bar.inc(1);
            continue;
        }
        let prepared = prepare(&h, step, &outputs, &base).await;
        let result = match prepared {
            Err(e) => Err(e),
            Ok((params, files)) => {
                let key = cache_key(step.kind, &params, &files);
                outcome.key = Some(key.clone());
                match state.reusable(&step.id, &key) {
                    Some(previous) if !force && still_there(&h, previous).await => {
                        outcome.status = Status::Cached;
                        Ok(previous.clone())
                    }
                    _ => {
                        bar.suspend(|| tracing::info!(step = %step.id, kind = step.kind.as_str(), "running"));
                        let r = execute(&h, step, &params, &base, &child_env).await;
                        // The step counts only once its result is kept; a state file that
                        // cannot be written fails the step (the pipeline's run still ends).
                        r.and_then(|out| {
                            state.steps.insert(
                                step.id.clone(),
                                StepRecord {
                                    key,
                                    outputs: out.clone(),
                                    finished: bastion_core::time::now_ms(),
                                },
                            );
                            save_state(&state_path, &state)
                                .context("keeping the step's result in the pipeline state")?;
                            outcome.status = Status::Ran;
                            Ok(out)
                        })
                    }
                }
            }
        };
        match result {
            Ok(out) => {
                outputs.insert(step.id.clone(), out.clone());
                outcome.outputs = out;
            }
            Err(e) => {
                outcome.status = Status::Failed;
                outcome.reason = Some(format!("{e:#}"));
                failed.insert(step.id.clone());
            }
        }
        outcome.seconds = started.elapsed().as_secs_f64();
        let tagged = h
            .meta
            .set_tag(
                &run_id,
                &kv(
                    &format!("bastion.step.{}", step.id),
                    outcome.status.as_str(),
                ),
            )
            .await;
        if let Err(e) = tagged {
            tracing::warn!(step = %step.id, error = %e, "could not tag the pipeline run with the step's status");
        }
        steps.push(outcome);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let ok = failed.is_empty();
    finish_run(&h, &run_id, ok).await?;
    Ok(Outcome {
        pipeline: pipeline.name.clone(),
        run_id,
        experiment_id,
        ok,
        steps,
    })
}

/// Whether what a cached result names still exists (a deleted model version re-runs).
async fn still_there(h: &Home, outputs: &Map<String, Value>) -> bool {
    match outputs.get("model").and_then(Value::as_str) {
        Some(uri) => match registered(uri) {
            Some((name, version)) => h.meta.get_model_version(name, version).await.is_ok(),
            None => true,
        },
        None => true,
    }
}

fn registered(uri: &str) -> Option<(&str, &str)> {
    uri.strip_prefix("models:/")?.split_once('/')
}

fn save_state(path: &Path, state: &State) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_whole(path, &serde_json::to_vec_pretty(state)?)
}

/// The step's parameters with references resolved, and the files it reads with their
/// digests (for the cache key). An S3 source counts by its listing (keys, sizes, ETags); a
/// PostgreSQL query cannot be known unchanged without running it, so it always runs (and
/// answers the same version when its rows are unchanged, which keeps what follows cached).
async fn prepare(
    h: &Home,
    step: &Step,
    outputs: &HashMap<String, Map<String, Value>>,
    base: &Path,
) -> Result<(Map<String, Value>, BTreeMap<String, Digest>)> {
    let lookup = |s: &str, o: &str| outputs.get(s).and_then(|m| m.get(o)).cloned();
    let params = match refs::resolve(&Value::Object(step.params.clone()), &lookup) {
        Ok(Value::Object(m)) => m,
        Ok(_) => bail!("the parameters are not a table"),
        Err(e) => bail!("{e}"),
    };
    let mut files = BTreeMap::new();
    let mut read = |key: &str| -> Result<()> {
        let Some(v) = params.get(key) else {
            return Ok(());
        };
        let list: Vec<&str> = match v {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => bail!("'{key}' must be a path or a list of paths"),
        };
        for p in list {
            let path = local_path(base, p)?;
            files.insert(p.to_owned(), digest_path(&path)?);
        }
        Ok(())
    };
    match step.kind {
        Kind::Ingest => match params.get("path").and_then(Value::as_str) {
            Some(uri) if uri.starts_with("s3://") => {
                let source = bastion_store::blob::S3Source::open(uri)
                    .await
                    .with_context(|| format!("listing {uri}"))?;
                let listing = serde_json::to_vec(source.objects())?;
                files.insert(uri.to_owned(), Digest::of(&listing));
            }
            Some(_) => read("path")?,
            None => {
                let now = bastion_core::time::now_ms().to_string();
                files.insert(
                    "postgres query (always runs)".into(),
                    Digest::of(now.as_bytes()),
                );
            }
        },
        Kind::Transform => read("sql_file")?,
        Kind::Register => read("path")?,
        Kind::Validate => read("constraints")?,
        Kind::Gate => {
            read("policy")?;
            // The decision depends on evidence the pipeline may not have made (a scan, a
            // red-team run, a dataset check recorded since): its facts are an input too.
            if let Some(model) = params.get("model").and_then(Value::as_str)
                && let Some((name, version)) = registered(model)
            {
                let attestor = bastion_evidence::Attestor::load_or_create(&h.home)
                    .context("loading the model-signing key")?;
                let scans = bastion_evidence::Scans::new(bastion_scan::Policy::builtin());
                let facts = bastion_evidence::gate::version_facts(
                    &h.meta,
                    h.blobs.as_ref(),
                    &scans,
                    &attestor,
                    name,
                    version,
                    &h.actor,
                )
                .await;
                if let Ok(f) = facts {
                    let seen = format!("{:?} {:?}", f.root, f.facts);
                    files.insert(format!("evidence of {model}"), Digest::of(seen.as_bytes()));
                }
            }
        }
        Kind::Command => read("inputs")?,
        _ => {}
    }
    Ok((params, files))
}

/// A path the pipeline names, relative to its folder: no `..`, no absolute paths.
fn local_path(base: &Path, p: &str) -> Result<PathBuf> {
    let rel = RelPath::parse(p).map_err(|e| anyhow!("path '{p}': {e}"))?;
    Ok(base.join(rel.as_str()))
}

/// The digest of a file (streamed), or of a folder's files (names and contents, in name
/// order). Symbolic links are refused, so a link loop cannot recurse forever.
fn digest_path(path: &Path) -> Result<Digest> {
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.file_type().is_symlink() {
        bail!(
            "{} is a symbolic link; name the file itself",
            path.display()
        );
    }
    if meta.is_file() {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let mut h = bastion_core::digest::Hasher::new();
        std::io::copy(&mut file, &mut h).with_context(|| format!("reading {}", path.display()))?;
        return Ok(h.finish());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading {}", path.display()))?;
    entries.sort();
    let mut h = bastion_core::digest::Hasher::new();
    for e in entries {
        let name = e
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        h.update(name.as_bytes());
        h.update(digest_path(&e)?.as_bytes());
    }
    Ok(h.finish())
}

/// What a step's child process needs to act on the same home as the pipeline.
struct ChildEnv {
    home: PathBuf,
    registry: RegistryArgs,
    parent_run: String,
    experiment: String,
    config: Value,
}

fn text(params: &Map<String, Value>, key: &str) -> Result<String> {
    match params.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        Some(other) => bail!("'{key}' must be text, not {other}"),
        None => bail!("'{key}' is missing"),
    }
}

/// A list parameter as one comma-separated flag value.
fn listed(params: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    Ok(match params.get(key) {
        None => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(","),
        ),
        Some(_) => Some(text(params, key)?),
    })
}

async fn execute(
    h: &Home,
    step: &Step,
    params: &Map<String, Value>,
    base: &Path,
    env: &ChildEnv,
) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    match step.kind {
        Kind::Ingest => {
            let source = match (params.get("path"), params.get("postgres")) {
                (Some(_), None) => {
                    let path = text(params, "path")?;
                    if path.starts_with("s3://") {
                        path
                    } else {
                        local_path(base, &path)?.display().to_string()
                    }
                }
                (None, Some(_)) => postgres_url(&text(params, "postgres")?)?,
                _ => bail!(
                    "give 'path' (a file, a folder or s3://bucket/key) or 'postgres' with 'query'"
                ),
            };
            let mut args = vec![
                "data".into(),
                "add".into(),
                source,
                "--name".into(),
                text(params, "name")?,
                "--if-changed".into(),
            ];
            if params.contains_key("postgres") {
                args.extend(["--query".into(), text(params, "query")?]);
            } else if params.contains_key("query") {
                bail!("'query' goes with 'postgres', not with 'path'");
            }
            if params.contains_key("format") {
                args.extend(["--format".into(), text(params, "format")?]);
            }
            let r = bastion(env, &step.id, &args).await?;
            out.insert("dataset".into(), answered(&r, &["dataset"])?);
            out.insert("digest".into(), answered(&r, &["version", "digest"])?);
            out.insert("rows".into(), answered(&r, &["version", "rows"])?);
        }
        Kind::Transform => {
            let mut args: Vec<String> = vec![
                "data".into(),
                "transform".into(),
                "--name".into(),
                text(params, "name")?,
            ];
            let Some(Value::Object(inputs)) = params.get("inputs") else {
                bail!("'inputs' must be a table of TABLE = dataset");
            };
            for (table, dataset) in inputs {
                let dataset = dataset
                    .as_str()
                    .ok_or_else(|| anyhow!("inputs.{table} must be a dataset (NAME@vK)"))?;
                args.extend(["--input".into(), format!("{table}={dataset}")]);
            }
            match (params.get("sql"), params.get("sql_file")) {
                (Some(_), None) => args.extend(["--sql".into(), text(params, "sql")?]),
                (None, Some(_)) => {
                    let file = local_path(base, &text(params, "sql_file")?)?;
                    args.extend(["--sql-file".into(), file.display().to_string()]);
                }
                _ => bail!("give the query as 'sql' or 'sql_file' (one of them)"),
            }
            if params.contains_key("timeout") {
                args.extend(["--timeout".into(), text(params, "timeout")?]);
            }
            let r = bastion(env, &step.id, &args).await?;
            out.insert("dataset".into(), answered(&r, &["dataset"])?);
            out.insert("digest".into(), answered(&r, &["version", "digest"])?);
            out.insert("rows".into(), answered(&r, &["rows"])?);
        }
        Kind::Split => {
            let dataset = text(params, "dataset")?;
            let mut args: Vec<String> = vec!["data".into(), "split".into(), dataset];
            for key in ["test", "validation", "stratify", "seed", "name"] {
                if params.contains_key(key) {
                    args.extend([format!("--{key}"), text(params, key)?]);
                }
            }
            let r = bastion(env, &step.id, &args).await?;
            out.insert("dataset".into(), answered(&r, &["dataset"])?);
            out.insert("train".into(), answered(&r, &["train"])?);
            out.insert("test".into(), answered(&r, &["test"])?);
            if params.contains_key("validation") {
                out.insert("validation".into(), answered(&r, &["validation"])?);
            }
        }
        Kind::Validate => {
            let dataset = text(params, "dataset")?;
            let constraints = local_path(base, &text(params, "constraints")?)?;
            let r = bastion(
                env,
                &step.id,
                &[
                    "data".into(),
                    "validate".into(),
                    dataset.clone(),
                    "-c".into(),
                    constraints.display().to_string(),
                ],
            )
            .await?;
            out.insert("dataset".into(), dataset.into());
            out.insert(
                "passed".into(),
                r.get("passed").cloned().unwrap_or(Value::Bool(true)),
            );
        }
        Kind::Profile => {
            let dataset = text(params, "dataset")?;
            bastion(
                env,
                &step.id,
                &["data".into(), "profile".into(), dataset.clone()],
            )
            .await?;
            out.insert("dataset".into(), dataset.into());
        }
        Kind::Pii => {
            let dataset = text(params, "dataset")?;
            let r = bastion(
                env,
                &step.id,
                &["data".into(), "pii".into(), dataset.clone()],
            )
            .await?;
            let found = r["report"]["pii_columns"].as_u64().unwrap_or(0);
            if let Some(max) = params.get("max_columns").and_then(Value::as_u64)
                && found > max
            {
                bail!("{dataset} has {found} columns with personal data (at most {max} allowed)");
            }
            out.insert("dataset".into(), dataset.into());
            out.insert("pii_columns".into(), found.into());
        }
        Kind::Train | Kind::Tune => {
            let mut args: Vec<String> = vec![
                "train".into(),
                "--data".into(),
                text(params, "dataset")?,
                "--target".into(),
                text(params, "target")?,
                "--model".into(),
                text(params, "model")?,
                "--register".into(),
                text(params, "register")?,
                "--experiment".into(),
                env.experiment.clone(),
                "--run-name".into(),
                step.id.clone(),
            ];
            if let Some(Value::Object(p)) = params.get("params") {
                for (k, v) in p {
                    let value = toml::Value::try_from(v)
                        .map(|t| t.to_string())
                        .map_err(|e| anyhow!("params.{k}: {e}"))?;
                    args.extend(["--param".into(), format!("{k}={value}")]);
                }
            }
            if let Some(f) = listed(params, "features")? {
                args.extend(["--features".into(), f]);
            }
            for key in ["test_fraction", "seed", "task"] {
                if params.contains_key(key) {
                    args.extend([format!("--{}", key.replace('_', "-")), text(params, key)?]);
                }
            }
            if step.kind == Kind::Tune {
                let space = params
                    .get("space")
                    .filter(|v| v.is_object())
                    .ok_or_else(|| anyhow!("'space' must be a table of parameter = values"))?;
                let search = match params.get("search") {
                    Some(_) => text(params, "search")?,
                    None => "grid".to_owned(),
                };
                args.extend([
                    "--search".into(),
                    search,
                    "--space".into(),
                    space.to_string(),
                ]);
                for key in ["metric", "trials", "eta", "min_rows"] {
                    if params.contains_key(key) {
                        args.extend([format!("--{}", key.replace('_', "-")), text(params, key)?]);
                    }
                }
            }
            let r = bastion(env, &step.id, &args).await?;
            registered_outputs(&r, &mut out)?;
            if step.kind == Kind::Tune {
                out.insert("best_params".into(), answered(&r, &["tuning", "best"])?);
                out.insert(
                    "best_score".into(),
                    answered(&r, &["tuning", "best_score"])?,
                );
            }
        }
        Kind::Register => {
            let path = local_path(base, &text(params, "path")?)?;
            let mut args: Vec<String> = vec![
                "model".into(),
                "import".into(),
                path.display().to_string(),
                "--name".into(),
                text(params, "name")?,
                "--experiment".into(),
                env.experiment.clone(),
            ];
            for key in ["features", "classes"] {
                if let Some(v) = listed(params, key)? {
                    args.extend([format!("--{key}"), v]);
                }
            }
            for key in ["prediction_output", "scores"] {
                if params.contains_key(key) {
                    args.extend([format!("--{}", key.replace('_', "-")), text(params, key)?]);
                }
            }
            let r = bastion(env, &step.id, &args).await?;
            registered_outputs(&r, &mut out)?;
        }
        Kind::Evaluate => {
            let model = text(params, "model")?;
            let mut args = vec![
                "evaluate".into(),
                model.clone(),
                "--data".into(),
                text(params, "dataset")?,
            ];
            if params.contains_key("slice") {
                args.extend(["--slice".into(), text(params, "slice")?]);
            }
            bastion(env, &step.id, &args).await?;
            out.insert("model".into(), model.into());
        }
        Kind::Scan => {
            let model = text(params, "model")?;
            let (name, version) = registered(&model)
                .ok_or_else(|| anyhow!("'{model}' is not models:/NAME/VERSION"))?;
            let scans = bastion_evidence::Scans::new(bastion_scan::Policy::builtin());
            let e = scans
                .check_model_version(&h.meta, h.blobs.as_ref(), name, version, &h.actor)
                .await?;
            if let Some(finding) = e.critical() {
                bail!("{model} has a CRITICAL finding: {finding}");
            }
            if let Some(why) = &e.unavailable {
                bail!("{model}: {why}");
            }
            let worst = e
                .max_severity()
                .ok_or_else(|| anyhow!("{model}: some files could not be scanned"))?;
            out.insert("max_severity".into(), worst.into());
            out.insert("model".into(), model.into());
        }
        Kind::Redteam => {
            let model = text(params, "model")?;
            let mut args = vec![
                "redteam".into(),
                model.clone(),
                "--data".into(),
                text(params, "dataset")?,
                "--format".into(),
                "json".into(),
                "--experiment".into(),
                env.experiment.clone(),
            ];
            for key in ["checks", "eps", "norm", "immutable"] {
                if let Some(v) = listed(params, key)? {
                    args.extend([format!("--{key}"), v]);
                }
            }
            for key in [
                "max_rows",
                "pgd_steps",
                "hsj_iterations",
                "square_iterations",
                "seed",
            ] {
                if params.contains_key(key) {
                    args.extend([format!("--{}", key.replace('_', "-")), text(params, key)?]);
                }
            }
            let r = bastion(env, &step.id, &args).await?;
            out.insert("model".into(), model.into());
            out.insert("run_id".into(), answered(&r, &["run_id"])?);
        }
        Kind::Sign => {
            let model = text(params, "model")?;
            let (name, version) = registered(&model)
                .ok_or_else(|| anyhow!("'{model}' is not models:/NAME/VERSION"))?;
            let attestor = bastion_evidence::Attestor::load_or_create(&h.home)
                .context("loading the model-signing key")?;
            let v = attestor
                .verify_model_version(&h.meta, h.blobs.as_ref(), name, version, &h.actor)
                .await?;
            if let Some(why) = v.failure() {
                bail!("{model} does not verify: {why}");
            }
            out.insert("model".into(), model.into());
            out.insert(
                "root_digest".into(),
                v.root_digest.unwrap_or_default().into(),
            );
        }
        Kind::Gate => {
            let model = text(params, "model")?;
            let policy = local_path(base, &text(params, "policy")?)?;
            let r = bastion(
                env,
                &step.id,
                &[
                    "gate".into(),
                    model.clone(),
                    "--policy".into(),
                    policy.display().to_string(),
                    "--format".into(),
                    "json".into(),
                ],
            )
            .await?;
            out.insert("model".into(), model.into());
            out.insert("passed".into(), answered(&r, &["passed"])?);
            out.insert("evidence".into(), answered(&r, &["evidence"])?);
        }
        Kind::Deploy => {
            let model = text(params, "model")?;
            let (name, version) = registered(&model)
                .ok_or_else(|| anyhow!("'{model}' is not models:/NAME/VERSION"))?;
            let alias = match params.get("alias") {
                Some(_) => text(params, "alias")?,
                None => "production".to_owned(),
            };
            if alias.eq_ignore_ascii_case("production") {
                let attestor = bastion_evidence::Attestor::load_or_create(&h.home)
                    .context("loading the model-signing key")?;
                let required = production_policy(&h.home)?;
                let c = bastion_evidence::gate::clearance(
                    &h.meta,
                    &attestor,
                    name,
                    version,
                    required.as_ref(),
                )
                .await?;
                if !c.ok {
                    bail!("{model} may not go to production: {}", c.detail);
                }
            }
            h.meta
                .set_registered_model_alias(name, &alias, version)
                .await?;
            let mut args = vec!["deploy".into(), format!("{name}@{version}")];
            if params.contains_key("canary") {
                args.extend(["--canary".into(), text(params, "canary")?]);
            }
            bastion(env, &step.id, &args).await?;
            out.insert("model".into(), model.into());
            out.insert("alias".into(), alias.into());
        }
        Kind::Command => {
            let code = command(step, params, base, env).await?;
            out.insert("exit_code".into(), code.into());
        }
    }
    Ok(out)
}

/// The policy production decisions must have applied, as the server of this home would
/// require it (`BASTION_PRODUCTION_POLICY`, else `[server] production_policy`).
fn production_policy(home: &Path) -> Result<Option<Digest>> {
    let path = match std::env::var_os("BASTION_PRODUCTION_POLICY") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            crate::config::FileConfig::load(None, home)?
                .server
                .production_policy
        }
    };
    path.map(|p| crate::gate::read_policy(&p).map(|(_, digest)| digest))
        .transpose()
}

/// A registering command's model, name, version and run.
fn registered_outputs(r: &Value, out: &mut Map<String, Value>) -> Result<()> {
    let name = answered_text(r, &["registered", "name"])?;
    let version = answered_text(r, &["registered", "version"])?;
    out.insert("model".into(), format!("models:/{name}/{version}").into());
    out.insert("name".into(), name.into());
    out.insert("version".into(), version.into());
    out.insert("run_id".into(), answered(r, &["run_id"])?);
    Ok(())
}

/// A PostgreSQL URL, or `$NAME` for one kept in the environment (so no password is written
/// in the pipeline file).
fn postgres_url(value: &str) -> Result<String> {
    match value.strip_prefix('$') {
        Some(var) => std::env::var(var).map_err(|_| {
            anyhow!("'postgres' names the environment variable {var}, which is not set")
        }),
        None => Ok(value.to_owned()),
    }
}

/// The value at `path` in a command's JSON answer; a missing one is the step's failure
/// (an answer without it would hand an empty output to the steps after).
fn answered(r: &Value, path: &[&str]) -> Result<Value> {
    let mut v = r;
    for key in path {
        v = v
            .get(*key)
            .ok_or_else(|| anyhow!("the command's answer has no {}", path.join(".")))?;
    }
    if v.is_null() {
        bail!("the command's answer has no {}", path.join("."));
    }
    Ok(v.clone())
}

fn answered_text(r: &Value, path: &[&str]) -> Result<String> {
    match answered(r, path)? {
        Value::String(s) if !s.is_empty() => Ok(s),
        other => bail!("the command's answer has {other} as {}", path.join(".")),
    }
}

/// Runs `bastion ARGS` on the pipeline's home and returns its JSON answer; a non-zero exit
/// is the step's failure, with the end of what the command said.
async fn bastion(env: &ChildEnv, step: &str, args: &[String]) -> Result<Value> {
    let exe = std::env::current_exe().context("finding the bastion executable")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("--home").arg(&env.home).args(args);
    child_env(&mut cmd, env, step);
    let output = cmd.stdin(Stdio::null()).output().await.with_context(|| {
        format!(
            "starting bastion {}",
            args.first().map_or("", String::as_str)
        )
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        bail!(
            "`bastion {}` exited with {}: {}",
            args.iter().take(2).cloned().collect::<Vec<_>>().join(" "),
            output
                .status
                .code()
                .map_or_else(|| "a signal".to_owned(), |c| c.to_string()),
            last_lines(&stderr, &stdout)
        );
    }
    // A command asked only for its side effects may print nothing; the steps that read an
    // answer fail on the missing field (`answered`).
    Ok(serde_json::from_slice(&output.stdout).unwrap_or(Value::Null))
}

fn child_env(cmd: &mut tokio::process::Command, env: &ChildEnv, step: &str) {
    let mut config = env.config.clone();
    config["step"] = step.into();
    cmd.env(PARENT_RUN_ENV, &env.parent_run)
        .env(CONFIG_ENV, config.to_string())
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
    if let Some(uri) = &env.registry.store.backend_store_uri {
        cmd.env("BASTION_BACKEND_STORE_URI", uri);
    }
    if let Some(dest) = &env.registry.artifacts_destination {
        cmd.env("BASTION_ARTIFACTS_DESTINATION", dest);
    }
}

/// The last lines a failed command wrote: its error, or the end of its output.
fn last_lines(stderr: &str, stdout: &str) -> String {
    let source = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let lines: Vec<&str> = source.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(6)..];
    tail.join(" | ")
}

/// A `command` step: the program and its arguments (no shell), in the pipeline's folder,
/// with the pipeline's run as `MLFLOW_PARENT_RUN_ID`-style context in the environment.
/// Declared outputs must exist afterwards.
async fn command(
    step: &Step,
    params: &Map<String, Value>,
    base: &Path,
    env: &ChildEnv,
) -> Result<i64> {
    let argv: Vec<String> = match params.get("run") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("'run' must be a list of strings"))
            })
            .collect::<Result<_>>()?,
        _ => bail!("'run' must be a non-empty list: the program, then its arguments"),
    };
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir(base).stdin(Stdio::null());
    child_env(&mut cmd, env, &step.id);
    cmd.env("BASTION_HOME", &env.home);
    if let Some(Value::Object(vars)) = params.get("env") {
        for (k, v) in vars {
            cmd.env(k, v.as_str().map_or_else(|| v.to_string(), str::to_owned));
        }
    }
    let output = cmd
        .output()
        .await
        .with_context(|| format!("starting {}", argv[0]))?;
    let code = i64::from(output.status.code().unwrap_or(-1));
    if !output.status.success() {
        bail!(
            "`{}` exited with {code}: {}",
            argv.join(" "),
            last_lines(
                &String::from_utf8_lossy(&output.stderr),
                &String::from_utf8_lossy(&output.stdout)
            )
        );
    }
    if let Some(declared) = params.get("outputs") {
        let list: Vec<&str> = declared
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for p in list {
            let path = local_path(base, p)?;
            if !path.exists() {
                bail!(
                    "`{}` succeeded but did not write its declared output {p}",
                    argv.join(" ")
                );
            }
        }
    }
    Ok(code)
}
