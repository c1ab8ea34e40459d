//! Recipient withdrawals (MARKETPLACE.md §7): create (201 final, 202 while
//! the payout's outcome is unknown), list and get, under the recipient.

use std::sync::Arc;

use http::Method;
use pelago_actors::recipient::withdrawal::RecipientWithdrawalRecord;
use pelago_storage::RecipientWithdrawalId;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    errors::ApiError,
    pagination,
    router::{ApiReply, Ctx, HandlerResult, Route},
    wire::{self, MoneyIn, parse_amount},
};
use crate::{
    flows::marketplace::{recipients::load_owned, withdrawals},
    http::state::App,
};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/v1/recipients/{id}/withdrawals", create).creates::<WithdrawalIn>(),
        Route::new(Method::GET, "/v1/recipients/{id}/withdrawals", list),
        Route::new(Method::GET, "/v1/recipients/{id}/withdrawals/{withdrawal_id}", get),
    ]
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct WithdrawalIn {
    /// W: leaves the recipient's available balance.
    amount: MoneyIn,
    /// K: to the merchant, below W, within the signed commission agreement's cap.
    commission: Option<MoneyIn>,
    /// 1..255, no control characters or `|`.
    reference: Option<String>,
}

pub fn withdrawal_json(w: &RecipientWithdrawalRecord) -> Value {
    json!({
        "id": w.id,
        "object": "recipient_withdrawal",
        "recipient_id": w.recipient_id,
        "amount": wire::money(w.amount),
        "commission": wire::money(w.commission),
        "payout_amount": wire::money(w.payout_amount()),
        "reference": w.reference,
        "destination": {
            "type": "bank_account",
            "bank_code": w.destination.bank_code,
            "account_number": w.destination.account_number_masked,
        },
        "status": w.status.as_str(),
        "failure_reason": w.failure_reason,
        "created_at": w.created_at.to_rfc3339(),
        "completed_at": w.completed_at.map(|t| t.to_rfc3339()),
        "version": w.version,
        "status_history": w.status_history.iter()
            .map(|(s, at)| json!({"status": s.as_str(), "at": at.to_rfc3339()}))
            .collect::<Vec<_>>(),
    })
}

/// POST /v1/recipients/{id}/withdrawals
async fn create(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant_id = ctx.merchant_id()?.clone();
    let req: WithdrawalIn = ctx.json()?;
    let amount = parse_amount(&req.amount, "amount")?;
    let commission = req.commission.as_ref().map(|c| parse_amount(c, "commission")).transpose()?;
    let reference = match req.reference {
        Some(r) => Some(super::recipients::text(Some(r), "reference", 255, true)?),
        None => None,
    };
    let request = withdrawals::Request { amount, commission, reference };
    let answer = withdrawals::create(&app.core, &merchant_id, ctx.param(0), request, ctx.binding()).await?;
    Ok(ApiReply::created(answer.unknown, &withdrawal_json(&answer.withdrawal)))
}

/// GET /v1/recipients/{id}/withdrawals — newest first, paginated.
async fn list(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let page = pagination::parse(&ctx.query, &[])?;
    let recipient = load_owned(&app.core, ctx.merchant_id()?, ctx.param(0)).await?;
    let prefix = pelago_actors::keys::scan_prefix(crate::keys::RWDLIST, &[&recipient.id]);
    let found = pagination::indexed::<RecipientWithdrawalRecord>(&app.store, &prefix, &page)?;
    let data: Vec<Value> = found.iter().map(withdrawal_json).collect();
    Ok(ApiReply::json(200, &pagination::body(data, page.limit)))
}

/// GET /v1/recipients/{id}/withdrawals/{withdrawal_id}
async fn get(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let recipient = load_owned(&app.core, ctx.merchant_id()?, ctx.param(0)).await?;
    let not_found = || ApiError::not_found("withdrawal");
    let id = RecipientWithdrawalId::parse(ctx.param(1)).map_err(|_| not_found())?;
    let w = app
        .store
        .get::<RecipientWithdrawalRecord>(id.as_bytes())?
        .filter(|w| w.recipient_id == recipient.id)
        .ok_or_else(not_found)?;
    Ok(ApiReply::json(200, &withdrawal_json(&w)))
}
