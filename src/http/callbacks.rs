//! Callbacks from upstreams (API.md §6, SECURITY.md §Callbacks): the
//! signature and timestamp are checked before anything; an unknown channel or
//! gateway account is 401 and changes nothing. A signature only says who sent
//! it: a notification that would change a state must name an object of its
//! sender (a card or cardholder of that channel, by Pelago's id and the
//! channel's own; an order, deposit address or payout created under that
//! gateway account), else 401, logged and counted (`crate::flows::callback_rules`);
//! gateway notices are then compared and confirmed by a query (the flows in
//! `money.rs`, `orders.rs`, `withdrawals.rs`), and so are channel notices
//! (`channel_confirm.rs`: a transaction, a card opened, a top-up completed;
//! `cardholders.rs`: a cardholder approved or rejected), whose body is never
//! applied: the channel's answer to the query is. Each notification is applied
//! through the owning actor, whose effects are idempotent on the upstream's
//! natural id (channel transaction id, order id, ...), so repeats and
//! out-of-order deliveries have exactly one effect. The receipt is recorded
//! durably (one record per upstream event id) before the 200. Notices whose
//! confirming query had no answer leave a marker the resolver asks again
//! (`unconfirmed`); a gateway refund notice changes nothing.

use std::sync::Arc;

use http::Method;
use pelago_actors::{
    card::CardRecord,
    ports::{ChannelEvent, GatewayCallback},
    routing::ChannelRecord,
};
use pelago_storage::{CardId, ChannelId, MerchantId, Timestamp, WriteBatch};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    errors::ApiError,
    router::{ApiReply, Ctx, HandlerResult, Route},
};
use crate::{
    http::state::App,
    metrics::CallbackSource,
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

pelago_storage::record!(CallbackRecord, Callbacks, 1);

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
async fn channel_callback(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let unknown = || ApiError::unauthenticated("unknown channel");
    let id = ChannelId::parse(ctx.param(0)).map_err(|_| unknown())?;
    let channel = app.store.get::<ChannelRecord>(id.as_bytes())?.ok_or_else(unknown)?;
    let header = ctx.header(wire::CHANNEL_SIGNATURE_HEADER).ok_or_else(|| {
        ApiError::unauthenticated(format!("missing header {}", wire::CHANNEL_SIGNATURE_HEADER))
    })?;
    let secret = open(&app.sealer, &channel.webhook_secret, &channel_secret_context(&id, "webhook_secret"))
        .map_err(|_| ApiError::internal())?;
    wire::verify(header, secret.expose().as_bytes(), &ctx.body, Timestamp::now_real().unix_seconds())
        .map_err(signature_problem)?;
    let callback = wire::parse_channel_callback(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("unreadable callback body: {e}")))?;
    let outcome = match callback.event {
        ChannelEvent::Transaction { card_id, transaction } => {
            // Bound: a card of this channel, by Pelago's id and the channel's own id.
            let card = match CardId::parse(&card_id) {
                Ok(card) => app.store.get::<CardRecord>(card.as_bytes())?,
                Err(_) => None,
            };
            let Some(card) = card.filter(|c| {
                c.channel_id == id
                    && c.channel_card_id.as_deref() == Some(transaction.channel_card_id.as_str())
            }) else {
                return Err(crate::flows::callback_rules::unbound(
                    &app,
                    CallbackSource::Channel,
                    id.as_str(),
                    &callback.event_id,
                    &card_id,
                )
                .into());
            };
            // Confirmed: the channel's own record of the transaction is applied, never the body.
            crate::flows::channel_confirm::on_transaction(&app, &card, &transaction).await?
        }
        ChannelEvent::CardholderUpdated { .. } => {
            crate::flows::cardholders::on_channel_event(&app.core, &id, &callback.event_id, &callback.event)
                .await?
        }
        ChannelEvent::CardOpened { .. } | ChannelEvent::TopupCompleted { .. } => {
            crate::flows::channel_confirm::on_request_answered(
                &app.core,
                &id,
                &callback.event_id,
                &callback.event,
            )
            .await?
        }
    };
    record(&app, &crate::keys::Context::Channel { channel: id.clone() }.text(), &callback.event_id, outcome)
        .await?;
    tracing::info!(channel_id = %id, event_id = %callback.event_id, outcome, "channel callback");
    Ok(ApiReply::json(200, &json!({"received": true, "outcome": outcome})))
}

/// The key the gateway signed with (the platform's account or a merchant's
/// own) and the merchant it belongs to (`None`: the platform's).
pub(super) async fn gateway_key(
    app: &App,
    account_merchant_id: &str,
) -> Result<Option<(Option<MerchantId>, String)>, ApiError> {
    Ok(crate::flows::bootstrap::account_by_id(app, account_merchant_id)
        .await?
        .map(|(merchant, account)| (merchant, account.api_key.expose().to_owned())))
}

/// POST /callbacks/gateway
async fn gateway_callback(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let header = ctx.header(wire::GATEWAY_SIGNATURE_HEADER).ok_or_else(|| {
        ApiError::unauthenticated(format!("missing header {}", wire::GATEWAY_SIGNATURE_HEADER))
    })?;
    // The body names the account; nothing is acted on before the signature holds.
    let callback: GatewayCallback = wire::parse_gateway_callback(&ctx.body)
        .map_err(|_| ApiError::unauthenticated("unreadable or unsigned callback"))?;
    let (_, account) = crate::flows::bootstrap::account_by_id(&app, &callback.account_merchant_id)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("unknown gateway account"))?;
    wire::verify(
        header,
        account.api_key.expose().as_bytes(),
        &ctx.body,
        Timestamp::now_real().unix_seconds(),
    )
    .map_err(signature_problem)?;
    // Signed by that account: bound, compared and confirmed by the flow.
    let outcome = crate::flows::money::on_gateway_event(&app, &callback).await?;
    record(
        &app,
        &crate::keys::Context::Gateway { merchant: callback.account_merchant_id.to_string() }.text(),
        &callback.event_id,
        outcome,
    )
    .await?;
    tracing::info!(event_id = %callback.event_id, outcome, "gateway callback");
    Ok(ApiReply::json(200, &json!({"received": true, "outcome": outcome})))
}
