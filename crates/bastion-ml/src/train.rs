//! Training a built-in model on a table: the target column becomes labels (classes named by
//! their values, sorted) or values, a seeded (stratified) split holds out test rows, the
//! preprocessing is fitted on the training rows only, then the estimator; the held-out rows
//! are evaluated. Everything is decided by the spec and the seed.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::builtin::{BuiltinModel, Estimator, Kind, columns_for};
use crate::error::{MlError, MlResult};
use crate::evaluate::{Evaluation, Truth, evaluate};
use crate::forest::{Forest, ForestParams};
use crate::gbdt::{Gbdt, GbdtParams};
use crate::linear::{LinearRegression, LogisticParams, LogisticRegression};
use crate::mlp::{Mlp, MlpParams};
use crate::predictor::{ColumnData, DType, Field, Predictor, Signature, Table, Task};
use crate::preprocess::{Column, Encoding, Preprocessor, Spec};
use crate::split::{Fold, holdout, kfold, stratified_kfold};
use crate::task::Target;

/// Integer-valued numeric targets with at most this many distinct values are classes.
pub const MAX_INFERRED_CLASSES: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Classification,
    Regression,
}

pub struct TrainSpec<'a> {
    pub kind: Kind,
    pub target: &'a str,
    /// Feature columns; every other column when `None`.
    pub features: Option<&'a [String]>,
    /// The estimator's parameters by name (unknown names are refused).
    pub params: Map<String, Value>,
    pub task: Option<TaskKind>,
    pub test_fraction: f64,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinearParams {
    /// Ridge penalty; 0 is ordinary least squares. The default is negligible but not 0:
    /// one-hot columns always sum to one, which with the intercept would make the normal
    /// equations singular.
    pub alpha: f64,
}

impl Default for LinearParams {
    fn default() -> Self {
        Self { alpha: 1e-6 }
    }
}

/// One step of a training curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Step<'a> {
    pub metric: &'a str,
    pub step: usize,
    pub value: f64,
}

pub struct Trained {
    pub model: BuiltinModel,
    /// Every parameter with its value (defaults included), as logged.
    pub params: BTreeMap<String, String>,
    /// Per metric, its value at each step.
    pub history: BTreeMap<String, Vec<f64>>,
    pub evaluation: Evaluation,
    pub train_rows: usize,
    pub test_rows: usize,
}

/// A class's name from a numeric label: integers without a decimal point.
pub fn class_name(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The target column as labels: the class names it holds, or its values.
pub enum Labels {
    Classes { names: Vec<String>, y: Vec<usize> },
    Values(Vec<f64>),
}

impl Labels {
    pub fn target(&self) -> Target<'_> {
        match self {
            Self::Classes { names, y } => Target::Classes {
                y,
                classes: names.len(),
            },
            Self::Values(v) => Target::Values(v),
        }
    }

    pub fn truth(&self) -> Truth<'_> {
        match self {
            Self::Classes { y, .. } => Truth::Classes(y),
            Self::Values(v) => Truth::Values(v),
        }
    }

    /// Each row's class, for a classification target.
    pub fn classes(&self) -> Option<&[usize]> {
        train_labels_classes(self)
    }

    fn take(&self, idx: &[usize]) -> Self {
        match self {
            Self::Classes { names, y } => Self::Classes {
                names: names.clone(),
                y: idx.iter().map(|&i| y[i]).collect(),
            },
            Self::Values(v) => Self::Values(idx.iter().map(|&i| v[i]).collect()),
        }
    }
}

fn missing_target(name: &str, rows: &[usize]) -> MlError {
    MlError::invalid(format!(
        "the target '{name}' is missing in {} rows (first: row {}); drop or fill them",
        rows.len(),
        rows.first().copied().unwrap_or(0)
    ))
}

/// Reads the target column: with `classes` given, each value must be one of them (the
/// model's classes, at evaluation); otherwise the task is `task` or inferred (text and
/// integer values with few distinct values are classes).
pub fn labels(
    table: &Table,
    target: &str,
    task: Option<TaskKind>,
    classes: Option<&[String]>,
) -> MlResult<Labels> {
    let col = table
        .column(target)
        .ok_or_else(|| MlError::invalid(format!("the data has no target column '{target}'")))?;
    let names: Vec<Option<String>> = match col {
        ColumnData::Text(v) => v.clone(),
        ColumnData::Numeric(v) => {
            let missing: Vec<usize> = (0..v.len())
                .filter(|&i| v[i].is_none_or(|x| !x.is_finite()))
                .collect();
            if !missing.is_empty() {
                return Err(missing_target(target, &missing));
            }
            let values: Vec<f64> = v.iter().flatten().copied().collect();
            let distinct: BTreeSet<u64> = values.iter().map(|x| x.to_bits()).collect();
            let integral = values.iter().all(|x| x.fract() == 0.0);
            let as_classes = match (classes, task) {
                (Some(_), _) | (None, Some(TaskKind::Classification)) => true,
                (None, Some(TaskKind::Regression)) => false,
                (None, None) => integral && distinct.len() <= MAX_INFERRED_CLASSES,
            };
            if !as_classes {
                return Ok(Labels::Values(values));
            }
            values.iter().map(|&x| Some(class_name(x))).collect()
        }
    };
    if task == Some(TaskKind::Regression) && classes.is_none() {
        return Err(MlError::invalid(format!(
            "the target '{target}' holds text; regression needs numbers"
        )));
    }
    let missing: Vec<usize> = (0..names.len()).filter(|&i| names[i].is_none()).collect();
    if !missing.is_empty() {
        return Err(missing_target(target, &missing));
    }
    let names: Vec<String> = names.into_iter().flatten().collect();
    let classes: Vec<String> = match classes {
        Some(c) => c.to_vec(),
        None => {
            // Numeric class names sort by value, text by its bytes.
            let mut set: Vec<String> = names
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if let ColumnData::Numeric(_) = col {
                set.sort_by(|a, b| {
                    let (x, y) = (
                        a.parse::<f64>().unwrap_or(0.0),
                        b.parse::<f64>().unwrap_or(0.0),
                    );
                    x.total_cmp(&y)
                });
            }
            set
        }
    };
    let index: BTreeMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let mut y = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        match index.get(n.as_str()) {
            Some(&c) => y.push(c),
            None => {
                return Err(MlError::invalid(format!(
                    "row {i}: target '{target}' is '{n}', which is not one of the model's classes {classes:?}"
                )));
            }
        }
    }
    Ok(Labels::Classes { names: classes, y })
}

fn parse_params<T: serde::de::DeserializeOwned + Serialize>(
    kind: Kind,
    params: &Map<String, Value>,
) -> MlResult<(T, BTreeMap<String, String>)> {
    let p: T = serde_json::from_value(Value::Object(params.clone()))
        .map_err(|e| MlError::invalid(format!("{} parameters: {e}", kind.as_str())))?;
    let shown = match serde_json::to_value(&p) {
        Ok(Value::Object(m)) => m
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    Value::Null => "none".to_owned(),
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    Ok((p, shown))
}

/// What training needs before any split: the labels and the feature columns, checked.
struct Prepared {
    labels: Labels,
    feature_names: Vec<String>,
}

impl Prepared {
    fn classes(&self) -> Option<&[usize]> {
        train_labels_classes(&self.labels)
    }
}

/// Trains and evaluates a built-in model; `on_step` sees each point of the training curves.
pub fn train(table: &Table, spec: &TrainSpec, on_step: impl FnMut(Step)) -> MlResult<Trained> {
    let prepared = prepare(table, spec)?;
    // A test fraction of 0 trains on every row and leaves evaluation to a separate data
    // set (`bastion evaluate`), as training a final model usually does.
    let split = if spec.test_fraction == 0.0 {
        Fold {
            train: (0..table.rows()).collect(),
            test: Vec::new(),
        }
    } else {
        holdout(
            table.rows(),
            prepared.classes(),
            spec.test_fraction,
            spec.seed,
        )?
    };
    fit_split(table, spec, &prepared, &split, on_step)
}

/// Trains and evaluates on a given split of `table`'s rows (`fold.train` to fit,
/// `fold.test` to evaluate): what red-team retraining uses to keep the model's own split.
pub fn train_on(
    table: &Table,
    spec: &TrainSpec,
    fold: &Fold,
    on_step: impl FnMut(Step),
) -> MlResult<Trained> {
    let prepared = prepare(table, spec)?;
    if let Some(&i) = fold
        .train
        .iter()
        .chain(&fold.test)
        .find(|&&i| i >= table.rows())
    {
        return Err(MlError::invalid(format!(
            "row {i} of the split is beyond the table's {} rows",
            table.rows()
        )));
    }
    fit_split(table, spec, &prepared, fold, on_step)
}

/// Metrics of `k`-fold cross-validation: a model trained on each fold's training rows and
/// evaluated on its held-out rows (folds stratified by class for classification).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CrossValidation {
    pub folds: Vec<BTreeMap<String, f64>>,
    pub mean: BTreeMap<String, f64>,
    /// Population standard deviation across folds (as `numpy.std`).
    pub std: BTreeMap<String, f64>,
}

pub fn cross_validate(
    table: &Table,
    spec: &TrainSpec,
    k: usize,
    mut on_fold: impl FnMut(usize),
) -> MlResult<CrossValidation> {
    let prepared = prepare(table, spec)?;
    let folds = match prepared.classes() {
        Some(y) => stratified_kfold(y, k, spec.seed)?,
        None => kfold(table.rows(), k, spec.seed)?,
    };
    let mut per_fold = Vec::with_capacity(k);
    for (i, fold) in folds.iter().enumerate() {
        let trained = fit_split(table, spec, &prepared, fold, |_| {})
            .map_err(|e| MlError::invalid(format!("cross-validation fold {}: {e}", i + 1)))?;
        per_fold.push(trained.evaluation.metrics);
        on_fold(i + 1);
    }
    // Metrics every fold has (e.g. ROC AUC is undefined on a fold with one class).
    let names: BTreeSet<&String> = per_fold
        .iter()
        .map(|m| m.keys().collect::<BTreeSet<_>>())
        .reduce(|a, b| a.intersection(&b).copied().collect())
        .unwrap_or_default();
    let (mut mean, mut std) = (BTreeMap::new(), BTreeMap::new());
    for name in names {
        let v: Vec<f64> = per_fold.iter().map(|m| m[name]).collect();
        let mu = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / v.len() as f64;
        mean.insert(name.clone(), mu);
        std.insert(name.clone(), var.sqrt());
    }
    Ok(CrossValidation {
        folds: per_fold,
        mean,
        std,
    })
}

fn prepare(table: &Table, spec: &TrainSpec) -> MlResult<Prepared> {
    table.check()?;
    if table.rows() < 2 {
        return Err(MlError::invalid(format!(
            "{} rows are too few to train on",
            table.rows()
        )));
    }
    let task = match spec.kind {
        Kind::Logreg => Some(TaskKind::Classification),
        Kind::Linear => Some(TaskKind::Regression),
        _ => spec.task,
    };
    if spec.kind == Kind::Logreg && spec.task == Some(TaskKind::Regression)
        || spec.kind == Kind::Linear && spec.task == Some(TaskKind::Classification)
    {
        return Err(MlError::invalid(format!(
            "model {} cannot do {:?}",
            spec.kind.as_str(),
            spec.task
        )));
    }
    let labels = labels(table, spec.target, task, None)?;
    let feature_names: Vec<String> = match spec.features {
        Some(f) => {
            if let Some(t) = f.iter().find(|n| n.as_str() == spec.target) {
                return Err(MlError::invalid(format!(
                    "the target '{t}' cannot also be a feature"
                )));
            }
            f.to_vec()
        }
        None => table
            .names
            .iter()
            .filter(|n| n.as_str() != spec.target)
            .cloned()
            .collect(),
    };
    if feature_names.is_empty() {
        return Err(MlError::invalid(
            "there are no feature columns to learn from",
        ));
    }
    Ok(Prepared {
        labels,
        feature_names,
    })
}

/// Fits preprocessing and the estimator on `split.train`, evaluates on `split.test`.
fn fit_split(
    table: &Table,
    spec: &TrainSpec,
    prepared: &Prepared,
    split: &Fold,
    mut on_step: impl FnMut(Step),
) -> MlResult<Trained> {
    let Prepared {
        labels,
        feature_names,
    } = prepared;
    // Every row in order needs no copy of the table.
    let every_row = split.test.is_empty() && split.train.iter().copied().eq(0..table.rows());
    let train_table = if every_row {
        Cow::Borrowed(table)
    } else {
        Cow::Owned(table.take(&split.train))
    };
    let test_table = table.take(&split.test);
    let train_labels = labels.take(&split.train);
    let test_labels = labels.take(&split.test);
    if let Labels::Classes { y, .. } = &train_labels
        && y.iter().collect::<BTreeSet<_>>().len() < 2
    {
        return Err(MlError::invalid(format!(
            "the target '{}' holds a single class; there is nothing to separate",
            spec.target
        )));
    }

    // Preprocessing, fitted on the training rows.
    let encoding = match spec.kind {
        Kind::Gbdt | Kind::Forest => Encoding::Ordinal,
        _ => Encoding::OneHot,
    };
    let mut text: Vec<Vec<Option<&str>>> = Vec::new();
    let mut plan = Vec::new();
    for name in feature_names {
        match train_table.column(name) {
            None => {
                return Err(MlError::invalid(format!("the data has no column '{name}'")));
            }
            Some(ColumnData::Numeric(v)) => plan.push(Ok(v.as_slice())),
            Some(ColumnData::Text(v)) => {
                text.push(v.iter().map(Option::as_deref).collect());
                plan.push(Err(text.len() - 1));
            }
        }
    }
    let cols: Vec<Column> = plan
        .iter()
        .map(|p| match p {
            Ok(v) => Column::Numeric(v),
            Err(i) => Column::Text(&text[*i]),
        })
        .collect();
    let pre = Preprocessor::fit(
        &Spec {
            names: feature_names,
            encoding,
        },
        &cols,
    )?;
    let x = pre.transform(&cols)?;
    let xt = columns_for(&pre, &test_table)?;

    let target = train_labels.target();
    let mut history: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut record = |metric: &str, step: usize, value: f64| {
        history.entry(metric.to_owned()).or_default().push(value);
        on_step(Step {
            metric,
            step,
            value,
        });
    };
    let mut params = spec.params.clone();
    if matches!(spec.kind, Kind::Gbdt | Kind::Forest | Kind::Mlp) && !params.contains_key("seed") {
        params.insert("seed".into(), Value::from(spec.seed));
    }
    let (estimator, shown) = match spec.kind {
        Kind::Logreg => {
            let (p, shown) = parse_params::<LogisticParams>(spec.kind, &params)?;
            let Target::Classes { y, classes } = target else {
                return Err(MlError::invalid("logreg needs classes"));
            };
            let (m, report) = LogisticRegression::fit(x.view(), y, classes, p)?;
            for (i, l) in report.loss.iter().enumerate() {
                record("train_loss", i + 1, *l);
            }
            (Estimator::Logreg(m), shown)
        }
        Kind::Linear => {
            let (p, shown) = parse_params::<LinearParams>(spec.kind, &params)?;
            let Target::Values(y) = target else {
                return Err(MlError::invalid("linear regression needs numeric values"));
            };
            (
                Estimator::Linear(LinearRegression::fit(x.view(), y, p.alpha)?),
                shown,
            )
        }
        Kind::Gbdt => {
            let (p, shown) = parse_params::<GbdtParams>(spec.kind, &params)?;
            // Early stopping watches rows carved from the training rows, never the test
            // rows; without it the test loss is only reported.
            let carved;
            let (fit_x, fit_target, valid, curve) = if p.early_stopping_rounds.is_some() {
                let inner = holdout(
                    x.nrows(),
                    train_labels_classes(&train_labels),
                    0.1,
                    spec.seed,
                )?;
                let fit_labels = train_labels.take(&inner.train);
                let valid_labels = train_labels.take(&inner.test);
                carved = (
                    x.select(ndarray::Axis(0), &inner.train),
                    fit_labels,
                    x.select(ndarray::Axis(0), &inner.test),
                    valid_labels,
                );
                (
                    carved.0.view(),
                    carved.1.target(),
                    Some((carved.2.view(), carved.3.target())),
                    "valid_loss",
                )
            } else {
                (
                    x.view(),
                    target,
                    Some((xt.view(), test_labels.target())).filter(|_| xt.nrows() > 0),
                    "test_loss",
                )
            };
            let (m, _) = Gbdt::fit(fit_x, fit_target, p, valid, |round, r| {
                if let Some(&l) = r.train_loss.last() {
                    record("train_loss", round, l);
                }
                if let Some(&l) = r.valid_loss.last() {
                    record(curve, round, l);
                }
            })?;
            (Estimator::Gbdt(m), shown)
        }
        Kind::Forest => {
            let (p, shown) = parse_params::<ForestParams>(spec.kind, &params)?;
            (Estimator::Forest(Forest::fit(x.view(), target, p)?), shown)
        }
        Kind::Mlp => {
            let (p, shown) = parse_params::<MlpParams>(spec.kind, &params)?;
            let (m, _) = Mlp::fit(x.view(), target, &p, |epoch, loss| {
                record("train_loss", epoch, loss)
            })?;
            (Estimator::Mlp(m), shown)
        }
    };
    let task = match labels {
        Labels::Classes { names, .. } => Task::Classification {
            classes: names.clone(),
        },
        Labels::Values(_) => Task::Regression,
    };
    let signature = signature_for(table, feature_names, task, &pre);
    let model = BuiltinModel {
        signature,
        preprocessor: pre,
        estimator,
    };
    model.validate()?;
    let evaluation = if split.test.is_empty() {
        Evaluation::empty()
    } else {
        let pred = model.predict_features(xt.view())?;
        evaluate(&pred, test_labels.truth(), model.signature.classes(), None)?
    };
    let mut params_out = shown;
    params_out.insert("model".into(), spec.kind.as_str().into());
    params_out.insert("target".into(), spec.target.into());
    params_out.insert("test_fraction".into(), spec.test_fraction.to_string());
    params_out.insert("split_seed".into(), spec.seed.to_string());
    Ok(Trained {
        model,
        params: params_out,
        history,
        evaluation,
        train_rows: split.train.len(),
        test_rows: split.test.len(),
    })
}

fn train_labels_classes(l: &Labels) -> Option<&[usize]> {
    match l {
        Labels::Classes { y, .. } => Some(y),
        Labels::Values(_) => None,
    }
}

fn signature_for(table: &Table, features: &[String], task: Task, pre: &Preprocessor) -> Signature {
    let inputs = features
        .iter()
        .map(|n| Field {
            name: n.clone(),
            dtype: match table.column(n) {
                Some(ColumnData::Text(_)) => DType::Bytes,
                _ => DType::Fp64,
            },
            shape: vec![-1],
        })
        .collect();
    let outputs = task.outputs();
    Signature {
        inputs,
        outputs,
        features: pre.feature_names(),
        task,
    }
}
