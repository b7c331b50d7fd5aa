//! One inference request through the stages after admission, in order: decode the tensors
//! (names, datatypes, shapes against the signature), the input guards (training ranges,
//! categories, NaN policy, out-of-distribution score), the model, the output policy, and
//! encoding. `prepare` and `finish` surround the prediction so that it can run alone or in a
//! micro-batch with other requests (`batch.rs`).

use bastion_ml::predictor::{ColumnData, Prediction, Table};
use serde_json::{Map, Value, json};

use crate::error::ServeError;
use crate::guard::{self, GuardSettings, Reference, Verdict};
use crate::infer::{outputs, select, table};
use crate::models::Served;
use crate::tensor::{InferRequest, InferResponse, TensorLimits, decode_request, encode_response};

/// Rows of a request kept in its inference event, at most.
const EVENT_ROWS: usize = 64;
/// Classifiers with more classes than this record only the winning class's probability.
pub const MAX_RECORDED_CLASSES: usize = 20;

/// A decoded, guarded request ready for the model.
pub struct Prepared {
    pub request: InferRequest,
    pub table: Table,
    pub verdict: Verdict,
}

/// The encoded answer and what its inference event records.
pub struct Answer {
    pub body: Vec<u8>,
    pub header_len: Option<usize>,
    pub verdict: Verdict,
    pub rows: usize,
    /// The input rows (at most `EVENT_ROWS`), when this request is sampled.
    pub features: Value,
    /// The labels or predicted values (at most `EVENT_ROWS`), before the output policy.
    pub outputs: Value,
}

/// Decodes a request body and applies the input guards.
pub fn prepare(
    model: &Served,
    body: &[u8],
    header_len: Option<usize>,
    limits: TensorLimits,
    guards: &GuardSettings,
    reference: Option<&Reference>,
) -> Result<Prepared, ServeError> {
    let request = decode_request(body, header_len, limits)?;
    let mut table = table(&request, &model.plans)?;
    let verdict = guard::check(&mut table, reference, guards)?;
    Ok(Prepared {
        request,
        table,
        verdict,
    })
}

/// Runs the model on a prepared request.
pub fn predict(model: &Served, table: &Table) -> Result<Prediction, ServeError> {
    model
        .predictor
        .predict(table)
        .map_err(|e| ServeError::BadRequest(e.to_string()))
}

/// The response for a prediction, under the model's output policy.
pub fn finish(
    model: &Served,
    p: Prepared,
    prediction: &Prediction,
    keep_rows: bool,
) -> Result<Answer, ServeError> {
    let all = model
        .policy
        .apply(outputs(&model.manifest.signature, prediction));
    let outs = select(&p.request, all)?;
    let mut parameters = Map::new();
    if p.verdict.show {
        parameters.insert(
            "bastion_guard".into(),
            Value::String(serde_json::to_string(&p.verdict).unwrap_or_default()),
        );
    }
    if let Some(max) = p
        .verdict
        .ood_scores
        .as_ref()
        .and_then(|s| s.iter().copied().reduce(f64::max))
        && p.verdict.show
    {
        parameters.insert("bastion_ood_score".into(), json!(max));
    }
    let (body, header_len) = encode_response(&InferResponse {
        model_name: model.name.clone(),
        model_version: model.version.clone(),
        id: p.request.id.clone(),
        parameters,
        outputs: outs,
    });
    Ok(Answer {
        body,
        header_len,
        rows: prediction.rows(),
        features: if keep_rows {
            rows_json(&p.table)
        } else {
            Value::Null
        },
        outputs: outputs_json(model, prediction, EVENT_ROWS),
        verdict: p.verdict,
    })
}

fn rows_json(t: &Table) -> Value {
    let mut m = Map::new();
    for (name, col) in t.names.iter().zip(&t.columns) {
        let v = match col {
            ColumnData::Numeric(v) => json!(v.iter().take(EVENT_ROWS).collect::<Vec<_>>()),
            ColumnData::Text(v) => json!(v.iter().take(EVENT_ROWS).collect::<Vec<_>>()),
        };
        m.insert(name.clone(), v);
    }
    Value::Object(m)
}

/// A prediction as inference events record it (`{labels, confidence, probabilities}` for classifiers,
/// `{values}` for regressors), for its first `max_rows` rows. The monitor reads reference
/// predictions in the same shape.
pub fn outputs_json(model: &Served, p: &Prediction, max_rows: usize) -> Value {
    match p {
        Prediction::Classes(probs) => {
            let classes = model.manifest.signature.classes().unwrap_or_default();
            let labels: Vec<String> = p
                .labels()
                .unwrap_or_default()
                .into_iter()
                .take(max_rows)
                .map(|i| classes.get(i).cloned().unwrap_or_else(|| i.to_string()))
                .collect();
            let confidence: Vec<f64> = probs
                .rows()
                .into_iter()
                .take(max_rows)
                .map(|r| r.iter().copied().fold(0.0, f64::max))
                .collect();
            // Every class's probability, for the monitor's AUC and calibration once labels
            // come back; left out for many classes, where it would swell every event.
            if classes.len() <= MAX_RECORDED_CLASSES {
                let probabilities: Vec<Vec<f64>> = probs
                    .rows()
                    .into_iter()
                    .take(max_rows)
                    .map(|r| r.to_vec())
                    .collect();
                json!({ "labels": labels, "confidence": confidence, "probabilities": probabilities })
            } else {
                json!({ "labels": labels, "confidence": confidence })
            }
        }
        Prediction::Values(v) => {
            json!({ "values": v.iter().take(max_rows).collect::<Vec<_>>() })
        }
    }
}
