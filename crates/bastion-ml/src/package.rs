//! The safe model package: a folder holding `bastion-model.toml` (format version, framework,
//! signature, preprocessing, estimator structure, training metadata, and the SHA-256 and size
//! of every other file) and the weights as safetensors, or an ONNX model as `model.onnx`. Loading checks everything before
//! using anything: the format version, that the folder holds exactly the listed files (no
//! links, no folders), their sizes and digests, every tensor's dtype and shape against the
//! manifest, size limits, and the model's own consistency (tree bounds, layer shapes; for
//! ONNX, [`crate::onnx::check`] before the runtime sees it). Nothing in a package is ever
//! executed: an ONNX graph is data that ONNX Runtime evaluates with its own operators.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use ndarray::{Array1, Array2};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::builtin::{BuiltinModel, Estimator, Kind};
use crate::error::{MlError, MlResult};
use crate::forest::Forest;
use crate::gbdt::{Gbdt, Objective};
use crate::linear::{LinearRegression, LogisticRegression};
use crate::mlp::{Dense, Mlp, Output};
use crate::onnx::{OnnxModel, OnnxSpec, Scores};
use crate::predictor::{Predictor, Signature};
use crate::preprocess::Preprocessor;
use crate::tree::Tree;

pub const MANIFEST: &str = "bastion-model.toml";
pub const WEIGHTS: &str = "weights.safetensors";
pub const ONNX_MODEL: &str = "model.onnx";
/// The only format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Files a signer may place beside the package without being listed in it.
const SIGNATURE_FILES: &[&str] = &["model.sig"];
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Bounds on what a package may make Bastion read and allocate.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_tensor_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 2 << 30,
            max_tensor_elements: 1 << 28,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framework {
    Bastion,
    Onnx,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub sha256: String,
    pub size: u64,
}

/// The estimator's structure; its numbers are tensors in the weights file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Structure {
    Logreg {
        classes: usize,
        features: usize,
    },
    Linear {
        features: usize,
    },
    Gbdt {
        objective: Objective,
        outputs: usize,
        features: usize,
        trees: usize,
    },
    Forest {
        classification: bool,
        outputs: usize,
        features: usize,
        trees: usize,
    },
    Mlp {
        output: Output,
        classes: usize,
        /// Units per layer, the input first.
        units: Vec<usize>,
    },
    /// An ONNX graph in `model.onnx`; its prediction is read from `output`.
    Onnx {
        output: String,
        scores: Scores,
    },
}

/// Where a model came from, for people and for provenance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Training {
    pub dataset: Option<String>,
    pub dataset_digest: Option<String>,
    pub target: Option<String>,
    pub run_id: Option<String>,
    pub train_rows: Option<usize>,
    pub test_rows: Option<usize>,
    pub params: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
    pub created_at: Option<String>,
    pub bastion_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub framework: Framework,
    pub model: Structure,
    pub signature: Signature,
    /// Empty for ONNX models, whose preprocessing is part of their graph.
    #[serde(default)]
    pub preprocessing: Preprocessor,
    #[serde(default)]
    pub training: Training,
    pub files: BTreeMap<String, FileEntry>,
}

fn bad(path: &Path, m: impl std::fmt::Display) -> MlError {
    MlError::invalid(format!("model package {}: {m}", path.display()))
}

// ---- writing ----

fn f64_bytes(v: impl IntoIterator<Item = f64>) -> Vec<u8> {
    v.into_iter().flat_map(f64::to_le_bytes).collect()
}

fn i32_bytes(v: impl IntoIterator<Item = i32>) -> Vec<u8> {
    v.into_iter().flat_map(i32::to_le_bytes).collect()
}

struct Owned {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn tree_tensors(out: &mut BTreeMap<String, Owned>, trees: &[Tree]) {
    let mut put = |name: &str, dtype, shape: Vec<usize>, data: Vec<u8>| {
        out.insert(name.to_owned(), Owned { dtype, shape, data });
    };
    let nodes: Vec<i64> = trees.iter().map(|t| t.feature.len() as i64).collect();
    let total: usize = trees.iter().map(|t| t.feature.len()).sum();
    let values: usize = trees.iter().map(|t| t.values.len()).sum();
    put(
        "trees.nodes",
        Dtype::I64,
        vec![trees.len()],
        nodes.iter().flat_map(|v| v.to_le_bytes()).collect(),
    );
    put(
        "trees.feature",
        Dtype::I32,
        vec![total],
        i32_bytes(
            trees
                .iter()
                .flat_map(|t| t.feature.iter().map(|&f| f as i32)),
        ),
    );
    put(
        "trees.threshold",
        Dtype::F64,
        vec![total],
        f64_bytes(trees.iter().flat_map(|t| t.threshold.iter().copied())),
    );
    put(
        "trees.left",
        Dtype::I32,
        vec![total],
        i32_bytes(trees.iter().flat_map(|t| t.left.iter().copied())),
    );
    put(
        "trees.right",
        Dtype::I32,
        vec![total],
        i32_bytes(trees.iter().flat_map(|t| t.right.iter().copied())),
    );
    put(
        "trees.values",
        Dtype::F64,
        vec![values],
        f64_bytes(trees.iter().flat_map(|t| t.values.iter().copied())),
    );
}

fn to_parts(e: &Estimator) -> (Structure, BTreeMap<String, Owned>) {
    let mut t = BTreeMap::new();
    let matrix = |a: &Array2<f64>| Owned {
        dtype: Dtype::F64,
        shape: vec![a.nrows(), a.ncols()],
        data: f64_bytes(a.iter().copied()),
    };
    let vector = |a: &Array1<f64>| Owned {
        dtype: Dtype::F64,
        shape: vec![a.len()],
        data: f64_bytes(a.iter().copied()),
    };
    let structure = match e {
        Estimator::Logreg(m) => {
            t.insert("coef".into(), matrix(&m.coef));
            t.insert("intercept".into(), vector(&m.intercept));
            Structure::Logreg {
                classes: m.classes,
                features: m.features(),
            }
        }
        Estimator::Linear(m) => {
            t.insert("coef".into(), vector(&m.coef));
            t.insert("intercept".into(), vector(&Array1::from(vec![m.intercept])));
            Structure::Linear {
                features: m.coef.len(),
            }
        }
        Estimator::Gbdt(m) => {
            tree_tensors(&mut t, &m.trees);
            t.insert("init".into(), vector(&Array1::from(m.init.clone())));
            Structure::Gbdt {
                objective: m.objective,
                outputs: m.outputs,
                features: m.features,
                trees: m.trees.len(),
            }
        }
        Estimator::Forest(m) => {
            tree_tensors(&mut t, &m.trees);
            Structure::Forest {
                classification: m.classification,
                outputs: m.outputs,
                features: m.features,
                trees: m.trees.len(),
            }
        }
        Estimator::Mlp(m) => {
            let mut units = vec![m.features()];
            for (i, l) in m.layers.iter().enumerate() {
                t.insert(format!("layers.{i}.weight"), matrix(&l.w));
                t.insert(format!("layers.{i}.bias"), vector(&l.b));
                units.push(l.w.ncols());
            }
            Structure::Mlp {
                output: m.output,
                classes: m.classes,
                units,
            }
        }
    };
    (structure, t)
}

fn sha256_file(path: &Path, limit: u64) -> MlResult<(String, u64)> {
    let f = fs::File::open(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
    let mut r = f.take(limit + 1);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|e| bad(path, format!("cannot read: {e}")))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    if size > limit {
        return Err(bad(path, format!("larger than the {limit}-byte limit")));
    }
    Ok((hex::encode(h.finalize()), size))
}

/// Writes `model` as a package into `dir`, which must not exist yet; the folder appears
/// complete or not at all (it is assembled beside its destination, then renamed).
pub fn save(dir: &Path, model: &BuiltinModel, training: Training) -> MlResult<Manifest> {
    model.validate()?;
    let (structure, tensors) = to_parts(&model.estimator);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(k, o)| {
            TensorView::new(o.dtype, o.shape.clone(), &o.data)
                .map(|v| (k.clone(), v))
                .map_err(|e| bad(dir, format!("tensor {k}: {e}")))
        })
        .collect::<MlResult<_>>()?;
    let bytes = safetensors::serialize(views, None).map_err(|e| bad(dir, e))?;
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        framework: Framework::Bastion,
        model: structure,
        signature: model.signature.clone(),
        preprocessing: model.preprocessor.clone(),
        training,
        files: BTreeMap::new(),
    };
    write(dir, manifest, &[(WEIGHTS, &bytes)])
}

/// Wraps an ONNX model (checked and described by [`crate::onnx`]) as a package in `dir`.
pub fn save_onnx(
    dir: &Path,
    model: &[u8],
    signature: Signature,
    spec: OnnxSpec,
    training: Training,
) -> MlResult<Manifest> {
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        framework: Framework::Onnx,
        model: Structure::Onnx {
            output: spec.output,
            scores: spec.scores,
        },
        signature,
        preprocessing: Preprocessor::default(),
        training,
        files: BTreeMap::new(),
    };
    write(dir, manifest, &[(ONNX_MODEL, model)])
}

/// Stages the files and the manifest (with their digests) beside `dir`, then renames.
fn write(dir: &Path, mut manifest: Manifest, files: &[(&str, &[u8])]) -> MlResult<Manifest> {
    if dir.exists() {
        return Err(bad(dir, "already exists; choose a new folder"));
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |e: std::io::Error| bad(dir, e);
    let staging = tempfile::Builder::new()
        .prefix(".bastion-package-")
        .tempdir_in(parent)
        .map_err(io)?;
    for (name, bytes) in files {
        fs::write(staging.path().join(name), bytes).map_err(io)?;
        manifest.files.insert(
            (*name).to_owned(),
            FileEntry {
                sha256: hex::encode(Sha256::digest(bytes)),
                size: bytes.len() as u64,
            },
        );
    }
    let text = toml::to_string(&manifest).map_err(|e| bad(dir, e))?;
    fs::write(staging.path().join(MANIFEST), text).map_err(io)?;
    let staged = staging.keep();
    fs::rename(&staged, dir).map_err(|e| {
        let _ = fs::remove_dir_all(&staged);
        io(e)
    })?;
    Ok(manifest)
}

// ---- reading ----

/// A file name a manifest may list: one plain path segment.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Reads and checks the manifest and the folder's files (without reading the weights).
pub fn read_manifest(dir: &Path, limits: Limits) -> MlResult<Manifest> {
    let meta = fs::symlink_metadata(dir).map_err(|e| bad(dir, format!("cannot open: {e}")))?;
    if !meta.is_dir() {
        return Err(bad(dir, "is not a folder"));
    }
    let mpath = dir.join(MANIFEST);
    let mmeta = fs::symlink_metadata(&mpath).map_err(|_| bad(dir, format!("has no {MANIFEST}")))?;
    if !mmeta.is_file() || mmeta.len() > MAX_MANIFEST_BYTES {
        return Err(bad(
            dir,
            format!("{MANIFEST} is not a regular file of at most 4 MiB"),
        ));
    }
    let text = fs::read_to_string(&mpath).map_err(|e| bad(dir, format!("{MANIFEST}: {e}")))?;
    // The version is read on its own first, so a newer package says so instead of failing
    // on a field this build does not know.
    #[derive(Deserialize)]
    struct Version {
        format_version: Option<i64>,
    }
    let v: Version = toml::from_str(&text).map_err(|e| bad(dir, format!("{MANIFEST}: {e}")))?;
    match v.format_version {
        Some(v) if v == i64::from(FORMAT_VERSION) => {}
        Some(v) => {
            return Err(bad(
                dir,
                format!(
                    "format version {v} is not supported (this Bastion reads version {FORMAT_VERSION})"
                ),
            ));
        }
        None => return Err(bad(dir, format!("{MANIFEST} has no format_version"))),
    }
    let manifest: Manifest =
        toml::from_str(&text).map_err(|e| bad(dir, format!("{MANIFEST}: {e}")))?;
    if let Some(n) = manifest
        .files
        .keys()
        .find(|n| !plain_name(n) || n.as_str() == MANIFEST)
    {
        return Err(bad(
            dir,
            format!("lists a file named '{n}', which is not a plain file name"),
        ));
    }
    let entries = fs::read_dir(dir).map_err(|e| bad(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| bad(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ft = entry.file_type().map_err(|e| bad(dir, e))?;
        if name == MANIFEST {
            continue;
        }
        if !ft.is_file() {
            return Err(bad(
                dir,
                format!("'{name}' is not a regular file (links and folders are refused)"),
            ));
        }
        if !manifest.files.contains_key(&name) && !SIGNATURE_FILES.contains(&name.as_str()) {
            return Err(bad(dir, format!("'{name}' is not listed in {MANIFEST}")));
        }
    }
    for (name, entry) in &manifest.files {
        let path = dir.join(name);
        let m = fs::symlink_metadata(&path)
            .map_err(|_| bad(dir, format!("'{name}' is listed but missing")))?;
        if !m.is_file() {
            return Err(bad(dir, format!("'{name}' is not a regular file")));
        }
        if entry.size > limits.max_file_bytes {
            return Err(bad(
                dir,
                format!(
                    "'{name}' declares {} bytes, over the {}-byte limit",
                    entry.size, limits.max_file_bytes
                ),
            ));
        }
        let (digest, size) = sha256_file(&path, limits.max_file_bytes)?;
        if size != entry.size || !digest.eq_ignore_ascii_case(&entry.sha256) {
            return Err(bad(
                dir,
                format!(
                    "'{name}' does not match its digest (sha256 {digest}, {size} bytes; the manifest says {}, {} bytes)",
                    entry.sha256, entry.size
                ),
            ));
        }
    }
    Ok(manifest)
}

struct Weights<'a> {
    dir: &'a Path,
    st: SafeTensors<'a>,
    limits: Limits,
}

impl Weights<'_> {
    fn raw(&self, name: &str, dtype: Dtype, shape: &[usize]) -> MlResult<&[u8]> {
        let t = self
            .st
            .tensor(name)
            .map_err(|_| bad(self.dir, format!("the weights have no tensor '{name}'")))?;
        if t.dtype() != dtype || t.shape() != shape {
            return Err(bad(
                self.dir,
                format!(
                    "tensor '{name}' is {:?} {:?}, expected {dtype:?} {shape:?}",
                    t.dtype(),
                    t.shape()
                ),
            ));
        }
        let elements = shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        if elements.is_none_or(|e| e > self.limits.max_tensor_elements) {
            return Err(bad(
                self.dir,
                format!("tensor '{name}' is larger than the element limit"),
            ));
        }
        Ok(t.data())
    }

    fn f64s(&self, name: &str, shape: &[usize]) -> MlResult<Vec<f64>> {
        Ok(self
            .raw(name, Dtype::F64, shape)?
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect())
    }

    fn i32s(&self, name: &str, shape: &[usize]) -> MlResult<Vec<i32>> {
        Ok(self
            .raw(name, Dtype::I32, shape)?
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
            .collect())
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> MlResult<Array2<f64>> {
        let v = self.f64s(name, &[rows, cols])?;
        Array2::from_shape_vec((rows, cols), v).map_err(|e| bad(self.dir, e))
    }

    fn trees(&self, count: usize, outputs: usize) -> MlResult<Vec<Tree>> {
        let nodes_raw = self.raw("trees.nodes", Dtype::I64, &[count])?;
        let nodes: Vec<usize> = nodes_raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .map(|v| {
                usize::try_from(v).map_err(|_| bad(self.dir, "a tree has a negative node count"))
            })
            .collect::<MlResult<_>>()?;
        let total = nodes.iter().try_fold(0usize, |a, &b| a.checked_add(b));
        let total = total.ok_or_else(|| bad(self.dir, "node counts overflow"))?;
        let values_len = total
            .checked_add(count)
            .and_then(|leaves| leaves.checked_mul(outputs))
            .ok_or_else(|| bad(self.dir, "leaf counts overflow"))?;
        let feature = self.i32s("trees.feature", &[total])?;
        let threshold = self.f64s("trees.threshold", &[total])?;
        let left = self.i32s("trees.left", &[total])?;
        let right = self.i32s("trees.right", &[total])?;
        let values = self.f64s("trees.values", &[values_len])?;
        let mut trees = Vec::with_capacity(count);
        let (mut at, mut vat) = (0, 0);
        for n in nodes {
            let leaves = (n + 1) * outputs;
            trees.push(Tree {
                outputs,
                feature: feature[at..at + n]
                    .iter()
                    .map(|&f| u32::try_from(f).unwrap_or(u32::MAX))
                    .collect(),
                threshold: threshold[at..at + n].to_vec(),
                left: left[at..at + n].to_vec(),
                right: right[at..at + n].to_vec(),
                values: values[vat..vat + leaves].to_vec(),
            });
            at += n;
            vat += leaves;
        }
        Ok(trees)
    }
}

/// A listed file's bytes, checked again against its digest: the file may have changed since
/// [`read_manifest`] looked at it, and these are the bytes that get parsed.
fn read_listed(dir: &Path, manifest: &Manifest, name: &str) -> MlResult<Vec<u8>> {
    let entry = manifest
        .files
        .get(name)
        .ok_or_else(|| bad(dir, format!("lists no {name}")))?;
    let bytes = fs::read(dir.join(name)).map_err(|e| bad(dir, e))?;
    if bytes.len() as u64 != entry.size
        || !hex::encode(Sha256::digest(&bytes)).eq_ignore_ascii_case(&entry.sha256)
    {
        return Err(bad(dir, format!("{name} changed while it was being read")));
    }
    Ok(bytes)
}

/// Loads any package as a [`Predictor`]: a built-in model ([`load`]) or an ONNX model
/// (checked, then handed to ONNX Runtime).
pub fn load_predictor(dir: &Path, limits: Limits) -> MlResult<(Manifest, Box<dyn Predictor>)> {
    let manifest = read_manifest(dir, limits)?;
    match (&manifest.framework, &manifest.model) {
        (Framework::Onnx, Structure::Onnx { output, scores }) => {
            if manifest.files.len() != 1 || !manifest.preprocessing.steps.is_empty() {
                return Err(bad(
                    dir,
                    format!("an ONNX package holds {ONNX_MODEL} only, with no preprocessing"),
                ));
            }
            let bytes = read_listed(dir, &manifest, ONNX_MODEL)?;
            let spec = OnnxSpec {
                output: output.clone(),
                scores: *scores,
            };
            let model = OnnxModel::new(&bytes, manifest.signature.clone(), spec, limits)
                .map_err(|e| bad(dir, e))?;
            Ok((manifest, Box::new(model)))
        }
        (Framework::Bastion, _) => {
            let (manifest, model) = load(dir, limits)?;
            Ok((manifest, Box::new(model)))
        }
        (Framework::Onnx, _) => Err(bad(dir, "framework onnx needs a model of kind onnx")),
    }
}

/// Loads a built-in model's package: [`read_manifest`], then the weights, then the model's
/// own checks.
pub fn load(dir: &Path, limits: Limits) -> MlResult<(Manifest, BuiltinModel)> {
    let manifest = read_manifest(dir, limits)?;
    if manifest.framework != Framework::Bastion {
        return Err(bad(dir, "is not a built-in model's package"));
    }
    let bytes = read_listed(dir, &manifest, WEIGHTS)?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(dir, format!("{WEIGHTS} is not valid safetensors: {e}")))?;
    let w = Weights { dir, st, limits };
    let estimator = match &manifest.model {
        Structure::Logreg { classes, features } => {
            let rows = if *classes == 2 { 1 } else { *classes };
            Estimator::Logreg(LogisticRegression {
                classes: *classes,
                coef: w.matrix("coef", rows, *features)?,
                intercept: Array1::from(w.f64s("intercept", &[rows])?),
            })
        }
        Structure::Linear { features } => Estimator::Linear(LinearRegression {
            coef: Array1::from(w.f64s("coef", &[*features])?),
            intercept: w.f64s("intercept", &[1])?[0],
        }),
        Structure::Gbdt {
            objective,
            outputs,
            features,
            trees,
        } => Estimator::Gbdt(Gbdt {
            objective: *objective,
            outputs: *outputs,
            features: *features,
            init: w.f64s("init", &[*outputs])?,
            trees: w.trees(*trees, 1)?,
            flat: Default::default(),
        }),
        Structure::Forest {
            classification,
            outputs,
            features,
            trees,
        } => Estimator::Forest(Forest {
            classification: *classification,
            outputs: *outputs,
            features: *features,
            trees: w.trees(*trees, *outputs)?,
            flat: Default::default(),
        }),
        Structure::Onnx { .. } => {
            return Err(bad(dir, "framework bastion cannot hold an ONNX model"));
        }
        Structure::Mlp {
            output,
            classes,
            units,
        } => {
            if units.len() < 2 || units.len() > 18 {
                return Err(bad(dir, "an MLP has 1 to 17 layers"));
            }
            let layers = units
                .windows(2)
                .enumerate()
                .map(|(i, u)| {
                    Ok(Dense {
                        w: w.matrix(&format!("layers.{i}.weight"), u[0], u[1])?,
                        b: Array1::from(w.f64s(&format!("layers.{i}.bias"), &[u[1]])?),
                    })
                })
                .collect::<MlResult<_>>()?;
            Estimator::Mlp(Mlp::new(layers, *output, *classes))
        }
    };
    let expected = to_parts(&estimator).1.len();
    if w.st.len() != expected {
        return Err(bad(
            dir,
            format!(
                "{WEIGHTS} holds {} tensors, the model uses {expected}",
                w.st.len()
            ),
        ));
    }
    let model = BuiltinModel {
        signature: manifest.signature.clone(),
        preprocessor: manifest.preprocessing.clone(),
        estimator,
    };
    model.validate().map_err(|e| bad(dir, e))?;
    Ok((manifest, model))
}

impl Kind {
    /// The built-in kind a manifest's structure describes (`None` for ONNX).
    pub fn of(s: &Structure) -> Option<Self> {
        Some(match s {
            Structure::Logreg { .. } => Self::Logreg,
            Structure::Linear { .. } => Self::Linear,
            Structure::Gbdt { .. } => Self::Gbdt,
            Structure::Forest { .. } => Self::Forest,
            Structure::Mlp { .. } => Self::Mlp,
            Structure::Onnx { .. } => return None,
        })
    }
}
