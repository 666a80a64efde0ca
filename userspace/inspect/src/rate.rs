//! Token buckets for per-connection message and byte rates.

use std::time::Instant;

/// Capacity `capacity` tokens, refilled at `rate` tokens per second, starting full.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    pub fn new(rate: u64, capacity: u64) -> TokenBucket {
        TokenBucket {
            capacity: capacity as f64,
            rate: rate as f64,
            tokens: capacity as f64,
            last: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        }
        self.last = Some(now);
    }

    /// Whether `amount` tokens are available at `now` (nothing is taken).
    pub fn allows(&mut self, now: Instant, amount: u64) -> bool {
        self.refill(now);
        self.tokens >= amount as f64
    }

    pub fn take(&mut self, amount: u64) {
        self.tokens = (self.tokens - amount as f64).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::TokenBucket;
    use std::time::{Duration, Instant};

    #[test]
    fn burst_then_steady_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 3);
        for _ in 0..3 {
            assert!(bucket.allows(start, 1));
            bucket.take(1);
        }
        assert!(!bucket.allows(start, 1), "burst of 3 is the capacity");
        assert!(!bucket.allows(start + Duration::from_millis(50), 1));
        assert!(
            bucket.allows(start + Duration::from_millis(100), 1),
            "10/s refills one per 100 ms"
        );
        bucket.take(1);
        assert!(bucket.allows(start + Duration::from_secs(60), 3));
        assert!(
            !bucket.allows(start + Duration::from_secs(61), 4),
            "never above capacity"
        );
    }

    #[test]
    fn clock_going_backwards_is_harmless() {
        let start = Instant::now() + Duration::from_secs(5);
        let mut bucket = TokenBucket::new(1, 1);
        assert!(bucket.allows(start, 1));
        bucket.take(1);
        assert!(!bucket.allows(start - Duration::from_secs(1), 1));
    }
}
