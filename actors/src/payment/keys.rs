//! Every key a payment is stored or found under, in one place: encoded by
//! [`PaymentKey::encode`], read back by [`PaymentKey::parse`].

use pelago_storage::{MerchantId, PaymentId, RefundId, SplitBatchId, Timestamp, Tree};

/// A key of the payments' records, index rows and markers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentKey {
    /// `Tree::Payments` `{merchant}/{payment}`: the record (a merchant's, newest last).
    Record { merchant: MerchantId, payment: PaymentId },
    /// `Tree::Index` `payowner/{payment}` → the merchant.
    Owner(PaymentId),
    /// `Tree::Operations` `paypending/{payment}` → the merchant: a gateway
    /// call's answer is unknown (`pending_action`); the resolver retries it.
    Pending(PaymentId),
    /// `Tree::Operations` `payconfirm/{payment}` → the gateway order id: a
    /// callback came and the confirming query's answer is still unknown.
    Confirm(PaymentId),
    /// `Tree::Index` `paycoll/{captured date}/{payment}` → the merchant:
    /// captured, not settled yet (T+1).
    Captured { date: String, payment: PaymentId },
    /// `Tree::Index` `paysettled/{run date}/{payment}` → the merchant: settled by that run.
    Settled { date: String, payment: PaymentId },
    /// `Tree::SplitBatches` `{merchant}/{batch}`: a split batch (a merchant's, newest last).
    Batch { merchant: MerchantId, batch: SplitBatchId },
    /// `Tree::Index` `spbowner/{batch}` → the merchant.
    BatchOwner(SplitBatchId),
    /// `Tree::Operations` `spbpending/{batch}` → `{merchant} {real ms}`: items are
    /// processing; the resolver sends the batch again with its request id.
    BatchPending(SplitBatchId),
    /// `Tree::Refunds` `{merchant}/{payment}/{refund}`: a refund (a payment's, oldest first).
    Refund { merchant: MerchantId, payment: PaymentId, refund: RefundId },
    /// `Tree::Index` `rfdowner/{refund}` → the payment.
    RefundOwner(RefundId),
    /// `Tree::Operations` `rfdpending/{refund}` → `{merchant} {real ms} {payment}`:
    /// the gateway's answer is unknown; the resolver asks again with its request id.
    RefundPending(RefundId),
}

impl PaymentKey {
    pub const PENDING_PREFIX: &'static str = "paypending/";
    pub const CONFIRM_PREFIX: &'static str = "payconfirm/";
    pub const CAPTURED_PREFIX: &'static str = "paycoll/";
    pub const SETTLED_PREFIX: &'static str = "paysettled/";
    pub const BATCH_PENDING_PREFIX: &'static str = "spbpending/";
    pub const REFUND_PENDING_PREFIX: &'static str = "rfdpending/";

    pub fn tree(&self) -> Tree {
        match self {
            PaymentKey::Record { .. } => Tree::Payments,
            PaymentKey::Batch { .. } => Tree::SplitBatches,
            PaymentKey::Refund { .. } => Tree::Refunds,
            PaymentKey::Pending(_)
            | PaymentKey::Confirm(_)
            | PaymentKey::BatchPending(_)
            | PaymentKey::RefundPending(_) => Tree::Operations,
            PaymentKey::Owner(_)
            | PaymentKey::Captured { .. }
            | PaymentKey::Settled { .. }
            | PaymentKey::BatchOwner(_)
            | PaymentKey::RefundOwner(_) => Tree::Index,
        }
    }

    pub fn encode(&self) -> String {
        match self {
            PaymentKey::Record { merchant, payment } => format!("{merchant}/{payment}"),
            PaymentKey::Owner(p) => format!("payowner/{p}"),
            PaymentKey::Pending(p) => format!("{}{p}", Self::PENDING_PREFIX),
            PaymentKey::Confirm(p) => format!("{}{p}", Self::CONFIRM_PREFIX),
            PaymentKey::Captured { date, payment } => format!("{}{date}/{payment}", Self::CAPTURED_PREFIX),
            PaymentKey::Settled { date, payment } => format!("{}{date}/{payment}", Self::SETTLED_PREFIX),
            PaymentKey::Batch { merchant, batch } => format!("{merchant}/{batch}"),
            PaymentKey::BatchOwner(b) => format!("spbowner/{b}"),
            PaymentKey::BatchPending(b) => format!("{}{b}", Self::BATCH_PENDING_PREFIX),
            PaymentKey::Refund { merchant, payment, refund } => format!("{merchant}/{payment}/{refund}"),
            PaymentKey::RefundOwner(r) => format!("rfdowner/{r}"),
            PaymentKey::RefundPending(r) => format!("{}{r}", Self::REFUND_PENDING_PREFIX),
        }
    }

    /// A captured row's key for a capture at `at` (its UTC date).
    pub fn captured(at: Timestamp, payment: &PaymentId) -> PaymentKey {
        PaymentKey::Captured {
            date: at.to_datetime().format("%Y-%m-%d").to_string(),
            payment: payment.clone(),
        }
    }

    /// The prefix of the merchant's records.
    pub fn records_of(merchant: &MerchantId) -> String {
        format!("{merchant}/")
    }

    /// The prefix of a payment's refunds.
    pub fn refunds_of(merchant: &MerchantId, payment: &PaymentId) -> String {
        format!("{merchant}/{payment}/")
    }

    /// The prefix of the payments settled by the run of `date`.
    pub fn settled_on(date: &str) -> String {
        format!("{}{date}/", Self::SETTLED_PREFIX)
    }

    /// Reads back the keys that carry their parts (`paycoll/`, `paysettled/`,
    /// `paypending/`, `payconfirm/`, `payowner/`); `None` for anything else.
    pub fn parse(raw: &str) -> Option<PaymentKey> {
        let id = |s: &str| PaymentId::parse(s).ok();
        let dated = |rest: &str| {
            let (date, payment) = rest.split_once('/')?;
            (date.len() == 10).then_some(())?;
            Some((date.to_owned(), id(payment)?))
        };
        if let Some(rest) = raw.strip_prefix(Self::CAPTURED_PREFIX) {
            let (date, payment) = dated(rest)?;
            return Some(PaymentKey::Captured { date, payment });
        }
        if let Some(rest) = raw.strip_prefix(Self::SETTLED_PREFIX) {
            let (date, payment) = dated(rest)?;
            return Some(PaymentKey::Settled { date, payment });
        }
        if let Some(rest) = raw.strip_prefix(Self::PENDING_PREFIX) {
            return id(rest).map(PaymentKey::Pending);
        }
        if let Some(rest) = raw.strip_prefix(Self::CONFIRM_PREFIX) {
            return id(rest).map(PaymentKey::Confirm);
        }
        if let Some(rest) = raw.strip_prefix(Self::BATCH_PENDING_PREFIX) {
            return SplitBatchId::parse(rest).ok().map(PaymentKey::BatchPending);
        }
        if let Some(rest) = raw.strip_prefix(Self::REFUND_PENDING_PREFIX) {
            return RefundId::parse(rest).ok().map(PaymentKey::RefundPending);
        }
        if let Some(rest) = raw.strip_prefix("rfdowner/") {
            return RefundId::parse(rest).ok().map(PaymentKey::RefundOwner);
        }
        if let Some(rest) = raw.strip_prefix("spbowner/") {
            return SplitBatchId::parse(rest).ok().map(PaymentKey::BatchOwner);
        }
        raw.strip_prefix("payowner/").and_then(id).map(PaymentKey::Owner)
    }
}

impl crate::keys::Key for PaymentKey {
    fn parse(raw: &[u8]) -> Option<Self> {
        PaymentKey::parse(std::str::from_utf8(raw).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_as_written() {
        let p = PaymentId::generate();
        for key in [
            PaymentKey::Owner(p.clone()),
            PaymentKey::Pending(p.clone()),
            PaymentKey::Confirm(p.clone()),
            PaymentKey::Captured { date: "2026-11-22".into(), payment: p.clone() },
            PaymentKey::Settled { date: "2026-11-23".into(), payment: p.clone() },
            PaymentKey::BatchPending(SplitBatchId::generate()),
            PaymentKey::BatchOwner(SplitBatchId::generate()),
            PaymentKey::RefundPending(RefundId::generate()),
            PaymentKey::RefundOwner(RefundId::generate()),
        ] {
            assert_eq!(PaymentKey::parse(&key.encode()), Some(key));
        }
        assert_eq!(PaymentKey::parse("paycoll/2026-11-2/x"), None);
    }
}
