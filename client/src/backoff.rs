//! Exponential backoff with jitter, for loops that retry against the API
//! server (the reflector's relists and re-watches, leader election).
//!
//! Jitter spreads the retries of many components that lost the API server
//! at the same moment, so they do not all come back in one burst.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `initial`, doubles per failure up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The wait before the next attempt: the current step with up to 20 %
    /// jitter either way; then the step doubles.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        step.mul_f64(0.8 + 0.4 * fastrand::f64())
    }

    /// After a success: back to the initial step.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let steps: Vec<_> = (0..4).map(|_| b.next_delay()).collect();
        let bounds = [(80, 120), (160, 240), (280, 420), (280, 420)];
        for (d, (lo, hi)) in steps.iter().zip(bounds) {
            assert!(
                *d >= Duration::from_millis(lo) && *d <= Duration::from_millis(hi),
                "{steps:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(120));
    }
}
