//! Card operations that call the channel: open, freeze, unfreeze, delete, and
//! their resolution when the channel's answer was unknown.
//!
//! Each runs as an atomic actix response: the card handles nothing else until
//! the channel answered and the result is committed, so freezes, top-ups and
//! fees on one card are serialized. The channel request id is committed
//! before the call and reused on every retry.
//!
//! Money that must follow a card change (the application fee returned after
//! a refusal, the remaining balance credited after a delete) is written as a
//! marker in `Tree::Operations` in the same commit as the change; the binary
//! books it through the merchant actor (idempotently) and removes the marker,
//! and its resolver replays markers left by a crash.

use std::sync::Arc;

use actix::{ActorFutureExt, AtomicResponse, Context, Handler, Message, WrapFuture};
use pelago_storage::{FlushTicket, Money, Timestamp, Tree, WriteBatch};
use serde::{Deserialize, Serialize};

use super::{
    actor::{CardActor, cell},
    state::{CardRecord, CardStatus, NewCard, PendingAction},
};
use crate::{
    error::{ActorError, ActorResult, Reject},
    history::Source,
    keys::{Index, Marker},
    outbox::{self, EventObject},
    ports::{CardAction, CardChannel, CardDeleted, CardOpened, ChannelOperation, OpenCard, Outcome},
    runtime::EntityCell,
};

/// Money owed to a merchant after a card change, booked by the binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyMarker {
    pub merchant_id: pelago_storage::MerchantId,
    pub card_id: pelago_storage::CardId,
    pub channel_id: pelago_storage::ChannelId,
    pub amount: Money,
}

pelago_storage::record!(MoneyMarker, Operations, 1);

crate::wire_enum! {
    pub enum ActionKind {
        Freeze = "freeze",
        Unfreeze = "unfreeze",
        Delete = "delete",
    }
}

impl ActionKind {
    fn target(self) -> CardStatus {
        match self {
            ActionKind::Freeze => CardStatus::Frozen,
            ActionKind::Unfreeze => CardStatus::Active,
            ActionKind::Delete => CardStatus::Deleted,
        }
    }

    fn event(self) -> &'static str {
        match self {
            ActionKind::Freeze => "card.frozen",
            ActionKind::Unfreeze => "card.unfrozen",
            ActionKind::Delete => "card.deleted",
        }
    }
}

/// What an operation ended with.
#[derive(Debug, Clone)]
pub struct CardOutcome {
    pub card: CardRecord,
    /// False when the channel's answer is unknown (answered 202).
    pub settled: bool,
    /// The channel refused an action on an existing card (answered 502, nothing changed).
    pub refused: Option<String>,
}

/// Opens a new card at its channel (after the fee, if any, was charged).
#[derive(Debug)]
pub struct Open {
    pub new: NewCard,
    pub channel_cardholder_id: String,
    pub application_fee: Option<Money>,
    /// An Idempotency-Key binding written with the card.
    pub binding: Option<String>,
    /// A row of `Tree::Operations` holding the opening's intent, committed
    /// with the fee (the binary's `cardopen/` row): the card is then written
    /// once, with the channel's answer, and that commit removes the intent.
    pub intent: Option<Vec<u8>>,
}

impl Message for Open {
    type Result = ActorResult<CardOutcome>;
}

/// Freeze, unfreeze or delete through the channel.
#[derive(Debug)]
pub struct Act(pub ActionKind);

impl Message for Act {
    type Result = ActorResult<CardOutcome>;
}

/// The resolver: settle an unknown open or action by asking the channel.
#[derive(Debug)]
pub struct Resolve;

impl Message for Resolve {
    type Result = ActorResult<CardOutcome>;
}

type Flushed = (CardOutcome, Option<FlushTicket>);

/// Waits for the flush, then answers (still inside the atomic response).
fn finish(
    act: &CardActor,
    result: ActorResult<Flushed>,
) -> impl actix::ActorFuture<CardActor, Output = ActorResult<CardOutcome>> + use<> {
    let store = act.store().clone();
    async move {
        let (outcome, ticket) = result?;
        if let Some(t) = ticket {
            store.wait_durable(t).await?;
        }
        Ok(outcome)
    }
    .into_actor(act)
}

impl CardActor {
    fn channel(&self, card: &CardRecord) -> ActorResult<Arc<dyn CardChannel>> {
        self.deps()
            .channels
            .channel(&card.channel_id)
            .ok_or_else(|| ActorError::unavailable("the card's channel has no adapter"))
    }

    fn open_request(card: &CardRecord) -> ActorResult<OpenCard> {
        Ok(OpenCard {
            request_id: card.open_request_id.clone().ok_or(Reject::state("the card has no open request"))?,
            card_id: card.id.to_string(),
            channel_cardholder_id: card.channel_cardholder_id.clone().unwrap_or_default(),
            bin: card.bin.clone(),
            currency: card.currency,
        })
    }

    /// Step 1 of opening. A plain opening writes the card, its request id and
    /// its marker, durably, before the call. An opening with an intent (a
    /// master-account fee, committed with the intent in one merchant commit)
    /// writes nothing here: the intent is its recovery record and the request
    /// id is derived from the card id ([`open_request_id`]), so the card is
    /// written once, with the channel's answer ([`Begun::Deferred`]).
    fn begin_open(&mut self, msg: Open) -> ActorResult<(CardRecord, Begun)> {
        if let Some(existing) = self.cell_mut().record() {
            // A repeat: whatever it became.
            return Ok((existing.clone(), Begun::Repeat));
        }
        let now = self.now();
        let mut record = CardRecord::create(msg.new, now, Source::Merchant);
        record.open_request_id = Some(open_request_id(&record.id));
        record.channel_cardholder_id = Some(msg.channel_cardholder_id);
        record.application_fee_minor = msg.application_fee.map_or(0, |f| f.value);
        if let Some(intent) = msg.intent {
            return Ok((record, Begun::Deferred { intent, binding: msg.binding }));
        }
        let mut batch = WriteBatch::new();
        Self::stage_processing(&record, &mut batch);
        if let Some(b) = &msg.binding {
            batch.put_raw(Tree::Index, b, record.id.as_bytes());
        }
        let ticket = self.cell_mut().persist(record.clone(), batch)?;
        Ok((record, Begun::Written(ticket)))
    }

    /// What a card still opening writes beside itself: its index rows and
    /// its `open/` marker (real time: the resolver's grace is a timeout,
    /// DOMAIN.md, not service-clock time).
    fn stage_processing(record: &CardRecord, batch: &mut WriteBatch) {
        for row in record.index_rows() {
            batch.put_raw(Tree::Index, row, []);
        }
        batch.put_raw(
            Tree::Operations,
            Marker::Open { card: record.id.clone() }.encode(),
            Timestamp::now_real().unix_ms().to_be_bytes().to_vec(),
        );
    }

    /// The card of an opening with an intent, written for the first time with
    /// the channel's answer, the intent removed in the same commit. An unknown
    /// answer writes it `processing` with its marker, for the resolver.
    fn settle_deferred_open(
        &mut self,
        card: CardRecord,
        (intent, binding): (Vec<u8>, Option<String>),
        outcome: Outcome<CardOpened>,
    ) -> ActorResult<Flushed> {
        let mut batch = WriteBatch::new();
        Self::stage_processing(&card, &mut batch);
        batch.delete(Tree::Operations, intent);
        if let Some(b) = &binding {
            batch.put_raw(Tree::Index, b, card.id.as_bytes());
        }
        let Some((next, event)) = self.open_result(&card, outcome, &mut batch)? else {
            let ticket = self.cell_mut().persist(card.clone(), batch)?;
            return Ok((CardOutcome { card, settled: false, refused: None }, Some(ticket)));
        };
        self.commit_opened(next, event, batch)
    }

    /// Applies the channel's answer to `open_card`.
    fn settle_open(&mut self, outcome: Outcome<CardOpened>) -> ActorResult<Flushed> {
        let card = self.cell_mut().existing("card")?.clone();
        if card.status != CardStatus::Processing {
            return Ok((CardOutcome { card, settled: true, refused: None }, None));
        }
        let mut batch = WriteBatch::new();
        let Some((next, event)) = self.open_result(&card, outcome, &mut batch)? else {
            return Ok((CardOutcome { card, settled: false, refused: None }, None));
        };
        self.commit_opened(next, event, batch)
    }

    /// Commits the card as its opening ended (`event`), its `open/` marker removed.
    fn commit_opened(
        &mut self,
        next: CardRecord,
        event: &'static str,
        mut batch: WriteBatch,
    ) -> ActorResult<Flushed> {
        batch.delete(Tree::Operations, Marker::Open { card: next.id.clone() }.encode());
        let object = EventObject::Card(Box::new(next.clone()));
        outbox::stage(&mut batch, &next.merchant_id, event, object, self.now())?;
        let ticket = self.cell_mut().persist(next.clone(), batch)?;
        Ok((CardOutcome { card: next, settled: true, refused: None }, Some(ticket)))
    }

    /// The card after the channel's answer to its opening, the rows that go
    /// with it into `batch`, and its event; `None` when the answer is unknown.
    fn open_result(
        &self,
        card: &CardRecord,
        outcome: Outcome<CardOpened>,
        batch: &mut WriteBatch,
    ) -> ActorResult<Option<(CardRecord, &'static str)>> {
        let now = self.now();
        let mut next = card.clone();
        let event = match outcome {
            Outcome::Done(opened) => {
                next.mark_opened(opened.channel_card_id.clone(), opened.last4, opened.balance, now)?;
                batch.put_raw(
                    Tree::Index,
                    Index::ChannelCard {
                        channel: card.channel_id.clone(),
                        channel_card: opened.channel_card_id.clone(),
                    }
                    .encode(),
                    card.id.as_bytes(),
                );
                "card.opened"
            }
            Outcome::Declined { reason } => {
                next.transition(CardStatus::Failed, "open", Some(reason), Source::Channel, now)?;
                if let Some(order) = &next.application_fee_order {
                    batch.put_raw(
                        Tree::Operations,
                        Marker::OrderRefund { order: order.clone() }.encode(),
                        card.id.as_bytes(),
                    );
                } else if next.application_fee_minor > 0 {
                    let marker = MoneyMarker {
                        merchant_id: card.merchant_id.clone(),
                        card_id: card.id.clone(),
                        channel_id: card.channel_id.clone(),
                        amount: Money::new(next.application_fee_minor, card.currency),
                    };
                    batch.put(Marker::FeeReturn { card: card.id.clone() }.encode(), &marker)?;
                }
                "card.failed"
            }
            Outcome::Unknown { detail } => {
                tracing::warn!(card_id = %card.id, detail, "open_card outcome unknown; resolving");
                return Ok(None);
            }
        };
        Ok(Some((next, event)))
    }

    /// Step 1 of an action: the pending action and its request id, durably.
    fn begin_action(&mut self, kind: ActionKind) -> ActorResult<(CardRecord, Option<FlushTicket>)> {
        let card = self.cell_mut().existing("card")?.clone();
        if let Some(p) = &card.pending_action {
            return Err(Reject::state(format!("a {} of this card is still pending", p.kind)).into());
        }
        card.check_transition(kind.target(), kind.as_str())?;
        let now = self.now();
        let mut next = card.clone();
        next.pending_action = Some(PendingAction {
            kind: kind.as_str().into(),
            request_id: format!("req_{}", pelago_storage::ids::new_ulid()),
            since: now,
        });
        let mut batch = WriteBatch::new();
        batch.put_raw(
            Tree::Operations,
            Marker::Action { card: card.id.clone() }.encode(),
            now.unix_ms().to_be_bytes().to_vec(),
        );
        let ticket = self.cell_mut().persist(next.clone(), batch)?;
        Ok((next, Some(ticket)))
    }

    /// Applies the channel's answer to an action. `deleted` carries the remaining balance.
    fn settle_action(
        &mut self,
        kind: ActionKind,
        outcome: Outcome<Option<CardDeleted>>,
    ) -> ActorResult<Flushed> {
        let card = self.cell_mut().existing("card")?.clone();
        if card.pending_action.as_ref().is_none_or(|p| p.kind != kind.as_str()) {
            return Ok((CardOutcome { card, settled: true, refused: None }, None));
        }
        let now = self.now();
        let mut next = card.clone();
        next.pending_action = None;
        let mut batch = WriteBatch::new();
        batch.delete(Tree::Operations, Marker::Action { card: card.id.clone() }.encode());
        let refused = match outcome {
            Outcome::Done(deleted) => {
                next.transition(kind.target(), kind.as_str(), None, Source::Merchant, now)?;
                if let Some(d) = deleted {
                    next.balance_minor = 0;
                    if d.remaining_balance.value > 0 {
                        let marker = MoneyMarker {
                            merchant_id: card.merchant_id.clone(),
                            card_id: card.id.clone(),
                            channel_id: card.channel_id.clone(),
                            amount: d.remaining_balance,
                        };
                        batch.put(Marker::CardRefund { card: card.id.clone() }.encode(), &marker)?;
                    }
                }
                outbox::stage(
                    &mut batch,
                    &card.merchant_id,
                    kind.event(),
                    EventObject::Card(Box::new(next.clone())),
                    now,
                )?;
                None
            }
            Outcome::Declined { reason } => {
                next.version += 1;
                Some(reason)
            }
            Outcome::Unknown { detail } => {
                tracing::warn!(card_id = %card.id, action = kind.as_str(), detail, "card action outcome unknown; resolving");
                return Ok((CardOutcome { card, settled: false, refused: None }, None));
            }
        };
        let ticket = self.cell_mut().persist(next.clone(), batch)?;
        Ok((CardOutcome { card: next, settled: true, refused }, Some(ticket)))
    }
}

async fn call_action(
    channel: Arc<dyn CardChannel>,
    kind: ActionKind,
    req: CardAction,
) -> Outcome<Option<CardDeleted>> {
    match kind {
        ActionKind::Freeze => channel.freeze(req).await.map(|()| None),
        ActionKind::Unfreeze => channel.unfreeze(req).await.map(|()| None),
        ActionKind::Delete => channel.delete_card(req).await.map(Some),
    }
}

impl Handler<Open> for CardActor {
    type Result = AtomicResponse<Self, ActorResult<CardOutcome>>;
    fn handle(&mut self, msg: Open, ctx: &mut Context<Self>) -> Self::Result {
        let begun = EntityCell::guarded(self, ctx, cell, |act| {
            let (card, begun) = act.begin_open(msg)?;
            let channel = if matches!(begun, Begun::Repeat) { None } else { Some(act.channel(&card)?) };
            Ok((card, begun, channel))
        });
        let store = self.store().clone();
        AtomicResponse::new(Box::pin(
            async move {
                let (card, begun, channel) = begun?;
                if let Begun::Written(t) = &begun {
                    store.wait_durable(*t).await?; // the request id is durable before the call
                }
                let Some(channel) = channel else {
                    return Ok((card, begun, None));
                };
                let outcome = channel.open_card(CardActor::open_request(&card)?).await;
                Ok((card, begun, Some(outcome)))
            }
            .into_actor(self)
            .then(
                |called: ActorResult<(CardRecord, Begun, Option<Outcome<CardOpened>>)>, act, ctx| {
                    let result = match called {
                        Ok((card, _, None)) => {
                            let settled = card.status != CardStatus::Processing;
                            Ok((CardOutcome { card, settled, refused: None }, None))
                        }
                        Ok((card, Begun::Deferred { intent, binding }, Some(outcome))) => {
                            EntityCell::guarded(act, ctx, cell, |act| {
                                act.settle_deferred_open(card, (intent, binding), outcome)
                            })
                        }
                        Ok((_, _, Some(outcome))) => {
                            EntityCell::guarded(act, ctx, cell, |act| act.settle_open(outcome))
                        }
                        Err(e) => Err(e),
                    };
                    finish(act, result)
                },
            ),
        ))
    }
}

/// How step 1 of an opening went.
enum Begun {
    /// The card existed already (a repeat): no call.
    Repeat,
    /// The card, its request id and marker were written (durable after this ticket).
    Written(FlushTicket),
    /// Nothing written: the opening's intent (this `Tree::Operations` row)
    /// is durable already and holds everything a retry needs; `binding`, an
    /// Idempotency-Key binding still to write with the card.
    Deferred { intent: Vec<u8>, binding: Option<String> },
}

/// The request id of a card's opening at its channel: derived from the card
/// id, so an opening's intent needs no request id of its own and every retry
/// (of the request, of the resolver) sends the same one.
pub fn open_request_id(card: &pelago_storage::CardId) -> String {
    format!("req_{card}")
}

impl Handler<Act> for CardActor {
    type Result = AtomicResponse<Self, ActorResult<CardOutcome>>;
    fn handle(&mut self, msg: Act, ctx: &mut Context<Self>) -> Self::Result {
        let kind = msg.0;
        let begun = EntityCell::guarded(self, ctx, cell, |act| {
            let (card, ticket) = act.begin_action(kind)?;
            Ok((card.clone(), act.channel(&card)?, ticket))
        });
        let store = self.store().clone();
        AtomicResponse::new(Box::pin(
            async move {
                let (card, channel, ticket) = begun?;
                if let Some(t) = ticket {
                    store.wait_durable(t).await?;
                }
                let pending = card.pending_action.clone().ok_or(Reject::state("no pending action"))?;
                let req = CardAction {
                    request_id: pending.request_id,
                    channel_card_id: card
                        .channel_card_id
                        .clone()
                        .ok_or(Reject::state("the card was never opened"))?,
                };
                Ok(call_action(channel, kind, req).await)
            }
            .into_actor(self)
            .then(move |outcome: ActorResult<Outcome<Option<CardDeleted>>>, act, ctx| {
                let result = match outcome {
                    Ok(o) => EntityCell::guarded(act, ctx, cell, |act| act.settle_action(kind, o)),
                    Err(e) => Err(e),
                };
                finish(act, result)
            }),
        ))
    }
}

/// What the resolver asks the channel, and how to settle it.
enum Pending {
    Open(OpenCard),
    Action(ActionKind, CardAction),
    Nothing(Box<CardRecord>),
}

impl Handler<Resolve> for CardActor {
    type Result = AtomicResponse<Self, ActorResult<CardOutcome>>;
    fn handle(&mut self, _msg: Resolve, ctx: &mut Context<Self>) -> Self::Result {
        let begun = EntityCell::guarded(self, ctx, cell, |act| act.pending());
        AtomicResponse::new(Box::pin(
            async move {
                let (channel, pending) = begun?;
                Ok(ask_channel(channel, pending).await)
            }
            .into_actor(self)
            .then(|resolved: ActorResult<Resolved>, act, ctx| {
                let result = resolved.and_then(|resolved| act.settle_resolved(ctx, resolved));
                finish(act, result)
            }),
        ))
    }
}

impl CardActor {
    /// What the card waits on: an open with its request id, a pending action, or nothing.
    fn pending(&mut self) -> ActorResult<(Arc<dyn CardChannel>, Pending)> {
        let card = self.cell_mut().existing("card")?.clone();
        let pending = if card.status == CardStatus::Processing && card.open_request_id.is_some() {
            Pending::Open(CardActor::open_request(&card)?)
        } else if let (Some(p), Some(channel_card_id)) = (&card.pending_action, &card.channel_card_id) {
            let kind = ActionKind::parse(&p.kind).ok_or(Reject::state("unknown pending action"))?;
            Pending::Action(
                kind,
                CardAction { request_id: p.request_id.clone(), channel_card_id: channel_card_id.clone() },
            )
        } else {
            Pending::Nothing(Box::new(card.clone()))
        };
        Ok((self.channel(&card)?, pending))
    }

    fn settle_resolved(&mut self, ctx: &mut Context<Self>, resolved: Resolved) -> ActorResult<Flushed> {
        match resolved {
            Resolved::Open(o) => EntityCell::guarded(self, ctx, cell, |act| act.settle_open(o)),
            Resolved::Action(kind, o) => {
                EntityCell::guarded(self, ctx, cell, |act| act.settle_action(kind, o))
            }
            Resolved::Nothing(card) => {
                // Nothing pending: drop stale markers.
                let mut batch = WriteBatch::new();
                batch.delete(Tree::Operations, Marker::Open { card: card.id.clone() }.encode());
                batch.delete(Tree::Operations, Marker::Action { card: card.id.clone() }.encode());
                self.store()
                    .commit(batch)
                    .map(|t| (CardOutcome { card: *card, settled: true, refused: None }, Some(t)))
                    .map_err(Into::into)
            }
        }
    }
}

/// Asks the channel what became of the pending request (by its request id);
/// one it never applied is sent again with the same id.
async fn ask_channel(channel: Arc<dyn CardChannel>, pending: Pending) -> Resolved {
    fn unknown<T>() -> Outcome<T> {
        Outcome::Unknown { detail: "the channel could not say".into() }
    }
    match pending {
        Pending::Open(req) => Resolved::Open(match channel.operation(req.request_id.clone()).await {
            Outcome::Done(ChannelOperation::CardOpened(o)) => Outcome::Done(o),
            Outcome::Done(ChannelOperation::Declined { reason }) => Outcome::Declined { reason },
            Outcome::Done(ChannelOperation::NotFound) => channel.open_card(req).await,
            Outcome::Done(_) | Outcome::Declined { .. } | Outcome::Unknown { .. } => unknown(),
        }),
        Pending::Action(kind, req) => {
            let asked = channel.operation(req.request_id.clone()).await;
            Resolved::Action(
                kind,
                match asked {
                    Outcome::Done(ChannelOperation::ActionApplied) => Outcome::Done(None),
                    Outcome::Done(ChannelOperation::CardDeleted(d)) => Outcome::Done(Some(d)),
                    Outcome::Done(ChannelOperation::Declined { reason }) => Outcome::Declined { reason },
                    Outcome::Done(ChannelOperation::NotFound) => call_action(channel, kind, req).await,
                    Outcome::Done(_) | Outcome::Declined { .. } | Outcome::Unknown { .. } => unknown(),
                },
            )
        }
        Pending::Nothing(card) => Resolved::Nothing(card),
    }
}

enum Resolved {
    Open(Outcome<CardOpened>),
    Action(ActionKind, Outcome<Option<CardDeleted>>),
    Nothing(Box<CardRecord>),
}
