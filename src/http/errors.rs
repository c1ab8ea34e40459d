//! The one place errors become HTTP: API.md §1's status, code and body.

use pelago_actors::{ActorError, Reject};
use serde::Serialize;

use super::router::ApiReply;

/// The error body of API.md §1 (also the OpenAPI `Error` schema).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// `invalid_request`, `authentication_failed`, `insufficient_funds`, `forbidden`,
    /// `not_found`, `invalid_state`, `idempotency_in_progress`, `already_redeemed`,
    /// `payload_too_large`, `idempotency_key_mismatch`, `rate_limited`,
    /// `upstream_error`, `unavailable`.
    pub code: String,
    pub message: String,
    /// The offending field, e.g. `amount.value`.
    pub param: Option<String>,
    pub request_id: String,
}

/// An API.md §1 error. Built only here: each constructor fixes its status
/// and code, and the flows' errors come in through the one `From` below.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: u16,
    code: &'static str,
    message: String,
    param: Option<String>,
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), param: None, headers: Vec::new() }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The field a 400 names, if it names one.
    pub fn invalid_field(&self) -> Option<&str> {
        if self.status == 400 { self.param.as_deref() } else { None }
    }

    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid_param(Some(param.into()), message)
    }

    /// 400 naming `param` when the field is known.
    pub fn invalid_param(param: Option<String>, message: impl Into<String>) -> Self {
        ApiError { param, ..Self::new(400, "invalid_request", message) }
    }

    pub fn idempotency_in_progress() -> Self {
        Self::new(409, "idempotency_in_progress", "a request with this Idempotency-Key is still running")
    }

    pub fn idempotency_key_mismatch() -> Self {
        Self::new(
            422,
            "idempotency_key_mismatch",
            "this Idempotency-Key was used with another method, path or body",
        )
    }

    /// 400 for a body that did not arrive in time; the connection is closed.
    pub fn body_too_slow(deadline_ms: u128) -> Self {
        let mut e = Self::bad_request(format!("the request body did not arrive within {deadline_ms} ms"));
        e.headers.push(("connection", "close".to_owned()));
        e
    }

    pub fn already_redeemed() -> Self {
        Self::new(409, "already_redeemed", "the receipt was already redeemed")
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(401, "authentication_failed", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "forbidden", message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(404, "not_found", format!("{what} not found"))
    }

    /// 404 `not_found` with a message that says more than what is missing.
    pub fn not_found_saying(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message.into())
    }

    pub fn method_not_allowed(allow: String) -> Self {
        let mut e = Self::new(405, "invalid_request", "method not allowed on this path");
        e.headers.push(("allow", allow));
        e
    }

    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(409, "invalid_state", message)
    }

    pub fn too_large() -> Self {
        Self::too_large_for(super::MAX_BODY_BYTES)
    }

    /// 413 naming the route's bound (64 KiB, or a file's 5 MiB).
    pub fn too_large_for(limit_bytes: usize) -> Self {
        let shown = if limit_bytes.is_multiple_of(1024 * 1024) {
            format!("{} MiB", limit_bytes / (1024 * 1024))
        } else {
            format!("{} KiB", limit_bytes / 1024)
        };
        Self::new(413, "payload_too_large", format!("request body is over {shown}"))
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut e = Self::new(429, "rate_limited", "rate limit exceeded; retry later");
        e.headers.push(("retry-after", retry_after_secs.max(1).to_string()));
        e
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "unavailable", message)
    }

    pub fn internal() -> Self {
        Self::new(503, "unavailable", "the service could not complete the request; retry")
    }

    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(502, "upstream_error", message)
    }

    pub fn into_reply(self, request_id: &str) -> ApiReply {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                param: self.param,
                request_id: request_id.to_owned(),
            },
        };
        let mut reply = ApiReply::json(self.status, &body);
        reply.headers.extend(self.headers.into_iter().map(|(k, v)| (k.to_owned(), v)));
        reply
    }
}

impl ApiError {
    /// A 400 of the request's shape as the actors' refusal, answered in its
    /// turn among checks made later (MARKETPLACE.md §7's refund checks).
    pub(super) fn into_reject(self) -> Reject {
        Reject::InvalidRequest { param: self.param, message: self.message }
    }
}

impl From<Reject> for ApiError {
    fn from(r: Reject) -> Self {
        let message = r.to_string();
        match r {
            Reject::InvalidRequest { param, .. } => ApiError { param, ..ApiError::bad_request(message) },
            Reject::InvalidState { .. } => ApiError::invalid_state(message),
            Reject::InvalidStateOn { param, .. } => {
                ApiError { param: Some(param), ..ApiError::invalid_state(message) }
            }
            Reject::InsufficientFunds { .. } => ApiError::new(402, "insufficient_funds", message),
            Reject::NotFound { .. } => ApiError::new(404, "not_found", message),
            Reject::Forbidden { .. } => ApiError::forbidden(message),
            Reject::Conflict { .. } => ApiError::new(409, "invalid_state", message),
            Reject::Upstream { .. } => ApiError::upstream(message),
            Reject::AlreadySplit { param, .. } => {
                ApiError { param: Some(param), ..ApiError::new(409, "already_split", message) }
            }
        }
    }
}

/// The one map from the flows' errors to API.md §1.
impl From<crate::flows::Error> for ApiError {
    fn from(e: crate::flows::Error) -> Self {
        use crate::flows::Error as E;
        let message = e.to_string();
        match e {
            E::Invalid { param, .. } => ApiError { param, ..ApiError::bad_request(message) },
            E::Unbound(_) => ApiError::unauthenticated(message),
            E::Forbidden(_) => ApiError::forbidden(message),
            E::NotFound(_) => ApiError::new(404, "not_found", message),
            E::InvalidState(_) => ApiError::invalid_state(message),
            E::InvalidStateOn { param, .. } => {
                ApiError { param: Some(param), ..ApiError::invalid_state(message) }
            }
            E::AlreadySplit { param, .. } => {
                ApiError { param: Some(param), ..ApiError::new(409, "already_split", message) }
            }
            E::CommissionLimit { param, .. } => {
                ApiError { param: Some(param), ..ApiError::new(400, "commission_limit_exceeded", message) }
            }
            E::KeyInUse => ApiError::new(409, "idempotency_in_progress", message),
            E::CommissionLimitExceeded { param, .. } => {
                ApiError { param: Some(param), ..ApiError::new(400, "commission_limit_exceeded", message) }
            }
            E::WindowClosed(_) => ApiError::new(409, "withdrawal_window_closed", message),
            E::InsufficientFunds(_) => ApiError::new(402, "insufficient_funds", message),
            E::Upstream(_) => ApiError::upstream(message),
            E::Unavailable(_) => ApiError::unavailable(message),
            E::Internal => ApiError::internal(),
        }
    }
}

impl From<ActorError> for ApiError {
    fn from(e: ActorError) -> Self {
        match e {
            ActorError::Rejected(r) => r.into(),
            ActorError::Unavailable(why) => ApiError::unavailable(why),
            ActorError::Store(error) => {
                tracing::error!(%error, "store error");
                ApiError::internal()
            }
        }
    }
}

impl From<pelago_storage::StoreError> for ApiError {
    fn from(error: pelago_storage::StoreError) -> Self {
        tracing::error!(%error, "store error");
        ApiError::internal()
    }
}
