//! A deployment's request limits for its model: a sustained rate for all callers together,
//! one per caller, and how many requests may be in progress at once. Over a limit, a request
//! is refused at once (429) rather than queued, so an overloaded model sheds load instead of
//! building latency. Callers the deployment restricts are refused (blocked, 403) or held to
//! their own rate (throttled) before any other limit is counted.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use bastion_core::time;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::deployment::{Restriction, ServeLimits};
use crate::error::ServeError;

pub struct ModelLimits {
    rate: Option<DefaultDirectRateLimiter>,
    per_caller: Option<DefaultKeyedRateLimiter<String>>,
    in_flight: Option<(Arc<Semaphore>, u32)>,
    /// Restricted callers: the restriction, and the throttled ones' own limiter.
    restricted: HashMap<String, (Restriction, Option<DefaultDirectRateLimiter>)>,
}

/// Held while a request is in progress; dropping it frees its place.
pub struct Admitted(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

fn quota(rate: Option<u32>, burst: Option<u32>) -> Option<Quota> {
    let rate = NonZeroU32::new(rate?)?;
    let burst = burst.and_then(NonZeroU32::new).unwrap_or(rate).max(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

impl ModelLimits {
    pub fn new(
        l: &ServeLimits,
        restricted: &std::collections::BTreeMap<String, Restriction>,
    ) -> Self {
        Self {
            restricted: restricted
                .iter()
                .map(|(actor, r)| {
                    let limiter = quota(r.rate, r.rate).map(RateLimiter::direct);
                    (actor.clone(), (r.clone(), limiter))
                })
                .collect(),
            rate: quota(l.rate, l.burst).map(RateLimiter::direct),
            per_caller: quota(l.rate_per_caller, l.burst).map(RateLimiter::keyed),
            in_flight: l
                .concurrency
                .filter(|&n| n > 0)
                .map(|n| (Arc::new(Semaphore::new(n as usize)), n)),
        }
    }

    /// A place for one request from `caller` to `model`, or why there is none.
    pub fn admit(&self, model: &str, caller: &str) -> Result<Admitted, ServeError> {
        if let Some((r, limiter)) = self.restricted.get(caller)
            && r.in_force(time::now_ms())
        {
            match limiter {
                None => {
                    return Err(ServeError::Blocked(format!(
                        "'{caller}' is blocked on model '{model}': {}",
                        r.reason
                    )));
                }
                Some(l) if l.check().is_err() => {
                    return Err(ServeError::Limited(format!(
                        "'{caller}' is throttled on model '{model}' ({}): retry later",
                        r.reason
                    )));
                }
                Some(_) => {}
            }
        }
        if let Some(l) = &self.rate
            && l.check().is_err()
        {
            return Err(ServeError::Limited(format!(
                "model '{model}' is over its request rate limit; retry later"
            )));
        }
        if let Some(l) = &self.per_caller
            && l.check_key(&caller.to_owned()).is_err()
        {
            return Err(ServeError::Limited(format!(
                "'{caller}' is over its request rate limit for model '{model}'; retry later"
            )));
        }
        match &self.in_flight {
            None => Ok(Admitted(None)),
            Some((s, n)) => s.clone().try_acquire_owned().map(|p| Admitted(Some(p))).map_err(|_| {
                ServeError::Limited(format!(
                    "model '{model}' already has {n} requests in progress (its concurrency limit); retry later"
                ))
            }),
        }
    }

    /// Forgets callers back to a full burst (bounded memory).
    pub fn forget_idle(&self) {
        if let Some(l) = &self.per_caller {
            l.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_caller_and_concurrency_limits_refuse_with_reasons() {
        let l = ModelLimits::new(
            &ServeLimits {
                rate: None,
                rate_per_caller: Some(1),
                burst: Some(2),
                concurrency: Some(2),
            },
            &Default::default(),
        );
        let a = l.admit("m", "alice").unwrap();
        let b = l.admit("m", "bob").unwrap();
        // Two in progress: a third caller is refused, whatever its rate.
        let e = l.admit("m", "carol").err().unwrap().to_string();
        assert!(e.contains("2 requests in progress"), "{e}");
        drop(a);
        let _c = l.admit("m", "alice").unwrap();
        drop(b);
        // alice has used her burst of 2.
        let e = l.admit("m", "alice").err().unwrap().to_string();
        assert!(e.contains("'alice' is over"), "{e}");

        let l = ModelLimits::new(
            &ServeLimits {
                rate: Some(1),
                ..ServeLimits::default()
            },
            &Default::default(),
        );
        assert!(l.admit("m", "a").is_ok());
        let e = l.admit("m", "b").err().unwrap().to_string();
        assert!(e.contains("model 'm' is over"), "{e}");
        assert!(
            ModelLimits::new(&ServeLimits::default(), &Default::default())
                .admit("m", "a")
                .is_ok()
        );
    }

    #[test]
    fn restricted_callers_are_blocked_or_throttled_until_their_time_is_up() {
        let mut restricted = std::collections::BTreeMap::new();
        let r = |rate, until_ms| Restriction {
            rate,
            reason: "probing".into(),
            until_ms,
        };
        restricted.insert("mallory".to_owned(), r(None, None));
        restricted.insert("scraper".to_owned(), r(Some(1), None));
        restricted.insert("past".to_owned(), r(None, Some(1)));
        let l = ModelLimits::new(&ServeLimits::default(), &restricted);
        let e = l.admit("m", "mallory").err().unwrap();
        assert!(matches!(e, ServeError::Blocked(_)), "{e}");
        assert!(
            e.to_string().contains("blocked on model 'm': probing"),
            "{e}"
        );
        assert!(l.admit("m", "scraper").is_ok());
        let e = l.admit("m", "scraper").err().unwrap();
        assert!(matches!(e, ServeError::Limited(_)), "{e}");
        assert!(e.to_string().contains("throttled"), "{e}");
        // An expired restriction and an unrestricted caller pass.
        assert!(l.admit("m", "past").is_ok());
        for _ in 0..10 {
            assert!(l.admit("m", "alice").is_ok());
        }
    }
}
