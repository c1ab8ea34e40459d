//! Monthly fees, one charge per (card, period), through the card's actor so a
//! fee never races a top-up or a freeze (DOMAIN.md §Monthly billing).
//!
//! `BeginCharge` records the charge `Pending` (or says it exists / the card is
//! not billable); the binary books the fee through the merchant actor (once
//! per `mfee/{card}/{period}` source) or creates a `monthly_fee` order, then
//! `FinishCharge` records the outcome and its event. A crash in between
//! leaves a `Pending` charge that the next attempt finishes: the booking is
//! idempotent, so nothing is charged twice.

use actix::Message;
use pelago_storage::{CardId, FlushTicket, MerchantId, Money, Timestamp, WriteBatch};
use serde::{Deserialize, Serialize};

use super::actor::{CardActor, cell};
use crate::{
    error::ActorResult,
    outbox::{self, EventObject},
    runtime::durable_handler,
};

crate::wire_enum! {
    pub enum ChargeStatus {
        Pending = "pending",
        Charged = "charged",
        Unpaid = "unpaid",
        /// Gateway mode: a `monthly_fee` order was created.
        Ordered = "ordered",
        /// The card was not billable (not active or frozen) or no fee applies.
        Skipped = "skipped",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthlyCharge {
    pub card_id: CardId,
    pub merchant_id: MerchantId,
    pub period: String,
    pub fee: Money,
    pub status: ChargeStatus,
    pub order_id: Option<pelago_storage::OrderId>,
    pub created_at: Timestamp,
}

pelago_storage::record!(MonthlyCharge, BillingCharges, 1);

pub fn charge_key(period: &str, card: &CardId) -> String {
    format!("{period}/{card}")
}

/// Whether `card` owes `period`'s fee: billable (active or frozen), created by
/// the period's `instant`, and a fee applies.
pub fn billable(card: &super::CardRecord, instant: Timestamp, fee_minor: i64) -> bool {
    card.status.is_billable() && card.created_at <= instant && fee_minor > 0
}

/// The event a finished charge sends, if any.
pub fn charge_event(status: ChargeStatus) -> Option<&'static str> {
    match status {
        ChargeStatus::Charged => Some("monthly_fee.charged"),
        ChargeStatus::Unpaid => Some("monthly_fee.unpaid"),
        _ => None,
    }
}

/// Records the charge for `period` if the card is billable and none exists.
#[derive(Debug)]
pub struct BeginCharge {
    pub period: String,
    /// The fee for the card's currency (0: nothing to charge).
    pub fee_minor: i64,
    /// The period's cron instant: a card created after it is not billed for it.
    pub instant: Timestamp,
}
impl Message for BeginCharge {
    type Result = ActorResult<MonthlyCharge>;
}

/// Records how the charge ended.
#[derive(Debug)]
pub struct FinishCharge {
    pub period: String,
    pub status: ChargeStatus,
    pub order_id: Option<pelago_storage::OrderId>,
}
impl Message for FinishCharge {
    type Result = ActorResult<MonthlyCharge>;
}

impl CardActor {
    fn begin_charge(&mut self, msg: BeginCharge) -> ActorResult<(MonthlyCharge, Option<FlushTicket>)> {
        let card = self.cell_mut().existing("card")?.clone();
        let key = charge_key(&msg.period, &card.id);
        if let Some(existing) = self.store().get::<MonthlyCharge>(&key)? {
            return Ok((existing, None));
        }
        let status = if billable(&card, msg.instant, msg.fee_minor) {
            ChargeStatus::Pending
        } else {
            ChargeStatus::Skipped
        };
        let charge = MonthlyCharge {
            card_id: card.id.clone(),
            merchant_id: card.merchant_id.clone(),
            period: msg.period,
            fee: Money::new(msg.fee_minor, card.currency),
            status,
            order_id: None,
            created_at: self.now(),
        };
        let mut batch = WriteBatch::new();
        batch.put(&key, &charge)?;
        let mut next = card;
        next.version += 1;
        let ticket = self.cell_mut().persist(next, batch)?;
        Ok((charge, Some(ticket)))
    }

    fn finish_charge(&mut self, msg: FinishCharge) -> ActorResult<(MonthlyCharge, Option<FlushTicket>)> {
        let card = self.cell_mut().existing("card")?.clone();
        let key = charge_key(&msg.period, &card.id);
        let mut charge = self
            .store()
            .get::<MonthlyCharge>(&key)?
            .ok_or(crate::Reject::NotFound { what: "monthly charge" })?;
        if charge.status != ChargeStatus::Pending {
            return Ok((charge, None));
        }
        charge.status = msg.status;
        charge.order_id = msg.order_id;
        let now = self.now();
        let mut batch = WriteBatch::new();
        batch.put(&key, &charge)?;
        if let Some(event) = charge_event(msg.status) {
            outbox::stage(
                &mut batch,
                &charge.merchant_id,
                event,
                EventObject::MonthlyCharge(Box::new(charge.clone())),
                now,
            )?;
        }
        let mut next = card;
        next.version += 1;
        let ticket = self.cell_mut().persist(next, batch)?;
        Ok((charge, Some(ticket)))
    }
}

durable_handler!(CardActor, cell, BeginCharge => MonthlyCharge, |act, msg| act.begin_charge(msg));

durable_handler!(CardActor, cell, FinishCharge => MonthlyCharge, |act, msg| act.finish_charge(msg));
