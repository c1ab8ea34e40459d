//! The merchant actor as the single writer of its split batches (MARKETPLACE.md
//! §7). `CreateSplitBatch` checks the items against the payments as they are
//! now, in the actor's order (so of two concurrent batches naming one payment,
//! the second finds it `processing`: `already_split`) and commits the batch,
//! each payment's `split.status` `processing` and the `spbpending/` marker
//! before the gateway is called. `FinishSplitItem` records one item's outcome
//! with, when executed, the `split` entry (refused if the payment's was ever
//! booked: once per payment), and completes the batch when none is left processing.

use crate::keys::{Index, Marker, RecordKey};
use actix::Message;
use pelago_storage::{FlushTicket, PaymentId, SplitBatchId, WriteBatch};

use super::actor::{MerchantActor, PostEntry, cell};
use crate::{
    error::{ActorResult, Reject},
    ledger::{EntryKind, marketplace},
    outbox::{self, EventObject},
    payment::{
        PaymentRecord, PaymentStatus, SplitStatus,
        split::{self, BatchStatus, SplitBatchRecord, SplitItem, SplitItemStatus},
    },
    runtime::durable_handler,
};

/// A new batch of `payment_ids` (in the request's order).
#[derive(Debug)]
pub struct CreateSplitBatch {
    pub id: SplitBatchId,
    pub reference: Option<String>,
    pub request_id: String,
    pub payment_ids: Vec<PaymentId>,
}

impl Message for CreateSplitBatch {
    type Result = ActorResult<SplitBatchRecord>;
}

/// The gateway's outcome for one item (`Err`: refused, with the reason).
#[derive(Debug)]
pub struct FinishSplitItem {
    pub batch_id: SplitBatchId,
    pub payment_id: PaymentId,
    pub outcome: Result<(), String>,
}

impl Message for FinishSplitItem {
    type Result = ActorResult<SplitBatchRecord>;
}

fn item_param(i: usize) -> String {
    format!("items[{i}].payment_id")
}

impl MerchantActor {
    pub(super) fn payment_key(&self, id: &PaymentId) -> String {
        RecordKey::Payment { merchant: self.id.clone(), payment: id.clone() }.text()
    }

    pub(super) fn load_batch(&self, id: &SplitBatchId) -> ActorResult<Option<SplitBatchRecord>> {
        let key = RecordKey::Batch { merchant: self.id.clone(), batch: id.clone() }.encode();
        Ok(self.cell.store().get::<SplitBatchRecord>(key)?)
    }

    /// §7's checks 2–4, in order, items by index within each.
    fn batch_payments(&self, ids: &[PaymentId]) -> ActorResult<Vec<PaymentRecord>> {
        let store = self.cell.store();
        let mut payments = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let payment = store.get::<PaymentRecord>(self.payment_key(id))?;
            let Some(payment) = payment.filter(|_| !ids[..i].contains(id)) else {
                return Err(
                    Reject::invalid(item_param(i), "not a payment of this merchant, or repeated").into()
                );
            };
            payments.push(payment);
        }
        for (i, p) in payments.iter().enumerate() {
            if p.split.status != SplitStatus::NotSplit {
                return Err(Reject::AlreadySplit {
                    param: item_param(i),
                    message: format!("the payment's split is {}", p.split.status.as_str()),
                }
                .into());
            }
        }
        for (i, p) in payments.iter().enumerate() {
            let captured = matches!(p.status, PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded);
            if p.refunds_processing > 0 {
                return Err(Reject::InvalidStateOn {
                    param: item_param(i),
                    message: "a refund of the payment is processing".into(),
                }
                .into());
            }
            if !captured || !p.settled {
                return Err(Reject::InvalidStateOn {
                    param: item_param(i),
                    message: format!(
                        "a payment is split once it is SUCCEEDED or PARTIALLY_REFUNDED and settled (T+1); this one is {}{}",
                        p.status.as_str(),
                        if p.settled { "" } else { ", not settled" }
                    ),
                }
                .into());
            }
        }
        Ok(payments)
    }

    fn create_batch(
        &mut self,
        msg: CreateSplitBatch,
    ) -> ActorResult<(SplitBatchRecord, Option<FlushTicket>)> {
        if let Some(existing) = self.load_batch(&msg.id)? {
            return Ok((existing, None));
        }
        let mut record = self.cell.existing("merchant")?.clone();
        let payments = self.batch_payments(&msg.payment_ids)?;
        let now = self.now();
        let items: Vec<SplitItem> = payments
            .iter()
            .map(|p| SplitItem {
                payment_id: p.id.clone(),
                gateway_order_id: p.gateway_order_id.clone().unwrap_or_default(),
                status: SplitItemStatus::Processing,
                failure_reason: None,
                amounts: split::amounts_of(p),
            })
            .collect();
        let batch = SplitBatchRecord {
            id: msg.id,
            merchant_id: self.id.clone(),
            reference: msg.reference,
            request_id: msg.request_id,
            gateway_account: payments[0].gateway_account.clone(),
            status: BatchStatus::Processing,
            items,
            created_at: now,
            completed_at: None,
            version: 1,
        };
        let mut wb = WriteBatch::new();
        for mut p in payments {
            p.split.status = SplitStatus::Processing;
            p.split.batch_id = Some(batch.id.clone());
            p.version += 1;
            wb.put(self.payment_key(&p.id), &p)?;
        }
        let key = RecordKey::Batch { merchant: self.id.clone(), batch: batch.id.clone() };
        wb.expect_absent(key.tree(), key.encode());
        wb.put(key.encode(), &batch)?;
        let owner = Index::BatchOwner { batch: batch.id.clone() };
        wb.put_raw(owner.tree(), owner.encode(), self.id.as_bytes());
        let pending = Marker::BatchPending { batch: batch.id.clone() };
        let since = pelago_storage::Timestamp::now_real().unix_ms();
        wb.put_raw(pending.tree(), pending.encode(), format!("{} {since}", self.id).into_bytes());
        record.version += 1;
        let ticket = self.cell.persist(record, wb)?;
        Ok((batch, Some(ticket)))
    }

    fn finish_item(&mut self, msg: FinishSplitItem) -> ActorResult<(SplitBatchRecord, Option<FlushTicket>)> {
        let mut batch = self.load_batch(&msg.batch_id)?.ok_or(Reject::NotFound { what: "split batch" })?;
        let Some(index) = batch.items.iter().position(|i| i.payment_id == msg.payment_id) else {
            return Err(Reject::invalid("payment_id", "not an item of this batch").into());
        };
        if batch.items[index].status != SplitItemStatus::Processing {
            return Ok((batch, None)); // a repeat: one effect
        }
        let mut record = self.cell.existing("merchant")?.clone();
        let mut payment = self
            .cell
            .store()
            .get::<PaymentRecord>(self.payment_key(&msg.payment_id))?
            .ok_or(Reject::NotFound { what: "payment" })?;
        let now = self.now();
        let mut wb = WriteBatch::new();
        let event = match msg.outcome {
            Ok(()) => {
                let amounts = batch.items[index].amounts.clone();
                let entry = PostEntry {
                    source_id: payment.id.to_string(),
                    kind: EntryKind::Split,
                    postings: marketplace::split(&split::parties(&self.id, &amounts))?,
                    event: None,
                    index: vec![],
                };
                self.book(&mut record, &mut wb, entry)?;
                for a in &amounts {
                    payment.lines[a.line as usize].split_amount = Some(a.amount.value);
                }
                payment.split.status = SplitStatus::Executed;
                payment.split.executed_at = Some(now);
                batch.items[index].status = SplitItemStatus::Executed;
                "split.executed"
            }
            Err(reason) => {
                record.version += 1;
                payment.split.status = SplitStatus::NotSplit;
                payment.split.batch_id = None;
                batch.items[index].status = SplitItemStatus::Failed;
                batch.items[index].failure_reason = Some(reason);
                "split.failed"
            }
        };
        payment.version += 1;
        wb.put(self.payment_key(&payment.id), &payment)?;
        outbox::stage(&mut wb, &self.id, event, EventObject::Payment(Box::new(payment)), now)?;
        batch.version += 1;
        if !batch.is_processing() {
            batch.status = BatchStatus::Completed;
            batch.completed_at = Some(now);
            let pending = Marker::BatchPending { batch: batch.id.clone() };
            wb.delete(pending.tree(), pending.encode());
            outbox::stage(
                &mut wb,
                &self.id,
                "split_batch.completed",
                EventObject::SplitBatch(Box::new(batch.clone())),
                now,
            )?;
        }
        wb.put(RecordKey::Batch { merchant: self.id.clone(), batch: batch.id.clone() }.encode(), &batch)?;
        let ticket = self.cell.persist(record, wb)?;
        Ok((batch, Some(ticket)))
    }
}

durable_handler!(MerchantActor, cell, CreateSplitBatch => SplitBatchRecord, |act, msg| act.create_batch(msg));

durable_handler!(MerchantActor, cell, FinishSplitItem => SplitBatchRecord, |act, msg| act.finish_item(msg));
