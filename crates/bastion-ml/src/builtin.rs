//! Bastion's own models behind the [`Predictor`] trait: the preprocessing fitted with them,
//! then one of the built-in estimators.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::error::{MlError, MlResult};
use crate::forest::Forest;
use crate::gbdt::Gbdt;
use crate::linear::{LinearRegression, LogisticRegression};
use crate::mlp::Mlp;
use crate::predictor::{ColumnData, Prediction, Predictor, Signature, Table};
use crate::preprocess::{Column, Preprocessor, Step};
use crate::task::Target;

/// The kinds of built-in model, as `bastion train --model` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Logreg,
    Linear,
    Gbdt,
    Forest,
    Mlp,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logreg => "logreg",
            Self::Linear => "linear",
            Self::Gbdt => "gbdt",
            Self::Forest => "forest",
            Self::Mlp => "mlp",
        }
    }

    pub fn parse(s: &str) -> MlResult<Self> {
        Ok(match s {
            "logreg" | "logistic" => Self::Logreg,
            "linear" | "ridge" => Self::Linear,
            "gbdt" => Self::Gbdt,
            "forest" | "random_forest" | "rf" => Self::Forest,
            "mlp" => Self::Mlp,
            other => {
                return Err(MlError::invalid(format!(
                    "unknown model '{other}' (choose logreg, linear, gbdt, forest or mlp)"
                )));
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Estimator {
    Logreg(LogisticRegression),
    Linear(LinearRegression),
    Gbdt(Gbdt),
    Forest(Forest),
    Mlp(Mlp),
}

impl Estimator {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Logreg(_) => Kind::Logreg,
            Self::Linear(_) => Kind::Linear,
            Self::Gbdt(_) => Kind::Gbdt,
            Self::Forest(_) => Kind::Forest,
            Self::Mlp(_) => Kind::Mlp,
        }
    }

    /// Features the estimator takes.
    pub fn features(&self) -> usize {
        match self {
            Self::Logreg(m) => m.features(),
            Self::Linear(m) => m.coef.len(),
            Self::Gbdt(m) => m.features,
            Self::Forest(m) => m.features,
            Self::Mlp(m) => m.features(),
        }
    }

    /// Class count for classifiers, `None` for regressors.
    pub fn classes(&self) -> Option<usize> {
        match self {
            Self::Logreg(m) => Some(m.classes),
            Self::Linear(_) => None,
            Self::Gbdt(m) => match m.objective {
                crate::gbdt::Objective::Regression => None,
                crate::gbdt::Objective::Binary => Some(2),
                crate::gbdt::Objective::Multiclass => Some(m.outputs),
            },
            Self::Forest(m) => m.classification.then_some(m.outputs),
            Self::Mlp(m) => (m.output != crate::mlp::Output::Identity).then_some(m.classes),
        }
    }

    pub fn predict(&self, x: ArrayView2<f64>) -> MlResult<Prediction> {
        Ok(match self {
            Self::Logreg(m) => Prediction::Classes(m.predict_proba(x)?),
            Self::Linear(m) => Prediction::Values(m.predict(x)?),
            Self::Gbdt(m) => match m.objective {
                crate::gbdt::Objective::Regression => {
                    Prediction::Values(m.raw(x)?.column(0).to_owned())
                }
                _ => Prediction::Classes(m.predict_proba(x)?),
            },
            Self::Forest(m) => {
                let raw = m.predict_raw(x)?;
                if m.classification {
                    Prediction::Classes(raw)
                } else {
                    Prediction::Values(raw.column(0).to_owned())
                }
            }
            Self::Mlp(m) => {
                let out = m.predict(x)?;
                if m.output == crate::mlp::Output::Identity {
                    Prediction::Values(out.column(0).to_owned())
                } else {
                    Prediction::Classes(out)
                }
            }
        })
    }
}

/// A built-in model: its signature, its preprocessing and its estimator.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltinModel {
    pub signature: Signature,
    pub preprocessor: Preprocessor,
    pub estimator: Estimator,
}

impl BuiltinModel {
    /// Checks that the parts fit together (a model read from a file).
    pub fn validate(&self) -> MlResult<()> {
        self.preprocessor.validate()?;
        match &self.estimator {
            Estimator::Gbdt(m) => m.validate()?,
            Estimator::Forest(m) => m.validate()?,
            Estimator::Mlp(m) => m.validate()?,
            Estimator::Logreg(m) => {
                let rows = if m.classes == 2 { 1 } else { m.classes };
                if m.classes < 2 || m.coef.nrows() != rows || m.intercept.len() != rows {
                    return Err(MlError::invalid(
                        "logistic regression: weights do not fit the class count",
                    ));
                }
            }
            Estimator::Linear(_) => {}
        }
        let width = self.preprocessor.feature_names();
        if width.len() != self.estimator.features() || width != self.signature.features {
            return Err(MlError::invalid(format!(
                "the preprocessing makes {} features, the estimator takes {}",
                width.len(),
                self.estimator.features()
            )));
        }
        let classes = self.signature.classes().map(<[String]>::len);
        if classes != self.estimator.classes() {
            return Err(MlError::invalid(format!(
                "the signature declares {classes:?} classes, the estimator predicts {:?}",
                self.estimator.classes()
            )));
        }
        Ok(())
    }
}

/// The preprocessor's input columns from a table, by name, in its order.
pub fn columns_for(pre: &Preprocessor, table: &Table) -> MlResult<Array2<f64>> {
    let mut text: Vec<Vec<Option<&str>>> = Vec::new();
    let mut plan = Vec::with_capacity(pre.steps.len());
    for step in &pre.steps {
        let (name, want_numeric) = match step {
            Step::Numeric { name, .. } => (name, true),
            Step::Categorical { name, .. } => (name, false),
        };
        let col = table.column(name).ok_or_else(|| {
            MlError::invalid(format!(
                "the input has no column '{name}', which the model needs"
            ))
        })?;
        match (col, want_numeric) {
            (ColumnData::Numeric(v), true) => plan.push(Ok(v.as_slice())),
            (ColumnData::Text(v), false) => {
                text.push(v.iter().map(Option::as_deref).collect());
                plan.push(Err(text.len() - 1));
            }
            (ColumnData::Text(_), true) => {
                return Err(MlError::invalid(format!(
                    "column '{name}' holds text, the model needs numbers"
                )));
            }
            // Numbers where a category is expected: a category's name is its text.
            (ColumnData::Numeric(_), false) => {
                return Err(MlError::invalid(format!(
                    "column '{name}' holds numbers, the model needs text categories"
                )));
            }
        }
    }
    let cols: Vec<Column> = plan
        .into_iter()
        .map(|p| match p {
            Ok(v) => Column::Numeric(v),
            Err(i) => Column::Text(&text[i]),
        })
        .collect();
    pre.transform(&cols)
}

impl Predictor for BuiltinModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn features(&self, table: &Table) -> MlResult<Array2<f64>> {
        table.check()?;
        columns_for(&self.preprocessor, table)
    }

    fn predict_features(&self, x: ArrayView2<f64>) -> MlResult<Prediction> {
        self.estimator.predict(x)
    }

    fn input_gradient(&self, x: ArrayView2<f64>, target: Target) -> Option<MlResult<Array2<f64>>> {
        match (&self.estimator, target) {
            (Estimator::Logreg(m), Target::Classes { y, .. }) => Some(m.input_gradient(x, y)),
            (Estimator::Linear(m), Target::Values(y)) => Some(m.input_gradient(x, y)),
            (Estimator::Mlp(m), t) => Some(m.input_gradient(x, t)),
            (Estimator::Logreg(_) | Estimator::Linear(_), _) => Some(Err(MlError::invalid(
                "input gradient: the target does not fit the model's task",
            ))),
            (Estimator::Gbdt(_) | Estimator::Forest(_), _) => None,
        }
    }
}
