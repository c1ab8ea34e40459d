//! The simulated payment gateway (`/gateway/...`): orders with a checkout page,
//! refunds, deposit addresses and deposits, payouts, and signed callbacks to
//! the account's callback URL. Behaviour as SANDBOX.md describes it.

use http::{Method, StatusCode};
use pelago_storage::{Currency, Money, StoreError, Timestamp, Tree, WriteBatch};

use super::{
    Request, Response, State, checkout, error, internal, json, new_id, raw_json,
    records::{DepositRec, GatewayAccountRec, OpRecord, OrderRec, PayoutRec},
    same_secret,
};
use crate::keys::Sandbox;
use crate::upstream::{
    callbacks::{GATEWAY_SIGNATURE_HEADER, GatewayCallbackWire, GatewayEventWire},
    gateway_wire::{
        CreateOrderBody, DepositAddressAnswer, DepositAnswer, MERCHANT_HEADER, OrderAnswer, OrderStatusWire,
        PayoutAnswer, PayoutBody, PayoutStateAnswer, PayoutStatusWire, RefundAnswer, RefundBody,
    },
    marketplace_wire::MarketplaceOperation,
    marketplace_wire::{RecipientPayoutAnswer, RecipientPayoutBody},
    sandbox::{
        Acknowledged, DepositBody, DepositReported, FaultBehavior, GatewayFaultOperation, GatewayFaultSpec,
        RegisterAccountBody, ResentAnswer,
    },
};

pub(super) async fn handle(state: &State, req: Request) -> Response {
    let segments: Vec<String> = req.segments.clone();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (&req.method, segments.as_slice()) {
        (&Method::GET, ["checkout", id]) => return checkout_page(state, id),
        (&Method::POST, ["checkout", id, action]) => return settle(state, id, action, &req).await,
        (&Method::POST, ["control", "accounts"]) => return register(state, &req).await,
        (&Method::POST, ["control", "orders", id, "resend-callback"]) => return resend(state, id).await,
        (&Method::POST, ["control", "deposits"]) => return deposit(state, &req).await,
        (&Method::POST, ["control", "faults"]) => return set_fault(state, &req),
        (&Method::DELETE, ["control", "faults"]) => {
            state.gateway_faults.lock().clear();
            return json(StatusCode::OK, &Acknowledged { ok: true });
        }
        (_, ["control", "onboardings" | "marketplace", ..]) => {
            return super::marketplace::control(state, &req, &segments).await;
        }
        _ => {}
    }
    let account = or_reply!(authenticate(state, &req));
    let fault = fault_operation(&req.method, &segments).and_then(|op| state.gateway_faults.lock().take(op));
    if fault == Some(FaultBehavior::Error) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "simulated_error",
            "injected fault: nothing applied",
        );
    }
    let response =
        serve_account(AccountCall { state, account: &account, req: &req, segments: &segments }).await;
    if fault == Some(FaultBehavior::Timeout) {
        // Applied (or answered), but only after Pelago stopped waiting.
        tokio::time::sleep(std::time::Duration::from_millis(state.upstream_timeout_ms + 1_000)).await;
    }
    response
}

/// The fault operation a call of an account falls under.
fn fault_operation(method: &Method, segments: &[&str]) -> Option<GatewayFaultOperation> {
    Some(match (method, segments) {
        (&Method::POST, ["orders"]) => GatewayFaultOperation::CreateOrder,
        (&Method::GET, ["orders", _]) => GatewayFaultOperation::QueryOrder,
        (&Method::GET, ["deposit_address"]) => GatewayFaultOperation::DepositAddress,
        (&Method::GET, ["deposits", _]) => GatewayFaultOperation::QueryDeposit,
        (&Method::GET, ["payouts", _]) => GatewayFaultOperation::QueryPayout,
        (&Method::POST, ["payouts"] | ["recipient-payouts"]) => GatewayFaultOperation::Payout,
        (&Method::GET, ["recipient-payouts", "by-request", _]) => GatewayFaultOperation::QueryPayout,
        (&Method::POST, ["orders", _, "refunds"]) => GatewayFaultOperation::Refund,
        _ => return None,
    })
}

fn set_fault(state: &State, req: &Request) -> Response {
    let spec: GatewayFaultSpec = or_reply!(req.json());
    match state.gateway_faults.lock().set(spec) {
        Ok(()) => json(StatusCode::OK, &Acknowledged { ok: true }),
        Err(reason) => error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_fault", &reason),
    }
}

/// One call of an authenticated gateway account, as its routes read it.
#[derive(Clone, Copy)]
pub(super) struct AccountCall<'a> {
    pub state: &'a State,
    pub account: &'a GatewayAccountRec,
    pub req: &'a Request,
    pub segments: &'a [&'a str],
}

/// The calls an authenticated account makes.
async fn serve_account(call: AccountCall<'_>) -> Response {
    let AccountCall { state, account, req, segments } = call;
    match (&req.method, segments) {
        (&Method::POST, ["orders"]) => idempotent(state, account, req, "create_order", create_order).await,
        (&Method::GET, ["orders", id]) => {
            json(StatusCode::OK, &order_answer(state, &or_reply!(load_order(state, account, id))))
        }
        (&Method::GET, ["deposit_address"]) => deposit_address(state, account, req),
        (&Method::GET, ["deposits", id]) => query_deposit(state, account, id),
        (&Method::GET, ["payouts", id]) => query_payout(state, account, id),
        (&Method::POST, ["payouts"]) => idempotent(state, account, req, "payout", payout).await,
        (&Method::POST, ["recipient-payouts"]) => {
            idempotent(state, account, req, "recipient_payout", recipient_payout).await
        }
        (&Method::GET, ["recipient-payouts", "by-request", request_id]) => super::stored_answer(
            state,
            Tree::Index,
            recipient_payout_key(&account.merchant_id, request_id),
            ("not_found", "no payout was made with this request id"),
        ),
        (&Method::POST, ["orders", id, "refunds"]) => {
            // The operator's `refund` fault (the marketplace table) covers order refunds too.
            let fault = or_reply!(super::marketplace::before_apply(state, MarketplaceOperation::Refund));
            let op = format!("refund {id}");
            let response = idempotent(state, account, req, &op, |s, a, r| refund(s, a, r, id)).await;
            super::marketplace::after_apply(state, fault).await;
            response
        }
        (_, ["payments" | "splits", ..]) => super::payments::handle(call).await,
        (_, ["onboardings" | "agreements", ..]) => super::marketplace::handle(call).await,
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    }
}

fn authenticate(state: &State, req: &Request) -> Result<GatewayAccountRec, Response> {
    let unauthorized = || error(StatusCode::UNAUTHORIZED, "unauthorized", "unknown merchant or API key");
    let (Some(merchant_id), Some(api_key)) = (req.header(MERCHANT_HEADER), req.bearer()) else {
        return Err(unauthorized());
    };
    let account = state
        .store
        .get::<GatewayAccountRec>(Sandbox::Account { merchant: merchant_id.to_string() }.text())
        .map_err(internal)?
        .ok_or_else(unauthorized)?;
    if !same_secret(
        api_key,
        &state.open(&account.api_key, &GatewayAccountRec::api_key_context(&account.merchant_id)),
    ) {
        return Err(unauthorized());
    }
    Ok(account)
}

pub(super) fn checkout_url(state: &State, gateway_order_id: &str) -> String {
    format!("http://{}/gateway/checkout/{gateway_order_id}", state.listen)
}

pub(super) fn order_answer(state: &State, order: &OrderRec) -> OrderAnswer {
    OrderAnswer {
        id: order.id.clone(),
        order_id: order.order_id.clone(),
        checkout_url: checkout_url(state, &order.id),
        status: order.status,
        amount: order.amount,
        paid_at: order.paid_at_ms.map(Timestamp::from_unix_ms),
    }
}

pub(super) fn load_order(state: &State, account: &GatewayAccountRec, id: &str) -> Result<OrderRec, Response> {
    match state.store.get::<OrderRec>(Sandbox::Order { order: id.to_string() }.text()) {
        Ok(Some(order)) if order.merchant_id == account.merchant_id => Ok(order),
        Ok(_) => Err(error(StatusCode::NOT_FOUND, "order_not_found", "no such order")),
        Err(e) => Err(internal(e)),
    }
}

/// `GET /deposits/{id}`: a deposit to one of the calling account's addresses.
fn query_deposit(state: &State, account: &GatewayAccountRec, id: &str) -> Response {
    match state.store.get::<DepositRec>(Sandbox::Deposit { deposit: id.to_string() }.text()) {
        Ok(Some(d)) if d.merchant_id == account.merchant_id => json(
            StatusCode::OK,
            &DepositAnswer {
                id: d.id,
                address: d.address,
                network: d.network,
                amount: d.amount,
                at: Timestamp::from_unix_ms(d.at_ms),
            },
        ),
        Ok(_) => error(StatusCode::NOT_FOUND, "deposit_not_found", "no such deposit"),
        Err(e) => internal(e),
    }
}

/// `GET /payouts/{id}`: a payout of the calling account.
fn query_payout(state: &State, account: &GatewayAccountRec, id: &str) -> Response {
    match state.store.get::<PayoutRec>(Sandbox::Payout { payout: id.to_string() }.text()) {
        Ok(Some(p)) if p.merchant_id == account.merchant_id => json(
            StatusCode::OK,
            &PayoutStateAnswer {
                id: p.id,
                request_id: p.request_id,
                status: p.status,
                reason: p.reason,
                amount: p.amount,
            },
        ),
        Ok(_) => error(StatusCode::NOT_FOUND, "payout_not_found", "no such payout"),
        Err(e) => internal(e),
    }
}

/// A callback to send once the state that it reports is durable.
pub(super) struct Pending {
    account: GatewayAccountRec,
    pub(super) body: String,
    event_id: String,
}

pub(super) fn callback(account: &GatewayAccountRec, event: GatewayEventWire) -> Pending {
    let event_id = new_id("evt");
    let wire =
        GatewayCallbackWire { event_id: event_id.clone(), merchant_id: account.merchant_id.clone(), event };
    Pending {
        account: account.clone(),
        body: serde_json::to_string(&wire).expect("wire types always serialise"),
        event_id,
    }
}

async fn send(state: &State, pending: Pending) -> bool {
    let key = state
        .open(&pending.account.api_key, &GatewayAccountRec::api_key_context(&pending.account.merchant_id));
    let callback = super::notify::Callback {
        url: pending.account.callback_url,
        signature_header: GATEWAY_SIGNATURE_HEADER,
        key,
        body: pending.body,
        event_id: pending.event_id,
    };
    let delivered = state.notifier.deliver(&callback, 1).await;
    if !delivered {
        tracing::warn!(event_id = %callback.event_id, "gateway callback undelivered");
    }
    delivered
}

/// Sends without holding up the answer (payouts, refunds): the caller may be
/// waiting on this answer before it can process the callback. Bounded by the
/// notifier's background permits.
async fn send_in_background(state: &State, pending: Pending) {
    let permit = state.notifier.background_permit().await;
    let notifier = state.notifier.clone();
    let key = state
        .open(&pending.account.api_key, &GatewayAccountRec::api_key_context(&pending.account.merchant_id));
    tokio::spawn(async move {
        let callback = super::notify::Callback {
            url: pending.account.callback_url,
            signature_header: GATEWAY_SIGNATURE_HEADER,
            key,
            body: pending.body,
            event_id: pending.event_id,
        };
        if !notifier.deliver(&callback, 1).await {
            tracing::warn!(event_id = %callback.event_id, "gateway callback undelivered");
        }
        drop(permit);
    });
}

/// What one idempotent call decided: its answer, writes, and maybe a callback.
pub(super) struct Decided {
    status: StatusCode,
    answer: String,
    batch: WriteBatch,
    callback: Option<Pending>,
}

pub(super) type Decision = Result<Result<Decided, Response>, StoreError>;

pub(super) fn answer<T: serde::Serialize>(
    status: StatusCode,
    value: &T,
    batch: WriteBatch,
    callback: Option<Pending>,
) -> Decision {
    let answer = serde_json::to_string(value).expect("wire types always serialise");
    Ok(Ok(Decided { status, answer, batch, callback }))
}

/// Runs `decide` once per (account, request id); a repeat answers the stored result.
pub(super) async fn idempotent(
    state: &State,
    account: &GatewayAccountRec,
    req: &Request,
    op: &str,
    decide: impl FnOnce(&State, &GatewayAccountRec, &Request) -> Decision,
) -> Response {
    let Some(request_id) = req.idempotency_key() else {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "the Idempotency-Key header is required");
    };
    let op_key = Sandbox::GatewayOperation {
        merchant: account.merchant_id.to_string(),
        request: request_id.to_string(),
    }
    .text();
    let (status, answer, callback, ticket) = {
        // The lock orders decisions; it is released before the flush, so
        // concurrent calls share fsyncs. Every answer (a repeat's too) waits
        // for a flush that covers everything decided before it.
        let _guard = state.write_lock.lock().await;
        match state.store.get::<OpRecord>(&op_key) {
            Err(e) => return internal(e),
            Ok(Some(stored)) if stored.op != op => {
                return error(
                    StatusCode::CONFLICT,
                    "idempotency_conflict",
                    "request id was used for another call",
                );
            }
            Ok(Some(stored)) => (stored.status, stored.answer_json, None, state.store.ticket()),
            Ok(None) => {
                let mut decided = match decide(state, account, req) {
                    Ok(Ok(decided)) => decided,
                    Ok(Err(response)) => return response,
                    Err(e) => return internal(e),
                };
                let record = OpRecord {
                    op: op.to_owned(),
                    status: decided.status.as_u16(),
                    answer_json: decided.answer,
                    operation_json: String::new(),
                };
                if let Err(e) = decided.batch.put(&op_key, &record) {
                    return internal(e);
                }
                match state.store.commit(decided.batch) {
                    Ok(ticket) => (record.status, record.answer_json, decided.callback, ticket),
                    Err(e) => return internal(e),
                }
            }
        }
    };
    if let Err(e) = state.store.wait_durable(ticket).await {
        return internal(e);
    }
    if let Some(pending) = callback {
        send_in_background(state, pending).await;
    }
    raw_json(status, answer)
}

fn create_order(state: &State, account: &GatewayAccountRec, req: &Request) -> Decision {
    let body: CreateOrderBody = or_reply!(req.json(), Ok(Err));
    if Money::request_amount(body.amount.value, body.amount.currency).is_err() {
        return Ok(Err(error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount", "amount out of range")));
    }
    let order = new_order(account, body.order_id, body.amount, &body.description);
    let mut batch = WriteBatch::new();
    batch.put(Sandbox::Order { order: order.id.clone() }.text(), &order)?;
    answer(StatusCode::CREATED, &order_answer(state, &order), batch, None)
}

/// Moves `order` to `target` (paid: `paid_at` now) and returns its
/// `order.updated` callback, kept as the order's last one.
pub(super) fn move_order(
    account: &GatewayAccountRec,
    order: &mut OrderRec,
    target: OrderStatusWire,
) -> Pending {
    let now = Timestamp::now_real();
    order.status = target;
    if target == OrderStatusWire::Paid {
        order.paid_at_ms = Some(now.unix_ms());
    }
    let event = GatewayEventWire::OrderUpdated {
        id: order.id.clone(),
        order_id: order.order_id.clone(),
        status: target,
        amount: order.amount,
        at: now,
    };
    let pending = callback(account, event);
    order.last_callback = Some(pending.body.clone());
    pending
}

/// A pending checkout order of `account` for Pelago's `order_id` (an `ord_` or a `pay_` id).
pub(super) fn new_order(
    account: &GatewayAccountRec,
    order_id: String,
    amount: Money,
    description: &str,
) -> OrderRec {
    OrderRec {
        id: new_id("go"),
        merchant_id: account.merchant_id.clone(),
        order_id,
        amount,
        description: description.chars().take(500).collect(),
        status: OrderStatusWire::Pending,
        created_at_ms: Timestamp::now_real().unix_ms(),
        paid_at_ms: None,
        last_callback: None,
        refund_id: None,
    }
}

fn payout(_state: &State, account: &GatewayAccountRec, req: &Request) -> Decision {
    let body: PayoutBody = or_reply!(req.json(), Ok(Err));
    if Money::request_amount(body.amount.value, body.amount.currency).is_err() || body.address.is_empty() {
        return Ok(Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "amount or address invalid",
        )));
    }
    let request_id = req.idempotency_key().unwrap_or_default().to_owned();
    let (status, reason) = if body.address.starts_with("FAIL") {
        (PayoutStatusWire::Failed, Some("the destination address refused the transfer".to_owned()))
    } else {
        (PayoutStatusWire::Succeeded, None)
    };
    let record = PayoutRec {
        id: new_id("gpo"),
        merchant_id: account.merchant_id.clone(),
        request_id: request_id.clone(),
        amount: body.amount,
        address: body.address,
        network: body.network,
        status,
        reason: reason.clone(),
    };
    let mut batch = WriteBatch::new();
    batch.put(Sandbox::Payout { payout: record.id.to_string() }.text(), &record)?;
    let event = GatewayEventWire::PayoutUpdated {
        id: record.id.clone(),
        request_id,
        status,
        reason: reason.clone(),
        amount: record.amount,
    };
    let answer_body = PayoutAnswer { id: record.id, status, reason };
    answer(StatusCode::CREATED, &answer_body, batch, Some(callback(account, event)))
}

/// `rpayreq/{merchant}/{request id}` → the answer of a recipient payout.
fn recipient_payout_key(merchant_id: &str, request_id: &str) -> String {
    format!("rpayreq/{merchant_id}/{request_id}")
}

/// A recipient withdrawal's bank payout (MARKETPLACE.md §11): paid unless
/// the account number starts with `FAIL`. Nothing of the account is stored.
fn recipient_payout(_state: &State, account: &GatewayAccountRec, req: &Request) -> Decision {
    let body: RecipientPayoutBody = or_reply!(req.json(), Ok(Err));
    if Money::request_amount(body.amount.value, body.amount.currency).is_err()
        || body.account_number.is_empty()
        || body.bank_code.is_empty()
    {
        return Ok(Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "amount or bank account invalid",
        )));
    }
    let (status, reason) = if body.account_number.starts_with("FAIL") {
        ("failed", Some("the bank refused the transfer to this account".to_owned()))
    } else {
        ("succeeded", None)
    };
    let answer_body = RecipientPayoutAnswer { id: new_id("grp"), status: status.into(), reason };
    let mut batch = WriteBatch::new();
    let request_id = req.idempotency_key().unwrap_or_default();
    batch.put_raw(
        Tree::Index,
        recipient_payout_key(&account.merchant_id, request_id),
        serde_json::to_vec(&answer_body).expect("wire types always serialise"),
    );
    let event = GatewayEventWire::RecipientPayoutUpdated {
        id: answer_body.id.clone(),
        request_id: request_id.to_owned(),
        status: status.into(),
        amount: body.amount,
    };
    answer(StatusCode::CREATED, &answer_body, batch, Some(callback(account, event)))
}

fn refund(state: &State, account: &GatewayAccountRec, req: &Request, gateway_order_id: &str) -> Decision {
    let body: RefundBody = or_reply!(req.json(), Ok(Err));
    let mut order = or_reply!(load_order(state, account, gateway_order_id), Ok(Err));
    if order.status != OrderStatusWire::Paid {
        return Ok(Err(error(StatusCode::CONFLICT, "order_not_paid", "only a paid order can be refunded")));
    }
    if body.amount != order.amount {
        return Ok(Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_amount",
            "a refund is of the whole total",
        )));
    }
    let refund_id = new_id("grf");
    let request_id = req.idempotency_key().unwrap_or_default().to_owned();
    let event = GatewayEventWire::RefundCompleted {
        id: refund_id.clone(),
        gateway_order_id: order.id.clone(),
        request_id,
        amount: order.amount,
    };
    let pending = callback(account, event);
    order.status = OrderStatusWire::Refunded;
    order.refund_id = Some(refund_id.clone());
    order.last_callback = Some(pending.body.clone());
    let mut batch = WriteBatch::new();
    batch.put(Sandbox::Order { order: order.id.to_string() }.text(), &order)?;
    let answer_body = RefundAnswer { id: refund_id, order_id: order.id.clone(), amount: order.amount };
    answer(StatusCode::CREATED, &answer_body, batch, Some(pending))
}

fn deposit_address(state: &State, account: &GatewayAccountRec, req: &Request) -> Response {
    let currency = req.query.get("currency").and_then(|c| Currency::parse(c).ok());
    let network = req.query.get("network").filter(|n| !n.is_empty() && n.len() <= 32);
    let (Some(currency), Some(network)) = (currency, network) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "currency and network are required",
        );
    };
    let address = state.card_key.deposit_address(&account.merchant_id, currency, network);
    json(StatusCode::OK, &DepositAddressAnswer { address, network: network.clone(), currency })
}

// ---------------------------------------------------------------- checkout ----

fn checkout_page(state: &State, id: &str) -> Response {
    match state.store.get::<OrderRec>(Sandbox::Order { order: id.to_string() }.text()) {
        Ok(Some(order)) => warp::reply::Reply::into_response(warp::reply::html(checkout::checkout_page(
            &order,
            &checkout_url(state, id),
        ))),
        Ok(None) => error(StatusCode::NOT_FOUND, "order_not_found", "no such order"),
        Err(e) => internal(e),
    }
}

/// `POST {checkout_url}/pay|fail|expire`: settles a pending order and calls
/// back before answering (HTML when a form posted, JSON otherwise). Repeating
/// the same settlement answers the order as it is, without a second callback.
async fn settle(state: &State, id: &str, action: &str, req: &Request) -> Response {
    let target = match action {
        "pay" => OrderStatusWire::Paid,
        "fail" => OrderStatusWire::Failed,
        "expire" => OrderStatusWire::Expired,
        _ => return error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    };
    let from_form =
        req.header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let (order, pending) = {
        let _guard = state.write_lock.lock().await;
        let loaded: Result<_, StoreError> = (|| {
            let Some(order) = state.store.get::<OrderRec>(Sandbox::Order { order: id.to_string() }.text())?
            else {
                return Ok(None);
            };
            let account = state.store.get::<GatewayAccountRec>(
                Sandbox::Account { merchant: order.merchant_id.to_string() }.text(),
            )?;
            Ok(account.map(|a| (order, a)))
        })();
        let (mut order, account) = match loaded {
            Ok(Some(found)) => found,
            Ok(None) => return error(StatusCode::NOT_FOUND, "order_not_found", "no such order"),
            Err(e) => return internal(e),
        };
        // A payment made with `capture` false is authorized by Pay, captured later.
        let target = match super::payments::checkout_target(state, &order.id, target) {
            Ok(target) => target,
            Err(e) => return internal(e),
        };
        if order.status == target {
            (order, None)
        } else if order.status != OrderStatusWire::Pending {
            let reason = format!("the order is {}", checkout::status_word(order.status));
            return error(StatusCode::CONFLICT, "order_not_pending", &reason);
        } else {
            let pending = move_order(&account, &mut order, target);
            let mut batch = WriteBatch::new();
            if let Err(e) = batch.put(Sandbox::Order { order: id.to_string() }.text(), &order) {
                return internal(e);
            }
            if let Err(e) = state.store.commit_durable(batch).await {
                return internal(e);
            }
            (order, Some(pending))
        }
    };
    if let Some(pending) = pending {
        send(state, pending).await;
    }
    if from_form {
        warp::reply::Reply::into_response(warp::reply::html(checkout::result_page(&order)))
    } else {
        json(StatusCode::OK, &order_answer(state, &order))
    }
}

// ----------------------------------------------------------------- control ----

async fn register(state: &State, req: &Request) -> Response {
    let body: RegisterAccountBody = or_reply!(req.json());
    if body.merchant_id.is_empty()
        || body.api_key.expose().is_empty()
        || !body.callback_url.starts_with("http")
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "merchant_id, api_key and an http(s) callback_url are required",
        );
    }
    let record = GatewayAccountRec {
        merchant_id: body.merchant_id.clone(),
        api_key: state.seal(body.api_key.expose(), &GatewayAccountRec::api_key_context(&body.merchant_id)),
        callback_url: body.callback_url,
    };
    let _guard = state.write_lock.lock().await;
    let mut batch = WriteBatch::new();
    if let Err(e) = batch.put(Sandbox::Account { merchant: record.merchant_id.to_string() }.text(), &record) {
        return internal(e);
    }
    match state.store.commit_durable(batch).await {
        Ok(()) => json(StatusCode::OK, &Acknowledged { ok: true }),
        Err(e) => internal(e),
    }
}

/// Delivers the order's last callback again, same `event_id`, freshly signed.
async fn resend(state: &State, id: &str) -> Response {
    let found: Result<_, StoreError> = (|| {
        let Some(order) = state.store.get::<OrderRec>(Sandbox::Order { order: id.to_string() }.text())?
        else {
            return Ok(None);
        };
        let account = state
            .store
            .get::<GatewayAccountRec>(Sandbox::Account { merchant: order.merchant_id.to_string() }.text())?;
        Ok(account.map(|a| (order, a)))
    })();
    let (order, account) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return error(StatusCode::NOT_FOUND, "order_not_found", "no such order"),
        Err(e) => return internal(e),
    };
    let Some(body) = order.last_callback else {
        return error(StatusCode::CONFLICT, "no_callback", "nothing was called back for this order yet");
    };
    let event_id = match serde_json::from_str::<GatewayCallbackWire>(&body) {
        Ok(wire) => wire.event_id,
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "stored callback unreadable"),
    };
    send(state, Pending { account, body, event_id: event_id.clone() }).await;
    json(StatusCode::OK, &ResentAnswer { event_id })
}

/// Reports a deposit to the account's address for (currency, network), by callback.
async fn deposit(state: &State, req: &Request) -> Response {
    let body: DepositBody = or_reply!(req.json());
    if Money::request_amount(body.amount.value, body.amount.currency).is_err() || body.network.is_empty() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", "amount or network invalid");
    }
    let (record, pending) = {
        let _guard = state.write_lock.lock().await;
        let account = match state
            .store
            .get::<GatewayAccountRec>(Sandbox::Account { merchant: body.merchant_id.to_string() }.text())
        {
            Ok(Some(account)) => account,
            Ok(None) => return error(StatusCode::NOT_FOUND, "account_not_found", "no such gateway account"),
            Err(e) => return internal(e),
        };
        let now = Timestamp::now_real();
        let record = DepositRec {
            id: new_id("gdp"),
            merchant_id: account.merchant_id.clone(),
            address: state.card_key.deposit_address(
                &account.merchant_id,
                body.amount.currency,
                &body.network,
            ),
            network: body.network.clone(),
            amount: body.amount,
            at_ms: now.unix_ms(),
        };
        let event = GatewayEventWire::DepositCredited {
            id: record.id.clone(),
            address: record.address.clone(),
            network: record.network.clone(),
            amount: record.amount,
            at: now,
        };
        let mut batch = WriteBatch::new();
        if let Err(e) = batch.put(Sandbox::Deposit { deposit: record.id.to_string() }.text(), &record) {
            return internal(e);
        }
        if let Err(e) = state.store.commit_durable(batch).await {
            return internal(e);
        }
        (record, callback(&account, event))
    };
    send(state, pending).await;
    let answer = DepositReported {
        id: record.id,
        address: record.address,
        network: record.network,
        amount: record.amount,
    };
    json(StatusCode::OK, &answer)
}
