//! Webhook deliveries of an event (API.md §4 Events): the recorded attempts,
//! and redelivery. The dispatcher itself is `http::webhooks`.

use std::sync::Arc;

use http::Method;
use pelago_actors::outbox::{EventRecord, event_key};
use pelago_storage::EventId;
use serde_json::json;

use super::{
    errors::ApiError,
    pagination,
    router::{ApiReply, Ctx, HandlerResult, Route},
};
use crate::{
    http::state::App,
    http::webhooks::{self, DeliveryAttempt, RedeliverError},
};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/v1/events/{id}/deliveries", list),
        Route::new(Method::POST, "/v1/events/{id}/redeliver", redeliver).answers(202),
    ]
}

/// The caller's own event, or 404 (also for another merchant's event).
fn own_event(app: &App, ctx: &Ctx) -> Result<EventRecord, ApiError> {
    let merchant = ctx.merchant_id()?;
    let id = EventId::parse(ctx.param(0)).map_err(|_| ApiError::not_found("event"))?;
    app.store.get::<EventRecord>(event_key(merchant, &id))?.ok_or_else(|| ApiError::not_found("event"))
}

/// GET /v1/events/{id}/deliveries — attempts, newest first;
/// `starting_after` is an attempt number.
async fn list(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let event = own_event(&app, &ctx)?;
    let page = pagination::parse(&ctx.query, &[])?;
    let after = match &page.starting_after {
        Some(raw) => {
            let n: u32 = raw.parse().map_err(|_| {
                ApiError::invalid("starting_after", "starting_after must be an attempt number")
            })?;
            Some(webhooks::attempt_key(&event.id, n))
        }
        None => None,
    };
    let prefix = format!("{}/", event.id);
    let found = app.store.scan::<DeliveryAttempt>(
        prefix.as_bytes(),
        after.as_deref().map(str::as_bytes),
        true,
        page.limit + 1,
    )?;
    let items = found
        .iter()
        .map(|(_, a)| {
            json!({
                "attempt": a.attempt,
                "status_code": a.status_code,
                "error": a.error,
                "at": a.at.to_rfc3339(),
            })
        })
        .collect();
    Ok(ApiReply::json(200, &pagination::body(items, page.limit)))
}

/// POST /v1/events/{id}/redeliver — schedules a new delivery run now.
async fn redeliver(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let event = own_event(&app, &ctx)?;
    match webhooks::redeliver(&app, &event).await {
        Ok(()) => {
            Ok(ApiReply::json(202, &json!({"id": event.id, "object": "event", "redelivery": "scheduled"})))
        }
        Err(RedeliverError::TooManyAttempts) => {
            Err(ApiError::invalid_state("this event already had the maximum number of delivery attempts"))
        }
        Err(RedeliverError::Store(e)) => Err(e.into()),
    }
}
