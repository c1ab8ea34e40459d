//! Callbacks from upstreams (API.md §6, SECURITY.md §Callbacks): the
//! signature and timestamp are checked before anything; an unknown channel or
//! gateway account is 401 and changes nothing. Each notification is applied
//! through the owning actor, whose effects are idempotent on the upstream's
//! natural id (channel transaction id, order id, ...), so repeats and
//! out-of-order deliveries have exactly one effect. The receipt is recorded
//! durably (one record per upstream event id) before the 200. A notification
//! about an object Pelago does not know is recorded and answered 200, so the
//! upstream does not retry forever.

use std::sync::Arc;

use futures::future::BoxFuture;
use http::Method;
use pelago_actors::{
    card::ApplyTransaction,
    merchant::MerchantRecord,
    ports::{ChannelEvent, GatewayCallback},
    routing::ChannelRecord,
};
use pelago_storage::{CardId, ChannelId, MerchantId, Record, Timestamp, Tree, WriteBatch};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    errors::ApiError,
    router::{ApiReply, Ctx, HandlerResult, Route},
};
use crate::{
    app::App,
    upstream::callbacks as wire,
    upstreams::{channel_secret_context, open},
};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/callbacks/channels/{channel_id}", channel_callback),
        Route::new(Method::POST, "/callbacks/gateway", gateway_callback),
    ]
}

/// One received upstream notification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallbackRecord {
    pub source: String,
    pub event_id: String,
    pub received_at: Timestamp,
    /// `applied`, `unchanged` or `unknown_object`.
    pub outcome: String,
    pub deliveries: u32,
}

impl Record for CallbackRecord {
    const TREE: Tree = Tree::Callbacks;
    const SCHEMA_VERSION: u8 = 1;
}

/// Records (or counts again) a notification, durably.
async fn record(app: &App, source: &str, event_id: &str, outcome: &str) -> Result<(), ApiError> {
    let key = format!("{source}/{event_id}");
    let mut rec = app.store.get::<CallbackRecord>(&key)?.unwrap_or(CallbackRecord {
        source: source.to_owned(),
        event_id: event_id.to_owned(),
        received_at: Timestamp::now_real(),
        outcome: outcome.to_owned(),
        deliveries: 0,
    });
    rec.deliveries = rec.deliveries.saturating_add(1);
    let mut batch = WriteBatch::new();
    batch.put(&key, &rec)?;
    app.store.commit_durable(batch).await?;
    Ok(())
}

fn signature_problem(e: wire::CallbackAuthError) -> ApiError {
    ApiError::unauthenticated(format!("callback signature rejected: {e}"))
}

/// POST /callbacks/channels/{channel_id}
fn channel_callback(app: Arc<App>, ctx: Ctx) -> BoxFuture<'static, HandlerResult> {
    Box::pin(async move {
        let unknown = || ApiError::unauthenticated("unknown channel");
        let id = ChannelId::parse(ctx.param(0)).map_err(|_| unknown())?;
        let channel = app.store.get::<ChannelRecord>(id.as_bytes())?.ok_or_else(unknown)?;
        let header = ctx.header(wire::CHANNEL_SIGNATURE_HEADER).ok_or_else(|| {
            ApiError::unauthenticated(format!("missing header {}", wire::CHANNEL_SIGNATURE_HEADER))
        })?;
        let secret =
            open(&app.sealer, &channel.webhook_secret, &channel_secret_context(&id, "webhook_secret"))
                .map_err(|_| ApiError::internal())?;
        wire::verify(header, secret.expose().as_bytes(), &ctx.body, Timestamp::now_real().unix_seconds())
            .map_err(signature_problem)?;
        let callback = wire::parse_channel_callback(&ctx.body)
            .map_err(|e| ApiError::bad_request(format!("unreadable callback body: {e}")))?;
        let outcome = match callback.event {
            ChannelEvent::Transaction { card_id, transaction } => {
                match CardId::parse(&card_id)
                    .ok()
                    .filter(|c| app.store.contains(Tree::Cards, c.as_bytes()).unwrap_or(false))
                {
                    Some(card) => {
                        let change = app.actors.ask_card(&card, ApplyTransaction(transaction)).await??;
                        if matches!(change, pelago_actors::card::TransactionChange::Unchanged) {
                            "unchanged"
                        } else {
                            "applied"
                        }
                    }
                    None => "unknown_object",
                }
            }
            ChannelEvent::CardholderUpdated { .. }
            | ChannelEvent::CardOpened { .. }
            | ChannelEvent::TopupCompleted { .. } => {
                crate::cardholders::on_channel_event(&app, &id, &callback.event_id, &callback.event).await?
            }
        };
        record(&app, &format!("chl/{id}"), &callback.event_id, outcome).await?;
        tracing::info!(channel_id = %id, event_id = %callback.event_id, outcome, "channel callback");
        Ok(ApiReply::json(200, &json!({"received": true, "outcome": outcome})))
    })
}

/// The key the gateway signed with: the platform's account or a merchant's own.
pub(super) async fn gateway_key(
    app: &App,
    account_merchant_id: &str,
) -> Result<Option<(Option<MerchantId>, String)>, ApiError> {
    let platform = crate::bootstrap::platform_account(app).await?;
    if platform.merchant_id == account_merchant_id {
        return Ok(Some((None, platform.api_key.expose().to_owned())));
    }
    if let Some(raw) = account_merchant_id.strip_prefix(crate::bootstrap::SUB_ACCOUNT_PREFIX)
        && let Ok(merchant) = MerchantId::parse(raw)
        && app.store.contains(Tree::Merchants, merchant.as_bytes())?
    {
        let sub = crate::bootstrap::platform_sub_account(app, &merchant).await?;
        return Ok(Some((Some(merchant), sub.api_key.expose().to_owned())));
    }
    let Some(owner) = app.store.get_raw(Tree::Index, format!("gwacct/{account_merchant_id}"))? else {
        return Ok(None);
    };
    let Ok(merchant_id) = MerchantId::parse(&String::from_utf8_lossy(&owner)) else { return Ok(None) };
    let Some(merchant) = app.store.get::<MerchantRecord>(merchant_id.as_bytes())? else { return Ok(None) };
    Ok(crate::bootstrap::merchant_account(app, &merchant)?
        .map(|a| (Some(merchant_id), a.api_key.expose().to_owned())))
}

/// POST /callbacks/gateway
fn gateway_callback(app: Arc<App>, ctx: Ctx) -> BoxFuture<'static, HandlerResult> {
    Box::pin(async move {
        let header = ctx.header(wire::GATEWAY_SIGNATURE_HEADER).ok_or_else(|| {
            ApiError::unauthenticated(format!("missing header {}", wire::GATEWAY_SIGNATURE_HEADER))
        })?;
        // The body names the account; nothing is acted on before the signature holds.
        let callback: GatewayCallback = wire::parse_gateway_callback(&ctx.body)
            .map_err(|_| ApiError::unauthenticated("unreadable or unsigned callback"))?;
        let (merchant, key) = gateway_key(&app, &callback.account_merchant_id)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("unknown gateway account"))?;
        wire::verify(header, key.as_bytes(), &ctx.body, Timestamp::now_real().unix_seconds())
            .map_err(signature_problem)?;
        let outcome = crate::money::on_gateway_event(&app, merchant.as_ref(), &callback).await?;
        record(&app, &format!("gw/{}", callback.account_merchant_id), &callback.event_id, outcome).await?;
        tracing::info!(event_id = %callback.event_id, outcome, "gateway callback");
        Ok(ApiReply::json(200, &json!({"received": true, "outcome": outcome})))
    })
}
