//! MLflow's limits on keys, values and batch sizes, with its wording where clients rely on it.

use crate::error::{Error, Result};

pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
pub const MAX_BATCH_REQUEST_BYTES: usize = 1_000_000;
pub const MAX_ENTITY_KEY_LENGTH: usize = 250;
pub const MAX_PARAM_VALUE_LENGTH: usize = 6000;
pub const MAX_TAG_VALUE_LENGTH: usize = 8000;
pub const MAX_EXPERIMENT_TAG_VALUE_LENGTH: usize = 5000;
pub const MAX_REGISTRY_TAG_VALUE_LENGTH: usize = 100_000;
pub const MAX_EXPERIMENT_NAME_LENGTH: usize = 500;
pub const MAX_MODEL_NAME_LENGTH: usize = 256;
pub const MAX_RUN_NAME_LENGTH: usize = 250;
pub const MAX_DESCRIPTION_LENGTH: usize = 100_000;
pub const MAX_SEARCH_RESULTS: i64 = 50_000;
pub const MAX_METRIC_HISTORY_RESULTS: i64 = 25_000;

/// What kind of key is being checked, for the error message.
#[derive(Debug, Clone, Copy)]
pub enum KeyKind {
    Metric,
    Param,
    Tag,
}

impl KeyKind {
    fn noun(self) -> &'static str {
        match self {
            Self::Metric => "metric",
            Self::Param => "param",
            Self::Tag => "tag",
        }
    }
}

/// MLflow's key rule: alphanumerics, `_ - . space : /`, and no form that a file system would
/// resolve to another name (`a/../b`, `./a`, `/a`, `a//b`).
pub fn validate_key(kind: KeyKind, key: &str) -> Result<()> {
    let noun = kind.noun();
    if key.is_empty() {
        return Err(Error::invalid(format!(
            "Invalid {noun} name: ''. {noun} name must not be empty"
        )));
    }
    if key.len() > MAX_ENTITY_KEY_LENGTH {
        return Err(Error::invalid(format!(
            "{} '{}' had length {}, which exceeded length limit of {}",
            capitalize(noun),
            truncate(key, 64),
            key.len(),
            MAX_ENTITY_KEY_LENGTH
        )));
    }
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | ':' | '/');
    if !key.chars().all(allowed) {
        return Err(Error::invalid(format!(
            "Invalid {noun} name: '{}'. Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colon(:) and slashes (/).",
            truncate(key, 64)
        )));
    }
    let resolves_elsewhere = key.starts_with('/')
        || key
            .split('/')
            .any(|s| s == ".." || s == "." || s.is_empty());
    if resolves_elsewhere {
        return Err(Error::invalid(format!(
            "Invalid {noun} name: '{}'. Names may be treated as files in certain cases, and must not resolve to other names when treated as such.",
            truncate(key, 64)
        )));
    }
    Ok(())
}

/// A value's length limit, counted in characters as MLflow (Python) counts them.
pub fn validate_length(what: &str, key: &str, value: &str, limit: usize) -> Result<()> {
    let len = value.chars().count();
    if len > limit {
        return Err(Error::invalid(format!(
            "{what} '{}' had length {len}, which exceeded length limit of {limit}",
            truncate(key, 64)
        )));
    }
    Ok(())
}

/// A required string field: present and not empty.
pub fn required<'a>(field: &str, value: Option<&'a str>) -> Result<&'a str> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(Error::missing(field)),
    }
}

/// `max_results` checked against a ceiling; `None` gives the default.
pub fn max_results(value: Option<i64>, default: i64, ceiling: i64) -> Result<i64> {
    match value {
        None => Ok(default),
        Some(n) if n <= 0 => Err(Error::invalid(format!(
            "Invalid value {n} for parameter 'max_results' supplied. It must be a positive integer"
        ))),
        Some(n) if n > ceiling => Err(Error::invalid(format!(
            "Invalid value {n} for parameter 'max_results' supplied. It must be at most {ceiling}"
        ))),
        Some(n) => Ok(n),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// At most `n` characters of `s`, so an oversized input is never echoed back whole.
pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n).collect::<String>() + "..."
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in ["loss", "val/acc", "a b:c-d_e.f"] {
            validate_key(KeyKind::Metric, ok).unwrap();
        }
        for bad in ["", "a/../b", "/abs", "./x", "a//b", "x;drop", "a\0b"] {
            assert!(validate_key(KeyKind::Param, bad).is_err(), "{bad:?}");
        }
        assert!(validate_key(KeyKind::Tag, &"k".repeat(251)).is_err());
    }

    #[test]
    fn lengths_are_in_characters() {
        validate_length(
            "Param value",
            "k",
            &"é".repeat(6000),
            MAX_PARAM_VALUE_LENGTH,
        )
        .unwrap();
        let e = validate_length(
            "Param value",
            "k",
            &"é".repeat(6001),
            MAX_PARAM_VALUE_LENGTH,
        );
        assert!(e.unwrap_err().message.contains("6001"));
    }

    #[test]
    fn max_results_bounds() {
        assert_eq!(max_results(None, 100, 1000).unwrap(), 100);
        assert!(max_results(Some(0), 100, 1000).is_err());
        assert!(max_results(Some(1001), 100, 1000).is_err());
    }
}
