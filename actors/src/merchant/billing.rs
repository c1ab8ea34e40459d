//! Monthly fees of master-account cards, a chunk of cards per commit
//! (DOMAIN.md §Monthly billing; the card-by-card path is `card::billing`).
//!
//! The billing run hands the merchant actor some of its cards as read from
//! the store: each record with its exact stored bytes. For each card the actor
//! decides as the card's own `BeginCharge` would ([`billable`]), books the fee
//! (refused whole below zero: `unpaid`) and stages the charge with its event.
//! The commit is fenced on every card's bytes and every charge being absent:
//! a card that changed since it was read (a top-up, a freeze, a charge begun
//! card by card) refuses the whole commit, nothing written, and the run
//! charges those cards one by one through their actors instead. Card records
//! are not written here, so a live card actor's own fence stays valid. A
//! charge and its booking are one commit: a crash leaves both or neither.

use actix::Message;
use pelago_storage::{FlushTicket, Money, Timestamp, Tree, WriteBatch};

use super::actor::{MerchantActor, PostEntry, cell};
use crate::{
    ActorError, Reject,
    card::{
        CardRecord,
        billing::{ChargeStatus, MonthlyCharge, billable, charge_event, charge_key},
    },
    error::ActorResult,
    ledger::{self, EntryKind},
    outbox::{self, EventObject},
    runtime::durable_handler,
};

/// One card of a [`ChargeMonthlyFees`] chunk.
#[derive(Debug)]
pub struct FeeCard {
    pub card: CardRecord,
    /// The card's bytes as read: the commit expects them unchanged.
    pub stored: Vec<u8>,
    /// The booking's source id (`mfee/{card}/{period}`).
    pub source_id: String,
}

/// Charges `period`'s monthly fee to each card of this merchant, in one commit.
#[derive(Debug)]
pub struct ChargeMonthlyFees {
    pub period: String,
    /// The period's cron instant: a card created after it is not billed for it.
    pub instant: Timestamp,
    pub cards: Vec<FeeCard>,
}

/// Per card, in order: how its charge stands, or `None` for a charge begun
/// card by card and not finished (the card's actor finishes it).
impl Message for ChargeMonthlyFees {
    type Result = ActorResult<Vec<Option<ChargeStatus>>>;
}

impl MerchantActor {
    fn charge_fees(
        &mut self,
        msg: ChargeMonthlyFees,
    ) -> ActorResult<(Vec<Option<ChargeStatus>>, Option<FlushTicket>)> {
        let mut record = self.cell.existing("merchant")?.clone();
        let mut batch = WriteBatch::new();
        let now = self.now();
        let mut statuses = Vec::with_capacity(msg.cards.len());
        for FeeCard { card, stored, source_id } in msg.cards {
            if card.merchant_id != self.id {
                return Err(Reject::state("a card of another merchant was sent to be billed").into());
            }
            let key = charge_key(&msg.period, &card.id);
            if let Some(existing) = self.cell.store().get::<MonthlyCharge>(&key)? {
                statuses.push((existing.status != ChargeStatus::Pending).then_some(existing.status));
                continue;
            }
            let fee =
                Money::new(record.fee_schedule(card.currency).map_or(0, |f| f.monthly_fixed), card.currency);
            let status = if billable(&card, msg.instant, fee.value) {
                let entry = PostEntry {
                    source_id,
                    kind: EntryKind::MonthlyFee,
                    postings: ledger::master_fee(&self.id, fee)?,
                    event: None,
                    index: vec![],
                };
                match self.book(&mut record, &mut batch, entry) {
                    Ok(_) => ChargeStatus::Charged,
                    Err(ActorError::Rejected(Reject::InsufficientFunds { .. })) => ChargeStatus::Unpaid,
                    Err(e) => return Err(e),
                }
            } else {
                ChargeStatus::Skipped
            };
            let charge = MonthlyCharge {
                card_id: card.id.clone(),
                merchant_id: self.id.clone(),
                period: msg.period.clone(),
                fee,
                status,
                order_id: None,
                created_at: now,
            };
            batch.expect_raw(Tree::Cards, card.id.as_bytes(), Some(stored));
            batch.expect_absent(Tree::BillingCharges, &key);
            batch.put(&key, &charge)?;
            if let Some(event) = charge_event(status) {
                outbox::stage(
                    &mut batch,
                    &self.id,
                    event,
                    EventObject::MonthlyCharge(Box::new(charge)),
                    now,
                )?;
            }
            statuses.push(Some(status));
        }
        if batch.is_empty() {
            return Ok((statuses, None));
        }
        let ticket = self.cell.persist_fenced(record, batch)?;
        Ok((statuses, Some(ticket)))
    }
}

durable_handler!(MerchantActor, cell, ChargeMonthlyFees => Vec<Option<ChargeStatus>>, |act, msg| act.charge_fees(msg));
