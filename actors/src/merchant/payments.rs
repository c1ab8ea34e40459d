//! The merchant actor as the single writer of its payments (MARKETPLACE.md
//! §6): a payment's change and the money it moves are one commit, fenced on
//! the merchant's bytes like every write of this actor. The move to
//! SUCCEEDED books `marketplace_collection` (once per payment: the entry's
//! `jop/` row is refused if present) with the T+1 row `paycoll/`; settling
//! moves that row to the run's `paysettled/`. The `paypending/` marker is
//! present exactly while `pending_action` is.

use crate::keys::{Index, Marker, RecordKey};
use actix::Message;
use pelago_storage::{FlushTicket, PaymentId, Timestamp, WriteBatch};

use super::actor::{MerchantActor, PostEntry, cell};
use crate::{
    error::{ActorResult, Reject},
    history::Source,
    ledger::{EntryKind, marketplace},
    outbox::{self, EventObject},
    payment::{PaymentAction, PaymentEvent, PaymentRecord, PaymentStatus, PendingAction},
    runtime::durable_handler,
};

/// Commits a new payment (PENDING, its checkout's request id stored, the
/// `create` action pending until the gateway answers). A repeat answers the stored one.
#[derive(Debug)]
pub struct CreatePayment(pub PaymentRecord);

impl Message for CreatePayment {
    type Result = ActorResult<PaymentRecord>;
}

/// One change of a payment.
#[derive(Debug, Clone)]
pub enum PaymentChange {
    /// The gateway created the checkout.
    CheckoutCreated { gateway_order_id: String, checkout_url: String },
    /// The gateway refused the checkout: DECLINED.
    CheckoutRefused { reason: String },
    /// What the gateway confirmed (by a query, or by answering a capture or cancel).
    Event(PaymentEvent),
    /// A capture or cancel is about to be asked with `request_id`
    /// (`pending_action` durable before the call). The same action already
    /// pending answers the payment as it is (the caller retries its request id).
    Begin { action: PaymentAction, request_id: String },
    /// The gateway refused the capture or cancel: nothing changes but the pending action.
    ActionRefused { action: PaymentAction },
    /// The T+1 run of `date` settles the payment (`settled`, `payment.settled`).
    Settle { date: String },
}

#[derive(Debug)]
pub struct UpdatePayment {
    pub id: PaymentId,
    pub change: PaymentChange,
}

/// The payment after an [`UpdatePayment`], and whether it changed.
#[derive(Debug, Clone)]
pub struct PaymentUpdated {
    pub payment: PaymentRecord,
    pub changed: bool,
}

impl Message for UpdatePayment {
    type Result = ActorResult<PaymentUpdated>;
}

impl MerchantActor {
    pub(super) fn load_payment(&self, id: &PaymentId) -> ActorResult<PaymentRecord> {
        let key = RecordKey::Payment { merchant: self.id.clone(), payment: id.clone() }.encode();
        Ok(self.cell.store().get::<PaymentRecord>(key)?.ok_or(Reject::NotFound { what: "payment" })?)
    }

    fn create_payment(
        &mut self,
        payment: PaymentRecord,
    ) -> ActorResult<(PaymentRecord, Option<FlushTicket>)> {
        if payment.merchant_id != self.id {
            return Err(Reject::invalid("merchant_id", "the payment belongs to another merchant").into());
        }
        if let Ok(existing) = self.load_payment(&payment.id) {
            return Ok((existing, None));
        }
        let mut batch = WriteBatch::new();
        batch.put_raw(
            Index::PaymentOwner { payment: payment.id.clone() }.tree(),
            Index::PaymentOwner { payment: payment.id.clone() }.encode(),
            self.id.as_bytes(),
        );
        let ticket = self.save_payment(None, &payment, batch, None, false)?;
        Ok((payment, ticket))
    }

    /// Stores `after` with its marker, its event (`event`, or the status's
    /// when it moved) and, when `collect`, the collection entry and its T+1 row.
    fn save_payment(
        &mut self,
        before: Option<&PaymentRecord>,
        after: &PaymentRecord,
        mut batch: WriteBatch,
        event: Option<&'static str>,
        collect: bool,
    ) -> ActorResult<Option<FlushTicket>> {
        let mut record = self.cell.existing("merchant")?.clone();
        let now = self.now();
        let key = RecordKey::Payment { merchant: self.id.clone(), payment: after.id.clone() };
        // Fenced on the merchant's bytes (the cell) like every write of this actor.
        if before.is_none() {
            batch.expect_absent(key.tree(), key.encode());
        }
        batch.put(key.encode(), after)?;
        let pending = Marker::PaymentPending { payment: after.id.clone() };
        match &after.pending_action {
            Some(action) => batch.put_raw(
                pending.tree(),
                pending.encode(),
                format!("{} {}", self.id, action.since_real.unix_ms()).into_bytes(),
            ),
            None => batch.delete(pending.tree(), pending.encode()),
        };
        if collect {
            let captured_at =
                after.captured_at.ok_or_else(|| Reject::state("a collection without a capture"))?;
            let row = Index::captured(captured_at, &after.id);
            let entry = PostEntry {
                source_id: after.id.to_string(),
                kind: EntryKind::MarketplaceCollection,
                postings: marketplace::collection(&after.parties())?,
                event: None,
                index: vec![(row.text(), self.id.as_bytes().to_vec())],
            };
            self.book(&mut record, &mut batch, entry)?;
        } else {
            record.version += 1;
        }
        let moved = before.is_none_or(|b| b.status != after.status);
        if let Some(event) = event.or_else(|| (moved && before.is_some()).then(|| after.status.event_type()))
        {
            outbox::stage(&mut batch, &self.id, event, EventObject::Payment(Box::new(after.clone())), now)?;
        }
        Ok(Some(self.cell.persist(record, batch)?))
    }

    fn update_payment(&mut self, msg: UpdatePayment) -> ActorResult<(PaymentUpdated, Option<FlushTicket>)> {
        let before = self.load_payment(&msg.id)?;
        let mut after = before.clone();
        let now = self.now();
        let mut batch = WriteBatch::new();
        let applied = match msg.change {
            PaymentChange::CheckoutCreated { gateway_order_id, checkout_url } => {
                checkout_created(&mut after, gateway_order_id, checkout_url)
            }
            PaymentChange::CheckoutRefused { reason } => checkout_refused(&mut after, reason, now)?,
            PaymentChange::Event(e) => gateway_event(&mut after, e, now)?,
            PaymentChange::Begin { action, request_id } => begin_action(&mut after, action, request_id, now)?,
            PaymentChange::ActionRefused { action } => action_refused(&mut after, action),
            PaymentChange::Settle { date } => self.settle_payment(&mut after, date, now, &mut batch)?,
        };
        let Applied::Saved { event, collect } = applied else {
            return Ok((PaymentUpdated { payment: before, changed: false }, None));
        };
        let ticket = self.save_payment(Some(&before), &after, batch, event, collect)?;
        Ok((PaymentUpdated { payment: after, changed: true }, ticket))
    }

    /// T+1: settled once, its `paycoll/` row swapped for the run's `paysettled/` row.
    fn settle_payment(
        &self,
        after: &mut PaymentRecord,
        date: String,
        now: Timestamp,
        batch: &mut WriteBatch,
    ) -> ActorResult<Applied> {
        if after.settled {
            return Ok(Applied::Unchanged);
        }
        if !matches!(after.status, PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded) {
            return Err(Reject::state(format!("a {} payment is not settled", after.status.as_str())).into());
        }
        let captured_at = after.captured_at.ok_or_else(|| Reject::state("settled without a capture"))?;
        after.settled = true;
        after.settled_at = Some(now);
        after.version += 1;
        let row = Index::captured(captured_at, &after.id);
        batch.delete(row.tree(), row.encode());
        let settled = Index::PaymentSettled { date, payment: after.id.clone() };
        batch.put_raw(settled.tree(), settled.encode(), self.id.as_bytes());
        Ok(Applied::Saved { event: Some("payment.settled"), collect: false })
    }
}

/// What an [`UpdatePayment`] did: nothing (a repeat), or a change to save
/// with its event (else the status's own, if it moved) and whether the
/// collection is booked.
enum Applied {
    Unchanged,
    Saved { event: Option<&'static str>, collect: bool },
}

const SAVED: Applied = Applied::Saved { event: None, collect: false };

/// The gateway created the checkout (once, while PENDING).
fn checkout_created(after: &mut PaymentRecord, gateway_order_id: String, checkout_url: String) -> Applied {
    if after.gateway_order_id.is_some() || after.status != PaymentStatus::Pending {
        return Applied::Unchanged;
    }
    after.gateway_order_id = Some(gateway_order_id);
    after.checkout_url = Some(checkout_url);
    if after.pending_action.as_ref().is_some_and(|a| a.kind == PaymentAction::Create) {
        after.pending_action = None;
    }
    after.version += 1;
    SAVED
}

/// The gateway refused the checkout: DECLINED (once, while PENDING).
fn checkout_refused(after: &mut PaymentRecord, reason: String, now: Timestamp) -> ActorResult<Applied> {
    if after.gateway_order_id.is_some() || after.status != PaymentStatus::Pending {
        return Ok(Applied::Unchanged);
    }
    after.decline(reason, now)?;
    after.pending_action = None;
    Ok(SAVED)
}

/// A gateway-confirmed event: §6's row, and the pending action it ends.
fn gateway_event(after: &mut PaymentRecord, e: PaymentEvent, now: Timestamp) -> ActorResult<Applied> {
    let applied = after.apply(e, Source::Gateway, now)?;
    let done = match e {
        PaymentEvent::Captured => Some(PaymentAction::Capture),
        PaymentEvent::Canceled => Some(PaymentAction::Cancel),
        _ => None,
    };
    let ends_action = after.pending_action.as_ref().is_some_and(|a| {
        Some(a.kind) == done || !matches!(after.status, PaymentStatus::Pending | PaymentStatus::Authorized)
    });
    if ends_action {
        after.pending_action = None;
        if !applied.changed {
            after.version += 1;
        }
    }
    if !applied.changed && !ends_action {
        return Ok(Applied::Unchanged);
    }
    Ok(Applied::Saved { event: None, collect: applied.collect })
}

/// A capture or cancel begun with its request id (one action at a time, only
/// where §6 allows it, only once the checkout exists).
fn begin_action(
    after: &mut PaymentRecord,
    action: PaymentAction,
    request_id: String,
    now: Timestamp,
) -> ActorResult<Applied> {
    if let Some(pending) = &after.pending_action {
        if pending.kind == action {
            return Ok(Applied::Unchanged);
        }
        return Err(Reject::state(format!(
            "the payment's {} is still awaiting the gateway",
            pending.kind.as_str()
        ))
        .into());
    }
    let event = match action {
        PaymentAction::Capture => PaymentEvent::Captured,
        PaymentAction::Cancel => PaymentEvent::Canceled,
        PaymentAction::Create => return Err(Reject::state("a checkout is created once").into()),
    };
    if !event.allowed_from(after.status, after.capture) {
        return Err(Reject::state(format!(
            "the payment is {}; it cannot be {}",
            after.status.as_str(),
            if action == PaymentAction::Capture { "captured" } else { "canceled" }
        ))
        .into());
    }
    if after.gateway_order_id.is_none() {
        return Err(Reject::state("the payment's checkout is not created yet").into());
    }
    after.pending_action =
        Some(PendingAction { kind: action, request_id, since: now, since_real: Timestamp::now_real() });
    after.version += 1;
    Ok(SAVED)
}

/// The gateway refused the pending action: it ends, the payment unchanged otherwise.
fn action_refused(after: &mut PaymentRecord, action: PaymentAction) -> Applied {
    if after.pending_action.as_ref().is_none_or(|a| a.kind != action) {
        return Applied::Unchanged;
    }
    after.pending_action = None;
    after.version += 1;
    SAVED
}

durable_handler!(MerchantActor, cell, CreatePayment => PaymentRecord, |act, msg| act.create_payment(msg.0));

durable_handler!(MerchantActor, cell, UpdatePayment => PaymentUpdated, |act, msg| act.update_payment(msg));
