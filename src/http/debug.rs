//! Operators' debug API (API.md §7): actor summary, one actor's live state and
//! counters (secrets redacted), and the crash helper (sandbox only).

use std::sync::{Arc, atomic::Ordering};

use http::Method;
use pelago_actors::{
    card::{CardRecord, CrashNext, Inspect},
    merchant::{InspectMerchant, MerchantRecord},
    runtime::InspectReply,
};
use pelago_storage::{CardId, MerchantId};
use serde_json::{Value, json};

use super::{
    errors::ApiError,
    router::{ApiReply, Ctx, HandlerResult, Route},
};
use crate::http::state::App;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/debug/v1/actors", summary),
        Route::new(Method::GET, "/debug/v1/actors/cards/{id}", card),
        Route::new(Method::GET, "/debug/v1/actors/merchants/{id}", merchant),
        Route::new(Method::GET, "/debug/v1/actors/recipients/{id}", recipient),
        Route::new(Method::POST, "/debug/v1/actors/cards/{id}/crash", crash).answers(202),
    ]
}

/// GET /debug/v1/actors
async fn summary(app: Arc<App>, _ctx: Ctx) -> HandlerResult {
    let a = &app.actors;
    Ok(ApiReply::json(
        200,
        &json!({
            "merchants": {"live": a.merchants.live()},
            "cards": {"live": a.cards.live()},
            "recipients": {"live": a.recipients.live()},
            "restarts_total": a.counters.restarts_total.load(Ordering::Relaxed),
            "passivated_total": a.counters.passivated_total.load(Ordering::Relaxed),
            "max_live_actors": a.cards.config().max_live_actors,
        }),
    ))
}

fn view<S>(id: &str, was_live: bool, reply: InspectReply<S>, state: Value) -> Value {
    json!({
        "id": id,
        "live": true,
        "was_live": was_live,
        "state": state,
        "store_version": reply.store_version,
        "activated_at": reply.activated_at.to_rfc3339(),
        "last_message_at": reply.last_message_at.to_rfc3339(),
        "messages_handled": reply.messages_handled,
        "restarts": reply.restarts,
        "mailbox_len": reply.mailbox_len,
    })
}

/// GET /debug/v1/actors/cards/{id} — activates the actor if it is not live.
async fn card(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let id = CardId::parse(ctx.param(0)).map_err(|_| ApiError::not_found("card"))?;
    if !app.store.contains(pelago_storage::Tree::Cards, id.as_bytes())? {
        return Err(ApiError::not_found("card"));
    }
    let was_live = app.actors.cards.stats_of(&id).is_some();
    let reply: InspectReply<CardRecord> = app.actors.ask_card(&id, Inspect).await??;
    let state = serde_json::to_value(&reply.state).unwrap_or(Value::Null);
    Ok(ApiReply::json(200, &view(id.as_str(), was_live, reply, state)))
}

/// GET /debug/v1/actors/merchants/{id} — sealed secrets are shown as `[redacted]`.
async fn merchant(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let id = MerchantId::parse(ctx.param(0)).map_err(|_| ApiError::not_found("merchant"))?;
    if !app.store.contains(pelago_storage::Tree::Merchants, id.as_bytes())? {
        return Err(ApiError::not_found("merchant"));
    }
    let was_live = app.actors.merchants.stats_of(&id).is_some();
    let reply: InspectReply<MerchantRecord> = app.actors.ask_merchant(&id, InspectMerchant).await??;
    let state = reply.state.as_ref().map(redacted_merchant).unwrap_or(Value::Null);
    Ok(ApiReply::json(200, &view(id.as_str(), was_live, reply, state)))
}

/// GET /debug/v1/actors/recipients/{id} — the numbers as everywhere: `****` + last 4.
async fn recipient(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let id =
        pelago_storage::RecipientId::parse(ctx.param(0)).map_err(|_| ApiError::not_found("recipient"))?;
    if !app.store.contains(pelago_storage::Tree::Recipients, id.as_bytes())? {
        return Err(ApiError::not_found("recipient"));
    }
    let was_live = app.actors.recipients.stats_of(&id).is_some();
    let reply = app.actors.ask_recipient(&id, pelago_actors::recipient::actor::Inspect).await??;
    let state = reply.state.as_ref().map(super::recipients::recipient_json).unwrap_or(Value::Null);
    Ok(ApiReply::json(200, &view(id.as_str(), was_live, reply, state)))
}

fn redacted_merchant(m: &MerchantRecord) -> Value {
    json!({
        "id": m.id,
        "name": m.name,
        "status": m.status.as_str(),
        "funding_mode": m.funding_mode.as_str(),
        "webhook_url": m.webhook_url,
        "allowed_card_names": m.allowed_card_names,
        "gateway": m.gateway.as_ref().map(|g| json!({"merchant_id": g.merchant_id, "api_key": "[redacted]"})),
        "fees": m.fees.len(),
        "withdrawal_addresses": m.withdrawal_addresses.len(),
        "webhook_secrets": m.webhook_secrets.iter().map(|s| json!({
            "secret": "[redacted]",
            "created_at": s.created_at.to_rfc3339(),
            "retires_at": s.retires_at.map(|t| t.to_rfc3339()),
        })).collect::<Vec<_>>(),
        "version": m.version,
    })
}

/// POST /debug/v1/actors/cards/{id}/crash — sandbox only: the card actor
/// panics inside its next message and is restarted from the store.
async fn crash(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    if !app.sandbox() {
        return Err(ApiError::not_found("route"));
    }
    let id = CardId::parse(ctx.param(0)).map_err(|_| ApiError::not_found("card"))?;
    if !app.store.contains(pelago_storage::Tree::Cards, id.as_bytes())? {
        return Err(ApiError::not_found("card"));
    }
    app.actors.ask_card(&id, CrashNext).await?;
    Ok(ApiReply::json(202, &json!({"id": id, "crash": "armed for the next message"})))
}
