//! Batch split (MARKETPLACE.md §7, §9): the merchant actor checks the items
//! and commits the batch — each payment `processing`, the request id and the
//! `spbpending/` marker — before the one gateway request; each item's outcome
//! is then recorded by the actor (the `split` entry once per payment). An
//! unknown answer leaves the items `processing` (202) until
//! [`resolve_pending`] sends the batch again with the same request id.

use pelago_actors::keys::{self, Marker, RecordKey};
use std::sync::Arc;

use pelago_actors::{
    merchant::splits::{CreateSplitBatch, FinishSplitItem},
    payment::{
        gateway::{SplitLine, SplitRequest},
        split::{SplitBatchRecord, SplitItemStatus},
    },
    ports::Outcome,
};
use pelago_storage::{MerchantId, Money, PaymentId, SplitBatchId};

use super::Found;
use crate::{app::Core, flows::Error, flows::bootstrap};

/// A batch and whether an item is still processing (202).
pub struct Answer {
    pub batch: SplitBatchRecord,
    pub processing: bool,
}

fn answer(batch: SplitBatchRecord) -> Answer {
    Answer { processing: batch.is_processing(), batch }
}

/// `POST /v1/split-batches` after the body's checks (1..100 items, reference).
pub async fn create(
    app: &Arc<Core>,
    merchant: &MerchantId,
    raw_ids: &[String],
    reference: Option<String>,
    binding: Option<String>,
) -> Result<Answer, Error> {
    // An unreadable id is no payment of this merchant: a fresh id (never stored)
    // lets the actor answer it in its place among the items.
    let ids: Vec<PaymentId> =
        raw_ids.iter().map(|raw| PaymentId::parse(raw).unwrap_or_else(|_| PaymentId::generate())).collect();
    let id = super::bound_id(app, binding.as_ref(), SplitBatchId::generate()).await?;
    if let Some(existing) = find(app, merchant, &id)? {
        return Ok(answer(existing));
    }
    let msg = CreateSplitBatch {
        id,
        reference,
        request_id: format!("req_{}", pelago_storage::ids::new_ulid()),
        payment_ids: ids,
    };
    let batch = app.actors.ask_merchant(merchant, msg).await??;
    crate::failpoint::hit("split.after_fence");
    send(app, batch).await
}

/// Sends the batch's processing items with its request id and records each outcome.
async fn send(app: &Core, batch: SplitBatchRecord) -> Result<Answer, Error> {
    let items: Vec<SplitLine> = batch
        .items
        .iter()
        .filter(|i| i.status == SplitItemStatus::Processing)
        .map(|i| {
            let total = i.amounts.iter().map(|a| a.amount.value).sum::<i64>();
            let currency = i.amounts.first().map(|a| a.amount.currency);
            (i, total, currency)
        })
        .filter_map(|(i, total, currency)| {
            Some(SplitLine {
                gateway_order_id: i.gateway_order_id.clone(),
                payment_id: i.payment_id.clone(),
                amount: Money::new(total, currency?),
            })
        })
        .collect();
    let mut outcomes: Vec<(PaymentId, Result<(), String>)> = batch
        .items
        .iter()
        .filter(|i| i.status == SplitItemStatus::Processing && i.amounts.is_empty())
        .map(|i| (i.payment_id.clone(), Ok(()))) // refunded whole: nothing to move
        .collect();
    if !items.is_empty() {
        let (_, account) =
            bootstrap::account_by_id(app, &batch.gateway_account).await?.ok_or_else(Error::internal)?;
        let req = SplitRequest {
            account,
            request_id: batch.request_id.clone(),
            batch_id: batch.id.to_string(),
            items: items.clone(),
        };
        match app.upstreams.payments.split(req).await {
            Outcome::Done(results) => {
                crate::failpoint::hit("split.after_gateway");
                for item in &items {
                    let Some(result) = results.iter().find(|r| r.payment_id == item.payment_id.as_str())
                    else {
                        tracing::warn!(batch_id = %batch.id, payment_id = %item.payment_id, "the gateway's split answer omits an item; asking again later");
                        continue;
                    };
                    outcomes.push((item.payment_id.clone(), result.outcome.clone()));
                }
            }
            Outcome::Declined { reason } => {
                outcomes.extend(items.iter().map(|i| (i.payment_id.clone(), Err(reason.clone()))));
            }
            Outcome::Unknown { detail } => {
                tracing::warn!(batch_id = %batch.id, detail, "split outcome unknown; retrying later");
            }
        }
    }
    let mut latest = batch;
    for (payment_id, outcome) in outcomes {
        let msg = FinishSplitItem { batch_id: latest.id.clone(), payment_id, outcome };
        latest = app.actors.ask_merchant(&latest.merchant_id.clone(), msg).await??;
    }
    Ok(answer(latest))
}

fn find(app: &Core, merchant: &MerchantId, id: &SplitBatchId) -> Result<Option<SplitBatchRecord>, Error> {
    let key = RecordKey::Batch { merchant: merchant.clone(), batch: id.clone() };
    Ok(app.store.get::<SplitBatchRecord>(key.encode())?)
}

/// A split batch of this merchant, or 404.
pub fn load_owned(app: &Core, merchant: &MerchantId, raw: &str) -> Result<SplitBatchRecord, Error> {
    let id = SplitBatchId::parse(raw).map_err(|_| Error::not_found("split batch"))?;
    find(app, merchant, &id)?.ok_or_else(|| Error::not_found("split batch"))
}

/// One resolver pass: batches with items still processing, sent again with
/// their request id once the grace passed (the gateway answers a repeat as
/// it decided it: an item is never split twice).
pub async fn resolve_pending(app: &Arc<Core>) -> Result<usize, Error> {
    let read = |key: &Marker, value: &str| {
        let Marker::BatchPending { batch: id } = key else { return Ok(Found::Unreadable) };
        let Ok(merchant) = MerchantId::parse(value.split(' ').next().unwrap_or_default()) else {
            return Ok(Found::Unreadable);
        };
        Ok(find(app, &merchant, id)?.map_or(Found::Gone, Found::Record))
    };
    super::resolve_markers(app, keys::SPBPENDING, read, |batch: SplitBatchRecord| async move {
        let id = batch.id.clone();
        Ok(match send(app, batch).await {
            Ok(a) => !a.processing,
            Err(e) => {
                tracing::warn!(batch_id = %id, error = %e, "resolving a split batch failed; retrying later");
                false
            }
        })
    })
    .await
}
