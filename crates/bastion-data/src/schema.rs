//! Column kinds: how each Arrow type is profiled, validated and compared.

use arrow::datatypes::{DataType, Schema};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Integers and floats: moments, quantiles, histogram.
    Numeric,
    /// Text: lengths and top-k values.
    Text,
    /// true/false, profiled like a category.
    Boolean,
    /// Dates and timestamps, profiled as seconds since the Unix epoch.
    Temporal,
    /// Nested or binary values: counted, not described.
    Other,
}

impl Kind {
    pub fn of(t: &DataType) -> Self {
        use DataType::*;
        match t {
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16 | Float32
            | Float64 | Decimal128(..) | Decimal256(..) => Self::Numeric,
            Utf8 | LargeUtf8 | Utf8View => Self::Text,
            Boolean => Self::Boolean,
            Date32 | Date64 | Timestamp(..) => Self::Temporal,
            _ => Self::Other,
        }
    }
    /// Categorical kinds are compared by value counts, the others by distributions.
    pub fn is_categorical(self) -> bool {
        matches!(self, Self::Text | Self::Boolean)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    /// The Arrow type as Arrow prints it (`Int64`, `Float64`, `Utf8`, `Timestamp(…)`).
    pub dtype: String,
    pub kind: Kind,
    pub nullable: bool,
}

pub fn columns_of(schema: &Schema) -> Vec<ColumnSchema> {
    schema
        .fields()
        .iter()
        .map(|f| ColumnSchema {
            name: f.name().clone(),
            dtype: f.data_type().to_string(),
            kind: Kind::of(f.data_type()),
            nullable: f.is_nullable(),
        })
        .collect()
}
