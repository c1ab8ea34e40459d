//! Per-merchant token buckets (SECURITY.md §Limits): `rate` tokens per second,
//! up to `burst`. Over the limit → 429 with `Retry-After`. Buckets live in a
//! bounded LRU (a merchant evicted simply starts with a full bucket).

use std::{num::NonZeroUsize, time::Instant};

use parking_lot::Mutex;
use pelago_storage::MerchantId;

const MAX_BUCKETS: usize = 100_000;

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

pub struct RateLimiter {
    rate_per_sec: f64,
    burst: f64,
    buckets: Mutex<lru::LruCache<MerchantId, Bucket>>,
}

impl RateLimiter {
    pub fn new(rate_per_sec: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate_per_sec: f64::from(rate_per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(lru::LruCache::new(NonZeroUsize::new(MAX_BUCKETS).expect("non-zero"))),
        }
    }

    /// Takes one token, or says how many whole seconds until one is there.
    pub fn check(&self, merchant: &MerchantId) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let bucket =
            buckets.get_or_insert_mut(merchant.clone(), || Bucket { tokens: self.burst, refilled: now });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate_per_sec).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / self.rate_per_sec).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuses_with_a_retry_after() {
        let limiter = RateLimiter::new(1, 3);
        let m = MerchantId::generate();
        for _ in 0..3 {
            assert!(limiter.check(&m).is_ok());
        }
        assert_eq!(limiter.check(&m), Err(1));
        assert!(limiter.check(&MerchantId::generate()).is_ok(), "buckets are per merchant");
    }
}
