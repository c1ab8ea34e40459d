//! Withdrawals (API.md §3): `processing → succeeded | failed`; a failure
//! releases the held amount. Written with compare-and-set by the binary; the
//! money moves through the merchant actor (hold, release).

use pelago_storage::{MerchantId, Money, Record, Timestamp, Tree, WithdrawalId};
use serde::{Deserialize, Serialize};

use crate::history::{Source, StatusChange, push_change};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WithdrawalStatus {
    Processing,
    Succeeded,
    Failed,
}

impl WithdrawalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WithdrawalStatus::Processing => "processing",
            WithdrawalStatus::Succeeded => "succeeded",
            WithdrawalStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalRecord {
    pub id: WithdrawalId,
    pub merchant_id: MerchantId,
    pub amount: Money,
    pub address: String,
    pub network: String,
    pub status: WithdrawalStatus,
    /// The payout request id at the gateway, stored before the call.
    pub request_id: String,
    /// Whether the hold on `available` is booked.
    pub held: bool,
    pub failure_reason: Option<String>,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub version: u64,
    pub status_history: Vec<StatusChange>,
}

impl Record for WithdrawalRecord {
    const TREE: Tree = Tree::Withdrawals;
    const SCHEMA_VERSION: u8 = 1;
}

impl WithdrawalRecord {
    /// `processing → succeeded | failed`; anything later is no change (`false`).
    pub fn finish(&mut self, to: WithdrawalStatus, reason: Option<String>, at: Timestamp) -> bool {
        if self.status != WithdrawalStatus::Processing || to == WithdrawalStatus::Processing {
            return false;
        }
        push_change(
            &mut self.status_history,
            StatusChange {
                from: Some(self.status.as_str().into()),
                to: to.as_str().into(),
                reason: reason.clone(),
                source: Source::Gateway,
                at,
            },
        );
        self.status = to;
        self.failure_reason = reason;
        self.completed_at = Some(at);
        self.version += 1;
        true
    }
}
