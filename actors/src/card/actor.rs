//! Card actor: load → apply → persist → reply.
//!
//! Writes are pipelined: a message is applied and committed to the store
//! (in memory) at once, and its reply waits for the group flush that covers
//! it while the actor already handles the next message. Nothing is answered
//! before it is durable, and a later write can never be durable without the
//! earlier ones (sled's log is sequential).
//!
//! Every commit carries a compare-and-set on the card's stored bytes
//! ([`EntityCell::persist`]): if another writer changed the card (it cannot,
//! while the registry works), the commit fails whole and the caller gets 503.

use std::sync::Arc;

use actix::{Actor, Context, Handler, Message, Supervised};
use pelago_storage::{CardId, FlushTicket, Timestamp, TransactionId, Tree, WriteBatch};

use super::state::{self, CardRecord, NewCard, TransactionChange, TransactionRecord};
use crate::{
    error::{ActorResult, Reject},
    history::Source,
    keys::Index,
    outbox::{self, EventObject},
    ports::{ChannelTransaction, ChannelTxnType, SharedClock},
    runtime::durable_handler,
    runtime::{ActorStats, EntityCell, InspectReply, RegistryCounters},
};

/// What every card actor shares.
pub struct CardDeps {
    pub store: pelago_storage::Store,
    pub clock: SharedClock,
    pub counters: Arc<RegistryCounters>,
    pub channels: Arc<dyn crate::ports::ChannelDirectory>,
}

pub struct CardActor {
    id: CardId,
    deps: Arc<CardDeps>,
    cell: EntityCell<CardRecord>,
}

/// Reaches the card actor's cell (for the handlers of every card module).
pub(super) fn cell(a: &mut CardActor) -> &mut EntityCell<CardRecord> {
    &mut a.cell
}

impl CardActor {
    pub fn new(id: CardId, deps: Arc<CardDeps>, stats: Arc<ActorStats>) -> Self {
        let cell = EntityCell::new(
            "card",
            id.as_bytes().to_vec(),
            deps.store.clone(),
            Arc::clone(&deps.counters),
            stats,
        );
        CardActor { id, deps, cell }
    }

    pub(super) fn now(&self) -> Timestamp {
        self.deps.clock.now()
    }

    pub(super) fn cell_mut(&mut self) -> &mut EntityCell<CardRecord> {
        &mut self.cell
    }

    pub(super) fn store(&self) -> &pelago_storage::Store {
        self.cell.store()
    }

    pub(super) fn record_ref(&self) -> Option<&CardRecord> {
        self.cell.record()
    }

    pub(super) fn deps(&self) -> &CardDeps {
        &self.deps
    }

    fn create(&mut self, new: NewCard) -> ActorResult<(CardRecord, Option<FlushTicket>)> {
        if new.id != self.id {
            return Err(Reject::invalid("id", "card id does not match its actor").into());
        }
        if let Some(existing) = self.cell.record() {
            return Ok((existing.clone(), None));
        }
        let record = CardRecord::create(new, self.now(), Source::Merchant);
        let mut batch = WriteBatch::new();
        for row in record.index_rows() {
            batch.put_raw(Tree::Index, row, []);
        }
        let ticket = self.cell.persist(record.clone(), batch)?;
        Ok((record, Some(ticket)))
    }

    fn apply_transaction(
        &mut self,
        txn: ChannelTransaction,
    ) -> ActorResult<(TransactionChange, Option<FlushTicket>)> {
        let mut card = self.cell.existing("card")?.clone();
        let store = self.cell.store();
        let chtxn = |t: &String| {
            Index::ChannelTransaction { channel: card.channel_id.clone(), channel_transaction: t.clone() }
                .encode()
        };
        let dedup_key = chtxn(&txn.channel_transaction_id);
        let existing = match store.get_raw(Tree::Index, &dedup_key)? {
            Some(key) => store.get::<TransactionRecord>(&key)?,
            None => None,
        };
        let clears_known_auth = txn.kind == ChannelTxnType::Clearing
            && match &txn.related_transaction_id {
                Some(auth) => store.contains(Tree::Index, chtxn(auth))?,
                None => false,
            };
        let now = self.now();
        let change = state::apply_transaction(
            &mut card,
            existing.as_ref(),
            &txn,
            clears_known_auth,
            TransactionId::generate(),
            now,
        )?;
        let (stored, event_type) = match &change {
            TransactionChange::Unchanged => return Ok((change, None)),
            TransactionChange::Created(t) => (t, "transaction.created"),
            TransactionChange::Updated(t) => (t, "transaction.updated"),
        };
        let mut batch = WriteBatch::new();
        let key = format!("{}/{}", card.id, stored.id);
        batch.put(&key, stored)?;
        batch.put_raw(Tree::Index, &dedup_key, key.as_bytes());
        batch.put_raw(
            Tree::Index,
            Index::Transaction { transaction: stored.id.clone() }.encode(),
            card.id.as_bytes(),
        );
        outbox::stage(
            &mut batch,
            &card.merchant_id,
            event_type,
            EventObject::Transaction(Box::new(stored.clone())),
            now,
        )?;
        let ticket = self.cell.persist(card, batch)?;
        Ok((change, Some(ticket)))
    }
}

impl Actor for CardActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        self.cell.load();
    }
}

impl Supervised for CardActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.cell.load();
    }
}

/// Creates the card if it does not exist yet (a repeat returns the stored card).
#[derive(Message)]
#[rtype(result = "ActorResult<CardRecord>")]
pub struct CreateCard(pub NewCard);

durable_handler!(CardActor, cell, CreateCard => CardRecord, |act, msg| act.create(msg.0));

#[derive(Message)]
#[rtype(result = "ActorResult<CardRecord>")]
pub struct GetCard;

durable_handler!(CardActor, cell, GetCard => CardRecord, |act, _msg| {
    Ok((act.cell.existing("card")?.clone(), None))
});

/// A channel transaction (pulled or pushed), stored once per channel id.
#[derive(Message)]
#[rtype(result = "ActorResult<TransactionChange>")]
pub struct ApplyTransaction(pub ChannelTransaction);

durable_handler!(CardActor, cell, ApplyTransaction => TransactionChange, |act, msg| {
    act.apply_transaction(msg.0)
});

/// The sandbox crash helper: the next message after this one panics.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CrashNext;

impl Handler<CrashNext> for CardActor {
    type Result = ();
    fn handle(&mut self, _msg: CrashNext, _ctx: &mut Context<Self>) {
        self.cell.crash_next();
    }
}

/// The debug view, a message like any other (an armed crash fires on it).
/// Card records hold no secrets and no card data.
#[derive(Message)]
#[rtype(result = "ActorResult<InspectReply<CardRecord>>")]
pub struct Inspect;

impl Handler<Inspect> for CardActor {
    type Result = ActorResult<InspectReply<CardRecord>>;
    fn handle(&mut self, _msg: Inspect, ctx: &mut Context<Self>) -> Self::Result {
        EntityCell::guarded(self, ctx, cell, |act| {
            let store_version = act.cell.stored_version(|r| r.version);
            Ok(InspectReply::new(act.cell.record().cloned(), store_version, &act.cell.stats))
        })
    }
}
