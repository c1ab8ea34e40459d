//! Merchant actor: the single writer of one merchant's configuration and keys.
//! Same shape as the card actor: load → apply (pure) → persist (fenced) →
//! reply after the flush.

use std::sync::Arc;

use actix::{Actor, Context, Handler, Message, Supervised};
use pelago_storage::{
    ApiKeyId, FlushTicket, JournalEntryId, MerchantId, RecipientId, Store, Timestamp, Tree, WriteBatch,
};

use super::state::{ApiKeyRecord, ConfigChange, MerchantRecord};
use crate::{
    error::{ActorResult, Reject},
    keys::Index,
    ledger::{
        self, Account, BalanceTxnRecord, CurrencyBalance, EntryKind, JournalEntry, Posting,
        marketplace::RecipientBalances,
    },
    outbox::{self, EventObject},
    ports::SharedClock,
    recipient::state::RecipientRecord,
    runtime::durable_handler,
    runtime::{ActorStats, EntityCell, InspectReply, RegistryCounters},
};

pub struct MerchantDeps {
    pub store: Store,
    pub clock: SharedClock,
    pub counters: Arc<RegistryCounters>,
}

pub struct MerchantActor {
    pub(super) id: MerchantId,
    deps: Arc<MerchantDeps>,
    pub(super) cell: EntityCell<MerchantRecord>,
}

pub(super) fn cell(a: &mut MerchantActor) -> &mut EntityCell<MerchantRecord> {
    &mut a.cell
}

/// What a merchant can be asked to do.
#[derive(Debug)]
pub enum MerchantCommand {
    /// Creates the merchant with its first API key (a repeat returns the stored merchant).
    Create {
        record: Box<MerchantRecord>,
        first_key: ApiKeyRecord,
        /// An index key bound to this merchant in the same commit (the
        /// caller's Idempotency-Key), so a retry finds what was created.
        binding: Option<String>,
    },
    Get,
    /// `binding`: an index key and value written in the same commit (the
    /// caller's Idempotency-Key and its sealed answer), refused if present.
    Change {
        change: ConfigChange,
        binding: Option<(String, Vec<u8>)>,
    },
    IssueKey {
        key: ApiKeyRecord,
        binding: Option<(String, Vec<u8>)>,
    },
    RevokeKey(ApiKeyId),
}

fn bind(batch: &mut WriteBatch, binding: Option<(String, Vec<u8>)>) {
    if let Some((key, value)) = binding {
        batch.expect_absent(Tree::Index, &key);
        batch.put_raw(Tree::Index, key, value);
    }
}

impl Message for MerchantCommand {
    type Result = ActorResult<MerchantRecord>;
}

impl MerchantActor {
    pub fn new(id: MerchantId, deps: Arc<MerchantDeps>, stats: Arc<ActorStats>) -> Self {
        let cell = EntityCell::new(
            "merchant",
            id.as_bytes().to_vec(),
            deps.store.clone(),
            Arc::clone(&deps.counters),
            stats,
        );
        MerchantActor { id, deps, cell }
    }

    pub(super) fn now(&self) -> Timestamp {
        self.deps.clock.now()
    }

    fn run(&mut self, command: MerchantCommand) -> ActorResult<(MerchantRecord, Option<FlushTicket>)> {
        match command {
            MerchantCommand::Create { record, first_key, binding } => {
                self.create(*record, first_key, binding)
            }
            MerchantCommand::Get => Ok((self.cell.existing("merchant")?.clone(), None)),
            MerchantCommand::Change { change, binding } => {
                let mut record = self.cell.existing("merchant")?.clone();
                record.apply(change, self.now())?;
                let mut batch = WriteBatch::new();
                bind(&mut batch, binding);
                let ticket = self.cell.persist(record.clone(), batch)?;
                Ok((record, Some(ticket)))
            }
            MerchantCommand::IssueKey { key, binding } => self.issue_key(key, binding),
            MerchantCommand::RevokeKey(key_id) => self.revoke_key(key_id),
        }
    }

    /// The merchant with its first key (a repeat answers the merchant as it
    /// is); its gateway account and Idempotency-Key binding are unique.
    fn create(
        &mut self,
        record: MerchantRecord,
        first_key: ApiKeyRecord,
        binding: Option<String>,
    ) -> ActorResult<(MerchantRecord, Option<FlushTicket>)> {
        if record.id != self.id || first_key.merchant_id != self.id {
            return Err(Reject::invalid("id", "merchant id does not match its actor").into());
        }
        if let Some(existing) = self.cell.record() {
            return Ok((existing.clone(), None));
        }
        let mut batch = WriteBatch::new();
        if let Some(gw) = &record.gateway {
            // gateway.merchant_id is unique across merchants.
            let key = Index::GatewayAccount { gateway_merchant: gw.merchant_id.clone() }.encode();
            batch.expect_absent(Tree::Index, &key);
            batch.put_raw(Tree::Index, &key, self.id.as_bytes());
        }
        if let Some(binding) = &binding {
            batch.expect_absent(Tree::Index, binding);
            batch.put_raw(Tree::Index, binding, format!("{} {}", self.id, first_key.key_id));
        }
        self.stage_key(&mut batch, &first_key)?;
        let ticket = match self.cell.persist(record.clone(), batch) {
            Err(crate::ActorError::Unavailable(_)) if record.gateway.is_some() || binding.is_some() => {
                return Err(Reject::Conflict {
                    message: "gateway.merchant_id is already used by another merchant, \
                              or this Idempotency-Key already created one"
                        .into(),
                }
                .into());
            }
            other => other?,
        };
        Ok((record, Some(ticket)))
    }

    fn issue_key(
        &mut self,
        key: ApiKeyRecord,
        binding: Option<(String, Vec<u8>)>,
    ) -> ActorResult<(MerchantRecord, Option<FlushTicket>)> {
        let mut record = self.cell.existing("merchant")?.clone();
        if key.merchant_id != self.id {
            return Err(Reject::invalid("merchant_id", "key belongs to another merchant").into());
        }
        record.version += 1;
        let mut batch = WriteBatch::new();
        bind(&mut batch, binding);
        batch.expect_absent(Tree::ApiKeys, key.key_id.as_bytes());
        self.stage_key(&mut batch, &key)?;
        let ticket = self.cell.persist(record.clone(), batch)?;
        Ok((record, Some(ticket)))
    }

    /// The key record and its `MerchantKey` index row.
    fn stage_key(&self, batch: &mut WriteBatch, key: &ApiKeyRecord) -> ActorResult<()> {
        batch.put(key.key_id.as_bytes(), key)?;
        let row = Index::MerchantKey { merchant: self.id.clone(), key: key.key_id.clone() };
        batch.put_raw(Tree::Index, row.encode(), []);
        Ok(())
    }

    fn revoke_key(&mut self, key_id: ApiKeyId) -> ActorResult<(MerchantRecord, Option<FlushTicket>)> {
        let mut record = self.cell.existing("merchant")?.clone();
        let store = self.cell.store();
        let mut key = match store.get::<ApiKeyRecord>(key_id.as_bytes())? {
            Some(k) if k.merchant_id == self.id => k,
            _ => return Err(Reject::NotFound { what: "API key" }.into()),
        };
        if key.revoked_at.is_some() {
            return Ok((record, None));
        }
        key.revoked_at = Some(self.now());
        record.version += 1;
        let mut batch = WriteBatch::new();
        batch.put(key_id.as_bytes(), &key)?;
        let ticket = self.cell.persist(record.clone(), batch)?;
        Ok((record, Some(ticket)))
    }
}

impl Actor for MerchantActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        self.cell.load();
    }
}

impl Supervised for MerchantActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.cell.load();
    }
}

durable_handler!(MerchantActor, cell, MerchantCommand => MerchantRecord, |act, msg| act.run(msg));

/// Books one journal entry on this merchant's accounts: at most once per
/// `(source_id, kind)` (a repeat answers the first booking, `replayed`), whole
/// or not at all (`insufficient_funds` if `available` would go below zero).
#[derive(Debug)]
pub struct PostEntry {
    pub source_id: String,
    pub kind: EntryKind,
    pub postings: Vec<Posting>,
    /// An event to emit with the first merchant balance transaction (e.g. `deposit.succeeded`).
    pub event: Option<&'static str>,
    /// Index rows written in the same commit (a collection awaiting settlement,
    /// an Idempotency-Key binding, a recovery marker).
    pub index: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Clone)]
pub struct Posted {
    pub entry: JournalEntry,
    pub balances: Vec<CurrencyBalance>,
    pub balance_txns: Vec<BalanceTxnRecord>,
    pub replayed: bool,
}

impl Message for PostEntry {
    type Result = ActorResult<Posted>;
}

/// A [`PostEntry`] with more writes in the same commit: a saga's durable
/// intent (a top-up record, its index rows, its recovery marker) lands with
/// the booking that pays for it, or neither does; or the marker that asked
/// for a booking goes with it. A repeat of a booked entry answers `replayed`
/// and writes nothing, `with` included; a precondition of `with` that fails
/// fails the whole commit (503, nothing written).
pub struct PostEntryWith {
    pub entry: PostEntry,
    pub with: WriteBatch,
}

impl Message for PostEntryWith {
    type Result = ActorResult<Posted>;
}

/// `jop/{source_id}/{kind}` → the journal entry id and a newline, then the
/// keys of its balance transactions, newline-separated: one booking per
/// effect, found again with everything it wrote (rows of older data dirs
/// hold the id alone).
pub fn entry_index(source_id: &str, kind: EntryKind) -> Vec<u8> {
    Index::JournalOp { source: source_id.to_owned(), kind: kind.as_str().to_owned() }.encode()
}

fn entry_index_value(entry: &JournalEntryId, balance_txn_keys: &[String]) -> Vec<u8> {
    // Always a newline after the id, so a row with no balance transaction is not a legacy row.
    let mut value = entry.as_bytes().to_vec();
    value.push(b'\n');
    value.extend_from_slice(balance_txn_keys.join("\n").as_bytes());
    value
}

/// The booking of `(source_id, kind)`, if any: its journal entry and its
/// merchant balance transactions.
pub fn booked(
    store: &Store,
    source_id: &str,
    kind: EntryKind,
) -> ActorResult<Option<(JournalEntry, Vec<BalanceTxnRecord>)>> {
    let Some(value) = store.get_raw(Tree::Index, entry_index(source_id, kind))? else { return Ok(None) };
    if value == VOIDED {
        return Ok(None);
    }
    let mut parts = value.split(|b| *b == b'\n');
    let entry_id = parts.next().unwrap_or_default();
    let entry = store.get::<JournalEntry>(entry_id)?.ok_or(Reject::NotFound { what: "journal entry" })?;
    let keys: Vec<&[u8]> = parts.filter(|k| !k.is_empty()).collect();
    let balance_txns = if !value.contains(&b'\n') {
        // A row written before the keys were kept: the merchant's transactions of that source.
        store
            .scan::<BalanceTxnRecord>(format!("{}/", entry.merchant_id).as_bytes(), None, false, usize::MAX)?
            .into_iter()
            .map(|(_, t)| t)
            .filter(|t| t.source_id == source_id && t.created_at == entry.created_at)
            .collect()
    } else {
        let mut txns = Vec::with_capacity(keys.len());
        for key in keys {
            txns.push(
                store
                    .get::<BalanceTxnRecord>(key)?
                    .ok_or(Reject::NotFound { what: "balance transaction" })?,
            );
        }
        txns
    };
    Ok(Some((entry, balance_txns)))
}

impl MerchantActor {
    fn post(&mut self, req: PostEntry, with: WriteBatch) -> ActorResult<(Posted, Option<FlushTicket>)> {
        let mut record = self.cell.existing("merchant")?.clone();
        let mut batch = with;
        let posted = self.book(&mut record, &mut batch, req)?;
        if posted.replayed {
            return Ok((posted, None));
        }
        let ticket = self.cell.persist(record, batch)?;
        Ok((posted, Some(ticket)))
    }

    /// Stages one entry's booking into `batch` and `record` (its balances and
    /// version), refused whole as [`PostEntry`] says; a booking made before
    /// answers `replayed` and stages nothing. The caller persists.
    pub(super) fn book(
        &mut self,
        record: &mut MerchantRecord,
        batch: &mut WriteBatch,
        req: PostEntry,
    ) -> ActorResult<Posted> {
        if let Some((entry, balance_txns)) = self.booked_before(&req)? {
            return Ok(Posted { entry, balances: record.balances.clone(), balance_txns, replayed: true });
        }
        let index = entry_index(&req.source_id, req.kind);
        ledger::check_balanced(&req.postings)?;
        let balances = ledger::apply_to_balances(&self.id, &record.balances, &req.postings)?;
        if req.kind.is_marketplace() {
            refuse_negative_pending(&record.balances, &balances)?;
        }
        let now = self.now();
        let recipients = self.recipient_balances(&req.postings, now)?;
        let entry = JournalEntry {
            id: pelago_storage::JournalEntryId::generate(),
            merchant_id: self.id.clone(),
            source_id: req.source_id.clone(),
            kind: req.kind,
            postings: req.postings,
            created_at: now,
        };
        batch.put(entry.id.as_bytes(), &entry)?;
        let (balance_txns, balance_txn_keys) = self.balance_txns(&entry, &record.balances, batch)?;
        batch.expect_absent(Tree::Index, &index);
        batch.put_raw(Tree::Index, &index, entry_index_value(&entry.id, &balance_txn_keys));
        for balances in &recipients {
            batch.put(balances.recipient_id.as_bytes(), balances)?;
        }
        if entry.kind.is_marketplace() {
            batch.put_raw(Tree::Index, marketplace_entry_index(&self.id, entry.created_at, &entry.id), []);
        }
        if let (Some(event), Some(first)) = (req.event, balance_txns.first()) {
            outbox::stage(
                batch,
                &self.id,
                event,
                EventObject::BalanceTransaction(Box::new(first.clone())),
                now,
            )?;
        }
        for (key, value) in req.index {
            batch.expect_absent(Tree::Index, &key);
            batch.put_raw(Tree::Index, key, value);
        }
        record.balances = balances.clone();
        record.version += 1;
        Ok(Posted { entry, balances, balance_txns, replayed: false })
    }

    /// The booking `req` repeats, if any; a voided `(source, kind)` refuses.
    fn booked_before(&self, req: &PostEntry) -> ActorResult<Option<(JournalEntry, Vec<BalanceTxnRecord>)>> {
        let store = self.cell.store();
        if store.get_raw(Tree::Index, entry_index(&req.source_id, req.kind))?.is_some_and(|v| v == VOIDED) {
            return Err(Reject::state(format!(
                "{} {} was voided: its request stopped before it and nothing may be booked for it",
                req.kind.as_str(),
                req.source_id
            ))
            .into());
        }
        booked(store, &req.source_id, req.kind)
    }

    /// One balance transaction per merchant posting of `entry`, with the
    /// running balances from `before`, staged in `batch`; with their keys.
    fn balance_txns(
        &self,
        entry: &JournalEntry,
        before: &[CurrencyBalance],
        batch: &mut WriteBatch,
    ) -> ActorResult<(Vec<BalanceTxnRecord>, Vec<String>)> {
        let mut running = before.to_vec();
        let (mut balance_txns, mut keys) = (Vec::new(), Vec::new());
        for posting in &entry.postings {
            let mine = matches!(&posting.account,
                Account::MerchantAvailable(m) | Account::MerchantPending(m) if *m == self.id);
            if !mine {
                continue;
            }
            running = ledger::add_postings(&self.id, &running, std::slice::from_ref(posting))?;
            let after =
                running.iter().find(|b| b.currency == posting.amount.currency).copied().unwrap_or(
                    CurrencyBalance { currency: posting.amount.currency, available: 0, pending: 0 },
                );
            let txn = BalanceTxnRecord {
                id: pelago_storage::BalanceTxnId::generate(),
                merchant_id: self.id.clone(),
                kind: ledger::balance_txn_kind(entry.kind, balance_txns.len()).to_owned(),
                amount: posting.amount,
                available_after: after.available,
                pending_after: after.pending,
                source_id: entry.source_id.clone(),
                created_at: entry.created_at,
            };
            let key = format!("{}/{}", self.id, txn.id);
            batch.put(&key, &txn)?;
            keys.push(key);
            balance_txns.push(txn);
        }
        Ok((balance_txns, keys))
    }
}

durable_handler!(MerchantActor, cell, PostEntry => Posted, |act, msg| act.post(msg, WriteBatch::new()));

durable_handler!(MerchantActor, cell, PostEntryWith => Posted, |act, msg| act.post(msg.entry, msg.with));

impl MerchantActor {
    /// The balances of every recipient `postings` touch, with them applied;
    /// refuses an entry that names another merchant's recipient, or would
    /// take a recipient account below zero (MARKETPLACE.md §8).
    fn recipient_balances(
        &self,
        postings: &[Posting],
        now: Timestamp,
    ) -> ActorResult<Vec<RecipientBalances>> {
        let mut touched: Vec<&RecipientId> = postings.iter().filter_map(|p| p.account.recipient()).collect();
        touched.sort();
        touched.dedup();
        let store = self.cell.store();
        let mut out = Vec::with_capacity(touched.len());
        for id in touched {
            let mut balances = match store.get::<RecipientBalances>(id.as_bytes())? {
                Some(b) => b,
                None => match store.get::<RecipientRecord>(id.as_bytes())? {
                    Some(r) => RecipientBalances::empty(r.id, r.merchant_id, now),
                    None => return Err(Reject::NotFound { what: "recipient" }.into()),
                },
            };
            if balances.merchant_id != self.id {
                return Err(
                    Reject::invalid("recipient_id", "the recipient belongs to another merchant").into()
                );
            }
            balances.apply(postings, now)?;
            out.push(balances);
        }
        Ok(out)
    }
}

/// A marketplace entry may not take the merchant's pending (the in-transit of
/// its own lines) below zero either, where it went down.
fn refuse_negative_pending(before: &[CurrencyBalance], after: &[CurrencyBalance]) -> Result<(), Reject> {
    for b in after.iter().filter(|b| b.pending < 0) {
        let was = before.iter().find(|x| x.currency == b.currency).map_or(0, |x| x.pending);
        if b.pending < was {
            return Err(Reject::InsufficientFunds {
                needed: was - b.pending,
                currency: b.currency.to_string(),
            });
        }
    }
    Ok(())
}

/// `mkt/{merchant}/{created_at ms, 20 digits}/{entry}`: the merchant's
/// MARKETPLACE.md §8 entries in the order they were booked, by service time
/// (the reconciliation files read one day of them as a range).
pub fn marketplace_entry_index(merchant: &MerchantId, at: Timestamp, entry: &JournalEntryId) -> String {
    let at = format!("{:020}", at.unix_ms().max(0));
    crate::keys::Index::MarketplaceEntry { merchant: merchant.clone(), at, entry: entry.clone() }.text()
}

/// The prefix of [`marketplace_entry_index`] rows of one merchant.
pub fn marketplace_entry_prefix(merchant: &MerchantId) -> String {
    crate::keys::scan_prefix(crate::keys::MKT, &[merchant])
}

/// The `jop/` row of a booking that will never be made (see [`VoidEntry`]).
const VOIDED: &[u8] = b"void";

/// Settles, in the merchant's own order, whether `(source_id, kind)` was
/// booked: if it was, the answer says so; if not, it never can be (a later
/// `PostEntry` for it is refused). The resolver asks this before it fails an
/// operation whose booking it did not see, so a booking still queued in the
/// mailbox cannot land after that verdict.
#[derive(Debug)]
pub struct VoidEntry {
    pub source_id: String,
    pub kind: EntryKind,
}

impl Message for VoidEntry {
    type Result = ActorResult<Voided>;
}

/// What [`VoidEntry`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voided {
    /// It was booked before: the operation goes on.
    AlreadyBooked,
    /// It is void now (or was already): nothing was, or will be, booked.
    Void,
}

impl MerchantActor {
    fn void(&mut self, req: VoidEntry) -> ActorResult<(Voided, Option<FlushTicket>)> {
        let record = self.cell.existing("merchant")?.clone();
        let index = entry_index(&req.source_id, req.kind);
        match self.cell.store().get_raw(Tree::Index, &index)? {
            Some(v) if v == VOIDED => Ok((Voided::Void, None)),
            Some(_) => Ok((Voided::AlreadyBooked, None)),
            None => {
                let mut batch = WriteBatch::new();
                batch.expect_absent(Tree::Index, &index);
                batch.put_raw(Tree::Index, &index, VOIDED);
                // Through the cell: fenced on the merchant's bytes like every write of this actor.
                let ticket = self.cell.persist(record, batch)?;
                Ok((Voided::Void, Some(ticket)))
            }
        }
    }
}

durable_handler!(MerchantActor, cell, VoidEntry => Voided, |act, msg| act.void(msg));

/// The debug view; the binary redacts the sealed secrets before showing it.
#[derive(Message)]
#[rtype(result = "ActorResult<InspectReply<MerchantRecord>>")]
pub struct InspectMerchant;

impl Handler<InspectMerchant> for MerchantActor {
    type Result = ActorResult<InspectReply<MerchantRecord>>;
    fn handle(&mut self, _msg: InspectMerchant, ctx: &mut Context<Self>) -> Self::Result {
        EntityCell::guarded(self, ctx, cell, |act| {
            let store_version = act.cell.stored_version(|r| r.version);
            Ok(InspectReply::new(act.cell.record().cloned(), store_version, &act.cell.stats))
        })
    }
}
