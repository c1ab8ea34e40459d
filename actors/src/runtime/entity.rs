//! The part every entity actor shares: its record, the compare-and-set fence
//! on the record's stored bytes, the panic guard, and the reply that waits for
//! durability. An actor embeds one `EntityCell` and adds its own commands.

use std::sync::{Arc, atomic::Ordering};

use actix::{Actor, ActorContext, ResponseFuture};
use pelago_storage::{FlushTicket, Record, Store, StoreError, WriteBatch, encode};

use super::{ActorStats, RegistryCounters, catch_panic};
use crate::error::{ActorError, ActorResult, Reject};

pub struct EntityCell<R: Record> {
    key: Vec<u8>,
    kind: &'static str,
    store: Store,
    counters: Arc<RegistryCounters>,
    pub stats: Arc<ActorStats>,
    record: Option<R>,
    /// The exact bytes last read or written.
    stored: Option<Vec<u8>>,
    load_error: Option<String>,
    crash_next: bool,
}

impl<R: Record + Clone> EntityCell<R> {
    pub fn new(
        kind: &'static str,
        key: Vec<u8>,
        store: Store,
        counters: Arc<RegistryCounters>,
        stats: Arc<ActorStats>,
    ) -> Self {
        EntityCell {
            key,
            kind,
            store,
            counters,
            stats,
            record: None,
            stored: None,
            load_error: None,
            crash_next: false,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// (Re)loads the record from the store, dropping anything in memory.
    pub fn load(&mut self) {
        self.crash_next = false;
        match self.store.get_with_bytes::<R>(&self.key) {
            Ok(found) => {
                let (record, bytes) = found.unzip();
                self.record = record;
                self.stored = bytes;
                self.load_error = None;
            }
            Err(e) => {
                tracing::error!(kind = self.kind, error = %e, "actor could not load its state");
                self.record = None;
                self.stored = None;
                self.load_error = Some(e.to_string());
            }
        }
    }

    pub fn record(&self) -> Option<&R> {
        self.record.as_ref()
    }

    pub fn existing(&self, what: &'static str) -> Result<&R, Reject> {
        self.record.as_ref().ok_or(Reject::NotFound { what })
    }

    pub fn crash_next(&mut self) {
        self.crash_next = true;
    }

    /// Runs the synchronous part of a message under the panic guard. On a
    /// panic the actor is stopped; its Supervisor restarts it and
    /// `Supervised::restarting` must call [`EntityCell::load`].
    pub fn guarded<A, T>(
        actor: &mut A,
        ctx: &mut A::Context,
        cell: impl Fn(&mut A) -> &mut Self,
        f: impl FnOnce(&mut A) -> ActorResult<T>,
    ) -> ActorResult<T>
    where
        A: Actor,
        A::Context: ActorContext,
    {
        let this = cell(actor);
        this.stats.touch();
        if this.load_error.is_some() {
            this.load();
            if let Some(e) = &this.load_error {
                return Err(ActorError::unavailable(format!("state unreadable: {e}")));
            }
        }
        let crash = std::mem::take(&mut this.crash_next);
        match catch_panic(|| {
            if crash {
                panic!("actor crash requested by an operator");
            }
            f(actor)
        }) {
            Ok(result) => result,
            Err(_panicked) => {
                let this = cell(actor);
                this.stats.restarts.fetch_add(1, Ordering::Relaxed);
                this.counters.restarts_total.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(kind = this.kind, "actor panicked; restarting from the store");
                ctx.stop();
                Err(ActorError::unavailable("the actor restarted; retry"))
            }
        }
    }

    /// Commits `record` with `batch`, fenced on the bytes this actor last saw.
    pub fn persist(&mut self, record: R, batch: WriteBatch) -> ActorResult<FlushTicket> {
        self.commit(record, batch, false)
    }

    /// [`EntityCell::persist`] for a batch that also fences records of other
    /// kinds (it expects their bytes): a conflict there refuses the batch,
    /// writes nothing and answers `StoreError::Conflict`, this actor's record
    /// still good; a conflict on this actor's own record reloads it as usual.
    pub fn persist_fenced(&mut self, record: R, batch: WriteBatch) -> ActorResult<FlushTicket> {
        self.commit(record, batch, true)
    }

    fn commit(&mut self, record: R, mut batch: WriteBatch, fences_others: bool) -> ActorResult<FlushTicket> {
        let bytes = encode(&record)?;
        batch.expect_raw(R::TREE, &self.key, self.stored.clone());
        batch.put_raw(R::TREE, &self.key, bytes.clone());
        match self.store.commit(batch) {
            Ok(ticket) => {
                self.record = Some(record);
                self.stored = Some(bytes);
                Ok(ticket)
            }
            Err(StoreError::Conflict { tree }) if fences_others && tree != R::TREE.name() => {
                Err(StoreError::Conflict { tree }.into())
            }
            Err(StoreError::Conflict { .. }) => {
                tracing::error!(kind = self.kind, "record changed under its actor; reloading");
                self.load();
                Err(ActorError::unavailable("the record changed concurrently; retry"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The reply: waits for the flush covering the write, then answers.
    pub fn reply<T: Send + 'static>(
        &self,
        result: ActorResult<(T, Option<FlushTicket>)>,
    ) -> ResponseFuture<ActorResult<T>> {
        let store = self.store.clone();
        Box::pin(async move {
            let (value, ticket) = result?;
            if let Some(ticket) = ticket {
                store.wait_durable(ticket).await?;
            }
            Ok(value)
        })
    }

    /// The version on disk (what a restart would load).
    pub fn stored_version(&self, version_of: impl Fn(&R) -> u64) -> u64 {
        self.store.get::<R>(&self.key).ok().flatten().map_or(0, |r| version_of(&r))
    }
}

/// `impl Handler<$msg> for $actor`, for a command that may write: runs
/// `$body` (an `ActorResult<(reply, Option<FlushTicket>)>`) under the panic
/// guard ([`EntityCell::guarded`]) and answers once its write is durable
/// ([`EntityCell::reply`]). `$cell` is the function that reaches the actor's
/// cell; `$m` binds the message.
macro_rules! durable_handler {
    ($actor:ty, $cell:path, $msg:ty => $reply:ty, |$act:ident, $m:pat_param| $body:expr) => {
        impl actix::Handler<$msg> for $actor {
            type Result = actix::ResponseFuture<$crate::error::ActorResult<$reply>>;
            fn handle(&mut self, msg: $msg, ctx: &mut actix::Context<Self>) -> Self::Result {
                let $m = msg;
                let result = $crate::runtime::EntityCell::guarded(self, ctx, $cell, |$act| $body);
                $cell(self).reply(result)
            }
        }
    };
}
pub(crate) use durable_handler;

/// The debug view of an actor (API.md §7).
#[derive(Debug, Clone)]
pub struct InspectReply<S> {
    pub state: Option<S>,
    pub store_version: u64,
    pub activated_at: pelago_storage::Timestamp,
    pub last_message_at: pelago_storage::Timestamp,
    pub messages_handled: u64,
    pub restarts: u64,
    pub mailbox_len: usize,
}

impl<S> InspectReply<S> {
    pub fn new(state: Option<S>, store_version: u64, stats: &ActorStats) -> Self {
        InspectReply {
            state,
            store_version,
            activated_at: pelago_storage::Timestamp(stats.activated_at_ms.load(Ordering::Relaxed)),
            last_message_at: pelago_storage::Timestamp(stats.last_message_at_ms.load(Ordering::Relaxed)),
            messages_handled: stats.messages_handled.load(Ordering::Relaxed),
            restarts: stats.restarts.load(Ordering::Relaxed),
            mailbox_len: stats.mailbox_len(),
        }
    }
}
