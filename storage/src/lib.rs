//! `pelago-storage`: the one place that knows about sled and bincode.
//!
//! It owns the on-disk format (record kinds under key prefixes in one sled tree,
//! a versioned layout and record codec), the atomic multi-record commit merged
//! into group batches, the group-commit flusher that makes a commit durable,
//! and the domain primitives every crate shares (ids, money, time).
//!
//! Architecture invariant: nothing here knows about actix, HTTP or JSON wire shapes.
//! Replacing sled or bincode means changing `store.rs` and `codec.rs` only.

pub mod codec;
pub mod error;
pub mod flusher;
pub mod ids;
pub mod money;
pub mod store;
pub mod time;

pub use codec::{Record, decode, encode};
pub use error::StoreError;
pub use flusher::{FlushPolicy, FlushTicket};
pub use ids::*;
pub use money::{Currency, Money, MoneyError};
pub use store::{CommitStats, Store, StoreConfig, Tree, WriteBatch};
pub use time::Timestamp;
