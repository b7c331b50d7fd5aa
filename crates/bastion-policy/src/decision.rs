//! Evaluating a policy against the facts about one model.

use serde::{Deserialize, Serialize};

use crate::fact::{Facts, Value};
use crate::policy::{Level, Missing, Policy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// No evidence gives the fact; the rule's `missing` setting decides whether that passes.
    Missing,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleResult {
    pub id: String,
    /// The rule as written, normalised (`model.metrics.auc >= 0.95`).
    pub check: String,
    pub fact: String,
    /// The fact's value, when there is evidence for it.
    pub value: Option<Value>,
    pub verdict: Verdict,
    pub level: Level,
    /// Whether this rule lets the model through (a pass, or a missing fact the rule accepts).
    pub ok: bool,
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl RuleResult {
    /// Whether this rule stops the gate.
    pub fn blocking(&self) -> bool {
        !self.ok && self.level == Level::Error
    }

    /// One sentence on the outcome, for people.
    pub fn message(&self) -> String {
        match (&self.value, self.verdict) {
            (None, _) => format!(
                "{}: no evidence gives {}{}",
                self.check,
                self.fact,
                if self.ok {
                    " (accepted as missing)"
                } else {
                    ""
                }
            ),
            (Some(v), Verdict::Pass) => format!("{} holds: {} is {v}", self.check, self.fact),
            (Some(v), _) => format!("{} does not hold: {} is {v}", self.check, self.fact),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub policy: String,
    pub passed: bool,
    pub rules: Vec<RuleResult>,
    /// Rules that failed or were missing, by level.
    pub errors: usize,
    pub warnings: usize,
}

/// Evaluates every rule of `policy` against `facts`.
pub fn evaluate(policy: &Policy, facts: &Facts) -> Decision {
    let rules: Vec<RuleResult> = policy
        .rules
        .iter()
        .map(|r| {
            let value = facts.get(&r.expr.fact).cloned();
            let verdict = match &value {
                None => Verdict::Missing,
                Some(v) if r.expr.holds(v) => Verdict::Pass,
                Some(_) => Verdict::Fail,
            };
            let ok = match verdict {
                Verdict::Pass => true,
                Verdict::Fail => false,
                Verdict::Missing => r.missing == Missing::Pass,
            };
            RuleResult {
                id: r.id.clone(),
                check: r.expr.to_string(),
                fact: r.expr.fact.clone(),
                value,
                verdict,
                level: r.level,
                ok,
                line: r.line,
                description: r.description.clone(),
            }
        })
        .collect();
    let errors = rules.iter().filter(|r| r.blocking()).count();
    let warnings = rules
        .iter()
        .filter(|r| !r.ok && r.level == Level::Warning)
        .count();
    Decision {
        policy: policy.name.clone(),
        passed: errors == 0,
        rules,
        errors,
        warnings,
    }
}
