//! Recipient actor: load → apply → persist → reply, like the card actor. The
//! single writer of one recipient (and, as Marketplace I grows, of its
//! onboardings, compliance and agreements); the registry activates,
//! supervises and passivates it like the merchant and card actors.

use std::sync::Arc;

use actix::{Actor, Context, Handler, Message, Supervised};
use pelago_storage::{FlushTicket, RecipientId, Tree, WriteBatch};

use super::state::{RecipientData, RecipientRecord};
use crate::{
    error::{ActorResult, Reject},
    keys::Index,
    ports::SharedClock,
    runtime::{ActorStats, EntityCell, InspectReply, RegistryCounters, durable_handler},
};

/// What every recipient actor shares.
pub struct RecipientDeps {
    pub store: pelago_storage::Store,
    pub clock: SharedClock,
    pub counters: Arc<RegistryCounters>,
}

pub struct RecipientActor {
    pub(super) id: RecipientId,
    pub(super) deps: Arc<RecipientDeps>,
    pub(super) cell: EntityCell<RecipientRecord>,
}

pub(super) fn cell(a: &mut RecipientActor) -> &mut EntityCell<RecipientRecord> {
    &mut a.cell
}

/// The index rows of a recipient: the merchant's list and its reference filter.
fn index_keys(r: &RecipientRecord) -> Vec<Vec<u8>> {
    let (merchant, recipient) = (r.merchant_id.clone(), r.id.clone());
    let mut keys =
        vec![Index::MerchantRecipient { merchant: merchant.clone(), recipient: recipient.clone() }.encode()];
    if let Some(reference) = r.data.reference.clone() {
        keys.push(Index::RecipientReference { merchant, reference, recipient }.encode());
    }
    keys
}

impl RecipientActor {
    pub fn new(id: RecipientId, deps: Arc<RecipientDeps>, stats: Arc<ActorStats>) -> Self {
        let cell = EntityCell::new(
            "recipient",
            id.as_bytes().to_vec(),
            deps.store.clone(),
            Arc::clone(&deps.counters),
            stats,
        );
        RecipientActor { id, deps, cell }
    }

    fn create(
        &mut self,
        record: RecipientRecord,
        binding: Option<String>,
    ) -> ActorResult<(RecipientRecord, Option<FlushTicket>)> {
        if record.id != self.id {
            return Err(Reject::invalid("id", "recipient id does not match its actor").into());
        }
        if let Some(existing) = self.cell.record() {
            return Ok((existing.clone(), None));
        }
        let mut batch = WriteBatch::new();
        for key in index_keys(&record) {
            batch.put_raw(Tree::Index, key, []);
        }
        if let Some(b) = &binding {
            batch.expect_absent(Tree::Index, b);
            batch.put_raw(Tree::Index, b, record.id.as_bytes());
        }
        let ticket = self.cell.persist(record.clone(), batch)?;
        Ok((record, Some(ticket)))
    }

    fn update(&mut self, data: RecipientData) -> ActorResult<(RecipientRecord, Option<FlushTicket>)> {
        let mut record = self.cell.existing("recipient")?.clone();
        record.onboarding = super::onboardings::current(self.cell.store(), &self.id)?
            .as_ref()
            .map(super::onboardings::summary);
        let before = index_keys(&record);
        record.update(data, self.deps.clock.now())?;
        let after = index_keys(&record);
        let mut batch = WriteBatch::new();
        for key in before.iter().filter(|k| !after.contains(k)) {
            batch.delete(Tree::Index, key);
        }
        for key in after.iter().filter(|k| !before.contains(k)) {
            batch.put_raw(Tree::Index, key, []);
        }
        let ticket = self.cell.persist(record.clone(), batch)?;
        Ok((record, Some(ticket)))
    }
}

impl Actor for RecipientActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        self.cell.load();
    }
}

impl Supervised for RecipientActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.cell.load();
    }
}

/// Creates the recipient (checked by `RecipientRecord::create`) with its
/// Idempotency-Key binding; a repeat returns the stored one.
#[derive(Message)]
#[rtype(result = "ActorResult<RecipientRecord>")]
pub struct CreateRecipient {
    pub record: RecipientRecord,
    pub binding: Option<String>,
}

durable_handler!(RecipientActor, cell, CreateRecipient => RecipientRecord, |act, msg| {
    act.create(msg.record, msg.binding)
});

#[derive(Message)]
#[rtype(result = "ActorResult<RecipientRecord>")]
pub struct GetRecipient;

durable_handler!(RecipientActor, cell, GetRecipient => RecipientRecord, |act, _msg| {
    Ok((act.cell.existing("recipient")?.clone(), None))
});

/// `PATCH`: replaces the data (all but the type), by §3's rules.
#[derive(Message)]
#[rtype(result = "ActorResult<RecipientRecord>")]
pub struct UpdateRecipient(pub RecipientData);

durable_handler!(RecipientActor, cell, UpdateRecipient => RecipientRecord, |act, msg| act.update(msg.0));

/// The debug view. The record's numbers are sealed and its `Debug` prints
/// them as `[sealed]`; only their last 4 are readable.
#[derive(Message)]
#[rtype(result = "ActorResult<InspectReply<RecipientRecord>>")]
pub struct Inspect;

impl Handler<Inspect> for RecipientActor {
    type Result = ActorResult<InspectReply<RecipientRecord>>;
    fn handle(&mut self, _msg: Inspect, ctx: &mut Context<Self>) -> Self::Result {
        EntityCell::guarded(self, ctx, cell, |act| {
            let store_version = act.cell.stored_version(|r| r.version);
            Ok(InspectReply::new(act.cell.record().cloned(), store_version, &act.cell.stats))
        })
    }
}
