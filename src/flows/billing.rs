//! Monthly billing runs (API.md §3 Billing, DOMAIN.md §Monthly billing).
//!
//! A run per period, recorded once (the same period again is the same run).
//! It walks every card in key order, a chunk at a time. Master-account cards
//! are charged by their merchant's actor, [`FEE_CHUNK`] cards per commit
//! (`pelago_actors::merchant::billing`: booking, charge and event together,
//! fenced on each card's bytes); a chunk refused because a card changed
//! meanwhile, gateway-mode cards and charges begun card by card are charged
//! through each card's actor (`pelago_actors::card::billing`). Progress — a
//! cursor and the counters — is committed every chunk, so a crash resumes
//! where it stopped. Each card is charged at most once per period whatever
//! happens: the charge record and the ledger booking are both idempotent per
//! (card, period). A progress line is logged every few seconds.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use pelago_actors::{
    ActorError, Reject,
    card::{
        CardRecord,
        billing::{BeginCharge, ChargeStatus, FinishCharge},
        order::{CreateOrder, OrderKind},
    },
    ledger::{self, EntryKind},
    merchant::{
        FundingMode, MerchantRecord, PostEntry,
        billing::{ChargeMonthlyFees, FeeCard},
    },
};
use pelago_storage::{BillingRunId, CardId, MerchantId, Money, Timestamp, Tree, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::{app::Core, flows::Error};

const CHUNK: usize = 2_048;
/// Cards being charged at once (more did not bill faster here, and queued a
/// merchant's own calls behind the run: BENCHMARKS.md).
const CONCURRENCY: usize = 32;
/// Fee bookings in merchant mailboxes at once: a merchant's own API calls
/// (a top-up's debit) queue behind at most this many, not behind the run.
const BOOKINGS_IN_FLIGHT: usize = 16;
/// Master-account cards charged per merchant commit, and such commits in
/// merchant mailboxes at once: a merchant's own calls (a top-up's debit)
/// wait behind at most one chunk of 64 charges. Measured at 1,000,000 cards
/// (BENCHMARKS.md): 256 × 2 billed faster but held a top-up's p99 at 137 ms.
const FEE_CHUNK: usize = 64;
const FEE_CHUNKS_IN_FLIGHT: usize = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingRun {
    pub id: BillingRunId,
    pub period: String,
    /// The cron instant the period is billed at.
    pub instant: Timestamp,
    pub completed: bool,
    /// Cards in the store when the run started (for progress).
    pub cards_expected: u64,
    pub cards_total: u64,
    pub charged: u64,
    pub unpaid: u64,
    pub skipped: u64,
    /// The last card key processed.
    pub cursor: Option<Vec<u8>>,
    pub started_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

pelago_storage::record!(BillingRun, BillingRuns, 1);

/// `YYYY-MM` → the first instant of that month (UTC).
pub fn period_start(period: &str) -> Option<Timestamp> {
    let date = chrono::NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d").ok()?;
    if period.len() != 7 {
        return None;
    }
    Some(Timestamp(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis()))
}

pub fn period_of(at: Timestamp) -> String {
    at.to_datetime().format("%Y-%m").to_string()
}

/// Starts (or returns, resuming it if needed) the run for `period`.
pub async fn trigger(app: &Arc<Core>, period: &str, instant: Option<Timestamp>) -> Result<BillingRun, Error> {
    let start = period_start(period).ok_or_else(|| Error::invalid("period", "period must be YYYY-MM"))?;
    if app.clock.now() < start {
        return Err(Error::invalid_state(format!("period {period} has not begun")));
    }
    if let Some(run) = app.store.get::<BillingRun>(period)? {
        if !run.completed {
            spawn(app, period);
        }
        return Ok(run);
    }
    let run = BillingRun {
        id: BillingRunId::generate(),
        period: period.to_owned(),
        instant: instant.unwrap_or_else(|| app.clock.now()),
        completed: false,
        cards_expected: app.store.len(Tree::Cards) as u64,
        cards_total: 0,
        charged: 0,
        unpaid: 0,
        skipped: 0,
        cursor: None,
        started_at: app.clock.now(),
        completed_at: None,
    };
    let mut batch = WriteBatch::new();
    batch.expect_absent(Tree::BillingRuns, period);
    batch.put(period, &run)?;
    if let Err(e) = app.store.commit_durable(batch).await {
        return match e {
            pelago_storage::StoreError::Conflict { .. } => {
                app.store.get::<BillingRun>(period)?.ok_or_else(Error::internal)
            }
            other => Err(other.into()),
        };
    }
    spawn(app, period);
    Ok(run)
}

fn spawn(app: &Arc<Core>, period: &str) {
    if !app.jobs_running.try_start(period) {
        return; // already running in this process
    }
    let app = Arc::clone(app);
    let period = period.to_owned();
    tokio::spawn(async move {
        if let Err(e) = run(&app, &period).await {
            tracing::error!(period, error = %e, "billing run stopped; it resumes at the next trigger or start");
        }
        app.jobs_running.finish(&period);
    });
}

async fn run(app: &Arc<Core>, period: &str) -> Result<(), Error> {
    let mut run = app.store.get::<BillingRun>(period)?.ok_or_else(Error::internal)?;
    let bookings = Arc::new(tokio::sync::Semaphore::new(BOOKINGS_IN_FLIGHT));
    let mut last_log = Instant::now();
    while !run.completed {
        let keys = app.store.scan_keys(Tree::Cards, b"", run.cursor.as_deref(), false, CHUNK)?;
        if keys.is_empty() {
            run.completed = true;
            run.completed_at = Some(app.clock.now());
        } else {
            for outcome in bill_chunk(app, &run, &keys, &bookings).await? {
                match outcome {
                    ChargeStatus::Charged | ChargeStatus::Ordered => run.charged += 1,
                    ChargeStatus::Unpaid => run.unpaid += 1,
                    ChargeStatus::Skipped | ChargeStatus::Pending => run.skipped += 1,
                }
                run.cards_total += 1;
            }
            run.cursor = keys.last().cloned();
        }
        let mut batch = WriteBatch::new();
        batch.put(period, &run)?;
        app.store.commit_durable(batch).await?;
        if last_log.elapsed() > Duration::from_secs(3) || run.completed {
            tracing::info!(
                period,
                cards = run.cards_total,
                charged = run.charged,
                unpaid = run.unpaid,
                skipped = run.skipped,
                completed = run.completed,
                "billing run progress"
            );
            last_log = Instant::now();
        }
    }
    Ok(())
}

/// Charges the cards under `keys`: master-account cards by their merchant's
/// actor a chunk per commit, the rest (and any chunk refused) card by card.
async fn bill_chunk(
    app: &Arc<Core>,
    run: &BillingRun,
    keys: &[Vec<u8>],
    bookings: &tokio::sync::Semaphore,
) -> Result<Vec<ChargeStatus>, Error> {
    let (chunks, mut statuses, mut one_by_one) = fee_chunks(app, &run.period, keys)?;
    let answers: Vec<_> = futures::stream::iter(chunks.into_iter().map(|(merchant, cards)| async move {
        let ids: Vec<CardId> = cards.iter().map(|c| c.card.id.clone()).collect();
        let msg = ChargeMonthlyFees { period: run.period.clone(), instant: run.instant, cards };
        (ids, app.actors.ask_merchant(&merchant, msg).await)
    }))
    .buffer_unordered(FEE_CHUNKS_IN_FLIGHT)
    .collect()
    .await;
    for (ids, answer) in answers {
        match answer {
            Ok(Ok(per_card)) => {
                for (id, status) in ids.into_iter().zip(per_card) {
                    match status {
                        Some(status) => statuses.push(status),
                        None => one_by_one.push(id),
                    }
                }
            }
            Ok(Err(e)) | Err(e) => {
                tracing::debug!(error = %e, cards = ids.len(), "a fee chunk was refused; charging its cards one by one");
                one_by_one.extend(ids);
            }
        }
    }
    let calls = one_by_one.into_iter().map(|card| {
        let app = Arc::clone(app);
        let period = run.period.clone();
        let instant = run.instant;
        async move {
            // A card actor the run activated is passivated again when its charge is done, so a
            // run over every card neither grows memory to the live cap nor pushes recently used
            // actors out.
            let was_live = app.actors.cards.stats_of(&card).is_some();
            let outcome = charge(&app, &card, &period, instant, bookings).await;
            if !was_live {
                app.actors.cards.passivate(&card);
            }
            outcome
        }
    });
    let outcomes: Vec<Result<ChargeStatus, Error>> =
        futures::stream::iter(calls).buffer_unordered(CONCURRENCY).collect().await;
    for outcome in outcomes {
        statuses.push(outcome?);
    }
    Ok(statuses)
}

/// The master-account cards under `keys` as read (record and bytes), in
/// chunks per merchant; the statuses of cards that are gone; the cards to
/// charge one by one (gateway mode).
#[allow(clippy::type_complexity)]
fn fee_chunks(
    app: &Core,
    period: &str,
    keys: &[Vec<u8>],
) -> Result<(Vec<(MerchantId, Vec<FeeCard>)>, Vec<ChargeStatus>, Vec<CardId>), Error> {
    let mut merchants: HashMap<MerchantId, Option<MerchantRecord>> = HashMap::new();
    let mut open: HashMap<MerchantId, Vec<FeeCard>> = HashMap::new();
    let (mut chunks, mut gone, mut one_by_one) = (Vec::new(), Vec::new(), Vec::new());
    for key in keys {
        let Some((card, stored)) = app.store.get_with_bytes::<CardRecord>(key)? else {
            gone.push(ChargeStatus::Skipped);
            continue;
        };
        let merchant = match merchants.entry(card.merchant_id.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(app.store.get::<MerchantRecord>(card.merchant_id.as_bytes())?)
            }
        };
        if merchant.as_ref().is_none_or(|m| m.funding_mode != FundingMode::MasterAccount) {
            one_by_one.push(card.id);
            continue;
        }
        let source_id =
            crate::keys::Source::MonthlyFee { card: card.id.clone(), period: period.to_owned() }.text();
        let merchant_id = card.merchant_id.clone();
        let cards = open.entry(merchant_id.clone()).or_default();
        cards.push(FeeCard { card, stored, source_id });
        if cards.len() == FEE_CHUNK {
            chunks.push((merchant_id.clone(), std::mem::take(cards)));
        }
    }
    chunks.extend(open.into_iter().filter(|(_, cards)| !cards.is_empty()));
    Ok((chunks, gone, one_by_one))
}

/// Charges one card for `period`, once.
async fn charge(
    app: &Arc<Core>,
    card_id: &CardId,
    period: &str,
    instant: Timestamp,
    bookings: &tokio::sync::Semaphore,
) -> Result<ChargeStatus, Error> {
    let Some(card) = app.store.get::<CardRecord>(card_id.as_bytes())? else {
        return Ok(ChargeStatus::Skipped);
    };
    let merchant =
        app.store.get::<MerchantRecord>(card.merchant_id.as_bytes())?.ok_or_else(Error::internal)?;
    let fee = merchant.fee_schedule(card.currency).map_or(0, |f| f.monthly_fixed);
    let charge = app
        .actors
        .ask_card(card_id, BeginCharge { period: period.to_owned(), fee_minor: fee, instant })
        .await??;
    if charge.status != ChargeStatus::Pending {
        return Ok(charge.status);
    }
    let (status, order_id) = match merchant.funding_mode {
        FundingMode::MasterAccount => {
            let entry = PostEntry {
                source_id: crate::keys::Source::MonthlyFee {
                    card: card_id.clone(),
                    period: period.to_owned(),
                }
                .text(),
                kind: EntryKind::MonthlyFee,
                postings: ledger::master_fee(&merchant.id, charge.fee)?,
                event: None,
                index: vec![],
            };
            let booked = {
                let _slot = bookings.acquire().await.map_err(|_| Error::internal())?;
                app.actors.ask_merchant(&merchant.id, entry).await?
            };
            match booked {
                Ok(_) => (ChargeStatus::Charged, None),
                Err(ActorError::Rejected(Reject::InsufficientFunds { .. })) => (ChargeStatus::Unpaid, None),
                Err(e) => return Err(e.into()),
            }
        }
        FundingMode::Gateway => {
            let order = monthly_fee_order(app, &merchant, &card, charge.fee, period).await?;
            (ChargeStatus::Ordered, Some(order))
        }
    };
    let finished =
        app.actors.ask_card(card_id, FinishCharge { period: period.to_owned(), status, order_id }).await??;
    Ok(finished.status)
}

/// Gateway mode: the monthly fee is an order for the cardholder to pay.
async fn monthly_fee_order(
    app: &Arc<Core>,
    merchant: &MerchantRecord,
    card: &CardRecord,
    fee: Money,
    period: &str,
) -> Result<pelago_storage::OrderId, Error> {
    // One order per (card, period): a retry after a crash finds it.
    let binding =
        crate::keys::Index::MonthlyFeeOrder { card: card.id.clone(), period: period.to_owned() }.text();
    if let Some(id) = app.store.get_raw(Tree::Index, &binding)? {
        return pelago_storage::OrderId::parse(&String::from_utf8_lossy(&id)).map_err(|_| Error::internal());
    }
    let order =
        crate::flows::orders::new_order_record(app, merchant, card, OrderKind::MonthlyFee, fee).await?;
    let id = order.id.clone();
    let msg = CreateOrder {
        order,
        new_card: None,
        channel_cardholder_id: None,
        topup: None,
        binding: Some(binding),
    };
    let (_, order) = app.actors.ask_card(&card.id, msg).await??;
    crate::flows::orders::request_checkout(app, &order).await?;
    Ok(id)
}
