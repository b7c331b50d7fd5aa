//! `bastion train`, `bastion evaluate` and `bastion predict`: built-in models on dataset
//! versions of this home. Training is tracked as a run (parameters, curves per step, test
//! metrics, the dataset as an input with its digest, the model package as artifacts) and
//! can register the package as a model version, which is then signed and scanned like any
//! other registration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use bastion_core::model::{Dataset, DatasetInput, KeyValue, Metric, MetricValue, RunStatus};
use bastion_core::uri::{self, ArtifactUri};
use bastion_core::{RelPath, time};
use bastion_evidence::{Attestor, Scans};
use bastion_ml::builtin::Kind;
use bastion_ml::evaluate::evaluate;
use bastion_ml::package::{self, Limits, Training};
use bastion_ml::predictor::{ColumnData, Prediction, Predictor, Table};
use bastion_ml::train::{Labels, TaskKind, TrainSpec, cross_validate, labels, train};
use bastion_store::meta::{BatchLog, ModelVersionDraft, RunDraft, RunUpdate};
use clap::{Args, ValueEnum};
use futures::StreamExt;
use serde_json::{Map, Value, json};

use crate::attest::RegistryArgs;
use crate::data::{Home, ReportFormat, emit};
use crate::print_json;

/// Rows read into memory for training, evaluation or prediction.
const MAX_ROWS: u64 = 50_000_000;

#[derive(Clone, Copy, ValueEnum)]
pub enum ModelArg {
    Logreg,
    Linear,
    Gbdt,
    Forest,
    Mlp,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TaskArg {
    Classification,
    Regression,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Dataset version to train on: NAME@vK (or NAME for its latest version).
    #[arg(long)]
    data: String,
    /// The column to predict.
    #[arg(long)]
    target: String,
    #[arg(long, value_enum)]
    model: ModelArg,
    /// An estimator parameter as NAME=VALUE, the value in TOML (0.05, 200, [64, 32],
    /// "sqrt"); repeat for several. Unknown names are refused.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Feature columns, comma-separated (default: every column but the target).
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
    /// Classification or regression (default: text and integer targets with at most 50
    /// values are classes).
    #[arg(long, value_enum)]
    task: Option<TaskArg>,
    /// Share of rows held out to evaluate on (stratified by class); 0 trains on every row
    /// and records no test metrics (evaluate on other data with `bastion evaluate`).
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// Seed for the split and the estimator: the same seed gives the same model.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also cross-validate with K folds (stratified for classes) on all rows; the run gets
    /// `cv_<metric>_mean` and `cv_<metric>_std`.
    #[arg(long, value_name = "K")]
    cv: Option<usize>,
    /// Experiment the run is tracked in (created if missing).
    #[arg(long, default_value = "Default")]
    experiment: String,
    #[arg(long)]
    run_name: Option<String>,
    /// Register the model as a new version of this registered model (created if missing).
    #[arg(long)]
    register: Option<String>,
    /// Also write the model package to this folder (which must not exist).
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    tune: crate::tune::TuneArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
pub struct EvaluateArgs {
    /// The model: a package folder or models:/NAME/VERSION.
    model: String,
    /// Dataset version with the true labels: NAME@vK.
    #[arg(long)]
    data: String,
    /// The label column (default: the target the model was trained on).
    #[arg(long)]
    target: Option<String>,
    /// Also report the metrics per value of this column.
    #[arg(long)]
    slice: Option<String>,
    #[arg(long, value_enum, default_value = "json")]
    format: ReportFormat,
    /// Write the report here instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
pub struct PredictArgs {
    /// The model: a package folder or models:/NAME/VERSION.
    model: String,
    /// Dataset version to predict for: NAME@vK.
    #[arg(long)]
    data: String,
    /// Write the predictions (JSON lines, one per row) here instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

fn to_table(path: &Path) -> Result<Table> {
    Ok(Table::read_parquet(path, MAX_ROWS)?)
}

/// The dataset version's rows as a table, and `NAME@vK` for it.
pub(crate) async fn read_dataset(
    h: &Home,
    reference: &str,
) -> Result<(Table, bastion_store::meta::DatasetVersion)> {
    let v = h.version(reference).await?;
    let local = h.datasets().materialize(&v).await?;
    let path = local.path().to_owned();
    let table = tokio::task::spawn_blocking(move || {
        let t = to_table(&path);
        drop(local);
        t
    })
    .await??;
    Ok((table, v))
}

/// `NAME=VALUE` pairs as JSON parameters, values parsed as TOML (bare words as strings).
fn parse_params(raw: &[String]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for p in raw {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| anyhow!("--param {p}: expected NAME=VALUE"))?;
        let k = k.trim();
        let value: Value = match toml::from_str::<toml::Table>(&format!("v = {v}")) {
            Ok(mut t) => serde_json::to_value(t.remove("v")).unwrap_or(Value::Null),
            Err(_) => Value::String(v.trim().to_owned()),
        };
        if out.insert(k.to_owned(), value).is_some() {
            bail!("--param {k} is given twice");
        }
    }
    Ok(out)
}

fn kind_of(m: ModelArg) -> Kind {
    match m {
        ModelArg::Logreg => Kind::Logreg,
        ModelArg::Linear => Kind::Linear,
        ModelArg::Gbdt => Kind::Gbdt,
        ModelArg::Forest => Kind::Forest,
        ModelArg::Mlp => Kind::Mlp,
    }
}

fn not_found(e: &bastion_store::StoreError) -> bool {
    e.domain()
        .is_some_and(|d| d.code == bastion_core::ErrorCode::ResourceDoesNotExist)
}

pub(crate) async fn experiment_id(h: &Home, name: &str) -> Result<String> {
    match h.meta.get_experiment_by_name(name).await {
        Ok(e) => Ok(e.experiment_id),
        Err(e) if not_found(&e) => Ok(h.meta.create_experiment(name, None, &[]).await?),
        Err(e) => Err(e.into()),
    }
}

fn task_of(t: Option<TaskArg>) -> Option<TaskKind> {
    t.map(|t| match t {
        TaskArg::Classification => TaskKind::Classification,
        TaskArg::Regression => TaskKind::Regression,
    })
}

pub(crate) fn kv(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: value.into(),
    }
}

pub async fn train_command(home: &Path, a: TrainArgs) -> Result<()> {
    let h = Home::open(home, &a.registry).await?;
    let (table, dv) = read_dataset(&h, &a.data).await?;
    let dataset_ref = format!("{}@v{}", dv.name, dv.version);
    let kind = kind_of(a.model);
    let mut params = parse_params(&a.params)?;
    let experiment_id = experiment_id(&h, &a.experiment).await?;
    let run = h
        .meta
        .create_run(RunDraft {
            experiment_id: experiment_id.clone(),
            user_id: Some(h.actor.clone()),
            run_name: a.run_name.clone(),
            start_time: None,
            tags: vec![
                kv("mlflow.source.name", "bastion train"),
                kv("mlflow.source.type", "LOCAL"),
                kv("bastion.dataset", dataset_ref.clone()),
                kv("bastion.model.kind", kind.as_str()),
            ]
            .into_iter()
            .chain(crate::pipeline::child_tags())
            .collect(),
        })
        .await?;
    let run_id = run.info.run_id.clone();
    let result = async {
        let base = crate::tune::Base {
            kind,
            target: a.target.clone(),
            features: a.features.clone(),
            task: task_of(a.task),
            test_fraction: a.test_fraction,
            seed: a.seed,
        };
        let (tuning, table) = crate::tune::search(
            &h,
            &a.tune,
            table,
            base,
            (&experiment_id, &run_id),
            &mut params,
        )
        .await?;
        let mut out = train_tracked(
            &h,
            &a,
            table,
            &dv,
            &dataset_ref,
            kind,
            params,
            &run_id,
            &run.info.artifact_uri,
        )
        .await?;
        if let Some(t) = tuning {
            out["tuning"] = json!(t);
        }
        Ok::<_, anyhow::Error>(out)
    }
    .await;
    finish_run(&h, &run_id, result.is_ok()).await?;
    let mut out = result.with_context(|| format!("training run {run_id} failed"))?;
    out["experiment_id"] = json!(experiment_id);
    print_json(&out)
}

#[allow(clippy::too_many_arguments)]
async fn train_tracked(
    h: &Home,
    a: &TrainArgs,
    table: Table,
    dv: &bastion_store::meta::DatasetVersion,
    dataset_ref: &str,
    kind: Kind,
    params: Map<String, Value>,
    run_id: &str,
    artifact_uri: &str,
) -> Result<Value> {
    h.meta
        .log_inputs(
            run_id,
            &[DatasetInput {
                tags: vec![kv("mlflow.data.context", "training")],
                dataset: Dataset {
                    name: dv.name.clone(),
                    digest: dv.digest.hex(),
                    source_type: "bastion".to_owned(),
                    source: json!({ "uri": format!("bastion-dataset:{dataset_ref}") }).to_string(),
                    schema: None,
                    profile: None,
                },
            }],
            &[],
        )
        .await?;
    let features = a.features.clone();
    let target = a.target.clone();
    let (task, test_fraction, seed) = (task_of(a.task), a.test_fraction, a.seed);
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("training {spinner} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let progress = bar.clone();
    let cv = a.cv;
    let (trained, cross, fit_seconds) = tokio::task::spawn_blocking(move || -> Result<_> {
        let spec = TrainSpec {
            kind,
            target: &target,
            features: (!features.is_empty()).then_some(features.as_slice()),
            params,
            task,
            test_fraction,
            seed,
        };
        let cross = match cv {
            Some(k) => Some(cross_validate(&table, &spec, k, |fold| {
                progress.set_message(format!("cross-validation fold {fold} of {k} done"));
                progress.tick();
            })?),
            None => None,
        };
        let started = std::time::Instant::now();
        let trained = train(&table, &spec, |s| {
            progress.set_message(format!("{} step {}: {:.6}", s.metric, s.step, s.value));
            progress.tick();
        })?;
        Ok((trained, cross, started.elapsed().as_secs_f64()))
    })
    .await??;
    bar.finish_and_clear();

    // Parameters, curves and test metrics, in batches the store accepts.
    let now = time::now_ms();
    let mut metrics: Vec<Metric> = Vec::new();
    for (name, values) in &trained.history {
        for (i, v) in values.iter().enumerate() {
            metrics.push(Metric {
                key: name.clone(),
                value: MetricValue(*v),
                timestamp: now,
                step: i as i64 + 1,
                run_id: None,
            });
        }
    }
    let summary = |key: String, v: f64| Metric {
        key,
        value: MetricValue(v),
        timestamp: now,
        step: 0,
        run_id: None,
    };
    for (name, v) in &trained.evaluation.metrics {
        metrics.push(summary(format!("test_{name}"), *v));
    }
    if let Some(c) = &cross {
        for (stat, values) in [("mean", &c.mean), ("std", &c.std)] {
            for (name, v) in values {
                metrics.push(summary(format!("cv_{name}_{stat}"), *v));
            }
        }
    }
    let params: Vec<KeyValue> = trained
        .params
        .iter()
        .map(|(k, v)| kv(k, v.clone()))
        .collect();
    for chunk in params.chunks(100) {
        h.meta
            .log_batch(
                run_id,
                &BatchLog {
                    metrics: vec![],
                    params: chunk.to_vec(),
                    tags: vec![],
                },
            )
            .await?;
    }
    for chunk in metrics.chunks(1000) {
        h.meta
            .log_batch(
                run_id,
                &BatchLog {
                    metrics: chunk.to_vec(),
                    params: vec![],
                    tags: vec![],
                },
            )
            .await?;
    }

    // The package, written locally, then stored as the run's `model/` artifacts.
    let training = Training {
        dataset: Some(dataset_ref.to_owned()),
        dataset_digest: Some(dv.digest.hex()),
        target: Some(a.target.clone()),
        run_id: Some(run_id.to_owned()),
        train_rows: Some(trained.train_rows),
        test_rows: Some(trained.test_rows),
        params: trained.params.clone(),
        metrics: trained.evaluation.metrics.clone(),
        created_at: Some(time::rfc3339(now)),
        bastion_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
    };
    let staging = tempfile::tempdir_in(&h.tmp).context("creating a staging folder")?;
    let pkg_dir = staging.path().join("model");
    let manifest = package::save(&pkg_dir, &trained.model, training.clone())?;
    let files = store_package(h, artifact_uri, &pkg_dir, &manifest).await?;
    if let Some(out) = &a.output {
        package::save(out, &trained.model, training)?;
    }

    let registered = match &a.register {
        Some(name) => {
            register(
                h,
                name,
                &format!("{artifact_uri}/model"),
                run_id,
                vec![kv("bastion.dataset", dataset_ref)],
            )
            .await?
        }
        None => Value::Null,
    };
    Ok(json!({
        "run_id": run_id,
        "model_uri": format!("runs:/{run_id}/model"),
        "model": kind.as_str(),
        "dataset": dataset_ref,
        "dataset_digest": dv.digest.hex(),
        "train_rows": trained.train_rows,
        "test_rows": trained.test_rows,
        "fit_seconds": fit_seconds,
        "metrics": trained.evaluation.metrics,
        "cross_validation": cross,
        "params": trained.params,
        "files": files,
        "registered": registered,
    }))
}

/// Ends a run as FINISHED or FAILED.
pub(crate) async fn finish_run(h: &Home, run_id: &str, ok: bool) -> Result<()> {
    let status = if ok {
        RunStatus::Finished
    } else {
        RunStatus::Failed
    };
    h.meta
        .update_run(
            run_id,
            RunUpdate {
                status: Some(status),
                end_time: Some(time::now_ms()),
                run_name: None,
            },
        )
        .await?;
    Ok(())
}

/// Stores a package's files (written in `pkg_dir`) as the run's `model/` artifacts.
pub(crate) async fn store_package(
    h: &Home,
    artifact_uri: &str,
    pkg_dir: &Path,
    manifest: &package::Manifest,
) -> Result<Vec<Value>> {
    let mut names: Vec<String> = manifest.files.keys().cloned().collect();
    names.push(package::MANIFEST.to_owned());
    store_files(h, artifact_uri, "model", pkg_dir, &names).await
}

/// Stores files `names` of `dir` as the run's artifacts under `prefix/`.
pub(crate) async fn store_files(
    h: &Home,
    artifact_uri: &str,
    prefix: &str,
    dir: &Path,
    names: &[String],
) -> Result<Vec<Value>> {
    let root = match uri::parse("artifact_uri", artifact_uri)? {
        ArtifactUri::Proxied(root) => root,
        _ => bail!("the run's artifacts are not stored by this home ({artifact_uri})"),
    };
    let mut files = Vec::new();
    for name in names {
        let f = tokio::fs::File::open(dir.join(name)).await?;
        let stream = tokio_util::io::ReaderStream::with_capacity(f, 1 << 20).boxed();
        let stored = h.blobs.put(stream, u64::MAX, None).await?;
        let rel = format!("{prefix}/{name}");
        let path = root.join(&RelPath::parse(&rel)?)?;
        h.meta
            .put_artifact(&path, &stored.digest, stored.size as i64)
            .await?;
        files.push(json!({ "path": rel, "sha256": stored.digest.hex(), "size": stored.size }));
    }
    Ok(files)
}

/// Registers `source` (a run's package) as a new version of `name` (created if missing),
/// signed and scanned through the shared registration path.
pub(crate) async fn register(
    h: &Home,
    name: &str,
    source: &str,
    run_id: &str,
    tags: Vec<KeyValue>,
) -> Result<Value> {
    match h.meta.get_registered_model(name).await {
        Ok(_) => {}
        Err(e) if not_found(&e) => {
            h.meta.create_registered_model(name, &[], None).await?;
        }
        Err(e) => return Err(e.into()),
    }
    let attestor = Attestor::load_or_create(&h.home).context("loading the model-signing key")?;
    let scans = Scans::new(bastion_scan::Policy::builtin());
    let v = bastion_evidence::register_model_version(
        &h.meta,
        h.blobs.as_ref(),
        &scans,
        &attestor,
        &ModelVersionDraft {
            name: name.to_owned(),
            source: source.to_owned(),
            run_id: Some(run_id.to_owned()),
            tags,
            run_link: None,
            description: None,
            model_id: None,
        },
        &h.actor,
    )
    .await?;
    Ok(json!({ "name": v.name, "version": v.version, "source": v.source, "status": v.status }))
}

/// A model package's folder: the given one, or a registered version's files copied out of
/// the blob store (each checked against its digest), kept while the `TempDir` lives.
pub(crate) async fn model_dir(
    h: &Home,
    reference: &str,
) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    let Some(rest) = reference.strip_prefix("models:/") else {
        return Ok((PathBuf::from(reference), None));
    };
    let (name, version) = rest
        .split_once('/')
        .ok_or_else(|| anyhow!("{reference}: expected models:/NAME/VERSION"))?;
    let fetched = bastion_serve::fetch::fetch_package(
        &h.meta,
        h.blobs.as_ref(),
        name,
        version,
        &h.tmp,
        Limits::default(),
    )
    .await
    .map_err(|e| anyhow!("{reference}: {e}"))?;
    let path = fetched.dir.path().to_owned();
    Ok((path, Some(fetched.dir)))
}

/// A model package from a folder or a registered version (see [`model_dir`]).
async fn open_model(
    h: &Home,
    reference: &str,
) -> Result<(
    package::Manifest,
    Box<dyn Predictor>,
    Option<tempfile::TempDir>,
)> {
    let (path, dir) = model_dir(h, reference).await?;
    let (m, model) =
        tokio::task::spawn_blocking(move || package::load_predictor(&path, Limits::default()))
            .await??;
    Ok((m, model, dir))
}

pub async fn evaluate_command(home: &Path, a: EvaluateArgs) -> Result<()> {
    let h = Home::open(home, &a.registry).await?;
    let (manifest, model, _dir) = open_model(&h, &a.model).await?;
    let (table, dv) = read_dataset(&h, &a.data).await?;
    let target = a
        .target
        .clone()
        .or(manifest.training.target.clone())
        .ok_or_else(|| anyhow!("the model does not record its target; name it with --target"))?;
    let slice = a.slice.clone();
    let reference = format!("{}@v{}", dv.name, dv.version);
    let title = format!("{} on {reference}", a.model);
    let eval = tokio::task::spawn_blocking(move || -> Result<_> {
        let classes = model.signature().classes().map(<[String]>::to_vec);
        let truth = labels(
            &table,
            &target,
            Some(if classes.is_some() {
                TaskKind::Classification
            } else {
                TaskKind::Regression
            }),
            classes.as_deref(),
        )?;
        let pred = model.predict(&table)?;
        let keys: Option<Vec<String>> = match &slice {
            None => None,
            Some(col) => Some(slice_keys(&table, col)?),
        };
        let truth = match &truth {
            Labels::Classes { y, .. } => bastion_ml::evaluate::Truth::Classes(y),
            Labels::Values(v) => bastion_ml::evaluate::Truth::Values(v),
        };
        Ok(evaluate(&pred, truth, classes.as_deref(), keys.as_deref())?)
    })
    .await??;
    let text = match a.format {
        ReportFormat::Json => serde_json::to_string_pretty(&json!({
            "model": a.model,
            "dataset": reference,
            "dataset_digest": dv.digest.hex(),
            "evaluation": eval,
        }))?,
        ReportFormat::Html => bastion_ml::report::evaluation_html(&title, &eval),
    };
    emit(a.output.as_deref(), &text)
}

/// Each row's slice: the column's value as text (`(missing)` for nulls).
fn slice_keys(table: &Table, col: &str) -> Result<Vec<String>> {
    Ok(match table.column(col) {
        None => bail!("the data has no column '{col}' to slice by"),
        Some(ColumnData::Text(v)) => v
            .iter()
            .map(|s| s.clone().unwrap_or_else(|| "(missing)".to_owned()))
            .collect(),
        Some(ColumnData::Numeric(v)) => v
            .iter()
            .map(|x| x.map_or_else(|| "(missing)".to_owned(), bastion_ml::train::class_name))
            .collect(),
    })
}

pub async fn predict_command(home: &Path, a: PredictArgs) -> Result<()> {
    let h = Home::open(home, &a.registry).await?;
    let (_, model, _dir) = open_model(&h, &a.model).await?;
    let (table, _) = read_dataset(&h, &a.data).await?;
    let lines = tokio::task::spawn_blocking(move || -> Result<String> {
        let pred = model.predict(&table)?;
        let mut out = String::new();
        match (&pred, model.signature().classes()) {
            (Prediction::Classes(p), Some(classes)) => {
                let labels = pred.labels().unwrap_or_default();
                for (row, label) in p.rows().into_iter().zip(labels) {
                    let probs: BTreeMap<&str, f64> = classes
                        .iter()
                        .map(String::as_str)
                        .zip(row.iter().copied())
                        .collect();
                    out.push_str(
                        &json!({ "label": classes[label], "probabilities": probs }).to_string(),
                    );
                    out.push('\n');
                }
            }
            (Prediction::Values(v), _) => {
                for x in v {
                    out.push_str(&json!({ "prediction": x }).to_string());
                    out.push('\n');
                }
            }
            _ => bail!("the model's output does not match its signature"),
        }
        Ok(out)
    })
    .await??;
    emit(a.output.as_deref(), lines.trim_end_matches('\n'))
}
