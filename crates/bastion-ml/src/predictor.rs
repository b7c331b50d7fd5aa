//! One interface for every model Bastion runs, built in or imported: a declared signature
//! (inputs, outputs, feature order, task), batch prediction from a table of named columns or
//! from the feature matrix, class probabilities for classifiers, and, for differentiable
//! models, the gradient of the loss with respect to the input features.

use ndarray::{Array1, Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::error::{MlError, MlResult};
use crate::task::Target;

/// Tensor element types, named as the Open Inference Protocol names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DType {
    Bool,
    Int32,
    Int64,
    Fp32,
    Fp64,
    Bytes,
}

/// One named input or output; `-1` in `shape` is a dimension of any size (the batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Task {
    /// Class `i` of the model's outputs is `classes[i]`.
    Classification {
        classes: Vec<String>,
    },
    Regression,
}

impl Task {
    /// What a model of this task returns, as Bastion serves it: the label and the class
    /// probabilities, or the predicted value.
    pub fn outputs(&self) -> Vec<Field> {
        match self {
            Self::Classification { classes } => vec![
                Field {
                    name: "label".into(),
                    dtype: DType::Bytes,
                    shape: vec![-1],
                },
                Field {
                    name: "probabilities".into(),
                    dtype: DType::Fp64,
                    shape: vec![-1, classes.len() as i64],
                },
            ],
            Self::Regression => vec![Field {
                name: "prediction".into(),
                dtype: DType::Fp64,
                shape: vec![-1],
            }],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub inputs: Vec<Field>,
    pub outputs: Vec<Field>,
    /// The columns of the feature matrix, in order.
    pub features: Vec<String>,
    pub task: Task,
}

impl Signature {
    pub fn classes(&self) -> Option<&[String]> {
        match &self.task {
            Task::Classification { classes } => Some(classes),
            Task::Regression => None,
        }
    }
}

/// A column of a table handed to a model.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    Numeric(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
}

impl ColumnData {
    pub fn len(&self) -> usize {
        match self {
            Self::Numeric(v) => v.len(),
            Self::Text(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<bastion_data::columns::Values> for ColumnData {
    fn from(v: bastion_data::columns::Values) -> Self {
        match v {
            bastion_data::columns::Values::Numeric(v) => Self::Numeric(v),
            bastion_data::columns::Values::Text(v) => Self::Text(v),
        }
    }
}

/// Named columns of equal length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub names: Vec<String>,
    pub columns: Vec<ColumnData>,
}

impl Table {
    /// The usable columns of a Parquet file (nested and binary ones are skipped and named in
    /// the log), refusing files of more than `max_rows` rows.
    pub fn read_parquet(path: &std::path::Path, max_rows: u64) -> MlResult<Self> {
        let cols = bastion_data::columns::read_columns(path, max_rows)
            .map_err(|e| MlError::invalid(e.to_string()))?;
        if !cols.skipped.is_empty() {
            tracing::info!(columns = ?cols.skipped, "nested or binary columns are not used by models");
        }
        Ok(Self {
            names: cols.names,
            columns: cols.values.into_iter().map(ColumnData::from).collect(),
        })
    }

    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, ColumnData::len)
    }

    pub fn column(&self, name: &str) -> Option<&ColumnData> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.columns[i])
    }

    /// Rows `idx` of every column.
    pub fn take(&self, idx: &[usize]) -> Self {
        Self {
            names: self.names.clone(),
            columns: self
                .columns
                .iter()
                .map(|c| match c {
                    ColumnData::Numeric(v) => {
                        ColumnData::Numeric(idx.iter().map(|&i| v[i]).collect())
                    }
                    ColumnData::Text(v) => {
                        ColumnData::Text(idx.iter().map(|&i| v[i].clone()).collect())
                    }
                })
                .collect(),
        }
    }

    /// Checks that every column has the same number of rows and names are distinct.
    pub fn check(&self) -> MlResult<()> {
        if self.names.len() != self.columns.len() {
            return Err(MlError::invalid(format!(
                "table: {} names for {} columns",
                self.names.len(),
                self.columns.len()
            )));
        }
        let n = self.rows();
        if let Some(i) = self.columns.iter().position(|c| c.len() != n) {
            return Err(MlError::invalid(format!(
                "table: column '{}' has {} rows, the first has {n}",
                self.names[i],
                self.columns[i].len()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = self.names.iter().find(|n| !seen.insert(n.as_str())) {
            return Err(MlError::invalid(format!(
                "table: column '{dup}' appears twice"
            )));
        }
        Ok(())
    }
}

/// What a model returns for a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    /// `rows × classes` probabilities (each row sums to 1).
    Classes(Array2<f64>),
    Values(Array1<f64>),
}

impl Prediction {
    pub fn rows(&self) -> usize {
        match self {
            Self::Classes(p) => p.nrows(),
            Self::Values(v) => v.len(),
        }
    }

    /// The most probable class per row (the first on ties), for classifiers.
    pub fn labels(&self) -> Option<Vec<usize>> {
        match self {
            Self::Classes(p) => Some(
                p.rows()
                    .into_iter()
                    .map(|r| {
                        r.iter()
                            .enumerate()
                            .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
                                if v > best.1 { (i, v) } else { best }
                            })
                            .0
                    })
                    .collect(),
            ),
            Self::Values(_) => None,
        }
    }
}

pub trait Predictor: Send + Sync {
    fn signature(&self) -> &Signature;

    /// The feature matrix the model computes on, from named columns (extra columns are
    /// ignored; a missing or mistyped one is an error that names it).
    fn features(&self, table: &Table) -> MlResult<Array2<f64>>;

    /// Predictions for a feature matrix in the signature's feature order.
    fn predict_features(&self, x: ArrayView2<f64>) -> MlResult<Prediction>;

    fn predict(&self, table: &Table) -> MlResult<Prediction> {
        let x = self.features(table)?;
        self.predict_features(x.view())
    }

    /// ∂ loss / ∂ features per row, for models that are differentiable (`None` otherwise):
    /// cross-entropy of the given classes, or half squared error against the given values.
    fn input_gradient(
        &self,
        _x: ArrayView2<f64>,
        _target: Target,
    ) -> Option<MlResult<Array2<f64>>> {
        None
    }
}
