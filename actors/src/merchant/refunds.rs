//! The merchant actor as the single writer of its payments' refunds
//! (MARKETPLACE.md §7, §8). `CreateRefund` runs §7's checks 1–6 against the
//! payment as it is now, in the actor's order, and commits in one write the
//! refund, the payment's `refunded` amounts and status, and the
//! `marketplace_refund` entry (check 7: the booking refuses an entry that
//! would take a debited account below zero, whole) with, while the gateway
//! is to be asked, the `rfdpending/` marker — all before the gateway call.
//! `FinishRefund` records the gateway's answer once: succeeded, or failed
//! with the `marketplace_refund_reversal` mirror and the payment's amounts given back.

use crate::keys::{Index, Marker, RecordKey};
use actix::Message;
use pelago_storage::{FlushTicket, PaymentId, RefundId, Timestamp, WriteBatch};

use super::actor::{MerchantActor, PostEntry, cell};
use crate::{
    error::{ActorResult, Reject},
    history::{History, Source},
    ledger::{self, EntryKind},
    outbox::{self, EventObject},
    payment::{
        PaymentRecord,
        refund::{self, RefundAsk, RefundRecord, RefundStatus},
    },
    runtime::durable_handler,
};

/// A new refund of `payment_id` as asked. A repeat of the id answers the stored one.
#[derive(Debug)]
pub struct CreateRefund {
    pub id: RefundId,
    pub payment_id: PaymentId,
    pub ask: RefundAsk,
    pub request_id: String,
}

impl Message for CreateRefund {
    type Result = ActorResult<RefundRecord>;
}

/// The gateway's answer about a processing refund: `Ok(its refund id)` or `Err(reason)`.
#[derive(Debug)]
pub struct FinishRefund {
    pub payment_id: PaymentId,
    pub refund_id: RefundId,
    pub outcome: Result<Option<String>, String>,
}

impl Message for FinishRefund {
    type Result = ActorResult<RefundRecord>;
}

impl MerchantActor {
    fn refund_key(&self, payment: &PaymentId, refund: &RefundId) -> RecordKey {
        RecordKey::Refund { merchant: self.id.clone(), payment: payment.clone(), refund: refund.clone() }
    }

    fn load_refund(&self, payment: &PaymentId, refund: &RefundId) -> ActorResult<Option<RefundRecord>> {
        Ok(self.cell.store().get::<RefundRecord>(self.refund_key(payment, refund).encode())?)
    }

    fn create_refund(&mut self, msg: CreateRefund) -> ActorResult<(RefundRecord, Option<FlushTicket>)> {
        if let Some(existing) = self.load_refund(&msg.payment_id, &msg.id)? {
            return Ok((existing, None));
        }
        let mut record = self.cell.existing("merchant")?.clone();
        let mut payment = self.load_payment(&msg.payment_id)?;
        let now = self.now();
        let plan = refund::plan(&payment, &msg.ask, now)?;
        let mut refund = RefundRecord {
            id: msg.id,
            payment_id: payment.id.clone(),
            merchant_id: self.id.clone(),
            amount: plan.channel,
            splits: plan.portions,
            reason: msg.ask.reason,
            status: RefundStatus::Processing,
            failure_reason: None,
            request_id: msg.request_id,
            gateway_account: payment.gateway_account.clone(),
            gateway_order_id: payment.gateway_order_id.clone().unwrap_or_default(),
            gateway_refund_id: None,
            after_split: plan.after_split,
            created_at: now,
            completed_at: None,
            version: 1,
            status_history: History::created(RefundStatus::Processing, Source::Merchant, now),
        };
        let mut wb = WriteBatch::new();
        let entry = PostEntry {
            source_id: refund.id.to_string(),
            kind: EntryKind::MarketplaceRefund,
            postings: refund.postings()?,
            event: None,
            index: vec![],
        };
        self.book(&mut record, &mut wb, entry)?;
        let moved = payment.take_refund(&refund, 1, now)?;
        if refund.amount.value == 0 {
            refund.finish(Ok(None), now)?; // no gateway call: succeeded at once
        } else {
            payment.refunds_processing += 1;
            let pending = Marker::RefundPending { refund: refund.id.clone() };
            let since = Timestamp::now_real().unix_ms();
            wb.put_raw(
                pending.tree(),
                pending.encode(),
                format!("{} {since} {}", self.id, payment.id).into_bytes(),
            );
        }
        let key = self.refund_key(&payment.id, &refund.id);
        wb.expect_absent(key.tree(), key.encode());
        let owner = Index::RefundOwner { refund: refund.id.clone() };
        wb.expect_absent(owner.tree(), owner.encode()); // a refund id names one payment's refund
        wb.put_raw(owner.tree(), owner.encode(), payment.id.as_bytes());
        self.save_refund(&mut wb, &payment, moved, &refund, now)?;
        let ticket = self.cell.persist(record, wb)?;
        Ok((refund, Some(ticket)))
    }

    fn finish_refund(&mut self, msg: FinishRefund) -> ActorResult<(RefundRecord, Option<FlushTicket>)> {
        let mut refund =
            self.load_refund(&msg.payment_id, &msg.refund_id)?.ok_or(Reject::NotFound { what: "refund" })?;
        if refund.status != RefundStatus::Processing {
            return Ok((refund, None)); // a repeat: one effect
        }
        let mut record = self.cell.existing("merchant")?.clone();
        let mut payment = self.load_payment(&msg.payment_id)?;
        let now = self.now();
        let mut wb = WriteBatch::new();
        let failed = msg.outcome.is_err();
        refund.finish(msg.outcome, now)?;
        payment.refunds_processing = payment.refunds_processing.saturating_sub(1);
        let moved = if failed {
            let entry = PostEntry {
                source_id: refund.id.to_string(),
                kind: EntryKind::MarketplaceRefundReversal,
                postings: ledger::mirror(&refund.postings()?)?,
                event: None,
                index: vec![],
            };
            self.book(&mut record, &mut wb, entry)?;
            payment.take_refund(&refund, -1, now)?
        } else {
            payment.version += 1;
            record.version += 1;
            false
        };
        let pending = Marker::RefundPending { refund: refund.id.clone() };
        wb.delete(pending.tree(), pending.encode());
        self.save_refund(&mut wb, &payment, moved, &refund, now)?;
        let ticket = self.cell.persist(record, wb)?;
        Ok((refund, Some(ticket)))
    }

    /// Stages the refund and its payment with their events: `payment.refunded`
    /// when the payment's status moved, `refund.succeeded|failed` once it is final.
    fn save_refund(
        &self,
        wb: &mut WriteBatch,
        payment: &PaymentRecord,
        moved: bool,
        refund: &RefundRecord,
        now: Timestamp,
    ) -> ActorResult<()> {
        wb.put(self.payment_key(&payment.id), payment)?;
        wb.put(self.refund_key(&payment.id, &refund.id).encode(), refund)?;
        if moved {
            outbox::stage(
                wb,
                &self.id,
                "payment.refunded",
                EventObject::Payment(Box::new(payment.clone())),
                now,
            )?;
        }
        let event = match refund.status {
            RefundStatus::Processing => None,
            RefundStatus::Succeeded => Some("refund.succeeded"),
            RefundStatus::Failed => Some("refund.failed"),
        };
        if let Some(event) = event {
            outbox::stage(wb, &self.id, event, EventObject::Refund(Box::new(refund.clone())), now)?;
        }
        Ok(())
    }
}

durable_handler!(MerchantActor, cell, CreateRefund => RefundRecord, |act, msg| act.create_refund(msg));

durable_handler!(MerchantActor, cell, FinishRefund => RefundRecord, |act, msg| act.finish_refund(msg));
