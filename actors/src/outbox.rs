//! Events and the durable outbox. An event is staged into the same
//! `WriteBatch` as the state change that caused it, so there is no change
//! without its event and no event without its change. Delivery (webhooks) reads
//! the `outbox` tree; `GET /v1/events` reads the `events` tree.
//!
//! Events hold typed snapshots of the object; the JSON shape is rendered by
//! `src/http` (the only place that knows the wire format).

use pelago_storage::{EventId, MerchantId, StoreError, Timestamp, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::{
    card::state::{CardRecord, TransactionRecord},
    cardholder::CardholderRecord,
    ledger::BalanceTxnRecord,
};

/// A snapshot of the object an event is about. Variants are only ever
/// appended (bincode stores the variant index); `Box` does not change the
/// encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventObject {
    Card(Box<CardRecord>),
    Transaction(Box<TransactionRecord>),
    Cardholder(Box<CardholderRecord>),
    BalanceTransaction(Box<BalanceTxnRecord>),
    Topup(Box<crate::card::topup::TopupRecord>),
    Order(Box<crate::card::order::OrderRecord>),
    Withdrawal(Box<crate::withdrawal::WithdrawalRecord>),
    Settlement(Box<MerchantSettlement>),
    MonthlyCharge(Box<crate::card::billing::MonthlyCharge>),
    Onboarding(Box<crate::recipient::Onboarding>),
    Agreement(Box<crate::recipient::agreement::AgreementRecord>),
    Payment(Box<crate::payment::PaymentRecord>),
    /// `settlement.completed` since payments are settled too (MARKETPLACE.md §6 T+1).
    PaymentsSettlement(Box<PaymentsSettlement>),
    SplitBatch(Box<crate::payment::split::SplitBatchRecord>),
    Refund(Box<crate::payment::refund::RefundRecord>),
    /// `reconciliation.ready`: a merchant's files of one local day (MARKETPLACE.md §10).
    Reconciliation(Box<ReconciliationReady>),
    /// `recipient.withdrawal.succeeded|failed` (MARKETPLACE.md §7).
    RecipientWithdrawal(Box<crate::recipient::withdrawal::RecipientWithdrawalRecord>),
}

/// A merchant's reconciliation files of `date` were built (`reconciliation.ready`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationReady {
    pub merchant_id: MerchantId,
    /// The local day, `YYYY-MM-DD`.
    pub date: String,
    pub rows: u64,
}

/// What one settlement run moved for one merchant (`settlement.completed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantSettlement {
    pub merchant_id: MerchantId,
    /// The run's date, `YYYY-MM-DD`.
    pub date: String,
    pub collections: u64,
    pub amounts: Vec<pelago_storage::Money>,
}

/// A merchant's settlement summary with the payments the run marked `settled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentsSettlement {
    pub settlement: MerchantSettlement,
    pub payments: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: EventId,
    pub merchant_id: MerchantId,
    /// `card.frozen`, `transaction.created`, ... (SECURITY.md's list).
    pub event_type: String,
    pub created_at: Timestamp,
    pub object: EventObject,
}

pelago_storage::record!(EventRecord, Events, 1);

/// A delivery still owed to the merchant's endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub event_id: EventId,
    pub merchant_id: MerchantId,
    pub attempts: u32,
    pub next_attempt_at_ms: i64,
}

pelago_storage::record!(OutboxEntry, Outbox, 1);

/// `{merchant_id}/{event_id}`: a merchant's events, newest last.
pub fn event_key(merchant_id: &MerchantId, event_id: &EventId) -> String {
    format!("{merchant_id}/{event_id}")
}

/// Adds the event and its pending delivery to `batch`: two keys. (An event is
/// found by its merchant's key, `event_key`; no index row is written for it.)
pub fn stage(
    batch: &mut WriteBatch,
    merchant_id: &MerchantId,
    event_type: &str,
    object: EventObject,
    at: Timestamp,
) -> Result<EventId, StoreError> {
    let id = EventId::generate();
    let record = EventRecord {
        id: id.clone(),
        merchant_id: merchant_id.clone(),
        event_type: event_type.into(),
        created_at: at,
        object,
    };
    batch.put(event_key(merchant_id, &id), &record)?;
    batch.put(
        id.as_str(),
        &OutboxEntry {
            event_id: id.clone(),
            merchant_id: merchant_id.clone(),
            attempts: 0,
            next_attempt_at_ms: 0,
        },
    )?;
    Ok(id)
}
