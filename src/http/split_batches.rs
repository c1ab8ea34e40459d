//! Batch splits (MARKETPLACE.md §7): create (201, 202 while an item is
//! processing), list, get.

use std::sync::Arc;

use http::Method;
use pelago_actors::payment::split::SplitBatchRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    errors::ApiError,
    pagination,
    router::{ApiReply, Ctx, HandlerResult, Route},
    wire::money,
};
use crate::{flows::marketplace::splits, http::state::App};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/v1/split-batches", create).creates::<SplitBatchIn>(),
        Route::new(Method::GET, "/v1/split-batches", list),
        Route::new(Method::GET, "/v1/split-batches/{id}", get),
    ]
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ItemIn {
    payment_id: String,
}

/// 1..100 settled payments to split, each once.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SplitBatchIn {
    items: Vec<ItemIn>,
    /// 1..255, no control characters.
    reference: Option<String>,
}

pub fn batch_json(b: &SplitBatchRecord) -> Value {
    let items: Vec<Value> = b
        .items
        .iter()
        .map(|i| {
            json!({
                "payment_id": i.payment_id,
                "status": i.status.as_str(),
                "failure_reason": i.failure_reason,
                "amounts": i.amounts.iter().map(|a| json!({
                    "line": a.line, "recipient_id": a.recipient_id, "amount": money(a.amount),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "id": b.id,
        "object": "split_batch",
        "reference": b.reference,
        "status": b.status.as_str(),
        "items": items,
        "created_at": b.created_at.to_rfc3339(),
        "completed_at": b.completed_at.map(|t| t.to_rfc3339()),
        "version": b.version,
    })
}

/// POST /v1/split-batches
async fn create(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant = ctx.merchant_id()?.clone();
    let req: SplitBatchIn = ctx.json()?;
    if !(1..=100).contains(&req.items.len()) {
        return Err(ApiError::invalid("items", "items takes 1 to 100 payments"));
    }
    if let Some(r) = &req.reference {
        let n = r.chars().count();
        if n == 0 || n > 255 || r.chars().any(char::is_control) {
            return Err(ApiError::invalid("reference", "reference must be 1 to 255 printable characters"));
        }
    }
    let ids: Vec<String> = req.items.into_iter().map(|i| i.payment_id).collect();
    let answer = splits::create(&app.core, &merchant, &ids, req.reference, ctx.binding()).await?;
    Ok(ApiReply::created(answer.processing, &batch_json(&answer.batch)))
}

/// GET /v1/split-batches — newest first.
async fn list(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant = ctx.merchant_id()?.clone();
    let page = pagination::parse(&ctx.query, &[])?;
    let prefix = pelago_actors::keys::scan_prefix("", &[&merchant]);
    pagination::reply::<SplitBatchRecord>(&app.store, &prefix, &page, |b| Some(batch_json(b)))
}

/// GET /v1/split-batches/{id}
async fn get(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let b = splits::load_owned(&app.core, ctx.merchant_id()?, ctx.param(0))?;
    Ok(ApiReply::json(200, &batch_json(&b)))
}
