//! Marketplace payments (MARKETPLACE.md §6, §9): created PENDING by the
//! merchant actor (request id and `pending_action` durable first), then the
//! gateway checkout is asked for; capture and cancel likewise. Unknown
//! outcomes answer 202 and stay `pending_action` until [`resolve_pending`]
//! retries the stored request id. A gateway callback about a payment is bound
//! to the account it was created under, compared, and confirmed by a query:
//! only the gateway's answer moves the payment, and its money (the merchant
//! actor books `marketplace_collection` in the commit that makes it SUCCEEDED).

use pelago_actors::keys::{self, Index, Marker, RecordKey};
use std::sync::Arc;

use pelago_actors::{
    merchant::{
        MerchantRecord,
        payments::{CreatePayment, PaymentChange, PaymentUpdated, UpdatePayment},
    },
    payment::{
        Liability, LineType, PaymentAction, PaymentEvent, PaymentLine, PaymentRecord, PendingAction,
        gateway::{GatewayPayment, GatewayPaymentStatus, PaymentCall, PaymentCheckout},
    },
    ports::{GatewayAccount, Outcome},
    recipient::{
        RecipientRecord,
        agreement::{self, AgreementType},
        onboarding::OnboardingStatus,
        onboardings,
    },
};
use pelago_storage::{MerchantId, Money, PaymentId, Tree, WriteBatch};

use super::Found;
use crate::{app::Core, flows::Error, flows::bootstrap, flows::orders::OrderNotice};

/// One line as the request gave it (shape checked by HTTP, rules 1–5).
pub struct LineInput {
    pub kind: LineType,
    pub recipient_id: Option<String>,
    pub provider_recipient_id: Option<String>,
    pub merchant_reference: Option<String>,
    pub amount: Money,
    pub liability: Option<Liability>,
}

pub struct PaymentInput {
    pub amount: Money,
    pub merchant_reference: String,
    pub description: Option<String>,
    pub capture: bool,
    pub lines: Vec<LineInput>,
}

/// A payment and whether a gateway answer is still unknown (202).
pub struct Answer {
    pub payment: PaymentRecord,
    pub unknown: bool,
}

fn line_param(i: usize, field: &str) -> String {
    format!("split_marketplace[{i}].{field}")
}

/// `half_up(x, bps)` (MARKETPLACE.md §1): at most `x` for `bps` ≤ 10000, so it fits.
pub fn half_up(x: i64, bps: u32) -> i64 {
    i64::try_from(pelago_storage::money::half_up_bps(x, i64::from(bps.min(10_000)))).unwrap_or(i64::MAX)
}

/// Rules 6–8 of §6's table: each line's recipient, resolved (by id, or as
/// the holder of its `provider_recipient_id`), able to receive splits.
async fn resolve_lines(
    app: &Arc<Core>,
    merchant: &MerchantId,
    lines: &[LineInput],
) -> Result<Vec<Option<RecipientRecord>>, Error> {
    let mut resolved = Vec::with_capacity(lines.len());
    // 6: a recipient_id names one of the merchant's recipients.
    for (i, line) in lines.iter().enumerate() {
        resolved.push(match &line.recipient_id {
            Some(raw) => {
                Some(super::recipients::load_owned(app, merchant, raw).await.map_err(|e| match e {
                    Error::NotFound(_) => {
                        Error::invalid(line_param(i, "recipient_id"), "no such recipient of this merchant")
                    }
                    other => other,
                })?)
            }
            None => None,
        });
    }
    // 7: a provider_recipient_id names a SUCCEEDED onboarding of the merchant
    // (on a PURCHASE/MARKETPLACE line; elsewhere an unmatched one is kept as information).
    for (i, line) in lines.iter().enumerate() {
        let Some(prid) = line.provider_recipient_id.as_deref().filter(|_| line.recipient_id.is_none()) else {
            continue;
        };
        let holder = onboardings::holding(&app.store, merchant, prid)?
            .filter(|o| o.status == OnboardingStatus::Succeeded);
        match holder {
            Some(o) => {
                resolved[i] =
                    Some(super::recipients::load_owned(app, merchant, o.recipient_id.as_str()).await?);
            }
            None if line.kind.is_sale() => {
                return Err(Error::invalid(
                    line_param(i, "provider_recipient_id"),
                    "no SUCCEEDED onboarding of this merchant holds this provider_recipient_id",
                ));
            }
            None => {}
        }
    }
    // 8: every recipient can receive splits.
    for (i, recipient) in resolved.iter().enumerate() {
        if let Some(r) = recipient
            && !r.can_receive_splits()
        {
            return Err(Error::InvalidStateOn {
                param: line_param(i, "recipient_id"),
                message: "the recipient cannot receive splits (a SUCCEEDED onboarding and a signed split \
                          agreement are needed)"
                    .into(),
            });
        }
    }
    Ok(resolved)
}

/// Rules 9 and 10: the lines add up to the amount; the commissions stay
/// within `half_up(amount, b)`, `b` the least cap of the sale lines'
/// recipients' signed commission agreements (0 if one has none).
fn check_sums(app: &Core, input: &PaymentInput, resolved: &[Option<RecipientRecord>]) -> Result<(), Error> {
    let overflow = || Error::invalid("split_marketplace", "the line amounts overflow");
    let mut total = 0i64;
    let mut commission = 0i64;
    for line in &input.lines {
        total = total.checked_add(line.amount.value).ok_or_else(overflow)?;
        if line.kind == LineType::Commission {
            commission = commission.checked_add(line.amount.value).ok_or_else(overflow)?;
        }
    }
    if total != input.amount.value {
        return Err(Error::invalid("split_marketplace", "the line amounts must add up to amount.value"));
    }
    if commission == 0 {
        return Ok(());
    }
    let mut cap_bps = u32::MAX;
    for (line, recipient) in input.lines.iter().zip(resolved) {
        let Some(r) = recipient.as_ref().filter(|_| line.kind.is_sale()) else { continue };
        let bps = agreement::signed(&app.store, &r.id, AgreementType::Commission)?
            .and_then(|a| a.max_commission_bps)
            .unwrap_or(0);
        cap_bps = cap_bps.min(bps);
    }
    let cap = half_up(input.amount.value, if cap_bps == u32::MAX { 0 } else { cap_bps });
    if commission > cap {
        return Err(Error::CommissionLimit {
            param: "split_marketplace".into(),
            message: format!("the commission lines add up to {commission}, above the signed cap of {cap}"),
        });
    }
    Ok(())
}

/// `POST /v1/payments` after the body's own checks: rules 6–10, then the
/// payment (PENDING, its checkout's request id stored), then the checkout.
pub async fn create(
    app: &Arc<Core>,
    merchant_id: &MerchantId,
    input: PaymentInput,
    binding: Option<String>,
) -> Result<Answer, Error> {
    if let Some(b) = &binding
        && let Some(bound) = app.store.get_raw(Tree::Index, b)?
        && let Ok(id) = PaymentId::parse(&String::from_utf8_lossy(&bound))
        && let Some(payment) = find(app, merchant_id, &id)?
    {
        // A retry of a created payment: it as it is (the resolver owns an unknown checkout).
        let unknown = payment.pending_action.is_some();
        return Ok(Answer { payment, unknown });
    }
    let resolved = resolve_lines(app, merchant_id, &input.lines).await?;
    check_sums(app, &input, &resolved)?;
    let merchant = app
        .store
        .get::<MerchantRecord>(merchant_id.as_bytes())?
        .ok_or_else(|| Error::unavailable("the merchant could not be read"))?;
    let account = bootstrap::funding_account(app, &merchant).await?;
    let id = super::bound_id(app, binding.as_ref(), PaymentId::generate()).await?;
    let now = app.clock.now();
    let request_id = format!("req_{}", pelago_storage::ids::new_ulid());
    let lines = input
        .lines
        .into_iter()
        .zip(resolved)
        .map(|(l, r)| PaymentLine {
            kind: l.kind,
            recipient_id: r.map(|r| r.id),
            provider_recipient_id: l.provider_recipient_id,
            merchant_reference: l.merchant_reference.unwrap_or_else(|| input.merchant_reference.clone()),
            amount: l.amount,
            liability: l.liability,
            refunded: 0,
            split_amount: None,
        })
        .collect();
    let payment = PaymentRecord {
        description: input.description,
        capture: input.capture,
        gateway_account: account.merchant_id.clone(),
        request_id: request_id.clone(),
        pending_action: Some(PendingAction {
            kind: PaymentAction::Create,
            request_id,
            since: now,
            since_real: pelago_storage::Timestamp::now_real(),
        }),
        ..PaymentRecord::pending(id, merchant_id.clone(), input.amount, input.merchant_reference, lines, now)
    };
    let payment = app.actors.ask_merchant(merchant_id, CreatePayment(payment)).await??;
    request_checkout(app, payment, account).await
}

async fn update(app: &Core, payment: &PaymentRecord, change: PaymentChange) -> Result<PaymentUpdated, Error> {
    Ok(app
        .actors
        .ask_merchant(&payment.merchant_id, UpdatePayment { id: payment.id.clone(), change })
        .await??)
}

/// Asks the gateway for the checkout (with the stored request id) and records its answer.
async fn request_checkout(
    app: &Core,
    payment: PaymentRecord,
    account: GatewayAccount,
) -> Result<Answer, Error> {
    let req = PaymentCheckout {
        account,
        request_id: payment.request_id.clone(),
        payment_id: payment.id.clone(),
        amount: payment.amount,
        capture: payment.capture,
        description: format!("payment {}", payment.merchant_reference),
    };
    let change = match app.upstreams.payments.create_payment(req).await {
        Outcome::Done(gp) if gp.payment_id == payment.id.as_str() && gp.amount == payment.amount => {
            PaymentChange::CheckoutCreated {
                gateway_order_id: gp.gateway_order_id,
                checkout_url: gp.checkout_url,
            }
        }
        Outcome::Done(_) => {
            tracing::error!(payment_id = %payment.id, "the gateway answered a checkout for another payment or amount");
            return Ok(Answer { payment, unknown: true });
        }
        Outcome::Declined { reason } => PaymentChange::CheckoutRefused { reason },
        Outcome::Unknown { detail } => {
            tracing::warn!(payment_id = %payment.id, detail, "payment checkout outcome unknown; retrying later");
            return Ok(Answer { payment, unknown: true });
        }
    };
    let updated = update(app, &payment, change).await?;
    Ok(Answer { payment: updated.payment, unknown: false })
}

/// The events a gateway status means for `payment` (a capture-at-once
/// payment paid is SUCCEEDED; an authorize-only one captured passes AUTHORIZED).
fn events_for(payment: &PaymentRecord, status: GatewayPaymentStatus) -> Vec<PaymentEvent> {
    match status {
        GatewayPaymentStatus::Captured if payment.capture => vec![PaymentEvent::BuyerPaid],
        GatewayPaymentStatus::Captured => vec![PaymentEvent::BuyerAuthorized, PaymentEvent::Captured],
        GatewayPaymentStatus::Authorized => vec![PaymentEvent::BuyerAuthorized],
        GatewayPaymentStatus::Failed => vec![PaymentEvent::BuyerFailed],
        GatewayPaymentStatus::Expired => vec![PaymentEvent::CheckoutExpired],
        GatewayPaymentStatus::Canceled => vec![PaymentEvent::Canceled],
        GatewayPaymentStatus::Pending | GatewayPaymentStatus::Refunded => vec![],
    }
}

/// Applies what the gateway answered about `payment`; whether anything changed.
async fn apply_gateway(app: &Core, payment: &PaymentRecord, answer: &GatewayPayment) -> Result<bool, Error> {
    let mut changed = false;
    for event in events_for(payment, answer.status) {
        match update(app, payment, PaymentChange::Event(event)).await {
            Ok(u) => changed |= u.changed,
            // Already past it (a late or repeated answer): no second effect.
            Err(Error::InvalidState(why)) => {
                tracing::info!(payment_id = %payment.id, why, "gateway answer not applicable; unchanged")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(changed)
}

fn find(app: &Core, merchant: &MerchantId, id: &PaymentId) -> Result<Option<PaymentRecord>, Error> {
    let key = RecordKey::Payment { merchant: merchant.clone(), payment: id.clone() };
    Ok(app.store.get::<PaymentRecord>(key.encode())?)
}

/// A payment of this merchant, or 404.
pub fn load_owned(app: &Core, merchant: &MerchantId, raw: &str) -> Result<PaymentRecord, Error> {
    let id = PaymentId::parse(raw).map_err(|_| Error::not_found("payment"))?;
    find(app, merchant, &id)?.ok_or_else(|| Error::not_found("payment"))
}

/// A payment by id alone (callbacks, T+1 rows): its owner from `payowner/`.
fn load_any(app: &Core, id: &PaymentId) -> Result<Option<PaymentRecord>, Error> {
    let owner = Index::PaymentOwner { payment: id.clone() };
    let Some(merchant) = app.store.get_raw(owner.tree(), owner.encode())? else { return Ok(None) };
    let merchant = MerchantId::parse(&String::from_utf8_lossy(&merchant)).map_err(|_| Error::internal())?;
    find(app, &merchant, id)
}

async fn account_of(app: &Core, payment: &PaymentRecord) -> Result<GatewayAccount, Error> {
    let (_, account) =
        bootstrap::account_by_id(app, &payment.gateway_account).await?.ok_or_else(Error::internal)?;
    Ok(account)
}

/// `POST /v1/payments/{id}/capture|cancel`: the action's request id is stored
/// (`pending_action`) before the gateway is asked. Refused → 502, unchanged;
/// unknown → 202 with `pending_action`.
pub async fn act(
    app: &Core,
    merchant: &MerchantId,
    raw: &str,
    action: PaymentAction,
) -> Result<Answer, Error> {
    let payment = load_owned(app, merchant, raw)?;
    let request_id = format!("req_{}", pelago_storage::ids::new_ulid());
    let begun = update(app, &payment, PaymentChange::Begin { action, request_id }).await?.payment;
    send_action(app, begun).await
}

/// Sends the payment's pending capture or cancel with its stored request id.
async fn send_action(app: &Core, payment: PaymentRecord) -> Result<Answer, Error> {
    let Some(pending) = payment.pending_action.clone() else { return Ok(Answer { payment, unknown: false }) };
    let account = account_of(app, &payment).await?;
    let gateway_order_id = payment.gateway_order_id.clone().ok_or_else(Error::internal)?;
    let call = PaymentCall { account, gateway_order_id, request_id: pending.request_id.clone() };
    let outcome = match pending.kind {
        PaymentAction::Capture => app.upstreams.payments.capture_payment(call).await,
        PaymentAction::Cancel => app.upstreams.payments.cancel_payment(call).await,
        PaymentAction::Create => return Err(Error::internal()),
    };
    match outcome {
        Outcome::Done(answer) => {
            let event = if pending.kind == PaymentAction::Capture {
                PaymentEvent::Captured
            } else {
                PaymentEvent::Canceled
            };
            let expected = if event == PaymentEvent::Captured {
                GatewayPaymentStatus::Captured
            } else {
                GatewayPaymentStatus::Canceled
            };
            if answer.status != expected {
                tracing::error!(payment_id = %payment.id, "the gateway answered the action with another status");
                return Ok(Answer { payment, unknown: true });
            }
            let updated = update(app, &payment, PaymentChange::Event(event)).await?;
            Ok(Answer { payment: updated.payment, unknown: false })
        }
        Outcome::Declined { reason } => {
            update(app, &payment, PaymentChange::ActionRefused { action: pending.kind }).await?;
            Err(Error::upstream(format!("the gateway refused the {}: {reason}", pending.kind.as_str())))
        }
        Outcome::Unknown { detail } => {
            tracing::warn!(payment_id = %payment.id, detail, "payment action outcome unknown; retrying later");
            Ok(Answer { payment, unknown: true })
        }
    }
}

/// A gateway notice about one of our payments. Bound (created under the
/// signing account, else 401), compared (amount and gateway order id, else
/// 400), then confirmed by asking the gateway; `payconfirm/` while unknown.
pub async fn on_gateway_update(app: &Core, notice: OrderNotice<'_>) -> Result<&'static str, Error> {
    let payment = match PaymentId::parse(notice.order_id) {
        Ok(id) => load_any(app, &id)?,
        Err(_) => None,
    };
    let payment =
        notice.bound(app, payment, |p| (&p.gateway_account, p.amount, p.gateway_order_id.as_deref()))?;
    match confirm(app, &payment, notice.gateway_order_id).await? {
        Some(true) => Ok("applied"),
        Some(false) => Ok("unchanged"),
        None => {
            let marker = Marker::PaymentConfirm { payment: payment.id.clone() };
            let mut batch = WriteBatch::new();
            batch.put_raw(marker.tree(), marker.encode(), notice.gateway_order_id.as_bytes());
            app.store.commit_durable(batch).await?;
            Ok("unconfirmed")
        }
    }
}

/// Asks the gateway about the payment and applies its answer: `Some(changed)`,
/// or `None` while the answer is unknown.
async fn confirm(app: &Core, payment: &PaymentRecord, gateway_order_id: &str) -> Result<Option<bool>, Error> {
    let account = account_of(app, payment).await?;
    let answer = match app.upstreams.payments.query_payment(account, gateway_order_id.to_owned()).await {
        Outcome::Done(answer) => answer,
        Outcome::Unknown { detail } => {
            tracing::warn!(payment_id = %payment.id, detail, "gateway payment query outcome unknown; retrying later");
            return Ok(None);
        }
        Outcome::Declined { reason } => {
            tracing::warn!(payment_id = %payment.id, reason, "the gateway does not know the payment a callback named");
            return Err(crate::flows::callback_rules::mismatch("gateway order id"));
        }
    };
    if answer.payment_id != payment.id.as_str() || answer.gateway_order_id != gateway_order_id {
        return Err(crate::flows::callback_rules::mismatch("gateway order id"));
    }
    if answer.amount != payment.amount {
        tracing::error!(payment_id = %payment.id, "the gateway holds this payment with another amount; not applied");
        return Err(crate::flows::callback_rules::mismatch("amount or currency"));
    }
    if payment.gateway_order_id.is_none() {
        // The checkout's creation answer was lost; the gateway's answer names it.
        let change = PaymentChange::CheckoutCreated {
            gateway_order_id: answer.gateway_order_id.clone(),
            checkout_url: answer.checkout_url.clone(),
        };
        update(app, payment, change).await?;
    }
    let current = find(app, &payment.merchant_id, &payment.id)?.ok_or_else(Error::internal)?;
    Ok(Some(apply_gateway(app, &current, &answer).await?))
}

/// One resolver pass: checkouts, captures and cancels whose answer is
/// unknown (retried with their stored request id once the grace passed), and
/// callbacks whose confirming query had no answer.
pub async fn resolve_pending(app: &Arc<Core>) -> Result<usize, Error> {
    let read = |key: &Marker, _: &str| {
        let Marker::PaymentPending { payment: id } = key else { return Ok(Found::Unreadable) };
        Ok(load_any(app, id)?.map_or(Found::Gone, Found::Record))
    };
    let mut done = super::resolve_markers(app, keys::PAYPENDING, read, |payment: PaymentRecord| async move {
        let id = payment.id.clone();
        let outcome = match payment.pending_action.as_ref().map(|a| a.kind) {
            Some(PaymentAction::Create) => {
                let account = account_of(app, &payment).await?;
                request_checkout(app, payment, account).await
            }
            Some(_) => send_action(app, payment).await,
            None => return Ok(false),
        };
        Ok(match outcome {
            Ok(answer) => !answer.unknown,
            // A refused capture or cancel: recorded (pending action cleared), reported by the payment.
            Err(Error::Upstream(_)) => true,
            Err(e) => {
                tracing::warn!(payment_id = %id, error = %e, "resolving a payment failed; retrying later");
                false
            }
        })
    })
    .await?;
    for (key, gateway_order_id) in crate::flows::markers(app, keys::PAYCONFIRM)? {
        let Marker::PaymentConfirm { payment: id } = key else { continue };
        let gateway_order_id = String::from_utf8_lossy(&gateway_order_id).into_owned();
        let keep = match load_any(app, &id)? {
            Some(payment) => match confirm(app, &payment, &gateway_order_id).await {
                Ok(answer) => answer.is_none(),
                Err(e) => {
                    tracing::warn!(payment_id = %id, error = %e, "a payment callback was contradicted; dropped");
                    false
                }
            },
            None => false,
        };
        if !keep {
            crate::flows::clear_marker(app, Marker::PaymentConfirm { payment: id }.encode()).await?;
            done += 1;
        }
    }
    Ok(done)
}

/// T+1 (§6): marks `settled`, once, every payment captured before `date`
/// 00:00Z that is still to be settled (its `paycoll/` row), through its
/// merchant's actor; a page at a time.
pub async fn settle_captured_before(app: &Core, date: &str) -> Result<(), Error> {
    // Rows sort by date: the first at or after this one is not before `date`.
    let bound = [keys::PAYCOLL, date].concat();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let rows =
            app.store.scan_keys(Tree::Index, keys::PAYCOLL.as_bytes(), after.as_deref(), false, 256)?;
        let Some(last) = rows.last() else { return Ok(()) };
        after = Some(last.clone());
        for key in rows {
            if key.as_slice() >= bound.as_bytes() {
                return Ok(());
            }
            let Some(Index::PaymentCaptured { payment, .. }) = Index::parse(&key) else { continue };
            let Some(record) = load_any(app, &payment)? else { continue };
            match update(app, &record, PaymentChange::Settle { date: date.to_owned() }).await {
                Ok(_) => {}
                // Refunded whole: nothing left to settle; its row stays for the refund's own books.
                Err(Error::InvalidState(why)) => tracing::info!(payment_id = %payment, why, "not settled"),
                Err(e) => return Err(e),
            }
        }
    }
}

/// How many payments the run of `date` settled, per merchant.
pub fn settled_by_run(app: &Core, date: &str) -> Result<std::collections::BTreeMap<MerchantId, u64>, Error> {
    let mut counts = std::collections::BTreeMap::new();
    for row in app.store.iter_raw(Tree::Index, keys::scan_prefix(keys::PAYSETTLED, &[&date]).as_bytes()) {
        let (_, merchant) = row?;
        let Ok(merchant) = MerchantId::parse(&String::from_utf8_lossy(&merchant)) else { continue };
        *counts.entry(merchant).or_insert(0u64) += 1;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::half_up;

    #[test]
    fn half_up_rounds_halves_up() {
        assert_eq!(half_up(780, 500), 39); // §6's example
        assert_eq!(half_up(1_000, 1_000), 100);
        assert_eq!(half_up(100, 250), 3); // 2.5 → 3
        assert_eq!(half_up(100, 249), 2); // 2.49 → 2
        assert_eq!(half_up(10, 250), 0); // 0.25 → 0
        assert_eq!(half_up(10_000_000_000_000, 10_000), 10_000_000_000_000);
    }
}
