//! One inference request as the monitor sees it: the rows it carried (when the server kept
//! them), what the model answered, and how the request went.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::recorded::{RecordedFeatures, RecordedOutputs};

/// One value of one row. As JSON (`recorded.rs`): a number, a string, or null.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Number(f64),
    Text(String),
    Missing,
}

impl Cell {
    /// A JSON value as a cell: numbers and strings as they are, booleans as text (they are
    /// categories), null and anything nested as missing.
    pub fn from_json(v: &Value) -> Self {
        Cell::deserialize(v).unwrap_or(Cell::Missing)
    }

    pub fn is_missing(&self) -> bool {
        match self {
            Cell::Missing => true,
            Cell::Number(v) => v.is_nan(),
            Cell::Text(_) => false,
        }
    }
}

/// How a request went, whatever it carried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The HTTP status answered.
    pub status: i64,
    pub latency_us: i64,
    /// `stable`, `canary`, `shadow`, `pinned` or `direct`.
    pub route: String,
    /// `ok`, `flagged`, `rejected`, `refused` or `error`.
    pub decision: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub time_ms: i64,
    /// Who sent it (a token's user), as authentication named them.
    pub actor: String,
    /// Rows in the request (all of them, whether or not they were kept).
    pub rows: usize,
    /// The kept rows, column by column (empty when the request was not sampled).
    pub features: BTreeMap<String, Vec<Cell>>,
    /// The model's answer per kept output row: a label or a value.
    pub predictions: Vec<Cell>,
    /// The winning class's probability per output row (classifiers).
    pub confidence: Vec<f64>,
    /// Every class's probability per output row, in the model's class order (classifiers
    /// with few classes; empty when not recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probabilities: Vec<Vec<f64>>,
    pub outcome: Outcome,
}

impl Observation {
    /// From an inference event's recorded `features` (`{column: [values]}`) and `outputs`
    /// (`{labels, confidence, probabilities}` or `{values}`); anything else there is ignored, not an error:
    /// events are telemetry written by older and newer servers alike.
    pub fn with_recorded(self, features: &Value, outputs: &Value) -> Self {
        self.with_parts(
            RecordedFeatures::deserialize(features).unwrap_or_default(),
            RecordedOutputs::deserialize(outputs).unwrap_or_default(),
        )
    }

    /// The same, from the parts already decoded (from the stored JSON text, or within a
    /// whole event's JSON).
    pub fn with_parts(mut self, features: RecordedFeatures, mut outputs: RecordedOutputs) -> Self {
        self.features = features.0;
        self.predictions = outputs.predictions();
        self.confidence = outputs.confidence();
        self.probabilities = outputs.probabilities();
        self
    }

    /// Rows whose features were kept.
    pub fn sampled_rows(&self) -> usize {
        self.features.values().map(Vec::len).max().unwrap_or(0)
    }

    pub fn failed(&self) -> bool {
        self.outcome.status >= 500 || self.outcome.decision == "error"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bare() -> Observation {
        Observation {
            time_ms: 0,
            actor: "a".into(),
            rows: 2,
            features: BTreeMap::new(),
            predictions: Vec::new(),
            confidence: Vec::new(),
            probabilities: Vec::new(),
            outcome: Outcome {
                status: 200,
                latency_us: 10,
                route: "stable".into(),
                decision: "ok".into(),
            },
        }
    }

    #[test]
    fn recorded_rows_and_answers_are_read_and_odd_ones_ignored() {
        let o = bare().with_recorded(
            &json!({"age": [30, null, "x"], "city": ["a", true], "bad": 3}),
            &json!({"labels": ["yes", "no"], "confidence": [0.9, "?"],
                    "probabilities": [[0.1, 0.9], "x"]}),
        );
        assert_eq!(
            o.features["age"],
            vec![Cell::Number(30.0), Cell::Missing, Cell::Text("x".into())]
        );
        assert_eq!(o.features["city"][1], Cell::Text("true".into()));
        assert!(!o.features.contains_key("bad"));
        assert_eq!(o.predictions.len(), 2);
        assert_eq!(o.confidence, vec![0.9]);
        assert_eq!(o.probabilities, vec![vec![0.1, 0.9], vec![]]);
        assert_eq!(o.sampled_rows(), 3);
        let o = bare().with_recorded(&json!(null), &json!({"values": [1.5]}));
        assert_eq!(o.predictions, vec![Cell::Number(1.5)]);
        assert_eq!(o.sampled_rows(), 0);
    }
}
