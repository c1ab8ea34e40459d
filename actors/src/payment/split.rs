//! Batch splits (MARKETPLACE.md §7), pure: a batch of a merchant's payments
//! sent to the gateway under one request id; each item ends `executed` (the
//! `split` entry, once per payment) or `failed` (the payment back to
//! `not_split`); the batch is `completed` when no item is `processing`.

use pelago_storage::{MerchantId, Money, PaymentId, RecipientId, SplitBatchId, Timestamp};
use serde::{Deserialize, Serialize};

use super::PaymentRecord;
use crate::ledger::marketplace::Party;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SplitItemStatus {
    Processing,
    Executed,
    Failed,
}

impl SplitItemStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SplitItemStatus::Processing => "processing",
            SplitItemStatus::Executed => "executed",
            SplitItemStatus::Failed => "failed",
        }
    }
}

/// What one line moves: its amount less what refunds took (0: skipped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitAmount {
    pub line: u32,
    pub recipient_id: Option<RecipientId>,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitItem {
    pub payment_id: PaymentId,
    pub gateway_order_id: String,
    pub status: SplitItemStatus,
    pub failure_reason: Option<String>,
    pub amounts: Vec<SplitAmount>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchStatus {
    Processing,
    Completed,
}

impl BatchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Processing => "processing",
            BatchStatus::Completed => "completed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitBatchRecord {
    pub id: SplitBatchId,
    pub merchant_id: MerchantId,
    pub reference: Option<String>,
    /// The one gateway request id of the batch, stored before the call.
    pub request_id: String,
    /// The gateway account the payments were created under.
    pub gateway_account: String,
    pub status: BatchStatus,
    pub items: Vec<SplitItem>,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub version: u64,
}

pelago_storage::record!(SplitBatchRecord, SplitBatches, 1);

impl SplitBatchRecord {
    pub fn is_processing(&self) -> bool {
        self.items.iter().any(|i| i.status == SplitItemStatus::Processing)
    }
}

/// A payment's split amounts: each line's amount less its refunds, zero lines skipped.
pub fn amounts_of(payment: &PaymentRecord) -> Vec<SplitAmount> {
    payment
        .lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.amount.value > l.refunded)
        .map(|(i, l)| SplitAmount {
            line: i as u32,
            recipient_id: l.recipient_id.clone(),
            amount: Money::new(l.amount.value - l.refunded, l.amount.currency),
        })
        .collect()
}

/// The parties and amounts of a split entry.
pub fn parties(merchant: &MerchantId, amounts: &[SplitAmount]) -> Vec<(Party, Money)> {
    amounts
        .iter()
        .map(|a| {
            let party = match &a.recipient_id {
                Some(r) => Party::Recipient(r.clone()),
                None => Party::Merchant(merchant.clone()),
            };
            (party, a.amount)
        })
        .collect()
}
