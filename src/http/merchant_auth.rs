//! `/v1` request authentication, SECURITY.md §Merchant request signing, in
//! this order: headers well-formed → timestamp within ±300 s (real time) and
//! not before this process began serving → key known and not revoked →
//! signature over the raw bytes (constant time) → nonce unused with this key
//! (recorded only now, kept until its request can no longer pass the window:
//! see [`nonce_expiry_ms`]) → merchant not suspended (403). The second rule is
//! what keeps a nonce used across a restart, even after a crash.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method};
use pelago_actors::merchant::{ApiKeyRecord, MerchantRecord, MerchantStatus};
use pelago_storage::{Timestamp, Tree};

use super::{errors::ApiError, router::Caller, state::App};
use crate::security::signing::{self, NONCE_TTL_SECS, SignedRequest, WINDOW_SECS};

/// What authentication reads of a request, as it arrived (a merchant's
/// signature covers the method, path, query, `Idempotency-Key` and raw body).
#[derive(Clone, Copy)]
pub struct Presented<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
}

pub async fn verify_request(app: &Arc<App>, request: Presented<'_>) -> Result<Caller, ApiError> {
    let Presented { method, path, query, headers, body } = request;
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let h = signing::parse_headers(get).map_err(|p| ApiError::unauthenticated(p.to_string()))?;
    let idempotency_key = get("idempotency-key").unwrap_or("");
    if idempotency_key.contains(['\n', '\r']) {
        return Err(ApiError::unauthenticated("malformed header idempotency-key"));
    }
    let now = Timestamp::now_real();
    if (now.unix_seconds() - h.timestamp_secs).abs() > WINDOW_SECS {
        return Err(ApiError::unauthenticated("timestamp outside the allowed window"));
    }
    // A nonce reaches disk with the next group flush, not before its answer
    // (no fsync per signed read). "Used within 600 s, also across a restart"
    // (SECURITY.md) holds anyway: a request signed before this process began
    // serving is refused, so nothing answered before a crash replays after it.
    if h.timestamp_secs < app.signed_from_secs {
        return Err(ApiError::unauthenticated(
            "timestamp before the service started; sign the request again",
        ));
    }
    let key = app
        .store
        .get::<ApiKeyRecord>(h.key_id.as_bytes())?
        .filter(|k| k.revoked_at.is_none())
        .ok_or_else(|| ApiError::unauthenticated("unknown or revoked API key"))?;
    let secret = app.sealer.open_string(&key.secret.0, key.key_id.as_str()).map_err(|_| {
        tracing::error!(key_id = %key.key_id, "an API key secret could not be opened with the master key");
        ApiError::unauthenticated("unknown or revoked API key")
    })?;
    let signed = SignedRequest { method: method.as_str(), path, query, idempotency_key, body };
    if !signing::verify(&secret, &h.key_id, &h.timestamp, &h.nonce, &signed, &h.signature) {
        return Err(ApiError::unauthenticated("signature does not match"));
    }
    // The nonce: recorded after the signature is valid, atomically.
    let now_ms = now.unix_ms();
    let expires_ms = nonce_expiry_ms(now_ms, h.timestamp_secs);
    let written = app.store.put_unless(
        Tree::Nonces,
        format!("{}/{}", h.key_id, h.nonce),
        &expires_ms.to_be_bytes(),
        |existing| expiry(existing) > now_ms,
    )?;
    if !written {
        return Err(ApiError::unauthenticated("nonce already used"));
    }
    let merchant = app
        .store
        .get::<MerchantRecord>(key.merchant_id.as_bytes())?
        .ok_or_else(|| ApiError::unauthenticated("unknown or revoked API key"))?;
    if merchant.status == MerchantStatus::Suspended {
        return Err(ApiError::forbidden("the merchant is suspended"));
    }
    Ok(Caller::Merchant { merchant_id: merchant.id, key_id: h.key_id })
}

/// When a nonce first seen at `now_ms` on a request signed at
/// `timestamp_secs` may be forgotten: never before its request leaves the
/// ±300 s window (a request signed 300 s ahead stays valid until
/// `timestamp + 300 s`), plus a margin for the whole-second timestamps; and
/// never sooner than 600 s after it was seen (SECURITY.md). That is
/// `max(now, timestamp) + 300 s + 300 s`.
pub fn nonce_expiry_ms(now_ms: i64, timestamp_secs: i64) -> i64 {
    const MARGIN_SECS: i64 = NONCE_TTL_SECS - WINDOW_SECS;
    let signed_ms = timestamp_secs.saturating_mul(1000);
    now_ms.max(signed_ms).saturating_add((WINDOW_SECS + MARGIN_SECS) * 1000)
}

fn expiry(bytes: &[u8]) -> i64 {
    bytes.try_into().map(i64::from_be_bytes).unwrap_or(0)
}

/// Removes nonces past their expiry ([`nonce_expiry_ms`]); run periodically.
pub fn sweep_nonces(app: &App) -> usize {
    let now_ms = Timestamp::now_real().unix_ms();
    app.store.sweep(Tree::Nonces, b"", |v| expiry(v) <= now_ms).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_764_000_000_000;

    /// A nonce may be forgotten only once its request can no longer pass
    /// the window check `|now - timestamp| <= 300 s` (whole seconds).
    fn replay_would_pass_window(at_ms: i64, timestamp_secs: i64) -> bool {
        (at_ms.div_euclid(1000) - timestamp_secs).abs() <= WINDOW_SECS
    }

    #[test]
    fn a_nonce_signed_ahead_outlives_its_window() {
        let ahead = NOW_MS / 1000 + WINDOW_SECS;
        let expiry = nonce_expiry_ms(NOW_MS, ahead);
        // 600 s after arrival the request (signed 300 s ahead) is still in its window:
        // the old rule (arrival + 600 s) forgot the nonce then.
        assert!(replay_would_pass_window(NOW_MS + 600_000, ahead));
        assert!(expiry > NOW_MS + 600_000);
        // The last instant the replay would pass is covered, the nonce outlives it.
        let last_valid_ms = (ahead + WINDOW_SECS) * 1000 + 999;
        assert!(replay_would_pass_window(last_valid_ms, ahead));
        assert!(expiry > last_valid_ms);
        assert_eq!(expiry, ahead * 1000 + (WINDOW_SECS + NONCE_TTL_SECS - WINDOW_SECS) * 1000);
    }

    #[test]
    fn a_nonce_is_kept_at_least_600_s_from_arrival() {
        for skew_secs in [-WINDOW_SECS, -1, 0] {
            let ts = NOW_MS / 1000 + skew_secs;
            assert_eq!(nonce_expiry_ms(NOW_MS, ts), NOW_MS + NONCE_TTL_SECS * 1000, "skew {skew_secs}");
        }
    }

    #[test]
    fn every_window_instant_is_covered() {
        for skew_secs in [-WINDOW_SECS, -120, 0, 1, 120, WINDOW_SECS] {
            let ts = NOW_MS / 1000 + skew_secs;
            let expiry = nonce_expiry_ms(NOW_MS, ts);
            let mut at = NOW_MS;
            while at < expiry + 120_000 {
                if replay_would_pass_window(at, ts) {
                    assert!(at < expiry, "skew {skew_secs}: replay at +{} ms passes", at - NOW_MS);
                }
                at += 500;
            }
        }
    }

    #[test]
    fn absurd_timestamps_do_not_overflow() {
        assert_eq!(nonce_expiry_ms(NOW_MS, i64::MAX), i64::MAX);
        assert_eq!(nonce_expiry_ms(NOW_MS, i64::MIN), NOW_MS + NONCE_TTL_SECS * 1000);
    }
}
