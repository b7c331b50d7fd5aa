//! Slows down credential guessing: after `free_failures` consecutive failures for one key (a
//! user name or a client address), each further attempt must wait twice as long as the last,
//! up to `max_delay`. A success clears the key. Time is passed in, so the policy is testable
//! without sleeping.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct BackoffPolicy {
    pub free_failures: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Entries untouched this long are forgotten.
    pub forget_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            free_failures: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(60 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Failure counts per key. Bounded: beyond `capacity` keys the stalest are dropped.
#[derive(Debug)]
pub struct FailureTracker {
    policy: BackoffPolicy,
    records: HashMap<String, Record>,
    capacity: usize,
}

impl FailureTracker {
    pub fn new(policy: BackoffPolicy, capacity: usize) -> Self {
        Self {
            policy,
            records: HashMap::new(),
            capacity: capacity.max(16),
        }
    }

    /// How long `key` must still wait before it may try again, if it is locked out.
    pub fn locked_for(&self, key: &str, now: Instant) -> Option<Duration> {
        let until = self.records.get(key)?.locked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a failure; returns the lockout it starts, if any.
    pub fn fail(&mut self, key: &str, now: Instant) -> Option<Duration> {
        if self.records.len() >= self.capacity && !self.records.contains_key(key) {
            self.evict(now);
        }
        let policy = self.policy;
        let rec = self.records.entry(key.to_owned()).or_insert(Record {
            failures: 0,
            last: now,
            locked_until: None,
        });
        if now.duration_since(rec.last) > policy.forget_after {
            rec.failures = 0;
        }
        rec.failures = rec.failures.saturating_add(1);
        rec.last = now;
        let over = rec.failures.checked_sub(policy.free_failures)?;
        let delay = policy
            .base_delay
            .checked_mul(1u32.checked_shl(over.min(30)).unwrap_or(u32::MAX))
            .unwrap_or(policy.max_delay)
            .min(policy.max_delay);
        rec.locked_until = Some(now + delay);
        Some(delay)
    }

    pub fn succeed(&mut self, key: &str) {
        self.records.remove(key);
    }

    fn evict(&mut self, now: Instant) {
        let forget = self.policy.forget_after;
        self.records
            .retain(|_, r| now.duration_since(r.last) <= forget && r.locked_until.is_some());
        if self.records.len() >= self.capacity {
            // Still full of live lockouts: drop the oldest half.
            let mut ages: Vec<Instant> = self.records.values().map(|r| r.last).collect();
            ages.sort();
            let cut = ages[ages.len() / 2];
            self.records.retain(|_, r| r.last > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_doubles_after_the_free_failures_and_success_clears_it() {
        let mut t = FailureTracker::new(BackoffPolicy::default(), 100);
        let now = Instant::now();
        for _ in 0..4 {
            assert_eq!(t.fail("alice", now), None);
        }
        assert_eq!(t.fail("alice", now), Some(Duration::from_secs(1)));
        assert_eq!(t.fail("alice", now), Some(Duration::from_secs(2)));
        assert_eq!(t.fail("alice", now), Some(Duration::from_secs(4)));
        assert_eq!(t.locked_for("alice", now), Some(Duration::from_secs(4)));
        assert_eq!(t.locked_for("alice", now + Duration::from_secs(5)), None);
        assert_eq!(t.locked_for("bob", now), None);
        t.succeed("alice");
        assert_eq!(t.locked_for("alice", now), None);
    }

    #[test]
    fn delay_is_capped() {
        let mut t = FailureTracker::new(BackoffPolicy::default(), 100);
        let now = Instant::now();
        let mut last = None;
        for _ in 0..200 {
            last = t.fail("k", now);
        }
        assert_eq!(last, Some(Duration::from_secs(15 * 60)));
    }

    #[test]
    fn capacity_is_bounded() {
        let mut t = FailureTracker::new(BackoffPolicy::default(), 16);
        let now = Instant::now();
        for i in 0..1000 {
            t.fail(&format!("k{i}"), now + Duration::from_millis(i));
        }
        assert!(t.records.len() <= 16);
    }
}
