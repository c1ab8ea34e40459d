//! Refunds of marketplace payments (MARKETPLACE.md §7): create (201; 202 while
//! the gateway's answer is unknown), a payment's list, one by id. The body's
//! shape is read here; §7's checks run in their order in the merchant actor
//! (`pelago_actors::payment::refund::plan`), an unreadable amount answered at its turn.

use std::sync::Arc;

use http::Method;
use pelago_actors::payment::refund::{PortionAsk, RefundAsk, RefundRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    errors::ApiError,
    pagination,
    router::{ApiReply, Ctx, HandlerResult, Route},
    wire::{MoneyIn, history, money, parse_amount},
};
use crate::{
    flows::marketplace::{payments, refunds},
    http::state::App,
};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/v1/payments/{id}/refunds", create).creates::<RefundIn>(),
        Route::new(Method::GET, "/v1/payments/{id}/refunds", list),
        Route::new(Method::GET, "/v1/refunds/{id}", get),
    ]
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PortionIn {
    /// The payment line's index (0-based).
    line: i64,
    amount: MoneyIn,
}

/// A refund: `amount` to the buyer (the channel portion), `splits` taken back
/// from the lines' parties; before the split, the portions add up to `amount`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RefundIn {
    amount: Option<MoneyIn>,
    splits: Option<Vec<PortionIn>>,
    /// ≤ 255, no control characters.
    reason: Option<String>,
}

fn ask_of(req: RefundIn) -> Result<RefundAsk, ApiError> {
    if let Some(r) = &req.reason
        && (r.chars().count() > 255 || r.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "reason",
            "reason must be at most 255 characters, without control characters",
        ));
    }
    let amount = |m: &MoneyIn| parse_amount(m, "amount").map_err(ApiError::into_reject);
    Ok(RefundAsk {
        amount: req.amount.as_ref().map(amount),
        splits: req
            .splits
            .map(|s| s.iter().map(|p| PortionAsk { line: p.line, amount: amount(&p.amount) }).collect()),
        reason: req.reason,
    })
}

pub fn refund_json(r: &RefundRecord) -> Value {
    json!({
        "id": r.id,
        "object": "refund",
        "payment_id": r.payment_id,
        "amount": money(r.amount),
        "splits": r.splits.iter().map(|p| json!({
            "line": p.line, "recipient_id": p.recipient_id, "amount": money(p.amount),
        })).collect::<Vec<_>>(),
        "reason": r.reason,
        "status": r.status.as_str(),
        "failure_reason": r.failure_reason,
        "created_at": r.created_at.to_rfc3339(),
        "completed_at": r.completed_at.map(|t| t.to_rfc3339()),
        "version": r.version,
        "status_history": history(&r.status_history),
    })
}

/// POST /v1/payments/{id}/refunds
async fn create(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant = ctx.merchant_id()?.clone();
    let ask = ask_of(ctx.json::<RefundIn>()?)?;
    let answer = refunds::create(&app.core, &merchant, ctx.param(0), Some(ask), ctx.binding()).await?;
    Ok(ApiReply::created(answer.processing, &refund_json(&answer.refund)))
}

/// GET /v1/payments/{id}/refunds — oldest first.
async fn list(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant = ctx.merchant_id()?.clone();
    let payment = payments::load_owned(&app.core, &merchant, ctx.param(0))?;
    let page = pagination::parse(&ctx.query, &[])?;
    let prefix = pelago_actors::keys::scan_prefix("", &[&merchant, &payment.id]);
    pagination::reply::<RefundRecord>(&app.store, &prefix, &page, |r| Some(refund_json(r)))
}

/// GET /v1/refunds/{id}
async fn get(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let r = refunds::load_owned(&app.core, ctx.merchant_id()?, ctx.param(0))?;
    Ok(ApiReply::json(200, &refund_json(&r)))
}
