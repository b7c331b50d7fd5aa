//! Reading back what a test wrote.

use arrow::array::RecordBatch;
use bastion_data::read::ParquetData;

/// Parquet bytes as one batch.
pub fn read(bytes: Vec<u8>) -> RecordBatch {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.parquet");
    std::fs::write(&p, bytes).unwrap();
    let data = ParquetData::open(&p).unwrap();
    let schema = data.schema();
    let batches: Vec<RecordBatch> = data.batches(None).unwrap().map(|b| b.unwrap()).collect();
    arrow::compute::concat_batches(&schema, &batches).unwrap()
}
