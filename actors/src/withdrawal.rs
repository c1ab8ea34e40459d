//! Withdrawals (API.md §3): `processing → succeeded | failed`; a failure
//! releases the held amount. Written with compare-and-set by the binary; the
//! money moves through the merchant actor (hold, release).

use pelago_storage::{MerchantId, Money, Timestamp, WithdrawalId};
use serde::{Deserialize, Serialize};

use crate::history::{History, Source, Stateful};

crate::state_machine! {
    /// DOMAIN.md §State machines (Withdrawal): a failure releases the hold.
    pub enum WithdrawalStatus ("withdrawal") {
        Processing = "processing" -> Succeeded | Failed,
        Succeeded = "succeeded",
        Failed = "failed",
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
    pub status_history: History<WithdrawalStatus>,
}

pelago_storage::record!(WithdrawalRecord, Withdrawals, 1);

crate::stateful!(WithdrawalRecord, WithdrawalStatus);

impl WithdrawalRecord {
    /// `processing → succeeded | failed` as the gateway reports it; a report
    /// about a finished withdrawal is no change (`false`): repeats and
    /// out-of-order callbacks have one effect.
    pub fn finish(&mut self, to: WithdrawalStatus, reason: Option<String>, at: Timestamp) -> bool {
        if self.transition(to, reason.clone(), Source::Gateway, at).is_err() {
            return false;
        }
        self.failure_reason = reason;
        self.completed_at = Some(at);
        true
    }
}
