//! The one way Bastion writes a dataset's Parquet: Snappy, fixed row groups, so the same
//! rows always give the same bytes (and the same digest).

use std::io::Write;

use arrow::datatypes::SchemaRef;
pub use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::DataResult;

pub const ROW_GROUP_ROWS: usize = 1 << 17;

pub fn parquet_writer<W: Write + Send>(out: W, schema: SchemaRef) -> DataResult<ArrowWriter<W>> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_size(ROW_GROUP_ROWS)
        .set_created_by("bastion".to_string())
        .build();
    Ok(ArrowWriter::try_new(out, schema, Some(props))?)
}
