//! The merchant actor: the single writer of one merchant's configuration
//! (keys, webhook secrets, routing, fees, withdrawal whitelist) and, later, of
//! its money. `state.rs` is pure; `actor.rs` loads, applies, persists, replies.

pub mod actor;
pub mod billing;
pub mod payments;
pub mod refunds;
pub mod splits;
pub mod state;

pub use actor::{
    InspectMerchant, MerchantActor, MerchantCommand, MerchantDeps, PostEntry, Posted, VoidEntry, Voided,
    booked, entry_index,
};
pub use state::*;
