//! Marketplace payments (MARKETPLACE.md §6): create (rules 1–5 of the
//! validation table here, 6–10 in `flows::marketplace::payments`, the first
//! failure answers and nothing is created), list (`?status=`,
//! `?merchant_reference=`), get, capture, cancel, cancel-or-refund, and the
//! sandbox's buyer helpers.

use std::sync::Arc;

use futures::future::BoxFuture;
use http::Method;
use pelago_actors::payment::{Liability, LineType, PaymentAction, PaymentRecord, PaymentStatus};
use pelago_storage::Money;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    errors::ApiError,
    pagination,
    router::{ApiReply, Ctx, HandlerResult, Route},
    wire::{MoneyIn, history, money, parse_amount},
};
use crate::{
    flows::marketplace::{
        payments::{self, Answer, LineInput, PaymentInput},
        refunds,
    },
    http::state::App,
};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/v1/payments", create).creates::<PaymentIn>(),
        Route::new(Method::GET, "/v1/payments", list),
        Route::new(Method::GET, "/v1/payments/{id}", get),
        Route::new(Method::POST, "/v1/payments/{id}/capture", capture).also_answers(&[202]),
        Route::new(Method::POST, "/v1/payments/{id}/cancel", cancel).also_answers(&[202]),
        Route::new(Method::POST, "/v1/payments/{id}/cancel-or-refund", cancel_or_refund)
            .also_answers(&[201, 202]),
        Route::new(Method::POST, "/v1/test_helpers/payments/{id}/pay", buyer_pays),
        Route::new(Method::POST, "/v1/test_helpers/payments/{id}/fail", buyer_fails),
        Route::new(Method::POST, "/v1/test_helpers/payments/{id}/expire", checkout_expires),
        Route::new(Method::POST, "/v1/test_helpers/payments/{id}/resend-callback", resend_callback),
    ]
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LiabilityIn {
    /// `MERCHANT`, `RECIPIENT` or `SHARED` (only echoed).
    processing_fee: Option<String>,
    chargebacks: Option<bool>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LineIn {
    recipient_id: Option<String>,
    provider_recipient_id: Option<String>,
    /// `PURCHASE`, `PAYMENTFEE`, `VAT`, `COMMISSION` or `MARKETPLACE`.
    #[serde(rename = "type")]
    kind: String,
    /// 3..255; default: the payment's.
    merchant_reference: Option<String>,
    amount: MoneyIn,
    liability: Option<LiabilityIn>,
}

/// A split payment: `split_marketplace` lines (1..20, at least one
/// PURCHASE or MARKETPLACE) that add up to `amount`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PaymentIn {
    amount: MoneyIn,
    /// 3..255, no control characters or `|`.
    merchant_reference: String,
    /// ≤ 255.
    description: Option<String>,
    /// true (default): Pay captures; false: Pay authorizes, captured by `…/capture`.
    capture: Option<bool>,
    split_marketplace: Vec<LineIn>,
}

/// `min..=max` characters, no control characters or `|`.
fn reference(value: &str, param: &str, min: usize, max: usize) -> Result<String, ApiError> {
    let n = value.chars().count();
    if n < min || n > max || value.chars().any(|c| c.is_control() || c == '|') {
        return Err(ApiError::invalid(
            param,
            format!("{param} must be {min} to {max} characters, without control characters or |"),
        ));
    }
    Ok(value.to_owned())
}

fn line_param(i: usize, field: &str) -> String {
    format!("split_marketplace[{i}].{field}")
}

/// Rules 1–5 of §6's table, in order; line i before line i+1 within a rule.
fn validate(req: PaymentIn) -> Result<PaymentInput, ApiError> {
    // 1: body shape (serde named the path already), amount, merchant_reference.
    let amount = parse_amount(&req.amount, "amount")?;
    let merchant_reference = reference(&req.merchant_reference, "merchant_reference", 3, 255)?;
    let description = req.description.as_deref().map(description).transpose()?;
    let kinds = line_types(&req.split_marketplace)?;
    check_parties(&req.split_marketplace, &kinds)?;
    let amounts = line_amounts(&req.split_marketplace, amount)?;
    let references = line_references(&req.split_marketplace)?;
    let lines = req
        .split_marketplace
        .into_iter()
        .zip(kinds)
        .zip(amounts.into_iter().zip(references))
        .map(|((line, kind), (amount, merchant_reference))| LineInput {
            kind,
            recipient_id: line.recipient_id,
            provider_recipient_id: line.provider_recipient_id,
            merchant_reference,
            amount,
            liability: line
                .liability
                .map(|l| Liability { processing_fee: l.processing_fee, chargebacks: l.chargebacks }),
        })
        .collect();
    Ok(PaymentInput { amount, merchant_reference, description, capture: req.capture.unwrap_or(true), lines })
}

fn description(d: &str) -> Result<String, ApiError> {
    reference(d, "description", 0, 255).map_err(|_| {
        ApiError::invalid(
            "description",
            "description must be at most 255 characters, without control characters",
        )
    })
}

/// Rule 1, per line: the type, the processing fee's liability.
fn line_types(lines: &[LineIn]) -> Result<Vec<LineType>, ApiError> {
    let mut kinds = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        kinds.push(LineType::parse(&line.kind).ok_or_else(|| {
            ApiError::invalid(
                line_param(i, "type"),
                "type must be PURCHASE, PAYMENTFEE, VAT, COMMISSION or MARKETPLACE",
            )
        })?);
        if let Some(fee) = line.liability.as_ref().and_then(|l| l.processing_fee.as_deref())
            && !matches!(fee, "MERCHANT" | "RECIPIENT" | "SHARED")
        {
            return Err(ApiError::invalid(
                line_param(i, "liability.processing_fee"),
                "processing_fee must be MERCHANT, RECIPIENT or SHARED",
            ));
        }
    }
    Ok(kinds)
}

/// Rules 2 and 3: 1..20 lines, at least one sale; one recipient id at most,
/// and a sale line needs one.
fn check_parties(lines: &[LineIn], kinds: &[LineType]) -> Result<(), ApiError> {
    if !(1..=20).contains(&kinds.len()) || !kinds.iter().any(|k| k.is_sale()) {
        return Err(ApiError::invalid(
            "split_marketplace",
            "split_marketplace takes 1 to 20 lines, at least one PURCHASE or MARKETPLACE",
        ));
    }
    for (i, (line, kind)) in lines.iter().zip(kinds).enumerate() {
        let (by_id, by_provider) = (line.recipient_id.is_some(), line.provider_recipient_id.is_some());
        if (by_id && by_provider) || (kind.is_sale() && !by_id && !by_provider) {
            return Err(ApiError::invalid(
                line_param(i, "recipient_id"),
                "give recipient_id or provider_recipient_id (not both); PURCHASE and MARKETPLACE lines need one",
            ));
        }
    }
    Ok(())
}

/// Rule 4: line amounts, in the payment's currency.
fn line_amounts(lines: &[LineIn], payment: Money) -> Result<Vec<Money>, ApiError> {
    let mut amounts = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let a = parse_amount(&line.amount, &line_param(i, "amount"))?;
        if a.currency != payment.currency {
            return Err(ApiError::invalid(
                line_param(i, "amount.currency"),
                "a line's currency must be the payment's",
            ));
        }
        amounts.push(a);
    }
    Ok(amounts)
}

/// Rule 5: line merchant references.
fn line_references(lines: &[LineIn]) -> Result<Vec<Option<String>>, ApiError> {
    let param = |i| line_param(i, "merchant_reference");
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            line.merchant_reference.as_deref().map(|r| reference(r, &param(i), 3, 255)).transpose()
        })
        .collect()
}

fn minor(value: i64, currency_of: Money) -> Value {
    money(Money::new(value, currency_of.currency))
}

pub fn payment_json(p: &PaymentRecord) -> Value {
    let lines: Vec<Value> = p
        .lines
        .iter()
        .map(|l| {
            json!({
                "recipient_id": l.recipient_id,
                "provider_recipient_id": l.provider_recipient_id,
                "type": l.kind.as_str(),
                "merchant_reference": l.merchant_reference,
                "amount": money(l.amount),
                "liability": l.liability.as_ref().map(|x| json!({
                    "processing_fee": x.processing_fee, "chargebacks": x.chargebacks,
                })),
                "refunded": minor(l.refunded, l.amount),
                "split_amount": l.split_amount.map(|v| minor(v, l.amount)),
            })
        })
        .collect();
    json!({
        "id": p.id,
        "object": "payment",
        "amount": money(p.amount),
        "merchant_reference": p.merchant_reference,
        "description": p.description,
        "capture": p.capture,
        "split_marketplace": lines,
        "status": p.status.as_str(),
        "failure_reason": p.failure_reason,
        "checkout_url": p.checkout_url,
        "gateway_order_id": p.gateway_order_id,
        "pending_action": p.pending_action.as_ref().map(|a| json!({
            "type": a.kind.as_str(), "since": a.since.to_rfc3339(),
        })),
        "captured_at": p.captured_at.map(|t| t.to_rfc3339()),
        "settled": p.settled,
        "settled_at": p.settled_at.map(|t| t.to_rfc3339()),
        "refunded_amount": minor(p.refunded_amount, p.amount),
        "split": {
            "status": p.split.status.as_str(),
            "batch_id": p.split.batch_id,
            "executed_at": p.split.executed_at.map(|t| t.to_rfc3339()),
        },
        "created_at": p.created_at.to_rfc3339(),
        "version": p.version,
        "status_history": history(&p.status_history),
    })
}

/// POST /v1/payments — 201 PENDING with `checkout_url` (DECLINED if the
/// gateway refused the checkout), 202 while the gateway's answer is unknown.
async fn create(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant_id = ctx.merchant_id()?.clone();
    let input = validate(ctx.json::<PaymentIn>()?)?;
    let answer = payments::create(&app.core, &merchant_id, input, ctx.binding()).await?;
    Ok(ApiReply::created(answer.unknown, &payment_json(&answer.payment)))
}

/// GET /v1/payments — newest first; `?status=`, `?merchant_reference=`.
async fn list(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant = ctx.merchant_id()?.clone();
    let page = pagination::parse(&ctx.query, &["status", "merchant_reference"])?;
    let status = match page.filters.get("status") {
        Some(raw) => Some(PaymentStatus::parse(raw).ok_or_else(|| {
            ApiError::invalid("status", "status must be one of the payment statuses (upper case)")
        })?),
        None => None,
    };
    let reference = page.filters.get("merchant_reference").cloned();
    let prefix = pelago_actors::keys::scan_prefix("", &[&merchant]);
    pagination::reply::<PaymentRecord>(&app.store, &prefix, &page, |p| {
        let keep = status.is_none_or(|s| p.status == s)
            && reference.as_ref().is_none_or(|r| &p.merchant_reference == r);
        keep.then(|| payment_json(p))
    })
}

/// GET /v1/payments/{id}
async fn get(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let p = payments::load_owned(&app.core, ctx.merchant_id()?, ctx.param(0))?;
    Ok(ApiReply::json(200, &payment_json(&p)))
}

fn acted(answer: Answer) -> ApiReply {
    ApiReply::json(if answer.unknown { 202 } else { 200 }, &payment_json(&answer.payment))
}

/// POST /v1/payments/{id}/capture — AUTHORIZED → SUCCEEDED (whole); refused
/// → 502, unchanged; unknown → 202 with `pending_action`.
async fn capture(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let answer = payments::act(&app.core, ctx.merchant_id()?, ctx.param(0), PaymentAction::Capture).await?;
    Ok(acted(answer))
}

/// POST /v1/payments/{id}/cancel — PENDING or AUTHORIZED → CANCELED.
async fn cancel(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let answer = payments::act(&app.core, ctx.merchant_id()?, ctx.param(0), PaymentAction::Cancel).await?;
    Ok(acted(answer))
}

/// POST /v1/payments/{id}/cancel-or-refund — PENDING/AUTHORIZED: canceled
/// (200, 202 while unknown); SUCCEEDED/PARTIALLY_REFUNDED: the rest refunded
/// (channel `amount − refunded_amount`, each line its unreversed rest; 201,
/// 202 while the gateway's answer is unknown); else 409.
async fn cancel_or_refund(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant = ctx.merchant_id()?.clone();
    let p = payments::load_owned(&app.core, &merchant, ctx.param(0))?;
    match p.status {
        PaymentStatus::Pending | PaymentStatus::Authorized => {
            let answer = payments::act(&app.core, &merchant, ctx.param(0), PaymentAction::Cancel).await?;
            let status = if answer.unknown { 202 } else { 200 };
            let body =
                json!({"action": "canceled", "payment": payment_json(&answer.payment), "refund": null});
            Ok(ApiReply::json(status, &body))
        }
        PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded => {
            let answer = refunds::create(&app.core, &merchant, ctx.param(0), None, ctx.binding()).await?;
            let body = json!({
                "action": "refunded",
                "payment": payment_json(&answer.payment),
                "refund": super::refunds::refund_json(&answer.refund),
            });
            Ok(ApiReply::created(answer.processing, &body))
        }
        other => Err(ApiError::invalid_state(format!(
            "the payment is {}: it can be neither canceled nor refunded",
            other.as_str()
        ))),
    }
}

/// What the buyer does on the sandbox checkout page.
#[derive(Clone, Copy)]
enum Buyer {
    Pay,
    Fail,
    Expire,
    ResendCallback,
}

/// The sandbox gateway acts as the buyer (or repeats its last callback), and
/// calls back before answering: the payment is answered as Pelago processed it.
async fn as_buyer(app: Arc<App>, ctx: Ctx, buyer: Buyer) -> HandlerResult {
    let control = app.upstreams.sandbox.as_ref().ok_or_else(|| ApiError::not_found("route"))?;
    let merchant = ctx.merchant_id()?.clone();
    let p = payments::load_owned(&app.core, &merchant, ctx.param(0))?;
    let gid = p
        .gateway_order_id
        .clone()
        .ok_or_else(|| ApiError::invalid_state("the payment has no checkout yet"))?;
    let result = match buyer {
        Buyer::Pay => control.pay_order(&gid).await.map(|_| None),
        Buyer::Fail => control.fail_order(&gid).await.map(|_| None),
        Buyer::Expire => control.expire_order(&gid).await.map(|_| None),
        Buyer::ResendCallback => control.resend_order_callback(&gid).await.map(Some),
    };
    let resent = result.map_err(|e| ApiError::invalid_state(format!("the gateway refused: {e}")))?;
    let p = payments::load_owned(&app.core, &merchant, ctx.param(0))?;
    Ok(ApiReply::json(
        200,
        &match resent {
            Some(event_id) => json!({"payment": payment_json(&p), "resent_event_id": event_id}),
            None => payment_json(&p),
        },
    ))
}

/// POST /v1/test_helpers/payments/{id}/pay
fn buyer_pays(app: Arc<App>, ctx: Ctx) -> BoxFuture<'static, HandlerResult> {
    Box::pin(as_buyer(app, ctx, Buyer::Pay))
}

/// POST /v1/test_helpers/payments/{id}/fail
fn buyer_fails(app: Arc<App>, ctx: Ctx) -> BoxFuture<'static, HandlerResult> {
    Box::pin(as_buyer(app, ctx, Buyer::Fail))
}

/// POST /v1/test_helpers/payments/{id}/expire
fn checkout_expires(app: Arc<App>, ctx: Ctx) -> BoxFuture<'static, HandlerResult> {
    Box::pin(as_buyer(app, ctx, Buyer::Expire))
}

/// POST /v1/test_helpers/payments/{id}/resend-callback — a duplicate of the last callback.
fn resend_callback(app: Arc<App>, ctx: Ctx) -> BoxFuture<'static, HandlerResult> {
    Box::pin(as_buyer(app, ctx, Buyer::ResendCallback))
}
