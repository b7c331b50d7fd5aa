//! The policy file. Rules may be written one per line in a list, or as tables with an id, a
//! description, a level and what to do when the fact is missing:
//!
//! ```toml
//! name = "production"
//! description = "What a model needs before it serves production traffic"
//! rules = [
//!   'model.signature = "valid"',
//!   'model.scan.max_severity < "HIGH"',
//! ]
//!
//! [[rule]]
//! id = "robust"
//! check = "redteam.eps_0_1.robust_accuracy >= 0.80"
//! description = "Survives the worst attack at eps 0.1"
//! level = "warning"        # error (default) fails the gate; warning is only reported
//! missing = "fail"         # fail (default) or pass, when no evidence gives the fact
//! ```

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::PolicyError;
use crate::expr::{self, Expr};

/// Whether a failed rule fails the gate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    #[default]
    Error,
    Warning,
}

/// What a rule says when no evidence gives its fact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    #[default]
    Fail,
    Pass,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub expr: Expr,
    pub description: Option<String>,
    pub level: Level,
    pub missing: Missing,
    /// The line of the policy file the rule's expression is on.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub description: Option<String>,
    pub rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    rules: Vec<Spanned<String>>,
    #[serde(default)]
    rule: Vec<Spanned<RuleTable>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleTable {
    id: Option<Spanned<String>>,
    check: Spanned<String>,
    description: Option<String>,
    #[serde(default)]
    level: Level,
    #[serde(default)]
    missing: Missing,
}

/// The 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl Policy {
    /// Reads a policy. `default_name` names it when the file does not.
    pub fn parse(text: &str, default_name: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_owned();
            match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    PolicyError::Toml(format!("line {line}, column {col}: {message}"))
                }
                None => PolicyError::Toml(message),
            }
        })?;
        let mut rules = Vec::new();
        for check in &file.rules {
            rules.push(rule(text, check, None, None, Level::Error, Missing::Fail)?);
        }
        for table in &file.rule {
            let t = table.get_ref();
            rules.push(rule(
                text,
                &t.check,
                t.id.as_ref(),
                t.description.clone(),
                t.level,
                t.missing,
            )?);
        }
        if rules.is_empty() {
            return Err(PolicyError::Invalid {
                line: 1,
                message: "the policy has no rules (a policy without rules would pass any model); add `rules = [...]` or [[rule]] tables".into(),
            });
        }
        // Ids name results in JUnit and SARIF: they must be unique. Unnamed rules are called
        // after their fact, numbered when a fact has several.
        let mut seen = std::collections::BTreeSet::new();
        for r in &mut rules {
            if r.id.is_empty() {
                let mut id = r.expr.fact.clone();
                let mut n = 2;
                while seen.contains(&id) {
                    id = format!("{}#{n}", r.expr.fact);
                    n += 1;
                }
                r.id = id;
            } else if seen.contains(&r.id) {
                return Err(PolicyError::Invalid {
                    line: r.line,
                    message: format!("a rule with id '{}' is already defined", r.id),
                });
            }
            seen.insert(r.id.clone());
        }
        Ok(Policy {
            name: file
                .name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| default_name.to_owned()),
            description: file.description,
            rules,
        })
    }
}

fn rule(
    text: &str,
    check: &Spanned<String>,
    id: Option<&Spanned<String>>,
    description: Option<String>,
    level: Level,
    missing: Missing,
) -> Result<Rule, PolicyError> {
    let (line, col) = line_col(text, check.span().start);
    let expr = expr::parse(check.get_ref()).map_err(|e| PolicyError::Rule {
        line,
        rule: check.get_ref().clone(),
        // The column is exact for a one-line string without escapes; the line always is.
        message: format!("column {}: {}", col + 1 + e.at, e.message),
    })?;
    let id = match id {
        Some(id) => {
            let v = id.get_ref();
            if v.is_empty()
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(PolicyError::Invalid {
                    line: line_col(text, id.span().start).0,
                    message: format!("rule id '{v}' must be letters, digits, '_', '-' or '.'"),
                });
            }
            v.clone()
        }
        None => String::new(),
    };
    Ok(Rule {
        id,
        expr,
        description,
        level,
        missing,
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
