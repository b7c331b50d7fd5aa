//! Reading a canonical Parquet file: batches (optionally some columns only) and the value
//! ranges its footer records.

use std::fs::File;
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::statistics::Statistics;

use crate::error::{DataError, DataResult};

pub const READ_BATCH_ROWS: usize = 65_536;

pub struct ParquetData {
    builder: ParquetRecordBatchReaderBuilder<File>,
}

impl ParquetData {
    pub fn open(path: &Path) -> DataResult<Self> {
        let f = File::open(path).map_err(|e| DataError::io(path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(f)
            .map_err(|e| DataError::input(path, format!("not a readable Parquet file: {e}")))?;
        Ok(Self { builder })
    }

    pub fn schema(&self) -> SchemaRef {
        self.builder.schema().clone()
    }

    pub fn rows(&self) -> u64 {
        self.builder.metadata().file_metadata().num_rows().max(0) as u64
    }

    /// Per column, the (min, max) over all row groups as the footer records them, for
    /// numeric columns of a flat schema; `None` where the footer does not say.
    pub fn numeric_ranges(&self) -> Vec<Option<(f64, f64)>> {
        let schema = self.builder.schema();
        let meta = self.builder.metadata();
        let flat = meta.file_metadata().schema_descr().num_columns() == schema.fields().len();
        (0..schema.fields().len())
            .map(|col| {
                if !flat || meta.num_row_groups() == 0 {
                    return None;
                }
                let mut range: Option<(f64, f64)> = None;
                for rg in meta.row_groups() {
                    let (lo, hi) = match rg.column(col).statistics()? {
                        Statistics::Int32(s) => (*s.min_opt()? as f64, *s.max_opt()? as f64),
                        Statistics::Int64(s) => (*s.min_opt()? as f64, *s.max_opt()? as f64),
                        Statistics::Float(s) => (*s.min_opt()? as f64, *s.max_opt()? as f64),
                        Statistics::Double(s) => (*s.min_opt()?, *s.max_opt()?),
                        _ => return None,
                    };
                    if rg.column(col).num_values() > 0 {
                        range = Some(match range {
                            None => (lo, hi),
                            Some((a, b)) => (a.min(lo), b.max(hi)),
                        });
                    }
                }
                range.filter(|(a, b)| a.is_finite() && b.is_finite())
            })
            .collect()
    }

    /// Per top-level column, its uncompressed size in bytes over all row groups (a cost
    /// estimate for splitting work; 1 for every column of a nested schema).
    pub fn column_bytes(&self) -> Vec<u64> {
        let n = self.builder.schema().fields().len();
        let meta = self.builder.metadata();
        if meta.file_metadata().schema_descr().num_columns() != n {
            return vec![1; n];
        }
        (0..n)
            .map(|c| {
                meta.row_groups()
                    .iter()
                    .map(|rg| rg.column(c).uncompressed_size().max(0) as u64)
                    .sum::<u64>()
                    .max(1)
            })
            .collect()
    }

    /// Batches of the named columns (all when `columns` is `None`).
    pub fn batches(
        self,
        columns: Option<&[usize]>,
    ) -> DataResult<impl Iterator<Item = DataResult<RecordBatch>>> {
        let mut b = self.builder.with_batch_size(READ_BATCH_ROWS);
        if let Some(cols) = columns {
            let mask = ProjectionMask::roots(b.parquet_schema(), cols.iter().copied());
            b = b.with_projection(mask);
        }
        let reader = b.build()?;
        Ok(reader.map(|r| r.map_err(DataError::from)))
    }
}
