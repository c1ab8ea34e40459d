//! Standard Webhooks v1 signatures (SECURITY.md §Webhooks):
//! `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), where the key
//! is the base64-decoded part of the secret after `whsec_`. Several secrets
//! (during a rotation) give several signatures separated by one space.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The secret is not `whsec_` + base64. The message never shows the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret is not of the form whsec_<base64>")]
pub struct MalformedSecret;

/// One `v1,<base64>` signature of `body` sent as message `id` at `timestamp`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, MalformedSecret> {
    let encoded = secret.strip_prefix("whsec_").ok_or(MalformedSecret)?;
    let key = STANDARD.decode(encoded).map_err(|_| MalformedSecret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// The `webhook-signature` header value: one signature per secret, newest
/// secret first, space-separated.
pub fn header<'a>(
    secrets: impl IntoIterator<Item = &'a str>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, MalformedSecret> {
    let signatures =
        secrets.into_iter().map(|s| sign(s, id, timestamp, body)).collect::<Result<Vec<_>, _>>()?;
    Ok(signatures.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_security_md_vector() {
        let signature = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn two_secrets_give_two_signatures_newest_first() {
        let new = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let old = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let value = header([new, old], "evt_1", 1, b"{}").unwrap();
        let parts: Vec<&str> = value.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign(new, "evt_1", 1, b"{}").unwrap());
        assert_eq!(parts[1], sign(old, "evt_1", 1, b"{}").unwrap());
        assert_eq!(sign("sk_not_a_webhook_secret", "evt_1", 1, b"{}"), Err(MalformedSecret));
    }
}
