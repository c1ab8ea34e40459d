//! The one error type of the flows. It says what went wrong in the domain's
//! terms; `http/errors.rs` maps it to API.md §1's status and code, once, and
//! nothing else does.

use pelago_actors::{ActorError, Reject};
use pelago_storage::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request or one of its fields is wrong; `param` names the field.
    #[error("{message}")]
    Invalid { param: Option<String>, message: String },
    /// A signed callback names an object its sender is not bound to.
    #[error("{0}")]
    Unbound(String),
    /// Allowed to call, not to do this (a suspended merchant, a revoked product).
    #[error("{0}")]
    Forbidden(String),
    /// No such object for this caller (never "forbidden" for another's).
    #[error("{0} not found")]
    NotFound(String),
    /// The state machine does not allow it; the message names the current state.
    #[error("{0}")]
    InvalidState(String),
    /// As [`Error::InvalidState`], naming the field whose value is in use.
    #[error("{message}")]
    InvalidStateOn { param: String, message: String },
    /// Another request with the same Idempotency-Key is still running.
    #[error("this Idempotency-Key is in use")]
    KeyInUse,
    /// The payment's split is executed or in a processing batch (MARKETPLACE.md §7).
    #[error("{message}")]
    AlreadySplit { param: String, message: String },
    /// Commission lines above the signed commission agreement's cap (MARKETPLACE.md §1).
    #[error("{message}")]
    CommissionLimit { param: String, message: String },
    /// The merchant's available balance cannot cover the debit.
    #[error("{0}")]
    InsufficientFunds(String),
    /// A synchronous upstream action was refused or failed; nothing changed.
    #[error("{0}")]
    Upstream(String),
    /// Try again (an actor restarting, an outcome being recovered).
    #[error("{0}")]
    Unavailable(String),
    /// A commission above what the signed commission agreement allows
    /// (MARKETPLACE.md §1: 400 `commission_limit_exceeded`).
    #[error("{message}")]
    CommissionLimitExceeded { param: String, message: String },
    /// Outside the withdrawal window (MARKETPLACE.md §1: 409 `withdrawal_window_closed`).
    #[error("{0}")]
    WindowClosed(String),
    /// An invariant broke or the store failed; logged where it happened.
    #[error("the service could not complete the request; retry")]
    Internal,
}

impl Error {
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid { param: Some(param.into()), message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::Invalid { param: None, message: message.into() }
    }

    pub fn unbound(message: impl Into<String>) -> Self {
        Error::Unbound(message.into())
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Error::Forbidden(message.into())
    }

    pub fn not_found(what: &str) -> Self {
        Error::NotFound(what.to_owned())
    }

    pub fn invalid_state(message: impl Into<String>) -> Self {
        Error::InvalidState(message.into())
    }

    pub fn upstream(message: impl Into<String>) -> Self {
        Error::Upstream(message.into())
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::Unavailable(message.into())
    }

    pub fn internal() -> Self {
        Error::Internal
    }
}

impl From<Reject> for Error {
    fn from(r: Reject) -> Self {
        let message = r.to_string();
        match r {
            Reject::InvalidRequest { param, .. } => Error::Invalid { param, message },
            Reject::InvalidState { .. } | Reject::Conflict { .. } => Error::InvalidState(message),
            Reject::InvalidStateOn { param, .. } => Error::InvalidStateOn { param, message },
            Reject::InsufficientFunds { .. } => Error::InsufficientFunds(message),
            Reject::NotFound { what } => Error::NotFound(what.to_owned()),
            Reject::Forbidden { .. } => Error::Forbidden(message),
            Reject::Upstream { .. } => Error::Upstream(message),
            Reject::AlreadySplit { param, .. } => Error::AlreadySplit { param, message },
        }
    }
}

impl From<ActorError> for Error {
    fn from(e: ActorError) -> Self {
        match e {
            ActorError::Rejected(r) => r.into(),
            ActorError::Unavailable(why) => Error::Unavailable(why),
            ActorError::Store(error) => error.into(),
        }
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "store error");
        Error::Internal
    }
}
