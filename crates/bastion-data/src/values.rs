//! One view of a column's values per kind: numbers as f64 (temporal as seconds since the
//! epoch), everything else as text. Every check reads columns through these.

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};

use crate::error::DataResult;
use crate::schema::Kind;

/// The column as f64: numeric values as they are, dates and timestamps as seconds since the
/// Unix epoch.
pub fn as_f64(a: &ArrayRef) -> DataResult<Float64Array> {
    let out = match a.data_type() {
        DataType::Float64 => a.as_primitive::<Float64Type>().clone(),
        DataType::Date32 | DataType::Date64 => {
            let ms = cast(&cast(a, &DataType::Date64)?, &DataType::Int64)?;
            scale(&ms, 1e-3)
        }
        DataType::Timestamp(unit, _) => {
            let raw = cast(
                &cast(a, &DataType::Timestamp(*unit, None))?,
                &DataType::Int64,
            )?;
            let factor = match unit {
                TimeUnit::Second => 1.0,
                TimeUnit::Millisecond => 1e-3,
                TimeUnit::Microsecond => 1e-6,
                TimeUnit::Nanosecond => 1e-9,
            };
            scale(&raw, factor)
        }
        _ => cast(a, &DataType::Float64)?
            .as_primitive::<Float64Type>()
            .clone(),
    };
    Ok(out)
}

fn scale(ints: &ArrayRef, factor: f64) -> Float64Array {
    ints.as_primitive::<Int64Type>()
        .unary(|v| v as f64 * factor)
}

/// The column as text (booleans as `true`/`false`, numbers as Arrow prints them).
pub fn as_text(a: &ArrayRef) -> DataResult<StringArray> {
    Ok(match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().clone(),
        _ => cast(a, &DataType::Utf8)?.as_string::<i32>().clone(),
    })
}

/// Whether the column is read as numbers.
pub fn numeric_kind(k: Kind) -> bool {
    matches!(k, Kind::Numeric | Kind::Temporal)
}

/// The value of row `i` as JSON, for examples in reports.
pub fn json_value(a: &ArrayRef, i: usize) -> serde_json::Value {
    if a.is_null(i) {
        return serde_json::Value::Null;
    }
    match crate::schema::Kind::of(a.data_type()) {
        Kind::Numeric => match as_f64(&a.slice(i, 1)) {
            Ok(v) if v.len() == 1 => serde_json::Number::from_f64(v.value(0))
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| serde_json::Value::String(v.value(0).to_string())),
            _ => serde_json::Value::Null,
        },
        Kind::Boolean => match a.as_boolean_opt() {
            Some(b) => serde_json::Value::Bool(b.value(i)),
            None => serde_json::Value::Null,
        },
        _ => match as_text(&a.slice(i, 1)) {
            Ok(s) if s.len() == 1 => serde_json::Value::String(s.value(0).to_string()),
            _ => serde_json::Value::Null,
        },
    }
}
