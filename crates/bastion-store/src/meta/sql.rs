//! Building SQL with bound values, and translating parsed search filters and `order_by`
//! clauses into it. User input only ever becomes a bound value, never SQL text: keys and
//! values from a filter are bound; only identifiers from the fixed tables below are spliced.

use bastion_core::Error;
use bastion_core::limits::truncate;
use sqlx::any::{Any, AnyArguments};
use sqlx::query::Query;

use bastion_core::search::{Comparison, Entity, Op, OrderBy, Value};

/// `sqlx::query` over a SQL string assembled with `format!` from fixed fragments (column lists,
/// table names); values are still bound, never formatted in.
macro_rules! query_fmt {
    ($($t:tt)*) => {
        sqlx::query(sqlx::AssertSqlSafe(format!($($t)*)))
    };
}

#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl From<&str> for Bind {
    fn from(s: &str) -> Self {
        Self::Text(s.to_owned())
    }
}
impl From<String> for Bind {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}
impl From<i64> for Bind {
    fn from(n: i64) -> Self {
        Self::Int(n)
    }
}
impl From<bool> for Bind {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}
impl From<f64> for Bind {
    fn from(n: f64) -> Self {
        Self::Float(n)
    }
}

/// SQL text with `$N` placeholders and the values bound to them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Sql {
    pub text: String,
    binds: Vec<Bind>,
}

impl Sql {
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            binds: Vec::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind(&mut self, value: impl Into<Bind>) -> &mut Self {
        self.binds.push(value.into());
        self.text.push('$');
        self.text.push_str(&self.binds.len().to_string());
        self
    }

    /// Appends `other`, renumbering its placeholders after this one's.
    pub fn append(&mut self, other: &Sql) -> &mut Self {
        let base = self.binds.len();
        let bytes = other.text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'$' {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if digits > 0 {
                    let n: usize = other.text[i + 1..i + 1 + digits].parse().unwrap_or(0);
                    self.text.push('$');
                    self.text.push_str(&(n + base).to_string());
                    i += 1 + digits;
                    continue;
                }
            }
            let ch_len = other.text[i..].chars().next().map_or(1, char::len_utf8);
            self.text.push_str(&other.text[i..i + ch_len]);
            i += ch_len;
        }
        self.binds.extend(other.binds.iter().cloned());
        self
    }

    /// `($a, $b, ...)` for a non-empty list.
    pub fn bind_list<B: Into<Bind>>(&mut self, values: impl IntoIterator<Item = B>) -> &mut Self {
        self.push("(");
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(v);
        }
        self.push(")")
    }

    pub fn query(&self) -> Query<'_, Any, AnyArguments> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.text.clone()));
        for b in &self.binds {
            q = match b {
                Bind::Text(s) => q.bind(s.as_str()),
                Bind::Int(n) => q.bind(*n),
                Bind::Float(f) => q.bind(*f),
                Bind::Bool(b) => q.bind(*b),
            };
        }
        q
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttrKind {
    Text,
    Number,
}

/// An attribute a filter may name, and the column it is.
pub(crate) struct Attr {
    pub key: &'static str,
    pub column: &'static str,
    pub kind: AttrKind,
}

/// A key/value table (tags, params, metrics) hanging off the searched row. `join` is a
/// condition relating alias `x` to the searched row.
pub(crate) struct KvTable {
    pub table: &'static str,
    pub join: &'static str,
}

/// What a search may filter and order by.
pub(crate) struct SearchTarget {
    pub what: &'static str,
    pub attributes: &'static [Attr],
    pub metrics: Option<KvTable>,
    pub params: Option<KvTable>,
    pub tags: Option<KvTable>,
    /// `run_dataset_inputs` joined on this condition (alias `i`), for `datasets.*`.
    pub datasets: Option<&'static str>,
    /// Whether `tags.k != 'v'` also matches rows without the tag. MLflow's registry does this
    /// (so that `tag.is_prompt != 'true'` finds ordinary models); run search does not.
    pub ne_includes_missing: bool,
}

impl SearchTarget {
    fn attribute(&self, key: &str) -> Result<&Attr, Error> {
        self.attributes
            .iter()
            .find(|a| a.key == key)
            .ok_or_else(|| {
                let valid: Vec<&str> = self.attributes.iter().map(|a| a.key).collect();
                Error::invalid(format!(
                    "Invalid attribute key '{}' specified for {}. Valid keys are '{}'",
                    truncate(key, 64),
                    self.what,
                    valid.join("', '")
                ))
            })
    }

    fn kv(&self, entity: Entity) -> Result<&KvTable, Error> {
        let table = match entity {
            Entity::Metric => self.metrics.as_ref(),
            Entity::Param => self.params.as_ref(),
            Entity::Tag => self.tags.as_ref(),
            _ => None,
        };
        table.ok_or_else(|| {
            Error::invalid(format!(
                "Searching {} by {} is not supported",
                self.what,
                entity.noun()
            ))
        })
    }
}

fn bad_op(target: &SearchTarget, what: &str, key: &str, op: Op, allowed: &str) -> Error {
    Error::invalid(format!(
        "Invalid comparator '{}' for {what} '{}' when searching {}; {what}s support {allowed}",
        op.as_str(),
        truncate(key, 64),
        target.what
    ))
}

fn want_str<'a>(what: &str, key: &str, value: &'a Value) -> Result<&'a str, Error> {
    match value {
        Value::Str(s) => Ok(s),
        other => Err(Error::invalid(format!(
            "Expected a quoted string value for {what} '{}'. Found {}",
            truncate(key, 64),
            other.describe()
        ))),
    }
}

fn want_num(what: &str, key: &str, value: &Value) -> Result<f64, Error> {
    match value {
        Value::Num(n) => Ok(*n),
        other => Err(Error::invalid(format!(
            "Expected numeric value type for {what} '{}'. Found {}",
            truncate(key, 64),
            other.describe()
        ))),
    }
}

fn str_list<'a>(what: &str, key: &str, value: &'a Value) -> Result<Vec<&'a str>, Error> {
    match value {
        Value::List(items) => items.iter().map(|v| want_str(what, key, v)).collect(),
        other => Err(Error::invalid(format!(
            "Expected a list of quoted strings for {what} '{}'. Found {}",
            truncate(key, 64),
            other.describe()
        ))),
    }
}

/// Appends `<expr> <op> <value>` for a string-valued expression.
fn push_text_cmp(
    sql: &mut Sql,
    expr: &str,
    op: Op,
    value: &Value,
    what: &str,
    key: &str,
) -> Result<(), Error> {
    match op {
        Op::Eq | Op::Ne | Op::Like => {
            let v = want_str(what, key, value)?;
            let sym = match op {
                Op::Eq => " = ",
                Op::Ne => " != ",
                _ => " LIKE ",
            };
            sql.push(expr).push(sym).bind(v);
        }
        Op::ILike => {
            let v = want_str(what, key, value)?;
            sql.push("LOWER(")
                .push(expr)
                .push(") LIKE LOWER(")
                .bind(v)
                .push(")");
        }
        Op::In | Op::NotIn => {
            let items = str_list(what, key, value)?;
            sql.push(expr)
                .push(if op == Op::In { " IN " } else { " NOT IN " });
            sql.bind_list(items);
        }
        _ => {
            return Err(Error::invalid(format!(
                "Invalid comparator '{}' for {what} '{}'",
                op.as_str(),
                truncate(key, 64)
            )));
        }
    }
    Ok(())
}

/// Appends ` AND (<condition>)` for each comparison.
pub(crate) fn push_filter(
    sql: &mut Sql,
    target: &SearchTarget,
    filter: &[Comparison],
) -> Result<(), Error> {
    for c in filter {
        sql.push(" AND (");
        push_comparison(sql, target, c)?;
        sql.push(")");
    }
    Ok(())
}

fn push_comparison(sql: &mut Sql, target: &SearchTarget, c: &Comparison) -> Result<(), Error> {
    let key = c.ident.key.as_str();
    match c.ident.entity {
        Entity::Attribute => {
            let attr = target.attribute(key)?;
            match attr.kind {
                AttrKind::Number => {
                    if !matches!(c.op, Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge) {
                        return Err(bad_op(
                            target,
                            "numeric attribute",
                            key,
                            c.op,
                            "=, !=, <, <=, >, >=",
                        ));
                    }
                    let n = want_num("attribute", key, &c.value)?;
                    sql.push(attr.column)
                        .push(" ")
                        .push(c.op.as_str())
                        .push(" ");
                    if n.fract() == 0.0 && n.abs() < 9.0e15 {
                        sql.bind(n as i64);
                    } else {
                        sql.bind(n);
                    }
                }
                AttrKind::Text => {
                    if matches!(c.op, Op::IsNull | Op::IsNotNull) || c.op.is_ordering() {
                        return Err(bad_op(
                            target,
                            "attribute",
                            key,
                            c.op,
                            "=, !=, LIKE, ILIKE, IN, NOT IN",
                        ));
                    }
                    push_text_cmp(sql, attr.column, c.op, &c.value, "attribute", key)?;
                }
            }
        }
        Entity::Metric => {
            let kv = target.kv(Entity::Metric)?;
            if !matches!(c.op, Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge) {
                return Err(bad_op(target, "metric", key, c.op, "=, !=, <, <=, >, >="));
            }
            let n = want_num("metric", key, &c.value)?;
            sql.push("EXISTS (SELECT 1 FROM ")
                .push(kv.table)
                .push(" x WHERE ")
                .push(kv.join);
            sql.push(" AND x.key = ")
                .bind(key)
                .push(" AND x.is_nan = FALSE AND x.value ");
            sql.push(c.op.as_str()).push(" ").bind(n).push(")");
        }
        entity @ (Entity::Param | Entity::Tag) => {
            let kv = target.kv(entity)?;
            let noun = entity.noun();
            let exists = |sql: &mut Sql, negate: bool| {
                sql.push(if negate { "NOT EXISTS" } else { "EXISTS" });
                sql.push(" (SELECT 1 FROM ")
                    .push(kv.table)
                    .push(" x WHERE ")
                    .push(kv.join);
                sql.push(" AND x.key = ").bind(key);
            };
            match c.op {
                Op::IsNull | Op::IsNotNull => {
                    exists(sql, c.op == Op::IsNull);
                    sql.push(")");
                }
                Op::Ne | Op::NotIn if target.ne_includes_missing => {
                    exists(sql, true);
                    sql.push(" AND ");
                    let positive = if c.op == Op::Ne { Op::Eq } else { Op::In };
                    push_text_cmp(sql, "x.value", positive, &c.value, noun, key)?;
                    sql.push(")");
                }
                Op::Eq | Op::Ne | Op::Like | Op::ILike | Op::In | Op::NotIn => {
                    exists(sql, false);
                    sql.push(" AND ");
                    push_text_cmp(sql, "x.value", c.op, &c.value, noun, key)?;
                    sql.push(")");
                }
                _ => {
                    return Err(bad_op(
                        target,
                        noun,
                        key,
                        c.op,
                        "=, !=, LIKE, ILIKE, IN, NOT IN, IS NULL, IS NOT NULL",
                    ));
                }
            }
        }
        Entity::Dataset => {
            let Some(join) = target.datasets else {
                return Err(Error::invalid(format!(
                    "Searching {} by dataset is not supported",
                    target.what
                )));
            };
            let column = match key {
                "name" => "d.name",
                "digest" => "d.digest",
                "context" => "i.context",
                other => {
                    return Err(Error::invalid(format!(
                        "Invalid dataset key '{}'. Valid keys are 'name', 'digest', 'context'",
                        truncate(other, 64)
                    )));
                }
            };
            if matches!(c.op, Op::IsNull | Op::IsNotNull) || c.op.is_ordering() {
                return Err(bad_op(
                    target,
                    "dataset attribute",
                    key,
                    c.op,
                    "=, !=, LIKE, ILIKE, IN, NOT IN",
                ));
            }
            sql.push("EXISTS (SELECT 1 FROM run_dataset_inputs i JOIN datasets d ON d.dataset_id = i.dataset_id WHERE ");
            sql.push(join).push(" AND ");
            push_text_cmp(sql, column, c.op, &c.value, "dataset attribute", key)?;
            sql.push(")");
        }
    }
    Ok(())
}

/// Appends `<expr> <dir> NULLS LAST, ` for one `order_by` clause: rows without the value sort
/// last in both directions, as in MLflow, and a NaN metric sorts after every number (it becomes
/// a bound infinity on the far side of the direction). One correlated lookup per row and term.
pub(crate) fn push_order_term(
    sql: &mut Sql,
    target: &SearchTarget,
    o: &OrderBy,
) -> Result<(), Error> {
    let dir = if o.ascending {
        " ASC NULLS LAST, "
    } else {
        " DESC NULLS LAST, "
    };
    let key = o.ident.key.as_str();
    match o.ident.entity {
        Entity::Attribute => {
            let attr = target.attribute(key)?;
            sql.push(attr.column).push(dir);
        }
        entity @ (Entity::Metric | Entity::Param | Entity::Tag) => {
            let kv = target.kv(entity)?;
            sql.push("(SELECT ");
            if entity == Entity::Metric {
                let nan_rank = if o.ascending {
                    f64::INFINITY
                } else {
                    f64::NEG_INFINITY
                };
                sql.push("CASE WHEN x.is_nan THEN ")
                    .bind(nan_rank)
                    .push(" ELSE x.value END");
            } else {
                sql.push("x.value");
            }
            sql.push(" FROM ")
                .push(kv.table)
                .push(" x WHERE ")
                .push(kv.join);
            sql.push(" AND x.key = ").bind(key).push(")").push(dir);
        }
        Entity::Dataset => {
            return Err(Error::invalid(format!(
                "Ordering {} by dataset is not supported",
                target.what
            )));
        }
    }
    Ok(())
}

/// One page of a search, as a client asked for it.
pub(crate) struct PageSpec<'a> {
    pub filter: Option<&'a str>,
    pub order_by: &'a [String],
    pub max_results: Option<i64>,
    pub page_token: Option<&'a str>,
    /// `max_results` when the client gives none, and the most it may ask for.
    pub default_results: i64,
    pub max_allowed: i64,
}

/// Appends the filter, the ordering (the client's terms, then `tiebreak`, which must make the
/// order total so pages never overlap) and LIMIT/OFFSET to `q`, runs it, and returns the page's
/// rows with the token for the next page.
pub(crate) async fn fetch_page(
    pool: &sqlx::AnyPool,
    mut q: Sql,
    target: &SearchTarget,
    spec: PageSpec<'_>,
    tiebreak: &str,
) -> crate::StoreResult<(Vec<sqlx::any::AnyRow>, Option<String>)> {
    let limit = bastion_core::limits::max_results(
        spec.max_results,
        spec.default_results,
        spec.max_allowed,
    )?;
    let offset = decode_page_token(spec.page_token)?;
    push_filter(
        &mut q,
        target,
        &bastion_core::search::parse_filter(spec.filter.unwrap_or(""))?,
    )?;
    q.push(" ORDER BY ");
    for o in spec.order_by {
        push_order_term(&mut q, target, &bastion_core::search::parse_order_by(o)?)?;
    }
    q.push(tiebreak)
        .push(" LIMIT ")
        .bind(limit + 1)
        .push(" OFFSET ")
        .bind(offset);
    let rows = q.query().fetch_all(pool).await?;
    Ok(split_page(rows, limit, offset))
}

/// Rows fetched with `LIMIT limit + 1` → the page, and a next-page token if there was more.
pub(crate) fn split_page<T>(mut rows: Vec<T>, limit: i64, offset: i64) -> (Vec<T>, Option<String>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    (rows, more.then(|| encode_page_token(offset + limit)))
}

/// Decodes MLflow-style page tokens: base64 of `{"offset": N}`.
pub(crate) fn decode_page_token(token: Option<&str>) -> Result<i64, Error> {
    use base64::Engine as _;
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(0);
    };
    let bad =
        || Error::invalid("Invalid page token: it was not issued by this server or is corrupted");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.as_bytes())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(token.as_bytes()))
        .map_err(|_| bad())?;
    let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    v.get("offset")
        .and_then(|o| o.as_i64())
        .filter(|o| *o >= 0)
        .ok_or_else(bad)
}

pub(crate) fn encode_page_token(offset: i64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{{\"offset\": {offset}}}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bastion_core::search::parse_filter;

    const TARGET: SearchTarget = SearchTarget {
        what: "runs",
        attributes: &[
            Attr {
                key: "run_name",
                column: "r.name",
                kind: AttrKind::Text,
            },
            Attr {
                key: "start_time",
                column: "r.start_time",
                kind: AttrKind::Number,
            },
        ],
        metrics: Some(KvTable {
            table: "latest_metrics",
            join: "x.run_uuid = r.run_uuid",
        }),
        params: Some(KvTable {
            table: "params",
            join: "x.run_uuid = r.run_uuid",
        }),
        tags: None,
        datasets: None,
        ne_includes_missing: false,
    };

    fn translate(f: &str) -> Result<Sql, Error> {
        let mut sql = Sql::new("");
        push_filter(&mut sql, &TARGET, &parse_filter(f)?)?;
        Ok(sql)
    }

    #[test]
    fn values_are_bound_never_spliced() {
        let sql =
            translate("params.`x'; DROP TABLE runs; --` = 'y''; DROP TABLE runs; --'").unwrap();
        assert!(!sql.text.contains("DROP"), "{}", sql.text);
        assert_eq!(sql.binds.len(), 2);
    }

    #[test]
    fn translation_shapes() {
        let sql =
            translate("metrics.loss < 1 AND run_name ILIKE 'a%' AND start_time >= 5").unwrap();
        assert!(sql.text.contains("x.value < $2"), "{}", sql.text);
        assert!(
            sql.text.contains("LOWER(r.name) LIKE LOWER($3)"),
            "{}",
            sql.text
        );
        assert!(sql.text.contains("r.start_time >= $4"), "{}", sql.text);
    }

    #[test]
    fn semantic_errors_are_precise() {
        let cases = [
            (
                "metrics.loss LIKE 'a'",
                "Invalid comparator 'LIKE' for metric 'loss'",
            ),
            (
                "metrics.loss = 'a'",
                "Expected numeric value type for metric 'loss'",
            ),
            (
                "params.p = 1",
                "Expected a quoted string value for parameter 'p'",
            ),
            ("bogus = 'x'", "Invalid attribute key 'bogus'"),
            ("tags.t = 'x'", "Searching runs by tag is not supported"),
            ("start_time LIKE 'x'", "Invalid comparator 'LIKE'"),
            ("datasets.name = 'x'", "by dataset is not supported"),
        ];
        for (f, want) in cases {
            let e = translate(f).unwrap_err();
            assert!(e.message.contains(want), "{f}: {}", e.message);
        }
    }

    #[test]
    fn page_tokens() {
        assert_eq!(decode_page_token(None).unwrap(), 0);
        assert_eq!(decode_page_token(Some(&encode_page_token(42))).unwrap(), 42);
        assert!(decode_page_token(Some("garbage!")).is_err());
        assert!(decode_page_token(Some("eyJvZmZzZXQiOiAtMX0=")).is_err()); // offset -1
    }
}
