//! Wire JSON of the stored objects, shared by their resources, events and
//! webhooks (the only place these shapes are written), and the amounts
//! requests carry.

use pelago_actors::{
    card::{CardRecord, TransactionRecord, order::OrderRecord, topup::TopupRecord},
    history::{History, Status},
    ledger::BalanceTxnRecord,
    outbox::{EventObject, EventRecord},
    withdrawal::WithdrawalRecord,
};
use pelago_storage::{Currency, Money, OrderId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::errors::ApiError;

/// A request amount (API.md §1): integer minor units and an ISO 4217 code.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyIn {
    pub value: i64,
    pub currency: String,
}

/// `0 < value <= 10^13` and a known currency, else 400 naming `param`.
pub fn parse_amount(m: &MoneyIn, param: &str) -> Result<Money, ApiError> {
    let currency = Currency::parse(&m.currency).map_err(|_| {
        ApiError::invalid(format!("{param}.currency"), "unknown currency (ISO 4217, upper case)")
    })?;
    Money::request_amount(m.value, currency).map_err(|_| {
        ApiError::invalid(format!("{param}.value"), "value must be an integer from 1 to 10^13 minor units")
    })
}

pub fn money(m: Money) -> Value {
    json!({"value": m.value, "currency": m.currency.code()})
}

/// A merchant's `settlement.completed` object (`payments`: since payments are settled too).
fn settlement(m: &pelago_actors::outbox::MerchantSettlement, payments: Option<u64>) -> Value {
    let mut object = json!({
        "object": "settlement", "merchant_id": m.merchant_id, "date": m.date,
        "collections": m.collections, "amounts": m.amounts.iter().map(|a| money(*a)).collect::<Vec<_>>(),
    });
    if let Some(payments) = payments {
        object["payments"] = payments.into();
    }
    object
}

pub fn history<S: Status>(h: &History<S>) -> Value {
    h.changes()
        .iter()
        .map(|c| {
            json!({
                "from": c.from.map(Status::as_str),
                "to": c.to.as_str(),
                "reason": c.reason,
                "source": c.source.as_str(),
                "at": c.at.to_rfc3339(),
            })
        })
        .collect()
}

fn card(c: &CardRecord) -> Value {
    json!({
        "id": c.id,
        "object": "card",
        "cardholder_id": c.cardholder_id,
        "reference": c.reference,
        "card_name": c.card_name,
        "bin": c.bin,
        "last4": c.last4,
        "status": c.status.as_str(),
        "currency": c.currency.code(),
        "balance": money(c.balance()),
        "application_fee_order": c.application_fee_order,
        "pending_action": c.pending_action.as_ref().map(|p| json!({"type": p.kind, "since": p.since.to_rfc3339()})),
        "version": c.version,
        "status_history": history(&c.status_history),
        "created_at": c.created_at.to_rfc3339(),
        "opened_at": c.opened_at.map(|t| t.to_rfc3339()),
    })
}

pub fn transaction(t: &TransactionRecord) -> Value {
    json!({
        "id": t.id,
        "object": "transaction",
        "card_id": t.card_id,
        "channel_transaction_id": t.channel_transaction_id,
        "type": t.kind.as_str(),
        "status": t.status.as_str(),
        "amount": money(t.amount),
        "merchant_name": t.merchant_name,
        "mcc": t.mcc,
        "occurred_at": t.occurred_at.to_rfc3339(),
        "version": t.version,
        "created_at": t.created_at.to_rfc3339(),
    })
}

pub fn withdrawal(w: &WithdrawalRecord) -> Value {
    json!({
        "id": w.id,
        "object": "withdrawal",
        "merchant_id": w.merchant_id,
        "amount": money(w.amount),
        "address": w.address,
        "network": w.network,
        "status": w.status.as_str(),
        "failure_reason": w.failure_reason,
        "version": w.version,
        "status_history": history(&w.status_history),
        "created_at": w.created_at.to_rfc3339(),
        "completed_at": w.completed_at.map(|t| t.to_rfc3339()),
    })
}

pub fn order(o: &OrderRecord) -> Value {
    json!({
        "id": o.id,
        "object": "order",
        "kind": o.kind.as_str(),
        "card_id": o.card_id,
        "topup_id": o.topup_id,
        "principal": money(o.principal),
        "fee": money(o.fee),
        "total": money(o.total),
        "status": o.status.as_str(),
        "checkout_url": o.checkout_url,
        "gateway_order_id": o.gateway_order_id,
        "version": o.version,
        "status_history": history(&o.status_history),
        "created_at": o.created_at.to_rfc3339(),
        "paid_at": o.paid_at.map(|t| t.to_rfc3339()),
    })
}

/// A card with its application-fee order object (API.md §4 Card).
pub fn card_with_order(c: &CardRecord, order_record: Option<&OrderRecord>) -> Value {
    let mut v = card(c);
    v["application_fee_order"] = order_record.map_or(Value::Null, order);
    v
}

/// A top-up with its order object.
pub fn topup_with_order(t: &TopupRecord, order_record: Option<&OrderRecord>) -> Value {
    let mut v = topup(t);
    v["order"] = order_record.map_or(Value::Null, order);
    v
}

fn topup(t: &TopupRecord) -> Value {
    json!({
        "id": t.id,
        "object": "topup",
        "card_id": t.card_id,
        "amount": money(t.amount),
        "fee": money(t.fee),
        "total": money(t.total),
        "reference": t.reference,
        "status": t.status.as_str(),
        "order": null,
        "failure_reason": t.failure_reason,
        "version": t.version,
        "status_history": history(&t.status_history),
        "created_at": t.created_at.to_rfc3339(),
        "completed_at": t.completed_at.map(|c| c.to_rfc3339()),
    })
}

pub fn balance_txn(t: &BalanceTxnRecord) -> Value {
    json!({
        "id": t.id,
        "object": "balance_transaction",
        "type": t.kind,
        "amount": money(t.amount),
        "balance_after": {"available": t.available_after, "pending": t.pending_after},
        "source_id": t.source_id,
        "created_at": t.created_at.to_rfc3339(),
    })
}

/// An event's wire body (also the webhook body). `order_of` finds the order a
/// card or top-up names, so the object has the shape GET gives it (API.md:
/// `application_fee_order: Order|null`, `order: Order|null`).
pub fn event(e: &EventRecord, order_of: &dyn Fn(&OrderId) -> Option<OrderRecord>) -> Value {
    let object = match &e.object {
        EventObject::Card(c) => {
            card_with_order(c, c.application_fee_order.as_ref().and_then(order_of).as_ref())
        }
        EventObject::Transaction(t) => transaction(t),
        EventObject::Cardholder(c) => super::cardholders::cardholder_json(c),
        EventObject::BalanceTransaction(t) => balance_txn(t),
        EventObject::Topup(t) => topup_with_order(t, t.order.as_ref().and_then(order_of).as_ref()),
        EventObject::Order(o) => order(o),
        EventObject::Withdrawal(w) => withdrawal(w),
        EventObject::Onboarding(o) => super::onboardings::onboarding_json(o),
        EventObject::Agreement(a) => super::agreements::agreement_json(a),
        EventObject::MonthlyCharge(c) => json!({
            "object": "monthly_fee", "card_id": c.card_id, "period": c.period, "amount": money(c.fee),
            "status": c.status.as_str(), "order_id": c.order_id, "created_at": c.created_at.to_rfc3339(),
        }),
        EventObject::Settlement(m) => settlement(m, None),
        EventObject::PaymentsSettlement(s) => settlement(&s.settlement, Some(s.payments)),
        EventObject::Payment(p) => super::payments::payment_json(p),
        EventObject::SplitBatch(b) => super::split_batches::batch_json(b),
        EventObject::Refund(r) => super::refunds::refund_json(r),
        EventObject::RecipientWithdrawal(w) => super::recipient_withdrawals::withdrawal_json(w),
        EventObject::Reconciliation(r) => json!({
            "object": "reconciliation", "merchant_id": r.merchant_id, "date": r.date, "rows": r.rows,
            "formats": ["txt", "xlsx"],
        }),
    };
    json!({
        "id": e.id,
        "object": "event",
        "type": e.event_type,
        "created_at": e.created_at.to_rfc3339(),
        "data": {"object": object},
    })
}
