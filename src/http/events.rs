//! Events (API.md §4 Events): what happened to the merchant's objects, newest
//! first. Written by the actors into the outbox in the same commit as the
//! change; delivery by webhook reads the same records.

use std::sync::Arc;

use http::Method;
use pelago_actors::outbox::{EventRecord, event_key};
use pelago_storage::EventId;

use super::{
    errors::ApiError,
    pagination,
    router::{ApiReply, Ctx, HandlerResult, Route},
};
use crate::http::state::App;

pub fn routes() -> Vec<Route> {
    vec![Route::new(Method::GET, "/v1/events", list), Route::new(Method::GET, "/v1/events/{id}", get)]
}

/// GET /v1/events
async fn list(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant = ctx.merchant_id()?;
    let page = pagination::parse(&ctx.query, &["type"])?;
    let prefix = format!("{merchant}/");
    let type_filter = page.filters.get("type").cloned();
    pagination::reply::<EventRecord>(&app.store, &prefix, &page, |e| {
        type_filter.as_ref().is_none_or(|t| &e.event_type == t).then(|| super::orders::event_json(&app, e))
    })
}

/// GET /v1/events/{id}
async fn get(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant = ctx.merchant_id()?;
    let id = EventId::parse(ctx.param(0)).map_err(|_| ApiError::not_found("event"))?;
    let event = app
        .store
        .get::<EventRecord>(event_key(merchant, &id))?
        .ok_or_else(|| ApiError::not_found("event"))?;
    Ok(ApiReply::json(200, &super::orders::event_json(&app, &event)))
}
