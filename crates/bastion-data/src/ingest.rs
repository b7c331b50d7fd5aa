//! Ingest: CSV, Parquet or JSON Lines (a file or a folder of them) → one canonical Parquet file.
//!
//! The canonical form is what gets stored and addressed by digest: the same rows with the same
//! schema always give the same bytes (fixed writer settings, fixed row-group size, files of a
//! folder in path order). The original bytes are hashed too, so a version names its source.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bastion_core::digest::{Digest, Hasher};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, DataResult};
use crate::schema::ColumnSchema;

/// Rows per Parquet row group in the canonical file: fixed, so the bytes are reproducible.
pub use crate::write::ROW_GROUP_ROWS;
const BATCH_ROWS: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Tsv,
    Parquet,
    Jsonl,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Tsv => "tsv",
            Self::Parquet => "parquet",
            Self::Jsonl => "jsonl",
        }
    }

    /// Parquet by its magic bytes; JSON Lines when the first non-blank byte opens an object;
    /// tab-separated when the name says so; CSV otherwise.
    pub fn detect(path: &Path) -> DataResult<Self> {
        let mut head = [0u8; 4096];
        let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
        let n = read_up_to(&mut f, &mut head).map_err(|e| DataError::io(path, e))?;
        let head = &head[..n];
        if head.starts_with(b"PAR1") {
            return Ok(Self::Parquet);
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if matches!(ext.as_deref(), Some("jsonl" | "ndjson" | "json")) {
            return Ok(Self::Jsonl);
        }
        if matches!(ext.as_deref(), Some("tsv" | "tab")) {
            return Ok(Self::Tsv);
        }
        match head.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Ok(Self::Jsonl),
            _ => Ok(Self::Csv),
        }
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// A line longer than this is refused (CSV and JSON Lines): it is almost always a file
    /// without line breaks or hostile input, and would otherwise be held whole in memory.
    pub max_line_bytes: usize,
    /// Force a format instead of detecting it.
    pub format: Option<Format>,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            max_line_bytes: 16 << 20,
            format: None,
        }
    }
}

/// One input file: its path relative to what was ingested, digest and size.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceFile {
    pub path: String,
    pub digest: Digest,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestSummary {
    pub format: Format,
    pub files: Vec<SourceFile>,
    /// The digest of the original bytes: of the file itself, or for a folder the SHA-256 of
    /// its `sha256sum`-style listing (`<hex>  <path>\n` per file, in path order).
    pub source_digest: Digest,
    pub rows: u64,
    pub columns: Vec<ColumnSchema>,
}

/// Reads `input` (a file or a folder of files in one format) and writes the canonical Parquet
/// to `out`. `progress` is told the rows written so far.
pub fn ingest(
    input: &Path,
    out: impl Write + Send,
    opts: &IngestOptions,
    progress: &dyn Fn(u64),
) -> DataResult<IngestSummary> {
    let files = list_inputs(input)?;
    let format = match opts.format {
        Some(f) => f,
        None => {
            let first = Format::detect(&files[0].0)?;
            for (path, _) in &files[1..] {
                let f = Format::detect(path)?;
                if f != first {
                    return Err(DataError::input(
                        path,
                        format!(
                            "is {} but {} is {}: a folder must hold one format",
                            f.as_str(),
                            files[0].1,
                            first.as_str()
                        ),
                    ));
                }
            }
            first
        }
    };

    let mut sources = Vec::with_capacity(files.len());
    for (path, rel) in &files {
        let (digest, bytes) = hash_file(path)?;
        sources.push(SourceFile {
            path: rel.clone(),
            digest,
            bytes,
        });
    }
    let source_digest = if input.is_dir() {
        let listing: String = sources
            .iter()
            .map(|s| format!("{}  {}\n", s.digest.hex(), s.path))
            .collect();
        Digest::of(listing.as_bytes())
    } else {
        sources[0].digest
    };

    let schema = unified_schema(&files, format, opts)?;
    let mut writer = crate::write::parquet_writer(out, schema.clone())?;
    let mut rows = 0u64;
    for (path, _) in &files {
        for batch in open_batches(path, format, schema.clone(), opts)? {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            writer.write(&batch)?;
            progress(rows);
        }
    }
    writer.close()?;
    Ok(IngestSummary {
        format,
        files: sources,
        source_digest,
        rows,
        columns: crate::schema::columns_of(&schema),
    })
}

/// The files to read: the file itself, or every regular file under the folder (hidden names
/// skipped), in path order. Symbolic links are refused rather than followed.
pub fn list_inputs(input: &Path) -> DataResult<Vec<(PathBuf, String)>> {
    let meta = std::fs::symlink_metadata(input).map_err(|e| DataError::io(input, e))?;
    if meta.file_type().is_symlink() {
        return Err(DataError::input(
            input,
            "is a symbolic link; give its target",
        ));
    }
    if meta.is_file() {
        let name = input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(vec![(input.to_path_buf(), name)]);
    }
    let mut out = Vec::new();
    let mut stack = vec![(input.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))? {
            let entry = entry.map_err(|e| DataError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let ft = entry
                .file_type()
                .map_err(|e| DataError::io(entry.path(), e))?;
            if ft.is_symlink() {
                return Err(DataError::input(
                    entry.path(),
                    "is a symbolic link inside the folder; links are not followed",
                ));
            } else if ft.is_dir() {
                stack.push((entry.path(), rel));
            } else if ft.is_file() {
                out.push((entry.path(), rel));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    if out.is_empty() {
        return Err(DataError::input(input, "the folder holds no data files"));
    }
    Ok(out)
}

fn hash_file(path: &Path) -> DataResult<(Digest, u64)> {
    let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut h = Hasher::new();
    let n = std::io::copy(&mut f, &mut h).map_err(|e| DataError::io(path, e))?;
    Ok((h.finish(), n))
}

/// Infers each file's schema over all of its records and unifies them: the same column
/// names in the same order; integer and float widen to float, anything else that differs
/// becomes text.
fn unified_schema(
    files: &[(PathBuf, String)],
    format: Format,
    opts: &IngestOptions,
) -> DataResult<SchemaRef> {
    let mut merged: Option<Schema> = None;
    for (path, _) in files {
        let schema = infer_schema(path, format, opts)?;
        if schema.fields().is_empty() {
            return Err(DataError::input(path, "has no columns"));
        }
        merged = Some(match merged {
            None => schema,
            Some(m) => merge_schemas(&m, &schema, path, &files[0].0)?,
        });
    }
    let schema = merged.ok_or_else(|| DataError::Invalid("no input files".into()))?;
    let mut seen = std::collections::HashSet::new();
    for f in schema.fields() {
        if f.name().is_empty() {
            return Err(DataError::input(&files[0].0, "a column has an empty name"));
        }
        if !seen.insert(f.name().clone()) {
            return Err(DataError::input(
                &files[0].0,
                format!("column '{}' appears twice", f.name()),
            ));
        }
    }
    Ok(Arc::new(schema))
}

fn merge_schemas(a: &Schema, b: &Schema, path: &Path, first: &Path) -> DataResult<Schema> {
    let names_a: Vec<&String> = a.fields().iter().map(|f| f.name()).collect();
    let names_b: Vec<&String> = b.fields().iter().map(|f| f.name()).collect();
    if names_a != names_b {
        return Err(DataError::input(
            path,
            format!(
                "has columns {names_b:?} but {} has {names_a:?}",
                first.display()
            ),
        ));
    }
    let fields: Vec<Field> = a
        .fields()
        .iter()
        .zip(b.fields())
        .map(|(fa, fb)| {
            let t = widen(fa.data_type(), fb.data_type());
            Field::new(fa.name(), t, fa.is_nullable() || fb.is_nullable())
        })
        .collect();
    Ok(Schema::new(fields))
}

fn widen(a: &DataType, b: &DataType) -> DataType {
    use DataType::*;
    match (a, b) {
        _ if a == b => a.clone(),
        (Null, t) | (t, Null) => t.clone(),
        (Int64, Float64) | (Float64, Int64) => Float64,
        _ => Utf8,
    }
}

fn infer_schema(path: &Path, format: Format, opts: &IngestOptions) -> DataResult<Schema> {
    match format {
        Format::Parquet => {
            let f = File::open(path).map_err(|e| DataError::io(path, e))?;
            let b = ParquetRecordBatchReaderBuilder::try_new(f)
                .map_err(|e| DataError::input(path, format!("not a readable Parquet file: {e}")))?;
            Ok(b.schema().as_ref().clone())
        }
        Format::Csv | Format::Tsv => {
            let r = LineLimit::open_csv(path, opts.max_line_bytes, csv_delimiter(format))?;
            let (schema, _) = csv_format(format)
                .infer_schema(r, None)
                .map_err(|e| located(path, e))?;
            // A column every row leaves empty has no type to infer: keep it as text.
            let fields: Vec<Field> = schema
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Null => Field::new(f.name(), DataType::Utf8, true),
                    _ => f.as_ref().clone(),
                })
                .collect();
            Ok(Schema::new(fields))
        }
        Format::Jsonl => {
            let r = BufReader::new(LineLimit::open(path, opts.max_line_bytes)?);
            let (schema, _) =
                arrow::json::reader::infer_json_schema(r, None).map_err(|e| located(path, e))?;
            Ok(schema)
        }
    }
}

fn csv_delimiter(format: Format) -> u8 {
    if format == Format::Tsv { b'\t' } else { b',' }
}

fn csv_format(format: Format) -> arrow::csv::reader::Format {
    arrow::csv::reader::Format::default()
        .with_header(true)
        .with_delimiter(csv_delimiter(format))
}

/// An arrow error from reading `path`, named with the file (arrow's message already says
/// the line and column).
fn located(path: &Path, e: arrow::error::ArrowError) -> DataError {
    if let arrow::error::ArrowError::ExternalError(inner) = &e
        && let Some(io) = inner.downcast_ref::<std::io::Error>()
    {
        return DataError::input(path, io.to_string());
    }
    let msg = e.to_string();
    let msg = msg
        .strip_prefix("Csv error: ")
        .or_else(|| msg.strip_prefix("Parser error: "))
        .or_else(|| msg.strip_prefix("Json error: "))
        .unwrap_or(&msg)
        .to_string();
    DataError::input(path, msg)
}

type Batches = Box<dyn Iterator<Item = DataResult<RecordBatch>>>;

fn open_batches(
    path: &Path,
    format: Format,
    schema: SchemaRef,
    opts: &IngestOptions,
) -> DataResult<Batches> {
    let owned = path.to_path_buf();
    match format {
        Format::Parquet => {
            let f = File::open(path).map_err(|e| DataError::io(path, e))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(f)?
                .with_batch_size(BATCH_ROWS)
                .build()?;
            Ok(Box::new(reader.map(move |b| {
                let b = b.map_err(|e| located(&owned, e))?;
                cast_to(&b, &schema).map_err(|e| located(&owned, e))
            })))
        }
        Format::Csv | Format::Tsv => {
            let r = LineLimit::open_csv(path, opts.max_line_bytes, csv_delimiter(format))?;
            let mut builder = arrow::csv::ReaderBuilder::new(schema)
                .with_format(csv_format(format))
                .with_batch_size(BATCH_ROWS);
            builder = builder.with_header(true);
            let reader = builder.build(r).map_err(|e| located(path, e))?;
            Ok(Box::new(
                reader.map(move |b| b.map_err(|e| located(&owned, e))),
            ))
        }
        Format::Jsonl => {
            let r = BufReader::new(LineLimit::open(path, opts.max_line_bytes)?);
            let reader = arrow::json::ReaderBuilder::new(schema)
                .with_batch_size(BATCH_ROWS)
                .build(r)
                .map_err(|e| located(path, e))?;
            Ok(Box::new(
                reader.map(move |b| b.map_err(|e| located(&owned, e))),
            ))
        }
    }
}

/// Casts a batch read from one file of a folder to the folder's unified schema.
fn cast_to(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// A reader that refuses lines longer than a bound, so a file without line breaks cannot
/// make the CSV/JSON parsers buffer gigabytes.
pub struct LineLimit<R> {
    inner: R,
    max: usize,
    current: usize,
    line: u64,
    /// CSV only: the field delimiter, whether we are inside a quoted field (and the line it
    /// opened on), and the byte before. The CSV parser would otherwise take an unterminated
    /// quote as one field running to the end of the file.
    csv_delimiter: Option<u8>,
    in_quote: Option<u64>,
    prev: u8,
    just_closed: bool,
}

impl LineLimit<File> {
    pub fn open(path: &Path, max: usize) -> DataResult<Self> {
        let f = File::open(path).map_err(|e| DataError::io(path, e))?;
        Ok(Self::new(f, max))
    }

    pub fn open_csv(path: &Path, max: usize, delimiter: u8) -> DataResult<Self> {
        let mut r = Self::open(path, max)?;
        r.csv_delimiter = Some(delimiter);
        Ok(r)
    }
}

impl<R: Read> LineLimit<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            max,
            current: 0,
            line: 1,
            csv_delimiter: None,
            in_quote: None,
            prev: b'\n',
            just_closed: false,
        }
    }
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0
            && let Some(opened) = self.in_quote
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("line {opened}: a quoted field is never closed"),
            ));
        }
        for &b in &buf[..n] {
            if let Some(delim) = self.csv_delimiter {
                // As the CSV parser reads quotes: a quote opens a field only at its start, a
                // doubled quote inside one is an escaped quote, and a quote in the middle of
                // an unquoted field is an ordinary character.
                if b == b'"' {
                    if self.in_quote.is_some() {
                        self.in_quote = None;
                        self.just_closed = true;
                    } else if self.just_closed
                        || matches!(self.prev, b'\n' | b'\r')
                        || self.prev == delim
                    {
                        // After a closing quote, a second one is `""`: still inside.
                        self.in_quote = Some(self.line);
                        self.just_closed = false;
                    }
                } else {
                    self.just_closed = false;
                }
                self.prev = b;
            }
            if b == b'\n' {
                self.current = 0;
                self.line += 1;
            } else {
                self.current += 1;
                if self.current > self.max {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "line {} is longer than {} bytes (the limit for one line)",
                            self.line, self.max
                        ),
                    ));
                }
            }
        }
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for LineLimit<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.current = 0;
        self.line = 1;
        self.in_quote = None;
        self.prev = b'\n';
        self.just_closed = false;
        self.inner.seek(pos)
    }
}
