//! The one error type of the actors crate. `src/http/errors.rs` maps it to
//! API.md §1 statuses and codes; nothing else does.

use pelago_storage::StoreError;
use thiserror::Error;

/// A command the state machine refuses. Messages name the field or the current
/// state, never a secret or card data.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Reject {
    #[error("{message}")]
    InvalidRequest { param: Option<String>, message: String },
    #[error("{message}")]
    InvalidState { message: String },
    /// 409 `invalid_state` about one field of the request (MARKETPLACE.md §4:
    /// a `provider_recipient_id` or transfer target already in use).
    #[error("{message}")]
    InvalidStateOn { param: String, message: String },
    #[error("the available balance cannot cover {needed} {currency}")]
    InsufficientFunds { needed: i64, currency: String },
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("{message}")]
    Forbidden { message: String },
    #[error("{message}")]
    Conflict { message: String },
    #[error("{message}")]
    Upstream { message: String },
    /// 409 `already_split` (MARKETPLACE.md §7): the payment's split is
    /// executed or in a processing batch.
    #[error("{message}")]
    AlreadySplit { param: String, message: String },
}

impl Reject {
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Reject::InvalidRequest { param: Some(param.into()), message: message.into() }
    }

    pub fn state(message: impl Into<String>) -> Self {
        Reject::InvalidState { message: message.into() }
    }
}

#[derive(Debug, Error)]
pub enum ActorError {
    #[error(transparent)]
    Rejected(#[from] Reject),
    /// The actor restarted, is shutting down, or its mailbox did not take the
    /// message in time. Safe to retry with the same Idempotency-Key.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ActorError {
    pub fn unavailable(why: impl Into<String>) -> Self {
        ActorError::Unavailable(why.into())
    }
}

impl From<actix::MailboxError> for ActorError {
    fn from(e: actix::MailboxError) -> Self {
        match e {
            actix::MailboxError::Closed => ActorError::unavailable("the actor stopped; retry"),
            actix::MailboxError::Timeout => {
                ActorError::unavailable("the actor did not answer in time; retry")
            }
        }
    }
}

pub type ActorResult<T> = Result<T, ActorError>;
