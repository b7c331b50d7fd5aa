//! A SQL transform: each input Parquet becomes a table of an in-memory SQLite, one `SELECT`
//! runs over them, and its rows are written as a new canonical Parquet.
//!
//! The sandbox, because the SQL comes from a pipeline file and the data from anyone: the
//! database lives in memory and cannot `ATTACH` another (the limit is zero), the authorizer
//! allows only reading tables and calling functions (no `PRAGMA`, no writes, no
//! `load_extension`), exactly one statement is accepted and it must be read-only, a progress
//! handler stops it at its time budget, and the result is capped in rows.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use bastion_data::DataError;
use bastion_data::read::ParquetData;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ffi};

use crate::error::{SqlError, SqlResult};
use crate::rows::{Column, Declared, Value};

/// An input: the table name the query uses and the Parquet it holds.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub max_rows: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(600),
            max_rows: 50_000_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub columns: Vec<String>,
}

/// Functions a query may not call even though SQLite has them: they reach outside the
/// database (extensions) or change how it parses.
const REFUSED_FUNCTIONS: &[&str] = &["load_extension", "fts3_tokenizer"];

const BATCH_ROWS: usize = 65_536;
/// The longest text or blob a transform may read or make.
const MAX_VALUE_BYTES: i32 = 64 << 20;

/// A table name: a letter or `_`, then letters, digits or `_`; at most 64; not SQLite's own.
pub fn check_table_name(name: &str) -> SqlResult<()> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
        && !name.to_ascii_lowercase().starts_with("sqlite_");
    if ok {
        Ok(())
    } else {
        Err(SqlError::Input(format!(
            "'{name}' is not a usable table name: use a letter or _, then letters, digits or _ \
             (at most 64, not starting with sqlite_)"
        )))
    }
}

fn quoted(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Runs `sql` over `tables` and writes its rows to `out` as canonical Parquet.
pub fn transform<W: Write + Send>(
    tables: &[Table],
    sql: &str,
    out: W,
    limits: &Limits,
) -> SqlResult<Summary> {
    non_empty(sql)?;
    let mut seen = std::collections::HashSet::new();
    for t in tables {
        check_table_name(&t.name)?;
        if !seen.insert(t.name.to_ascii_lowercase()) {
            return Err(SqlError::Input(format!(
                "two inputs are named '{}' (table names ignore case)",
                t.name
            )));
        }
    }
    let conn = Connection::open_in_memory().map_err(|e| SqlError::Query(e.to_string()))?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)
        .map_err(|e| SqlError::Query(e.to_string()))?;
    conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, 1 << 20)
        .map_err(|e| SqlError::Query(e.to_string()))?;
    // One value (text or blob) at most this long: `zeroblob(1e9)` would otherwise be a
    // gigabyte held twice.
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        .map_err(|e| SqlError::Query(e.to_string()))?;
    math::register(&conn)?;
    for t in tables {
        load(&conn, t)?;
    }
    sandbox(&conn);
    let stopped = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + limits.timeout;
    let flag = stopped.clone();
    conn.progress_handler(
        10_000,
        Some(move || {
            let over = Instant::now() >= deadline;
            if over {
                flag.store(true, Ordering::Relaxed);
            }
            over
        }),
    )
    .map_err(|e| SqlError::Query(e.to_string()))?;
    let timed_out = |e: rusqlite::Error| {
        if stopped.load(Ordering::Relaxed) {
            SqlError::Timeout(limits.timeout.as_secs())
        } else {
            SqlError::Query(message(&e))
        }
    };

    let mut stmt = conn.prepare(sql).map_err(timed_out)?;
    if !stmt.readonly() {
        return Err(SqlError::Query(
            "only a read-only statement (SELECT or WITH … SELECT) can make a dataset".into(),
        ));
    }
    if stmt.column_count() == 0 {
        return Err(SqlError::Query("it returns no columns".into()));
    }
    let described: Vec<(String, Declared)> = stmt
        .columns()
        .iter()
        .map(|c| (c.name().to_owned(), Declared::of(c.decl_type())))
        .collect();
    distinct_names(described.iter().map(|(n, _)| n.as_str()))?;
    let mut columns: Vec<Column> = described.iter().map(|(_, d)| Column::new(*d)).collect();
    let mut rows = stmt.query([]).map_err(timed_out)?;
    let mut count = 0u64;
    while let Some(row) = rows.next().map_err(timed_out)? {
        count += 1;
        if count > limits.max_rows {
            return Err(SqlError::TooManyRows(limits.max_rows));
        }
        for (i, col) in columns.iter_mut().enumerate() {
            let v = match row.get_ref(i).map_err(timed_out)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::Int(i),
                ValueRef::Real(r) => Value::Real(r),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            };
            col.push(v);
        }
    }
    let arrays: Vec<ArrayRef> = columns.into_iter().map(Column::finish).collect();
    let schema = Arc::new(Schema::new(
        described
            .iter()
            .zip(&arrays)
            .map(|((name, _), a)| Field::new(name, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let mut w = bastion_data::write::parquet_writer(out, schema.clone())?;
    let total = count as usize;
    let mut at = 0;
    while at < total {
        let n = BATCH_ROWS.min(total - at);
        let batch = RecordBatch::try_new(
            schema.clone(),
            arrays.iter().map(|a| a.slice(at, n)).collect(),
        )?;
        w.write(&batch).map_err(DataError::from)?;
        at += n;
    }
    w.close().map_err(DataError::from)?;
    Ok(Summary {
        rows: count,
        columns: described.into_iter().map(|(n, _)| n).collect(),
    })
}

pub(crate) fn non_empty(sql: &str) -> SqlResult<()> {
    if sql.trim().is_empty() {
        return Err(SqlError::Query("it is empty".into()));
    }
    Ok(())
}

/// A dataset's columns need distinct names; SQL happily returns two `id`s from a join.
pub(crate) fn distinct_names<'a>(names: impl Iterator<Item = &'a str>) -> SqlResult<()> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(SqlError::Query(format!(
                "two result columns are named '{name}': give one another name with AS"
            )));
        }
    }
    Ok(())
}

/// SQLite's message without the wrapper's noise ("near \"SELEC\": syntax error").
fn message(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(err, Some(msg)) => {
            if err.extended_code == ffi::SQLITE_AUTH {
                format!("{msg} (only reading the input tables is allowed)")
            } else {
                msg.clone()
            }
        }
        rusqlite::Error::MultipleStatement => {
            "it holds more than one statement: a transform is one SELECT".into()
        }
        other => other.to_string(),
    }
}

/// From here on the connection may only read.
fn sandbox(conn: &Connection) {
    let _ = conn.authorizer(Some(|ctx: AuthContext<'_>| match ctx.action {
        AuthAction::Select | AuthAction::Read { .. } | AuthAction::Recursive => {
            Authorization::Allow
        }
        AuthAction::Function { function_name }
            if !REFUSED_FUNCTIONS
                .iter()
                .any(|f| f.eq_ignore_ascii_case(function_name)) =>
        {
            Authorization::Allow
        }
        _ => Authorization::Deny,
    }));
}

/// How an Arrow column is stored: the declared type (read back by the result's columns)
/// and the column converted to what SQLite can hold.
fn storable(a: &ArrayRef) -> SqlResult<(&'static str, ArrayRef)> {
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    let to = |t: &DataType| cast_with_options(a, t, &strict);
    Ok(match a.data_type() {
        DataType::Boolean => ("BOOLEAN", to(&DataType::Int64)?),
        t if t.is_integer() => ("INTEGER", to(&DataType::Int64)?),
        t if t.is_floating()
            || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) =>
        {
            ("REAL", to(&DataType::Float64)?)
        }
        DataType::Date32 | DataType::Date64 => ("DATE", to(&DataType::Utf8)?),
        DataType::Timestamp(..) => ("TIMESTAMP", to(&DataType::Utf8)?),
        DataType::Binary | DataType::LargeBinary => ("BLOB", to(&DataType::Binary)?),
        _ => ("TEXT", to(&DataType::Utf8)?),
    })
}

/// Creates the table and copies the Parquet's rows into it, in one transaction.
fn load(conn: &Connection, t: &Table) -> SqlResult<()> {
    let data = ParquetData::open(&t.path)?;
    let schema = data.schema();
    if schema.fields().is_empty() {
        return Err(SqlError::Input(format!(
            "{}: the input has no columns",
            t.name
        )));
    }
    let mut first = true;
    let tx = conn
        .unchecked_transaction()
        .map_err(|e| SqlError::Query(e.to_string()))?;
    let insert = format!(
        "INSERT INTO {} VALUES ({})",
        quoted(&t.name),
        vec!["?"; schema.fields().len()].join(", ")
    );
    for batch in data.batches(None)? {
        let batch = batch?;
        let converted: Vec<(&str, ArrayRef)> = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(a, f)| {
                storable(a)
                    .map_err(|e| SqlError::Input(format!("{}: column '{}': {e}", t.name, f.name())))
            })
            .collect::<SqlResult<_>>()?;
        if first {
            let cols: Vec<String> = schema
                .fields()
                .iter()
                .zip(&converted)
                .map(|(f, (d, _))| format!("{} {d}", quoted(f.name())))
                .collect();
            conn.execute(
                &format!("CREATE TABLE {} ({})", quoted(&t.name), cols.join(", ")),
                [],
            )
            .map_err(|e| SqlError::Input(format!("{}: {}", t.name, message(&e))))?;
            first = false;
        }
        let mut stmt = conn
            .prepare(&insert)
            .map_err(|e| SqlError::Query(e.to_string()))?;
        for row in 0..batch.num_rows() {
            for (j, (_, a)) in converted.iter().enumerate() {
                bind(&mut stmt, j + 1, a, row).map_err(|e| SqlError::Query(e.to_string()))?;
            }
            stmt.raw_execute()
                .map_err(|e| SqlError::Query(e.to_string()))?;
        }
    }
    if first {
        // No batches: an empty table still has its columns.
        let cols: Vec<String> = schema.fields().iter().map(|f| quoted(f.name())).collect();
        conn.execute(
            &format!("CREATE TABLE {} ({})", quoted(&t.name), cols.join(", ")),
            [],
        )
        .map_err(|e| SqlError::Input(format!("{}: {}", t.name, message(&e))))?;
    }
    tx.commit().map_err(|e| SqlError::Query(e.to_string()))?;
    Ok(())
}

fn bind(
    stmt: &mut rusqlite::Statement<'_>,
    at: usize,
    a: &ArrayRef,
    row: usize,
) -> rusqlite::Result<()> {
    if a.is_null(row) {
        return stmt.raw_bind_parameter(at, rusqlite::types::Null);
    }
    match a.data_type() {
        DataType::Int64 => stmt.raw_bind_parameter(at, a.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => {
            stmt.raw_bind_parameter(at, a.as_primitive::<Float64Type>().value(row))
        }
        DataType::Binary => stmt.raw_bind_parameter(at, a.as_binary::<i32>().value(row)),
        _ => stmt.raw_bind_parameter(at, a.as_string::<i32>().value(row)),
    }
}

/// The math functions SQLite has only when compiled with them (`ln`, `exp`, `sqrt`, …),
/// registered here so a transform can rely on them.
mod math {
    use rusqlite::Connection;
    use rusqlite::functions::FunctionFlags;

    use crate::error::{SqlError, SqlResult};

    type Unary = fn(f64) -> f64;

    const UNARY: &[(&str, Unary)] = &[
        ("ln", f64::ln),
        ("log10", f64::log10),
        ("log2", f64::log2),
        ("exp", f64::exp),
        ("sqrt", f64::sqrt),
        ("floor", f64::floor),
        ("ceil", f64::ceil),
        ("sin", f64::sin),
        ("cos", f64::cos),
        ("tanh", f64::tanh),
    ];

    pub fn register(conn: &Connection) -> SqlResult<()> {
        let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
        for &(name, f) in UNARY {
            conn.create_scalar_function(name, 1, flags, move |ctx| {
                let x: Option<f64> = ctx.get(0)?;
                Ok(x.map(f).filter(|v| v.is_finite()))
            })
            .map_err(|e| SqlError::Query(e.to_string()))?;
        }
        conn.create_scalar_function("pow", 2, flags, |ctx| {
            let (x, y): (Option<f64>, Option<f64>) = (ctx.get(0)?, ctx.get(1)?);
            Ok(x.zip(y).map(|(x, y)| x.powf(y)).filter(|v| v.is_finite()))
        })
        .map_err(|e| SqlError::Query(e.to_string()))?;
        Ok(())
    }
}
