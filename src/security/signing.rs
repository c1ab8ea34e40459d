//! Merchant request signing (SECURITY.md §Merchant request signing).
//!
//! ```text
//! string-to-sign = "v1" "\n" key_id "\n" timestamp "\n" nonce "\n" METHOD "\n"
//!                  path "\n" query "\n" idempotency_key "\n" hex(sha256(body))
//! X-Pelago-Signature: v1=<lowercase hex HMAC-SHA256(secret as UTF-8, string-to-sign)>
//! ```
//! This module is the signer newcomers and the CLI use, and the verifier the
//! front door uses; both build the string-to-sign with the same function.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub const HEADER_KEY_ID: &str = "x-pelago-key-id";
pub const HEADER_TIMESTAMP: &str = "x-pelago-timestamp";
pub const HEADER_NONCE: &str = "x-pelago-nonce";
pub const HEADER_SIGNATURE: &str = "x-pelago-signature";

/// Requests older or newer than this are refused.
pub const WINDOW_SECS: i64 = 300;
/// A nonce is remembered per key at least this long from its arrival, and
/// until its request has left the window (`http::merchant_auth::nonce_expiry_ms`).
pub const NONCE_TTL_SECS: i64 = 600;

/// What is signed, besides the key id, timestamp and nonce.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub idempotency_key: &'a str,
    pub body: &'a [u8],
}

pub fn string_to_sign(key_id: &str, timestamp: &str, nonce: &str, req: &SignedRequest<'_>) -> String {
    let body_hash = hex::encode(Sha256::digest(req.body));
    format!(
        "v1\n{key_id}\n{timestamp}\n{nonce}\n{}\n{}\n{}\n{}\n{body_hash}",
        req.method.to_ascii_uppercase(),
        req.path,
        req.query,
        req.idempotency_key
    )
}

fn mac(secret: &str, message: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    mac
}

/// The `X-Pelago-Signature` value.
pub fn sign(secret: &str, key_id: &str, timestamp: &str, nonce: &str, req: &SignedRequest<'_>) -> String {
    let tag = mac(secret, &string_to_sign(key_id, timestamp, nonce, req)).finalize().into_bytes();
    format!("v1={}", hex::encode(tag))
}

/// Checks a presented signature in constant time.
pub fn verify(
    secret: &str,
    key_id: &str,
    timestamp: &str,
    nonce: &str,
    req: &SignedRequest<'_>,
    presented: &str,
) -> bool {
    let Some(hex_sig) = presented.strip_prefix("v1=") else { return false };
    let Ok(bytes) = hex::decode(hex_sig) else { return false };
    if hex_sig.bytes().any(|b| b.is_ascii_uppercase()) {
        return false;
    }
    mac(secret, &string_to_sign(key_id, timestamp, nonce, req)).verify_slice(&bytes).is_ok()
}

/// The four signing headers, checked for shape only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    pub key_id: String,
    pub timestamp: String,
    pub timestamp_secs: i64,
    pub nonce: String,
    pub signature: String,
}

/// Why a request's signing headers are unusable. Says which check failed,
/// never what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderProblem {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("malformed header {0}")]
    Malformed(&'static str),
}

/// Reads and shape-checks the signing headers via `get` (a header lookup).
pub fn parse_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<SignatureHeaders, HeaderProblem> {
    let field = |name: &'static str| -> Result<&'a str, HeaderProblem> {
        let v = get(name).ok_or(HeaderProblem::Missing(name))?;
        if v.contains(['\n', '\r']) || v.is_empty() {
            return Err(HeaderProblem::Malformed(name));
        }
        Ok(v)
    };
    let key_id = field(HEADER_KEY_ID)?;
    let timestamp = field(HEADER_TIMESTAMP)?;
    let nonce = field(HEADER_NONCE)?;
    let signature = field(HEADER_SIGNATURE)?;
    if !key_id.starts_with("key_") || key_id.len() > 64 {
        return Err(HeaderProblem::Malformed(HEADER_KEY_ID));
    }
    let timestamp_secs: i64 = if timestamp.len() <= 12 && timestamp.bytes().all(|b| b.is_ascii_digit()) {
        timestamp.parse().map_err(|_| HeaderProblem::Malformed(HEADER_TIMESTAMP))?
    } else {
        return Err(HeaderProblem::Malformed(HEADER_TIMESTAMP));
    };
    let nonce_ok = (16..=64).contains(&nonce.len())
        && nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !nonce_ok {
        return Err(HeaderProblem::Malformed(HEADER_NONCE));
    }
    if !signature.starts_with("v1=") || signature.len() != 67 {
        return Err(HeaderProblem::Malformed(HEADER_SIGNATURE));
    }
    Ok(SignatureHeaders {
        key_id: key_id.to_owned(),
        timestamp: timestamp.to_owned(),
        timestamp_secs,
        nonce: nonce.to_owned(),
        signature: signature.to_owned(),
    })
}

#[cfg(test)]
mod tests;
