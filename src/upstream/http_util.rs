//! The one outcome rule every adapter applies to an HTTP answer, and the
//! small serde helpers the wire types share.

use pelago_actors::ports::Outcome;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::UpstreamError;

/// `{"error": {"code": "...", "reason": "..."}}`: a definite refusal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub reason: String,
}

/// A serde error described without the input it failed on (which may hold card data).
pub fn describe_json_error(e: &serde_json::Error) -> String {
    format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column())
}

/// Sends `request` and applies the outcome rule of the module docs.
pub async fn send<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Outcome<T> {
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Unknown { detail: describe_transport_error(&e) },
    };
    let status = response.status();
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return Outcome::Unknown { detail: describe_transport_error(&e) },
    };
    answer(status, body)
}

/// The outcome rule applied to an answer's status and body.
fn answer<T: DeserializeOwned>(status: reqwest::StatusCode, body: bytes::Bytes) -> Outcome<T> {
    if status.is_success() {
        return match serde_json::from_slice::<T>(&body) {
            Ok(value) => Outcome::Done(value),
            Err(e) => Outcome::Unknown { detail: format!("unreadable answer: {}", describe_json_error(&e)) },
        };
    }
    let definite = status.is_client_error()
        && status != reqwest::StatusCode::REQUEST_TIMEOUT
        && status != reqwest::StatusCode::TOO_MANY_REQUESTS;
    if definite && let Ok(envelope) = serde_json::from_slice::<ErrorEnvelope>(&body) {
        return Outcome::Declined { reason: format!("{}: {}", envelope.error.code, envelope.error.reason) };
    }
    Outcome::Unknown { detail: format!("HTTP {} from upstream", status.as_u16()) }
}

/// Upper bound of an answer read by [`send_sensitive`] (a card-details answer is ~200 bytes).
pub const MAX_SENSITIVE_ANSWER_BYTES: usize = 16 * 1024;

/// [`send`] for answers that carry card data: the body is read chunk by
/// chunk into one buffer that is wiped (`zeroize`) once parsed, each chunk
/// is wiped after its copy, and nothing of the body reaches an error.
pub async fn send_sensitive<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Outcome<T> {
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Unknown { detail: describe_transport_error(&e) },
    };
    let status = response.status();
    if !status.is_success() {
        // An error answer holds no card data: the ordinary rule applies.
        return answer(status, response.bytes().await.unwrap_or_default());
    }
    let mut body = zeroize::Zeroizing::new(Vec::with_capacity(MAX_SENSITIVE_ANSWER_BYTES));
    // Never grown past this capacity, so no copy of the body is left behind by a reallocation.
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let mut chunk = Vec::from(chunk);
                let fits = body.len() + chunk.len() <= MAX_SENSITIVE_ANSWER_BYTES;
                if fits {
                    body.extend_from_slice(&chunk);
                }
                zeroize::Zeroize::zeroize(&mut chunk);
                if !fits {
                    return Outcome::Unknown { detail: "answer too large".to_owned() };
                }
            }
            Ok(None) => break,
            Err(e) => return Outcome::Unknown { detail: describe_transport_error(&e) },
        }
    }
    match serde_json::from_slice::<T>(&body) {
        Ok(value) => Outcome::Done(value),
        Err(e) => Outcome::Unknown { detail: format!("unreadable answer: {}", describe_json_error(&e)) },
    }
}

/// For control calls (registration, test helpers): success or an error.
pub async fn send_control<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, UpstreamError> {
    let response =
        request.send().await.map_err(|e| UpstreamError::Transport(describe_transport_error(&e)))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| UpstreamError::Transport(describe_transport_error(&e)))?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| UpstreamError::Decode(describe_json_error(&e)));
    }
    let code = serde_json::from_slice::<ErrorEnvelope>(&body)
        .map(|e| format!("{}: {}", e.error.code, e.error.reason))
        .unwrap_or_else(|_| "no error body".to_owned());
    Err(UpstreamError::Status { status: status.as_u16(), code })
}

fn describe_transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "body interrupted"
    } else {
        "request failed"
    };
    match e.url() {
        Some(url) => format!("{kind}: {} {}", url.host_str().unwrap_or(""), url.path()),
        None => kind.to_owned(),
    }
}

/// `Timestamp` as an RFC 3339 string on the wire.
pub mod rfc3339 {
    use pelago_storage::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let raw = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&raw).ok_or_else(|| D::Error::custom("expected an RFC 3339 time"))
    }

    pub mod option {
        use pelago_storage::Timestamp;
        use serde::{Deserialize, Deserializer, Serializer, de::Error};

        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_some(&t.to_rfc3339()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(raw) => Timestamp::parse_rfc3339(&raw)
                    .map(Some)
                    .ok_or_else(|| D::Error::custom("expected an RFC 3339 time")),
                None => Ok(None),
            }
        }
    }
}
