//! A rule's expression: `FACT OP VALUE`, where OP is one of `=` (or `==`), `!=`, `<`, `<=`,
//! `>`, `>=`, `in`, `not in`, and VALUE is a number, a quoted string, `true`/`false`, or a
//! bracketed list for `in`. The expression is checked against the fact's kind when it is
//! read.

use std::cmp::Ordering;
use std::fmt;

use crate::fact::{FactKind, Value, kind_of, known_names, severity_rank};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "in",
            Op::NotIn => "not in",
        }
    }

    fn ordered(self) -> bool {
        matches!(self, Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }
}

/// A parsed, kind-checked expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub fact: String,
    pub kind: FactKind,
    pub op: Op,
    /// One value, or several for `in` / `not in`.
    pub values: Vec<Value>,
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.fact, self.op.as_str())?;
        match self.op {
            Op::In | Op::NotIn => {
                let items: Vec<String> = self.values.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", items.join(", "))
            }
            _ => match self.values.first() {
                Some(v) => write!(f, "{v}"),
                None => Ok(()),
            },
        }
    }
}

/// Where in the expression something is wrong (a character offset) and what.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    pub at: usize,
    pub message: String,
}

fn err(at: usize, message: impl Into<String>) -> ExprError {
    ExprError {
        at,
        message: message.into(),
    }
}

/// The names an expression may use and the kind of each. The gate's catalog of evidence
/// facts is one; monitoring's live signals are another.
pub trait Catalog {
    fn kind_of(&self, name: &str) -> Option<FactKind>;
    /// A short list of what may be named, for an "unknown" error.
    fn known_names(&self) -> String;
    /// What one name is called in errors.
    fn noun(&self) -> &'static str {
        "fact"
    }
}

/// The evidence facts a gate policy may name ([`crate::fact`]).
pub struct Evidence;

impl Catalog for Evidence {
    fn kind_of(&self, name: &str) -> Option<FactKind> {
        kind_of(name)
    }

    fn known_names(&self) -> String {
        known_names()
    }
}

/// Parses and kind-checks `text` against the evidence facts.
pub fn parse(text: &str) -> Result<Expr, ExprError> {
    parse_in(text, &Evidence)
}

/// Parses and kind-checks `text` against `catalog`.
pub fn parse_in(text: &str, catalog: &dyn Catalog) -> Result<Expr, ExprError> {
    let mut p = Parser {
        chars: text.char_indices().collect(),
        pos: 0,
    };
    p.skip_space();
    let fact_at = p.offset();
    let fact = p.fact()?;
    let kind = catalog.kind_of(&fact).ok_or_else(|| {
        err(
            fact_at,
            format!(
                "unknown {noun} '{fact}'; the {noun}s are: {}",
                catalog.known_names(),
                noun = catalog.noun()
            ),
        )
    })?;
    p.skip_space();
    let op_at = p.offset();
    let op = p.op()?;
    p.skip_space();
    let value_at = p.offset();
    let values = match op {
        Op::In | Op::NotIn => p.list()?,
        _ => vec![p.literal()?],
    };
    p.skip_space();
    if p.pos < p.chars.len() {
        return Err(err(
            p.offset(),
            format!(
                "unexpected '{}' after the value",
                p.rest().chars().take(20).collect::<String>()
            ),
        ));
    }
    check_kind(&fact, kind, op, &values, op_at, value_at)?;
    let values = values.into_iter().map(|v| canonical(kind, v)).collect();
    Ok(Expr {
        fact,
        kind,
        op,
        values,
    })
}

/// Severities are compared case-insensitively; stored upper-case.
fn canonical(kind: FactKind, v: Value) -> Value {
    match (kind, v) {
        (FactKind::Severity, Value::Text(s)) => Value::Text(s.to_ascii_uppercase()),
        (_, v) => v,
    }
}

fn check_kind(
    fact: &str,
    kind: FactKind,
    op: Op,
    values: &[Value],
    op_at: usize,
    value_at: usize,
) -> Result<(), ExprError> {
    if op.ordered() && matches!(kind, FactKind::Bool | FactKind::Word(_)) {
        return Err(err(
            op_at,
            format!(
                "'{}' orders values, but {fact} is {}; use = or !=",
                op.as_str(),
                kind.describe()
            ),
        ));
    }
    for v in values {
        let fits = match (kind, v) {
            (FactKind::Number, Value::Number(n)) => n.is_finite(),
            (FactKind::Bool, Value::Bool(_)) => true,
            (FactKind::Word(words), Value::Text(s)) => words.contains(&s.as_str()),
            (FactKind::Severity, Value::Text(s)) => severity_rank(s).is_some(),
            _ => false,
        };
        if !fits {
            return Err(err(
                value_at,
                format!("{fact} is {}, not {v}", kind.describe()),
            ));
        }
    }
    Ok(())
}

impl Expr {
    /// Whether `actual` satisfies the expression. `actual` has the fact's kind (the caller
    /// gathered it); a value of another kind does not satisfy anything.
    pub fn holds(&self, actual: &Value) -> bool {
        match self.op {
            Op::In => self
                .values
                .iter()
                .any(|v| self.compare(actual, v) == Some(Ordering::Equal)),
            Op::NotIn => self
                .values
                .iter()
                .all(|v| matches!(self.compare(actual, v), Some(o) if o != Ordering::Equal)),
            op => {
                let Some(expected) = self.values.first() else {
                    return false;
                };
                let Some(o) = self.compare(actual, expected) else {
                    return false;
                };
                match op {
                    Op::Eq => o == Ordering::Equal,
                    Op::Ne => o != Ordering::Equal,
                    Op::Lt => o == Ordering::Less,
                    Op::Le => o != Ordering::Greater,
                    Op::Gt => o == Ordering::Greater,
                    Op::Ge => o != Ordering::Less,
                    Op::In | Op::NotIn => false,
                }
            }
        }
    }

    fn compare(&self, actual: &Value, expected: &Value) -> Option<Ordering> {
        match (self.kind, actual, expected) {
            (FactKind::Number, Value::Number(a), Value::Number(b)) => a.partial_cmp(b),
            (FactKind::Bool, Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (FactKind::Word(_), Value::Text(a), Value::Text(b)) => Some(a.cmp(b)),
            (FactKind::Severity, Value::Text(a), Value::Text(b)) => {
                Some(severity_rank(a)?.cmp(&severity_rank(b)?))
            }
            _ => None,
        }
    }
}

struct Parser {
    chars: Vec<(usize, char)>,
    pos: usize,
}

impl Parser {
    fn offset(&self) -> usize {
        self.pos
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|(_, c)| *c)
    }

    fn rest(&self) -> String {
        self.chars[self.pos.min(self.chars.len())..]
            .iter()
            .map(|(_, c)| *c)
            .collect()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn fact(&mut self) -> Result<String, ExprError> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(err(
                start,
                "expected a fact name such as model.metrics.auc at the start of the rule",
            ));
        }
        Ok(self.chars[start..self.pos]
            .iter()
            .map(|(_, c)| *c)
            .collect())
    }

    fn op(&mut self) -> Result<Op, ExprError> {
        let at = self.pos;
        let rest = self.rest();
        let (op, len) = if rest.starts_with("==") {
            (Op::Eq, 2)
        } else if rest.starts_with("!=") {
            (Op::Ne, 2)
        } else if rest.starts_with("<=") {
            (Op::Le, 2)
        } else if rest.starts_with(">=") {
            (Op::Ge, 2)
        } else if rest.starts_with('=') {
            (Op::Eq, 1)
        } else if rest.starts_with('<') {
            (Op::Lt, 1)
        } else if rest.starts_with('>') {
            (Op::Gt, 1)
        } else if word_at(&rest, "in") {
            (Op::In, 2)
        } else if word_at(&rest, "not") {
            self.pos += 3;
            self.skip_space();
            if !word_at(&self.rest(), "in") {
                return Err(err(self.pos, "expected 'in' after 'not'"));
            }
            (Op::NotIn, 2)
        } else {
            return Err(err(
                at,
                "expected a comparison: =, !=, <, <=, >, >=, in or not in",
            ));
        };
        self.pos += len;
        Ok(op)
    }

    fn list(&mut self) -> Result<Vec<Value>, ExprError> {
        if self.peek() != Some('[') {
            return Err(err(self.pos, "'in' takes a list such as [\"a\", \"b\"]"));
        }
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            self.skip_space();
            if self.peek() == Some(']') && out.is_empty() {
                return Err(err(self.pos, "the list is empty"));
            }
            out.push(self.literal()?);
            self.skip_space();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(']') => {
                    self.pos += 1;
                    return Ok(out);
                }
                _ => return Err(err(self.pos, "expected ',' or ']' in the list")),
            }
        }
    }

    fn literal(&mut self) -> Result<Value, ExprError> {
        let at = self.pos;
        match self.peek() {
            None => Err(err(at, "expected a value after the comparison")),
            Some(q @ ('"' | '\'')) => {
                self.pos += 1;
                let start = self.pos;
                while self.peek().is_some_and(|c| c != q) {
                    self.pos += 1;
                }
                if self.peek() != Some(q) {
                    return Err(err(at, "the quoted value is not closed"));
                }
                let s: String = self.chars[start..self.pos]
                    .iter()
                    .map(|(_, c)| *c)
                    .collect();
                self.pos += 1;
                Ok(Value::Text(s))
            }
            Some(_) => {
                let start = self.pos;
                while self.peek().is_some_and(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_' | '%')
                }) {
                    self.pos += 1;
                }
                let word: String = self.chars[start..self.pos]
                    .iter()
                    .map(|(_, c)| *c)
                    .collect();
                match word.as_str() {
                    "" => Err(err(at, "expected a value: a number, \"text\", true or false")),
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    w => number(w).map(Value::Number).ok_or_else(|| {
                        err(
                            at,
                            format!(
                                "'{w}' is not a value: write numbers as 0.95 or 95%, text in quotes (\"HIGH\"), or true/false"
                            ),
                        )
                    }),
                }
            }
        }
    }
}

/// A number, or a percentage (`95%` is 0.95).
fn number(w: &str) -> Option<f64> {
    let (digits, scale) = match w.strip_suffix('%') {
        Some(d) => (d, 0.01),
        None => (w, 1.0),
    };
    let n: f64 = digits.replace('_', "").parse().ok()?;
    n.is_finite().then_some(n * scale)
}

fn word_at(rest: &str, word: &str) -> bool {
    rest.starts_with(word)
        && rest[word.len()..]
            .chars()
            .next()
            .is_none_or(|c| c.is_whitespace() || c == '[')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holds(e: &str, v: Value) -> bool {
        parse(e)
            .map(|x| x.holds(&v))
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn comparisons_by_kind() {
        assert!(holds("model.metrics.auc >= 0.95", Value::Number(0.95)));
        assert!(!holds("model.metrics.auc > 0.95", Value::Number(0.95)));
        assert!(holds("model.metrics.auc>=95%", Value::Number(0.951)));
        assert!(holds(
            "model.scan.max_severity < \"HIGH\"",
            Value::Text("MEDIUM".into())
        ));
        assert!(holds(
            "model.scan.max_severity < 'high'",
            Value::Text("NONE".into())
        ));
        assert!(!holds(
            "model.scan.max_severity < \"HIGH\"",
            Value::Text("CRITICAL".into())
        ));
        assert!(holds(
            "model.signature = \"valid\"",
            Value::Text("valid".into())
        ));
        assert!(holds(
            "model.signature == 'valid'",
            Value::Text("valid".into())
        ));
        assert!(!holds(
            "model.signature != 'valid'",
            Value::Text("valid".into())
        ));
        assert!(holds(
            "provenance.dataset_validated = true",
            Value::Bool(true)
        ));
        assert!(holds("dataset.pii.columns = 0", Value::Number(0.0)));
        assert!(holds(
            "model.signature in ['valid', 'missing']",
            Value::Text("missing".into())
        ));
        assert!(holds(
            "model.signature not in ['invalid']",
            Value::Text("valid".into())
        ));
        assert!(!holds(
            "model.signature not in ['invalid']",
            Value::Text("invalid".into())
        ));
        // A value of another kind never satisfies a rule.
        assert!(!holds(
            "model.metrics.auc >= 0.5",
            Value::Text("0.9".into())
        ));
        assert!(!holds("model.metrics.auc != 0.5", Value::Bool(true)));
        assert_eq!(
            parse("model.metrics.auc >= 0.95").map(|e| e.to_string()),
            Ok("model.metrics.auc >= 0.95".into())
        );
    }

    #[test]
    fn refusals_say_where_and_why() {
        let cases = [
            (
                "model.metric.auc >= 0.9",
                0,
                "unknown fact 'model.metric.auc'",
            ),
            ("model.signature < 'valid'", 16, "orders values"),
            ("model.signature = 'good'", 18, "one of \"valid\""),
            ("model.metrics.auc >= high", 21, "'high' is not a value"),
            ("model.metrics.auc >= 'x'", 21, "is a number, not \"x\""),
            ("model.metrics.auc", 17, "expected a comparison"),
            ("model.metrics.auc >=", 20, "expected a value"),
            ("model.metrics.auc >= 0.9 and x", 25, "unexpected 'and x'"),
            ("model.signature = 'valid", 18, "not closed"),
            ("model.signature in 'valid'", 19, "takes a list"),
            ("model.signature in []", 20, "the list is empty"),
            (
                "model.signature in ['valid' 'x']",
                28,
                "expected ',' or ']'",
            ),
            ("model.signature not 'valid'", 20, "expected 'in'"),
            ("model.scan.max_severity <= 'SEVERE'", 27, "a severity"),
            ("= 3", 0, "expected a fact name"),
            ("provenance.valid = 1", 19, "true or false"),
            ("model.metrics.auc >= 1e999", 21, "is not a value"),
        ];
        for (text, at, message) in cases {
            match parse(text) {
                Ok(e) => panic!("{text} parsed as {e:?}"),
                Err(e) => {
                    assert!(e.message.contains(message), "{text}: {}", e.message);
                    assert_eq!(e.at, at, "{text}: {}", e.message);
                }
            }
        }
    }
}
