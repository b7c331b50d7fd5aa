//! Each model version's reference: the rows of the dataset it was trained on (the one its
//! package records, checked against the recorded digest) with the answers the version gives
//! on them, and the estimator of its accuracy calibrated on the training labels. Built once per version and kept; a version whose reference cannot be built is
//! still watched for everything but drift, and tried again later.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bastion_ml::predictor::{ColumnData, Table};
use bastion_monitor::{Cell, Estimator, Observation, Outcome, Reference};
use bastion_serve::{Caller, Models, pipeline};

/// Reference rows kept at most (an even sample of larger training sets): the window tests
/// gain nothing from more, and memory stays bounded per version.
const MAX_ROWS: usize = 50_000;

/// How long a failed build is remembered before it is tried again.
const RETRY: Duration = Duration::from_secs(300);

/// A version's reference (or none), what it is or why there is none, and when it was built.
type Built = (Option<Arc<Reference>>, String, Instant);

pub(crate) struct References {
    models: Arc<Models>,
    built: HashMap<(String, String), Built>,
}

impl References {
    pub fn new(models: Arc<Models>) -> Self {
        Self {
            models,
            built: HashMap::new(),
        }
    }

    /// The version's reference (none: it has none, and the note says why).
    pub async fn get(&mut self, model: &str, version: &str) -> (Option<Arc<Reference>>, String) {
        let key = (model.to_owned(), version.to_owned());
        if let Some((r, note, at)) = self.built.get(&key)
            && (r.is_some() || at.elapsed() < RETRY)
        {
            return (r.clone(), note.clone());
        }
        let (r, note) = match self.build(model, version).await {
            Ok((r, note)) => (Some(Arc::new(r)), note),
            Err(why) => {
                tracing::warn!(model, version, reason = %why, "watching without a drift reference");
                (None, why)
            }
        };
        self.built
            .insert(key, (r.clone(), note.clone(), Instant::now()));
        (r, note)
    }

    /// The version's classes in the order of its probabilities (empty for a regressor or a
    /// version that cannot be loaded).
    pub async fn classes(&mut self, model: &str, version: &str) -> Vec<String> {
        if let (Some(r), _) = self.get(model, version).await {
            return r.classes.clone();
        }
        let caller = Caller {
            actor: "system:monitor",
            request_id: "",
        };
        match self.models.get(model, version, caller).await {
            Ok(served) => served
                .manifest
                .signature
                .classes()
                .unwrap_or_default()
                .to_vec(),
            Err(_) => Vec::new(),
        }
    }

    async fn build(&self, model: &str, version: &str) -> Result<(Reference, String), String> {
        let caller = Caller {
            actor: "system:monitor",
            request_id: "",
        };
        let served = self
            .models
            .get(model, version, caller)
            .await
            .map_err(|e| format!("the version cannot be loaded: {e}"))?;
        let dataset = served
            .manifest
            .training
            .dataset
            .clone()
            .ok_or("the package records no training dataset")?;
        let (table, source) = self
            .models
            .training_table(&dataset, served.manifest.training.dataset_digest.as_deref())
            .await?;
        let features: Vec<String> = served
            .plans
            .iter()
            .flat_map(|p| p.columns.iter().cloned())
            .collect();
        let classes = served
            .manifest
            .signature
            .classes()
            .unwrap_or_default()
            .to_vec();
        let target = served.manifest.training.target.clone();
        tokio::task::spawn_blocking(move || {
            let table = even_sample(table, MAX_ROWS);
            let answered = match served.predictor.predict(&table) {
                Ok(p) => Some(answers(&pipeline::outputs_json(&served, &p, usize::MAX))),
                Err(e) => {
                    tracing::warn!(model = %served.name, version = %served.version, error = %e,
                        "no reference predictions: prediction drift is not watched");
                    None
                }
            };
            let labels = target.as_deref().and_then(|t| table.column(t)).map(cells);
            let estimator = match (&answered, &labels) {
                (Some(a), Some(labels)) => Estimator::fit(
                    &a.predictions,
                    &a.confidence,
                    &a.probabilities,
                    labels,
                    &classes,
                ),
                _ => None,
            };
            let columns = features
                .iter()
                .filter_map(|f| Some((f.clone(), cells(table.column(f)?))))
                .collect();
            let r = Reference::new(columns, answered.map(|a| a.predictions))
                .map_err(|e| format!("{source}: {e}"))?
                .with_performance(classes, estimator);
            Ok((r, source))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// Every k-th row, so that at most `max` remain.
fn even_sample(table: Table, max: usize) -> Table {
    let rows = table.rows();
    if rows <= max {
        return table;
    }
    let idx: Vec<usize> = (0..max).map(|i| i * rows / max).collect();
    table.take(&idx)
}

fn cells(c: &ColumnData) -> Vec<Cell> {
    match c {
        ColumnData::Numeric(v) => v
            .iter()
            .map(|x| x.map_or(Cell::Missing, Cell::Number))
            .collect(),
        ColumnData::Text(v) => v
            .iter()
            .map(|x| x.clone().map_or(Cell::Missing, Cell::Text))
            .collect(),
    }
}

/// The answers in recorded-output form, read the way live events are.
fn answers(outputs: &serde_json::Value) -> Observation {
    let bare = Observation {
        time_ms: 0,
        actor: String::new(),
        rows: 0,
        features: Default::default(),
        predictions: Vec::new(),
        confidence: Vec::new(),
        probabilities: Vec::new(),
        outcome: Outcome {
            status: 200,
            latency_us: 0,
            route: String::new(),
            decision: String::new(),
        },
    };
    bare.with_recorded(&serde_json::Value::Null, outputs)
}
