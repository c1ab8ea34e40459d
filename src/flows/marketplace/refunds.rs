//! Refunds of marketplace payments (MARKETPLACE.md §7, §9): the merchant actor
//! checks the refund (§7's checks in order) and commits it with its
//! `marketplace_refund` entry and the request id before the gateway is asked;
//! a split-only refund (channel 0) asks nothing. The gateway's answer is then
//! recorded by the actor: succeeded, or failed with the entry mirrored. An
//! unknown answer leaves the refund `processing` (202) until
//! [`resolve_pending`] asks again with the same request id. Failpoints
//! `refund.after_fence` (booked, gateway not asked) and `refund.after_gateway`
//! (refunded at the gateway, not recorded).

use pelago_actors::keys::{self, Index, Marker, RecordKey};
use std::sync::Arc;

use pelago_actors::{
    merchant::refunds::{CreateRefund, FinishRefund},
    payment::{
        PaymentRecord,
        refund::{RefundAsk, RefundRecord, RefundStatus},
    },
    ports::{Outcome, Refund},
};
use pelago_storage::{MerchantId, PaymentId, RefundId};

use super::Found;
use crate::{app::Core, flows::Error, flows::bootstrap};

/// A refund, its payment as it is after it, and whether the gateway's answer is unknown (202).
pub struct Answer {
    pub refund: RefundRecord,
    pub payment: PaymentRecord,
    pub processing: bool,
}

/// `POST /v1/payments/{id}/refunds` (and `cancel-or-refund`'s refund of the
/// rest: `ask` `None`), the body's shape checked by HTTP.
pub async fn create(
    app: &Arc<Core>,
    merchant: &MerchantId,
    raw_payment: &str,
    ask: Option<RefundAsk>,
    binding: Option<String>,
) -> Result<Answer, Error> {
    let payment = super::payments::load_owned(app, merchant, raw_payment)?;
    let id = super::bound_id(app, binding.as_ref(), RefundId::generate()).await?;
    if let Some(existing) = find(app, merchant, &payment.id, &id)? {
        return answer(app, existing);
    }
    let ask = ask.unwrap_or_else(|| RefundAsk::rest_of(&payment));
    let msg = CreateRefund {
        id,
        payment_id: payment.id.clone(),
        ask,
        request_id: format!("req_{}", pelago_storage::ids::new_ulid()),
    };
    let refund = app.actors.ask_merchant(merchant, msg).await??;
    crate::failpoint::hit("refund.after_fence");
    send(app, refund).await
}

fn answer(app: &Core, refund: RefundRecord) -> Result<Answer, Error> {
    let payment = super::payments::load_owned(app, &refund.merchant_id, refund.payment_id.as_str())?;
    Ok(Answer { processing: refund.status == RefundStatus::Processing, refund, payment })
}

/// Asks the gateway for a processing refund's channel portion with its stored
/// request id and records the answer.
async fn send(app: &Core, refund: RefundRecord) -> Result<Answer, Error> {
    if refund.status != RefundStatus::Processing {
        return answer(app, refund);
    }
    let (_, account) =
        bootstrap::account_by_id(app, &refund.gateway_account).await?.ok_or_else(Error::internal)?;
    let req = Refund {
        request_id: refund.request_id.clone(),
        account,
        gateway_order_id: refund.gateway_order_id.clone(),
        amount: refund.amount,
    };
    let outcome = match app.upstreams.payments.refund_payment(req).await {
        Outcome::Done(r) => {
            crate::failpoint::hit("refund.after_gateway");
            Ok(Some(r.id))
        }
        Outcome::Declined { reason } => Err(reason),
        Outcome::Unknown { detail } => {
            tracing::warn!(refund_id = %refund.id, detail, "refund outcome unknown; retrying later");
            return answer(app, refund);
        }
    };
    let msg = FinishRefund { payment_id: refund.payment_id.clone(), refund_id: refund.id.clone(), outcome };
    let refund = app.actors.ask_merchant(&refund.merchant_id.clone(), msg).await??;
    answer(app, refund)
}

fn find(
    app: &Core,
    merchant: &MerchantId,
    payment: &PaymentId,
    id: &RefundId,
) -> Result<Option<RefundRecord>, Error> {
    let key = RecordKey::Refund { merchant: merchant.clone(), payment: payment.clone(), refund: id.clone() };
    Ok(app.store.get::<RefundRecord>(key.encode())?)
}

/// A refund of this merchant, or 404.
pub fn load_owned(app: &Core, merchant: &MerchantId, raw: &str) -> Result<RefundRecord, Error> {
    let id = RefundId::parse(raw).map_err(|_| Error::not_found("refund"))?;
    let owner = Index::RefundOwner { refund: id.clone() };
    let Some(payment) = app.store.get_raw(owner.tree(), owner.encode())? else {
        return Err(Error::not_found("refund"));
    };
    let payment = PaymentId::parse(&String::from_utf8_lossy(&payment)).map_err(|_| Error::internal())?;
    find(app, merchant, &payment, &id)?.ok_or_else(|| Error::not_found("refund"))
}

/// One resolver pass: refunds whose gateway answer is unknown, asked again
/// with their request id once the grace passed (the gateway answers a repeat
/// as it decided it: a refund is made once).
pub async fn resolve_pending(app: &Arc<Core>) -> Result<usize, Error> {
    let read = |key: &Marker, value: &str| {
        let Marker::RefundPending { refund: id } = key else { return Ok(Found::Unreadable) };
        let mut words = value.split(' ');
        let (Some(Ok(merchant)), Some(Ok(payment))) =
            (words.next().map(MerchantId::parse), words.nth(1).map(PaymentId::parse))
        else {
            return Ok(Found::Unreadable);
        };
        Ok(find(app, &merchant, &payment, id)?.map_or(Found::Gone, Found::Record))
    };
    super::resolve_markers(app, keys::RFDPENDING, read, |refund: RefundRecord| async move {
        let id = refund.id.clone();
        Ok(match send(app, refund).await {
            Ok(a) => !a.processing,
            Err(e) => {
                tracing::warn!(refund_id = %id, error = %e, "resolving a refund failed; retrying later");
                false
            }
        })
    })
    .await
}
