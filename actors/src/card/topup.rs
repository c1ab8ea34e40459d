//! Top-ups of a card (master-account mode): a saga across this card's actor
//! and the merchant's actor. API.md §4 Top-ups, DOMAIN.md §Actors.
//!
//! 1. `BeginTopup` (card actor): the top-up is committed `processing`, phase
//!    `Debiting`, with a marker `topup/{id}` and its channel request id.
//! 2. The merchant actor books `merchant:available −(A+F)` once per top-up id
//!    (the binary does this; 402 → `AbortTopup` removes the top-up whole).
//! 3. `FundTopup` (card actor, atomic): the channel funds the card with the
//!    stored request id → `succeeded`; a refusal → `failed` and a reversal
//!    marker `topuprev/{id}` in the same commit (the binary books the mirror
//!    entry); unknown → stays `processing` (phase `Funding`), 202, and
//!    `ResolveTopup` asks the channel until it knows. Never guessed.

use actix::{ActorFutureExt, AtomicResponse, Context, Handler, Message, WrapFuture};
use pelago_storage::{CardId, FlushTicket, MerchantId, Money, Record, Timestamp, TopupId, Tree, WriteBatch};
use serde::{Deserialize, Serialize};

use super::{
    actor::{CardActor, cell},
    ops::MoneyMarker,
    state::{CardRecord, CardStatus},
};
use crate::{
    error::{ActorError, ActorResult, Reject},
    history::{History, Source, Stateful},
    keys::{Index, Marker},
    outbox::{self, EventObject},
    ports::{CardFunded, ChannelOperation, FundCard, Outcome},
    runtime::EntityCell,
    runtime::durable_handler,
};

crate::state_machine! {
    /// DOMAIN.md §State machines (Top-up). In master-account mode a top-up
    /// starts in `processing` with the debit already made.
    pub enum TopupStatus ("top-up") {
        PendingPayment = "pending_payment",
        Processing = "processing",
        Succeeded = "succeeded",
        Failed = "failed",
        Canceled = "canceled",
    }
    edges {
        PendingPayment -> Processing,
        PendingPayment -> Canceled,
        Processing -> Succeeded,
        Processing -> Failed,
    }
}

/// Where an unfinished top-up stands (internal; not on the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopupPhase {
    /// Committed; the merchant's debit may or may not be booked.
    Debiting,
    /// Debited; the channel call may or may not have applied.
    Funding,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopupRecord {
    pub id: TopupId,
    pub card_id: CardId,
    pub merchant_id: MerchantId,
    pub amount: Money,
    pub fee: Money,
    pub total: Money,
    pub reference: Option<String>,
    /// Gateway mode: the checkout order that pays for it.
    pub order: Option<pelago_storage::OrderId>,
    pub status: TopupStatus,
    pub phase: TopupPhase,
    pub request_id: String,
    pub failure_reason: Option<String>,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub version: u64,
    pub status_history: History<TopupStatus>,
}

impl Record for TopupRecord {
    const TREE: Tree = Tree::Topups;
    const SCHEMA_VERSION: u8 = 1;
}

crate::stateful!(TopupRecord, TopupStatus);

impl TopupRecord {
    /// A new top-up of `card` for `(amount, fee, total)`, in `status` since
    /// `now` (gateway mode: paid for by `order`). Both modes build it here.
    pub fn new(
        id: TopupId,
        card: &CardRecord,
        (amount, fee, total): (Money, Money, Money),
        reference: Option<String>,
        order: Option<pelago_storage::OrderId>,
        status: TopupStatus,
        now: Timestamp,
    ) -> TopupRecord {
        TopupRecord {
            id,
            card_id: card.id.clone(),
            merchant_id: card.merchant_id.clone(),
            amount,
            fee,
            total,
            reference,
            order,
            status,
            phase: TopupPhase::Debiting,
            request_id: format!("req_{}", pelago_storage::ids::new_ulid()),
            failure_reason: None,
            created_at: now,
            completed_at: None,
            version: 1,
            status_history: History::created(status, Source::Merchant, now),
        }
    }
}

/// The failure reason of a top-up the resolver found begun but never debited.
pub const NOT_DEBITED: &str = "the request stopped before the debit; nothing was charged";

pub fn topup_key(card: &CardId, id: &TopupId) -> String {
    format!("{card}/{id}")
}

#[derive(Debug)]
pub struct BeginTopup {
    pub id: TopupId,
    pub amount: Money,
    pub fee: Money,
    pub reference: Option<String>,
    /// The caller's Idempotency-Key binding, written with the top-up (a retry
    /// after a crash finds this top-up instead of debiting again).
    pub binding: Option<String>,
}
impl Message for BeginTopup {
    type Result = ActorResult<TopupRecord>;
}

/// The debit was refused (402): the top-up never happened.
#[derive(Debug)]
pub struct AbortTopup(pub TopupId);
impl Message for AbortTopup {
    type Result = ActorResult<()>;
}

/// The debit is booked: fund the card at the channel.
#[derive(Debug)]
pub struct FundTopup(pub TopupId);
impl Message for FundTopup {
    type Result = ActorResult<TopupRecord>;
}

/// The resolver: finish a top-up whose channel outcome is unknown. `debited`
/// says whether the merchant's debit is booked (only asked for `Debiting`).
#[derive(Debug)]
pub struct ResolveTopup {
    pub id: TopupId,
    pub debited: bool,
}
impl Message for ResolveTopup {
    type Result = ActorResult<TopupRecord>;
}

impl CardActor {
    pub(super) fn load_topup(&self, id: &TopupId) -> ActorResult<TopupRecord> {
        let card = self.store_card_id()?;
        Ok(self
            .store()
            .get::<TopupRecord>(topup_key(&card, id))?
            .ok_or(Reject::NotFound { what: "top-up" })?)
    }

    fn store_card_id(&self) -> ActorResult<CardId> {
        Ok(self.record_ref().ok_or(Reject::NotFound { what: "card" })?.id.clone())
    }

    fn begin_topup(&mut self, msg: BeginTopup) -> ActorResult<(TopupRecord, Option<FlushTicket>)> {
        let mut card = self.cell_mut().existing("card")?.clone();
        if card.status != CardStatus::Active {
            return Err(
                Reject::state(format!("cannot top up a card that is {}", card.status.as_str())).into()
            );
        }
        if msg.amount.currency != card.currency {
            return Err(Reject::invalid("amount.currency", "the card's currency is different").into());
        }
        let total = msg
            .amount
            .checked_add(msg.fee)
            .map_err(|_| Reject::invalid("amount", "amount + fee overflows"))?;
        let now = self.now();
        let amounts = (msg.amount, msg.fee, total);
        let topup = TopupRecord::new(
            msg.id.clone(),
            &card,
            amounts,
            msg.reference,
            None,
            TopupStatus::Processing,
            now,
        );
        let mut batch = WriteBatch::new();
        batch.expect_absent(Tree::Topups, topup_key(&card.id, &topup.id));
        batch.put(topup_key(&card.id, &topup.id), &topup)?;
        batch.put_raw(Tree::Index, Index::Topup { topup: topup.id.clone() }.encode(), card.id.as_bytes());
        batch.put_raw(
            Tree::Operations,
            Marker::Topup { topup: topup.id.clone() }.encode(),
            // Real time: the resolver's grace is a timeout, not service-clock time.
            marker_value_bound(&card.id, Timestamp::now_real(), msg.binding.as_deref()),
        );
        if let Some(b) = &msg.binding {
            batch.expect_absent(Tree::Index, b);
            batch.put_raw(Tree::Index, b, topup.id.as_bytes());
        }
        card.version += 1; // the card's actor wrote: keep its fence moving
        let ticket = self.cell_mut().persist(card, batch)?;
        Ok((topup, Some(ticket)))
    }

    fn abort_topup(&mut self, id: &TopupId) -> ActorResult<((), Option<FlushTicket>)> {
        let card = self.cell_mut().existing("card")?.clone();
        let topup = self.load_topup(id)?;
        if topup.phase != TopupPhase::Debiting {
            return Err(Reject::state("the top-up is past its debit").into());
        }
        let mut batch = WriteBatch::new();
        batch.delete(Tree::Topups, topup_key(&card.id, id));
        batch.delete(Tree::Index, Index::Topup { topup: id.clone() }.encode());
        // A retry of the same request may run again: it never debited.
        let marker = self.store().get_raw(Tree::Operations, Marker::Topup { topup: id.clone() }.encode())?;
        if let Some(binding) = marker.as_deref().and_then(marker_binding) {
            batch.expect_raw(Tree::Index, &binding, Some(id.as_bytes().to_vec()));
            batch.delete(Tree::Index, binding);
        }
        batch.delete(Tree::Operations, Marker::Topup { topup: id.clone() }.encode());
        let mut next = card;
        next.version += 1;
        let ticket = self.cell_mut().persist(next, batch)?;
        Ok(((), Some(ticket)))
    }

    /// The resolver's verdict on a top-up left in `Debiting` whose debit the
    /// merchant actor has voided (`VoidEntry`: it was never booked and now
    /// never can be): it failed (`processing → failed`, `topup.failed`), its
    /// marker goes. It is not deleted: a retry of its request may have been
    /// answered with it, so it stays visible, and its Idempotency-Key keeps
    /// answering it.
    fn fail_undebited(&mut self, id: &TopupId) -> ActorResult<(TopupRecord, Option<FlushTicket>)> {
        let card = self.cell_mut().existing("card")?.clone();
        let mut topup = self.load_topup(id)?;
        if topup.phase != TopupPhase::Debiting {
            return Ok((topup, None));
        }
        let now = self.now();
        topup.transition(TopupStatus::Failed, Some(NOT_DEBITED.into()), Source::System, now)?;
        self.close(card, topup, WriteBatch::new(), Some(NOT_DEBITED.into()), "topup.failed", now)
    }

    /// Closes a top-up that just moved to its final status: done, its reason,
    /// its marker removed and its event staged, in one commit with `batch`.
    fn close(
        &mut self,
        mut card: super::state::CardRecord,
        mut topup: TopupRecord,
        mut batch: WriteBatch,
        reason: Option<String>,
        event: &str,
        now: Timestamp,
    ) -> ActorResult<(TopupRecord, Option<FlushTicket>)> {
        topup.phase = TopupPhase::Done;
        topup.failure_reason = reason;
        topup.completed_at = Some(now);
        batch.put(topup_key(&card.id, &topup.id), &topup)?;
        batch.delete(Tree::Operations, Marker::Topup { topup: topup.id.clone() }.encode());
        outbox::stage(
            &mut batch,
            &card.merchant_id,
            event,
            EventObject::Topup(Box::new(topup.clone())),
            now,
        )?;
        card.version += 1;
        let ticket = self.cell_mut().persist(card, batch)?;
        Ok((topup, Some(ticket)))
    }

    /// Moves a debited top-up to `Funding` (durably) and says what to ask the channel.
    fn prepare_funding(
        &mut self,
        id: &TopupId,
    ) -> ActorResult<(TopupRecord, Option<FundCard>, Option<FlushTicket>)> {
        let card = self.cell_mut().existing("card")?.clone();
        let mut topup = self.load_topup(id)?;
        if topup.phase == TopupPhase::Done {
            return Ok((topup, None, None));
        }
        if card.status != CardStatus::Active && topup.phase == TopupPhase::Debiting {
            // Frozen or deleted since the top-up began, and the channel was never
            // called: refuse without calling it. In `Funding` the channel may have
            // applied it already: it is asked (below), never guessed.
            let (t, ticket) = self.settle_funding(
                topup,
                Outcome::Declined { reason: format!("the card is {}", card.status.as_str()) },
            )?;
            return Ok((t, None, ticket));
        }
        let req = FundCard {
            request_id: topup.request_id.clone(),
            channel_card_id: card
                .channel_card_id
                .clone()
                .ok_or(Reject::state("the card was never opened"))?,
            amount: topup.amount,
        };
        let mut ticket = None;
        if topup.phase == TopupPhase::Debiting {
            topup.phase = TopupPhase::Funding;
            let mut batch = WriteBatch::new();
            batch.put(topup_key(&card.id, id), &topup)?;
            let mut next = card;
            next.version += 1;
            ticket = Some(self.cell_mut().persist(next, batch)?);
        }
        Ok((topup, Some(req), ticket))
    }

    fn settle_funding(
        &mut self,
        mut topup: TopupRecord,
        outcome: Outcome<CardFunded>,
    ) -> ActorResult<(TopupRecord, Option<FlushTicket>)> {
        let mut card = self.cell_mut().existing("card")?.clone();
        if topup.phase == TopupPhase::Done {
            return Ok((topup, None));
        }
        let now = self.now();
        let mut batch = WriteBatch::new();
        let (to, event, reason) = match outcome {
            Outcome::Done(_funded) => {
                // Add the amount: the channel's reported balance may be a snapshot from
                // when the operation first applied (an answer found by the resolver),
                // older than spending or top-ups since.
                card.balance_minor = card
                    .balance_minor
                    .checked_add(topup.amount.value)
                    .ok_or_else(|| Reject::invalid("amount", "card balance would overflow"))?;
                (TopupStatus::Succeeded, "topup.succeeded", None)
            }
            Outcome::Declined { reason } => {
                match &topup.order {
                    Some(order) => {
                        batch.put_raw(
                            Tree::Operations,
                            Marker::OrderRefund { order: order.clone() }.encode(),
                            card.id.as_bytes(),
                        );
                    }
                    None => {
                        let marker = MoneyMarker {
                            merchant_id: topup.merchant_id.clone(),
                            card_id: card.id.clone(),
                            channel_id: card.channel_id.clone(),
                            amount: topup.amount,
                        };
                        batch.put(Marker::TopupReversal { topup: topup.id.clone() }.encode(), &marker)?;
                    }
                }
                (TopupStatus::Failed, "topup.failed", Some(reason))
            }
            Outcome::Unknown { detail } => {
                tracing::warn!(topup_id = %topup.id, detail, "top-up outcome unknown; resolving");
                return Ok((topup, None));
            }
        };
        topup.transition(to, reason.clone(), Source::Channel, now)?;
        self.close(card, topup, batch, reason, event, now)
    }
}

/// A recovery marker's value: `{card} {started ms}`, then ` {binding}` when
/// the request that began it carried an Idempotency-Key (so an abort can free
/// that key without scanning every binding).
pub fn marker_value(card: &CardId, at: Timestamp) -> Vec<u8> {
    format!("{card} {}", at.unix_ms()).into_bytes()
}

fn marker_value_bound(card: &CardId, at: Timestamp, binding: Option<&str>) -> Vec<u8> {
    let mut value = marker_value(card, at);
    if let Some(b) = binding {
        value.push(b' ');
        value.extend_from_slice(b.as_bytes());
    }
    value
}

/// `(card id, started)` of a `topup/` marker's value.
pub fn parse_marker(value: &[u8]) -> Option<(CardId, Timestamp)> {
    let text = String::from_utf8_lossy(value);
    let mut parts = text.splitn(3, ' ');
    let (card, at) = (parts.next()?, parts.next()?);
    Some((CardId::parse(card).ok()?, Timestamp(at.parse().ok()?)))
}

/// The Idempotency-Key binding a marker names, if any.
fn marker_binding(value: &[u8]) -> Option<String> {
    String::from_utf8_lossy(value).splitn(3, ' ').nth(2).map(str::to_owned)
}

durable_handler!(CardActor, cell, BeginTopup => TopupRecord, |act, msg| act.begin_topup(msg));

durable_handler!(CardActor, cell, AbortTopup => (), |act, msg| act.abort_topup(&msg.0));

/// Shared by funding and resolving: prepare durably, call the channel, settle.
fn fund(
    act: &mut CardActor,
    ctx: &mut Context<CardActor>,
    id: TopupId,
    ask_first: bool,
) -> AtomicResponse<CardActor, ActorResult<TopupRecord>> {
    let prepared = EntityCell::guarded(act, ctx, cell, |act| {
        let (topup, req, ticket) = act.prepare_funding(&id)?;
        let channel = match &req {
            Some(_) => {
                let card = act.cell_mut().existing("card")?.clone();
                Some(
                    act.deps()
                        .channels
                        .channel(&card.channel_id)
                        .ok_or_else(|| ActorError::unavailable("no channel adapter"))?,
                )
            }
            None => None,
        };
        Ok((topup, req, channel, ticket))
    });
    let store = act.store().clone();
    AtomicResponse::new(Box::pin(
        async move {
            let (topup, req, channel, ticket) = prepared?;
            if let Some(t) = ticket {
                store.wait_durable(t).await?;
            }
            let (Some(req), Some(channel)) = (req, channel) else { return Ok((topup, None)) };
            let outcome = if ask_first {
                match channel.operation(req.request_id.clone()).await {
                    Outcome::Done(ChannelOperation::CardFunded(f)) => Outcome::Done(f),
                    Outcome::Done(ChannelOperation::Declined { reason }) => Outcome::Declined { reason },
                    Outcome::Done(ChannelOperation::NotFound) => channel.fund_card(req).await,
                    _ => Outcome::Unknown { detail: "the channel could not say".into() },
                }
            } else {
                channel.fund_card(req).await
            };
            Ok((topup, Some(outcome)))
        }
        .into_actor(act)
        .then(|prepared: ActorResult<(TopupRecord, Option<Outcome<CardFunded>>)>, act, ctx| {
            let result = match prepared {
                Ok((topup, None)) => Ok((topup, None)),
                Ok((topup, Some(outcome))) => {
                    EntityCell::guarded(act, ctx, cell, |act| act.settle_funding(topup, outcome))
                }
                Err(e) => Err(e),
            };
            let store = act.store().clone();
            async move {
                let (topup, ticket) = result?;
                if let Some(t) = ticket {
                    store.wait_durable(t).await?;
                }
                Ok(topup)
            }
            .into_actor(act)
        }),
    ))
}

impl Handler<FundTopup> for CardActor {
    type Result = AtomicResponse<Self, ActorResult<TopupRecord>>;
    fn handle(&mut self, msg: FundTopup, ctx: &mut Context<Self>) -> Self::Result {
        fund(self, ctx, msg.0, false)
    }
}

impl Handler<ResolveTopup> for CardActor {
    type Result = AtomicResponse<Self, ActorResult<TopupRecord>>;
    fn handle(&mut self, msg: ResolveTopup, ctx: &mut Context<Self>) -> Self::Result {
        let phase = self.load_topup(&msg.id).map(|t| t.phase);
        match phase {
            Ok(TopupPhase::Debiting) if !msg.debited => {
                // The debit never happened: the top-up failed, nothing to give back.
                let result = EntityCell::guarded(self, ctx, cell, |act| act.fail_undebited(&msg.id));
                let store = self.store().clone();
                AtomicResponse::new(Box::pin(
                    async move {
                        let (topup, ticket) = result?;
                        if let Some(t) = ticket {
                            store.wait_durable(t).await?;
                        }
                        Ok(topup)
                    }
                    .into_actor(self),
                ))
            }
            Ok(phase) => fund(self, ctx, msg.id, phase == TopupPhase::Funding),
            Err(e) => AtomicResponse::new(Box::pin(async move { Err(e) }.into_actor(self))),
        }
    }
}
