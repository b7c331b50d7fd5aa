//! Request rate limits per client address and per principal (GCRA via `governor`). A refused
//! request gets `429` with `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Sustained requests per second and burst size; `None` turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl RateLimit {
    fn quota(self) -> Option<Quota> {
        let rate = NonZeroU32::new(self.per_second)?;
        let burst = NonZeroU32::new(self.burst.max(self.per_second))?;
        Some(Quota::per_second(rate).allow_burst(burst))
    }
}

pub struct RateLimits {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_principal: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(per_ip: Option<RateLimit>, per_principal: Option<RateLimit>) -> Self {
        Self {
            per_ip: per_ip.and_then(RateLimit::quota).map(RateLimiter::keyed),
            per_principal: per_principal
                .and_then(RateLimit::quota)
                .map(RateLimiter::keyed),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(wait)` if this address is over its limit.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Duration> {
        match &self.per_ip {
            Some(l) => l
                .check_key(&ip)
                .map_err(|n| n.wait_time_from(self.clock.now())),
            None => Ok(()),
        }
    }

    /// `Err(wait)` if this principal is over its limit.
    pub fn check_principal(&self, name: &str) -> Result<(), Duration> {
        match &self.per_principal {
            Some(l) => l
                .check_key(&name.to_owned())
                .map_err(|n| n.wait_time_from(self.clock.now())),
            None => Ok(()),
        }
    }

    /// Drops the state of keys that are back to a full burst (bounded memory).
    pub fn forget_idle(&self) {
        if let Some(l) = &self.per_ip {
            l.retain_recent();
        }
        if let Some(l) = &self.per_principal {
            l.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_with_a_wait() {
        let l = RateLimits::new(
            Some(RateLimit {
                per_second: 1,
                burst: 3,
            }),
            None,
        );
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check_ip(ip).is_ok());
        }
        let wait = l.check_ip(ip).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        // Another address is not affected; principals are unlimited here.
        assert!(l.check_ip("10.0.0.2".parse().unwrap()).is_ok());
        assert!(l.check_principal("alice").is_ok());
    }
}
