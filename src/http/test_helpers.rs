//! Operator test helpers (SANDBOX.md), sandbox mode only (404 otherwise):
//! channel and gateway fault injection and the service clock.

use std::sync::Arc;

use http::Method;
use pelago_actors::routing::ChannelRecord;
use pelago_storage::{ChannelId, Timestamp};
use serde::Deserialize;
use serde_json::json;

use super::{
    errors::ApiError,
    router::{ApiReply, Ctx, HandlerResult, Route},
};
use crate::{
    http::state::App,
    upstream::sandbox::{FaultSpec, GatewayFaultSpec},
};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/admin/v1/test_helpers/channels/{id}/faults", set_faults),
        Route::new(Method::DELETE, "/admin/v1/test_helpers/channels/{id}/faults", clear_faults),
        Route::new(Method::POST, "/admin/v1/test_helpers/gateway/faults", set_gateway_faults),
        Route::new(Method::DELETE, "/admin/v1/test_helpers/gateway/faults", clear_gateway_faults),
        Route::new(Method::GET, "/admin/v1/test_helpers/clock", get_clock),
        Route::new(Method::POST, "/admin/v1/test_helpers/clock", set_clock).accepts::<ClockIn>(),
        Route::new(Method::DELETE, "/admin/v1/test_helpers/clock", clear_clock),
    ]
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ClockIn {
    /// RFC 3339, e.g. `2026-12-01T00:00:00Z`.
    now: String,
}

fn sandbox_channel(app: &App, raw: &str) -> Result<ChannelRecord, ApiError> {
    if !app.sandbox() {
        return Err(ApiError::not_found("route"));
    }
    let id = ChannelId::parse(raw).map_err(|_| ApiError::not_found("channel"))?;
    let c = app.store.get::<ChannelRecord>(id.as_bytes())?.ok_or_else(|| ApiError::not_found("channel"))?;
    if c.kind != "sandbox" {
        return Err(ApiError::invalid_state("faults can be injected only into sandbox channels"));
    }
    Ok(c)
}

/// POST /admin/v1/test_helpers/channels/{id}/faults
async fn set_faults(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let channel = sandbox_channel(&app, ctx.param(0))?;
    let spec: FaultSpec = ctx.json()?;
    let control = app.upstreams.sandbox.as_ref().ok_or_else(|| ApiError::not_found("route"))?;
    control
        .set_fault(channel.id.as_str(), spec)
        .await
        .map_err(|e| ApiError::invalid("behavior", format!("the sandbox refused the fault: {e}")))?;
    Ok(ApiReply::json(200, &json!({"channel_id": channel.id, "fault": spec})))
}

/// DELETE /admin/v1/test_helpers/channels/{id}/faults
async fn clear_faults(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let channel = sandbox_channel(&app, ctx.param(0))?;
    let control = app.upstreams.sandbox.as_ref().ok_or_else(|| ApiError::not_found("route"))?;
    control.clear_faults(channel.id.as_str()).await.map_err(|e| ApiError::upstream(e.to_string()))?;
    Ok(ApiReply::json(200, &json!({"channel_id": channel.id, "faults": []})))
}

/// POST /admin/v1/test_helpers/gateway/faults — the sandbox gateway's next
/// `count` calls of `operation` (any account) answer 500 without applying
/// (`error`) or apply and answer after Pelago's upstream timeout (`timeout`).
/// `onboarding`, `agreement` and `callbacks` are the simulator's marketplace
/// calls (`decline`, `error`, `timeout`, `delay`; `duplicate` for callbacks).
async fn set_gateway_faults(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let control = app.upstreams.sandbox.as_ref().ok_or_else(|| ApiError::not_found("route"))?;
    let operation = serde_json::from_slice::<serde_json::Value>(&ctx.body)
        .ok()
        .and_then(|v| v["operation"].as_str().map(str::to_owned));
    if matches!(
        operation.as_deref(),
        Some(
            "onboarding"
                | "agreement"
                | "callbacks"
                | "create_payment"
                | "capture"
                | "cancel"
                | "split"
                | "refund"
        )
    ) {
        return super::onboardings::set_marketplace_fault(&app, &ctx).await;
    }
    let spec: GatewayFaultSpec = ctx.json()?;
    control
        .set_gateway_fault(spec)
        .await
        .map_err(|e| ApiError::invalid("behavior", format!("the sandbox refused the fault: {e}")))?;
    Ok(ApiReply::json(200, &json!({"gateway": true, "fault": spec})))
}

/// DELETE /admin/v1/test_helpers/gateway/faults
async fn clear_gateway_faults(app: Arc<App>, _ctx: Ctx) -> HandlerResult {
    let control = app.upstreams.sandbox.as_ref().ok_or_else(|| ApiError::not_found("route"))?;
    control.clear_gateway_faults().await.map_err(|e| ApiError::upstream(e.to_string()))?;
    super::onboardings::clear_marketplace_faults(&app).await?;
    Ok(ApiReply::json(200, &json!({"gateway": true, "faults": []})))
}

fn clock_json(app: &App) -> serde_json::Value {
    json!({
        "now": app.clock.now().to_rfc3339(),
        "offset_ms": app.service_clock.offset_ms(),
        "floor": app.service_clock.floor().to_rfc3339(),
    })
}

/// GET /admin/v1/test_helpers/clock — the service clock's now, its offset
/// from real time and its floor (the earliest instant the scheduler fires from).
async fn get_clock(app: Arc<App>, _ctx: Ctx) -> HandlerResult {
    if !app.sandbox() {
        return Err(ApiError::not_found("route"));
    }
    Ok(ApiReply::json(200, &clock_json(&app)))
}

/// POST /admin/v1/test_helpers/clock — the service clock runs on from `now`.
async fn set_clock(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    if !app.sandbox() {
        return Err(ApiError::not_found("route"));
    }
    let req: ClockIn = ctx.json()?;
    let now = Timestamp::parse_rfc3339(&req.now)
        .ok_or_else(|| ApiError::invalid("now", "now must be an RFC 3339 time"))?;
    app.service_clock.set(&app.store, now).await?;
    if let Some(scheduler) = app.scheduler.get() {
        scheduler.do_send(crate::jobs::scheduler::Tick); // a moved clock may pass a cron instant
    }
    Ok(ApiReply::json(200, &clock_json(&app)))
}

/// DELETE /admin/v1/test_helpers/clock — back to real time.
async fn clear_clock(app: Arc<App>, _ctx: Ctx) -> HandlerResult {
    if !app.sandbox() {
        return Err(ApiError::not_found("route"));
    }
    app.service_clock.clear(&app.store).await?;
    Ok(ApiReply::json(200, &clock_json(&app)))
}
