//! The card actor: the single writer of one card, its transactions and its
//! events. `state.rs` is the pure state machine; `actor.rs` loads, applies,
//! persists and replies.

pub mod actor;
pub mod billing;
pub mod ops;
pub mod order;
pub mod state;
pub mod topup;

pub use actor::{ApplyTransaction, CardActor, CardDeps, CrashNext, CreateCard, GetCard, Inspect};
pub use state::{CardRecord, CardStatus, NewCard, TransactionChange, TransactionRecord};
