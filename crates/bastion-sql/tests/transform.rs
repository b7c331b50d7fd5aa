//! SQL transforms: results and their types, the sandbox, the limits.

mod common;
use common::read;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use bastion_sql::{Limits, SqlError, Table, transform};

fn write(dir: &Path, name: &str, columns: Vec<(&str, ArrayRef)>) -> PathBuf {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let path = dir.join(format!("{name}.parquet"));
    let mut w =
        bastion_data::write::parquet_writer(std::fs::File::create(&path).unwrap(), schema).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    path
}

/// Two tables: patients (id, age, smoker, seen) and labels (id, outcome).
fn inputs(dir: &Path) -> Vec<Table> {
    let patients = write(
        dir,
        "patients",
        vec![
            (
                "id",
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as ArrayRef,
            ),
            (
                "age",
                Arc::new(Float64Array::from(vec![
                    Some(30.0),
                    None,
                    Some(50.5),
                    Some(70.0),
                ])),
            ),
            (
                "smoker",
                Arc::new(BooleanArray::from(vec![true, false, true, false])),
            ),
            (
                "seen",
                Arc::new(Date32Array::from(vec![19_000, 19_001, 19_002, 19_003])),
            ),
        ],
    );
    let labels = write(
        dir,
        "labels",
        vec![
            (
                "id",
                Arc::new(Int64Array::from(vec![1, 2, 3, 5])) as ArrayRef,
            ),
            (
                "outcome",
                Arc::new(StringArray::from(vec!["sick", "well", "sick", "well"])),
            ),
        ],
    );
    vec![
        Table {
            name: "patients".into(),
            path: patients,
        },
        Table {
            name: "labels".into(),
            path: labels,
        },
    ]
}

fn run(tables: &[Table], sql: &str) -> Result<RecordBatch, SqlError> {
    let mut out = Vec::new();
    transform(tables, sql, &mut out, &Limits::default())?;
    Ok(read(out))
}

#[test]
fn a_join_with_features_keeps_and_infers_types() {
    let dir = tempfile::tempdir().unwrap();
    let t = inputs(dir.path());
    let b = run(
        &t,
        "SELECT p.id, p.smoker, p.seen, COALESCE(p.age, 40.0) AS age, \
                ln(p.age) AS log_age, p.id * 10 AS tens, \
                CASE l.outcome WHEN 'sick' THEN 1 ELSE 0 END AS label, l.outcome \
         FROM patients p JOIN labels l USING (id) ORDER BY p.id",
    )
    .unwrap();
    assert_eq!(b.num_rows(), 3);
    let col = |n: &str| b.column(b.schema().index_of(n).unwrap()).clone();
    assert_eq!(col("id").as_primitive::<Int64Type>().values(), &[1, 2, 3]);
    assert_eq!(col("smoker").data_type(), &DataType::Boolean);
    assert!(col("smoker").as_boolean().value(0));
    assert_eq!(col("seen").data_type(), &DataType::Date32);
    assert_eq!(
        col("seen")
            .as_primitive::<arrow::datatypes::Date32Type>()
            .value(2),
        19_002
    );
    assert_eq!(
        col("age").as_primitive::<Float64Type>().values(),
        &[30.0, 40.0, 50.5]
    );
    let log_age = col("log_age");
    assert!((log_age.as_primitive::<Float64Type>().value(0) - 30f64.ln()).abs() < 1e-12);
    assert!(log_age.is_null(1));
    assert_eq!(col("tens").data_type(), &DataType::Int64);
    assert_eq!(
        col("label").as_primitive::<Int64Type>().values(),
        &[1, 0, 1]
    );
    assert_eq!(col("outcome").as_string::<i32>().value(1), "well");
}

#[test]
fn aggregates_windows_and_ctes_work() {
    let dir = tempfile::tempdir().unwrap();
    let t = inputs(dir.path());
    let b = run(
        &t,
        "WITH s AS (SELECT smoker, AVG(age) AS mean_age, COUNT(*) AS n FROM patients GROUP BY smoker) \
         SELECT smoker, mean_age, n, SUM(n) OVER () AS total FROM s ORDER BY smoker",
    )
    .unwrap();
    assert_eq!(b.num_rows(), 2);
    assert_eq!(
        b.column(1).as_primitive::<Float64Type>().values(),
        &[70.0, 40.25]
    );
    assert_eq!(b.column(3).as_primitive::<Int64Type>().values(), &[4, 4]);
}

#[test]
fn the_same_query_on_the_same_data_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let t = inputs(dir.path());
    let sql = "SELECT * FROM patients WHERE age IS NOT NULL";
    let (mut a, mut b) = (Vec::new(), Vec::new());
    transform(&t, sql, &mut a, &Limits::default()).unwrap();
    transform(&t, sql, &mut b, &Limits::default()).unwrap();
    assert_eq!(a, b);
    assert_eq!(read(a).num_rows(), 3);
}

#[test]
fn an_empty_result_keeps_its_columns() {
    let dir = tempfile::tempdir().unwrap();
    let t = inputs(dir.path());
    let b = run(&t, "SELECT id, age FROM patients WHERE id > 100").unwrap();
    assert_eq!(b.num_rows(), 0);
    assert_eq!(b.schema().fields().len(), 2);
}

fn refused(sql: &str, expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let t = inputs(dir.path());
    let e = run(&t, sql).unwrap_err().to_string();
    assert!(e.contains(expect), "{sql}: {e}");
}

#[test]
fn anything_but_reading_the_inputs_is_refused() {
    let file = std::env::temp_dir().join("bastion-sql-attack.db");
    let attach = format!("ATTACH DATABASE '{}' AS x", file.display());
    refused(&attach, "the query");
    assert!(!file.exists(), "ATTACH must not create a file");
    let vacuum = format!("VACUUM INTO '{}'", file.display());
    refused(&vacuum, "the query");
    assert!(!file.exists(), "VACUUM INTO must not create a file");
    refused("DELETE FROM patients", "not authorized");
    refused("INSERT INTO labels VALUES (9, 'x')", "not authorized");
    refused("CREATE TABLE t AS SELECT 1", "not authorized");
    refused("DROP TABLE patients", "not authorized");
    refused("PRAGMA table_info(patients)", "not authorized");
    refused("SELECT load_extension('/tmp/x.so')", "not authorized");
    refused("SELECT 1; SELECT 2", "more than one statement");
    refused("SELEC 1", "syntax error");
    refused("SELECT * FROM nope", "no such table: nope");
    refused(
        "SELECT id, id FROM patients",
        "two result columns are named 'id'",
    );
    refused("   ", "empty");
    refused("SELECT zeroblob(1000000000) AS big", "too big");
}

#[test]
fn bad_table_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = inputs(dir.path());
    for bad in ["1x", "a b", "x\"; DROP", "sqlite_master", ""] {
        t[0].name = bad.into();
        let e = run(&t, "SELECT 1").unwrap_err().to_string();
        assert!(e.contains("not a usable table name"), "{bad}: {e}");
    }
    t[0].name = "LABELS".into();
    let e = run(&t, "SELECT 1").unwrap_err().to_string();
    assert!(e.contains("two inputs are named"), "{e}");
}

#[test]
fn a_runaway_query_is_stopped_at_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let t = inputs(dir.path());
    let limits = Limits {
        timeout: Duration::from_millis(200),
        max_rows: 10,
    };
    let sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
               SELECT count(*) FROM n";
    let e = transform(&t, sql, Vec::new(), &limits).unwrap_err();
    assert!(matches!(e, SqlError::Timeout(_)), "{e}");
    let many = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 11) \
                SELECT i FROM n";
    let e = transform(&t, many, Vec::new(), &limits).unwrap_err();
    assert!(matches!(e, SqlError::TooManyRows(10)), "{e}");
}
