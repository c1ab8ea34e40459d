//! Operator money routes (API.md §3): withdrawals and settlement runs.

use std::sync::Arc;

use http::Method;
use pelago_actors::{merchant::MerchantRecord, withdrawal::WithdrawalRecord};
use pelago_storage::{MerchantId, WithdrawalId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    errors::ApiError,
    pagination,
    router::{ApiReply, Ctx, HandlerResult, Route},
    wire::{self, MoneyIn, parse_amount},
};
use crate::{
    flows::{settlement::SettlementRun, withdrawals},
    http::state::App,
};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/admin/v1/merchants/{id}/withdrawals", create_withdrawal)
            .answers(201)
            .accepts::<WithdrawalIn>(),
        Route::new(Method::GET, "/admin/v1/merchants/{id}/withdrawals", list_withdrawals),
        Route::new(Method::GET, "/admin/v1/merchants/{id}/withdrawals/{withdrawal_id}", get_withdrawal),
        Route::new(Method::POST, "/admin/v1/settlement/runs", trigger_settlement)
            .answers(202)
            .accepts::<SettlementIn>(),
        Route::new(Method::GET, "/admin/v1/settlement/runs/{date}", get_settlement),
        Route::new(Method::POST, "/admin/v1/billing/runs", trigger_billing)
            .answers(202)
            .accepts::<BillingIn>(),
        Route::new(Method::GET, "/admin/v1/billing/runs/{period}", get_billing),
    ]
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct WithdrawalIn {
    amount: MoneyIn,
    address: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SettlementIn {
    /// `YYYY-MM-DD`: collections dated before it are settled.
    date: String,
}

fn merchant(app: &App, raw: &str) -> Result<MerchantRecord, ApiError> {
    let id = MerchantId::parse(raw).map_err(|_| ApiError::not_found("merchant"))?;
    app.store.get::<MerchantRecord>(id.as_bytes())?.ok_or_else(|| ApiError::not_found("merchant"))
}

/// POST /admin/v1/merchants/{id}/withdrawals
async fn create_withdrawal(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let m = merchant(&app, ctx.param(0))?;
    let req: WithdrawalIn = ctx.json()?;
    let amount = parse_amount(&req.amount, "amount")?;
    let w = withdrawals::create(&app, &m, amount, &req.address, ctx.binding()).await?;
    Ok(ApiReply::json(201, &wire::withdrawal(&w)))
}

/// GET /admin/v1/merchants/{id}/withdrawals — newest first.
async fn list_withdrawals(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let m = merchant(&app, ctx.param(0))?;
    let page = pagination::parse(&ctx.query, &[])?;
    let prefix = pelago_actors::keys::scan_prefix(crate::keys::MWDR, &[&m.id]);
    let withdrawals = pagination::indexed::<WithdrawalRecord>(&app.store, &prefix, &page)?;
    Ok(ApiReply::json(200, &pagination::body(withdrawals.iter().map(wire::withdrawal).collect(), page.limit)))
}

/// GET /admin/v1/merchants/{id}/withdrawals/{withdrawal_id}
async fn get_withdrawal(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let m = merchant(&app, ctx.param(0))?;
    let id = WithdrawalId::parse(ctx.param(1)).map_err(|_| ApiError::not_found("withdrawal"))?;
    let w = app
        .store
        .get::<WithdrawalRecord>(id.as_bytes())?
        .filter(|w| w.merchant_id == m.id)
        .ok_or_else(|| ApiError::not_found("withdrawal"))?;
    Ok(ApiReply::json(200, &wire::withdrawal(&w)))
}

fn settlement_json(app: &App, run: &SettlementRun) -> Result<Value, ApiError> {
    Ok(json!({
        "id": run.id,
        "object": "settlement_run",
        "date": run.date,
        "status": if run.completed { "completed" } else { "running" },
        "collections": run.collections,
        "amounts": run.amounts.iter().map(|a| wire::money(*a)).collect::<Vec<_>>(),
        // Marketplace payments marked `settled` by this run (MARKETPLACE.md §6), counted from its rows.
        "payments": crate::flows::settlement::payments_settled(app, &run.date)?,
        "started_at": run.started_at.to_rfc3339(),
        "completed_at": run.completed_at.map(|t| t.to_rfc3339()),
    }))
}

fn valid_date(raw: &str) -> Result<String, ApiError> {
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .filter(|_| raw.len() == 10)
        .map(|_| raw.to_owned())
        .ok_or_else(|| ApiError::invalid("date", "date must be YYYY-MM-DD"))
}

/// POST /admin/v1/settlement/runs — once per date (the same date again is the same run).
async fn trigger_settlement(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let req: SettlementIn = ctx.json()?;
    let date = valid_date(&req.date)?;
    let run = crate::flows::settlement::trigger(&app.core, &date).await?;
    Ok(ApiReply::json(202, &settlement_json(&app, &run)?))
}

/// GET /admin/v1/settlement/runs/{date}
async fn get_settlement(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let date = valid_date(ctx.param(0)).map_err(|_| ApiError::not_found("settlement run"))?;
    let run = app
        .store
        .get::<SettlementRun>(date.as_str())?
        .ok_or_else(|| ApiError::not_found("settlement run"))?;
    Ok(ApiReply::json(200, &settlement_json(&app, &run)?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BillingIn {
    /// `YYYY-MM`.
    period: String,
}

pub fn billing_json(run: &crate::flows::billing::BillingRun) -> Value {
    json!({
        "id": run.id,
        "object": "billing_run",
        "period": run.period,
        "status": if run.completed { "completed" } else { "running" },
        "cards_expected": run.cards_expected,
        "cards_total": run.cards_total,
        "charged": run.charged,
        "unpaid": run.unpaid,
        "skipped": run.skipped,
        "started_at": run.started_at.to_rfc3339(),
        "completed_at": run.completed_at.map(|t| t.to_rfc3339()),
    })
}

/// POST /admin/v1/billing/runs — a period is billed once, ever (the same period is the same run).
pub async fn trigger_billing(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let req: BillingIn = ctx.json()?;
    let run = crate::flows::billing::trigger(&app.core, &req.period, None).await?;
    Ok(ApiReply::json(202, &billing_json(&run)))
}

/// GET /admin/v1/billing/runs/{period}
pub async fn get_billing(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let period = ctx.param(0);
    if crate::flows::billing::period_start(period).is_none() {
        return Err(ApiError::not_found("billing run"));
    }
    let run = app
        .store
        .get::<crate::flows::billing::BillingRun>(period)?
        .ok_or_else(|| ApiError::not_found("billing run"))?;
    Ok(ApiReply::json(200, &billing_json(&run)))
}
