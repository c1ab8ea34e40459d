//! Token buckets (SECURITY.md §Limits): `rate` tokens per second, up to
//! `burst`. Over the limit → 429 with `Retry-After`. Buckets live in a
//! bounded LRU (a key evicted simply starts with a full bucket).
//!
//! Two limiters use this: per merchant for authenticated `/v1`, and per
//! client address ([`IpKey`]) for everything else — admin, Polyflow,
//! callbacks, public routes and requests that fail authentication (issue 18
//! M5), so unauthenticated work is bounded too.

use std::{
    hash::Hash,
    net::{IpAddr, Ipv6Addr},
    num::NonZeroUsize,
    time::Instant,
};

use parking_lot::Mutex;
use pelago_storage::MerchantId;

/// A client address as rate-limited: an IPv4 address, or an IPv6 /64 (one
/// host usually holds a whole /64, so single IPv6 addresses are free to get).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpKey(IpAddr);

impl IpKey {
    pub fn of(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(_) => IpKey(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    IpKey(IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)))
                }
            },
        }
    }
}

const MAX_BUCKETS: usize = 100_000;

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

pub struct RateLimiter<K = MerchantId> {
    rate_per_sec: f64,
    burst: f64,
    buckets: Mutex<lru::LruCache<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(rate_per_sec: u32, burst: u32) -> RateLimiter<K> {
        RateLimiter {
            rate_per_sec: f64::from(rate_per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(lru::LruCache::new(NonZeroUsize::new(MAX_BUCKETS).expect("non-zero"))),
        }
    }

    /// Takes one token, or says how many whole seconds until one is there.
    pub fn check(&self, key: &K) -> Result<(), u64> {
        self.with_bucket(key, true)
    }

    /// Whether `key` is out of tokens now (how many seconds until one is
    /// there), without taking one: lets a caller refuse before doing work
    /// that is charged only if it fails (authentication).
    pub fn exhausted(&self, key: &K) -> Result<(), u64> {
        self.with_bucket(key, false)
    }

    fn with_bucket(&self, key: &K, take: bool) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let bucket = buckets.get_or_insert_mut(key.clone(), || Bucket { tokens: self.burst, refilled: now });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate_per_sec).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            if take {
                bucket.tokens -= 1.0;
            }
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
        let limiter = RateLimiter::<MerchantId>::new(1, 3);
        let m = MerchantId::generate();
        for _ in 0..3 {
            assert!(limiter.check(&m).is_ok());
        }
        assert_eq!(limiter.check(&m), Err(1));
        assert!(limiter.check(&MerchantId::generate()).is_ok(), "buckets are per merchant");
    }

    #[test]
    fn exhausted_peeks_without_taking() {
        let limiter = RateLimiter::<IpKey>::new(1, 2);
        let ip = IpKey::of("192.0.2.7".parse().unwrap());
        assert!(limiter.exhausted(&ip).is_ok());
        assert!(limiter.exhausted(&ip).is_ok());
        assert!(limiter.check(&ip).is_ok());
        assert!(limiter.check(&ip).is_ok());
        assert_eq!(limiter.exhausted(&ip), Err(1));
    }

    #[test]
    fn ipv6_hosts_of_one_slash_64_share_a_bucket() {
        let a = IpKey::of("2001:db8:1:2::1".parse().unwrap());
        let b = IpKey::of("2001:db8:1:2:ffff::9".parse().unwrap());
        let c = IpKey::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(IpKey::of("::ffff:192.0.2.1".parse().unwrap()), IpKey::of("192.0.2.1".parse().unwrap()));
    }
}
