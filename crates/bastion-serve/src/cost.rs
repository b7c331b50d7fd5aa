//! How long a model version takes to answer a request, as a running mean, so that quick
//! answers are computed on the runtime thread that received the request and slow ones on the
//! blocking pool. The hand-off to the pool and back costs two thread wake-ups per request,
//! which for a model that answers in tens of microseconds is most of its latency; a slow
//! model, or a large body, must not hold up a runtime thread that serves other connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Answers quicker than this (on average) run on the runtime thread.
const QUICK: Duration = Duration::from_micros(200);
/// Bodies larger than this always go to the blocking pool, whatever the model's mean.
const QUICK_BODY: usize = 16 << 10;
/// Not measured yet: treated as slow.
const UNKNOWN: u64 = u64::MAX;

#[derive(Debug)]
pub struct AnswerCost {
    /// Exponentially weighted mean in nanoseconds (weight 1/8 for each new answer).
    mean_ns: AtomicU64,
}

impl Default for AnswerCost {
    fn default() -> Self {
        Self {
            mean_ns: AtomicU64::new(UNKNOWN),
        }
    }
}

impl AnswerCost {
    /// Adds one answer's time. Concurrent updates may lose one of two samples, which a
    /// running mean can afford.
    pub fn record(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos())
            .unwrap_or(UNKNOWN - 1)
            .min(UNKNOWN - 1);
        let old = self.mean_ns.load(Ordering::Relaxed);
        let new = if old == UNKNOWN {
            ns
        } else {
            old - old / 8 + ns / 8
        };
        self.mean_ns.store(new, Ordering::Relaxed);
    }

    /// Whether a request with a body of `body_len` bytes is answered on the runtime thread.
    pub fn quick(&self, body_len: usize) -> bool {
        body_len <= QUICK_BODY && self.mean_ns.load(Ordering::Relaxed) <= QUICK.as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmeasured_models_and_large_bodies_go_to_the_pool() {
        let cost = AnswerCost::default();
        assert!(!cost.quick(100));
        cost.record(Duration::from_micros(40));
        assert!(cost.quick(100));
        assert!(!cost.quick(QUICK_BODY + 1));
    }

    #[test]
    fn a_model_that_slows_down_moves_to_the_pool_and_back() {
        let cost = AnswerCost::default();
        cost.record(Duration::from_micros(40));
        for _ in 0..8 {
            cost.record(Duration::from_millis(5));
        }
        assert!(!cost.quick(100));
        for _ in 0..40 {
            cost.record(Duration::from_micros(40));
        }
        assert!(cost.quick(100));
        // One pathological answer sends it to the pool at once, and nothing overflows.
        cost.record(Duration::MAX);
        assert!(!cost.quick(100));
    }
}
