//! Cutting one model version's stream of observations into windows: tumbling (each
//! observation in one window) or sliding (a window every `step`), sized by rows or by time.
//! A window holds whole observations, and the buffer never holds more than one window's
//! worth: memory is bounded by the window size, not by the traffic seen.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{MonitorError, MonitorResult};
use crate::observation::Observation;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum WindowSpec {
    /// A window every `step` rows over the last `size` rows (tumbling when equal).
    Rows { size: usize, step: usize },
    /// A window every `step_ms` over the last `size_ms` of event time (tumbling when
    /// equal), aligned to multiples of `step_ms` since the epoch.
    Time { size_ms: i64, step_ms: i64 },
}

impl WindowSpec {
    pub fn check(&self) -> MonitorResult<()> {
        let ok = match *self {
            WindowSpec::Rows { size, step } => size > 0 && step > 0 && step <= size,
            WindowSpec::Time { size_ms, step_ms } => {
                size_ms > 0 && step_ms > 0 && step_ms <= size_ms
            }
        };
        if ok {
            Ok(())
        } else {
            Err(MonitorError::invalid(format!(
                "window {self:?}: the size and the step must be positive and the step at most the size"
            )))
        }
    }

    pub fn tumbling(&self) -> bool {
        match *self {
            WindowSpec::Rows { size, step } => size == step,
            WindowSpec::Time { size_ms, step_ms } => size_ms == step_ms,
        }
    }
}

/// A closed window.
#[derive(Debug, Clone)]
pub struct Window {
    /// Event time of the first observation (row windows) or the window's start (time
    /// windows), and the end (exclusive for time windows).
    pub start_ms: i64,
    pub end_ms: i64,
    pub observations: Vec<Arc<Observation>>,
}

impl Window {
    pub fn rows(&self) -> usize {
        self.observations.iter().map(|o| o.rows).sum()
    }
}

/// Serializable, so that a worker's open windows survive it (the monitor's cursor state).
#[derive(Debug, Serialize, Deserialize)]
pub struct Windower {
    spec: WindowSpec,
    buf: VecDeque<Arc<Observation>>,
    rows: usize,
    rows_since: usize,
    /// Time windows: the end of the next window to close.
    next_end: Option<i64>,
}

impl Windower {
    pub fn new(spec: WindowSpec) -> MonitorResult<Self> {
        spec.check()?;
        Ok(Self {
            spec,
            buf: VecDeque::new(),
            rows: 0,
            rows_since: 0,
            next_end: None,
        })
    }

    pub fn spec(&self) -> WindowSpec {
        self.spec
    }

    /// Observations held now.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Adds an observation; returns the windows it closed, oldest first. Observations are
    /// expected in event-time order; one older than a closed time window joins the current
    /// one rather than reopening the past.
    pub fn push(&mut self, o: Observation) -> Vec<Window> {
        match self.spec {
            WindowSpec::Rows { size, step } => self.push_rows(Arc::new(o), size, step),
            WindowSpec::Time { size_ms, step_ms } => {
                let mut out = self.advance(o.time_ms, size_ms, step_ms);
                self.buf.push_back(Arc::new(o));
                out.retain(|w| !w.observations.is_empty());
                out
            }
        }
    }

    /// Closes the time windows that ended by `now_ms` (traffic may stop; time does not).
    /// Row windows close only with rows.
    pub fn flush(&mut self, now_ms: i64) -> Vec<Window> {
        match self.spec {
            WindowSpec::Rows { .. } => Vec::new(),
            WindowSpec::Time { size_ms, step_ms } => {
                let mut out = self.advance(now_ms, size_ms, step_ms);
                out.retain(|w| !w.observations.is_empty());
                out
            }
        }
    }

    fn push_rows(&mut self, o: Arc<Observation>, size: usize, step: usize) -> Vec<Window> {
        self.rows += o.rows;
        self.rows_since += o.rows;
        self.buf.push_back(o);
        // Keep the fewest newest observations that still make `size` rows.
        while let Some(front) = self.buf.front() {
            if self.rows - front.rows >= size {
                self.rows -= front.rows;
                self.buf.pop_front();
            } else {
                break;
            }
        }
        if self.rows < size || self.rows_since < step {
            return Vec::new();
        }
        self.rows_since = 0;
        let observations: Vec<Arc<Observation>> = self.buf.iter().cloned().collect();
        let window = Window {
            start_ms: observations.first().map_or(0, |o| o.time_ms),
            end_ms: observations.last().map_or(0, |o| o.time_ms),
            observations,
        };
        if size == step {
            self.buf.clear();
            self.rows = 0;
        }
        vec![window]
    }

    fn advance(&mut self, now_ms: i64, size_ms: i64, step_ms: i64) -> Vec<Window> {
        let aligned_after = |t: i64| (t.div_euclid(step_ms) + 1).saturating_mul(step_ms);
        let mut next_end = match self.next_end {
            Some(e) => e,
            None => {
                self.next_end = Some(aligned_after(now_ms));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        while now_ms >= next_end {
            let start = next_end - size_ms;
            let observations: Vec<Arc<Observation>> = self
                .buf
                .iter()
                .filter(|o| o.time_ms < next_end)
                .cloned()
                .collect();
            out.push(Window {
                start_ms: start,
                end_ms: next_end,
                observations,
            });
            next_end += step_ms;
            // What no later window will include goes.
            let keep_from = next_end - size_ms;
            while self.buf.front().is_some_and(|o| o.time_ms < keep_from) {
                self.buf.pop_front();
            }
            // A long silence: jump to the window `now_ms` falls in.
            if self.buf.is_empty() && now_ms >= next_end {
                next_end = aligned_after(now_ms);
            }
        }
        self.next_end = Some(next_end);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::Outcome;

    fn obs(time_ms: i64, rows: usize) -> Observation {
        Observation {
            time_ms,
            actor: "a".into(),
            rows,
            features: Default::default(),
            predictions: Vec::new(),
            confidence: Vec::new(),
            probabilities: Vec::new(),
            outcome: Outcome {
                status: 200,
                latency_us: 1,
                route: "stable".into(),
                decision: "ok".into(),
            },
        }
    }

    #[test]
    fn tumbling_rows_put_each_observation_in_one_window() {
        let mut w = Windower::new(WindowSpec::Rows { size: 10, step: 10 }).unwrap();
        let mut closed = Vec::new();
        for t in 0..35 {
            closed.extend(w.push(obs(t, 1)));
        }
        assert_eq!(closed.len(), 3);
        assert!(closed.iter().all(|c| c.rows() == 10));
        assert_eq!(closed[1].start_ms, 10);
        assert_eq!(w.buffered(), 5);
    }

    #[test]
    fn sliding_rows_overlap_and_stay_bounded() {
        let mut w = Windower::new(WindowSpec::Rows { size: 10, step: 5 }).unwrap();
        let mut closed = Vec::new();
        for t in 0..1000 {
            closed.extend(w.push(obs(t, 1)));
            assert!(w.buffered() <= 10);
        }
        assert_eq!(closed[0].start_ms, 0);
        assert_eq!(closed[1].start_ms, 5);
        assert!(closed.iter().all(|c| c.rows() == 10));
        assert_eq!(closed.len(), 199);
    }

    #[test]
    fn time_windows_close_on_later_events_and_on_flush() {
        let mut w = Windower::new(WindowSpec::Time {
            size_ms: 1000,
            step_ms: 1000,
        })
        .unwrap();
        assert!(w.push(obs(100, 1)).is_empty());
        assert!(w.push(obs(900, 1)).is_empty());
        let c = w.push(obs(1500, 1));
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].start_ms, c[0].end_ms, c[0].observations.len()),
            (0, 1000, 2)
        );
        // Silence until 10 s: one window with the 1.5 s event, empty ones are not reported.
        let c = w.flush(10_000);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].observations[0].time_ms, 1500);
        assert_eq!(w.buffered(), 0);
    }

    #[test]
    fn sliding_time_windows_overlap() {
        let mut w = Windower::new(WindowSpec::Time {
            size_ms: 1000,
            step_ms: 500,
        })
        .unwrap();
        let mut closed = Vec::new();
        for t in (0..3000).step_by(100) {
            closed.extend(w.push(obs(t, 1)));
        }
        // Windows end at 500, 1000, 1500, 2000, 2500: the first holds [−500, 500).
        assert_eq!(closed.len(), 5);
        assert_eq!(closed[0].observations.len(), 5);
        assert!(closed[1..].iter().all(|c| c.observations.len() == 10));
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(Windower::new(WindowSpec::Rows { size: 0, step: 0 }).is_err());
        assert!(Windower::new(WindowSpec::Rows { size: 5, step: 6 }).is_err());
        assert!(
            Windower::new(WindowSpec::Time {
                size_ms: 10,
                step_ms: -1
            })
            .is_err()
        );
    }
}
