//! Constraints (TOML) in the spirit of Deequ and Great Expectations, checked in one streamed
//! pass; each failure is reported with its count and example rows.
//!
//! ```toml
//! [dataset]
//! rows = { min = 100, max = 1_000_000 }
//! freshness = { column = "event_time", max_age = "7days" }
//!
//! [columns.age]
//! type = "numeric"          # a kind (numeric, text, boolean, temporal) or an Arrow type
//! not_null = true
//! min = 0
//! max = 120
//! mean = { min = 30, max = 50 }
//! max_null_fraction = 0.01
//!
//! [columns.country]
//! allowed = ["DE", "FR", "US"]
//! regex = "^[A-Z]{2}$"
//! unique = false
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use arrow::array::{Array, ArrayRef, RecordBatch};
use serde::{Deserialize, Serialize};

use crate::error::{DataError, DataResult};
use crate::read::ParquetData;
use crate::schema::Kind;
use crate::sketch::{HashMap64, hash_bytes, hash_f64};
use crate::values::{as_f64, as_text, json_value, numeric_kind};

/// Examples kept per failed constraint.
pub const EXAMPLES: usize = 5;
const MAX_REGEX_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    #[serde(default, skip_serializing_if = "DatasetConstraints::is_empty")]
    pub dataset: DatasetConstraints,
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnConstraints>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetConstraints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<Range>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<Freshness>,
}

impl DatasetConstraints {
    fn is_empty(&self) -> bool {
        self.rows.is_none() && self.freshness.is_none()
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Range {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl Range {
    fn contains(&self, v: f64) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }
    fn describe(&self) -> String {
        match (self.min, self.max) {
            (Some(a), Some(b)) => format!("between {a} and {b}"),
            (Some(a), None) => format!("at least {a}"),
            (None, Some(b)) => format!("at most {b}"),
            (None, None) => "anything".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Freshness {
    pub column: String,
    /// A duration such as `36h` or `7days`: the newest value must be at most this old.
    pub max_age: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ColumnConstraints {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub not_null: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub unique: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<Range>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_null_fraction: Option<f64>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Constraints {
    pub fn parse(text: &str) -> DataResult<Self> {
        let c: Self = toml::from_str(text).map_err(|e| DataError::Constraints(e.to_string()))?;
        for (name, col) in &c.columns {
            if let Some(r) = &col.regex {
                build_regex(r)
                    .map_err(|e| DataError::Constraints(format!("columns.{name}.regex: {e}")))?;
            }
            if let Some(f) = col.max_null_fraction
                && !(0.0..=1.0).contains(&f)
            {
                return Err(DataError::Constraints(format!(
                    "columns.{name}.max_null_fraction must be between 0 and 1, not {f}"
                )));
            }
        }
        if let Some(f) = &c.dataset.freshness {
            humantime::parse_duration(&f.max_age).map_err(|e| {
                DataError::Constraints(format!("dataset.freshness.max_age '{}': {e}", f.max_age))
            })?;
        }
        Ok(c)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

fn build_regex(r: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(r)
        .size_limit(MAX_REGEX_BYTES)
        .dfa_size_limit(MAX_REGEX_BYTES)
        .build()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Example {
    /// Zero-based row number in the dataset.
    pub row: u64,
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConstraintResult {
    /// Where the constraint sits in the file, e.g. `columns.age.max`.
    pub constraint: String,
    pub description: String,
    pub passed: bool,
    /// Rows that break it (row-level constraints).
    pub failed_rows: u64,
    /// What was measured (a mean, a fraction, a row count…) when it is not a row count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<Example>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ValidationReport {
    pub rows: u64,
    pub passed: bool,
    pub checked: usize,
    pub failed: usize,
    pub results: Vec<ConstraintResult>,
}

/// A row-level check on one column.
enum RowCheck {
    NotNull,
    Unique(HashMap64<u64>),
    Min(f64),
    Max(f64),
    Allowed(std::collections::HashSet<String>),
    Regex(regex::Regex),
}

struct RowState {
    key: String,
    description: String,
    column: usize,
    check: RowCheck,
    failed: u64,
    examples: Vec<Example>,
}

struct ColumnAgg {
    column: usize,
    n: u64,
    nulls: u64,
    sum: f64,
}

/// Validates a canonical Parquet file against the constraints.
pub fn validate_parquet(
    path: &Path,
    c: &Constraints,
    now: SystemTime,
) -> DataResult<ValidationReport> {
    let data = ParquetData::open(path)?;
    let schema = data.schema();
    let col_index = |name: &str| schema.index_of(name).ok();
    let mut results = Vec::new();
    let mut rows_checks: Vec<RowState> = Vec::new();
    let mut aggs: BTreeMap<String, ColumnAgg> = BTreeMap::new();

    for (name, cc) in &c.columns {
        let Some(idx) = col_index(name) else {
            results.push(ConstraintResult {
                constraint: format!("columns.{name}"),
                description: format!("column '{name}' exists"),
                passed: false,
                failed_rows: 0,
                observed: Some(serde_json::Value::String("missing".into())),
                examples: Vec::new(),
            });
            continue;
        };
        let field = schema.field(idx);
        let kind = Kind::of(field.data_type());
        if let Some(t) = &cc.dtype {
            let actual_kind = serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let actual = field.data_type().to_string();
            let ok = t.eq_ignore_ascii_case(&actual_kind) || *t == actual;
            results.push(ConstraintResult {
                constraint: format!("columns.{name}.type"),
                description: format!("'{name}' is {t}"),
                passed: ok,
                failed_rows: 0,
                observed: Some(serde_json::Value::String(format!(
                    "{actual_kind} ({actual})"
                ))),
                examples: Vec::new(),
            });
        }
        let mut add = |key: &str, description: String, check: RowCheck| {
            rows_checks.push(RowState {
                key: format!("columns.{name}.{key}"),
                description,
                column: idx,
                check,
                failed: 0,
                examples: Vec::new(),
            })
        };
        if cc.not_null {
            add(
                "not_null",
                format!("'{name}' has no nulls"),
                RowCheck::NotNull,
            );
        }
        if cc.unique {
            add(
                "unique",
                format!("'{name}' values are unique"),
                RowCheck::Unique(HashMap64::default()),
            );
        }
        if (cc.min.is_some() || cc.max.is_some() || cc.mean.is_some()) && !numeric_kind(kind) {
            return Err(DataError::Constraints(format!(
                "columns.{name}: min, max and mean need a numeric or temporal column, and '{name}' is {}",
                field.data_type()
            )));
        }
        if let Some(m) = cc.min {
            add("min", format!("'{name}' ≥ {m}"), RowCheck::Min(m));
        }
        if let Some(m) = cc.max {
            add("max", format!("'{name}' ≤ {m}"), RowCheck::Max(m));
        }
        if let Some(a) = &cc.allowed {
            add(
                "allowed",
                format!("'{name}' is one of {} allowed values", a.len()),
                RowCheck::Allowed(a.iter().cloned().collect()),
            );
        }
        if let Some(r) = &cc.regex {
            let re = build_regex(r)
                .map_err(|e| DataError::Constraints(format!("columns.{name}.regex: {e}")))?;
            add(
                "regex",
                format!("'{name}' matches /{r}/"),
                RowCheck::Regex(re),
            );
        }
        if cc.mean.is_some() || cc.max_null_fraction.is_some() {
            aggs.insert(
                name.clone(),
                ColumnAgg {
                    column: idx,
                    n: 0,
                    nulls: 0,
                    sum: 0.0,
                },
            );
        }
    }
    let fresh_col = match &c.dataset.freshness {
        Some(f) => match col_index(&f.column) {
            Some(i) if Kind::of(schema.field(i).data_type()) == Kind::Temporal => Some(i),
            Some(i) => {
                return Err(DataError::Constraints(format!(
                    "dataset.freshness: column '{}' is {}, not a date or timestamp",
                    f.column,
                    schema.field(i).data_type()
                )));
            }
            None => {
                return Err(DataError::Constraints(format!(
                    "dataset.freshness: no column '{}'",
                    f.column
                )));
            }
        },
        None => None,
    };
    let mut newest = f64::NEG_INFINITY;

    let mut rows = 0u64;
    for batch in data.batches(None)? {
        let batch = batch?;
        for st in &mut rows_checks {
            check_rows(st, &batch, rows)?;
        }
        for agg in aggs.values_mut() {
            let col = batch.column(agg.column);
            agg.nulls += col.null_count() as u64;
            if numeric_kind(Kind::of(col.data_type())) {
                let v = as_f64(col)?;
                for x in v.iter().flatten().filter(|x| x.is_finite()) {
                    agg.n += 1;
                    agg.sum += x;
                }
            }
        }
        if let Some(i) = fresh_col {
            let v = as_f64(batch.column(i))?;
            for x in v.iter().flatten() {
                newest = newest.max(x);
            }
        }
        rows += batch.num_rows() as u64;
    }

    if let Some(r) = &c.dataset.rows {
        results.push(ConstraintResult {
            constraint: "dataset.rows".into(),
            description: format!("row count {}", r.describe()),
            passed: r.contains(rows as f64),
            failed_rows: 0,
            observed: Some(rows.into()),
            examples: Vec::new(),
        });
    }
    if let Some(f) = &c.dataset.freshness {
        let max_age = humantime::parse_duration(&f.max_age)
            .map_err(|e| DataError::Constraints(format!("dataset.freshness.max_age: {e}")))?;
        let now_s = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
        let age = now_s - newest;
        results.push(ConstraintResult {
            constraint: "dataset.freshness".into(),
            description: format!("newest '{}' at most {} old", f.column, f.max_age),
            passed: newest.is_finite() && age <= max_age.as_secs_f64(),
            failed_rows: 0,
            observed: Some(if newest.is_finite() {
                serde_json::json!({ "newest_epoch_seconds": newest, "age_seconds": age })
            } else {
                serde_json::Value::String("no values".into())
            }),
            examples: Vec::new(),
        });
    }
    for st in rows_checks {
        results.push(ConstraintResult {
            constraint: st.key,
            description: st.description,
            passed: st.failed == 0,
            failed_rows: st.failed,
            observed: None,
            examples: st.examples,
        });
    }
    for (name, agg) in aggs {
        let cc = &c.columns[&name];
        if let Some(r) = &cc.mean {
            let mean = if agg.n == 0 {
                f64::NAN
            } else {
                agg.sum / agg.n as f64
            };
            results.push(ConstraintResult {
                constraint: format!("columns.{name}.mean"),
                description: format!("mean of '{name}' {}", r.describe()),
                passed: mean.is_finite() && r.contains(mean),
                failed_rows: 0,
                observed: serde_json::Number::from_f64(mean).map(serde_json::Value::Number),
                examples: Vec::new(),
            });
        }
        if let Some(f) = cc.max_null_fraction {
            let frac = if rows == 0 {
                0.0
            } else {
                agg.nulls as f64 / rows as f64
            };
            results.push(ConstraintResult {
                constraint: format!("columns.{name}.max_null_fraction"),
                description: format!("null fraction of '{name}' at most {f}"),
                passed: frac <= f,
                failed_rows: agg.nulls,
                observed: serde_json::Number::from_f64(frac).map(serde_json::Value::Number),
                examples: Vec::new(),
            });
        }
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    Ok(ValidationReport {
        rows,
        passed: failed == 0,
        checked: results.len(),
        failed,
        results,
    })
}

fn check_rows(st: &mut RowState, batch: &RecordBatch, offset: u64) -> DataResult<()> {
    let col: &ArrayRef = batch.column(st.column);
    let fail = |st: &mut RowState, i: usize| {
        st.failed += 1;
        if st.examples.len() < EXAMPLES {
            st.examples.push(Example {
                row: offset + i as u64,
                value: json_value(col, i),
            });
        }
    };
    match &mut st.check {
        RowCheck::NotNull => {
            if col.null_count() > 0 {
                for i in 0..col.len() {
                    if col.is_null(i) {
                        fail(st, i);
                    }
                }
            }
        }
        RowCheck::Min(_) | RowCheck::Max(_) => {
            let v = as_f64(col)?;
            let bad: Vec<usize> = match st.check {
                RowCheck::Min(m) => (0..v.len())
                    .filter(|&i| {
                        v.is_valid(i) && v.value(i).partial_cmp(&m).is_none_or(|o| o.is_lt())
                    })
                    .collect(),
                RowCheck::Max(m) => (0..v.len())
                    .filter(|&i| {
                        v.is_valid(i) && v.value(i).partial_cmp(&m).is_none_or(|o| o.is_gt())
                    })
                    .collect(),
                _ => Vec::new(),
            };
            for i in bad {
                fail(st, i);
            }
        }
        RowCheck::Unique(_) => {
            let hashes: Vec<Option<u64>> = if numeric_kind(Kind::of(col.data_type())) {
                as_f64(col)?.iter().map(|v| v.map(hash_f64)).collect()
            } else {
                as_text(col)?
                    .iter()
                    .map(|v| v.map(|s| hash_bytes(s.as_bytes())))
                    .collect()
            };
            let mut bad = Vec::new();
            if let RowCheck::Unique(seen) = &mut st.check {
                for (i, h) in hashes.iter().enumerate() {
                    if let Some(h) = h
                        && seen.insert(*h, offset + i as u64).is_some()
                    {
                        bad.push(i);
                    }
                }
            }
            for i in bad {
                fail(st, i);
            }
        }
        RowCheck::Allowed(_) | RowCheck::Regex(_) => {
            let v = as_text(col)?;
            let bad: Vec<usize> = match &st.check {
                RowCheck::Allowed(set) => (0..v.len())
                    .filter(|&i| v.is_valid(i) && !set.contains(v.value(i)))
                    .collect(),
                RowCheck::Regex(re) => (0..v.len())
                    .filter(|&i| v.is_valid(i) && !re.is_match(v.value(i)))
                    .collect(),
                _ => Vec::new(),
            };
            for i in bad {
                fail(st, i);
            }
        }
    }
    Ok(())
}

/// Constraints a profile suggests: the observed type, completeness, uniqueness, ranges,
/// small category sets, and a mean band of ±0.25 standard deviations. A starting point to
/// edit, not a specification.
pub fn suggest(profile: &crate::profile::Profile) -> Constraints {
    let mut columns = BTreeMap::new();
    for c in &profile.columns {
        let kind = serde_json::to_value(c.schema.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        let mut cc = ColumnConstraints {
            dtype: kind,
            not_null: c.nulls == 0 && c.count > 0,
            unique: c.distinct_exact && c.count > 1 && c.distinct == c.count && c.nulls == 0,
            ..Default::default()
        };
        if c.nulls > 0 {
            cc.max_null_fraction = Some(((c.null_fraction * 1.5).min(1.0) * 1e4).ceil() / 1e4);
        }
        if let Some(n) = &c.numeric
            && c.schema.kind == Kind::Numeric
            && n.min.is_finite()
        {
            cc.min = Some(n.min);
            cc.max = Some(n.max);
            if n.std.is_finite() {
                cc.mean = Some(Range {
                    min: Some(n.mean - 0.25 * n.std),
                    max: Some(n.mean + 0.25 * n.std),
                });
            }
        }
        if c.schema.kind.is_categorical()
            && c.top_exact
            && c.distinct <= 20
            && c.distinct_exact
            && !cc.unique
        {
            cc.allowed = Some(c.top.iter().map(|v| v.value.clone()).collect());
        }
        columns.insert(c.schema.name.clone(), cc);
    }
    Constraints {
        dataset: DatasetConstraints {
            rows: Some(Range {
                min: Some(1.0),
                max: None,
            }),
            freshness: None,
        },
        columns,
    }
}
