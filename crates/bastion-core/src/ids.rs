//! Identifier formats. Runs and logged models get random 128-bit ids in MLflow's textual form;
//! experiments get sequential integers, which MLflow clients expect as strings.

use crate::error::{Error, Result};

/// A run id as MLflow writes it: 32 lowercase hex characters.
pub fn is_run_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A logged model id: `m-` and 32 lowercase hex characters.
pub fn is_logged_model_id(s: &str) -> bool {
    s.strip_prefix("m-").is_some_and(is_run_id)
}

/// Experiment ids are non-negative integers in decimal.
pub fn parse_experiment_id(s: &str) -> Result<i64> {
    s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
        Error::invalid(format!(
            "Invalid experiment ID: '{}'. Experiment IDs are non-negative integers.",
            crate::limits::truncate(s, 64)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert!(is_run_id("346d85c6ca1443cbbdedc35b13406a11"));
        assert!(!is_run_id("nope"));
        assert!(is_logged_model_id("m-346d85c6ca1443cbbdedc35b13406a11"));
        assert_eq!(parse_experiment_id("12").unwrap(), 12);
        assert!(parse_experiment_id("-1").is_err());
        assert!(parse_experiment_id("1 OR 1=1").is_err());
    }
}
