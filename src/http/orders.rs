//! Orders (API.md §4): business orders paid through the gateway's checkout,
//! and the sandbox helpers that act on them as the cardholder would.

use std::sync::Arc;

use futures::future::BoxFuture;
use http::Method;
use pelago_actors::card::{CardRecord, order::OrderRecord, topup::TopupRecord};
use pelago_storage::OrderId;
use serde_json::{Value, json};

use super::{
    errors::ApiError,
    pagination,
    router::{ApiReply, Ctx, HandlerResult, Route},
    wire,
};
use crate::{flows::orders, http::state::App};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/v1/orders", list),
        Route::new(Method::GET, "/v1/orders/{id}", get),
        Route::new(Method::POST, "/v1/test_helpers/orders/{id}/pay", pay),
        Route::new(Method::POST, "/v1/test_helpers/orders/{id}/fail", fail),
        Route::new(Method::POST, "/v1/test_helpers/orders/{id}/expire", expire),
        Route::new(Method::POST, "/v1/test_helpers/orders/{id}/resend-callback", resend),
    ]
}

/// The order object of a card or top-up, if it has one.
pub fn order_of(app: &App, id: Option<&OrderId>) -> Result<Option<OrderRecord>, ApiError> {
    Ok(match id {
        Some(id) => app.store.get::<OrderRecord>(id.as_bytes())?,
        None => None,
    })
}

/// An event's wire body with the orders its object names (events list, webhooks).
pub fn event_json(app: &App, event: &pelago_actors::outbox::EventRecord) -> Value {
    wire::event(event, &|id| app.store.get::<OrderRecord>(id.as_bytes()).ok().flatten())
}

pub fn card_json(app: &App, card: &CardRecord) -> Result<Value, ApiError> {
    Ok(wire::card_with_order(card, order_of(app, card.application_fee_order.as_ref())?.as_ref()))
}

pub fn topup_json(app: &App, topup: &TopupRecord) -> Result<Value, ApiError> {
    Ok(wire::topup_with_order(topup, order_of(app, topup.order.as_ref())?.as_ref()))
}

/// GET /v1/orders/{id}
async fn get(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let o = orders::load_owned(&app, ctx.merchant_id()?, ctx.param(0))?;
    Ok(ApiReply::json(200, &wire::order(&o)))
}

/// GET /v1/orders — newest first.
async fn list(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant = ctx.merchant_id()?.clone();
    let page = pagination::parse(&ctx.query, &[])?;
    let prefix = pelago_actors::keys::scan_prefix(pelago_actors::keys::MORD, &[&merchant]);
    let orders = pagination::indexed::<OrderRecord>(&app.store, &prefix, &page)?;
    Ok(ApiReply::json(200, &pagination::body(orders.iter().map(wire::order).collect(), page.limit)))
}

/// What the cardholder does on the checkout page.
#[derive(Clone, Copy)]
enum Act {
    Pay,
    Fail,
    Expire,
}

fn act(act: Act) -> impl Fn(Arc<App>, Ctx) -> BoxFuture<'static, HandlerResult> {
    move |app, ctx| {
        Box::pin(async move {
            let control = app.upstreams.sandbox.as_ref().ok_or_else(|| ApiError::not_found("route"))?;
            let o = orders::load_owned(&app, ctx.merchant_id()?, ctx.param(0))?;
            let gid = o
                .gateway_order_id
                .clone()
                .ok_or_else(|| ApiError::invalid_state("the order has no checkout yet"))?;
            let result = match act {
                Act::Pay => control.pay_order(&gid).await,
                Act::Fail => control.fail_order(&gid).await,
                Act::Expire => control.expire_order(&gid).await,
            };
            result.map_err(|e| ApiError::invalid_state(format!("the gateway refused: {e}")))?;
            // The gateway called back before answering: the order is settled here.
            let o = orders::load_owned(&app, ctx.merchant_id()?, ctx.param(0))?;
            Ok(ApiReply::json(200, &wire::order(&o)))
        })
    }
}

/// POST /v1/test_helpers/orders/{id}/pay
fn pay(app: Arc<App>, ctx: Ctx) -> BoxFuture<'static, HandlerResult> {
    act(Act::Pay)(app, ctx)
}

/// POST /v1/test_helpers/orders/{id}/fail
fn fail(app: Arc<App>, ctx: Ctx) -> BoxFuture<'static, HandlerResult> {
    act(Act::Fail)(app, ctx)
}

/// POST /v1/test_helpers/orders/{id}/expire
fn expire(app: Arc<App>, ctx: Ctx) -> BoxFuture<'static, HandlerResult> {
    act(Act::Expire)(app, ctx)
}

/// POST /v1/test_helpers/orders/{id}/resend-callback — the gateway delivers its
/// last callback for the order again (a duplicate).
async fn resend(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let control = app.upstreams.sandbox.as_ref().ok_or_else(|| ApiError::not_found("route"))?;
    let o = orders::load_owned(&app, ctx.merchant_id()?, ctx.param(0))?;
    let gid =
        o.gateway_order_id.clone().ok_or_else(|| ApiError::invalid_state("the order has no checkout yet"))?;
    let event_id = control
        .resend_order_callback(&gid)
        .await
        .map_err(|e| ApiError::invalid_state(format!("the gateway refused: {e}")))?;
    let o = orders::load_owned(&app, ctx.merchant_id()?, ctx.param(0))?;
    Ok(ApiReply::json(200, &json!({"order": wire::order(&o), "resent_event_id": event_id})))
}
