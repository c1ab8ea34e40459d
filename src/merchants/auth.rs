//! `/v1` request authentication, SECURITY.md §Merchant request signing, in
//! this order: headers well-formed → timestamp within ±300 s (real time) and
//! not before this process began serving → key known and not revoked →
//! signature over the raw bytes (constant time) → nonce unused with this key
//! for 600 s (recorded only now) → merchant not suspended (403). The second
//! rule is what keeps a nonce used across a restart, even after a crash.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method};
use pelago_actors::merchant::{ApiKeyRecord, MerchantRecord, MerchantStatus};
use pelago_storage::{Timestamp, Tree};

use crate::{
    app::App,
    http::{errors::ApiError, router::Caller},
    security::signing::{self, NONCE_TTL_SECS, SignedRequest, WINDOW_SECS},
};

pub async fn verify_request(
    app: &Arc<App>,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Caller, ApiError> {
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
    // The nonce: recorded after the signature is valid, atomically, kept 600 s.
    let expires_ms = now.unix_ms() + NONCE_TTL_SECS * 1000;
    let now_ms = now.unix_ms();
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

fn expiry(bytes: &[u8]) -> i64 {
    bytes.try_into().map(i64::from_be_bytes).unwrap_or(0)
}

/// Removes nonces past their 600 s; run periodically.
pub fn sweep_nonces(app: &App) -> usize {
    let now_ms = Timestamp::now_real().unix_ms();
    app.store.sweep(Tree::Nonces, b"", |v| expiry(v) <= now_ms).unwrap_or(0)
}
