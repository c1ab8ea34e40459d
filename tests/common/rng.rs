//! The seeded generator of the random-sequence tests (the model tests, the
//! crash campaign): xorshift64*, small and reproducible from its seed.

/// xorshift64*: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is taken as 1: xorshift never leaves 0).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// The number in the env var `name`, else `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The seed in the env var `name` (to repeat a run), else a new one from the
/// time; printed either way so a failing run can be repeated.
pub fn seed_from_env(name: &str) -> u64 {
    let fresh = || {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        (nanos as u64) ^ u64::from(std::process::id())
    };
    let seed = std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or_else(fresh);
    eprintln!("seed {seed} ({name}={seed} repeats this run)");
    seed
}
