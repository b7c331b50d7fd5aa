//! What makes a step's result reusable: its cache key is the SHA-256 of its kind, its
//! parameters after references were resolved (so an upstream change that changes an output
//! changes the key), the digests of the files it reads and the Bastion version. The state
//! of the last run keeps, per step, the key and the outputs it gave.

use std::collections::BTreeMap;

use bastion_core::Digest;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::spec::Kind;

/// The key of a step about to run.
pub fn cache_key(
    kind: Kind,
    params: &Map<String, Value>,
    files: &BTreeMap<String, Digest>,
) -> String {
    let doc = serde_json::json!({
        "kind": kind.as_str(),
        "params": canonical(&Value::Object(params.clone())),
        "files": files.iter().map(|(k, d)| (k.clone(), Value::String(d.hex()))).collect::<Map<_, _>>(),
        "bastion": env!("CARGO_PKG_VERSION"),
    });
    // Canonical: object keys sorted at every level, no whitespace.
    Digest::of(canonical(&doc).to_string().as_bytes()).hex()
}

fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, Value> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            let mut out = Map::new();
            for (k, v) in sorted {
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// One step's last successful result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub key: String,
    pub outputs: Map<String, Value>,
    /// When it finished (ms since the epoch).
    pub finished: i64,
}

/// The state a pipeline's last runs left.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub steps: BTreeMap<String, StepRecord>,
}

impl State {
    /// The outputs of `step` if its last result has exactly this key.
    pub fn reusable(&self, step: &str, key: &str) -> Option<&Map<String, Value>> {
        self.steps
            .get(step)
            .filter(|r| r.key == key)
            .map(|r| &r.outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_ignore_key_order_and_see_every_change() {
        let p = |v: Value| v.as_object().cloned().unwrap_or_default();
        let files = BTreeMap::from([("a.csv".to_owned(), Digest::of(b"1"))]);
        let a = cache_key(
            Kind::Train,
            &p(json!({"x": 1, "y": {"b": 2, "a": 1}})),
            &files,
        );
        let b = cache_key(
            Kind::Train,
            &p(json!({"y": {"a": 1, "b": 2}, "x": 1})),
            &files,
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            cache_key(
                Kind::Train,
                &p(json!({"x": 2, "y": {"b": 2, "a": 1}})),
                &files
            )
        );
        assert_ne!(
            a,
            cache_key(
                Kind::Evaluate,
                &p(json!({"x": 1, "y": {"b": 2, "a": 1}})),
                &files
            )
        );
        let other = BTreeMap::from([("a.csv".to_owned(), Digest::of(b"2"))]);
        assert_ne!(
            a,
            cache_key(
                Kind::Train,
                &p(json!({"x": 1, "y": {"b": 2, "a": 1}})),
                &other
            )
        );
    }
}
