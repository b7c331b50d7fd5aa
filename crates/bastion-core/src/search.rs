//! MLflow's search filter and `order_by` grammar, parsed into a small AST.
//!
//! ```text
//! filter     := comparison ( AND comparison )*
//! comparison := identifier op value | identifier IS [NOT] NULL
//! identifier := [prefix '.'] key          prefix: metrics | params | tags | attributes | datasets
//! key        := word | `backticked` | "double quoted"
//! op         := = | != | <> | < | <= | > | >= | LIKE | ILIKE | IN | NOT IN
//! value      := 'string' | "string" | number | '(' value (',' value)* ')'
//! order_by   := identifier [ASC | DESC]
//! ```
//! What an identifier may be compared with, and how, depends on what is searched; that check
//! and the translation to SQL belong to the store. Parsing knows no SQL: keys and values are
//! data, never text spliced into a query.

use crate::error::{Error, Result};
use crate::limits::truncate;

/// Longest filter string accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 16 * 1024;
/// Most comparisons in one filter.
pub const MAX_CLAUSES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Metric,
    Param,
    Tag,
    Attribute,
    Dataset,
}

impl Entity {
    pub fn noun(self) -> &'static str {
        match self {
            Self::Metric => "metric",
            Self::Param => "parameter",
            Self::Tag => "tag",
            Self::Attribute => "attribute",
            Self::Dataset => "dataset",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier {
    pub entity: Entity,
    /// Whether the prefix was written out (`attributes.name`) or implied (`name`).
    pub explicit: bool,
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    ILike,
    In,
    NotIn,
    IsNull,
    IsNotNull,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Like => "LIKE",
            Self::ILike => "ILIKE",
            Self::In => "IN",
            Self::NotIn => "NOT IN",
            Self::IsNull => "IS NULL",
            Self::IsNotNull => "IS NOT NULL",
        }
    }
    pub fn is_ordering(self) -> bool {
        matches!(self, Self::Lt | Self::Le | Self::Gt | Self::Ge)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Num(f64),
    List(Vec<Value>),
    None,
}

impl Value {
    pub fn describe(&self) -> String {
        match self {
            Self::Str(s) => format!("'{}'", truncate(s, 40)),
            Self::Num(n) => n.to_string(),
            Self::List(_) => "a list".into(),
            Self::None => "nothing".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub ident: Identifier,
    pub op: Op,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub ident: Identifier,
    pub ascending: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// prefix (if any) and key
    Ident(Option<String>, String),
    Str(String),
    Num(f64),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(Some(p), k) => format!("'{p}.{}'", truncate(k, 40)),
            Tok::Ident(None, k) => format!("'{}'", truncate(k, 40)),
            Tok::Str(s) => format!("string '{}'", truncate(s, 40)),
            Tok::Num(n) => format!("number {n}"),
            Tok::Op(o) => format!("'{o}'"),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Comma => "','".into(),
        }
    }
    fn keyword(&self) -> Option<String> {
        match self {
            Tok::Ident(None, k) => Some(k.to_ascii_uppercase()),
            _ => None,
        }
    }
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    what: &'static str,
}

fn err_at(what: &str, src: &str, pos: usize, msg: impl std::fmt::Display) -> Error {
    Error::invalid(format!(
        "Invalid {what} '{}': {msg} (at character {pos})",
        truncate(src, 200)
    ))
}

impl<'a> Lexer<'a> {
    fn err(&self, pos: usize, msg: impl std::fmt::Display) -> Error {
        err_at(self.what, self.src, pos, msg)
    }

    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn quoted(&mut self, quote: char) -> Result<String> {
        let start = self.pos;
        self.pos += quote.len_utf8();
        let mut out = String::new();
        while let Some(c) = self.peek_char() {
            self.pos += c.len_utf8();
            if c == quote {
                // A doubled quote stands for the quote itself, as in SQL.
                if self.peek_char() == Some(quote) {
                    self.pos += quote.len_utf8();
                    out.push(quote);
                    continue;
                }
                return Ok(out);
            }
            if c == '\\'
                && quote != '`'
                && let Some(n) = self.peek_char()
            {
                self.pos += n.len_utf8();
                out.push(n);
                continue;
            }
            out.push(c);
        }
        Err(self.err(start, format!("unterminated {quote}-quoted text")))
    }

    fn tokens(mut self) -> Result<Vec<(usize, Tok)>> {
        let mut out = Vec::new();
        while let Some(c) = self.peek_char() {
            let start = self.pos;
            if c.is_whitespace() {
                self.pos += c.len_utf8();
                continue;
            }
            let tok = match c {
                '\'' => Tok::Str(self.quoted('\'')?),
                '"' => Tok::Str(self.quoted('"')?),
                '`' => Tok::Ident(None, self.quoted('`')?),
                '(' => {
                    self.pos += 1;
                    Tok::LParen
                }
                ')' => {
                    self.pos += 1;
                    Tok::RParen
                }
                ',' => {
                    self.pos += 1;
                    Tok::Comma
                }
                '=' | '!' | '<' | '>' => {
                    let two = self.src.get(self.pos..self.pos + 2).unwrap_or("");
                    let op = match two {
                        "!=" => "!=",
                        "<>" => "!=",
                        "<=" => "<=",
                        ">=" => ">=",
                        "==" => "=",
                        _ => match c {
                            '=' => "=",
                            '<' => "<",
                            '>' => ">",
                            _ => return Err(self.err(start, "'!' must be followed by '='")),
                        },
                    };
                    self.pos += if op.len() == 2 || two == "<>" || two == "==" {
                        2
                    } else {
                        1
                    };
                    Tok::Op(op)
                }
                c if c.is_ascii_digit()
                    || ((c == '-' || c == '+' || c == '.') && self.starts_number()) =>
                {
                    self.number()?
                }
                c if c.is_alphanumeric() || c == '_' => self.word()?,
                other => return Err(self.err(start, format!("unexpected character '{other}'"))),
            };
            out.push((start, tok));
        }
        Ok(out)
    }

    fn starts_number(&self) -> bool {
        let rest = &self.src[self.pos + 1..];
        rest.starts_with(|c: char| c.is_ascii_digit() || c == '.')
    }

    fn number(&mut self) -> Result<Tok> {
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let mut i = self.pos;
        if matches!(bytes.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(bytes.get(i), Some(b'-' | b'+')) {
                i += 1;
            }
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
        }
        let text = &self.src[start..i];
        self.pos = i;
        text.parse::<f64>()
            .map(Tok::Num)
            .map_err(|_| self.err(start, format!("'{}' is not a number", truncate(text, 40))))
    }

    fn word(&mut self) -> Result<Tok> {
        let start = self.pos;
        while let Some(c) = self.peek_char() {
            if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' || c == ':' || c == '/' {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
        let word = &self.src[start..self.pos];
        if let Some(prefix) = word.strip_suffix('.') {
            // `tags.` followed by a quoted key: tags.`mlflow.user` or tags."mlflow.user".
            let quote = self.peek_char();
            if let Some(q @ ('`' | '"')) = quote {
                let key = self.quoted(q)?;
                return Ok(Tok::Ident(Some(prefix.to_owned()), key));
            }
            return Err(self.err(
                start,
                format!(
                    "identifier '{}' has no key after the '.'",
                    truncate(word, 40)
                ),
            ));
        }
        match word.split_once('.') {
            Some((prefix, key)) if !prefix.is_empty() && !key.is_empty() => {
                Ok(Tok::Ident(Some(prefix.to_owned()), key.to_owned()))
            }
            _ => Ok(Tok::Ident(None, word.to_owned())),
        }
    }
}

fn entity_of(prefix: &str) -> Option<Entity> {
    match prefix.to_ascii_lowercase().as_str() {
        "metric" | "metrics" => Some(Entity::Metric),
        "param" | "params" | "parameter" | "parameters" => Some(Entity::Param),
        "tag" | "tags" => Some(Entity::Tag),
        "attribute" | "attributes" | "attr" | "run" => Some(Entity::Attribute),
        "dataset" | "datasets" => Some(Entity::Dataset),
        _ => None,
    }
}

fn identifier(what: &str, src: &str, pos: usize, tok: &Tok) -> Result<Identifier> {
    match tok {
        Tok::Ident(Some(prefix), key) => match entity_of(prefix) {
            Some(entity) => Ok(Identifier {
                entity,
                explicit: true,
                key: key.clone(),
            }),
            None => Err(err_at(
                what,
                src,
                pos,
                format!(
                    "invalid entity type '{}'; valid prefixes are metrics, params, tags, attributes and datasets",
                    truncate(prefix, 40)
                ),
            )),
        },
        Tok::Ident(None, key) => Ok(Identifier {
            entity: Entity::Attribute,
            explicit: false,
            key: key.clone(),
        }),
        other => Err(err_at(
            what,
            src,
            pos,
            format!("expected an identifier, found {}", other.describe()),
        )),
    }
}

/// Parses a filter string into the comparisons it ANDs together. The empty string is no filter.
pub fn parse_filter(src: &str) -> Result<Vec<Comparison>> {
    const WHAT: &str = "filter string";
    if src.len() > MAX_FILTER_BYTES {
        return Err(Error::invalid(format!(
            "Filter string is {} bytes long; at most {MAX_FILTER_BYTES} are allowed",
            src.len()
        )));
    }
    let toks = Lexer {
        src,
        pos: 0,
        what: WHAT,
    }
    .tokens()?;
    let mut out = Vec::new();
    let mut i = 0;
    let end = src.len();
    let at = |i: usize| toks.get(i).map(|(p, _)| *p).unwrap_or(end);
    let expect_more = |i: usize, what: &str| -> Result<&Tok> {
        toks.get(i).map(|(_, t)| t).ok_or_else(|| {
            err_at(
                WHAT,
                src,
                end,
                format!("expected {what}, found the end of the filter"),
            )
        })
    };
    while i < toks.len() {
        if out.len() >= MAX_CLAUSES {
            return Err(Error::invalid(format!(
                "Filter has more than {MAX_CLAUSES} clauses"
            )));
        }
        let ident_tok = expect_more(i, "an identifier")?;
        if let Some(k) = ident_tok.keyword()
            && matches!(k.as_str(), "AND" | "OR" | "NOT")
        {
            return Err(err_at(
                WHAT,
                src,
                at(i),
                format!("expected an identifier, found '{k}'"),
            ));
        }
        let ident = identifier(WHAT, src, at(i), ident_tok)?;
        i += 1;
        let op_tok = expect_more(i, "a comparison operator")?;
        let op = match (op_tok, op_tok.keyword().as_deref()) {
            (Tok::Op(o), _) => match *o {
                "=" => Op::Eq,
                "!=" => Op::Ne,
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                _ => Op::Ge,
            },
            (_, Some("LIKE")) => Op::Like,
            (_, Some("ILIKE")) => Op::ILike,
            (_, Some("IN")) => Op::In,
            (_, Some("NOT")) => {
                i += 1;
                match expect_more(i, "IN after NOT")?.keyword().as_deref() {
                    Some("IN") => Op::NotIn,
                    _ => return Err(err_at(WHAT, src, at(i), "expected IN after NOT")),
                }
            }
            (_, Some("IS")) => {
                i += 1;
                let mut negated = false;
                if expect_more(i, "NULL or NOT NULL after IS")?
                    .keyword()
                    .as_deref()
                    == Some("NOT")
                {
                    negated = true;
                    i += 1;
                }
                match expect_more(i, "NULL")?.keyword().as_deref() {
                    Some("NULL") => {
                        if negated {
                            Op::IsNotNull
                        } else {
                            Op::IsNull
                        }
                    }
                    _ => return Err(err_at(WHAT, src, at(i), "expected NULL after IS [NOT]")),
                }
            }
            (other, _) => {
                return Err(err_at(
                    WHAT,
                    src,
                    at(i),
                    format!(
                        "expected a comparison operator after the identifier, found {}",
                        other.describe()
                    ),
                ));
            }
        };
        i += 1;
        let value = match op {
            Op::IsNull | Op::IsNotNull => Value::None,
            Op::In | Op::NotIn => {
                if expect_more(i, "'(' to open the IN list")? != &Tok::LParen {
                    return Err(err_at(WHAT, src, at(i), "expected '(' to open the IN list"));
                }
                i += 1;
                let mut items = Vec::new();
                loop {
                    match expect_more(i, "a value in the IN list")? {
                        Tok::Str(s) => items.push(Value::Str(s.clone())),
                        Tok::Num(n) => items.push(Value::Num(*n)),
                        other => {
                            return Err(err_at(
                                WHAT,
                                src,
                                at(i),
                                format!(
                                    "expected a value in the IN list, found {}",
                                    other.describe()
                                ),
                            ));
                        }
                    }
                    i += 1;
                    match expect_more(i, "',' or ')' in the IN list")? {
                        Tok::Comma => i += 1,
                        Tok::RParen => break,
                        other => {
                            return Err(err_at(
                                WHAT,
                                src,
                                at(i),
                                format!(
                                    "expected ',' or ')' in the IN list, found {}",
                                    other.describe()
                                ),
                            ));
                        }
                    }
                }
                i += 1;
                if items.is_empty() {
                    return Err(err_at(WHAT, src, at(i), "IN list is empty"));
                }
                Value::List(items)
            }
            _ => {
                let v = match expect_more(i, "a value")? {
                    Tok::Str(s) => Value::Str(s.clone()),
                    Tok::Num(n) => Value::Num(*n),
                    other => {
                        return Err(err_at(
                            WHAT,
                            src,
                            at(i),
                            format!(
                                "expected a quoted string or a number, found {}",
                                other.describe()
                            ),
                        ));
                    }
                };
                i += 1;
                v
            }
        };
        out.push(Comparison { ident, op, value });
        if i < toks.len() {
            match toks[i].1.keyword().as_deref() {
                Some("AND") => {
                    i += 1;
                    if i == toks.len() {
                        return Err(err_at(WHAT, src, end, "expected a comparison after AND"));
                    }
                }
                Some("OR") => {
                    return Err(err_at(
                        WHAT,
                        src,
                        at(i),
                        "OR is not supported; combine comparisons with AND",
                    ));
                }
                _ => {
                    return Err(err_at(
                        WHAT,
                        src,
                        at(i),
                        format!(
                            "expected AND between comparisons, found {}",
                            toks[i].1.describe()
                        ),
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// Parses one `order_by` clause: an identifier and an optional `ASC`/`DESC`.
pub fn parse_order_by(src: &str) -> Result<OrderBy> {
    const WHAT: &str = "order_by clause";
    let toks = Lexer {
        src,
        pos: 0,
        what: WHAT,
    }
    .tokens()?;
    let Some((pos, first)) = toks.first() else {
        return Err(err_at(WHAT, src, 0, "it is empty"));
    };
    let ident = identifier(WHAT, src, *pos, first)?;
    let ascending = match toks.get(1) {
        None => true,
        Some((p, t)) => match t.keyword().as_deref() {
            Some("ASC") => true,
            Some("DESC") => false,
            _ => {
                return Err(err_at(
                    WHAT,
                    src,
                    *p,
                    format!("expected ASC or DESC, found {}", t.describe()),
                ));
            }
        },
    };
    if let Some((p, t)) = toks.get(2) {
        return Err(err_at(
            WHAT,
            src,
            *p,
            format!("unexpected {} after the direction", t.describe()),
        ));
    }
    Ok(OrderBy { ident, ascending })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Comparison {
        let mut v = parse_filter(src).unwrap();
        assert_eq!(v.len(), 1, "{src}");
        v.remove(0)
    }

    #[test]
    fn comparisons() {
        let c = one("metrics.loss < 1");
        assert_eq!(
            c.ident,
            Identifier {
                entity: Entity::Metric,
                explicit: true,
                key: "loss".into()
            }
        );
        assert_eq!((c.op, c.value), (Op::Lt, Value::Num(1.0)));

        let c = one("tags.`mlflow.user` = 'root'");
        assert_eq!(
            (c.ident.entity, c.ident.key.as_str()),
            (Entity::Tag, "mlflow.user")
        );
        let c = one("tag.\"a b\" != \"x\"");
        assert_eq!(
            (c.ident.key.as_str(), c.op, c.value),
            ("a b", Op::Ne, Value::Str("x".into()))
        );

        let c = one("attributes.run_id IN ('a', 'b')");
        assert_eq!(c.op, Op::In);
        assert_eq!(
            c.value,
            Value::List(vec![Value::Str("a".into()), Value::Str("b".into())])
        );
        assert_eq!(one("run_id NOT IN ('a')").op, Op::NotIn);
        assert_eq!(one("params.x ILIKE '%a%'").op, Op::ILike);
        assert_eq!(one("params.x like 'a'").op, Op::Like);
        assert_eq!(one("tags.x IS NOT NULL").op, Op::IsNotNull);
        assert_eq!(one("metrics.a.b >= -1.5e2").value, Value::Num(-150.0));
        assert_eq!(one("name = 'it''s'").value, Value::Str("it's".into()));
        let c = one("name='x'");
        assert!(!c.ident.explicit);
    }

    #[test]
    fn conjunctions() {
        let v = parse_filter("metrics.a > 0 AND params.b = '1' and tags.c LIKE 'x%'").unwrap();
        assert_eq!(v.len(), 3);
        assert!(parse_filter("").unwrap().is_empty());
        assert!(parse_filter("   ").unwrap().is_empty());
    }

    #[test]
    fn precise_errors() {
        let cases = [
            ("metrics.a > 0 OR metrics.b > 0", "OR is not supported"),
            ("metrics.a >", "expected a value"),
            ("metrics.a 1", "expected a comparison operator"),
            ("foo.a = 1", "invalid entity type 'foo'"),
            ("params.a = 'x", "unterminated"),
            ("metrics.a > 0 AND", "expected a comparison after AND"),
            ("metrics.a > 0 metrics.b > 1", "expected AND"),
            ("run_id IN ()", "expected a value in the IN list"),
            ("run_id IN ('a' 'b')", "expected ',' or ')'"),
            ("tags. = 'x'", "has no key"),
            ("a ; DROP TABLE runs", "unexpected character ';'"),
        ];
        for (src, want) in cases {
            let e = parse_filter(src).unwrap_err();
            assert!(e.message.contains(want), "{src}: {}", e.message);
            assert_eq!(e.code, crate::ErrorCode::InvalidParameterValue);
        }
        assert!(parse_filter(&"a".repeat(MAX_FILTER_BYTES + 1)).is_err());
    }

    #[test]
    fn order_by() {
        let o = parse_order_by("metrics.loss DESC").unwrap();
        assert_eq!((o.ident.entity, o.ascending), (Entity::Metric, false));
        let o = parse_order_by("start_time").unwrap();
        assert!(o.ascending && o.ident.entity == Entity::Attribute);
        let o = parse_order_by("tags.`a b` asc").unwrap();
        assert_eq!(o.ident.key, "a b");
        assert!(parse_order_by("metrics.loss DOWN").is_err());
        assert!(parse_order_by("").is_err());
        assert!(parse_order_by("a DESC x").is_err());
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        let samples = [
            "'", "`", "\"", "(", "!", "-", ".", "é=ü", "a.`", "a IS", "a IS NOT", "a NOT",
            "a IN (", "1e", "--1", "+.", "a.b.`c`",
        ];
        for s in samples {
            let _ = parse_filter(s);
            let _ = parse_order_by(s);
        }
    }
}
