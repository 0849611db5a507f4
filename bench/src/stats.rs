//! Latency percentiles.

use std::time::Duration;

pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn new(mut v: Vec<Duration>) -> Self {
        v.sort();
        Latencies(v)
    }

    /// The `q` quantile in milliseconds (0 when empty).
    pub fn ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let idx = ((self.0.len() as f64 - 1.0) * q).round() as usize;
        self.0[idx.min(self.0.len() - 1)].as_secs_f64() * 1000.0
    }
}
