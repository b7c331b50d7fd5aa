//! A canary's recent answers, judged against its deployment's rollback rule.

use std::collections::VecDeque;

use crate::deployment::RollbackRule;

#[derive(Debug, Default)]
pub struct Health {
    /// (failed, latency in ms) of the last `window` requests.
    recent: VecDeque<(bool, f64)>,
    total: u64,
}

impl Health {
    /// Records one answer; `Some(reason)` when the rule now calls for a rollback.
    pub fn record(&mut self, failed: bool, latency_ms: f64, rule: &RollbackRule) -> Option<String> {
        self.total += 1;
        self.recent.push_back((failed, latency_ms));
        while self.recent.len() as u64 > rule.window {
            self.recent.pop_front();
        }
        if self.total < rule.min_requests.max(1) {
            return None;
        }
        let n = self.recent.len() as f64;
        if let Some(bound) = rule.max_error_rate {
            let rate = self.recent.iter().filter(|(f, _)| *f).count() as f64 / n;
            if rate > bound {
                return Some(format!(
                    "error rate {:.1}% over the last {n} requests is above the bound of {:.1}%",
                    rate * 100.0,
                    bound * 100.0
                ));
            }
        }
        if let Some(bound) = rule.max_p99_ms {
            let mut l: Vec<f64> = self.recent.iter().map(|(_, l)| *l).collect();
            l.sort_by(f64::total_cmp);
            let i = ((0.99 * n).ceil() as usize).clamp(1, l.len()) - 1;
            if l[i] > bound {
                return Some(format!(
                    "p99 latency {:.2} ms over the last {n} requests is above the bound of {bound} ms",
                    l[i]
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaches_only_after_enough_requests() {
        let rule = RollbackRule {
            max_error_rate: Some(0.1),
            max_p99_ms: Some(50.0),
            min_requests: 10,
            window: 20,
        };
        let mut h = Health::default();
        for _ in 0..9 {
            assert_eq!(h.record(true, 1.0, &rule), None);
        }
        let why = h.record(true, 1.0, &rule).unwrap();
        assert!(why.contains("error rate 100.0%"), "{why}");

        let mut h = Health::default();
        for _ in 0..100 {
            assert_eq!(h.record(false, 1.0, &rule), None);
        }
        // One slow answer in 20 puts the 99th percentile above the bound.
        let why = h.record(false, 80.0, &rule).unwrap();
        assert!(why.contains("p99 latency 80.00 ms"), "{why}");
        // Errors below the bound pass: 1 in 20 is 5%.
        let mut h = Health::default();
        for i in 0..100 {
            assert_eq!(h.record(i % 20 == 0, 1.0, &rule), None);
        }
    }
}
