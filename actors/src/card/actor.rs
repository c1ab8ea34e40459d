//! Card actor: load → apply → persist → reply.
//!
//! Writes are pipelined: a message is applied and committed to the store
//! (in memory) at once, and its reply waits for the group flush that covers
//! it while the actor already handles the next message. Nothing is answered
//! before it is durable, and a later write can never be durable without the
//! earlier ones (sled's log is sequential).
//!
//! Every commit carries a compare-and-set on the card's stored bytes: if some
//! other writer changed the card (it cannot, while the registry works), the
//! commit fails whole, this actor reloads, and the caller gets 503.

use std::sync::{Arc, atomic::Ordering};

use actix::{Actor, Context, Handler, Message, ResponseFuture, Supervised};
use pelago_storage::{
    CardId, FlushTicket, Store, StoreError, Timestamp, TransactionId, Tree, WriteBatch, encode,
};

use super::state::{self, CardRecord, NewCard, TransactionChange, TransactionRecord};
use crate::{
    error::{ActorError, ActorResult, Reject},
    history::Source,
    outbox::{self, EventObject},
    ports::{ChannelTransaction, ChannelTxnType, SharedClock},
    runtime::{ActorStats, RegistryCounters, catch_panic},
};

/// What every card actor shares.
pub struct CardDeps {
    pub store: Store,
    pub clock: SharedClock,
    pub counters: Arc<RegistryCounters>,
}

pub struct CardActor {
    id: CardId,
    deps: Arc<CardDeps>,
    record: Option<CardRecord>,
    /// The exact bytes last read or written: the compare-and-set fence.
    stored: Option<Vec<u8>>,
    load_error: Option<String>,
    stats: Arc<ActorStats>,
    crash_next: bool,
}

impl CardActor {
    pub fn new(id: CardId, deps: Arc<CardDeps>, stats: Arc<ActorStats>) -> Self {
        CardActor { id, deps, record: None, stored: None, load_error: None, stats, crash_next: false }
    }

    fn load(&mut self) {
        match self.deps.store.get_with_bytes::<CardRecord>(self.id.as_bytes()) {
            Ok(found) => {
                let (record, bytes) = found.unzip();
                self.record = record;
                self.stored = bytes;
                self.load_error = None;
            }
            Err(e) => {
                tracing::error!(card_id = %self.id, error = %e, "card actor could not load its state");
                self.record = None;
                self.stored = None;
                self.load_error = Some(e.to_string());
            }
        }
    }

    fn now(&self) -> Timestamp {
        self.deps.clock.now()
    }

    /// Runs the synchronous part of a message under the panic guard.
    fn guarded<R>(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut Self) -> ActorResult<R>,
    ) -> ActorResult<R> {
        self.stats.touch();
        if self.load_error.is_some() {
            self.load();
            if let Some(e) = &self.load_error {
                return Err(ActorError::unavailable(format!("card state unreadable: {e}")));
            }
        }
        let crash = std::mem::take(&mut self.crash_next);
        match catch_panic(|| {
            if crash {
                panic!("card actor crash requested by an operator");
            }
            f(self)
        }) {
            Ok(result) => result,
            Err(_panicked) => {
                self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                self.deps.counters.restarts_total.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(card_id = %self.id, "card actor panicked; restarting from the store");
                actix::ActorContext::stop(ctx); // the Supervisor restarts it
                Err(ActorError::unavailable("the card actor restarted; retry"))
            }
        }
    }

    fn record(&self) -> Result<&CardRecord, Reject> {
        self.record.as_ref().ok_or(Reject::NotFound { what: "card" })
    }

    /// Commits `record` with `batch`, fenced on the bytes this actor last saw.
    fn persist(&mut self, record: CardRecord, mut batch: WriteBatch) -> ActorResult<FlushTicket> {
        let bytes = encode(&record)?;
        batch.expect_raw(Tree::Cards, self.id.as_bytes(), self.stored.clone());
        batch.put_raw(Tree::Cards, self.id.as_bytes(), bytes.clone());
        match self.deps.store.commit(batch) {
            Ok(ticket) => {
                self.record = Some(record);
                self.stored = Some(bytes);
                Ok(ticket)
            }
            Err(StoreError::Conflict { .. }) => {
                tracing::error!(card_id = %self.id, "card changed under its actor; reloading");
                self.load();
                Err(ActorError::unavailable("the card changed concurrently; retry"))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn create(&mut self, new: NewCard) -> ActorResult<(CardRecord, Option<FlushTicket>)> {
        if new.id != self.id {
            return Err(Reject::invalid("id", "card id does not match its actor").into());
        }
        if let Some(existing) = &self.record {
            return Ok((existing.clone(), None));
        }
        let record = CardRecord::create(new, self.now(), Source::Merchant);
        let mut batch = WriteBatch::new();
        batch.put_raw(Tree::Index, format!("mcard/{}/{}", record.merchant_id, record.id), []);
        batch.put_raw(Tree::Index, format!("chdcard/{}/{}", record.cardholder_id, record.id), []);
        let ticket = self.persist(record.clone(), batch)?;
        Ok((record, Some(ticket)))
    }

    fn apply_transaction(
        &mut self,
        txn: ChannelTransaction,
    ) -> ActorResult<(TransactionChange, Option<FlushTicket>)> {
        let mut card = self.record()?.clone();
        let store = &self.deps.store;
        let dedup_key = format!("chtxn/{}/{}", card.channel_id, txn.channel_transaction_id);
        let existing = match store.get_raw(Tree::Index, &dedup_key)? {
            Some(key) => store.get::<TransactionRecord>(&key)?,
            None => None,
        };
        let clears_known_auth = txn.kind == ChannelTxnType::Clearing
            && match &txn.related_transaction_id {
                Some(auth) => store.contains(Tree::Index, format!("chtxn/{}/{auth}", card.channel_id))?,
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
        batch.put_raw(Tree::Index, format!("txn/{}", stored.id), card.id.as_bytes());
        outbox::stage(
            &mut batch,
            &card.merchant_id,
            event_type,
            EventObject::Transaction(stored.clone()),
            now,
        )?;
        let ticket = self.persist(card, batch)?;
        Ok((change, Some(ticket)))
    }

    /// The reply future: waits for the flush covering the write, then answers.
    fn reply<T: Send + 'static>(
        &self,
        result: ActorResult<(T, Option<FlushTicket>)>,
    ) -> ResponseFuture<ActorResult<T>> {
        let store = self.deps.store.clone();
        Box::pin(async move {
            let (value, ticket) = result?;
            if let Some(ticket) = ticket {
                store.wait_durable(ticket).await?;
            }
            Ok(value)
        })
    }
}

impl Actor for CardActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        self.load();
    }
}

impl Supervised for CardActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.crash_next = false;
        self.load();
    }
}

/// Creates the card if it does not exist yet (a repeat returns the stored card).
#[derive(Message)]
#[rtype(result = "ActorResult<CardRecord>")]
pub struct CreateCard(pub NewCard);

impl Handler<CreateCard> for CardActor {
    type Result = ResponseFuture<ActorResult<CardRecord>>;
    fn handle(&mut self, msg: CreateCard, ctx: &mut Context<Self>) -> Self::Result {
        let result = self.guarded(ctx, |act| act.create(msg.0));
        self.reply(result)
    }
}

#[derive(Message)]
#[rtype(result = "ActorResult<CardRecord>")]
pub struct GetCard;

impl Handler<GetCard> for CardActor {
    type Result = ResponseFuture<ActorResult<CardRecord>>;
    fn handle(&mut self, _msg: GetCard, ctx: &mut Context<Self>) -> Self::Result {
        let result = self.guarded(ctx, |act| Ok((act.record()?.clone(), None)));
        self.reply(result)
    }
}

/// A channel transaction (pulled or pushed), stored once per channel id.
#[derive(Message)]
#[rtype(result = "ActorResult<TransactionChange>")]
pub struct ApplyTransaction(pub ChannelTransaction);

impl Handler<ApplyTransaction> for CardActor {
    type Result = ResponseFuture<ActorResult<TransactionChange>>;
    fn handle(&mut self, msg: ApplyTransaction, ctx: &mut Context<Self>) -> Self::Result {
        let result = self.guarded(ctx, |act| act.apply_transaction(msg.0));
        self.reply(result)
    }
}

/// The sandbox crash helper: the next message after this one panics.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CrashNext;

impl Handler<CrashNext> for CardActor {
    type Result = ();
    fn handle(&mut self, _msg: CrashNext, _ctx: &mut Context<Self>) {
        self.crash_next = true;
    }
}

/// The debug view of the actor (API.md §7). Card records hold no secrets.
#[derive(Debug, Clone)]
pub struct InspectReply {
    pub state: Option<CardRecord>,
    pub store_version: u64,
    pub activated_at: Timestamp,
    pub last_message_at: Timestamp,
    pub messages_handled: u64,
    pub restarts: u64,
    pub mailbox_len: usize,
}

#[derive(Message)]
#[rtype(result = "InspectReply")]
pub struct Inspect;

impl Handler<Inspect> for CardActor {
    type Result = actix::MessageResult<Inspect>;
    fn handle(&mut self, _msg: Inspect, _ctx: &mut Context<Self>) -> Self::Result {
        // Not counted as handled work and never crashes: operators look without touching.
        let stats = &self.stats;
        let store_version =
            self.deps.store.get::<CardRecord>(self.id.as_bytes()).ok().flatten().map_or(0, |r| r.version);
        actix::MessageResult(InspectReply {
            state: self.record.clone(),
            store_version,
            activated_at: Timestamp(stats.activated_at_ms.load(Ordering::Relaxed)),
            last_message_at: Timestamp(stats.last_message_at_ms.load(Ordering::Relaxed)),
            messages_handled: stats.messages_handled.load(Ordering::Relaxed),
            restarts: stats.restarts.load(Ordering::Relaxed),
            mailbox_len: stats.mailbox_len(),
        })
    }
}
