//! Input guards: each request's rows are compared with the model's training data (its
//! `Reference`) before the model sees them. Per deployment, each guard has an action:
//!
//! - `range`: a number outside the training minimum..maximum (widened by `range_margin` times
//!   the span). `clip` clamps it into the range.
//! - `nan`: a NaN, infinite or missing number. `clip` replaces it by the training median (by 0
//!   without a reference).
//! - `category`: a text value never seen in training (checked when the training column has at
//!   most `MAX_CATEGORIES` distinct values).
//! - `ood`: the row's Mahalanobis distance to the training rows (numeric features,
//!   standardised, ridge-regularised correlation), divided by a threshold: the `ood_quantile`
//!   of the training rows' own distances, or `ood_threshold`. A score above 1 is out of
//!   distribution: inputs built to evade a model (adversarial or probing queries) tend to lie
//!   off the data's manifold, where this distance is large.
//!
//! Actions: `off` (not checked), `log` (recorded in the inference event and metrics), `flag`
//! (also returned in the response's `parameters`), `clip` (range and nan only) and `reject`
//! (400, naming the feature, row, value and rule).

use std::collections::{BTreeMap, BTreeSet};

use bastion_ml::predictor::{ColumnData, Table};
use serde::{Deserialize, Serialize};

use crate::error::ServeError;

/// Text columns with more distinct training values than this are not checked as categories.
pub const MAX_CATEGORIES: usize = 10_000;
/// Above this many numeric features the OOD score uses the diagonal (per-feature z-scores)
/// instead of the full correlation.
const MAX_FULL_COVARIANCE: usize = 256;
/// Training rows the OOD calibration looks at (evenly spaced).
const CALIBRATION_ROWS: usize = 50_000;
/// Ridge added to the correlation matrix's diagonal, so that collinear features still give
/// a positive-definite matrix.
const RIDGE: f64 = 1e-3;
/// Flags listed in a response or event; the counts cover all.
const MAX_LISTED: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Off,
    Log,
    Flag,
    Clip,
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Log => "log",
            Self::Flag => "flag",
            Self::Clip => "clip",
            Self::Reject => "reject",
        }
    }
}

impl std::str::FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Self::Off),
            "log" => Ok(Self::Log),
            "flag" => Ok(Self::Flag),
            "clip" => Ok(Self::Clip),
            "reject" => Ok(Self::Reject),
            _ => Err(format!("'{s}': use off, log, flag, clip or reject")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardSettings {
    pub range: Action,
    pub nan: Action,
    pub category: Action,
    pub ood: Action,
    /// Which quantile of the training rows' distances is the OOD threshold.
    pub ood_quantile: f64,
    /// An explicit OOD distance threshold, overriding the quantile.
    pub ood_threshold: Option<f64>,
    /// How far beyond the training range a value may lie, as a fraction of the range.
    pub range_margin: f64,
    /// The dataset version (`name@vK`) the guards compare with; by default the dataset the
    /// model was trained on, as its package records it.
    pub reference: Option<String>,
}

impl Default for GuardSettings {
    fn default() -> Self {
        Self {
            range: Action::Flag,
            nan: Action::Reject,
            category: Action::Reject,
            ood: Action::Log,
            ood_quantile: 0.999,
            ood_threshold: None,
            range_margin: 0.0,
            reference: None,
        }
    }
}

impl GuardSettings {
    pub fn validate(&self) -> Result<(), String> {
        if matches!(self.category, Action::Clip) || matches!(self.ood, Action::Clip) {
            return Err("guards: clip applies to range and nan only".into());
        }
        if !(self.ood_quantile > 0.5 && self.ood_quantile < 1.0) {
            return Err(format!(
                "guards: ood_quantile must lie between 0.5 and 1, not {}",
                self.ood_quantile
            ));
        }
        if self
            .ood_threshold
            .is_some_and(|t| !(t.is_finite() && t > 0.0))
        {
            return Err("guards: ood_threshold must be a positive number".into());
        }
        if !(self.range_margin.is_finite() && self.range_margin >= 0.0) {
            return Err("guards: range_margin must be a non-negative number".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
struct NumericRef {
    min: f64,
    max: f64,
    median: f64,
}

/// Mahalanobis distance to the training rows: `d(x)² = ‖L⁻¹ z‖²`, with `z` the standardised
/// row and `L` the Cholesky factor of the (ridge-regularised) correlation matrix.
#[derive(Debug, Clone, PartialEq)]
struct Mahalanobis {
    features: Vec<String>,
    mean: Vec<f64>,
    std: Vec<f64>,
    /// Row-major lower triangle (d×d); `None`: diagonal.
    chol: Option<Vec<f64>>,
    /// The training rows' distances, sorted (for the quantile threshold).
    calibration: Vec<f64>,
}

/// What the guards compare requests with, built from a training dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// The dataset version it was built from (`name@vK`).
    pub source: String,
    pub rows: usize,
    numeric: BTreeMap<String, NumericRef>,
    categories: BTreeMap<String, BTreeSet<String>>,
    ood: Option<Mahalanobis>,
}

fn median_of(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Evenly spaced row indices, at most `max`.
fn spaced(rows: usize, max: usize) -> impl Iterator<Item = usize> {
    let step = rows.div_ceil(max.max(1)).max(1);
    (0..rows).step_by(step)
}

impl Reference {
    /// The reference for `features` of `table` (the training data).
    pub fn build(source: &str, table: &Table, features: &[String]) -> Result<Self, String> {
        let rows = table.rows();
        if rows < 2 {
            return Err(format!(
                "{source}: {rows} rows is too few to compare inputs with"
            ));
        }
        let mut numeric = BTreeMap::new();
        let mut categories = BTreeMap::new();
        let mut columns = Vec::new();
        for name in features {
            let Some(col) = table.column(name) else {
                return Err(format!("{source} has no column '{name}' the model takes"));
            };
            match col {
                ColumnData::Numeric(v) => {
                    let mut finite: Vec<f64> = v
                        .iter()
                        .flatten()
                        .copied()
                        .filter(|x| x.is_finite())
                        .collect();
                    if finite.is_empty() {
                        continue;
                    }
                    finite.sort_by(f64::total_cmp);
                    numeric.insert(
                        name.clone(),
                        NumericRef {
                            min: finite[0],
                            max: finite[finite.len() - 1],
                            median: median_of(&finite),
                        },
                    );
                    columns.push((name.clone(), v));
                }
                ColumnData::Text(v) => {
                    let mut seen = BTreeSet::new();
                    for s in v.iter().flatten() {
                        if seen.len() > MAX_CATEGORIES {
                            break;
                        }
                        seen.insert(s.clone());
                    }
                    if seen.len() <= MAX_CATEGORIES {
                        categories.insert(name.clone(), seen);
                    }
                }
            }
        }
        let ood = Mahalanobis::fit(&columns, &numeric, rows);
        Ok(Self {
            source: source.to_owned(),
            rows,
            numeric,
            categories,
            ood,
        })
    }

    /// The OOD threshold the settings give.
    pub fn ood_threshold(&self, s: &GuardSettings) -> Option<f64> {
        let m = self.ood.as_ref()?;
        if let Some(t) = s.ood_threshold {
            return Some(t);
        }
        let n = m.calibration.len();
        let i = ((s.ood_quantile * n as f64).ceil() as usize).clamp(1, n) - 1;
        Some(m.calibration[i].max(f64::EPSILON))
    }
}

impl Mahalanobis {
    fn fit(
        columns: &[(String, &Vec<Option<f64>>)],
        numeric: &BTreeMap<String, NumericRef>,
        rows: usize,
    ) -> Option<Self> {
        let value = |v: &Vec<Option<f64>>, r: usize, median: f64| match v[r] {
            Some(x) if x.is_finite() => x,
            _ => median,
        };
        let mut features = Vec::new();
        let mut mean = Vec::new();
        let mut std = Vec::new();
        let mut used = Vec::new();
        for (name, v) in columns {
            let median = numeric.get(name).map_or(0.0, |n| n.median);
            let m = (0..rows).map(|r| value(v, r, median)).sum::<f64>() / rows as f64;
            let var = (0..rows)
                .map(|r| (value(v, r, median) - m).powi(2))
                .sum::<f64>()
                / (rows - 1) as f64;
            if var > 0.0 && var.is_finite() {
                features.push(name.clone());
                mean.push(m);
                std.push(var.sqrt());
                used.push((*v, median));
            }
        }
        let d = features.len();
        if d == 0 {
            return None;
        }
        let z = |mean: &[f64], std: &[f64], r: usize, out: &mut [f64]| {
            for (j, (v, median)) in used.iter().enumerate() {
                out[j] = (value(v, r, *median) - mean[j]) / std[j];
            }
        };
        let chol = if d <= MAX_FULL_COVARIANCE {
            let mut cov = vec![0.0; d * d];
            let mut row = vec![0.0; d];
            for r in spaced(rows, 200_000) {
                z(&mean, &std, r, &mut row);
                for i in 0..d {
                    for j in 0..=i {
                        cov[i * d + j] += row[i] * row[j];
                    }
                }
            }
            let n = spaced(rows, 200_000).count().max(2) as f64;
            for i in 0..d {
                for j in 0..=i {
                    cov[i * d + j] /= n - 1.0;
                }
                cov[i * d + i] += RIDGE;
            }
            cholesky(&mut cov, d).then_some(cov)
        } else {
            None
        };
        let mut m = Self {
            features,
            mean,
            std,
            chol,
            calibration: Vec::new(),
        };
        let mut row = vec![0.0; d];
        let mut scratch = vec![0.0; d];
        let mut calibration: Vec<f64> = spaced(rows, CALIBRATION_ROWS)
            .map(|r| {
                z(&m.mean, &m.std, r, &mut row);
                m.distance_of(&mut row, &mut scratch)
            })
            .collect();
        calibration.sort_by(f64::total_cmp);
        m.calibration = calibration;
        Some(m)
    }

    /// The distance of a standardised row (`z` is overwritten).
    fn distance_of(&self, z: &mut [f64], scratch: &mut [f64]) -> f64 {
        let d = z.len();
        match &self.chol {
            None => z.iter().map(|x| x * x).sum::<f64>().sqrt(),
            Some(l) => {
                // Forward substitution: L y = z.
                for i in 0..d {
                    let mut s = z[i];
                    for k in 0..i {
                        s -= l[i * d + k] * scratch[k];
                    }
                    scratch[i] = s / l[i * d + i];
                }
                scratch.iter().map(|x| x * x).sum::<f64>().sqrt()
            }
        }
    }
}

/// In-place Cholesky factorisation of the lower triangle of a d×d row-major matrix; false
/// if it is not positive definite.
fn cholesky(a: &mut [f64], d: usize) -> bool {
    for j in 0..d {
        let mut s = a[j * d + j];
        for k in 0..j {
            s -= a[j * d + k] * a[j * d + k];
        }
        if !(s > 0.0 && s.is_finite()) {
            return false;
        }
        let diag = s.sqrt();
        a[j * d + j] = diag;
        for i in j + 1..d {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = s / diag;
        }
        for k in j + 1..d {
            a[j * d + k] = 0.0;
        }
    }
    true
}

/// One thing a guard noticed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag {
    pub guard: &'static str,
    pub input: String,
    pub row: usize,
    pub detail: String,
}

/// What the guards found in one request.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Verdict {
    /// The first flags, at most `MAX_LISTED`.
    pub flags: Vec<Flag>,
    /// How many values each guard noticed.
    pub counts: BTreeMap<&'static str, u64>,
    /// Values replaced by `clip`.
    pub clipped: u64,
    /// Per row OOD score (distance / threshold), when scored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ood_scores: Option<Vec<f64>>,
    /// Whether anything noticed is to be shown in the response.
    #[serde(skip)]
    pub show: bool,
}

impl Verdict {
    pub fn is_clean(&self) -> bool {
        self.counts.is_empty()
    }

    fn note(&mut self, action: Action, flag: Flag) {
        *self.counts.entry(flag.guard).or_default() += 1;
        self.show |= action == Action::Flag;
        if self.flags.len() < MAX_LISTED {
            self.flags.push(flag);
        }
    }
}

fn rejected(flag: &Flag, guard_name: &'static str) -> ServeError {
    let message = if flag.input.is_empty() {
        format!(
            "row {}: {} ({guard_name} guard: reject)",
            flag.row, flag.detail
        )
    } else {
        format!(
            "input '{}' row {}: {} ({guard_name} guard: reject)",
            flag.input, flag.row, flag.detail
        )
    };
    ServeError::Guarded {
        guard: guard_name,
        message,
    }
}

/// Applies the guards to a request's table (clipping in place) and says what they found; an
/// error when a `reject` guard fires.
pub fn check(
    table: &mut Table,
    reference: Option<&Reference>,
    s: &GuardSettings,
) -> Result<Verdict, ServeError> {
    let mut verdict = Verdict::default();
    for (name, col) in table.names.iter().zip(table.columns.iter_mut()) {
        match col {
            ColumnData::Numeric(values) => {
                let r = reference.and_then(|r| r.numeric.get(name));
                check_numeric(name, values, r, s, &mut verdict)?;
            }
            ColumnData::Text(values) => {
                let Some(known) = reference.and_then(|r| r.categories.get(name)) else {
                    continue;
                };
                if s.category == Action::Off {
                    continue;
                }
                for (row, v) in values.iter().enumerate() {
                    if let Some(v) = v
                        && !known.contains(v)
                    {
                        let flag = Flag {
                            guard: "category",
                            input: name.clone(),
                            row,
                            detail: format!(
                                "'{}' is not a category seen in training",
                                v.escape_debug()
                            ),
                        };
                        if s.category == Action::Reject {
                            return Err(rejected(&flag, "category"));
                        }
                        verdict.note(s.category, flag);
                    }
                }
            }
        }
    }
    if s.ood != Action::Off
        && let Some(r) = reference
        && let (Some(m), Some(threshold)) = (&r.ood, r.ood_threshold(s))
    {
        let scores = ood_scores(table, m, threshold);
        for (row, score) in scores.iter().enumerate() {
            if *score > 1.0 {
                let flag = Flag {
                    guard: "ood",
                    input: String::new(),
                    row,
                    detail: format!(
                        "out of distribution: score {score:.3} (distance {:.3} over the threshold {threshold:.3})",
                        score * threshold
                    ),
                };
                if s.ood == Action::Reject {
                    return Err(rejected(&flag, "ood"));
                }
                verdict.note(s.ood, flag);
            }
        }
        verdict.ood_scores = Some(scores);
    }
    Ok(verdict)
}

fn check_numeric(
    name: &str,
    values: &mut [Option<f64>],
    r: Option<&NumericRef>,
    s: &GuardSettings,
    verdict: &mut Verdict,
) -> Result<(), ServeError> {
    let (lo, hi) = r.map_or((f64::NEG_INFINITY, f64::INFINITY), |r| {
        let margin = (r.max - r.min) * s.range_margin;
        (r.min - margin, r.max + margin)
    });
    for (row, v) in values.iter_mut().enumerate() {
        let x = *v;
        let missing = x.is_none_or(|x| !x.is_finite());
        if missing {
            if s.nan == Action::Off {
                continue;
            }
            let shown = x.map_or_else(|| "missing".to_owned(), |x| x.to_string());
            let flag = Flag {
                guard: "nan",
                input: name.to_owned(),
                row,
                detail: format!("{shown} is not a finite number"),
            };
            match s.nan {
                Action::Reject => return Err(rejected(&flag, "nan")),
                Action::Clip => {
                    *v = Some(r.map_or(0.0, |r| r.median));
                    verdict.clipped += 1;
                }
                _ => {}
            }
            verdict.note(s.nan, flag);
            continue;
        }
        let x = x.unwrap_or_default();
        if r.is_none() || s.range == Action::Off || (lo..=hi).contains(&x) {
            continue;
        }
        let flag = Flag {
            guard: "range",
            input: name.to_owned(),
            row,
            detail: format!("{x} is outside the training range [{lo}, {hi}]"),
        };
        match s.range {
            Action::Reject => return Err(rejected(&flag, "range")),
            Action::Clip => {
                *v = Some(x.clamp(lo, hi));
                verdict.clipped += 1;
            }
            _ => {}
        }
        verdict.note(s.range, flag);
    }
    Ok(())
}

fn ood_scores(table: &Table, m: &Mahalanobis, threshold: f64) -> Vec<f64> {
    let d = m.features.len();
    let cols: Vec<Option<&Vec<Option<f64>>>> = m
        .features
        .iter()
        .map(|f| match table.column(f) {
            Some(ColumnData::Numeric(v)) => Some(v),
            _ => None,
        })
        .collect();
    let mut z = vec![0.0; d];
    let mut scratch = vec![0.0; d];
    (0..table.rows())
        .map(|r| {
            for j in 0..d {
                // A feature the request lacks, or a missing value, sits at the mean.
                z[j] = match cols[j].and_then(|c| c[r]) {
                    Some(x) if x.is_finite() => (x - m.mean[j]) / m.std[j],
                    _ => 0.0,
                };
            }
            m.distance_of(&mut z, &mut scratch) / threshold
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two correlated features (y ≈ 2x) and a category.
    fn training() -> Table {
        let n = 2000;
        let x: Vec<Option<f64>> = (0..n).map(|i| Some((i % 100) as f64 / 10.0)).collect();
        let y: Vec<Option<f64>> = x
            .iter()
            .enumerate()
            .map(|(i, v)| v.map(|v| 2.0 * v + ((i * 7919) % 13) as f64 / 13.0 - 0.5))
            .collect();
        let c: Vec<Option<String>> = (0..n)
            .map(|i| Some(["red", "green", "blue"][i % 3].to_owned()))
            .collect();
        Table {
            names: vec!["x".into(), "y".into(), "c".into()],
            columns: vec![
                ColumnData::Numeric(x),
                ColumnData::Numeric(y),
                ColumnData::Text(c),
            ],
        }
    }

    fn reference() -> Reference {
        let f: Vec<String> = ["x", "y", "c"].iter().map(|s| s.to_string()).collect();
        Reference::build("train@v1", &training(), &f).unwrap()
    }

    fn request(x: f64, y: f64, c: &str) -> Table {
        Table {
            names: vec!["x".into(), "y".into(), "c".into()],
            columns: vec![
                ColumnData::Numeric(vec![Some(x)]),
                ColumnData::Numeric(vec![Some(y)]),
                ColumnData::Text(vec![Some(c.into())]),
            ],
        }
    }

    #[test]
    fn ranges_categories_and_nan_follow_their_actions() {
        let r = reference();
        let mut s = GuardSettings::default();
        let mut t = request(5.0, 10.0, "red");
        let v = check(&mut t, Some(&r), &s).unwrap();
        assert!(v.is_clean(), "{v:?}");

        let mut t = request(50.0, 10.0, "red");
        let v = check(&mut t, Some(&r), &s).unwrap();
        assert_eq!(v.counts.get("range"), Some(&1));
        assert!(v.show);
        s.range = Action::Clip;
        let v = check(&mut t, Some(&r), &s).unwrap();
        assert_eq!(v.clipped, 1);
        assert_eq!(t.columns[0], ColumnData::Numeric(vec![Some(9.9)]));
        s.range = Action::Reject;
        let e = check(&mut request(-1.0, 10.0, "red"), Some(&r), &s)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("input 'x' row 0") && e.contains("[0, 9.9]"),
            "{e}"
        );

        let e = check(&mut request(5.0, 10.0, "purple"), Some(&r), &s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'purple'") && e.contains("category"), "{e}");
        s.category = Action::Log;
        let v = check(&mut request(5.0, 10.0, "purple"), Some(&r), &s).unwrap();
        assert_eq!(v.counts.get("category"), Some(&1));
        assert!(!v.show, "log is not shown in the response");

        let e = check(&mut request(f64::NAN, 10.0, "red"), Some(&r), &s).unwrap_err();
        assert!(e.to_string().contains("NaN is not a finite number"), "{e}");
        s.nan = Action::Clip;
        let mut t = request(f64::NAN, 10.0, "red");
        check(&mut t, Some(&r), &s).unwrap();
        assert_eq!(t.columns[0], ColumnData::Numeric(vec![Some(4.95)]));
        // Without a reference, only NaN is checked.
        s.nan = Action::Reject;
        assert!(check(&mut request(1e9, 1e9, "zzz"), None, &s).is_ok());
        assert!(check(&mut request(f64::INFINITY, 1.0, "a"), None, &s).is_err());
    }

    #[test]
    fn ood_score_sees_a_broken_correlation_within_ranges() {
        let r = reference();
        let s = GuardSettings {
            range: Action::Log,
            ..GuardSettings::default()
        };
        // Both values are inside their ranges, but y ≈ 2x does not hold.
        let v = check(&mut request(1.0, 19.0, "red"), Some(&r), &s).unwrap();
        let off = v.ood_scores.unwrap()[0];
        let v = check(&mut request(5.0, 10.0, "red"), Some(&r), &s).unwrap();
        let on = v.ood_scores.unwrap()[0];
        assert!(off > 1.0 && on < 1.0, "off {off} on {on}");
        // About 0.1% of the training rows themselves score above 1.
        let mut t = training();
        let v = check(&mut t, Some(&r), &s).unwrap();
        let above = v.ood_scores.unwrap().iter().filter(|x| **x > 1.0).count();
        assert!(above <= 4, "{above} training rows flagged");
        let reject = GuardSettings {
            ood: Action::Reject,
            ..s
        };
        let e = check(&mut request(1.0, 19.0, "red"), Some(&r), &reject).unwrap_err();
        assert!(e.to_string().contains("out of distribution"), "{e}");
    }

    #[test]
    fn matches_the_closed_form_for_independent_features() {
        // With a diagonal correlation, the distance is the norm of the z-scores.
        let n = 1000;
        let a: Vec<Option<f64>> = (0..n).map(|i| Some((i % 2) as f64)).collect();
        let b: Vec<Option<f64>> = (0..n).map(|i| Some(((i / 2) % 2) as f64)).collect();
        let t = Table {
            names: vec!["a".into(), "b".into()],
            columns: vec![ColumnData::Numeric(a), ColumnData::Numeric(b)],
        };
        let r = Reference::build("t@v1", &t, &["a".into(), "b".into()]).unwrap();
        let m = r.ood.as_ref().unwrap();
        let sd = m.std[0];
        let mut z = vec![(1.0 - 0.5) / sd, (1.0 - 0.5) / sd];
        let mut scratch = vec![0.0; 2];
        let expected = ((z[0] * z[0] + z[1] * z[1]) / (1.0 + RIDGE)).sqrt();
        let got = m.distance_of(&mut z, &mut scratch);
        assert!((got - expected).abs() < 1e-9, "{got} vs {expected}");
    }

    #[test]
    fn settings_refuse_nonsense() {
        let mut s = GuardSettings::default();
        assert!(s.validate().is_ok());
        s.category = Action::Clip;
        assert!(s.validate().is_err());
        s = GuardSettings {
            ood_quantile: 1.0,
            ..GuardSettings::default()
        };
        assert!(s.validate().is_err());
        assert!("maybe".parse::<Action>().is_err());
    }
}
