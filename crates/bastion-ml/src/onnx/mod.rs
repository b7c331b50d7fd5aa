//! ONNX models behind the [`Predictor`] trait. A model is checked by Bastion first
//! ([`check::inspect`]), then run by ONNX Runtime ([`runtime`]), loaded from its shared
//! library at run time. How its outputs are read is decided once, at import
//! ([`describe`]), and kept in the package: class probabilities from a `ZipMap` or a
//! probability tensor, logits (softmax, or sigmoid for one column), or regression values.
//! ONNX models have no input gradients here (the runtime does inference only).

pub mod check;
mod operators;
pub mod proto;
pub mod runtime;

use std::sync::Mutex;

use ndarray::{Array1, Array2, ArrayView2};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, MapValueType, Tensor};
use serde::{Deserialize, Serialize};

use self::check::{Inspected, Io, IoKind};
use self::proto::elem;
use crate::error::{MlError, MlResult};
use crate::linear::check_input;
use crate::link::softmax_rows;
use crate::package::Limits;
use crate::predictor::{ColumnData, DType, Field, Prediction, Predictor, Signature, Table, Task};

/// At most this many features per row (the product of an input's non-batch dimensions).
const MAX_FEATURES: usize = 1 << 20;
/// Rows per runtime call are capped so one call holds at most about this many input values.
const VALUES_PER_CALL: usize = 1 << 22;

/// What a model's chosen output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scores {
    /// A sequence of maps from class label to probability (skl2onnx's default `ZipMap`).
    Zipmap,
    /// A `rows × classes` tensor of probabilities.
    Probabilities,
    /// A `rows × classes` tensor of logits (softmax), or `rows × 1` (sigmoid, two classes).
    Logits,
    /// Regression values, `rows` or `rows × 1`.
    Values,
}

/// How Bastion reads an ONNX model, kept in its package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxSpec {
    pub output: String,
    pub scores: Scores,
}

/// What the importer says where the model itself is silent.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Names of the feature columns, in input order.
    pub features: Option<Vec<String>>,
    pub classes: Option<Vec<String>>,
    pub output: Option<String>,
    pub scores: Option<Scores>,
}

fn bad(m: impl std::fmt::Display) -> MlError {
    MlError::invalid(format!("ONNX model: {m}"))
}

fn dtype_of(e: i32) -> Option<DType> {
    Some(match e {
        elem::FLOAT => DType::Fp32,
        elem::DOUBLE => DType::Fp64,
        elem::INT64 => DType::Int64,
        elem::INT32 => DType::Int32,
        _ => return None,
    })
}

/// An input's non-batch dimensions, checked: every one fixed.
fn input_dims(io: &Io) -> MlResult<(DType, Vec<i64>, Option<i64>)> {
    let IoKind::Tensor { elem, dims } = &io.kind else {
        return Err(bad(format!(
            "input '{}' is not a tensor; Bastion feeds numeric tensors only",
            io.name
        )));
    };
    let dtype = dtype_of(*elem).ok_or_else(|| {
        bad(format!(
            "input '{}' has element type {elem}; Bastion feeds float, double, int32 and int64 inputs",
            io.name
        ))
    })?;
    let dims = dims
        .as_ref()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| bad(format!("input '{}' declares no shape", io.name)))?;
    let rest = dims[1..]
        .iter()
        .map(|d| d.ok_or_else(|| bad(format!("input '{}' has a dimension of unknown size after the batch dimension ({dims:?})", io.name))))
        .collect::<MlResult<Vec<i64>>>()?;
    Ok((dtype, rest, dims[0]))
}

fn width(rest: &[i64]) -> usize {
    rest.iter().map(|&d| d.max(0) as usize).product()
}

/// Decides, from a checked model and the importer's options, the model's signature and how
/// its output is read.
pub fn describe(m: &Inspected, opts: &ImportOptions) -> MlResult<(Signature, OnnxSpec)> {
    let mut inputs = Vec::with_capacity(m.inputs.len());
    let mut total = 0usize;
    let mut default_names = Vec::new();
    for io in &m.inputs {
        let (dtype, rest, batch) = input_dims(io)?;
        if batch.is_some_and(|b| b != 1) {
            return Err(bad(format!(
                "input '{}' has a fixed batch size of {}; export it with a dynamic batch dimension (or a batch of 1)",
                io.name,
                batch.unwrap_or_default()
            )));
        }
        let w = width(&rest);
        total = total.saturating_add(w);
        if total > MAX_FEATURES {
            return Err(bad(format!(
                "the inputs take more than {MAX_FEATURES} values per row"
            )));
        }
        if w == 1 {
            default_names.push(io.name.clone());
        } else {
            default_names.extend((0..w).map(|i| format!("{}_{i}", io.name)));
        }
        let mut shape = vec![batch.unwrap_or(-1)];
        shape.extend(rest);
        inputs.push(Field {
            name: io.name.clone(),
            dtype,
            shape,
        });
    }
    let features = match &opts.features {
        Some(f) if f.len() != total => {
            return Err(bad(format!(
                "{} feature names were given, the model's inputs take {total} values per row",
                f.len()
            )));
        }
        Some(f) => f.clone(),
        None => default_names,
    };
    let mut seen = std::collections::BTreeSet::new();
    if let Some(d) = features.iter().find(|f| !seen.insert(f.as_str())) {
        return Err(bad(format!("feature '{d}' is named twice")));
    }

    let (out, scores, columns) = choose_output(m, opts)?;
    let task = if scores == Scores::Values {
        if opts.classes.is_some() {
            return Err(bad(format!(
                "output '{}' holds regression values; --classes does not apply",
                out.name
            )));
        }
        Task::Regression
    } else {
        let from_model = m.zipmap.get(&out.name).or(m.class_labels.as_ref()).cloned();
        let classes = match (&opts.classes, from_model, columns) {
            (Some(c), Some(model), _) if c.len() != model.len() => {
                return Err(bad(format!(
                    "{} classes were given, the model has {} ({})",
                    c.len(),
                    model.len(),
                    model.join(", ")
                )));
            }
            (Some(c), _, _) => c.clone(),
            (None, Some(model), _) => model,
            (None, None, Some(1)) if scores == Scores::Logits => vec!["0".into(), "1".into()],
            (None, None, Some(n)) => (0..n).map(|i| i.to_string()).collect(),
            (None, None, None) => {
                return Err(bad(format!(
                    "the number of classes of output '{}' is not declared; name them with --classes",
                    out.name
                )));
            }
        };
        let expected = match columns {
            Some(1) if scores == Scores::Logits => Some(2),
            c => c,
        };
        if expected.is_some_and(|n| n != classes.len()) || classes.len() < 2 {
            return Err(bad(format!(
                "output '{}' has {} columns, which does not fit {} classes",
                out.name,
                columns.unwrap_or_default(),
                classes.len()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(d) = classes.iter().find(|c| !seen.insert(c.as_str())) {
            return Err(bad(format!("class '{d}' is named twice")));
        }
        Task::Classification { classes }
    };
    let outputs = task.outputs();
    Ok((
        Signature {
            inputs,
            outputs,
            features,
            task,
        },
        OnnxSpec {
            output: out.name.clone(),
            scores,
        },
    ))
}

/// The output to read, what it holds and its declared column count.
fn choose_output<'a>(
    m: &'a Inspected,
    opts: &ImportOptions,
) -> MlResult<(&'a Io, Scores, Option<usize>)> {
    let float_tensor = |io: &Io| match &io.kind {
        IoKind::Tensor { elem, dims } if matches!(*elem, elem::FLOAT | elem::DOUBLE) => {
            Some(dims.as_ref().map(|d| d.len()))
        }
        _ => None,
    };
    let columns = |io: &Io| match &io.kind {
        IoKind::Tensor { dims: Some(d), .. } => match d.len() {
            1 => Some(1),
            2 => d[1].map(|c| c as usize),
            _ => None,
        },
        _ => None,
    };
    let out = match &opts.output {
        Some(name) => m.outputs.iter().find(|o| &o.name == name).ok_or_else(|| {
            bad(format!(
                "it has no output '{name}' (its outputs: {})",
                m.outputs
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?,
        None => m
            .outputs
            .iter()
            .find(|o| m.zipmap.contains_key(&o.name))
            .or_else(|| {
                m.outputs.iter().find(|o| {
                    float_tensor(o) == Some(Some(2)) && o.name.to_lowercase().contains("prob")
                })
            })
            .or_else(|| {
                let floats: Vec<&Io> = m
                    .outputs
                    .iter()
                    .filter(|o| float_tensor(o).is_some())
                    .collect();
                (floats.len() == 1).then(|| floats[0])
            })
            .ok_or_else(|| {
                bad("cannot tell which output holds the predictions; name it with --output")
            })?,
    };
    if let IoKind::SequenceOfMaps { key } = out.kind {
        if !matches!(key, elem::INT64 | elem::STRING) || !m.zipmap.contains_key(&out.name) {
            return Err(bad(format!(
                "output '{}' is a sequence of maps that no ZipMap with class labels produces",
                out.name
            )));
        }
        if opts.scores.is_some_and(|s| s != Scores::Zipmap) {
            return Err(bad(format!(
                "output '{}' is a ZipMap of probabilities",
                out.name
            )));
        }
        return Ok((out, Scores::Zipmap, Some(m.zipmap[&out.name].len())));
    }
    let rank = float_tensor(out).ok_or_else(|| {
        bad(format!(
            "output '{}' is not a float or double tensor, so it cannot hold probabilities or values",
            out.name
        ))
    })?;
    let cols = columns(out);
    let scores = match (opts.scores, rank, cols) {
        (Some(Scores::Zipmap), _, _) => {
            return Err(bad(format!(
                "output '{}' is a tensor, not a ZipMap",
                out.name
            )));
        }
        (Some(s), _, _) => s,
        (None, Some(1), _) | (None, _, Some(1)) => Scores::Values,
        (None, _, _) if out.name.to_lowercase().contains("prob") => Scores::Probabilities,
        (None, _, _) => {
            return Err(bad(format!(
                "output '{}' has {} columns: say whether they are probabilities or logits (scores = probabilities | logits)",
                out.name,
                cols.map_or_else(|| "an unknown number of".to_owned(), |c| c.to_string())
            )));
        }
    };
    if rank.is_some_and(|r| r > 2) {
        return Err(bad(format!(
            "output '{}' has rank {}; Bastion reads rank 1 or 2",
            out.name,
            rank.unwrap_or_default()
        )));
    }
    Ok((out, scores, cols))
}

/// A loaded ONNX model, ready to predict.
pub struct OnnxModel {
    signature: Signature,
    spec: OnnxSpec,
    /// The key type of a ZipMap output's maps.
    zipmap_key: i32,
    /// One session, used by one call at a time: ONNX Runtime parallelises inside a call.
    session: Mutex<Session>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("signature", &self.signature)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl OnnxModel {
    /// Checks the model, then builds a runtime session for it. `signature` and `spec` come
    /// from [`describe`] (at import) or a package's manifest (at load), and are checked
    /// against the model again.
    pub fn new(
        bytes: &[u8],
        signature: Signature,
        spec: OnnxSpec,
        limits: Limits,
    ) -> MlResult<Self> {
        let inspected = check::inspect(bytes, limits)?;
        let opts = ImportOptions {
            features: Some(signature.features.clone()),
            classes: signature.classes().map(<[String]>::to_vec),
            output: Some(spec.output.clone()),
            scores: Some(spec.scores),
        };
        let (expected, expected_spec) = describe(&inspected, &opts)?;
        if expected != signature || expected_spec != spec {
            return Err(bad(
                "the signature recorded for it does not match the model's inputs and outputs",
            ));
        }
        let zipmap_key = inspected
            .outputs
            .iter()
            .find_map(|o| match o.kind {
                IoKind::SequenceOfMaps { key } if o.name == spec.output => Some(key),
                _ => None,
            })
            .unwrap_or(elem::STRING);
        let env = runtime::ensure()?;
        let session = Session::builder(env)
            .map_err(|e| bad(format!("cannot configure ONNX Runtime: {e}")))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| bad(format!("cannot configure ONNX Runtime: {e}")))?
            .commit_from_memory(bytes)
            .map_err(|e| bad(format!("ONNX Runtime refused it: {e}")))?;
        Ok(Self {
            signature,
            spec,
            zipmap_key,
            session: Mutex::new(session),
        })
    }

    pub fn spec(&self) -> &OnnxSpec {
        &self.spec
    }

    fn run(&self, x: ArrayView2<f64>) -> MlResult<Prediction> {
        let rows = x.nrows();
        let fixed_single = self.signature.inputs.iter().any(|f| f.shape[0] == 1);
        let per_call = if fixed_single {
            1
        } else {
            (VALUES_PER_CALL / x.ncols().max(1)).clamp(1, rows.max(1))
        };
        let classes = self.signature.classes().map_or(0, <[String]>::len);
        let mut probs = Array2::<f64>::zeros((if classes > 0 { rows } else { 0 }, classes));
        let mut values = Array1::<f64>::zeros(if classes > 0 { 0 } else { rows });
        let mut session = self
            .session
            .lock()
            .map_err(|_| bad("a previous prediction failed inside the runtime"))?;
        let mut start = 0;
        while start < rows {
            let end = (start + per_call).min(rows);
            let chunk = x.slice(ndarray::s![start..end, ..]);
            let inputs = self.inputs(chunk)?;
            let outputs = session
                .run(inputs)
                .map_err(|e| bad(format!("ONNX Runtime failed to predict: {e}")))?;
            let out = outputs.get(&self.spec.output).ok_or_else(|| {
                bad(format!(
                    "the runtime returned no output '{}'",
                    self.spec.output
                ))
            })?;
            let n = end - start;
            if classes > 0 {
                let block = self.class_scores(out, n, classes)?;
                probs.slice_mut(ndarray::s![start..end, ..]).assign(&block);
            } else {
                let v = float_values(out)?;
                if v.len() != n {
                    return Err(bad(format!(
                        "output '{}' has {} values for {n} rows",
                        self.spec.output,
                        v.len()
                    )));
                }
                values
                    .slice_mut(ndarray::s![start..end])
                    .assign(&Array1::from(v));
            }
            start = end;
        }
        Ok(if classes > 0 {
            Prediction::Classes(probs)
        } else {
            Prediction::Values(values)
        })
    }

    /// The runtime's inputs for rows of the feature matrix, split and typed per input.
    fn inputs(&self, x: ArrayView2<f64>) -> MlResult<Vec<(String, DynValue)>> {
        let rows = x.nrows();
        let mut at = 0;
        let mut out = Vec::with_capacity(self.signature.inputs.len());
        for f in &self.signature.inputs {
            let w = width(&f.shape[1..]);
            let cols = x.slice(ndarray::s![.., at..at + w]);
            at += w;
            let mut shape: Vec<i64> = vec![rows as i64];
            shape.extend(&f.shape[1..]);
            let largest = match f.dtype {
                DType::Int32 => f64::from(i32::MAX),
                _ => 2f64.powi(53),
            };
            if matches!(f.dtype, DType::Int64 | DType::Int32)
                && let Some((i, v)) = cols
                    .indexed_iter()
                    .find(|(_, v)| v.fract() != 0.0 || v.abs() > largest)
            {
                return Err(bad(format!(
                    "input '{}' takes integers; row {} has {v}",
                    f.name, i.0
                )));
            }
            let e = |e: ort::Error| bad(format!("input '{}': {e}", f.name));
            let v: DynValue = match f.dtype {
                DType::Fp32 => Tensor::from_array((shape, converted(cols, |v| v as f32)))
                    .map_err(e)?
                    .into_dyn(),
                DType::Fp64 => Tensor::from_array((shape, converted(cols, |v| v)))
                    .map_err(e)?
                    .into_dyn(),
                DType::Int64 => Tensor::from_array((shape, converted(cols, |v| v as i64)))
                    .map_err(e)?
                    .into_dyn(),
                DType::Int32 => Tensor::from_array((shape, converted(cols, |v| v as i32)))
                    .map_err(e)?
                    .into_dyn(),
                DType::Bool | DType::Bytes => {
                    return Err(bad(format!("input '{}' is not numeric", f.name)));
                }
            };
            out.push((f.name.clone(), v));
        }
        Ok(out)
    }

    fn class_scores(&self, out: &DynValue, n: usize, classes: usize) -> MlResult<Array2<f64>> {
        let name = &self.spec.output;
        if self.spec.scores == Scores::Zipmap {
            return self.zipmap(out, n, classes);
        }
        let v = float_values(out)?;
        let cols = if self.spec.scores == Scores::Logits && classes == 2 && v.len() == n {
            1
        } else {
            classes
        };
        if v.len() != n * cols {
            return Err(bad(format!(
                "output '{name}' has {} values for {n} rows of {cols} columns",
                v.len()
            )));
        }
        let raw = Array2::from_shape_vec((n, cols), v).map_err(bad)?;
        Ok(match (self.spec.scores, cols) {
            (Scores::Logits, 1) => {
                let mut p = Array2::zeros((n, 2));
                for (i, &z) in raw.column(0).iter().enumerate() {
                    let p1 = crate::link::sigmoid(z);
                    p[[i, 0]] = 1.0 - p1;
                    p[[i, 1]] = p1;
                }
                p
            }
            (Scores::Logits, _) => {
                let mut p = raw;
                softmax_rows(&mut p);
                p
            }
            _ => raw,
        })
    }

    fn zipmap(&self, out: &DynValue, n: usize, classes: usize) -> MlResult<Array2<f64>> {
        let labels = self.signature.classes().unwrap_or_default();
        if self.zipmap_key == elem::INT64 {
            let keys = labels
                .iter()
                .map(|l| l.parse::<i64>().map_err(|_| missing(&self.spec.output, l)))
                .collect::<MlResult<Vec<i64>>>()?;
            self.read_maps(out, &keys, n, classes)
        } else {
            self.read_maps(out, labels, n, classes)
        }
    }

    /// Probabilities from a sequence of one map per row, in `keys` order.
    fn read_maps<K>(
        &self,
        out: &DynValue,
        keys: &[K],
        n: usize,
        classes: usize,
    ) -> MlResult<Array2<f64>>
    where
        K: ort::value::IntoTensorElementType
            + std::fmt::Debug
            + Clone
            + std::hash::Hash
            + Eq
            + 'static,
    {
        let name = &self.spec.output;
        let e = |e: ort::Error| bad(format!("output '{name}': {e}"));
        let maps = out
            .try_extract_sequence::<MapValueType<K, f32>>()
            .map_err(e)?;
        if maps.len() != n {
            return Err(bad(format!(
                "output '{name}' has {} rows for {n} inputs",
                maps.len()
            )));
        }
        let mut p = Array2::zeros((n, classes));
        for (i, m) in maps.iter().enumerate() {
            let m = m.try_extract_map::<K, f32>().map_err(e)?;
            for (j, k) in keys.iter().enumerate() {
                p[[i, j]] = f64::from(*m.get(k).ok_or_else(|| {
                    bad(format!(
                        "output '{name}' has no probability for class {k:?}"
                    ))
                })?);
            }
        }
        Ok(p)
    }
}

fn missing(output: &str, label: &str) -> MlError {
    bad(format!(
        "output '{output}' has a ZipMap with integer keys, but class '{label}' is not an integer"
    ))
}

/// The values of `cols` in row-major order, each converted by `f`. A row-major block (every
/// column of a row-major matrix) converts as one slice, which compiles to vector code; the
/// element iterator of a 2-D view does not.
fn converted<T>(cols: ArrayView2<f64>, f: impl Fn(f64) -> T) -> Vec<T> {
    match cols.as_slice() {
        Some(flat) => flat.iter().map(|&v| f(v)).collect(),
        None => {
            let mut out = Vec::with_capacity(cols.len());
            for row in cols.rows() {
                match row.as_slice() {
                    Some(r) => out.extend(r.iter().map(|&v| f(v))),
                    None => out.extend(row.iter().map(|&v| f(v))),
                }
            }
            out
        }
    }
}

/// A float or double tensor's values as f64.
fn float_values(v: &DynValue) -> MlResult<Vec<f64>> {
    if let Ok((_, d)) = v.try_extract_tensor::<f32>() {
        return Ok(d.iter().map(|&x| f64::from(x)).collect());
    }
    v.try_extract_tensor::<f64>()
        .map(|(_, d)| d.to_vec())
        .map_err(|e| bad(format!("the output is not a float tensor: {e}")))
}

impl Predictor for OnnxModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn features(&self, table: &Table) -> MlResult<Array2<f64>> {
        table.check()?;
        let rows = table.rows();
        let names = &self.signature.features;
        let mut x = Array2::zeros((rows, names.len()));
        for (j, name) in names.iter().enumerate() {
            match table.column(name) {
                None => {
                    return Err(MlError::invalid(format!(
                        "the input has no column '{name}', which the model needs"
                    )));
                }
                Some(ColumnData::Text(_)) => {
                    return Err(MlError::invalid(format!(
                        "column '{name}' holds text, the model needs numbers"
                    )));
                }
                Some(ColumnData::Numeric(v)) => {
                    for (i, cell) in v.iter().enumerate() {
                        x[[i, j]] = cell.ok_or_else(|| {
                            MlError::invalid(format!(
                                "column '{name}' is missing a value in row {i} (ONNX models get no imputation: fill it first)"
                            ))
                        })?;
                    }
                }
            }
        }
        Ok(x)
    }

    fn predict_features(&self, x: ArrayView2<f64>) -> MlResult<Prediction> {
        check_input("ONNX model", x, self.signature.features.len())?;
        self.run(x)
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, s};

    use super::converted;

    #[test]
    fn converted_keeps_row_major_order_for_whole_and_partial_blocks() {
        let x = Array2::from_shape_fn((3, 4), |(i, j)| (10 * i + j) as f64);
        assert_eq!(
            converted(x.view(), |v| v as i64),
            vec![0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23]
        );
        // An input that takes the middle columns is not one slice.
        assert_eq!(
            converted(x.slice(s![.., 1..3]), |v| v as f32),
            vec![1.0, 2.0, 11.0, 12.0, 21.0, 22.0]
        );
        // Nor is a transposed view.
        assert_eq!(
            converted(x.t(), |v| v),
            vec![
                0.0, 10.0, 20.0, 1.0, 11.0, 21.0, 2.0, 12.0, 22.0, 3.0, 13.0, 23.0
            ]
        );
    }
}
