//! Checks an ONNX model before any runtime parses it, so that a hostile or broken file is
//! refused with a reason instead of reaching native code: a known IR version; operators only
//! from the standard and `ai.onnx.ml` domains, and only ones the ONNX specification defines;
//! no model-local functions; no tensor data in external files (their paths would reach the
//! filesystem); every tensor's size within the limits and its data as long as its shape says;
//! declared shapes within the limits; a graph whose every value is defined once, before it is
//! read (so no cycles), subgraphs included; and shape operands of `ConstantOfShape`, `Expand`,
//! `Reshape` and `Resize` that are constants within the limits.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use prost::Message;

use super::operators;
use super::proto::{self, Dim, GraphProto, ModelProto, NodeProto, TensorProto, TypeProto, elem};
use crate::error::{MlError, MlResult};
use crate::package::Limits;

const MIN_IR: i64 = 3;
const MAX_IR: i64 = 14;
const MAX_GRAPH_DEPTH: usize = 16;
/// A constant read as a shape operand is at most this long.
const MAX_SHAPE_LEN: usize = 64;

/// Standard operators refused anyway, with the reason.
const REFUSED_OPS: &[(&str, &str)] = &[
    (
        "Loop",
        "its iteration count is data-dependent, so neither time nor memory is bounded",
    ),
    (
        "ImageDecoder",
        "it runs image codecs inside the runtime on request data",
    ),
];

/// Classifier operators whose class labels name the model's classes.
const CLASSIFIERS: &[&str] = &[
    "LinearClassifier",
    "TreeEnsembleClassifier",
    "SVMClassifier",
];

/// A graph input or output as declared.
#[derive(Debug, Clone, PartialEq)]
pub struct Io {
    pub name: String,
    pub kind: IoKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum IoKind {
    /// `dims[i]` is `None` for a symbolic or unknown dimension; `dims` is `None` if the
    /// rank itself is unknown.
    Tensor {
        elem: i32,
        dims: Option<Vec<Option<i64>>>,
    },
    /// A sequence of maps from keys of type `key` to tensors (what `ZipMap` produces).
    SequenceOfMaps {
        key: i32,
    },
    Other(&'static str),
}

/// What the check learnt about a model that passed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspected {
    pub ir_version: i64,
    pub opsets: BTreeMap<String, i64>,
    pub producer: String,
    pub inputs: Vec<Io>,
    pub outputs: Vec<Io>,
    /// The class labels of the first classifier operator, if any.
    pub class_labels: Option<Vec<String>>,
    /// For each value produced by `ZipMap`: its class labels, in column order.
    pub zipmap: BTreeMap<String, Vec<String>>,
    pub operators: BTreeSet<String>,
    pub nodes: usize,
}

fn bad(m: impl std::fmt::Display) -> MlError {
    MlError::invalid(format!("ONNX model: {m}"))
}

/// Checks `bytes` as an ONNX model; see the module documentation for what is checked.
pub fn inspect(bytes: &[u8], limits: Limits) -> MlResult<Inspected> {
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(bad(format!(
            "{} bytes, over the {}-byte limit",
            bytes.len(),
            limits.max_file_bytes
        )));
    }
    let model = ModelProto::decode(bytes)
        .map_err(|e| bad(format!("not a valid ONNX protobuf file ({e})")))?;
    if !(MIN_IR..=MAX_IR).contains(&model.ir_version) {
        return Err(bad(format!(
            "IR version {} is not supported (Bastion reads versions {MIN_IR} to {MAX_IR})",
            model.ir_version
        )));
    }
    if let Some(f) = model.functions.first() {
        return Err(bad(format!(
            "it defines model-local functions ('{}' in domain '{}'); export with functions inlined",
            f.name, f.domain
        )));
    }
    let mut opsets = BTreeMap::new();
    for o in &model.opset_import {
        let domain = canonical_domain(&o.domain);
        if !domain.is_empty() && domain != "ai.onnx.ml" {
            return Err(bad(format!(
                "it imports operator domain '{}', which is not supported (Bastion runs the standard ONNX and ai.onnx.ml operators only)",
                o.domain
            )));
        }
        if o.version < 1 {
            return Err(bad(format!(
                "opset version {} of domain '{}' is invalid",
                o.version, o.domain
            )));
        }
        opsets.insert(domain.to_owned(), o.version);
    }
    if !opsets.contains_key("") && !opsets.contains_key("ai.onnx.ml") {
        return Err(bad("it imports no operator set"));
    }
    let graph = model.graph.as_ref().ok_or_else(|| bad("it has no graph"))?;
    let mut walk = Walk {
        limits,
        opsets: &opsets,
        class_labels: None,
        zipmap: BTreeMap::new(),
        operators: BTreeSet::new(),
        nodes: 0,
    };
    walk.graph(graph, &HashSet::new(), 0, "the main graph")?;
    let Walk {
        class_labels,
        zipmap,
        operators,
        nodes,
        ..
    } = walk;
    if graph.input.is_empty() || graph.output.is_empty() {
        return Err(bad("the graph needs at least one input and one output"));
    }
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = graph
        .input
        .iter()
        // Before IR 4, initializers were listed among the inputs as well.
        .filter(|v| !initializers.contains(v.name.as_str()))
        .map(|v| io(&v.name, v.r#type.as_ref()))
        .collect();
    let outputs = graph
        .output
        .iter()
        .map(|v| io(&v.name, v.r#type.as_ref()))
        .collect();
    Ok(Inspected {
        ir_version: model.ir_version,
        opsets,
        producer: format!("{} {}", model.producer_name, model.producer_version)
            .trim()
            .to_owned(),
        inputs,
        outputs,
        class_labels,
        zipmap,
        operators,
        nodes,
    })
}

fn canonical_domain(d: &str) -> &str {
    if d == "ai.onnx" { "" } else { d }
}

fn io(name: &str, t: Option<&TypeProto>) -> Io {
    let kind = match t.and_then(|t| t.value.as_ref()) {
        Some(proto::Value::TensorType(t)) => IoKind::Tensor {
            elem: t.elem_type,
            dims: t.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(Dim::Value(v)) if v >= 0 => Some(v),
                        _ => None,
                    })
                    .collect()
            }),
        },
        Some(proto::Value::SequenceType(s)) => {
            match s.elem_type.as_ref().and_then(|e| e.value.as_ref()) {
                Some(proto::Value::MapType(m)) => IoKind::SequenceOfMaps { key: m.key_type },
                _ => IoKind::Other("sequence"),
            }
        }
        Some(proto::Value::MapType(_)) => IoKind::Other("map"),
        Some(proto::Value::SparseTensorType(_)) => IoKind::Other("sparse tensor"),
        Some(proto::Value::OptionalType(_)) => IoKind::Other("optional"),
        None => IoKind::Other("untyped value"),
    };
    Io {
        name: name.to_owned(),
        kind,
    }
}

struct Walk<'a> {
    limits: Limits,
    opsets: &'a BTreeMap<String, i64>,
    class_labels: Option<Vec<String>>,
    zipmap: BTreeMap<String, Vec<String>>,
    operators: BTreeSet<String>,
    nodes: usize,
}

impl Walk<'_> {
    fn graph(
        &mut self,
        g: &GraphProto,
        outer: &HashSet<String>,
        depth: usize,
        place: &str,
    ) -> MlResult<()> {
        if depth > MAX_GRAPH_DEPTH {
            return Err(bad(format!(
                "subgraphs nest deeper than {MAX_GRAPH_DEPTH} levels"
            )));
        }
        // Values visible here: the enclosing graphs', then this one's inputs, initializers
        // and node outputs, each defined once.
        let mut scope = outer.clone();
        let mut local: HashSet<String> = HashSet::new();
        let mut consts: HashMap<String, Vec<i64>> = HashMap::new();
        let define = |name: &str,
                      scope: &mut HashSet<String>,
                      local: &mut HashSet<String>,
                      what: &str|
         -> MlResult<()> {
            if name.is_empty() {
                return Ok(());
            }
            if !local.insert(name.to_owned()) {
                return Err(bad(format!(
                    "in {place}, '{name}' is defined twice ({what})"
                )));
            }
            scope.insert(name.to_owned());
            Ok(())
        };
        for t in &g.initializer {
            self.tensor(t, &format!("initializer '{}'", t.name))?;
            define(&t.name, &mut scope, &mut local, "initializer")?;
            if let Some(v) = int_values(t) {
                consts.insert(t.name.clone(), v);
            }
        }
        for s in &g.sparse_initializer {
            let name = s.values.as_ref().map_or("", |v| v.name.as_str());
            self.sparse(s, &format!("sparse initializer '{name}'"))?;
            define(name, &mut scope, &mut local, "sparse initializer")?;
        }
        for v in &g.input {
            self.declared(v, place)?;
            if !local.contains(&v.name) {
                define(&v.name, &mut scope, &mut local, "graph input")?;
            }
        }
        for v in g.output.iter().chain(&g.value_info) {
            self.declared(v, place)?;
        }
        for (i, n) in g.node.iter().enumerate() {
            self.nodes += 1;
            let label = if n.name.is_empty() {
                format!("node #{i} ({}) of {place}", n.op_type)
            } else {
                format!("node '{}' ({}) of {place}", n.name, n.op_type)
            };
            self.operator(n, &label)?;
            for input in n.input.iter().filter(|s| !s.is_empty()) {
                if !scope.contains(input) {
                    return Err(bad(format!(
                        "{label} reads '{input}', which no input, initializer or earlier node defines (the graph has a cycle or is not in topological order)"
                    )));
                }
            }
            self.shape_operands(n, &consts, &label)?;
            for a in &n.attribute {
                let what = format!("attribute '{}' of {label}", a.name);
                if let Some(t) = &a.t {
                    self.tensor(t, &what)?;
                }
                for t in &a.tensors {
                    self.tensor(t, &what)?;
                }
                if let Some(s) = &a.sparse_tensor {
                    self.sparse(s, &what)?;
                }
                if let Some(sub) = &a.g {
                    self.graph(sub, &scope, depth + 1, &format!("the subgraph {what}"))?;
                }
                for sub in &a.graphs {
                    self.graph(sub, &scope, depth + 1, &format!("the subgraph {what}"))?;
                }
            }
            if n.op_type == "Constant"
                && let Some(v) = n
                    .attribute
                    .iter()
                    .find(|a| a.name == "value")
                    .and_then(|a| a.t.as_ref())
                    .and_then(int_values)
                && let Some(out) = n.output.first()
            {
                consts.insert(out.clone(), v);
            }
            for out in &n.output {
                define(out, &mut scope, &mut local, &label)?;
            }
        }
        for v in &g.output {
            if !scope.contains(&v.name) {
                return Err(bad(format!(
                    "{place} declares output '{}', which nothing defines",
                    v.name
                )));
            }
        }
        Ok(())
    }

    fn operator(&mut self, n: &NodeProto, label: &str) -> MlResult<()> {
        let domain = canonical_domain(&n.domain);
        let known = match domain {
            "" => operators::STANDARD.contains(&n.op_type.as_str()),
            "ai.onnx.ml" => operators::ML.contains(&n.op_type.as_str()),
            other => {
                return Err(bad(format!(
                    "{label} uses operator domain '{other}', which is not supported"
                )));
            }
        };
        if let Some((_, why)) = REFUSED_OPS.iter().find(|(op, _)| *op == n.op_type) {
            return Err(bad(format!(
                "{label}: operator {} is refused: {why}",
                n.op_type
            )));
        }
        if !known {
            return Err(bad(format!(
                "{label}: '{}' is not an operator of domain '{}'",
                n.op_type,
                if domain.is_empty() { "ai.onnx" } else { domain }
            )));
        }
        if !self.opsets.contains_key(domain) {
            return Err(bad(format!(
                "{label} uses domain '{domain}', which the model does not import"
            )));
        }
        self.operators.insert(if domain.is_empty() {
            n.op_type.clone()
        } else {
            format!("{domain}.{}", n.op_type)
        });
        let labels = |names: [&str; 2]| -> Option<Vec<String>> {
            n.attribute.iter().find_map(|a| {
                if a.name == names[0] && !a.strings.is_empty() {
                    Some(
                        a.strings
                            .iter()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect(),
                    )
                } else if a.name == names[1] && !a.ints.is_empty() {
                    Some(a.ints.iter().map(i64::to_string).collect())
                } else {
                    None
                }
            })
        };
        if domain == "ai.onnx.ml" {
            if CLASSIFIERS.contains(&n.op_type.as_str()) && self.class_labels.is_none() {
                self.class_labels = labels(["classlabels_strings", "classlabels_ints"]);
            }
            if n.op_type == "ZipMap"
                && let (Some(l), Some(out)) = (
                    labels(["classlabels_strings", "classlabels_int64s"]),
                    n.output.first(),
                )
            {
                self.zipmap.insert(out.clone(), l);
            }
        }
        Ok(())
    }

    /// Constant shape operands bound what the operator allocates.
    fn shape_operands(
        &self,
        n: &NodeProto,
        consts: &HashMap<String, Vec<i64>>,
        label: &str,
    ) -> MlResult<()> {
        let operand = match (canonical_domain(&n.domain), n.op_type.as_str()) {
            ("", "ConstantOfShape") => 0,
            ("", "Expand" | "Reshape") => 1,
            ("", "Resize") => 3,
            _ => return Ok(()),
        };
        let Some(dims) = n.input.get(operand).and_then(|name| consts.get(name)) else {
            return Ok(());
        };
        // Reshape's 0 and -1 copy or infer from the input, which is bounded already.
        let elements = dims
            .iter()
            .filter(|&&d| d > 0)
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        if elements.is_none_or(|e| e > self.limits.max_tensor_elements as u64) {
            return Err(bad(format!(
                "{label} asks for shape {dims:?}, over the {}-element limit",
                self.limits.max_tensor_elements
            )));
        }
        Ok(())
    }

    fn declared(&self, v: &proto::ValueInfoProto, place: &str) -> MlResult<()> {
        let Some(proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            return Ok(());
        };
        let Some(shape) = &t.shape else {
            return Ok(());
        };
        let mut elements: u64 = 1;
        for d in &shape.dim {
            if let Some(Dim::Value(x)) = d.value {
                let x = u64::try_from(x)
                    .map_err(|_| bad(format!("in {place}, '{}' declares dimension {x}", v.name)))?;
                elements = elements.saturating_mul(x);
            }
        }
        if elements > self.limits.max_tensor_elements as u64 {
            return Err(bad(format!(
                "in {place}, '{}' declares a shape of {elements} elements, over the {}-element limit",
                v.name, self.limits.max_tensor_elements
            )));
        }
        Ok(())
    }

    fn sparse(&self, s: &proto::SparseTensorProto, what: &str) -> MlResult<()> {
        if let Some(v) = &s.values {
            self.tensor(v, what)?;
        }
        if let Some(i) = &s.indices {
            self.tensor(i, what)?;
        }
        elements(&s.dims, self.limits, what).map(|_| ())
    }

    fn tensor(&self, t: &TensorProto, what: &str) -> MlResult<()> {
        if t.data_location == 1 || !t.external_data.is_empty() {
            let location = t
                .external_data
                .iter()
                .find(|e| e.key == "location")
                .map_or("?", |e| e.value.as_str());
            return Err(bad(format!(
                "{what} keeps its data in an external file ('{location}'); Bastion loads a model from one file, so save it with its weights inside"
            )));
        }
        let n = elements(&t.dims, self.limits, what)?;
        let complex = matches!(t.data_type, elem::COMPLEX64 | elem::COMPLEX128);
        if !t.raw_data.is_empty() {
            if let Some(size) = elem::size(t.data_type)
                && (n as u64).checked_mul(size as u64) != Some(t.raw_data.len() as u64)
            {
                return Err(bad(format!(
                    "{what} has shape {:?} but {} bytes of data",
                    t.dims,
                    t.raw_data.len()
                )));
            }
            return Ok(());
        }
        let typed = t.float_data.len()
            + t.int32_data.len()
            + t.string_data.len()
            + t.int64_data.len()
            + t.double_data.len()
            + t.uint64_data.len();
        if typed != if complex { 2 * n } else { n } {
            return Err(bad(format!(
                "{what} has shape {:?} but {typed} values",
                t.dims
            )));
        }
        Ok(())
    }
}

fn elements(dims: &[i64], limits: Limits, what: &str) -> MlResult<usize> {
    let mut n: usize = 1;
    for &d in dims {
        let d = usize::try_from(d).map_err(|_| bad(format!("{what} has dimension {d}")))?;
        n = n
            .checked_mul(d)
            .filter(|&n| n <= limits.max_tensor_elements)
            .ok_or_else(|| {
                bad(format!(
                    "{what} has shape {dims:?}, over the {}-element limit",
                    limits.max_tensor_elements
                ))
            })?;
    }
    Ok(n)
}

/// The values of a small integer tensor (a shape operand), if it is one.
fn int_values(t: &TensorProto) -> Option<Vec<i64>> {
    if t.data_type != elem::INT64 || t.dims.len() > 1 {
        return None;
    }
    let v: Vec<i64> = if t.raw_data.is_empty() {
        t.int64_data.clone()
    } else {
        t.raw_data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect()
    };
    (v.len() <= MAX_SHAPE_LEN).then_some(v)
}
