//! The pipeline file:
//!
//! ```toml
//! name = "breast-cancer"
//! experiment = "breast-cancer"        # where the pipeline's runs go (default: the name)
//!
//! [[step]]
//! id = "ingest"
//! kind = "ingest"
//! path = "data/breast_cancer.csv"     # relative to the pipeline file
//! name = "breast-cancer"
//!
//! [[step]]
//! id = "features"
//! kind = "transform"                  # SQL over versions as tables
//! inputs = { raw = "${ingest.dataset}" }
//! sql = "SELECT *, a * b AS ab FROM raw"
//! name = "breast-cancer-features"
//!
//! [[step]]
//! id = "train"
//! kind = "train"
//! dataset = "${features.dataset}"     # an output of another step: a dependency
//! target = "diagnosis"
//! model = "gbdt"
//! register = "cancer-gbdt"
//! needs = ["validate"]                # a dependency without a reference
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use crate::error::PipelineError;
use crate::refs;

/// What a step does. Each kind takes its own parameters and gives its own outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Ingest,
    Transform,
    Split,
    Validate,
    Profile,
    Pii,
    Train,
    Tune,
    Register,
    Evaluate,
    Scan,
    Redteam,
    Sign,
    Gate,
    Deploy,
    Command,
}

/// A kind's parameters: required, then optional.
struct KindSpec {
    kind: Kind,
    name: &'static str,
    required: &'static [&'static str],
    optional: &'static [&'static str],
    outputs: &'static [&'static str],
}

const KINDS: &[KindSpec] = &[
    KindSpec {
        kind: Kind::Ingest,
        name: "ingest",
        required: &["name"],
        optional: &["path", "postgres", "query", "format"],
        outputs: &["dataset", "digest", "rows"],
    },
    KindSpec {
        kind: Kind::Transform,
        name: "transform",
        required: &["inputs", "name"],
        optional: &["sql", "sql_file", "timeout"],
        outputs: &["dataset", "digest", "rows"],
    },
    KindSpec {
        kind: Kind::Split,
        name: "split",
        required: &["dataset"],
        optional: &["test", "validation", "stratify", "seed", "name"],
        outputs: &["dataset", "train", "test", "validation"],
    },
    KindSpec {
        kind: Kind::Validate,
        name: "validate",
        required: &["dataset", "constraints"],
        optional: &[],
        outputs: &["dataset", "passed"],
    },
    KindSpec {
        kind: Kind::Profile,
        name: "profile",
        required: &["dataset"],
        optional: &[],
        outputs: &["dataset"],
    },
    KindSpec {
        kind: Kind::Pii,
        name: "pii",
        required: &["dataset"],
        optional: &["max_columns"],
        outputs: &["dataset", "pii_columns"],
    },
    KindSpec {
        kind: Kind::Train,
        name: "train",
        required: &["dataset", "target", "model", "register"],
        optional: &["params", "features", "test_fraction", "seed", "task"],
        outputs: &["model", "name", "version", "run_id"],
    },
    KindSpec {
        kind: Kind::Tune,
        name: "tune",
        required: &["dataset", "target", "model", "register", "space"],
        optional: &[
            "search",
            "metric",
            "trials",
            "eta",
            "min_rows",
            "params",
            "features",
            "test_fraction",
            "seed",
            "task",
        ],
        outputs: &[
            "model",
            "name",
            "version",
            "run_id",
            "best_params",
            "best_score",
        ],
    },
    KindSpec {
        kind: Kind::Register,
        name: "register",
        required: &["path", "name"],
        optional: &["features", "classes", "prediction_output", "scores"],
        outputs: &["model", "name", "version", "run_id"],
    },
    KindSpec {
        kind: Kind::Evaluate,
        name: "evaluate",
        required: &["model", "dataset"],
        optional: &["slice"],
        outputs: &["model"],
    },
    KindSpec {
        kind: Kind::Scan,
        name: "scan",
        required: &["model"],
        optional: &[],
        outputs: &["model", "max_severity"],
    },
    KindSpec {
        kind: Kind::Redteam,
        name: "redteam",
        required: &["model", "dataset"],
        optional: &[
            "checks",
            "eps",
            "norm",
            "max_rows",
            "pgd_steps",
            "hsj_iterations",
            "square_iterations",
            "immutable",
            "seed",
        ],
        outputs: &["model", "run_id"],
    },
    KindSpec {
        kind: Kind::Sign,
        name: "sign",
        required: &["model"],
        optional: &[],
        outputs: &["model", "root_digest"],
    },
    KindSpec {
        kind: Kind::Gate,
        name: "gate",
        required: &["model", "policy"],
        optional: &[],
        outputs: &["model", "passed", "evidence"],
    },
    KindSpec {
        kind: Kind::Deploy,
        name: "deploy",
        required: &["model"],
        optional: &["alias", "canary"],
        outputs: &["model", "alias"],
    },
    KindSpec {
        kind: Kind::Command,
        name: "command",
        required: &["run"],
        optional: &["inputs", "outputs", "env"],
        outputs: &["exit_code"],
    },
];

impl Kind {
    fn spec(self) -> &'static KindSpec {
        // Every kind has an entry; the first is a harmless fallback the match never needs.
        KINDS.iter().find(|k| k.kind == self).unwrap_or(&KINDS[0])
    }

    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// The outputs a step of this kind gives.
    pub fn outputs(self) -> &'static [&'static str] {
        self.spec().outputs
    }

    fn parse(s: &str) -> Option<Kind> {
        KINDS.iter().find(|k| k.name == s).map(|k| k.kind)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: String,
    pub kind: Kind,
    /// Every parameter except `id`, `kind` and `needs`, as JSON.
    pub params: Map<String, Value>,
    /// The steps this one depends on: `needs` and every step its parameters refer to.
    pub after: BTreeSet<String>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub name: String,
    pub experiment: String,
    /// In an order where every step comes after the steps it depends on (file order among
    /// independent steps).
    pub steps: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    name: String,
    experiment: Option<String>,
    #[serde(default)]
    step: Vec<Spanned<toml::Table>>,
}

fn line_of(text: &str, offset: usize) -> usize {
    let before = text.get(..offset).unwrap_or(text);
    before.matches('\n').count() + 1
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Pipeline {
    pub fn parse(text: &str) -> Result<Self, PipelineError> {
        let file: PipelineFile = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_owned();
            match e.span() {
                Some(span) => {
                    PipelineError::Toml(format!("line {}: {message}", line_of(text, span.start)))
                }
                None => PipelineError::Toml(message),
            }
        })?;
        if !valid_id(&file.name) {
            return Err(PipelineError::Invalid(format!(
                "pipeline name '{}' must be 1 to 64 letters, digits, '_' or '-'",
                file.name
            )));
        }
        if file.step.is_empty() {
            return Err(PipelineError::Invalid(
                "the pipeline has no steps: add [[step]] tables".into(),
            ));
        }
        let mut steps = Vec::new();
        for table in &file.step {
            steps.push(step(line_of(text, table.span().start), table.get_ref())?);
        }
        let ids: BTreeMap<&str, &Step> = steps.iter().map(|s| (s.id.as_str(), s)).collect();
        if ids.len() != steps.len() {
            let mut seen = BTreeSet::new();
            for s in &steps {
                if !seen.insert(&s.id) {
                    return Err(err(s, format!("another step is already called '{}'", s.id)));
                }
            }
        }
        for s in &steps {
            for dep in &s.after {
                let Some(other) = ids.get(dep.as_str()) else {
                    return Err(err(
                        s,
                        format!("refers to step '{dep}', which does not exist"),
                    ));
                };
                if dep == &s.id {
                    return Err(err(s, "refers to itself".into()));
                }
                let _ = other;
            }
            for r in refs::find_in(&Value::Object(s.params.clone())).map_err(|m| err(s, m))? {
                let Some(other) = ids.get(r.step.as_str()) else {
                    continue;
                };
                if !other.kind.outputs().contains(&r.output.as_str()) {
                    return Err(err(
                        s,
                        format!(
                            "refers to '${{{}.{}}}', but a {} step's outputs are {}",
                            r.step,
                            r.output,
                            other.kind.as_str(),
                            other.kind.outputs().join(", ")
                        ),
                    ));
                }
            }
        }
        let steps = order(steps)?;
        Ok(Pipeline {
            experiment: file.experiment.unwrap_or_else(|| file.name.clone()),
            name: file.name,
            steps,
        })
    }

    /// The steps that depend on `id`, directly or not.
    pub fn dependents(&self, id: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::from([id.to_owned()]);
        // Steps are in dependency order, so one pass finds every descendant.
        for s in &self.steps {
            if s.after.iter().any(|d| out.contains(d)) {
                out.insert(s.id.clone());
            }
        }
        out.remove(id);
        out
    }
}

fn err(s: &Step, message: String) -> PipelineError {
    PipelineError::Step {
        line: s.line,
        step: s.id.clone(),
        message,
    }
}

fn step(line: usize, table: &toml::Table) -> Result<Step, PipelineError> {
    let fail = |id: &str, message: String| PipelineError::Step {
        line,
        step: id.to_owned(),
        message,
    };
    let id = match table.get("id") {
        Some(toml::Value::String(id)) if valid_id(id) => id.clone(),
        Some(other) => {
            return Err(fail(
                "?",
                format!("id {other} must be 1 to 64 letters, digits, '_' or '-'"),
            ));
        }
        None => return Err(fail("?", "every step needs an id".into())),
    };
    let kind = match table.get("kind") {
        Some(toml::Value::String(k)) => Kind::parse(k).ok_or_else(|| {
            fail(
                &id,
                format!(
                    "unknown kind '{k}'; kinds are {}",
                    KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                ),
            )
        })?,
        _ => return Err(fail(&id, "needs a kind (a string)".into())),
    };
    let spec = kind.spec();
    let mut after = BTreeSet::new();
    if let Some(needs) = table.get("needs") {
        let list = needs
            .as_array()
            .ok_or_else(|| fail(&id, "needs must be a list of step ids".into()))?;
        for n in list {
            let n = n
                .as_str()
                .ok_or_else(|| fail(&id, "needs must be a list of step ids".into()))?;
            after.insert(n.to_owned());
        }
    }
    let mut params = Map::new();
    for (k, v) in table {
        if matches!(k.as_str(), "id" | "kind" | "needs") {
            continue;
        }
        if !spec.required.contains(&k.as_str()) && !spec.optional.contains(&k.as_str()) {
            return Err(fail(
                &id,
                format!(
                    "a {} step has no parameter '{k}'; it takes {}",
                    spec.name,
                    spec.required
                        .iter()
                        .chain(spec.optional)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let json = serde_json::to_value(v).map_err(|e| fail(&id, format!("{k}: {e}")))?;
        params.insert(k.clone(), json);
    }
    for r in spec.required {
        if !params.contains_key(*r) {
            return Err(fail(&id, format!("a {} step needs '{r}'", spec.name)));
        }
    }
    for r in refs::find_in(&Value::Object(params.clone())).map_err(|m| fail(&id, m))? {
        after.insert(r.step);
    }
    Ok(Step {
        id,
        kind,
        params,
        after,
        line,
    })
}

/// Kahn's algorithm, taking the earliest ready step in file order; a cycle is named.
fn order(steps: Vec<Step>) -> Result<Vec<Step>, PipelineError> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut left: Vec<Step> = steps;
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        match left
            .iter()
            .position(|s| s.after.iter().all(|d| done.contains(d)))
        {
            Some(i) => {
                let s = left.remove(i);
                done.insert(s.id.clone());
                out.push(s);
            }
            None => {
                let cycle = cycle_in(&left);
                return Err(PipelineError::Step {
                    line: left[0].line,
                    step: left[0].id.clone(),
                    message: format!("the steps depend on each other in a cycle: {cycle}"),
                });
            }
        }
    }
    Ok(out)
}

/// One cycle among steps none of which can run, as `a → b → a`.
fn cycle_in(left: &[Step]) -> String {
    let by_id: BTreeMap<&str, &Step> = left.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut path: Vec<&str> = vec![left[0].id.as_str()];
    loop {
        let last = by_id[path[path.len() - 1]];
        let Some(next) = last.after.iter().find(|d| by_id.contains_key(d.as_str())) else {
            return path.join(" → ");
        };
        if let Some(at) = path.iter().position(|p| *p == next) {
            let mut cycle: Vec<&str> = path[at..].to_vec();
            cycle.push(next);
            return cycle.join(" → ");
        }
        path.push(next);
    }
}
