//! Open Inference Protocol (KServe V2) tensors over REST: the JSON request and response
//! bodies, every V2 datatype, `data` flat or nested, and the binary tensor extension (raw
//! little-endian bytes after a JSON header whose length `Inference-Header-Content-Length`
//! gives). Decoding checks every element against its datatype and every shape against its
//! data, and refuses sizes over the limits before allocating for them.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::ServeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datatype {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Fp32,
    Fp64,
    Bytes,
}

impl Datatype {
    pub const ALL: [Datatype; 13] = [
        Self::Bool,
        Self::Uint8,
        Self::Uint16,
        Self::Uint32,
        Self::Uint64,
        Self::Int8,
        Self::Int16,
        Self::Int32,
        Self::Int64,
        Self::Fp16,
        Self::Fp32,
        Self::Fp64,
        Self::Bytes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::Uint8 => "UINT8",
            Self::Uint16 => "UINT16",
            Self::Uint32 => "UINT32",
            Self::Uint64 => "UINT64",
            Self::Int8 => "INT8",
            Self::Int16 => "INT16",
            Self::Int32 => "INT32",
            Self::Int64 => "INT64",
            Self::Fp16 => "FP16",
            Self::Fp32 => "FP32",
            Self::Fp64 => "FP64",
            Self::Bytes => "BYTES",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == s)
    }

    /// Bytes per element in the binary extension; `None` for BYTES (length-prefixed).
    pub fn width(self) -> Option<usize> {
        Some(match self {
            Self::Bool | Self::Uint8 | Self::Int8 => 1,
            Self::Uint16 | Self::Int16 | Self::Fp16 => 2,
            Self::Uint32 | Self::Int32 | Self::Fp32 => 4,
            Self::Uint64 | Self::Int64 | Self::Fp64 => 8,
            Self::Bytes => return None,
        })
    }

    /// The range of an integer datatype.
    fn int_range(self) -> Option<(i128, i128)> {
        Some(match self {
            Self::Uint8 => (0, u8::MAX.into()),
            Self::Uint16 => (0, u16::MAX.into()),
            Self::Uint32 => (0, u32::MAX.into()),
            Self::Uint64 => (0, u64::MAX.into()),
            Self::Int8 => (i8::MIN.into(), i8::MAX.into()),
            Self::Int16 => (i16::MIN.into(), i16::MAX.into()),
            Self::Int32 => (i32::MIN.into(), i32::MAX.into()),
            Self::Int64 => (i64::MIN.into(), i64::MAX.into()),
            _ => return None,
        })
    }
}

/// A tensor's elements, widened: integers to `i128` would cost memory, so signed and
/// unsigned are kept apart; floats of every width as `f64` (FP16 and FP32 values are exactly
/// representable).
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Bool(Vec<bool>),
    Int(Vec<i64>),
    Uint(Vec<u64>),
    Float(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Self::Bool(v) => v.len(),
            Self::Int(v) => v.len(),
            Self::Uint(v) => v.len(),
            Self::Float(v) => v.len(),
            Self::Bytes(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as a number (BOOL as 0/1); `None` for BYTES.
    pub fn number(&self, i: usize) -> Option<f64> {
        match self {
            Self::Bool(v) => v.get(i).map(|&b| f64::from(u8::from(b))),
            Self::Int(v) => v.get(i).map(|&x| x as f64),
            Self::Uint(v) => v.get(i).map(|&x| x as f64),
            Self::Float(v) => v.get(i).copied(),
            Self::Bytes(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub datatype: Datatype,
    pub shape: Vec<usize>,
    pub values: Values,
}

/// An output the client asked for, and whether it wants it as binary data.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedOutput {
    pub name: String,
    pub binary: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    pub id: Option<String>,
    pub parameters: Map<String, Value>,
    pub inputs: Vec<Tensor>,
    /// Empty: every output.
    pub outputs: Vec<RequestedOutput>,
    /// The request-level `binary_data_output` parameter: outputs not listed go binary too.
    pub binary_by_default: bool,
}

/// Bounds on one request, checked before anything is allocated for it.
#[derive(Debug, Clone, Copy)]
pub struct TensorLimits {
    pub max_inputs: usize,
    /// Elements over all inputs.
    pub max_elements: usize,
    /// Dimensions of one shape.
    pub max_rank: usize,
}

impl Default for TensorLimits {
    fn default() -> Self {
        Self {
            max_inputs: 1024,
            max_elements: 16 << 20,
            max_rank: 8,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    inputs: Vec<RawInput>,
    #[serde(default)]
    outputs: Option<Vec<RawOutput>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

fn bad(msg: impl Into<String>) -> ServeError {
    ServeError::BadRequest(msg.into())
}

fn flag(params: Option<&Map<String, Value>>, key: &str) -> Result<bool, ServeError> {
    match params.and_then(|p| p.get(key)) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(bad(format!(
            "parameter '{key}' must be true or false, got {other}"
        ))),
    }
}

/// Decodes a request body. `header_len` is the `Inference-Header-Content-Length` header:
/// with it, the JSON is the first `header_len` bytes and binary tensors follow.
pub fn decode_request(
    body: &[u8],
    header_len: Option<usize>,
    limits: TensorLimits,
) -> Result<InferRequest, ServeError> {
    let (header, mut binary) = match header_len {
        None => (body, &[][..]),
        Some(n) if n <= body.len() => body.split_at(n),
        Some(n) => {
            return Err(bad(format!(
                "Inference-Header-Content-Length is {n} but the body has {} bytes",
                body.len()
            )));
        }
    };
    let raw: RawRequest = serde_json::from_slice(header)
        .map_err(|e| bad(format!("the request is not a valid inference request: {e}")))?;
    if raw.inputs.is_empty() {
        return Err(bad("the request has no inputs"));
    }
    if raw.inputs.len() > limits.max_inputs {
        return Err(bad(format!(
            "the request has {} inputs, more than the limit of {}",
            raw.inputs.len(),
            limits.max_inputs
        )));
    }
    let mut budget = limits.max_elements;
    let mut inputs = Vec::with_capacity(raw.inputs.len());
    for input in raw.inputs {
        let name = input.name;
        let at = |m: String| bad(format!("input '{name}': {m}"));
        if inputs.iter().any(|t: &Tensor| t.name == name) {
            return Err(at("appears twice".into()));
        }
        let datatype = Datatype::parse(&input.datatype).ok_or_else(|| {
            at(format!(
                "unknown datatype '{}' (use one of {})",
                input.datatype,
                Datatype::ALL.map(Datatype::name).join(", ")
            ))
        })?;
        let shape = check_shape(&input.shape, limits).map_err(at)?;
        let count = element_count(&shape)
            .filter(|&c| c <= budget)
            .ok_or_else(|| {
                at(format!(
                    "shape {:?} holds more elements than the request limit of {}",
                    input.shape, limits.max_elements
                ))
            })?;
        budget -= count;
        let params = input.parameters.as_ref();
        let values = match params.and_then(|p| p.get("binary_data_size")) {
            Some(size) => {
                if input.data.is_some() {
                    return Err(at("has both 'data' and binary_data_size".into()));
                }
                let size = size
                    .as_u64()
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| at("binary_data_size must be a non-negative integer".into()))?;
                if size > binary.len() {
                    return Err(at(format!(
                        "binary_data_size is {size} but only {} bytes of binary data remain",
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                from_binary(datatype, count, mine).map_err(at)?
            }
            None => {
                let data = input.data.ok_or_else(|| at("has no 'data'".into()))?;
                from_json(datatype, count, &data).map_err(at)?
            }
        };
        inputs.push(Tensor {
            name,
            datatype,
            shape,
            values,
        });
    }
    if !binary.is_empty() {
        return Err(bad(format!(
            "{} bytes of binary data follow the header that no input claims",
            binary.len()
        )));
    }
    let binary_by_default = flag(raw.parameters.as_ref(), "binary_data_output")?;
    let mut outputs = Vec::new();
    for o in raw.outputs.unwrap_or_default() {
        let binary = flag(o.parameters.as_ref(), "binary_data")?;
        if outputs.iter().any(|r: &RequestedOutput| r.name == o.name) {
            return Err(bad(format!("output '{}' is requested twice", o.name)));
        }
        outputs.push(RequestedOutput {
            name: o.name,
            binary,
        });
    }
    Ok(InferRequest {
        id: raw.id,
        parameters: raw.parameters.unwrap_or_default(),
        inputs,
        outputs,
        binary_by_default,
    })
}

fn check_shape(shape: &[i64], limits: TensorLimits) -> Result<Vec<usize>, String> {
    if shape.len() > limits.max_rank {
        return Err(format!(
            "shape has {} dimensions, more than {}",
            shape.len(),
            limits.max_rank
        ));
    }
    shape
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| format!("shape {shape:?} has a negative dimension"))
        })
        .collect()
}

/// The product of the dimensions, or `None` when it overflows.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// `data` flat or nested in any depth, flattened row-major, checked element by element.
fn from_json(datatype: Datatype, count: usize, data: &Value) -> Result<Values, String> {
    let mut flat: Vec<&Value> = Vec::with_capacity(count.min(1 << 20));
    flatten(data, &mut flat, count)?;
    if flat.len() != count {
        return Err(format!(
            "the shape holds {count} elements but 'data' has {}",
            flat.len()
        ));
    }
    let where_ = |i: usize, v: &Value, what: &str| {
        format!(
            "element {i} is {}, not {what} ({})",
            short(v),
            datatype.name()
        )
    };
    Ok(match datatype {
        Datatype::Bool => Values::Bool(
            flat.iter()
                .enumerate()
                .map(|(i, v)| v.as_bool().ok_or_else(|| where_(i, v, "true or false")))
                .collect::<Result<_, _>>()?,
        ),
        Datatype::Fp16 | Datatype::Fp32 | Datatype::Fp64 => Values::Float(
            flat.iter()
                .enumerate()
                .map(|(i, v)| {
                    let x = v.as_f64().ok_or_else(|| where_(i, v, "a number"))?;
                    narrow(datatype, x).ok_or_else(|| where_(i, v, "a number in range"))
                })
                .collect::<Result<_, _>>()?,
        ),
        Datatype::Bytes => Values::Bytes(
            flat.iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .map(|s| s.as_bytes().to_vec())
                        .ok_or_else(|| where_(i, v, "a string"))
                })
                .collect::<Result<_, _>>()?,
        ),
        int => {
            let (lo, hi) = int.int_range().unwrap_or((0, 0));
            let get = |i: usize, v: &Value| -> Result<i128, String> {
                let x = v
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| v.as_u64().map(i128::from))
                    .ok_or_else(|| where_(i, v, "an integer"))?;
                if x < lo || x > hi {
                    return Err(where_(i, v, "an integer in range"));
                }
                Ok(x)
            };
            if lo < 0 {
                Values::Int(
                    flat.iter()
                        .enumerate()
                        .map(|(i, v)| get(i, v).map(|x| x as i64))
                        .collect::<Result<_, _>>()?,
                )
            } else {
                Values::Uint(
                    flat.iter()
                        .enumerate()
                        .map(|(i, v)| get(i, v).map(|x| x as u64))
                        .collect::<Result<_, _>>()?,
                )
            }
        }
    })
}

/// A JSON number as the datatype holds it: FP32 and FP16 round, and a finite value that
/// overflows the type is refused rather than turned into infinity.
fn narrow(datatype: Datatype, x: f64) -> Option<f64> {
    let y = match datatype {
        Datatype::Fp32 => f64::from(x as f32),
        Datatype::Fp16 => half::f16::from_f64(x).to_f64(),
        _ => x,
    };
    y.is_finite().then_some(y)
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>, cap: usize) -> Result<(), String> {
    match v {
        Value::Array(items) => {
            for item in items {
                flatten(item, out, cap)?;
            }
            Ok(())
        }
        other => {
            if out.len() >= cap {
                return Err(format!(
                    "'data' has more than the {cap} elements of the shape"
                ));
            }
            out.push(other);
            Ok(())
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}…", &s[..s.floor_char_boundary(40)])
    } else {
        s
    }
}

fn from_binary(datatype: Datatype, count: usize, bytes: &[u8]) -> Result<Values, String> {
    let Some(w) = datatype.width() else {
        return bytes_elements(count, bytes).map(Values::Bytes);
    };
    // From here on the datatype has a fixed width.
    if count.checked_mul(w) != Some(bytes.len()) {
        return Err(format!(
            "{count} {} elements take {} bytes, binary_data_size gives {}",
            datatype.name(),
            count.saturating_mul(w),
            bytes.len()
        ));
    }
    let chunks = bytes.chunks_exact(w);
    let arr = |c: &[u8]| -> [u8; 8] {
        let mut a = [0u8; 8];
        a[..c.len()].copy_from_slice(c);
        a
    };
    Ok(match datatype {
        Datatype::Bool => Values::Bool(
            bytes
                .iter()
                .enumerate()
                .map(|(i, &b)| match b {
                    0 => Ok(false),
                    1 => Ok(true),
                    _ => Err(format!("element {i} is byte {b}, not a BOOL (0 or 1)")),
                })
                .collect::<Result<_, _>>()?,
        ),
        Datatype::Uint8 => Values::Uint(bytes.iter().map(|&b| u64::from(b)).collect()),
        Datatype::Uint16 => Values::Uint(
            chunks
                .map(|c| u64::from(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
        ),
        Datatype::Uint32 => Values::Uint(
            chunks
                .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        Datatype::Uint64 => Values::Uint(chunks.map(|c| u64::from_le_bytes(arr(c))).collect()),
        Datatype::Int8 => Values::Int(bytes.iter().map(|&b| i64::from(b as i8)).collect()),
        Datatype::Int16 => Values::Int(
            chunks
                .map(|c| i64::from(i16::from_le_bytes([c[0], c[1]])))
                .collect(),
        ),
        Datatype::Int32 => Values::Int(
            chunks
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        Datatype::Int64 => Values::Int(chunks.map(|c| i64::from_le_bytes(arr(c))).collect()),
        Datatype::Fp16 => Values::Float(
            chunks
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64())
                .collect(),
        ),
        Datatype::Fp32 => Values::Float(
            chunks
                .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        Datatype::Fp64 => Values::Float(chunks.map(|c| f64::from_le_bytes(arr(c))).collect()),
        Datatype::Bytes => Values::Bytes(Vec::new()),
    })
}

/// BYTES in the binary extension: each element a 4-byte little-endian length, then the bytes.
fn bytes_elements(count: usize, mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::with_capacity(count.min(bytes.len() / 4 + 1));
    for i in 0..count {
        let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
            return Err(format!("BYTES element {i} has no 4-byte length"));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err(format!(
                "BYTES element {i} claims {len} bytes, only {} remain",
                rest.len()
            ));
        }
        let (item, rest) = rest.split_at(len);
        out.push(item.to_vec());
        bytes = rest;
    }
    if !bytes.is_empty() {
        return Err(format!(
            "{} bytes follow the {count} BYTES elements",
            bytes.len()
        ));
    }
    Ok(out)
}

/// What the server answers with.
#[derive(Debug, Clone, PartialEq)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    pub id: Option<String>,
    pub parameters: Map<String, Value>,
    /// Each output and whether it goes as binary data.
    pub outputs: Vec<(Tensor, bool)>,
}

/// The response body, and the JSON header's length when binary outputs follow it.
pub fn encode_response(r: &InferResponse) -> (Vec<u8>, Option<usize>) {
    let mut binary = Vec::new();
    let outputs: Vec<Value> = r
        .outputs
        .iter()
        .map(|(t, as_binary)| {
            let mut o = json!({
                "name": t.name,
                "datatype": t.datatype.name(),
                "shape": t.shape,
            });
            if *as_binary {
                let start = binary.len();
                write_binary(&t.values, t.datatype, &mut binary);
                o["parameters"] = json!({ "binary_data_size": binary.len() - start });
            } else {
                o["data"] = json_data(&t.values);
            }
            o
        })
        .collect();
    let mut body = json!({
        "model_name": r.model_name,
        "model_version": r.model_version,
        "outputs": outputs,
    });
    if let Some(id) = &r.id {
        body["id"] = json!(id);
    }
    if !r.parameters.is_empty() {
        body["parameters"] = Value::Object(r.parameters.clone());
    }
    let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
    if binary.is_empty() && !r.outputs.iter().any(|(_, b)| *b) {
        return (bytes, None);
    }
    let header = bytes.len();
    bytes.extend_from_slice(&binary);
    (bytes, Some(header))
}

fn json_data(v: &Values) -> Value {
    match v {
        Values::Bool(x) => json!(x),
        Values::Int(x) => json!(x),
        Values::Uint(x) => json!(x),
        // Non-finite floats have no JSON form; outputs are finite, but never emit invalid JSON.
        Values::Float(x) => Value::Array(
            x.iter()
                .map(|f| serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number))
                .collect(),
        ),
        Values::Bytes(x) => Value::Array(
            x.iter()
                .map(|b| Value::String(String::from_utf8_lossy(b).into_owned()))
                .collect(),
        ),
    }
}

fn write_binary(v: &Values, datatype: Datatype, out: &mut Vec<u8>) {
    match v {
        Values::Bool(x) => out.extend(x.iter().map(|&b| u8::from(b))),
        Values::Int(x) => {
            for &i in x {
                match datatype {
                    Datatype::Int8 => out.push(i as i8 as u8),
                    Datatype::Int16 => out.extend_from_slice(&(i as i16).to_le_bytes()),
                    Datatype::Int32 => out.extend_from_slice(&(i as i32).to_le_bytes()),
                    _ => out.extend_from_slice(&i.to_le_bytes()),
                }
            }
        }
        Values::Uint(x) => {
            for &u in x {
                match datatype {
                    Datatype::Uint8 => out.push(u as u8),
                    Datatype::Uint16 => out.extend_from_slice(&(u as u16).to_le_bytes()),
                    Datatype::Uint32 => out.extend_from_slice(&(u as u32).to_le_bytes()),
                    _ => out.extend_from_slice(&u.to_le_bytes()),
                }
            }
        }
        Values::Float(x) => {
            for &f in x {
                match datatype {
                    Datatype::Fp16 => out.extend_from_slice(&half::f16::from_f64(f).to_le_bytes()),
                    Datatype::Fp32 => out.extend_from_slice(&(f as f32).to_le_bytes()),
                    _ => out.extend_from_slice(&f.to_le_bytes()),
                }
            }
        }
        Values::Bytes(x) => {
            for b in x {
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(v: Value) -> Result<InferRequest, ServeError> {
        decode_request(
            &serde_json::to_vec(&v).unwrap_or_default(),
            None,
            TensorLimits::default(),
        )
    }

    fn err(v: Value) -> String {
        match decode(v) {
            Err(e) => e.to_string(),
            Ok(r) => panic!("decoded: {r:?}"),
        }
    }

    #[test]
    fn every_datatype_decodes_flat_and_nested() {
        let cases = [
            (
                "BOOL",
                json!([[true, false]]),
                Values::Bool(vec![true, false]),
            ),
            ("UINT8", json!([[0, 255]]), Values::Uint(vec![0, 255])),
            ("UINT16", json!([0, 65535]), Values::Uint(vec![0, 65535])),
            (
                "UINT32",
                json!([[0, 4294967295u64]]),
                Values::Uint(vec![0, 4294967295]),
            ),
            (
                "UINT64",
                json!([0, u64::MAX]),
                Values::Uint(vec![0, u64::MAX]),
            ),
            ("INT8", json!([[-128, 127]]), Values::Int(vec![-128, 127])),
            (
                "INT16",
                json!([-32768, 32767]),
                Values::Int(vec![-32768, 32767]),
            ),
            (
                "INT32",
                json!([[i32::MIN, i32::MAX]]),
                Values::Int(vec![i32::MIN.into(), i32::MAX.into()]),
            ),
            (
                "INT64",
                json!([i64::MIN, i64::MAX]),
                Values::Int(vec![i64::MIN, i64::MAX]),
            ),
            (
                "FP16",
                json!([[0.5, 65504.0]]),
                Values::Float(vec![0.5, 65504.0]),
            ),
            (
                "FP32",
                json!([0.1, -2]),
                Values::Float(vec![f64::from(0.1f32), -2.0]),
            ),
            (
                "FP64",
                json!([[0.1, 1e300]]),
                Values::Float(vec![0.1, 1e300]),
            ),
            (
                "BYTES",
                json!([["a", "é"]]),
                Values::Bytes(vec![b"a".to_vec(), "é".as_bytes().to_vec()]),
            ),
        ];
        for (dt, data, want) in cases {
            let r = decode(
                json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": dt, "data": data}]}),
            )
            .unwrap_or_else(|e| panic!("{dt}: {e}"));
            assert_eq!(r.inputs[0].values, want, "{dt}");
            assert_eq!(r.inputs[0].shape, vec![1, 2]);
        }
    }

    #[test]
    fn out_of_range_and_mistyped_elements_are_named() {
        let one = |dt: &str, data: Value| {
            err(json!({"inputs": [{"name": "x", "shape": [1], "datatype": dt, "data": data}]}))
        };
        assert!(one("UINT8", json!([256])).contains("element 0 is 256"));
        assert!(one("INT8", json!([-129])).contains("not an integer in range (INT8)"));
        assert!(one("UINT64", json!([-1])).contains("in range"));
        assert!(one("INT32", json!([1.5])).contains("not an integer"));
        assert!(one("FP16", json!([1e6])).contains("in range"));
        assert!(one("FP32", json!([1e300])).contains("in range"));
        assert!(one("BOOL", json!([1])).contains("true or false"));
        assert!(one("BYTES", json!([1])).contains("a string"));
        assert!(one("FP64", json!(["1"])).contains("a number"));
        assert!(one("COMPLEX", json!([1])).contains("unknown datatype 'COMPLEX'"));
    }

    #[test]
    fn shapes_must_match_data_and_limits() {
        let e = err(
            json!({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3]}]}),
        );
        assert!(e.contains("holds 4 elements but 'data' has 3"), "{e}");
        let e = err(
            json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1, 2]}]}),
        );
        assert!(e.contains("more than the 1 elements"), "{e}");
        let e =
            err(json!({"inputs": [{"name": "x", "shape": [-1], "datatype": "FP64", "data": [1]}]}));
        assert!(e.contains("negative dimension"), "{e}");
        let huge = json!({"inputs": [{"name": "x", "shape": [1u64 << 40, 1u64 << 40], "datatype": "FP64", "data": []}]});
        assert!(err(huge).contains("more elements than the request limit"));
        let e = err(
            json!({"inputs": [{"name": "x", "shape": [1,1,1,1,1,1,1,1,1], "datatype": "FP64", "data": [1]}]}),
        );
        assert!(e.contains("9 dimensions"), "{e}");
        let e = err(json!({"inputs": []}));
        assert!(e.contains("no inputs"), "{e}");
        let e = err(
            json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}, {"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}]}),
        );
        assert!(e.contains("appears twice"), "{e}");
        let e = err(
            json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1], "colour": 1}]}),
        );
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_by_the_parser() {
        let deep = format!(
            "{{\"inputs\": [{{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP64\", \"data\": {}1{}}}]}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let e = decode_request(deep.as_bytes(), None, TensorLimits::default());
        assert!(matches!(e, Err(ServeError::BadRequest(m)) if m.contains("recursion")));
    }

    #[test]
    fn binary_tensors_round_trip_for_every_datatype() {
        for dt in Datatype::ALL {
            let values = match dt {
                Datatype::Bool => Values::Bool(vec![true, false, true]),
                Datatype::Uint8 | Datatype::Uint16 | Datatype::Uint32 | Datatype::Uint64 => {
                    Values::Uint(vec![0, 7, 200])
                }
                Datatype::Int8 | Datatype::Int16 | Datatype::Int32 | Datatype::Int64 => {
                    Values::Int(vec![-5, 0, 100])
                }
                Datatype::Fp16 | Datatype::Fp32 | Datatype::Fp64 => {
                    Values::Float(vec![-1.5, 0.25, 3.0])
                }
                Datatype::Bytes => Values::Bytes(vec![b"".to_vec(), b"ab".to_vec(), vec![0, 255]]),
            };
            let mut bin = Vec::new();
            write_binary(&values, dt, &mut bin);
            let header = serde_json::to_vec(&json!({
                "inputs": [{"name": "x", "shape": [3], "datatype": dt.name(),
                            "parameters": {"binary_data_size": bin.len()}}],
                "outputs": [{"name": "y", "parameters": {"binary_data": true}}]
            }))
            .unwrap_or_default();
            let n = header.len();
            let body = [header, bin].concat();
            let r = decode_request(&body, Some(n), TensorLimits::default())
                .unwrap_or_else(|e| panic!("{}: {e}", dt.name()));
            assert_eq!(r.inputs[0].values, values, "{}", dt.name());
            assert_eq!(
                r.outputs,
                vec![RequestedOutput {
                    name: "y".into(),
                    binary: true
                }]
            );
        }
    }

    #[test]
    fn bad_binary_data_is_refused() {
        let req = |size: usize, dt: &str, extra: &[u8]| {
            let header = serde_json::to_vec(&json!({
                "inputs": [{"name": "x", "shape": [2], "datatype": dt,
                            "parameters": {"binary_data_size": size}}]
            }))
            .unwrap_or_default();
            let n = header.len();
            decode_request(
                &[header, extra.to_vec()].concat(),
                Some(n),
                TensorLimits::default(),
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
        };
        assert!(req(8, "FP64", &[0; 8]).contains("take 16 bytes"));
        assert!(req(16, "FP64", &[0; 8]).contains("only 8 bytes"));
        assert!(req(16, "FP64", &[0; 20]).contains("4 bytes of binary data"));
        assert!(req(2, "BOOL", &[0, 2]).contains("byte 2"));
        assert!(req(6, "BYTES", &[1, 0, 0, 0, b'a', 9]).contains("no 4-byte length"));
        assert!(req(8, "BYTES", &[200, 0, 0, 0, b'a', 0, 0, 0]).contains("claims 200 bytes"));
        let e = decode_request(b"{}", Some(10), TensorLimits::default());
        assert!(
            matches!(e, Err(ServeError::BadRequest(m)) if m.contains("Inference-Header-Content-Length"))
        );
    }

    #[test]
    fn responses_encode_json_and_binary_outputs() {
        let r = InferResponse {
            model_name: "m".into(),
            model_version: "2".into(),
            id: Some("r1".into()),
            parameters: Map::new(),
            outputs: vec![
                (
                    Tensor {
                        name: "label".into(),
                        datatype: Datatype::Bytes,
                        shape: vec![2],
                        values: Values::Bytes(vec![b"a".to_vec(), b"b".to_vec()]),
                    },
                    false,
                ),
                (
                    Tensor {
                        name: "p".into(),
                        datatype: Datatype::Fp32,
                        shape: vec![2],
                        values: Values::Float(vec![0.5, 0.25]),
                    },
                    true,
                ),
            ],
        };
        let (body, header) = encode_response(&r);
        let n = header.unwrap_or(0);
        let json: Value = serde_json::from_slice(&body[..n]).unwrap_or_default();
        assert_eq!(json["outputs"][0]["data"], json!(["a", "b"]));
        assert_eq!(
            json["outputs"][1]["parameters"]["binary_data_size"],
            json!(8)
        );
        assert_eq!(json["id"], json!("r1"));
        let tail = &body[n..];
        assert_eq!(tail, [0.5f32.to_le_bytes(), 0.25f32.to_le_bytes()].concat());
    }
}
