//! Schema and profile: per column counts, nulls, distinct values, moments, quantiles,
//! histogram and top-k values, computed in one streamed pass in bounded memory.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::Schema;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, DataResult};
use crate::read::ParquetData;
use crate::schema::{ColumnSchema, Kind, columns_of};
use crate::sketch::{Distinct, Quantiles, TopK, ValueCount, hash_bytes, hash_f64};
use crate::values::{as_f64, as_text, numeric_kind};

pub const PROFILE_QUANTILES: [f64; 9] = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99];

#[derive(Debug, Clone, Copy)]
pub struct ProfileOptions {
    pub top_k: usize,
    pub bins: usize,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        Self {
            top_k: 20,
            bins: 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    pub rows: u64,
    pub columns: Vec<ColumnProfile>,
}

impl Profile {
    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.iter().find(|c| c.schema.name == name)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnProfile {
    #[serde(flatten)]
    pub schema: ColumnSchema,
    /// Non-null values.
    pub count: u64,
    pub nulls: u64,
    pub null_fraction: f64,
    pub distinct: u64,
    /// Exact below 100,000 distinct values, a HyperLogLog estimate (±0.8%) above.
    pub distinct_exact: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub numeric: Option<NumericProfile>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub text: Option<TextProfile>,
    /// The most frequent values (text and boolean columns).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub top: Vec<ValueCount>,
    #[serde(default)]
    pub top_exact: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NumericProfile {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sample standard deviation (n − 1), as pandas reports it.
    pub std: f64,
    pub zeros: u64,
    pub negatives: u64,
    /// NaN and ±infinity are counted here and left out of every statistic above and below.
    pub nan: u64,
    pub infinite: u64,
    pub quantiles: Vec<QuantileValue>,
    /// Exact (NumPy's linear interpolation) up to 1,000,000 values, a t-digest above.
    pub quantiles_exact: bool,
    pub histogram: Histogram,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct QuantileValue {
    pub q: f64,
    pub value: f64,
}

/// Equal-width bins from min to max; every bin is [left, right) except the last, which is
/// closed (NumPy's `histogram`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
    pub exact: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TextProfile {
    pub min_length: u64,
    pub max_length: u64,
    pub mean_length: f64,
}

/// Accumulates a profile batch by batch; columns are updated in parallel.
pub struct Profiler {
    columns: Vec<ColumnAcc>,
    rows: u64,
    opts: ProfileOptions,
}

struct ColumnAcc {
    schema: ColumnSchema,
    count: u64,
    nulls: u64,
    distinct: Distinct,
    numeric: Option<NumericAcc>,
    text: Option<TextAcc>,
}

struct NumericAcc {
    n: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    zeros: u64,
    negatives: u64,
    nan: u64,
    infinite: u64,
    quantiles: Quantiles,
    /// Bins fixed in advance when the range is known (from a Parquet footer).
    fixed: Option<FixedBins>,
}

struct FixedBins {
    lo: f64,
    width: f64,
    counts: Vec<u64>,
}

impl FixedBins {
    fn new(lo: f64, hi: f64, bins: usize) -> Self {
        let width = if hi > lo {
            (hi - lo) / bins as f64
        } else {
            0.0
        };
        Self {
            lo,
            width,
            counts: vec![0; bins.max(1)],
        }
    }
    #[inline]
    fn add(&mut self, v: f64) {
        let last = self.counts.len() - 1;
        let i = if self.width > 0.0 {
            (((v - self.lo) / self.width) as usize).min(last)
        } else {
            0
        };
        self.counts[i] += 1;
    }
    fn edges(&self) -> Vec<f64> {
        let n = self.counts.len();
        (0..=n)
            .map(|i| {
                if self.width > 0.0 {
                    self.lo + self.width * i as f64
                } else {
                    self.lo
                }
            })
            .collect()
    }
}

struct TextAcc {
    top: TopK,
    min_len: u64,
    max_len: u64,
    sum_len: u64,
}

impl Profiler {
    /// `ranges` gives, per column, the numeric range when known in advance (the histogram is
    /// then built while streaming; otherwise from the kept values or the quantile sketch).
    pub fn new(schema: &Schema, ranges: &[Option<(f64, f64)>], opts: ProfileOptions) -> Self {
        let columns = columns_of(schema)
            .into_iter()
            .enumerate()
            .map(|(i, schema)| {
                let numeric = numeric_kind(schema.kind).then(|| NumericAcc {
                    n: 0,
                    mean: 0.0,
                    m2: 0.0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    zeros: 0,
                    negatives: 0,
                    nan: 0,
                    infinite: 0,
                    quantiles: Quantiles::default(),
                    fixed: ranges
                        .get(i)
                        .copied()
                        .flatten()
                        .filter(|_| schema.kind == Kind::Numeric)
                        .map(|(lo, hi)| FixedBins::new(lo, hi, opts.bins)),
                });
                let text = schema.kind.is_categorical().then(|| TextAcc {
                    top: TopK::default(),
                    min_len: u64::MAX,
                    max_len: 0,
                    sum_len: 0,
                });
                ColumnAcc {
                    schema,
                    count: 0,
                    nulls: 0,
                    distinct: Distinct::default(),
                    numeric,
                    text,
                }
            })
            .collect();
        Self {
            columns,
            rows: 0,
            opts,
        }
    }

    pub fn update(&mut self, batch: &RecordBatch) -> DataResult<()> {
        self.rows += batch.num_rows() as u64;
        self.columns
            .par_iter_mut()
            .zip(batch.columns().par_iter())
            .map(|(acc, col)| acc.update(col))
            .collect::<DataResult<Vec<()>>>()?;
        Ok(())
    }

    pub fn finish(self) -> Profile {
        let opts = self.opts;
        let columns = self
            .columns
            .into_par_iter()
            .map(|c| c.finish(&opts))
            .collect();
        Profile {
            rows: self.rows,
            columns,
        }
    }
}

impl ColumnAcc {
    fn update(&mut self, col: &arrow::array::ArrayRef) -> DataResult<()> {
        let nulls = col.null_count() as u64;
        self.nulls += nulls;
        self.count += col.len() as u64 - nulls;
        if let Some(acc) = &mut self.numeric {
            let values = as_f64(col)?;
            let mut batch = BatchMoments::default();
            let mut push = |v: f64| {
                self.distinct.insert_hash(hash_f64(v));
                if v.is_nan() {
                    acc.nan += 1;
                    return;
                }
                if v.is_infinite() {
                    acc.infinite += 1;
                    return;
                }
                batch.add(v);
                acc.zeros += (v == 0.0) as u64;
                acc.negatives += (v < 0.0) as u64;
                acc.quantiles.push(v);
                if let Some(f) = &mut acc.fixed {
                    f.add(v);
                }
            };
            if values.null_count() == 0 {
                values.values().iter().for_each(|&v| push(v));
            } else {
                values.iter().flatten().for_each(push);
            }
            acc.merge(&batch);
        } else if let Some(acc) = &mut self.text {
            let values = as_text(col)?;
            for s in values.iter().flatten() {
                let h = hash_bytes(s.as_bytes());
                self.distinct.insert_hash(h);
                acc.top.insert(h, s);
                let len = s.chars().count() as u64;
                acc.min_len = acc.min_len.min(len);
                acc.max_len = acc.max_len.max(len);
                acc.sum_len += len;
            }
        }
        Ok(())
    }

    fn finish(self, opts: &ProfileOptions) -> ColumnProfile {
        let total = self.count + self.nulls;
        let (distinct, distinct_exact) = self.distinct.count();
        let mut out = ColumnProfile {
            schema: self.schema,
            count: self.count,
            nulls: self.nulls,
            null_fraction: if total == 0 {
                0.0
            } else {
                self.nulls as f64 / total as f64
            },
            distinct,
            distinct_exact,
            numeric: None,
            text: None,
            top: Vec::new(),
            top_exact: true,
        };
        if let Some(acc) = self.numeric {
            out.numeric = Some(acc.finish(opts.bins));
        }
        if let Some(acc) = self.text {
            let (top, exact) = acc.top.top(opts.top_k);
            out.top = top;
            out.top_exact = exact;
            if self.count > 0 {
                out.text = Some(TextProfile {
                    min_length: acc.min_len,
                    max_length: acc.max_len,
                    mean_length: acc.sum_len as f64 / self.count as f64,
                });
            }
        }
        out
    }
}

/// A batch's count, mean and sum of squared deviations, merged into the running totals with
/// Chan's formula (stable where a single sum of squares is not).
#[derive(Default)]
struct BatchMoments {
    n: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl BatchMoments {
    #[inline]
    fn add(&mut self, v: f64) {
        if self.n == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.n += 1;
        let d = v - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (v - self.mean);
    }
}

impl NumericAcc {
    fn merge(&mut self, b: &BatchMoments) {
        if b.n == 0 {
            return;
        }
        self.min = self.min.min(b.min);
        self.max = self.max.max(b.max);
        let n = self.n + b.n;
        let d = b.mean - self.mean;
        self.mean += d * b.n as f64 / n as f64;
        self.m2 += b.m2 + d * d * self.n as f64 * b.n as f64 / n as f64;
        self.n = n;
    }

    fn finish(self, bins: usize) -> NumericProfile {
        let (min, max) = if self.n == 0 {
            (f64::NAN, f64::NAN)
        } else {
            (self.min, self.max)
        };
        let histogram = match self.fixed {
            Some(f) => Histogram {
                edges: f.edges(),
                counts: f.counts,
                exact: true,
            },
            None => histogram_of(&self.quantiles, min, max, self.n, bins),
        };
        let (qv, exact) = self.quantiles.finish(&PROFILE_QUANTILES);
        NumericProfile {
            min,
            max,
            mean: if self.n == 0 { f64::NAN } else { self.mean },
            std: if self.n > 1 {
                (self.m2 / (self.n - 1) as f64).sqrt()
            } else {
                f64::NAN
            },
            zeros: self.zeros,
            negatives: self.negatives,
            nan: self.nan,
            infinite: self.infinite,
            quantiles: PROFILE_QUANTILES
                .iter()
                .zip(qv)
                .map(|(&q, value)| QuantileValue { q, value })
                .collect(),
            quantiles_exact: exact,
            histogram,
        }
    }
}

/// The histogram from the kept values, or (past the exact bound) estimated from the
/// quantile sketch by inverting its distribution function at each edge.
fn histogram_of(q: &Quantiles, min: f64, max: f64, n: u64, bins: usize) -> Histogram {
    if n == 0 {
        return Histogram {
            edges: Vec::new(),
            counts: Vec::new(),
            exact: true,
        };
    }
    let mut fixed = FixedBins::new(min, max, bins);
    if let Some(values) = q.exact_values() {
        values.iter().for_each(|&v| fixed.add(v));
        return Histogram {
            edges: fixed.edges(),
            counts: fixed.counts,
            exact: true,
        };
    }
    let edges = fixed.edges();
    let (grid, _) = q
        .clone()
        .finish(&(0..=1000).map(|i| i as f64 / 1000.0).collect::<Vec<_>>());
    let cdf = |x: f64| -> f64 {
        let k = grid.partition_point(|&g| g <= x);
        k as f64 / grid.len() as f64
    };
    let mut counts = Vec::with_capacity(bins);
    let mut assigned = 0u64;
    for i in 0..edges.len() - 1 {
        let c = if i + 2 == edges.len() {
            n - assigned
        } else {
            let c = ((cdf(edges[i + 1]) - cdf(edges[i])) * n as f64)
                .round()
                .max(0.0) as u64;
            c.min(n - assigned)
        };
        assigned += c;
        counts.push(c);
    }
    Histogram {
        edges,
        counts,
        exact: false,
    }
}

/// Profiles a canonical Parquet file in one streamed pass; `progress` is told rows done.
///
/// The columns are split into groups of about equal decoded size, and each group streams its
/// own projection of the file: decoding runs in parallel too, not only the summaries.
pub fn profile_parquet(
    path: &Path,
    opts: ProfileOptions,
    progress: &dyn Fn(u64),
) -> DataResult<Profile> {
    let data = ParquetData::open(path)?;
    let schema = data.schema();
    let ranges = data.numeric_ranges();
    let rows = data.rows();
    let groups = column_groups(&data.column_bytes(), 2 * rayon::current_num_threads());
    let done = AtomicU64::new(0);
    let parts = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let (groups, schema, ranges, done) = (&groups, &schema, &ranges, &done);
        s.spawn(move || {
            let result = groups
                .par_iter()
                .map(|cols| profile_columns(path, schema, ranges, cols, opts, done))
                .collect::<DataResult<Vec<Profiler>>>();
            let _ = tx.send(result);
        });
        // Report progress while waiting, and return the moment the work is done.
        loop {
            match rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(result) => break result,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    progress(done.load(Ordering::Relaxed) / groups.len().max(1) as u64)
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    break Err(DataError::Invalid("a profiling thread failed".into()));
                }
            }
        }
    })?;
    progress(rows);
    let mut columns: Vec<(usize, ColumnAcc)> = groups
        .iter()
        .zip(parts)
        .flat_map(|(cols, p)| cols.iter().copied().zip(p.columns))
        .collect();
    columns.sort_by_key(|(i, _)| *i);
    let whole = Profiler {
        columns: columns.into_iter().map(|(_, c)| c).collect(),
        rows,
        opts,
    };
    Ok(whole.finish())
}

fn profile_columns(
    path: &Path,
    schema: &Schema,
    ranges: &[Option<(f64, f64)>],
    cols: &[usize],
    opts: ProfileOptions,
    done: &AtomicU64,
) -> DataResult<Profiler> {
    let sub = schema.project(cols)?;
    let sub_ranges: Vec<Option<(f64, f64)>> = cols
        .iter()
        .map(|&i| ranges.get(i).copied().flatten())
        .collect();
    let mut p = Profiler::new(&sub, &sub_ranges, opts);
    for batch in ParquetData::open(path)?.batches(Some(cols))? {
        let batch = batch?;
        done.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        p.update(&batch)?;
    }
    Ok(p)
}

/// Splits columns into at most `k` groups of about equal cost (largest first, each to the
/// lightest group), each group's columns in file order.
fn column_groups(cost: &[u64], k: usize) -> Vec<Vec<usize>> {
    let k = k.clamp(1, cost.len().max(1));
    let mut order: Vec<usize> = (0..cost.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(cost[i]));
    let mut groups: Vec<(u64, Vec<usize>)> = vec![(0, Vec::new()); k];
    for i in order {
        if let Some(g) = groups.iter_mut().min_by_key(|g| g.0) {
            g.0 += cost[i];
            g.1.push(i);
        }
    }
    groups
        .into_iter()
        .filter(|g| !g.1.is_empty())
        .map(|(_, mut cols)| {
            cols.sort_unstable();
            cols
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::column_groups;

    #[test]
    fn column_groups_balance_cost_and_keep_file_order() {
        let g = column_groups(&[100, 1, 1, 50, 50, 1], 2);
        assert_eq!(g, vec![vec![0, 1, 5], vec![2, 3, 4]]);
        assert_eq!(column_groups(&[5, 5], 8), vec![vec![0], vec![1]]);
        assert!(column_groups(&[], 4).is_empty());
    }
}
