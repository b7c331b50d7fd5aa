//! Poisoning and label checks: exact and near-duplicate rows (and duplicates whose labels
//! disagree), outliers by robust distance, label-noise candidates by k-nearest-neighbour
//! disagreement and by confident learning on out-of-fold predictions, and class-balance
//! shifts between versions.
//!
//! Features are the numeric columns, standardised (mean 0, standard deviation 1), and text
//! or boolean columns with at most 50 distinct values, one-hot encoded. Rows are near
//! duplicates when their numbers agree to four significant digits and their text after
//! trimming and lower-casing. Every check is
//! deterministic: no random sampling; past `max_rows` every k-th row is taken.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use arrow::array::{Array, RecordBatch};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::drift::{ColumnDrift, DriftOptions, compare_categorical};
use crate::error::{DataError, DataResult};
use crate::read::ParquetData;
use crate::schema::Kind;
use crate::sketch::hash_bytes;
use crate::values::{as_f64, as_text, numeric_kind};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoisonOptions {
    pub label: Option<String>,
    /// Neighbours per row for the k-NN checks.
    pub k: usize,
    /// Folds for the out-of-fold predictions of confident learning.
    pub folds: usize,
    /// A modified z-score (0.6745·|x − median| / MAD) above this marks an outlier
    /// (Iglewicz and Hoaglin's 3.5).
    pub outlier_threshold: f64,
    /// Rows checked at most (the k-NN checks cost O(n²)).
    pub max_rows: usize,
    /// Rows listed at most per check.
    pub max_listed: usize,
}

impl Default for PoisonOptions {
    fn default() -> Self {
        Self {
            label: None,
            k: 10,
            folds: 5,
            outlier_threshold: 3.5,
            max_rows: 20_000,
            max_listed: 1_000,
        }
    }
}

const MAX_ONE_HOT: usize = 50;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DuplicateGroup {
    pub rows: Vec<u64>,
    /// The rows share their features but not their label: a classic poisoning pattern.
    pub conflicting_labels: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RowScore {
    pub row: u64,
    pub score: f64,
    /// The feature that scored highest.
    pub feature: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LabelIssue {
    pub row: u64,
    pub label: String,
    /// The class the out-of-fold model is confident about instead.
    pub suggested: String,
    /// Out-of-fold probability of the given label (lower is more suspicious).
    pub self_confidence: f64,
    /// Share of the k nearest neighbours whose label differs.
    pub knn_disagreement: f64,
    pub by_confident_learning: bool,
    pub by_knn: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PoisonReport {
    pub rows: u64,
    pub checked_rows: u64,
    /// 1 when every row was checked, else every k-th row was.
    pub stride: u64,
    pub features: Vec<String>,
    pub label: Option<String>,
    pub exact_duplicates: Vec<DuplicateGroup>,
    pub near_duplicates: Vec<DuplicateGroup>,
    pub outliers: Vec<RowScore>,
    pub label_issues: Vec<LabelIssue>,
    /// Rows the checks flagged, per check, before listing limits.
    pub counts: BTreeMap<String, u64>,
}

struct Table {
    rows: Vec<u64>,
    names: Vec<String>,
    /// Row-major standardised features.
    x: Vec<f64>,
    dim: usize,
    /// Raw cell text per row (all feature columns), for exact duplicates.
    exact_keys: Vec<u64>,
    near_keys: Vec<u64>,
    labels: Option<Vec<Option<String>>>,
}

fn load(path: &Path, opts: &PoisonOptions) -> DataResult<(Table, u64, u64)> {
    let data = ParquetData::open(path)?;
    let schema = data.schema();
    let total = data.rows();
    let stride = (total as usize).div_ceil(opts.max_rows.max(1)).max(1) as u64;
    let label_idx =
        match &opts.label {
            Some(l) => Some(schema.index_of(l).map_err(|_| {
                DataError::Invalid(format!("no label column '{l}' in the dataset"))
            })?),
            None => None,
        };
    // Stream the file and keep only every `stride`-th row, so memory follows the rows
    // checked, not the file's size.
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut picked: Vec<(usize, usize, u64)> = Vec::new();
    let mut row = 0u64;
    for b in data.batches(None)? {
        let b = b?;
        let first = row;
        row += b.num_rows() as u64;
        let idx: Vec<u32> = (0..b.num_rows() as u32)
            .filter(|&i| (first + i as u64).is_multiple_of(stride))
            .collect();
        if idx.is_empty() {
            continue;
        }
        let bi = batches.len();
        for (k, &i) in idx.iter().enumerate() {
            picked.push((bi, k, first + i as u64));
        }
        let take = arrow::array::UInt32Array::from(idx);
        batches.push(arrow::compute::take_record_batch(&b, &take)?);
    }
    let n = picked.len();
    let mut names = Vec::new();
    let mut cols: Vec<Vec<f64>> = Vec::new();
    let mut exact_keys = vec![0u64; n];
    let mut near_keys = vec![0u64; n];
    for (ci, f) in schema.fields().iter().enumerate() {
        if Some(ci) == label_idx {
            continue;
        }
        let kind = Kind::of(f.data_type());
        if numeric_kind(kind) {
            let arrays: Vec<_> = batches
                .iter()
                .map(|b| as_f64(b.column(ci)))
                .collect::<DataResult<_>>()?;
            let raw: Vec<Option<f64>> = picked
                .iter()
                .map(|&(bi, i, _)| {
                    arrays[bi]
                        .is_valid(i)
                        .then(|| arrays[bi].value(i))
                        .filter(|v| v.is_finite())
                })
                .collect();
            let vals: Vec<f64> = raw.iter().flatten().copied().collect();
            let mean = vals.iter().sum::<f64>() / vals.len().max(1) as f64;
            let sd = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
                / vals.len().max(1) as f64)
                .sqrt();
            let sd = if sd > 0.0 { sd } else { 1.0 };
            let z: Vec<f64> = raw
                .iter()
                .map(|v| v.map(|v| (v - mean) / sd).unwrap_or(0.0))
                .collect();
            for r in 0..n {
                let bits = raw[r].map(f64::to_bits).unwrap_or(u64::MAX);
                exact_keys[r] = mix(exact_keys[r], bits);
                let rounded = raw[r].map(significant4).unwrap_or(u64::MAX);
                near_keys[r] = mix(near_keys[r], rounded);
            }
            names.push(f.name().clone());
            cols.push(z);
        } else if kind.is_categorical() {
            let arrays: Vec<_> = batches
                .iter()
                .map(|b| as_text(b.column(ci)))
                .collect::<DataResult<_>>()?;
            let raw: Vec<Option<&str>> = picked
                .iter()
                .map(|&(bi, i, _)| arrays[bi].is_valid(i).then(|| arrays[bi].value(i)))
                .collect();
            for r in 0..n {
                let h = raw[r].map(|s| hash_bytes(s.as_bytes())).unwrap_or(u64::MAX);
                exact_keys[r] = mix(exact_keys[r], h);
                let norm = raw[r]
                    .map(|s| hash_bytes(s.trim().to_lowercase().as_bytes()))
                    .unwrap_or(u64::MAX);
                near_keys[r] = mix(near_keys[r], norm);
            }
            let mut cats: BTreeMap<&str, usize> = BTreeMap::new();
            for s in raw.iter().flatten() {
                let next = cats.len();
                cats.entry(s).or_insert(next);
                if cats.len() > MAX_ONE_HOT {
                    break;
                }
            }
            if cats.len() <= MAX_ONE_HOT && !cats.is_empty() {
                for (cat, _) in cats.iter() {
                    names.push(format!("{}={}", f.name(), cat));
                    cols.push(
                        raw.iter()
                            .map(|v| if *v == Some(*cat) { 1.0 } else { 0.0 })
                            .collect(),
                    );
                }
            }
        }
    }
    let dim = cols.len();
    let mut x = vec![0.0; n * dim];
    for (j, c) in cols.iter().enumerate() {
        for r in 0..n {
            x[r * dim + j] = c[r];
        }
    }
    let labels = match label_idx {
        Some(li) => {
            let arrays: Vec<_> = batches
                .iter()
                .map(|b| as_text(b.column(li)))
                .collect::<DataResult<_>>()?;
            Some(
                picked
                    .iter()
                    .map(|&(bi, i, _)| {
                        arrays[bi]
                            .is_valid(i)
                            .then(|| arrays[bi].value(i).to_string())
                    })
                    .collect(),
            )
        }
        None => None,
    };
    Ok((
        Table {
            rows: picked.iter().map(|p| p.2).collect(),
            names,
            x,
            dim,
            exact_keys,
            near_keys,
            labels,
        },
        total,
        stride,
    ))
}

/// The value rounded to four significant digits (the near-duplicate key of a number).
fn significant4(v: f64) -> u64 {
    if v == 0.0 {
        return 0;
    }
    let exp = v.abs().log10().floor() as i32;
    let scale = 10f64.powi(3 - exp);
    ((v * scale).round() / scale).to_bits()
}

fn mix(h: u64, v: u64) -> u64 {
    hash_bytes(&[h.to_le_bytes(), v.to_le_bytes()].concat())
}

fn groups(keys: &[u64], t: &Table) -> Vec<DuplicateGroup> {
    let mut by: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        by.entry(*k).or_default().push(i);
    }
    let mut out: Vec<DuplicateGroup> = by
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|g| {
            let conflicting = t.labels.as_ref().is_some_and(|l| {
                let first = &l[g[0]];
                g.iter().any(|&i| l[i] != *first)
            });
            DuplicateGroup {
                rows: g.iter().map(|&i| t.rows[i]).collect(),
                conflicting_labels: conflicting,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.conflicting_labels
            .cmp(&a.conflicting_labels)
            .then(a.rows.cmp(&b.rows))
    });
    out
}

fn outliers(t: &Table, threshold: f64) -> Vec<RowScore> {
    let n = t.rows.len();
    if n == 0 || t.dim == 0 {
        return Vec::new();
    }
    let mut best = vec![(0.0f64, 0usize); n];
    for j in 0..t.dim {
        if t.names[j].contains('=') {
            continue; // one-hot columns have no meaningful median distance
        }
        let mut col: Vec<f64> = (0..n).map(|r| t.x[r * t.dim + j]).collect();
        let med = median(&mut col.clone());
        for v in col.iter_mut() {
            *v = (*v - med).abs();
        }
        let mad = median(&mut col);
        if mad <= 0.0 {
            continue;
        }
        for (r, b) in best.iter_mut().enumerate() {
            let z = 0.6745 * (t.x[r * t.dim + j] - med).abs() / mad;
            if z > b.0 {
                *b = (z, j);
            }
        }
    }
    let mut out: Vec<RowScore> = best
        .iter()
        .enumerate()
        .filter(|(_, (z, _))| *z > threshold)
        .map(|(r, (z, j))| RowScore {
            row: t.rows[r],
            score: *z,
            feature: t.names[*j].clone(),
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    crate::sketch::interpolate_sorted(v, 0.5)
}

/// For each row: its k nearest rows overall, and its k nearest rows outside its fold.
fn neighbours(t: &Table, k: usize, folds: usize) -> Vec<(Vec<usize>, Vec<usize>)> {
    let n = t.rows.len();
    let d = t.dim;
    let fold = |i: usize| i % folds.max(1);
    (0..n)
        .into_par_iter()
        .map(|i| {
            let xi = &t.x[i * d..(i + 1) * d];
            let mut all: Vec<(f64, usize)> = Vec::with_capacity(n);
            for j in 0..n {
                if j == i {
                    continue;
                }
                let xj = &t.x[j * d..(j + 1) * d];
                let dist: f64 = xi.iter().zip(xj).map(|(a, b)| (a - b) * (a - b)).sum();
                all.push((dist, j));
            }
            let nearest = |cands: Vec<(f64, usize)>| -> Vec<usize> {
                let mut c = cands;
                let kk = k.min(c.len());
                if kk == 0 {
                    return Vec::new();
                }
                c.select_nth_unstable_by(kk - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                c.truncate(kk);
                c.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                c.into_iter().map(|p| p.1).collect()
            };
            let oof: Vec<(f64, usize)> = all
                .iter()
                .copied()
                .filter(|&(_, j)| fold(j) != fold(i))
                .collect();
            (nearest(all), nearest(oof))
        })
        .collect()
}

fn label_issues(t: &Table, opts: &PoisonOptions) -> Vec<LabelIssue> {
    let Some(labels) = &t.labels else {
        return Vec::new();
    };
    let classes: Vec<String> = {
        let mut c: Vec<String> = labels.iter().flatten().cloned().collect();
        c.sort();
        c.dedup();
        c
    };
    if classes.len() < 2 || t.dim == 0 {
        return Vec::new();
    }
    let idx: HashMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let y: Vec<Option<usize>> = labels
        .iter()
        .map(|l| l.as_deref().and_then(|s| idx.get(s).copied()))
        .collect();
    let nb = neighbours(t, opts.k, opts.folds);
    let m = classes.len();
    // Out-of-fold class probabilities: neighbour votes with add-one smoothing.
    let probs: Vec<Vec<f64>> = nb
        .iter()
        .map(|(_, oof)| {
            let mut p = vec![1.0; m];
            for &j in oof {
                if let Some(c) = y[j] {
                    p[c] += 1.0;
                }
            }
            let s: f64 = p.iter().sum();
            p.iter().map(|v| v / s).collect()
        })
        .collect();
    // Per-class thresholds: the mean self-confidence of rows given that class.
    let mut thr = vec![0.0; m];
    let mut cnt = vec![0usize; m];
    for (r, p) in probs.iter().enumerate() {
        if let Some(c) = y[r] {
            thr[c] += p[c];
            cnt[c] += 1;
        }
    }
    for c in 0..m {
        thr[c] = if cnt[c] > 0 {
            thr[c] / cnt[c] as f64
        } else {
            1.0
        };
    }
    let mut out = Vec::new();
    for (r, p) in probs.iter().enumerate() {
        let Some(given) = y[r] else { continue };
        // Confident joint: the most probable class among those above their threshold.
        let confident = (0..m)
            .filter(|&c| p[c] >= thr[c])
            .max_by(|&a, &b| p[a].total_cmp(&p[b]).then(b.cmp(&a)));
        let by_cl = confident.is_some_and(|c| c != given);
        let (all, _) = &nb[r];
        let disagree =
            all.iter().filter(|&&j| y[j] != Some(given)).count() as f64 / all.len().max(1) as f64;
        let knn_vote = {
            let mut votes = vec![0usize; m];
            for &j in all {
                if let Some(c) = y[j] {
                    votes[c] += 1;
                }
            }
            (0..m).max_by_key(|&c| (votes[c], std::cmp::Reverse(c)))
        };
        let by_knn = disagree > 0.5 && knn_vote.is_some_and(|c| c != given);
        if by_cl || by_knn {
            let suggested = confident
                .filter(|&c| c != given)
                .or(knn_vote)
                .unwrap_or(given);
            out.push(LabelIssue {
                row: t.rows[r],
                label: classes[given].clone(),
                suggested: classes[suggested].clone(),
                self_confidence: p[given],
                knn_disagreement: disagree,
                by_confident_learning: by_cl,
                by_knn,
            });
        }
    }
    out.sort_by(|a, b| {
        a.self_confidence
            .total_cmp(&b.self_confidence)
            .then(a.row.cmp(&b.row))
    });
    out
}

/// Runs every check on a canonical Parquet file.
pub fn check_parquet(path: &Path, opts: &PoisonOptions) -> DataResult<PoisonReport> {
    let (t, total, stride) = load(path, opts)?;
    let exact = groups(&t.exact_keys, &t);
    let near: Vec<DuplicateGroup> = groups(&t.near_keys, &t)
        .into_iter()
        .filter(|g| !exact.iter().any(|e| e.rows == g.rows))
        .collect();
    let out = outliers(&t, opts.outlier_threshold);
    let issues = label_issues(&t, opts);
    let mut counts = BTreeMap::new();
    counts.insert("exact_duplicate_groups".into(), exact.len() as u64);
    counts.insert(
        "conflicting_duplicate_groups".into(),
        exact
            .iter()
            .chain(&near)
            .filter(|g| g.conflicting_labels)
            .count() as u64,
    );
    counts.insert("near_duplicate_groups".into(), near.len() as u64);
    counts.insert("outliers".into(), out.len() as u64);
    counts.insert("label_issues".into(), issues.len() as u64);
    let cap = opts.max_listed;
    Ok(PoisonReport {
        rows: total,
        checked_rows: t.rows.len() as u64,
        stride,
        features: t.names.clone(),
        label: opts.label.clone(),
        exact_duplicates: exact.into_iter().take(cap).collect(),
        near_duplicates: near.into_iter().take(cap).collect(),
        outliers: out.into_iter().take(cap).collect(),
        label_issues: issues.into_iter().take(cap).collect(),
        counts,
    })
}

/// The label column's class shares in two versions, compared (chi-square and
/// Jensen–Shannon, as for any categorical column).
pub fn class_balance(reference: &Path, current: &Path, label: &str) -> DataResult<ColumnDrift> {
    let count = |p: &Path| -> DataResult<HashMap<String, u64>> {
        let data = ParquetData::open(p)?;
        let idx = data.schema().index_of(label).map_err(|_| {
            DataError::Invalid(format!("no label column '{label}' in {}", p.display()))
        })?;
        let mut m: HashMap<String, u64> = HashMap::new();
        for b in data.batches(Some(&[idx]))? {
            let b = b?;
            for s in as_text(b.column(0))?.iter().flatten() {
                *m.entry(s.to_string()).or_default() += 1;
            }
        }
        Ok(m)
    };
    let (a, b) = (count(reference)?, count(current)?);
    let mut r = compare_categorical(label, Kind::Text, &a, &b, &DriftOptions::default());
    if let Some(p) = r.pvalue {
        r.adjusted_pvalue = Some(p);
        r.drift = p < DriftOptions::default().alpha;
    }
    Ok(r)
}
