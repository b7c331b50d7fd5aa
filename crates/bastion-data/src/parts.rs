//! A dataset divided by rows: each row's class (the value of a column, for stratified
//! splits) and the rows of each part written to their own Parquet. Which row goes where is
//! decided by the caller; this module only reads and routes.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use arrow::array::UInt32Array;
use arrow::compute::take_record_batch;

use crate::error::{DataError, DataResult};
use crate::read::ParquetData;
use crate::values::as_text;

/// Each row's class: rows with the same value of `column` (compared as text; nulls are a
/// class of their own) get the same index, numbered in order of first appearance.
pub fn class_keys(path: &Path, column: &str) -> DataResult<Vec<usize>> {
    let data = ParquetData::open(path)?;
    let schema = data.schema();
    let index = schema.index_of(column).map_err(|_| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        DataError::input(
            path,
            format!("no column '{column}' (columns: {})", names.join(", ")),
        )
    })?;
    let mut ids: HashMap<Option<String>, usize> = HashMap::new();
    let mut keys = Vec::with_capacity(data.rows() as usize);
    for batch in data.batches(Some(&[index]))? {
        let text = as_text(batch?.column(0))?;
        for v in text.iter() {
            let next = ids.len();
            keys.push(*ids.entry(v.map(str::to_owned)).or_insert(next));
        }
    }
    Ok(keys)
}

/// Writes row `i` of the Parquet at `path` to `outputs[part_of[i]]`, keeping row order, and
/// returns the rows each part got. `part_of` must name a part for every row.
pub fn write_parts<W: Write + Send>(
    path: &Path,
    part_of: &[usize],
    outputs: Vec<W>,
) -> DataResult<Vec<u64>> {
    let data = ParquetData::open(path)?;
    if data.rows() != part_of.len() as u64 {
        return Err(DataError::Invalid(format!(
            "{} rows assigned to parts but the dataset has {}",
            part_of.len(),
            data.rows()
        )));
    }
    if let Some(bad) = part_of.iter().find(|&&p| p >= outputs.len()) {
        return Err(DataError::Invalid(format!(
            "a row is assigned to part {bad} of {}",
            outputs.len()
        )));
    }
    let schema = data.schema();
    let mut writers = outputs
        .into_iter()
        .map(|w| crate::write::parquet_writer(w, schema.clone()))
        .collect::<DataResult<Vec<_>>>()?;
    let mut counts = vec![0u64; writers.len()];
    let mut offset = 0usize;
    for batch in data.batches(None)? {
        let batch = batch?;
        let n = batch.num_rows();
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); writers.len()];
        for i in 0..n {
            rows[part_of[offset + i]].push(i as u32);
        }
        for (p, idx) in rows.into_iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            counts[p] += idx.len() as u64;
            let taken = take_record_batch(&batch, &UInt32Array::from(idx))?;
            writers[p].write(&taken)?;
        }
        offset += n;
    }
    for w in writers {
        w.close()?;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn sample(dir: &Path) -> std::path::PathBuf {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, false),
            Field::new("label", DataType::Utf8, true),
        ]));
        let x: ArrayRef = Arc::new(Int64Array::from((0..10).collect::<Vec<i64>>()));
        let label: ArrayRef = Arc::new(StringArray::from(vec![
            Some("a"),
            Some("b"),
            None,
            Some("a"),
            Some("b"),
            Some("a"),
            None,
            Some("a"),
            Some("b"),
            Some("a"),
        ]));
        let batch = RecordBatch::try_new(schema.clone(), vec![x, label]).unwrap();
        let path = dir.join("in.parquet");
        let mut w =
            crate::write::parquet_writer(std::fs::File::create(&path).unwrap(), schema).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        path
    }

    fn column_x(path: &Path) -> Vec<i64> {
        let data = ParquetData::open(path).unwrap();
        let mut out = Vec::new();
        for b in data.batches(None).unwrap() {
            let b = b.unwrap();
            let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            out.extend(a.values().iter().copied());
        }
        out
    }

    #[test]
    fn classes_number_values_and_nulls_in_order_of_appearance() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path());
        assert_eq!(
            class_keys(&path, "label").unwrap(),
            vec![0, 1, 2, 0, 1, 0, 2, 0, 1, 0]
        );
        let e = class_keys(&path, "nope").unwrap_err().to_string();
        assert!(
            e.contains("no column 'nope'") && e.contains("x, label"),
            "{e}"
        );
    }

    #[test]
    fn rows_go_to_their_parts_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path());
        let part_of = [1, 0, 0, 1, 0, 0, 1, 0, 0, 0];
        let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        let counts = write_parts(
            &path,
            &part_of,
            vec![
                std::fs::File::create(&a).unwrap(),
                std::fs::File::create(&b).unwrap(),
            ],
        )
        .unwrap();
        assert_eq!(counts, vec![7, 3]);
        assert_eq!(column_x(&a), vec![1, 2, 4, 5, 7, 8, 9]);
        assert_eq!(column_x(&b), vec![0, 3, 6]);
    }

    #[test]
    fn assignments_that_do_not_fit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path());
        let sink = || vec![Vec::<u8>::new(), Vec::new()];
        assert!(write_parts(&path, &[0; 9], sink()).is_err());
        assert!(write_parts(&path, &[2; 10], sink()).is_err());
    }
}
