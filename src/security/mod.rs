//! Everything cryptographic at the edge: secrets at rest, operator tokens,
//! merchant request signing. SECURITY.md is the contract.

pub mod data_dir;
pub mod egress;
pub mod secrets;
pub mod signing;
pub mod tokens;

/// `n` random bytes from the OS.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the OS random source is available");
    buf
}

/// A random URL-safe token of `n` random bytes, base64url without padding.
pub fn random_token<const N: usize>() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<N>())
}

/// Constant-time equality of two byte strings.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
