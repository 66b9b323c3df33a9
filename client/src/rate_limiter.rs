//! How long a failed item waits before it is tried again.
//!
//! Two limits, the longer wins, as client-go's default controller rate
//! limiter does it: per item, an exponential backoff (5 ms, 10 ms, 20 ms …
//! up to 1000 s) so that one broken object does not spin a worker; and
//! overall, a token bucket (10 per second, bursts of 100) so that a whole
//! class of failures does not flood the API server.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens a second, at most `burst` saved up. A
/// caller that finds it empty reserves a future token and is told how long
/// to wait for it.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: u32) -> TokenBucket {
        TokenBucket {
            rate,
            burst: f64::from(burst),
            state: Mutex::new((f64::from(burst), Instant::now())),
        }
    }

    /// Takes a token if one is there now; never goes into debt.
    pub fn try_acquire(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (tokens, at) = *state;
        let refilled = (tokens + now.saturating_duration_since(at).as_secs_f64() * self.rate).min(self.burst);
        if refilled >= 1.0 {
            *state = (refilled - 1.0, now);
            true
        } else {
            *state = (refilled, now);
            false
        }
    }

    /// Takes one token; how long the caller must wait before using it.
    pub fn reserve(&self) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (tokens, at) = *state;
        let refilled = (tokens + now.saturating_duration_since(at).as_secs_f64() * self.rate).min(self.burst);
        let left = refilled - 1.0;
        *state = (left, now);
        if left >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-left / self.rate)
        }
    }
}

/// Per-item exponential backoff combined with an overall token bucket.
#[derive(Debug)]
pub struct RateLimiter<T> {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<T, u32>>,
    bucket: TokenBucket,
}

impl<T: Eq + Hash + Clone> Default for RateLimiter<T> {
    fn default() -> Self {
        RateLimiter::new(Duration::from_millis(5), Duration::from_secs(1000), 10.0, 100)
    }
}

impl<T: Eq + Hash + Clone> RateLimiter<T> {
    pub fn new(base: Duration, max: Duration, rate: f64, burst: u32) -> RateLimiter<T> {
        RateLimiter {
            base,
            max,
            failures: Mutex::new(HashMap::new()),
            bucket: TokenBucket::new(rate, burst),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<T, u32>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The wait before `item` is retried; counts a failure.
    pub fn when(&self, item: &T) -> Duration {
        let exponent = {
            let mut failures = self.failures();
            let n = failures.entry(item.clone()).or_insert(0);
            let exponent = *n;
            *n = n.saturating_add(1);
            exponent
        };
        let backoff = self
            .base
            .saturating_mul(2u32.saturating_pow(exponent.min(31)))
            .min(self.max);
        backoff.max(self.bucket.reserve())
    }

    /// Forgets the item's failures (it succeeded, or was given up on).
    pub fn forget(&self, item: &T) {
        self.failures().remove(item);
    }

    /// How many times the item has failed since it was last forgotten.
    pub fn num_requeues(&self, item: &T) -> u32 {
        self.failures().get(item).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_item_backoff_doubles_and_forget_resets() {
        let limiter = RateLimiter::new(Duration::from_millis(5), Duration::from_millis(30), 1000.0, 1000);
        let waits: Vec<_> = (0..5).map(|_| limiter.when(&"a").as_millis()).collect();
        assert_eq!(waits, [5, 10, 20, 30, 30]);
        assert_eq!(
            limiter.when(&"b"),
            Duration::from_millis(5),
            "items back off independently"
        );
        assert_eq!(limiter.num_requeues(&"a"), 5);
        limiter.forget(&"a");
        assert_eq!(limiter.num_requeues(&"a"), 0);
        assert_eq!(limiter.when(&"a"), Duration::from_millis(5));
    }

    #[test]
    fn the_bucket_limits_the_overall_rate() {
        let bucket = TokenBucket::new(10.0, 3);
        let waits: Vec<_> = (0..5).map(|_| bucket.reserve()).collect();
        assert!(waits[..3].iter().all(|w| w.is_zero()), "{waits:?}");
        // The fourth and fifth wait for tokens 100 ms and 200 ms away.
        assert!(
            waits[3] > Duration::from_millis(80) && waits[3] <= Duration::from_millis(100),
            "{waits:?}"
        );
        assert!(
            waits[4] > Duration::from_millis(180) && waits[4] <= Duration::from_millis(200),
            "{waits:?}"
        );
    }
}
