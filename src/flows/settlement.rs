//! T+1 settlement (DOMAIN.md §Settlement): gateway collections land in the
//! merchant's `pending` balance on day D; the run for date S moves every
//! collection dated before S to `available`, once. Collections whose top-up is
//! not final are skipped (a refund must still find its money in `pending`).
//!
//! Each collection is an index row `coll/{date}/{source}` written in the same
//! commit as its booking; settling it books `merchant:pending −X,
//! merchant:available +X` once per source, then moves the row to
//! `settled/{run date}/{source}`. The run reads collections a page at a time
//! and sums its totals (checked) from its `settled/` rows, so a run a crash
//! interrupted reports everything it settled. A run is one record per date:
//! asking again returns the same run; a crashed run is resumed at start-up.

use std::{collections::BTreeMap, sync::Arc};

use pelago_actors::{
    card::{
        order::OrderRecord,
        topup::{TopupRecord, TopupStatus, topup_key},
    },
    ledger::{self, EntryKind},
    merchant::PostEntry,
    outbox::{self, EventObject, MerchantSettlement, PaymentsSettlement},
};
use pelago_storage::{Currency, MerchantId, Money, Timestamp, Tree, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::{
    app::Core,
    flows::Error,
    keys::{COLL, Index, Source},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementRun {
    pub id: String,
    pub date: String,
    pub completed: bool,
    pub collections: u64,
    pub amounts: Vec<Money>,
    pub started_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

pelago_storage::record!(SettlementRun, SettlementRuns, 1);

/// The row that marks a collection awaiting settlement: `coll/{YYYY-MM-DD}/{source}`.
pub fn collection_key(at: Timestamp, source: &str) -> String {
    let date = at.to_datetime().format("%Y-%m-%d").to_string();
    Index::Collection { date, source: source.to_owned() }.text()
}

/// `{merchant} {value} {currency} {order id or "-"}`
pub fn collection_value(merchant: &MerchantId, amount: Money, order: Option<&str>) -> Vec<u8> {
    format!("{merchant} {} {} {}", amount.value, amount.currency, order.unwrap_or("-")).into_bytes()
}

struct Collection {
    key: Vec<u8>,
    source: String,
    merchant: MerchantId,
    amount: Money,
    order: Option<String>,
}

fn parse(key: &[u8], value: &[u8]) -> Option<Collection> {
    let (Index::Collection { source, .. } | Index::Settled { source, .. }) = Index::parse(key)? else {
        return None;
    };
    let text = String::from_utf8_lossy(value).into_owned();
    let mut parts = text.split(' ');
    let merchant = MerchantId::parse(parts.next()?).ok()?;
    let value: i64 = parts.next()?.parse().ok()?;
    let currency = Currency::parse(parts.next()?).ok()?;
    let order = parts.next().filter(|o| *o != "-").map(str::to_owned);
    Some(Collection { key: key.to_vec(), source, merchant, amount: Money::new(value, currency), order })
}

/// Whether what a collection paid for is final (a top-up succeeded).
fn is_final(app: &Core, c: &Collection) -> Result<bool, Error> {
    let Some(order) = &c.order else { return Ok(true) };
    let Ok(id) = pelago_storage::OrderId::parse(order) else { return Ok(true) };
    let Some(order) = app.store.get::<OrderRecord>(id.as_bytes())? else { return Ok(true) };
    let Some(tup) = &order.topup_id else { return Ok(true) };
    Ok(app
        .store
        .get::<TopupRecord>(topup_key(&order.card_id, tup))?
        .is_none_or(|t| t.status == TopupStatus::Succeeded))
}

/// How many marketplace payments the run of `date` marked `settled`.
pub fn payments_settled(app: &Core, date: &str) -> Result<u64, Error> {
    Ok(crate::flows::marketplace::payments::settled_by_run(app, date)?.values().sum())
}

/// Starts (or returns) the run for `date` (`YYYY-MM-DD`) and runs it in the background.
pub async fn trigger(app: &Arc<Core>, date: &str) -> Result<SettlementRun, Error> {
    if let Some(run) = app.store.get::<SettlementRun>(date)? {
        if !run.completed {
            spawn(app, date);
        }
        return Ok(run);
    }
    let run = SettlementRun {
        id: format!("stl_{}", pelago_storage::ids::new_ulid()),
        date: date.to_owned(),
        completed: false,
        collections: 0,
        amounts: Vec::new(),
        started_at: app.clock.now(),
        completed_at: None,
    };
    let mut batch = WriteBatch::new();
    batch.expect_absent(Tree::SettlementRuns, date);
    batch.put(date, &run)?;
    if let Some(run) = commit_or_existing(app, batch, date).await? {
        return Ok(run);
    }
    spawn(app, date);
    Ok(run)
}

fn spawn(app: &Arc<Core>, date: &str) {
    let key = Source::SettlementRun { date: date.to_owned() }.text();
    if !app.jobs_running.try_start(&key) {
        return; // already running in this process
    }
    let app = Arc::clone(app);
    let date = date.to_owned();
    tokio::spawn(async move {
        if let Err(e) = run(&app, &date).await {
            tracing::error!(date, error = %e, "settlement run failed; it resumes at the next trigger or start");
        }
        app.jobs_running.finish(&key);
    });
}

/// Collections read per page of a run: a day with many collections is never loaded whole.
const PAGE: usize = 256;

/// The row that records a collection settled by the run of `date`:
/// `settled/{date}/{source}`, with the collection's value. It replaces the
/// collection's `coll/` row in one commit, so the run's totals are summed from
/// the store, and a run a crash interrupted still counts what it settled.
fn settled_key(date: &str, source: &str) -> Vec<u8> {
    Index::Settled { date: date.to_owned(), source: source.to_owned() }.encode()
}

/// A raw index row: key and value.
type Row = (Vec<u8>, Vec<u8>);

/// Up to [`PAGE`] collection rows after `after`, in key (date) order.
fn collections_after(app: &Core, after: Option<&[u8]>) -> Result<Vec<Row>, Error> {
    let keys = app.store.scan_keys(Tree::Index, COLL.as_bytes(), after, false, PAGE)?;
    let mut rows = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some(value) = app.store.get_raw(Tree::Index, &key)? {
            rows.push((key, value));
        }
    }
    Ok(rows)
}

/// Commits a change of the run of `date`; a conflict means another pass wrote
/// it first: that run is the answer.
async fn commit_or_existing(
    app: &Core,
    batch: WriteBatch,
    date: &str,
) -> Result<Option<SettlementRun>, Error> {
    match app.store.commit_durable(batch).await {
        Ok(()) => Ok(None),
        Err(pelago_storage::StoreError::Conflict { .. }) => {
            Ok(Some(app.store.get::<SettlementRun>(date)?.ok_or_else(Error::internal)?))
        }
        Err(e) => Err(e.into()),
    }
}

/// Settles every final collection dated before `date`; idempotent per collection.
pub async fn run(app: &Core, date: &str) -> Result<SettlementRun, Error> {
    let bound = Index::Collection { date: date.to_owned(), source: String::new() }.encode();
    let mut after: Option<Vec<u8>> = None;
    'pages: loop {
        let rows = collections_after(app, after.as_deref())?;
        let Some((last, _)) = rows.last() else { break };
        after = Some(last.clone());
        for (key, value) in rows {
            if key >= bound {
                break 'pages; // keys sort by date
            }
            let Some(c) = parse(&key, &value) else { continue };
            if !is_final(app, &c)? {
                continue;
            }
            // Booked once per source (a repeat after a crash returns the booked entry) ...
            let entry = PostEntry {
                source_id: Source::Settle { source: c.source.clone() }.text(),
                kind: EntryKind::Settlement,
                postings: ledger::settlement(&c.merchant, c.amount)?,
                event: None,
                index: vec![],
            };
            app.actors.ask_merchant(&c.merchant, entry).await??;
            // ... then moved from `coll/` to this run's `settled/` rows in one commit.
            let mut batch = WriteBatch::new();
            batch.expect_raw(Tree::Index, &c.key, Some(value.clone()));
            batch.delete(Tree::Index, &c.key);
            batch.put_raw(Tree::Index, settled_key(date, &c.source), value);
            match app.store.commit_durable(batch).await {
                Ok(()) | Err(pelago_storage::StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            crate::failpoint::hit("settlement.after_one_collection");
        }
    }
    // Marketplace payments captured before the date are marked `settled`, once each (MARKETPLACE.md §6).
    crate::flows::marketplace::payments::settle_captured_before(app, date).await?;
    complete(app, date).await
}

/// Sums the run's `settled/` rows (checked), stages one `settlement.completed`
/// per merchant and marks the run completed, in one commit.
async fn complete(app: &Core, date: &str) -> Result<SettlementRun, Error> {
    let overflow = || Error::internal();
    let mut per_merchant: BTreeMap<MerchantId, MerchantSettlement> = BTreeMap::new();
    let (mut run, seen) = app.store.get_with_bytes::<SettlementRun>(date)?.ok_or_else(Error::internal)?;
    if run.completed {
        return Ok(run); // a second pass over a run already completed: no second event
    }
    run.collections = 0;
    run.amounts.clear();
    for row in app.store.iter_raw(Tree::Index, &settled_key(date, "")) {
        let (key, value) = row?;
        let Some(c) = parse(&key, &value) else { continue };
        let summary = per_merchant.entry(c.merchant.clone()).or_insert_with(|| MerchantSettlement {
            merchant_id: c.merchant.clone(),
            date: date.to_owned(),
            collections: 0,
            amounts: Vec::new(),
        });
        for (count, amounts) in
            [(&mut run.collections, &mut run.amounts), (&mut summary.collections, &mut summary.amounts)]
        {
            *count = count.checked_add(1).ok_or_else(overflow)?;
            match amounts.iter_mut().find(|a| a.currency == c.amount.currency) {
                Some(total) => *total = total.checked_add(c.amount).map_err(|_| overflow())?,
                None => amounts.push(c.amount),
            }
        }
    }
    let payments = crate::flows::marketplace::payments::settled_by_run(app, date)?;
    for merchant in payments.keys() {
        per_merchant.entry(merchant.clone()).or_insert_with(|| MerchantSettlement {
            merchant_id: merchant.clone(),
            date: date.to_owned(),
            collections: 0,
            amounts: Vec::new(),
        });
    }
    let now = app.clock.now();
    let mut batch = WriteBatch::new();
    for (merchant, settlement) in per_merchant {
        let payments = payments.get(&merchant).copied().unwrap_or(0);
        let object = EventObject::PaymentsSettlement(Box::new(PaymentsSettlement { settlement, payments }));
        outbox::stage(&mut batch, &merchant, "settlement.completed", object, now)?;
    }
    run.completed = true;
    run.completed_at = Some(now);
    // Completed once: a concurrent pass that completed it first wins, and this one stages nothing.
    batch.expect_raw(Tree::SettlementRuns, date, Some(seen));
    batch.put(date, &run)?;
    if let Some(run) = commit_or_existing(app, batch, date).await? {
        return Ok(run);
    }
    tracing::info!(date, collections = run.collections, "settlement run completed");
    Ok(run)
}
