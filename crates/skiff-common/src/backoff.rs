//! The one backoff type: exponential, with jitter (or exact, where Kubernetes' own schedule is
//! part of the contract, as for CrashLoopBackOff), a cap and a reset.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    jitter: bool,
}

impl Backoff {
    /// Doubling from `initial` up to `max`, each delay with ±20% jitter so that many clients
    /// retrying together spread out.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            current: initial,
            jitter: true,
        }
    }

    /// Doubling from `initial` up to `max`, exactly (10 s, 20 s, 40 s, ...).
    pub fn exact(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            current: initial,
            jitter: false,
        }
    }

    /// The next delay; the step then doubles up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        if self.jitter {
            base.mul_f64(rand::rng().random_range(0.8..1.2))
        } else {
            base
        }
    }

    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::exact(Duration::from_secs(10), Duration::from_secs(300));
        let delays: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(10));
    }

    #[test]
    fn jittered_delays_stay_within_twenty_percent() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d = b.next_delay();
        assert!(
            d >= Duration::from_millis(80) && d <= Duration::from_millis(120),
            "{d:?}"
        );
    }
}
