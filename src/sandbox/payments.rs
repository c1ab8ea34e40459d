//! The simulated gateway's payments (MARKETPLACE.md §11): a payment is a
//! checkout order (same page, same Pay/Fail/expire and callbacks) with a
//! `capture` flag; paid with `capture` false it is `authorized` until
//! `capture` (→ `paid`) or `cancel` (→ `canceled`, also from `pending`).
//! Partial refunds of a captured payment (`POST /payments/{id}/refunds`,
//! Σ ≤ captured, `GET /payments/{id}/refunds/{rid}`). Idempotent per request
//! id, queryable, faults `create_payment`, `capture`, `cancel`, `refund`,
//! `split` (the marketplace fault table).

use http::{Method, StatusCode};
use pelago_storage::{Money, StoreError, Tree, WriteBatch};
use serde::{Deserialize, Serialize};

use super::{
    Request, Response, State, error,
    gateway::{Decision, answer, checkout_url, idempotent, load_order, move_order, new_order},
    json,
    marketplace::{after_apply, before_apply},
    new_id,
    records::{GatewayAccountRec, OrderRec},
};
use crate::upstream::{
    gateway_wire::OrderStatusWire,
    marketplace_wire::{
        CreatePaymentBody, MarketplaceOperation, PaymentAnswer, PaymentRefundAnswer, PaymentRefundBody,
        SplitAnswer, SplitBody, SplitItemAnswer,
    },
};

/// Key `payment/{gateway order id}`: what makes an order a payment.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PaymentFlags {
    capture: bool,
}

pelago_storage::record!(PaymentFlags, Orders, 1);

fn flags_key(gateway_order_id: &str) -> String {
    crate::keys::Sandbox::Payment { gateway_order: gateway_order_id.to_owned() }.text()
}

/// What the buyer's Pay makes of `gateway_order_id`: `authorized` for a
/// payment made with `capture` false, `target` otherwise.
pub(super) fn checkout_target(
    state: &State,
    gateway_order_id: &str,
    target: OrderStatusWire,
) -> Result<OrderStatusWire, StoreError> {
    if target != OrderStatusWire::Paid {
        return Ok(target);
    }
    Ok(match state.store.get::<PaymentFlags>(flags_key(gateway_order_id))? {
        Some(flags) if !flags.capture => OrderStatusWire::Authorized,
        _ => target,
    })
}

fn payment_answer(state: &State, order: &OrderRec) -> PaymentAnswer {
    PaymentAnswer {
        id: order.id.clone(),
        payment_id: order.order_id.clone(),
        checkout_url: checkout_url(state, &order.id),
        status: order.status,
        amount: order.amount,
    }
}

/// A payment of the calling account (an order with payment flags).
fn load_payment(state: &State, account: &GatewayAccountRec, id: &str) -> Result<OrderRec, Response> {
    let order = load_order(state, account, id)?;
    match state.store.get::<PaymentFlags>(flags_key(id)) {
        Ok(Some(_)) => Ok(order),
        Ok(None) => Err(error(StatusCode::NOT_FOUND, "payment_not_found", "no such payment")),
        Err(e) => Err(super::internal(e)),
    }
}

pub(super) async fn handle(call: super::gateway::AccountCall<'_>) -> Response {
    let super::gateway::AccountCall { state, account, req, segments } = call;
    let operation = match (&req.method, segments) {
        (&Method::POST, ["payments"]) => MarketplaceOperation::CreatePayment,
        (&Method::POST, ["payments", _, "capture"]) => MarketplaceOperation::Capture,
        (&Method::POST, ["payments", _, "cancel"]) => MarketplaceOperation::Cancel,
        (&Method::POST, ["splits"]) => MarketplaceOperation::Split,
        (&Method::POST, ["payments", _, "refunds"]) => MarketplaceOperation::Refund,
        (&Method::GET, ["payments", id, "refunds", rid]) => {
            let order = or_reply!(load_payment(state, account, id));
            let missing = ("refund_not_found", "no such refund");
            return super::stored_answer(state, Tree::Orders, refund_key(&order.id, rid), missing);
        }
        (&Method::GET, ["payments", id]) => {
            return json(
                StatusCode::OK,
                &payment_answer(state, &or_reply!(load_payment(state, account, id))),
            );
        }
        _ => return error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    };
    let fault = or_reply!(before_apply(state, operation));
    let response = match segments {
        ["payments"] => idempotent(state, account, req, "create_payment", create).await,
        ["splits"] => idempotent(state, account, req, "split", split).await,
        [_, id, "refunds"] => {
            let op = format!("refund {id}");
            let id = (*id).to_owned();
            idempotent(state, account, req, &op, |s, a, r| refund(s, a, r, &id)).await
        }
        [_, id, action] => {
            let op = format!("{action} {id}");
            let id = (*id).to_owned();
            idempotent(state, account, req, &op, |s, a, _| finish(s, a, &id, operation)).await
        }
        _ => unreachable!("matched above"),
    };
    after_apply(state, fault).await;
    response
}

fn create(state: &State, account: &GatewayAccountRec, req: &Request) -> Decision {
    let body: CreatePaymentBody = or_reply!(req.json(), Ok(Err));
    if Money::request_amount(body.amount.value, body.amount.currency).is_err() || body.payment_id.is_empty() {
        return Ok(Err(error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount", "amount out of range")));
    }
    let order = new_order(account, body.payment_id, body.amount, &body.description);
    let mut batch = WriteBatch::new();
    batch.put(crate::keys::Sandbox::Order { order: order.id.clone() }.text(), &order)?;
    batch.put(flags_key(&order.id), &PaymentFlags { capture: body.capture })?;
    answer(StatusCode::CREATED, &payment_answer(state, &order), batch, None)
}

/// Captures (authorized → paid) or voids (pending or authorized → canceled),
/// with the same `order.updated` callback as the checkout's.
fn finish(state: &State, account: &GatewayAccountRec, id: &str, operation: MarketplaceOperation) -> Decision {
    let mut order = or_reply!(load_payment(state, account, id), Ok(Err));
    let (allowed, target) = match operation {
        MarketplaceOperation::Capture => (order.status == OrderStatusWire::Authorized, OrderStatusWire::Paid),
        _ => (
            matches!(order.status, OrderStatusWire::Pending | OrderStatusWire::Authorized),
            OrderStatusWire::Canceled,
        ),
    };
    if !allowed {
        let reason = format!("the payment is {}", super::checkout::status_word(order.status));
        return Ok(Err(error(StatusCode::CONFLICT, "payment_not_allowed", &reason)));
    }
    let pending = move_order(account, &mut order, target);
    let mut batch = WriteBatch::new();
    batch.put(crate::keys::Sandbox::Order { order: order.id.clone() }.text(), &order)?;
    answer(StatusCode::OK, &payment_answer(state, &order), batch, Some(pending))
}

/// Key `split/{gateway order id}`: the payment was split (by this request id).
fn split_key(gateway_order_id: &str) -> String {
    crate::keys::Sandbox::Split { gateway_order: gateway_order_id.to_owned() }.text()
}

/// A batch split: each item executes if its payment is the account's, paid
/// (captured), for no more than its amount, and not split before; else it
/// fails with the reason. Idempotent per request id (the whole answer).
fn split(state: &State, account: &GatewayAccountRec, req: &Request) -> Decision {
    let body: SplitBody = or_reply!(req.json(), Ok(Err));
    if body.items.is_empty() || body.items.len() > 100 {
        return Ok(Err(error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", "1 to 100 items")));
    }
    let request_id = req.idempotency_key().unwrap_or_default().to_owned();
    let mut batch = WriteBatch::new();
    let mut items = Vec::with_capacity(body.items.len());
    for item in body.items {
        let refused = match load_payment(state, account, &item.id) {
            Err(_) => Some("no such payment".to_owned()),
            Ok(order) if order.order_id != item.payment_id => Some("the payment id does not match".into()),
            Ok(order) if order.status != OrderStatusWire::Paid => Some("the payment is not captured".into()),
            Ok(order)
                if item.amount.currency != order.amount.currency
                    || item.amount.value > order.amount.value =>
            {
                Some("the amount is above the payment's".into())
            }
            Ok(_) if state.store.get_raw(Tree::Orders, split_key(&item.id))?.is_some() => {
                Some("the payment was split already".into())
            }
            Ok(_) => None,
        };
        if refused.is_none() {
            batch.put_raw(Tree::Orders, split_key(&item.id), request_id.as_bytes());
        }
        items.push(SplitItemAnswer {
            payment_id: item.payment_id,
            status: if refused.is_none() { "executed" } else { "failed" }.to_owned(),
            reason: refused,
        });
    }
    answer(StatusCode::CREATED, &SplitAnswer { id: new_id("gsp"), items }, batch, None)
}

/// Key `refunded/{gateway order id}`: Σ refunded of the payment, minor units.
fn refunded_key(gateway_order_id: &str) -> String {
    format!("refunded/{gateway_order_id}")
}

/// Key `prefund/{gateway order id}/{refund id}`: one refund's answer (queryable).
fn refund_key(gateway_order_id: &str, refund_id: &str) -> String {
    format!("prefund/{gateway_order_id}/{refund_id}")
}

/// A partial refund of a captured payment: refused (422) unless the payment
/// is the account's, captured, in its currency, and Σ refunds stays ≤ the capture.
fn refund(state: &State, account: &GatewayAccountRec, req: &Request, id: &str) -> Decision {
    let body: PaymentRefundBody = or_reply!(req.json(), Ok(Err));
    let order = or_reply!(load_payment(state, account, id), Ok(Err));
    if order.status != OrderStatusWire::Paid {
        return Ok(Err(error(
            StatusCode::CONFLICT,
            "payment_not_captured",
            "only a captured payment is refunded",
        )));
    }
    let refunded = match state.store.get_raw(Tree::Orders, refunded_key(&order.id))? {
        Some(raw) => i64::from_be_bytes(<[u8; 8]>::try_from(&raw[..]).unwrap_or([0; 8])),
        None => 0,
    };
    let total = refunded.saturating_add(body.amount.value);
    if body.amount.currency != order.amount.currency || body.amount.value <= 0 || total > order.amount.value {
        let reason = "the refunds would exceed the captured amount";
        return Ok(Err(error(StatusCode::UNPROCESSABLE_ENTITY, "refund_exceeds_capture", reason)));
    }
    let answer_body = PaymentRefundAnswer {
        id: new_id("gpr"),
        payment: order.id.clone(),
        amount: body.amount,
        refunded_total: Money::new(total, order.amount.currency),
    };
    let mut batch = WriteBatch::new();
    batch.put_raw(Tree::Orders, refunded_key(&order.id), total.to_be_bytes());
    let stored = serde_json::to_vec(&answer_body).expect("wire types always serialise");
    batch.put_raw(Tree::Orders, refund_key(&order.id, &answer_body.id), stored);
    answer(StatusCode::CREATED, &answer_body, batch, None)
}
