//! Recipient withdrawals (MARKETPLACE.md §7, §9): the six checks in order,
//! then the record (with its resolver marker) → the hold
//! (`recipient_withdrawal`, booked by the merchant actor) → the bank payout at
//! the gateway (request id = the withdrawal id) → `recipient_withdrawal_paid`
//! or `recipient_withdrawal_reversal`, then the record's final status and its
//! event, in one commit that clears the marker. An unknown payout leaves the
//! withdrawal `processing` (202) with its hold; [`resolve_pending`] asks the
//! gateway by request id (or submits again when it never saw it) and finishes
//! it. A hold refused for want of money removes the record again: 402, nothing
//! left. A withdrawal whose hold never landed (a crash between) is voided by
//! the resolver, in the merchant's own order, and failed without a booking.

use std::sync::Arc;

use pelago_actors::{
    ledger::{EntryKind, marketplace},
    merchant::{PostEntry, VoidEntry, Voided, actor::booked},
    outbox::{self, EventObject},
    ports::Outcome,
    recipient::{
        RecipientRecord,
        agreement::{self, AgreementType},
        gateway::{PayoutDecision, RecipientPayout},
        withdrawal::{PayoutDestination, RecipientWithdrawalRecord, RecipientWithdrawalStatus, half_up},
    },
};
use pelago_storage::{MerchantId, Money, RecipientWithdrawalId, Timestamp, Tree, WriteBatch};

use super::recipients::load_owned as load_recipient;
use crate::{
    app::Core,
    flows::Error,
    keys::{self, Index, Marker},
};

/// What the merchant asked for, each amount already valid (check 1).
pub struct Request {
    pub amount: Money,
    pub commission: Option<Money>,
    pub reference: Option<String>,
}

pub struct Answer {
    pub withdrawal: RecipientWithdrawalRecord,
    /// The payout's outcome is not known yet (202).
    pub unknown: bool,
}

/// Checks 2 and 3: the commission is below W in W's currency, and within
/// `half_up(W, b)` of the signed commission agreement (b = 0 without one).
fn check_commission(req: &Request, max_bps: Option<u32>) -> Result<Money, Error> {
    let Some(k) = req.commission else { return Ok(Money::zero(req.amount.currency)) };
    if k.currency != req.amount.currency {
        return Err(Error::invalid("commission.currency", "commission must be in the amount's currency"));
    }
    if k.value >= req.amount.value {
        return Err(Error::invalid("commission.value", "commission must be less than the amount"));
    }
    let cap = half_up(req.amount.value, max_bps.unwrap_or(0));
    if k.value > cap {
        return Err(Error::CommissionLimitExceeded {
            param: "commission.value".into(),
            message: format!(
                "commission {} is above the signed commission agreement's cap of {cap}",
                k.value
            ),
        });
    }
    Ok(k)
}

/// Checks 4–6 on the recipient now.
fn check_recipient(app: &Core, recipient: &RecipientRecord, amount: Money) -> Result<(), Error> {
    if !recipient.can_withdraw() {
        return Err(Error::invalid_state(
            "the recipient cannot withdraw: its onboarding must be SUCCEEDED with compliance approved",
        ));
    }
    let (offset, window) = (app.config.marketplace_utc_offset, app.config.withdrawal_window);
    if !window.is_open(app.clock.now(), offset) {
        return Err(Error::WindowClosed(format!(
            "withdrawals are accepted from {} (start inclusive, end exclusive) at UTC{offset}",
            window.describe()
        )));
    }
    let available = app
        .store
        .get::<marketplace::RecipientBalances>(recipient.id.as_bytes())?
        .and_then(|b| b.balances.into_iter().find(|b| b.currency == amount.currency))
        .map_or(0, |b| b.available);
    if available < amount.value {
        return Err(Error::InsufficientFunds(format!(
            "the recipient's available {} balance ({available}) cannot cover {}",
            amount.currency.code(),
            amount.value
        )));
    }
    Ok(())
}

/// POST /v1/recipients/{id}/withdrawals
pub async fn create(
    app: &Arc<Core>,
    merchant_id: &MerchantId,
    raw_recipient: &str,
    req: Request,
    binding: Option<String>,
) -> Result<Answer, Error> {
    let recipient = load_recipient(app, merchant_id, raw_recipient).await?;
    let signed = agreement::signed(&app.store, &recipient.id, AgreementType::Commission)?;
    let commission = check_commission(&req, signed.and_then(|a| a.max_commission_bps))?;
    // A retry of a request that created its withdrawal answers it, whatever the checks say now ...
    if let Some(bound) = binding.as_ref().map(|b| app.store.get_raw(Tree::Index, b)).transpose()?.flatten()
        && let Some(existing) = app.store.get::<RecipientWithdrawalRecord>(&bound)?
    {
        let unknown = existing.status == RecipientWithdrawalStatus::Processing;
        return Ok(Answer { withdrawal: existing, unknown });
    }
    // ... and a refused request binds nothing.
    check_recipient(app, &recipient, req.amount)?;
    let id = super::bound_id(app, binding.as_ref(), RecipientWithdrawalId::generate()).await?;
    if let Some(existing) = app.store.get::<RecipientWithdrawalRecord>(id.as_bytes())? {
        // A concurrent request with the same key created it first.
        let unknown = existing.status == RecipientWithdrawalStatus::Processing;
        return Ok(Answer { withdrawal: existing, unknown });
    }
    let now = app.clock.now();
    let record = RecipientWithdrawalRecord {
        id: id.clone(),
        merchant_id: merchant_id.clone(),
        recipient_id: recipient.id.clone(),
        amount: req.amount,
        commission,
        reference: req.reference,
        destination: PayoutDestination {
            bank_code: recipient.data.bank_account.bank_code.clone(),
            account_number_masked: recipient.data.bank_account.account_number.masked(),
        },
        status: RecipientWithdrawalStatus::Processing,
        failure_reason: None,
        gateway_payout_id: None,
        status_history: vec![(RecipientWithdrawalStatus::Processing, now)],
        created_at: now,
        completed_at: None,
        version: 1,
    };
    let mut batch = WriteBatch::new();
    batch.expect_absent(Tree::RecipientWithdrawals, id.as_bytes());
    batch.put(id.as_bytes(), &record)?;
    batch.put_raw(
        Tree::Index,
        Index::RecipientWithdrawal { recipient: recipient.id.clone(), withdrawal: id.clone() }.encode(),
        [],
    );
    let started = Timestamp::now_real().unix_ms().to_be_bytes().to_vec();
    batch.put_raw(Tree::Operations, Marker::RecipientWithdrawal { withdrawal: id.clone() }.encode(), started);
    app.store.commit_durable(batch).await?;
    if let Err(e) = hold(app, &record).await {
        if matches!(e, Error::InsufficientFunds(_)) {
            forget(app, &record).await?;
        }
        return Err(e);
    }
    crate::failpoint::hit("recipient_withdrawal.after_hold");
    let outcome = payout(app, &recipient, &record).await?;
    finish(app, record, outcome).await
}

/// Books the hold: available −W, withdrawing +W, once per withdrawal.
async fn hold(app: &Core, w: &RecipientWithdrawalRecord) -> Result<(), Error> {
    let entry = PostEntry {
        source_id: w.id.to_string(),
        kind: EntryKind::RecipientWithdrawal,
        postings: marketplace::withdrawal_hold(&w.recipient_id, w.amount)?,
        event: None,
        index: vec![],
    };
    app.actors.ask_merchant(&w.merchant_id, entry).await??;
    Ok(())
}

/// A hold refused for want of money: the record, its list row and marker go (nothing left).
async fn forget(app: &Core, w: &RecipientWithdrawalRecord) -> Result<(), Error> {
    let mut batch = WriteBatch::new();
    batch.delete(Tree::RecipientWithdrawals, w.id.as_bytes());
    batch.delete(
        Tree::Index,
        Index::RecipientWithdrawal { recipient: w.recipient_id.clone(), withdrawal: w.id.clone() }.encode(),
    );
    batch.delete(Tree::Operations, Marker::RecipientWithdrawal { withdrawal: w.id.clone() }.encode());
    app.store.commit_durable(batch).await?;
    Ok(())
}

/// Submits the bank payout of W − K (request id: the withdrawal id).
async fn payout(
    app: &Core,
    recipient: &RecipientRecord,
    w: &RecipientWithdrawalRecord,
) -> Result<Outcome<PayoutDecision>, Error> {
    let account = super::gateway_account(app, &w.merchant_id).await?;
    let bank = &recipient.data.bank_account;
    let account_number = super::onboardings::open_number(
        app,
        &recipient.id,
        "bank_account.account_number",
        &bank.account_number.sealed.0,
    )?;
    Ok(app
        .upstreams
        .recipient_payouts
        .recipient_payout(RecipientPayout {
            account,
            request_id: w.id.to_string(),
            amount: w.payout_amount(),
            holder_name: bank.holder_name.clone(),
            bank_code: bank.bank_code.clone(),
            account_number,
        })
        .await)
}

/// Books the payout's result and makes the withdrawal final with its event;
/// an unknown outcome leaves it processing for the resolver.
async fn finish(
    app: &Core,
    mut w: RecipientWithdrawalRecord,
    outcome: Outcome<PayoutDecision>,
) -> Result<Answer, Error> {
    let (status, reason, payout_id) = match outcome {
        Outcome::Unknown { detail } => {
            tracing::warn!(withdrawal_id = %w.id, detail, "recipient payout outcome unknown; the resolver asks");
            return Ok(Answer { withdrawal: w, unknown: true });
        }
        Outcome::Done(d) if d.paid => (RecipientWithdrawalStatus::Succeeded, None, Some(d.gateway_payout_id)),
        Outcome::Done(d) => (RecipientWithdrawalStatus::Failed, d.reason, Some(d.gateway_payout_id)),
        Outcome::Declined { reason } => (RecipientWithdrawalStatus::Failed, Some(reason), None),
    };
    let (kind, postings) = if status == RecipientWithdrawalStatus::Succeeded {
        let p = marketplace::withdrawal_paid(&w.merchant_id, &w.recipient_id, w.amount, w.commission)?;
        (EntryKind::RecipientWithdrawalPaid, p)
    } else {
        (EntryKind::RecipientWithdrawalReversal, marketplace::withdrawal_reversal(&w.recipient_id, w.amount)?)
    };
    let entry = PostEntry { source_id: w.id.to_string(), kind, postings, event: None, index: vec![] };
    app.actors.ask_merchant(&w.merchant_id, entry).await??;
    w.gateway_payout_id = payout_id;
    complete(app, w, status, reason).await
}

/// The final status, its event and the marker's removal, in one commit
/// fenced on the record as read (a second finisher changes nothing).
async fn complete(
    app: &Core,
    mut w: RecipientWithdrawalRecord,
    status: RecipientWithdrawalStatus,
    reason: Option<String>,
) -> Result<Answer, Error> {
    let (current, seen) = app
        .store
        .get_with_bytes::<RecipientWithdrawalRecord>(w.id.as_bytes())?
        .ok_or_else(Error::internal)?;
    if current.status != RecipientWithdrawalStatus::Processing {
        return Ok(Answer { withdrawal: current, unknown: false });
    }
    let now = app.clock.now();
    w.finish(status, reason, now)?;
    let event = if status == RecipientWithdrawalStatus::Succeeded {
        "recipient.withdrawal.succeeded"
    } else {
        "recipient.withdrawal.failed"
    };
    let mut batch = WriteBatch::new();
    batch.expect_raw(Tree::RecipientWithdrawals, w.id.as_bytes(), Some(seen));
    batch.put(w.id.as_bytes(), &w)?;
    batch.delete(Tree::Operations, Marker::RecipientWithdrawal { withdrawal: w.id.clone() }.encode());
    outbox::stage(
        &mut batch,
        &w.merchant_id,
        event,
        EventObject::RecipientWithdrawal(Box::new(w.clone())),
        now,
    )?;
    match app.store.commit_durable(batch).await {
        Ok(()) => Ok(Answer { withdrawal: w, unknown: false }),
        Err(pelago_storage::StoreError::Conflict { .. }) => {
            let w =
                app.store.get::<RecipientWithdrawalRecord>(w.id.as_bytes())?.ok_or_else(Error::internal)?;
            Ok(Answer { unknown: w.status == RecipientWithdrawalStatus::Processing, withdrawal: w })
        }
        Err(e) => Err(e.into()),
    }
}

/// The resolver's pass over withdrawals still processing after the grace.
pub async fn resolve_pending(app: &Arc<Core>) -> Result<usize, Error> {
    let grace_ms = crate::flows::grace_ms(app);
    let mut resolved = 0;
    for (key, _) in
        crate::flows::due_markers(app, keys::RWDPENDING, crate::flows::Started::BigEndianMs, grace_ms)?
    {
        let Marker::RecipientWithdrawal { withdrawal: id } = key else { continue };
        match resolve_one(app, &id).await {
            Ok(true) => resolved += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(withdrawal_id = %id, error = %e, "resolving a recipient withdrawal failed; retrying later")
            }
        }
    }
    Ok(resolved)
}

/// One withdrawal: final → its marker goes; no hold → void it and fail;
/// held → the gateway's answer by request id (or a new submission with that
/// id when it never saw it).
async fn resolve_one(app: &Arc<Core>, id: &RecipientWithdrawalId) -> Result<bool, Error> {
    let marker = Marker::RecipientWithdrawal { withdrawal: id.clone() }.encode();
    let Some(w) = app.store.get::<RecipientWithdrawalRecord>(id.as_bytes())? else {
        crate::flows::clear_marker(app, marker).await?;
        return Ok(true);
    };
    if w.status != RecipientWithdrawalStatus::Processing {
        crate::flows::clear_marker(app, marker).await?;
        return Ok(true);
    }
    if booked(&app.store, id.as_str(), EntryKind::RecipientWithdrawal)?.is_none() {
        let void = VoidEntry { source_id: id.to_string(), kind: EntryKind::RecipientWithdrawal };
        if app.actors.ask_merchant(&w.merchant_id, void).await?? == Voided::Void {
            let reason = Some("the withdrawal stopped before its hold was booked".to_owned());
            complete(app, w, RecipientWithdrawalStatus::Failed, reason).await?;
            return Ok(true);
        }
    }
    let account = super::gateway_account(app, &w.merchant_id).await?;
    let outcome = match app.upstreams.recipient_payouts.query_recipient_payout(account, id.to_string()).await
    {
        Outcome::Declined { .. } => {
            let recipient =
                app.actors.ask_recipient(&w.recipient_id, pelago_actors::recipient::GetRecipient).await??;
            payout(app, &recipient, &w).await?
        }
        known => known,
    };
    Ok(!finish(app, w, outcome).await?.unknown)
}

/// What a `recipient_payout.updated` callback named.
pub struct PayoutNotice<'a> {
    pub signer: &'a str,
    pub event_id: &'a str,
    pub request_id: &'a str,
    pub amount: Money,
}

/// A payout callback is a hint: bound (the withdrawal's payout was made
/// under the signing account), compared (W − K), then confirmed by the
/// gateway's answer to a query by request id, which alone finishes it.
pub async fn on_payout(app: &Core, notice: PayoutNotice<'_>) -> Result<&'static str, Error> {
    let unbound = || {
        crate::flows::callback_rules::unbound_payout(app, notice.signer, notice.event_id, notice.request_id)
    };
    let record = match RecipientWithdrawalId::parse(notice.request_id) {
        Ok(id) => app.store.get::<RecipientWithdrawalRecord>(id.as_bytes())?,
        Err(_) => None,
    };
    let Some(w) = record else { return Err(unbound()) };
    let account = super::gateway_account(app, &w.merchant_id).await?;
    if account.merchant_id != notice.signer {
        return Err(unbound());
    }
    if notice.amount != w.payout_amount() {
        return Err(crate::flows::callback_rules::mismatch("amount or currency"));
    }
    if w.status != RecipientWithdrawalStatus::Processing {
        return Ok("unchanged");
    }
    if booked(&app.store, w.id.as_str(), EntryKind::RecipientWithdrawal)?.is_none() {
        return Ok("unconfirmed"); // the request is still booking its hold: it finishes itself
    }
    match app.upstreams.recipient_payouts.query_recipient_payout(account, w.id.to_string()).await {
        Outcome::Unknown { detail } => {
            tracing::warn!(withdrawal_id = %w.id, detail, "payout query outcome unknown; the resolver asks again");
            Ok("unconfirmed")
        }
        Outcome::Declined { .. } => Err(crate::flows::callback_rules::mismatch("request id")),
        known => Ok(if finish(app, w, known).await?.unknown { "unconfirmed" } else { "applied" }),
    }
}
