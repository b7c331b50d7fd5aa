//! A whole Parquet file as plain columns for model training and prediction: numbers (and
//! dates, as seconds) as `f64`, text and booleans as strings, nulls as `None`. Nested and
//! binary columns are left out and named, since no model can use them as they are.

use std::path::Path;

use arrow::array::Array;

use crate::error::{DataError, DataResult};
use crate::read::ParquetData;
use crate::schema::Kind;
use crate::values::{as_f64, as_text, numeric_kind};

pub enum Values {
    Numeric(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
}

pub struct Columns {
    pub names: Vec<String>,
    pub values: Vec<Values>,
    /// Columns of kinds a model cannot take (nested, binary).
    pub skipped: Vec<String>,
}

/// Reads every usable column of `path`, refusing files of more than `max_rows` rows.
pub fn read_columns(path: &Path, max_rows: u64) -> DataResult<Columns> {
    let data = ParquetData::open(path)?;
    if data.rows() > max_rows {
        return Err(DataError::input(
            path,
            format!(
                "{} rows is more than the {max_rows} a model is trained on in memory",
                data.rows()
            ),
        ));
    }
    let schema = data.schema();
    let mut names = Vec::new();
    let mut kinds = Vec::new();
    let mut skipped = Vec::new();
    let mut picked = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        let kind = Kind::of(f.data_type());
        if kind == Kind::Other {
            skipped.push(f.name().clone());
        } else {
            names.push(f.name().clone());
            kinds.push(kind);
            picked.push(i);
        }
    }
    let rows = usize::try_from(data.rows()).unwrap_or(usize::MAX);
    let mut values: Vec<Values> = kinds
        .iter()
        .map(|&k| {
            if numeric_kind(k) {
                Values::Numeric(Vec::with_capacity(rows))
            } else {
                Values::Text(Vec::with_capacity(rows))
            }
        })
        .collect();
    for batch in data.batches(Some(&picked))? {
        let batch = batch?;
        for (col, out) in batch.columns().iter().zip(values.iter_mut()) {
            match out {
                Values::Numeric(v) => {
                    let a = as_f64(col)?;
                    v.extend((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i))));
                }
                Values::Text(v) => {
                    let a = as_text(col)?;
                    v.extend((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_owned())));
                }
            }
        }
    }
    Ok(Columns {
        names,
        values,
        skipped,
    })
}
