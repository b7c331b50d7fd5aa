//! Drift between a reference and a current dataset, column by column, with the test chosen
//! by column kind and sample size, and a dataset verdict after multiple-testing correction.
//!
//! The automatic choice (documented thresholds, after Evidently's defaults):
//! - numeric, reference ≤ 1,000 rows: KS test, drift when the adjusted p-value < α (0.05);
//! - numeric, larger: Wasserstein distance normalised by the reference's standard
//!   deviation (ddof 0), drift when > 0.1;
//! - text/boolean, reference ≤ 1,000 rows: chi-square homogeneity, adjusted p < α;
//! - text/boolean, larger: Jensen–Shannon distance, drift when > 0.1.
//!
//! Every other statistic is reported too. Binning is explicit: numeric values fall into 10
//! bins whose edges are the reference's deciles (`stats::quantile_edges`), categories are the
//! union of both samples' values. PSI, Jensen–Shannon and Hellinger use those bins; KS and
//! Wasserstein use the raw values.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use arrow::array::Array;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, DataResult};
use crate::read::ParquetData;
use crate::schema::{ColumnSchema, Kind, columns_of};
use crate::stats::{self, ChiSquareResult, KsResult};
use crate::values::{as_f64, as_text, numeric_kind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Correction {
    Bonferroni,
    /// Benjamini–Hochberg false discovery rate.
    Fdr,
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriftOptions {
    pub alpha: f64,
    pub distance_threshold: f64,
    pub bins: usize,
    /// Up to this many reference rows a p-value test decides, above it a distance.
    pub small_sample: u64,
    pub correction: Correction,
    /// Categorical columns with more distinct values than this are not compared (free text).
    pub max_categories: usize,
    /// The KS test's exact p-value costs n₁·n₂ steps; above this many the asymptotic one
    /// decides.
    #[serde(default = "ks_exact_max_cells")]
    pub ks_exact_max_cells: u64,
}

fn ks_exact_max_cells() -> u64 {
    stats::KS_EXACT_MAX_CELLS
}

impl Default for DriftOptions {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            distance_threshold: 0.1,
            bins: 10,
            small_sample: 1_000,
            correction: Correction::Fdr,
            max_categories: 10_000,
            ks_exact_max_cells: stats::KS_EXACT_MAX_CELLS,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftTest {
    Ks,
    ChiSquare,
    Wasserstein,
    JensenShannon,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnDrift {
    pub column: String,
    pub kind: Kind,
    pub reference_count: u64,
    pub current_count: u64,
    /// The test that decides this column's verdict.
    pub test: DriftTest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ks: Option<KsResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chi_square: Option<ChiSquareResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasserstein: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasserstein_normalized: Option<f64>,
    pub psi: f64,
    pub jensen_shannon: f64,
    pub hellinger: f64,
    /// The deciding p-value before and after correction (p-value tests only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pvalue: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjusted_pvalue: Option<f64>,
    /// The deciding value and the bound it is held to.
    pub score: f64,
    pub threshold: f64,
    pub drift: bool,
    pub bins: Bins,
}

/// The bins PSI, Jensen–Shannon and Hellinger were computed on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Bins {
    /// Interior edges (reference deciles); bin i is [edge[i−1], edge[i]).
    Numeric {
        edges: Vec<f64>,
        reference: Vec<u64>,
        current: Vec<u64>,
    },
    Categorical {
        categories: Vec<String>,
        reference: Vec<u64>,
        current: Vec<u64>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SkippedColumn {
    pub column: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DriftReport {
    pub options: DriftOptionsSummary,
    pub columns: Vec<ColumnDrift>,
    pub skipped: Vec<SkippedColumn>,
    pub drifted_columns: usize,
    pub drifted_share: f64,
    /// Drift when any column drifts after correction.
    pub dataset_drift: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DriftOptionsSummary {
    pub alpha: f64,
    pub distance_threshold: f64,
    pub bins: usize,
    pub small_sample: u64,
    pub correction: Correction,
}

/// One column's values, as the comparison needs them.
pub enum ColumnSample {
    /// Sorted, without nulls and NaN.
    Numeric(Vec<f64>),
    /// Exact value counts, or `None` when there were more than the category bound.
    Categorical(Option<HashMap<String, u64>>),
}

pub fn compare_numeric(
    column: &str,
    kind: Kind,
    reference: &[f64],
    current: &[f64],
    opts: &DriftOptions,
) -> ColumnDrift {
    let ks = stats::ks_2samp_within(reference, current, opts.ks_exact_max_cells);
    let w = stats::wasserstein(reference, current);
    let sd = stats::population_std(reference);
    let wn = if sd > 0.0 {
        w / sd
    } else if w == 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    let edges = stats::quantile_edges(reference, opts.bins);
    let rc = stats::bin_counts(reference, &edges);
    let cc = stats::bin_counts(current, &edges);
    let (rp, cp) = (stats::proportions(&rc), stats::proportions(&cc));
    let small = reference.len() as u64 <= opts.small_sample;
    let (test, pvalue, score, threshold) = if small {
        (DriftTest::Ks, Some(ks.pvalue()), ks.pvalue(), opts.alpha)
    } else {
        (DriftTest::Wasserstein, None, wn, opts.distance_threshold)
    };
    ColumnDrift {
        column: column.to_string(),
        kind,
        reference_count: reference.len() as u64,
        current_count: current.len() as u64,
        test,
        ks: Some(ks),
        chi_square: None,
        wasserstein: Some(w),
        wasserstein_normalized: Some(wn),
        psi: stats::psi(&rp, &cp),
        jensen_shannon: stats::jensen_shannon(&rp, &cp),
        hellinger: stats::hellinger(&rp, &cp),
        pvalue,
        adjusted_pvalue: None,
        score,
        threshold,
        drift: !small && wn > opts.distance_threshold,
        bins: Bins::Numeric {
            edges,
            reference: rc,
            current: cc,
        },
    }
}

pub fn compare_categorical(
    column: &str,
    kind: Kind,
    reference: &HashMap<String, u64>,
    current: &HashMap<String, u64>,
    opts: &DriftOptions,
) -> ColumnDrift {
    let mut cats: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (k, v) in reference {
        cats.entry(k).or_default().0 += v;
    }
    for (k, v) in current {
        cats.entry(k).or_default().1 += v;
    }
    let categories: Vec<String> = cats.keys().map(|s| s.to_string()).collect();
    let rc: Vec<u64> = cats.values().map(|c| c.0).collect();
    let cc: Vec<u64> = cats.values().map(|c| c.1).collect();
    let (rp, cp) = (stats::proportions(&rc), stats::proportions(&cc));
    let chi = stats::chi_square(&rc, &cc);
    let js = stats::jensen_shannon(&rp, &cp);
    let n_ref: u64 = rc.iter().sum();
    let small = n_ref <= opts.small_sample;
    let (test, pvalue, score, threshold) = if small {
        (
            DriftTest::ChiSquare,
            Some(chi.pvalue),
            chi.pvalue,
            opts.alpha,
        )
    } else {
        (DriftTest::JensenShannon, None, js, opts.distance_threshold)
    };
    ColumnDrift {
        column: column.to_string(),
        kind,
        reference_count: n_ref,
        current_count: cc.iter().sum(),
        test,
        ks: None,
        chi_square: Some(chi),
        wasserstein: None,
        wasserstein_normalized: None,
        psi: stats::psi(&rp, &cp),
        jensen_shannon: js,
        hellinger: stats::hellinger(&rp, &cp),
        pvalue,
        adjusted_pvalue: None,
        score,
        threshold,
        drift: !small && js > opts.distance_threshold,
        bins: Bins::Categorical {
            categories,
            reference: rc,
            current: cc,
        },
    }
}

/// Applies the correction to the p-value tests and sets their verdicts and the dataset's.
pub fn finish_report(
    mut columns: Vec<ColumnDrift>,
    skipped: Vec<SkippedColumn>,
    opts: &DriftOptions,
) -> DriftReport {
    let idx: Vec<usize> = (0..columns.len())
        .filter(|&i| columns[i].pvalue.is_some())
        .collect();
    let ps: Vec<f64> = idx
        .iter()
        .map(|&i| columns[i].pvalue.unwrap_or(1.0))
        .collect();
    let adjusted = match opts.correction {
        Correction::Bonferroni => stats::bonferroni(&ps),
        Correction::Fdr => stats::benjamini_hochberg(&ps),
        Correction::None => ps.clone(),
    };
    for (&i, adj) in idx.iter().zip(adjusted) {
        columns[i].adjusted_pvalue = Some(adj);
        columns[i].score = adj;
        columns[i].drift = adj < opts.alpha;
    }
    let drifted = columns.iter().filter(|c| c.drift).count();
    DriftReport {
        options: DriftOptionsSummary {
            alpha: opts.alpha,
            distance_threshold: opts.distance_threshold,
            bins: opts.bins,
            small_sample: opts.small_sample,
            correction: opts.correction,
        },
        drifted_share: if columns.is_empty() {
            0.0
        } else {
            drifted as f64 / columns.len() as f64
        },
        dataset_drift: drifted > 0,
        drifted_columns: drifted,
        columns,
        skipped,
    }
}

/// Reads one column of a Parquet file as the comparison needs it.
pub fn read_sample(
    path: &Path,
    col: usize,
    kind: Kind,
    max_categories: usize,
) -> DataResult<ColumnSample> {
    let data = ParquetData::open(path)?;
    if numeric_kind(kind) {
        let mut v = Vec::with_capacity(data.rows() as usize);
        for b in data.batches(Some(&[col]))? {
            let b = b?;
            let a = as_f64(b.column(0))?;
            if a.null_count() == 0 {
                v.extend(a.values().iter().filter(|x| !x.is_nan()));
            } else {
                v.extend(a.iter().flatten().filter(|x| !x.is_nan()));
            }
        }
        v.sort_unstable_by(f64::total_cmp);
        Ok(ColumnSample::Numeric(v))
    } else {
        let mut m: HashMap<String, u64> = HashMap::new();
        for b in data.batches(Some(&[col]))? {
            let b = b?;
            let a = as_text(b.column(0))?;
            for s in a.iter().flatten() {
                match m.get_mut(s) {
                    Some(c) => *c += 1,
                    None => {
                        if m.len() >= max_categories {
                            return Ok(ColumnSample::Categorical(None));
                        }
                        m.insert(s.to_string(), 1);
                    }
                }
            }
        }
        Ok(ColumnSample::Categorical(Some(m)))
    }
}

/// Compares the columns two Parquet files share (by name and kind).
pub fn drift_parquet(
    reference: &Path,
    current: &Path,
    opts: &DriftOptions,
) -> DataResult<DriftReport> {
    let rs = columns_of(&ParquetData::open(reference)?.schema());
    let cs = columns_of(&ParquetData::open(current)?.schema());
    let pairs: Vec<(usize, usize, &ColumnSchema)> = rs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            cs.iter()
                .position(|c| c.name == r.name && c.kind == r.kind)
                .map(|j| (i, j, r))
        })
        .collect();
    let results: Vec<Result<ColumnDrift, SkippedColumn>> = pairs
        .par_iter()
        .map(
            |&(i, j, col)| -> DataResult<Result<ColumnDrift, SkippedColumn>> {
                if col.kind == Kind::Other {
                    return Ok(Err(SkippedColumn {
                        column: col.name.clone(),
                        reason: format!("{} values are not compared", col.dtype),
                    }));
                }
                let a = read_sample(reference, i, col.kind, opts.max_categories)?;
                let b = read_sample(current, j, col.kind, opts.max_categories)?;
                Ok(match (a, b) {
                    (ColumnSample::Numeric(a), ColumnSample::Numeric(b)) => {
                        if a.is_empty() || b.is_empty() {
                            Err(SkippedColumn {
                                column: col.name.clone(),
                                reason: "no values on one side".into(),
                            })
                        } else {
                            Ok(compare_numeric(&col.name, col.kind, &a, &b, opts))
                        }
                    }
                    (ColumnSample::Categorical(Some(a)), ColumnSample::Categorical(Some(b))) => {
                        if a.is_empty() || b.is_empty() {
                            Err(SkippedColumn {
                                column: col.name.clone(),
                                reason: "no values on one side".into(),
                            })
                        } else {
                            Ok(compare_categorical(&col.name, col.kind, &a, &b, opts))
                        }
                    }
                    _ => Err(SkippedColumn {
                        column: col.name.clone(),
                        reason: format!(
                            "more than {} distinct values (free text)",
                            opts.max_categories
                        ),
                    }),
                })
            },
        )
        .collect::<DataResult<Vec<_>>>()?;
    let mut columns = Vec::new();
    let mut skipped = Vec::new();
    for r in results {
        match r {
            Ok(c) => columns.push(c),
            Err(s) => skipped.push(s),
        }
    }
    Ok(finish_report(columns, skipped, opts))
}

/// Schema and row-count changes between two versions, plus their drift.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatasetDiff {
    pub rows: (u64, u64),
    pub added_columns: Vec<ColumnSchema>,
    pub removed_columns: Vec<ColumnSchema>,
    pub changed_columns: Vec<ChangedColumn>,
    pub drift: DriftReport,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChangedColumn {
    pub name: String,
    pub before: String,
    pub after: String,
}

pub fn diff_parquet(a: &Path, b: &Path, opts: &DriftOptions) -> DataResult<DatasetDiff> {
    let da = ParquetData::open(a)?;
    let db = ParquetData::open(b)?;
    let (sa, sb) = (columns_of(&da.schema()), columns_of(&db.schema()));
    let added = sb
        .iter()
        .filter(|c| !sa.iter().any(|x| x.name == c.name))
        .cloned()
        .collect();
    let removed = sa
        .iter()
        .filter(|c| !sb.iter().any(|x| x.name == c.name))
        .cloned()
        .collect();
    let changed = sa
        .iter()
        .filter_map(|x| {
            let y = sb.iter().find(|y| y.name == x.name)?;
            (x.dtype != y.dtype || x.nullable != y.nullable).then(|| ChangedColumn {
                name: x.name.clone(),
                before: describe(x),
                after: describe(y),
            })
        })
        .collect();
    let rows = (da.rows(), db.rows());
    Ok(DatasetDiff {
        rows,
        added_columns: added,
        removed_columns: removed,
        changed_columns: changed,
        drift: drift_parquet(a, b, opts)?,
    })
}

fn describe(c: &ColumnSchema) -> String {
    format!("{}{}", c.dtype, if c.nullable { " (nullable)" } else { "" })
}

impl std::str::FromStr for Correction {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        match s {
            "bonferroni" => Ok(Self::Bonferroni),
            "fdr" | "bh" => Ok(Self::Fdr),
            "none" => Ok(Self::None),
            _ => Err(DataError::Invalid(format!(
                "unknown correction '{s}': use bonferroni, fdr or none"
            ))),
        }
    }
}
