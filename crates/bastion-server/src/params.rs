//! Request parameters. MLflow's API takes them from the query string on GET and from a JSON
//! body otherwise (DELETE included), so both are merged into one map, and handlers read typed
//! fields from it with MLflow's error wording for anything missing or malformed.

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{Method, Request, StatusCode};
use bastion_core::model::KeyValue;
use bastion_core::{Error, ErrorCode, limits};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// The default cap on a JSON request body.
pub const DEFAULT_MAX_JSON_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Default, Clone)]
pub struct Params {
    map: Map<String, Value>,
    /// Size of the JSON body in bytes (0 for none), for per-route limits such as log-batch's.
    pub body_len: usize,
}

fn invalid_type(field: &str, want: &str, got: &Value) -> Error {
    let shown = match got {
        Value::String(s) => format!("'{}'", limits::truncate(s, 40)),
        other => limits::truncate(&other.to_string(), 40),
    };
    Error::invalid(format!(
        "Invalid value {shown} for parameter '{field}' supplied: expected {want}"
    ))
}

impl Params {
    pub fn from_map(map: Map<String, Value>) -> Self {
        Self { map, body_len: 0 }
    }

    /// The whole request as one typed value (a body with its own schema); the error names
    /// what did not fit.
    pub fn typed<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, Error> {
        serde_json::from_value(Value::Object(self.map.clone()))
            .map_err(|e| Error::invalid(format!("{what}: {e}")))
    }

    fn get(&self, field: &str) -> Option<&Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    pub fn opt_str(&self, field: &str) -> Result<Option<String>, Error> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            // The query string cannot repeat a scalar; take the first value as Flask does.
            Some(Value::Array(a)) if a.first().is_some_and(Value::is_string) => {
                Ok(a.first().and_then(Value::as_str).map(str::to_owned))
            }
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
            Some(other) => Err(invalid_type(field, "a string", other)),
        }
    }

    /// A required, non-empty string.
    pub fn str(&self, field: &str) -> Result<String, Error> {
        self.opt_str(field)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::missing(field))
    }

    /// The first present of several aliases (`run_id` / `run_uuid`).
    pub fn str_any(&self, fields: &[&str]) -> Result<String, Error> {
        for f in fields {
            if let Some(v) = self.opt_str(f)?.filter(|s| !s.is_empty()) {
                return Ok(v);
            }
        }
        Err(Error::missing(fields.first().copied().unwrap_or("?")))
    }

    pub fn opt_i64(&self, field: &str) -> Result<Option<i64>, Error> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| invalid_type(field, "an integer", &Value::Number(n.clone()))),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => s
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| invalid_type(field, "an integer", &Value::String(s.clone()))),
            Some(Value::Array(a)) if a.len() == 1 => {
                Self::from_map(Map::from_iter([(field.to_owned(), a[0].clone())])).opt_i64(field)
            }
            Some(other) => Err(invalid_type(field, "an integer", other)),
        }
    }

    pub fn i64(&self, field: &str) -> Result<i64, Error> {
        self.opt_i64(field)?.ok_or_else(|| Error::missing(field))
    }

    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>, Error> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(other) => Err(invalid_type(field, "a boolean", other)),
        }
    }

    /// A metric value: a JSON number, or protobuf JSON's "NaN" / "Infinity" / "-Infinity".
    pub fn metric_value(&self, field: &str) -> Result<f64, Error> {
        let v = self.get(field).ok_or_else(|| Error::missing(field))?;
        metric_value(field, v)
    }

    /// A list of strings; a single string counts as a list of one.
    pub fn str_list(&self, field: &str) -> Result<Vec<String>, Error> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    other => Err(invalid_type(field, "a list of strings", other)),
                })
                .collect(),
            Some(other) => Err(invalid_type(field, "a list of strings", other)),
        }
    }

    /// A list of `{"key", "value"}` objects (tags, params).
    pub fn kv_list(&self, field: &str) -> Result<Vec<KeyValue>, Error> {
        self.objects(field)?
            .iter()
            .map(|o| key_value(field, o))
            .collect()
    }

    /// A list of JSON objects.
    pub fn objects(&self, field: &str) -> Result<Vec<Params>, Error> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::Object(m) => Ok(Params::from_map(m.clone())),
                    other => Err(invalid_type(field, "a list of objects", other)),
                })
                .collect(),
            Some(other) => Err(invalid_type(field, "a list of objects", other)),
        }
    }

    /// Like [`Params::objects`], but moves the list out instead of copying it (large batches).
    pub fn take_objects(&mut self, field: &str) -> Result<Vec<Params>, Error> {
        match self.map.remove(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|i| match i {
                    Value::Object(m) => Ok(Params::from_map(m)),
                    other => Err(invalid_type(field, "a list of objects", &other)),
                })
                .collect(),
            Some(other) => Err(invalid_type(field, "a list of objects", &other)),
        }
    }

    pub fn object(&self, field: &str) -> Result<Option<Params>, Error> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Params::from_map(m.clone()))),
            Some(other) => Err(invalid_type(field, "an object", other)),
        }
    }
}

fn metric_value(field: &str, v: &Value) -> Result<f64, Error> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| invalid_type(field, "a number", v)),
        Value::String(s) => bastion_core::model::parse_metric_str(s)
            .ok_or_else(|| invalid_type(field, "a number", v)),
        other => Err(invalid_type(field, "a number", other)),
    }
}

fn key_value(field: &str, p: &Params) -> Result<KeyValue, Error> {
    let key = p
        .opt_str("key")?
        .filter(|k| !k.is_empty())
        .ok_or_else(|| Error::missing(&format!("{field}.key")))?;
    let value = p.opt_str("value")?.unwrap_or_default();
    Ok(KeyValue { key, value })
}

/// Parses `a=1&b=2&b=3` into `{"a": "1", "b": ["2", "3"]}`.
fn query_map(query: &str) -> Map<String, Value> {
    let mut map = Map::new();
    for (k, v) in form_urlencoded_pairs(query) {
        match map.get_mut(&k) {
            None => {
                map.insert(k, Value::String(v));
            }
            Some(Value::Array(a)) => a.push(Value::String(v)),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, Value::String(v)]);
            }
        }
    }
    map
}

fn form_urlencoded_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        (decode(k), decode(v))
    })
}

impl Params {
    /// The query string alone (GET requests, streamed uploads).
    pub fn from_query(query: Option<&str>) -> Self {
        Self {
            map: query_map(query.unwrap_or("")),
            body_len: 0,
        }
    }

    /// The query string merged with an HTML form's body (`x-www-form-urlencoded`; the body
    /// wins on a repeated name).
    pub fn parse_form(query: Option<&str>, body: &[u8]) -> Self {
        let mut params = Self::from_query(query);
        params.body_len = body.len();
        params.map.extend(query_map(&String::from_utf8_lossy(body)));
        params
    }

    /// The query string merged with a JSON object body (the body wins on a repeated name).
    pub fn parse(query: Option<&str>, body: &[u8]) -> Result<Self, ApiError> {
        let mut params = Self::from_query(query);
        params.body_len = body.len();
        if body.iter().any(|b| !b.is_ascii_whitespace()) {
            let value: Value = serde_json::from_slice(body).map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidParameterValue,
                    format!("Malformed JSON request body: {e}"),
                )
            })?;
            match value {
                Value::Object(body) => params.map.extend(body),
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidParameterValue,
                        "Malformed request body: expected a JSON object",
                    ));
                }
            }
        }
        Ok(params)
    }
}

/// Handlers receive the parameters the auth layer already read (it needs them to find the
/// resource a request acts on); the body is read once.
impl FromRequest<AppState> for Params {
    type Rejection = ApiError;

    async fn from_request(
        mut req: Request<Body>,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(p) = req.extensions_mut().remove::<Params>() {
            return Ok(p);
        }
        if req.method() == Method::GET || req.method() == Method::HEAD {
            return Ok(Self::from_query(req.uri().query()));
        }
        let limit = state.config.max_json_bytes;
        let query = req.uri().query().map(str::to_owned);
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::RequestLimitExceeded,
                    format!("Request body exceeds the limit of {limit} bytes"),
                )
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
            })?;
        Self::parse(query.as_deref(), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings() {
        let m = query_map("experiment_ids=1&experiment_ids=2&name=a%20b&x=c+d");
        let p = Params::from_map(m);
        assert_eq!(p.str_list("experiment_ids").unwrap(), vec!["1", "2"]);
        assert_eq!(p.str("name").unwrap(), "a b");
        assert_eq!(p.str("x").unwrap(), "c d");
    }

    #[test]
    fn typed_errors() {
        let p = Params::from_map(
            serde_json::from_str(r#"{"max_results": "abc", "value": "NaN", "v": {}, "tags": [1]}"#)
                .unwrap(),
        );
        assert!(
            p.opt_i64("max_results")
                .unwrap_err()
                .message
                .contains("'max_results'")
        );
        assert!(p.metric_value("value").unwrap().is_nan());
        assert!(p.metric_value("v").is_err());
        assert!(p.kv_list("tags").is_err());
        assert_eq!(
            p.str("missing").unwrap_err().message,
            Error::missing("missing").message
        );
    }
}
