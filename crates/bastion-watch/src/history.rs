//! What the worker keeps for people to look back at: a compact record of each closed window
//! (drift per feature, rates, latency) and, at most once a minute per model, its callers'
//! detector scores. The dashboard charts them; alerting never reads them.

use std::collections::HashMap;

use bastion_monitor::CallerSignals;
use bastion_monitor::signals::WindowReport;
use bastion_store::meta::{CALLERS, WINDOW, WindowRecord};
use serde_json::{Map, Value, json};

/// How often a model's caller scores are recorded.
pub const CALLERS_EVERY_MS: i64 = 60_000;
/// The callers kept per record: those with the highest extraction score.
pub const CALLERS_KEPT: usize = 20;

fn finite(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

/// One closed window, without the bins and the reference's details.
pub fn window(model: &str, version: &str, r: &WindowReport) -> WindowRecord {
    let mut features = Map::new();
    if let Some(d) = &r.drift {
        for c in &d.columns {
            features.insert(
                c.column.clone(),
                json!({
                    "test": c.test,
                    "score": finite(c.score),
                    "threshold": finite(c.threshold),
                    "pvalue": c.pvalue.map(finite),
                    "psi": finite(c.psi),
                    "drift": c.drift,
                }),
            );
        }
    }
    let prediction = r.prediction.as_ref().map(|c| {
        json!({ "test": c.test, "score": finite(c.score), "threshold": finite(c.threshold), "drift": c.drift })
    });
    WindowRecord {
        kind: WINDOW.into(),
        model_name: model.into(),
        version: version.into(),
        start_ms: r.start_ms,
        end_ms: r.end_ms,
        report: json!({
            "requests": r.requests,
            "rows": r.rows,
            "sampled_rows": r.sampled_rows,
            "features": features,
            "dataset_drift": r.drift.as_ref().map(|d| d.dataset_drift),
            "prediction": prediction,
            "missing_rate": finite(r.missing_rate),
            "out_of_range_rate": finite(r.out_of_range_rate),
            "error_rate": finite(r.error_rate),
            "rejected_rate": finite(r.rejected_rate),
            "flagged_rate": finite(r.flagged_rate),
            "latency_p50_ms": finite(r.latency_p50_ms),
            "latency_p99_ms": finite(r.latency_p99_ms),
        }),
    }
}

/// A caller's newest detector scores and when they were judged.
type Scored = (i64, Map<String, Value>);

/// The newest detector scores of each model's callers, recorded at most every
/// [`CALLERS_EVERY_MS`] of event time per model.
#[derive(Default)]
pub struct CallerScores {
    latest: HashMap<String, HashMap<String, Scored>>,
    recorded_ms: HashMap<String, i64>,
}

impl CallerScores {
    pub fn observe(&mut self, judged: &CallerSignals) {
        let mut signals = Map::new();
        for (k, v) in &judged.signals {
            if let bastion_policy::Value::Number(n) = v {
                signals.insert(k.clone(), finite(*n));
            }
        }
        self.latest
            .entry(judged.model.clone())
            .or_default()
            .insert(judged.actor.clone(), (judged.time_ms, signals));
    }

    /// Records for the models whose last record is old enough; those are then forgotten.
    pub fn take_due(&mut self, now_ms: i64) -> Vec<WindowRecord> {
        let due: Vec<String> = self
            .latest
            .keys()
            .filter(|m| {
                self.recorded_ms
                    .get(*m)
                    .is_none_or(|t| now_ms - t >= CALLERS_EVERY_MS)
            })
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for model in due {
            let Some(callers) = self.latest.remove(&model) else {
                continue;
            };
            let mut ranked: Vec<(String, Scored)> = callers.into_iter().collect();
            let score = |s: &Map<String, Value>| {
                s.get("extraction.score")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
            };
            ranked.sort_by(|a, b| score(&b.1.1).total_cmp(&score(&a.1.1)).then(a.0.cmp(&b.0)));
            let start = ranked.iter().map(|(_, (t, _))| *t).min().unwrap_or(now_ms);
            let end = ranked.iter().map(|(_, (t, _))| *t).max().unwrap_or(now_ms);
            let total = ranked.len();
            let kept: Vec<Value> = ranked
                .into_iter()
                .take(CALLERS_KEPT)
                .map(|(actor, (_, s))| json!({ "actor": actor, "signals": s }))
                .collect();
            self.recorded_ms.insert(model.clone(), now_ms);
            out.push(WindowRecord {
                kind: CALLERS.into(),
                model_name: model,
                version: String::new(),
                start_ms: start,
                end_ms: end,
                report: json!({ "callers": kept, "callers_seen": total }),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(actor: &str, score: f64, t: i64) -> CallerSignals {
        let mut signals = bastion_policy::Facts::new();
        signals.insert(
            "extraction.score".into(),
            bastion_policy::Value::Number(score),
        );
        signals.insert(
            "abuse.volume".into(),
            bastion_policy::Value::Number(f64::NAN),
        );
        CallerSignals {
            model: "m".into(),
            actor: actor.into(),
            time_ms: t,
            signals,
        }
    }

    #[test]
    fn caller_scores_are_ranked_and_recorded_at_most_once_a_minute() {
        let mut c = CallerScores::default();
        c.observe(&judged("a", 0.1, 10));
        c.observe(&judged("b", 0.9, 20));
        c.observe(&judged("a", 0.3, 30)); // the newest score of a caller stands
        let due = c.take_due(1_000);
        assert_eq!(due.len(), 1);
        let r = &due[0];
        assert_eq!((r.kind.as_str(), r.start_ms, r.end_ms), (CALLERS, 20, 30));
        let callers = r.report["callers"].as_array().unwrap();
        let order: Vec<&str> = callers.iter().filter_map(|c| c["actor"].as_str()).collect();
        assert_eq!(order, ["b", "a"], "highest extraction score first");
        assert_eq!(callers[1]["signals"]["extraction.score"], json!(0.3));
        assert_eq!(
            callers[0]["signals"]["abuse.volume"],
            Value::Null,
            "non-finite scores are null"
        );
        assert_eq!(r.report["callers_seen"], json!(2));
        // Within a minute of the last record nothing is due; after it, the new scores are.
        c.observe(&judged("c", 0.5, 40));
        assert!(c.take_due(1_000 + CALLERS_EVERY_MS - 1).is_empty());
        let due = c.take_due(1_000 + CALLERS_EVERY_MS);
        assert_eq!(due[0].report["callers_seen"], json!(1));
        assert!(
            c.take_due(i64::MAX).is_empty(),
            "nothing new, nothing recorded"
        );
    }
}
