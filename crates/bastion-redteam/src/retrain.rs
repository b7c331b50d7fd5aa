//! Retraining a built-in model the way it was trained, from the parameters its package
//! records (kind, target, estimator parameters, test fraction and split seed): its own
//! train/test split is recomputed, and shadow models and poisoned copies are trained with
//! the same settings.

use std::collections::BTreeMap;

use bastion_ml::builtin::Kind;
use bastion_ml::predictor::{ColumnData, Predictor, Table};
use bastion_ml::split::{Fold, holdout};
use bastion_ml::train::{TaskKind, TrainSpec, train_on};
use serde_json::{Map, Value};

use crate::campaign::Retrain;
use crate::error::{RedteamError, RedteamResult};

/// Parameters `bastion train` records that are not the estimator's.
const NOT_ESTIMATOR: [&str; 4] = ["model", "target", "test_fraction", "split_seed"];

pub struct BuiltinRetrain<'a> {
    pub table: &'a Table,
    pub kind: Kind,
    pub target: String,
    pub features: Vec<String>,
    pub params: Map<String, Value>,
    /// The model's classes, in its order.
    pub classes: Vec<String>,
    pub test_fraction: f64,
    pub seed: u64,
}

impl<'a> BuiltinRetrain<'a> {
    /// From the training parameters a package records (values as logged: JSON, or bare
    /// strings, `none` for null).
    pub fn from_recorded(
        table: &'a Table,
        recorded: &BTreeMap<String, String>,
        features: Vec<String>,
        classes: Vec<String>,
    ) -> RedteamResult<Self> {
        let get = |k: &str| {
            recorded.get(k).ok_or_else(|| {
                RedteamError::invalid(format!("the model's training record has no '{k}'"))
            })
        };
        let kind = Kind::parse(get("model")?)?;
        let number = |k: &str| -> RedteamResult<f64> {
            get(k)?.parse::<f64>().map_err(|_| {
                RedteamError::invalid(format!("the model's training record has a bad '{k}'"))
            })
        };
        let test_fraction = number("test_fraction")?;
        let seed = get("split_seed")?.parse::<u64>().map_err(|_| {
            RedteamError::invalid("the model's training record has a bad 'split_seed'")
        })?;
        let params = recorded
            .iter()
            .filter(|(k, _)| !NOT_ESTIMATOR.contains(&k.as_str()))
            .map(|(k, v)| {
                let value = match v.as_str() {
                    "none" => Value::Null,
                    s => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_owned())),
                };
                (k.clone(), value)
            })
            .collect();
        Ok(Self {
            table,
            kind,
            target: get("target")?.clone(),
            features,
            params,
            classes,
            test_fraction,
            seed,
        })
    }

    /// The model's own split of the table's rows (`y` the rows' classes).
    pub fn split(&self, y: &[usize]) -> RedteamResult<Fold> {
        Ok(holdout(
            self.table.rows(),
            Some(y),
            self.test_fraction,
            self.seed,
        )?)
    }

    /// The table with some rows' target replaced by another class's name.
    fn relabelled(&self, relabel: &[(usize, usize)]) -> RedteamResult<Table> {
        let mut t = self.table.clone();
        let at = t
            .names
            .iter()
            .position(|n| *n == self.target)
            .ok_or_else(|| {
                RedteamError::invalid(format!("the data has no target column '{}'", self.target))
            })?;
        for &(row, class) in relabel {
            let name = self.classes.get(class).ok_or_else(|| {
                RedteamError::invalid(format!("class {class} is not one of the model's classes"))
            })?;
            match &mut t.columns[at] {
                ColumnData::Text(v) => v[row] = Some(name.clone()),
                ColumnData::Numeric(v) => {
                    v[row] = Some(name.parse::<f64>().map_err(|_| {
                        RedteamError::invalid(format!(
                            "class '{name}' of a numeric target is not a number"
                        ))
                    })?)
                }
            }
        }
        Ok(t)
    }
}

impl Retrain for BuiltinRetrain<'_> {
    fn retrain(
        &self,
        fold: &Fold,
        relabel: &[(usize, usize)],
        overrides: &Map<String, Value>,
    ) -> RedteamResult<Box<dyn Predictor>> {
        let owned;
        let table = if relabel.is_empty() {
            self.table
        } else {
            owned = self.relabelled(relabel)?;
            &owned
        };
        let spec = TrainSpec {
            kind: self.kind,
            target: &self.target,
            features: Some(&self.features),
            params: {
                let mut p = self.params.clone();
                p.extend(overrides.clone());
                p
            },
            task: Some(TaskKind::Classification),
            test_fraction: self.test_fraction,
            seed: self.seed,
        };
        let trained = train_on(table, &spec, fold, |_| {})?;
        Ok(Box::new(trained.model))
    }
}
