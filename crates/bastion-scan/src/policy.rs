//! Which globals a model file may import: an allow-list first, a list of well-known dangerous
//! callables, and MEDIUM for everything else. The lists are data (`policy/default.toml`),
//! extended by users' files of the same layout.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::finding::Severity;

const DEFAULT_POLICY: &str = include_str!("../policy/default.toml");
/// A dotted name with more parts than this is refused outright.
const MAX_NAME_PARTS: usize = 32;

#[derive(Debug, thiserror::Error)]
#[error("invalid scan policy {source_name}: {message}")]
pub struct PolicyError {
    pub source_name: String,
    pub message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    allow: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    critical: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    high: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    medium: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    dunder: Dunder,
    #[serde(default)]
    tensorflow: TensorflowOps,
}

/// TensorFlow op names by severity.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorflowOps {
    #[serde(default)]
    critical: Vec<String>,
    #[serde(default)]
    high: Vec<String>,
    #[serde(default)]
    medium: Vec<String>,
    #[serde(default)]
    info: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Dunder {
    #[serde(default)]
    safe: Vec<String>,
}

/// Names per module; `*` in the set means every name.
type Table = BTreeMap<String, BTreeSet<String>>;

/// The verdict on one global.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Not allowed, with how bad and why.
    Flagged {
        severity: Severity,
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct Policy {
    allow: Table,
    /// Most severe first.
    deny: Vec<(Severity, Table)>,
    safe_dunders: BTreeSet<String>,
    /// TensorFlow ops worth reporting, with their severity.
    tensorflow_ops: BTreeMap<String, Severity>,
}

fn merge(into: &mut Table, from: BTreeMap<String, Vec<String>>) {
    for (module, names) in from {
        into.entry(module).or_default().extend(names);
    }
}

impl Policy {
    /// Bastion's built-in lists (parsed once per process).
    pub fn builtin() -> Self {
        static BUILTIN: std::sync::LazyLock<Policy> =
            std::sync::LazyLock::new(Policy::parse_builtin);
        BUILTIN.clone()
    }

    fn parse_builtin() -> Self {
        let mut p = Self {
            allow: Table::new(),
            deny: vec![
                (Severity::Critical, Table::new()),
                (Severity::High, Table::new()),
                (Severity::Medium, Table::new()),
            ],
            safe_dunders: BTreeSet::new(),
            tensorflow_ops: BTreeMap::new(),
        };
        // The embedded file is checked by a unit test; an error here cannot happen at run time.
        let _ = p.extend("built-in policy", DEFAULT_POLICY);
        p
    }

    /// Adds the lists of a policy file (TOML, same layout as the built-in one).
    pub fn extend(&mut self, source_name: &str, text: &str) -> Result<(), PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError {
            source_name: source_name.to_owned(),
            message: e.to_string(),
        })?;
        merge(&mut self.allow, file.allow);
        for (severity, table) in [
            (Severity::Critical, file.critical),
            (Severity::High, file.high),
            (Severity::Medium, file.medium),
        ] {
            if let Some((_, t)) = self.deny.iter_mut().find(|(s, _)| *s == severity) {
                merge(t, table);
            }
        }
        self.safe_dunders.extend(file.dunder.safe);
        let tf = file.tensorflow;
        for (severity, ops) in [
            (Severity::Critical, tf.critical),
            (Severity::High, tf.high),
            (Severity::Medium, tf.medium),
            (Severity::Info, tf.info),
        ] {
            for op in ops {
                // An op listed twice keeps its most severe rating.
                let s = self.tensorflow_ops.entry(op).or_insert(severity);
                *s = (*s).max(severity);
            }
        }
        Ok(())
    }

    /// How bad a TensorFlow op is, if it is on a list.
    pub fn tensorflow_op(&self, op: &str) -> Option<Severity> {
        self.tensorflow_ops.get(op).copied()
    }

    fn allowed(&self, module: &str, name: &str) -> bool {
        self.allow
            .get(module)
            .is_some_and(|names| names.contains(name) || names.contains("*"))
    }

    /// The first deny list naming `module.name`: the module itself (or, for `*`, any module
    /// under it), or a module whose next part below is a listed name (`torch.hub.load`
    /// matches `torch = ["hub"]`).
    fn denied(&self, module: &str, name: &str) -> Option<(Severity, String)> {
        let parts: Vec<&str> = module.split('.').collect();
        for (severity, table) in &self.deny {
            for i in 1..=parts.len() {
                let listed = parts[..i].join(".");
                let Some(names) = table.get(&listed) else {
                    continue;
                };
                let below = parts.get(i).copied().unwrap_or(name);
                if names.contains("*") || names.contains(below) {
                    return Some((*severity, format!("{listed}.{below}")));
                }
            }
        }
        None
    }

    /// Classifies the global `module.name` as a pickle would import it (`name` may be dotted:
    /// protocol 4 resolves it attribute by attribute).
    pub fn classify(&self, module: &str, name: &str) -> Verdict {
        let parts: Vec<&str> = module.split('.').chain(name.split('.')).collect();
        if parts.len() > MAX_NAME_PARTS || parts.iter().any(|p| p.is_empty()) {
            return Verdict::Flagged {
                severity: Severity::Critical,
                reason: "a malformed global name".into(),
            };
        }
        let module_parts = module.split('.').count();
        if let Some(d) = parts[module_parts..]
            .iter()
            .find(|p| p.starts_with("__") && p.ends_with("__") && !self.safe_dunders.contains(**p))
        {
            return Verdict::Flagged {
                severity: Severity::Critical,
                reason: format!("reaches the interpreter internal '{d}' through an attribute"),
            };
        }
        // Every way of reading the attribute path as module + name: a name on a deny list is
        // dangerous however it is reached (`numpy` . `testing._private.utils.os.system`).
        // Starts: the module itself, and each attribute (an attribute may be a module).
        let mut worst: Option<(Severity, String)> = None;
        let starts = std::iter::once(0).chain(module_parts..parts.len());
        for start in starts {
            for split in start + 1..parts.len() {
                let m = parts[start..split].join(".");
                if let Some((s, what)) = self.denied(&m, parts[split])
                    && worst.as_ref().is_none_or(|(w, _)| s > *w)
                {
                    worst = Some((s, what));
                }
            }
        }
        if let Some((severity, what)) = worst {
            return Verdict::Flagged {
                severity,
                reason: format!("{what} is a known dangerous callable"),
            };
        }
        if self.allowed(module, name) {
            return Verdict::Allowed;
        }
        let dotted = name.contains('.');
        Verdict::Flagged {
            severity: Severity::Medium,
            reason: if dotted {
                "an attribute path not on the allow-list".into()
            } else {
                "not on the allow-list of globals known to be safe in model files".into()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sev(p: &Policy, m: &str, n: &str) -> Option<Severity> {
        match p.classify(m, n) {
            Verdict::Allowed => None,
            Verdict::Flagged { severity, .. } => Some(severity),
        }
    }

    #[test]
    fn the_builtin_policy_parses() {
        let mut p = Policy::builtin();
        p.extend("built-in policy", DEFAULT_POLICY).unwrap();
        assert!(p.allow.len() > 50);
    }

    #[test]
    fn allow_list_first_then_dangerous_then_medium() {
        let p = Policy::builtin();
        assert_eq!(sev(&p, "collections", "OrderedDict"), None);
        assert_eq!(sev(&p, "torch._utils", "_rebuild_tensor_v2"), None);
        assert_eq!(sev(&p, "numpy.core.multiarray", "_reconstruct"), None);
        // What scikit-learn 1.5's gradient boosting pickles hold (seen in bench-scan's venv).
        assert_eq!(sev(&p, "_loss", "__pyx_unpickle_CyHalfBinomialLoss"), None);
        assert_eq!(sev(&p, "_loss", "system"), Some(Severity::Medium));
        for (m, n) in [
            ("os", "system"),
            ("posix", "system"),
            ("nt", "system"),
            ("subprocess", "Popen"),
            ("builtins", "eval"),
            ("builtins", "getattr"),
            ("__builtin__", "__import__"),
            ("runpy", "run_path"),
            ("importlib", "import_module"),
            ("pkgutil", "resolve_name"),
            ("marshal", "loads"),
            ("types", "FunctionType"),
            ("operator", "attrgetter"),
            ("socket", "create_connection"),
            ("webbrowser", "open"),
            ("ctypes", "CDLL"),
            ("os.path", "join"),
            ("torch", "load"),
            ("torch.storage", "_load_from_bytes"),
            ("torch.hub", "load"),
            ("timeit", "timeit"),
        ] {
            assert_eq!(sev(&p, m, n), Some(Severity::Critical), "{m}.{n}");
        }
        assert_eq!(sev(&p, "mypackage.models", "Net"), Some(Severity::Medium));
        assert_eq!(sev(&p, "torch", "nn"), Some(Severity::Medium));
        // A module path that merely contains a listed name is not that module.
        assert_eq!(sev(&p, "numpy.random._pickle", "__randomstate_ctor"), None);
    }

    #[test]
    fn attribute_tricks_are_caught() {
        let p = Policy::builtin();
        assert_eq!(
            sev(&p, "torch._utils", "_rebuild_tensor.__globals__"),
            Some(Severity::Critical)
        );
        assert_eq!(
            sev(&p, "collections", "OrderedDict.__init__.__globals__"),
            Some(Severity::Critical)
        );
        assert_eq!(
            sev(&p, "numpy", "testing._private.utils.os.system"),
            Some(Severity::Critical)
        );
        assert_eq!(sev(&p, "numpy", "ndarray.x"), Some(Severity::Medium));
        assert_eq!(sev(&p, "os", ""), Some(Severity::Critical));
    }

    #[test]
    fn user_lists_extend_the_builtin_ones_and_cannot_allow_a_dangerous_callable() {
        let mut p = Policy::builtin();
        p.extend(
            "mine.toml",
            "[allow]\n\"mypackage.models\" = [\"Net\"]\n\"os\" = [\"system\"]\n[high]\n\"yaml\" = [\"load\"]\n",
        )
        .unwrap();
        assert_eq!(sev(&p, "mypackage.models", "Net"), None);
        assert_eq!(sev(&p, "os", "system"), Some(Severity::Critical));
        assert_eq!(sev(&p, "yaml", "load"), Some(Severity::High));
        let err = p.extend("bad.toml", "[allow]\nx = 1\n").unwrap_err();
        assert!(err.to_string().contains("bad.toml"), "{err}");
    }
}
