//! Top-ups of a card (master-account mode): a two-step saga across this
//! card's actor and the merchant's actor. API.md §4 Top-ups, DOMAIN.md §Actors.
//!
//! 0. `AdmitTopup` (card actor, no write): in the card's own order, the card
//!    is `active` and of the amount's currency; the answer is the intent —
//!    the top-up `processing`, phase `Funding`, with a fresh channel request id.
//! 1. ONE commit by the merchant actor ([`TopupIntent::debit`], a
//!    `PostEntryWith`): `merchant:available −(A+F)` (journal entry, balance
//!    transactions, merchant record; refused whole below zero, 402, nothing
//!    written) with the top-up record, its `topup` index row, the recovery
//!    marker `topup/{id}` and the caller's Idempotency-Key binding. The top-up
//!    exists exactly when it is debited: no state "begun, not debited".
//! 2. The channel call, with the request id made durable in step 1 (a retry
//!    after a crash reuses it; the channel applies a request id once).
//! 3. ONE commit by the card actor (`FundTopup`, atomic with the call in the
//!    card's mailbox): `succeeded` + the card's balance, or `failed` + the
//!    reversal marker `topuprev/{id}` (the binary books the mirror entry and
//!    removes that marker in the merchant's one commit) — with the event and
//!    outbox row, the `topup/` marker removed, and the binary's stored answer
//!    to the request (`FundTopupWith`, with an Idempotency-Key). Unknown →
//!    stays `processing`, 202, and `ResolveTopup` asks the channel by request
//!    id until it knows.
//!
//! Serialization with the card's status changes: the admission is only a
//! cheap check (nothing is written, so concurrent top-ups of one card never
//! fence each other); the card may be frozen or deleted between it and step
//! 3. Step 3 therefore runs in the card actor, atomically with the channel
//! call and serialized with freeze/unfreeze/delete, and re-checks: a card no
//! longer `active` is never funded — the channel is first asked by request id
//! (an earlier call of this top-up, e.g. by the resolver, may have applied):
//! found applied or refused, that answer is settled; not found, the top-up is
//! refused (`failed`, reversal); unknown, it waits. Under SIGKILL: before step
//! 1 is durable nothing exists (the merchant's commit is atomic); after it,
//! the marker makes the resolver ask the channel by request id and fund or
//! settle exactly once; after step 3, nothing is left but a reversal marker,
//! which the resolver books once (`jop/` refuses a second).
//!
//! Records of the earlier three-step saga (phase `Debiting`: begun by the
//! card, debit maybe booked) are still resolved as before: the merchant actor
//! settles whether the debit was booked (`VoidEntry`), then `ResolveTopup`
//! either fails the top-up (nothing charged) or moves it to `Funding` and
//! funds it. The stored format is unchanged (schema version 1).

use actix::{ActorFutureExt, AtomicResponse, Context, Handler, Message, WrapFuture};
use std::sync::Arc;

use pelago_storage::{
    CardId, ChannelId, FlushTicket, MerchantId, Money, Record, Timestamp, TopupId, Tree, WriteBatch,
};
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
    ledger::{self, EntryKind},
    merchant::{PostEntry, PostEntryWith},
    outbox::{self, EventObject},
    ports::{CardChannel, CardFunded, ChannelOperation, FundCard, Outcome},
    runtime::EntityCell,
};

crate::state_machine! {
    /// DOMAIN.md §State machines (Top-up). In master-account mode a top-up
    /// starts in `processing` with the debit already made.
    pub enum TopupStatus ("top-up") {
        PendingPayment = "pending_payment" -> Processing | Canceled,
        Processing = "processing" -> Succeeded | Failed,
        Succeeded = "succeeded",
        Failed = "failed",
        Canceled = "canceled",
    }
}

/// Where an unfinished top-up stands (internal; not on the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopupPhase {
    /// Written by the earlier three-step saga only (begun by the card, before
    /// its debit): the merchant's debit may or may not be booked.
    Debiting,
    /// Debited (a two-step intent from its first commit, a paid order, or a
    /// three-step top-up past its debit); the channel call may or may not
    /// have applied.
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

/// Step 0: may this card be topped up now? No write; answered in the card's
/// own order with the intent to commit (see the module doc).
#[derive(Debug)]
pub struct AdmitTopup {
    pub id: TopupId,
    pub amount: Money,
    pub fee: Money,
    pub reference: Option<String>,
    /// The caller's Idempotency-Key binding, written with the intent (a retry
    /// after a crash finds this top-up instead of debiting again).
    pub binding: Option<String>,
}
impl Message for AdmitTopup {
    type Result = ActorResult<TopupIntent>;
}

/// An admitted top-up, not yet written: step 1 commits it with its debit.
#[derive(Debug, Clone)]
pub struct TopupIntent {
    pub topup: TopupRecord,
    channel_id: ChannelId,
    binding: Option<String>,
}

impl TopupIntent {
    /// Step 1, for the merchant actor: the debit of amount + fee with the
    /// top-up (`processing`, phase `Funding`), its index row, the recovery
    /// marker (started now, in real time: the resolver's grace is a timeout)
    /// and the Idempotency-Key binding, in one commit.
    pub fn debit(&self) -> ActorResult<PostEntryWith> {
        let t = &self.topup;
        let key = topup_key(&t.card_id, &t.id);
        let mut with = WriteBatch::new();
        with.expect_absent(Tree::Topups, &key);
        with.put(&key, t)?;
        with.put_raw(Tree::Index, Index::Topup { topup: t.id.clone() }.encode(), t.card_id.as_bytes());
        with.put_raw(
            Tree::Operations,
            Marker::Topup { topup: t.id.clone() }.encode(),
            marker_value(&t.card_id, Timestamp::now_real()),
        );
        if let Some(b) = &self.binding {
            with.expect_absent(Tree::Index, b);
            with.put_raw(Tree::Index, b, t.id.as_bytes());
        }
        let entry = PostEntry {
            source_id: t.id.to_string(),
            kind: EntryKind::Topup,
            postings: ledger::master_topup(&t.merchant_id, &self.channel_id, t.amount, t.fee)?,
            event: None,
            index: vec![],
        };
        Ok(PostEntryWith { entry, with })
    }
}

/// More writes for step 3's commit, made from the settled top-up (the
/// binary's stored answer to the request that created it, so that a retry
/// replays that answer): called at most once, only by the commit that
/// settles the top-up, and only if the message's answer is `Ok` is it durable.
pub type SettledWrites = Box<dyn FnOnce(&TopupRecord) -> ActorResult<WriteBatch> + Send>;

/// [`FundTopup`] with [`SettledWrites`] for its step 3.
pub struct FundTopupWith(pub TopupId, pub SettledWrites);
impl Message for FundTopupWith {
    type Result = ActorResult<TopupRecord>;
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

    fn admit_topup(&mut self, msg: AdmitTopup) -> ActorResult<TopupIntent> {
        let card = self.cell_mut().existing("card")?;
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
        let card = card.clone();
        let now = self.now();
        let channel_id = card.channel_id.clone();
        let mut topup = TopupRecord::new(
            msg.id,
            &card,
            (msg.amount, msg.fee, total),
            msg.reference,
            None,
            TopupStatus::Processing,
            now,
        );
        topup.phase = TopupPhase::Funding;
        Ok(TopupIntent { topup, channel_id, binding: msg.binding })
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
        topup.failure_reason = Some(NOT_DEBITED.into());
        self.close(card, topup, WriteBatch::new(), "topup.failed", now, None)
    }

    /// Closes a top-up that just moved to its final status (its reason set):
    /// done, its marker removed, its event staged and `also`'s writes made
    /// from it, in one commit with `batch`.
    fn close(
        &mut self,
        mut card: super::state::CardRecord,
        mut topup: TopupRecord,
        mut batch: WriteBatch,
        event: &str,
        now: Timestamp,
        also: Option<SettledWrites>,
    ) -> ActorResult<(TopupRecord, Option<FlushTicket>)> {
        topup.phase = TopupPhase::Done;
        topup.completed_at = Some(now);
        if let Some(also) = also {
            batch.extend(also(&topup)?);
        }
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

    /// What step 2 asks the channel for a debited top-up: nothing if it is
    /// done; a `Debiting` record (three-step saga) on a card no longer active
    /// is refused at once (the channel was never called for it), else moved to
    /// `Funding` durably first. See the module doc for a card frozen or
    /// deleted since its admission.
    fn prepare_funding(
        &mut self,
        id: &TopupId,
        ask_first: bool,
    ) -> ActorResult<(TopupRecord, Option<ChannelCall>, Option<FlushTicket>)> {
        let card = self.cell_mut().existing("card")?.clone();
        let mut topup = self.load_topup(id)?;
        if topup.phase == TopupPhase::Done {
            return Ok((topup, None, None));
        }
        let inactive =
            (card.status != CardStatus::Active).then(|| format!("the card is {}", card.status.as_str()));
        if let Some(reason) = &inactive
            && topup.phase == TopupPhase::Debiting
        {
            let (t, ticket) =
                self.settle_funding(topup, Outcome::Declined { reason: reason.clone() }, None)?;
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
        let channel = self
            .deps()
            .channels
            .channel(&card.channel_id)
            .ok_or_else(|| ActorError::unavailable("no channel adapter"))?;
        let mut ticket = None;
        if topup.phase == TopupPhase::Debiting {
            topup.phase = TopupPhase::Funding;
            let mut batch = WriteBatch::new();
            batch.put(topup_key(&card.id, id), &topup)?;
            let mut next = card;
            next.version += 1;
            ticket = Some(self.cell_mut().persist(next, batch)?);
        }
        let call = ChannelCall {
            ask_first: ask_first || inactive.is_some(),
            refuse_unapplied: inactive,
            req,
            channel,
        };
        Ok((topup, Some(call), ticket))
    }

    fn settle_funding(
        &mut self,
        mut topup: TopupRecord,
        outcome: Outcome<CardFunded>,
        also: Option<SettledWrites>,
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
        topup.failure_reason = reason;
        self.close(card, topup, batch, event, now, also)
    }
}

/// A recovery marker's value: `{card} {started ms}` (markers of the
/// three-step saga may add ` {binding}`, which nothing reads any more).
pub fn marker_value(card: &CardId, at: Timestamp) -> Vec<u8> {
    format!("{card} {}", at.unix_ms()).into_bytes()
}

/// `(card id, started)` of a `topup/` marker's value.
pub fn parse_marker(value: &[u8]) -> Option<(CardId, Timestamp)> {
    let text = String::from_utf8_lossy(value);
    let mut parts = text.splitn(3, ' ');
    let (card, at) = (parts.next()?, parts.next()?);
    Some((CardId::parse(card).ok()?, Timestamp(at.parse().ok()?)))
}

impl Handler<AdmitTopup> for CardActor {
    type Result = ActorResult<TopupIntent>;
    fn handle(&mut self, msg: AdmitTopup, ctx: &mut Context<Self>) -> Self::Result {
        EntityCell::guarded(self, ctx, cell, |act| act.admit_topup(msg))
    }
}

/// Step 2 as prepared in the card actor.
struct ChannelCall {
    /// Ask the channel by request id before funding (an earlier call may have applied).
    ask_first: bool,
    /// The card is no longer active: a request the channel never saw is
    /// refused with this reason instead of being sent.
    refuse_unapplied: Option<String>,
    req: FundCard,
    channel: Arc<dyn CardChannel>,
}

impl ChannelCall {
    async fn outcome(self) -> Outcome<CardFunded> {
        if !self.ask_first {
            return self.channel.fund_card(self.req).await;
        }
        match self.channel.operation(self.req.request_id.clone()).await {
            Outcome::Done(ChannelOperation::CardFunded(f)) => Outcome::Done(f),
            Outcome::Done(ChannelOperation::Declined { reason }) => Outcome::Declined { reason },
            Outcome::Done(ChannelOperation::NotFound) => match self.refuse_unapplied {
                Some(reason) => Outcome::Declined { reason },
                None => self.channel.fund_card(self.req).await,
            },
            _ => Outcome::Unknown { detail: "the channel could not say".into() },
        }
    }
}

/// Shared by funding and resolving: prepare, call the channel, settle (step 3).
fn fund(
    act: &mut CardActor,
    ctx: &mut Context<CardActor>,
    id: TopupId,
    ask_first: bool,
    also: Option<SettledWrites>,
) -> AtomicResponse<CardActor, ActorResult<TopupRecord>> {
    let prepared = EntityCell::guarded(act, ctx, cell, |act| act.prepare_funding(&id, ask_first));
    let store = act.store().clone();
    AtomicResponse::new(Box::pin(
        async move {
            let (topup, call, ticket) = prepared?;
            if let Some(t) = ticket {
                store.wait_durable(t).await?;
            }
            let Some(call) = call else { return Ok((topup, None)) };
            Ok((topup, Some(call.outcome().await)))
        }
        .into_actor(act)
        .then(|prepared: ActorResult<(TopupRecord, Option<Outcome<CardFunded>>)>, act, ctx| {
            let result = match prepared {
                Ok((topup, None)) => Ok((topup, None)),
                Ok((topup, Some(outcome))) => {
                    EntityCell::guarded(act, ctx, cell, |act| act.settle_funding(topup, outcome, also))
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
        fund(self, ctx, msg.0, false, None)
    }
}

impl Handler<FundTopupWith> for CardActor {
    type Result = AtomicResponse<Self, ActorResult<TopupRecord>>;
    fn handle(&mut self, msg: FundTopupWith, ctx: &mut Context<Self>) -> Self::Result {
        fund(self, ctx, msg.0, false, Some(msg.1))
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
            Ok(phase) => fund(self, ctx, msg.id, phase == TopupPhase::Funding, None),
            Err(e) => AtomicResponse::new(Box::pin(async move { Err(e) }.into_actor(self))),
        }
    }
}
