//! Preprocessing saved with a model: imputation (mean for numbers, most frequent value for
//! categories), standard scaling (population standard deviation; a constant column is
//! centred, not divided by zero, as scikit-learn's `StandardScaler`), and one-hot or ordinal
//! encoding of categories (sorted; a category unseen in training encodes as all zeros, or as
//! -1 for ordinal). Fitted on training columns, then applied unchanged at prediction.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::error::{MlError, MlResult};

/// One input column, as read from a table: numbers or text, `None` for missing.
#[derive(Debug, Clone, Copy)]
pub enum Column<'a> {
    Numeric(&'a [Option<f64>]),
    Text(&'a [Option<&'a str>]),
}

impl Column<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Numeric(v) => v.len(),
            Self::Text(v) => v.len(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    OneHot,
    Ordinal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    Numeric {
        name: String,
        /// Replaces missing and NaN values: the training mean.
        fill: f64,
        mean: f64,
        scale: f64,
    },
    Categorical {
        name: String,
        categories: Vec<String>,
        /// Replaces missing values: the most frequent training category.
        fill: String,
        encoding: Encoding,
    },
}

/// The fitted steps, one per input column, in input order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    pub steps: Vec<Step>,
}

/// The names, and what to do with the text columns.
pub struct Spec<'a> {
    pub names: &'a [String],
    pub encoding: Encoding,
}

impl Preprocessor {
    pub fn fit(spec: &Spec, columns: &[Column]) -> MlResult<Self> {
        if spec.names.len() != columns.len() {
            return Err(MlError::invalid(format!(
                "preprocessing: {} names for {} columns",
                spec.names.len(),
                columns.len()
            )));
        }
        let mut steps = Vec::with_capacity(columns.len());
        for (name, col) in spec.names.iter().zip(columns) {
            steps.push(match col {
                Column::Numeric(v) => {
                    let present: Vec<f64> =
                        v.iter().flatten().copied().filter(|x| !x.is_nan()).collect();
                    if let Some(x) = present.iter().find(|x| x.is_infinite()) {
                        return Err(MlError::invalid(format!(
                            "preprocessing: column '{name}' holds {x}; infinite values cannot be scaled"
                        )));
                    }
                    if present.is_empty() {
                        return Err(MlError::invalid(format!(
                            "preprocessing: column '{name}' has no values to learn from"
                        )));
                    }
                    let n = present.len() as f64;
                    let mean = present.iter().sum::<f64>() / n;
                    let var = present.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
                    let sd = var.sqrt();
                    Step::Numeric {
                        name: name.clone(),
                        fill: mean,
                        mean,
                        scale: if sd > 10.0 * f64::EPSILON * mean.abs().max(1.0) {
                            sd
                        } else {
                            1.0
                        },
                    }
                }
                Column::Text(v) => {
                    let mut counts: std::collections::BTreeMap<&str, u64> = Default::default();
                    for s in v.iter().flatten() {
                        *counts.entry(s).or_default() += 1;
                    }
                    // Most frequent; ties to the first in sorted order (deterministic).
                    let fill = counts
                        .iter()
                        .fold(None, |best: Option<(&str, u64)>, (k, &c)| match best {
                            Some((_, bc)) if bc >= c => best,
                            _ => Some((k, c)),
                        })
                        .map(|(k, _)| k.to_owned())
                        .ok_or_else(|| {
                            MlError::invalid(format!(
                                "preprocessing: column '{name}' has no values to learn from"
                            ))
                        })?;
                    Step::Categorical {
                        name: name.clone(),
                        categories: counts.keys().map(|k| (*k).to_owned()).collect(),
                        fill,
                        encoding: spec.encoding,
                    }
                }
            });
        }
        Ok(Self { steps })
    }

    /// Checks steps read from a file: finite centres and fills, positive finite scales,
    /// categories sorted and distinct (encoding looks them up by binary search) with the
    /// fill among them, and distinct column names.
    pub fn validate(&self) -> MlResult<()> {
        let mut names = std::collections::BTreeSet::new();
        for step in &self.steps {
            let name = match step {
                Step::Numeric {
                    name,
                    fill,
                    mean,
                    scale,
                } => {
                    if !(fill.is_finite() && mean.is_finite() && scale.is_finite() && *scale > 0.0)
                    {
                        return Err(MlError::invalid(format!(
                            "preprocessing of '{name}': fill, mean and a positive scale must be finite numbers"
                        )));
                    }
                    name
                }
                Step::Categorical {
                    name,
                    categories,
                    fill,
                    ..
                } => {
                    if categories.windows(2).any(|w| w[0] >= w[1])
                        || categories.binary_search(fill).is_err()
                    {
                        return Err(MlError::invalid(format!(
                            "preprocessing of '{name}': categories must be sorted, distinct and include the fill value"
                        )));
                    }
                    name
                }
            };
            if !names.insert(name.as_str()) {
                return Err(MlError::invalid(format!(
                    "preprocessing: column '{name}' appears twice"
                )));
            }
        }
        Ok(())
    }

    /// The output features' names (`col` for numbers, `col=value` for one-hot).
    pub fn feature_names(&self) -> Vec<String> {
        self.steps
            .iter()
            .flat_map(|s| match s {
                Step::Numeric { name, .. }
                | Step::Categorical {
                    name,
                    encoding: Encoding::Ordinal,
                    ..
                } => vec![name.clone()],
                Step::Categorical {
                    name, categories, ..
                } => categories.iter().map(|c| format!("{name}={c}")).collect(),
            })
            .collect()
    }

    /// The input values a feature row stands for: numbers unscaled, a one-hot group's or an
    /// ordinal code's category (`null` for none, or a code out of range).
    pub fn inverse(&self, row: &[f64]) -> MlResult<Vec<(String, serde_json::Value)>> {
        let width = self.feature_names().len();
        if row.len() != width {
            return Err(MlError::invalid(format!(
                "preprocessing: a row of {} features, the model makes {width}",
                row.len()
            )));
        }
        let mut out = Vec::with_capacity(self.steps.len());
        let mut at = 0;
        for step in &self.steps {
            match step {
                Step::Numeric {
                    name, mean, scale, ..
                } => {
                    out.push((name.clone(), serde_json::json!(row[at] * scale + mean)));
                    at += 1;
                }
                Step::Categorical {
                    name,
                    categories,
                    encoding: Encoding::OneHot,
                    ..
                } => {
                    let group = &row[at..at + categories.len()];
                    let hot = group
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| **v > 0.5)
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map(|(k, _)| categories[k].clone());
                    out.push((name.clone(), serde_json::json!(hot)));
                    at += categories.len();
                }
                Step::Categorical {
                    name, categories, ..
                } => {
                    let code = row[at].round();
                    let cat = (code >= 0.0)
                        .then(|| categories.get(code as usize).cloned())
                        .flatten();
                    out.push((name.clone(), serde_json::json!(cat)));
                    at += 1;
                }
            }
        }
        Ok(out)
    }

    /// The feature matrix for `columns` (same order and kinds as at fit time).
    pub fn transform(&self, columns: &[Column]) -> MlResult<Array2<f64>> {
        if columns.len() != self.steps.len() {
            return Err(MlError::invalid(format!(
                "preprocessing: the model takes {} columns, the input has {}",
                self.steps.len(),
                columns.len()
            )));
        }
        let n = columns.first().map(Column::len).unwrap_or(0);
        if let Some(c) = columns.iter().position(|c| c.len() != n) {
            return Err(MlError::invalid(format!(
                "preprocessing: column {c} has {} rows, the first has {n}",
                columns[c].len()
            )));
        }
        let width = self.feature_names().len();
        let mut out = Array2::zeros((n, width));
        let mut at = 0;
        for (step, col) in self.steps.iter().zip(columns) {
            match (step, col) {
                (
                    Step::Numeric {
                        name,
                        fill,
                        mean,
                        scale,
                    },
                    Column::Numeric(v),
                ) => {
                    for (i, x) in v.iter().enumerate() {
                        let x = x.filter(|x| !x.is_nan()).unwrap_or(*fill);
                        if x.is_infinite() {
                            return Err(MlError::invalid(format!(
                                "column '{name}', row {i}: {x} cannot be scaled"
                            )));
                        }
                        out[[i, at]] = (x - mean) / scale;
                    }
                    at += 1;
                }
                (
                    Step::Categorical {
                        categories,
                        fill,
                        encoding,
                        ..
                    },
                    Column::Text(v),
                ) => {
                    for (i, s) in v.iter().enumerate() {
                        let s = s.unwrap_or(fill.as_str());
                        let found = categories.binary_search_by(|c| c.as_str().cmp(s)).ok();
                        match (encoding, found) {
                            (Encoding::OneHot, Some(k)) => out[[i, at + k]] = 1.0,
                            (Encoding::OneHot, None) => {}
                            (Encoding::Ordinal, Some(k)) => out[[i, at]] = k as f64,
                            (Encoding::Ordinal, None) => out[[i, at]] = -1.0,
                        }
                    }
                    at += match encoding {
                        Encoding::OneHot => categories.len(),
                        Encoding::Ordinal => 1,
                    };
                }
                (step, _) => {
                    let (name, want) = match step {
                        Step::Numeric { name, .. } => (name, "numbers"),
                        Step::Categorical { name, .. } => (name, "text"),
                    };
                    return Err(MlError::invalid(format!(
                        "preprocessing: column '{name}' must hold {want}"
                    )));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scales_imputes_and_encodes_like_scikit_learn() {
        let age = [Some(20.0), None, Some(40.0), Some(f64::NAN), Some(30.0)];
        let flat = [Some(5.0); 5];
        let city = [
            Some("oslo"),
            Some("bergen"),
            None,
            Some("oslo"),
            Some("alta"),
        ];
        let n = names(&["age", "flat", "city"]);
        let cols = [
            Column::Numeric(&age),
            Column::Numeric(&flat),
            Column::Text(&city),
        ];
        let spec = Spec {
            names: &n,
            encoding: Encoding::OneHot,
        };
        let p = Preprocessor::fit(&spec, &cols).unwrap();
        assert_eq!(
            p.feature_names(),
            ["age", "flat", "city=alta", "city=bergen", "city=oslo"]
        );
        let x = p.transform(&cols).unwrap();
        // mean 30, population sd sqrt(200/3); missing and NaN become the mean (0 after scaling).
        let sd = (200.0f64 / 3.0).sqrt();
        assert!((x[[0, 0]] + 10.0 / sd).abs() < 1e-12);
        assert_eq!(x[[1, 0]], 0.0);
        assert_eq!(x[[3, 0]], 0.0);
        assert!(
            x.column(1).iter().all(|&v| v == 0.0),
            "constant: centred, not divided by 0"
        );
        assert_eq!(
            x.row(2).to_vec()[2..],
            [0.0, 0.0, 1.0],
            "missing city: the most frequent"
        );
        // An unseen category is all zeros.
        let unseen = [Some("tromso")];
        let one = [Some(1.0)];
        let x = p
            .transform(&[
                Column::Numeric(&one),
                Column::Numeric(&one),
                Column::Text(&unseen),
            ])
            .unwrap();
        assert_eq!(x.row(0).to_vec()[2..], [0.0, 0.0, 0.0]);
        // It survives a round trip through its saved form.
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Preprocessor>(&json).unwrap(), p);
    }

    #[test]
    fn wrong_shapes_and_kinds_are_named() {
        let a = [Some(1.0), Some(2.0)];
        let t = [Some("x"), Some("y")];
        let n = names(&["a"]);
        let spec = Spec {
            names: &n,
            encoding: Encoding::Ordinal,
        };
        let p = Preprocessor::fit(&spec, &[Column::Numeric(&a)]).unwrap();
        let e = p.transform(&[Column::Text(&t)]).unwrap_err().to_string();
        assert!(e.contains("'a' must hold numbers"), "{e}");
        assert!(p.transform(&[]).is_err());
        let inf = [Some(f64::INFINITY)];
        assert!(Preprocessor::fit(&spec, &[Column::Numeric(&inf)]).is_err());
        let none: [Option<f64>; 2] = [None, None];
        let e = Preprocessor::fit(&spec, &[Column::Numeric(&none)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no values"), "{e}");
    }
}
