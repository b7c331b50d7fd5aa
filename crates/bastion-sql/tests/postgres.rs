//! Ingest from a PostgreSQL query. Needs a server: runs when `BASTION_TEST_POSTGRES_URL` is
//! set (as `.ci/run` sets it) and says it skipped otherwise.

mod common;
use common::read;

use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};
use bastion_sql::postgres::query_to_parquet;
use bastion_sql::{Limits, SqlError};
use sqlx::{Connection, Executor};

fn url() -> Option<String> {
    let u = std::env::var("BASTION_TEST_POSTGRES_URL").ok();
    if u.is_none() {
        eprintln!("skipped: BASTION_TEST_POSTGRES_URL is not set");
    }
    u
}

async fn setup(url: &str, table: &str) {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let sql = format!(
        "DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (id int4, flag bool, small int2, big int8, r float4, d float8,
                               name text, code varchar(8), letter char(2), day date,
                               at timestamp, at_tz timestamptz, amount numeric);
         INSERT INTO {table} VALUES
           (1, true, 2, 9000000000, 0.5, 1.25, 'ann', 'A1', 'x', '2024-02-29',
            '2024-02-29 10:11:12.5', '2024-02-29 10:11:12+02', 1.5),
           (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);"
    );
    c.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
}

#[tokio::test]
async fn a_query_becomes_typed_columns() {
    let Some(url) = url() else { return };
    setup(&url, "sql_types").await;
    let mut out = Vec::new();
    let s = query_to_parquet(
        &url,
        "SELECT id, flag, small, big, r, d, name, code, letter, day, at, at_tz, amount::float8 AS amount \
         FROM sql_types ORDER BY id",
        &mut out,
        &Limits::default(),
    )
    .await
    .unwrap();
    assert_eq!(s.rows, 2);
    let b = read(out);
    let col = |n: &str| b.column(b.schema().index_of(n).unwrap()).clone();
    assert_eq!(col("id").as_primitive::<Int64Type>().values(), &[1, 2]);
    assert!(col("flag").as_boolean().value(0) && col("flag").is_null(1));
    assert_eq!(col("small").as_primitive::<Int64Type>().value(0), 2);
    assert_eq!(
        col("big").as_primitive::<Int64Type>().value(0),
        9_000_000_000
    );
    assert_eq!(col("r").as_primitive::<Float64Type>().value(0), 0.5);
    assert_eq!(col("d").as_primitive::<Float64Type>().value(0), 1.25);
    assert_eq!(col("name").as_string::<i32>().value(0), "ann");
    assert_eq!(col("code").as_string::<i32>().value(0), "A1");
    assert_eq!(col("letter").as_string::<i32>().value(0), "x ");
    // 2024-02-29 is day 19782 after 1970-01-01.
    assert_eq!(col("day").as_primitive::<Date32Type>().value(0), 19_782);
    assert_eq!(
        col("at").data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, None)
    );
    assert_eq!(
        col("at")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        1_709_201_472_500_000
    );
    assert_eq!(
        col("at_tz")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        1_709_201_472_000_000 - 7_200_000_000
    );
    assert_eq!(col("amount").as_primitive::<Float64Type>().value(0), 1.5);
    for c in 1..b.num_columns() {
        assert!(b.column(c).is_null(1), "column {c} of the row of NULLs");
    }
}

async fn refused(url: &str, sql: &str, limits: &Limits) -> SqlError {
    query_to_parquet(url, sql, Vec::new(), limits)
        .await
        .expect_err(sql)
}

#[tokio::test]
async fn what_a_dataset_cannot_hold_or_a_query_may_not_do_is_refused() {
    let Some(url) = url() else { return };
    setup(&url, "sql_refusals").await;
    let l = Limits::default();
    let e = refused(&url, "SELECT amount FROM sql_refusals", &l)
        .await
        .to_string();
    assert!(e.contains("NUMERIC") && e.contains("amount::float8"), "{e}");
    let e = refused(&url, "SELECT '{}'::jsonb AS j", &l)
        .await
        .to_string();
    assert!(e.contains("JSONB") && e.contains("j::text"), "{e}");
    let e = refused(
        &url,
        "INSERT INTO sql_refusals (id) VALUES (3) RETURNING id",
        &l,
    )
    .await
    .to_string();
    assert!(e.contains("read-only transaction"), "{e}");
    let e = refused(&url, "SELECT 1; SELECT 2", &l).await.to_string();
    assert!(e.contains("multiple commands"), "{e}");
    let e = refused(&url, "SELECT nope FROM sql_refusals", &l)
        .await
        .to_string();
    assert!(e.contains("nope"), "{e}");
    let e = refused(&url, "SELECT 1 AS a, 2 AS a", &l).await.to_string();
    assert!(e.contains("two result columns are named 'a'"), "{e}");
    let short = Limits {
        timeout: Duration::from_millis(200),
        max_rows: 5,
    };
    let e = refused(&url, "SELECT pg_sleep(5)::text AS slept", &short)
        .await
        .to_string();
    assert!(e.contains("statement timeout"), "{e}");
    let e = refused(&url, "SELECT generate_series(1, 6) AS i", &short).await;
    assert!(matches!(e, SqlError::TooManyRows(5)), "{e}");
    let e = refused("postgres://nobody@127.0.0.1:1/none", "SELECT 1 AS x", &l).await;
    assert!(matches!(e, SqlError::Postgres(_)), "{e}");
    // The table is untouched.
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sql_refusals")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 2);
}
