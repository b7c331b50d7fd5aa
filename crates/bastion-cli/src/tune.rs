//! `bastion train --search …`: hyper-parameter search before training. Each trial is a child
//! run of the training run (its parameters and validation metrics); the winner's parameters
//! are then trained on all the training rows, evaluated on the test rows and registered as
//! any `bastion train` would.

use anyhow::{Context, Result};
use bastion_core::model::{Metric, MetricValue};
use bastion_core::time;
use bastion_ml::builtin::Kind;
use bastion_ml::predictor::Table;
use bastion_ml::train::{TaskKind, TrainSpec};
use bastion_ml::tune::{Search, Space, Trial, Tuning, tune};
use bastion_store::meta::{BatchLog, RunDraft};
use clap::{Args, ValueEnum};
use serde_json::{Map, Value};

use crate::data::Home;
use crate::model::{finish_run, kv};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SearchArg {
    Grid,
    Random,
    Halving,
}

#[derive(Args, Debug, Clone)]
pub struct TuneArgs {
    /// Search hyper-parameters first: every combination (grid), --trials draws (random), or
    /// successive halving (candidates on growing row samples, the best 1/--eta go on).
    #[arg(long, value_enum, requires = "space")]
    pub search: Option<SearchArg>,
    /// The search space as JSON: {"max_depth": [3, 5], "learning_rate": {"min": 0.01,
    /// "max": 0.3, "log": true}, "min_samples_leaf": {"min": 1, "max": 20, "int": true}}.
    #[arg(long)]
    pub space: Option<String>,
    /// The validation metric that picks the winner (losses and errors are minimised).
    #[arg(long, default_value = "accuracy")]
    pub metric: String,
    /// Candidates to draw for random search (and halving over ranges).
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    /// Halving's reduction factor.
    #[arg(long, default_value_t = 3)]
    pub eta: usize,
    /// Rows of halving's first rung, at least.
    #[arg(long, default_value_t = 50)]
    pub min_rows: usize,
}

impl TuneArgs {
    fn search(&self) -> Option<Search> {
        self.search.map(|s| match s {
            SearchArg::Grid => Search::Grid,
            SearchArg::Random => Search::Random {
                trials: self.trials,
            },
            SearchArg::Halving => Search::Halving {
                trials: self.trials,
                eta: self.eta,
                min_rows: self.min_rows,
            },
        })
    }
}

/// What every candidate shares: the training command's own settings.
pub struct Base {
    pub kind: Kind,
    pub target: String,
    pub features: Vec<String>,
    pub task: Option<TaskKind>,
    pub test_fraction: f64,
    pub seed: u64,
}

/// Runs the search when one was asked for: the trials as child runs of `parent`, and the
/// winner's parameters merged into `params`. Gives the table back for the final training.
pub async fn search(
    h: &Home,
    a: &TuneArgs,
    table: Table,
    base: Base,
    (experiment_id, parent): (&str, &str),
    params: &mut Map<String, Value>,
) -> Result<(Option<Tuning>, Table)> {
    let Some(search) = a.search() else {
        return Ok((None, table));
    };
    let raw = a.space.as_deref().unwrap_or("{}");
    let space_json: Value =
        serde_json::from_str(raw).with_context(|| format!("--space is not JSON: {raw}"))?;
    let space = Space::parse(&space_json)?;
    let metric = a.metric.clone();
    let defaults = params.clone();
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("tuning {spinner} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let progress = bar.clone();
    let (tuning, table) = tokio::task::spawn_blocking(move || -> Result<_> {
        let spec = TrainSpec {
            kind: base.kind,
            target: &base.target,
            features: (!base.features.is_empty()).then_some(base.features.as_slice()),
            params: defaults,
            task: base.task,
            test_fraction: base.test_fraction,
            seed: base.seed,
        };
        let t = tune(&table, &spec, &space, search, &metric, |t| {
            progress.set_message(format!(
                "trial {} (rung {}, {} rows): {}",
                t.number,
                t.rung,
                t.rows,
                t.score
                    .map_or_else(|| "failed".into(), |s| format!("{s:.6}"))
            ));
            progress.tick();
        })?;
        Ok((t, table))
    })
    .await??;
    bar.finish_and_clear();
    for t in &tuning.trials {
        log_trial(h, experiment_id, parent, t).await?;
    }
    for (k, v) in &tuning.best {
        params.insert(k.clone(), v.clone());
    }
    let best = Metric {
        key: format!("best_val_{}", tuning.metric),
        value: MetricValue(tuning.best_score),
        timestamp: time::now_ms(),
        step: 0,
        run_id: None,
    };
    h.meta
        .log_batch(
            parent,
            &BatchLog {
                metrics: vec![best],
                params: vec![],
                tags: vec![
                    kv("bastion.tune.search", search_name(tuning.search)),
                    kv("bastion.tune.metric", tuning.metric.clone()),
                    kv("bastion.tune.trials", tuning.trials.len().to_string()),
                ],
            },
        )
        .await?;
    Ok((Some(tuning), table))
}

fn search_name(s: Search) -> &'static str {
    match s {
        Search::Grid => "grid",
        Search::Random { .. } => "random",
        Search::Halving { .. } => "halving",
    }
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

async fn log_trial(h: &Home, experiment_id: &str, parent: &str, t: &Trial) -> Result<()> {
    let run = h
        .meta
        .create_run(RunDraft {
            experiment_id: experiment_id.to_owned(),
            user_id: Some(h.actor.clone()),
            run_name: Some(format!("trial-{}", t.number)),
            start_time: None,
            tags: vec![
                kv("mlflow.parentRunId", parent),
                kv("mlflow.source.name", "bastion train --search"),
                kv("bastion.tune.trial", t.number.to_string()),
                kv("bastion.tune.rung", t.rung.to_string()),
                kv("bastion.tune.rows", t.rows.to_string()),
            ],
        })
        .await?;
    let id = run.info.run_id;
    let now = time::now_ms();
    let mut metrics: Vec<Metric> = t
        .metrics
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| Metric {
            key: format!("val_{k}"),
            value: MetricValue(*v),
            timestamp: now,
            step: t.rung as i64,
            run_id: None,
        })
        .collect();
    metrics.push(Metric {
        key: "trial_seconds".into(),
        value: MetricValue(t.seconds),
        timestamp: now,
        step: 0,
        run_id: None,
    });
    let mut tags = vec![];
    if let Some(e) = &t.error {
        tags.push(kv(
            "bastion.tune.error",
            e.chars().take(4000).collect::<String>(),
        ));
    }
    // The run ends either way: a failed log must not leave it RUNNING.
    let logged = h
        .meta
        .log_batch(
            &id,
            &BatchLog {
                metrics,
                params: t.params.iter().map(|(k, v)| kv(k, text(v))).collect(),
                tags,
            },
        )
        .await;
    finish_run(h, &id, t.score.is_some() && logged.is_ok()).await?;
    Ok(logged?)
}
