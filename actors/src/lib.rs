//! `pelago-actors`: the stateful core. Each merchant and each card is an actix
//! actor that is the single writer of its own state in the store.
//!
//! Architecture invariant: this crate knows nothing of HTTP, URLs or wire JSON.
//! It reaches the outside world only through the traits in [`ports`].

pub mod card;
pub mod cardholder;
pub mod error;
pub mod file;
pub mod history;
pub mod keys;
pub mod ledger;
pub mod merchant;
pub mod outbox;
pub mod payment;
pub mod ports;
pub mod recipient;
pub mod routing;
pub mod runtime;
pub mod system;
pub mod withdrawal;

pub use error::{ActorError, ActorResult, Reject};
