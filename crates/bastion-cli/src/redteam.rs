//! `bastion redteam MODEL --data NAME@vK`: attacks a model package or registered version on a
//! dataset version (see `bastion-redteam`), tracks the campaign as a run whose artifacts are
//! the report (JSON and HTML) and the successful adversarial examples (JSON lines, in the
//! model's input columns, ready to replay against the served model), and records the
//! figures as `redteam` evidence on a registered version's root digest, where policies find
//! them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use bastion_ml::package::Framework;
use bastion_ml::predictor::Predictor;
use bastion_ml::train::{Labels, TaskKind, labels};
use bastion_redteam::campaign::{Check, Example, Plan, Retrain, Subject};
use bastion_redteam::retrain::BuiltinRetrain;
use bastion_redteam::{Norm, Space};
use bastion_store::meta::EvidenceDraft;
use bastion_store::meta::RunDraft;
use clap::Args;
use serde_json::{Value, json};

use crate::attest::RegistryArgs;
use crate::data::{Home, ReportFormat, emit};
use crate::model::{experiment_id, finish_run, kv, model_dir, read_dataset, store_files};

use bastion_evidence::gate::REDTEAM as EVIDENCE_KIND;

#[derive(Args)]
pub struct RedteamArgs {
    /// The model: a package folder or models:/NAME/VERSION.
    model: String,
    /// Dataset version with the true labels: NAME@vK. When it is the model's training data,
    /// evasion attacks its held-out rows and membership inference and poisoning run.
    #[arg(long)]
    data: String,
    /// The label column (default: the target the model was trained on).
    #[arg(long)]
    target: Option<String>,
    /// Checks to run, comma-separated: fgsm, pgd, hopskipjump, square, membership,
    /// extraction, poisoning, defence (default: all).
    #[arg(long, value_delimiter = ',')]
    checks: Vec<String>,
    /// Perturbation sizes in feature units (standard deviations for built-in models).
    #[arg(long, value_delimiter = ',', default_values_t = [0.05, 0.1, 0.2, 0.3, 0.5])]
    eps: Vec<f64>,
    /// Norms: linf, l2 (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "linf")]
    norm: Vec<String>,
    #[arg(long, default_value_t = 40)]
    pgd_steps: usize,
    /// Start PGD from a random point of the ball.
    #[arg(long)]
    random_start: bool,
    /// HopSkipJump iterations and its query budget per row.
    #[arg(long, default_value_t = 20)]
    hsj_iterations: usize,
    #[arg(long, default_value_t = 25_000)]
    hsj_queries: u64,
    #[arg(long, default_value_t = 300)]
    square_iterations: usize,
    /// Rows attacked for evasion, at most.
    #[arg(long, default_value_t = 500)]
    max_rows: usize,
    /// Input columns an attacker cannot change (comma-separated).
    #[arg(long, value_delimiter = ',')]
    immutable: Vec<String>,
    /// Do not keep features within the range the data holds.
    #[arg(long)]
    unbounded: bool,
    /// Query budgets of the extraction attack.
    #[arg(long, value_delimiter = ',', default_values_t = [50, 100, 250, 500, 1000])]
    extraction_queries: Vec<usize>,
    /// Shares of training labels flipped by the poisoning check.
    #[arg(long, value_delimiter = ',', default_values_t = [0.05, 0.1, 0.2])]
    poison: Vec<f64>,
    /// The defence check retrains the MLP with adversarial training at this L∞ radius…
    #[arg(long, default_value_t = 0.1)]
    defence_eps: f64,
    /// …with adversarial copies made by this many PGD steps (1: FGSM).
    #[arg(long, default_value_t = 1)]
    defence_steps: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value = "json")]
    format: ReportFormat,
    /// Write the report here instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Also write the adversarial examples (JSON lines) here.
    #[arg(long)]
    examples: Option<PathBuf>,
    /// Experiment the campaign's run is tracked in (created if missing).
    #[arg(long, default_value = "redteam")]
    experiment: String,
    #[command(flatten)]
    registry: RegistryArgs,
}

impl RedteamArgs {
    fn plan(&self) -> Result<Plan> {
        let checks = if self.checks.is_empty() {
            Check::ALL.into_iter().collect()
        } else {
            self.checks
                .iter()
                .map(|c| Check::parse(c))
                .collect::<Result<_, _>>()?
        };
        let norms = self
            .norm
            .iter()
            .map(|n| Norm::parse(n).ok_or_else(|| anyhow!("--norm {n}: choose linf or l2")))
            .collect::<Result<Vec<_>>>()?;
        let plan = Plan {
            checks,
            eps: self.eps.clone(),
            norms,
            pgd_steps: self.pgd_steps,
            random_start: self.random_start,
            hopskipjump: bastion_redteam::hopskipjump::HopSkipJump {
                max_iter: self.hsj_iterations,
                max_queries: self.hsj_queries,
                ..Default::default()
            },
            square_iterations: self.square_iterations,
            max_rows: self.max_rows,
            extraction_budgets: self.extraction_queries.clone(),
            poison_rates: self.poison.clone(),
            defence_eps: self.defence_eps,
            defence_steps: self.defence_steps,
            seed: self.seed,
            ..Plan::default()
        };
        plan.check()?;
        Ok(plan)
    }
}

pub async fn redteam_command(home: &Path, a: RedteamArgs) -> Result<()> {
    let plan = a.plan()?;
    let h = Home::open(home, &a.registry).await?;
    let (dir, _keep) = model_dir(&h, &a.model).await?;
    let path = dir.clone();
    let (manifest, model) = tokio::task::spawn_blocking(move || {
        bastion_ml::package::load_predictor(&path, bastion_ml::package::Limits::default())
    })
    .await??;
    let (table, dv) = read_dataset(&h, &a.data).await?;
    let dataset_ref = format!("{}@v{}", dv.name, dv.version);
    let target = a
        .target
        .clone()
        .or(manifest.training.target.clone())
        .ok_or_else(|| anyhow!("the model does not record its target; name it with --target"))?;
    let same_data = manifest.training.dataset_digest.as_deref() == Some(dv.digest.hex().as_str());

    let experiment_id = experiment_id(&h, &a.experiment).await?;
    let run = h
        .meta
        .create_run(RunDraft {
            experiment_id,
            user_id: Some(h.actor.clone()),
            run_name: None,
            start_time: None,
            tags: vec![
                kv("mlflow.source.name", "bastion redteam"),
                kv("mlflow.source.type", "LOCAL"),
                kv("bastion.dataset", dataset_ref.clone()),
                kv("bastion.model", a.model.clone()),
            ]
            .into_iter()
            .chain(crate::pipeline::child_tags())
            .collect(),
        })
        .await?;
    let run_id = run.info.run_id.clone();

    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("red team {spinner} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let progress = bar.clone();
    let immutable = a.immutable.clone();
    let unbounded = a.unbounded;
    let framework = manifest.framework;
    let preprocessing = manifest.preprocessing.clone();
    let recorded = manifest.training.params.clone();
    let title = format!("Red team: {} on {dataset_ref}", a.model);
    let campaign = tokio::task::spawn_blocking(move || -> Result<_> {
        let model: Arc<dyn Predictor> = Arc::from(model);
        let signature = model.signature().clone();
        let classes = signature
            .classes()
            .map(<[String]>::to_vec)
            .ok_or_else(|| anyhow!("the model is a regressor; the red team attacks classifiers"))?;
        let y = match labels(
            &table,
            &target,
            Some(TaskKind::Classification),
            Some(&classes),
        )? {
            Labels::Classes { y, .. } => y,
            Labels::Values(_) => bail!("the target '{target}' holds no classes"),
        };
        let mut space = match framework {
            Framework::Bastion => Space::of_preprocessor(&preprocessing, &table)?,
            Framework::Onnx => {
                Space::observed(signature.features.clone(), model.features(&table)?.view())?
            }
        };
        space.freeze(&immutable)?;
        if unbounded {
            space = space.unbounded();
        }
        let inputs: Vec<String> = signature.inputs.iter().map(|f| f.name.clone()).collect();
        let retrain = match framework {
            Framework::Bastion if same_data => Some(BuiltinRetrain::from_recorded(
                &table,
                &recorded,
                inputs,
                classes.clone(),
            )?),
            _ => None,
        };
        let split = retrain.as_ref().map(|r| r.split(&y)).transpose()?;
        let subject = Subject {
            model: model.as_ref(),
            table: &table,
            y,
            split,
            space,
            trainer: retrain.as_ref().map(|r| r as &dyn Retrain),
        };
        let (report, examples) = bastion_redteam::run(&subject, &plan, &|m: &str| {
            progress.set_message(m.to_owned())
        })?;
        let lines = example_lines(
            &examples,
            &classes,
            framework,
            &preprocessing,
            &signature.features,
        )?;
        let html = bastion_redteam::report::html(&title, &report);
        Ok((report, lines, html))
    })
    .await?;
    bar.finish_and_clear();
    let (report, lines, html) = match campaign {
        Ok(c) => c,
        Err(e) => {
            finish_run(&h, &run_id, false).await?;
            return Err(e.context(format!("red-team run {run_id} failed")));
        }
    };

    // The run: figures as metrics, the report and the examples as artifacts. A failure here
    // ends the run as FAILED rather than leaving it running.
    let recorded = record_run(
        &h,
        &run.info.artifact_uri,
        &run_id,
        &report,
        &html,
        &lines,
        &a.model,
        &dataset_ref,
        &dv.digest.hex(),
    )
    .await;
    finish_run(&h, &run_id, recorded.is_ok()).await?;
    let stored = recorded.with_context(|| format!("recording red-team run {run_id}"))?;

    // Evidence on a registered version's root digest.
    let evidence = match registered(&a.model) {
        Some((name, version)) => match h.meta.model_version_root_digest(name, version).await? {
            Some(root) => {
                let e = h
                    .meta
                    .record_evidence(&EvidenceDraft {
                        digest: root,
                        kind: EVIDENCE_KIND.to_owned(),
                        tool: format!("bastion-redteam/{}", env!("CARGO_PKG_VERSION")),
                        verdict: "measured".to_owned(),
                        worst: None,
                        body: json!({
                            "model": a.model,
                            "dataset": dataset_ref,
                            "dataset_digest": dv.digest.hex(),
                            "run_id": run_id,
                            "seed": report.seed,
                            "rows": report.rows,
                            "skipped": report.skipped,
                            "metrics": report.metrics,
                            "artifacts": stored,
                        }),
                        created_by: h.actor.clone(),
                    })
                    .await?;
                json!({ "id": e.id, "digest": root.hex(), "kind": EVIDENCE_KIND })
            }
            None => {
                tracing::warn!(model = %a.model, "no root digest is recorded for this version; no evidence was written");
                Value::Null
            }
        },
        None => Value::Null,
    };
    if let Some(p) = &a.examples {
        emit(Some(p), lines.trim_end_matches('\n'))?;
    }
    let text = match a.format {
        ReportFormat::Json => serde_json::to_string_pretty(&json!({
            "model": a.model,
            "dataset": dataset_ref,
            "dataset_digest": dv.digest.hex(),
            "run_id": run_id,
            "evidence": evidence,
            "artifacts": stored,
            "report": report,
        }))?,
        ReportFormat::Html => html,
    };
    emit(a.output.as_deref(), &text)
}

/// Stores the report and examples as the run's `redteam/` artifacts and its figures as
/// metrics; returns the stored files.
#[allow(clippy::too_many_arguments)]
async fn record_run(
    h: &Home,
    artifact_uri: &str,
    run_id: &str,
    report: &bastion_redteam::Report,
    html: &str,
    lines: &str,
    model: &str,
    dataset_ref: &str,
    dataset_digest: &str,
) -> Result<Vec<Value>> {
    let staging = tempfile::tempdir_in(&h.tmp).context("creating a staging folder")?;
    let report_json = serde_json::to_string_pretty(&json!({
        "model": model,
        "dataset": dataset_ref,
        "dataset_digest": dataset_digest,
        "run_id": run_id,
        "report": report,
    }))?;
    let files = [
        ("report.json", report_json.as_str()),
        ("report.html", html),
        ("adversarial.jsonl", lines),
    ];
    for (name, text) in files {
        tokio::fs::write(staging.path().join(name), text).await?;
    }
    let names: Vec<String> = files.iter().map(|(n, _)| (*n).to_owned()).collect();
    let stored = store_files(h, artifact_uri, "redteam", staging.path(), &names).await?;
    let metrics: Vec<bastion_core::model::Metric> = report
        .metrics
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| bastion_core::model::Metric {
            key: k.clone(),
            value: bastion_core::model::MetricValue(*v),
            timestamp: bastion_core::time::now_ms(),
            step: 0,
            run_id: None,
        })
        .collect();
    for chunk in metrics.chunks(1000) {
        h.meta
            .log_batch(
                run_id,
                &bastion_store::meta::BatchLog {
                    metrics: chunk.to_vec(),
                    params: vec![],
                    tags: vec![],
                },
            )
            .await?;
    }
    Ok(stored)
}

/// `(name, version)` of a `models:/NAME/VERSION` reference.
fn registered(reference: &str) -> Option<(&str, &str)> {
    reference.strip_prefix("models:/")?.split_once('/')
}

/// The examples as JSON lines, each with the input values it stands for.
fn example_lines(
    examples: &[Example],
    classes: &[String],
    framework: Framework,
    pre: &bastion_ml::preprocess::Preprocessor,
    features: &[String],
) -> Result<String> {
    let mut out = String::new();
    for e in examples {
        let inputs: serde_json::Map<String, Value> = match framework {
            Framework::Bastion => pre.inverse(&e.features)?.into_iter().collect(),
            Framework::Onnx => features
                .iter()
                .cloned()
                .zip(e.features.iter().map(|v| json!(v)))
                .collect(),
        };
        let line = json!({
            "attack": e.attack,
            "norm": e.norm,
            "eps": e.eps,
            "row": e.row,
            "label": classes.get(e.class),
            "predicted": classes.get(e.predicted),
            "perturbation": e.perturbation,
            "inputs": inputs,
            "features": e.features,
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    Ok(out)
}
