//! Hyper-parameter search: grid, random and successive halving over a declared space, each
//! candidate trained on the training rows minus a validation share and scored on that share
//! (the test rows are never seen while choosing). The caller trains the winner on all the
//! training rows and evaluates it on the test rows, as any training.
//!
//! Successive halving spends rows, not iterations: every candidate first trains on a small
//! sample, the best 1/eta go on with eta times more rows, until the last rung uses them all.

use std::collections::BTreeMap;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{MlError, MlResult};
use crate::predictor::Table;
use crate::split::{Fold, holdout};
use crate::train::{TrainSpec, labels, train_on};

/// Most candidates a grid may hold.
pub const MAX_CANDIDATES: usize = 10_000;
/// Share of the training rows held out to score candidates.
pub const VALIDATION_SHARE: f64 = 0.25;

/// One parameter's values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Dim {
    /// One of these values.
    Choice(Vec<Value>),
    /// A number in [min, max]: uniform, or log-uniform; rounded when `integer`.
    Range {
        min: f64,
        max: f64,
        log: bool,
        integer: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Space(pub BTreeMap<String, Dim>);

impl Space {
    /// From JSON: each parameter a list of values, a single value, or a range table
    /// `{min, max, log = false, int = false}`.
    pub fn parse(v: &Value) -> MlResult<Self> {
        let Value::Object(map) = v else {
            return Err(MlError::invalid(
                "the search space must be a table of parameter = values",
            ));
        };
        if map.is_empty() {
            return Err(MlError::invalid("the search space names no parameter"));
        }
        let mut dims = BTreeMap::new();
        for (name, spec) in map {
            let dim = match spec {
                Value::Array(items) if items.is_empty() => {
                    return Err(MlError::invalid(format!("space.{name}: the list is empty")));
                }
                Value::Array(items) => Dim::Choice(items.clone()),
                Value::Object(r) => range(name, r)?,
                other => Dim::Choice(vec![other.clone()]),
            };
            dims.insert(name.clone(), dim);
        }
        Ok(Self(dims))
    }
}

fn range(name: &str, r: &Map<String, Value>) -> MlResult<Dim> {
    for k in r.keys() {
        if !matches!(k.as_str(), "min" | "max" | "log" | "int") {
            return Err(MlError::invalid(format!(
                "space.{name}: unknown key '{k}' (a range has min, max, log, int)"
            )));
        }
    }
    let num = |k: &str| {
        r.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| MlError::invalid(format!("space.{name}: a range needs a number '{k}'")))
    };
    let flag = |k: &str| r.get(k).and_then(Value::as_bool).unwrap_or(false);
    let (min, max, log) = (num("min")?, num("max")?, flag("log"));
    if min >= max || !min.is_finite() || !max.is_finite() {
        return Err(MlError::invalid(format!(
            "space.{name}: min {min} must be below max {max}"
        )));
    }
    if log && min <= 0.0 {
        return Err(MlError::invalid(format!(
            "space.{name}: a log range needs min > 0, got {min}"
        )));
    }
    Ok(Dim::Range {
        min,
        max,
        log,
        integer: flag("int"),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "search")]
pub enum Search {
    /// Every combination of the listed values.
    Grid,
    /// `trials` candidates drawn from the space.
    Random { trials: usize },
    /// The grid (or `trials` random candidates when the space has ranges), halved by `eta`
    /// per rung; the first rung trains on at least `min_rows` rows.
    Halving {
        trials: usize,
        eta: usize,
        min_rows: usize,
    },
}

/// The candidates a search tries, in order; the same seed gives the same list.
pub fn candidates(space: &Space, search: Search, seed: u64) -> MlResult<Vec<Map<String, Value>>> {
    let has_ranges = space.0.values().any(|d| matches!(d, Dim::Range { .. }));
    let grid = || -> MlResult<Vec<Map<String, Value>>> {
        let mut out = vec![Map::new()];
        for (name, dim) in &space.0 {
            let Dim::Choice(values) = dim else {
                return Err(MlError::invalid(format!(
                    "grid search needs a list of values for '{name}', not a range"
                )));
            };
            if out.len().saturating_mul(values.len()) > MAX_CANDIDATES {
                return Err(MlError::invalid(format!(
                    "the grid has more than {MAX_CANDIDATES} combinations: use random search"
                )));
            }
            out = out
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.insert(name.clone(), v.clone());
                        c
                    })
                })
                .collect();
        }
        Ok(out)
    };
    let random = |trials: usize| -> MlResult<Vec<Map<String, Value>>> {
        if trials == 0 || trials > MAX_CANDIDATES {
            return Err(MlError::invalid(format!(
                "trials must be between 1 and {MAX_CANDIDATES}, got {trials}"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Ok((0..trials)
            .map(|_| {
                space
                    .0
                    .iter()
                    .map(|(name, dim)| (name.clone(), draw(dim, &mut rng)))
                    .collect()
            })
            .collect())
    };
    match search {
        Search::Grid => grid(),
        Search::Random { trials } => random(trials),
        Search::Halving { trials, .. } if has_ranges => random(trials),
        Search::Halving { .. } => grid(),
    }
}

fn draw(dim: &Dim, rng: &mut ChaCha8Rng) -> Value {
    match dim {
        Dim::Choice(values) => values[rng.random_range(0..values.len())].clone(),
        Dim::Range {
            min,
            max,
            log,
            integer,
        } => {
            let u: f64 = rng.random();
            let x = if *log {
                (min.ln() + u * (max.ln() - min.ln())).exp()
            } else {
                min + u * (max - min)
            };
            if *integer {
                Value::from(x.round().clamp(*min, *max) as i64)
            } else {
                serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
            }
        }
    }
}

/// Whether a smaller value of the metric is better (losses and errors).
pub fn lower_is_better(metric: &str) -> bool {
    ["loss", "brier", "mae", "mse", "rmse", "ece", "error"]
        .iter()
        .any(|w| metric.contains(w))
}

#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// 1-based, in the order the candidates were tried.
    pub number: usize,
    /// The candidate's parameters (what the space chose; the rest are the base's).
    pub params: Map<String, Value>,
    /// The halving rung (0 for grid and random).
    pub rung: usize,
    /// Rows it trained on.
    pub rows: usize,
    pub metrics: BTreeMap<String, f64>,
    /// The declared metric on the validation rows; `None` when the trial failed (then
    /// `error` says why).
    pub score: Option<f64>,
    pub error: Option<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tuning {
    pub search: Search,
    pub metric: String,
    pub lower_is_better: bool,
    pub best: Map<String, Value>,
    pub best_score: f64,
    pub trials: Vec<Trial>,
    pub validation_rows: usize,
}

fn better(a: f64, b: f64, lower: bool) -> bool {
    if lower { a < b } else { a > b }
}

/// Runs the search on `table` with `base` (its `params` are the defaults every candidate
/// overrides); `on_trial` sees each finished trial.
pub fn tune(
    table: &Table,
    base: &TrainSpec,
    space: &Space,
    search: Search,
    metric: &str,
    mut on_trial: impl FnMut(&Trial),
) -> MlResult<Tuning> {
    let cands = candidates(space, search, base.seed)?;
    let lower = lower_is_better(metric);
    // The same outer split as training with this spec, then a validation share of its
    // training rows.
    let l = labels(table, base.target, base.task, None)?;
    let outer = holdout(table.rows(), l.classes(), base.test_fraction, base.seed)?;
    let inner_classes: Option<Vec<usize>> = l
        .classes()
        .map(|y| outer.train.iter().map(|&i| y[i]).collect());
    let inner = holdout(
        outer.train.len(),
        inner_classes.as_deref(),
        VALIDATION_SHARE,
        base.seed ^ 0x7475_6e65,
    )?;
    let fit_rows: Vec<usize> = inner.train.iter().map(|&i| outer.train[i]).collect();
    let valid: Vec<usize> = inner.test.iter().map(|&i| outer.train[i]).collect();

    let mut trials: Vec<Trial> = Vec::new();
    let mut run = |number: usize, cand: &Map<String, Value>, rung: usize, rows: &[usize]| {
        let mut params = base.params.clone();
        for (k, v) in cand {
            params.insert(k.clone(), v.clone());
        }
        let spec = TrainSpec {
            kind: base.kind,
            target: base.target,
            features: base.features,
            params,
            task: base.task,
            test_fraction: base.test_fraction,
            seed: base.seed,
        };
        let fold = Fold {
            train: rows.to_vec(),
            test: valid.clone(),
        };
        let started = Instant::now();
        let result = train_on(table, &spec, &fold, |_| {});
        let (metrics, score, error) = match result {
            Ok(t) => {
                let score = t.evaluation.metrics.get(metric).copied();
                let error = score.is_none().then(|| {
                    format!(
                        "no metric '{metric}'; this model's metrics are {}",
                        t.evaluation
                            .metrics
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
                let error = error.or_else(|| {
                    score
                        .filter(|s| !s.is_finite())
                        .map(|s| format!("'{metric}' is {s} on the validation rows"))
                });
                (t.evaluation.metrics, score.filter(|s| s.is_finite()), error)
            }
            Err(e) => (BTreeMap::new(), None, Some(e.to_string())),
        };
        let trial = Trial {
            number,
            params: cand.clone(),
            rung,
            rows: rows.len(),
            metrics,
            score,
            error,
            seconds: started.elapsed().as_secs_f64(),
        };
        on_trial(&trial);
        trials.push(trial.clone());
        trial
    };

    let mut number = 0;
    let winners: Vec<(usize, f64)> = match search {
        Search::Grid | Search::Random { .. } => cands
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                number += 1;
                run(number, c, 0, &fit_rows).score.map(|s| (i, s))
            })
            .collect(),
        Search::Halving { eta, min_rows, .. } => {
            if eta < 2 {
                return Err(MlError::invalid(format!(
                    "eta must be at least 2, got {eta}"
                )));
            }
            let mut order = fit_rows.clone();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(base.seed ^ 0x6861_6c76));
            let mut alive: Vec<usize> = (0..cands.len()).collect();
            let rungs = {
                let mut r = 0;
                let mut n = cands.len();
                while n > 1 {
                    n = n.div_ceil(eta);
                    r += 1;
                }
                r
            };
            let mut scored: Vec<(usize, f64)> = Vec::new();
            for rung in 0..=rungs {
                let share = (eta as f64).powi(rung as i32 - rungs as i32);
                let n = ((order.len() as f64 * share).round() as usize)
                    .max(min_rows)
                    .min(order.len());
                let mut rows = order[..n].to_vec();
                rows.sort_unstable();
                scored = alive
                    .iter()
                    .filter_map(|&i| {
                        number += 1;
                        run(number, &cands[i], rung, &rows).score.map(|s| (i, s))
                    })
                    .collect();
                scored.sort_by(|a, b| {
                    let o = a.1.total_cmp(&b.1);
                    (if lower { o } else { o.reverse() }).then(a.0.cmp(&b.0))
                });
                if rung == rungs || scored.len() <= 1 {
                    break;
                }
                let keep = alive.len().div_ceil(eta).max(1);
                alive = scored.iter().take(keep).map(|(i, _)| *i).collect();
            }
            scored
        }
    };
    let Some(&(best_i, best_score)) =
        winners
            .iter()
            .fold(None, |acc: Option<&(usize, f64)>, w| match acc {
                Some(a) if !better(w.1, a.1, lower) => Some(a),
                _ => Some(w),
            })
    else {
        let why = trials
            .iter()
            .find_map(|t| t.error.clone())
            .unwrap_or_else(|| "no trial gave a finite score".into());
        return Err(MlError::invalid(format!("every trial failed: {why}")));
    };
    Ok(Tuning {
        search,
        metric: metric.to_owned(),
        lower_is_better: lower,
        best: cands[best_i].clone(),
        best_score,
        trials,
        validation_rows: valid.len(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn grids_random_draws_and_ranges() {
        let space = Space::parse(&json!({"a": [1, 2, 3], "b": ["x", "y"], "c": 0.5})).unwrap();
        let g = candidates(&space, Search::Grid, 0).unwrap();
        assert_eq!(g.len(), 6);
        assert_eq!(
            g[0],
            json!({"a": 1, "b": "x", "c": 0.5})
                .as_object()
                .unwrap()
                .clone()
        );
        assert_eq!(
            g[5],
            json!({"a": 3, "b": "y", "c": 0.5})
                .as_object()
                .unwrap()
                .clone()
        );

        let space = Space::parse(&json!({
            "lr": {"min": 0.001, "max": 0.1, "log": true},
            "depth": {"min": 2, "max": 8, "int": true},
            "kind": ["a", "b"]
        }))
        .unwrap();
        let r = candidates(&space, Search::Random { trials: 200 }, 7).unwrap();
        assert_eq!(
            r,
            candidates(&space, Search::Random { trials: 200 }, 7).unwrap()
        );
        assert_ne!(
            r,
            candidates(&space, Search::Random { trials: 200 }, 8).unwrap()
        );
        let lrs: Vec<f64> = r.iter().map(|c| c["lr"].as_f64().unwrap()).collect();
        assert!(lrs.iter().all(|&x| (0.001..=0.1).contains(&x)));
        // Log-uniform: about half the draws fall below the geometric mean 0.01.
        let below = lrs.iter().filter(|&&x| x < 0.01).count();
        assert!((70..=130).contains(&below), "{below}");
        let depths: Vec<i64> = r.iter().map(|c| c["depth"].as_i64().unwrap()).collect();
        assert!(depths.iter().all(|d| (2..=8).contains(d)));
        assert!(depths.contains(&2) && depths.contains(&8));
        assert!(candidates(&space, Search::Grid, 0).is_err());
        let h = Search::Halving {
            trials: 9,
            eta: 3,
            min_rows: 10,
        };
        assert_eq!(candidates(&space, h, 0).unwrap().len(), 9);
    }

    #[test]
    fn malformed_spaces_say_what_is_wrong() {
        for (bad, expect) in [
            (json!([1, 2]), "a table"),
            (json!({}), "no parameter"),
            (json!({"a": []}), "space.a: the list is empty"),
            (json!({"a": {"min": 2, "max": 1}}), "must be below"),
            (json!({"a": {"min": 0, "max": 1, "log": true}}), "min > 0"),
            (json!({"a": {"min": 0, "maxi": 1}}), "unknown key 'maxi'"),
            (json!({"a": {"max": 1}}), "needs a number 'min'"),
        ] {
            let e = Space::parse(&bad).unwrap_err().to_string();
            assert!(e.contains(expect), "{bad}: {e}");
        }
        let big = Space::parse(&json!({
            "a": (0..101).collect::<Vec<_>>(), "b": (0..101).collect::<Vec<_>>()
        }))
        .unwrap();
        assert!(candidates(&big, Search::Grid, 0).is_err());
        let one = Space::parse(&json!({"a": [1]})).unwrap();
        assert!(candidates(&one, Search::Random { trials: 0 }, 0).is_err());
    }

    #[test]
    fn metric_directions() {
        assert!(lower_is_better("log_loss") && lower_is_better("rmse"));
        assert!(!lower_is_better("roc_auc") && !lower_is_better("r2"));
    }
}
