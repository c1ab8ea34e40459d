//! `status_history` and `version`, shared by every stateful object
//! (cardholder, card, top-up, order, withdrawal). DOMAIN.md §State machines.

use pelago_storage::Timestamp;
use serde::{Deserialize, Serialize};

/// Who caused a status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    Merchant,
    Channel,
    Gateway,
    Operator,
    System,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Merchant => "merchant",
            Source::Channel => "channel",
            Source::Gateway => "gateway",
            Source::Operator => "operator",
            Source::System => "system",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// `None` for the creation of the object.
    pub from: Option<String>,
    pub to: String,
    pub reason: Option<String>,
    pub source: Source,
    pub at: Timestamp,
}

/// At most this many changes are kept per object (oldest dropped first), so a
/// card frozen and unfrozen forever cannot grow without bound.
pub const MAX_HISTORY: usize = 64;

pub fn push_change(history: &mut Vec<StatusChange>, change: StatusChange) {
    if history.len() >= MAX_HISTORY {
        history.remove(0);
    }
    history.push(change);
}
