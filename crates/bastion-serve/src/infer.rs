//! From an inference request to the table a model predicts on, and from its prediction to
//! the response's tensors. Each input of the model's signature is fed by the request input
//! of the same name: a built-in model's inputs are its raw columns (`[batch]`), an ONNX
//! model's are its graph inputs (`[batch, …]`), whose values per row are the signature's
//! features in order.

use bastion_ml::package::{Framework, Manifest};
use bastion_ml::predictor::{ColumnData, DType, Field, Prediction, Signature, Table};

use crate::error::ServeError;
use crate::tensor::{Datatype, InferRequest, Tensor, Values};

/// One input of the model and the table columns its values per row fill.
#[derive(Debug, Clone, PartialEq)]
pub struct InputPlan {
    pub field: Field,
    pub columns: Vec<String>,
}

/// How a package's inputs map to table columns.
pub fn plan(manifest: &Manifest) -> Result<Vec<InputPlan>, String> {
    let sig = &manifest.signature;
    match manifest.framework {
        Framework::Bastion => Ok(sig
            .inputs
            .iter()
            .map(|f| InputPlan {
                field: f.clone(),
                columns: vec![f.name.clone()],
            })
            .collect()),
        Framework::Onnx => {
            let mut offset = 0;
            let mut out = Vec::with_capacity(sig.inputs.len());
            for f in &sig.inputs {
                let width = f.shape.iter().skip(1).try_fold(1usize, |a, &d| {
                    usize::try_from(d).ok().and_then(|d| a.checked_mul(d))
                });
                let Some(width) = width else {
                    return Err(format!(
                        "input '{}' has shape {:?}: only the batch dimension may vary",
                        f.name, f.shape
                    ));
                };
                let columns = sig
                    .features
                    .get(offset..offset + width)
                    .ok_or_else(|| {
                        format!("the signature's features do not cover input '{}'", f.name)
                    })?
                    .to_vec();
                offset += width;
                out.push(InputPlan {
                    field: f.clone(),
                    columns,
                });
            }
            Ok(out)
        }
    }
}

fn bad(msg: impl Into<String>) -> ServeError {
    ServeError::BadRequest(msg.into())
}

/// The request's inputs as a table of the model's columns. Besides one request input per
/// model input, a model whose inputs are all single numbers per row also takes a single
/// `[batch, inputs]` tensor of any name (what clients that send one matrix do).
pub fn table(req: &InferRequest, plans: &[InputPlan]) -> Result<Table, ServeError> {
    let expected = || {
        plans
            .iter()
            .map(|p| {
                format!(
                    "{} {} {:?}",
                    p.field.name,
                    dtype_name(p.field.dtype),
                    p.field.shape
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let [only] = req.inputs.as_slice()
        && plans.len() > 1
        && !plans.iter().any(|p| p.field.name == only.name)
        && plans
            .iter()
            .all(|p| p.columns.len() == 1 && p.field.dtype != DType::Bytes)
    {
        return matrix(only, plans, &expected);
    }
    for t in &req.inputs {
        if !plans.iter().any(|p| p.field.name == t.name) {
            return Err(bad(format!(
                "the model has no input '{}'; it takes {}",
                t.name,
                expected()
            )));
        }
    }
    let mut rows: Option<(usize, &str)> = None;
    let mut table = Table::default();
    for p in plans {
        let t = req
            .inputs
            .iter()
            .find(|t| t.name == p.field.name)
            .ok_or_else(|| {
                bad(format!(
                    "input '{}' is missing; the model takes {}",
                    p.field.name,
                    expected()
                ))
            })?;
        let n = batch_rows(t, p.columns.len())?;
        match rows {
            Some((m, first)) if m != n => {
                return Err(bad(format!(
                    "input '{}' has {n} rows, input '{first}' has {m}",
                    t.name
                )));
            }
            _ => rows = Some((n, &t.name)),
        }
        let width = p.columns.len();
        for (j, col) in p.columns.iter().enumerate() {
            table.names.push(col.clone());
            table.columns.push(column(t, p, n, width, j)?);
        }
    }
    Ok(table)
}

fn matrix(
    t: &Tensor,
    plans: &[InputPlan],
    expected: &dyn Fn() -> String,
) -> Result<Table, ServeError> {
    let width = plans.len();
    if t.shape.len() != 2 || t.shape[1] != width {
        return Err(bad(format!(
            "input '{}' has shape {:?}; the model takes {} ({width} values per row as one [batch, {width}] tensor also works)",
            t.name,
            t.shape,
            expected()
        )));
    }
    let n = t.shape[0];
    let mut table = Table::default();
    for (j, p) in plans.iter().enumerate() {
        table.names.push(p.columns[0].clone());
        table.columns.push(column(t, p, n, width, j)?);
    }
    Ok(table)
}

/// Rows of a tensor feeding `width` values per row: `[n]` (width 1), `[n, width]`, or `[n,
/// …]` whose trailing dimensions hold `width` values.
fn batch_rows(t: &Tensor, width: usize) -> Result<usize, ServeError> {
    let Some((&n, rest)) = t.shape.split_first() else {
        return Err(bad(format!(
            "input '{}' is a scalar; inputs are batches ([rows, …])",
            t.name
        )));
    };
    let per_row = rest.iter().product::<usize>();
    if per_row != width || (rest.is_empty() && width != 1) {
        return Err(bad(format!(
            "input '{}' has shape {:?}: {per_row} values per row, the model takes {width}",
            t.name, t.shape
        )));
    }
    Ok(n)
}

/// Column `j` of a tensor with `width` values per row, typed as the model's input wants.
fn column(
    t: &Tensor,
    p: &InputPlan,
    n: usize,
    width: usize,
    j: usize,
) -> Result<ColumnData, ServeError> {
    let idx = (0..n).map(|i| i * width + j);
    match (p.field.dtype, &t.values) {
        (DType::Bytes, Values::Bytes(v)) => idx
            .map(|k| {
                let bytes = v.get(k).cloned().unwrap_or_default();
                String::from_utf8(bytes).map(Some).map_err(|_| {
                    bad(format!(
                        "input '{}' row {} is not UTF-8 text",
                        t.name,
                        k / width
                    ))
                })
            })
            .collect::<Result<_, _>>()
            .map(ColumnData::Text),
        (DType::Bytes, _) => Err(bad(format!(
            "input '{}' is {}; the model takes text (BYTES)",
            t.name,
            t.datatype.name()
        ))),
        (_, Values::Bytes(_)) => Err(bad(format!(
            "input '{}' is BYTES; the model takes numbers ({})",
            t.name,
            dtype_name(p.field.dtype)
        ))),
        (_, values) => Ok(ColumnData::Numeric(
            idx.map(|k| values.number(k).filter(|x| !x.is_nan()))
                .collect(),
        )),
    }
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::Bool => "BOOL",
        DType::Int32 => "INT32",
        DType::Int64 => "INT64",
        DType::Fp32 => "FP32",
        DType::Fp64 => "FP64",
        DType::Bytes => "BYTES",
    }
}

/// The model's outputs for a prediction: `label` (BYTES) and `probabilities` (FP64 `[n,
/// classes]`) for classifiers, `prediction` (FP64 `[n]`) for regressors.
pub fn outputs(sig: &Signature, pred: &Prediction) -> Vec<Tensor> {
    match pred {
        Prediction::Classes(p) => {
            let classes = sig.classes().unwrap_or_default();
            let labels = pred
                .labels()
                .unwrap_or_default()
                .into_iter()
                .map(|i| {
                    classes
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| i.to_string())
                        .into_bytes()
                })
                .collect();
            vec![
                Tensor {
                    name: "label".into(),
                    datatype: Datatype::Bytes,
                    shape: vec![p.nrows()],
                    values: Values::Bytes(labels),
                },
                Tensor {
                    name: "probabilities".into(),
                    datatype: Datatype::Fp64,
                    shape: vec![p.nrows(), p.ncols()],
                    values: Values::Float(p.iter().copied().collect()),
                },
            ]
        }
        Prediction::Values(v) => vec![Tensor {
            name: "prediction".into(),
            datatype: Datatype::Fp64,
            shape: vec![v.len()],
            values: Values::Float(v.to_vec()),
        }],
    }
}

/// The outputs the request asked for (all when it named none), each with whether it goes
/// as binary data.
pub fn select(req: &InferRequest, all: Vec<Tensor>) -> Result<Vec<(Tensor, bool)>, ServeError> {
    if req.outputs.is_empty() {
        return Ok(all
            .into_iter()
            .map(|t| (t, req.binary_by_default))
            .collect());
    }
    let names: Vec<String> = all.iter().map(|t| t.name.clone()).collect();
    let mut all: Vec<Option<Tensor>> = all.into_iter().map(Some).collect();
    req.outputs
        .iter()
        .map(|o| {
            let i = names.iter().position(|n| *n == o.name).ok_or_else(|| {
                bad(format!(
                    "the model has no output '{}'; it has {}",
                    o.name,
                    names.join(", ")
                ))
            })?;
            all[i]
                .take()
                .map(|t| (t, o.binary || req.binary_by_default))
                .ok_or_else(|| bad(format!("output '{}' is requested twice", o.name)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{RequestedOutput, TensorLimits, decode_request};
    use serde_json::json;

    fn builtin_plans() -> Vec<InputPlan> {
        ["a", "b"]
            .iter()
            .map(|n| InputPlan {
                field: Field {
                    name: (*n).into(),
                    dtype: DType::Fp64,
                    shape: vec![-1],
                },
                columns: vec![(*n).into()],
            })
            .chain([InputPlan {
                field: Field {
                    name: "colour".into(),
                    dtype: DType::Bytes,
                    shape: vec![-1],
                },
                columns: vec!["colour".into()],
            }])
            .collect()
    }

    fn req(v: serde_json::Value) -> InferRequest {
        decode_request(
            &serde_json::to_vec(&v).unwrap_or_default(),
            None,
            TensorLimits::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn named_inputs_fill_columns_and_nan_is_missing() {
        let r = req(json!({"inputs": [
            {"name": "a", "shape": [2], "datatype": "FP32", "data": [1, 2]},
            {"name": "b", "shape": [2, 1], "datatype": "INT64", "data": [[3], [4]]},
            {"name": "colour", "shape": [2], "datatype": "BYTES", "data": ["red", "blue"]}
        ]}));
        let t = table(&r, &builtin_plans()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.names, vec!["a", "b", "colour"]);
        assert_eq!(
            t.columns[1],
            ColumnData::Numeric(vec![Some(3.0), Some(4.0)])
        );
        assert_eq!(
            t.columns[2],
            ColumnData::Text(vec![Some("red".into()), Some("blue".into())])
        );
    }

    #[test]
    fn mismatches_name_the_input() {
        let plans = builtin_plans();
        let e = |v| {
            table(&req(v), &plans)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let m =
            e(json!({"inputs": [{"name": "z", "shape": [1], "datatype": "FP64", "data": [1]}]}));
        assert!(
            m.contains("no input 'z'") && m.contains("a FP64 [-1]"),
            "{m}"
        );
        let m =
            e(json!({"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}]}));
        assert!(m.contains("input 'b' is missing"), "{m}");
        let m = e(json!({"inputs": [
            {"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
            {"name": "b", "shape": [2], "datatype": "FP64", "data": [1, 2]},
            {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}));
        assert!(m.contains("has 2 rows, input 'a' has 1"), "{m}");
        let m = e(json!({"inputs": [
            {"name": "a", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]},
            {"name": "b", "shape": [1], "datatype": "FP64", "data": [1]},
            {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}));
        assert!(m.contains("2 values per row, the model takes 1"), "{m}");
        let m = e(json!({"inputs": [
            {"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
            {"name": "b", "shape": [1], "datatype": "FP64", "data": [1]},
            {"name": "colour", "shape": [1], "datatype": "FP64", "data": [1]}]}));
        assert!(m.contains("takes text"), "{m}");
        let m = e(json!({"inputs": [
            {"name": "a", "shape": [1], "datatype": "BYTES", "data": ["1"]},
            {"name": "b", "shape": [1], "datatype": "FP64", "data": [1]},
            {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}));
        assert!(m.contains("takes numbers"), "{m}");
    }

    #[test]
    fn one_matrix_feeds_a_model_of_numeric_columns() {
        let plans = &builtin_plans()[..2];
        let r = req(
            json!({"inputs": [{"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [[1, 2], [3, 4]]}]}),
        );
        let t = table(&r, plans).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            t.columns[0],
            ColumnData::Numeric(vec![Some(1.0), Some(3.0)])
        );
        assert_eq!(
            t.columns[1],
            ColumnData::Numeric(vec![Some(2.0), Some(4.0)])
        );
        let r = req(
            json!({"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}),
        );
        assert!(table(&r, plans).is_err());
    }

    #[test]
    fn requested_outputs_are_selected_and_unknown_ones_refused() {
        let mut r =
            req(json!({"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}]}));
        let all = || {
            vec![
                Tensor {
                    name: "label".into(),
                    datatype: Datatype::Bytes,
                    shape: vec![1],
                    values: Values::Bytes(vec![b"x".to_vec()]),
                },
                Tensor {
                    name: "probabilities".into(),
                    datatype: Datatype::Fp64,
                    shape: vec![1, 1],
                    values: Values::Float(vec![1.0]),
                },
            ]
        };
        assert_eq!(select(&r, all()).map(|v| v.len()).ok(), Some(2));
        r.outputs = vec![RequestedOutput {
            name: "probabilities".into(),
            binary: true,
        }];
        let s = select(&r, all()).unwrap_or_default();
        assert_eq!((s[0].0.name.as_str(), s[0].1), ("probabilities", true));
        r.outputs = vec![RequestedOutput {
            name: "logits".into(),
            binary: false,
        }];
        assert!(select(&r, all()).is_err());
    }
}
