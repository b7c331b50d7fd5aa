//! What went wrong, said so a user can fix their query or their inputs.

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The query itself: a syntax error, an unknown table or column, a refused operation.
    #[error("the query: {0}")]
    Query(String),
    /// A table name or an input that cannot be used.
    #[error("{0}")]
    Input(String),
    #[error("the query ran longer than its {0} s budget and was stopped")]
    Timeout(u64),
    #[error("the query returned more than {0} rows")]
    TooManyRows(u64),
    #[error("reading or writing data: {0}")]
    Data(#[from] bastion_data::DataError),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
}

impl From<arrow::error::ArrowError> for SqlError {
    fn from(e: arrow::error::ArrowError) -> Self {
        Self::Data(e.into())
    }
}

pub type SqlResult<T> = Result<T, SqlError>;
