//! Per-caller security detectors. Each caller of a model has its own state, fed with the
//! caller's observations; every `every` rows the caller's signals are judged by the alert
//! rules with the caller as the subject, so a rule such as `extraction.score > 0.12` with
//! `respond = ["block_actor"]` blocks that caller only.
//!
//! - **Model extraction (PRADA, Juuti et al. 2019).** For each kept query row, the smallest
//!   distance to the caller's earlier queries that got the same answer (its "growing set";
//!   features scaled by the reference's spread, categories counting 1 when they differ).
//!   A query farther than the mean minus one standard deviation of those distances joins the
//!   growing set. Natural queries give distances close to a normal distribution; synthetic
//!   ones (small steps from seeds, as Jacobian-based augmentation makes) do not. The signal
//!   `extraction.score` is 1 − W, the Shapiro-Wilk statistic of the caller's last
//!   `prada_window` distances, once there are `prada_min`; PRADA's threshold δ on W is a
//!   threshold 1 − δ on the score.
//! - **Evasion probing.** `probing.boundary_rate`: the share of the caller's answers since
//!   the last judgement whose winning probability is under `boundary_confidence` (inputs
//!   walked to the decision boundary); `probing.flagged_rate`: the share of its requests the
//!   input guards flagged or rejected (out of range, out of distribution).
//! - **Abuse.** `abuse.limited_rate`: the share of its requests refused by rate limits or a
//!   block; `abuse.auth_failures`: its requests to `infer` refused for bad or locked-out
//!   credentials since the last judgement (the server records them as events of the model
//!   they were for, with the identity they claimed as the caller); `abuse.volume_ratio`: its
//!   requests per second since the last judgement over its own average before (after
//!   `baseline_judgements` judgements).
//!
//! Memory is bounded per caller (`growing_max` points, `prada_window` distances) and in
//! callers (`max_callers`, the least recently seen forgotten first).

use std::collections::{HashMap, VecDeque};

use bastion_policy::{Facts, Value};
use serde::{Deserialize, Serialize};

use crate::observation::{Cell, Observation};
use crate::reference::{Reference, Values};
use crate::shapiro::shapiro_w;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorSettings {
    /// A caller's signals are judged every this many of its rows.
    pub every: usize,
    /// Distances needed before `extraction.score` is given.
    pub prada_min: usize,
    /// The caller's most recent distances the test looks at.
    pub prada_window: usize,
    /// Growing-set points kept per caller, at most (beyond: no new points join).
    pub growing_max: usize,
    /// An answer whose winning probability is under this is near the decision boundary.
    pub boundary_confidence: f64,
    /// Judgements before a caller's volume has a baseline.
    pub baseline_judgements: usize,
    /// Callers tracked per worker, at most.
    pub max_callers: usize,
}

impl Default for DetectorSettings {
    fn default() -> Self {
        Self {
            every: 50,
            prada_min: 100,
            prada_window: 1000,
            growing_max: 2000,
            boundary_confidence: 0.6,
            baseline_judgements: 3,
            max_callers: 10_000,
        }
    }
}

/// How features are scaled into distances: per reference column, its standard deviation
/// (numbers) or a category flag.
#[derive(Debug, Clone)]
pub struct Scale {
    columns: Vec<(String, Option<f64>)>,
}

impl Scale {
    pub fn of(reference: &Reference) -> Self {
        let columns = reference
            .columns
            .iter()
            .map(|c| match &c.values {
                Values::Numeric { sorted } => {
                    let n = sorted.len().max(1) as f64;
                    let mean = sorted.iter().sum::<f64>() / n;
                    let var = sorted.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                    (c.name.clone(), Some(var.sqrt().max(1e-12)))
                }
                Values::Categorical { .. } => (c.name.clone(), None),
            })
            .collect();
        Self { columns }
    }

    /// One row of an observation as a point: scaled numbers, categories as text.
    fn point(&self, o: &Observation, row: usize) -> Option<Point> {
        let mut p = Point::default();
        for (name, sd) in &self.columns {
            let cell = o.features.get(name)?.get(row)?;
            match (sd, cell) {
                (Some(sd), Cell::Number(v)) if v.is_finite() => p.numbers.push(v / sd),
                (Some(_), _) => p.numbers.push(f64::NAN),
                (None, c) => p.categories.push(crate::reference::category(c)),
            }
        }
        Some(p)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Point {
    numbers: Vec<f64>,
    categories: Vec<String>,
}

impl Point {
    /// The squared distance to `other`, or `None` as soon as it reaches `bound` (a nearest
    /// neighbour search need not finish a sum that already lost).
    fn squared_distance_below(&self, other: &Point, bound: f64) -> Option<f64> {
        let mut d2 = 0.0;
        for (a, b) in self.numbers.iter().zip(&other.numbers) {
            // A missing value is as far as one standard deviation.
            let d = if a.is_nan() || b.is_nan() { 1.0 } else { a - b };
            d2 += d * d;
            if d2 >= bound {
                return None;
            }
        }
        for (a, b) in self.categories.iter().zip(&other.categories) {
            if a != b {
                d2 += 1.0;
            }
        }
        (d2 < bound).then_some(d2)
    }

    /// The distance to the nearest of `points` (none when there are none).
    fn nearest(&self, points: &[Point]) -> Option<f64> {
        let mut best: Option<f64> = None;
        for q in points {
            if let Some(d2) = self.squared_distance_below(q, best.unwrap_or(f64::INFINITY)) {
                best = Some(d2);
            }
        }
        best.map(f64::sqrt)
    }
}

/// One answer class's growing set and the distances that made it.
#[derive(Debug, Default)]
struct Growing {
    points: Vec<Point>,
    sum: f64,
    sum2: f64,
    n: usize,
}

impl Growing {
    fn threshold(&self) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let mean = self.sum / self.n as f64;
        let var = (self.sum2 / self.n as f64 - mean * mean).max(0.0);
        mean - var.sqrt()
    }
}

#[derive(Debug, Default)]
struct Caller {
    growing: HashMap<String, Growing>,
    growing_points: usize,
    distances: VecDeque<f64>,
    rows_since: usize,
    requests: usize,
    answered: usize,
    near_boundary: usize,
    guarded: usize,
    limited: usize,
    auth_failed: usize,
    since_ms: Option<i64>,
    last_ms: i64,
    /// Requests per second in each earlier judgement interval.
    rates: Vec<f64>,
    seen: u64,
}

/// A caller's signals, judged.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerSignals {
    pub model: String,
    pub actor: String,
    pub time_ms: i64,
    pub signals: Facts,
}

#[derive(Debug)]
pub struct Detectors {
    settings: DetectorSettings,
    callers: HashMap<(String, String), Caller>,
    clock: u64,
}

impl Detectors {
    pub fn new(settings: DetectorSettings) -> Self {
        Self {
            settings,
            callers: HashMap::new(),
            clock: 0,
        }
    }

    pub fn callers(&self) -> usize {
        self.callers.len()
    }

    /// Feeds one observation of `model` (scaled by `scale`, when the model has a
    /// reference); returns the caller's signals when it is time to judge them.
    pub fn observe(
        &mut self,
        model: &str,
        scale: Option<&Scale>,
        o: &Observation,
    ) -> Option<CallerSignals> {
        if o.actor.is_empty() {
            return None;
        }
        self.clock += 1;
        let key = (model.to_owned(), o.actor.clone());
        if !self.callers.contains_key(&key) && self.callers.len() >= self.settings.max_callers {
            self.forget_oldest();
        }
        let s = self.settings;
        let c = self.callers.entry(key).or_default();
        c.seen = self.clock;
        c.requests += 1;
        c.since_ms.get_or_insert(o.time_ms);
        c.last_ms = c.last_ms.max(o.time_ms);
        match o.outcome.decision.as_str() {
            "flagged" | "rejected" => c.guarded += 1,
            "limited" | "blocked" => c.limited += 1,
            "unauthenticated" | "auth-locked" => c.auth_failed += 1,
            _ => {}
        }
        c.answered += o.confidence.len();
        c.near_boundary += o
            .confidence
            .iter()
            .filter(|&&p| p < s.boundary_confidence)
            .count();
        if let Some(scale) = scale {
            for row in 0..o.sampled_rows() {
                let Some(p) = scale.point(o, row) else { break };
                let class = o
                    .predictions
                    .get(row)
                    .map_or_else(String::new, crate::reference::category);
                prada(c, &s, class, p);
            }
        }
        c.rows_since += o.rows.max(1);
        if c.rows_since < s.every {
            return None;
        }
        Some(CallerSignals {
            model: model.to_owned(),
            actor: o.actor.clone(),
            time_ms: o.time_ms,
            signals: judge(c, &s),
        })
    }

    fn forget_oldest(&mut self) {
        if let Some(oldest) = self
            .callers
            .iter()
            .min_by_key(|(_, c)| c.seen)
            .map(|(k, _)| k.clone())
        {
            self.callers.remove(&oldest);
        }
    }
}

fn prada(c: &mut Caller, s: &DetectorSettings, class: String, p: Point) {
    let room = c.growing_points < s.growing_max;
    let g = c.growing.entry(class).or_default();
    let Some(d) = p.nearest(&g.points) else {
        if room {
            g.points.push(p);
            c.growing_points += 1;
        }
        return;
    };
    c.distances.push_back(d);
    if c.distances.len() > s.prada_window {
        c.distances.pop_front();
    }
    if d > g.threshold() && room {
        g.points.push(p);
        g.sum += d;
        g.sum2 += d * d;
        g.n += 1;
        c.growing_points += 1;
    }
}

fn judge(c: &mut Caller, s: &DetectorSettings) -> Facts {
    let mut f = Facts::new();
    let num = Value::Number;
    let rate = |n: usize, of: usize| if of == 0 { 0.0 } else { n as f64 / of as f64 };
    f.insert("caller.requests".into(), num(c.requests as f64));
    f.insert(
        "probing.boundary_rate".into(),
        num(rate(c.near_boundary, c.answered)),
    );
    f.insert(
        "probing.flagged_rate".into(),
        num(rate(c.guarded, c.requests)),
    );
    f.insert(
        "abuse.limited_rate".into(),
        num(rate(c.limited, c.requests)),
    );
    f.insert("abuse.auth_failures".into(), num(c.auth_failed as f64));
    if c.distances.len() >= s.prada_min {
        let d: Vec<f64> = c.distances.iter().copied().collect();
        if let Some(w) = shapiro_w(&d) {
            f.insert("extraction.score".into(), num(1.0 - w));
        }
    }
    let seconds = (c.last_ms - c.since_ms.unwrap_or(c.last_ms)).max(1000) as f64 / 1000.0;
    let now_rate = c.requests as f64 / seconds;
    if c.rates.len() >= s.baseline_judgements {
        let base = c.rates.iter().sum::<f64>() / c.rates.len() as f64;
        if base > 0.0 {
            f.insert("abuse.volume_ratio".into(), num(now_rate / base));
        }
    }
    c.rates.push(now_rate);
    if c.rates.len() > 100 {
        c.rates.remove(0);
    }
    c.rows_since = 0;
    c.requests = 0;
    c.answered = 0;
    c.near_boundary = 0;
    c.guarded = 0;
    c.limited = 0;
    c.auth_failed = 0;
    c.since_ms = None;
    f
}
