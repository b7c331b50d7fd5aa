//! `bastion model import`: an ONNX model from elsewhere, checked (structure, operators,
//! sizes; then by ONNX Runtime when it is available), wrapped in a Bastion package with its
//! signature, stored as the artifacts of an import run, and registered as a model version
//! (signed and scanned like any other registration).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bastion_core::model::KeyValue;
use bastion_core::time;
use bastion_ml::onnx::{self, ImportOptions, OnnxModel, Scores};
use bastion_ml::package::{self, Limits, Training};
use bastion_store::meta::{BatchLog, RunDraft};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::attest::RegistryArgs;
use crate::data::Home;
use crate::model::{experiment_id, finish_run, kv, register, store_package};
use crate::print_json;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Import an ONNX model: check it, wrap it in a package, register it as a new version.
    Import(ImportArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ScoresArg {
    Probabilities,
    Logits,
    Values,
}

#[derive(Args)]
pub struct ImportArgs {
    /// The model file (.onnx, weights inside: external data files are refused).
    file: PathBuf,
    /// Registered model to add the version to (created if missing).
    #[arg(long)]
    name: String,
    /// Names of the feature columns, comma-separated, in the order the model's inputs take
    /// them (default: the input names, or INPUT_i for an input of several values).
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
    /// Class names, comma-separated, in the order of the model's probability columns
    /// (default: the classifier's own labels, or 0, 1, …).
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// The output holding the predictions (default: a ZipMap, an output named like
    /// probabilities, or the only float output).
    #[arg(long = "prediction-output")]
    prediction_output: Option<String>,
    /// What that output holds, when its name does not say.
    #[arg(long, value_enum)]
    scores: Option<ScoresArg>,
    /// Experiment the import run is tracked in (created if missing).
    #[arg(long, default_value = "Default")]
    experiment: String,
    /// Also write the package to this folder (which must not exist).
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub async fn run(home: &std::path::Path, cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Import(a) => import(home, a).await,
    }
}

async fn import(home: &std::path::Path, a: ImportArgs) -> Result<()> {
    let limits = Limits::default();
    let size = std::fs::metadata(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?
        .len();
    if size > limits.max_file_bytes {
        bail!(
            "{}: {size} bytes, over the {}-byte limit for a model file",
            a.file.display(),
            limits.max_file_bytes
        );
    }
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let opts = ImportOptions {
        features: (!a.features.is_empty()).then(|| a.features.clone()),
        classes: (!a.classes.is_empty()).then(|| a.classes.clone()),
        output: a.prediction_output.clone(),
        scores: a.scores.map(|s| match s {
            ScoresArg::Probabilities => Scores::Probabilities,
            ScoresArg::Logits => Scores::Logits,
            ScoresArg::Values => Scores::Values,
        }),
    };
    let file = a.file.display().to_string();
    let (bytes, inspected, signature, spec, runtime_checked) =
        tokio::task::spawn_blocking(move || -> Result<_> {
            let inspected = onnx::check::inspect(&bytes, limits)?;
            let (signature, spec) = onnx::describe(&inspected, &opts)?;
            // The runtime's own checks (type and shape inference) when it is present; a
            // registry host without it can still import.
            let checked = match onnx::runtime::ensure() {
                Ok(_) => {
                    OnnxModel::new(&bytes, signature.clone(), spec.clone(), limits)?;
                    true
                }
                Err(e) => {
                    tracing::warn!("not checked by ONNX Runtime: {e}");
                    false
                }
            };
            Ok((bytes, inspected, signature, spec, checked))
        })
        .await?
        .with_context(|| format!("{file} cannot be imported"))?;
    let sha256 = bastion_core::digest::Digest::of(&bytes).hex();

    let h = Home::open(home, &a.registry).await?;
    let experiment_id = experiment_id(&h, &a.experiment).await?;
    let file_name = a.file.file_name().map_or_else(
        || "model.onnx".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let run = h
        .meta
        .create_run(RunDraft {
            experiment_id: experiment_id.clone(),
            user_id: Some(h.actor.clone()),
            run_name: Some(format!("import {file_name}")),
            start_time: None,
            tags: vec![
                kv("mlflow.source.name", "bastion model import"),
                kv("mlflow.source.type", "LOCAL"),
                kv("bastion.model.kind", "onnx"),
                kv("bastion.onnx.sha256", sha256.clone()),
            ]
            .into_iter()
            .chain(crate::pipeline::child_tags())
            .collect(),
        })
        .await?;
    let run_id = run.info.run_id.clone();
    let mut params: Vec<(String, String)> = vec![
        ("source_file".into(), file_name.clone()),
        ("onnx_sha256".into(), sha256.clone()),
        ("ir_version".into(), inspected.ir_version.to_string()),
        ("producer".into(), inspected.producer.clone()),
        ("prediction_output".into(), spec.output.clone()),
        ("scores".into(), format!("{:?}", spec.scores).to_lowercase()),
    ];
    for (domain, v) in &inspected.opsets {
        let d = if domain.is_empty() { "ai.onnx" } else { domain };
        params.push((format!("opset.{d}"), v.to_string()));
    }
    let result = async {
        h.meta
            .log_batch(
                &run_id,
                &BatchLog {
                    metrics: vec![],
                    params: params.iter().map(|(k, v)| kv(k, v.clone())).collect(),
                    tags: vec![],
                },
            )
            .await?;
        let training = Training {
            run_id: Some(run_id.clone()),
            params: params.iter().cloned().collect(),
            created_at: Some(time::rfc3339(time::now_ms())),
            bastion_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            ..Training::default()
        };
        let staging = tempfile::tempdir_in(&h.tmp).context("creating a staging folder")?;
        let pkg_dir = staging.path().join("model");
        let manifest = package::save_onnx(
            &pkg_dir,
            &bytes,
            signature.clone(),
            spec.clone(),
            training.clone(),
        )?;
        let files = store_package(&h, &run.info.artifact_uri, &pkg_dir, &manifest).await?;
        if let Some(out) = &a.output {
            package::save_onnx(out, &bytes, signature.clone(), spec.clone(), training)?;
        }
        let tags: Vec<KeyValue> = vec![kv("bastion.onnx.sha256", sha256.clone())];
        let registered = register(
            &h,
            &a.name,
            &format!("{}/model", run.info.artifact_uri),
            &run_id,
            tags,
        )
        .await?;
        Ok::<Value, anyhow::Error>(json!({ "files": files, "registered": registered }))
    }
    .await;
    finish_run(&h, &run_id, result.is_ok()).await?;
    let mut out = result.with_context(|| format!("import run {run_id} failed"))?;
    out["run_id"] = json!(run_id);
    out["experiment_id"] = json!(experiment_id);
    out["model_uri"] = json!(format!("runs:/{run_id}/model"));
    out["onnx_sha256"] = json!(sha256);
    out["operators"] = json!(inspected.operators);
    out["signature"] = serde_json::to_value(&signature)?;
    out["prediction_output"] = json!(spec.output);
    out["runtime_checked"] = json!(runtime_checked);
    print_json(&out)
}
