//! A deployment's request limits for its model: a sustained rate for all callers together,
//! one per caller, and how many requests may be in progress at once. Over a limit, a request
//! is refused at once (429) rather than queued, so an overloaded model sheds load instead of
//! building latency.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::deployment::ServeLimits;
use crate::error::ServeError;

pub struct ModelLimits {
    rate: Option<DefaultDirectRateLimiter>,
    per_caller: Option<DefaultKeyedRateLimiter<String>>,
    in_flight: Option<(Arc<Semaphore>, u32)>,
}

/// Held while a request is in progress; dropping it frees its place.
pub struct Admitted(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

fn quota(rate: Option<u32>, burst: Option<u32>) -> Option<Quota> {
    let rate = NonZeroU32::new(rate?)?;
    let burst = burst.and_then(NonZeroU32::new).unwrap_or(rate).max(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

impl ModelLimits {
    pub fn new(l: &ServeLimits) -> Self {
        Self {
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
        let l = ModelLimits::new(&ServeLimits {
            rate: None,
            rate_per_caller: Some(1),
            burst: Some(2),
            concurrency: Some(2),
        });
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

        let l = ModelLimits::new(&ServeLimits {
            rate: Some(1),
            ..ServeLimits::default()
        });
        assert!(l.admit("m", "a").is_ok());
        let e = l.admit("m", "b").err().unwrap().to_string();
        assert!(e.contains("model 'm' is over"), "{e}");
        assert!(
            ModelLimits::new(&ServeLimits::default())
                .admit("m", "a")
                .is_ok()
        );
    }
}
