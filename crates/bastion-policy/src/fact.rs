//! The facts a rule may name, with the kind of value each holds. The catalog is fixed so a
//! policy is checked when it is read: an unknown name or a comparison its kind cannot make
//! is refused then, with its line.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A fact's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Number(f64),
    Text(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::Text(s) => write!(f, "\"{s}\""),
        }
    }
}

/// The facts known about one model: name → value. A fact with no evidence behind it is
/// absent, never a default.
pub type Facts = BTreeMap<String, Value>;

/// Scan severities from none to worst; `<` and `>` on a severity fact use this order.
pub const SEVERITIES: [&str; 6] = ["NONE", "INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL"];

/// What kind of value a fact holds, and so which comparisons a rule may make on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactKind {
    Number,
    Bool,
    /// One of a fixed set of words; only `=`, `!=` and `in` apply.
    Word(&'static [&'static str]),
    /// A scan severity ([`SEVERITIES`]); ordered.
    Severity,
}

impl FactKind {
    pub fn describe(self) -> String {
        match self {
            FactKind::Number => "a number".into(),
            FactKind::Bool => "true or false".into(),
            FactKind::Word(words) => format!("one of {}", quoted(words)),
            FactKind::Severity => format!("a severity ({})", quoted(&SEVERITIES)),
        }
    }
}

fn quoted(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One entry of the catalog, as documentation lists it.
pub struct FactSpec {
    pub name: &'static str,
    pub kind: FactKind,
    pub meaning: &'static str,
}

/// Facts with a fixed name.
pub const CATALOG: &[FactSpec] = &[
    FactSpec {
        name: "dataset.validation",
        kind: FactKind::Word(&["pass", "fail"]),
        meaning: "the latest constraint validation of every training dataset: pass only if all passed",
    },
    FactSpec {
        name: "dataset.pii.columns",
        kind: FactKind::Number,
        meaning: "columns holding personal data, summed over the training datasets",
    },
    FactSpec {
        name: "dataset.poison",
        kind: FactKind::Word(&["clean", "findings"]),
        meaning: "the latest poisoning check of the training datasets: findings if any flagged rows",
    },
    FactSpec {
        name: "dataset.count",
        kind: FactKind::Number,
        meaning: "training datasets recorded in the model's provenance",
    },
    FactSpec {
        name: "model.scan.max_severity",
        kind: FactKind::Severity,
        meaning: "the worst finding of the model-file scanner over every file (NONE when clean)",
    },
    FactSpec {
        name: "model.scan.findings",
        kind: FactKind::Number,
        meaning: "findings of the model-file scanner over every file",
    },
    FactSpec {
        name: "model.signature",
        kind: FactKind::Word(&["valid", "invalid", "missing"]),
        meaning: "the signature over the model's files verifies and the files still match it",
    },
    FactSpec {
        name: "model.quarantined",
        kind: FactKind::Bool,
        meaning: "the model version is quarantined",
    },
    FactSpec {
        name: "provenance.valid",
        kind: FactKind::Bool,
        meaning: "signed SLSA provenance is recorded for the model's digest and verifies",
    },
    FactSpec {
        name: "provenance.dataset_validated",
        kind: FactKind::Bool,
        meaning: "the provenance names at least one dataset and each has a passing validation",
    },
];

/// Families of facts named by a prefix: everything under it is a number.
pub const FAMILIES: &[(&str, &str)] = &[
    (
        "model.metrics.",
        "the model's training run metrics (latest value), e.g. model.metrics.auc",
    ),
    (
        "redteam.",
        "red-team robustness, e.g. redteam.pgd.eps_0_1.robust_accuracy or redteam.eps_0_1.robust_accuracy (worst attack)",
    ),
    (
        "privacy.",
        "privacy attacks: privacy.membership_auc, privacy.extraction_fidelity",
    ),
    (
        "poisoning.",
        "label-flip poisoning: poisoning.max_accuracy_drop",
    ),
    (
        "defence.",
        "adversarially trained model: defence.pgd.eps_0_1.robust_accuracy",
    ),
];

/// The kind of the fact `name`, if the catalog knows it.
pub fn kind_of(name: &str) -> Option<FactKind> {
    if let Some(spec) = CATALOG.iter().find(|s| s.name == name) {
        return Some(spec.kind);
    }
    FAMILIES
        .iter()
        .any(|(prefix, _)| {
            name.len() > prefix.len()
                && name.starts_with(prefix)
                && !name.ends_with('.')
                && !name.contains("..")
        })
        .then_some(FactKind::Number)
}

/// A short list of what may be named, for an "unknown fact" error.
pub fn known_names() -> String {
    let mut names: Vec<String> = CATALOG.iter().map(|s| s.name.to_owned()).collect();
    names.extend(FAMILIES.iter().map(|(p, _)| format!("{p}*")));
    names.join(", ")
}

/// The position of `severity` in [`SEVERITIES`], case-insensitive.
pub fn severity_rank(severity: &str) -> Option<usize> {
    SEVERITIES
        .iter()
        .position(|s| s.eq_ignore_ascii_case(severity))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_and_families_resolve() {
        assert_eq!(
            kind_of("model.signature"),
            Some(FactKind::Word(&["valid", "invalid", "missing"]))
        );
        assert_eq!(kind_of("model.metrics.auc"), Some(FactKind::Number));
        assert_eq!(
            kind_of("redteam.pgd.eps_0_1.robust_accuracy"),
            Some(FactKind::Number)
        );
        assert_eq!(kind_of("model.metrics."), None);
        assert_eq!(kind_of("redteam..x"), None);
        assert_eq!(kind_of("model.signatures"), None);
        assert_eq!(severity_rank("high"), Some(4));
        assert_eq!(severity_rank("SEVERE"), None);
    }
}
