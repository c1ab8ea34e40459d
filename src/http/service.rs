//! Service endpoints (API.md §8): health, readiness, metrics.

use std::sync::{Arc, atomic::Ordering};

use futures::future::BoxFuture;
use http::Method;
use serde_json::json;

use super::router::{ApiReply, Ctx, HandlerResult, Route};
use crate::http::state::App;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/healthz", healthz),
        Route::new(Method::GET, "/readyz", readyz),
        Route::new(Method::GET, "/metrics", metrics),
        Route::new(Method::GET, "/openapi.json", openapi),
    ]
}

/// GET /healthz
fn healthz(_app: Arc<App>, _ctx: Ctx) -> BoxFuture<'static, HandlerResult> {
    Box::pin(async { Ok(ApiReply::json(200, &json!({"status": "ok"}))) })
}

/// GET /readyz — 200 when the store is open and actors accept messages; 503
/// while starting or draining.
async fn readyz(app: Arc<App>, _ctx: Ctx) -> HandlerResult {
    if app.is_ready() {
        Ok(ApiReply::json(200, &json!({"status": "ready"})))
    } else {
        let status = if app.draining.load(Ordering::Acquire) { "draining" } else { "starting" };
        Ok(ApiReply::json(503, &json!({"status": status})))
    }
}

/// GET /metrics — Prometheus text.
async fn metrics(app: Arc<App>, _ctx: Ctx) -> HandlerResult {
    let actors = &app.actors;
    let flush = app.store.flusher().stats();
    let flushes = flush.flushes.load(Ordering::Relaxed);
    let commits = app.store.commit_stats();
    let flush_mean_secs = if flushes == 0 {
        0.0
    } else {
        flush.flush_micros_total.load(Ordering::Relaxed) as f64 / flushes as f64 / 1e6
    };
    let gauges = [
        ("pelago_live_card_actors", "Card actors in memory.", actors.cards.live() as f64),
        ("pelago_live_merchant_actors", "Merchant actors in memory.", actors.merchants.live() as f64),
        ("pelago_actor_mailbox_depth", "Messages queued in actor mailboxes.", {
            (actors.cards.mailbox_depth() + actors.merchants.mailbox_depth()) as f64
        }),
        (
            "pelago_actor_restarts_total",
            "Actors restarted by their supervisor.",
            actors.counters.restarts_total.load(Ordering::Relaxed) as f64,
        ),
        (
            "pelago_actor_passivations_total",
            "Actors passivated (idle or over the cap).",
            actors.counters.passivated_total.load(Ordering::Relaxed) as f64,
        ),
        ("pelago_store_flushes_total", "Group-commit flushes of the store.", flushes as f64),
        (
            "pelago_store_flushes_delayed_total",
            "Flushes that first waited the flush delay (the store was busy).",
            flush.delayed.load(Ordering::Relaxed) as f64,
        ),
        ("pelago_store_commits_total", "Atomic commits applied or refused.", commits.commits as f64),
        ("pelago_store_commit_groups_total", "sled batches the commits were merged into.", {
            commits.groups as f64
        }),
        ("pelago_store_flush_seconds_mean", "Mean store flush latency.", flush_mean_secs),
        (
            "pelago_store_flush_seconds_max",
            "Slowest store flush.",
            flush.flush_micros_max.load(Ordering::Relaxed) as f64 / 1e6,
        ),
        (
            "pelago_webhook_queue_depth",
            "Events waiting in the durable outbox.",
            app.store.len(pelago_storage::Tree::Outbox) as f64,
        ),
        (
            "pelago_callbacks_swept_total",
            "Callback receipts removed past retention since start.",
            super::retention::CALLBACKS_SWEPT.load(Ordering::Relaxed) as f64,
        ),
        (
            "pelago_deliveries_swept_total",
            "Webhook delivery attempts removed past retention since start.",
            super::retention::DELIVERIES_SWEPT.load(Ordering::Relaxed) as f64,
        ),
    ];
    Ok(ApiReply::text(200, "text/plain; version=0.0.4", app.metrics.render(&gauges)))
}

/// GET /openapi.json — the OpenAPI 3.1 document of every route.
async fn openapi(app: Arc<App>, _ctx: Ctx) -> HandlerResult {
    let doc = super::openapi::document(app.router.routes());
    Ok(ApiReply::json(200, &doc))
}
