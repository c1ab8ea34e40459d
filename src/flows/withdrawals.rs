//! Withdrawals (API.md §3): whitelisted address only; the amount is held from
//! `available` at once (402 if it cannot be), paid out through the gateway
//! with a stored request id, and released if the payout fails.
//!
//! The record (with its request id) is committed first, then the hold is
//! booked (once per withdrawal id), then the payout is asked; a payout whose
//! answer is unknown or still `processing` is finished by the gateway's
//! callback or by the resolver retrying the payout with the same request id
//! (payouts are idempotent on it). Nothing is guessed.

use std::sync::Arc;

use pelago_actors::{
    ActorError, Reject,
    history::{History, Source},
    ledger::{self, EntryKind},
    merchant::{MerchantRecord, PostEntry, booked},
    outbox::{self, EventObject},
    ports::{Outcome, Payout, PayoutStatus},
    withdrawal::{WithdrawalRecord, WithdrawalStatus},
};
use pelago_storage::{Money, StoreError, Timestamp, Tree, WithdrawalId, WriteBatch, encode};

use crate::{
    app::Core,
    flows::{Error, bootstrap},
    keys::{Index, Marker, WDRHOLD, WDRRELEASE, WITHDRAWAL},
};

fn outcome_marker(id: &WithdrawalId) -> Vec<u8> {
    Marker::Withdrawal { withdrawal: id.clone() }.encode()
}

/// The `Index` row written with a hold, removed with the record's commit.
fn hold_marker(id: &WithdrawalId) -> String {
    Index::WithdrawalHold { withdrawal: id.clone() }.text()
}

/// `wdrrelease/{id}` → the Idempotency-Key binding (or nothing): a hold the
/// resolver claimed, to be released (once per id) and its key freed.
fn release_marker(id: &WithdrawalId) -> Vec<u8> {
    Marker::WithdrawalRelease { withdrawal: id.clone() }.encode()
}

/// Releases a claimed hold, frees its key, removes the claim.
async fn finish_release(app: &Core, id: &WithdrawalId) -> Result<(), Error> {
    let Some(binding) = app.store.get_raw(Tree::Operations, release_marker(id))? else { return Ok(()) };
    release_hold(app, id).await?;
    let mut batch = WriteBatch::new();
    batch.delete(Tree::Operations, release_marker(id));
    // The request never got a withdrawal: its Idempotency-Key may run again.
    if !binding.is_empty() {
        let binding = String::from_utf8_lossy(&binding).into_owned();
        if app.store.get_raw(Tree::Index, &binding)?.is_some_and(|v| v == id.as_bytes()) {
            batch.delete(Tree::Index, binding);
        }
    }
    app.store.commit_durable(batch).await?;
    Ok(())
}

/// A hold row's value: the start (8 bytes, big-endian ms), then the
/// Idempotency-Key binding written with the hold, if any, so the resolver
/// frees that key without scanning every binding. (Rows from before the
/// binding was kept here hold the start alone: their hold is released and
/// their key stays bound until it expires.)
fn hold_value(at: Timestamp, binding: Option<&str>) -> Vec<u8> {
    let mut value = at.unix_ms().to_be_bytes().to_vec();
    value.extend_from_slice(binding.unwrap_or_default().as_bytes());
    value
}

fn parse_hold(value: &[u8]) -> (i64, Option<String>) {
    let started = value.get(..8).and_then(|b| b.try_into().ok()).map_or(0, i64::from_be_bytes);
    let binding = value.get(8..).filter(|b| !b.is_empty()).map(|b| String::from_utf8_lossy(b).into_owned());
    (started, binding)
}

/// Releases the hold of a withdrawal whose record never landed (once: the
/// reversal is booked per source id).
async fn release_hold(app: &Core, id: &WithdrawalId) -> Result<(), Error> {
    let Some((entry, _)) = booked(&app.store, id.as_str(), EntryKind::Withdrawal)? else {
        return Ok(()); // never held
    };
    let release = PostEntry {
        source_id: id.to_string(),
        kind: EntryKind::WithdrawalReversal,
        postings: ledger::mirror(&entry.postings)?,
        event: None,
        index: vec![],
    };
    match app.actors.ask_merchant(&entry.merchant_id, release).await? {
        Ok(_) | Err(ActorError::Rejected(Reject::InsufficientFunds { .. })) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn create(
    app: &Core,
    merchant: &MerchantRecord,
    amount: Money,
    address: &str,
    binding: Option<String>,
) -> Result<WithdrawalRecord, Error> {
    if let Some(b) = &binding
        && let Some(id) = app.store.get_raw(Tree::Index, b)?
    {
        // An earlier attempt with this Idempotency-Key held it: that one, never a second.
        let id = WithdrawalId::parse(&String::from_utf8_lossy(&id)).map_err(|_| Error::internal())?;
        if let Some(existing) = app.store.get::<WithdrawalRecord>(id.as_bytes())? {
            return Ok(existing);
        }
        // Held, record not yet written (a crash in between): the resolver releases the hold.
        return Err(Error::unavailable("the withdrawal is being recovered; retry"));
    }
    let mut record = new_record(app, merchant, amount, address)?;
    // The account it pays out under is fixed now (recorded with it): callbacks are bound to it.
    let account = bootstrap::funding_account(app, merchant).await?;
    // The hold first: a withdrawal that cannot be held never exists.
    let hold_row = hold(app, merchant, &record, binding).await?;
    crate::failpoint::hit("withdrawals.after_hold");
    record.held = true;
    record_held(app, &record, &account.merchant_id, hold_row).await?;
    payout(app, merchant, &record).await
}

/// A `processing` withdrawal to a whitelisted address.
fn new_record(
    app: &Core,
    merchant: &MerchantRecord,
    amount: Money,
    address: &str,
) -> Result<WithdrawalRecord, Error> {
    let whitelisted =
        merchant.withdrawal_addresses.iter().find(|a| a.address == address).ok_or_else(|| {
            Error::invalid("address", "the address is not on the merchant's withdrawal whitelist")
        })?;
    let now = app.clock.now();
    Ok(WithdrawalRecord {
        id: WithdrawalId::generate(),
        merchant_id: merchant.id.clone(),
        amount,
        address: whitelisted.address.clone(),
        network: whitelisted.network.clone(),
        status: WithdrawalStatus::Processing,
        request_id: format!("req_{}", pelago_storage::ids::new_ulid()),
        held: false,
        failure_reason: None,
        created_at: now,
        completed_at: None,
        version: 1,
        status_history: History::created(WithdrawalStatus::Processing, Source::Operator, now),
    })
}

/// Holds the amount in the merchant's ledger; returns the hold row written with it.
async fn hold(
    app: &Core,
    merchant: &MerchantRecord,
    record: &WithdrawalRecord,
    binding: Option<String>,
) -> Result<Vec<u8>, Error> {
    let hold_row = hold_value(Timestamp::now_real(), binding.as_deref());
    let hold = PostEntry {
        source_id: record.id.to_string(),
        kind: EntryKind::Withdrawal,
        postings: ledger::withdrawal(&merchant.id, record.amount)?,
        event: None,
        // With the hold: the Idempotency-Key binding (a retry never holds twice) and
        // a recovery row (a crash before the record lands releases the hold).
        index: binding
            .map(|b| (b, record.id.as_bytes().to_vec()))
            .into_iter()
            .chain([(hold_marker(&record.id), hold_row.clone())])
            .collect(),
    };
    app.actors.ask_merchant(&merchant.id, hold).await??;
    Ok(hold_row)
}

/// Records a held withdrawal, with the gateway account it pays out under.
async fn record_held(
    app: &Core,
    record: &WithdrawalRecord,
    account: &str,
    hold_row: Vec<u8>,
) -> Result<(), Error> {
    let mut batch = WriteBatch::new();
    batch.put_raw(Tree::Index, account_key(&record.id), account.as_bytes());
    batch.put(record.id.as_bytes(), record)?;
    let row =
        Index::MerchantWithdrawal { merchant: record.merchant_id.clone(), withdrawal: record.id.clone() };
    batch.put_raw(Tree::Index, row.encode(), []);
    let request = record.request_id.clone();
    batch.put_raw(Tree::Index, Index::WithdrawalRequest { request }.encode(), record.id.as_bytes());
    batch.put_raw(
        Tree::Operations,
        outcome_marker(&record.id),
        Timestamp::now_real().unix_ms().to_be_bytes().to_vec(),
    );
    // Fenced on the hold row: if the resolver claimed it (this request looked
    // dead and its hold is being released), the record never lands and nothing is paid.
    batch.expect_raw(Tree::Index, hold_marker(&record.id), Some(hold_row));
    batch.delete(Tree::Index, hold_marker(&record.id));
    match app.store.commit_durable(batch).await {
        Ok(()) => Ok(()),
        Err(StoreError::Conflict { .. }) => {
            Err(Error::unavailable("the withdrawal's hold was released while it was being recorded; retry"))
        }
        Err(e) => Err(e.into()),
    }
}

async fn payout(
    app: &Core,
    merchant: &MerchantRecord,
    record: &WithdrawalRecord,
) -> Result<WithdrawalRecord, Error> {
    let account = payout_account(app, merchant, record).await?;
    let req = Payout {
        request_id: record.request_id.clone(),
        account,
        amount: record.amount,
        address: record.address.clone(),
        network: record.network.clone(),
    };
    match app.upstreams.gateway.payout(req).await {
        Outcome::Done(accepted) => match accepted.status {
            PayoutStatus::Succeeded => finish(app, &record.id, WithdrawalStatus::Succeeded, None).await,
            PayoutStatus::Failed => {
                finish(
                    app,
                    &record.id,
                    WithdrawalStatus::Failed,
                    accepted.reason.or(Some("payout failed".into())),
                )
                .await
            }
            PayoutStatus::Processing => Ok(record.clone()),
        },
        Outcome::Declined { reason } => finish(app, &record.id, WithdrawalStatus::Failed, Some(reason)).await,
        Outcome::Unknown { detail } => {
            tracing::warn!(withdrawal_id = %record.id, detail, "payout outcome unknown; resolving");
            Ok(record.clone())
        }
    }
}

/// Final state (once): a failure releases the hold (once per withdrawal id).
pub async fn finish(
    app: &Core,
    id: &WithdrawalId,
    to: WithdrawalStatus,
    reason: Option<String>,
) -> Result<WithdrawalRecord, Error> {
    let now = app.clock.now();
    for _ in 0..16 {
        let (mut record, bytes) = app
            .store
            .get_with_bytes::<WithdrawalRecord>(id.as_bytes())?
            .ok_or_else(|| Error::not_found("withdrawal"))?;
        if to == WithdrawalStatus::Failed && record.status == WithdrawalStatus::Processing {
            // Released before the record says failed: a crash in between is finished by the resolver.
            let release = PostEntry {
                source_id: record.id.to_string(),
                kind: EntryKind::WithdrawalReversal,
                postings: ledger::mirror(&ledger::withdrawal(&record.merchant_id, record.amount)?)?,
                event: None,
                index: vec![],
            };
            app.actors.ask_merchant(&record.merchant_id, release).await??;
        }
        if !record.finish(to, reason.clone(), now) {
            return Ok(record);
        }
        let event =
            if to == WithdrawalStatus::Succeeded { "withdrawal.succeeded" } else { "withdrawal.failed" };
        let mut batch = WriteBatch::new();
        batch.expect_raw(Tree::Withdrawals, id.as_bytes(), Some(bytes));
        batch.put_raw(Tree::Withdrawals, id.as_bytes(), encode(&record)?);
        batch.delete(Tree::Operations, outcome_marker(id));
        outbox::stage(
            &mut batch,
            &record.merchant_id,
            event,
            EventObject::Withdrawal(Box::new(record.clone())),
            now,
        )?;
        match app.store.commit_durable(batch).await {
            Ok(()) => return Ok(record),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::unavailable("the withdrawal is changing concurrently; retry"))
}

/// What a `payout.updated` callback named.
pub struct PayoutNotice<'a> {
    /// The gateway account whose key signed the callback.
    pub signer: &'a str,
    pub event_id: &'a str,
    pub payout_id: &'a str,
    pub request_id: &'a str,
    pub amount: Money,
}

/// `wdracct/{withdrawal id}` → the gateway account its payout is made under.
fn account_key(id: &WithdrawalId) -> Vec<u8> {
    Index::WithdrawalAccount { withdrawal: id.clone() }.encode()
}

/// The gateway account a withdrawal pays out under: the one recorded with it
/// (withdrawals recorded before that row existed: the merchant's funding account).
async fn payout_account(
    app: &Core,
    merchant: &MerchantRecord,
    record: &WithdrawalRecord,
) -> Result<pelago_actors::ports::GatewayAccount, Error> {
    match app.store.get_raw(Tree::Index, account_key(&record.id))? {
        Some(id) => Ok(bootstrap::account_by_id(app, &String::from_utf8_lossy(&id))
            .await?
            .ok_or_else(Error::internal)?
            .1),
        None => bootstrap::funding_account(app, merchant).await,
    }
}

/// The gateway's notice about a payout: bound (the withdrawal's payout was
/// made under the signing account, else 401), compared (its amount, else
/// 400), then confirmed by asking the gateway for that payout under that
/// account; only that answer (which must name the withdrawal's request id and
/// amount) finishes the withdrawal. An unknown answer leaves it `processing`
/// for the resolver, which asks again with the same request id.
pub async fn on_payout(app: &Core, notice: PayoutNotice<'_>) -> Result<&'static str, Error> {
    let record = match app
        .store
        .get_raw(Tree::Index, Index::WithdrawalRequest { request: notice.request_id.to_owned() }.encode())?
    {
        Some(id) => match WithdrawalId::parse(&String::from_utf8_lossy(&id)) {
            Ok(id) => app.store.get::<WithdrawalRecord>(id.as_bytes())?,
            Err(_) => None,
        },
        None => None,
    };
    let unbound = || {
        crate::flows::callback_rules::unbound_payout(app, notice.signer, notice.event_id, notice.request_id)
    };
    let Some(record) = record else { return Err(unbound()) };
    let merchant =
        app.store.get::<MerchantRecord>(record.merchant_id.as_bytes())?.ok_or_else(Error::internal)?;
    let account = payout_account(app, &merchant, &record).await?;
    if account.merchant_id != notice.signer {
        return Err(unbound());
    }
    if notice.amount != record.amount {
        return Err(crate::flows::callback_rules::mismatch("amount or currency"));
    }
    let payout = match app.upstreams.gateway.query_payout(account, notice.payout_id.to_owned()).await {
        Outcome::Done(payout) => payout,
        Outcome::Unknown { detail } => {
            tracing::warn!(withdrawal_id = %record.id, detail, "payout query outcome unknown; the resolver asks again");
            return Ok("unconfirmed");
        }
        Outcome::Declined { reason } => {
            tracing::warn!(withdrawal_id = %record.id, reason, "the gateway does not know the payout a callback named");
            return Err(crate::flows::callback_rules::mismatch("payout id"));
        }
    };
    if payout.request_id != record.request_id || payout.payout_id != notice.payout_id {
        return Err(crate::flows::callback_rules::mismatch("payout id"));
    }
    if payout.amount != record.amount {
        tracing::error!(withdrawal_id = %record.id, "the gateway holds this payout with another amount; not applied");
        return Err(crate::flows::callback_rules::mismatch("amount or currency"));
    }
    let (to, reason) = match payout.status {
        PayoutStatus::Succeeded => (WithdrawalStatus::Succeeded, None),
        PayoutStatus::Failed => (WithdrawalStatus::Failed, payout.reason.or(Some("payout failed".into()))),
        PayoutStatus::Processing => return Ok("unchanged"),
    };
    let after = finish(app, &record.id, to, reason).await?;
    Ok(if after.version == record.version { "unchanged" } else { "applied" })
}

/// One resolver pass over withdrawals still `processing`, and holds whose
/// record never landed (released).
pub async fn resolve_pending(app: &Arc<Core>) -> Result<usize, Error> {
    let grace_ms = app.config.upstream_timeout_ms as i64 + 1000;
    let now = Timestamp::now_real().unix_ms();
    let mut done = 0;
    let holds =
        app.store.iter_raw(Tree::Index, WDRHOLD.as_bytes()).take(256).collect::<Result<Vec<_>, _>>()?;
    for (key, value) in holds {
        let (started, binding) = parse_hold(&value);
        if now - started < grace_ms {
            continue;
        }
        let Some(Index::WithdrawalHold { withdrawal: id }) = Index::parse(&key) else { continue };
        if app.store.contains(Tree::Withdrawals, id.as_bytes())? {
            // The record landed (its commit removes the row): a row left by an older version.
            let mut batch = WriteBatch::new();
            batch.expect_raw(Tree::Index, &key, Some(value.clone()));
            batch.delete(Tree::Index, &key);
            let _ = app.store.commit_durable(batch).await;
            continue;
        }
        // Claim it first, fenced on the row and on the record's absence, so a
        // request still recording it cannot also pay it out (its commit is
        // fenced on the same row); then release, durably resumable.
        let mut batch = WriteBatch::new();
        batch.expect_raw(Tree::Index, &key, Some(value.clone()));
        batch.expect_absent(Tree::Withdrawals, id.as_bytes());
        batch.delete(Tree::Index, &key);
        batch.put_raw(Tree::Operations, release_marker(&id), binding.unwrap_or_default());
        match app.store.commit_durable(batch).await {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => continue, // recorded meanwhile: it goes on
            Err(e) => return Err(e.into()),
        }
        finish_release(app, &id).await?;
        done += 1;
    }
    for marker in super::marker_keys(app, WDRRELEASE)? {
        if let Marker::WithdrawalRelease { withdrawal: id } = marker {
            finish_release(app, &id).await?;
            done += 1;
        }
    }
    for (marker, _) in super::due_markers(app, WITHDRAWAL, super::Started::BigEndianMs, grace_ms)? {
        let Marker::Withdrawal { withdrawal: id } = marker else { continue };
        match app.store.get::<WithdrawalRecord>(id.as_bytes())? {
            Some(record) if record.status == WithdrawalStatus::Processing => {
                let merchant = app
                    .store
                    .get::<MerchantRecord>(record.merchant_id.as_bytes())?
                    .ok_or_else(Error::internal)?;
                payout(app, &merchant, &record).await?;
                done += 1;
            }
            Some(_) => {}
            None => {
                // Held, but the record never landed (crash between): release the hold.
                release_hold(app, &id).await?;
                let mut batch = WriteBatch::new();
                batch.delete(Tree::Operations, outcome_marker(&id));
                app.store.commit_durable(batch).await?;
                done += 1;
            }
        }
    }
    Ok(done)
}
