//! What live traffic is compared with: the training data, column by column, and the
//! distribution of answers the model should give.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::error::{MonitorError, MonitorResult};
use crate::observation::Cell;
use crate::performance::Estimator;

/// Categorical columns with more distinct values than this are identifiers or free text,
/// not categories: they are not compared.
pub const MAX_CATEGORIES: usize = 1_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Sorted, without missing values.
    Numeric {
        sorted: Vec<f64>,
    },
    Categorical {
        counts: HashMap<String, u64>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub values: Values,
    /// Share of the reference rows missing this column's value.
    pub missing_rate: f64,
}

impl Column {
    /// A column from its cells: numeric when every present cell is a number, else
    /// categorical (numbers then count by their text). `None` for a column of too many
    /// distinct texts.
    pub fn from_cells(name: &str, cells: &[Cell]) -> Option<Self> {
        let present: Vec<&Cell> = cells.iter().filter(|c| !c.is_missing()).collect();
        let missing_rate = if cells.is_empty() {
            0.0
        } else {
            (cells.len() - present.len()) as f64 / cells.len() as f64
        };
        let numeric = present.iter().all(|c| matches!(c, Cell::Number(_)));
        let values = if numeric {
            let mut sorted: Vec<f64> = present
                .iter()
                .filter_map(|c| match c {
                    Cell::Number(v) => Some(*v),
                    _ => None,
                })
                .collect();
            sorted.sort_by(f64::total_cmp);
            Values::Numeric { sorted }
        } else {
            let counts = category_counts(present.into_iter());
            if counts.len() > MAX_CATEGORIES {
                return None;
            }
            Values::Categorical { counts }
        };
        Some(Self {
            name: name.to_owned(),
            values,
            missing_rate,
        })
    }

    /// Whether a live value lies outside what the reference saw: a number outside its
    /// range, a category it never had, or a kind it never had. Missing values are counted
    /// apart, never as out of range.
    pub fn out_of_range(&self, cell: &Cell) -> bool {
        match (&self.values, cell) {
            (_, c) if c.is_missing() => false,
            (Values::Numeric { sorted }, Cell::Number(v)) => {
                match (sorted.first(), sorted.last()) {
                    (Some(lo), Some(hi)) => v < lo || v > hi,
                    _ => true,
                }
            }
            (Values::Numeric { .. }, _) => true,
            (Values::Categorical { counts }, c) => !counts.contains_key(&category(c)),
        }
    }
}

/// A cell as a category name.
pub fn category(c: &Cell) -> String {
    match c {
        Cell::Text(s) => s.clone(),
        Cell::Number(v) => v.to_string(),
        Cell::Missing => String::new(),
    }
}

pub fn category_counts<'a>(cells: impl Iterator<Item = &'a Cell>) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for c in cells.filter(|c| !c.is_missing()) {
        *counts.entry(category(c)).or_insert(0) += 1;
    }
    counts
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub columns: Vec<Column>,
    /// Columns left out, and why.
    pub skipped: Vec<(String, String)>,
    /// The answers expected: the model's on the reference rows, or the training labels.
    pub predictions: Option<Column>,
    pub rows: usize,
    /// The model's classes, in the order of its probabilities (empty for a regressor or
    /// when unknown).
    pub classes: Vec<String>,
    /// Estimates performance from confidence while labels are missing (calibrated on the
    /// reference's labels).
    pub estimator: Option<Estimator>,
}

/// What a reference holds, for reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReferenceSummary {
    pub rows: usize,
    pub columns: Vec<String>,
    pub skipped: BTreeMap<String, String>,
    pub predictions: bool,
    /// The reference's accuracy, when performance is estimated from confidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimator_accuracy: Option<f64>,
}

impl Reference {
    /// From the reference data's columns (each a cell per row) and, optionally, the answers
    /// expected on it.
    pub fn new(
        columns: Vec<(String, Vec<Cell>)>,
        predictions: Option<Vec<Cell>>,
    ) -> MonitorResult<Self> {
        let rows = columns.first().map_or(0, |(_, c)| c.len());
        if rows == 0 {
            return Err(MonitorError::invalid(
                "the reference data has no rows; drift needs something to compare with",
            ));
        }
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        for (name, cells) in &columns {
            if cells.len() != rows {
                return Err(MonitorError::invalid(format!(
                    "reference column '{name}' has {} values for {rows} rows",
                    cells.len()
                )));
            }
            match Column::from_cells(name, cells) {
                Some(c) => out.push(c),
                None => skipped.push((
                    name.clone(),
                    format!(
                        "more than {MAX_CATEGORIES} distinct values (an identifier or free text)"
                    ),
                )),
            }
        }
        let predictions = predictions
            .filter(|p| !p.is_empty())
            .and_then(|p| Column::from_cells("prediction", &p));
        Ok(Self {
            columns: out,
            skipped,
            predictions,
            rows,
            classes: Vec::new(),
            estimator: None,
        })
    }

    /// With the model's classes and a performance estimator calibrated on the reference.
    pub fn with_performance(mut self, classes: Vec<String>, estimator: Option<Estimator>) -> Self {
        self.classes = classes;
        self.estimator = estimator;
        self
    }

    /// No reference data: windows are judged on serving health alone, without drift.
    pub fn none() -> Self {
        Self {
            columns: Vec::new(),
            skipped: Vec::new(),
            predictions: None,
            rows: 0,
            classes: Vec::new(),
            estimator: None,
        }
    }

    pub fn summary(&self) -> ReferenceSummary {
        ReferenceSummary {
            rows: self.rows,
            columns: self.columns.iter().map(|c| c.name.clone()).collect(),
            skipped: self.skipped.iter().cloned().collect(),
            predictions: self.predictions.is_some(),
            estimator_accuracy: self.estimator.as_ref().map(|e| e.reference_accuracy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_ranges_and_categories() {
        let r = Reference::new(
            vec![
                (
                    "x".into(),
                    vec![Cell::Number(3.0), Cell::Missing, Cell::Number(1.0)],
                ),
                (
                    "c".into(),
                    vec![
                        Cell::Text("a".into()),
                        Cell::Text("b".into()),
                        Cell::Number(1.0),
                    ],
                ),
            ],
            None,
        )
        .unwrap();
        let x = &r.columns[0];
        assert_eq!(
            x.values,
            Values::Numeric {
                sorted: vec![1.0, 3.0]
            }
        );
        assert!((x.missing_rate - 1.0 / 3.0).abs() < 1e-12);
        assert!(x.out_of_range(&Cell::Number(3.5)));
        assert!(!x.out_of_range(&Cell::Number(2.0)));
        assert!(!x.out_of_range(&Cell::Missing));
        assert!(x.out_of_range(&Cell::Text("2".into())));
        let c = &r.columns[1];
        assert!(!c.out_of_range(&Cell::Number(1.0)));
        assert!(c.out_of_range(&Cell::Text("z".into())));
    }

    #[test]
    fn empty_ragged_and_identifier_columns() {
        assert!(Reference::new(vec![], None).is_err());
        let e = Reference::new(
            vec![
                ("a".into(), vec![Cell::Number(1.0); 3]),
                ("b".into(), vec![Cell::Number(1.0); 2]),
            ],
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("'b' has 2 values for 3 rows"), "{e}");
        let ids: Vec<Cell> = (0..=MAX_CATEGORIES)
            .map(|i| Cell::Text(format!("id-{i}")))
            .collect();
        let r = Reference::new(vec![("id".into(), ids)], None).unwrap();
        assert!(r.columns.is_empty());
        assert_eq!(r.skipped[0].0, "id");
    }
}
