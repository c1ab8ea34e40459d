//! Marketplace payments (MARKETPLACE.md §6), pure: the record, its state
//! machine and the events that move it. A payment belongs to its merchant,
//! whose actor is its single writer (`merchant/payments.rs`), so a payment's
//! move to SUCCEEDED and its `marketplace_collection` entry are one commit.
//!
//! [`PaymentRecord::apply`] takes one [`PaymentEvent`] (the buyer paid,
//! authorized, failed, the checkout expired, a capture or a cancel the
//! gateway confirmed): a repeat of the status the payment is in changes
//! nothing; an event the table does not allow is refused with nothing changed;
//! the move to SUCCEEDED asks for the collection, once.

pub mod gateway;
pub mod refund;
pub mod split;
#[cfg(test)]
mod tests;

use pelago_storage::{MerchantId, Money, PaymentId, RecipientId, SplitBatchId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{
    error::Reject,
    history::{History, Source, Stateful},
    ledger::marketplace::Party,
};

crate::state_machine! {
    /// MARKETPLACE.md §6's table (Yuno's upper case); the refund edges are
    /// taken by `refund.rs` (`PaymentRecord::take_refund`).
    pub enum PaymentStatus ("payment") {
        Pending = "PENDING" -> Succeeded | Authorized | Declined | Expired | Canceled,
        Authorized = "AUTHORIZED" -> Succeeded | Canceled,
        Succeeded = "SUCCEEDED" -> PartiallyRefunded | Refunded,
        Declined = "DECLINED",
        Expired = "EXPIRED",
        Canceled = "CANCELED",
        PartiallyRefunded = "PARTIALLY_REFUNDED" -> Refunded | Succeeded,
        Refunded = "REFUNDED" -> PartiallyRefunded | Succeeded,
    }
}

impl PaymentStatus {
    /// The event a move to this status emits: `payment.<status, lower case>`.
    pub fn event_type(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "payment.pending",
            PaymentStatus::Authorized => "payment.authorized",
            PaymentStatus::Succeeded => "payment.succeeded",
            PaymentStatus::Declined => "payment.declined",
            PaymentStatus::Expired => "payment.expired",
            PaymentStatus::Canceled => "payment.canceled",
            PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded => "payment.refunded",
        }
    }
}

/// A line's `type` (Yuno's upper case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LineType {
    Purchase,
    PaymentFee,
    Vat,
    Commission,
    Marketplace,
}

impl LineType {
    pub const ALL: [LineType; 5] = [
        LineType::Purchase,
        LineType::PaymentFee,
        LineType::Vat,
        LineType::Commission,
        LineType::Marketplace,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LineType::Purchase => "PURCHASE",
            LineType::PaymentFee => "PAYMENTFEE",
            LineType::Vat => "VAT",
            LineType::Commission => "COMMISSION",
            LineType::Marketplace => "MARKETPLACE",
        }
    }

    pub fn parse(raw: &str) -> Option<LineType> {
        LineType::ALL.into_iter().find(|t| t.as_str() == raw)
    }

    /// PURCHASE and MARKETPLACE lines are a seller's sale: they need a recipient.
    pub fn is_sale(self) -> bool {
        matches!(self, LineType::Purchase | LineType::Marketplace)
    }
}

/// `liability`, only echoed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liability {
    pub processing_fee: Option<String>,
    pub chargebacks: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentLine {
    pub kind: LineType,
    /// The recipient resolved at creation (by id, or as the holder of
    /// `provider_recipient_id`); `None`: the merchant's own line.
    pub recipient_id: Option<RecipientId>,
    pub provider_recipient_id: Option<String>,
    pub merchant_reference: String,
    pub amount: Money,
    pub liability: Option<Liability>,
    /// Minor units given back by refunds.
    pub refunded: i64,
    /// Set when the split executed: `amount − refunded` then.
    pub split_amount: Option<i64>,
}

impl PaymentLine {
    pub fn party(&self, merchant: &MerchantId) -> Party {
        match &self.recipient_id {
            Some(r) => Party::Recipient(r.clone()),
            None => Party::Merchant(merchant.clone()),
        }
    }
}

/// A gateway call whose answer is awaited (§9: `pending_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentAction {
    /// The checkout's creation.
    Create,
    Capture,
    Cancel,
}

impl PaymentAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentAction::Create => "create_payment",
            PaymentAction::Capture => "capture",
            PaymentAction::Cancel => "cancel",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAction {
    pub kind: PaymentAction,
    /// Stored before the call, reused on every retry.
    pub request_id: String,
    /// Service time (shown).
    pub since: Timestamp,
    /// Real time (the resolver's grace is a timeout).
    pub since_real: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SplitStatus {
    NotSplit,
    Processing,
    Executed,
}

impl SplitStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SplitStatus::NotSplit => "not_split",
            SplitStatus::Processing => "processing",
            SplitStatus::Executed => "executed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitState {
    pub status: SplitStatus,
    pub batch_id: Option<SplitBatchId>,
    pub executed_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    pub id: PaymentId,
    pub merchant_id: MerchantId,
    pub amount: Money,
    pub merchant_reference: String,
    pub description: Option<String>,
    pub capture: bool,
    pub lines: Vec<PaymentLine>,
    pub status: PaymentStatus,
    pub failure_reason: Option<String>,
    /// The gateway account (`merchant_id` at the gateway) it was created under.
    pub gateway_account: String,
    /// The checkout creation's request id.
    pub request_id: String,
    pub gateway_order_id: Option<String>,
    pub checkout_url: Option<String>,
    pub pending_action: Option<PendingAction>,
    pub captured_at: Option<Timestamp>,
    pub settled: bool,
    pub settled_at: Option<Timestamp>,
    pub refunded_amount: i64,
    pub split: SplitState,
    pub created_at: Timestamp,
    pub version: u64,
    pub status_history: History<PaymentStatus>,
    /// Refunds of this payment still `processing` (§7: the payment stays out of batches).
    pub refunds_processing: u32,
}

pelago_storage::record!(PaymentRecord, Payments, 1);

crate::stateful!(PaymentRecord, PaymentStatus);

/// What moves a payment (the buyer's, reported by the gateway and confirmed
/// by asking it, or a capture / cancel the gateway answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentEvent {
    BuyerPaid,
    BuyerAuthorized,
    BuyerFailed,
    CheckoutExpired,
    Captured,
    Canceled,
}

impl PaymentEvent {
    pub const ALL: [PaymentEvent; 6] = [
        PaymentEvent::BuyerPaid,
        PaymentEvent::BuyerAuthorized,
        PaymentEvent::BuyerFailed,
        PaymentEvent::CheckoutExpired,
        PaymentEvent::Captured,
        PaymentEvent::Canceled,
    ];

    pub fn target(self) -> PaymentStatus {
        match self {
            PaymentEvent::BuyerPaid | PaymentEvent::Captured => PaymentStatus::Succeeded,
            PaymentEvent::BuyerAuthorized => PaymentStatus::Authorized,
            PaymentEvent::BuyerFailed => PaymentStatus::Declined,
            PaymentEvent::CheckoutExpired => PaymentStatus::Expired,
            PaymentEvent::Canceled => PaymentStatus::Canceled,
        }
    }

    /// The statuses §6's table takes this event from.
    pub fn allowed_from(self, status: PaymentStatus, capture: bool) -> bool {
        use PaymentStatus as S;
        match self {
            PaymentEvent::BuyerPaid => status == S::Pending && capture,
            PaymentEvent::BuyerAuthorized => status == S::Pending && !capture,
            PaymentEvent::BuyerFailed | PaymentEvent::CheckoutExpired => status == S::Pending,
            PaymentEvent::Captured => status == S::Authorized,
            PaymentEvent::Canceled => matches!(status, S::Pending | S::Authorized),
        }
    }

    fn reason(self) -> Option<&'static str> {
        match self {
            PaymentEvent::BuyerFailed => Some("the buyer's payment failed"),
            PaymentEvent::CheckoutExpired => Some("the checkout expired"),
            _ => None,
        }
    }
}

/// What one [`PaymentRecord::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub changed: bool,
    /// The payment just became SUCCEEDED: its collection is to be booked.
    pub collect: bool,
}

impl PaymentRecord {
    /// A new payment of `lines`: PENDING, `capture` true, nothing captured,
    /// settled, refunded or split yet, no gateway call recorded (the caller
    /// sets `description`, `capture`, the gateway fields and `pending_action`).
    pub fn pending(
        id: PaymentId,
        merchant_id: MerchantId,
        amount: Money,
        merchant_reference: String,
        lines: Vec<PaymentLine>,
        at: Timestamp,
    ) -> Self {
        PaymentRecord {
            id,
            merchant_id,
            amount,
            merchant_reference,
            description: None,
            capture: true,
            lines,
            status: PaymentStatus::Pending,
            failure_reason: None,
            gateway_account: String::new(),
            request_id: String::new(),
            gateway_order_id: None,
            checkout_url: None,
            pending_action: None,
            captured_at: None,
            settled: false,
            settled_at: None,
            refunded_amount: 0,
            split: SplitState { status: SplitStatus::NotSplit, batch_id: None, executed_at: None },
            created_at: at,
            version: 1,
            status_history: History::created(PaymentStatus::Pending, Source::Merchant, at),
            refunds_processing: 0,
        }
    }

    /// §6's table for one event; a repeat of the current status is no change.
    pub fn apply(&mut self, event: PaymentEvent, source: Source, at: Timestamp) -> Result<Applied, Reject> {
        let to = event.target();
        if self.status == to {
            return Ok(Applied { changed: false, collect: false });
        }
        if !event.allowed_from(self.status, self.capture) {
            return Err(Reject::state(format!(
                "the payment is {}; it cannot become {}",
                self.status.as_str(),
                to.as_str()
            )));
        }
        self.transition(to, event.reason().map(str::to_owned), source, at)?;
        if let Some(reason) = event.reason() {
            self.failure_reason = Some(reason.to_owned());
        }
        let collect = to == PaymentStatus::Succeeded;
        if collect {
            self.captured_at = Some(at);
        }
        Ok(Applied { changed: true, collect })
    }

    /// The checkout could not be created: DECLINED with the gateway's reason.
    pub fn decline(&mut self, reason: String, at: Timestamp) -> Result<bool, Reject> {
        if self.status == PaymentStatus::Declined {
            return Ok(false);
        }
        self.transition(PaymentStatus::Declined, Some(reason.clone()), Source::Gateway, at)?;
        self.failure_reason = Some(reason);
        Ok(true)
    }

    /// The collection's lines: each line's party and amount.
    pub fn parties(&self) -> Vec<(Party, Money)> {
        self.lines.iter().map(|l| (l.party(&self.merchant_id), l.amount)).collect()
    }
}
