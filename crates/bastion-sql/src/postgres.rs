//! Rows from PostgreSQL: a query run in a read-only transaction with a statement timeout,
//! streamed into canonical Parquet in batches. Column types come from PostgreSQL's own
//! description of the result; a type with no faithful Arrow counterpart is refused with the
//! cast that fixes it.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder,
    RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use bastion_data::DataError;
use futures::TryStreamExt;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Column as _, Connection, Executor, Row, SqlSafeStr, Statement, TypeInfo};

use crate::error::{SqlError, SqlResult};
use crate::transform::{Limits, Summary, distinct_names, non_empty};

const BATCH_ROWS: usize = 65_536;
/// 1970-01-01 as a Julian day number: Arrow's Date32 counts days from it.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    Date,
    Timestamp,
    TimestampTz,
}

impl Kind {
    fn of(column: &str, type_name: &str) -> SqlResult<Self> {
        Ok(match type_name {
            "BOOL" => Self::Bool,
            "INT2" => Self::Int2,
            "INT4" => Self::Int4,
            "INT8" => Self::Int8,
            "FLOAT4" => Self::Float4,
            "FLOAT8" => Self::Float8,
            "TEXT" | "VARCHAR" | "CHAR" | "BPCHAR" | "NAME" => Self::Text,
            "DATE" => Self::Date,
            "TIMESTAMP" => Self::Timestamp,
            "TIMESTAMPTZ" => Self::TimestampTz,
            "NUMERIC" => {
                return Err(SqlError::Input(format!(
                    "column '{column}' is NUMERIC, which has no exact Arrow type here: \
                     cast it in the query ({column}::float8, or {column}::text to keep every digit)"
                )));
            }
            other => {
                return Err(SqlError::Input(format!(
                    "column '{column}' has type {other}, which a dataset cannot hold: \
                     cast it in the query (e.g. {column}::text)"
                )));
            }
        })
    }

    fn data_type(self) -> DataType {
        match self {
            Self::Bool => DataType::Boolean,
            Self::Int2 | Self::Int4 | Self::Int8 => DataType::Int64,
            Self::Float4 | Self::Float8 => DataType::Float64,
            Self::Text => DataType::Utf8,
            Self::Date => DataType::Date32,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    fn builder(self) -> Box<dyn ArrayBuilder> {
        match self {
            Self::Bool => Box::new(BooleanBuilder::new()),
            Self::Int2 | Self::Int4 | Self::Int8 => Box::new(Int64Builder::new()),
            Self::Float4 | Self::Float8 => Box::new(Float64Builder::new()),
            Self::Text => Box::new(StringBuilder::new()),
            Self::Date => Box::new(Date32Builder::new()),
            Self::Timestamp => Box::new(TimestampMicrosecondBuilder::new()),
            Self::TimestampTz => Box::new(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
        }
    }
}

fn pg(e: sqlx::Error) -> SqlError {
    match e {
        sqlx::Error::Database(d) => SqlError::Postgres(d.message().to_owned()),
        other => SqlError::Postgres(other.to_string()),
    }
}

fn micros(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

/// Appends row `row`'s column `i` to `b`, decoded as `kind`.
fn append(b: &mut dyn ArrayBuilder, kind: Kind, row: &PgRow, i: usize) -> Result<(), sqlx::Error> {
    macro_rules! put {
        ($builder:ty, $value:expr) => {{
            if let Some(b) = b.as_any_mut().downcast_mut::<$builder>() {
                b.append_option($value);
            }
        }};
    }
    match kind {
        Kind::Bool => put!(BooleanBuilder, row.try_get::<Option<bool>, _>(i)?),
        Kind::Int2 => put!(
            Int64Builder,
            row.try_get::<Option<i16>, _>(i)?.map(i64::from)
        ),
        Kind::Int4 => put!(
            Int64Builder,
            row.try_get::<Option<i32>, _>(i)?.map(i64::from)
        ),
        Kind::Int8 => put!(Int64Builder, row.try_get::<Option<i64>, _>(i)?),
        Kind::Float4 => put!(
            Float64Builder,
            row.try_get::<Option<f32>, _>(i)?.map(f64::from)
        ),
        Kind::Float8 => put!(Float64Builder, row.try_get::<Option<f64>, _>(i)?),
        Kind::Text => put!(StringBuilder, row.try_get::<Option<String>, _>(i)?),
        Kind::Date => put!(
            Date32Builder,
            row.try_get::<Option<time::Date>, _>(i)?
                .map(|d| d.to_julian_day() - UNIX_EPOCH_JULIAN_DAY)
        ),
        Kind::Timestamp => put!(
            TimestampMicrosecondBuilder,
            row.try_get::<Option<time::PrimitiveDateTime>, _>(i)?
                .map(|t| micros(t.assume_utc()))
        ),
        Kind::TimestampTz => put!(
            TimestampMicrosecondBuilder,
            row.try_get::<Option<time::OffsetDateTime>, _>(i)?
                .map(micros)
        ),
    }
    Ok(())
}

/// Runs `sql` on the PostgreSQL at `url` (read-only, at most `limits.timeout`) and writes its
/// rows to `out` as canonical Parquet.
pub async fn query_to_parquet<W: Write + Send>(
    url: &str,
    sql: &str,
    out: W,
    limits: &Limits,
) -> SqlResult<Summary> {
    non_empty(sql)?;
    let mut conn = PgConnection::connect(url).await.map_err(pg)?;
    let mut tx = conn.begin().await.map_err(pg)?;
    tx.execute("SET TRANSACTION READ ONLY").await.map_err(pg)?;
    let timeout_ms = limits.timeout.as_millis().clamp(1, i32::MAX as u128);
    tx.execute(sqlx::AssertSqlSafe(format!(
        "SET LOCAL statement_timeout = {timeout_ms}"
    )))
    .await
    .map_err(pg)?;
    // The query is the user's on purpose: it runs read-only, under the timeout, as whatever
    // role the URL names.
    let user_sql = || sqlx::AssertSqlSafe(sql.to_owned()).into_sql_str();
    let stmt = (&mut *tx).prepare(user_sql()).await.map_err(|e| match e {
        sqlx::Error::Database(d) => SqlError::Query(d.message().to_owned()),
        other => SqlError::Postgres(other.to_string()),
    })?;
    if stmt.columns().is_empty() {
        return Err(SqlError::Query(
            "it returns no columns: a dataset needs a SELECT".into(),
        ));
    }
    distinct_names(stmt.columns().iter().map(|c| c.name()))?;
    let mut kinds = Vec::new();
    let mut fields = Vec::new();
    for c in stmt.columns() {
        let kind = Kind::of(c.name(), c.type_info().name())?;
        fields.push(Field::new(c.name(), kind.data_type(), true));
        kinds.push(kind);
    }
    let schema = Arc::new(Schema::new(fields));
    let mut writer = bastion_data::write::parquet_writer(out, schema.clone())?;
    let mut builders: Vec<Box<dyn ArrayBuilder>> = kinds.iter().map(|k| k.builder()).collect();
    let mut rows = 0u64;
    let mut pending = 0usize;
    {
        let mut stream = sqlx::query(user_sql()).fetch(&mut *tx);
        while let Some(row) = stream.try_next().await.map_err(pg)? {
            rows += 1;
            if rows > limits.max_rows {
                return Err(SqlError::TooManyRows(limits.max_rows));
            }
            for (i, (b, k)) in builders.iter_mut().zip(&kinds).enumerate() {
                append(b.as_mut(), *k, &row, i).map_err(|e| {
                    SqlError::Postgres(format!(
                        "row {rows}, column {}: {e}",
                        schema.field(i).name()
                    ))
                })?;
            }
            pending += 1;
            if pending == BATCH_ROWS {
                flush(&mut writer, &schema, &mut builders)?;
                pending = 0;
            }
        }
    }
    if pending > 0 {
        flush(&mut writer, &schema, &mut builders)?;
    }
    writer.close().map_err(DataError::from)?;
    tx.rollback().await.map_err(pg)?;
    Ok(Summary {
        rows,
        columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
    })
}

fn flush<W: Write + Send>(
    writer: &mut bastion_data::write::ArrowWriter<W>,
    schema: &Arc<Schema>,
    builders: &mut [Box<dyn ArrayBuilder>],
) -> SqlResult<()> {
    let arrays: Vec<ArrayRef> = builders.iter_mut().map(|b| b.finish()).collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    writer.write(&batch).map_err(DataError::from)?;
    Ok(())
}
