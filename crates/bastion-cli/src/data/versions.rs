//! The `bastion data` commands that make versions from somewhere other than a local file:
//! an S3 object or prefix, a PostgreSQL query (`add`), parts of a version (`split`) and a
//! SQL transform over versions (`transform`). Each ends as an ordinary checked version;
//! those made from other versions carry a `data.lineage` record.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bastion_core::Digest;
use bastion_data::ingest::IngestOptions;
use bastion_evidence::dataset_checks::Added;
use bastion_store::blob::S3Source;
use bastion_store::meta::DatasetVersion;
use clap::Args;
use serde_json::{Value, json};

use super::Home;
use crate::attest::RegistryArgs;

/// Ingests from S3: the objects are copied to a temporary folder of the home first.
pub async fn add_s3(
    h: &Home,
    uri: &str,
    name: &str,
    opts: IngestOptions,
    reuse_unchanged: bool,
) -> Result<Added> {
    let source = S3Source::open(uri)
        .await
        .with_context(|| format!("reading {uri}"))?;
    std::fs::create_dir_all(&h.tmp)?;
    let dir = tempfile::tempdir_in(&h.tmp).context("creating a temporary folder")?;
    let input = source
        .download(dir.path())
        .await
        .with_context(|| format!("downloading {uri}"))?;
    Ok(h.datasets()
        .add_checked(
            &input,
            name,
            uri,
            &h.actor,
            opts,
            reuse_unchanged,
            Arc::new(|_| {}),
        )
        .await?)
}

/// The URL without its password and query (which may carry one), for the record.
pub fn without_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        // Unparseable: record nothing of it rather than risk a secret.
        Err(_) => "postgresql://(unparseable URL)".to_owned(),
    }
}

/// Ingests the rows of a read-only PostgreSQL query.
pub async fn add_postgres(
    h: &Home,
    url: &str,
    query: &str,
    name: &str,
    timeout: Duration,
    reuse_unchanged: bool,
) -> Result<Added> {
    std::fs::create_dir_all(&h.tmp)?;
    let parquet = tempfile::NamedTempFile::new_in(&h.tmp).context("creating a temporary file")?;
    let limits = bastion_sql::Limits {
        timeout,
        ..Default::default()
    };
    let summary = bastion_sql::postgres::query_to_parquet(url, query, parquet.as_file(), &limits)
        .await
        .context("running the query")?;
    let shown = without_password(url);
    let source = format!(
        "{shown} query sha256:{}",
        Digest::of(query.as_bytes()).hex()
    );
    let how = json!({"postgres": shown, "query": query, "rows": summary.rows});
    Ok(h.datasets()
        .derive(
            parquet.path(),
            name,
            &source,
            &h.actor,
            &[],
            how,
            reuse_unchanged,
        )
        .await?)
}

#[derive(Debug, Args)]
pub struct SplitArgs {
    /// The version to split (NAME@vK, or NAME for the latest).
    pub dataset: String,
    /// Share of the rows for the test part.
    #[arg(long, default_value_t = 0.2)]
    pub test: f64,
    /// Share of the rows for a validation part (none by default).
    #[arg(long)]
    pub validation: Option<f64>,
    /// Deal each value of this column into the parts in proportion (stratified).
    #[arg(long)]
    pub stratify: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Name the parts BASE-train, BASE-test and BASE-validation (default: the dataset's
    /// name).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub async fn split(home: &Path, a: SplitArgs) -> Result<Value> {
    let h = Home::open(home, &a.registry).await?;
    let v = h.version(&a.dataset).await?;
    let validation = a.validation.unwrap_or(0.0);
    let train = 1.0 - a.test - validation;
    if train.is_nan() || train <= 0.0 {
        bail!(
            "--test {} and --validation {validation} leave no rows to train on",
            a.test
        );
    }
    let train = (train * 1e12).round() / 1e12;
    let mut parts = vec![("train", train), ("test", a.test)];
    if a.validation.is_some() {
        parts.push(("validation", validation));
    }
    let local = h.datasets().materialize(&v).await?;
    let path = local.path().to_path_buf();
    let stratify = a.stratify.clone();
    let shares: Vec<f64> = parts.iter().map(|(_, s)| *s).collect();
    let (seed, rows) = (a.seed, v.rows as usize);
    let tmp = h.tmp.clone();
    std::fs::create_dir_all(&tmp)?;
    let (files, counts) = tokio::task::spawn_blocking(move || -> Result<_> {
        let classes = match &stratify {
            Some(c) => Some(bastion_data::parts::class_keys(&path, c)?),
            None => None,
        };
        let assigned = bastion_ml::split::partition(rows, classes.as_deref(), &shares, seed)?;
        let mut part_of = vec![0usize; rows];
        for (p, members) in assigned.iter().enumerate() {
            for &r in members {
                part_of[r] = p;
            }
        }
        let files: Vec<tempfile::NamedTempFile> = (0..shares.len())
            .map(|_| tempfile::NamedTempFile::new_in(&tmp))
            .collect::<std::io::Result<_>>()?;
        let counts = bastion_data::parts::write_parts(
            &path,
            &part_of,
            files.iter().map(|f| f.as_file()).collect(),
        )?;
        Ok((files, counts))
    })
    .await??;
    let base = a.name.clone().unwrap_or_else(|| v.name.clone());
    let mut out = serde_json::Map::new();
    let mut made = serde_json::Map::new();
    for (((part, share), file), count) in parts.iter().zip(&files).zip(&counts) {
        let how = json!({"split": part, "share": share, "seed": a.seed,
                         "stratify": a.stratify, "shares": parts.iter().map(|(p, s)| json!({"part": p, "share": s})).collect::<Vec<_>>()});
        let source = format!(
            "split of {}: {part} ({})",
            v.reference(),
            (share * 1e6).round() / 1e6
        );
        let added = h
            .datasets()
            .derive(
                file.path(),
                &format!("{base}-{part}"),
                &source,
                &h.actor,
                &[&v],
                how,
                true,
            )
            .await?;
        out.insert((*part).into(), added.dataset.clone().into());
        made.insert(
            (*part).into(),
            json!({"dataset": added.dataset, "rows": count, "digest": added.version.digest}),
        );
    }
    out.insert("dataset".into(), v.reference().into());
    out.insert("parts".into(), made.into());
    Ok(Value::Object(out))
}

#[derive(Debug, Args)]
pub struct TransformArgs {
    /// The query (a SELECT over the inputs' tables); or --sql-file.
    #[arg(long, conflicts_with = "sql_file")]
    pub sql: Option<String>,
    /// A file holding the query.
    #[arg(long)]
    pub sql_file: Option<PathBuf>,
    /// An input: TABLE=NAME@vK (or TABLE=NAME for the latest); repeatable.
    #[arg(long = "input", short, required = true)]
    pub inputs: Vec<String>,
    /// The dataset the result becomes the next version of.
    #[arg(long)]
    pub name: String,
    /// Stop the query after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Refuse a result of more rows than this.
    #[arg(long, default_value_t = 50_000_000)]
    pub max_rows: u64,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub async fn transform(home: &Path, a: TransformArgs) -> Result<Value> {
    let sql = match (&a.sql, &a.sql_file) {
        (Some(s), _) => s.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => bail!("give the query with --sql or --sql-file"),
    };
    let h = Home::open(home, &a.registry).await?;
    let mut versions: Vec<(String, DatasetVersion)> = Vec::new();
    for input in &a.inputs {
        let Some((table, reference)) = input.split_once('=') else {
            bail!("--input '{input}': write TABLE=NAME@vK");
        };
        bastion_sql::transform::check_table_name(table)?;
        versions.push((table.to_owned(), h.version(reference).await?));
    }
    let mut locals = Vec::new();
    let mut tables = Vec::new();
    for (table, v) in &versions {
        let local = h.datasets().materialize(v).await?;
        tables.push(bastion_sql::Table {
            name: table.clone(),
            path: local.path().to_path_buf(),
        });
        locals.push(local);
    }
    std::fs::create_dir_all(&h.tmp)?;
    let out = tempfile::NamedTempFile::new_in(&h.tmp).context("creating a temporary file")?;
    let limits = bastion_sql::Limits {
        timeout: Duration::from_secs(a.timeout),
        max_rows: a.max_rows,
    };
    let (file, query) = (out.reopen()?, sql.clone());
    let summary =
        tokio::task::spawn_blocking(move || bastion_sql::transform(&tables, &query, file, &limits))
            .await??;
    drop(locals);
    let inputs: Vec<&DatasetVersion> = versions.iter().map(|(_, v)| v).collect();
    let named: Vec<Value> = versions
        .iter()
        .map(|(t, v)| json!({"table": t, "dataset": v.reference()}))
        .collect();
    let how = json!({"transform": "sql", "engine": "sqlite", "query": sql,
                     "tables": named, "rows": summary.rows});
    let source = format!(
        "transform of {} (query sha256:{})",
        versions
            .iter()
            .map(|(t, v)| format!("{t}={}", v.reference()))
            .collect::<Vec<_>>()
            .join(", "),
        Digest::of(sql.as_bytes()).hex()
    );
    let added = h
        .datasets()
        .derive(out.path(), &a.name, &source, &h.actor, &inputs, how, true)
        .await?;
    Ok(
        json!({"dataset": added.dataset, "rows": summary.rows, "columns": summary.columns,
              "unchanged": added.unchanged, "version": added.version}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_the_record() {
        assert_eq!(
            without_password("postgresql://ana:s3cret@db:5432/sales?sslmode=require&password=x"),
            "postgresql://ana@db:5432/sales"
        );
        assert_eq!(
            without_password("postgres://db/sales"),
            "postgres://db/sales"
        );
        assert_eq!(
            without_password("postgres://u:p%40q@h/d"),
            "postgres://u@h/d"
        );
        assert!(!without_password("postgres://u:secret@[bad/d").contains("secret"));
    }
}
